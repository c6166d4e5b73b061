//! The `run`, `explain` and `datasets` verbs.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Result;
use std::collections::BTreeMap;
use symbiont_dsl::ast::Program;
use symbiont_dsl::{Diagnostic, SourceFile, parse_bytes};
use symbiont_engine::{
    Custody, Job, JobResult, JobSpec, OnError, Outcome, Passphrase, Principal, ResultSink,
    StageBinaries, homes,
};
use symbiont_operators::{
    Attributes, CompiledPolicies, Effect, InputKind, Plan, PolicyValue, Query,
};

use crate::{
    AesBackend, ExplainFormat, Format, Reporter, RunFormat, display_name, exit, read_source,
};

/// `symbi run`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The program.
    file: PathBuf,
    /// Binds the entry agent's stream parameter: `NAME=PATH` (.csv,
    /// .ndjson/.jsonl, .parquet or .arrow/.ipc/.feather, or a directory
    /// written by --persist-encrypted), or `NAME=tfhe:DIR`: such a
    /// directory with its restricted records read from their TFHE copy
    /// (the programmable path: filters and min/max under encryption).
    #[arg(long = "input", value_name = "NAME=PATH", required = true)]
    inputs: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RunFormat::Json)]
    format: RunFormat,
    /// Write the result here instead of to stdout.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Bad rows: `fail` (stop, naming the row) or `quarantine=PATH`
    /// (write each bad row's line and reason to PATH and go on).
    #[arg(long, value_name = "fail|quarantine=PATH", default_value = "fail")]
    on_error: String,
    /// The entry agent, when several take a `Stream<T>`.
    #[arg(long)]
    agent: Option<String>,
    /// The audit log the job's events go to (default:
    /// `$XDG_STATE_HOME/symbiont/audit.log`).
    #[arg(long, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// The audit signing key (default: `audit_ed25519.key` in the
    /// default keystore, created on first use; --keystore does not
    /// change it, so one log keeps one key).
    #[arg(long, value_name = "PATH")]
    audit_key: Option<PathBuf>,
    /// The keystore whose data keys seal the confidential lane
    /// (default: `$XDG_DATA_HOME/symbiont`, created on first use).
    #[arg(long, value_name = "DIR")]
    keystore: Option<PathBuf>,
    /// The environment variable holding the keystore's passphrase, if
    /// its master key is sealed.
    #[arg(long, value_name = "VAR")]
    passphrase_env: Option<String>,
    /// The dataset id the input's records are sealed under (default:
    /// the input file's canonical path). It selects the data key and is
    /// bound into every ciphertext.
    #[arg(long, value_name = "ID")]
    dataset_id: Option<String>,
    /// The AES-256-GCM implementation sealing the encrypted lanes:
    /// `ring` (the default, chosen by benches/aes_lane.sh) or `aes-gcm`
    /// (RustCrypto).
    #[arg(long, value_enum, default_value_t = AesBackend::Ring)]
    aes_backend: AesBackend,
    /// The memory limit of each sandboxed stage, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    stage_memory_mib: u64,
    /// How long a sandboxed stage may run (not counting its waits for
    /// the job's next batch) before it is killed, failing the job.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    stage_timeout: humantime::Duration,
    /// Keep the classified dataset in DIR (which must not exist):
    /// encrypted lanes sealed, public records in the clear, restricted
    /// records also as TFHE integer ciphertexts of their numeric
    /// fields. A later run reads it back with `--input NAME=DIR` (or
    /// `NAME=tfhe:DIR`). Written only if the job succeeds.
    #[arg(long, value_name = "DIR")]
    persist_encrypted: Option<PathBuf>,
    /// Who runs the job: a principal credential the keystore's issuer
    /// signed (`symbi keys issue-principal`); its attributes are what
    /// `principal.*` conditions see.
    #[arg(long, value_name = "FILE", conflicts_with = "principal_unverified")]
    principal: Option<PathBuf>,
    /// A principal attribute nobody vouches for: audited, and
    /// `principal.verified` is false (a policy may require it true).
    #[arg(long, value_name = "KEY=VALUE")]
    principal_unverified: Vec<String>,
    /// An attribute of the dataset, for policy conditions.
    #[arg(long, value_name = "KEY=VALUE")]
    resource: Vec<String>,
    /// Resume a job suspended by policy conditions with this approval
    /// (`symbi approve`), signed by an approver the keystore trusts.
    #[arg(long, value_name = "FILE")]
    override_approval: Option<PathBuf>,
    /// Attest the agent's `prove(...)` fields: commit to the input at
    /// ingestion (signed with the audit key), prove them with Groth16
    /// once the job has its result, and write the bundle an auditor
    /// checks with `symbi verify` (docs/ATTESTATION.md). Written only
    /// if the job succeeds.
    #[arg(long, value_name = "PATH")]
    bundle: Option<PathBuf>,
    /// With --bundle: prove with the key of the ceremony in DIR
    /// (`symbi ceremony`), not one set up on this machine.
    #[arg(long, value_name = "DIR", requires = "bundle")]
    ceremony: Option<PathBuf>,
}

/// `symbi stream`'s flags: `symbi run`'s, its input a stream.
#[derive(Debug, clap::Args)]
pub(crate) struct StreamArgs {
    #[command(flatten)]
    run: RunArgs,
    /// When an epoch ends: after a count of records (`10000`) or a time
    /// (`1s`, `500ms`).
    #[arg(long, default_value = "10000")]
    epoch: symbiont_engine::stream::EpochRule,
    /// The lines' format (default: the followed file's extension; NDJSON
    /// on standard input and for a directory's files).
    #[arg(long, value_enum)]
    input_format: Option<StreamFormat>,
    /// Keep a checkpoint in DIR at every epoch's end (source position,
    /// running totals); restarted with the same DIR, the stream goes on
    /// from the last one, counting no record twice (follow:PATH and
    /// dir:PATH).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// What each epoch writes: the value over every record so far
    /// (`cumulative`), or the rows of it that changed, each as
    /// `{"epoch", "diff": -1|1, "row"}` (`changes`).
    #[arg(long, default_value = "cumulative")]
    emit: symbiont_engine::stream::Emit,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum StreamFormat {
    Csv,
    Ndjson,
}

type Attrs = BTreeMap<String, PolicyValue>;

/// The principal's and the resource's attributes, or (after reporting the
/// usage error) the exit code.
fn both_attributes(
    principal: &[String],
    resource: &[String],
) -> Result<std::result::Result<(Attrs, Attrs), u8>> {
    use symbiont_operators::parse_attributes;
    match (parse_attributes(principal), parse_attributes(resource)) {
        (Ok(p), Ok(r)) => Ok(Ok((p, r))),
        (Err(bad), _) | (_, Err(bad)) => {
            usage(format_args!("attributes are KEY=VALUE, got `{bad}`")).map(Err)
        }
    }
}

fn usage(message: impl std::fmt::Display) -> Result<u8> {
    eprintln!("symbi: usage error: {message}");
    Ok(exit::USAGE)
}

/// A program file that parsed, with a way to report diagnostics about it.
struct ProgramFile {
    program: Program,
    source: SourceFile,
}

impl ProgramFile {
    /// Reads and parses `file`; on syntax errors prints them and returns
    /// the exit code.
    fn open(file: &Path) -> Result<std::result::Result<ProgramFile, u8>> {
        let parsed = parse_bytes(&read_source(file)?);
        let source = SourceFile::new(display_name(file), parsed.text);
        match parsed.program {
            Some(program) => Ok(Ok(ProgramFile { program, source })),
            None => {
                report(&source, &parsed.diagnostics)?;
                Ok(Err(exit::INVALID_PROGRAM))
            }
        }
    }

    fn report(&self, diagnostics: &[Diagnostic]) -> Result<()> {
        report(&self.source, diagnostics)
    }
}

fn report(source: &SourceFile, diagnostics: &[Diagnostic]) -> Result<()> {
    let mut reporter = Reporter::new(Format::Human);
    reporter.report(source, diagnostics);
    reporter.finish()
}

/// A checked program and its entry agent's query.
struct Loaded {
    program: Program,
    source: SourceFile,
    query: Query,
    /// Hex SHA-256 of the program's text.
    program_sha256: String,
}

/// Parses, checks (types and policies) and lowers `file`; on failure prints
/// its diagnostics and returns the exit code.
fn load(file: &Path, agent: Option<&str>) -> Result<std::result::Result<Loaded, u8>> {
    let ProgramFile { program, source } = match ProgramFile::open(file)? {
        Ok(f) => f,
        Err(code) => return Ok(Err(code)),
    };
    match symbiont_dsl::runnable(&program, source.text(), agent) {
        Ok(query) => Ok(Ok(Loaded {
            program_sha256: symbiont_engine::digest(source.text().as_bytes()),
            program,
            source,
            query,
        })),
        Err(rejected) => {
            report(&source, &rejected.diagnostics)?;
            Ok(Err(if rejected.denied {
                exit::POLICY_DENIED
            } else {
                exit::INVALID_PROGRAM
            }))
        }
    }
}

pub(crate) fn stream(args: &StreamArgs) -> Result<u8> {
    run_as(&args.run, Some(args))
}

pub(crate) fn run(args: &RunArgs) -> Result<u8> {
    run_as(args, None)
}

fn run_as(args: &RunArgs, streaming: Option<&StreamArgs>) -> Result<u8> {
    use symbiont_engine::stream::{StreamSource, StreamSpec};
    let Loaded {
        program,
        source,
        query,
        program_sha256,
    } = match load(&args.file, args.agent.as_deref())? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let (unverified, resource) = match both_attributes(&args.principal_unverified, &args.resource)?
    {
        Ok(both) => both,
        Err(code) => return Ok(code),
    };
    let keystore = crate::keys::dir_or_default(args.keystore.as_deref())?;
    let principal = match &args.principal {
        Some(file) => match Principal::from_credential(file, &keystore) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("symbi: the principal is refused: {e}");
                return Ok(exit::POLICY_DENIED);
            }
        },
        None => match Principal::unverified(unverified) {
            Ok(p) => p,
            Err(why) => return usage(format_args!("--principal-unverified: {why}")),
        },
    };
    let (mut input, mut stream) = (None, None);
    for binding in &args.inputs {
        let Some((name, path)) = binding.split_once('=') else {
            return usage(format_args!("--input takes NAME=PATH, got `{binding}`"));
        };
        if name != query.input {
            return usage(format_args!(
                "the agent `{}` reads the stream `{}`, not `{name}`",
                query.agent, query.input
            ));
        }
        if streaming.is_some() {
            match StreamSource::parse(path) {
                Ok(source) => stream = Some(source),
                Err(why) => return usage(why),
            }
        }
        // `tfhe:DIR`: a stored dataset's restricted records from their
        // TFHE copy (the programmable path).
        input = Some(match (&stream, path.strip_prefix("tfhe:")) {
            (Some(source), _) => (source.path(), false),
            (None, Some(dir)) => (PathBuf::from(dir), true),
            (None, None) => (PathBuf::from(path), false),
        });
    }
    let stream = match (streaming, stream) {
        (Some(s), Some(source)) => {
            use symbiont_operators::Format as F;
            let format = match (s.input_format, &source) {
                (Some(StreamFormat::Csv), _) => F::Csv,
                (Some(StreamFormat::Ndjson), _)
                | (None, StreamSource::Stdin | StreamSource::Dir(_)) => F::Ndjson,
                (None, StreamSource::Follow(p)) => F::of_path(p).unwrap_or(F::Ndjson),
            };
            let epoch = s.epoch;
            Some(StreamSpec {
                source,
                epoch,
                format,
                state: s.state.clone(),
                emit: s.emit,
            })
        }
        _ => None,
    };
    let Some((input, tfhe_input)) = input else {
        return usage(format_args!(
            "bind the input with --input {}=PATH",
            query.input
        ));
    };
    let on_error = match args.on_error.as_str() {
        "fail" => OnError::Fail,
        other => match other.strip_prefix("quarantine=") {
            Some(path) if !path.is_empty() => OnError::Quarantine(PathBuf::from(path)),
            _ => {
                return usage(format_args!(
                    "--on-error takes `fail` or `quarantine=PATH`, got `{other}`"
                ));
            }
        },
    };
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 {
        return usage("--workers must be at least 1");
    }
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| Arc::new(AtomicU64::new(0)));
    let job = Job::prepare(JobSpec {
        program,
        program_file: args.file.display().to_string(),
        program_sha256,
        query,
        input,
        tfhe_input,
        dataset_id: args.dataset_id.clone(),
        bindings: Some(keystore.clone()),
        principal,
        resource,
        workers,
        on_error,
        approval: args.override_approval.clone(),
        persist_encrypted: args.persist_encrypted.clone(),
        bundle: args.bundle.clone(),
        ceremony: args.ceremony.clone(),
        stage_limits: symbiont_sandbox::Limits {
            memory_bytes: args.stage_memory_mib << 20,
            timeout: args.stage_timeout.into(),
            ..Default::default()
        },
        binaries: StageBinaries::this_binary()?,
        progress: progress.clone(),
        // Ctrl-C or SIGTERM ends a stream after its current epoch.
        cancel: streaming
            .map(|_| symbiont_engine::stream::stop_on_signals())
            .transpose()?,
        stream,
    })?;
    let outcome = match job {
        Err(outcome) => outcome,
        Ok(job) => {
            let audit = crate::audit::AuditArgs {
                log: args.audit_log.clone(),
                key: args.audit_key.clone(),
            };
            let passphrase_env = args.passphrase_env.clone();
            let custody = Custody {
                keystore,
                create_keystore: args.keystore.is_none(),
                passphrase: Passphrase::from_fn(move || {
                    crate::keys::passphrase(passphrase_env.as_deref())
                }),
                aes_backend: match args.aes_backend {
                    AesBackend::Ring => symbiont_crypto::Backend::Ring,
                    AesBackend::AesGcm => symbiont_crypto::Backend::RustCrypto,
                },
                // The audit log keeps its own key (--audit-key, or the
                // default keystore's) whichever keystore seals the data.
                audit_key: match &audit.key {
                    Some(k) => k.clone(),
                    None => homes::audit_key()?,
                },
                requests: homes::requests_dir().map_err(|e| format!("{e:#}")),
            };
            let mut log = audit.open()?;
            let mut sink = Sink {
                format: &args.format,
                out: args.out.as_deref(),
                // A stream's lines go to --out as they come; after those of
                // the runs before it, if it goes on from a checkpoint.
                lines: match (&args.out, streaming) {
                    (Some(path), Some(s)) => Some(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .write(true)
                            .append(s.state.is_some())
                            .truncate(s.state.is_none())
                            .open(path)?,
                    ),
                    _ => None,
                },
            };
            let mut printer = symbiont_engine::TermPrinter::new(progress);
            job.run(&custody, &mut log, &mut sink, &mut printer)?
        }
    };
    Ok(match outcome {
        Outcome::Done { .. } => exit::OK,
        Outcome::Failed(why) => {
            eprintln!("symbi: error: {why}");
            exit::RUNTIME
        }
        Outcome::Cancelled => exit::RUNTIME,
        Outcome::Suspended { .. } | Outcome::Denied => exit::POLICY_DENIED,
        Outcome::PolicyDiagnostics(denials) => {
            report(&source, &denials)?;
            exit::POLICY_DENIED
        }
        Outcome::InvalidPolicyFile(file, diagnostics) => {
            report(&file, &diagnostics)?;
            exit::INVALID_PROGRAM
        }
        Outcome::Usage(message) => return usage(message),
    })
}

/// The result as `--format` renders it, to `--out` (whole or not at all)
/// or stdout.
struct Sink<'a> {
    format: &'a RunFormat,
    out: Option<&'a Path>,
    lines: Option<std::fs::File>,
}

impl ResultSink for Sink<'_> {
    fn render(&self, result: &JobResult) -> Result<String> {
        Ok(match self.format {
            RunFormat::Json => serde_json::to_string_pretty(&result.to_json())? + "\n",
            RunFormat::Table => result.output.table(),
        })
    }

    fn write(&mut self, text: &str) -> Result<()> {
        match (self.out, &mut self.lines) {
            // On disk before the epoch's checkpoint is.
            (_, Some(file)) => Ok(file
                .write_all(text.as_bytes())
                .and_then(|()| file.sync_data())?),
            (Some(path), None) => symbiont_engine::write_whole(path, text.as_bytes()),
            (None, None) => Ok(std::io::stdout().write_all(text.as_bytes())?),
        }
    }
}

pub(crate) fn explain(
    file: &Path,
    format: ExplainFormat,
    agent: Option<&str>,
    input: crate::ExplainInput,
) -> Result<u8> {
    let query = match load(file, agent)? {
        Ok(l) => l.query,
        Err(code) => return Ok(code),
    };
    let input = match input {
        crate::ExplainInput::File => InputKind::File,
        crate::ExplainInput::Store => InputKind::Store,
        crate::ExplainInput::Tfhe => InputKind::StoreTfhe,
    };
    let plan = Plan::for_job(&query, None, input);
    let text = match format {
        ExplainFormat::Text => plan.to_text(),
        ExplainFormat::Json => serde_json::to_string_pretty(&plan)? + "\n",
        ExplainFormat::Dot => plan.to_dot(),
        ExplainFormat::Svg => symbiont_engine::plan_svg(&plan)?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(exit::OK)
}

pub(crate) fn policy_eval(args: &crate::EvalArgs) -> Result<u8> {
    let (file, action, format) = (&args.policy, args.action.as_str(), args.format);
    let (mut principal, resource) = match both_attributes(&args.principal, &args.resource)? {
        Ok(both) => both,
        Err(code) => return Ok(code),
    };
    // A question about a principal: as if vouched for, unless it says not.
    principal
        .entry(symbiont_operators::VERIFIED.to_owned())
        .or_insert(PolicyValue::Bool(true));
    let Ok(record) = symbiont_operators::parse_attributes(&args.record) else {
        return usage("--record takes KEY=VALUE");
    };
    let policy_file = match ProgramFile::open(file)? {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    let program = &policy_file.program;
    let defined = match symbiont_dsl::policies(program) {
        Ok(d) => d,
        Err(errors) => {
            policy_file.report(&errors)?;
            return Ok(exit::INVALID_PROGRAM);
        }
    };
    let applicable = match symbiont_dsl::policies_named(program, &defined, &args.name) {
        Ok(a) => a,
        Err(n) => return usage(format_args!("{} defines no policy `{n}`", file.display())),
    };
    let compiled = CompiledPolicies::compile(&applicable)?;
    let decision = compiled.decide(
        action,
        &Attributes {
            principal: &principal,
            resource: &resource,
            asserted: &Default::default(),
            record: &record,
        },
    );
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        let effect = match decision.effect {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        };
        println!("{effect} `{action}`");
        for r in &decision.reasons {
            if r.policy.is_empty() {
                println!("  {}: {}", r.rule, r.detail);
            } else {
                println!("  policy `{}`, `{}`: {}", r.policy, r.rule, r.detail);
            }
        }
        for c in &decision.conflicts {
            println!("  conflict: {c}");
        }
    }
    Ok(match decision.effect {
        Effect::Allow => exit::OK,
        Effect::Deny => exit::POLICY_DENIED,
    })
}

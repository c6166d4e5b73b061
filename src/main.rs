//! `symbi`: the command line of Symbiont. Parses flags, calls the libraries,
//! maps outcomes to exit codes (DESIGN.md, "CLI contract"). Nothing else.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use symbiont_dsl::{Diagnostic, SourceFile, check, format_program, parse_bytes};

mod approve;
mod attest;
mod audit;
mod keys;
mod run;

/// Exit codes shared by every verb.
mod exit {
    pub(crate) const OK: u8 = 0;
    pub(crate) const RUNTIME: u8 = 1;
    pub(crate) const POLICY_DENIED: u8 = 2;
    pub(crate) const INVALID_PROGRAM: u8 = 3;
    pub(crate) const VERIFICATION_FAILED: u8 = 4;
    pub(crate) const USAGE: u8 = 64;
}

/// Symbiont: privacy-compute pipelines from a small DSL.
///
/// Exit codes: 0 ok, 1 runtime error, 2 policy denied, 3 invalid program,
/// 4 verification failed, 64 usage error.
#[derive(Debug, Parser)]
#[command(name = "symbi", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing `Run`'s flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and type-check programs and decide their policies; exit 3 if
    /// any is invalid, 2 if a policy denies what one does.
    Check {
        /// Only parse: do not resolve names or check types.
        #[arg(long)]
        syntax_only: bool,
        /// How to print diagnostics: `human` on stderr, `json` on stdout.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Program files (`.symbi`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a program's entry agent over a dataset and print its result.
    ///
    /// JSON output is the agent's value (a struct as an object, with job
    /// metadata under `_meta`; any other value under `value`, beside
    /// `_meta`).
    Run(run::RunArgs),
    /// Run a program over records that keep arriving (`--input NAME=-`
    /// for standard input, `NAME=follow:PATH` for a file that grows,
    /// `NAME=dir:PATH` for a directory files are renamed into): one
    /// NDJSON line per epoch, `{"epoch", "records", "value", "_meta"}`,
    /// the value over every record so far (docs/STREAMING.md). One
    /// worker; `--format` is ignored; Ctrl-C ends it after its epoch.
    Stream(run::StreamArgs),
    /// Check an attestation bundle offline: the signed dataset commitment,
    /// every proof, every attested output, the audit checkpoint and the
    /// job's entries in it. Exit 0 if everything checks, 4 otherwise,
    /// naming what failed.
    Verify {
        /// The bundle (`symbi run --bundle`).
        bundle: PathBuf,
        #[command(flatten)]
        trust: symbiont_verify::Trust,
        /// The program the job ran: re-plans the statement and compares.
        #[arg(long, value_name = "FILE")]
        program: Option<PathBuf>,
        /// The ceremony the key came from: snarkjs verifies every
        /// contribution for the bundle's circuit; its final key must be
        /// the bundle's.
        #[arg(long, value_name = "DIR")]
        ceremony: Option<PathBuf>,
        /// With --ceremony: the id of a contribution that must be in it
        /// (yours); each phase must hold one.
        #[arg(long, value_name = "ID", requires = "ceremony")]
        contribution: Vec<String>,
        /// `human` (one line per check) or `json`.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// A multi-party Groth16 setup, run with snarkjs, for the statement
    /// a program attests: sound if any one contributor is honest.
    Ceremony {
        #[command(subcommand)]
        command: CeremonyCommand,
    },
    /// Proofs of a bundle for other tools.
    Proof {
        #[command(subcommand)]
        command: ProofCommand,
    },
    /// Sign the approval request of a suspended job, as an approver: the
    /// result resumes it with `symbi run --override-approval FILE`.
    Approve {
        /// The request the suspended job wrote.
        request: PathBuf,
        /// The approver's name, as the keystore's owner added them.
        #[arg(long)]
        approver: String,
        /// Why the violations are acceptable (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// How long the approval is valid, e.g. `1h`, `7days`.
        #[arg(long, default_value = "24h")]
        expires: humantime::Duration,
        /// The approver's signing key (`symbi keys add-approver --key-out`).
        #[arg(long, value_name = "PATH")]
        key: PathBuf,
        /// The approval file to create.
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Evaluate policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Inspect and verify audit logs, offline.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage the keystore: master key, data keys, audit signing key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run commands in a sandbox tier; say which tiers this host provides.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Show the operator graph a program compiles to.
    Explain {
        /// The program.
        file: PathBuf,
        /// `text`, `json`, `dot`, or `svg` (needs graphviz `dot`).
        #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
        format: ExplainFormat,
        /// The entry agent, when several take a `Stream<T>`.
        #[arg(long)]
        agent: Option<String>,
        /// What the job would read: a `file`, a `store` (`--input NAME=DIR`,
        /// restricted records AES-sealed) or its `tfhe` copy (`--input
        /// NAME=tfhe:DIR`, the programmable path). The restricted lane's
        /// nodes say which path each aggregate takes.
        #[arg(long, value_enum, default_value_t = ExplainInput::File)]
        input_kind: ExplainInput,
    },
    /// Sample datasets.
    Datasets {
        #[command(subcommand)]
        command: DatasetsCommand,
    },
    /// Format programs in place (or check that they are formatted).
    ///
    /// `-` formats standard input to standard output. With `--check`,
    /// nothing is written and the exit code is 1 if a file would change.
    Fmt {
        /// Report files that are not formatted instead of rewriting them.
        #[arg(long)]
        check: bool,
        /// How to print diagnostics: `human` on stderr, `json` on stdout.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Program files (`.symbi`), or `-` for standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Decide one action under the policies of a program file: prints the
    /// decision and the rules that determined it; exit 0 allow, 2 deny.
    Eval(EvalArgs),
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// A `.symbi` file defining policies.
    #[arg(long)]
    policy: PathBuf,
    /// Only these policies (in this precedence order); default: all of
    /// the file's, in file order.
    #[arg(long, value_name = "NAME")]
    name: Vec<String>,
    /// The action, e.g. `export`.
    #[arg(long)]
    action: String,
    /// An attribute of the principal.
    #[arg(long, value_name = "KEY=VALUE")]
    principal: Vec<String>,
    /// An attribute of the resource.
    #[arg(long, value_name = "KEY=VALUE")]
    resource: Vec<String>,
    /// An attribute of the record (`class=restricted`).
    #[arg(long, value_name = "KEY=VALUE")]
    record: Vec<String>,
    /// `human` or `json`.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the log's entries.
    Show {
        /// The log (default: `$XDG_STATE_HOME/symbiont/audit.log`).
        #[arg(long, value_name = "PATH")]
        log: Option<PathBuf>,
        /// Only entries from this sequence number on.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// `human`, or `json` (a list of entries).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Verify checksums, the hash chain, and every checkpoint's root and
    /// signature; exit 4 naming the first bad entry.
    Verify {
        /// The log (default: `$XDG_STATE_HOME/symbiont/audit.log`).
        #[arg(long, value_name = "PATH")]
        log: Option<PathBuf>,
        /// The signer's public key (default: the local key's `.pub`).
        #[arg(long, value_name = "PATH")]
        pubkey: Option<PathBuf>,
        /// A checkpoint kept from an earlier look (`--save-checkpoint`): the
        /// log must extend it; exit 4 if it was cut back or rewritten.
        #[arg(long, value_name = "FILE")]
        trusted_checkpoint: Option<PathBuf>,
        /// Write the latest checkpoint to FILE (new), to keep.
        #[arg(long, value_name = "FILE")]
        save_checkpoint: Option<PathBuf>,
        /// `human` or `json`.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print an inclusion proof of an entry against the latest checkpoint.
    Prove {
        /// The entry's sequence number.
        entry: u64,
        /// The log (default: `$XDG_STATE_HOME/symbiont/audit.log`).
        #[arg(long, value_name = "PATH")]
        log: Option<PathBuf>,
        /// The signer's public key (default: the local key's `.pub`).
        #[arg(long, value_name = "PATH")]
        pubkey: Option<PathBuf>,
    },
    /// Print a consistency proof from the checkpoint of size OLD_SIZE to
    /// the latest checkpoint.
    Consistency {
        /// The size of an earlier checkpoint.
        old_size: u64,
        /// The log (default: `$XDG_STATE_HOME/symbiont/audit.log`).
        #[arg(long, value_name = "PATH")]
        log: Option<PathBuf>,
        /// The signer's public key (default: the local key's `.pub`).
        #[arg(long, value_name = "PATH")]
        pubkey: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SandboxCommand {
    /// Run CMD in a sandbox of tier N, with a busybox userland: exit with
    /// its code (125 if the sandbox could not be set up, 128+N if signal
    /// N killed it, 137 for the memory limit, 124 for the timeout).
    Run {
        /// The tier: 1 native (namespaces, seccomp, Landlock, cgroups), 2
        /// gVisor (runsc), 3 microVM (QEMU microvm: KVM where the CPU has
        /// hardware virtualization and /dev/kvm opens, TCG otherwise;
        /// SYMBIONT_QEMU_ACCEL overrides).
        #[arg(long, default_value_t = 1)]
        tier: u8,
        /// Memory limit, MiB.
        #[arg(long, default_value_t = 256)]
        memory_mib: u64,
        /// Process and thread limit.
        #[arg(long, default_value_t = 64)]
        pids: u64,
        /// Wall-time limit, e.g. `30s`.
        #[arg(long, default_value = "60s")]
        timeout: humantime::Duration,
        /// Bind the host file HOST read-only at the absolute path INSIDE
        /// of the sandbox root (copied into the microVM in tier 3), e.g.
        /// a statically linked tool. Repeatable.
        #[arg(long, value_name = "HOST:INSIDE")]
        bind: Vec<String>,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// List each tier, whether this host supports it, and why not.
    Doctor {
        /// `human` or `json`.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a keystore: a master key (sealed under a passphrase with
    /// Argon2id if one is given), the audit signing key, and the homomorphic
    /// lane's TFHE key pair in `tfhe/` (docs/FHE.md). The
    /// directory is made mode 0700; one others can enter is refused.
    Init {
        /// The keystore directory (default: `$XDG_DATA_HOME/symbiont`).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Seal the master key under the passphrase in this variable.
        #[arg(long, value_name = "VAR")]
        passphrase_env: Option<String>,
        /// The audit log the key event goes to (default: the default log,
        /// when the keystore is the default one).
        #[arg(long, value_name = "PATH")]
        audit_log: Option<PathBuf>,
    },
    /// Re-wrap every data key under a new master key, then delete the old
    /// one. Data is not re-encrypted; a crash leaves the old or the new
    /// state, never a mix.
    Rotate {
        /// The keystore directory (default: `$XDG_DATA_HOME/symbiont`).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The variable holding the current passphrase, if sealed.
        #[arg(long, value_name = "VAR")]
        passphrase_env: Option<String>,
        /// Seal the new master key under the passphrase in this variable
        /// (without it, a sealed master key is resealed under the current
        /// passphrase, and an unsealed one stays unsealed).
        #[arg(long, value_name = "VAR")]
        new_passphrase_env: Option<String>,
        /// Replace the programmable path's TFHE keys instead, with a fresh
        /// decryption budget (docs/FHE.md); persist stored TFHE copies again.
        #[arg(long)]
        programmable: bool,
        /// The audit log the key event goes to (default: the default log,
        /// when the keystore is the default one).
        #[arg(long, value_name = "PATH")]
        audit_log: Option<PathBuf>,
    },
    /// List the keys: ids, creation times, datasets; never key bytes.
    List {
        /// The keystore directory (default: `$XDG_DATA_HOME/symbiont`).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// `human` or `json`.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Trust approver NAME's key (`approvers/NAME.pub`): the public key
    /// they made, or a new key written to --key-out for them to keep.
    /// Private keys are never kept in the keystore.
    AddApprover(keys::AddApprover),
    /// Issue principal NAME a credential with KEY=VALUE attributes, signed
    /// by the keystore's issuer key; `symbi run --principal FILE` uses it.
    IssuePrincipal(keys::IssuePrincipal),
    /// Write one data key (hex) to a new file of mode 0600, for escrow or
    /// for another tool to decrypt with.
    ExportDataKey {
        /// The data key id (see `symbi keys list`).
        id: String,
        /// The file to create.
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// The keystore directory (default: `$XDG_DATA_HOME/symbiont`).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The variable holding the passphrase, if sealed.
        #[arg(long, value_name = "VAR")]
        passphrase_env: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DatasetsCommand {
    /// Bind a file to its policies and metadata in the keystore, by its
    /// content: a job over those bytes, under any name, answers to them.
    Bind(keys::Bind),
    /// Generate a deterministic dataset as CSV (streaming, constant memory).
    Generate {
        /// Which dataset: `patients` (the schema of examples/data/patients.csv).
        #[arg(value_parser = ["patients"])]
        kind: String,
        /// Number of rows.
        #[arg(long)]
        rows: u64,
        /// Seed: the same seed gives the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write here instead of to stdout.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AesBackend {
    Ring,
    AesGcm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RunFormat {
    Json,
    Table,
}

#[derive(Debug, Subcommand)]
enum CeremonyCommand {
    /// Start a ceremony in DIR (which must not exist) for the statement of
    /// the program's `prove(...)` fields: its circuit and a powers of tau.
    New {
        /// The program.
        file: PathBuf,
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The entry agent (default: the program's only agent).
        #[arg(long)]
        agent: Option<String>,
        /// Records per chunk (default: what `symbi run --bundle` uses).
        #[arg(long, value_name = "N")]
        chunk_records: Option<usize>,
    },
    /// Add a contribution to phase 1 (powers of tau) or 2 (the circuit's;
    /// its first prepares it) and print its id: keep it, and check it
    /// with `symbi verify --contribution`.
    Contribute {
        dir: PathBuf,
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
        phase: u8,
        /// The contributor's name, recorded in the transcript.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProofCommand {
    /// Write one chunk's proof, public inputs and verifying key in another
    /// tool's format: `snarkjs` (`proof.json`, `public.json`,
    /// `verification_key.json`; check with `snarkjs groth16 verify
    /// verification_key.json public.json proof.json`).
    Export {
        /// The bundle.
        bundle: PathBuf,
        /// The format.
        #[arg(long, value_enum, default_value_t = ProofFormat::Snarkjs)]
        format: ProofFormat,
        /// The directory to write (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Which chunk's proof.
        #[arg(long, default_value_t = 0)]
        chunk: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProofFormat {
    Snarkjs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ExplainFormat {
    Text,
    Json,
    Dot,
    Svg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExplainInput {
    File,
    Store,
    Tfhe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    // Re-executed as a sandbox's init: nothing else may run first (init
    // must still be single-threaded when it unshares its namespaces).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(symbiont_sandbox::INIT_ARG))
    {
        symbiont_sandbox::init_main();
    }
    // Started as a stage worker: that worker runs and exits.
    symbiont_engine::stage::worker_if_asked();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let outcome = match cli.command {
        Command::Check {
            syntax_only,
            format,
            files,
        } => run_check(&files, syntax_only, format),
        Command::Fmt {
            check,
            format,
            files,
        } => run_fmt(&files, check, format),
        Command::Run(args) => run::run(&args),
        Command::Stream(args) => run::stream(&args),
        Command::Approve {
            request,
            approver,
            reason,
            expires,
            key,
            out,
        } => approve::approve(&request, &approver, &key, &reason, expires.into(), &out),
        Command::Policy {
            command: PolicyCommand::Eval(args),
        } => run::policy_eval(&args),
        Command::Audit { command } => run_audit(command),
        Command::Verify {
            bundle,
            trust,
            program,
            ceremony,
            contribution,
            format,
        } => attest::verify(
            &bundle,
            &trust,
            (program.as_deref(), ceremony.as_deref(), &contribution),
            format == Format::Json,
        ),
        Command::Ceremony { command } => attest::ceremony(command),
        Command::Proof {
            command:
                ProofCommand::Export {
                    bundle,
                    format: ProofFormat::Snarkjs,
                    out,
                    chunk,
                },
        } => attest::export(&bundle, &out, chunk),
        Command::Keys { command } => run_keys(command),
        Command::Sandbox { command } => run_sandbox(command),
        Command::Explain {
            file,
            format,
            agent,
            input_kind,
        } => run::explain(&file, format, agent.as_deref(), input_kind),
        Command::Datasets {
            command: DatasetsCommand::Bind(args),
        } => keys::bind(&args),
        Command::Datasets {
            command:
                DatasetsCommand::Generate {
                    kind: _,
                    rows,
                    seed,
                    out,
                },
        } => symbiont_engine::write_patients(rows, seed, out.as_deref()).map(|()| exit::OK),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("symbi: error: {e:#}");
            ExitCode::from(exit::RUNTIME)
        }
    }
}

fn log_path(log: Option<PathBuf>) -> Result<PathBuf> {
    match log {
        Some(p) => Ok(p),
        None => symbiont_engine::homes::audit_log(),
    }
}

fn run_sandbox(command: SandboxCommand) -> Result<u8> {
    match command {
        SandboxCommand::Run {
            tier,
            memory_mib,
            pids,
            timeout,
            bind,
            command,
        } => {
            let Some(tier) = symbiont_sandbox::Tier::from_number(tier) else {
                eprintln!("symbi: usage error: --tier is 1, 2 or 3");
                return Ok(exit::USAGE);
            };
            let mut binds = Vec::new();
            for b in &bind {
                let Some(pair) = symbiont_sandbox::parse_bind(b) else {
                    eprintln!(
                        "symbi: usage error: --bind takes HOST:INSIDE, an existing host file and an absolute path without `..`, got `{b}`"
                    );
                    return Ok(exit::USAGE);
                };
                binds.push(pair);
            }
            let limits = symbiont_sandbox::Limits {
                memory_bytes: memory_mib << 20,
                pids,
                timeout: timeout.into(),
                ..Default::default()
            };
            let init = symbiont_engine::StageBinaries::this_binary()?.init;
            let report = symbiont_sandbox::run_binding(tier, &init, &command, &limits, binds)?;
            let (code, said) = report.exit_status(&limits);
            said.iter().for_each(|s| eprintln!("symbi: sandbox: {s}"));
            Ok(u8::try_from(code).unwrap_or(exit::RUNTIME))
        }
        SandboxCommand::Doctor { format } => {
            let tiers = symbiont_sandbox::doctor();
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&tiers)?);
            } else {
                tiers.iter().for_each(|t| print!("{t}"));
            }
            Ok(exit::OK)
        }
    }
}

fn run_keys(command: KeysCommand) -> Result<u8> {
    let audit_to = |log| audit::AuditArgs { log, key: None };
    match command {
        KeysCommand::Init {
            dir,
            passphrase_env,
            audit_log,
        } => keys::init(
            dir.as_deref(),
            passphrase_env.as_deref(),
            &audit_to(audit_log),
        ),
        KeysCommand::Rotate {
            dir,
            passphrase_env,
            new_passphrase_env,
            programmable,
            audit_log,
        } => keys::rotate(
            dir.as_deref(),
            passphrase_env.as_deref(),
            new_passphrase_env.as_deref(),
            programmable,
            &audit_to(audit_log),
        ),
        KeysCommand::List { dir, format } => keys::list(dir.as_deref(), format == Format::Json),
        KeysCommand::AddApprover(args) => keys::add_approver(&args),
        KeysCommand::IssuePrincipal(args) => keys::issue_principal(&args),
        KeysCommand::ExportDataKey {
            id,
            out,
            dir,
            passphrase_env,
        } => keys::export_data_key(dir.as_deref(), passphrase_env.as_deref(), &id, &out),
    }
}

fn run_audit(command: AuditCommand) -> Result<u8> {
    match command {
        AuditCommand::Show { log, since, format } => {
            audit::show(&log_path(log)?, since, format == Format::Json)
        }
        AuditCommand::Verify {
            log,
            pubkey,
            trusted_checkpoint,
            save_checkpoint,
            format,
        } => audit::run_verify(
            &log_path(log)?,
            pubkey.as_deref(),
            trusted_checkpoint.as_deref(),
            save_checkpoint.as_deref(),
            format == Format::Json,
        ),
        AuditCommand::Prove { entry, log, pubkey } => {
            audit::prove(&log_path(log)?, entry, pubkey.as_deref())
        }
        AuditCommand::Consistency {
            old_size,
            log,
            pubkey,
        } => audit::consistency(&log_path(log)?, old_size, pubkey.as_deref()),
    }
}

/// Prints one file's diagnostics: human-readable on stderr, or collected
/// into `json` for stdout.
pub(crate) struct Reporter {
    format: Format,
    color: bool,
    json: Vec<serde_json::Value>,
}

impl Reporter {
    pub(crate) fn new(format: Format) -> Reporter {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Reporter {
            format,
            color,
            json: Vec::new(),
        }
    }

    pub(crate) fn report(&mut self, file: &SourceFile, diagnostics: &[Diagnostic]) {
        match self.format {
            Format::Human => eprint!("{}", file.render(diagnostics, self.color)),
            Format::Json => self.json.extend(file.to_json(diagnostics)),
        }
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.format == Format::Json {
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, &self.json)?;
            writeln!(stdout)?;
        }
        Ok(())
    }
}

pub(crate) fn read_source(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub(crate) fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}

fn run_check(files: &[PathBuf], syntax_only: bool, format: Format) -> Result<u8> {
    let mut reporter = Reporter::new(format);
    let (mut invalid, mut denied) = (false, false);
    for path in files {
        let parsed = parse_bytes(&read_source(path)?);
        let mut diagnostics = parsed.diagnostics;
        if let (Some(program), false) = (&parsed.program, syntax_only) {
            diagnostics = check(program);
            // Policies are decided on programs that are otherwise valid.
            if diagnostics.is_empty() {
                diagnostics = symbiont_dsl::check_policies(program);
            }
        }
        invalid |= diagnostics.iter().any(|d| !d.code.is_policy());
        denied |= diagnostics.iter().any(|d| d.code.is_policy());
        reporter.report(
            &SourceFile::new(display_name(path), parsed.text),
            &diagnostics,
        );
    }
    reporter.finish()?;
    Ok(if invalid {
        exit::INVALID_PROGRAM
    } else if denied {
        exit::POLICY_DENIED
    } else {
        exit::OK
    })
}

fn run_fmt(files: &[PathBuf], check_only: bool, format: Format) -> Result<u8> {
    let mut reporter = Reporter::new(format);
    let mut invalid = false;
    let mut unformatted = false;
    for path in files {
        let parsed = parse_bytes(&read_source(path)?);
        let name = display_name(path);
        let Some(program) = &parsed.program else {
            invalid = true;
            reporter.report(&SourceFile::new(name, parsed.text), &parsed.diagnostics);
            continue;
        };
        let formatted = format_program(program, Some(&parsed.text));
        // Never write a layout that means something else.
        let reparsed = symbiont_dsl::parse(&formatted).0;
        anyhow::ensure!(
            reparsed.is_some_and(|p| p.shape() == program.shape()),
            "formatting {name} would change its meaning; the file was left as it was \
             (this is a bug in symbi fmt, please report it with the file)"
        );
        if path == Path::new("-") {
            if check_only {
                unformatted |= formatted != parsed.text;
            } else {
                std::io::stdout().write_all(formatted.as_bytes())?;
            }
        } else if formatted != parsed.text {
            if check_only {
                eprintln!("{name}: not formatted (run `symbi fmt {name}`)");
                unformatted = true;
            } else {
                symbiont_engine::write_whole(path, formatted.as_bytes())?;
            }
        }
    }
    reporter.finish()?;
    Ok(if invalid {
        exit::INVALID_PROGRAM
    } else if unformatted {
        exit::RUNTIME
    } else {
        exit::OK
    })
}

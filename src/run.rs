//! The `run`, `explain` and `datasets` verbs.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use symbiont_crypto::{ApprovalRequest, EntryKind};
use symbiont_dsl::ast::Program;
use symbiont_dsl::{Diagnostic, SourceFile, check, lower_query, parse_bytes};
use symbiont_engine::{JobConfig, JobOutput, LaneKeys, OnError, run_batch};

use symbiont_operators::{
    Attributes, CompiledPolicies, Effect, InputKind, Lane, Plan, PolicyValue, Query,
};

use crate::{ExplainFormat, Format, Reporter, audit, display_name, enforce, exit, read_source};

pub(crate) enum Output {
    Json,
    Table,
}

pub(crate) struct RunArgs {
    pub(crate) file: PathBuf,
    pub(crate) inputs: Vec<String>,
    pub(crate) format: Output,
    pub(crate) out: Option<PathBuf>,
    pub(crate) workers: Option<usize>,
    pub(crate) on_error: String,
    pub(crate) agent: Option<String>,
    pub(crate) audit: crate::audit::AuditArgs,
    pub(crate) keystore: Option<PathBuf>,
    pub(crate) passphrase_env: Option<String>,
    pub(crate) dataset_id: Option<String>,
    pub(crate) persist_encrypted: Option<PathBuf>,
    pub(crate) aes_backend: symbiont_crypto::Backend,
    pub(crate) principal: Vec<String>,
    pub(crate) resource: Vec<String>,
    pub(crate) override_approval: Option<PathBuf>,
    pub(crate) stage_limits: symbiont_sandbox::Limits,
    pub(crate) bundle: Option<PathBuf>,
}

type Attrs = BTreeMap<String, PolicyValue>;

/// The principal's and the resource's attributes, or (after reporting the
/// usage error) the exit code.
fn both_attributes(
    principal: &[String],
    resource: &[String],
) -> Result<std::result::Result<(Attrs, Attrs), u8>> {
    match (attributes(principal), attributes(resource)) {
        (Ok(p), Ok(r)) => Ok(Ok((p, r))),
        (Err(bad), _) | (_, Err(bad)) => {
            usage(format_args!("attributes are KEY=VALUE, got `{bad}`")).map(Err)
        }
    }
}

/// Parses `KEY=VALUE` attributes; the bad one on error.
pub(crate) fn attributes(
    pairs: &[String],
) -> std::result::Result<BTreeMap<String, PolicyValue>, String> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), PolicyValue::parse(v))),
            _ => Err(p.clone()),
        })
        .collect()
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

/// Where a dataset's own policies are: `PATH.policy.symbi` beside a file,
/// `policy.symbi` inside an encrypted dataset directory.
pub(crate) fn dataset_policy_file(input: &Path) -> PathBuf {
    if symbiont_operators::is_store(input) {
        input.join("policy.symbi")
    } else {
        let mut name = input.as_os_str().to_owned();
        name.push(".policy.symbi");
        PathBuf::from(name)
    }
}

/// Where a dataset's metadata is: `PATH.meta.json` beside a file,
/// `meta.json` inside an encrypted dataset directory.
pub(crate) fn dataset_meta_file(input: &Path) -> PathBuf {
    if symbiont_operators::is_store(input) {
        input.join("meta.json")
    } else {
        let mut name = input.as_os_str().to_owned();
        name.push(".meta.json");
        PathBuf::from(name)
    }
}

/// The attributes a dataset carries (`{"attributes": {"retention_period":
/// "30.days", "geographic_restriction": "EU"}}`), for policy conditions.
fn dataset_metadata(input: &Path) -> Result<Option<(PathBuf, Attrs)>> {
    let file = dataset_meta_file(input);
    if !file.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", file.display()))?;
    let Some(attributes) = json.get("attributes").and_then(|a| a.as_object()) else {
        anyhow::bail!(
            "{}: dataset metadata is {{\"attributes\": {{NAME: VALUE, ...}}}}",
            file.display()
        );
    };
    let mut out = Attrs::new();
    for (k, v) in attributes {
        let value = match v {
            serde_json::Value::String(s) => PolicyValue::parse(s),
            serde_json::Value::Number(n) => PolicyValue::Num(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::Bool(b) => PolicyValue::Bool(*b),
            _ => anyhow::bail!(
                "{}: attribute `{k}` must be a string, a number or a boolean",
                file.display()
            ),
        };
        out.insert(k.clone(), value);
    }
    Ok(Some((file, out)))
}

/// A dataset's policy file and its policies.
type DatasetPolicies = (PathBuf, Vec<symbiont_operators::Policy>);

/// The policies `input` carries, if it carries any: every policy of its
/// policy file, named `dataset:NAME`, in the order written (after those
/// each extends). A file that is not a valid policy-only program is
/// reported, and its exit code returned.
fn dataset_policies(input: &Path) -> Result<std::result::Result<Option<DatasetPolicies>, u8>> {
    let file = dataset_policy_file(input);
    if !file.exists() {
        return Ok(Ok(None));
    }
    let f = match ProgramFile::open(&file)? {
        Ok(f) => f,
        Err(code) => return Ok(Err(code)),
    };
    let mut diagnostics = check(&f.program);
    diagnostics.extend(symbiont_dsl::check_policies(&f.program));
    for item in &f.program.items {
        if !matches!(item, symbiont_dsl::ast::Item::Policy(_)) {
            diagnostics.push(Diagnostic::error(
                symbiont_dsl::Code::E0301,
                item.span(),
                "a dataset's policy file holds only `policy` definitions",
            ));
        }
    }
    if !diagnostics.is_empty() {
        f.report(&diagnostics)?;
        return Ok(Err(exit::INVALID_PROGRAM));
    }
    let defined = symbiont_dsl::policies(&f.program).map_err(|_| anyhow::anyhow!("invalid"))?;
    let names: Vec<String> = f
        .program
        .items
        .iter()
        .filter_map(|i| match i {
            symbiont_dsl::ast::Item::Policy(p) => Some(p.name.name.clone()),
            _ => None,
        })
        .collect();
    let policies = symbiont_dsl::with_ancestors(&f.program, &names)
        .iter()
        .filter_map(|n| defined.get(n))
        .map(|p| symbiont_operators::Policy {
            name: format!("dataset:{}", p.name),
            ..p.clone()
        })
        .collect();
    Ok(Ok(Some((file, policies))))
}

/// Parses, checks (types and policies) and lowers `file`; on failure prints
/// its diagnostics and returns the exit code.
fn load(file: &Path, agent: Option<&str>) -> Result<std::result::Result<Loaded, u8>> {
    let ProgramFile { program, source } = match ProgramFile::open(file)? {
        Ok(f) => f,
        Err(code) => return Ok(Err(code)),
    };
    let report = |diagnostics: &[Diagnostic]| report(&source, diagnostics);
    let diagnostics = check(&program);
    if !diagnostics.is_empty() {
        report(&diagnostics)?;
        return Ok(Err(exit::INVALID_PROGRAM));
    }
    // Static policy enforcement: nothing runs that a policy denies.
    let denials = symbiont_dsl::check_policies(&program);
    if !denials.is_empty() {
        report(&denials)?;
        let policy = denials.iter().all(|d| d.code.is_policy());
        return Ok(Err(if policy {
            exit::POLICY_DENIED
        } else {
            exit::INVALID_PROGRAM
        }));
    }
    match lower_query(&program, source.text(), agent) {
        Ok(query) => Ok(Ok(Loaded {
            program_sha256: audit::digest(source.text().as_bytes()),
            program,
            source,
            query,
        })),
        Err(d) => {
            report(&[d])?;
            Ok(Err(exit::INVALID_PROGRAM))
        }
    }
}

pub(crate) fn run(args: &RunArgs) -> Result<u8> {
    let Loaded {
        program,
        source,
        mut query,
        program_sha256,
    } = match load(&args.file, args.agent.as_deref())? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let (principal, mut resource) = match both_attributes(&args.principal, &args.resource)? {
        Ok(both) => both,
        Err(code) => return Ok(code),
    };
    let mut input = None;
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
        // `tfhe:DIR`: a stored dataset's restricted records from their
        // TFHE copy (the programmable path).
        input = Some(match path.strip_prefix("tfhe:") {
            Some(dir) => (PathBuf::from(dir), true),
            None => (PathBuf::from(path), false),
        });
    }
    let Some((input, tfhe_input)) = input else {
        return usage(format_args!(
            "bind the input with --input {}=PATH",
            query.input
        ));
    };
    if tfhe_input && !symbiont_operators::is_store(&input) {
        return usage(format_args!(
            "--input {}=tfhe:{}: not a dataset written by --persist-encrypted",
            query.input,
            input.display()
        ));
    }
    // The programmable path's spec: refused here, before anything runs,
    // if an aggregate cannot be evaluated under encryption.
    let programmable = if tfhe_input {
        match symbiont_operators::compile(&query) {
            Ok(c) => Some(c),
            Err(why) => {
                eprintln!("symbi: error: {why}");
                return Ok(exit::RUNTIME);
            }
        }
    } else {
        None
    };
    // What `--bundle` attests, decided before anything runs.
    let planned = match &args.bundle {
        None => None,
        Some(_) if symbiont_operators::is_store(&input) => {
            return usage(
                "--bundle: attestation commits to the plaintext at ingestion, so it reads a file input, not a stored dataset",
            );
        }
        Some(_) => match crate::attest::plan(&query) {
            Ok(p) => Some(p),
            Err(why) => {
                eprintln!("symbi: error: --bundle: {why}");
                return Ok(exit::RUNTIME);
            }
        },
    };
    if let Some(dest) = args.persist_encrypted.as_ref().filter(|d| d.exists()) {
        return usage(format_args!(
            "--persist-encrypted {}: it exists; give a new directory",
            dest.display()
        ));
    }
    // The dataset's metadata: its attributes hold; a `--resource` that
    // says otherwise is refused, not silently overridden.
    let dataset_meta = dataset_metadata(&input)?;
    if let Some((file, attributes)) = &dataset_meta {
        for (k, v) in attributes {
            match resource.get(k) {
                Some(given) if given != v => {
                    return usage(format_args!(
                        "--resource {k}={given} contradicts the dataset's metadata ({k} = {v} in {})",
                        file.display()
                    ));
                }
                _ => {
                    resource.insert(k.clone(), v.clone());
                }
            }
        }
    }
    // The dataset's own policies apply to every action, first; their
    // allow, deny and requirements are decided before anything runs.
    let (dataset_policy_path, dataset_policies) = match dataset_policies(&input)? {
        Ok(Some((file, policies))) => (Some(file), policies),
        Ok(None) => (None, Vec::new()),
        Err(code) => return Ok(code),
    };
    if let Some(file) = &dataset_policy_path {
        let denials = symbiont_dsl::check_policies_with(
            &program,
            &dataset_policies,
            &file.display().to_string(),
        );
        if !denials.is_empty() {
            report(&source, &denials)?;
            return Ok(exit::POLICY_DENIED);
        }
        if let Some(lane) = symbiont_dsl::forced_lane(&dataset_policies) {
            query.min_lane = query.min_lane.max(lane);
        }
        query
            .tier_requirements
            .extend(symbiont_dsl::required_tiers(&dataset_policies));
    }
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
    let keystore_dir = crate::keys::dir_or_default(args.keystore.as_deref())?;
    // The audit log keeps its own key (--audit-key, or the default
    // keystore's) whichever keystore seals the data.
    let mut log = args.audit.open()?;
    let stored = symbiont_operators::is_store(&input);
    let dataset = if stored {
        // A persisted dataset keeps the id it was sealed under.
        match symbiont_operators::StoreReader::open(&input, &query.schema) {
            Ok(store) => store.manifest().dataset.clone(),
            Err(e) => {
                eprintln!("symbi: error: {e}");
                return Ok(exit::RUNTIME);
            }
        }
    } else {
        match &args.dataset_id {
            Some(id) => id.clone(),
            None => std::fs::canonicalize(&input)
                .unwrap_or_else(|_| input.clone())
                .display()
                .to_string(),
        }
    };
    // Every stage runs in the tier the risk table gives it; one the host
    // cannot provide fails the job here, before it starts.
    let input_kind = match (stored, tfhe_input) {
        (false, _) => InputKind::File,
        (true, false) => InputKind::Store,
        (true, true) => InputKind::StoreTfhe,
    };
    let plan = Plan::for_job(&query, None, input_kind);
    let needs_keys = query.classifier.is_some()
        || query.min_lane != Lane::Plaintext
        || stored
        || args.persist_encrypted.is_some()
        // Public records cross into a sandbox sealed.
        || plan.aggregate_tier(Lane::Plaintext) > 0;
    let stage_tiers = match crate::stage::plan_tiers(&plan, needs_keys) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("symbi: error: {why}");
            return Ok(exit::RUNTIME);
        }
    };
    let (keys, keystore) = if needs_keys {
        let (keys, ks) = lane_keys(&query, &keystore_dir, args, &dataset, &mut log)?;
        (keys, Some(ks))
    } else {
        (LaneKeys::default(), None)
    };
    let job = log.append(
        EntryKind::JobStart,
        serde_json::json!({
            "program": args.file.display().to_string(),
            "program_sha256": program_sha256,
            "agent": query.agent,
            "input": input.display().to_string(),
            "dataset": dataset,
            "policies": query.policies,
            "dataset_metadata": dataset_meta.as_ref().map(|(f, _)| serde_json::json!({
                "file": f.display().to_string(),
                "sha256": audit::file_digest(f).unwrap_or_default(),
            })),
            "dataset_policies": dataset_policy_path.as_ref().map(|f| serde_json::json!({
                "file": f.display().to_string(),
                "sha256": audit::file_digest(f).unwrap_or_default(),
                "names": dataset_policies.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            })),
            "workers": workers,
        }),
    )?;
    let decision = match enforce::decide(
        &program,
        &query,
        &dataset_policies,
        &principal,
        &resource,
        &mut log,
        job,
    ) {
        Ok(d) => d,
        Err(e) => {
            log.append(
                EntryKind::JobEnd,
                serde_json::json!({"job": job, "status": "error", "error": format!("{e:#}")}),
            )?;
            log.checkpoint()?;
            return Err(e);
        }
    };
    let this_job = ApprovalRequest {
        program_sha256: program_sha256.clone(),
        agent: query.agent.clone(),
        dataset: dataset.clone(),
        overrides: Vec::new(),
    };
    let approved = match &args.override_approval {
        None => None,
        Some(path) => match enforce::load_approval(path, &keystore_dir, &this_job, &mut log, job) {
            Ok(a) => Some(a),
            Err(why) => {
                log.append(
                    EntryKind::JobEnd,
                    serde_json::json!({"job": job, "status": "denied", "error": why}),
                )?;
                log.checkpoint()?;
                eprintln!("symbi: the approval is refused: {why}");
                return Ok(exit::POLICY_DENIED);
            }
        },
    };
    let before = enforce::uncovered(&decision.before, approved.as_ref());
    if !before.is_empty() {
        enforce::suspend(
            &mut log,
            job,
            serde_json::json!("start"),
            ApprovalRequest {
                overrides: before,
                ..this_job
            },
        )?;
        return Ok(exit::POLICY_DENIED);
    }
    // Ingestion: the attested fields committed to and the commitment
    // signed and logged, before any lane sees a record.
    let mut attesting = match planned {
        None => None,
        Some(planned) => {
            let key_path = match &args.audit.key {
                Some(k) => k.clone(),
                None => audit::default_key()?,
            };
            let (key, _) = audit::signing_key(&key_path)?;
            match crate::attest::commit(&query, planned, &input, &dataset, &key)? {
                Ok(mut a) => {
                    let entry =
                        log.append(EntryKind::DatasetCommitment, a.commitment_entry(job))?;
                    a.record_entry(job);
                    a.record_entry(entry);
                    Some(a)
                }
                Err(why) => {
                    eprintln!("symbi: error: --bundle: {why}");
                    log.append(
                        EntryKind::JobEnd,
                        serde_json::json!({"job": job, "status": "error", "error": why}),
                    )?;
                    log.checkpoint()?;
                    return Ok(exit::RUNTIME);
                }
            }
        }
    };
    let mut forbidden_lanes = [false; 3];
    for lane in Lane::ALL {
        forbidden_lanes[lane.index()] =
            !enforce::uncovered(&decision.by_lane[lane.index()], approved.as_ref()).is_empty();
    }
    let config = JobConfig {
        input,
        workers,
        on_error,
        progress: progress.clone(),
        keys,
        persist: args.persist_encrypted.clone(),
        forbidden_lanes,
        sealed_stage: match (stage_tiers, &keystore) {
            (Some(tiers), Some(ks)) => {
                let (init, worker) = stage_binaries()?;
                Some(Arc::new(crate::stage::SandboxedStage {
                    tiers,
                    keystore: Arc::clone(ks),
                    dataset: dataset.clone(),
                    init,
                    worker,
                    limits: args.stage_limits.clone(),
                }) as Arc<dyn symbiont_engine::SealedStage>)
            }
            _ => None,
        },
        homomorphic: match &keystore {
            Some(ks) if !stored && query.may_route(Lane::Homomorphic) => {
                Some(homomorphic_lane(ks, &plan, args)?)
            }
            _ => None,
        },
        // Restricted records are also kept as TFHE integer ciphertexts
        // for the programmable path (its keys made on first use).
        persist_tfhe: match (&keystore, &args.persist_encrypted) {
            (Some(ks), Some(_)) if !stored && query.may_route(Lane::Homomorphic) => {
                let (key, created) = ks.programmable_public_key()?;
                if created {
                    log.append(
                        EntryKind::KeyEvent,
                        serde_json::json!({"job": job, "event": "created", "key": "tfhe integer keys (programmable path)"}),
                    )?;
                }
                Some(Arc::new(key))
            }
            _ => None,
        },
        programmable: match (programmable, &keystore) {
            (Some(compiled), Some(ks)) => Some(programmable_lane(ks, compiled, &plan, args)?),
            _ => None,
        },
    };
    // Whatever happens, the job's end is recorded and checkpointed.
    let mut outcome = execute(
        &query,
        &plan,
        &config,
        args,
        &mut log,
        job,
        attesting.as_mut().map(|a| (a, keystore_dir.join("zk"))),
    );
    // The dataset's policies and metadata travel with its encrypted copy.
    if let (Ok(Ok(_)), Some(dest)) = (&outcome, &args.persist_encrypted) {
        let carried = [
            (dataset_policy_path.as_ref(), "policy.symbi"),
            (dataset_meta.as_ref().map(|(f, _)| f), "meta.json"),
        ];
        for (file, name) in carried {
            let Some(file) = file else { continue };
            let to = dest.join(name);
            if let Err(e) = std::fs::copy(file, &to) {
                let why = format!("cannot copy {} to {}: {e}", file.display(), to.display());
                eprintln!("symbi: error: {why}");
                outcome = Ok(Err(Failure::Error(why)));
            }
        }
    }
    for event in keystore.iter().flat_map(|ks| ks.created_data_keys()) {
        log.append(
            EntryKind::KeyEvent,
            serde_json::json!({"job": job, "event": "created", "key": "data key", "id": event.id, "dataset": event.dataset, "retired": event.retired}),
        )?;
    }
    if let Ok(Err(Failure::Suspended { lane, line })) = &outcome {
        let violations = enforce::uncovered(&decision.by_lane[lane.index()], approved.as_ref());
        enforce::suspend(
            &mut log,
            job,
            serde_json::json!({"op": "classify", "line": line, "class": lane.class()}),
            ApprovalRequest {
                overrides: violations,
                ..this_job
            },
        )?;
        eprintln!(
            "symbi: the first record classified {} is at {}:line {line}",
            lane.class(),
            config.input.display()
        );
        return Ok(exit::POLICY_DENIED);
    }
    let end = match &outcome {
        Ok(Ok(result_digest)) => {
            serde_json::json!({"job": job, "status": "ok", "result_sha256": result_digest})
        }
        Ok(Err(failure)) => {
            serde_json::json!({"job": job, "status": "error", "error": failure.to_string()})
        }
        Err(e) => serde_json::json!({"job": job, "status": "error", "error": format!("{e:#}")}),
    };
    let end = log.append(EntryKind::JobEnd, end)?;
    log.checkpoint()?;
    if let (Ok(Ok(_)), Some(a), Some(path)) = (&outcome, attesting.as_mut(), &args.bundle) {
        a.record_entry(end);
        let policy_sha256 = policy_digest(&program, dataset_policy_path.as_deref())?;
        a.write(
            path,
            &query,
            (&args.file.display().to_string(), &program_sha256),
            &policy_sha256,
            log.path(),
        )?;
        eprintln!("symbi: wrote the attestation bundle {}", path.display());
    }
    match outcome {
        Ok(Ok(_)) => Ok(exit::OK),
        Ok(Err(_)) => Ok(exit::RUNTIME),
        Err(e) => Err(e),
    }
}

/// SHA-256 over the policies a job answers to: the program's policy
/// declarations (their structure, not their layout) and the dataset's
/// policy file.
fn policy_digest(program: &Program, dataset_policies: Option<&Path>) -> Result<String> {
    let declared: Vec<serde_json::Value> = program
        .items
        .iter()
        .filter(|i| matches!(i, symbiont_dsl::ast::Item::Policy(_)))
        .map(serde_json::to_value)
        .collect::<std::result::Result<_, _>>()?;
    let file = match dataset_policies {
        Some(f) => Some(audit::file_digest(f)?),
        None => None,
    };
    let text = serde_json::json!({"program": declared, "dataset_policies": file}).to_string();
    Ok(audit::digest(text.as_bytes()))
}

/// The encrypted lanes' keys for `dataset`, from the keystore in `dir`.
fn lane_keys(
    query: &Query,
    dir: &std::path::Path,
    args: &RunArgs,
    dataset: &str,
    log: &mut symbiont_crypto::AuditLog,
) -> Result<(LaneKeys, Arc<symbiont_crypto::Keystore>)> {
    let ks = crate::keys::open_for_job(
        dir,
        args.keystore.is_none(),
        args.passphrase_env.as_deref(),
        log,
    )?;
    let ks = Arc::new(ks.with_backend(args.aes_backend));
    Ok((
        LaneKeys::for_dataset(Arc::clone(&ks), dataset, &query.schema)?,
        ks,
    ))
}

/// The sandbox init and the stage worker: the small `symbi-sandbox-init`
/// beside this binary if it is there (else this binary), and this binary.
fn stage_binaries() -> Result<(PathBuf, PathBuf)> {
    let worker = std::env::current_exe().context("cannot find the symbi binary")?;
    let small = worker.with_file_name("symbi-sandbox-init");
    let init = if small.exists() {
        small
    } else {
        worker.clone()
    };
    Ok((init, worker))
}

/// Where the homomorphic lane's compute stage runs: in the sandbox of the
/// tier the plan gives it, under `limits`; `None` in this process (tier 0).
fn compute_sandbox(
    plan: &Plan,
    limits: symbiont_sandbox::Limits,
) -> Result<Option<crate::stage::ComputeSandbox>> {
    match symbiont_sandbox::Tier::from_number(plan.aggregate_tier(Lane::Homomorphic)) {
        Some(tier) if tier as u8 > 0 => {
            let (init, worker) = stage_binaries()?;
            Ok(Some(crate::stage::ComputeSandbox {
                tier,
                init,
                worker,
                limits,
            }))
        }
        _ => Ok(None),
    }
}

/// The homomorphic lane's three roles for a job: the keystore's public key
/// for ingestion, the compute stage in the tier the plan gives it, and the
/// keystore as key holder.
fn homomorphic_lane(
    ks: &symbiont_crypto::Keystore,
    plan: &Plan,
    args: &RunArgs,
) -> Result<symbiont_engine::HomomorphicLane> {
    let public = ks.additive_public_key().with_context(|| {
        "the keystore has no TFHE keys for the homomorphic lane (a keystore made before it: create a new one with `symbi keys init`)"
    })?;
    let stage: Arc<dyn symbiont_engine::HomomorphicStage> =
        match compute_sandbox(plan, args.stage_limits.clone())? {
            Some(sandbox) => Arc::new(crate::stage::SandboxedReduce(sandbox)),
            None => Arc::new(symbiont_engine::InProcessReduce),
        };
    Ok(symbiont_engine::HomomorphicLane {
        sink: Arc::new(symbiont_operators::PackSink::new(public)),
        stage,
        key_holder: Arc::new(symbiont_engine::KeystoreHolder {
            dir: ks.dir().to_owned(),
        }),
    })
}

/// The programmable path's stages: the compute stage in the tier the plan
/// gives it, with the server key on its stdin; the keystore's key holder.
fn programmable_lane(
    ks: &symbiont_crypto::Keystore,
    compiled: symbiont_operators::Compiled,
    plan: &Plan,
    args: &RunArgs,
) -> Result<symbiont_engine::ProgrammableLane> {
    let dir = ks.dir().to_owned();
    let limits = crate::stage::evaluate_limits(&args.stage_limits);
    let stage: Arc<dyn symbiont_engine::ProgrammableStage> = match compute_sandbox(plan, limits)? {
        Some(sandbox) => Arc::new(crate::stage::SandboxedEvaluate {
            sandbox,
            keystore: dir.clone(),
        }),
        None => Arc::new(symbiont_engine::InProcessEvaluate { dir: dir.clone() }),
    };
    Ok(symbiont_engine::ProgrammableLane {
        compiled,
        stage,
        key_holder: Arc::new(symbiont_engine::KeystoreHolder { dir }),
    })
}

/// How a job that ran did not produce a result.
enum Failure {
    /// A job error (already reported).
    Error(String),
    /// A record of a forbidden class was seen.
    Suspended { lane: Lane, line: u64 },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(e) => f.write_str(e),
            Failure::Suspended { lane, line } => {
                write!(f, "suspended at line {line} ({})", lane.class())
            }
        }
    }
}

/// Runs the job, records its stages, and writes the result; returns the
/// result's digest, or the job's error (already reported). Job errors name
/// files, lines and fields, never values, so they can be audited.
fn execute(
    query: &Query,
    plan: &Plan,
    config: &JobConfig,
    args: &RunArgs,
    log: &mut symbiont_crypto::AuditLog,
    job: u64,
    attesting: Option<(&mut crate::attest::Attesting, PathBuf)>,
) -> Result<std::result::Result<String, Failure>> {
    let running: Vec<_> = plan.nodes.iter().filter(|n| n.status == "runs").collect();
    for node in &running {
        log.append(
            EntryKind::StageStart,
            serde_json::json!({"job": job, "stage": node.id, "op": node.op, "lane": node.lane, "tier": node.tier}),
        )?;
    }
    // The source stage's read digest is computed beside the job, not before.
    let digest_path = if symbiont_operators::is_store(&config.input) {
        config.input.join("batches.bin")
    } else {
        config.input.clone()
    };
    let digesting = std::thread::spawn(move || audit::file_digest(&digest_path));
    let bar = config.progress.clone().map(show_progress);
    let result = run_batch(query, config);
    let input_digest = digesting
        .join()
        .map_err(|_| anyhow::anyhow!("the input digest thread panicked"))??;
    if let Some((done, thread)) = bar {
        done.store(true, Ordering::Relaxed);
        let _ = thread.join();
    }
    let output = match result {
        Ok(output) => output,
        Err(symbiont_engine::JobError::Suspended { lane, line, .. }) => {
            return Ok(Err(Failure::Suspended { lane, line }));
        }
        Err(e) => {
            eprintln!("symbi: error: {e}");
            return Ok(Err(Failure::Error(e.to_string())));
        }
    };
    if let Some(symbiont_crypto::LockStatus::Unlocked(why)) = &output.memory_lock {
        eprintln!(
            "symbi: warning: decrypted batches could not be locked into RAM ({why}); they were still zeroized after use"
        );
    }
    // The prove stage: the result's attested fields, proved over the
    // committed chunks.
    let mut attested = None;
    if let Some((a, keys_dir)) = attesting {
        match a.prove(&keys_dir, &output.value)? {
            Ok(created) => {
                if created {
                    log.append(
                        EntryKind::KeyEvent,
                        serde_json::json!({"job": job, "event": "created", "key": "Groth16 keys (trusted setup on this machine)", "dir": keys_dir.display().to_string()}),
                    )?;
                }
                let entry = log.append(EntryKind::Proof, a.proof_entry(job))?;
                a.record_entry(entry);
                attested = Some(a.meta());
            }
            Err(why) => {
                eprintln!("symbi: error: {why}");
                return Ok(Err(Failure::Error(why)));
            }
        }
    }
    let text = match args.format {
        Output::Json => {
            let mut value = with_meta(&output, &running);
            if let (Some(meta), Some(path)) = (attested, &args.bundle) {
                value["_meta"]["attestation"] = meta;
                value["_meta"]["bundle"] = path.display().to_string().into();
            }
            serde_json::to_string_pretty(&value)? + "\n"
        }
        Output::Table => table(&output),
    };
    let result_digest = audit::digest(text.as_bytes());
    for node in &running {
        let mut detail =
            serde_json::json!({"job": job, "stage": node.id, "op": node.op, "lane": node.lane});
        match node.op {
            "source" => {
                detail["read_sha256"] = input_digest.clone().into();
                detail["rows"] = output.rows.into();
                detail["quarantined"] = output.quarantined.into();
            }
            "route" => {
                let lane = Lane::ALL.iter().find(|l| Some(l.name()) == node.lane);
                detail["records"] = lane.map_or(0, |l| output.lanes[l.index()]).into();
            }
            "sink" => detail["wrote_sha256"] = result_digest.clone().into(),
            _ => {}
        }
        log.append(EntryKind::StageEnd, detail)?;
    }
    match &args.out {
        Some(path) => write_whole(path, text.as_bytes())?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(Ok(result_digest))
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside
/// it, then a rename.
pub(crate) fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".partial-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

/// A spinner with the rows read so far, on stderr, while a job runs on a
/// terminal (in a pipe, nothing is shown).
fn show_progress(rows: Arc<AtomicU64>) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let thread = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new_spinner().with_message("rows read");
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} {msg} ({per_sec}, {elapsed})")
                .expect("the template is valid"),
        );
        while !stop.load(Ordering::Relaxed) {
            bar.set_position(rows.load(Ordering::Relaxed));
            bar.tick();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bar.finish_and_clear();
    });
    (done, thread)
}

/// The result with `_meta`: merged into a struct's object, or beside the
/// value under `value`.
fn with_meta(output: &JobOutput, running: &[&symbiont_operators::PlanNode]) -> serde_json::Value {
    let mut object = match &output.value {
        serde_json::Value::Object(o) => o.clone(),
        other => {
            let mut o = serde_json::Map::new();
            o.insert("value".into(), other.clone());
            o
        }
    };
    let mut meta = output.meta();
    // Each stage's tier (from the plan, which the job followed), the rule
    // that chose it, and what provides it here.
    meta["tiers"] = running
        .iter()
        .map(|n| (crate::stage::stage_name(n), n.tier.into()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    meta["tier_rules"] = running
        .iter()
        .map(|n| (crate::stage::stage_name(n), n.tier_rule.into()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    meta["tier_impl"] = running
        .iter()
        .map(|n| (crate::stage::stage_name(n), n.runs_in.clone().into()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    object.insert("_meta".into(), meta);
    serde_json::Value::Object(object)
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A plain text table: a struct as field/value rows, a list of structs as
/// one row each, then the lane counts.
fn table(output: &JobOutput) -> String {
    let rows: Vec<Vec<String>> = match &output.value {
        serde_json::Value::Object(o) => {
            std::iter::once(vec!["field".to_owned(), "value".to_owned()])
                .chain(o.iter().map(|(k, v)| vec![k.clone(), cell(v)]))
                .collect()
        }
        serde_json::Value::Array(items) => {
            let header: Vec<String> = match items.first() {
                Some(serde_json::Value::Object(o)) => o.keys().cloned().collect(),
                _ => vec!["value".to_owned()],
            };
            std::iter::once(header.clone())
                .chain(items.iter().map(|item| match item {
                    serde_json::Value::Object(o) => header.iter().map(|h| cell(&o[h])).collect(),
                    other => vec![cell(other)],
                }))
                .collect()
        }
        other => vec![vec!["value".to_owned()], vec![cell(other)]],
    };
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(
                &widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  "),
            );
            out.push('\n');
        }
    }
    let meta = output.meta();
    out.push_str(&format!("\nlanes: {}\n", meta["lanes"]));
    out.push_str(&format!("lane implementations: {}\n", meta["lane_impl"]));
    out.push_str(&format!(
        "rows: {}, quarantined: {}\n",
        output.rows, output.quarantined
    ));
    out
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
        ExplainFormat::Svg => {
            let mut child = std::process::Command::new("dot")
                .arg("-Tsvg")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .context("`--format svg` needs graphviz's `dot` (apt-get install graphviz); `--format dot` prints its input")?;
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(plan.to_dot().as_bytes())?;
            let out = child.wait_with_output()?;
            anyhow::ensure!(out.status.success(), "graphviz `dot` failed");
            String::from_utf8(out.stdout).context("graphviz `dot` printed non-UTF-8")?
        }
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(exit::OK)
}

pub(crate) fn generate(rows: u64, seed: u64, out: Option<&Path>) -> Result<u8> {
    match out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            symbiont_engine::generate_patients(rows, seed, &mut w)?;
            w.flush()?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            symbiont_engine::generate_patients(rows, seed, &mut w)?;
            w.flush()?;
        }
    }
    Ok(exit::OK)
}

pub(crate) fn policy_eval(
    file: &Path,
    names: &[String],
    action: &str,
    principal: &[String],
    resource: &[String],
    format: Format,
) -> Result<u8> {
    let (principal, resource) = match both_attributes(principal, resource)? {
        Ok(both) => both,
        Err(code) => return Ok(code),
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
    let order: Vec<String> = if names.is_empty() {
        program
            .items
            .iter()
            .filter_map(|i| match i {
                symbiont_dsl::ast::Item::Policy(p) => Some(p.name.name.clone()),
                _ => None,
            })
            .collect()
    } else {
        names.to_vec()
    };
    let mut applicable = Vec::new();
    for n in &symbiont_dsl::with_ancestors(program, &order) {
        match defined.get(n) {
            Some(p) => applicable.push(p.clone()),
            None => return usage(format_args!("{} defines no policy `{n}`", file.display())),
        }
    }
    let compiled = CompiledPolicies::compile(&applicable)?;
    let decision = compiled.decide(
        action,
        &Attributes {
            principal: &principal,
            resource: &resource,
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

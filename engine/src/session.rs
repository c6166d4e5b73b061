//! A job with its guarantees, as a library: [`Job::prepare`] checks a
//! program's request and plans it, reading but writing nothing, and
//! [`Job::run`], given where the keys and audit trail are, does
//! everything `symbi run` promises, in order: the dataset's policies and
//! metadata, the runtime policy decisions (audited), a signed approval,
//! suspension, the keystore, the commitment at ingestion, the dataflow
//! with its sandboxed stages, the proofs, the result, persistence, and
//! the bundle. A front end (the command line, a server, a test) parses
//! its own arguments, renders the result through a [`ResultSink`] and
//! hears what happens through an [`Observer`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};
use symbiont_crypto::{ApprovalRequest, AuditLog, AuditSigningKey, Backend, EntryKind, Keystore};
use symbiont_dsl::ast::Program;
use symbiont_dsl::{Diagnostic, SourceFile};
use symbiont_operators::{
    CONTEXT_ATTRIBUTES, InputKind, Lane, Plan, PlanNode, Policy, PolicyValue, Query,
};
use zeroize::Zeroizing;

use crate::attest::{Attesting, Planned, ToCommit};
use crate::dataset_files::{Carried, DatasetPolicies};
use crate::job::carried_digests;
use crate::stage::{ComputeSandbox, SandboxedEvaluate, SandboxedReduce, SandboxedStage};
use crate::{
    HomomorphicLane, InProcessEvaluate, InProcessReduce, JobConfig, JobError, JobOutput,
    KeystoreHolder, LaneKeys, OnError, ProgrammableLane, digest, enforce, file_digest, run_batch,
};

/// Attributes of a principal or a resource, for policy conditions.
pub type Attrs = BTreeMap<String, PolicyValue>;

/// What to run: the program, its input, and how. The dataset's own
/// policies and metadata (files beside the input, or inside a stored
/// dataset) are read by [`Job::prepare`], not given here.
#[derive(Debug)]
pub struct JobSpec {
    /// The program, checked (`symbiont_dsl::check`) and with its static
    /// policy checks passed (`symbiont_dsl::check_policies`).
    pub program: Program,
    /// Where it was read from, as the audit log names it.
    pub program_file: String,
    /// The SHA-256 of its text (hex).
    pub program_sha256: String,
    /// The entry agent's query.
    pub query: Query,
    /// The input bound to the agent's stream: a file or a stored dataset.
    pub input: PathBuf,
    /// Read a stored dataset's restricted records from their TFHE copy
    /// (the programmable path).
    pub tfhe_input: bool,
    /// The dataset's id (default: the id its binding gives, else the
    /// input's canonical path; a stored dataset keeps the id it was sealed
    /// under).
    pub dataset_id: Option<String>,
    /// The keystore whose dataset bindings apply (`symbi datasets bind`):
    /// a plain file bound there answers to the bound policies, whatever
    /// its name.
    pub bindings: Option<PathBuf>,
    /// Who runs it ([`Principal::from_credential`], or an explicitly
    /// unverified one).
    pub principal: crate::Principal,
    /// The resource's attributes (the dataset's metadata must agree).
    pub resource: Attrs,
    /// Dataflow workers.
    pub workers: usize,
    /// Bad-row handling.
    pub on_error: OnError,
    /// A signed approval that overrides violations (`--override-approval`).
    pub approval: Option<PathBuf>,
    /// Keep the classified dataset here, encrypted lanes sealed.
    pub persist_encrypted: Option<PathBuf>,
    /// Attest the `prove(...)` fields and write the bundle here.
    pub bundle: Option<PathBuf>,
    /// Prove with the key of the multi-party setup in this directory
    /// (`symbi ceremony`), not one set up on this machine.
    pub ceremony: Option<PathBuf>,
    /// The limits of every sandboxed stage.
    pub stage_limits: symbiont_sandbox::Limits,
    /// The binaries that start and run the sandboxed stages.
    pub binaries: StageBinaries,
    /// Counts rows read as the job goes.
    pub progress: Option<Arc<AtomicU64>>,
    /// Set to stop the job at its next phase.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Run as a stream (`symbi stream`): `input` is the stream's
    /// [`crate::stream::StreamSource::path`], and the result is a line per
    /// epoch.
    pub stream: Option<crate::stream::StreamSpec>,
}

/// The sandbox init and the stage worker binaries.
#[derive(Clone, Debug)]
pub struct StageBinaries {
    /// What a sandbox runs first (`symbi-sandbox-init`, or the worker).
    pub init: PathBuf,
    /// The binary whose stage arguments ([`crate::stage::WORKER_ARG`], ...)
    /// make it a stage worker.
    pub worker: PathBuf,
}

impl StageBinaries {
    /// This binary as the worker (its `main` calls
    /// [`crate::stage::worker_if_asked`]), and as the init unless the small
    /// `symbi-sandbox-init` is beside it.
    pub fn this_binary() -> Result<StageBinaries> {
        let worker = std::env::current_exe().context("cannot find this binary")?;
        let small = worker.with_file_name("symbi-sandbox-init");
        let init = if small.exists() {
            small
        } else {
            worker.clone()
        };
        Ok(StageBinaries { init, worker })
    }
}

/// Where a job's keys and approval requests are.
#[derive(Debug)]
pub struct Custody {
    /// The keystore directory.
    pub keystore: PathBuf,
    /// Whether to create the keystore if it does not exist (the default
    /// keystore; a keystore named by the user must exist).
    pub create_keystore: bool,
    /// Where the passphrase that unseals the master key comes from: asked
    /// only if the job needs the keystore, and dropped once it is open.
    pub passphrase: Passphrase,
    /// The AES-256-GCM implementation.
    pub aes_backend: Backend,
    /// The audit signing key, which also signs the dataset commitment.
    pub audit_key: PathBuf,
    /// Where a suspended job's approval request is written (or why there
    /// is no such place; an error only if a job is suspended).
    pub requests: std::result::Result<PathBuf, String>,
}

/// What a [`Passphrase`] source returns: the passphrase, if there is one.
type PassphraseRead = Result<Option<Zeroizing<Vec<u8>>>>;

/// A source of the keystore's passphrase, asked only when needed.
pub struct Passphrase(Box<dyn Fn() -> PassphraseRead + Send + Sync>);

impl Passphrase {
    /// No passphrase: the master key is not sealed.
    pub fn none() -> Passphrase {
        Passphrase(Box::new(|| Ok(None)))
    }

    /// A passphrase read by `source` when the keystore is opened.
    pub fn from_fn(source: impl Fn() -> PassphraseRead + Send + Sync + 'static) -> Passphrase {
        Passphrase(Box::new(source))
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// What a job reports as it goes, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Something the person running the job should read.
    Notice(String),
    /// Something that went wrong but did not stop the job.
    Warning(String),
    /// The job has its number in the audit log.
    Started {
        /// The job's number (its `job_start` entry).
        job: u64,
    },
    /// A stage of the plan started.
    StageStarted {
        /// Its name (`aggregate[aes_gcm]`).
        stage: String,
        /// Its sandbox tier.
        tier: u8,
    },
    /// A sandboxed stage answered (its `_meta.sandboxes` entry).
    Sandbox(serde_json::Value),
    /// The attested aggregates were proved.
    Proved {
        /// Proofs made.
        proofs: usize,
    },
    /// A stage of the plan ended, with its audited detail.
    StageEnded {
        /// Its name.
        stage: String,
        /// What the audit log records of it.
        detail: serde_json::Value,
    },
}

/// Hears a job's [`Event`]s.
pub trait Observer {
    /// One event.
    fn event(&mut self, event: Event);
}

/// An observer that keeps every event.
impl Observer for Vec<Event> {
    fn event(&mut self, event: Event) {
        self.push(event);
    }
}

/// A finished job's result as a front end renders it.
#[derive(Debug)]
pub struct JobResult {
    /// The dataflow's output.
    pub output: JobOutput,
    /// The stages that ran, from the plan.
    pub stages: Vec<PlanNode>,
    /// The attestation's summary, with `--bundle`.
    pub attestation: Option<serde_json::Value>,
    /// Where the bundle goes.
    pub bundle: Option<PathBuf>,
}

impl JobResult {
    /// The result with `_meta`: merged into a struct's object, or beside
    /// the value under `value` (`symbi run --format json`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = match &self.output.value {
            serde_json::Value::Object(o) => o.clone(),
            other => {
                let mut o = serde_json::Map::new();
                o.insert("value".into(), other.clone());
                o
            }
        };
        let mut meta = self.output.meta();
        // Each stage's tier (from the plan, which the job followed), the
        // rule that chose it, and what provides it here.
        let by_stage = |f: &dyn Fn(&PlanNode) -> serde_json::Value| {
            self.stages
                .iter()
                .map(|n| (crate::stage::stage_name(n), f(n)))
                .collect::<serde_json::Map<_, _>>()
        };
        meta["tiers"] = by_stage(&|n| n.tier.into()).into();
        meta["tier_rules"] = by_stage(&|n| n.tier_rule.into()).into();
        meta["tier_impl"] = by_stage(&|n| n.runs_in.clone().into()).into();
        if let (Some(a), Some(path)) = (&self.attestation, &self.bundle) {
            meta["attestation"] = a.clone();
            meta["bundle"] = path.display().to_string().into();
        }
        object.insert("_meta".into(), meta);
        serde_json::Value::Object(object)
    }
}

/// Where the result goes: rendered, then written.
pub trait ResultSink {
    /// The result as the bytes to write (their SHA-256 is audited).
    fn render(&self, result: &JobResult) -> Result<String>;
    /// Writes the rendered result.
    fn write(&mut self, text: &str) -> Result<()>;
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// The result was written.
    Done {
        /// The job's number.
        job: u64,
        /// The SHA-256 of what was written.
        result_sha256: String,
    },
    /// The job failed, for this reason (audited once the job had started).
    /// Reasons name files, lines and fields, never values.
    Failed(String),
    /// A policy suspended the job; an approver can sign the request.
    Suspended {
        /// The job's number.
        job: u64,
        /// The approval request.
        request: PathBuf,
    },
    /// A policy denied the job (reported).
    Denied,
    /// The dataset's policies deny what the program does.
    PolicyDiagnostics(Vec<Diagnostic>),
    /// The dataset's policy file is not a valid policy-only program.
    InvalidPolicyFile(SourceFile, Vec<Diagnostic>),
    /// The request itself is wrong (a front end's usage error).
    Usage(String),
    /// [`JobSpec::cancel`] was set.
    Cancelled,
}

/// A job whose request was checked and planned, and that has written
/// nothing yet: no keystore, no audit log, no file was opened for writing.
#[derive(Debug)]
pub struct Job {
    spec: JobSpec,
    prepared: Prepared,
}

impl Job {
    /// Checks `spec` and plans what needs no key: the programmable path's
    /// spec, the attestation's statement, the dataset's metadata and
    /// policies (which may raise the query's lane and tiers), and the
    /// dataset's id. `Err` is how the job ends without running.
    pub fn prepare(mut spec: JobSpec) -> Result<std::result::Result<Job, Outcome>> {
        Ok(prepare(&mut spec)?.map(|prepared| Job { spec, prepared }))
    }

    /// The plan the job runs: each stage with its tier.
    pub fn plan(&self) -> Plan {
        Plan::for_job(&self.spec.query, None, self.prepared.input_kind)
    }

    /// Runs the job under `custody`, recording it in `log`, writing its
    /// result to `sink` and telling `observer` what happens.
    pub fn run(
        self,
        custody: &Custody,
        log: &mut AuditLog,
        sink: &mut dyn ResultSink,
        observer: &mut dyn Observer,
    ) -> Result<Outcome> {
        let plan = self.plan();
        run(self.spec, self.prepared, plan, custody, log, sink, observer)
    }
}

/// The dataset's own files, as the job read them.
#[derive(Clone, Copy)]
struct DatasetFiles<'a> {
    metadata: Option<&'a (Carried, Attrs)>,
    policies: Option<&'a (Carried, Vec<Policy>)>,
    /// The input's SHA-256, if its binding was found by it.
    bound_sha256: Option<&'a str>,
}

/// A started job: its number, its policy decision and its approval.
struct Decided {
    job: u64,
    decision: enforce::RuntimeDecision,
    approved: Option<enforce::Approved>,
    this_job: ApprovalRequest,
}

fn run(
    spec: JobSpec,
    prepared: Prepared,
    plan: Plan,
    custody: &Custody,
    log: &mut AuditLog,
    sink: &mut dyn ResultSink,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let Prepared {
        dataset_metadata,
        dataset_policies,
        programmable,
        planned,
        dataset,
        input_kind,
        bound_sha256,
    } = prepared;
    let files = DatasetFiles {
        metadata: dataset_metadata.as_ref(),
        policies: dataset_policies.as_ref(),
        bound_sha256: bound_sha256.as_deref(),
    };
    let query = &spec.query;
    let stored = input_kind != InputKind::File;
    // Every stage runs in the tier the risk table gives it; one the host
    // cannot provide fails the job here, before it starts.
    let needs_keys = query.classifier.is_some()
        || query.min_lane != Lane::Plaintext
        || stored
        || spec.persist_encrypted.is_some()
        // Public records cross into a sandbox sealed.
        || plan.aggregate_tier(Lane::Plaintext) > 0;
    let stage_tiers = match crate::stage::plan_tiers(&plan, needs_keys) {
        Ok(t) => t,
        Err(why) => return Ok(Outcome::Failed(why)),
    };
    let keystore = if needs_keys {
        Some(Arc::new(
            open_keystore(custody, log, observer)?.with_backend(custody.aes_backend),
        ))
    } else {
        None
    };
    let keys = match &keystore {
        Some(ks) => LaneKeys::for_dataset(Arc::clone(ks), &dataset, &query.schema)?,
        None => LaneKeys::default(),
    };
    // The dataset's files, as read: a stored input must carry these very
    // files, and a persisted copy carries them.
    let carried: Vec<(&'static str, Carried)> = [
        files.policies.map(|(f, _)| ("policy.symbi", f.clone())),
        files.metadata.map(|(f, _)| ("meta.json", f.clone())),
    ]
    .into_iter()
    .flatten()
    .collect();
    // A stored dataset is authenticated before anything is decided or
    // logged from it (and again as it is read).
    if let (true, Some(opener)) = (stored, &keys.opener) {
        let authentic =
            symbiont_operators::StoreReader::open(&spec.input, &query.schema).and_then(|store| {
                store.authenticate(opener.opener(), &carried_digests(&carried))?;
                Ok(store)
            });
        let store = match authentic {
            Ok(store) => store,
            Err(e) => return Ok(Outcome::Failed(e.to_string())),
        };
        // And it is the dataset's latest copy, not an older one put back.
        if let Some(ks) = &keystore
            && let Err(why) =
                crate::bindings::check_latest(ks.dir(), store.manifest(), &spec.input)?
        {
            return Ok(Outcome::Failed(why));
        }
        // Its TFHE copy must be under this keystore's programmable key
        // (rotated keys would decrypt it to noise, and spend the budget).
        // A copy made before the key was recorded is refused too.
        let stored_key = store
            .manifest()
            .tfhe
            .as_ref()
            .map(|t| t.public_key_sha256.clone());
        if let (true, Some(stored_key), Some(ks)) = (spec.tfhe_input, stored_key, &keystore)
            && (stored_key.is_none() || Keystore::programmable_key_id(ks.dir()).ok() != stored_key)
        {
            return Ok(Outcome::Failed(format!(
                "{}: its TFHE copy is encrypted under a programmable key this keystore no longer has (rotated with `symbi keys rotate --programmable`, or another keystore's): persist the dataset again",
                spec.input.display()
            )));
        }
    }
    let started = match start(&spec, files, &dataset, custody, log, observer)? {
        Ok(s) => s,
        Err(outcome) => return Ok(outcome),
    };
    let job = started.job;
    if cancelled(&spec) {
        end(log, job, "cancelled", None)?;
        return Ok(Outcome::Cancelled);
    }
    let mut forbidden_lanes = [false; 3];
    for lane in Lane::ALL {
        forbidden_lanes[lane.index()] = !enforce::uncovered(
            &started.decision.by_lane[lane.index()],
            started.approved.as_ref(),
        )
        .is_empty();
    }
    let lanes = Lanes {
        keystore: keystore.as_ref(),
        dataset: &dataset,
        stored,
        tiers: stage_tiers,
        programmable,
    };
    // The lanes' keys and stages; a job that cannot have them ends here.
    let mut config = match job_config(&spec, &plan, keys, forbidden_lanes, lanes, log, job) {
        Ok(c) => c,
        Err(e) => {
            end(log, job, "error", Some(format!("{e:#}")))?;
            return Err(e);
        }
    };
    config.carried = carried;
    let running: Vec<PlanNode> = plan
        .nodes
        .iter()
        .filter(|n| n.runs_in_job(spec.bundle.is_some(), spec.persist_encrypted.is_some()))
        .cloned()
        .collect();
    for node in &running {
        log.append(
            EntryKind::StageStart,
            serde_json::json!({"job": job, "stage": node.id, "op": node.op, "lane": node.lane, "tier": node.tier}),
        )?;
        observer.event(Event::StageStarted {
            stage: crate::stage::stage_name(node),
            tier: node.tier,
        });
    }
    // Ingestion: the source stage keeps the attested fields as it reads
    // the records for the dataflow; the commitment is signed and logged
    // once it has read them all, before the prove stage.
    let to_commit = match planned {
        None => None,
        Some(planned) => {
            let key = AuditSigningKey::load(&custody.audit_key)?;
            let provenance = crate::attest::Provenance {
                file: spec.program_file.clone(),
                sha256: spec.program_sha256.clone(),
                agent: query.agent.clone(),
                policy_sha256: policy_digest(&spec.program, files.policies.map(|(f, _)| f))?,
            };
            match crate::attest::to_commit(planned, &spec.input, &dataset, key, provenance) {
                Ok(c) => Some(c),
                Err(why) => {
                    end(log, job, "error", Some(why.clone()))?;
                    return Ok(Outcome::Failed(format!("--bundle: {why}")));
                }
            }
        }
    };
    let mut config = config;
    config.commit = to_commit.as_ref().map(|c| c.fields().to_vec());
    let mut attesting = None;
    let outcome = execute(
        &spec,
        &running,
        &config,
        Audit {
            log,
            job,
            keystore: keystore.as_ref().map(|k| k.dir()),
            decided_on: Some(started.this_job.input_sha256.clone()).filter(|d| !d.is_empty()),
        },
        to_commit.map(|c| (c, custody.keystore.join("zk"), &mut attesting)),
        sink,
        observer,
    );
    finish(
        &spec,
        outcome,
        started,
        keystore.as_deref(),
        attesting.as_mut(),
        custody,
        log,
        observer,
    )
}

/// Records the job's start, decides its policies and verifies its
/// approval; a job that cannot go on ends here (`Err`: denied or
/// suspended, audited).
fn start(
    spec: &JobSpec,
    files: DatasetFiles<'_>,
    dataset: &str,
    custody: &Custody,
    log: &mut AuditLog,
    observer: &mut dyn Observer,
) -> Result<std::result::Result<Decided, Outcome>> {
    let query = &spec.query;
    let mut started = job_start(spec, files, dataset);
    started["keystore"] = custody.keystore.display().to_string().into();
    let job = log.append(EntryKind::JobStart, started)?;
    observer.event(Event::Started { job });
    let decision = match enforce::decide(
        spec,
        files.policies.map_or(&[][..], |(_, p)| p.as_slice()),
        files.metadata.map(|(_, a)| a),
        log,
        job,
    ) {
        Ok(d) => d,
        Err(e) => {
            end(log, job, "error", Some(format!("{e:#}")))?;
            return Err(e);
        }
    };
    // An approval binds the input's bytes: digested (one more read) only
    // when an approval is given or the job may be suspended.
    let may_suspend = !decision.before.is_empty() || decision.by_lane.iter().any(|v| !v.is_empty());
    let input_sha256 = match files.bound_sha256 {
        Some(d) => d.to_owned(),
        // A stream's bytes are not there yet (and it takes no approval).
        None if spec.stream.is_some() => String::new(),
        None if spec.approval.is_some() || may_suspend => file_digest(&input_bytes(&spec.input))?,
        None => String::new(),
    };
    let this_job = ApprovalRequest {
        program_sha256: spec.program_sha256.clone(),
        agent: query.agent.clone(),
        dataset: dataset.to_owned(),
        input_sha256,
        principal: spec.principal.id(),
        suspended_job: 0,
        overrides: Vec::new(),
    };
    let approved = match &spec.approval {
        None => None,
        Some(path) => {
            let requests = requests_dir(custody)?;
            match enforce::load_approval(
                path,
                &custody.keystore,
                requests,
                &this_job,
                log,
                job,
                observer,
            )? {
                Ok(a) => Some(a),
                Err(why) => {
                    end(log, job, "denied", Some(why.clone()))?;
                    observer.event(Event::Notice(format!("the approval is refused: {why}")));
                    return Ok(Err(Outcome::Denied));
                }
            }
        }
    };
    let before = enforce::uncovered(&decision.before, approved.as_ref());
    if !before.is_empty() {
        let request = enforce::suspend(
            log,
            job,
            serde_json::json!("start"),
            ApprovalRequest {
                overrides: before,
                suspended_job: job,
                ..this_job
            },
            requests_dir(custody)?,
            observer,
        )?;
        return Ok(Err(Outcome::Suspended { job, request }));
    }
    Ok(Ok(Decided {
        job,
        decision,
        approved,
        this_job,
    }))
}

/// The file whose bytes are the input's digest: the input, or a stored
/// dataset's `batches.bin`.
fn input_bytes(input: &Path) -> PathBuf {
    if symbiont_operators::is_store(input) {
        input.join("batches.bin")
    } else {
        input.to_owned()
    }
}

/// Where approval requests go, or why there is no such place.
fn requests_dir(custody: &Custody) -> Result<&Path> {
    custody
        .requests
        .as_deref()
        .map_err(|why| anyhow::anyhow!("{why}"))
}

/// What the lanes of a job are given.
struct Lanes<'a> {
    keystore: Option<&'a Arc<Keystore>>,
    dataset: &'a str,
    stored: bool,
    /// The tiers of the sealed lanes' aggregation ([`crate::stage::plan_tiers`]).
    tiers: Option<[u8; 3]>,
    programmable: Option<symbiont_operators::Compiled>,
}

/// The dataflow's configuration: each lane's keys and stages.
fn job_config(
    spec: &JobSpec,
    plan: &Plan,
    keys: LaneKeys,
    forbidden_lanes: [bool; 3],
    lanes: Lanes<'_>,
    log: &mut AuditLog,
    job: u64,
) -> Result<JobConfig> {
    let query = &spec.query;
    let Lanes {
        keystore,
        dataset,
        stored,
        tiers,
        programmable,
    } = lanes;
    Ok(JobConfig {
        input: spec.input.clone(),
        workers: spec.workers,
        on_error: spec.on_error.clone(),
        progress: spec.progress.clone(),
        keys,
        persist: spec.persist_encrypted.clone(),
        forbidden_lanes,
        sealed_stage: match (tiers, keystore) {
            (Some(tiers), Some(ks)) => {
                let stage = SandboxedStage {
                    tiers,
                    keystore: Arc::clone(ks),
                    dataset: dataset.to_owned(),
                    init: spec.binaries.init.clone(),
                    worker: spec.binaries.worker.clone(),
                    limits: spec.stage_limits.clone(),
                };
                // A stream's sandboxes serve every epoch.
                Some(match spec.stream {
                    Some(_) => Arc::new(stage.live()) as Arc<dyn crate::SealedStage>,
                    None => Arc::new(stage),
                })
            }
            _ => None,
        },
        homomorphic: match keystore {
            Some(ks) if !stored && query.may_route(Lane::Homomorphic) => {
                Some(homomorphic_lane(ks, plan, spec)?)
            }
            _ => None,
        },
        // Restricted records are also kept as TFHE integer ciphertexts
        // for the programmable path (its keys made on first use).
        persist_tfhe: match (keystore, &spec.persist_encrypted) {
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
        programmable: match (programmable, keystore) {
            (Some(compiled), Some(ks)) => Some(programmable_lane(ks, compiled, plan, spec)?),
            _ => None,
        },
        // Set once the attestation's fields are known.
        commit: None,
        carried: Vec::new(),
    })
}

/// After the dataflow: the keys created, a suspension, the job's end
/// (checkpointed) and the bundle.
#[allow(clippy::too_many_arguments)]
fn finish(
    spec: &JobSpec,
    outcome: Result<std::result::Result<String, Failure>>,
    started: Decided,
    keystore: Option<&Keystore>,
    attesting: Option<&mut Attesting>,
    custody: &Custody,
    log: &mut AuditLog,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let job = started.job;
    for event in keystore.iter().flat_map(|ks| ks.created_data_keys()) {
        log.append(
            EntryKind::KeyEvent,
            serde_json::json!({"job": job, "event": "created", "key": "data key", "id": event.id, "dataset": event.dataset, "retired": event.retired}),
        )?;
    }
    if let Ok(Err(Failure::Suspended { lane, line })) = &outcome {
        let violations = enforce::uncovered(
            &started.decision.by_lane[lane.index()],
            started.approved.as_ref(),
        );
        let request = enforce::suspend(
            log,
            job,
            serde_json::json!({"op": "classify", "line": line, "class": lane.class()}),
            ApprovalRequest {
                overrides: violations,
                suspended_job: job,
                ..started.this_job
            },
            requests_dir(custody)?,
            observer,
        )?;
        observer.event(Event::Notice(format!(
            "the first record classified {} is at {}:line {line}",
            lane.class(),
            spec.input.display()
        )));
        return Ok(Outcome::Suspended { job, request });
    }
    let end_detail = match &outcome {
        Ok(Ok(result_digest)) => {
            serde_json::json!({"job": job, "status": "ok", "result_sha256": result_digest})
        }
        Ok(Err(Failure::Cancelled)) => serde_json::json!({"job": job, "status": "cancelled"}),
        Ok(Err(failure)) => {
            serde_json::json!({"job": job, "status": "error", "error": failure.to_string()})
        }
        Err(e) => serde_json::json!({"job": job, "status": "error", "error": format!("{e:#}")}),
    };
    let end_entry = log.append(EntryKind::JobEnd, end_detail)?;
    log.checkpoint()?;
    if let (Ok(Ok(_)), Some(a), Some(path)) = (&outcome, attesting, &spec.bundle) {
        a.record_entry(end_entry);
        a.write(path, log.path())?;
        observer.event(Event::Notice(format!(
            "wrote the attestation bundle {}",
            path.display()
        )));
    }
    match outcome {
        Ok(Ok(result_sha256)) => Ok(Outcome::Done { job, result_sha256 }),
        Ok(Err(Failure::Cancelled)) => Ok(Outcome::Cancelled),
        Ok(Err(failure)) => Ok(Outcome::Failed(failure.to_string())),
        Err(e) => Err(e),
    }
}

/// What is decided about a job before its keystore and audit trail are
/// touched.
#[derive(Debug)]
struct Prepared {
    /// The dataset's metadata file and the attributes it gives.
    dataset_metadata: Option<(Carried, Attrs)>,
    /// The dataset's policy file and its policies.
    dataset_policies: Option<(Carried, Vec<Policy>)>,
    programmable: Option<symbiont_operators::Compiled>,
    planned: Option<Planned>,
    dataset: String,
    input_kind: InputKind,
    /// The input's SHA-256 its binding was found by, if it is bound.
    bound_sha256: Option<String>,
}

/// [`Job::prepare`].
fn prepare(spec: &mut JobSpec) -> Result<std::result::Result<Prepared, Outcome>> {
    let stored = symbiont_operators::is_store(&spec.input);
    if spec.stream.is_some() {
        let refused = [
            (spec.bundle.is_some(), "--bundle (attestation per epoch)"),
            (spec.persist_encrypted.is_some(), "--persist-encrypted"),
            (spec.approval.is_some(), "--override-approval"),
            (spec.tfhe_input || stored, "a stored dataset as the source"),
        ];
        if let Some((_, what)) = refused.iter().find(|(given, _)| *given) {
            return Ok(Err(Outcome::Usage(format!(
                "symbi stream does not take {what} yet (docs/STREAMING.md)"
            ))));
        }
    }
    // Standard input carries no files beside it, nor a binding.
    let stdin = spec
        .stream
        .as_ref()
        .is_some_and(|s| s.source == crate::stream::StreamSource::Stdin);
    // Nor a position to go on from.
    if stdin && spec.stream.as_ref().is_some_and(|s| s.state.is_some()) {
        return Ok(Err(Outcome::Usage(
            "--state needs a source a restarted stream can go on reading (follow:PATH or dir:PATH); standard input cannot be read again".into(),
        )));
    }
    if spec.tfhe_input && !stored {
        return Ok(Err(Outcome::Usage(format!(
            "--input {}=tfhe:{}: not a dataset written by --persist-encrypted",
            spec.query.input,
            spec.input.display()
        ))));
    }
    // The programmable path's spec: refused here, before anything runs,
    // if an aggregate cannot be evaluated under encryption.
    let programmable = if spec.tfhe_input {
        match symbiont_operators::compile(&spec.query) {
            Ok(c) => Some(c),
            Err(why) => return Ok(Err(Outcome::Failed(why.to_string()))),
        }
    } else {
        None
    };
    // What `--bundle` attests, decided before anything runs.
    let planned = match &spec.bundle {
        None => None,
        Some(_) if stored => {
            return Ok(Err(Outcome::Usage(
                "--bundle: attestation commits to the plaintext at ingestion, so it reads a file input, not a stored dataset".into(),
            )));
        }
        Some(_) => match crate::attest::plan(&spec.query) {
            Ok(mut p) => {
                if let Some(dir) = &spec.ceremony {
                    let ceremony = crate::ceremony::Ceremony::open(dir)?;
                    if let Err(why) = p.use_ceremony(ceremony) {
                        return Ok(Err(Outcome::Failed(format!(
                            "--ceremony {}: {why}",
                            dir.display()
                        ))));
                    }
                }
                Some(p)
            }
            Err(why) => return Ok(Err(Outcome::Failed(format!("--bundle: {why}")))),
        },
    };
    if spec.ceremony.is_some() && spec.bundle.is_none() {
        return Ok(Err(Outcome::Usage(
            "--ceremony proves with a ceremony's key: it needs --bundle".into(),
        )));
    }
    if let Some(dest) = spec.persist_encrypted.as_ref().filter(|d| d.exists()) {
        return Ok(Err(Outcome::Usage(format!(
            "--persist-encrypted {}: it exists; give a new directory",
            dest.display()
        ))));
    }
    // A plain file bound in the keystore carries the bound files, under
    // any name; one that is not carries the files beside it.
    let bound = match spec
        .bindings
        .as_deref()
        .filter(|_| !stored && spec.stream.is_none())
    {
        Some(ks) => match crate::bindings::bound(ks, &spec.input)? {
            Ok(b) => b,
            Err(why) => return Ok(Err(Outcome::Failed(why))),
        },
        None => None,
    };
    let (meta_file, policy_file) = match &bound {
        Some(b) => {
            if let Err(why) = crate::bindings::check_side_files(b, &spec.input)? {
                return Ok(Err(Outcome::Failed(why)));
            }
            let at = |name| b.dir.join(name);
            (at(crate::bindings::META), at(crate::bindings::POLICY))
        }
        None if stdin => (PathBuf::new(), PathBuf::new()),
        None => (
            crate::dataset_meta_file(&spec.input),
            crate::dataset_policy_file(&spec.input),
        ),
    };
    // The dataset's metadata: its attributes hold; a `--resource` that
    // says otherwise is refused, not silently overridden. Neither may set
    // what the engine sets (the job's context).
    let dataset_metadata = crate::dataset_files::metadata_at(meta_file)?;
    if let Some(k) = spec
        .resource
        .keys()
        .find(|k| CONTEXT_ATTRIBUTES.contains(&k.as_str()))
    {
        return Ok(Err(Outcome::Usage(format!(
            "--resource {k}: the engine sets `{k}` from the job itself"
        ))));
    }
    if let Some((file, attributes)) = &dataset_metadata {
        if let Some(k) = attributes
            .keys()
            .find(|k| CONTEXT_ATTRIBUTES.contains(&k.as_str()))
        {
            return Ok(Err(Outcome::Failed(format!(
                "{}: `{k}` is set by the engine from the job itself, not by a dataset's metadata",
                file.file.display()
            ))));
        }
        for (k, v) in attributes {
            if let Some(given) = spec.resource.get(k).filter(|given| *given != v) {
                return Ok(Err(Outcome::Usage(format!(
                    "--resource {k}={given} contradicts the dataset's metadata ({k} = {v} in {})",
                    file.file.display()
                ))));
            }
        }
    }
    // The dataset's own policies apply to every action, first; their
    // allow, deny and requirements are decided before anything runs.
    let dataset_policies = match crate::dataset_files::policies_at(policy_file)? {
        DatasetPolicies::None => None,
        DatasetPolicies::Policies(file, policies) => Some((file, policies)),
        DatasetPolicies::Invalid(source, diagnostics) => {
            return Ok(Err(Outcome::InvalidPolicyFile(source, diagnostics)));
        }
    };
    if let Some((file, policies)) = &dataset_policies {
        let denials = symbiont_dsl::check_policies_with(
            &spec.program,
            policies,
            &file.file.display().to_string(),
        );
        if !denials.is_empty() {
            return Ok(Err(Outcome::PolicyDiagnostics(denials)));
        }
        if let Some(lane) = symbiont_dsl::forced_lane(policies) {
            spec.query.min_lane = spec.query.min_lane.max(lane);
        }
        spec.query
            .tier_requirements
            .extend(symbiont_dsl::required_tiers(policies));
    }
    // Writing the dataset out is the action `persist`, decided by the
    // program's and the dataset's policies like every other action.
    if spec.persist_encrypted.is_some() {
        let (policies, origin) = match &dataset_policies {
            Some((file, p)) => (p.as_slice(), file.file.display().to_string()),
            None => (&[][..], String::new()),
        };
        let denials =
            symbiont_dsl::check_persist(&spec.program, &spec.query.agent, policies, &origin);
        if !denials.is_empty() {
            return Ok(Err(Outcome::PolicyDiagnostics(denials)));
        }
    }
    let dataset = if stored {
        // A persisted dataset keeps the id it was sealed under.
        let sealed_under =
            match symbiont_operators::StoreReader::open(&spec.input, &spec.query.schema) {
                Ok(store) => store.manifest().dataset.clone(),
                Err(e) => return Ok(Err(Outcome::Failed(e.to_string()))),
            };
        match &spec.dataset_id {
            Some(id) if *id != sealed_under => {
                return Ok(Err(Outcome::Usage(format!(
                    "--dataset-id {id}: {} holds dataset `{sealed_under}`",
                    spec.input.display()
                ))));
            }
            _ => sealed_under,
        }
    } else {
        match (&spec.dataset_id, &bound) {
            (Some(id), Some(b)) if *id != b.dataset => {
                return Ok(Err(Outcome::Usage(format!(
                    "--dataset-id {id}: {} is bound as dataset `{}`",
                    spec.input.display(),
                    b.dataset
                ))));
            }
            (Some(id), _) => id.clone(),
            (None, Some(b)) => b.dataset.clone(),
            (None, None) if stdin => "stdin".to_owned(),
            (None, None) => std::fs::canonicalize(&spec.input)
                .unwrap_or_else(|_| spec.input.clone())
                .display()
                .to_string(),
        }
    };
    if let (Some(stream), Some(ks)) = (&spec.stream, spec.bindings.as_deref()) {
        let followed = match &stream.source {
            crate::stream::StreamSource::Follow(path) => Some(path.as_path()),
            crate::stream::StreamSource::Stdin | crate::stream::StreamSource::Dir(_) => None,
        };
        if let Some(why) = crate::bindings::refuses_stream(ks, followed, &dataset)? {
            return Ok(Err(Outcome::Failed(why)));
        }
    }
    let input_kind = match (stored, spec.tfhe_input) {
        (false, _) => InputKind::File,
        (true, false) => InputKind::Store,
        (true, true) => InputKind::StoreTfhe,
    };
    Ok(Ok(Prepared {
        dataset_metadata,
        dataset_policies,
        programmable,
        planned,
        dataset,
        input_kind,
        bound_sha256: bound.map(|b| b.input_sha256),
    }))
}

fn cancelled(spec: &JobSpec) -> bool {
    spec.cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed))
}

/// Records the job's end (a status and an error) and checkpoints.
fn end(log: &mut AuditLog, job: u64, status: &str, error: Option<String>) -> Result<()> {
    let mut detail = serde_json::json!({"job": job, "status": status});
    if let Some(e) = error {
        detail["error"] = e.into();
    }
    log.append(EntryKind::JobEnd, detail)?;
    log.checkpoint()?;
    Ok(())
}

/// The `job_start` entry.
fn job_start(spec: &JobSpec, files: DatasetFiles<'_>, dataset: &str) -> serde_json::Value {
    serde_json::json!({
        "program": spec.program_file,
        "program_sha256": spec.program_sha256,
        "agent": spec.query.agent,
        "input": spec.input.display().to_string(),
        "dataset": dataset,
        "principal": spec.principal.to_json(),
        "policies": spec.query.policies,
        "dataset_metadata": files.metadata.map(|(f, _)| serde_json::json!({
            "file": f.file.display().to_string(),
            "sha256": f.sha256,
        })),
        "dataset_policies": files.policies.map(|(f, policies)| serde_json::json!({
            "file": f.file.display().to_string(),
            "sha256": f.sha256,
            "names": policies.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
        })),
        "workers": spec.workers,
    })
}

/// Opens the keystore for a job. The default keystore is created (master
/// key unsealed, unless a passphrase is given) when it does not exist yet,
/// which is said and audited; a keystore named by the user must exist (a
/// mistyped path must not become a new, empty keystore).
fn open_keystore(
    custody: &Custody,
    log: &mut AuditLog,
    observer: &mut dyn Observer,
) -> Result<Keystore> {
    let dir = &custody.keystore;
    // Read now, dropped (wiped) when the keystore is open.
    let passphrase = (custody.passphrase.0)()?;
    let pass = passphrase.as_deref().map(|p| p.as_slice());
    if custody.create_keystore && !Keystore::exists(dir) {
        // Another process may create it at the same moment: then use theirs.
        match Keystore::init(dir, pass) {
            Ok(report) => {
                observer.event(Event::Notice(format!(
                    "created the keystore {} (master key {}{})",
                    dir.display(),
                    report.master_id,
                    if report.sealed {
                        ", sealed under the passphrase"
                    } else {
                        ""
                    }
                )));
                log.append(
                    EntryKind::KeyEvent,
                    serde_json::json!({"event": "created", "key": "master key", "id": report.master_id, "keystore": dir.display().to_string()}),
                )?;
            }
            Err(symbiont_crypto::KeystoreError::AlreadyInitialised(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let ks = Keystore::open(dir, pass)?;
    for path in ks.recovered() {
        observer.event(Event::Notice(format!(
            "removed {} left by an interrupted key rotation",
            path.display()
        )));
    }
    Ok(ks)
}

/// SHA-256 over the policies a job answers to: the program's policy
/// declarations (their structure, not their layout) and the dataset's
/// policy file.
fn policy_digest(program: &Program, dataset_policies: Option<&Carried>) -> Result<String> {
    let declared: Vec<serde_json::Value> = program
        .items
        .iter()
        .filter(|i| matches!(i, symbiont_dsl::ast::Item::Policy(_)))
        .map(serde_json::to_value)
        .collect::<std::result::Result<_, _>>()?;
    let file = dataset_policies.map(|f| f.sha256.clone());
    let text = serde_json::json!({"program": declared, "dataset_policies": file}).to_string();
    Ok(digest(text.as_bytes()))
}

/// Where the homomorphic lane's compute stage runs: in the sandbox of the
/// tier the plan gives it, under `limits`; `None` in this process (tier 0).
fn compute_sandbox(
    plan: &Plan,
    binaries: &StageBinaries,
    limits: symbiont_sandbox::Limits,
) -> Option<ComputeSandbox> {
    match symbiont_sandbox::Tier::from_number(plan.aggregate_tier(Lane::Homomorphic)) {
        Some(tier) if tier as u8 > 0 => Some(ComputeSandbox {
            tier,
            init: binaries.init.clone(),
            worker: binaries.worker.clone(),
            limits,
        }),
        _ => None,
    }
}

/// The homomorphic lane's three roles for a job: the keystore's public key
/// for ingestion, the compute stage in the tier the plan gives it, and the
/// keystore as key holder.
fn homomorphic_lane(ks: &Keystore, plan: &Plan, spec: &JobSpec) -> Result<HomomorphicLane> {
    let public = ks.additive_public_key().with_context(|| {
        "the keystore has no TFHE keys for the homomorphic lane (a keystore made before it: create a new one with `symbi keys init`)"
    })?;
    let stage: Arc<dyn crate::HomomorphicStage> =
        match compute_sandbox(plan, &spec.binaries, spec.stage_limits.clone()) {
            Some(sandbox) if spec.stream.is_some() => Arc::new(SandboxedReduce::live(sandbox)),
            Some(sandbox) => Arc::new(SandboxedReduce::new(sandbox)),
            None => Arc::new(InProcessReduce),
        };
    Ok(HomomorphicLane {
        sink: Arc::new(symbiont_operators::PackSink::new(public)),
        stage,
        key_holder: Arc::new(KeystoreHolder {
            dir: ks.dir().to_owned(),
        }),
    })
}

/// The programmable path's stages: the compute stage in the tier the plan
/// gives it, with the server key on its stdin; the keystore's key holder.
fn programmable_lane(
    ks: &Keystore,
    compiled: symbiont_operators::Compiled,
    plan: &Plan,
    spec: &JobSpec,
) -> Result<ProgrammableLane> {
    let dir = ks.dir().to_owned();
    let limits = crate::stage::evaluate_limits(&spec.stage_limits);
    let stage: Arc<dyn crate::ProgrammableStage> =
        match compute_sandbox(plan, &spec.binaries, limits) {
            Some(sandbox) => Arc::new(SandboxedEvaluate {
                sandbox,
                keystore: dir.clone(),
            }),
            None => Arc::new(InProcessEvaluate { dir: dir.clone() }),
        };
    Ok(ProgrammableLane {
        compiled,
        stage,
        key_holder: Arc::new(KeystoreHolder { dir }),
    })
}

/// How a job that ran did not produce a result.
enum Failure {
    /// A job error.
    Error(String),
    /// A record of a forbidden class was seen.
    Suspended { lane: Lane, line: u64 },
    /// Stopped by [`JobSpec::cancel`].
    Cancelled,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(e) => f.write_str(e),
            Failure::Suspended { lane, line } => {
                write!(f, "suspended at line {line} ({})", lane.class())
            }
            Failure::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// The audit log and the job's number in it.
struct Audit<'a> {
    log: &'a mut AuditLog,
    job: u64,
    /// The keystore that records a persisted copy as its dataset's latest.
    keystore: Option<&'a Path>,
    /// The input's SHA-256 as the job's decisions saw it (its binding, its
    /// approval): the bytes the job reads must be those.
    decided_on: Option<String>,
}

/// Runs the job, records its stages, and writes the result; returns the
/// result's digest, or why there is none. Job errors name
/// files, lines and fields, never values, so they can be audited.
fn execute(
    spec: &JobSpec,
    running: &[PlanNode],
    config: &JobConfig,
    audit: Audit<'_>,
    attesting: Option<(ToCommit, PathBuf, &mut Option<Attesting>)>,
    sink: &mut dyn ResultSink,
    observer: &mut dyn Observer,
) -> Result<std::result::Result<String, Failure>> {
    if let Some(stream) = &spec.stream {
        return execute_stream(spec, stream, running, config, audit, sink, observer);
    }
    let Audit {
        log,
        job,
        keystore,
        decided_on,
    } = audit;
    // The source stage's read digest: a CSV or NDJSON source takes it in
    // the scan that divides the file among the workers; a columnar file or
    // a stored dataset is read for it beside the job.
    let digesting = (!matches!(
        symbiont_operators::Format::of_path(&config.input),
        Some(symbiont_operators::Format::Csv | symbiont_operators::Format::Ndjson)
    ) || symbiont_operators::is_store(&config.input))
    .then(|| {
        let path = input_bytes(&config.input);
        std::thread::spawn(move || file_digest(&path))
    });
    let result = run_batch(&spec.query, config);
    let beside = digesting
        .map(|d| {
            d.join()
                .map_err(|_| anyhow::anyhow!("the input digest thread panicked"))
        })
        .transpose()?
        .transpose()?;
    let mut output = match result {
        Ok(output) => output,
        Err(JobError::Suspended { lane, line, .. }) => {
            return Ok(Err(Failure::Suspended { lane, line }));
        }
        Err(e) => return Ok(Err(Failure::Error(e.to_string()))),
    };
    for sandbox in &output.sandboxes {
        observer.event(Event::Sandbox(sandbox.clone()));
    }
    if let Some(symbiont_crypto::LockStatus::Unlocked(why)) = &output.memory_lock {
        observer.event(Event::Warning(format!(
            "decrypted batches could not be locked into RAM ({why}); they were still zeroized after use"
        )));
    }
    let input_digest = match beside.or_else(|| output.input_sha256.clone()) {
        Some(d) => d,
        None => anyhow::bail!("the source took no digest of {}", config.input.display()),
    };
    if let Some(d) = decided_on.filter(|d| *d != input_digest) {
        return Ok(Err(Failure::Error(format!(
            "{}: the input changed while the job ran (its policies and approval were decided on bytes with SHA-256 {d}; the job read {input_digest}): no result",
            spec.input.display()
        ))));
    }
    if cancelled(spec) {
        return Ok(Err(Failure::Cancelled));
    }
    // The commitment to what the source stage read, signed and logged.
    let attesting = match attesting {
        None => None,
        Some((to_commit, keys_dir, slot)) => {
            let Some(values) = output.attested.take() else {
                anyhow::bail!("the source stage kept no values to commit to");
            };
            let a = slot.insert(to_commit.commit(&values));
            drop(values);
            let entry = log.append(EntryKind::DatasetCommitment, a.commitment_entry(job))?;
            a.record_entry(job);
            a.record_entry(entry);
            Some((a, keys_dir))
        }
    };
    // The prove stage: the result's attested fields, proved over the
    // committed chunks.
    let mut attestation = None;
    if let Some((a, keys_dir)) = attesting {
        match a.prove(&keys_dir, &output.value)? {
            Ok(created) => {
                if created {
                    log.append(
                        EntryKind::KeyEvent,
                        serde_json::json!({"job": job, "event": "created", "key": "Groth16 keys (trusted setup on this machine)", "dir": keys_dir.display().to_string()}),
                    )?;
                }
                let entry = log.append(EntryKind::Proof, a.proof_entry(job)?)?;
                a.record_entry(entry);
                let meta = a.meta();
                // One proof per chunk.
                observer.event(Event::Proved {
                    proofs: meta["chunks"].as_u64().unwrap_or(0) as usize,
                });
                attestation = Some(meta);
            }
            Err(why) => return Ok(Err(Failure::Error(why))),
        }
    }
    // The copy just persisted is its dataset's latest: older ones are
    // refused from now on. Its seal as written, not as read back.
    if let (Some(dest), Some(seal), Some(ks), Some(sealer)) = (
        &output.persisted,
        &output.persisted_seal,
        keystore,
        &config.keys.sealer,
    ) {
        let dataset = sealer.context().dataset();
        let mut event = crate::bindings::record_store(ks, dest, dataset, seal)?;
        event["job"] = job.into();
        log.append(EntryKind::KeyEvent, event)?;
    }
    let result = JobResult {
        output,
        stages: running.to_vec(),
        attestation,
        bundle: spec.bundle.clone(),
    };
    let text = sink.render(&result)?;
    let result_digest = digest(text.as_bytes());
    let output = &result.output;
    for node in running {
        let mut detail =
            serde_json::json!({"job": job, "stage": node.id, "op": node.op, "lane": node.lane});
        match node.op {
            "source" => {
                detail["read_sha256"] = input_digest.clone().into();
                detail["rows"] = output.rows.into();
                detail["quarantined"] = output.quarantined.into();
            }
            "route" => {
                let records: serde_json::Map<String, serde_json::Value> = Lane::ALL
                    .iter()
                    .map(|l| (l.name().to_owned(), output.lanes[l.index()].into()))
                    .collect();
                detail["records"] = records.into();
            }
            "sink" => detail["wrote_sha256"] = result_digest.clone().into(),
            "commit" | "prove" => {
                if let Some(a) = &result.attestation {
                    detail["commitment"] = a["commitment"].clone();
                    detail["chunks"] = a["chunks"].clone();
                }
            }
            _ => {}
        }
        log.append(EntryKind::StageEnd, detail.clone())?;
        observer.event(Event::StageEnded {
            stage: crate::stage::stage_name(node),
            detail,
        });
    }
    sink.write(&text)?;
    Ok(Ok(result_digest))
}

/// A stream's [`execute`]: a line per epoch to `sink` (each also recorded
/// as the sink stage's end of that epoch), then the stages' ends; returns
/// the digest of every line written.
fn execute_stream(
    spec: &JobSpec,
    stream: &crate::stream::StreamSpec,
    running: &[PlanNode],
    config: &JobConfig,
    audit: Audit<'_>,
    sink: &mut dyn ResultSink,
    observer: &mut dyn Observer,
) -> Result<std::result::Result<String, Failure>> {
    use crate::stream::StreamEvent;
    use sha2::{Digest, Sha256};
    let Audit { log, job, .. } = audit;
    let mut written = Sha256::new();
    let sink_id = running.iter().find(|n| n.op == "sink").map(|n| n.id);
    let source_id = running.iter().find(|n| n.op == "source").map(|n| n.id);
    let cancel = spec.cancel.clone();
    // With --emit changes: the value the last lines left.
    let mut previous = None;
    let ran = crate::stream::run_stream(&spec.query, config, stream, cancel, &mut |event| {
        match event {
            StreamEvent::Notice(text) => observer.event(Event::Notice(text)),
            StreamEvent::Resumed(value, checkpoint) => {
                previous = Some(value);
                // The totals it goes on from are the checkpoint's.
                log.append(
                    EntryKind::StageStart,
                    serde_json::json!({"job": job, "stage": source_id, "op": "source", "resumed": checkpoint}),
                )?;
            }
            StreamEvent::Epoch(line, _) => {
                let text = match stream.emit {
                    crate::stream::Emit::Cumulative => line.to_json().to_string() + "\n",
                    crate::stream::Emit::Changes => {
                        let lines =
                            crate::stream::changes(line.epoch, previous.as_ref(), &line.value);
                        previous = Some(line.value.clone());
                        lines.iter().map(|l| l.to_string() + "\n").collect()
                    }
                };
                sink.write(&text)?;
                written.update(text.as_bytes());
                log.append(
                    EntryKind::StageEnd,
                    serde_json::json!({"job": job, "stage": sink_id, "op": "sink", "epoch": line.epoch, "records": line.records, "wrote_sha256": digest(text.as_bytes())}),
                )?;
                // A signed audit checkpoint per epoch: the log is on disk
                // up to this epoch's line, whatever happens to the stream.
                log.checkpoint()?;
            }
        }
        Ok(())
    });
    let end = match ran {
        Ok(end) => end,
        Err(JobError::Suspended { lane, line, .. }) => {
            return Ok(Err(Failure::Suspended { lane, line }));
        }
        Err(e) => return Ok(Err(Failure::Error(e.to_string()))),
    };
    let result_digest = symbiont_verify::hex(&written.finalize());
    for node in running.iter().filter(|n| n.op != "sink") {
        let mut detail = serde_json::json!({"job": job, "stage": node.id, "op": node.op, "lane": node.lane, "epochs": end.epochs});
        match node.op {
            "source" => {
                detail["read_sha256"] = end.read_sha256.clone().into();
                detail["rows"] = end.records.into();
                detail["quarantined"] = end.quarantined.into();
            }
            "route" => {
                let records: serde_json::Map<String, serde_json::Value> = Lane::ALL
                    .iter()
                    .map(|l| (l.name().to_owned(), end.lanes[l.index()].into()))
                    .collect();
                detail["records"] = records.into();
            }
            // The sandboxes whose answers it merged, each started once
            // for the whole stream.
            "merge" => detail["sandboxes"] = end.sandboxes.clone().into(),
            _ => {}
        }
        log.append(EntryKind::StageEnd, detail.clone())?;
        observer.event(Event::StageEnded {
            stage: crate::stage::stage_name(node),
            detail,
        });
    }
    Ok(Ok(result_digest))
}

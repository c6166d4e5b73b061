//! The job as a library: `symbiont_engine::Job` runs a program with the
//! guarantees `symbi run` gives (audit entries, policy decisions, stages
//! in their tiers), observed through its events; and the stages a job
//! reports are the stages `symbi explain` shows, with their tiers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::Value;
use symbiont_engine::{
    Custody, Event, Job, JobResult, JobSpec, OnError, Outcome, Passphrase, ResultSink,
    StageBinaries,
};

mod common;
use common::{Tree, code, text};

/// `(stage, tier)` of every node `symbi explain --format json` says runs
/// (the attestation's stages with `--bundle`).
fn explained(env: &Tree, program: &str, bundle: bool) -> BTreeMap<String, u64> {
    explained_as(env, program, bundle, |n| n["tier"].clone())
        .into_iter()
        .map(|(k, v)| (k, v.as_u64().unwrap()))
        .collect()
}

/// `(stage, what)` of every node `symbi explain --format json` says runs,
/// `what` taken from the node by `field`.
fn explained_as(
    env: &Tree,
    program: &str,
    bundle: bool,
    field: impl Fn(&Value) -> Value,
) -> BTreeMap<String, Value> {
    let out = env.symbi(&["explain", program, "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            let status = n["status"].as_str().unwrap();
            status == "runs" || (bundle && status.starts_with("runs with --bundle"))
        })
        .map(|n| {
            let op = n["op"].as_str().unwrap();
            let name = match n["lane"].as_str() {
                Some(lane) => format!("{op}[{lane}]"),
                None => op.to_owned(),
            };
            (name, field(n))
        })
        .collect()
}

/// `(stage, tier)` of every stage a run reports in `_meta.tiers`.
fn reported(meta: &Value) -> BTreeMap<String, u64> {
    meta["tiers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

#[test]
fn the_stages_a_job_reports_are_the_plans() {
    let env = Tree::new("job-api", "stages");
    for (program, bundle) in [
        ("examples/clinic_costs.symbi", true),
        ("examples/diagnosis_breakdown.symbi", false),
    ] {
        let bundle_path = env.path("out/b.bundle.json");
        let mut args = vec![
            "run",
            program,
            "--input",
            "patients=examples/data/patients.csv",
        ];
        if bundle {
            args.extend(["--bundle", bundle_path.to_str().unwrap()]);
        }
        let out = env.symbi(&args);
        assert_eq!(code(&out), 0, "{program}: {}", text(&out.stderr));
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        let expected = explained(&env, program, bundle);
        assert_eq!(reported(&result["_meta"]), expected, "{program}");
        // Each node became what the plan says: a dataflow operator, or a
        // stage beside the dataflow (the sandboxed aggregations, the
        // homomorphic lane's compute stage, the key holder, the prover).
        let runs_as = explained_as(&env, program, bundle, |n| n["runs_as"].clone());
        let built: BTreeMap<String, Value> = result["_meta"]["built"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(built, runs_as, "{program}");
        assert!(built.values().any(|v| v == "stage"), "{program}: {built:?}");
        assert!(
            built.values().any(|v| v == "dataflow operator"),
            "{program}: {built:?}"
        );
        if bundle {
            assert!(expected.contains_key("commit") && expected.contains_key("prove"));
        }
        // Every stage that ran has its start and end in the audit log.
        let log = env.symbi(&["audit", "show", "--format", "json"]);
        let entries: Vec<Value> = serde_json::from_slice(&log.stdout).unwrap();
        let job = entries
            .iter()
            .rev()
            .find(|e| e["kind"] == "job_start")
            .unwrap()["seq"]
            .clone();
        for kind in ["stage_start", "stage_end"] {
            let stages = entries
                .iter()
                .filter(|e| e["kind"] == kind && e["detail"]["job"] == job)
                .count();
            assert_eq!(stages, expected.len(), "{program}: {kind}");
        }
    }
}

const PLAIN: &str = r#"
struct Row { k: string, v: int }

agent total(rows: Stream<Row>) -> int {
    return sum(rows.map(r => r.v));
}
"#;

/// What a test's sink keeps.
#[derive(Default)]
struct Kept {
    rendered: Option<Value>,
    written: Option<String>,
}

impl ResultSink for Kept {
    fn render(&self, result: &JobResult) -> anyhow::Result<String> {
        Ok(result.to_json().to_string())
    }

    fn write(&mut self, text: &str) -> anyhow::Result<()> {
        self.rendered = Some(serde_json::from_str(text)?);
        self.written = Some(text.to_owned());
        Ok(())
    }
}

fn spec(env: &Tree, input: PathBuf) -> JobSpec {
    let (program, diagnostics) = symbiont_dsl::parse(PLAIN);
    assert!(diagnostics.is_empty());
    let program = program.unwrap();
    let query = symbiont_dsl::lower_query(&program, PLAIN, None).unwrap();
    let _ = env;
    JobSpec {
        program,
        program_file: "plain.symbi".into(),
        program_sha256: symbiont_engine::digest(PLAIN.as_bytes()),
        query,
        input,
        tfhe_input: false,
        dataset_id: Some("rows".into()),
        bindings: None,
        principal: symbiont_engine::Principal::anonymous(),
        resource: BTreeMap::new(),
        workers: 2,
        on_error: OnError::Fail,
        approval: None,
        persist_encrypted: None,
        bundle: None,
        ceremony: None,
        stage_limits: symbiont_sandbox::Limits::default(),
        binaries: StageBinaries {
            init: PathBuf::from(env!("CARGO_BIN_EXE_symbi-sandbox-init")),
            worker: PathBuf::from(env!("CARGO_BIN_EXE_symbi")),
        },
        progress: None,
        cancel: None,
        stream: None,
    }
}

fn custody(env: &Tree) -> Custody {
    Custody {
        keystore: env.path("data/keystore"),
        create_keystore: true,
        passphrase: Passphrase::none(),
        aes_backend: symbiont_crypto::Backend::DEFAULT,
        audit_key: env.path("data/audit.key"),
        requests: Ok(env.path("state/requests")),
    }
}

fn log(env: &Tree) -> symbiont_crypto::AuditLog {
    let key = symbiont_crypto::AuditSigningKey::generate("job-api").unwrap();
    key.save(&env.path("data/audit.key")).unwrap();
    symbiont_crypto::AuditLog::open(&env.path("state/audit.log"), key, 1024)
        .unwrap()
        .0
}

/// The test's audit log, verified against its key.
fn logged(env: &Tree) -> Vec<symbiont_crypto::Entry> {
    let public = symbiont_crypto::AuditSigningKey::load(&env.path("data/audit.key"))
        .unwrap()
        .verifying_key();
    symbiont_crypto::verify(&env.path("state/audit.log"), &public)
        .unwrap()
        .entries
}

#[test]
fn a_job_run_through_the_library_is_audited_and_observed() {
    let env = Tree::new("job-api", "library");
    let input = env.path("out/rows.csv");
    std::fs::write(&input, "k,v\na,1\nb,2\nc,39\n").unwrap();
    let job = Job::prepare(spec(&env, input)).unwrap().unwrap();
    let plan = job.plan();
    let mut log = log(&env);
    let mut sink = Kept::default();
    let mut events: Vec<Event> = Vec::new();
    let outcome = job
        .run(&custody(&env), &mut log, &mut sink, &mut events)
        .unwrap();
    let Outcome::Done { job, result_sha256 } = outcome else {
        panic!("{outcome:?}");
    };
    let result = sink.rendered.unwrap();
    assert_eq!(result["value"], 42);
    assert_eq!(
        result_sha256,
        symbiont_engine::digest(sink.written.unwrap().as_bytes())
    );
    // The events: started, each running stage of the plan started and
    // ended, in plan order.
    assert_eq!(events.first(), Some(&Event::Started { job }));
    let running: Vec<String> = plan
        .nodes
        .iter()
        .filter(|n| n.runs(false))
        .map(symbiont_engine::stage::stage_name)
        .collect();
    let started: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::StageStarted { stage, .. } => Some(stage.clone()),
            _ => None,
        })
        .collect();
    let ended: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::StageEnded { stage, .. } => Some(stage.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started, running);
    assert_eq!(ended, running);
    // The audit log holds the job from start to end, checkpointed.
    let kinds: Vec<String> = logged(&env)
        .iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("job_start"));
    assert_eq!(kinds.last().map(String::as_str), Some("job_end"));
    assert_eq!(
        kinds.iter().filter(|k| *k == "stage_start").count(),
        running.len()
    );
}

#[test]
fn a_cancelled_job_ends_without_a_result_and_says_so_in_the_log() {
    let env = Tree::new("job-api", "cancel");
    let input = env.path("out/rows.csv");
    std::fs::write(&input, "k,v\na,1\n").unwrap();
    let mut spec = spec(&env, input);
    spec.cancel = Some(Arc::new(AtomicBool::new(true)));
    let job = Job::prepare(spec).unwrap().unwrap();
    let mut log = log(&env);
    let mut sink = Kept::default();
    let outcome = job
        .run(&custody(&env), &mut log, &mut sink, &mut Vec::new())
        .unwrap();
    assert!(matches!(outcome, Outcome::Cancelled), "{outcome:?}");
    assert!(sink.written.is_none());
    let entries = logged(&env);
    let last = entries.last().unwrap();
    assert_eq!(last.kind.as_str(), "job_end");
    assert_eq!(last.detail["status"], "cancelled");
}

#[test]
fn a_request_that_cannot_run_is_refused_before_anything_is_touched() {
    let env = Tree::new("job-api", "refused");
    let input = env.path("out/rows.csv");
    std::fs::write(&input, "k,v\na,1\n").unwrap();
    let mut spec = spec(&env, input);
    spec.persist_encrypted = Some(env.path("out"));
    match Job::prepare(spec).unwrap() {
        Err(Outcome::Usage(why)) => assert!(why.contains("it exists"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(!env.path("state/audit.log").exists());
    assert!(!env.path("data/keystore").exists());
}

#[test]
fn a_front_end_cannot_leave_out_the_datasets_own_policies() {
    // The library reads the policy file beside the input itself: a
    // `JobSpec` has no way to omit it.
    let env = Tree::new("job-api", "dataset-policy");
    let input = env.path("out/rows.csv");
    std::fs::write(&input, "k,v\na,1\n").unwrap();
    std::fs::write(
        env.path("out/rows.csv.policy.symbi"),
        "policy owner {\n    allow: [\"read\", \"analyze\"];\n}\n",
    )
    .unwrap();
    match Job::prepare(spec(&env, input)).unwrap() {
        Err(Outcome::PolicyDiagnostics(denials)) => {
            assert!(!denials.is_empty());
            assert!(denials.iter().all(|d| d.code.is_policy()), "{denials:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!env.path("state/audit.log").exists());
}

/// Issue 21, point 6: the job logs the digest of the dataset files it
/// decided on. The metadata file is swapped between `prepare` (which read
/// and applied it) and `run`, then removed: the log names the bytes the
/// job read, never `""` nor the digest of the file swapped in.
#[test]
fn the_log_holds_the_digest_of_the_dataset_files_the_job_read() {
    let env = Tree::new("job-api", "carried");
    let input = env.path("out/rows.csv");
    std::fs::write(&input, "k,v\na,1\n").unwrap();
    let meta = env.path("out/rows.csv.meta.json");
    let read = br#"{"attributes": {"retention_period": "30.days"}}"#;
    std::fs::write(&meta, read).unwrap();
    let job = Job::prepare(spec(&env, input)).unwrap().unwrap();
    std::fs::write(&meta, br#"{"attributes": {"retention_period": "1.days"}}"#).unwrap();
    let mut log = log(&env);
    let outcome = job
        .run(
            &custody(&env),
            &mut log,
            &mut Kept::default(),
            &mut Vec::new(),
        )
        .unwrap();
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    std::fs::remove_file(&meta).unwrap();
    let start = logged(&env)
        .into_iter()
        .find(|e| e.kind.as_str() == "job_start")
        .unwrap();
    assert_eq!(
        start.detail["dataset_metadata"]["sha256"],
        symbiont_engine::digest(read),
        "{}",
        start.detail
    );
}

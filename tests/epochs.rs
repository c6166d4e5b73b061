//! Time in a job is the epoch: the dataflow carries it as its timestamp,
//! partial aggregates are kept per epoch, and the stages beside the
//! dataflow are started per epoch (the decrypting stage is told its epoch
//! and must answer for it). A batch job is one epoch (0); a stream adds
//! epochs, not machinery.

use std::path::PathBuf;
use std::sync::Arc;

use symbiont_crypto::Keystore;
use symbiont_engine::stage::SandboxedStage;
use symbiont_engine::{JobConfig, LaneKeys, OnError, SealedStage, run_batch};
use symbiont_operators::{
    AggregatePartials, GROUP_KEYS, LANE_COUNT, Lane, PartialUpdate, Query, Record, Routed,
    SealedBatch, Value,
};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::capture::{Capture, Extract};
use timely::dataflow::operators::{Input, OkErr};

mod recording;
use recording::RecordingStage;

const PROGRAM: &str = r#"
struct Visit { clinic: string, cost: int, email: string }

@classifier
agent triage(v: Visit) -> string {
    if (pii.email(v.email)) {
        return "confidential";
    }
    return "public";
}

agent total(visits: Stream<Visit>) -> int
    with classifier = "triage" {
    return sum(visits.map(v => v.cost));
}
"#;

fn query() -> Query {
    let (program, diagnostics) = symbiont_dsl::parse(PROGRAM);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    symbiont_dsl::lower_query(&program.unwrap(), PROGRAM, None).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("symbi-epochs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A new keystore in `dir/keys`, with no passphrase.
fn keystore(dir: &std::path::Path) -> Arc<Keystore> {
    let keys = dir.join("keys");
    Keystore::init(&keys, None).unwrap();
    Arc::new(Keystore::open(&keys, None).unwrap())
}

fn record(line: u64, cost: i64) -> Record {
    Record {
        line,
        values: vec![
            Value::Str("north".into()),
            Value::Int(cost),
            Value::Str("-".into()),
        ],
    }
}

#[test]
fn partial_aggregates_are_kept_per_epoch() {
    let query = Arc::new(query());
    let shared = Arc::clone(&query);
    let captured = timely::example(move |scope| {
        let (mut input, stream) = scope.new_input::<Vec<Routed>>();
        type Partials<'s> = StreamVec<'s, u64, PartialUpdate<u64>>;
        type Errors<'s> = StreamVec<'s, u64, symbiont_operators::RowError>;
        let (partials, _errors): (Partials<'_>, Errors<'_>) = stream
            .aggregate_partials(std::rc::Rc::new((*shared).clone()), None, None, Pipeline)
            .ok_err(|r| r);
        let captured = partials.capture();
        // Two records in epoch 0, one in epoch 1.
        input.send(Routed::Clear(Lane::Plaintext, record(1, 10)));
        input.send(Routed::Clear(Lane::Plaintext, record(2, 20)));
        input.advance_to(1);
        input.send(Routed::Clear(Lane::Plaintext, record(3, 5)));
        input.close();
        captured
    });
    let mut sums: Vec<(u64, i128)> = Vec::new();
    let mut counts: Vec<(u64, i64)> = Vec::new();
    let extracted: Vec<(u64, Vec<PartialUpdate<u64>>)> = captured.extract();
    for (time, updates) in extracted {
        for ((agg, lane, _), t, partial) in updates {
            assert_eq!(t, time);
            assert_eq!(lane, Lane::Plaintext);
            match agg {
                LANE_COUNT => counts.push((t, partial.count)),
                GROUP_KEYS => {}
                _ => sums.push((t, partial.int_sum)),
            }
        }
    }
    sums.sort();
    counts.sort();
    assert_eq!(sums, [(0, 30), (1, 5)]);
    assert_eq!(counts, [(0, 2), (1, 1)]);
}

#[test]
fn a_batch_job_is_one_epoch_and_starts_its_stage_for_it() {
    let dir = scratch("one");
    let input = dir.join("visits.csv");
    let mut csv = String::from("clinic,cost,email\n");
    for i in 0..3000 {
        let email = if i % 3 == 0 { "a@example.org" } else { "-" };
        csv.push_str(&format!("north,{i},{email}\n"));
    }
    std::fs::write(&input, csv).unwrap();
    let query = query();
    let keys = LaneKeys::for_dataset(keystore(&dir), "epochs", &query.schema).unwrap();
    let stage = Arc::new(RecordingStage::default());
    let config = JobConfig {
        input,
        workers: 2,
        on_error: OnError::Fail,
        progress: None,
        keys,
        persist: None,
        forbidden_lanes: [false; 3],
        sealed_stage: Some(Arc::clone(&stage) as Arc<dyn SealedStage>),
        homomorphic: None,
        persist_tfhe: None,
        programmable: None,
        commit: None,
        carried: Vec::new(),
    };
    run_batch(&query, &config).unwrap();
    let seen = stage.seen.lock().unwrap();
    // Both workers' batches went to one stage, started once, for epoch 0.
    assert_eq!(seen.epochs, [0]);
    assert!(seen.finished);
    assert!(seen.lanes.iter().all(|l| *l == Lane::AesGcm) && !seen.lanes.is_empty());
}

/// The shell line that writes `answer` as a stage does: its length (a
/// u32, little-endian, in `printf`'s octal escapes), then its bytes.
fn printf_answer(answer: &str) -> String {
    let len = u32::try_from(answer.len()).unwrap();
    let len: String = len
        .to_le_bytes()
        .iter()
        .map(|b| format!("\\{b:03o}"))
        .collect();
    format!("printf '{len}%s' '{answer}'")
}

/// A stage whose worker reads its whole input, then writes `answer`.
fn stage_answering(name: &str, answer: &str) -> (SandboxedStage, Query) {
    stage_running(name, &format!("cat >/dev/null\n{}", printf_answer(answer)))
}

/// A sandboxed stage (tier 1) whose worker is the shell script `body`.
fn stage_running(name: &str, body: &str) -> (SandboxedStage, Query) {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch(name);
    let worker = dir.join("worker.sh");
    std::fs::write(&worker, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let query = query();
    let ks = keystore(&dir);
    // Makes the dataset's data key, which the stage's header carries.
    LaneKeys::for_dataset(Arc::clone(&ks), "epochs", &query.schema).unwrap();
    let stage = SandboxedStage {
        tiers: [0, 1, 0],
        keystore: ks,
        dataset: "epochs".into(),
        init: PathBuf::from(env!("CARGO_BIN_EXE_symbi-sandbox-init")),
        worker,
        limits: symbiont_sandbox::Limits::default(),
    };
    (stage, query)
}

fn batch() -> SealedBatch {
    SealedBatch {
        lane: Lane::AesGcm,
        bytes: Arc::from(&b"\x01\x01sealed"[..]),
    }
}

#[test]
fn a_stage_answer_for_another_epoch_is_refused() {
    let answer = |epoch: u64| {
        format!(r#"{{"epoch":{epoch},"partials":[],"errors":[],"failures":[],"memory_lock":null}}"#)
    };
    // Answering for its own epoch, the stage is heard.
    let (stage, query) = stage_answering("own", &answer(3));
    let feed = stage.start(&query, 3);
    feed.send(batch());
    assert!(feed.finish().is_ok());
    // An answer for another epoch (a stage that mixed its epochs up) is
    // not taken for this one's. A hostile stage can echo the epoch it was
    // given and lie about its partials all the same: what it cannot
    // forge is the attestation, proved in the job's process from what
    // the source read (docs/ATTESTATION.md).
    let (stage, query) = stage_answering("other", &answer(2));
    let feed = stage.start(&query, 3);
    feed.send(batch());
    let error = feed.finish().unwrap_err();
    assert!(
        error.contains("answered for epoch 2 when asked for epoch 3"),
        "{error}"
    );
}

#[test]
fn a_stage_that_answers_more_than_it_was_asked_is_killed() {
    // A stage answers once per epoch it is asked for. One that writes a
    // second answer (to be taken for the next epoch's, ahead of its
    // batches) is cut off at that answer and its epoch fails.
    let answer = r#"{"epoch":3,"partials":[],"errors":[],"failures":[],"memory_lock":null}"#;
    let twice = format!("cat >/dev/null\n{0}\n{0}", printf_answer(answer));
    let (stage, query) = stage_running("twice", &twice);
    let feed = stage.start(&query, 3);
    feed.send(batch());
    let error = feed.finish().unwrap_err();
    assert!(error.contains("an answer it was not asked for"), "{error}");
}

/// `finish` of a stream's (live) stage fed one batch, run on a thread:
/// its answer, or `None` if it has not come within 60 s (a hung job).
fn finish_live(stage: SandboxedStage, query: &Query) -> Option<Result<(), String>> {
    let live = stage.live();
    let feed = live.start(query, 0);
    feed.send(batch());
    let (to, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = to.send(feed.finish().map(|_| ()));
        drop(live);
    });
    answered
        .recv_timeout(std::time::Duration::from_secs(60))
        .ok()
}

#[test]
fn a_live_stage_that_ends_without_answering_fails_its_epoch_not_the_job_s_wait() {
    // It reads nothing and exits once its input is all queued: the job,
    // which waits for the epoch's answer, learns that none will come.
    let (stage, query) = stage_running("silent", "sleep 1");
    let error = finish_live(stage, &query)
        .expect("the job waited for ever")
        .unwrap_err();
    assert!(error.contains("ended without answering"), "{error}");
}

#[test]
fn a_live_stage_that_never_answers_is_killed_at_its_timeout() {
    // While an answer is due, the stage's timeout runs, though the job
    // has nothing more to hand it.
    let (mut stage, query) = stage_running("stuck", "sleep 600");
    stage.limits.timeout = std::time::Duration::from_secs(2);
    let error = finish_live(stage, &query)
        .expect("the job waited for ever")
        .unwrap_err();
    assert!(error.contains("timeout"), "{error}");
}

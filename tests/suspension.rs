//! A record of a class a policy forbids suspends the job before any
//! record of that class is opened and before any total is decrypted.
//!
//! The stages are instrumented through the engine's own seams: a sealed
//! stage and a key holder that record every call, and the in-process
//! opener, which reports whether it opened a batch. On the engine before
//! this test, the job was suspended only after the sandboxed stage had
//! opened the sealed batches and the key holder had decrypted the
//! homomorphic totals; and a stored dataset read on the programmable path
//! was never suspended at all.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use symbiont_crypto::Keystore;
use symbiont_crypto::additive::Reduced;
use symbiont_crypto::programmable::{Encrypted, Spec};
use symbiont_engine::{
    HomomorphicLane, InProcessReduce, JobConfig, JobError, KeyHolder, LaneKeys, OnError,
    SealedStage, run_batch,
};
use symbiont_operators::{ColumnKey, Lane, Ledger, Query};

mod recording;
use recording::RecordingStage;

const PROGRAM: &str = r#"
struct Patient {
    patient_id: string, name: string, ssn: string, email: string, age: int,
    sex: string, zip: string, diagnosis: string, cost_cents: int, visits: int
}

@classifier
agent triage(p: Patient) -> string {
    if (p.diagnosis == "HIV" || p.diagnosis == "oncology") {
        return "restricted";
    }
    if (pii.ssn(p.ssn) || pii.email(p.email)) {
        return "confidential";
    }
    return "public";
}

agent total(patients: Stream<Patient>) -> int
    with classifier = "triage" {
    return sum(patients.map(p => p.cost_cents));
}
"#;

/// Line 6 of the sample is the first restricted record (HIV); line 2 the
/// first confidential one (an e-mail address).
const FIRST_RESTRICTED: u64 = 6;
const FIRST_CONFIDENTIAL: u64 = 2;

fn query() -> Query {
    query_of(PROGRAM)
}

/// The program with no restricted class: only confidential records are
/// sealed (so the opener's report speaks of them alone).
fn confidential_only() -> Query {
    query_of(&PROGRAM.replace(r#"return "restricted";"#, r#"return "public";"#))
}

fn query_of(text: &str) -> Query {
    let (program, diagnostics) = symbiont_dsl::parse(text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    symbiont_dsl::lower_query(&program.unwrap(), text, None).unwrap()
}

fn patients() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/patients.csv")
}

fn keystore(name: &str) -> Arc<Keystore> {
    let dir = std::env::temp_dir().join(format!("symbi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Keystore::init(&dir, None).unwrap();
    Arc::new(Keystore::open(&dir, None).unwrap())
}

/// A key holder that records each request to decrypt (and decrypts
/// nothing).
#[derive(Debug, Default)]
struct RecordingHolder {
    asked: Mutex<u32>,
}

impl KeyHolder for RecordingHolder {
    fn decrypt(
        &self,
        _: &[(ColumnKey, Reduced)],
        _: &Ledger,
    ) -> Result<Vec<(ColumnKey, i128)>, String> {
        *self.asked.lock().unwrap() += 1;
        Err("this key holder decrypts nothing".into())
    }

    fn reserve_programmable(&self, _: &Spec, _: u64) -> Result<String, String> {
        *self.asked.lock().unwrap() += 1;
        Err("this key holder decrypts nothing".into())
    }

    fn decrypt_programmable(
        &self,
        _: &[Encrypted],
        _: &Spec,
        _: u64,
        _: &str,
    ) -> Result<Vec<(i64, Option<i64>)>, String> {
        *self.asked.lock().unwrap() += 1;
        Err("this key holder decrypts nothing".into())
    }
}

fn config(input: PathBuf, keys: LaneKeys, forbidden: Lane) -> JobConfig {
    let mut forbidden_lanes = [false; 3];
    forbidden_lanes[forbidden.index()] = true;
    JobConfig {
        input,
        workers: 2,
        on_error: OnError::Fail,
        progress: None,
        keys,
        persist: None,
        forbidden_lanes,
        sealed_stage: None,
        homomorphic: None,
        persist_tfhe: None,
        programmable: None,
        commit: None,
        carried: Vec::new(),
    }
}

fn assert_suspended(result: Result<symbiont_engine::JobOutput, JobError>, lane: Lane, at: u64) {
    match result {
        Err(JobError::Suspended { lane: l, line, .. }) => {
            assert_eq!((l, line), (lane, at));
        }
        other => panic!("expected a suspension, got {other:?}"),
    }
}

#[test]
fn forbidden_restricted_records_reach_neither_the_stage_nor_the_key_holder() {
    let query = query();
    let ks = keystore("suspend-he");
    let keys = LaneKeys::for_dataset(Arc::clone(&ks), "suspend-he", &query.schema).unwrap();
    let stage = Arc::new(RecordingStage::default());
    let holder = Arc::new(RecordingHolder::default());
    let mut config = config(patients(), keys, Lane::Homomorphic);
    config.sealed_stage = Some(Arc::clone(&stage) as Arc<dyn SealedStage>);
    config.homomorphic = Some(HomomorphicLane {
        sink: Arc::new(symbiont_operators::PackSink::new(
            ks.additive_public_key().unwrap(),
        )),
        stage: Arc::new(InProcessReduce),
        key_holder: Arc::clone(&holder) as Arc<dyn KeyHolder>,
    });
    assert_suspended(
        run_batch(&query, &config),
        Lane::Homomorphic,
        FIRST_RESTRICTED,
    );
    assert_eq!(*holder.asked.lock().unwrap(), 0, "the key holder decrypted");
    // Confidential batches (an allowed class) stream to the stage while
    // the dataflow runs; restricted ones never do, and the stage is
    // abandoned, not asked for its answer.
    assert!(
        !stage.given(Lane::Homomorphic),
        "the sandboxed stage was handed restricted batches"
    );
    assert!(
        !stage.finished(),
        "the suspended job asked the stage for its answer"
    );
}

#[test]
fn forbidden_confidential_records_are_never_opened_in_process() {
    let query = confidential_only();
    let ks = keystore("suspend-aes");
    let keys = LaneKeys::for_dataset(ks, "suspend-aes", &query.schema).unwrap();
    let opener = Arc::clone(keys.opener.as_ref().unwrap());
    let config = config(patients(), keys, Lane::AesGcm);
    assert_suspended(run_batch(&query, &config), Lane::AesGcm, FIRST_CONFIDENTIAL);
    // The opener reports a lock status once it has opened a batch.
    assert_eq!(
        opener.lock_status(),
        None,
        "a confidential batch was opened"
    );
    assert!(opener.failures().is_empty());
}

#[test]
fn forbidden_confidential_batches_are_not_handed_to_the_sandboxed_stage() {
    let query = query();
    let ks = keystore("suspend-stage");
    let keys = LaneKeys::for_dataset(ks, "suspend-stage", &query.schema).unwrap();
    let stage = Arc::new(RecordingStage::default());
    let mut config = config(patients(), keys, Lane::AesGcm);
    config.sealed_stage = Some(Arc::clone(&stage) as Arc<dyn SealedStage>);
    assert_suspended(run_batch(&query, &config), Lane::AesGcm, FIRST_CONFIDENTIAL);
    assert!(
        !stage.given(Lane::AesGcm),
        "a confidential batch was handed over"
    );
    assert!(!stage.finished());
}

/// A programmable compute stage that records each call (and computes
/// nothing).
#[derive(Debug, Default)]
struct RecordingEvaluate {
    asked: Mutex<u32>,
}

impl symbiont_engine::ProgrammableStage for RecordingEvaluate {
    fn evaluate(
        &self,
        _: &symbiont_crypto::programmable::Spec,
        _: Vec<Vec<u8>>,
    ) -> Result<(Vec<Encrypted>, Option<serde_json::Value>), String> {
        *self.asked.lock().unwrap() += 1;
        Err("this stage computes nothing".into())
    }
}

#[test]
fn forbidden_restricted_records_of_a_tfhe_store_are_not_evaluated_or_decrypted() {
    let query = query();
    let ks = keystore("suspend-tfhe");
    // The first rows of the sample (one restricted record, at line 6),
    // persisted with their TFHE copy.
    let dir = std::env::temp_dir().join(format!("symbi-suspend-tfhe-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("few.csv");
    let text = std::fs::read_to_string(patients()).unwrap();
    std::fs::write(
        &csv,
        text.lines().take(8).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let store = dir.join("store");
    let keys = LaneKeys::for_dataset(Arc::clone(&ks), "suspend-tfhe", &query.schema).unwrap();
    let (public, _) = ks.programmable_public_key().unwrap();
    let mut persisting = config(csv, keys.clone(), Lane::Homomorphic);
    persisting.forbidden_lanes = [false; 3];
    persisting.persist = Some(store.clone());
    persisting.persist_tfhe = Some(Arc::new(public));
    persisting.homomorphic = Some(HomomorphicLane {
        sink: Arc::new(symbiont_operators::PackSink::new(
            ks.additive_public_key().unwrap(),
        )),
        stage: Arc::new(InProcessReduce),
        key_holder: Arc::new(symbiont_engine::KeystoreHolder {
            dir: ks.dir().to_owned(),
        }),
    });
    run_batch(&query, &persisting).unwrap();

    let stage = Arc::new(RecordingEvaluate::default());
    let holder = Arc::new(RecordingHolder::default());
    let mut reading = config(store, keys, Lane::Homomorphic);
    reading.programmable = Some(symbiont_engine::ProgrammableLane {
        compiled: symbiont_operators::compile(&query).unwrap(),
        stage: Arc::clone(&stage) as Arc<dyn symbiont_engine::ProgrammableStage>,
        key_holder: Arc::clone(&holder) as Arc<dyn KeyHolder>,
    });
    assert_suspended(
        run_batch(&query, &reading),
        Lane::Homomorphic,
        FIRST_RESTRICTED,
    );
    assert_eq!(
        *stage.asked.lock().unwrap(),
        0,
        "the compute stage evaluated"
    );
    assert_eq!(*holder.asked.lock().unwrap(), 0, "the key holder decrypted");
}

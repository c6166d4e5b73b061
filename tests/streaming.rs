//! Sealed batches stream to the sandboxed stage while the dataflow runs,
//! instead of being collected and handed over after it.
//!
//! The stage here is the engine's own seam, a [`SealedStage`], that
//! records how many rows the job had read when each batch reached it. On
//! the engine before streaming, every batch arrived after the whole input
//! had been read.

use std::sync::Arc;

use symbiont_crypto::Keystore;
use symbiont_engine::{JobConfig, LaneKeys, OnError, SealedStage, run_batch};
use symbiont_operators::Lane;

mod recording;
use recording::RecordingStage;

const PROGRAM: &str = r#"
struct Patient {
    patient_id: string, name: string, ssn: string, email: string, age: int,
    sex: string, zip: string, diagnosis: string, cost_cents: int, visits: int
}

@classifier
agent triage(p: Patient) -> string {
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

const ROWS: u64 = 50_000;

#[test]
fn sealed_batches_reach_the_stage_while_the_input_is_being_read() {
    let dir = std::env::temp_dir().join(format!("symbi-streaming-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("patients.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    symbiont_engine::generate_patients(ROWS, 7, &mut file).unwrap();
    drop(file);

    let (program, diagnostics) = symbiont_dsl::parse(PROGRAM);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let query = symbiont_dsl::lower_query(&program.unwrap(), PROGRAM, None).unwrap();
    let keys_dir = dir.join("keys");
    Keystore::init(&keys_dir, None).unwrap();
    let ks = Arc::new(Keystore::open(&keys_dir, None).unwrap());
    let keys = LaneKeys::for_dataset(ks, "streaming", &query.schema).unwrap();

    let stage = Arc::new(RecordingStage::default());
    let config = JobConfig {
        input,
        workers: 1,
        on_error: OnError::Fail,
        progress: Some(Arc::clone(&stage.rows)),
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
    let output = run_batch(&query, &config).unwrap();
    assert_eq!(output.rows, ROWS);

    let seen = stage.seen.lock().unwrap();
    // The program's only encrypted class is confidential.
    assert!(
        seen.lanes.iter().all(|l| *l == Lane::AesGcm),
        "{:?}",
        seen.lanes
    );
    assert!(seen.finished, "the job never asked for the stage's answer");
    assert!(!seen.sent_after_finish, "a batch came after the answer");
    let first = *seen.rows_at_send.first().expect("no sealed batch at all");
    assert!(
        first < ROWS / 2,
        "the first sealed batch reached the stage only after {first} of {ROWS} rows were read"
    );
    // One batch per full batch of confidential records, each handed over
    // as it was sealed: they arrive as the reading goes on.
    let last = *seen.rows_at_send.last().unwrap();
    assert!(
        last > first,
        "every batch arrived at once ({first} rows read)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

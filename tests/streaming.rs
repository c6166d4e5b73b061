//! Sealed batches stream to the sandboxed stage while the dataflow runs,
//! instead of being collected and handed over after it.
//!
//! The stage here is the engine's own seam, a [`SealedStage`], that
//! records how many rows the job had read when each batch reached it. On
//! the engine before streaming, every batch arrived after the whole input
//! had been read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use symbiont_crypto::Keystore;
use symbiont_engine::{
    JobConfig, LaneKeys, OnError, SealedFeed, SealedStage, StageOutput, run_batch,
};
use symbiont_operators::{Lane, Query, SealedBatch};

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

/// Rows read when each batch was handed over, and whether the job asked
/// for the stage's answer (after which no batch may come).
#[derive(Debug, Default)]
struct Seen {
    rows_at_send: Vec<u64>,
    finished: bool,
    sent_after_finish: bool,
}

#[derive(Debug)]
struct TimingStage {
    seen: Arc<Mutex<Seen>>,
    rows: Arc<AtomicU64>,
}

struct TimingFeed {
    seen: Arc<Mutex<Seen>>,
    rows: Arc<AtomicU64>,
}

impl SealedStage for TimingStage {
    fn tier(&self, lane: Lane) -> u8 {
        u8::from(lane != Lane::Plaintext)
    }

    fn start(&self, _: &Query) -> Box<dyn SealedFeed> {
        Box::new(TimingFeed {
            seen: Arc::clone(&self.seen),
            rows: Arc::clone(&self.rows),
        })
    }
}

impl SealedFeed for TimingFeed {
    fn send(&self, batch: SealedBatch) {
        assert_eq!(batch.lane, Lane::AesGcm);
        let mut seen = self.seen.lock().unwrap();
        seen.sent_after_finish |= seen.finished;
        seen.rows_at_send.push(self.rows.load(Ordering::SeqCst));
    }

    fn finish(&self) -> Result<StageOutput, String> {
        self.seen.lock().unwrap().finished = true;
        Ok(StageOutput::default())
    }
}

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

    let rows = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let config = JobConfig {
        input,
        workers: 1,
        on_error: OnError::Fail,
        progress: Some(Arc::clone(&rows)),
        keys,
        persist: None,
        forbidden_lanes: [false; 3],
        sealed_stage: Some(Arc::new(TimingStage {
            seen: Arc::clone(&seen),
            rows: Arc::clone(&rows),
        }) as Arc<dyn SealedStage>),
        homomorphic: None,
        persist_tfhe: None,
        programmable: None,
        commit: None,
    };
    let output = run_batch(&query, &config).unwrap();
    assert_eq!(output.rows, ROWS);

    let seen = seen.lock().unwrap();
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

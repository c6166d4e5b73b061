//! A sealed stage for the engine-level tests: it opens nothing, and
//! records what the job hands it and when.

// Each test crate uses a part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use symbiont_engine::{SealedFeed, SealedStage, StageOutput};
use symbiont_operators::{Lane, Query, SealedBatch};

/// What a [`RecordingStage`] saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// The lane of each batch handed over, in order.
    pub(crate) lanes: Vec<Lane>,
    /// The rows the job had read when each batch was handed over.
    pub(crate) rows_at_send: Vec<u64>,
    /// Whether the job asked for the stage's answer.
    pub(crate) finished: bool,
    /// Whether a batch came after the answer was asked for.
    pub(crate) sent_after_finish: bool,
    /// The epoch of each start of the stage.
    pub(crate) epochs: Vec<u64>,
}

/// A stage in tier 1 for the encrypted lanes (0 for the public one) that
/// records every batch and whether it was asked for its answer; `rows` is
/// the job's progress counter, if the test reads it.
#[derive(Debug, Default)]
pub(crate) struct RecordingStage {
    pub(crate) seen: Arc<Mutex<Seen>>,
    pub(crate) rows: Arc<AtomicU64>,
}

impl RecordingStage {
    /// Whether a batch of `lane` was handed over.
    pub(crate) fn given(&self, lane: Lane) -> bool {
        self.seen.lock().unwrap().lanes.contains(&lane)
    }

    /// Whether the job asked for the stage's answer.
    pub(crate) fn finished(&self) -> bool {
        self.seen.lock().unwrap().finished
    }
}

/// A started [`RecordingStage`]: the same records.
struct RecordingFeed {
    seen: Arc<Mutex<Seen>>,
    rows: Arc<AtomicU64>,
}

impl SealedStage for RecordingStage {
    fn tier(&self, lane: Lane) -> u8 {
        u8::from(lane != Lane::Plaintext)
    }

    fn start(&self, _: &Query, epoch: u64) -> Box<dyn SealedFeed> {
        self.seen.lock().unwrap().epochs.push(epoch);
        Box::new(RecordingFeed {
            seen: Arc::clone(&self.seen),
            rows: Arc::clone(&self.rows),
        })
    }
}

impl SealedFeed for RecordingFeed {
    fn send(&self, batch: SealedBatch) {
        let mut seen = self.seen.lock().unwrap();
        seen.sent_after_finish |= seen.finished;
        seen.lanes.push(batch.lane);
        seen.rows_at_send.push(self.rows.load(Ordering::SeqCst));
    }

    fn finish(&self) -> Result<StageOutput, String> {
        self.seen.lock().unwrap().finished = true;
        Ok(StageOutput::default())
    }
}

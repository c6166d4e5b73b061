//! The Symbiont engine: queries become timely + differential-dataflow jobs.
//!
//! [`run_batch`] runs a [`Query`](symbiont_operators::Query) over a dataset
//! on `workers` threads: each worker types its share of the rows, the
//! classify operator tags them with lanes, the aggregate operator computes
//! partial aggregates per lane, and differential dataflow's consolidation
//! merges them; the result is assembled into the entry agent's value.
//! [`JobConfig`] says where the input is and what to do with bad rows.
#![forbid(unsafe_code)]

mod datasets;
mod job;

pub use datasets::{PATIENTS_HEADER, generate_patients};
pub use job::{
    JobConfig, JobError, JobOutput, LaneKeys, OnError, SealedStage, StageOutput, run_batch,
};

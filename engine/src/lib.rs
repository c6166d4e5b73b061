//! The Symbiont engine: queries become timely + differential-dataflow jobs.
//!
//! [`run_batch`] runs a [`Query`](symbiont_operators::Query) over a dataset
//! on `workers` threads: each worker types its share of the rows, the
//! classify operator tags them with lanes, the aggregate operator computes
//! partial aggregates per lane, and differential dataflow's consolidation
//! merges them; the result is assembled into the entry agent's value.
//! [`JobConfig`] says where the input is and what to do with bad rows.
//! Restricted records take the homomorphic lane's additive path
//! ([`HomomorphicLane`]): packed and encrypted under the TFHE public key
//! at ingestion, reduced by a keyless compute stage, decrypted by the key
//! holder. A stored dataset's TFHE copy takes the programmable path
//! ([`ProgrammableLane`]): its comparisons and aggregates evaluated under
//! encryption with the server key, decrypted by the key holder.
#![forbid(unsafe_code)]

mod datasets;
mod job;

pub use datasets::{PATIENTS_HEADER, generate_patients};
pub use job::{
    HomomorphicLane, HomomorphicStage, InProcessEvaluate, InProcessReduce, JobConfig, JobError,
    JobOutput, KeyHolder, KeystoreHolder, LaneKeys, OnError, ProgrammableLane, ProgrammableStage,
    SealedStage, StageOutput, run_batch,
};

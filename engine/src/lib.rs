//! The Symbiont engine: queries become timely + differential-dataflow jobs.
//!
//! [`Job`] is a job with its guarantees, the one every front end runs:
//! [`Job::prepare`] checks and plans a [`JobSpec`], reading but writing
//! nothing; [`Job::run`], given the [`Custody`] of keys and an audit log,
//! decides the policies (audited), verifies an approval, suspends before
//! anything forbidden is opened, commits to the input, runs the dataflow
//! with its sandboxed stages ([`stage`]), proves the attested aggregates,
//! writes the result through a [`ResultSink`] and the bundle, and reports
//! [`Event`]s to an [`Observer`] as it goes.
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

mod attest;
mod bindings;
pub mod ceremony;
mod checkpoint;
mod dataset_files;
mod datasets;
mod enforce;
mod explain;
mod files;
mod graph;
pub mod homes;
mod job;
mod principal;
mod session;
pub mod stage;
pub mod stream;
mod table;
mod term;

pub use attest::program_checks;
pub use bindings::{Bound, bind};
pub use dataset_files::{
    Carried, DatasetPolicies, dataset_meta_file, dataset_metadata, dataset_policies,
    dataset_policy_file,
};
pub use datasets::{PATIENTS_HEADER, generate_patients, write_patients};
pub use explain::plan_svg;
pub use files::{digest, file_digest, write_new, write_whole};
pub use job::{
    HomomorphicLane, HomomorphicStage, InProcessEvaluate, InProcessReduce, JobConfig, JobError,
    JobOutput, KeyHolder, KeystoreHolder, LaneKeys, ListFeed, OnError, ProgrammableLane,
    ProgrammableStage, ReducedColumns, SealedFeed, SealedStage, StageOutput, job_plan, run_batch,
};
pub use principal::Principal;
pub use session::{
    Attrs, Custody, Event, Job, JobResult, JobSpec, Observer, Outcome, Passphrase, ResultSink,
    StageBinaries,
};
pub use term::TermPrinter;

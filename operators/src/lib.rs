//! The logical plan and the operators of a Symbiont job.
//!
//! A checked program's entry agent becomes a [`Query`]: the source
//! [`Schema`], the [`Classifier`], the aggregates and how the result is
//! assembled from them. Its [`Plan`] is the operator graph that `symbi
//! explain` prints. The operators themselves are timely extension traits
//! (STYLE.md #4): [`Classify`] tags records with their [`Lane`], and
//! [`AggregatePartials`] turns them into [`Partial`] aggregates whose
//! consolidation in differential dataflow merges batches, workers and
//! lanes. A [`Source`] reads CSV, NDJSON, Parquet or Arrow IPC files.
//!
//! The encrypted lanes travel as [`SealedBatch`]es: [`Classify`] seals
//! them with a `Sealer` and [`AggregatePartials`] opens them with a
//! [`LaneOpener`] into a locked, zeroizing buffer. [`StoreWriter`] and
//! [`StoreReader`] keep a classified dataset at rest, encrypted lanes
//! sealed.
#![forbid(unsafe_code)]

mod aggregate;
mod classify;
mod columnar;
mod homomorphic;
mod lines;
mod ndjson;
mod partial;
mod plan;
mod programmable;
mod read;
mod record;
mod sealed;
mod source;
mod store;

// The query, expressions, values, policies and risk table: their own
// crate, so that the DSL front end builds without the engine.
use symbiont_ir::{expr, query, value};

pub use aggregate::{
    AggKey, AggregatePartials, Epoch, GROUP_KEYS, LANE_COUNT, PartialUpdate, aggregate_sealed,
};
pub use classify::{Classify, RouteLanes, Routed, lane_of};
pub use homomorphic::{
    ColumnKey, FLOAT_SCALE, Forward, Ledger, PackError, PackSink, Packed, PackedList, Packer,
    Quantity, Reducer, decode_stage_answer, decrypted_partials, fuzz_stage_answer, reduce,
};
pub use lines::LineTyper;
pub use partial::{AggregateError, Merged, Partial, TotalF64, assemble};
pub use plan::{InputKind, LaneImpl, Plan, PlanNode, PlanStep};
pub use programmable::{Compiled, compile, encrypted_fields, record_values};
pub use read::{AfterError, MAX_LINE, SourceError, SourceStats};
pub use record::{Record, RowError};
pub use sealed::{
    LaneOpener, Plain, SealedBatch, decode, encode, encoded_len, lane_byte, lane_of_byte,
    seal_records,
};
pub use source::{Format, Source, parse_value};
pub use store::{
    CARRIED_FILES, Manifest, ManifestField, STORE_MAGIC, StoreReader, StoreWriter, TFHE_MAGIC,
    TfheManifest, fuzz_manifest_bytes, fuzz_store_bytes, is_store,
};
/// The risk table that gives each plan stage its sandbox tier.
pub use symbiont_ir::risk;
pub use symbiont_ir::{
    AggKind, AggregateSpec, Attributes, BinOp, CONTEXT_ATTRIBUTES, ClassStmt, Classifier, CmpOp,
    CompiledPolicies, Condition, Decision, Detector, Effect, Element, Env, EvalError, FieldType,
    Grouping, LEGACY_RECORD_CLASS, Lane, Namespace, OutExpr, Output, Pipeline, Policy, PolicyValue,
    Query, Reason, Scalar, Schema, Step, StrMethod, TooManyActions, UnOp, VERIFIED, Value,
    parse_attributes, split_attribute, unit_seconds,
};

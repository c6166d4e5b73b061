//! What a Symbiont program means to the engine, with no engine in it.
//!
//! The DSL front end lowers a checked program into these types and the
//! engine runs them; neither needs the other to build:
//!
//! - [`query`]: the [`Query`] (source [`Schema`], [`Classifier`], the
//!   aggregates and how the result is assembled) and its [`Lane`]s;
//! - [`expr`]: the row-level expression language and its evaluator;
//! - [`value`]: the [`Value`]s of records and expressions;
//! - [`policy`]: policies compiled for decisions ([`CompiledPolicies`]);
//! - [`pii`]: the built-in PII [`Detector`]s;
//! - [`risk`]: the table that gives each stage of a job its sandbox tier.
#![forbid(unsafe_code)]

pub mod expr;
pub mod pii;
pub mod policy;
pub mod query;
pub mod risk;
pub mod value;

pub use expr::{BinOp, Element, Env, EvalError, Pipeline, Scalar, Step, StrMethod, UnOp};
pub use pii::Detector;
pub use policy::{
    Attributes, CONTEXT_ATTRIBUTES, CmpOp, CompiledPolicies, Condition, Decision, Effect,
    LEGACY_RECORD_CLASS, Namespace, Policy, PolicyValue, Reason, TooManyActions, VERIFIED,
    parse_attributes, split_attribute, unit_seconds,
};
pub use query::{
    AggKind, AggregateSpec, ClassStmt, Classifier, FieldType, Grouping, Lane, OutExpr, Output,
    Query, Schema,
};
pub use value::Value;

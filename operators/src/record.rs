//! Records as they flow through a job, and per-row errors.

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// One typed record of a source.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Record {
    /// Where it came from: the line (CSV, NDJSON) or row number, 1-based.
    pub line: u64,
    /// Its fields, in the schema's order.
    pub values: Vec<Value>,
}

/// A record that could not be processed, and why. Reasons never contain
/// the record's values: they may be exactly what the job must not leak.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RowError {
    /// The record's line.
    pub line: u64,
    /// The field concerned, if one is.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}: field `{field}`: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

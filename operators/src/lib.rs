//! The logical plan and the operators of a Symbiont job.
//!
//! This crate will own the graph of operator specs that a checked program
//! lowers to (schemas, lanes, sandbox tiers) and the operators themselves:
//! source, classify, route, encrypt, aggregate, commit, prove and sink. See
//! `DESIGN.md` ("Data flow of one job"). Nothing is implemented here yet; the
//! dataflow issue fills it.
#![forbid(unsafe_code)]

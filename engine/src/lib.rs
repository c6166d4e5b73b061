//! The Symbiont engine: plans become timely + differential-dataflow jobs.
//!
//! This crate will run a logical plan from `symbiont-operators` as a batch or
//! streaming computation, manage stage lifecycles, enforce runtime policy and
//! wrap sandboxed stages. Nothing is implemented here yet; the dataflow issue
//! fills it.
#![forbid(unsafe_code)]

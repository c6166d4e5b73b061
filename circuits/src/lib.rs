//! Groth16 circuits (arkworks, BN254) that attest Symbiont's aggregates,
//! each with its native reference function (STYLE.md #10).
//!
//! - [`poseidon`]: the sponge (Poseidon over BN254's scalar field, width
//!   33: rate 32, capacity 1, x^5, 8 full and 59 partial rounds, constants
//!   from the Grain LFSR), compiled once into flat straight-line code that
//!   the gadget runs; the native hash is arkworks' sponge.
//! - [`commit`]: a chunk's commitment — its values packed 6 to a field
//!   element in 42-bit lanes, absorbed after a 253-bit salt and followed by
//!   the record count — and a dataset's, over its chunks' commitments.
//! - [`sum`]: the lane-sum circuit for a plain count and sum of one field:
//!   the lane sums are decomposed once per 1,024 elements, so a record
//!   costs 5.1 constraints, not a hash and a range check of its own.
//! - [`statement`]: counts and sums behind filters (`>=`, `<`, `==` a
//!   public threshold) over records of several fields, and the general
//!   circuit that proves them.
//! - [`intervals`]: the same statements when every comparison is on one
//!   field: records committed in that field's order, column by column, so
//!   only that field is decomposed and the summed columns are added lane
//!   by lane.
//! - [`runs`]: the same when that field has a declared width of at most 8
//!   bits: the field committed as a count per value, so no record's value
//!   of it is opened and a comparison costs the same for any chunk.
//! - [`attest`]: keys per circuit shape (cached), a dataset committed and
//!   proved in chunks, and the verifier's check that adds them up.
//! - [`snarkjs`]: proofs and verifying keys in snarkjs' JSON format.
#![forbid(unsafe_code)]

pub mod attest;
pub mod ceremony;
pub mod commit;
pub mod intervals;
pub mod poseidon;
pub mod runs;
pub mod snarkjs;
pub mod statement;
pub mod sum;

/// The scalar field of BN254, where every circuit computes.
pub use ark_bn254::Fr;

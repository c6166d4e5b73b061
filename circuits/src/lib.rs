//! Groth16 circuits (arkworks, BN254) that attest Symbiont's aggregates,
//! each with its native reference function (STYLE.md #10).
//!
//! Built so far (the attestation issue is not finished; `docs/ATTESTATION.md`
//! says what is missing):
//!
//! - [`poseidon`]: the sponge (Poseidon over BN254's scalar field, width 9:
//!   rate 16, capacity 1, x^5, 8 full and 68 partial rounds, constants from
//!   the Grain LFSR), natively and as a gadget.
//! - [`commit`]: a chunk's commitment — its values packed 6 to a field
//!   element in 42-bit lanes, absorbed after a 253-bit salt and followed by
//!   the record count.
//! - [`sum`]: the chunk sum circuit — public inputs (commitment, count,
//!   sum); the packed elements are the witness, their lane sums are
//!   decomposed once per 1,024 elements, so a record costs under 7
//!   constraints, not a hash and a range check of its own.
#![forbid(unsafe_code)]

pub mod commit;
pub mod poseidon;
pub mod sum;

/// The scalar field of BN254, where every circuit computes.
pub use ark_bn254::Fr;

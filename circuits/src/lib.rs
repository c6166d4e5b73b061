//! Groth16 circuits (arkworks, BN254) that attest Symbiont's aggregates.
//!
//! Each circuit will ship with its native reference function; setup, prove,
//! verify and the auditor's bundle format live here. Nothing is implemented
//! yet; the attestation issue fills it.
#![forbid(unsafe_code)]

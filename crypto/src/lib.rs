//! Cryptography for Symbiont: envelope encryption, the homomorphic lane,
//! signing, the keystore and the audit log.
//!
//! Nothing is implemented here yet; the AES-GCM lane, homomorphic lane and
//! audit-trail issues fill it. Key material for different roles will be
//! different types (`STYLE.md` #5).
#![forbid(unsafe_code)]

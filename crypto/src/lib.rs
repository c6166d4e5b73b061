//! Cryptography for Symbiont. Today: the signed, hash-chained audit log.
//!
//! - [`AuditLog`] appends [`Entry`]s to one file, chains them by hash,
//!   keeps an RFC 6962 Merkle tree over them ([`merkle`]) and writes
//!   Ed25519-signed [`Checkpoint`]s in the C2SP checkpoint format; after a
//!   crash, [`AuditLog::open`] cuts a torn tail and records the recovery.
//! - [`verify`] checks a log offline against an [`AuditVerifyingKey`],
//!   naming the first bad entry.
//! - [`AuditSigningKey`] is the signing key (a 0600 file, never printed).
//!
//! Envelope encryption, the homomorphic lane and the keystore arrive with
//! their issues; key material for different roles will be different types
//! (`STYLE.md` #5).
//!
//! # Examples
//!
//! ```
//! use symbiont_crypto::{AuditLog, AuditSigningKey, EntryKind, verify};
//!
//! let dir = std::env::temp_dir().join(format!("audit-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("audit.log");
//! let key = AuditSigningKey::generate("example").unwrap();
//! let public = key.verifying_key();
//! let (mut log, _) = AuditLog::open(&path, key, 1024).unwrap();
//! log.append(EntryKind::JobStart, serde_json::json!({"job": "demo"})).unwrap();
//! log.checkpoint().unwrap();
//! assert_eq!(verify(&path, &public).unwrap().entries.len(), 1);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
#![forbid(unsafe_code)]

mod audit;
mod keys;
pub mod merkle;

pub use audit::{
    AuditError, AuditLog, Checkpoint, Entry, EntryKind, MAGIC, ORIGIN, OpenReport, Problem,
    Recovery, Verified, fuzz_audit_bytes, read_entries, verify,
};
pub use keys::{AuditSigningKey, AuditVerifyingKey, KeyError, NoteError};

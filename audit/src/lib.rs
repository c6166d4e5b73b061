//! Symbiont's audit trail, apart from the rest of its cryptography, so that
//! an auditor's verifier builds without tfhe, AES or Argon2.
//!
//! - [`AuditLog`] appends [`Entry`]s to one file, chains them by hash,
//!   keeps an RFC 6962 Merkle tree over them ([`merkle`]) and writes
//!   Ed25519-signed [`Checkpoint`]s in the C2SP checkpoint format; after a
//!   crash, [`AuditLog::open`] cuts a torn tail and records the recovery.
//! - [`verify`] checks a log offline against an [`AuditVerifyingKey`],
//!   naming the first bad entry.
//! - [`AuditSigningKey`] is the signing key (a 0600 file, never printed).
//! - [`sign_approval`] and [`verify_approval`]: signed human approvals that
//!   resume a job suspended by a policy condition.
//! - [`issue_principal`] and [`verify_principal`]: signed principal
//!   credentials, the only source of a job's `principal.*` attributes.
//!
//! `symbiont-crypto` re-exports all of it.
//!
//! # Examples
//!
//! ```
//! use symbiont_audit::{AuditLog, AuditSigningKey, EntryKind, verify};
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

mod approval;
mod audit;
mod keys;
pub mod merkle;
mod principal;

pub use approval::{
    Approval, ApprovalError, ApprovalRequest, NewApprover, Violation, add_approver, sign_approval,
    trusted_approvers, verify_approval,
};
pub use audit::{
    AuditError, AuditLog, Checkpoint, Entry, EntryKind, MAGIC, ORIGIN, OpenReport, Problem,
    Recovery, Verified, fuzz_audit_bytes, read_entries, verify, verify_trusted,
};
pub use keys::{AuditSigningKey, AuditVerifyingKey, KeyError, NoteError};
pub use principal::{
    PrincipalCredential, PrincipalError, VERIFIED_ATTRIBUTE, VerifiedPrincipal, issue_principal,
    verify_principal,
};

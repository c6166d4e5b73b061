//! Cryptography for Symbiont: the keystore, envelope encryption for the
//! confidential lane, and the signed, hash-chained audit log.
//!
//! - [`Keystore`] is a private directory holding the master key (raw or
//!   sealed under an Argon2id passphrase), the data keys it wraps, the
//!   audit signing key and room for the TFHE keys. It hands out data keys
//!   with durable nonce reservations ([`NonceSource`]) and rotates the
//!   master key without re-encrypting data, crash-safely.
//! - [`Sealer`] and [`Opener`] seal and open batches of records with
//!   AES-256-GCM ([`Backend`]: `ring` or RustCrypto `aes-gcm`); the
//!   associated data binds dataset, fields and record ids
//!   ([`SealContext`]). Plaintext is opened into a [`LockedBuf`], which is
//!   zeroized and `mlock`ed.
//! - [`AuditLog`] appends [`Entry`]s to one file, chains them by hash,
//!   keeps an RFC 6962 Merkle tree over them ([`merkle`]) and writes
//!   Ed25519-signed [`Checkpoint`]s in the C2SP checkpoint format; after a
//!   crash, [`AuditLog::open`] cuts a torn tail and records the recovery.
//! - [`additive`]: the homomorphic lane's additive path (TFHE LWE compact
//!   lists): public-key encryption at ingestion, keyless addition and
//!   reduction in the compute stage, decryption by the key holder.
//! - [`programmable`]: its programmable path (tfhe's integer API) over
//!   restricted records at rest: filters against constants, count, sum,
//!   min and max.
//! - [`sign_approval`] and [`verify_approval`]: signed human approvals that
//!   resume a job suspended by a policy condition.
//! - [`verify`] checks a log offline against an [`AuditVerifyingKey`],
//!   naming the first bad entry.
//! - [`AuditSigningKey`] is the signing key (a 0600 file, never printed).
//!
//! Key material for different roles has different types (`STYLE.md` #5):
//! an [`Opener`] holds data keys only, never the master key; no key type
//! prints its bytes.
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

pub mod additive;
mod aead;
mod approval;
mod audit;
mod envelope;
mod keys;
mod keystore;
mod locked;
pub mod merkle;
pub mod programmable;

pub use aead::{AeadError, Aes256GcmKey, Backend, KEY_LEN, NONCE_LEN, TAG_LEN};
pub use approval::{
    Approval, ApprovalError, ApprovalRequest, Violation, add_approver, sign_approval,
    trusted_approvers, verify_approval,
};
pub use envelope::{
    DataKey, DataKeys, KEY_ID_LEN, KeyId, NonceSource, OpenError, Opener, SEALED_VERSION,
    SealContext, SealError, SealedHeader, Sealer, read_header,
};
pub use keystore::{
    ADDITIVE_PUBLIC_FILE, ADDITIVE_SECRET_FILE, AUDIT_KEY_FILE, DATA_KEY_LIMIT, DataKeyEvent,
    DataKeyInfo, InitReport, Keystore, KeystoreError, Listing, PROGRAMMABLE_CLIENT_FILE,
    PROGRAMMABLE_PUBLIC_FILE, PROGRAMMABLE_SERVER_FILE, RESERVE_CHUNK, RotateStep,
};
pub use locked::{LockStatus, LockedBuf};

pub use audit::{
    AuditError, AuditLog, Checkpoint, Entry, EntryKind, MAGIC, ORIGIN, OpenReport, Problem,
    Recovery, Verified, fuzz_audit_bytes, read_entries, verify,
};
pub use keys::{AuditSigningKey, AuditVerifyingKey, KeyError, NoteError};

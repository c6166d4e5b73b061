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
//! - [`additive`]: the homomorphic lane's additive path (TFHE LWE compact
//!   lists): public-key encryption at ingestion, keyless addition and
//!   reduction in the compute stage, decryption by the key holder.
//! - [`programmable`]: its programmable path (tfhe's integer API) over
//!   restricted records at rest: filters against constants, count, sum,
//!   min and max.
//! - The signed, hash-chained audit log ([`AuditLog`], [`verify`]), the
//!   audit key ([`AuditSigningKey`]) and signed approvals
//!   ([`sign_approval`]) live in `symbiont-audit`, re-exported here.
//!
//! Key material for different roles has different types (`STYLE.md` #5):
//! an [`Opener`] holds data keys only, never the master key; no key type
//! prints its bytes.
#![forbid(unsafe_code)]

pub mod additive;
mod aead;
mod envelope;
mod keystore;
mod locked;
pub mod programmable;

pub use aead::{AeadError, Aes256GcmKey, Backend, KEY_LEN, NONCE_LEN, TAG_LEN};
pub use envelope::{
    DataKey, DataKeys, KEY_ID_LEN, KeyId, NonceSource, OpenError, Opener, SALT_LEN, SEALED_VERSION,
    SealContext, SealError, SealedHeader, Sealer, read_header,
};
pub use keystore::{
    ADDITIVE_PUBLIC_FILE, ADDITIVE_SECRET_FILE, AUDIT_KEY_FILE, DATA_KEY_LIMIT, DataKeyEvent,
    DataKeyInfo, InitReport, Keystore, KeystoreError, Listing, PROGRAMMABLE_CLIENT_FILE,
    PROGRAMMABLE_PUBLIC_FILE, PROGRAMMABLE_SERVER_FILE, PROGRAMMABLE_SPENT_FILE, RESERVE_CHUNK,
    RotateStep,
};
pub use locked::{LockStatus, LockedBuf};

pub use symbiont_audit::{
    Approval, ApprovalError, ApprovalRequest, AuditError, AuditLog, AuditSigningKey,
    AuditVerifyingKey, Checkpoint, Entry, EntryKind, KeyError, MAGIC, NewApprover, NoteError,
    ORIGIN, OpenReport, PrincipalCredential, PrincipalError, Problem, Recovery, VERIFIED_ATTRIBUTE,
    Verified, VerifiedPrincipal, Violation, add_approver, fuzz_audit_bytes, issue_principal,
    merkle, read_entries, sign_approval, trusted_approvers, verify, verify_approval,
    verify_principal, verify_trusted,
};

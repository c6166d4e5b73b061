//! The audit signing key, and signed notes (C2SP `signed-note`) made with it.
//!
//! The signing key lives in a file readable only by its owner; the
//! verifying key is written in the signed-note verifier format
//! `<name>+<key id hex>+<base64(0x01 || public key)>`, which other tools
//! (e.g. Go's `golang.org/x/mod/sumdb/note`) read.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const KEY_FILE_TAG: &str = "symbiont-audit-signing-key v1";
const ED25519: u8 = 1;

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The OS random number generator failed.
    #[error("the OS random number generator failed")]
    Random,
    /// A key file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A signing key file others may read.
    #[error(
        "{path}: the signing key file is readable by others (mode {mode:o}); run `chmod 600` on it"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A key file or verifier key that is not in the expected format.
    #[error("{0}: not a Symbiont audit key")]
    Malformed(String),
}

/// The Ed25519 key that signs audit checkpoints. Never printed: its
/// `Debug` shows only the name and key id.
pub struct AuditSigningKey {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSigningKey")
            .field("name", &self.name)
            .field("key_id", &hex(&self.verifying_key().key_id()))
            .finish_non_exhaustive()
    }
}

impl AuditSigningKey {
    /// A new random key named `name` (the signed-note key name).
    pub fn generate(name: &str) -> Result<AuditSigningKey, KeyError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| KeyError::Random)?;
        Ok(AuditSigningKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads a key file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<AuditSigningKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let malformed = || KeyError::Malformed(path.display().to_string());
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_TAG) {
            return Err(malformed());
        }
        let name = lines
            .next()
            .filter(|n| valid_name(n))
            .ok_or_else(malformed)?;
        let seed_hex = lines.next().ok_or_else(malformed)?;
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        if seed_hex.len() != 64 {
            return Err(malformed());
        }
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).map_err(|_| malformed())?;
        }
        Ok(AuditSigningKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the key to a new file of mode 0600 (never overwriting).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let seed = zeroize::Zeroizing::new(hex(&self.key.to_bytes()));
        let text = zeroize::Zeroizing::new(format!("{KEY_FILE_TAG}\n{}\n{}\n", self.name, *seed));
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The key that verifies this key's signatures.
    pub fn verifying_key(&self) -> AuditVerifyingKey {
        AuditVerifyingKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs a note body (text ending in a newline): returns the whole
    /// signed note.
    pub fn sign_note(&self, body: &str) -> String {
        debug_assert!(body.ends_with('\n'));
        let signature = self.key.sign(body.as_bytes());
        let mut blob = self.verifying_key().key_id().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.name, BASE64.encode(blob))
    }
}

/// The public half of an [`AuditSigningKey`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditVerifyingKey {
    name: String,
    key: VerifyingKey,
}

/// Why a signed note does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note is not `body \n\n signature lines`.
    #[error("malformed signed note")]
    Malformed,
    /// No signature line is by this key (name and key id).
    #[error("not signed by the key {0}")]
    UnknownKey(String),
    /// The signature by this key is wrong.
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

impl AuditVerifyingKey {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed-note key id: the first 4 bytes of
    /// `SHA-256(name || "\n" || 0x01 || public key)`.
    pub fn key_id(&self) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update(b"\n");
        h.update([ED25519]);
        h.update(self.key.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        [digest[0], digest[1], digest[2], digest[3]]
    }

    /// The verifier key string `<name>+<key id hex>+<base64(0x01 || key)>`.
    pub fn to_note_key(&self) -> String {
        let mut blob = vec![ED25519];
        blob.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex(&self.key_id()),
            BASE64.encode(blob)
        )
    }

    /// Parses a verifier key string.
    pub fn parse(text: &str) -> Result<AuditVerifyingKey, KeyError> {
        let malformed = || KeyError::Malformed("the verifier key".into());
        // The name and key id hold no `+`; the base64 key may.
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let blob = BASE64.decode(key).map_err(|_| malformed())?;
        let (&[ED25519], key) = blob.split_at(1.min(blob.len())) else {
            return Err(malformed());
        };
        let key: [u8; 32] = key.try_into().map_err(|_| malformed())?;
        let parsed = AuditVerifyingKey {
            name: name.to_owned(),
            key: VerifyingKey::from_bytes(&key).map_err(|_| malformed())?,
        };
        if !valid_name(name) || hex(&parsed.key_id()) != id {
            return Err(malformed());
        }
        Ok(parsed)
    }

    /// Checks a signed note's signature by this key; returns its body.
    pub fn verify_note<'n>(&self, note: &'n str) -> Result<&'n str, NoteError> {
        let split = note.rfind("\n\n").ok_or(NoteError::Malformed)?;
        let (body, signatures) = (&note[..split + 1], &note[split + 2..]);
        for line in signatures.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(NoteError::Malformed);
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(NoteError::Malformed);
            };
            let blob = BASE64.decode(blob).map_err(|_| NoteError::Malformed)?;
            if name != self.name || blob.len() != 68 || blob[..4] != self.key_id() {
                continue;
            }
            let signature = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| NoteError::Malformed)?;
            return self
                .key
                .verify_strict(body.as_bytes(), &signature)
                .map(|()| body)
                .map_err(|_| NoteError::BadSignature(self.name.clone()));
        }
        Err(NoteError::UnknownKey(self.name.clone()))
    }
}

/// Key names are non-empty and free of spaces, `+` and newlines.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! Where a job's custody lives when the command line does not say: the
//! keystore and the audit signing key under `$XDG_DATA_HOME/symbiont`,
//! the audit log and approval requests under `$XDG_STATE_HOME/symbiont`;
//! and the audit log opened for a job, its signing key made on first use.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use symbiont_crypto::{AuditLog, AuditSigningKey, EntryKind};

/// Entries between automatic checkpoints.
pub const CHECKPOINT_EVERY: u64 = 1024;

/// The audit signing key's name in checkpoints.
const KEY_NAME: &str = "symbiont-audit";

/// `$VAR/symbiont`, or `~/FALLBACK/symbiont` when `VAR` is unset or empty.
fn home_dir(var: &str, fallback: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("symbiont"));
    }
    let home =
        std::env::var_os("HOME").context("neither $".to_owned() + var + " nor $HOME is set")?;
    Ok(PathBuf::from(home).join(fallback).join("symbiont"))
}

/// The default keystore: `$XDG_DATA_HOME/symbiont` (or
/// `~/.local/share/symbiont`), which also holds the audit signing key.
pub fn keystore_dir() -> Result<PathBuf> {
    home_dir("XDG_DATA_HOME", ".local/share")
}

/// The keystore directory given, or the default.
pub fn keystore_or_default(dir: Option<&Path>) -> Result<PathBuf> {
    dir.map_or_else(keystore_dir, |d| Ok(d.to_owned()))
}

/// The passphrase in environment variable `var`, if one is named.
pub fn passphrase(var: Option<&str>) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
    let Some(var) = var else { return Ok(None) };
    let value = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .with_context(|| format!("--passphrase-env {var}: the variable is not set or empty"))?;
    Ok(Some(zeroize::Zeroizing::new(
        std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec(),
    )))
}

/// The default audit log: `$XDG_STATE_HOME/symbiont/audit.log`.
pub fn audit_log() -> Result<PathBuf> {
    Ok(home_dir("XDG_STATE_HOME", ".local/state")?.join("audit.log"))
}

/// Where suspended jobs' approval requests go by default:
/// `$XDG_STATE_HOME/symbiont/requests`.
pub fn requests_dir() -> Result<PathBuf> {
    Ok(home_dir("XDG_STATE_HOME", ".local/state")?.join("requests"))
}

/// The default audit signing key: `audit_ed25519.key` in the default
/// keystore.
pub fn audit_key() -> Result<PathBuf> {
    Ok(keystore_dir()?.join(symbiont_crypto::AUDIT_KEY_FILE))
}

/// The verifier key file next to a signing key.
pub fn public_of(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Loads the signing key at `path`, creating it (and its `.pub`) on first
/// use; says whether it was created.
pub fn signing_key(path: &Path) -> Result<(AuditSigningKey, bool)> {
    if path.exists() {
        return Ok((AuditSigningKey::load(path)?, false));
    }
    if let Some(dir) = path.parent() {
        make_private_dir(dir)?;
    }
    let key = AuditSigningKey::generate(KEY_NAME)?;
    key.save(path)?;
    std::fs::write(public_of(path), key.verifying_key().to_note_key() + "\n")
        .with_context(|| format!("cannot write {}", public_of(path).display()))?;
    Ok((key, true))
}

/// Opens the audit log at `log` signed with the key at `key` (made on
/// first use, which the log records); with what its user should be told
/// (a key created, a log recovered after a crash), in words.
pub fn open_audit_log(log: &Path, key: &Path) -> Result<(AuditLog, Vec<String>)> {
    if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
        make_private_dir(dir)?;
    }
    let mut notices = Vec::new();
    let (signer, created) = signing_key(key)?;
    let public = signer.verifying_key().to_note_key();
    let (mut opened, report) = AuditLog::open(log, signer, CHECKPOINT_EVERY)?;
    if created {
        notices.push(format!(
            "created the audit signing key {} (public key {})",
            key.display(),
            public_of(key).display()
        ));
        opened.append(
            EntryKind::KeyEvent,
            serde_json::json!({"event": "created", "key": "audit signing key", "public": public}),
        )?;
    }
    if let Some(r) = report.recovery {
        notices.push(format!(
            "the audit log {} was recovered after a crash: {} torn byte(s) cut, {} unsigned entr(y/ies) now checkpointed",
            opened.path().display(),
            r.truncated_bytes,
            r.unsigned_entries
        ));
    }
    Ok((opened, notices))
}

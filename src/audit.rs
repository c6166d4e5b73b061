//! The `audit` verbs, where the audit log and its key live, and the audit
//! trail of `symbi run`.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use symbiont_crypto::{
    AuditError, AuditLog, AuditSigningKey, AuditVerifyingKey, Verified, merkle, verify,
};

/// Where the audit trail of a job goes.
pub(crate) struct AuditArgs {
    pub(crate) log: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

impl AuditArgs {
    /// Opens the log (default locations when not given).
    pub(crate) fn open(&self) -> Result<AuditLog> {
        let log = match &self.log {
            Some(p) => p.clone(),
            None => default_log()?,
        };
        let key = match &self.key {
            Some(p) => p.clone(),
            None => default_key()?,
        };
        open_log(&log, &key)
    }
}

use crate::exit;

/// Entries between automatic checkpoints.
pub(crate) const CHECKPOINT_EVERY: u64 = 1024;

/// The audit signing key's name in checkpoints.
const KEY_NAME: &str = "symbiont-audit";

pub(crate) fn home_dir(var: &str, fallback: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("symbiont"));
    }
    let home =
        std::env::var_os("HOME").context("neither $".to_owned() + var + " nor $HOME is set")?;
    Ok(PathBuf::from(home).join(fallback).join("symbiont"))
}

/// The default audit log: `$XDG_STATE_HOME/symbiont/audit.log`.
pub(crate) fn default_log() -> Result<PathBuf> {
    Ok(home_dir("XDG_STATE_HOME", ".local/state")?.join("audit.log"))
}

/// The default signing key: `$XDG_DATA_HOME/symbiont/audit_ed25519.key`
/// (the keystore directory).
pub(crate) fn default_key() -> Result<PathBuf> {
    Ok(home_dir("XDG_DATA_HOME", ".local/share")?.join("audit_ed25519.key"))
}

/// The verifier key file next to a signing key.
fn public_of(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Loads the signing key, creating it (and its `.pub`) on first use; says
/// whether it was created.
pub(crate) fn signing_key(path: &Path) -> Result<(AuditSigningKey, bool)> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            make_private_dir(dir)?;
        }
        let key = AuditSigningKey::generate(KEY_NAME)?;
        key.save(path)?;
        std::fs::write(public_of(path), key.verifying_key().to_note_key() + "\n")
            .with_context(|| format!("cannot write {}", public_of(path).display()))?;
        eprintln!(
            "symbi: created the audit signing key {} (public key {})",
            path.display(),
            public_of(path).display()
        );
        return Ok((key, true));
    }
    Ok((AuditSigningKey::load(path)?, false))
}

/// Opens the audit log for a job, reporting a recovery on stderr.
pub(crate) fn open_log(log: &Path, key: &Path) -> Result<AuditLog> {
    if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
        make_private_dir(dir)?;
    }
    let (key, created) = signing_key(key)?;
    let public = key.verifying_key().to_note_key();
    let (mut log, report) = AuditLog::open(log, key, CHECKPOINT_EVERY)?;
    if created {
        log.append(
            symbiont_crypto::EntryKind::KeyEvent,
            serde_json::json!({"event": "created", "key": "audit signing key", "public": public}),
        )?;
    }
    if let Some(r) = report.recovery {
        eprintln!(
            "symbi: the audit log {} was recovered after a crash: {} torn byte(s) cut, {} unsigned entr(y/ies) now checkpointed",
            log.path().display(),
            r.truncated_bytes,
            r.unsigned_entries
        );
    }
    Ok(log)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verifying_key(pubkey: Option<&Path>) -> Result<AuditVerifyingKey> {
    let path = match pubkey {
        Some(p) => p.to_owned(),
        None => public_of(&default_key()?),
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the audit public key {} (give one with --pubkey)",
            path.display()
        )
    })?;
    Ok(AuditVerifyingKey::parse(&text)?)
}

/// Verifies, or prints why not and returns the exit code.
fn load_verified(log: &Path, pubkey: Option<&Path>) -> Result<std::result::Result<Verified, u8>> {
    let key = verifying_key(pubkey)?;
    match verify(log, &key) {
        Ok(v) => Ok(Ok(v)),
        Err(AuditError::Corrupt { problem, .. }) => {
            eprintln!(
                "symbi: audit log {}: verification failed at {problem}",
                log.display()
            );
            Ok(Err(exit::VERIFICATION_FAILED))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn show(log: &Path, since: u64, json: bool) -> Result<u8> {
    let entries = symbiont_crypto::read_entries(log)?;
    let entries: Vec<_> = entries.iter().filter(|e| e.seq >= since).collect();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &entries)?;
        writeln!(out)?;
    } else {
        for e in entries {
            writeln!(out, "#{:<6} {} {:<18} {}", e.seq, e.time, e.kind, e.detail)?;
        }
    }
    Ok(exit::OK)
}

pub(crate) fn run_verify(log: &Path, pubkey: Option<&Path>, json: bool) -> Result<u8> {
    let v = match load_verified(log, pubkey)? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let last = v.checkpoints.last();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "entries": v.entries.len(),
                "checkpoints": v.checkpoints.len(),
                "tree_size": last.map(|c| c.size),
                "root": last.map(|c| hex(&c.root)),
            })
        );
    } else {
        println!(
            "ok: {} entries, {} signed checkpoints; latest covers {} entries, root {}",
            v.entries.len(),
            v.checkpoints.len(),
            last.map_or(0, |c| c.size),
            last.map_or(String::new(), |c| hex(&c.root))
        );
    }
    Ok(exit::OK)
}

pub(crate) fn prove(log: &Path, index: u64, pubkey: Option<&Path>) -> Result<u8> {
    let v = match load_verified(log, pubkey)? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Some(checkpoint) = v.checkpoints.last().filter(|c| index < c.size) else {
        eprintln!(
            "symbi: entry {index} is not covered by the latest checkpoint ({} entries)",
            v.checkpoints.last().map_or(0, |c| c.size)
        );
        return Ok(exit::RUNTIME);
    };
    let size = checkpoint.size as usize;
    let proof = merkle::inclusion_proof(index as usize, &v.leaves[..size]);
    let leaf = v.leaves[index as usize];
    anyhow::ensure!(
        merkle::verify_inclusion(&leaf, index, checkpoint.size, &proof, &checkpoint.root),
        "internal error: the inclusion proof does not verify"
    );
    let out = serde_json::json!({
        "index": index,
        "tree_size": checkpoint.size,
        "entry": BASE64.encode(&v.bodies[index as usize]),
        "leaf_hash": hex(&leaf),
        "root": hex(&checkpoint.root),
        "proof": proof.iter().map(|h| hex(h)).collect::<Vec<_>>(),
        "checkpoint": checkpoint.note,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(exit::OK)
}

pub(crate) fn consistency(log: &Path, old_size: u64, pubkey: Option<&Path>) -> Result<u8> {
    let v = match load_verified(log, pubkey)? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Some(old) = v.checkpoints.iter().find(|c| c.size == old_size) else {
        let sizes: Vec<String> = v.checkpoints.iter().map(|c| c.size.to_string()).collect();
        eprintln!(
            "symbi: no checkpoint of size {old_size} in the log; its checkpoints have sizes {}",
            sizes.join(", ")
        );
        return Ok(exit::RUNTIME);
    };
    let new = v
        .checkpoints
        .last()
        .expect("the log has the old checkpoint");
    let proof = merkle::consistency_proof(old.size as usize, &v.leaves[..new.size as usize]);
    anyhow::ensure!(
        merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof),
        "internal error: the consistency proof does not verify"
    );
    let out = serde_json::json!({
        "old_size": old.size,
        "new_size": new.size,
        "old_root": hex(&old.root),
        "new_root": hex(&new.root),
        "proof": proof.iter().map(|h| hex(h)).collect::<Vec<_>>(),
        "old_checkpoint": old.note,
        "new_checkpoint": new.note,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(exit::OK)
}

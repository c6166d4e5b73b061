//! The `audit` verbs, where the audit log and its key live, and the audit
//! trail of `symbi run`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use symbiont_crypto::{AuditError, AuditLog, AuditVerifyingKey, Verified, merkle, verify};
use symbiont_engine::homes;

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
            None => homes::audit_log()?,
        };
        let key = match &self.key {
            Some(p) => p.clone(),
            None => homes::audit_key()?,
        };
        open_log(&log, &key)
    }
}

use crate::exit;

/// Opens the audit log for a job, telling on stderr of a key created or a
/// recovery.
pub(crate) fn open_log(log: &Path, key: &Path) -> Result<AuditLog> {
    let (log, notices) = homes::open_audit_log(log, key)?;
    for notice in notices {
        eprintln!("symbi: {notice}");
    }
    Ok(log)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verifying_key(pubkey: Option<&Path>) -> Result<AuditVerifyingKey> {
    let path = match pubkey {
        Some(p) => p.to_owned(),
        None => homes::public_of(&homes::audit_key()?),
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

//! The `audit` verbs, where the audit log and its key live, and the audit
//! trail of `symbi run`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use symbiont_crypto::{AuditError, AuditLog, AuditVerifyingKey, Verified, verify};
use symbiont_engine::homes;

/// Where the audit trail of a job goes.
#[derive(Default)]
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
    refused(log, verify(log, &verifying_key(pubkey)?))
}

/// A verification's result, or the exit code after saying why it failed.
fn refused(
    log: &Path,
    verified: std::result::Result<Verified, AuditError>,
) -> Result<std::result::Result<Verified, u8>> {
    match verified {
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

pub(crate) fn run_verify(
    log: &Path,
    pubkey: Option<&Path>,
    trusted: Option<&Path>,
    save: Option<&Path>,
    json: bool,
) -> Result<u8> {
    let v = match trusted {
        None => load_verified(log, pubkey)?,
        Some(note) => {
            let note = std::fs::read_to_string(note)
                .with_context(|| format!("cannot read {}", note.display()))?;
            refused(
                log,
                symbiont_crypto::verify_trusted(log, &verifying_key(pubkey)?, &note),
            )?
        }
    };
    let v = match v {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    match json {
        true => println!("{}", v.to_json()),
        false => print!("{v}"),
    }
    if let (Some(path), Some(last)) = (save, v.checkpoints.last()) {
        symbiont_engine::write_new(path, last.note.as_bytes())?;
    }
    Ok(exit::OK)
}

pub(crate) fn prove(log: &Path, index: u64, pubkey: Option<&Path>) -> Result<u8> {
    let v = match load_verified(log, pubkey)? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Some(out) = v.inclusion(index) else {
        eprintln!(
            "symbi: entry {index} is not covered by the latest checkpoint ({} entries)",
            v.checkpoints.last().map_or(0, |c| c.size)
        );
        return Ok(exit::RUNTIME);
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(exit::OK)
}

pub(crate) fn consistency(log: &Path, old_size: u64, pubkey: Option<&Path>) -> Result<u8> {
    let v = match load_verified(log, pubkey)? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Some(out) = v.consistency(old_size) else {
        let sizes: Vec<String> = v.checkpoints.iter().map(|c| c.size.to_string()).collect();
        eprintln!(
            "symbi: no checkpoint of size {old_size} in the log; its checkpoints have sizes {}",
            sizes.join(", ")
        );
        return Ok(exit::RUNTIME);
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(exit::OK)
}

//! The `keys` verbs, and the keystore a job's encrypted lanes use.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use symbiont_crypto::{EntryKind, KeyId, Keystore};
use zeroize::Zeroizing;

use crate::{audit, exit};

pub(crate) use symbiont_engine::homes::{keystore_or_default as dir_or_default, passphrase};

fn report_recovery(ks: &Keystore) {
    for path in ks.recovered() {
        eprintln!(
            "symbi: removed {} left by an interrupted key rotation",
            path.display()
        );
    }
}

/// `symbi keys init`.
pub(crate) fn init(
    dir: Option<&Path>,
    passphrase_env: Option<&str>,
    audit: &audit::AuditArgs,
) -> Result<u8> {
    let dir = dir_or_default(dir)?;
    let pass = passphrase(passphrase_env)?;
    let report = Keystore::init(&dir, pass.as_deref().map(|p| p.as_slice()))?;
    Keystore::make_programmable_keys(&dir)?;
    println!(
        "created the keystore {}\n  master key {} ({})\n  audit signing key {}\n  tfhe/additive_public.key, tfhe/additive_secret.key (the homomorphic lane's additive path; docs/FHE.md)\n  tfhe/programmable_{{client,server,public}}.key (its programmable path)",
        dir.display(),
        report.master_id,
        if report.sealed {
            "sealed under the passphrase with Argon2id"
        } else {
            "not sealed: protected by file permissions only"
        },
        if report.audit_key_created {
            "created"
        } else {
            "kept (it existed)"
        },
    );
    key_event(
        audit,
        &dir,
        serde_json::json!({"event": "created", "key": "master key", "id": report.master_id, "keystore": dir.display().to_string()}),
    )?;
    Ok(exit::OK)
}

/// `symbi keys rotate`.
pub(crate) fn rotate(
    dir: Option<&Path>,
    passphrase_env: Option<&str>,
    new_passphrase_env: Option<&str>,
    programmable: bool,
    audit: &audit::AuditArgs,
) -> Result<u8> {
    let dir = dir_or_default(dir)?;
    if programmable {
        Keystore::rotate_programmable_keys(&dir)?;
        println!(
            "rotated the programmable path's TFHE keys of {}",
            dir.display()
        );
        let event = serde_json::json!({"event": "rotated", "key": "programmable TFHE keys", "keystore": dir.display().to_string()});
        key_event(audit, &dir, event)?;
        return Ok(exit::OK);
    }
    let pass = passphrase(passphrase_env)?;
    let old = Keystore::list(&dir)?;
    // A sealed master key stays sealed: under the same passphrase unless a
    // new one is given.
    let new_pass = match passphrase(new_passphrase_env)? {
        Some(p) => Some(p),
        None if old.master_protection != "none" => pass.clone(),
        None => None,
    };
    let new = Keystore::rotate(
        &dir,
        pass.as_deref().map(|p| p.as_slice()),
        new_pass.as_deref().map(|p| p.as_slice()),
    )?;
    println!(
        "rotated the master key of {}: {} -> {}; {} data key(s) re-wrapped, the old master key deleted",
        dir.display(),
        old.master_id,
        new,
        old.data_keys.len()
    );
    key_event(
        audit,
        &dir,
        serde_json::json!({"event": "rotated", "key": "master key", "old": old.master_id, "new": new, "data_keys": old.data_keys.len(), "keystore": dir.display().to_string()}),
    )?;
    Ok(exit::OK)
}

/// `symbi keys list`.
pub(crate) fn list(dir: Option<&Path>, json: bool) -> Result<u8> {
    let dir = dir_or_default(dir)?;
    let l = Keystore::list(&dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(exit::OK);
    }
    print!("{l}");
    Ok(exit::OK)
}

/// `symbi keys add-approver NAME (--public-key KEY | --key-out FILE)`.
#[derive(Debug, clap::Args)]
pub(crate) struct AddApprover {
    /// The approver's name.
    name: String,
    /// Their public key (`NAME+ID+KEY`, as `--key-out` prints it).
    #[arg(long, value_name = "KEY", required_unless_present = "key_out")]
    public_key: Option<String>,
    /// Make the key and write its private half here (a new file, mode
    /// 0600, outside the keystore).
    #[arg(long, value_name = "PATH", conflicts_with = "public_key")]
    key_out: Option<PathBuf>,
    /// The keystore directory (default: `$XDG_DATA_HOME/symbiont`).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn add_approver(args: &AddApprover) -> Result<u8> {
    let (name, key_out) = (args.name.as_str(), args.key_out.as_deref());
    let dir = dir_or_default(args.dir.as_deref())?;
    Keystore::list(&dir)?;
    let key = match (args.public_key.as_deref(), key_out) {
        (Some(p), _) => symbiont_crypto::NewApprover::Public(p),
        (None, Some(out)) => symbiont_crypto::NewApprover::KeyOut(out),
        (None, None) => unreachable!("clap requires one"),
    };
    let public = symbiont_crypto::add_approver(&dir, name, key)?;
    println!("approver {name}: {public}");
    let event = serde_json::json!({"event": "added approver", "name": name, "key": public});
    key_event(&audit::AuditArgs::default(), &dir, event)?;
    if let Some(out) = key_out {
        println!("  signing key {} (give it to {name})", out.display());
    }
    Ok(exit::OK)
}

/// `symbi keys issue-principal NAME KEY=VALUE... --out FILE`.
#[derive(Debug, clap::Args)]
pub(crate) struct IssuePrincipal {
    /// The principal's name.
    name: String,
    /// Their attributes (`principal.KEY` in policies).
    #[arg(value_name = "KEY=VALUE")]
    attributes: Vec<String>,
    /// How long it holds, e.g. `90days`.
    #[arg(long, default_value = "90days")]
    expires: humantime::Duration,
    /// The credential file to create.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// The keystore directory (default: `$XDG_DATA_HOME/symbiont`).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn issue_principal(a: &IssuePrincipal) -> Result<u8> {
    let dir = dir_or_default(a.dir.as_deref())?;
    Keystore::list(&dir)?;
    let valid = a.expires.into();
    if let Err(why) =
        symbiont_engine::Principal::issue(&dir, &a.name, &a.attributes, valid, &a.out)?
    {
        eprintln!("symbi: usage error: {why}");
        return Ok(exit::USAGE);
    }
    println!("issued principal {}: {}", a.name, a.out.display());
    let event = serde_json::json!({"event": "issued principal", "name": a.name, "attributes": a.attributes});
    key_event(&audit::AuditArgs::default(), &dir, event)?;
    Ok(exit::OK)
}

/// `symbi keys export-data-key`: writes one data key, hex, to a new file
/// of mode 0600, for escrow or another tool (docs/decrypt_sealed.py).
pub(crate) fn export_data_key(
    dir: Option<&Path>,
    passphrase_env: Option<&str>,
    id: &str,
    out: &Path,
) -> Result<u8> {
    let Some(id) = KeyId::parse(id) else {
        eprintln!("symbi: error: `{id}` is not a key id (32 hex digits; see `symbi keys list`)");
        return Ok(exit::USAGE);
    };
    let dir = dir_or_default(dir)?;
    let pass = passphrase(passphrase_env)?;
    let ks = Keystore::open(&dir, pass.as_deref().map(|p| p.as_slice()))?;
    report_recovery(&ks);
    let key = ks.export_data_key(id)?;
    let hex = Zeroizing::new(key.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
    f.write_all(hex.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("symbi: wrote data key {id} to {}", out.display());
    Ok(exit::OK)
}

/// `symbi datasets bind PATH [--policy FILE] [--meta FILE]`.
#[derive(Debug, clap::Args)]
pub(crate) struct Bind {
    /// The dataset file.
    path: PathBuf,
    /// Its policies (default: `PATH.policy.symbi`).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Its metadata (default: `PATH.meta.json`).
    #[arg(long, value_name = "FILE")]
    meta: Option<PathBuf>,
    /// Its dataset id (default: its canonical path).
    #[arg(long, value_name = "ID")]
    dataset_id: Option<String>,
    /// The keystore directory (default: `$XDG_DATA_HOME/symbiont`).
    #[arg(long, value_name = "DIR")]
    keystore: Option<PathBuf>,
}

pub(crate) fn bind(a: &Bind) -> Result<u8> {
    let dir = dir_or_default(a.keystore.as_deref())?;
    Keystore::list(&dir)?;
    let (policy, meta) = (a.policy.as_deref(), a.meta.as_deref());
    let b = match symbiont_engine::bind(&dir, &a.path, a.dataset_id.as_deref(), policy, meta)? {
        Ok(b) => b,
        Err(why) => {
            eprintln!("symbi: cannot bind {}: {why}", a.path.display());
            return Ok(exit::USAGE);
        }
    };
    println!(
        "bound {} (sha256 {}) as dataset `{}`: {}",
        a.path.display(),
        b.input_sha256,
        b.dataset,
        b.dir.display()
    );
    let event = serde_json::json!({"event": "bound", "dataset": b.dataset, "input_sha256": b.input_sha256, "keystore": dir.display().to_string()});
    key_event(&audit::AuditArgs::default(), &dir, event)?;
    Ok(exit::OK)
}

/// Audits a key event when the keystore is the default one or a log is
/// named (another keystore's audit key must not sign the default log).
fn key_event(audit: &audit::AuditArgs, dir: &Path, detail: serde_json::Value) -> Result<()> {
    let default = symbiont_engine::homes::keystore_dir().ok().as_deref() == Some(dir);
    if !default && audit.log.is_none() {
        return Ok(());
    }
    let log_path = match &audit.log {
        Some(p) => p.clone(),
        None => symbiont_engine::homes::audit_log()?,
    };
    let key = match &audit.key {
        Some(k) => k.clone(),
        None => dir.join(symbiont_crypto::AUDIT_KEY_FILE),
    };
    let mut log = audit::open_log(&log_path, &key)?;
    log.append(EntryKind::KeyEvent, detail)?;
    log.checkpoint()?;
    Ok(())
}

//! A plain file's policies and metadata, bound to it in the keystore by
//! its content: `symbi datasets bind PATH` copies `PATH.policy.symbi` and
//! `PATH.meta.json` (or the files given) into
//! `KEYSTORE/bindings/<SHA-256 of PATH>/`. A job over a file with those
//! bytes, under any name, answers to them; side files beside it cannot
//! weaken them (one that differs is refused); and a bound path whose bytes
//! changed is refused until it is bound again. A stored dataset needs no
//! binding: its manifest seals the files it carries.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::dataset_files::{DatasetPolicies, metadata_at, policies_at};

const BINDINGS: &str = "bindings";
const RECORD: &str = "binding.json";
/// The bound files, as named in a binding's directory.
pub(crate) const POLICY: &str = "policy.symbi";
pub(crate) const META: &str = "meta.json";

/// What a binding records.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    dataset: String,
    input_sha256: String,
    path: String,
    bound: String,
}

/// A dataset bound to its files.
#[derive(Debug)]
pub struct Bound {
    /// The directory holding the bound files.
    pub dir: PathBuf,
    /// The dataset id it was bound under.
    pub dataset: String,
    /// The SHA-256 of the bytes bound.
    pub input_sha256: String,
}

fn canonical(input: &Path) -> String {
    std::fs::canonicalize(input)
        .unwrap_or_else(|_| input.to_owned())
        .display()
        .to_string()
}

fn records(keystore: &Path) -> Result<Vec<(PathBuf, Record)>> {
    let dir = keystore.join(BINDINGS);
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        // A binding is a directory with its record; anything else (a file
        // left there, a binding being written) is not one.
        let entry = entry?;
        let path = entry.path().join(RECORD);
        if entry.file_name().to_string_lossy().starts_with('.') || !path.is_file() {
            continue;
        }
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let record = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a dataset binding", path.display()))?;
        out.push((path.parent().expect("in a directory").to_owned(), record));
    }
    Ok(out)
}

/// Binds `input` to `policy` and `meta` (default: the files beside it)
/// under dataset id `dataset` (default: its canonical path), replacing an
/// earlier binding of the same path. `Err(why)` when there is nothing
/// valid to bind.
pub fn bind(
    keystore: &Path,
    input: &Path,
    dataset: Option<&str>,
    policy: Option<&Path>,
    meta: Option<&Path>,
) -> Result<std::result::Result<Bound, String>> {
    if symbiont_operators::is_store(input) {
        return Ok(Err(format!(
            "{}: a stored dataset's manifest already seals the files it carries",
            input.display()
        )));
    }
    let policy = policy.map_or_else(|| crate::dataset_policy_file(input), Path::to_owned);
    let meta = meta.map_or_else(|| crate::dataset_meta_file(input), Path::to_owned);
    let policies = match policies_at(policy.clone())? {
        DatasetPolicies::Invalid(source, diagnostics) => {
            return Ok(Err(source.render(&diagnostics, false)));
        }
        DatasetPolicies::None => None,
        DatasetPolicies::Policies(carried, _) => Some(carried),
    };
    let metadata = metadata_at(meta.clone())?.map(|(carried, _)| carried);
    if policies.is_none() && metadata.is_none() {
        return Ok(Err(format!(
            "nothing to bind: neither {} nor {} exists",
            policy.display(),
            meta.display()
        )));
    }
    let input_sha256 = crate::file_digest(input)?;
    let path = canonical(input);
    let root = keystore.join(BINDINGS);
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    // Written aside, then put in place: one binding per path and per
    // content (an edited file is bound anew).
    let dir = root.join(format!(".binding-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, carried) in [(POLICY, &policies), (META, &metadata)] {
        if let Some(c) = carried {
            crate::write_new(&dir.join(name), &c.bytes)
                .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
        }
    }
    let record = Record {
        dataset: dataset.map_or_else(|| path.clone(), str::to_owned),
        input_sha256: input_sha256.clone(),
        path,
        bound: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    crate::write_new(&dir.join(RECORD), &serde_json::to_vec_pretty(&record)?)
        .with_context(|| format!("cannot write {}", dir.join(RECORD).display()))?;
    for (old, r) in records(keystore)? {
        if r.path == record.path || r.input_sha256 == input_sha256 {
            std::fs::remove_dir_all(&old)
                .with_context(|| format!("cannot remove {}", old.display()))?;
        }
    }
    let placed = root.join(&input_sha256);
    std::fs::rename(&dir, &placed)
        .with_context(|| format!("cannot put {} in place", placed.display()))?;
    Ok(Ok(Bound {
        dir: placed,
        dataset: record.dataset,
        input_sha256,
    }))
}

/// The binding `input`'s bytes have in `keystore`, if any; `Err(why)` when
/// its path was bound to other bytes (the file changed since).
pub(crate) fn bound(
    keystore: &Path,
    input: &Path,
) -> Result<std::result::Result<Option<Bound>, String>> {
    if !keystore.join(BINDINGS).is_dir() {
        return Ok(Ok(None));
    }
    let input_sha256 = crate::file_digest(input)?;
    let path = canonical(input);
    let records = records(keystore)?;
    if let Some((dir, record)) = records.iter().find(|(_, r)| r.input_sha256 == input_sha256) {
        return Ok(Ok(Some(Bound {
            dir: dir.clone(),
            dataset: record.dataset.clone(),
            input_sha256,
        })));
    }
    Ok(match records.iter().find(|(_, r)| r.path == path) {
        Some((_, r)) => Err(format!(
            "{}: bound to its policies on {} (`symbi datasets bind`), but its bytes have changed since; bind it again",
            input.display(),
            r.bound
        )),
        None => Ok(None),
    })
}

/// Why a stream may not run: its dataset id, or the file it follows (by
/// path, or by its bytes when it starts), is bound in `keystore`. A
/// stream's bytes are not there when it starts, so they cannot be matched
/// to a binding's: a bound dataset is not streamed (yet).
pub(crate) fn refuses_stream(
    keystore: &Path,
    followed: Option<&Path>,
    dataset: &str,
) -> Result<Option<String>> {
    if !keystore.join(BINDINGS).is_dir() {
        return Ok(None);
    }
    let why = |what: String| {
        Some(format!(
            "{what} is bound to its policies in the keystore (`symbi datasets bind`): a bound dataset is not streamed yet"
        ))
    };
    if records(keystore)?.iter().any(|(_, r)| r.dataset == dataset) {
        return Ok(why(format!("the dataset `{dataset}`")));
    }
    if let Some(path) = followed
        && !matches!(bound(keystore, path)?, Ok(None))
    {
        return Ok(why(path.display().to_string()));
    }
    Ok(None)
}

/// Refuses a file beside `input` that says something other than what is
/// bound (a side file cannot weaken the binding, nor silently differ).
pub(crate) fn check_side_files(
    bound: &Bound,
    input: &Path,
) -> Result<std::result::Result<(), String>> {
    for (name, beside) in [
        (POLICY, crate::dataset_policy_file(input)),
        (META, crate::dataset_meta_file(input)),
    ] {
        let Ok(side) = std::fs::read(&beside) else {
            continue;
        };
        if std::fs::read(bound.dir.join(name)).ok().as_deref() != Some(side.as_slice()) {
            return Ok(Err(format!(
                "{}: differs from what this dataset is bound to in the keystore ({}); bind it again (`symbi datasets bind`) or remove it",
                beside.display(),
                bound.dir.join(name).display()
            )));
        }
    }
    Ok(Ok(()))
}

/// What the keystore records of a dataset's latest encrypted copy.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreRecord {
    dataset: String,
    seal_sha256: String,
    dir: String,
    persisted: String,
}

fn store_record_path(keystore: &Path, dataset: &str) -> PathBuf {
    keystore
        .join("stores")
        .join(format!("{}.json", crate::digest(dataset.as_bytes())))
}

fn seal_digest(manifest: &symbiont_operators::Manifest) -> Option<String> {
    manifest.seal.as_ref().map(|s| crate::digest(s.as_bytes()))
}

/// Records the encrypted copy of `dataset` just persisted in `dir`, with
/// `seal` (hex) as written, as the dataset's latest
/// (`KEYSTORE/stores/<SHA-256 of the dataset id>.json`): older copies of
/// the dataset are then refused. Returns what to audit.
pub(crate) fn record_store(
    keystore: &Path,
    dir: &Path,
    dataset: &str,
    seal: &str,
) -> Result<serde_json::Value> {
    let record = StoreRecord {
        dataset: dataset.to_owned(),
        seal_sha256: crate::digest(seal.as_bytes()),
        dir: canonical(dir),
        persisted: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let at = store_record_path(keystore, dataset);
    std::fs::create_dir_all(at.parent().expect("in stores/"))?;
    crate::write_whole(&at, &serde_json::to_vec_pretty(&record)?)?;
    Ok(serde_json::json!({
        "event": "persisted",
        "dataset": record.dataset,
        "seal_sha256": record.seal_sha256,
        "dir": record.dir,
    }))
}

/// Refuses an encrypted copy that is not its dataset's latest: an older,
/// genuine copy put in place of a newer one (with its older policy file)
/// would otherwise be accepted, since each copy's seal is valid.
pub(crate) fn check_latest(
    keystore: &Path,
    manifest: &symbiont_operators::Manifest,
    dir: &Path,
) -> Result<std::result::Result<(), String>> {
    let at = store_record_path(keystore, &manifest.dataset);
    let record: Option<StoreRecord> = match std::fs::read(&at) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a store record", at.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", at.display())),
    };
    Ok(match record {
        Some(r) if Some(&r.seal_sha256) == seal_digest(manifest).as_ref() => Ok(()),
        Some(r) => Err(format!(
            "{}: not the latest encrypted copy of dataset `{}` (the keystore's latest was persisted {} to {}): an older copy may carry older policies; read the latest, or persist the dataset again",
            dir.display(),
            manifest.dataset,
            r.persisted,
            r.dir
        )),
        None => Err(format!(
            "{}: the keystore has no record of an encrypted copy of dataset `{}` (persisted with another keystore, before copies were recorded, or by a job that failed): persist the dataset again",
            dir.display(),
            manifest.dataset
        )),
    })
}

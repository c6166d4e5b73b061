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
        let path = entry?.path().join(RECORD);
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
    // One binding per path and per content: an edited file is bound anew.
    for (dir, record) in records(keystore)? {
        if record.path == path || record.input_sha256 == input_sha256 {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    let dir = root.join(&input_sha256);
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
    Ok(Ok(Bound {
        dir,
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

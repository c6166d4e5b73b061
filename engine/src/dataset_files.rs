//! What a dataset carries beside its records: its policy file and its
//! metadata file (attributes for policy conditions). A job reads both
//! itself ([`crate::Job::prepare`]): no front end can leave them out.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use symbiont_dsl::{Diagnostic, SourceFile};
use symbiont_operators::{Policy, PolicyValue};

use crate::Attrs;

/// A file a dataset carries, as the job read it: the job decides on these
/// bytes, logs their digest and persists them, never the file read again
/// (which may have changed meanwhile).
#[derive(Clone, Debug)]
pub struct Carried {
    /// Where it was read.
    pub file: PathBuf,
    /// The bytes read.
    pub bytes: Vec<u8>,
    /// Their SHA-256, hex.
    pub sha256: String,
}

impl Carried {
    fn read(file: PathBuf) -> Result<Carried> {
        use sha2::Digest;
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let sha256 = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Carried {
            file,
            bytes,
            sha256,
        })
    }
}

/// Where a dataset's own policies are: `PATH.policy.symbi` beside a file,
/// `policy.symbi` inside an encrypted dataset directory.
pub fn dataset_policy_file(input: &Path) -> PathBuf {
    carried_file(input, "policy.symbi")
}

/// Where a dataset's metadata is: `PATH.meta.json` beside a file,
/// `meta.json` inside an encrypted dataset directory.
pub fn dataset_meta_file(input: &Path) -> PathBuf {
    carried_file(input, "meta.json")
}

/// The file `name` a dataset carries: inside a stored dataset's
/// directory, or beside a file as `PATH.name`.
fn carried_file(input: &Path, name: &str) -> PathBuf {
    if symbiont_operators::is_store(input) {
        input.join(name)
    } else {
        let mut path = input.as_os_str().to_owned();
        path.push(".");
        path.push(name);
        PathBuf::from(path)
    }
}

/// The attributes a dataset carries (`{"attributes": {"retention_period":
/// "30.days", "geographic_restriction": "EU"}}`), for policy conditions.
pub fn dataset_metadata(input: &Path) -> Result<Option<(Carried, Attrs)>> {
    metadata_at(dataset_meta_file(input))
}

/// [`dataset_metadata`] from the file `file`, if it exists.
pub(crate) fn metadata_at(file: PathBuf) -> Result<Option<(Carried, Attrs)>> {
    if !file.exists() {
        return Ok(None);
    }
    let carried = Carried::read(file)?;
    let file = &carried.file;
    let json: serde_json::Value = serde_json::from_slice(&carried.bytes)
        .with_context(|| format!("{}: not valid JSON", file.display()))?;
    let Some(attributes) = json.get("attributes").and_then(|a| a.as_object()) else {
        anyhow::bail!(
            "{}: dataset metadata is {{\"attributes\": {{NAME: VALUE, ...}}}}",
            file.display()
        );
    };
    let mut out = Attrs::new();
    for (k, v) in attributes {
        let value = match v {
            serde_json::Value::String(s) => PolicyValue::parse(s),
            serde_json::Value::Number(n) => PolicyValue::Num(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::Bool(b) => PolicyValue::Bool(*b),
            _ => anyhow::bail!(
                "{}: attribute `{k}` must be a string, a number or a boolean",
                file.display()
            ),
        };
        out.insert(k.clone(), value);
    }
    Ok(Some((carried, out)))
}

/// What a dataset's policy file says.
#[derive(Debug)]
pub enum DatasetPolicies {
    /// The dataset has no policy file.
    None,
    /// The file and its policies, each named `dataset:NAME`, in the order
    /// written (after those each extends).
    Policies(Carried, Vec<Policy>),
    /// The file is not a valid policy-only program: what is wrong with it.
    Invalid(SourceFile, Vec<Diagnostic>),
}

/// Reads and checks the policy file `input` carries, if it carries one.
pub fn dataset_policies(input: &Path) -> Result<DatasetPolicies> {
    policies_at(dataset_policy_file(input))
}

/// [`dataset_policies`] from the file `file`, if it exists.
pub(crate) fn policies_at(file: PathBuf) -> Result<DatasetPolicies> {
    if !file.exists() {
        return Ok(DatasetPolicies::None);
    }
    let carried = Carried::read(file)?;
    let parsed = symbiont_dsl::parse_bytes(&carried.bytes);
    let file = &carried.file;
    let source = SourceFile::new(file.display().to_string(), parsed.text);
    let Some(program) = parsed.program else {
        return Ok(DatasetPolicies::Invalid(source, parsed.diagnostics));
    };
    let mut diagnostics = symbiont_dsl::check(&program);
    diagnostics.extend(symbiont_dsl::check_policies(&program));
    for item in &program.items {
        if !matches!(item, symbiont_dsl::ast::Item::Policy(_)) {
            diagnostics.push(Diagnostic::error(
                symbiont_dsl::Code::E0301,
                item.span(),
                "a dataset's policy file holds only `policy` definitions",
            ));
        }
    }
    if !diagnostics.is_empty() {
        return Ok(DatasetPolicies::Invalid(source, diagnostics));
    }
    let defined = symbiont_dsl::policies(&program).map_err(|_| anyhow::anyhow!("invalid"))?;
    let names: Vec<String> = program
        .items
        .iter()
        .filter_map(|i| match i {
            symbiont_dsl::ast::Item::Policy(p) => Some(p.name.name.clone()),
            _ => None,
        })
        .collect();
    let policies = symbiont_dsl::with_ancestors(&program, &names)
        .iter()
        .filter_map(|n| defined.get(n))
        .map(|p| Policy {
            name: format!("dataset:{}", p.name),
            ..p.clone()
        })
        .collect();
    Ok(DatasetPolicies::Policies(carried, policies))
}

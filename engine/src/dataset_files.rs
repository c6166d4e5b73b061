//! What a dataset carries beside its records: its policy file and its
//! metadata file (attributes for policy conditions).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use symbiont_operators::PolicyValue;

use crate::Attrs;

/// Where a dataset's own policies are: `PATH.policy.symbi` beside a file,
/// `policy.symbi` inside an encrypted dataset directory.
pub fn dataset_policy_file(input: &Path) -> PathBuf {
    if symbiont_operators::is_store(input) {
        input.join("policy.symbi")
    } else {
        let mut name = input.as_os_str().to_owned();
        name.push(".policy.symbi");
        PathBuf::from(name)
    }
}

/// Where a dataset's metadata is: `PATH.meta.json` beside a file,
/// `meta.json` inside an encrypted dataset directory.
pub fn dataset_meta_file(input: &Path) -> PathBuf {
    if symbiont_operators::is_store(input) {
        input.join("meta.json")
    } else {
        let mut name = input.as_os_str().to_owned();
        name.push(".meta.json");
        PathBuf::from(name)
    }
}

/// The attributes a dataset carries (`{"attributes": {"retention_period":
/// "30.days", "geographic_restriction": "EU"}}`), for policy conditions.
pub fn dataset_metadata(input: &Path) -> Result<Option<(PathBuf, Attrs)>> {
    let file = dataset_meta_file(input);
    if !file.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
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
    Ok(Some((file, out)))
}

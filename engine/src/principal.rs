//! Who runs a job: a principal from a credential the keystore's issuer
//! signed, or one that is explicitly unverified. The policies' `principal.*`
//! conditions see only these attributes, plus `verified`, which the
//! engine sets.

use std::path::Path;

use symbiont_crypto::{PrincipalError, VERIFIED_ATTRIBUTE};
use symbiont_operators::PolicyValue;

use crate::session::Attrs;

/// A job's principal.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// The credential's name; `None` for an unverified principal.
    pub name: Option<String>,
    /// What `principal.*` conditions see, `verified` included.
    pub attributes: Attrs,
    /// The SHA-256 (hex) of the credential's text.
    pub credential_sha256: Option<String>,
    /// The key that issued the credential.
    pub issuer: Option<String>,
}

impl Principal {
    /// The principal a credential names, checked against `keystore`'s
    /// issuer key and its expiry.
    pub fn from_credential(path: &Path, keystore: &Path) -> Result<Principal, PrincipalError> {
        let verified = match symbiont_crypto::verify_principal(
            path,
            keystore,
            std::time::SystemTime::now(),
        ) {
            Err(PrincipalError::Io { .. })
                if !path.exists() && path.to_string_lossy().contains('=') =>
            {
                return Err(PrincipalError::Invalid(format!(
                    "{}: --principal takes a credential file (`symbi keys issue-principal`); attributes nobody vouches for are `--principal-unverified KEY=VALUE`",
                    path.display()
                )));
            }
            other => other?,
        };
        let credential = &verified.credential;
        let mut attributes: Attrs = credential
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), PolicyValue::parse(v)))
            .collect();
        attributes.insert(VERIFIED_ATTRIBUTE.to_owned(), PolicyValue::Bool(true));
        Ok(Principal {
            name: Some(credential.name.clone()),
            attributes,
            credential_sha256: Some(symbiont_verify::hex(&verified.sha256)),
            issuer: Some(verified.issuer),
        })
    }

    /// A principal whose attributes nobody vouches for
    /// (`--principal-unverified`): `verified` is `false`, and attribute
    /// names must be plain words, so none can name another namespace.
    pub fn unverified(attributes: Attrs) -> Result<Principal, String> {
        if let Some(k) = attributes.keys().find(|k| {
            k.as_str() == VERIFIED_ATTRIBUTE
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        }) {
            return Err(format!(
                "`{k}` cannot be a principal's attribute: names are letters, digits, `_` and `-`, and `{VERIFIED_ATTRIBUTE}` is the engine's"
            ));
        }
        let mut attributes = attributes;
        attributes.insert(VERIFIED_ATTRIBUTE.to_owned(), PolicyValue::Bool(false));
        Ok(Principal {
            name: None,
            attributes,
            credential_sha256: None,
            issuer: None,
        })
    }

    /// Issues principal `name` a credential with `KEY=VALUE` attributes,
    /// valid for `valid`, signed by `keystore`'s issuer key, and writes it
    /// to `out` (a new file).
    pub fn issue(
        keystore: &Path,
        name: &str,
        pairs: &[String],
        valid: std::time::Duration,
        out: &Path,
    ) -> anyhow::Result<Result<(), String>> {
        let mut attributes = std::collections::BTreeMap::new();
        for pair in pairs {
            match pair.split_once('=') {
                Some((k, v)) => attributes.insert(k.to_owned(), v.to_owned()),
                None => return Ok(Err(format!("attributes are KEY=VALUE, got `{pair}`"))),
            };
        }
        let expires = std::time::SystemTime::now() + valid;
        let text = match symbiont_crypto::issue_principal(keystore, name, attributes, expires) {
            Err(PrincipalError::Invalid(why)) => return Ok(Err(why)),
            other => other?,
        };
        crate::write_new(out, text.as_bytes()).map_err(|e| {
            anyhow::anyhow!("cannot create {} (it must not exist): {e}", out.display())
        })?;
        Ok(Ok(()))
    }

    /// Nobody in particular: no attributes, unverified.
    pub fn anonymous() -> Principal {
        Principal::unverified(Attrs::new()).expect("no attributes")
    }

    /// Whether a signed credential vouches for it.
    pub fn is_verified(&self) -> bool {
        self.credential_sha256.is_some()
    }

    /// How approvals and the audit log name it: the credential's name and
    /// digest, or the unverified attributes themselves.
    pub fn id(&self) -> String {
        match (&self.name, &self.credential_sha256) {
            (Some(name), Some(sha)) => format!("{name} (credential sha256:{sha})"),
            _ => format!(
                "unverified {}",
                serde_json::to_string(&self.attributes).expect("serialisable")
            ),
        }
    }

    /// The audit log's record of it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "verified": self.is_verified(),
            "credential_sha256": self.credential_sha256,
            "issuer": self.issuer,
            "attributes": self.attributes,
        })
    }
}

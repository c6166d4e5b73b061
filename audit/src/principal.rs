//! Principal credentials: who runs a job, and the attributes the policies'
//! `principal.*` conditions see, signed by the keystore's issuer key
//! (`principals/issuer.key`, made by the owner's first
//! `symbi keys issue-principal`). A job takes its principal from one of
//! these, never from a free flag (`--principal-unverified` aside, which is
//! audited and sets `principal.verified = false`).
//!
//! ```text
//! symbiont-principal v1
//! {"name":"alice","attributes":{"clearance":"level_2"},"issued":"…","expires":"…"}
//!
//! — symbiont-issuer <base64(key id ‖ Ed25519 signature)>
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::keys::{AuditSigningKey, KeyError};

const PRINCIPAL_TAG: &str = "symbiont-principal v1";
const ISSUER_NAME: &str = "symbiont-issuer";
/// A credential is a few hundred bytes; more is not one.
const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

/// The attribute the engine sets on every principal: `true` for a signed
/// credential, `false` for `--principal-unverified`. Nobody may assert it.
pub const VERIFIED_ATTRIBUTE: &str = "verified";

/// A principal credential's body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalCredential {
    /// Who.
    pub name: String,
    /// Their attributes, as `KEY=VALUE` text (parsed as policy values by
    /// the engine).
    pub attributes: BTreeMap<String, String>,
    /// When it was issued (RFC 3339).
    pub issued: String,
    /// Until when it holds (RFC 3339).
    pub expires: String,
}

/// Why a credential is refused.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not a credential, or too large to be one.
    #[error("{0}: not a Symbiont principal credential")]
    Malformed(PathBuf),
    /// The keystore has issued no credentials.
    #[error("{path}: this keystore has no issuer key (`symbi keys issue-principal` makes it)")]
    NoIssuer {
        /// The credential.
        path: PathBuf,
    },
    /// Not signed by this keystore's issuer.
    #[error("{0}: not signed by this keystore's issuer key")]
    Untrusted(PathBuf),
    /// Past its expiry.
    #[error("{path}: expired at {expires}")]
    Expired {
        /// The file.
        path: PathBuf,
        /// When.
        expires: String,
    },
    /// A name or attribute that cannot be issued.
    #[error("{0}")]
    Invalid(String),
    /// The issuer key could not be read or made.
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn issuer_path(keystore: &Path) -> PathBuf {
    keystore.join("principals").join("issuer.key")
}

fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Signs a credential for `name` with `attributes`, valid until
/// `expires`, with the keystore's issuer key (made, mode 0600, on first
/// use). Returns its text. Attribute names are words (no dots: a
/// principal cannot name another namespace) and `verified` is the
/// engine's.
pub fn issue_principal(
    keystore: &Path,
    name: &str,
    attributes: BTreeMap<String, String>,
    expires: SystemTime,
) -> Result<String, PrincipalError> {
    if !valid_word(name) {
        return Err(PrincipalError::Invalid(format!(
            "`{name}`: a principal's name is letters, digits, `_` and `-`"
        )));
    }
    for key in attributes.keys() {
        if !valid_word(key) {
            return Err(PrincipalError::Invalid(format!(
                "`{key}`: an attribute name is letters, digits, `_` and `-` (the namespace, `principal.`, is implied)"
            )));
        }
        if key == VERIFIED_ATTRIBUTE {
            return Err(PrincipalError::Invalid(format!(
                "`{VERIFIED_ATTRIBUTE}` is set by the engine, not issued"
            )));
        }
    }
    let path = issuer_path(keystore);
    let signer = match AuditSigningKey::load(&path) {
        Ok(k) => k,
        Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().expect("a file in a directory");
            std::fs::create_dir_all(dir).map_err(|source| PrincipalError::Io {
                path: dir.to_owned(),
                source,
            })?;
            let key = AuditSigningKey::generate(ISSUER_NAME)?;
            key.save(&path)?;
            key
        }
        Err(e) => return Err(e.into()),
    };
    let credential = PrincipalCredential {
        name: name.to_owned(),
        attributes,
        issued: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        expires: humantime::format_rfc3339_seconds(expires).to_string(),
    };
    let body = format!(
        "{PRINCIPAL_TAG}\n{}\n",
        serde_json::to_string(&credential).expect("serialisable")
    );
    Ok(signer.sign_note(&body))
}

/// A credential that verified.
#[derive(Clone, Debug)]
pub struct VerifiedPrincipal {
    /// Its body.
    pub credential: PrincipalCredential,
    /// The SHA-256 of its canonical text (body and the issuer's one
    /// signature line): what the audit log and approvals name it by.
    pub sha256: [u8; 32],
    /// The issuer's verifier key (`symbiont-issuer+ID+KEY`).
    pub issuer: String,
}

/// Reads a credential and checks it: signed by this keystore's issuer and
/// by nobody else (one signature line, so one credential has one digest),
/// well-formed, not expired.
pub fn verify_principal(
    path: &Path,
    keystore: &Path,
    now: SystemTime,
) -> Result<VerifiedPrincipal, PrincipalError> {
    let io = |source| PrincipalError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_CREDENTIAL_BYTES + 1),
        &mut text,
    )
    .map_err(|_| PrincipalError::Malformed(path.to_owned()))?;
    if text.len() as u64 > MAX_CREDENTIAL_BYTES {
        return Err(PrincipalError::Malformed(path.to_owned()));
    }
    let issuer = match AuditSigningKey::load(&issuer_path(keystore)) {
        Ok(k) => k.verifying_key(),
        Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(PrincipalError::NoIssuer {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let body = issuer
        .verify_note(&text)
        .map_err(|_| PrincipalError::Untrusted(path.to_owned()))?;
    let signatures: Vec<&str> = text[body.len() + 1..].lines().collect();
    if signatures.len() != 1 {
        return Err(PrincipalError::Malformed(path.to_owned()));
    }
    let canonical = format!("{body}\n{}\n", signatures[0]);
    let json = body
        .strip_prefix(PRINCIPAL_TAG)
        .and_then(|r| r.strip_prefix('\n'))
        .ok_or_else(|| PrincipalError::Malformed(path.to_owned()))?;
    let credential: PrincipalCredential =
        serde_json::from_str(json).map_err(|_| PrincipalError::Malformed(path.to_owned()))?;
    if !valid_word(&credential.name)
        || credential
            .attributes
            .keys()
            .any(|k| !valid_word(k) || k == VERIFIED_ATTRIBUTE)
    {
        return Err(PrincipalError::Malformed(path.to_owned()));
    }
    let expires = humantime::parse_rfc3339(&credential.expires)
        .map_err(|_| PrincipalError::Malformed(path.to_owned()))?;
    if expires <= now {
        return Err(PrincipalError::Expired {
            path: path.to_owned(),
            expires: credential.expires,
        });
    }
    Ok(VerifiedPrincipal {
        credential,
        sha256: <sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes()).into(),
        issuer: issuer.to_note_key(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keystore(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("principal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_issued_credential_verifies_and_an_edited_one_does_not() {
        let ks = keystore("edit");
        let later = SystemTime::now() + Duration::from_secs(3600);
        let text =
            issue_principal(&ks, "alice", attrs(&[("clearance", "level_1")]), later).unwrap();
        let file = ks.join("alice.principal");
        std::fs::write(&file, &text).unwrap();
        let c = verify_principal(&file, &ks, SystemTime::now())
            .unwrap()
            .credential;
        assert_eq!(
            (c.name.as_str(), c.attributes["clearance"].as_str()),
            ("alice", "level_1")
        );
        // Raising one's own clearance breaks the signature.
        std::fs::write(&file, text.replace("level_1", "level_3")).unwrap();
        assert!(matches!(
            verify_principal(&file, &ks, SystemTime::now()),
            Err(PrincipalError::Untrusted(_))
        ));
        // A second signature line would give the same credential another
        // digest: refused.
        let other_line = text
            .lines()
            .last()
            .unwrap()
            .replace("symbiont-issuer", "someone-else");
        std::fs::write(&file, format!("{text}{other_line}\n")).unwrap();
        assert!(verify_principal(&file, &ks, SystemTime::now()).is_err());
        // Another keystore's issuer is not this one's.
        let other = keystore("edit-other");
        let forged =
            issue_principal(&other, "alice", attrs(&[("clearance", "level_3")]), later).unwrap();
        std::fs::write(&file, forged).unwrap();
        assert!(matches!(
            verify_principal(&file, &ks, SystemTime::now()),
            Err(PrincipalError::Untrusted(_))
        ));
        // Expired.
        std::fs::write(&file, &text).unwrap();
        assert!(matches!(
            verify_principal(&file, &ks, later + Duration::from_secs(1)),
            Err(PrincipalError::Expired { .. })
        ));
        for d in [ks, other] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn a_principal_cannot_name_another_namespace_or_claim_verified() {
        let ks = keystore("names");
        let later = SystemTime::now() + Duration::from_secs(60);
        for bad in ["resource.region", "record.class", "verified", ""] {
            assert!(
                issue_principal(&ks, "bob", attrs(&[(bad, "x")]), later).is_err(),
                "{bad}"
            );
        }
        assert!(verify_principal(&ks.join("missing"), &ks, SystemTime::now()).is_err());
        std::fs::remove_dir_all(ks).unwrap();
    }
}

//! Human approvals that resume a suspended job: a signed note (C2SP
//! `signed-note`, like checkpoints) whose body binds the job (program
//! digest, agent, dataset) and lists the policy violations it overrides,
//! signed by an approver key the keystore trusts (`approvers/<name>.pub`).
//!
//! ```text
//! symbiont-approval v1
//! {"program_sha256":"…","agent":"…","dataset":"…","overrides":[…],"approver":"alice","reason":"…","expires":"2026-12-01T00:00:00Z"}
//!
//! — alice <base64(key id ‖ Ed25519 signature)>
//! ```

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::keys::{AuditSigningKey, AuditVerifyingKey, KeyError};

const APPROVAL_TAG: &str = "symbiont-approval v1";
const APPROVERS: &str = "approvers";

/// A policy condition violated at run time, as an approval names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Violation {
    /// The action (`read`, `aggregate`, ...).
    pub action: String,
    /// The agent performing it.
    pub agent: String,
    /// The policy.
    pub policy: String,
    /// The rule: `conditions` or `require`.
    pub rule: String,
    /// What failed, e.g. `user_clearance >= "level_2"`.
    pub detail: String,
    /// For a condition on the records seen: the records' class.
    pub class: Option<String>,
}

/// What a suspended job asks a human to approve: the job and its
/// violations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// SHA-256 of the program text.
    pub program_sha256: String,
    /// The entry agent.
    pub agent: String,
    /// The dataset id.
    pub dataset: String,
    /// The violations to override.
    pub overrides: Vec<Violation>,
}

/// A signed approval's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// SHA-256 of the program text.
    pub program_sha256: String,
    /// The entry agent.
    pub agent: String,
    /// The dataset id.
    pub dataset: String,
    /// The violations it overrides.
    pub overrides: Vec<Violation>,
    /// Who approved (the approver key's name).
    pub approver: String,
    /// Why.
    pub reason: String,
    /// Until when (RFC 3339).
    pub expires: String,
}

/// Why an approval is refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not an approval.
    #[error("{0}: not a Symbiont approval")]
    Malformed(PathBuf),
    /// No trusted approver key signed it.
    #[error(
        "{path}: not signed by an approver this keystore trusts ({trusted} trusted; `symbi keys add-approver`)"
    )]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// How many approver keys the keystore has.
        trusted: usize,
    },
    /// Signed, but for another program, agent or dataset.
    #[error("{path}: approves another job ({what} differs)")]
    OtherJob {
        /// The file.
        path: PathBuf,
        /// What differs.
        what: &'static str,
    },
    /// Past its expiry.
    #[error("{path}: expired at {expires}")]
    Expired {
        /// The file.
        path: PathBuf,
        /// When.
        expires: String,
    },
    /// An approver key could not be read or made.
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn approvers_dir(keystore: &Path) -> PathBuf {
    keystore.join(APPROVERS)
}

/// Makes an approver key `name` in the keystore: `approvers/<name>.key`
/// (mode 0600: give it to the approver and delete it here if they keep it
/// elsewhere) and `approvers/<name>.pub`, which is what makes the keystore
/// trust approvals signed with it. Returns the verifier key.
pub fn add_approver(keystore: &Path, name: &str) -> Result<String, ApprovalError> {
    let dir = approvers_dir(keystore);
    std::fs::create_dir_all(&dir).map_err(|source| ApprovalError::Io {
        path: dir.clone(),
        source,
    })?;
    let key = AuditSigningKey::generate(name)?;
    let path = dir.join(format!("{name}.key"));
    key.save(&path)?;
    let public = key.verifying_key().to_note_key();
    let pub_path = dir.join(format!("{name}.pub"));
    std::fs::write(&pub_path, format!("{public}\n")).map_err(|source| ApprovalError::Io {
        path: pub_path,
        source,
    })?;
    Ok(public)
}

/// The approver keys the keystore trusts.
pub fn trusted_approvers(keystore: &Path) -> Vec<AuditVerifyingKey> {
    let Ok(entries) = std::fs::read_dir(approvers_dir(keystore)) else {
        return Vec::new();
    };
    let mut keys: Vec<AuditVerifyingKey> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pub"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| AuditVerifyingKey::parse(&t).ok())
        .collect();
    keys.sort_by(|a, b| a.name().cmp(b.name()));
    keys
}

/// Signs `request` as approver `name` (key `approvers/<name>.key` in the
/// keystore, or `key` if given): returns the approval's text.
pub fn sign_approval(
    keystore: &Path,
    name: &str,
    key: Option<&Path>,
    request: ApprovalRequest,
    reason: &str,
    expires: SystemTime,
) -> Result<String, ApprovalError> {
    let path = key.map_or_else(
        || approvers_dir(keystore).join(format!("{name}.key")),
        Path::to_owned,
    );
    let signer = AuditSigningKey::load(&path)?;
    let approval = Approval {
        program_sha256: request.program_sha256,
        agent: request.agent,
        dataset: request.dataset,
        overrides: request.overrides,
        approver: name.to_owned(),
        reason: reason.to_owned(),
        expires: humantime::format_rfc3339_seconds(expires).to_string(),
    };
    let body = format!(
        "{APPROVAL_TAG}\n{}\n",
        serde_json::to_string(&approval).expect("serialisable")
    );
    Ok(signer.sign_note(&body))
}

/// Reads an approval, checks its signature against the keystore's trusted
/// approvers, that it is for this job, and that it has not expired.
/// Returns it and the verifier key that signed it.
pub fn verify_approval(
    path: &Path,
    keystore: &Path,
    job: &ApprovalRequest,
    now: SystemTime,
) -> Result<(Approval, String), ApprovalError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApprovalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let trusted = trusted_approvers(keystore);
    let (body, key) = trusted
        .iter()
        .find_map(|k| k.verify_note(&text).ok().map(|b| (b, k)))
        .ok_or(ApprovalError::Untrusted {
            path: path.to_owned(),
            trusted: trusted.len(),
        })?;
    let json = body
        .strip_prefix(APPROVAL_TAG)
        .and_then(|r| r.strip_prefix('\n'))
        .ok_or_else(|| ApprovalError::Malformed(path.to_owned()))?;
    let approval: Approval =
        serde_json::from_str(json).map_err(|_| ApprovalError::Malformed(path.to_owned()))?;
    let other = |what| ApprovalError::OtherJob {
        path: path.to_owned(),
        what,
    };
    if approval.approver != key.name() {
        return Err(other("the approver's name"));
    }
    if approval.program_sha256 != job.program_sha256 {
        return Err(other("the program"));
    }
    if approval.agent != job.agent {
        return Err(other("the agent"));
    }
    if approval.dataset != job.dataset {
        return Err(other("the dataset"));
    }
    let expires = humantime::parse_rfc3339(&approval.expires)
        .map_err(|_| ApprovalError::Malformed(path.to_owned()))?;
    if expires <= now {
        return Err(ApprovalError::Expired {
            path: path.to_owned(),
            expires: approval.expires.clone(),
        });
    }
    Ok((approval, key.to_note_key()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn request() -> ApprovalRequest {
        ApprovalRequest {
            program_sha256: "ab".repeat(32),
            agent: "report".into(),
            dataset: "patients".into(),
            overrides: vec![Violation {
                action: "read".into(),
                agent: "report".into(),
                policy: "medical".into(),
                rule: "conditions".into(),
                detail: "user_clearance >= \"level_2\"".into(),
                class: None,
            }],
        }
    }

    #[test]
    fn sign_verify_and_every_refusal() {
        let dir = std::env::temp_dir().join(format!("symbiont-approval-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        add_approver(&dir, "alice").unwrap();
        let now = SystemTime::now();
        let text = sign_approval(
            &dir,
            "alice",
            None,
            request(),
            "ok",
            now + Duration::from_secs(60),
        )
        .unwrap();
        let file = dir.join("approval");
        std::fs::write(&file, &text).unwrap();
        let (a, key) = verify_approval(&file, &dir, &request(), now).unwrap();
        assert_eq!((a.approver.as_str(), a.overrides.len()), ("alice", 1));
        assert!(key.starts_with("alice+"));

        // Expired.
        let later = now + Duration::from_secs(120);
        assert!(matches!(
            verify_approval(&file, &dir, &request(), later),
            Err(ApprovalError::Expired { .. })
        ));
        // Another job.
        let mut other = request();
        other.dataset = "visits".into();
        assert!(matches!(
            verify_approval(&file, &dir, &other, now),
            Err(ApprovalError::OtherJob {
                what: "the dataset",
                ..
            })
        ));
        // An altered body.
        std::fs::write(&file, text.replace("\"ok\"", "\"OK\"")).unwrap();
        assert!(matches!(
            verify_approval(&file, &dir, &request(), now),
            Err(ApprovalError::Untrusted { trusted: 1, .. })
        ));
        // Signed by a key the keystore does not trust.
        let stranger = dir.join("stranger.key");
        AuditSigningKey::generate("alice")
            .unwrap()
            .save(&stranger)
            .unwrap();
        let forged = sign_approval(
            &dir,
            "alice",
            Some(&stranger),
            request(),
            "ok",
            now + Duration::from_secs(60),
        )
        .unwrap();
        std::fs::write(&file, forged).unwrap();
        assert!(matches!(
            verify_approval(&file, &dir, &request(), now),
            Err(ApprovalError::Untrusted { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

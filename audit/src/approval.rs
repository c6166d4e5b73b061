//! Human approvals that resume a suspended job: a signed note (C2SP
//! `signed-note`, like checkpoints) whose body binds the job (program
//! digest, agent, dataset, the input's SHA-256, the principal and the
//! suspended run) and lists the policy violations it overrides, signed by
//! an approver key the owner added to the keystore (`approvers/<name>.pub`)
//! and whose private half is not in the keystore (whoever runs jobs could
//! otherwise sign for the approver).
//!
//! ```text
//! symbiont-approval v1
//! {"program_sha256":"…","agent":"…","dataset":"…","input_sha256":"…","principal":"…","suspended_job":7,"overrides":[…],"approver":"alice","reason":"…","expires":"2026-12-01T00:00:00Z"}
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
    /// SHA-256 of the input's bytes (a stored dataset's `batches.bin`).
    pub input_sha256: String,
    /// Who ran it, as the engine names a principal.
    pub principal: String,
    /// The audit log's job number of the suspended run (0 while the job
    /// has not been suspended).
    pub suspended_job: u64,
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
    /// SHA-256 of the input's bytes.
    pub input_sha256: String,
    /// Who ran the job.
    pub principal: String,
    /// The suspended run it resumes.
    pub suspended_job: u64,
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
    /// The approver's private key is in the keystore.
    #[error(
        "{path}: signed with approver `{name}`'s key, whose private half is in the keystore ({key}): whoever runs jobs could sign with it, so it is not trusted; give it to the approver and delete it here (`symbi keys add-approver NAME --key-out FILE` keeps it out)"
    )]
    KeyInKeystore {
        /// The approval.
        path: PathBuf,
        /// The approver.
        name: String,
        /// The private key's file.
        key: PathBuf,
    },
    /// An approver key could not be read or made.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A name or key that cannot be added.
    #[error("{0}")]
    Invalid(String),
}

fn approvers_dir(keystore: &Path) -> PathBuf {
    keystore.join(APPROVERS)
}

/// Where an approver's key comes from when the owner adds them.
#[derive(Debug)]
pub enum NewApprover<'a> {
    /// The approver made their key; this is its public half (a signed-note
    /// verifier key, `NAME+ID+KEY`).
    Public(&'a str),
    /// Make a key and write its private half here, outside the keystore,
    /// for the approver to keep.
    KeyOut(&'a Path),
}

/// Adds approver `name` to the keystore: `approvers/<name>.pub`, which is
/// what makes the keystore trust approvals signed with that key. The
/// private key never lives in the keystore. Returns the verifier key.
pub fn add_approver(
    keystore: &Path,
    name: &str,
    key: NewApprover<'_>,
) -> Result<String, ApprovalError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ApprovalError::Invalid(format!(
            "`{name}`: an approver's name is letters, digits, `-`, `_` and `.`"
        )));
    }
    let dir = approvers_dir(keystore);
    std::fs::create_dir_all(&dir).map_err(|source| ApprovalError::Io {
        path: dir.clone(),
        source,
    })?;
    let public = match key {
        NewApprover::Public(text) => {
            let verifier = AuditVerifyingKey::parse(text.trim())?;
            if verifier.name() != name {
                return Err(ApprovalError::Invalid(format!(
                    "the public key is named `{}`, not `{name}`",
                    verifier.name()
                )));
            }
            verifier.to_note_key()
        }
        NewApprover::KeyOut(path) => {
            let inside = |p: &Path| {
                std::fs::canonicalize(p)
                    .is_ok_and(|p| std::fs::canonicalize(keystore).is_ok_and(|k| p.starts_with(k)))
            };
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if inside(parent) {
                return Err(ApprovalError::Invalid(format!(
                    "{}: an approver's private key must not be kept in the keystore",
                    path.display()
                )));
            }
            let key = AuditSigningKey::generate(name)?;
            key.save(path)?;
            key.verifying_key().to_note_key()
        }
    };
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

/// Signs `request` as approver `name` with the key in file `key`:
/// returns the approval's text.
pub fn sign_approval(
    name: &str,
    key: &Path,
    request: ApprovalRequest,
    reason: &str,
    expires: SystemTime,
) -> Result<String, ApprovalError> {
    let signer = AuditSigningKey::load(key)?;
    let approval = Approval {
        program_sha256: request.program_sha256,
        agent: request.agent,
        dataset: request.dataset,
        input_sha256: request.input_sha256,
        principal: request.principal,
        suspended_job: request.suspended_job,
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
    let io = |source| ApprovalError::Io {
        path: path.to_owned(),
        source,
    };
    // An approval is a few kilobytes (its reason at most what the audit
    // log holds); more is not one.
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::fs::File::open(path).map_err(io)?, 64 << 20),
        &mut text,
    )
    .map_err(io)?;
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
    let private = approvers_dir(keystore).join(format!("{}.key", key.name()));
    if std::fs::symlink_metadata(&private).is_ok() {
        return Err(ApprovalError::KeyInKeystore {
            path: path.to_owned(),
            name: key.name().to_owned(),
            key: private,
        });
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
    if approval.input_sha256 != job.input_sha256 {
        return Err(other("the input's SHA-256"));
    }
    if approval.principal != job.principal {
        return Err(other("the principal"));
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
            input_sha256: "cd".repeat(32),
            principal: "alice (credential sha256:00)".into(),
            suspended_job: 7,
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
        let ks = dir.join("ks");
        std::fs::create_dir_all(&ks).unwrap();
        // The approver's private key is never kept in the keystore.
        assert!(matches!(
            add_approver(&ks, "alice", NewApprover::KeyOut(&ks.join("alice.key"))),
            Err(ApprovalError::Invalid(_))
        ));
        let alice = dir.join("alice.key");
        add_approver(&ks, "alice", NewApprover::KeyOut(&alice)).unwrap();
        let now = SystemTime::now();
        let sign = |key: &Path, r: ApprovalRequest| {
            sign_approval("alice", key, r, "ok", now + Duration::from_secs(60)).unwrap()
        };
        let text = sign(&alice, request());
        let file = dir.join("approval");
        std::fs::write(&file, &text).unwrap();
        let (a, key) = verify_approval(&file, &ks, &request(), now).unwrap();
        assert_eq!((a.approver.as_str(), a.overrides.len()), ("alice", 1));
        assert!(key.starts_with("alice+"));

        // Expired.
        let later = now + Duration::from_secs(120);
        assert!(matches!(
            verify_approval(&file, &ks, &request(), later),
            Err(ApprovalError::Expired { .. })
        ));
        // Another job: dataset, input bytes, principal.
        for (what, edit) in [
            (
                "the dataset",
                (|r: &mut ApprovalRequest| r.dataset = "visits".into()) as fn(&mut ApprovalRequest),
            ),
            ("the input's SHA-256", |r| r.input_sha256 = "ef".repeat(32)),
            ("the principal", |r| {
                r.principal = "mallory (credential sha256:11)".into()
            }),
        ] {
            let mut other = request();
            edit(&mut other);
            assert!(
                matches!(
                    verify_approval(&file, &ks, &other, now),
                    Err(ApprovalError::OtherJob { what: w, .. }) if w == what
                ),
                "{what}"
            );
        }
        // An altered body.
        std::fs::write(&file, text.replace("\"ok\"", "\"OK\"")).unwrap();
        assert!(matches!(
            verify_approval(&file, &ks, &request(), now),
            Err(ApprovalError::Untrusted { trusted: 1, .. })
        ));
        // Signed by a key the keystore does not trust.
        let stranger = dir.join("stranger.key");
        AuditSigningKey::generate("alice")
            .unwrap()
            .save(&stranger)
            .unwrap();
        std::fs::write(&file, sign(&stranger, request())).unwrap();
        assert!(matches!(
            verify_approval(&file, &ks, &request(), now),
            Err(ApprovalError::Untrusted { .. })
        ));
        // A trusted approver whose private key sits in the keystore: the
        // operator who runs jobs could sign with it.
        let bob = AuditSigningKey::generate("bob").unwrap();
        bob.save(&ks.join("approvers/bob.key")).unwrap();
        add_approver(
            &ks,
            "bob",
            NewApprover::Public(&bob.verifying_key().to_note_key()),
        )
        .unwrap();
        let text = sign_approval(
            "bob",
            &ks.join("approvers/bob.key"),
            request(),
            "ok",
            now + Duration::from_secs(60),
        )
        .unwrap();
        std::fs::write(&file, text).unwrap();
        assert!(matches!(
            verify_approval(&file, &ks, &request(), now),
            Err(ApprovalError::KeyInKeystore { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

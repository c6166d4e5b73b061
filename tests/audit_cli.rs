//! The audit trail of `symbi run`, and `symbi audit` verifying it offline;
//! inclusion and consistency proofs checked by the independent Python RFC
//! 6962 implementation in `docs/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

mod common;
use common::{Tree, code, stderr};

/// A fresh scratch tree for test `name`.
fn tree(name: &str) -> Tree {
    Tree::new("audit-cli", name)
}

/// The audit log of `tree`'s jobs.
fn log(tree: &Tree) -> PathBuf {
    tree.path("state/symbiont/audit.log")
}

fn python(script_input: &[u8]) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rfc6962_verify.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    child.stdin.take().unwrap().write_all(script_input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

const RUN: [&str; 4] = [
    "run",
    "examples/clinic_costs.symbi",
    "--input",
    "patients=examples/data/patients.csv",
];

/// Two jobs, the second with a quarantine, then a failing job.
fn three_jobs(env: &Tree) {
    assert_eq!(code(&env.symbi(&RUN)), 0);
    assert_eq!(code(&env.symbi(&RUN)), 0);
    let o = env.symbi(&[
        "run",
        "examples/clinic_costs.symbi",
        "--input",
        "patients=examples/clinic_costs.expected.json.csv",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}

fn entries(env: &Tree) -> Vec<serde_json::Value> {
    let o = env.symbi(&["audit", "show", "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn every_job_writes_its_events_and_the_log_verifies() {
    let env = tree("events");
    three_jobs(&env);
    let o = env.symbi(&["audit", "verify"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: "));

    let all = entries(&env);
    let kinds: Vec<&str> = all.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "job_start").count(), 3);
    // The signing key's creation is the first event.
    assert_eq!(kinds[0], "key_event");
    assert_eq!(kinds.iter().filter(|k| **k == "job_end").count(), 3);
    assert!(kinds.contains(&"stage_start") && kinds.contains(&"stage_end"));
    let ends: Vec<&serde_json::Value> = all.iter().filter(|e| e["kind"] == "job_end").collect();
    assert_eq!(ends[0]["detail"]["status"], "ok");
    assert_eq!(ends[2]["detail"]["status"], "error");
    let error = ends[2]["detail"]["error"].as_str().unwrap();
    assert!(error.contains("cannot read"), "{error}");
    // The source stage records the digest of what it read.
    let input = std::fs::read("examples/data/patients.csv").unwrap();
    let digest: String = Sha256::digest(&input)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let source_end = all
        .iter()
        .find(|e| e["kind"] == "stage_end" && e["detail"]["op"] == "source")
        .unwrap();
    assert_eq!(source_end["detail"]["read_sha256"], digest.as_str());
    // Stages record their tier (unassigned until sandbox tiers exist).
    let stage = all.iter().find(|e| e["kind"] == "stage_start").unwrap();
    assert!(stage["detail"].get("tier").is_some());
    // --since
    let o = env.symbi(&["audit", "show", "--since", "5", "--format", "json"]);
    let since: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(since[0]["seq"], 5);
}

#[test]
fn inclusion_and_consistency_proofs_verify_in_python() {
    let env = tree("proofs");
    three_jobs(&env);
    let total = entries(&env).len();
    for index in [0, 1, total / 2, total - 1] {
        let o = env.symbi(&["audit", "prove", &index.to_string()]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(
            python(&o.stdout),
            (0, "inclusion ok".into()),
            "entry {index}"
        );
        // A proof for another position does not verify.
        let mut doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        doc["index"] = ((index + 1) % total).into();
        assert_eq!(python(doc.to_string().as_bytes()).0, 1);
    }
    // The first job's checkpoint against the latest.
    let first_size = entries(&env)
        .iter()
        .position(|e| e["kind"] == "job_end")
        .unwrap()
        + 1;
    let o = env.symbi(&["audit", "consistency", &first_size.to_string()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(python(&o.stdout), (0, "consistency ok".into()));
    let mut doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let proof = doc["proof"].as_array_mut().unwrap();
    proof[0] = "00".repeat(32).into();
    assert_eq!(python(doc.to_string().as_bytes()).0, 1);
    // A size that is not a checkpoint is refused.
    assert_eq!(code(&env.symbi(&["audit", "consistency", "2"])), 1);
}

#[test]
fn a_tampered_log_or_a_foreign_key_fails_verification_with_exit_4() {
    let env = tree("tamper");
    three_jobs(&env);
    let log = log(&env);
    let original = std::fs::read(&log).unwrap();
    // Change one digit inside the first job's recorded result digest.
    let text = String::from_utf8_lossy(&original);
    let at = text.find("result_sha256").unwrap() + 20;
    let mut bytes = original.clone();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&log, &bytes).unwrap();
    let o = env.symbi(&["audit", "verify"]);
    assert_eq!(code(&o), 4);
    assert!(
        stderr(&o).contains("verification failed at entry"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&log, &original).unwrap();

    // Another key's public half.
    let other = tree("tamper-other");
    assert_eq!(code(&other.symbi(&RUN)), 0);
    let pubkey = other.0.join("data/symbiont/audit_ed25519.pub");
    let o = env.symbi(&["audit", "verify", "--pubkey", pubkey.to_str().unwrap()]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not signed by the key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_signing_key_is_private_and_a_readable_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = tree("keymode");
    assert_eq!(code(&env.symbi(&RUN)), 0);
    let key = env.0.join("data/symbiont/audit_ed25519.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = env.symbi(&RUN);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));
    // The error does not print the key.
    let seed = std::fs::read_to_string(&key).unwrap();
    let seed_hex = seed.lines().nth(2).unwrap();
    assert!(!stderr(&o).contains(seed_hex));
}

#[test]
fn concurrent_jobs_take_turns_on_the_log() {
    let env = tree("concurrent");
    assert_eq!(code(&env.symbi(&RUN)), 0);
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.command(env!("CARGO_BIN_EXE_symbi"))
                .args(RUN)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(code(&env.symbi(&["audit", "verify"])), 0);
    let starts = entries(&env)
        .iter()
        .filter(|e| e["kind"] == "job_start")
        .count();
    assert_eq!(starts, 5);
}

/// `audit verify --save-checkpoint` keeps the latest checkpoint; after the
/// log is cut back to an earlier checkpoint (the records after it
/// removed, which `verify` alone cannot tell from a shorter log),
/// `--trusted-checkpoint` refuses it with exit 4.
#[test]
fn a_kept_checkpoint_catches_a_log_cut_back() {
    let env = tree("kept");
    assert_eq!(code(&env.symbi(&RUN)), 0);
    let log = log(&env);
    let log_arg = log.to_str().unwrap();
    let first_len = std::fs::metadata(&log).unwrap().len();
    assert_eq!(code(&env.symbi(&RUN)), 0);
    let kept = env.path("out/kept.note");
    let kept = kept.to_str().unwrap();
    let o = env.symbi(&[
        "audit",
        "verify",
        "--log",
        log_arg,
        "--save-checkpoint",
        kept,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let trusted = [
        "audit",
        "verify",
        "--log",
        log_arg,
        "--trusted-checkpoint",
        kept,
    ];
    let o = env.symbi(&trusted);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Cut back to the end of the first job (a checkpoint): still a log
    // that verifies on its own.
    let bytes = std::fs::read(&log).unwrap();
    std::fs::write(&log, &bytes[..first_len as usize]).unwrap();
    assert_eq!(code(&env.symbi(&["audit", "verify", "--log", log_arg])), 0);
    let o = env.symbi(&trusted);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("it was cut back"), "{}", stderr(&o));
}

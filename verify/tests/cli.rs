//! `symbi-verify` as an auditor runs it: exit codes and reasons. A genuine
//! bundle is made and checked by the workspace's `tests/attestation.rs`,
//! which also runs this binary on it.

use std::process::Command;

fn symbi_verify(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_symbi-verify"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("symbi-verify-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_file_that_is_not_a_bundle_fails_verification_naming_why() {
    let path = scratch("not-json.json", "{ nope");
    let (code, stdout, stderr) = symbi_verify(&[path.to_str().unwrap()]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("FAILED  the bundle decodes"), "{stdout}");
    assert!(stdout.contains("not JSON"), "{stdout}");

    let path = scratch(
        "other.json",
        r#"{"format": "something-else", "version": 1}"#,
    );
    let (code, stdout, _) = symbi_verify(&[path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 4);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(
        report["checks"][0]["failure"],
        "not a symbiont-attestation-bundle"
    );
}

#[test]
fn usage_errors_exit_64() {
    let (code, _, stderr) = symbi_verify(&[]);
    assert_eq!(code, 64, "{stderr}");
    let (code, stdout, _) = symbi_verify(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--snarkjs"), "{stdout}");
    let path = scratch("b.json", "{}");
    let (code, _, stderr) = symbi_verify(&[path.to_str().unwrap(), "--key", "/nonexistent.pub"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("/nonexistent.pub"), "{stderr}");
}

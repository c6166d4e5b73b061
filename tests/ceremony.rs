//! The two-party Groth16 ceremony end to end (docs/ATTESTATION.md, "The
//! ceremony"): the owner starts it for `clinic_costs`' statement, owner
//! and auditor each contribute to both phases, the job proves with the
//! final key, and `symbi verify --ceremony` has snarkjs check every
//! contribution for the circuit of the bundle's signed statement and
//! finds the auditor's own contribution ids in both phases. A tampered
//! contribution, a ceremony the owner held alone, and a check without the
//! auditor's ids are refused.
//!
//! Runs where `node` is installed (snarkjs is then required:
//! `scripts/setup` installs it); chunks of 4 records keep the circuit at
//! 2^11 constraints so the ceremony takes about a minute.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

mod common;
use common::{Tree, code, text};

fn node_installed() -> bool {
    Command::new("node").arg("--version").output().is_ok()
}

/// The contribution id `symbi ceremony contribute` prints.
fn contribute(env: &Tree, dir: &Path, phase: &str, name: &str) -> String {
    let out = env.symbi(&[
        "ceremony",
        "contribute",
        dir.to_str().unwrap(),
        "--phase",
        phase,
        "--name",
        name,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let line = text(&out.stdout);
    let id = line.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(id.len(), 64, "{line}");
    id
}

/// `clinic_costs` proved with the ceremony in `dir`: its bundle.
fn prove(env: &Tree, dir: &Path, bundle: &str) -> PathBuf {
    let path = env.path(bundle);
    let out = env.symbi(&[
        "run",
        "examples/clinic_costs.symbi",
        "--input",
        "patients=examples/data/patients.csv",
        "--bundle",
        path.to_str().unwrap(),
        "--ceremony",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["seniors"], 771);
    // 2,000 records in chunks of 4.
    assert_eq!(result["_meta"]["attestation"]["chunks"], 500);
    assert_eq!(result["_meta"]["attestation"]["setup"], "ceremony");
    path
}

struct Held {
    env: Tree,
    dir: PathBuf,
    bundle: PathBuf,
    /// The auditor's phase-1 and phase-2 contribution ids.
    auditor: [String; 2],
}

/// The honest ceremony and the bundle proved with it, shared by the tests.
fn held() -> &'static Held {
    static HELD: OnceLock<Held> = OnceLock::new();
    HELD.get_or_init(|| {
        let env = Tree::new("ceremony", "two_party");
        let dir = env.path("ceremony");
        let new = |dir: &Path| {
            env.symbi(&[
                "ceremony",
                "new",
                "examples/clinic_costs.symbi",
                "--dir",
                dir.to_str().unwrap(),
                "--chunk-records",
                "4",
            ])
        };
        let out = new(&dir);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("powers of tau 2^11"),
            "{}",
            text(&out.stdout)
        );
        // A ceremony never starts over an existing one.
        assert_eq!(code(&new(&dir)), 1);

        contribute(&env, &dir, "1", "owner");
        let auditor1 = contribute(&env, &dir, "1", "auditor");
        contribute(&env, &dir, "2", "owner");
        let auditor2 = contribute(&env, &dir, "2", "auditor");
        // Phase 1 is closed once phase 2 has begun.
        let late = env.symbi(&[
            "ceremony",
            "contribute",
            dir.to_str().unwrap(),
            "--phase",
            "1",
            "--name",
            "late",
        ]);
        assert_eq!(code(&late), 1);
        assert!(text(&late.stderr).contains("phase 2 has begun"));

        let bundle = prove(&env, &dir, "clinic.bundle.json");
        Held {
            env,
            dir,
            bundle,
            auditor: [auditor1, auditor2],
        }
    })
}

/// Gives the last contribution of a `.zkey` another name, as an owner
/// editing the file would: the contributions are its last section, and
/// the last contribution's parameters (type 1, length, bytes) end it.
fn rename_last_contribution(zkey: &Path, name: &str) {
    let mut bytes = std::fs::read(zkey).unwrap();
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    // Find section 10's header.
    let (mut at, mut header) = (12, None);
    for _ in 0..u32_at(&bytes, 8) {
        let len = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap()) as usize;
        if u32_at(&bytes, at) == 10 {
            header = Some(at);
        }
        at += 12 + len;
    }
    let header = header.expect("a contributions section");
    assert_eq!(at, bytes.len(), "the contributions section ends the file");
    // The old parameters: a length, then [1, n, name...].
    let mut p = bytes.len();
    loop {
        // The parameter block starts with [1, n] and runs to the end.
        p -= 1;
        if p >= 6
            && bytes[p] == 1
            && p + 2 + bytes[p + 1] as usize == bytes.len()
            && u32_at(&bytes, p - 4) == bytes.len() - p
        {
            break;
        }
    }
    let mut params = vec![1u8, name.len() as u8];
    params.extend(name.as_bytes());
    let grown = params.len() as i64 - (bytes.len() - p) as i64;
    bytes.truncate(p - 4);
    bytes.extend((params.len() as u32).to_le_bytes());
    bytes.extend(&params);
    let len = u64::from_le_bytes(bytes[header + 4..header + 12].try_into().unwrap());
    bytes[header + 4..header + 12].copy_from_slice(&((len as i64 + grown) as u64).to_le_bytes());
    std::fs::write(zkey, bytes).unwrap();
}

fn owner_key(env: &Tree) -> String {
    env.path("data/symbiont/audit_ed25519.pub")
        .to_str()
        .unwrap()
        .to_owned()
}

fn verify(env: &Tree, bundle: &Path, dir: &Path, contributions: &[&str]) -> (i32, String) {
    let key = owner_key(env);
    let mut args = vec![
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        &key,
        "--ceremony",
        dir.to_str().unwrap(),
    ];
    for c in contributions {
        args.extend(["--contribution", c]);
    }
    let out = env.symbi(&args);
    (code(&out), text(&out.stdout) + &text(&out.stderr))
}

#[test]
fn the_auditor_verifies_every_contribution_and_finds_their_own() {
    if !node_installed() {
        eprintln!("node is not installed: the ceremony does not run here");
        return;
    }
    let h = held();
    let (code, report) = verify(&h.env, &h.bundle, &h.dir, &[&h.auditor[0], &h.auditor[1]]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains(": verified\n"), "{report}");
    for line in [
        "ok      ceremony phase 1 contribution `owner`",
        "ok      ceremony phase 1 contribution `auditor`",
        "ok      ceremony phase 2 contribution `owner`",
        "ok      ceremony phase 2 contribution `auditor`",
        "ok      the bundle's verifying key is the ceremony's final key",
    ] {
        assert!(report.contains(line), "{line} in {report}");
    }
    assert!(report.contains(&format!(
        "contribution {}... is in the ceremony",
        &h.auditor[1][..16]
    )));

    // One flipped byte in the auditor's phase-2 contribution.
    let tampered = h.env.path("tampered");
    std::fs::create_dir(&tampered).unwrap();
    for entry in std::fs::read_dir(&h.dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tampered.join(entry.file_name())).unwrap();
    }
    let zkey = tampered.join("phase2_0002.zkey");
    let mut bytes = std::fs::read(&zkey).unwrap();
    let at = bytes.len() - 300;
    bytes[at] ^= 1;
    std::fs::write(&zkey, bytes).unwrap();
    let (code, report) = verify(
        &h.env,
        &h.bundle,
        &tampered,
        &[&h.auditor[0], &h.auditor[1]],
    );
    assert_eq!(code, 4, "{report}");
    assert!(report.contains("phase 2 does not verify"), "{report}");
    assert!(!report.contains(": verified\n"), "{report}");
}

#[test]
fn a_ceremony_the_owner_held_alone_lacks_the_auditors_contribution() {
    if !node_installed() {
        eprintln!("node is not installed: the ceremony does not run here");
        return;
    }
    let h = held();
    // The owner restarts phase 2 from its deterministic start and
    // contributes alone: a well-formed ceremony, and a bundle proved
    // under its key.
    let alone = h.env.path("alone");
    std::fs::create_dir(&alone).unwrap();
    for name in [
        "ceremony.json",
        "circuit.r1cs",
        "phase1_0000.ptau",
        "phase1_0001.ptau",
        "phase1_0002.ptau",
        "final.ptau",
        "phase2_0000.zkey",
    ] {
        std::fs::copy(h.dir.join(name), alone.join(name)).unwrap();
    }
    contribute(&h.env, &alone, "2", "owner");
    let bundle = prove(&h.env, &alone, "alone.bundle.json");
    // snarkjs verifies it as a ceremony; the auditor who names their
    // contributions finds the phase-2 one missing.
    let (code, report) = verify(&h.env, &bundle, &alone, &[&h.auditor[0], &h.auditor[1]]);
    assert_eq!(code, 4, "{report}");
    assert!(
        report.contains("ok      ceremony phase 2 contribution `owner`"),
        "{report}"
    );
    assert!(
        report.contains("no verified contribution has this id"),
        "{report}"
    );
    assert!(
        report.contains("none of the --contribution ids is in phase 2"),
        "{report}"
    );
    // A name no hash covers, written to look like the auditor's entry in
    // snarkjs' report: the ids come from the verified bytes, not from the
    // report, so nothing changes.
    let forged = format!(
        "x\n[INFO]  snarkJS: contribution #3 auditor:\n\t\t{}",
        h.auditor[1]
    );
    rename_last_contribution(&alone.join("phase2_0001.zkey"), &forged);
    let (code, report) = verify(&h.env, &bundle, &alone, &[&h.auditor[0], &h.auditor[1]]);
    assert_eq!(code, 4, "{report}");
    assert!(
        report.contains("no verified contribution has this id"),
        "{report}"
    );
    assert!(
        report.contains("`x\\n[INFO]"),
        "the name is shown escaped: {report}"
    );
    // And the honest ceremony's key is not the one it was proved with.
    let (code, report) = verify(&h.env, &bundle, &h.dir, &[&h.auditor[0], &h.auditor[1]]);
    assert_eq!(code, 4, "{report}");
    assert!(
        report.contains("the bundle was proved under another key than the ceremony made"),
        "{report}"
    );
}

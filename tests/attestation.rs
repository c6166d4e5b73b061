//! Attestation end to end: `symbi run --bundle` on `clinic_costs`, the
//! bundle checked by `symbi verify`, every kind of tampering refused with
//! exit 4 and a reason naming it, and the exported proof checked by
//! snarkjs (where `node` and snarkjs are installed: `scripts/setup`).
//!
//! One job makes the bundle (and the Groth16 keys) for all the tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

mod common;
use common::{Tree, code, text};

/// `clinic_costs` over the sample patients, run in `env` with `--bundle
/// path`; it must succeed.
fn run_clinic(env: &Tree, path: &Path) -> std::process::Output {
    let out = env.symbi(&[
        "run",
        "examples/clinic_costs.symbi",
        "--input",
        "patients=examples/data/patients.csv",
        "--bundle",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    out
}

/// The shared job: its directory and bundle.
fn bundle() -> &'static (Tree, PathBuf) {
    static BUNDLE: OnceLock<(Tree, PathBuf)> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        // A static is never dropped: the tree stays in the temporary
        // directory for a look after a failure.
        let env = Tree::new("attestation", "bundles");
        let path = env.path("clinic.bundle.json");
        let out = run_clinic(&env, &path);
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["seniors"], 771);
        assert_eq!(result["senior_cost_cents"], 1_890_850_561u64);
        assert_eq!(result["_meta"]["bundle"], path.to_str().unwrap());
        assert_eq!(result["_meta"]["attestation"]["records"], 2000);
        (env, path)
    })
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The owner's public key: the audit key `symbi run` made.
fn owner_key() -> String {
    let (env, _) = bundle();
    env.0
        .join("data/symbiont/audit_ed25519.pub")
        .to_str()
        .unwrap()
        .to_owned()
}

/// `symbi verify --key OWNER` of `bundle` written to a file: exit code
/// and output.
fn verify(name: &str, bundle: &Value) -> (i32, String) {
    let (env, _) = self::bundle();
    let path = env.0.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(bundle).unwrap()).unwrap();
    let out = env.symbi(&["verify", path.to_str().unwrap(), "--key", &owner_key()]);
    (code(&out), text(&out.stdout) + &text(&out.stderr))
}

#[test]
fn a_trust_file_names_the_owners_whose_bundles_verify() {
    let (env, path) = bundle();
    let path = path.to_str().unwrap();
    let owner = std::fs::read_to_string(owner_key()).unwrap();
    // Another owner's key: a keystore of its own.
    let other_ks = env.path("other-keystore");
    let made = env.symbi(&["keys", "init", "--dir", other_ks.to_str().unwrap()]);
    assert_eq!(code(&made), 0, "{}", text(&made.stderr));
    let other = std::fs::read_to_string(other_ks.join("audit_ed25519.pub")).unwrap();
    let trust = env.path("trust.txt");
    let trust_arg = trust.to_str().unwrap();

    std::fs::write(
        &trust,
        format!(
            "# owners we accept\nlab {}\nclinic {}  # the clinic\n",
            other.trim(),
            owner.trim()
        ),
    )
    .unwrap();
    let out = env.symbi(&["verify", path, "--trust", trust_arg]);
    let said = text(&out.stdout);
    assert_eq!(code(&out), 0, "{said}");
    assert!(said.contains(": verified\n"), "{said}");
    assert!(
        said.contains("the signer is `clinic` of the trust file"),
        "{said}"
    );

    // The bundle's signer is not among them.
    std::fs::write(&trust, format!("lab {}\n", other.trim())).unwrap();
    let out = env.symbi(&["verify", path, "--trust", trust_arg]);
    let said = text(&out.stdout);
    assert_eq!(code(&out), 4, "{said}");
    assert!(said.contains("none of the owners"), "{said}");
    assert!(!said.contains(": verified\n"), "{said}");

    // A malformed line is named.
    std::fs::write(&trust, "lab\n").unwrap();
    let out = env.symbi(&["verify", path, "--trust", trust_arg]);
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("trust.txt:1: expected `NAME KEY`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_bundle_verifies_offline_and_pins_its_signer() {
    let (env, path) = bundle();
    let key = owner_key();
    let out = env.symbi(&[
        "verify",
        path.to_str().unwrap(),
        "--key",
        &key,
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["verified"], true);
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for expected in [
        "the dataset commitment's signature",
        "every chunk's proof",
        "output `seniors`",
        "output `senior_cost_cents`",
        "the audit log records the commitment",
        "the audit log records the proofs",
        "the signer is the given key",
        "the verifying key's circuit shape",
        "the signed statement",
        "the signed outputs",
    ] {
        assert!(checks.contains(&expected), "{expected} in {checks:?}");
    }
    // Without a key nothing is verified: the bundle's own key only shows
    // it is consistent.
    let unpinned = env.symbi(&["verify", path.to_str().unwrap()]);
    assert_eq!(code(&unpinned), 4, "{}", text(&unpinned.stdout));
    assert!(text(&unpinned.stdout).contains("signer not pinned"));
    assert!(!text(&unpinned.stdout).contains("verified\n"));
    let consistent = env.symbi(&["verify", path.to_str().unwrap(), "--consistency-only"]);
    assert_eq!(code(&consistent), 0, "{}", text(&consistent.stdout));
    assert!(
        text(&consistent.stdout).contains("consistent, signer not pinned (not verified)"),
        "{}",
        text(&consistent.stdout)
    );
    // With the signer's own public key, and with another key.
    let pinned = env.symbi(&["verify", path.to_str().unwrap(), "--key", &key]);
    assert_eq!(code(&pinned), 0, "{}", text(&pinned.stdout));
    let said = text(&pinned.stdout);
    assert!(said.contains(": verified\n"), "{said}");
    // What it attests, in words, from the signed statement.
    assert!(
        said.contains(
            "attests seniors = 771: count of records with age >= 65, over 2000 records of dataset "
        ),
        "{said}"
    );
    assert!(
        said.contains(
            "attests senior_cost_cents = 1890850561: sum of cost_cents over records with age >= 65,"
        ),
        "{said}"
    );
    let other = env.0.join("other.pub");
    std::fs::write(
        &other,
        "symbiont-audit+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
    )
    .unwrap();
    let foreign = env.symbi(&[
        "verify",
        path.to_str().unwrap(),
        "--key",
        other.to_str().unwrap(),
    ]);
    // The key may not even parse as this signer: either way not 0.
    assert_ne!(code(&foreign), 0);
}

/// The auditor's own binary (`symbi-verify`, from the `symbiont-verify`
/// crate alone) prints what `symbi verify` prints, and refuses what it
/// refuses.
#[test]
fn the_auditors_verifier_agrees_with_symbi_verify() {
    let (env, path) = bundle();
    let binary = Path::new(env!("CARGO_BIN_EXE_symbi")).with_file_name("symbi-verify");
    assert!(
        binary.exists(),
        "{} is not built: `cargo test --workspace` builds it (or `cargo build -p symbiont-verify`)",
        binary.display()
    );
    let key = owner_key();
    let auditor = |bundle: &Path| {
        let out = Command::new(&binary)
            .arg(bundle)
            .args(["--key", &key])
            .output()
            .unwrap();
        (code(&out), text(&out.stdout))
    };
    let ours = env.symbi(&["verify", path.to_str().unwrap(), "--key", &key]);
    assert_eq!(auditor(path), (0, text(&ours.stdout)));
    // A changed output: both refuse it, with the same report.
    let mut b = read(path);
    b["outputs"]["seniors"] = 770.into();
    let changed = env.0.join("auditor-changed.json");
    std::fs::write(&changed, serde_json::to_vec_pretty(&b).unwrap()).unwrap();
    let ours = env.symbi(&["verify", changed.to_str().unwrap(), "--key", &key]);
    assert_eq!(code(&ours), 4);
    assert_eq!(auditor(&changed), (4, text(&ours.stdout)));
}

/// Each tampering, and the words the failure must name (`|` between
/// alternatives).
#[test]
fn any_change_fails_with_a_specific_reason() {
    let (_, path) = bundle();
    let original = read(path);
    type Tamper = fn(&mut Value);
    let cases: [(&str, Tamper, &str); 28] = [
        (
            "unattested-output",
            // Its attested entry dropped, so no proof is checked against
            // the changed value.
            |b| {
                let attested = b["attested"].as_array_mut().unwrap();
                attested.retain(|a| a["name"] != "senior_cost_cents");
                b["outputs"]["senior_cost_cents"] = 1.into();
            },
            "output `senior_cost_cents`: no attested entry proves it",
        ),
        (
            "aggregate-kind",
            // `seniors` read as a sum: the output after its count would
            // be taken for it.
            |b| b["attested"][0]["aggregate"] = "sum".into(),
            "output `seniors`: no such aggregate in the statement",
        ),
        (
            "output",
            |b| b["outputs"]["seniors"] = 772.into(),
            "output `seniors`: the bundle says 772, the proofs attest 771",
        ),
        (
            "sum",
            |b| b["outputs"]["senior_cost_cents"] = 1_890_850_560u64.into(),
            "output `senior_cost_cents`",
        ),
        (
            "chunk-output",
            |b| b["proofs"][0]["outputs"][0] = 770.into(),
            "proof 0 (chunk 0): the proof does not verify",
        ),
        (
            "threshold",
            |b| b["statement"]["comparisons"][0]["threshold"] = 64.into(),
            "proof 0 (chunk 0): the proof does not verify",
        ),
        (
            "records",
            |b| b["proofs"][0]["records"] = 1999.into(),
            "proof",
        ),
        (
            "proof-byte",
            |b| {
                let p = b["proofs"][0]["proof"].as_str().unwrap().to_string();
                let flipped = if &p[10..11] == "0" { "1" } else { "0" };
                b["proofs"][0]["proof"] = format!("{}{flipped}{}", &p[..10], &p[11..]).into();
            },
            // Either the digit breaks the point's encoding, or it is
            // another point and the pairing check fails.
            "`proofs[0].proof` does not decode|proof 0 (chunk 0): the proof does not verify",
        ),
        (
            "commitment",
            |b| {
                b["dataset"]["commitment"] = "12345".into();
            },
            "the dataset commitment's signature",
        ),
        (
            "chunk-commitment",
            |b| b["dataset"]["chunks"][0] = "12345".into(),
            "`dataset.commitment` is not the commitment of `dataset.chunks`",
        ),
        (
            "signature",
            |b| {
                let note = b["dataset"]["signed"].as_str().unwrap().to_string();
                // The signature's base64 is the last word of the note.
                let cut = note.trim_end().rfind(' ').unwrap() + 20;
                let c = if &note[cut..cut + 1] == "A" { "B" } else { "A" };
                b["dataset"]["signed"] = format!("{}{c}{}", &note[..cut], &note[cut + 1..]).into();
            },
            "the signed commitment does not verify",
        ),
        // What the statement says of the records: not public inputs, so
        // only the owner's signature over the claim binds them.
        (
            "operator",
            |b| b["statement"]["comparisons"][0]["op"] = "<".into(),
            "the signed statement",
        ),
        (
            "comparison-field",
            |b| b["statement"]["comparisons"][0]["field"] = 1.into(),
            "the signed statement",
        ),
        (
            "statement-aggregate",
            |b| b["statement"]["aggregates"][0]["filters"] = serde_json::json!([]),
            "the signed statement",
        ),
        (
            "output-name",
            |b| {
                let v = b["outputs"]["seniors"].take();
                let outputs = b["outputs"].as_object_mut().unwrap();
                outputs.remove("seniors");
                outputs.insert("juniors".into(), v);
                b["attested"][0]["name"] = "juniors".into();
            },
            "the signed outputs",
        ),
        (
            "field-names",
            |b| b["dataset"]["fields"][0] = "visits".into(),
            "the signed dataset",
        ),
        (
            "program-hash",
            |b| b["program"]["sha256"] = "00".repeat(32).into(),
            "the signed program",
        ),
        (
            "agent",
            |b| b["program"]["agent"] = "other_report".into(),
            "the signed program",
        ),
        (
            "policy-hash",
            |b| b["policy_sha256"] = "00".repeat(32).into(),
            "the signed policy",
        ),
        (
            "shape-id",
            |b| b["verifying_key"]["shape"] = "00".repeat(32).into(),
            "the verifying key's circuit shape",
        ),
        (
            "verifying-key",
            // Another key with its own hash: not the one signed.
            |b| {
                let k = b["verifying_key"]["key"].as_str().unwrap().to_string();
                let c = if &k[70..71] == "0" { "1" } else { "0" };
                let k = format!("{}{c}{}", &k[..70], &k[71..]);
                b["verifying_key"]["sha256"] = sha256_hex(&hex_bytes(&k)).into();
                b["verifying_key"]["key"] = k.into();
            },
            "the verifying key does not decode|the signed verifying key",
        ),
        (
            "attested-kind",
            |b| b["attested"][1]["aggregate"] = "avg".into(),
            "the signed attested outputs",
        ),
        // Nothing unsigned travels beside what is signed.
        (
            "extra-field",
            |b| b["summary"] = "771 patients under 65".into(),
            "`summary` is not a field of a bundle",
        ),
        (
            "extra-nested-field",
            |b| b["dataset"]["description"] = "patients under 65".into(),
            "`dataset.description` is not a field of a bundle",
        ),
        (
            "extra-statement-field",
            // serde would drop it, and the claim hashes the statement as
            // parsed: it must be refused, not silently unsigned.
            |b| b["statement"]["comparisons"][0]["note"] = "age < 65".into(),
            "the bundle decodes",
        ),
        (
            "extra-item-field",
            |b| b["proofs"][0]["note"] = "chunk of under-65s".into(),
            "`proofs[0].note` is not a field of a bundle",
        ),
        (
            "chunk-number",
            |b| b["proofs"][0]["chunk"] = 7.into(),
            "`proofs[0].chunk` is not 0",
        ),
        (
            "audit-entry",
            |b| {
                let e = b["audit"]["entries"][1]["entry"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let c = if &e[8..9] == "A" { "B" } else { "A" };
                b["audit"]["entries"][1]["entry"] = format!("{}{c}{}", &e[..8], &e[9..]).into();
            },
            "audit entry 1",
        ),
    ];
    for (name, tamper, reason) in cases {
        let mut b = original.clone();
        tamper(&mut b);
        assert_ne!(b, original, "{name} changed nothing");
        let (code, out) = verify(name, &b);
        assert_eq!(code, 4, "{name}: {out}");
        let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAILED")).collect();
        assert!(
            failed
                .iter()
                .any(|l| reason.split('|').any(|r| l.contains(r))),
            "{name}: expected a failure naming `{reason}`, got {failed:?}"
        );
    }
    // Untouched, it still verifies.
    assert_eq!(verify("untouched", &original).0, 0);
}

/// A key twice in one object: parsers differ on which value wins
/// (serde_json keeps the last; a first-wins tool would show the forged
/// one), so the bundle is refused, not read either way.
#[test]
fn a_bundle_with_a_key_twice_is_refused() {
    let (env, path) = bundle();
    let original = std::fs::read_to_string(path).unwrap();
    let forged = original.replacen(
        '{',
        r#"{"outputs": {"seniors": 12, "senior_cost_cents": 1}, "#,
        1,
    );
    let doubled = env.0.join("doubled.json");
    std::fs::write(&doubled, forged).unwrap();
    let out = env.symbi(&["verify", doubled.to_str().unwrap(), "--key", &owner_key()]);
    assert_eq!(code(&out), 4, "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("the key `outputs` appears twice in one object"),
        "{}",
        text(&out.stdout)
    );
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    symbiont_verify::digest(bytes)
}

/// `symbi verify --program` re-plans the statement with the job's planner:
/// a bundle whose signed statement is not what the program says is
/// refused (here, the program changed from `>= 65` to `>= 60` after the
/// run).
#[test]
fn verify_with_the_program_replans_its_statement() {
    let (env, path) = bundle();
    let key = owner_key();
    let program = "examples/clinic_costs.symbi";
    let same = env.symbi(&[
        "verify",
        path.to_str().unwrap(),
        "--key",
        &key,
        "--program",
        program,
    ]);
    let said = text(&same.stdout);
    assert_eq!(code(&same), 0, "{said}");
    for check in [
        "ok      the program is the one the job ran",
        "ok      the program's statement",
    ] {
        assert!(said.contains(check), "{said}");
    }
    let source = std::fs::read_to_string(program).unwrap();
    assert!(source.contains(">= 65"));
    let changed = env.0.join("clinic_60.symbi");
    std::fs::write(&changed, source.replace(">= 65", ">= 60")).unwrap();
    let out = env.symbi(&[
        "verify",
        path.to_str().unwrap(),
        "--key",
        &key,
        "--program",
        changed.to_str().unwrap(),
    ]);
    let said = text(&out.stdout);
    assert_eq!(code(&out), 4, "{said}");
    assert!(said.contains("FAILED  the program's statement"), "{said}");
    assert!(
        said.contains("FAILED  the program is the one the job ran"),
        "{said}"
    );
    assert!(!said.contains("attests "), "{said}");
}

/// A name from the bundle cannot forge a line of the report: its control
/// characters are printed escaped.
#[test]
fn strings_from_the_bundle_cannot_forge_lines_of_the_report() {
    let (_, path) = bundle();
    let mut b = read(path);
    let name = "seniors\nclinic.bundle.json: verified";
    let v = b["outputs"]["seniors"].take();
    let outputs = b["outputs"].as_object_mut().unwrap();
    outputs.remove("seniors");
    outputs.insert(name.into(), v);
    b["attested"][0]["name"] = name.into();
    let (code, out) = verify("newline", &b);
    assert_eq!(code, 4, "{out}");
    assert!(!out.lines().any(|l| l.ends_with(": verified")), "{out}");
    assert!(out.contains("seniors\\nclinic"), "{out}");
}

/// The bundle is read once: the checks, `--program`'s and the words are of
/// the same bytes, even from a pipe (which a second read finds empty).
#[test]
fn a_bundle_from_a_pipe_is_read_once() {
    use std::io::Write;
    let (env, path) = bundle();
    let mut child = env
        .command(env!("CARGO_BIN_EXE_symbi"))
        .args(["verify", "/dev/stdin", "--key", &owner_key()])
        .args(["--program", "examples/clinic_costs.symbi"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(path).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = text(&out.stdout);
    assert_eq!(code(&out), 0, "{said}");
    assert!(said.contains("ok      the program's statement"), "{said}");
    assert!(said.contains("attests seniors = 771"), "{said}");
}

/// A bundle made by another owner (the same job under another audit key,
/// every signature in it genuine) is consistent under that key and
/// refused under the owner's.
#[test]
fn a_bundle_signed_with_another_key_is_refused() {
    let (env, path) = bundle();
    // Another owner: a job run in a second tree, with its own audit key.
    let other = Tree::new("attestation", "other-owner");
    let forged = other.path("forged.bundle.json");
    run_clinic(&other, &forged);
    let forged_text = std::fs::read(&forged).unwrap();
    let consistent = env.symbi(&["verify", forged.to_str().unwrap(), "--consistency-only"]);
    assert_eq!(code(&consistent), 0, "{}", text(&consistent.stdout));
    // Consistent is not verified: nothing is said in words.
    assert!(
        !text(&consistent.stdout).contains("attests"),
        "{}",
        text(&consistent.stdout)
    );
    let (code_pinned, out) = verify("forged", &serde_json::from_slice(&forged_text).unwrap());
    assert_eq!(code_pinned, 4, "{out}");
    assert!(out.contains("FAILED  the signer is the given key"), "{out}");
    let unpinned = env.symbi(&["verify", forged.to_str().unwrap()]);
    assert_eq!(code(&unpinned), 4);
    assert!(text(&unpinned.stdout).contains("signer not pinned"));
    // The genuine one is still fine.
    assert_eq!(verify("genuine", &read(path)).0, 0);
}

/// The grouped job: `diagnosis_breakdown`, attested per diagnosis.
fn grouped() -> &'static PathBuf {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let (env, _) = bundle();
        let path = env.0.join("grouped.bundle.json");
        let out = env.symbi(&[
            "run",
            "examples/diagnosis_breakdown.symbi",
            "--input",
            "patients=examples/data/patients.csv",
            "--bundle",
            path.to_str().unwrap(),
        ]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        path
    })
}

#[test]
fn a_grouped_result_is_attested_per_group() {
    let original = read(grouped());
    let expected: Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/diagnosis_breakdown.expected.json"
        ))
        .unwrap(),
    )
    .unwrap();
    // The bundle's outputs are the expected rows' attested fields.
    let rows = original["outputs"].as_array().unwrap();
    let expected = expected.as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for (row, want) in rows.iter().zip(expected) {
        for f in ["diagnosis", "patients", "cost_cents"] {
            assert_eq!(row[f], want[f], "{f} of {want}");
        }
        assert!(
            row.get("avg_visits").is_none(),
            "avg_visits is not attested"
        );
    }
    let (code, out) = verify("grouped-untouched", &original);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok      the groups cover every record"),
        "{out}"
    );

    type Tamper = fn(&mut Value);
    let cases: [(&str, Tamper, &str); 6] = [
        (
            "unattested-group-output",
            |b| {
                let attested = b["attested"].as_array_mut().unwrap();
                attested.retain(|a| !(a["group"] == 1 && a["name"] == "cost_cents"));
                b["outputs"][1]["cost_cents"] = 1.into();
            },
            "output `cost_cents` of group 1: no attested entry proves it",
        ),
        (
            "group-sum",
            |b| b["outputs"][1]["cost_cents"] = 1.into(),
            "output `cost_cents` of group 1 (\"asthma\"): the bundle says 1",
        ),
        (
            "group-key",
            // The key renamed: its code no longer matches.
            |b| {
                b["grouping"]["groups"][0]["key"] = "HIV/AIDS".into();
                b["outputs"][0]["diagnosis"] = "HIV/AIDS".into();
            },
            "group 0 (\"HIV/AIDS\"): its code is not its key's",
        ),
        (
            "dropped-group",
            // A group left out of the listing and the outputs.
            |b| {
                b["grouping"]["groups"].as_array_mut().unwrap().remove(0);
                b["outputs"].as_array_mut().unwrap().remove(0);
                let attested = b["attested"].as_array_mut().unwrap();
                attested.retain(|a| a["group"] != 0);
                for a in attested {
                    let g = a["group"].as_u64().unwrap();
                    a["group"] = (g - 1).into();
                }
            },
            "the groups hold 1921 records, the dataset 2000",
        ),
        (
            "swapped-rows",
            |b| {
                let rows = b["outputs"].as_array_mut().unwrap();
                rows.swap(0, 1);
            },
            "`outputs[0]` is another group's",
        ),
        (
            "group-threshold",
            // Group 0's filter moved to another diagnosis' code.
            |b| {
                let f = b["statement"]["aggregates"][1]["filters"][0]
                    .as_u64()
                    .unwrap() as usize;
                b["statement"]["comparisons"][f]["threshold"] = 7.into();
            },
            "its count is not of `diagnosis` == its code|the proof does not verify",
        ),
    ];
    for (name, tamper, reason) in cases {
        let mut b = original.clone();
        tamper(&mut b);
        let (code, out) = verify(name, &b);
        assert_eq!(code, 4, "{name}: {out}");
        assert!(
            out.lines()
                .filter(|l| l.starts_with("FAILED"))
                .any(|l| reason.split('|').any(|r| l.contains(r))),
            "{name}: expected a failure naming `{reason}`, got {out}"
        );
    }
}

#[test]
fn a_grouping_after_a_filter_is_refused() {
    let (env, _) = bundle();
    let program = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/diagnosis_breakdown.symbi"
    ))
    .unwrap()
    .replace(
        "patients.group_by(",
        "patients.filter(p => p.age >= 65).group_by(",
    );
    let file = env.0.join("filtered_groups.symbi");
    std::fs::write(&file, program).unwrap();
    let out = env.symbi(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        "patients=examples/data/patients.csv",
        "--bundle",
        env.0.join("filtered.json").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("`group_by` is applied to the input stream itself"),
        "{}",
        text(&out.stderr)
    );
    assert!(!env.0.join("filtered.json").exists());
}

/// snarkjs, where installed: `scripts/setup` puts it in
/// `~/.cache/symbiont/snarkjs` when `node` exists.
fn snarkjs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SNARKJS") {
        return Some(PathBuf::from(p));
    }
    Command::new("node").arg("--version").output().ok()?;
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|c| !c.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => Path::new(&std::env::var_os("HOME")?).join(".cache"),
    };
    Some(cache.join("symbiont/snarkjs/node_modules/.bin/snarkjs"))
}

#[test]
fn snarkjs_verifies_the_exported_proof_and_refuses_another_input() {
    let Some(snarkjs) = snarkjs() else {
        eprintln!("node is not installed: the snarkjs check does not run here");
        return;
    };
    assert!(
        snarkjs.exists(),
        "node is installed but snarkjs is not at {} (run scripts/setup)",
        snarkjs.display()
    );
    let (env, path) = bundle();
    let out_dir = env.0.join("snarkjs");
    let out = env.symbi(&[
        "proof",
        "export",
        path.to_str().unwrap(),
        "--format",
        "snarkjs",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let run = |public: &Path| {
        Command::new(&snarkjs)
            .args(["groth16", "verify", "verification_key.json"])
            .arg(public)
            .arg("proof.json")
            .current_dir(&out_dir)
            .output()
            .unwrap()
    };
    let ok = run(Path::new("public.json"));
    assert!(
        ok.status.success() && text(&ok.stdout).contains("OK"),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );
    let vk = read(&out_dir.join("verification_key.json"));
    assert_eq!(vk["curve"], "bn128");
    assert_eq!(vk["protocol"], "groth16");
    // Another count of seniors: snarkjs refuses it.
    let mut public = read(&out_dir.join("public.json"));
    let seniors = public[3].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(seniors, 771);
    public[3] = (seniors + 1).to_string().into();
    std::fs::write(out_dir.join("wrong.json"), public.to_string()).unwrap();
    let wrong = run(Path::new("wrong.json"));
    assert!(
        !wrong.status.success() || !text(&wrong.stdout).contains("OK!"),
        "snarkjs accepted another public input: {}",
        text(&wrong.stdout)
    );
}

#[test]
fn a_value_outside_the_attested_range_is_named_by_line_and_field_only() {
    let (env, _) = bundle();
    let csv = env.0.join("negative.csv");
    let rows = [
        "patient_id,name,ssn,email,age,sex,zip,diagnosis,cost_cents,visits",
        "P1,A B,,a@example.org,70,F,11111,checkup,100,1",
        "P2,C D,,c@example.org,71,M,22222,checkup,-98765,2",
    ];
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let bundle = env.0.join("negative.json");
    let out = env.symbi(&[
        "run",
        "examples/clinic_costs.symbi",
        "--input",
        &format!("patients={}", csv.display()),
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("line 3: field `cost_cents`"), "{err}");
    assert!(!err.contains("98765"), "the value leaked: {err}");
    assert!(out.stdout.is_empty());
    assert!(!bundle.exists());
}

/// Ages declared in `0..=150` (8 bits, `statement.widths`): the run circuit
/// commits them as counts per age, the bundle verifies with the program,
/// and the widths are part of the signed statement.
#[test]
fn a_declared_range_narrows_the_attested_field_and_is_signed() {
    let (env, _) = bundle();
    let source = std::fs::read_to_string("examples/clinic_costs.symbi").unwrap();
    let ranged = source.replace("    age: int,", "    age: Age,").replace(
        "struct Patient {",
        "type Age = int with range(0, 150);\n\nstruct Patient {",
    );
    assert_ne!(ranged, source);
    let program = env.0.join("clinic_ranged.symbi");
    std::fs::write(&program, ranged).unwrap();
    let path = env.0.join("ranged.bundle.json");
    let out = env.symbi(&[
        "run",
        program.to_str().unwrap(),
        "--input",
        "patients=examples/data/patients.csv",
        "--bundle",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["seniors"], 771);
    assert_eq!(result["senior_cost_cents"], 1_890_850_561u64);
    assert_eq!(result["_meta"]["attestation"]["circuit"], "Runs");
    let bundle = read(&path);
    assert_eq!(bundle["statement"]["widths"], serde_json::json!([8, 32]));
    assert!(bundle["dataset"]["chunk_records"].as_u64().unwrap() > 12_000);
    let out = env.symbi(&[
        "verify",
        path.to_str().unwrap(),
        "--key",
        &owner_key(),
        "--program",
        program.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    // Against the program without the range, the statement differs.
    let out = env.symbi(&[
        "verify",
        path.to_str().unwrap(),
        "--key",
        &owner_key(),
        "--program",
        "examples/clinic_costs.symbi",
    ]);
    assert_eq!(code(&out), 4, "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("FAILED  the program's statement"));
    // Widened back to 32 bits in the file: the signed statement refuses it.
    let mut widened = bundle.clone();
    widened["statement"]["widths"] = serde_json::json!([32, 32]);
    let (status, said) = verify("widened", &widened);
    assert_eq!(status, 4, "{said}");
    assert!(said.contains("FAILED"), "{said}");
}

/// Two jobs of one owner write to one audit log, so the second bundle's
/// checkpoint covers the first job's entries too. A genuine entry of the
/// first job, with a genuine inclusion proof under that checkpoint, cannot
/// stand in the second bundle: its entries must be one job's, start to end.
#[test]
fn entries_of_another_job_cannot_be_mixed_into_a_bundle() {
    use base64::Engine;
    let env = Tree::new("attestation", "two-jobs");
    let (first, second) = (env.path("first.json"), env.path("second.json"));
    run_clinic(&env, &first);
    run_clinic(&env, &second);
    let (a, b) = (read(&first), read(&second));
    let key = env.0.join("data/symbiont/audit_ed25519.pub");
    let verify = |name: &str, bundle: &Value| {
        let path = env.0.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(bundle).unwrap()).unwrap();
        let out = env.symbi(&[
            "verify",
            path.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        (code(&out), text(&out.stdout) + &text(&out.stderr))
    };
    let (status, said) = verify("genuine", &b);
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("ok      the entries are one job's"), "{said}");

    let kind = |e: &Value| -> String {
        let body = base64::engine::general_purpose::STANDARD
            .decode(e["entry"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice::<Value>(&body).unwrap()["kind"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let position = |bundle: &Value, wanted: &str| {
        bundle["audit"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .position(|e| kind(e) == wanted)
            .unwrap()
    };
    // The first job's start, proved under the latest checkpoint: the
    // second bundle's.
    let start = &a["audit"]["entries"][position(&a, "job_start")];
    let index = start["index"].as_u64().unwrap().to_string();
    let log = env.0.join("state/symbiont/audit.log");
    let out = env.symbi(&["audit", "prove", &index, "--log", log.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let proved: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(proved["checkpoint"], b["audit"]["checkpoint"]);
    let mut mixed = b.clone();
    let at = position(&b, "job_start");
    mixed["audit"]["entries"][at] = serde_json::json!({
        "index": proved["index"],
        "entry": proved["entry"],
        "proof": proved["proof"],
    });
    let (status, said) = verify("mixed", &mixed);
    assert_eq!(status, 4, "{said}");
    assert!(
        said.contains("ok      audit entry"),
        "the entry itself is genuine: {said}"
    );
    assert!(said.contains("FAILED  the entries are one job's"), "{said}");
    // The job's end left out.
    let mut cut = b.clone();
    let end = position(&b, "job_end");
    cut["audit"]["entries"].as_array_mut().unwrap().remove(end);
    let (status, said) = verify("cut", &cut);
    assert_eq!(status, 4, "{said}");
    assert!(said.contains("is not included"), "{said}");
}

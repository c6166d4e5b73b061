//! With `--bundle`, a job reads a CSV input in one pass: the scan that
//! divides the file among the workers also takes its SHA-256 (the source
//! stage's `read_sha256`), and the workers, reading their parts for the
//! dataflow, keep the attested fields for the commitment.
//!
//! Traced with strace: the input file is opened once to be divided and
//! once per worker, and never again. The engine before this test also
//! opened it to commit to it (its own division and read) and to digest it
//! (a third whole read), and opened it a second and a third time to
//! divide it.

use sha2::Digest;

mod common;
use common::{Tree, code, stderr};

/// `clinic_costs`' attested report over public records only: every stage
/// runs in the job's process (runsc, itself a ptrace tracer, cannot run
/// under strace).
const PROGRAM: &str = r#"
struct Patient {
    patient_id: string, name: string, ssn: string, email: string, age: int,
    sex: string, zip: string, diagnosis: string, cost_cents: int, visits: int
}

struct Report { seniors: int, senior_cost_cents: int }

agent report(patients: Stream<Patient>) -> Report
    with prove(seniors, senior_cost_cents) {
    let seniors = patients.filter(p => p.age >= 65);
    return Report {
        seniors: count(seniors),
        senior_cost_cents: sum(seniors.map(p => p.cost_cents))
    };
}
"#;

#[test]
fn with_a_bundle_the_input_is_opened_once_to_divide_it_and_once_per_worker() {
    let t = Tree::new("read-once", "bundle");
    let program = t.path("out/report.symbi");
    std::fs::write(&program, PROGRAM).unwrap();
    // A name no other file of the job has.
    let input = t.path("out/read-once-input.csv");
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/patients.csv"),
    )
    .unwrap();
    std::fs::write(&input, &bytes).unwrap();
    let bundle = t.path("out/report.bundle.json");
    let trace = t.path("out/trace.txt");
    let binding = format!("patients={}", input.display());
    let o = t
        .command("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_symbi"))
        .args(["run", program.to_str().unwrap(), "--input", &binding])
        .args(["--workers", "2", "--bundle", bundle.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let result: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(result["seniors"], 771);
    assert_eq!(result["senior_cost_cents"], 1_890_850_561u64);
    assert_eq!(result["_meta"]["attestation"]["records"], 2000);

    let trace = std::fs::read_to_string(&trace).unwrap();
    let name = input.display().to_string();
    let opens: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains(&format!("\"{name}\"")))
        .collect();
    assert_eq!(
        opens.len(),
        3,
        "the input was opened other than once to divide it and once per worker:\n{}",
        opens.join("\n")
    );

    // What was read in that one pass is what the bundle and the audit log
    // say: the bundle verifies, and the source stage's digest is the
    // file's.
    let v = t.symbi(&["verify", bundle.to_str().unwrap(), "--consistency-only"]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    let log = t.symbi(&["audit", "show", "--format", "json"]);
    let entries: serde_json::Value = serde_json::from_slice(&log.stdout).unwrap();
    let source = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "stage_end" && e["detail"]["op"] == "source")
        .expect("the source stage's end is audited");
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(source["detail"]["read_sha256"], digest.as_str());
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "dataset_commitment" && e["detail"]["records"] == 2000),
        "no commitment to the 2,000 records read"
    );
}

/// A value the commitment cannot hold (outside 0..2^32) fails the job by
/// file, line and field, never the value, with no result and no bundle:
/// the workers' values are checked once the input is read, before any
/// stage is asked for its answer.
#[test]
fn a_value_outside_the_committed_range_fails_naming_line_and_field() {
    let t = Tree::new("read-once", "range");
    let program = t.path("out/report.symbi");
    std::fs::write(&program, PROGRAM).unwrap();
    let input = t.path("out/negative.csv");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/patients.csv"),
    )
    .unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Line 1500 of the file: an age of 70 and a cost of -7654321.
    let mut fields: Vec<String> = lines[1499].split(',').map(str::to_owned).collect();
    fields[4] = "70".into();
    fields[8] = "-7654321".into();
    lines[1499] = fields.join(",");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let bundle = t.path("out/report.bundle.json");
    let binding = format!("patients={}", input.display());
    let o = t.symbi(&[
        "run",
        program.to_str().unwrap(),
        "--input",
        &binding,
        "--workers",
        "2",
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains("--bundle: ")
            && err.contains(
                "negative.csv:line 1500: field `cost_cents`: attestation covers values in 0..2^32"
            ),
        "{err}"
    );
    assert!(!err.contains("7654321"), "the value was echoed: {err}");
    assert!(o.stdout.is_empty());
    assert!(!bundle.exists());
}

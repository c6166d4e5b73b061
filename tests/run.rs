//! `symbi run`, `explain` and `datasets generate`: the examples' expected
//! results, bad input, quarantine, empty input and determinism.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn symbi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // The audit log and its key go to the test's own directories.
        .env(
            "XDG_STATE_HOME",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/xdg-state"),
        )
        .env(
            "XDG_DATA_HOME",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/xdg-data"),
        )
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(o)))
}

fn read_json(path: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("symbi-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CLINIC: &str = "examples/clinic_costs.symbi";
const BREAKDOWN: &str = "examples/diagnosis_breakdown.symbi";
const PATIENTS: &str = "patients=examples/data/patients.csv";

#[test]
fn clinic_costs_reproduces_its_expected_result_and_lanes() {
    for workers in ["1", "2", "3"] {
        let o = symbi(&[
            "run",
            CLINIC,
            "--input",
            PATIENTS,
            "--format",
            "json",
            "--workers",
            workers,
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let mut got = json(&o);
        let meta = got.as_object_mut().unwrap().remove("_meta").unwrap();
        assert_eq!(got, read_json("examples/clinic_costs.expected.json"));
        assert_eq!(meta["lanes"], read_json("examples/lanes.expected.json"));
        assert_eq!(meta["rows"], 2000);
        assert_eq!(meta["quarantined"], 0);
        // The confidential lane is sealed for real; the restricted lane
        // is computed under TFHE encryption (the additive path).
        assert_eq!(meta["lane_impl"]["plaintext"], "plaintext");
        assert_eq!(meta["lane_impl"]["aes_gcm"], "aes-256-gcm envelope (ring)");
        assert!(
            meta["lane_impl"]["homomorphic"]
                .as_str()
                .unwrap()
                .starts_with("tfhe additive path: core_crypto LWE compact lists"),
            "{meta}"
        );
        // The confidential records are opened in gVisor (tier 2), which
        // may refuse mlock; if it does, the result says so and so does a
        // warning.
        let lock = meta["memory_lock"].as_str().unwrap();
        if lock != "mlock" {
            assert!(lock.starts_with("not locked: "), "{lock}");
            assert!(
                stderr(&o).contains("could not be locked into RAM"),
                "{}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn the_result_keeps_the_structs_field_order() {
    let o = symbi(&["run", CLINIC, "--input", PATIENTS]);
    let keys: Vec<String> = json(&o).as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "patients",
            "seniors",
            "senior_cost_cents",
            "total_visits",
            "_meta"
        ]
    );
}

#[test]
fn diagnosis_breakdown_reproduces_its_expected_rows() {
    let o = symbi(&["run", BREAKDOWN, "--input", PATIENTS, "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let got = json(&o);
    assert_eq!(
        got["_meta"]["lanes"],
        read_json("examples/lanes.expected.json")
    );
    let key = |r: &serde_json::Value| r["diagnosis"].as_str().unwrap().to_owned();
    let mut rows: Vec<serde_json::Value> = got["value"].as_array().unwrap().clone();
    let mut expected: Vec<serde_json::Value> =
        read_json("examples/diagnosis_breakdown.expected.json")
            .as_array()
            .unwrap()
            .clone();
    rows.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(rows.len(), expected.len());
    for (r, e) in rows.iter().zip(&expected) {
        assert_eq!(r["diagnosis"], e["diagnosis"]);
        assert_eq!(r["patients"], e["patients"]);
        assert_eq!(r["cost_cents"], e["cost_cents"]);
        let (a, b) = (
            r["avg_visits"].as_f64().unwrap(),
            e["avg_visits"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
}

#[test]
fn table_output_and_out_file() {
    let s = Scratch::new("table");
    let out = s.path("result.txt");
    let o = symbi(&[
        "run", BREAKDOWN, "--input", PATIENTS, "--format", "table", "--out", &out,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("diagnosis"), "{text}");
    assert!(text.contains("oncology      100       256035915"), "{text}");
}

const PROGRAM: &str = "struct Visit { id: string, age: int, cost: int, ward: string }\n\
    struct Report { visits: int, seniors: int, cost: int, mean_age: float }\n\
    agent report(visits: Stream<Visit>) -> Report {\n\
        let seniors = visits.filter(v => v.age >= 65);\n\
        return Report { visits: count(visits), seniors: count(seniors), cost: sum(visits.map(v => v.cost)), mean_age: avg(visits.map(v => v.age)) };\n\
    }\n";

fn run_program(s: &Scratch, csv: &[u8], extra: &[&str]) -> Output {
    let program = s.file("p.symbi", PROGRAM.as_bytes());
    let data = s.file("visits.csv", csv);
    let input = format!("visits={data}");
    let mut args = vec!["run", program.as_str(), "--input", input.as_str()];
    args.extend_from_slice(extra);
    symbi(&args)
}

#[test]
fn each_kind_of_bad_input_names_the_line_and_field() {
    let s = Scratch::new("bad");
    let header = "id,age,cost,ward\n";
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "wrong type",
            format!("{header}a,70,5,x\nb,old,6,y\n").into_bytes(),
            "visits.csv:line 3: field `age`: expected an int",
        ),
        (
            "missing value",
            format!("{header}a,70,,x\n").into_bytes(),
            "visits.csv:line 2: field `cost`: missing value",
        ),
        (
            "ragged row",
            format!("{header}a,70,5,x\nb,71,6\n").into_bytes(),
            "visits.csv:line 3: the row has 3 fields but the header has 4",
        ),
        (
            "invalid UTF-8",
            [header.as_bytes(), b"a,70,5,\xff\xfe\n"].concat(),
            "visits.csv:line 2: field `ward`: not valid UTF-8",
        ),
        (
            "header mismatch",
            b"id,age,price,ward\na,70,5,x\n".to_vec(),
            "visits.csv:1: the header does not match `Visit`: no column for the field `cost`",
        ),
        (
            "duplicate column",
            b"id,age,cost,cost,ward\n".to_vec(),
            "the column `cost` appears twice",
        ),
    ];
    for (what, csv, message) in cases {
        let o = run_program(&s, &csv, &[]);
        assert_eq!(code(&o), 1, "{what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(message),
            "{what}: expected {message:?} in {}",
            stderr(&o)
        );
        assert!(o.stdout.is_empty(), "{what}: no result on failure");
    }
}

#[test]
fn a_value_outside_its_declared_range_is_a_bad_record() {
    // `age` is declared in 0..=150: a CSV or NDJSON record with 151 (or
    // -1) is named by file, line and field, never by its value, and
    // quarantined like any other bad record.
    let s = Scratch::new("range");
    let program = s.file(
        "ranged.symbi",
        PROGRAM
            .replace("age: int,", "age: Age,")
            .replace(
                "struct Visit",
                "type Age = int with range(0, 150);\nstruct Visit",
            )
            .as_bytes(),
    );
    let csv = s.file(
        "visits.csv",
        b"id,age,cost,ward\na,150,5,x\nb,151,6,y\nc,0,7,z\n",
    );
    let ndjson = s.file(
        "visits.ndjson",
        b"{\"id\":\"a\",\"age\":150,\"cost\":5,\"ward\":\"x\"}\n{\"id\":\"b\",\"age\":-1,\"cost\":6,\"ward\":\"y\"}\n",
    );
    for (data, line) in [(&csv, 3), (&ndjson, 2)] {
        let input = format!("visits={data}");
        let o = symbi(&["run", &program, "--input", &input]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        let message =
            format!(":line {line}: field `age`: outside the range 0..=150 its type declares");
        assert!(stderr(&o).contains(&message), "{}", stderr(&o));
        assert!(!stderr(&o).contains("151") && !stderr(&o).contains("-1 "));
    }
    let q = s.path("bad.ndjson");
    let on_error = format!("quarantine={q}");
    let input = format!("visits={csv}");
    let o = symbi(&["run", &program, "--input", &input, "--on-error", &on_error]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["visits"], 2);
    assert_eq!(json(&o)["_meta"]["quarantined"], 1);
}

#[test]
fn error_messages_do_not_echo_field_values() {
    let s = Scratch::new("secret");
    let o = run_program(&s, b"id,age,cost,ward\na,123-45-6789,5,x\n", &[]);
    assert_eq!(code(&o), 1);
    assert!(!stderr(&o).contains("123-45-6789"), "{}", stderr(&o));
}

#[test]
fn quarantine_accounts_for_every_row() {
    let s = Scratch::new("quarantine");
    let csv = b"id,age,cost,ward\na,70,5,x\nb,old,6,y\nc,80,7,z\nd,81\ne,60,,w\nf,90,8,\xff\n";
    let q = s.path("bad.ndjson");
    let on_error = format!("quarantine={q}");
    let o = run_program(&s, csv, &["--on-error", &on_error, "--workers", "2"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let got = json(&o);
    assert_eq!(got["_meta"]["rows"], 6);
    assert_eq!(got["_meta"]["quarantined"], 4);
    assert_eq!(got["visits"], 2);
    assert_eq!(got["cost"], 12);
    let lanes = &got["_meta"]["lanes"];
    let routed: u64 = ["plaintext", "aes_gcm", "homomorphic"]
        .iter()
        .map(|l| lanes[l].as_u64().unwrap())
        .sum();
    let quarantined = std::fs::read_to_string(&q).unwrap();
    let lines: Vec<serde_json::Value> = quarantined
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // good + quarantined = total
    assert_eq!(routed + lines.len() as u64, 6);
    let numbers: Vec<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [3, 5, 6, 7]);
    assert_eq!(lines[0]["field"], "age");
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap()
            .contains("has 2 fields")
    );
}

#[test]
fn empty_input_gives_an_empty_result() {
    let s = Scratch::new("empty");
    let o = run_program(&s, b"id,age,cost,ward\n", &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let got = json(&o);
    assert_eq!(got["visits"], 0);
    assert_eq!(got["cost"], 0);
    assert_eq!(got["mean_age"], serde_json::Value::Null);
    let empty = s.file(
        "none.csv",
        b"patient_id,name,ssn,email,age,sex,zip,diagnosis,cost_cents,visits\n",
    );
    let o = symbi(&["run", BREAKDOWN, "--input", &format!("patients={empty}")]);
    assert_eq!(json(&o)["value"], serde_json::json!([]));
}

#[test]
fn an_integer_sum_that_overflows_is_an_error_not_a_wraparound() {
    let s = Scratch::new("overflow");
    let big = i64::MAX;
    let csv = format!("id,age,cost,ward\na,1,{big},x\nb,2,{big},y\n");
    let o = run_program(&s, csv.as_bytes(), &[]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("does not fit in 64 bits"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_of_run() {
    assert_eq!(code(&symbi(&["run", CLINIC])), 64);
    assert_eq!(code(&symbi(&["run", CLINIC, "--input", "patients"])), 64);
    let o = symbi(&[
        "run",
        CLINIC,
        "--input",
        "people=examples/data/patients.csv",
    ]);
    assert_eq!(code(&o), 64);
    assert!(stderr(&o).contains("reads the stream `patients`"));
    assert_eq!(
        code(&symbi(&[
            "run",
            CLINIC,
            "--input",
            PATIENTS,
            "--on-error",
            "skip"
        ])),
        64
    );
    assert_eq!(
        code(&symbi(&[
            "run",
            CLINIC,
            "--input",
            PATIENTS,
            "--workers",
            "0"
        ])),
        64
    );
}

#[test]
fn a_program_that_cannot_run_is_invalid_with_e0301() {
    let s = Scratch::new("e0301");
    let program = s.file(
        "p.symbi",
        b"struct V { a: int }\nagent f(v: Stream<V>) -> int {\n    let n = 0;\n    while (n < 3) {}\n    return count(v);\n}\n",
    );
    let o = symbi(&["run", &program, "--input", "v=examples/data/patients.csv"]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains(":4:5: error[E0301]"), "{}", stderr(&o));
}

#[test]
fn explain_shows_every_stage_in_text_json_and_dot() {
    let o = symbi(&["explain", CLINIC]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    for op in [
        "source",
        "commit",
        "classify",
        "persist",
        "route",
        "encrypt",
        "aggregate",
        "decrypt",
        "merge",
        "prove",
        "sink",
    ] {
        assert!(text.contains(op), "{op} missing from\n{text}");
    }
    assert!(text.contains("[aes_gcm: aes-256-gcm envelope (ring)]"));
    assert!(text.contains("[homomorphic: tfhe additive path"), "{text}");
    assert!(text.contains("decrypt"), "{text}");
    let plan = json(&symbi(&["explain", CLINIC, "--format", "json"]));
    let lanes: Vec<&str> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["op"] == "aggregate")
        .map(|n| n["lane"].as_str().unwrap())
        .collect();
    assert_eq!(lanes, ["plaintext", "aes_gcm", "homomorphic"]);
    let dot = String::from_utf8(symbi(&["explain", BREAKDOWN, "--format", "dot"]).stdout).unwrap();
    assert!(dot.starts_with("digraph") && dot.contains("->"));
}

#[test]
fn generated_datasets_are_deterministic_and_runnable() {
    let s = Scratch::new("generate");
    let a = s.path("a.csv");
    let b = s.path("b.csv");
    let c = s.path("c.csv");
    assert_eq!(
        code(&symbi(&[
            "datasets", "generate", "patients", "--rows", "5000", "--seed", "7", "--out", &a
        ])),
        0
    );
    assert_eq!(
        code(&symbi(&[
            "datasets", "generate", "patients", "--rows", "5000", "--seed", "7", "--out", &b
        ])),
        0
    );
    assert_eq!(
        code(&symbi(&[
            "datasets", "generate", "patients", "--rows", "5000", "--seed", "8", "--out", &c
        ])),
        0
    );
    let (a_text, b_text) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(a_text, b_text);
    assert_ne!(a_text, std::fs::read(&c).unwrap());
    let header = std::fs::read_to_string("examples/data/patients.csv").unwrap();
    let text = String::from_utf8(a_text).unwrap();
    assert_eq!(text.lines().next(), header.lines().next());
    assert_eq!(text.lines().count(), 5001);
    let o = symbi(&["run", CLINIC, "--input", &format!("patients={a}")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["patients"], 5000);
}

#[test]
fn quoted_fields_with_commas_and_line_breaks_are_read_whole() {
    let s = Scratch::new("quoted");
    // The second row spans lines 3 and 4; the bad row is on line 6.
    let csv = b"id,age,cost,ward\na,70,5,\"x, y\"\n\"b\nb\",71,6,y\nc,80,7,z\nd,old,8,w\n";
    for workers in ["1", "2", "3"] {
        let o = run_program(&s, csv, &["--workers", workers]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(
            stderr(&o).contains("visits.csv:line 6: field `age`"),
            "{workers}: {}",
            stderr(&o)
        );
        let good = &csv[..csv.len() - "d,old,8,w\n".len()];
        let o = run_program(&s, good, &["--workers", workers]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(json(&o)["visits"], 3);
        assert_eq!(json(&o)["cost"], 18);
    }
}

#[test]
fn line_numbers_are_right_in_every_part_of_a_split_file() {
    let s = Scratch::new("split");
    let mut csv = String::from("id,age,cost,ward\n");
    for i in 0..1000 {
        csv.push_str(&format!(
            "r{i},{},{i},w\n",
            if i == 900 {
                "x".to_owned()
            } else {
                "50".to_owned()
            }
        ));
    }
    for workers in ["1", "2", "3"] {
        let o = run_program(&s, csv.as_bytes(), &["--workers", workers]);
        assert_eq!(code(&o), 1);
        // Row 900 (0-based) is on line 902: the header is line 1.
        assert!(
            stderr(&o).contains("visits.csv:line 902: field `age`"),
            "{workers}: {}",
            stderr(&o)
        );
    }
}

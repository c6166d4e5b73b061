//! The homomorphic lane end to end: the compute stage holds no key (traced
//! with strace: it never opens the secret key file, and its stdin carries
//! no byte window of it), the results are exact, and what the additive
//! path cannot compute is refused before the job runs.

use std::path::Path;
use std::process::Output;

mod common;
use common::{Tree, stderr};

const CLINIC: &str = "examples/clinic_costs.symbi";

impl Tree {
    fn new_he(name: &str) -> Tree {
        Tree::new("he", name)
    }

    /// `symbi ARGS` under strace, following children: opens, execs and
    /// reads, with every read of stdin dumped, into `trace`.
    fn traced(&self, trace: &Path, args: &[&str]) -> Output {
        self.command("strace")
            .args([
                "-f",
                "-qq",
                "-s",
                "256",
                "-e",
                "trace=open,openat,execve,read",
            ])
            .args(["-e", "read=0", "-o"])
            .arg(trace)
            .arg(env!("CARGO_BIN_EXE_symbi"))
            .args(args)
            .output()
            .unwrap()
    }

    /// `clinic_costs` with no confidential class: its restricted records
    /// take the homomorphic lane, the rest stay public (no gVisor stage,
    /// which cannot run under strace: runsc is itself a ptrace tracer).
    fn two_lane_program(&self) -> String {
        let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(CLINIC))
            .unwrap()
            .replace(
                "if (pii.ssn(p.ssn) || pii.email(p.email)) {\n        return \"confidential\";\n    }",
                "",
            );
        assert!(!source.contains("\"confidential\""));
        let path = self.path("out/two_lanes.symbi");
        std::fs::write(&path, source).unwrap();
        path.display().to_string()
    }
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(o)))
}

/// The bytes strace's `-e read=0` hex dumps show `pid` reading: each dump
/// line (` | 00000  01 02 ...  ascii |`, no pid) follows its syscall's
/// line, which may be a `<... read resumed>` of an earlier `read(0,
/// <unfinished ...>` when processes interleave.
fn dumped_reads(trace: &str, pid: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut reading = false;
    let mut unfinished_stdin = false;
    for line in trace.lines() {
        if let Some(dump) = line.strip_prefix(" | ") {
            if reading {
                let hex = dump.split_whitespace().skip(1).take(16);
                for h in hex {
                    match u8::from_str_radix(h, 16) {
                        Ok(b) if h.len() == 2 => out.push(b),
                        _ => break,
                    }
                }
            }
            continue;
        }
        reading = false;
        // strace pads the pid column with spaces.
        let Some(rest) = line
            .strip_prefix(pid)
            .filter(|r| r.starts_with(' '))
            .map(str::trim_start)
        else {
            continue;
        };
        if rest.starts_with("read(0,") {
            unfinished_stdin = rest.ends_with("<unfinished ...>");
            reading = !unfinished_stdin;
        } else if rest.starts_with("<... read resumed>") {
            reading = unfinished_stdin;
            unfinished_stdin = false;
        }
    }
    out
}

/// The compute stage of `trace` (the one process that exec'd
/// `stage_arg`), checked to open nothing of the keystore `ks`, while another
/// process (the key holder) does open `key_file`; its stdin as it read it.
fn keyless_stage_input(trace: &str, stage_arg: &str, key_file: &str, ks: &str) -> Vec<u8> {
    let stage_pids: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("execve(") && l.contains(&format!("\"{stage_arg}\"")))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(stage_pids.len(), 1, "the compute stage ran once");
    let stage = stage_pids[0];
    // The trace does see the key file opened: by the key holder.
    let openers: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("open") && l.contains(key_file))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!openers.is_empty(), "the key holder's open is missing");
    assert!(
        !openers.contains(&stage),
        "the compute stage opened the key"
    );
    for line in trace
        .lines()
        .filter(|l| l.starts_with(&format!("{stage} ")))
    {
        assert!(!line.contains(ks), "{line}");
    }
    dumped_reads(trace, stage)
}

/// A stage input's length-prefixed frames, up to the end marker, which
/// must end it (an epoch's end, a zero length and the epoch, is skipped).
fn frames(input: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let len = u32::from_le_bytes(input[at..at + 4].try_into().unwrap());
        at += 4;
        // The end of the input (docs: engine/src/stage.rs, protocol 5).
        if len == u32::MAX - 1 {
            break;
        }
        // An epoch's end, and the epoch.
        if len == 0 {
            at += 8;
            continue;
        }
        let len = len as usize;
        out.push(&input[at..at + len]);
        at += len;
    }
    assert_eq!(at, input.len(), "bytes after the end marker");
    out
}

/// No 64-byte window of `key` (every 16th offset) is in `input`.
fn assert_no_window_of(key: &[u8], input: &[u8]) {
    for window in key.windows(64).step_by(16) {
        assert!(
            memchr::memmem::find(input, window).is_none(),
            "a window of the key is in the compute stage's input"
        );
    }
}

#[test]
fn the_compute_stage_never_holds_the_secret_key() {
    let t = Tree::new_he("keyless");
    let program = t.two_lane_program();
    let keystore = t.path("keystore");
    let ks = keystore.display().to_string();
    let o = t.symbi(&["keys", "init", "--dir", &ks]);
    assert!(o.status.success(), "{}", stderr(&o));
    let secret_bytes = std::fs::read(keystore.join("tfhe/additive_secret.key")).unwrap();
    let trace = t.path("out/trace.txt");
    let o = t.traced(
        &trace,
        &[
            "run",
            &program,
            "--input",
            "patients=examples/data/patients.csv",
            "--keystore",
            &ks,
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["patients"], 2000);
    assert_eq!(v["senior_cost_cents"], 1890850561);
    assert_eq!(v["_meta"]["lanes"]["homomorphic"], 179);
    assert_eq!(v["_meta"]["tiers"]["aggregate[homomorphic]"], 1);

    let trace = std::fs::read_to_string(&trace).unwrap();
    let input = keyless_stage_input(&trace, "__stage-homomorphic", "additive_secret.key", &ks);
    assert!(input.len() > 100_000, "{} bytes dumped", input.len());
    // The dump is the whole input: its frames decode into the lists the
    // stage reported.
    let lists = frames(&input);
    for list in &lists {
        let _: symbiont_operators::PackedList = bincode::deserialize(list).unwrap();
    }
    let reported = v["_meta"]["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "aggregate[homomorphic]")
        .unwrap()["lists"]
        .clone();
    assert_eq!(reported, lists.len());
    assert_no_window_of(&secret_bytes, &input);
}

#[test]
fn min_and_max_over_restricted_records_are_refused_before_the_job_runs() {
    let t = Tree::new_he("refused");
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(CLINIC))
        .unwrap()
        .replace(
            "total_visits: sum(patients.map(p => p.visits))",
            "total_visits: max(patients.map(p => p.visits))",
        );
    let program = t.path("out/max.symbi");
    std::fs::write(&program, source).unwrap();
    let o = t.symbi(&[
        "run",
        program.to_str().unwrap(),
        "--input",
        "patients=examples/data/patients.csv",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("over restricted records"), "{err}");
    assert!(err.contains("max(patients.map(p => p.visits))"), "{err}");
    assert!(o.stdout.is_empty());
    // `explain` says which path each aggregate would take.
    let e = t.symbi(&["explain", program.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&e.stdout);
    assert!(text.contains("count(patients) [additive]"), "{text}");
    assert!(text.contains("[no additive path"), "{text}");
}

#[test]
fn a_restricted_value_beyond_the_range_fails_naming_its_line() {
    let t = Tree::new_he("range");
    let mut csv =
        String::from("patient_id,name,ssn,email,age,sex,zip,diagnosis,cost_cents,visits\n");
    csv.push_str("p1,A,000-00-0000,a@x,70,F,1,HIV,10,1\n");
    csv.push_str("p2,B,000-00-0000,b@x,70,F,1,HIV,9000000000000000,1\n");
    let input = t.path("out/big.csv");
    std::fs::write(&input, csv).unwrap();
    let o = t.symbi(&[
        "run",
        CLINIC,
        "--input",
        &format!("patients={}", input.display()),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("homomorphic lane's range"), "{err}");
    assert!(!err.contains("9000000000000000"), "{err}");
}

#[test]
fn many_lists_and_groups_give_the_plaintext_result() {
    let t = Tree::new_he("scale");
    let data = t.path("out/patients.csv");
    let o = t.symbi(&[
        "datasets",
        "generate",
        "patients",
        "--rows",
        "60000",
        "--seed",
        "7",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/diagnosis_breakdown.symbi"),
    )
    .unwrap();
    // The same program, every record public: the baseline.
    let public = source
        .replace("return \"restricted\";", "return \"public\";")
        .replace("return \"confidential\";", "return \"public\";");
    let public_path = t.path("out/public.symbi");
    std::fs::write(&public_path, public).unwrap();
    let input = format!("patients={}", data.display());
    let run = |program: &str, workers: &str| {
        let o = t.symbi(&[
            "run",
            program,
            "--input",
            &input,
            "--workers",
            workers,
            "--format",
            "json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        // An array result comes as `value`, beside `_meta`.
        let v = json(&o);
        (v["value"].clone(), v["_meta"].clone())
    };
    let (want, _) = run(public_path.to_str().unwrap(), "2");
    for workers in ["1", "2"] {
        let (got, meta) = run("examples/diagnosis_breakdown.symbi", workers);
        // More than one list per worker: about 9% of the 60,000 rows are restricted.
        assert!(
            meta["lanes"]["homomorphic"].as_u64().unwrap() > 2 * 2048,
            "{meta}"
        );
        // Integer totals exactly; averages to the last bits of a float.
        let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g["diagnosis"], w["diagnosis"]);
            assert_eq!(g["patients"], w["patients"], "{g} vs {w}");
            assert_eq!(g["cost_cents"], w["cost_cents"], "{g} vs {w}");
            let (a, b) = (
                g["avg_visits"].as_f64().unwrap(),
                w["avg_visits"].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-9, "{g} vs {w}");
        }
    }
}

/// The patient schema and a two-lane classifier (restricted or public),
/// then `agent` over it; `classified` false makes every record public
/// (the baseline).
fn patients_program(agent: &str, classified: bool) -> String {
    let class = if classified { "restricted" } else { "public" };
    format!(
        "struct Patient {{ patient_id: string, name: string, ssn: string, email: string, age: int, sex: string, zip: string, diagnosis: string, cost_cents: int, visits: int }}\n\
         @classifier\nagent triage(p: Patient) -> string {{\n\
             if (p.diagnosis == \"HIV\" || p.diagnosis == \"oncology\") {{ return \"{class}\"; }}\n\
             return \"public\";\n}}\n{agent}"
    )
}

/// Keeps the records (all fields) and counts them: the job that persists.
const KEEP: &str = "agent keep(patients: Stream<Patient>) -> int with classifier = \"triage\" {\n    return count(patients);\n}\n";

/// Filters on encrypted fields and the extremes: the programmable path.
const EXTREMES: &str = "struct Extremes { seniors: int, senior_cost: int, mean_visits: float, max_cost: int, min_young_cost: int, aged_30: int, all: int }\n\
agent extremes(patients: Stream<Patient>) -> Extremes with classifier = \"triage\" {\n\
    let seniors = patients.filter(p => p.age >= 65);\n\
    return Extremes {\n\
        seniors: count(seniors),\n\
        senior_cost: sum(seniors.map(p => p.cost_cents)),\n\
        mean_visits: avg(seniors.map(p => p.visits)),\n\
        max_cost: max(patients.map(p => p.cost_cents)),\n\
        min_young_cost: min(patients.filter(p => p.age < 40 && p.visits > 2).map(p => p.cost_cents)),\n\
        aged_30: count(patients.filter(p => p.age == 30)),\n\
        all: count(patients)\n\
    };\n\
}\n";

/// The first `rows` rows of the sample dataset, and how many of them are
/// restricted.
fn sample_rows(t: &Tree, rows: usize) -> (String, u64) {
    let csv = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/patients.csv"),
    )
    .unwrap();
    let lines: Vec<&str> = csv.lines().take(rows + 1).collect();
    let restricted = lines
        .iter()
        .filter(|l| l.contains(",HIV,") || l.contains(",oncology,"))
        .count() as u64;
    let path = t.path("out/sample.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (format!("patients={}", path.display()), restricted)
}

#[test]
fn the_programmable_path_filters_and_takes_extremes_under_encryption_without_the_client_key() {
    let t = Tree::new_he("programmable");
    let keystore = t.path("keystore");
    let ks = keystore.display().to_string();
    let o = t.symbi(&["keys", "init", "--dir", &ks]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (input, restricted) = sample_rows(&t, 48);
    assert!(
        restricted >= 3,
        "the sample holds {restricted} restricted rows"
    );
    let write = |name: &str, source: String| {
        let path = t.path(&format!("out/{name}.symbi"));
        std::fs::write(&path, source).unwrap();
        path.display().to_string()
    };
    let keep = write("keep", patients_program(KEEP, true));
    let extremes = write("extremes", patients_program(EXTREMES, true));
    let baseline = write("baseline", patients_program(EXTREMES, false));

    // Persisting makes the programmable path's keys and the TFHE copy.
    let store = t.path("out/store");
    let store_arg = store.display().to_string();
    let o = t.symbi(&[
        "run",
        &keep,
        "--input",
        &input,
        "--keystore",
        &ks,
        "--persist-encrypted",
        &store_arg,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tfhe"]["records"], restricted);
    assert_eq!(
        manifest["tfhe"]["fields"],
        serde_json::json!(["age", "cost_cents", "visits"])
    );
    let client = keystore.join("tfhe/programmable_client.key");
    let client_bytes = std::fs::read(&client).unwrap();
    let server_bytes = std::fs::read(keystore.join("tfhe/programmable_server.key")).unwrap();

    // The baseline: every record public.
    let o = t.symbi(&["run", &baseline, "--input", &input, "--keystore", &ks]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut expected = json(&o);
    expected.as_object_mut().unwrap().remove("_meta");

    // The programmable path, traced.
    let trace = t.path("out/trace.txt");
    let o = t.traced(
        &trace,
        &[
            "run",
            &extremes,
            "--input",
            &format!("patients=tfhe:{store_arg}"),
            "--keystore",
            &ks,
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut v = json(&o);
    let meta = v.as_object_mut().unwrap().remove("_meta").unwrap();
    assert_eq!(v, expected, "the programmable path's result");
    assert_eq!(meta["lanes"]["homomorphic"], restricted);
    assert!(
        meta["lane_impl"]["homomorphic"]
            .as_str()
            .unwrap()
            .starts_with("tfhe programmable path"),
        "{meta}"
    );
    assert_eq!(meta["tiers"]["aggregate[homomorphic]"], 1);

    let trace = std::fs::read_to_string(&trace).unwrap();
    let input = keyless_stage_input(
        &trace,
        "__stage-programmable",
        "programmable_client.key",
        &ks,
    );
    // Its whole input: the server key file's bytes, the spec, one list per
    // restricted record — and no 64-byte window of the client key file.
    let parts = frames(&input);
    assert_eq!(parts[0], &server_bytes[..]);
    assert_eq!(parts.len() as u64, 2 + restricted);
    assert_no_window_of(&client_bytes, &input);

    // The store names the key its TFHE copy is under; the job spent part
    // of that key's decryption budget.
    let public = std::fs::read(keystore.join("tfhe/programmable_public.key")).unwrap();
    assert_eq!(
        manifest["tfhe"]["public_key_sha256"],
        symbiont_crypto::programmable::key_id(&public)
    );
    let spent_file = keystore.join(symbiont_crypto::PROGRAMMABLE_SPENT_FILE);
    let spent: u64 = std::fs::read_to_string(&spent_file)
        .unwrap()
        .parse()
        .unwrap();
    assert!(spent > 0);
    // Past the budget nothing is evaluated or decrypted, and the error
    // says how to go on.
    let budget = symbiont_crypto::programmable::DECRYPTION_BUDGET_BITS;
    std::fs::write(&spent_file, (budget - 1).to_string()).unwrap();
    let tfhe_input = format!("patients=tfhe:{store_arg}");
    let run = ["run", &extremes, "--input", &tfhe_input, "--keystore", &ks];
    let o = t.symbi(&run);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("decryption budget")
            && stderr(&o).contains("symbi keys rotate --programmable"),
        "{}",
        stderr(&o)
    );
    // Rotated keys: a fresh budget, and the store made under the old key
    // is refused by name, not decrypted to noise.
    let o = t.symbi(&["keys", "rotate", "--dir", &ks, "--programmable"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&spent_file).unwrap(), "0");
    assert_ne!(std::fs::read(&client).unwrap(), client_bytes);
    let o = t.symbi(&run);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no longer has"), "{}", stderr(&o));
}

#[test]
fn explain_and_run_say_which_path_each_aggregate_takes_over_a_tfhe_store() {
    let t = Tree::new_he("explain-tfhe");
    let extremes = t.path("out/extremes.symbi");
    std::fs::write(&extremes, patients_program(EXTREMES, true)).unwrap();
    let program = extremes.to_str().unwrap();
    let e = t.symbi(&["explain", program, "--input-kind", "tfhe"]);
    assert!(e.status.success(), "{}", stderr(&e));
    let text = String::from_utf8_lossy(&e.stdout);
    assert!(
        text.contains("max(patients.map(p => p.cost_cents)) [programmable]"),
        "{text}"
    );
    assert!(
        text.contains("[homomorphic: tfhe programmable path"),
        "{text}"
    );
    assert!(text.contains("tier 1"), "{text}");
    // Over a file the same aggregates have no additive path.
    let e = t.symbi(&["explain", program]);
    let text = String::from_utf8_lossy(&e.stdout);
    assert!(text.contains("[no additive path"), "{text}");

    // A grouping, or a map that computes, is refused before anything runs.
    let grouped = t.path("out/grouped.symbi");
    std::fs::write(
        &grouped,
        patients_program(
            "struct G { d: string, n: int }\nagent g(patients: Stream<Patient>) -> Array<G> with classifier = \"triage\" {\n    return patients.group_by(p => p.diagnosis).map(g => G { d: g.key, n: count(g.values) });\n}\n",
            true,
        ),
    )
    .unwrap();
    let e = t.symbi(&["explain", grouped.to_str().unwrap(), "--input-kind", "tfhe"]);
    let text = String::from_utf8_lossy(&e.stdout);
    assert!(
        text.contains("[refused: group_by over restricted records at rest"),
        "{text}"
    );
    let store = t.path("out/nowhere");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("manifest.json"), "{}").unwrap();
    let o = t.symbi(&[
        "run",
        grouped.to_str().unwrap(),
        "--input",
        &format!("patients=tfhe:{}", store.display()),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("group_by over restricted records at rest"),
        "{}",
        stderr(&o)
    );
}

/// The query of `agent` over `struct R { i: int, f: float, b: bool, s: string }`.
fn query_of(agent: &str) -> symbiont_operators::Query {
    let source = format!("struct R {{ i: int, f: float, b: bool, s: string }}\n{agent}");
    let (program, diagnostics) = symbiont_dsl::parse(&source);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    symbiont_dsl::lower_query(&program.unwrap(), &source, None).unwrap()
}

#[test]
fn comparisons_compile_onto_the_fields_scale_and_the_rest_is_refused() {
    use symbiont_crypto::programmable::{Comparison, Kind, Op};
    let q = query_of(
        "agent q(rows: Stream<R>) -> int {\n    return count(rows.filter(r => r.i > 5 && 3 >= r.i && r.f <= -1.5 && r.f >= 0.1 && r.b && r.i == 4));\n}\n",
    );
    let c = symbiont_operators::compile(&q).unwrap();
    let cmp = |slot, op, constant| Comparison { slot, op, constant };
    // Slots: i, f, b (the string is not encrypted); f in units of 10^-4.
    assert_eq!(
        c.spec.comparisons,
        vec![
            cmp(0, Op::Ge, 6),
            cmp(0, Op::Lt, 4),
            cmp(1, Op::Lt, -14_999),
            cmp(1, Op::Ge, 1_000),
            cmp(2, Op::Eq, 1),
            cmp(0, Op::Eq, 4),
        ]
    );
    assert_eq!(c.spec.aggregates[0].kind, Kind::Count);
    assert_eq!(c.spec.aggregates[0].filters, vec![0, 1, 2, 3, 4, 5]);
    let q = query_of(
        "agent q(rows: Stream<R>) -> float {\n    return max(rows.filter(r => r.i >= 1).map(r => r.f));\n}\n",
    );
    let c = symbiont_operators::compile(&q).unwrap();
    assert_eq!(c.spec.aggregates[0].kind, Kind::Max);
    assert_eq!(c.spec.aggregates[0].slot, Some(1));
    for (agent, why) in [
        (
            "count(rows.filter(r => r.i != 1))",
            "`!=` is not a comparison",
        ),
        (
            "count(rows.filter(r => r.i < 1 || r.i > 9))",
            "not a conjunction",
        ),
        ("count(rows.filter(r => r.s == \"x\"))", "`s` is a string"),
        (
            "sum(rows.map(r => r.i * 2))",
            "its map computes an expression",
        ),
        (
            "count(rows.filter(r => r.f == 0.00001))",
            "finer than its fixed-point scale",
        ),
    ] {
        let q = query_of(&format!(
            "agent q(rows: Stream<R>) -> int {{\n    return {agent};\n}}\n"
        ));
        let err = symbiont_operators::compile(&q).unwrap_err();
        assert!(err.contains(why), "{agent}: {err}");
        assert!(err.contains(agent), "the aggregate is named: {err}");
    }
}

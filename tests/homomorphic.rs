//! The homomorphic lane end to end: the compute stage holds no key (traced
//! with strace: it never opens the secret key file, and its stdin carries
//! no byte window of it), the results are exact, and what the additive
//! path cannot compute is refused before the job runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CLINIC: &str = "examples/clinic_costs.symbi";

/// A scratch tree: the state and data directories (audit log, keystore)
/// and outputs live under it.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("symbi-he-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["state", "data", "out"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Tree(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("XDG_STATE_HOME", self.0.join("state"))
            .env("XDG_DATA_HOME", self.0.join("data"));
        cmd
    }

    fn symbi(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_symbi"))
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

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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

#[test]
fn the_compute_stage_never_holds_the_secret_key() {
    let t = Tree::new("keyless");
    let program = t.two_lane_program();
    let keystore = t.path("keystore");
    let ks = keystore.display().to_string();
    let o = t.symbi(&["keys", "init", "--dir", &ks]);
    assert!(o.status.success(), "{}", stderr(&o));
    let secret = keystore.join("tfhe/additive_secret.key");
    let secret_bytes = std::fs::read(&secret).unwrap();
    let trace = t.path("out/trace.txt");
    let o = t
        .command("strace")
        .args([
            "-f",
            "-qq",
            "-s",
            "256",
            "-e",
            "trace=open,openat,execve,read",
        ])
        .args(["-e", "read=0", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_symbi"))
        .args([
            "run",
            &program,
            "--input",
            "patients=examples/data/patients.csv",
            "--keystore",
            &ks,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["patients"], 2000);
    assert_eq!(v["senior_cost_cents"], 1890850561);
    assert_eq!(v["_meta"]["lanes"]["homomorphic"], 179);
    assert_eq!(v["_meta"]["tiers"]["aggregate[homomorphic]"], 1);

    let trace = std::fs::read_to_string(&trace).unwrap();
    // The compute stage: the process that exec'd the worker.
    let stage_pids: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("execve(") && l.contains("\"__stage-homomorphic\""))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(stage_pids.len(), 1, "the compute stage ran once:\n{trace}");
    let stage = stage_pids[0];
    let secret_name = "additive_secret.key";
    // The trace does see the key file opened: by the key holder.
    let openers: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("open") && l.contains(secret_name))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!openers.is_empty(), "the key holder's open is missing");
    assert!(
        !openers.contains(&stage),
        "the compute stage opened the key"
    );
    // The compute stage opens nothing of the keystore.
    for line in trace
        .lines()
        .filter(|l| l.starts_with(&format!("{stage} ")))
    {
        assert!(!line.contains(&ks), "{line}");
    }
    // Its input, as read from its stdin: ciphertext lists, and no 64-byte
    // window of the secret key file.
    let input = dumped_reads(&trace, stage);
    assert!(input.len() > 100_000, "{} bytes dumped", input.len());
    // The dump is the whole input: its frames decode into the lists the
    // stage reported, and end with the zero-length end marker.
    let mut at = 0;
    let mut lists = 0;
    loop {
        let len = u32::from_le_bytes(input[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        if len == 0 {
            break;
        }
        let _: symbiont_operators::PackedList = bincode::deserialize(&input[at..at + len]).unwrap();
        at += len;
        lists += 1;
    }
    assert_eq!(at, input.len());
    let reported = v["_meta"]["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "aggregate[homomorphic]")
        .unwrap()["lists"]
        .clone();
    assert_eq!(reported, lists);
    for window in secret_bytes.windows(64).step_by(16) {
        assert!(
            memchr::memmem::find(&input, window).is_none(),
            "a window of the secret key is in the compute stage's input"
        );
    }
}

#[test]
fn min_and_max_over_restricted_records_are_refused_before_the_job_runs() {
    let t = Tree::new("refused");
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
    let t = Tree::new("range");
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
    let t = Tree::new("scale");
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

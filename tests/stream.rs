//! `symbi stream`: the same programs as `symbi run`, over records that keep
//! arriving on standard input or in a file that grows, one NDJSON line per
//! epoch; the last line's value is the batch job's over the same records.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Tree, code, text};

const PATIENTS: &str = "examples/data/patients.csv";

/// `symbi stream PROGRAM --input patients=SOURCE ARGS`, started with its
/// standard input and output piped.
fn start(env: &Tree, program: &str, source: &str, args: &[&str]) -> Child {
    env.command(env!("CARGO_BIN_EXE_symbi"))
        .args(["stream", program, "--input", &format!("patients={source}")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The batch job's value: the result without `_meta` (or its `value`).
fn batch(env: &Tree, program: &str) -> Value {
    let out = env.symbi(&["run", program, "--input", &format!("patients={PATIENTS}")]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let mut result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let object = result.as_object_mut().unwrap();
    object.remove("_meta");
    match object.remove("value") {
        Some(v) if object.is_empty() => v,
        Some(v) => panic!("a value beside fields: {v}"),
        None => result,
    }
}

/// Every line of a finished stream.
fn lines(child: Child) -> (i32, Vec<Value>, String) {
    let out = child.wait_with_output().unwrap();
    let lines = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (code(&out), lines, text(&out.stderr))
}

/// The next line of a running stream, within `within`.
fn next_line(out: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    assert!(out.read_line(&mut line).unwrap() > 0, "the stream ended");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn clinic_costs_from_standard_input_ends_with_the_batch_result_in_every_lane() {
    let env = Tree::new("stream", "stdin");
    let program = "examples/clinic_costs.symbi";
    let mut child = start(
        &env,
        program,
        "-",
        &["--input-format", "csv", "--epoch", "700"],
    );
    let csv = std::fs::read(PATIENTS).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&csv).unwrap();
    drop(stdin);
    let (status, lines, err) = lines(child);
    assert_eq!(status, 0, "{err}");
    // 2,000 records in epochs of 700: 700, 1,400, 2,000.
    let records: Vec<u64> = lines
        .iter()
        .map(|l| l["records"].as_u64().unwrap())
        .collect();
    assert_eq!(records, [700, 1400, 2000]);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["epoch"], i as u64);
    }
    let last = lines.last().unwrap();
    assert_eq!(last["value"], batch(&env, program));
    // Every lane took records, as in the batch job.
    let lanes = &last["_meta"]["lanes"];
    for lane in ["plaintext", "aes_gcm", "homomorphic"] {
        assert!(lanes[lane].as_u64().unwrap() > 0, "{lanes}");
    }
    let total: u64 = ["plaintext", "aes_gcm", "homomorphic"]
        .iter()
        .map(|l| lanes[l].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2000);
    // Each encrypted lane's sandbox was started once and served every
    // epoch (the merge stage's end lists them): the AES-GCM lane's in
    // gVisor, the homomorphic lane's compute stage natively.
    let out = env.symbi(&["audit", "show", "--format", "json"]);
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    let merge = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "stage_end" && e["detail"]["op"] == "merge")
        .expect("the merge stage's end");
    let sandboxes = merge["detail"]["sandboxes"].as_array().unwrap();
    assert_eq!(sandboxes.len(), 2, "{sandboxes:?}");
    let aes = sandboxes.iter().find(|s| s["tier"] == 2).unwrap();
    assert!(aes["batches"].as_u64().unwrap() >= 3, "{aes}");
    let reduce = sandboxes
        .iter()
        .find(|s| s["stage"] == "aggregate[homomorphic]")
        .unwrap();
    assert!(reduce["lists"].as_u64().unwrap() >= 3, "{reduce}");
    // The first epoch's value is the batch job's over its 700 records.
    let first: Vec<u8> = csv
        .split_inclusive(|b| *b == b'\n')
        .take(701)
        .flatten()
        .copied()
        .collect();
    let part = env.path("out/first.csv");
    std::fs::write(&part, first).unwrap();
    let out = env.symbi(&[
        "run",
        program,
        "--input",
        &format!("patients={}", part.display()),
    ]);
    let mut first: Value = serde_json::from_slice(&out.stdout).unwrap();
    first.as_object_mut().unwrap().remove("_meta");
    assert_eq!(lines[0]["value"], first);
}

#[test]
fn a_grouped_result_streams_too() {
    let env = Tree::new("stream", "grouped");
    let program = "examples/diagnosis_breakdown.symbi";
    let mut child = start(
        &env,
        program,
        "-",
        &["--input-format", "csv", "--epoch", "1500"],
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(PATIENTS).unwrap()).unwrap();
    drop(stdin);
    let (status, lines, err) = lines(child);
    assert_eq!(status, 0, "{err}");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["value"], batch(&env, program));
}

#[test]
fn a_followed_file_is_read_as_it_grows_and_a_truncation_ends_the_stream() {
    let env = Tree::new("stream", "follow");
    let program = "examples/clinic_costs.symbi";
    // Before the stream starts: a running stream holds the audit log.
    let expected = batch(&env, program);
    let csv = std::fs::read(PATIENTS).unwrap();
    let rows: Vec<&[u8]> = csv.split_inclusive(|b| *b == b'\n').collect();
    let file = env.path("out/patients.csv");
    // The header and 1,000 records, then the rest in two appends, the
    // first ending in the middle of a line.
    std::fs::write(&file, rows[..1001].concat()).unwrap();
    let source = format!("follow:{}", file.display());
    let mut child = start(&env, program, &source, &["--epoch", "500"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(next_line(&mut out)["records"], 500);
    assert_eq!(next_line(&mut out)["records"], 1000);
    let rest = rows[1001..].concat();
    let cut = rest.len() / 2 + 7;
    let mut append = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    append.write_all(&rest[..cut]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    append.write_all(&rest[cut..]).unwrap();
    let mut last = next_line(&mut out);
    while last["records"] != 2000 {
        last = next_line(&mut out);
    }
    assert_eq!(last["value"], expected);
    // Shorter than what was read: the stream ends, naming the file.
    std::fs::write(&file, rows[..10].concat()).unwrap();
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("patients.csv"), "{err}");
}

#[test]
fn a_bad_record_fails_the_stream_naming_its_line_or_is_quarantined() {
    let env = Tree::new("stream", "bad");
    let program = "examples/clinic_costs.symbi";
    let csv = std::fs::read_to_string(PATIENTS).unwrap();
    let mut rows: Vec<String> = csv.lines().map(str::to_owned).collect();
    // Line 6: an age that is not a number.
    let fields: Vec<&str> = rows[5].split(',').collect();
    let age = fields.len() - 6;
    let mut bad: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    bad[age] = "sixty".into();
    rows[5] = bad.join(",");
    let input = rows.join("\n") + "\n";
    let run = |args: &[&str]| {
        let mut child = start(&env, program, "-", args);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        lines(child)
    };
    let (status, _, err) = run(&["--input-format", "csv", "--epoch", "1000"]);
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("line 6"), "{err}");
    assert!(!err.contains("sixty"), "the value leaked: {err}");
    let quarantine = env.path("out/bad.ndjson");
    let (status, lines, err) = run(&[
        "--input-format",
        "csv",
        "--epoch",
        "1000",
        "--on-error",
        &format!("quarantine={}", quarantine.display()),
    ]);
    assert_eq!(status, 0, "{err}");
    let last = lines.last().unwrap();
    assert_eq!(last["records"], 1999);
    assert_eq!(last["_meta"]["quarantined"], 1);
    let kept = std::fs::read_to_string(&quarantine).unwrap();
    assert!(kept.contains("\"line\":6"), "{kept}");
}

#[test]
fn a_timed_epoch_ends_while_records_are_still_to_come() {
    let env = Tree::new("stream", "timed");
    let program = "examples/clinic_costs.symbi";
    let mut child = start(
        &env,
        program,
        "-",
        &["--input-format", "csv", "--epoch", "300ms"],
    );
    let csv = std::fs::read_to_string(PATIENTS).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "{}", rows[..101].join("\n")).unwrap();
    stdin.flush().unwrap();
    // The first 100 records get their line before any more are written.
    let mut line = next_line(&mut out);
    while line["records"] != 100 {
        assert!(line["records"].as_u64().unwrap() < 100);
        line = next_line(&mut out);
    }
    writeln!(stdin, "{}", rows[101..].join("\n")).unwrap();
    drop(stdin);
    let mut last = line;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    for l in rest.lines() {
        last = serde_json::from_str(l).unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(last["records"], 2000);
    assert_eq!(last["value"], batch(&env, program));
}

#[test]
fn flags_a_stream_cannot_honour_yet_are_refused() {
    let env = Tree::new("stream", "refused");
    for (source, args, says) in [
        ("-", vec!["--bundle", "b.json"], "--bundle"),
        ("nats://127.0.0.1:4222/S/s", vec![], "dir:PATH"),
        ("-", vec!["--epoch", "0"], "--epoch"),
    ] {
        let mut all = vec!["stream", "examples/clinic_costs.symbi", "--input"];
        let binding = format!("patients={source}");
        all.push(&binding);
        all.extend(args);
        let out = env.symbi(&all);
        assert_eq!(code(&out), 64, "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
}

#[test]
fn a_timed_epoch_ends_even_when_records_never_pause() {
    // 60,000 records written as fast as the pipe takes them: epochs of
    // 100 ms still end. (The bug this guards against, a deadline checked
    // only when the channel ran dry, needs the dataflow to be slower than
    // the reader; on this machine the reader is the slower, and this test
    // passed on that code too.)
    let env = Tree::new("stream", "steady");
    let program = "examples/clinic_costs.symbi";
    let input = env.path("out/many.csv");
    let out = env.symbi(&[
        "datasets",
        "generate",
        "patients",
        "--rows",
        "60000",
        "--out",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let mut child = start(
        &env,
        program,
        "-",
        &["--input-format", "csv", "--epoch", "100ms"],
    );
    let mut stdin = child.stdin.take().unwrap();
    let bytes = std::fs::read(&input).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes).unwrap());
    let (status, lines, err) = lines(child);
    writer.join().unwrap();
    assert_eq!(status, 0, "{err}");
    assert!(lines.len() >= 2, "{} epochs", lines.len());
    assert_eq!(lines.last().unwrap()["records"], 60_000);
}

#[test]
fn sigterm_ends_a_followed_stream_after_its_epoch_with_the_job_recorded() {
    let env = Tree::new("stream", "sigterm");
    let file = env.path("out/patients.csv");
    std::fs::copy(PATIENTS, &file).unwrap();
    let source = format!("follow:{}", file.display());
    let mut child = start(
        &env,
        "examples/clinic_costs.symbi",
        &source,
        &["--epoch", "1500"],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(next_line(&mut out)["records"], 1500);
    // The other 500 wait for an epoch that will not fill: SIGTERM ends it.
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(next_line(&mut out)["records"], 2000);
    assert!(child.wait().unwrap().success());
    let out = env.symbi(&["audit", "show", "--format", "json"]);
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = entries.as_array().unwrap();
    let end = entries
        .iter()
        .find(|e| e["kind"] == "job_end")
        .expect("the job's end");
    assert_eq!(end["detail"]["status"], "ok");
    let source = entries
        .iter()
        .find(|e| e["kind"] == "stage_end" && e["detail"]["op"] == "source")
        .expect("the source stage's end");
    assert_eq!(source["detail"]["rows"], 2000);
    assert_eq!(source["detail"]["epochs"], 2);
}

#[test]
fn a_bound_dataset_is_not_streamed_around_its_binding() {
    // Bound in the keystore, a dataset's policies hold under any name; a
    // stream cannot be matched to them by its bytes, so it is refused.
    let env = Tree::new("stream", "bound");
    let file = env.path("out/patients.csv");
    std::fs::copy(PATIENTS, &file).unwrap();
    std::fs::write(
        env.path("out/patients.csv.policy.symbi"),
        "policy owner {\n    allow: [\"read\", \"analyze\", \"aggregate\"];\n}\n",
    )
    .unwrap();
    let keystore = env.path("data/symbiont");
    let out = env.symbi(&["keys", "init", "--dir", keystore.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = env.symbi(&[
        "datasets",
        "bind",
        file.to_str().unwrap(),
        "--dataset-id",
        "clinic",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let program = "examples/clinic_costs.symbi";
    for (source, args) in [
        (format!("follow:{}", file.display()), vec![]),
        (
            "-".to_owned(),
            vec!["--dataset-id", "clinic", "--input-format", "csv"],
        ),
    ] {
        let mut child = start(&env, program, &source, &args);
        drop(child.stdin.take());
        let (status, lines, err) = lines(child);
        assert_eq!(status, 1, "{err}");
        assert!(err.contains("bound to its policies"), "{err}");
        assert!(lines.is_empty());
    }
}

#[test]
fn a_stream_killed_at_random_points_resumes_from_its_checkpoint_counting_each_record_once() {
    // A followed file that grows to 20,000 records, epochs of 500,
    // --state: 2,000 records are appended while each of eight runs is
    // running, and each is killed (SIGKILL) at a pseudo-random point; a
    // last run gets the last 4,000. Its last value is the batch job's over
    // the whole file: no record lost, none counted twice.
    let env = Tree::new("stream", "crash");
    let program = "examples/clinic_costs.symbi";
    let whole = env.path("out/whole.csv");
    let out = env.symbi(&[
        "datasets",
        "generate",
        "patients",
        "--rows",
        "20000",
        "--seed",
        "7",
        "--out",
        whole.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = env.symbi(&[
        "run",
        program,
        "--input",
        &format!("patients={}", whole.display()),
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let mut want: Value = serde_json::from_slice(&out.stdout).unwrap();
    want.as_object_mut().unwrap().remove("_meta");

    let bytes = std::fs::read(&whole).unwrap();
    let mut lines = bytes.split_inclusive(|b| *b == b'\n');
    let file = env.path("out/patients.csv");
    let mut grown = std::fs::File::create(&file).unwrap();
    grown.write_all(lines.next().unwrap()).unwrap();
    let mut append = |n: usize| {
        let chunk: Vec<u8> = lines.by_ref().take(n).flatten().copied().collect();
        grown.write_all(&chunk).unwrap();
    };
    let state = env.path("out/state");
    let source = format!("follow:{}", file.display());
    let args = ["--epoch", "500", "--state", state.to_str().unwrap()];
    let mut seed = 0x5eed_u64;
    let mut resumed_epochs = Vec::new();
    let mut killed_lines = 0;
    for _ in 0..8 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(20 + (seed >> 33) % 600);
        let mut child = start(&env, program, &source, &args);
        let out = child.stdout.take().unwrap();
        // Lines are read as they come, so the stream never waits on them.
        let reader = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .map(|l| serde_json::from_str::<Value>(&l).unwrap())
                .collect::<Vec<_>>()
        });
        append(2000);
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        let written = reader.join().unwrap();
        killed_lines += written.len();
        if let Some(first) = written.first() {
            resumed_epochs.push(first["epoch"].as_u64().unwrap());
        }
    }
    // Some run went on from a checkpoint, not from the start.
    assert!(resumed_epochs.iter().any(|e| *e > 0), "{resumed_epochs:?}");
    let mut child = start(&env, program, &source, &args);
    append(4000);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let last = loop {
        let line = next_line(&mut out);
        if line["records"] == 20000 {
            break line;
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(last["value"], want);
    let lanes = &last["_meta"]["lanes"];
    let total: u64 = ["plaintext", "aes_gcm", "homomorphic"]
        .iter()
        .map(|l| lanes[l].as_u64().unwrap())
        .sum();
    assert_eq!(total, 20000);
    // Each epoch's line is in the signed audit log (an audit checkpoint
    // per epoch), the killed runs' too: at most the last line of each
    // killed run may have been written without its entry.
    let out = env.symbi(&["audit", "show", "--format", "json"]);
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sink_ends = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "stage_end" && e["detail"]["op"] == "sink")
        .count();
    assert!(
        sink_ends + 8 >= killed_lines,
        "{sink_ends} epochs in the audit log, {killed_lines} lines written by the killed runs"
    );
    assert!(killed_lines > 8, "{killed_lines}");
}

#[test]
fn a_state_directory_is_refused_for_standard_input_and_when_it_is_another_stream_s() {
    let env = Tree::new("stream", "state");
    let state = env.path("out/state");
    let child = start(
        &env,
        "examples/clinic_costs.symbi",
        "-",
        &["--state", state.to_str().unwrap()],
    );
    let (status, _, err) = lines(child);
    assert_eq!(status, 64, "{err}");
    assert!(err.contains("standard input cannot be read again"), "{err}");

    // A checkpoint of one program is not another's to go on from.
    let file = env.path("out/patients.csv");
    std::fs::copy(PATIENTS, &file).unwrap();
    let source = format!("follow:{}", file.display());
    let args = ["--epoch", "1000", "--state", state.to_str().unwrap()];
    let mut child = start(&env, "examples/clinic_costs.symbi", &source, &args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // The first epoch's checkpoint is saved once its line is written,
    // before the next line is.
    assert_eq!(next_line(&mut out)["records"], 1000);
    assert_eq!(next_line(&mut out)["records"], 2000);
    child.kill().unwrap();
    child.wait().unwrap();
    let child = start(&env, "examples/diagnosis_breakdown.symbi", &source, &args);
    let (status, _, err) = lines(child);
    assert_eq!(status, 1, "{err}");
    assert!(err.contains("another program or source"), "{err}");
}

#[test]
fn a_directory_source_reads_each_renamed_file_once_in_name_order_and_resumes() {
    // The sample's 2,000 records as two CSV files of 1,000, each with its
    // header, renamed into the directory one at a time; the stream is
    // stopped between them and restarted with its --state. A file whose
    // name starts with `.` (one being written) is not read.
    let env = Tree::new("stream", "dir");
    let csv = std::fs::read_to_string(PATIENTS).unwrap();
    let mut rows = csv.lines();
    let header = rows.next().unwrap();
    let rows: Vec<&str> = rows.collect();
    let part = |rows: &[&str]| format!("{header}\n{}\n", rows.join("\n"));
    let dir = env.path("out/incoming");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".partial.csv"), part(&rows[..10])).unwrap();
    let staged = env.path("out/staged.csv");
    let source = format!("dir:{}", dir.display());
    let state = env.path("out/state");
    let args = [
        "--input-format",
        "csv",
        "--epoch",
        "500",
        "--state",
        state.to_str().unwrap(),
    ];
    let program = "examples/clinic_costs.symbi";
    let mut child = start(&env, program, &source, &args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    std::fs::write(&staged, part(&rows[..1000])).unwrap();
    std::fs::rename(&staged, dir.join("0001.csv")).unwrap();
    assert_eq!(next_line(&mut out)["records"], 500);
    assert_eq!(next_line(&mut out)["records"], 1000);
    // Stopped (SIGTERM) with nothing more to read: it ends once its last
    // epoch's checkpoint is saved.
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());

    let mut child = start(&env, program, &source, &args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    std::fs::write(&staged, part(&rows[1000..])).unwrap();
    std::fs::rename(&staged, dir.join("0002.csv")).unwrap();
    let third = next_line(&mut out);
    assert_eq!(third["epoch"], 2);
    assert_eq!(third["records"], 1500);
    let last = next_line(&mut out);
    assert_eq!(last["records"], 2000);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    assert_eq!(last["value"], batch(&env, program));
    // The audit log says the second run went on from a checkpoint, and
    // which: totals it did not compute itself.
    let out = env.symbi(&["audit", "show", "--format", "json"]);
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    let resumed = entries
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["detail"].get("resumed"))
        .unwrap_or_else(|| panic!("the resumed source's start: {entries}"));
    assert_eq!(resumed["epoch"], 2);
    assert_eq!(resumed["file"], "0001.csv");
    assert_eq!(resumed["checkpoint_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn emit_changes_writes_the_rows_that_changed_and_they_add_up_to_the_batch_result() {
    let env = Tree::new("stream", "changes");
    let program = "examples/diagnosis_breakdown.symbi";
    let mut child = start(
        &env,
        program,
        "-",
        &[
            "--input-format",
            "csv",
            "--epoch",
            "700",
            "--emit",
            "changes",
        ],
    );
    let csv = std::fs::read(PATIENTS).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&csv).unwrap();
    drop(stdin);
    let (status, lines, err) = lines(child);
    assert_eq!(status, 0, "{err}");
    // The updates, applied in order to a multiset of rows, give the batch
    // job's rows; a retraction only ever takes back a row that is there.
    let mut rows: Vec<Value> = Vec::new();
    let mut epochs = std::collections::BTreeSet::new();
    for line in &lines {
        epochs.insert(line["epoch"].as_u64().unwrap());
        let row = line["row"].clone();
        match line["diff"].as_i64().unwrap() {
            1 => rows.push(row),
            -1 => {
                let at = rows
                    .iter()
                    .position(|r| *r == row)
                    .expect("a row to retract");
                rows.remove(at);
            }
            d => panic!("diff {d}"),
        }
    }
    assert_eq!(epochs.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
    let key = |r: &Value| r["diagnosis"].to_string();
    rows.sort_by_key(key);
    let mut want = batch(&env, program).as_array().unwrap().clone();
    want.sort_by_key(key);
    assert_eq!(rows, want);
    // Later epochs retract what they change: not every row again.
    assert!(lines.iter().any(|l| l["diff"] == -1));
}

#[test]
fn a_file_rewritten_in_place_while_stopped_is_not_resumed_at_the_old_offset() {
    // Same path, same inode (truncated and written again, as logrotate's
    // copytruncate does), more bytes than the checkpoint's offset: the
    // bytes before the offset differ, so the stream reads it from its
    // start rather than from the middle of some line.
    let env = Tree::new("stream", "rewritten");
    let file = env.path("out/patients.csv");
    std::fs::copy(PATIENTS, &file).unwrap();
    let state = env.path("out/state");
    let source = format!("follow:{}", file.display());
    let args = ["--epoch", "1000", "--state", state.to_str().unwrap()];
    let program = "examples/clinic_costs.symbi";
    let mut child = start(&env, program, &source, &args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(next_line(&mut out)["records"], 1000);
    assert_eq!(next_line(&mut out)["records"], 2000);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());

    let other = env.path("out/other.csv");
    let made = env.symbi(&[
        "datasets",
        "generate",
        "patients",
        "--rows",
        "3000",
        "--seed",
        "9",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code(&made), 0, "{}", text(&made.stderr));
    let bytes = std::fs::read(&other).unwrap();
    let mut same = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .unwrap();
    same.write_all(&bytes).unwrap();
    drop(same);

    let mut child = start(&env, program, &source, &args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut last = next_line(&mut out);
    while last["records"] != 5000 {
        last = next_line(&mut out);
    }
    child.kill().unwrap();
    let err = text(&child.wait_with_output().unwrap().stderr);
    assert!(
        err.contains("not the file the checkpoint was made in"),
        "{err}"
    );
    assert_eq!(last["_meta"]["quarantined"], 0);
}

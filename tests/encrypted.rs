//! The encrypted lanes end to end: the canary test (no marker of a
//! confidential or restricted record in any byte a job writes), tampering
//! with an encrypted dataset, the keystore verbs, persisting and reading
//! back, and decrypting a stored record with Python's `cryptography`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

const CLINIC: &str = "examples/clinic_costs.symbi";
const BREAKDOWN: &str = "examples/diagnosis_breakdown.symbi";

/// A scratch tree: `TMPDIR`, the state and data directories (audit log,
/// keystore) and outputs all live under it.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("symbi-enc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["tmp", "state", "data", "out"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Tree(dir)
    }

    fn path(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }

    fn symbi(&self, args: &[&str]) -> Output {
        self.symbi_env(args, &[])
    }

    fn symbi_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_symbi"));
        cmd.args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("TMPDIR", self.0.join("tmp"))
            .env("XDG_STATE_HOME", self.0.join("state"))
            .env("XDG_DATA_HOME", self.0.join("data"))
            .env("RUST_LOG", "debug")
            .env("RUST_BACKTRACE", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
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

/// Patients whose confidential and restricted records carry unique
/// markers (in the name, e-mail and zip fields); public ones carry a
/// public marker. Returns the CSV and the secret markers.
fn canary_csv(rows: usize) -> (String, Vec<String>, Vec<String>) {
    let mut csv =
        String::from("patient_id,name,ssn,email,age,sex,zip,diagnosis,cost_cents,visits\n");
    let (mut secret, mut public) = (Vec::new(), Vec::new());
    for i in 0..rows {
        let age = 20 + (i * 7) % 70;
        match i % 3 {
            // Confidential: an SSN.
            0 => {
                let m = format!("QxConf{i:05}Kz");
                csv += &format!(
                    "P{i:07},{m},123-45-{:04},{}@example.org,{age},F,Z{m},checkup,{},{}\n",
                    1000 + i,
                    m.to_lowercase(),
                    1000 + i,
                    i % 9
                );
                secret.push(m.clone());
                secret.push(m.to_lowercase());
            }
            // Restricted: a restricted diagnosis.
            1 => {
                let m = format!("QxRestr{i:05}Kz");
                csv += &format!(
                    "P{i:07},{m},,,{age},M,Z{m},oncology,{},{}\n",
                    2000 + i,
                    i % 9
                );
                secret.push(m);
            }
            // Public: nothing identifying.
            _ => {
                let m = format!("QxPub{i:05}Kz");
                csv += &format!("P{i:07},{m},,,{age},M,12345,flu,{},{}\n", 3000 + i, i % 9);
                public.push(m);
            }
        }
    }
    (csv, secret, public)
}

/// Every file under `dir`, with its bytes.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let haystack = haystack.to_ascii_lowercase();
    memchr::memmem::find(&haystack, needle.to_ascii_lowercase().as_bytes()).is_some()
}

#[test]
fn canary_no_confidential_or_restricted_marker_in_any_byte_written() {
    let t = Tree::new("canary");
    let (csv, secret, public) = canary_csv(3000);
    // The input lives outside the scratch tree: every byte in the tree was
    // written by the jobs.
    let input = std::env::temp_dir().join(format!("symbi-canary-{}.csv", std::process::id()));
    std::fs::write(&input, &csv).unwrap();
    let bind = format!("patients={}", input.display());
    let mut streams: Vec<(String, Vec<u8>)> = Vec::new();
    let mut run = |args: &[&str]| {
        let o = t.symbi(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        streams.push((format!("stdout of {args:?}"), o.stdout.clone()));
        streams.push((format!("stderr of {args:?}"), o.stderr.clone()));
        o
    };
    let store = t.path("out/store");
    let direct = json(&run(&[
        "run",
        &keeper(&t),
        "--input",
        &bind,
        "--persist-encrypted",
        &store,
        "--on-error",
        &format!("quarantine={}", t.path("out/quarantine.ndjson")),
    ]));
    assert_eq!(direct["_meta"]["lanes"]["aes_gcm"], 1000);
    assert_eq!(direct["_meta"]["lanes"]["homomorphic"], 1000);
    run(&["run", BREAKDOWN, "--input", &bind, "--format", "table"]);
    run(&[
        "run",
        CLINIC,
        "--input",
        &format!("patients={store}"),
        "--out",
        &t.path("out/readback.json"),
    ]);
    run(&["audit", "show"]);
    run(&["audit", "verify"]);
    run(&["keys", "list", "--format", "json"]);

    let mut everything = all_files(&t.0);
    everything.extend(streams.into_iter().map(|(n, b)| (PathBuf::from(n), b)));
    // Every marker starts with its kind's prefix, so searching for the
    // prefixes (any case) finds any of them, or any part of one longer
    // than the prefix.
    let lowered: Vec<(PathBuf, Vec<u8>)> = everything
        .into_iter()
        .map(|(p, b)| (p, b.to_ascii_lowercase()))
        .collect();
    // The search works: it finds the public markers (public records are
    // kept in the clear in the store) ...
    let found = |needle: &str| {
        lowered
            .iter()
            .filter(|(_, b)| memchr::memmem::find(b, needle.as_bytes()).is_some())
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
    };
    for m in public.iter().take(20) {
        assert!(
            !found(&m.to_ascii_lowercase()).is_empty(),
            "public marker {m} not found: the search is broken"
        );
    }
    // ... and no secret one, anywhere.
    for prefix in ["qxconf", "qxrestr"] {
        assert_eq!(found(prefix), Vec::<String>::new(), "{prefix} leaked");
    }
    // And it would have found them in the input.
    let lowered_csv = csv.to_ascii_lowercase();
    assert!(
        secret
            .iter()
            .all(|m| lowered_csv.contains(&m.to_ascii_lowercase()))
    );
    let _ = std::fs::remove_file(&input);
}

/// A small encrypted dataset, persisted under `t`; returns its path.
/// clinic_costs with `persist` allowed, which its policy denies: the
/// program of the jobs here that write the dataset out (persisting is an
/// action the policies decide; `persisting_is_an_action_the_policies_decide`).
fn keeper(t: &Tree) -> String {
    let path = t.0.join("keeper.symbi");
    let source = common::allow_persist(&std::fs::read_to_string(CLINIC).unwrap());
    std::fs::write(&path, source).unwrap();
    path.display().to_string()
}

fn persisted(t: &Tree) -> (String, serde_json::Value) {
    persisted_to(t, "out/store")
}

/// [`persisted`], to `name` under the tree.
fn persisted_to(t: &Tree, name: &str) -> (String, serde_json::Value) {
    let store = t.path(name);
    let o = t.symbi(&[
        "run",
        &keeper(t),
        "--input",
        "patients=examples/data/patients.csv",
        "--persist-encrypted",
        &store,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (store, json(&o))
}

/// Runs a job over a damaged store: it must fail with exit 1, say `what`,
/// not panic, and leave no output file or persisted directory.
fn fails_cleanly(t: &Tree, store: &str, what: &[&str], extra: &[&str], env: &[(&str, &str)]) {
    let out = t.path("out/result.json");
    let again = t.path("out/again");
    let program = keeper(t);
    let mut args = vec![
        "run",
        &program,
        "--input",
        &format!("patients={store}"),
        "--out",
        &out,
        "--persist-encrypted",
        &again,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = t.symbi_env(&args, env);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for w in what {
        assert!(err.contains(w), "`{w}` not in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(!Path::new(&out).exists(), "a result file was left");
    let leftovers: Vec<_> = std::fs::read_dir(t.0.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("again") || n.starts_with("result"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

/// The byte range of the `n`th sealed frame's body in `batches.bin`, and
/// the length of its header (up to the record ids' end).
/// Where a version-2 sealed batch's record ids start (docs/FORMATS.md).
const IDS: usize = 66;

fn sealed_frames(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
    frames(bytes)
        .into_iter()
        .filter(|&(at, _)| bytes[at + 4] == 1)
        .map(|(at, end)| {
            let body = at + 5;
            let n = u32::from_le_bytes(bytes[body + IDS - 4..body + IDS].try_into().unwrap());
            (body, end, IDS + 8 * n as usize)
        })
        .collect()
}

#[test]
fn a_persisted_dataset_reads_back_to_the_same_result() {
    let t = Tree::new("readback");
    let (store, direct) = persisted(&t);
    let o = t.symbi(&["run", CLINIC, "--input", &format!("patients={store}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let back = json(&o);
    for k in ["patients", "seniors", "senior_cost_cents", "total_visits"] {
        assert_eq!(back[k], direct[k], "{k}");
    }
    assert_eq!(back["_meta"]["lanes"], direct["_meta"]["lanes"]);
    // A program with other aggregates over the same store.
    let o = t.symbi(&["run", BREAKDOWN, "--input", &format!("patients={store}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("examples/diagnosis_breakdown.expected.json").unwrap(),
    )
    .unwrap();
    let mut got = json(&o);
    if let Some(rows) = got.get_mut("value") {
        got = rows.take();
    }
    assert_eq!(got, expected);
    // Public records kept in the clear are raised by a policy that requires
    // encryption when the stored dataset is read back.
    let forced = t.0.join("forced.symbi");
    std::fs::write(
        &forced,
        std::fs::read_to_string(CLINIC).unwrap().replace(
            "require: [audit_trail == true];",
            "require: [audit_trail == true, encryption == \"aes-256-gcm\"];",
        ),
    )
    .unwrap();
    let o = t.symbi(&[
        "run",
        forced.to_str().unwrap(),
        "--input",
        &format!("patients={store}"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let raised = json(&o);
    assert_eq!(raised["_meta"]["lanes"]["plaintext"], 0);
    assert_eq!(raised["_meta"]["lanes"]["aes_gcm"], 596 + 1225);
    assert_eq!(raised["senior_cost_cents"], direct["senior_cost_cents"]);
    // Refuses to overwrite.
    let o = t.symbi(&[
        "run",
        &keeper(&t),
        "--input",
        "patients=examples/data/patients.csv",
        "--persist-encrypted",
        &store,
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
}

#[test]
fn a_flipped_bit_in_a_stored_ciphertext_is_refused() {
    let t = Tree::new("flip");
    let (store, _) = persisted(&t);
    let file = Path::new(&store).join("batches.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    let (body, end, header) = sealed_frames(&bytes)[0];
    bytes[body + header + 4 + (end - body - header - 4) / 2] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    // The store's frame digests catch it before the batch is opened (a
    // batch that does not open fails naming its first record:
    // `a_batch_that_does_not_open_fails_naming_its_first_record` in
    // operators/src/sealed.rs).
    let refused = "is not the frame the manifest lists there";
    fails_cleanly(&t, &store, &["batches.bin: frame", refused], &[], &[]);
    // Quarantining bad rows does not quarantine tampering.
    fails_cleanly(
        &t,
        &store,
        &[refused],
        &[
            "--on-error",
            &format!("quarantine={}", t.path("out/result.q")),
        ],
        &[],
    );
}

#[test]
fn a_ciphertext_moved_to_other_records_fails() {
    let t = Tree::new("moved");
    let (store, _) = persisted(&t);
    let file = Path::new(&store).join("batches.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    let frames = sealed_frames(&bytes);
    // Claim the first sealed batch holds the first record of the second.
    let (a, _, _) = frames[0];
    let (b, _, _) = frames[1];
    let other: [u8; 8] = bytes[b + IDS..b + IDS + 8].try_into().unwrap();
    bytes[a + IDS..a + IDS + 8].copy_from_slice(&other);
    std::fs::write(&file, &bytes).unwrap();
    fails_cleanly(
        &t,
        &store,
        &["is not the frame the manifest lists there"],
        &[],
        &[],
    );
}

#[test]
fn another_keystore_cannot_open_the_dataset() {
    let t = Tree::new("wrongkey");
    let (store, _) = persisted(&t);
    let other = t.path("other-keys");
    let o = t.symbi(&["keys", "init", "--dir", &other]);
    assert!(o.status.success(), "{}", stderr(&o));
    fails_cleanly(
        &t,
        &store,
        &["is not in the keystore"],
        &["--keystore", &other],
        &[],
    );
    // A keystore named on the command line must exist: a mistyped path is
    // not silently a new, empty keystore.
    let typo = t.path("no-such-keys");
    fails_cleanly(
        &t,
        &store,
        &["no keystore here"],
        &["--keystore", &typo],
        &[],
    );
    assert!(!Path::new(&typo).exists());
}

#[test]
fn a_truncated_dataset_fails_naming_the_file() {
    let t = Tree::new("truncated");
    let (store, _) = persisted(&t);
    let file = Path::new(&store).join("batches.bin");
    let bytes = std::fs::read(&file).unwrap();
    for cut in [bytes.len() - 1, bytes.len() - 17, bytes.len() / 2, 10] {
        std::fs::write(&file, &bytes[..cut]).unwrap();
        fails_cleanly(&t, &store, &["batches.bin", "truncated"], &[], &[]);
    }
    // Extra bytes are refused too.
    let mut longer = bytes.clone();
    longer.push(0);
    std::fs::write(&file, &longer).unwrap();
    fails_cleanly(&t, &store, &["batches.bin", "after the"], &[], &[]);
}

#[test]
fn a_wrong_passphrase_fails_naming_the_master_key_file() {
    let t = Tree::new("passphrase");
    let keys = t.path("sealed-keys");
    let pass = [("SYMBI_TEST_PASS", "correct horse battery staple")];
    let o = t.symbi_env(
        &[
            "keys",
            "init",
            "--dir",
            &keys,
            "--passphrase-env",
            "SYMBI_TEST_PASS",
        ],
        &pass,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let store = t.path("out/store");
    let o = t.symbi_env(
        &[
            "run",
            &keeper(&t),
            "--input",
            "patients=examples/data/patients.csv",
            "--keystore",
            &keys,
            "--passphrase-env",
            "SYMBI_TEST_PASS",
            "--persist-encrypted",
            &store,
        ],
        &pass,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Rotation keeps the master key sealed under the same passphrase.
    let o = t.symbi_env(
        &[
            "keys",
            "rotate",
            "--dir",
            &keys,
            "--passphrase-env",
            "SYMBI_TEST_PASS",
        ],
        &pass,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let list = json(&t.symbi(&["keys", "list", "--dir", &keys, "--format", "json"]));
    assert_eq!(list["master_protection"], "argon2id");
    let wrong = [("SYMBI_TEST_PASS", "tr0ub4dor&3")];
    let extra = ["--keystore", &keys, "--passphrase-env", "SYMBI_TEST_PASS"];
    fails_cleanly(&t, &store, &["wrong passphrase", "master-"], &extra, &wrong);
    let o = t.symbi_env(
        &[
            "run",
            CLINIC,
            "--input",
            &format!("patients={store}"),
            "--keystore",
            &keys,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--passphrase-env"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("tr0ub4dor"));
}

#[test]
fn keys_verbs_init_list_rotate_and_refuse_open_directories() {
    use std::os::unix::fs::PermissionsExt;
    let t = Tree::new("keys");
    let dir = t.path("ks");
    let o = t.symbi(&["keys", "init", "--dir", &dir]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = t.symbi(&["keys", "init", "--dir", &dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already has a master key"));
    // A job makes the dataset's data key.
    let o = t.symbi(&[
        "run",
        CLINIC,
        "--input",
        "patients=examples/data/patients.csv",
        "--keystore",
        &dir,
        "--dataset-id",
        "clinic-2026",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = json(&t.symbi(&["keys", "list", "--dir", &dir, "--format", "json"]));
    assert_eq!(list["data_keys"][0]["dataset"], "clinic-2026");
    // The data key's creation is audited.
    let log = json(&t.symbi(&["audit", "show", "--format", "json"]));
    let made: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "key_event" && e["detail"]["key"] == "data key")
        .collect();
    assert_eq!(made.len(), 1, "{log}");
    assert_eq!(made[0]["detail"]["dataset"], "clinic-2026");
    assert_eq!(made[0]["detail"]["id"], list["data_keys"][0]["id"]);
    let old_master = list["master_id"].as_str().unwrap().to_owned();
    let o = t.symbi(&["keys", "rotate", "--dir", &dir]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = json(&t.symbi(&["keys", "list", "--dir", &dir, "--format", "json"]));
    assert_ne!(after["master_id"], old_master.as_str());
    assert_eq!(after["data_keys"][0]["id"], list["data_keys"][0]["id"]);
    // No key bytes in the listing: export the data key and look for it.
    let key_file = t.path("out/key.hex");
    let id = list["data_keys"][0]["id"].as_str().unwrap();
    let o = t.symbi(&[
        "keys",
        "export-data-key",
        id,
        "--dir",
        &dir,
        "--out",
        &key_file,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hex = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let human = t.symbi(&["keys", "list", "--dir", &dir]);
    for out in [&human.stdout, &human.stderr] {
        assert!(!contains(out, hex.trim()));
    }
    assert!(!after.to_string().contains(hex.trim()));
    // An open directory is refused.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = t.symbi(&["keys", "list", "--dir", &dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("chmod 700"), "{}", stderr(&o));
}

#[test]
fn python_cryptography_decrypts_a_stored_record_from_the_documented_format() {
    let t = Tree::new("python");
    let (store, _) = persisted(&t);
    let list = json(&t.symbi(&["keys", "list", "--format", "json"]));
    let id = list["data_keys"][0]["id"].as_str().unwrap();
    let key_file = t.path("out/key.hex");
    let o = t.symbi(&["keys", "export-data-key", id, "--out", &key_file]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Line 4 of patients.csv is P0000003, a confidential record (an SSN).
    let o = Command::new("python3")
        .args(["docs/decrypt_sealed.py", &store, &key_file, "4"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs (scripts/setup installs it)");
    assert!(o.status.success(), "{}", stderr(&o));
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let csv = std::fs::read_to_string("examples/data/patients.csv").unwrap();
    let row: Vec<&str> = csv.lines().nth(3).unwrap().split(',').collect();
    assert_eq!(rec["line"], 4);
    assert_eq!(rec["patient_id"], row[0]);
    assert_eq!(rec["name"], row[1]);
    assert_eq!(rec["ssn"], row[2]);
    assert_eq!(rec["age"], row[4].parse::<i64>().unwrap());
    assert_eq!(rec["cost_cents"], row[8].parse::<i64>().unwrap());
    assert_eq!(rec["_lane"], 1);
    assert_eq!(rec["_key_id"], id);
    // The wrong key does not decrypt it.
    std::fs::write(&key_file, "00".repeat(32)).unwrap();
    let o = Command::new("python3")
        .args(["docs/decrypt_sealed.py", &store, &key_file, "4"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}

/// The sandboxed stage runs beside the dataflow: a job that fails after
/// the stage has started (a bad row at the end of the input) abandons it.
/// The job fails with the row's error alone, writes no result, and its
/// stage ends with it (the job waits for the sandbox; nothing of it is
/// left in the scratch directory).
#[test]
fn a_job_that_fails_after_its_stage_started_abandons_the_stage() {
    let t = Tree::new("abandon");
    let data = t.path("out/patients.csv");
    let o = t.symbi(&[
        "datasets", "generate", "patients", "--rows", "20000", "--seed", "3", "--out", &data,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("P9,Late Row,123-45-6789,late@example.org,old,F,10001,checkup,100,1\n");
    std::fs::write(&data, text).unwrap();
    let input = format!("patients={data}");
    let out = t.path("out/result.json");
    let sandboxes = t.0.join("sandboxes");
    let o = t.symbi_env(
        &["run", CLINIC, "--input", &input, "--out", &out],
        &[("SYMBIONT_SANDBOX_DIR", sandboxes.to_str().unwrap())],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("patients.csv:line 20002: field `age`: expected an int"),
        "{err}"
    );
    assert!(!err.contains("stage"), "the abandoned stage spoke: {err}");
    assert!(!Path::new(&out).exists(), "a result was written");
    // The sandboxes' shared read-only root stays, for the next job;
    // nothing else, and nothing in `TMPDIR`.
    let left: Vec<_> = std::fs::read_dir(&sandboxes)
        .unwrap()
        .chain(std::fs::read_dir(t.0.join("tmp")).unwrap())
        .map(|e| e.unwrap().file_name())
        .filter(|name| !name.to_string_lossy().starts_with("root-v2-"))
        .collect();
    assert!(left.is_empty(), "left in the scratch directory: {left:?}");
}

/// The sealed batches of a store: every sealed frame's header.
fn sealed_headers(store: &str) -> Vec<symbiont_crypto::SealedHeader> {
    let bytes = std::fs::read(Path::new(store).join("batches.bin")).unwrap();
    sealed_frames(&bytes)
        .into_iter()
        .map(|(body, end, _)| symbiont_crypto::read_header(&bytes[body..end]).unwrap().0)
        .collect()
}

/// Issue 21, point 7: `keyring.json` is not authenticated, so a keystore
/// restored from a copy hands out nonce counters it handed out before. A
/// job run after the restore reuses the data key and the counters of the
/// job before it, yet no (AES key, nonce) pair repeats: each job seals
/// under its own subkey.
#[test]
fn a_restored_keystore_never_repeats_a_key_and_nonce() {
    let t = Tree::new("rollback");
    let (first, _) = persisted(&t);
    let keystore = t.0.join("data/symbiont");
    let copy = t.0.join("keystore-copy");
    let cp = |from: &Path, to: &Path| {
        let o = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    cp(&keystore, &copy);
    let persist = |name: &str| {
        let store = t.path(name);
        let o = t.symbi(&[
            "run",
            &keeper(&t),
            "--input",
            "patients=examples/data/patients.csv",
            "--persist-encrypted",
            &store,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        sealed_headers(&store)
    };
    let before = persist("out/before");
    std::fs::remove_dir_all(&keystore).unwrap();
    cp(&copy, &keystore);
    let after = persist("out/after");
    // The rollback happened: the same data key and nonces again.
    let pairs: std::collections::HashSet<_> = before.iter().map(|h| (h.key, h.nonce)).collect();
    assert!(
        after.iter().any(|h| pairs.contains(&(h.key, h.nonce))),
        "the restored keystore handed out other counters"
    );
    // But never under the same subkey.
    let mut seen = std::collections::HashSet::new();
    for h in sealed_headers(&first).iter().chain(&before).chain(&after) {
        assert!(h.salt.is_some(), "a batch sealed under the data key itself");
        assert!(
            seen.insert((h.key, h.salt, h.nonce)),
            "(key {}, nonce {:?}) sealed twice under one subkey",
            h.key,
            h.nonce
        );
    }
}

/// The frames of a store's `batches.bin`: `(start, end)` of each, its
/// length prefix included.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut at = b"SYMBIONT-SEALED v1\n".len();
    let mut out = Vec::new();
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, at + 4 + len));
        at += 4 + len;
    }
    out
}

/// Rewrites a store's `batches.bin` with `frames` and its manifest with
/// what an attacker can compute: the frame count, record counts and
/// digests (but not the seal, which needs the data key).
fn forge_store(store: &Path, frames: &[&[u8]], records: i64) {
    use sha2::{Digest, Sha256};
    let mut bytes = b"SYMBIONT-SEALED v1\n".to_vec();
    for f in frames {
        bytes.extend_from_slice(f);
    }
    std::fs::write(store.join("batches.bin"), &bytes).unwrap();
    let path = store.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["frames"] = frames.len().into();
    m["frame_sha256"] = frames
        .iter()
        .map(|f| {
            let digest = Sha256::digest(&f[4..]);
            serde_json::Value::from(
                digest
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            )
        })
        .collect();
    let aes = m["records"]["aes_gcm"].as_i64().unwrap();
    m["records"]["aes_gcm"] = (aes + records).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Issue 21, point 8: a store is authenticated as a whole. A sealed frame
/// duplicated with the manifest's counts and digests adjusted (the job
/// used to report 2,044 patients of 2,000), a frame spliced in from
/// another store of the same dataset, two frames swapped, another store's
/// genuine manifest, and a store of the unauthenticated format are each
/// refused, naming the file.
#[test]
fn a_store_with_frames_dropped_duplicated_or_spliced_is_refused() {
    let t = Tree::new("whole");
    // Another copy of the same dataset, sealed under the same data key,
    // persisted first: the store under test is the dataset's latest.
    let (other, _) = persisted_to(&t, "out/other");
    let (store, direct) = persisted(&t);
    assert_eq!(direct["patients"], 2000);
    let dir = Path::new(&store);
    let original = std::fs::read(dir.join("batches.bin")).unwrap();
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let spans = frames(&original);
    let frame = |i: usize| &original[spans[i].0..spans[i].1];
    let sealed = spans
        .iter()
        .position(|&(a, _)| original[a + 4] == 1)
        .unwrap();
    let restore = || {
        std::fs::write(dir.join("batches.bin"), &original).unwrap();
        std::fs::write(dir.join("manifest.json"), &manifest).unwrap();
    };
    let ids = |f: &[u8]| u32::from_le_bytes(f[5 + IDS - 4..5 + IDS].try_into().unwrap()) as i64;

    // Duplicated, counts and digests adjusted.
    let mut dup: Vec<&[u8]> = (0..spans.len()).map(frame).collect();
    dup.push(frame(sealed));
    forge_store(dir, &dup, ids(frame(sealed)));
    fails_cleanly(
        &t,
        &store,
        &["manifest.json", "not the one this dataset's key sealed"],
        &[],
        &[],
    );
    // Dropped.
    restore();
    let dropped: Vec<&[u8]> = (0..spans.len())
        .filter(|&i| i != sealed)
        .map(frame)
        .collect();
    forge_store(dir, &dropped, -ids(frame(sealed)));
    fails_cleanly(
        &t,
        &store,
        &["manifest.json", "not the one this dataset's key sealed"],
        &[],
        &[],
    );
    // Two frames swapped, the manifest untouched.
    restore();
    let mut swapped: Vec<u8> = b"SYMBIONT-SEALED v1\n".to_vec();
    let order: Vec<usize> = [1, 0].into_iter().chain(2..spans.len()).collect();
    for i in order {
        swapped.extend_from_slice(frame(i));
    }
    std::fs::write(dir.join("batches.bin"), &swapped).unwrap();
    fails_cleanly(
        &t,
        &store,
        &["batches.bin", "is not the frame the manifest lists there"],
        &[],
        &[],
    );

    // The other copy's frame spliced in.
    restore();
    let theirs = std::fs::read(Path::new(&other).join("batches.bin")).unwrap();
    let their_spans = frames(&theirs);
    let mut spliced = original[..spans[sealed].0].to_vec();
    spliced.extend_from_slice(&theirs[their_spans[sealed].0..their_spans[sealed].1]);
    spliced.extend_from_slice(&original[spans[sealed].1..]);
    std::fs::write(dir.join("batches.bin"), &spliced).unwrap();
    fails_cleanly(
        &t,
        &store,
        &[
            &format!("frame {sealed}"),
            "is not the frame the manifest lists there",
        ],
        &[],
        &[],
    );
    // Its genuine manifest put in place is an older copy's: refused as
    // such (issue 21, point 8, whole-store rollback).
    restore();
    std::fs::copy(
        Path::new(&other).join("manifest.json"),
        dir.join("manifest.json"),
    )
    .unwrap();
    fails_cleanly(
        &t,
        &store,
        &["not the latest encrypted copy of dataset"],
        &[],
        &[],
    );

    // The format before stores were authenticated.
    restore();
    let text = String::from_utf8(manifest.clone()).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        text.replace(
            "symbiont-encrypted-dataset v2",
            "symbiont-encrypted-dataset v1",
        ),
    )
    .unwrap();
    fails_cleanly(&t, &store, &["persist the dataset again"], &[], &[]);
    restore();
    let o = t.symbi(&["run", CLINIC, "--input", &format!("patients={store}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["patients"], 2000);
    // A dataset id given for a store must be the one it is sealed under.
    let input = format!("patients={store}");
    let o = t.symbi(&["run", CLINIC, "--input", &input, "--dataset-id", "another"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--dataset-id another:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn persisting_is_an_action_the_policies_decide() {
    // clinic_costs' policy says `deny: ["export", "persist", "share"]`:
    // before, --persist-encrypted wrote the dataset out regardless.
    let t = Tree::new("persist-denied");
    let store = t.path("out/store");
    let o = t.symbi(&[
        "run",
        CLINIC,
        "--input",
        "patients=examples/data/patients.csv",
        "--persist-encrypted",
        &store,
    ]);
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("`persist` is denied by the `deny` rule of policy `medical_data_policy`"),
        "{err}"
    );
    assert!(
        err.contains("this performs `persist` in agent `cost_report`"),
        "{err}"
    );
    assert!(!Path::new(&store).exists());
    // The same job without persisting runs; a policy that allows it, too.
    let o = t.symbi(&[
        "run",
        CLINIC,
        "--input",
        "patients=examples/data/patients.csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, result) = persisted(&t);
    assert_eq!(result["seniors"], 771);
}

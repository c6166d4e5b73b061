//! The audit log under attack and under crashes: every kind of tampering is
//! detected with the index of the entry, and a writer killed at random
//! moments never loses an entry it reported durable.

use std::path::{Path, PathBuf};

use symbiont_audit::{AuditError, AuditLog, AuditSigningKey, EntryKind, MAGIC, verify};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("symbi-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SEED_KEY: &str = "symbiont-audit-signing-key v1\ntest-log\n000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

fn key(dir: &Path) -> AuditSigningKey {
    let path = dir.join("signing.key");
    if !path.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(SEED_KEY.as_bytes()).unwrap();
    }
    AuditSigningKey::load(&path).unwrap()
}

/// A log of `n` entries with a checkpoint every 4 and one at the end.
fn write_log(dir: &Path, n: u64) -> PathBuf {
    let path = dir.join("audit.log");
    let (mut log, _) = AuditLog::open(&path, key(dir), 4).unwrap();
    for i in 0..n {
        log.append(
            EntryKind::StageEnd,
            serde_json::json!({"stage": i, "tier": 1}),
        )
        .unwrap();
    }
    log.checkpoint().unwrap();
    path
}

/// Byte offsets `(start, end)` of each record after the header.
fn record_spans(bytes: &[u8]) -> Vec<(usize, usize, u8)> {
    let mut at = MAGIC.len();
    let mut out = Vec::new();
    while at + 4 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = at + 4 + 1 + len + 4;
        out.push((at, end, bytes[at + 4]));
        at = end;
    }
    out
}

fn entry_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    record_spans(bytes)
        .into_iter()
        .filter(|r| r.2 == 1)
        .map(|(s, e, _)| (s, e))
        .collect()
}

/// The index and reason of the first problem `verify` reports.
fn problem(path: &Path, dir: &Path) -> (u64, String) {
    match verify(path, &key(dir).verifying_key()) {
        Err(AuditError::Corrupt { problem, .. }) => (problem.index, problem.reason),
        other => panic!("expected a corrupt log, got {other:?}"),
    }
}

#[test]
fn an_untouched_log_verifies() {
    let s = Scratch::new("ok");
    let path = write_log(&s.0, 10);
    let v = verify(&path, &key(&s.0).verifying_key()).unwrap();
    assert_eq!(v.entries.len(), 10);
    assert_eq!(
        v.checkpoints.iter().map(|c| c.size).collect::<Vec<_>>(),
        [4, 8, 10]
    );
}

#[test]
fn a_flipped_byte_in_any_entry_is_detected_at_that_entry() {
    let s = Scratch::new("flip");
    let path = write_log(&s.0, 10);
    let original = std::fs::read(&path).unwrap();
    for (i, (start, end)) in entry_spans(&original).into_iter().enumerate() {
        for offset in [start + 2, start + 4, (start + end) / 2, end - 6, end - 1] {
            let mut bytes = original.clone();
            bytes[offset] ^= 0x20;
            std::fs::write(&path, &bytes).unwrap();
            let (index, reason) = problem(&path, &s.0);
            assert_eq!(index, i as u64, "byte {offset} of entry {i}: {reason}");
        }
    }
}

#[test]
fn an_altered_entry_with_a_fixed_checksum_breaks_the_chain() {
    let s = Scratch::new("rewrite");
    let path = write_log(&s.0, 10);
    let mut bytes = std::fs::read(&path).unwrap();
    let (start, end) = entry_spans(&bytes)[5];
    let body = String::from_utf8(bytes[start + 5..end - 4].to_vec()).unwrap();
    let forged = body.replace("\"tier\":1", "\"tier\":3");
    assert_eq!(forged.len(), body.len());
    bytes[start + 5..end - 4].copy_from_slice(forged.as_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[start + 4..end - 4]);
    bytes[end - 4..end].copy_from_slice(&crc.finalize().to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (index, reason) = problem(&path, &s.0);
    // The next entry no longer chains (and the checkpoint after it fails).
    assert_eq!(index, 6, "{reason}");
    assert!(reason.contains("does not chain"), "{reason}");
}

#[test]
fn a_deleted_entry_is_detected() {
    let s = Scratch::new("delete");
    let path = write_log(&s.0, 10);
    let bytes = std::fs::read(&path).unwrap();
    let (start, end) = entry_spans(&bytes)[3];
    let cut = [&bytes[..start], &bytes[end..]].concat();
    std::fs::write(&path, cut).unwrap();
    let (index, reason) = problem(&path, &s.0);
    assert_eq!(index, 3, "{reason}");
    assert!(reason.contains("removed"), "{reason}");
}

#[test]
fn swapped_entries_are_detected() {
    let s = Scratch::new("swap");
    let path = write_log(&s.0, 10);
    let bytes = std::fs::read(&path).unwrap();
    let spans = entry_spans(&bytes);
    let ((a0, a1), (b0, b1)) = (spans[5], spans[6]);
    assert_eq!(a1, b0, "entries 5 and 6 are adjacent");
    let swapped = [&bytes[..a0], &bytes[b0..b1], &bytes[a0..a1], &bytes[b1..]].concat();
    std::fs::write(&path, swapped).unwrap();
    let (index, _) = problem(&path, &s.0);
    assert_eq!(index, 5);
}

#[test]
fn a_truncated_file_is_detected() {
    let s = Scratch::new("truncate");
    let path = write_log(&s.0, 10);
    let bytes = std::fs::read(&path).unwrap();
    let spans = record_spans(&bytes);
    // Cut inside entry 9's record: a torn tail after entry 8.
    let (start, end) = entry_spans(&bytes)[9];
    std::fs::write(&path, &bytes[..(start + end) / 2]).unwrap();
    assert_eq!(problem(&path, &s.0).0, 9);
    // Cut exactly after entry 9, dropping the final checkpoint.
    let last = spans.last().unwrap();
    std::fs::write(&path, &bytes[..last.0]).unwrap();
    let (index, reason) = problem(&path, &s.0);
    assert_eq!(index, 8, "{reason}");
    assert!(
        reason.contains("not covered by a signed checkpoint"),
        "{reason}"
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_is_detected() {
    let s = Scratch::new("otherkey");
    let path = write_log(&s.0, 6);
    // Append entries checkpointed by a different key, forging the tail.
    let bytes = std::fs::read(&path).unwrap();
    let forged_dir = s.0.join("forger");
    std::fs::create_dir_all(&forged_dir).unwrap();
    let forged_path = forged_dir.join("audit.log");
    std::fs::write(&forged_path, &bytes).unwrap();
    let other = AuditSigningKey::generate("test-log").unwrap();
    // Opening with the wrong key is refused: its checkpoints do not verify.
    assert!(matches!(
        AuditLog::open(&forged_path, other, 4),
        Err(AuditError::Corrupt { .. })
    ));
    // Splice in a checkpoint signed by another key with the right root.
    let mut spans = record_spans(&bytes);
    let (c0, c1, kind) = spans.pop().unwrap();
    assert_eq!(kind, 2);
    let note = String::from_utf8(bytes[c0 + 5..c1 - 4].to_vec()).unwrap();
    let body = &note[..note.rfind("\n\n").unwrap() + 1];
    let forger = AuditSigningKey::generate("test-log").unwrap();
    let forged_note = forger.sign_note(body);
    let mut record = (forged_note.len() as u32).to_be_bytes().to_vec();
    record.push(2);
    record.extend_from_slice(forged_note.as_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&record[4..]);
    record.extend_from_slice(&crc.finalize().to_be_bytes());
    std::fs::write(&path, [&bytes[..c0], &record[..]].concat()).unwrap();
    let (index, reason) = problem(&path, &s.0);
    assert_eq!(index, 6, "{reason}");
    assert!(
        reason.contains("does not verify") || reason.contains("not signed"),
        "{reason}"
    );
}

#[test]
fn verification_against_another_public_key_fails() {
    let s = Scratch::new("otherpub");
    let path = write_log(&s.0, 6);
    let stranger = AuditSigningKey::generate("test-log")
        .unwrap()
        .verifying_key();
    match verify(&path, &stranger) {
        Err(AuditError::Corrupt { problem, .. }) => assert_eq!(problem.index, 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_torn_tail_is_cut_and_recorded_on_open() {
    let s = Scratch::new("torn");
    let path = write_log(&s.0, 5);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0, 0, 0, 40, 1, b'{']);
    std::fs::write(&path, &bytes).unwrap();
    let (log, report) = AuditLog::open(&path, key(&s.0), 4).unwrap();
    let recovery = report.recovery.expect("recovered");
    assert_eq!(recovery.truncated_bytes, 6);
    assert_eq!(recovery.unsigned_entries, 0);
    assert_eq!(log.len(), 6);
    drop(log);
    let v = verify(&path, &key(&s.0).verifying_key()).unwrap();
    assert_eq!(v.entries[5].kind, "recovery");
}

/// Run as a child by `killed_writers_lose_nothing_reported_durable`:
/// appends until killed, printing the durable size after each checkpoint.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var("SYMBI_AUDIT_CHILD_LOG") else {
        return;
    };
    use std::io::Write;
    let path = PathBuf::from(path);
    let dir = path.parent().unwrap().to_owned();
    let target: u64 = std::env::var("SYMBI_AUDIT_CHILD_TARGET")
        .unwrap()
        .parse()
        .unwrap();
    let (mut log, _) = AuditLog::open(&path, key(&dir), 1000).unwrap();
    let mut stdout = std::io::stdout().lock();
    while log.len() < target {
        log.append(EntryKind::StageEnd, serde_json::json!({"n": log.len()}))
            .unwrap();
        if log.len() % 500 == 0 {
            let c = log.checkpoint().unwrap();
            writeln!(stdout, "durable {}", c.size).unwrap();
            stdout.flush().unwrap();
        }
    }
    let c = log.checkpoint().unwrap();
    writeln!(stdout, "durable {}", c.size).unwrap();
    writeln!(stdout, "done").unwrap();
}

#[test]
fn killed_writers_lose_nothing_reported_durable() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let s = Scratch::new("crash");
    let path = s.0.join("audit.log");
    let target = 100_000u64;
    // A fixed sequence of pseudo-random kill delays (xorshift).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut durable = 0u64;
    let mut kills = 0;
    let mut finished = false;
    while !finished {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_writer",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("SYMBI_AUDIT_CHILD_LOG", &path)
            .env("SYMBI_AUDIT_CHILD_TARGET", target.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            let mut done = false;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(n) = line.strip_prefix("durable ") {
                    last = n.parse().unwrap();
                }
                done |= line == "done";
            }
            (last, done)
        });
        if kills < 20 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            std::thread::sleep(std::time::Duration::from_millis(20 + state % 180));
            // SIGKILL: no destructor, no flush.
            let _ = child.kill();
            kills += 1;
        }
        let _ = child.wait();
        let (reported, done) = reader.join().unwrap();
        durable = durable.max(reported);
        finished = done;
        // Every reopen recovers to a log that verifies and has lost
        // nothing reported durable.
        let (log, _) = AuditLog::open(&path, key(&s.0), 1000).unwrap();
        assert!(
            log.len() >= durable,
            "{} entries, {durable} reported durable",
            log.len()
        );
        drop(log);
        let v = verify(&path, &key(&s.0).verifying_key()).unwrap();
        assert!(v.entries.len() as u64 >= durable);
    }
    assert!(kills >= 20);
    let v = verify(&path, &key(&s.0).verifying_key()).unwrap();
    assert!(v.entries.len() as u64 >= target);
}

/// Appends a forged entry record (the attacker can write the file, not
/// read the key): `seq`, chained to `prev_body`, framed and checksummed.
fn forge_entry(bytes: &mut Vec<u8>, seq: u64, prev_body: &[u8]) -> Vec<u8> {
    let prev: String = symbiont_audit::merkle::leaf_hash(prev_body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "seq": seq,
        "time": "2026-12-04T00:00:00.000000Z",
        "kind": "job_end",
        "detail": {"job": 99, "status": "ok", "forged": true},
        "prev": prev,
    }))
    .unwrap();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[1]);
    crc.update(&body);
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.push(1);
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&crc.finalize().to_be_bytes());
    body
}

/// Issue 21, point 6: someone who can write the log but not read its key
/// cuts it back to a checkpoint and appends entries of their own; the next
/// job's open signs them. That checkpoint now says it did (`recovered 4`,
/// shown by `verify`), and a checkpoint the auditor kept from before the
/// cut refuses the log.
#[test]
fn entries_appended_by_someone_without_the_key_are_flagged_and_a_kept_checkpoint_refuses_the_cut() {
    let s = Scratch::new("forge");
    let path = write_log(&s.0, 10);
    let public = key(&s.0).verifying_key();
    let kept = verify(&path, &public)
        .unwrap()
        .checkpoints
        .last()
        .unwrap()
        .note
        .clone();
    assert!(symbiont_audit::verify_trusted(&path, &public, &kept).is_ok());

    let mut bytes = std::fs::read(&path).unwrap();
    let spans = record_spans(&bytes);
    // Cut after the first checkpoint (entries 0..3), then forge 4..7.
    let cut = spans.iter().find(|r| r.2 == 2).unwrap().1;
    let (s3, e3) = entry_spans(&bytes)[3];
    let mut prev = bytes[s3 + 5..e3 - 4].to_vec();
    bytes.truncate(cut);
    for seq in 4..8 {
        prev = forge_entry(&mut bytes, seq, &prev);
    }
    std::fs::write(&path, &bytes).unwrap();

    let (log, report) = AuditLog::open(&path, key(&s.0), 4).unwrap();
    assert_eq!(report.recovery.unwrap().unsigned_entries, 4);
    drop(log);
    let v = verify(&path, &public).unwrap();
    assert!(
        v.entries[4].detail["forged"] == true,
        "the forged entries are kept"
    );
    let last = v.checkpoints.last().unwrap();
    assert_eq!((last.size, last.recovered), (9, Some(4)));
    assert_eq!(v.recovered(), vec![(9, 4, 4)]);
    assert!(v.to_string().contains("signed entries 4..7 (4)"), "{v}");
    assert_eq!(v.entries[8].detail["first_unsigned"], 4);
    // The kept checkpoint (size 10) is not extended by this log.
    match symbiont_audit::verify_trusted(&path, &public, &kept) {
        Err(AuditError::Corrupt { problem, .. }) => {
            assert!(problem.reason.contains("it was cut back"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

/// A recovery checkpoint's count is checked against its entries: a
/// `recovered N` line that the recovery entry before it does not bear out
/// is refused.
#[test]
fn a_recovery_checkpoint_must_match_its_recovery_entry() {
    let s = Scratch::new("recovered-count");
    let path = write_log(&s.0, 5);
    let mut bytes = std::fs::read(&path).unwrap();
    let (s4, e4) = entry_spans(&bytes)[4];
    let prev = bytes[s4 + 5..e4 - 4].to_vec();
    forge_entry(&mut bytes, 5, &prev);
    std::fs::write(&path, &bytes).unwrap();
    drop(AuditLog::open(&path, key(&s.0), 100).unwrap());
    let public = key(&s.0).verifying_key();
    assert_eq!(verify(&path, &public).unwrap().recovered(), vec![(7, 5, 1)]);
    // A log rewritten so that its last checkpoint says `recovered 2`, signed
    // by the right key (the signer's own mistake, or a forgery with the
    // key): refused.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = *record_spans(&bytes).last().unwrap();
    bytes.truncate(last.0);
    let v = verify(&path, &public).unwrap();
    let root = symbiont_audit::merkle::root(&v.leaves);
    let body = format!(
        "{}\n7\n{}\nrecovered 2\n",
        symbiont_audit::ORIGIN,
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, root)
    );
    let note = key(&s.0).sign_note(&body);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[2]);
    crc.update(note.as_bytes());
    bytes.extend_from_slice(&(note.len() as u32).to_be_bytes());
    bytes.push(2);
    bytes.extend_from_slice(note.as_bytes());
    bytes.extend_from_slice(&crc.finalize().to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    match verify(&path, &public) {
        Err(AuditError::Corrupt { problem, .. }) => {
            assert!(problem.reason.contains("do not bear out"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

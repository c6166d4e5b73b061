//! The audit log: append-only, hash-chained entries in one file, an RFC 6962
//! Merkle tree over them, and Ed25519-signed checkpoints in the C2SP
//! checkpoint format. `docs/FORMATS.md` documents the file.
//!
//! Entries are signed in batches: each checkpoint signs the Merkle root
//! over every entry so far, and each entry carries the hash of the one
//! before it. Checkpoints are written (and the file fsynced) every
//! `checkpoint_every` entries and whenever [`AuditLog::checkpoint`] is
//! called (at the end of every job), so what was checkpointed is durable.
//! Why batches and not a signature per entry: `benches/audit.rs` measures
//! both (the per-entry variant is capped by Ed25519 signing).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::keys::{AuditSigningKey, AuditVerifyingKey, hex};
use crate::merkle::{self, Frontier, Hash};

/// The first bytes of every audit log file.
pub const MAGIC: &[u8] = b"SYMBIONT-AUDIT v1\n";

/// The checkpoint origin line: which log a checkpoint is of.
pub const ORIGIN: &str = "symbiont/audit";

const ENTRY: u8 = 1;
const CHECKPOINT: u8 = 2;
/// Records are at most this long; a longer length is damage.
const MAX_RECORD: u32 = 16 << 20;

/// What an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A job started.
    JobStart,
    /// A job ended.
    JobEnd,
    /// A stage started (with its sandbox tier).
    StageStart,
    /// A stage ended (with digests of what it read and wrote).
    StageEnd,
    /// A policy decision, allow or deny.
    PolicyDecision,
    /// A dataset commitment.
    DatasetCommitment,
    /// A key was created, rotated or destroyed.
    KeyEvent,
    /// A stage was suspended by a policy condition.
    StageSuspended,
    /// A human approval overrode policy violations.
    Approval,
    /// A proof was produced.
    Proof,
    /// The log was recovered after a crash.
    Recovery,
}

impl EntryKind {
    /// The kind as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::JobStart => "job_start",
            EntryKind::JobEnd => "job_end",
            EntryKind::StageStart => "stage_start",
            EntryKind::StageEnd => "stage_end",
            EntryKind::PolicyDecision => "policy_decision",
            EntryKind::DatasetCommitment => "dataset_commitment",
            EntryKind::KeyEvent => "key_event",
            EntryKind::Proof => "proof",
            EntryKind::Recovery => "recovery",
            EntryKind::StageSuspended => "stage_suspended",
            EntryKind::Approval => "approval",
        }
    }
}

/// One entry, as stored (JSON, fields in this order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// When it was appended (RFC 3339, UTC).
    pub time: String,
    /// What it records ([`EntryKind::as_str`]).
    pub kind: String,
    /// The event's details: stage, tier, digests, decision, ...
    pub detail: serde_json::Value,
    /// Hex SHA-256 leaf hash of the previous entry (zeros for the first).
    pub prev: String,
}

/// A checkpoint: the tree size and root it signs, and the signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Entries covered.
    pub size: u64,
    /// Merkle root over them.
    pub root: Hash,
    /// The signed note (C2SP checkpoint).
    pub note: String,
    /// For a checkpoint written when a log was recovered: how many entries
    /// (before the recovery entry) it signs that no earlier checkpoint
    /// covered. Whoever could write the file may have written those; no
    /// job is known to have.
    pub recovered: Option<u64>,
}

/// Why the log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The log is damaged or tampered with before its tail; appending to
    /// it would hide that.
    #[error("{path}: {problem}; run `symbi audit verify` on it")]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// What is wrong, with the entry index.
        problem: Problem,
    },
}

/// What is wrong with a log, and at which entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Problem {
    /// The index of the first bad entry (or of the entry a bad checkpoint
    /// follows, or where the bad tail begins).
    pub index: u64,
    /// Why.
    pub reason: String,
}

impl Problem {
    fn describe(&self) -> String {
        format!("entry {}: {}", self.index, self.reason)
    }
}

/// What opening a log did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// Entries in the log after opening.
    pub entries: u64,
    /// Set when the log had to be recovered.
    pub recovery: Option<Recovery>,
}

/// What recovery after a crash found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn last record that were cut off.
    pub truncated_bytes: u64,
    /// Whole entries after the last checkpoint, now covered by the
    /// recovery checkpoint.
    pub unsigned_entries: u64,
}

/// One framed record of the file.
struct RawRecord<'a> {
    kind: u8,
    body: &'a [u8],
    /// Offset just past the record.
    end: u64,
}

/// How the records of a file end.
enum Tail {
    Clean,
    /// A last record that is incomplete or fails its checksum.
    Torn {
        at: u64,
    },
}

/// Splits the file into records. A bad record before the last is an error
/// (index = entries before it); a bad last record is a torn tail.
fn records(bytes: &[u8]) -> Result<(Vec<RawRecord<'_>>, Tail), Problem> {
    if !bytes.starts_with(MAGIC) {
        return Err(Problem {
            index: 0,
            reason: "not a Symbiont audit log (bad header)".into(),
        });
    }
    let mut out = Vec::new();
    let mut at = MAGIC.len();
    let mut entries = 0u64;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 4 {
            return Ok((out, Tail::Torn { at: at as u64 }));
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("four bytes"));
        let total = 4 + 1 + len as usize + 4;
        if len > MAX_RECORD {
            return Err(Problem {
                index: entries,
                reason: format!("record length {len} is impossible (damaged file)"),
            });
        }
        if rest.len() < total {
            return Ok((out, Tail::Torn { at: at as u64 }));
        }
        let kind = rest[4];
        let body = &rest[5..5 + len as usize];
        let stored = u32::from_be_bytes(rest[total - 4..total].try_into().expect("four bytes"));
        let mut crc = crc32fast::Hasher::new();
        crc.update(&rest[4..5 + len as usize]);
        if crc.finalize() != stored {
            if at + total == bytes.len() {
                return Ok((out, Tail::Torn { at: at as u64 }));
            }
            return Err(Problem {
                index: entries,
                reason: "checksum mismatch: the record was altered or damaged".into(),
            });
        }
        if kind != ENTRY && kind != CHECKPOINT {
            return Err(Problem {
                index: entries,
                reason: format!("unknown record kind {kind}"),
            });
        }
        entries += u64::from(kind == ENTRY);
        at += total;
        out.push(RawRecord {
            kind,
            body,
            end: at as u64,
        });
    }
    Ok((out, Tail::Clean))
}

/// A checkpoint's body; a recovery checkpoint adds the extension line
/// `recovered N`.
fn checkpoint_body(size: u64, root: &Hash, recovered: Option<u64>) -> String {
    let mut body = format!("{ORIGIN}\n{size}\n{}\n", BASE64.encode(root));
    if let Some(n) = recovered {
        body.push_str(&format!("recovered {n}\n"));
    }
    body
}

/// Parses a checkpoint note's body: `(size, root, recovered)`. Extension
/// lines other than `recovered N` are refused.
fn parse_checkpoint(body: &str) -> Option<(u64, Hash, Option<u64>)> {
    let mut lines = body.lines();
    if lines.next()? != ORIGIN {
        return None;
    }
    let size = lines.next()?.parse().ok()?;
    let root: Hash = BASE64.decode(lines.next()?).ok()?.try_into().ok()?;
    let recovered = match lines.next() {
        None => None,
        Some(line) => Some(line.strip_prefix("recovered ")?.parse().ok()?),
    };
    lines.next().is_none().then_some((size, root, recovered))
}

/// The state reconstructed from a log's records.
struct Replay {
    leaves: Vec<Hash>,
    frontier: Frontier,
    /// `(size, root, note)` of each checkpoint, in order.
    checkpoints: Vec<Checkpoint>,
    entries: Vec<Entry>,
}

/// Replays records, checking sequence numbers, the hash chain and each
/// checkpoint's root (and, with `key`, its signature).
fn replay(records: &[RawRecord<'_>], key: Option<&AuditVerifyingKey>) -> Result<Replay, Problem> {
    let mut r = Replay {
        leaves: Vec::new(),
        frontier: Frontier::default(),
        checkpoints: Vec::new(),
        entries: Vec::new(),
    };
    let mut prev = [0u8; 32];
    for record in records {
        let index = r.leaves.len() as u64;
        let problem = |reason: String| Problem { index, reason };
        if record.kind == ENTRY {
            let entry: Entry = serde_json::from_slice(record.body)
                .map_err(|e| problem(format!("not a valid entry ({e})")))?;
            if entry.seq != index {
                return Err(problem(format!(
                    "sequence number {} where {index} was expected: an entry was removed, inserted or reordered",
                    entry.seq
                )));
            }
            if entry.prev != hex(&prev) {
                return Err(problem(format!(
                    "does not chain to entry {}: its previous-entry hash does not match",
                    index.saturating_sub(1)
                )));
            }
            let leaf = merkle::leaf_hash(record.body);
            r.frontier.push(leaf);
            r.leaves.push(leaf);
            r.entries.push(entry);
            prev = leaf;
        } else {
            let note = std::str::from_utf8(record.body)
                .map_err(|_| problem("checkpoint is not UTF-8".into()))?;
            let body = match key {
                Some(key) => key
                    .verify_note(note)
                    .map_err(|e| problem(format!("the checkpoint after it is invalid: {e}")))?,
                None => &note[..note.rfind("\n\n").map_or(note.len(), |i| i + 1)],
            };
            let (size, root, recovered) = parse_checkpoint(body)
                .ok_or_else(|| problem("the checkpoint after it is malformed".into()))?;
            if size != index {
                return Err(problem(format!(
                    "the checkpoint after it covers {size} entries but {index} precede it: an entry was removed or inserted"
                )));
            }
            if root != r.frontier.root() {
                return Err(problem(format!(
                    "the checkpoint after it (size {size}) signs another Merkle root: an entry before it was altered"
                )));
            }
            if let Some(n) = recovered {
                // It signs `n` entries after the previous checkpoint, then
                // the recovery entry that says so.
                let before = r.checkpoints.last().map_or(0, |c| c.size);
                let says = size
                    .checked_sub(1)
                    .and_then(|i| r.entries.get(i as usize))
                    .filter(|e| e.kind == EntryKind::Recovery.as_str())
                    .and_then(|e| e.detail["unsigned_entries"].as_u64());
                if before + n + 1 != size || says != Some(n) {
                    return Err(problem(format!(
                        "the recovery checkpoint after it says it signs {n} entries after entry {before}, which its entries do not bear out"
                    )));
                }
            }
            r.checkpoints.push(Checkpoint {
                size,
                root,
                note: note.to_owned(),
                recovered,
            });
        }
    }
    Ok(r)
}

/// An audit log open for appending.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    out: BufWriter<File>,
    key: AuditSigningKey,
    frontier: Frontier,
    prev: Hash,
    since_checkpoint: u64,
    checkpoint_every: u64,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, signing with `key`, and locks
    /// it (`flock`) against other writers until dropped. A torn
    /// last record (a crash mid-write) is cut off; whole entries written
    /// after the last checkpoint are kept; either way a recovery entry and
    /// a checkpoint are appended and the report says so. A log damaged
    /// before its tail, or whose checkpoints `key` did not sign, is refused.
    pub fn open(
        path: &Path,
        key: AuditSigningKey,
        checkpoint_every: u64,
    ) -> Result<(AuditLog, OpenReport), AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if !path.exists() {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(io)?;
            file.write_all(MAGIC).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        // One writer at a time: the lock is held while the log is open.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io)?;
        let corrupt = |problem| AuditError::Corrupt {
            path: path.to_owned(),
            problem,
        };
        let (raw, tail) = records(&bytes).map_err(corrupt)?;
        let replayed = replay(&raw, Some(&key.verifying_key())).map_err(corrupt)?;
        let valid_end = raw.last().map_or(MAGIC.len() as u64, |r| r.end);
        let truncated_bytes = match tail {
            Tail::Clean => 0,
            Tail::Torn { at } => bytes.len() as u64 - at,
        };
        if truncated_bytes > 0 {
            file.set_len(valid_end).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::Start(valid_end)).map_err(io)?;
        let entries = replayed.leaves.len() as u64;
        let signed = replayed.checkpoints.last().map_or(0, |c| c.size);
        let mut log = AuditLog {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 16, file),
            key,
            prev: replayed.leaves.last().copied().unwrap_or([0; 32]),
            frontier: replayed.frontier,
            since_checkpoint: entries - signed,
            checkpoint_every: checkpoint_every.max(1),
        };
        let recovery = (truncated_bytes > 0 || entries > signed).then_some(Recovery {
            truncated_bytes,
            unsigned_entries: entries - signed,
        });
        if let Some(r) = &recovery {
            // Not `append`: no ordinary checkpoint may come between the
            // unsigned entries and the recovery checkpoint.
            log.push_entry(
                EntryKind::Recovery,
                serde_json::json!({
                    "truncated_bytes": r.truncated_bytes,
                    "unsigned_entries": r.unsigned_entries,
                    "first_unsigned": signed,
                }),
            )?;
            log.sign(Some(r.unsigned_entries))?;
        }
        let report = OpenReport {
            entries: log.frontier.size(),
            recovery,
        };
        Ok((log, report))
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries so far.
    pub fn len(&self) -> u64 {
        self.frontier.size()
    }

    /// Whether the log has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn io(&self, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn write_record(&mut self, kind: u8, body: &[u8]) -> Result<(), AuditError> {
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| self.io(std::io::Error::other("audit record larger than 16 MiB")))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(body);
        let result = (|| {
            self.out.write_all(&len.to_be_bytes())?;
            self.out.write_all(&[kind])?;
            self.out.write_all(body)?;
            self.out.write_all(&crc.finalize().to_be_bytes())
        })();
        result.map_err(|e| self.io(e))
    }

    /// Appends an entry; returns its sequence number. It is durable once
    /// the next checkpoint is written.
    pub fn append(
        &mut self,
        kind: EntryKind,
        detail: serde_json::Value,
    ) -> Result<u64, AuditError> {
        let seq = self.push_entry(kind, detail)?;
        if self.since_checkpoint >= self.checkpoint_every {
            self.checkpoint()?;
        }
        Ok(seq)
    }

    /// Writes an entry, with no checkpoint after it.
    fn push_entry(
        &mut self,
        kind: EntryKind,
        detail: serde_json::Value,
    ) -> Result<u64, AuditError> {
        let seq = self.frontier.size();
        let entry = Entry {
            seq,
            time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            kind: kind.as_str().to_owned(),
            detail,
            prev: hex(&self.prev),
        };
        let body = serde_json::to_vec(&entry).expect("entries always serialize");
        self.write_record(ENTRY, &body)?;
        let leaf = merkle::leaf_hash(&body);
        self.frontier.push(leaf);
        self.prev = leaf;
        self.since_checkpoint += 1;
        Ok(seq)
    }

    /// Signs the tree so far into a checkpoint, writes it and fsyncs the
    /// file: every entry so far is then durable.
    pub fn checkpoint(&mut self) -> Result<Checkpoint, AuditError> {
        self.sign(None)
    }

    fn sign(&mut self, recovered: Option<u64>) -> Result<Checkpoint, AuditError> {
        let size = self.frontier.size();
        let root = self.frontier.root();
        let note = self.key.sign_note(&checkpoint_body(size, &root, recovered));
        self.write_record(CHECKPOINT, note.as_bytes())?;
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))?;
        self.since_checkpoint = 0;
        Ok(Checkpoint {
            size,
            root,
            note,
            recovered,
        })
    }
}

/// The bytes of the log at `path`, and how to report a problem in it.
fn read_log(path: &Path) -> Result<(Vec<u8>, impl Fn(Problem) -> AuditError), AuditError> {
    let bytes = std::fs::read(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    let path = path.to_owned();
    Ok((bytes, move |problem| AuditError::Corrupt {
        path: path.clone(),
        problem,
    }))
}

/// Reads the entries of the log at `path` without verifying signatures
/// (for display; [`verify`] is the check). A torn tail is ignored.
pub fn read_entries(path: &Path) -> Result<Vec<Entry>, AuditError> {
    let (bytes, corrupt) = read_log(path)?;
    let (raw, _) = records(&bytes).map_err(&corrupt)?;
    Ok(replay(&raw, None).map_err(&corrupt)?.entries)
}

/// A log that verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// Its entries.
    pub entries: Vec<Entry>,
    /// Its checkpoints, in order.
    pub checkpoints: Vec<Checkpoint>,
    /// Leaf hashes of the entries.
    pub leaves: Vec<Hash>,
    /// The stored bytes of each entry.
    pub bodies: Vec<Vec<u8>>,
}

impl Verified {
    /// The recovery checkpoints: `(checkpoint size, first entry, entries)`
    /// of the entries each signed that no earlier checkpoint covered.
    pub fn recovered(&self) -> Vec<(u64, u64, u64)> {
        self.checkpoints
            .iter()
            .filter_map(|c| c.recovered.map(|n| (c.size, c.size - 1 - n, n)))
            .filter(|(_, _, n)| *n > 0)
            .collect()
    }

    /// The inclusion proof of entry `index` against the latest checkpoint,
    /// as `symbi audit prove` prints it; `None` if that checkpoint does not
    /// cover the entry.
    pub fn inclusion(&self, index: u64) -> Option<serde_json::Value> {
        let checkpoint = self.checkpoints.last().filter(|c| index < c.size)?;
        let size = checkpoint.size as usize;
        let proof = merkle::inclusion_proof(index as usize, &self.leaves[..size]);
        let leaf = self.leaves[index as usize];
        assert!(
            merkle::verify_inclusion(&leaf, index, checkpoint.size, &proof, &checkpoint.root),
            "internal error: the inclusion proof does not verify"
        );
        Some(serde_json::json!({
            "index": index,
            "tree_size": checkpoint.size,
            "entry": BASE64.encode(&self.bodies[index as usize]),
            "leaf_hash": hex(&leaf),
            "root": hex(&checkpoint.root),
            "proof": proof.iter().map(|h| hex(h)).collect::<Vec<_>>(),
            "checkpoint": checkpoint.note,
        }))
    }

    /// The consistency proof from the checkpoint of size `old_size` to the
    /// latest, as `symbi audit consistency` prints it; `None` if no
    /// checkpoint has that size.
    pub fn consistency(&self, old_size: u64) -> Option<serde_json::Value> {
        let old = self.checkpoints.iter().find(|c| c.size == old_size)?;
        let new = self.checkpoints.last()?;
        let proof = merkle::consistency_proof(old.size as usize, &self.leaves[..new.size as usize]);
        assert!(
            merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof),
            "internal error: the consistency proof does not verify"
        );
        Some(serde_json::json!({
            "old_size": old.size,
            "new_size": new.size,
            "old_root": hex(&old.root),
            "new_root": hex(&new.root),
            "proof": proof.iter().map(|h| hex(h)).collect::<Vec<_>>(),
            "old_checkpoint": old.note,
            "new_checkpoint": new.note,
        }))
    }

    /// What `symbi audit verify --format json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let last = self.checkpoints.last();
        serde_json::json!({
            "ok": true,
            "entries": self.entries.len(),
            "checkpoints": self.checkpoints.len(),
            "tree_size": last.map(|c| c.size),
            "root": last.map(|c| hex(&c.root)),
            "recovered": self.recovered().iter().map(|(size, first, count)| serde_json::json!({
                "checkpoint_size": size, "first": first, "count": count,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What `symbi audit verify` prints: a summary line, then a warning for
/// each recovery checkpoint that signed entries no job is known to have
/// written.
impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = self.checkpoints.last();
        writeln!(
            f,
            "ok: {} entries, {} signed checkpoints; latest covers {} entries, root {}",
            self.entries.len(),
            self.checkpoints.len(),
            last.map_or(0, |c| c.size),
            last.map_or(String::new(), |c| hex(&c.root))
        )?;
        for (size, first, count) in self.recovered() {
            writeln!(
                f,
                "warning: the recovery checkpoint of size {size} signed entries {first}..{} ({count}), which no earlier checkpoint covered: whoever could write the file may have written them",
                first + count - 1
            )?;
        }
        Ok(())
    }
}

/// Reads and verifies the whole log at `path` against `key`: framing and
/// checksums, sequence numbers, the hash chain, and each checkpoint's root
/// and signature; the log must end with a checkpoint. Read-only: a torn
/// tail is reported, not repaired (opening the log for appending repairs
/// it).
pub fn verify(path: &Path, key: &AuditVerifyingKey) -> Result<Verified, AuditError> {
    let (bytes, corrupt) = read_log(path)?;
    let (raw, tail) = records(&bytes).map_err(&corrupt)?;
    let replayed = replay(&raw, Some(key)).map_err(&corrupt)?;
    let entries = replayed.leaves.len() as u64;
    if let Tail::Torn { .. } = tail {
        return Err(corrupt(Problem {
            index: entries,
            reason: "the file ends inside a record (truncated, or a write was interrupted)".into(),
        }));
    }
    let signed = replayed.checkpoints.last().map_or(0, |c| c.size);
    if signed < entries {
        return Err(corrupt(Problem {
            index: signed,
            reason: format!(
                "entries {signed}..{} are not covered by a signed checkpoint (the file was truncated or not closed)",
                entries - 1
            ),
        }));
    }
    Ok(Verified {
        bodies: raw
            .iter()
            .filter(|r| r.kind == ENTRY)
            .map(|r| r.body.to_vec())
            .collect(),
        entries: replayed.entries,
        checkpoints: replayed.checkpoints,
        leaves: replayed.leaves,
    })
}

/// Verifies the log at `path` (see [`verify`]) and that it extends
/// `trusted`, a checkpoint note an auditor kept from an earlier look at it:
/// signed by `key`, and its first `size` entries still those it signed.
/// This is what detects a log cut back (at a checkpoint boundary, which
/// [`verify`] alone cannot tell from a shorter log) or rewritten.
pub fn verify_trusted(
    path: &Path,
    key: &AuditVerifyingKey,
    trusted: &str,
) -> Result<Verified, AuditError> {
    let (_, corrupt) = read_log(path)?;
    let refused = |index: u64, reason: String| corrupt(Problem { index, reason });
    let body = key
        .verify_note(trusted)
        .map_err(|e| refused(0, format!("the trusted checkpoint is not valid: {e}")))?;
    let (size, root, _) = parse_checkpoint(body)
        .ok_or_else(|| refused(0, "the trusted checkpoint is malformed".into()))?;
    let v = verify(path, key)?;
    let have = v.leaves.len() as u64;
    if size > have {
        return Err(refused(
            have,
            format!(
                "the log holds {have} entries but the trusted checkpoint signed {size}: it was cut back"
            ),
        ));
    }
    if merkle::root(&v.leaves[..size as usize]) != root {
        return Err(refused(
            size,
            format!(
                "the log's first {size} entries are not those of the trusted checkpoint: it was rewritten"
            ),
        ));
    }
    Ok(v)
}

/// The body of the `audit_log` fuzz target (`fuzz/`): reads `bytes` as an
/// audit log file, replays it with and without a key, and must never
/// panic, whatever the bytes.
pub fn fuzz_audit_bytes(bytes: &[u8], key: &AuditVerifyingKey) {
    if let Ok((raw, _)) = records(bytes) {
        let _ = replay(&raw, None);
        let _ = replay(&raw, Some(key));
    }
}

//! A stream's checkpoint (`symbi stream --state DIR`): at every epoch's
//! end, once its line is written, what a restarted stream needs to go on
//! exactly where that epoch ended: the source position (the followed
//! file's identity, the byte offset after the epoch's last line, and that
//! line's number), the next epoch's number, the counts so far and the
//! running totals. Records after the last checkpoint are read again by
//! the restarted stream, never counted twice.
//!
//! The checkpoint replaces the last one atomically (written beside it,
//! synced, renamed over it, the directory synced), so a stream killed at
//! any point leaves one whole checkpoint or the one before. The directory
//! is the stream's alone: it is created `0700`, refused if it is a
//! symbolic link, not this user's, or writable by others, and locked
//! while a stream runs (`flock`), so two streams cannot share it.
//!
//! What it holds of the data: the running totals, the partial aggregates
//! of every output merged across lanes, the values the lines publish
//! (a mean is kept as its sum and count). It is not encrypted: anyone who
//! can read it can read the stream's output. It holds no record and no
//! key.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::job::Totals;

const FILE: &str = "checkpoint.json";
const VERSION: u32 = 1;

/// Where the source was when an epoch ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    /// The followed file's identity (device and inode).
    pub file: u64,
    /// Bytes of it read up to the end of the epoch's last line.
    pub offset: u64,
    /// That line's number.
    pub line: u64,
    /// A directory source's file, by name (empty for a followed file).
    #[serde(default)]
    pub name: String,
    /// The SHA-256 of the bytes just before the offset: the file at the
    /// same inode is the same file only if they are still there.
    #[serde(default)]
    pub tail: String,
}

/// One epoch's checkpoint.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    version: u32,
    /// The program's query and the source, as SHA-256: a checkpoint of
    /// another stream is refused.
    pub stream: String,
    /// The next epoch's number.
    pub epoch: u64,
    pub records: u64,
    pub quarantined: u64,
    pub position: Position,
    pub totals: Totals,
    /// The SHA-256 of the checkpoint file it was loaded from (hex).
    #[serde(skip)]
    pub sha256: String,
}

impl Checkpoint {
    pub(crate) fn new(
        stream: String,
        epoch: u64,
        records: u64,
        quarantined: u64,
        position: Position,
        totals: Totals,
    ) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            stream,
            epoch,
            records,
            quarantined,
            position,
            totals,
            sha256: String::new(),
        }
    }

    /// What the audit log records of a stream that went on from it.
    pub(crate) fn resumed(&self) -> serde_json::Value {
        serde_json::json!({
            "checkpoint_sha256": self.sha256,
            "epoch": self.epoch,
            "records": self.records,
            "file": self.position.name,
            "offset": self.position.offset,
            "line": self.position.line,
        })
    }
}

/// A stream's state directory, locked while it is open.
#[derive(Debug)]
pub(crate) struct StateDir {
    dir: PathBuf,
    /// Held while the stream runs.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

fn fail(dir: &Path, why: impl std::fmt::Display) -> String {
    format!("--state {}: {why}", dir.display())
}

impl StateDir {
    /// Opens (creating it `0700` if missing) and locks `dir`.
    pub(crate) fn open(dir: &Path) -> Result<StateDir, String> {
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| fail(dir, e))?;
            }
            Err(e) => return Err(fail(dir, e)),
            Ok(m) if !m.is_dir() => {
                return Err(fail(dir, "not a directory (a symbolic link is refused)"));
            }
            Ok(m) if m.uid() != nix::unistd::geteuid().as_raw() => {
                return Err(fail(dir, "owned by another user"));
            }
            Ok(m) if m.permissions().mode() & 0o022 != 0 => {
                return Err(fail(dir, "writable by its group or others (chmod 700 it)"));
            }
            Ok(_) => {}
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(dir.join("lock"))
            .map_err(|e| fail(dir, e))?;
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| fail(dir, "another stream is using it"))?;
        Ok(StateDir {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// The last checkpoint, if there is one; refused if it is another
    /// stream's (`stream`).
    pub(crate) fn load(&self, stream: &str) -> Result<Option<Checkpoint>, String> {
        let path = self.dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other.map_err(|e| fail(&self.dir, e))?,
        };
        let mut c: Checkpoint = serde_json::from_slice(&bytes)
            .map_err(|e| fail(&self.dir, format!("{FILE} is not a checkpoint: {e}")))?;
        c.sha256 = symbiont_verify::hex(&sha2::Sha256::digest(&bytes));
        if c.version != VERSION {
            return Err(fail(&self.dir, format!("checkpoint version {}", c.version)));
        }
        if c.stream != stream {
            return Err(fail(
                &self.dir,
                "its checkpoint is of another program or source: give this stream a directory of its own",
            ));
        }
        Ok(Some(c))
    }

    /// Replaces the checkpoint with `c`, atomically.
    pub(crate) fn save(&self, c: &Checkpoint) -> Result<(), String> {
        let io = |e: std::io::Error| fail(&self.dir, e);
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        // A temporary file a killed stream left behind.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(&serde_json::to_vec(c).map_err(|e| fail(&self.dir, e))?)
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, self.dir.join(FILE)).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }
}

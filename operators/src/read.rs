//! What every format's reader shares: the errors of a source, what to do
//! after a bad row, what a pass saw, and the scan that cuts a text file
//! into parts at line ends. The readers (CSV in `source`, NDJSON,
//! Parquet and Arrow IPC) depend on this module, and `source` on them.

use std::path::PathBuf;

use crate::record::{Record, RowError};
use crate::value::Value;

/// The longest line a CSV or NDJSON source may hold, in bytes: a longer
/// one is refused, naming its line, before it fills memory (the parsers
/// keep a whole record in memory).
pub const MAX_LINE: usize = 16 << 20;

/// Reads through to `inner`, failing once a line runs past [`MAX_LINE`]
/// bytes; the error names the line, counted from `lines_before`. Reads are
/// at most 1 MiB, so no line that long can sit unseen between two line
/// ends of one read.
pub(crate) struct LineLimit<R> {
    inner: R,
    /// Bytes of the current line so far.
    run: usize,
    /// Lines ended so far.
    line: u64,
}

impl<R> LineLimit<R> {
    pub(crate) fn new(inner: R, lines_before: u64) -> LineLimit<R> {
        LineLimit {
            inner,
            run: 0,
            line: lines_before,
        }
    }
}

impl<R: std::io::Read> std::io::Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let cap = buf.len().min(1 << 20);
        let n = self.inner.read(&mut buf[..cap])?;
        let chunk = &buf[..n];
        let too_long = |line: u64| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {line} is longer than {MAX_LINE} bytes"),
            )
        };
        match (memchr::memchr(b'\n', chunk), memchr::memrchr(b'\n', chunk)) {
            (Some(first), Some(last)) => {
                if self.run + first > MAX_LINE {
                    return Err(too_long(self.line + 1));
                }
                self.line += bytecount::count(chunk, b'\n') as u64;
                self.run = n - last - 1;
            }
            _ => self.run += n,
        }
        if self.run > MAX_LINE {
            return Err(too_long(self.line + 1));
        }
        Ok(n)
    }
}

/// Why a source cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The header does not match the record struct.
    #[error("{path}:1: the header does not match `{schema}`: {reason}")]
    Header {
        /// The file.
        path: PathBuf,
        /// The struct's name.
        schema: String,
        /// What does not match.
        reason: String,
    },
    /// The CSV itself is malformed beyond one row.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
}

/// What the reader does after a bad row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterError {
    /// Keep reading.
    Continue,
    /// Stop reading.
    Stop,
}

/// What one pass over a part of a source saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Data rows in the part.
    pub rows: u64,
    /// Rows delivered as records.
    pub delivered: u64,
    /// Rows rejected.
    pub rejected: u64,
}

impl SourceStats {
    /// Hands a typed row to `on_record`, or its error to `on_error`,
    /// counting it; says whether to go on.
    pub(crate) fn deliver(
        &mut self,
        line: u64,
        typed: Result<Vec<Value>, RowError>,
        on_record: &mut impl FnMut(Record),
        on_error: &mut impl FnMut(RowError) -> AfterError,
    ) -> AfterError {
        match typed {
            Ok(values) => {
                self.delivered += 1;
                on_record(Record { line, values });
                AfterError::Continue
            }
            Err(e) => {
                self.rejected += 1;
                on_error(e)
            }
        }
    }
}

/// What one streaming pass over a file's data found.
pub(crate) struct LineScan {
    /// Whether the data holds a quote (then a line end may be inside a
    /// quoted field).
    pub(crate) quoted: bool,
    /// `parts` byte ranges `(start, end, lines before start)` that end at
    /// line ends.
    pub(crate) ranges: Vec<(u64, u64, u64)>,
    /// SHA-256 of every byte of the file, header included: the digest a
    /// job's audit entries give of its input, taken in this same pass.
    pub(crate) sha256: [u8; 32],
}

/// Streams `file` once from its start: finds quotes, and cuts the data
/// after `data_start` into `parts` ranges near equal sizes, each ending
/// after a line end, counting lines and hashing as it goes.
pub(crate) fn scan_lines(
    mut file: &std::fs::File,
    data_start: u64,
    parts: usize,
) -> std::io::Result<LineScan> {
    use sha2::Digest;
    use std::io::{Read, Seek};
    use std::sync::mpsc::sync_channel;
    file.seek(std::io::SeekFrom::Start(0))?;
    let len = file.metadata()?.len();
    // Lines before the data (a CSV file's header).
    let mut head_lines = 0u64;
    let targets: Vec<u64> = (1..parts)
        .map(|i| data_start + (len.saturating_sub(data_start)) * i as u64 / parts as u64)
        .collect();
    // cuts[i]: (offset, lines before it) of the start of part i + 1.
    let mut cuts: Vec<(u64, u64)> = Vec::with_capacity(parts);
    let mut quoted = false;
    let mut lines = 0u64;
    let mut offset = 0u64;
    // The blocks are hashed on a thread of their own while the next one
    // is scanned, and come back to be read into again.
    let (to_hash, blocks) = sync_channel::<Vec<u8>>(2);
    let (give_back, hashed) = sync_channel::<Vec<u8>>(4);
    let sha256 = std::thread::scope(|scope| -> std::io::Result<[u8; 32]> {
        let hashing = scope.spawn(move || {
            let mut hasher = sha2::Sha256::new();
            for block in blocks {
                hasher.update(&block);
                let _ = give_back.try_send(block);
            }
            let mut sha256 = [0u8; 32];
            sha256.copy_from_slice(&hasher.finalize());
            sha256
        });
        loop {
            let mut buffer = hashed.try_recv().unwrap_or_default();
            buffer.resize(1 << 20, 0);
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            buffer.truncate(n);
            let block = &buffer[..];
            if offset < data_start {
                let head = (data_start - offset).min(n as u64) as usize;
                head_lines += bytecount::count(&block[..head], b'\n') as u64;
            }
            let data_from = data_start.saturating_sub(offset).min(n as u64) as usize;
            quoted |= memchr::memchr(b'"', &block[data_from..]).is_some();
            // Cut after the first line end at or after each target in
            // reach.
            while let Some(&target) = targets.get(cuts.len()) {
                let from = target.max(data_start).saturating_sub(offset);
                if from >= n as u64 {
                    break;
                }
                match memchr::memchr(b'\n', &block[from as usize..]) {
                    Some(at) => {
                        let end = from as usize + at + 1;
                        let before = lines + bytecount::count(&block[..end], b'\n') as u64;
                        cuts.push((offset + end as u64, before));
                    }
                    None => break,
                }
            }
            lines += bytecount::count(block, b'\n') as u64;
            offset += n as u64;
            if to_hash.send(buffer).is_err() {
                break;
            }
        }
        drop(to_hash);
        Ok(hashing.join().expect("the hashing thread does not panic"))
    })?;
    while cuts.len() < targets.len() {
        cuts.push((len, lines));
    }
    let mut starts = vec![(data_start, head_lines)];
    starts.extend(cuts);
    let ranges = starts
        .iter()
        .enumerate()
        .map(|(i, &(start, lines))| {
            let end = starts.get(i + 1).map_or(len, |next| next.0);
            (start, end.max(start), lines)
        })
        .collect();
    Ok(LineScan {
        quoted,
        ranges,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Issue 21, point 9: a line past the limit fails the read, naming the
    /// line, wherever the reads cut it.
    #[test]
    fn a_line_past_the_limit_is_refused_naming_it() {
        let mut data = b"a,b\n1,2\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        data.extend_from_slice(b"\n3,4\n");
        let err = LineLimit::new(&data[..], 10)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("line 13 is longer than {MAX_LINE} bytes")
        );
        // At the limit, it reads through.
        let mut ok = b"a\n".to_vec();
        ok.extend(std::iter::repeat_n(b'x', MAX_LINE));
        ok.extend_from_slice(b"\nb\n");
        let mut out = Vec::new();
        LineLimit::new(&ok[..], 0).read_to_end(&mut out).unwrap();
        assert_eq!(out, ok);
    }
}

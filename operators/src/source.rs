//! Sources: typed records from CSV files, validated against the program's
//! record struct.
//!
//! CSV is read with the `csv` crate rather than `arrow-csv` because every
//! bad row must be reported (or quarantined) by its own line and field,
//! and the job must go on after it in quarantine mode; `arrow-csv` fails a
//! whole batch at the first bad value.

use std::path::{Path, PathBuf};

use crate::query::{FieldType, Schema};
use crate::record::{Record, RowError};
use crate::value::Value;

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

/// What one pass over a source saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Data rows in the file (all shards).
    pub rows: u64,
    /// Rows of this shard delivered as records.
    pub delivered: u64,
    /// Rows of this shard rejected.
    pub rejected: u64,
}

/// Reads the CSV file at `path` as records of `schema`.
///
/// Only the rows of shard `shard = (index, count)` (row number modulo
/// `count` equals `index`) are typed and delivered, so `count` workers can
/// share one file. Columns are matched to fields by name (extra columns are
/// ignored). A row that cannot be typed goes to `on_error`, which says
/// whether to go on.
pub fn read_csv(
    path: &Path,
    schema: &Schema,
    shard: (usize, usize),
    mut on_record: impl FnMut(Record),
    mut on_error: impl FnMut(RowError) -> AfterError,
) -> Result<SourceStats, SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(file);
    let columns = header_columns(path, schema, &mut reader)?;
    let width = reader.byte_headers().map(|h| h.len()).unwrap_or(0);
    let mut row = csv::ByteRecord::new();
    let mut stats = SourceStats::default();
    let (index, count) = shard;
    loop {
        match reader.read_byte_record(&mut row) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                return Err(match e.into_kind() {
                    csv::ErrorKind::Io(e) => io(e),
                    other => SourceError::Malformed {
                        path: path.to_owned(),
                        reason: format!("{other:?}"),
                    },
                });
            }
        }
        let n = stats.rows;
        stats.rows += 1;
        if n % count as u64 != index as u64 {
            continue;
        }
        let line = row.position().map_or(n + 2, |p| p.line());
        match type_row(&row, width, &columns, schema, line) {
            Ok(values) => {
                stats.delivered += 1;
                on_record(Record { line, values });
            }
            Err(e) => {
                stats.rejected += 1;
                if on_error(e) == AfterError::Stop {
                    break;
                }
            }
        }
    }
    Ok(stats)
}

/// For each schema field, the index of its column.
fn header_columns<R: std::io::Read>(
    path: &Path,
    schema: &Schema,
    reader: &mut csv::Reader<R>,
) -> Result<Vec<usize>, SourceError> {
    let mismatch = |reason: String| SourceError::Header {
        path: path.to_owned(),
        schema: schema.name.clone(),
        reason,
    };
    let header = reader
        .byte_headers()
        .map_err(|e| mismatch(format!("unreadable header ({e})")))?
        .clone();
    if header.is_empty() {
        return Err(mismatch("the file is empty (no header row)".into()));
    }
    let names: Vec<&str> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            std::str::from_utf8(h).map_err(|_| mismatch(format!("column {} is not UTF-8", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(mismatch(format!("the column `{name}` appears twice")));
        }
    }
    schema
        .fields
        .iter()
        .map(|(field, _)| {
            names
                .iter()
                .position(|n| n.trim() == field)
                .ok_or_else(|| mismatch(format!("no column for the field `{field}`")))
        })
        .collect()
}

fn type_row(
    row: &csv::ByteRecord,
    width: usize,
    columns: &[usize],
    schema: &Schema,
    line: u64,
) -> Result<Vec<Value>, RowError> {
    if row.len() != width {
        return Err(RowError {
            line,
            field: None,
            reason: format!(
                "the row has {} fields but the header has {width}",
                row.len()
            ),
        });
    }
    columns
        .iter()
        .zip(&schema.fields)
        .map(|(&column, (name, ty))| {
            let error = |reason: String| RowError {
                line,
                field: Some(name.clone()),
                reason,
            };
            let raw = std::str::from_utf8(&row[column])
                .map_err(|e| error(format!("not valid UTF-8 (at byte {})", e.valid_up_to())))?;
            parse_value(raw, *ty).map_err(error)
        })
        .collect()
}

/// Parses one field's text as `ty`. Errors describe the text's shape, never
/// its content.
pub fn parse_value(raw: &str, ty: FieldType) -> Result<Value, String> {
    let expected = |what: &str| {
        if raw.is_empty() {
            format!("missing value (expected {what})")
        } else {
            format!(
                "expected {what}, found a {}-character value that is not one",
                raw.chars().count()
            )
        }
    };
    match ty {
        FieldType::Str => Ok(Value::Str(raw.to_owned())),
        FieldType::Int => raw
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| expected("an int")),
        FieldType::Float => match raw.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(expected("a finite float")),
        },
        FieldType::Bool => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(expected("`true` or `false`")),
        },
    }
}

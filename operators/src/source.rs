//! Sources: typed records from CSV files, validated against the program's
//! record struct.
//!
//! CSV is read with the `csv` crate rather than `arrow-csv` because every
//! bad row must be reported (or quarantined) by its own line and field,
//! and the job must go on after it in quarantine mode; `arrow-csv` fails a
//! whole batch at the first bad value.

use std::path::{Path, PathBuf};

use crate::query::{FieldType, Schema};
use crate::read::{AfterError, SourceError, SourceStats, scan_lines};
use crate::record::{Record, RowError};
use crate::value::Value;

/// The file formats a source can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row (`.csv`).
    Csv,
    /// One JSON object per line (`.ndjson`, `.jsonl`).
    Ndjson,
    /// Apache Parquet (`.parquet`).
    Parquet,
    /// Arrow IPC file format (`.arrow`, `.ipc`, `.feather`).
    ArrowIpc,
}

impl Format {
    /// The format of a file, by its extension.
    pub fn of_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "parquet" => Some(Format::Parquet),
            "arrow" | "ipc" | "feather" => Some(Format::ArrowIpc),
            _ => None,
        }
    }

    /// The format's name, as `explain` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Parquet => "parquet",
            Format::ArrowIpc => "arrow-ipc",
        }
    }
}

/// A dataset file checked against the record struct and divided among
/// readers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source(SourceKind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum SourceKind {
    Csv(CsvLayout),
    Ndjson(crate::ndjson::NdjsonLayout),
    Columnar(crate::columnar::ColumnarSource),
}

impl Source {
    /// Opens the file at `path` in `format`, checks its columns against
    /// `schema`, and divides it into at most `parts` parts.
    pub fn open(
        path: &Path,
        format: Format,
        schema: &Schema,
        parts: usize,
    ) -> Result<Source, SourceError> {
        use crate::columnar::{Columnar, ColumnarSource};
        Ok(Source(match format {
            Format::Csv => SourceKind::Csv(CsvLayout::new(path, schema, parts)?),
            Format::Ndjson => SourceKind::Ndjson(crate::ndjson::NdjsonLayout::new(path, parts)?),
            Format::Parquet => {
                SourceKind::Columnar(ColumnarSource::new(path, Columnar::Parquet, schema)?)
            }
            Format::ArrowIpc => {
                SourceKind::Columnar(ColumnarSource::new(path, Columnar::ArrowIpc, schema)?)
            }
        }))
    }

    /// SHA-256 of the whole file, taken by the scan that divided a CSV or
    /// NDJSON file among readers (so the file is not read again for it);
    /// `None` for the columnar formats, whose readers do not read every
    /// byte in order.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        match &self.0 {
            SourceKind::Csv(c) => Some(c.sha256),
            SourceKind::Ndjson(n) => Some(n.sha256),
            SourceKind::Columnar(_) => None,
        }
    }

    /// Reads part `part` (of `parts`, as opened; a part beyond the file's
    /// division reads nothing) as records of `schema`. Every field of every
    /// row is validated, but only the fields marked in `used` are kept;
    /// the others are [`Value::Null`]. A row that cannot be typed goes to
    /// `on_error`, which says whether to go on.
    pub fn read(
        &self,
        part: usize,
        schema: &Schema,
        used: &[bool],
        on_record: impl FnMut(Record),
        on_error: impl FnMut(RowError) -> AfterError,
    ) -> Result<SourceStats, SourceError> {
        match &self.0 {
            SourceKind::Csv(c) if part < c.parts() => {
                c.read(part, schema, used, on_record, on_error)
            }
            SourceKind::Ndjson(n) if part < n.parts() => {
                n.read(part, schema, used, on_record, on_error)
            }
            SourceKind::Columnar(c) => c.read(part, schema, used, on_record, on_error),
            _ => Ok(SourceStats::default()),
        }
    }
}

/// How a CSV file is shared among readers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Parts {
    /// Byte ranges `(start, end, lines before start)`, split at line ends.
    Ranges(Vec<(u64, u64, u64)>),
    /// Every reader scans the whole file and keeps rows `n % count ==
    /// part`: for files with quotes, where a line end may lie inside a
    /// quoted field and byte ranges cannot be cut safely.
    Interleaved(usize),
}

/// A CSV file checked against a schema and divided among readers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CsvLayout {
    path: PathBuf,
    /// For each schema field, its column.
    columns: Vec<usize>,
    /// Columns in the header.
    width: usize,
    /// Where the data starts (after the header line).
    data_start: u64,
    /// Lines before the data.
    header_lines: u64,
    parts: Parts,
    /// SHA-256 of the whole file, from the scan that cut the parts.
    sha256: [u8; 32],
}

impl CsvLayout {
    /// Checks the header of the CSV file at `path` against `schema` and
    /// divides its rows into `parts` parts for parallel readers. Columns are
    /// matched to fields by name; extra columns are ignored.
    pub(crate) fn new(
        path: &Path,
        schema: &Schema,
        parts: usize,
    ) -> Result<CsvLayout, SourceError> {
        let io = |source| SourceError::Io {
            path: path.to_owned(),
            source,
        };
        let parts = parts.max(1);
        // Opened once: the header is read, then the same file is scanned.
        let file = std::fs::File::open(path).map_err(io)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(&file);
        let columns = header_columns(path, schema, &mut reader)?;
        let width = reader.byte_headers().map(|h| h.len()).unwrap_or(0);
        let data_start = reader.position().byte();
        drop(reader);
        let scan = scan_lines(&file, data_start, parts).map_err(io)?;
        let header_lines = scan.ranges[0].2;
        let parts = if parts == 1 || scan.quoted {
            Parts::Interleaved(parts)
        } else {
            Parts::Ranges(scan.ranges)
        };
        Ok(CsvLayout {
            path: path.to_owned(),
            columns,
            width,
            data_start,
            header_lines,
            parts,
            sha256: scan.sha256,
        })
    }

    /// How many parts there are.
    pub(crate) fn parts(&self) -> usize {
        match &self.parts {
            Parts::Ranges(r) => r.len(),
            Parts::Interleaved(n) => *n,
        }
    }

    /// Reads part `part` as records of `schema` (the schema the layout was
    /// made for). Every field of every row is validated, but only the
    /// fields marked in `used` are kept; the others are [`Value::Null`]. A
    /// row that cannot be typed goes to `on_error`, which says whether to
    /// go on.
    pub(crate) fn read(
        &self,
        part: usize,
        schema: &Schema,
        used: &[bool],
        mut on_record: impl FnMut(Record),
        mut on_error: impl FnMut(RowError) -> AfterError,
    ) -> Result<SourceStats, SourceError> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path.as_path();
        let io = |source| SourceError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let (start, end, lines_before, keep) = match &self.parts {
            Parts::Ranges(ranges) => {
                let (start, end, lines) = ranges[part];
                (start, end, lines, None)
            }
            Parts::Interleaved(count) => (
                self.data_start,
                u64::MAX,
                self.header_lines,
                Some((part as u64, *count as u64)),
            ),
        };
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(crate::read::LineLimit::new(
                file.take(end.saturating_sub(start)),
                lines_before,
            ));
        let mut row = csv::ByteRecord::new();
        let mut stats = SourceStats::default();
        let mut n = 0u64;
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
            let index = n;
            n += 1;
            if let Some((part, count)) = keep
                && index % count != part
            {
                continue;
            }
            stats.rows += 1;
            let line = lines_before + row.position().map_or(index + 1, |p| p.line());
            let typed = type_row(&row, self.width, &self.columns, schema, used, line);
            if stats.deliver(line, typed, &mut on_record, &mut on_error) == AfterError::Stop {
                break;
            }
        }
        Ok(stats)
    }
}

/// For each schema field, the index of its column.
pub(crate) fn header_columns<R: std::io::Read>(
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

pub(crate) fn type_row(
    row: &csv::ByteRecord,
    width: usize,
    columns: &[usize],
    schema: &Schema,
    used: &[bool],
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
    // One validation of the whole row (fast, vectorized), then each field
    // is a slice of it; only a row that fails is checked field by field,
    // to name the field.
    let whole = simdutf8::basic::from_utf8(row.as_slice()).ok();
    let mut values = Vec::with_capacity(columns.len());
    for (f, ((&column, (name, ty)), &used)) in columns
        .iter()
        .zip(&schema.fields)
        .zip(used.iter().chain(std::iter::repeat(&true)))
        .enumerate()
    {
        let error = |reason: String| RowError {
            line,
            field: Some(name.clone()),
            reason,
        };
        let raw = match (whole, row.range(column)) {
            (Some(all), Some(range)) => &all[range],
            _ => std::str::from_utf8(&row[column])
                .map_err(|e| error(format!("not valid UTF-8 (at byte {})", e.valid_up_to())))?,
        };
        values.push(if !used && *ty == FieldType::Str {
            Value::Null
        } else {
            let value = parse_value(raw, *ty).map_err(error)?;
            in_range(schema, f, &value).map_err(error)?;
            if used { value } else { Value::Null }
        });
    }
    Ok(values)
}

/// Whether `value` of field `f` lies in the range its type declares
/// (`type Age = int with range(0, 150)`); the error names the range, never
/// the value.
pub(crate) fn in_range(schema: &Schema, f: usize, value: &Value) -> Result<(), String> {
    match value {
        Value::Int(v) => schema.out_of_range(f, *v).map_or(Ok(()), Err),
        _ => Ok(()),
    }
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

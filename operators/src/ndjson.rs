//! NDJSON sources: one JSON object per line, keys matched to fields.
//!
//! Read line by line with `serde_json` (not `arrow-json`) for the same
//! reason as CSV: each bad line must be reported or quarantined on its own,
//! by line number and field, and reading must go on after it.

use std::path::{Path, PathBuf};

use crate::query::{FieldType, Schema};
use crate::read::{AfterError, SourceError, SourceStats, scan_lines};
use crate::record::{Record, RowError};
use crate::value::Value;

/// An NDJSON file divided among readers at line ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NdjsonLayout {
    path: PathBuf,
    /// Byte ranges `(start, end, lines before start)`.
    ranges: Vec<(u64, u64, u64)>,
    /// SHA-256 of the whole file, from the scan that cut the ranges.
    pub(crate) sha256: [u8; 32],
}

impl NdjsonLayout {
    pub(crate) fn new(path: &Path, parts: usize) -> Result<NdjsonLayout, SourceError> {
        let io = |source| SourceError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let scan = scan_lines(&file, 0, parts.max(1)).map_err(io)?;
        // A JSON string cannot hold a raw line end, so every line end
        // separates records, quotes or not.
        Ok(NdjsonLayout {
            path: path.to_owned(),
            ranges: scan.ranges,
            sha256: scan.sha256,
        })
    }

    pub(crate) fn parts(&self) -> usize {
        self.ranges.len()
    }

    pub(crate) fn read(
        &self,
        part: usize,
        schema: &Schema,
        used: &[bool],
        mut on_record: impl FnMut(Record),
        mut on_error: impl FnMut(RowError) -> AfterError,
    ) -> Result<SourceStats, SourceError> {
        use std::io::{BufRead, Read, Seek, SeekFrom};
        let io = |source| SourceError::Io {
            path: self.path.clone(),
            source,
        };
        let (start, end, lines_before) = self.ranges[part];
        let mut file = std::fs::File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut reader = std::io::BufReader::with_capacity(
            1 << 20,
            crate::read::LineLimit::new(file.take(end - start), lines_before),
        );
        let mut stats = SourceStats::default();
        let mut buffer = Vec::new();
        let mut line = lines_before;
        loop {
            buffer.clear();
            if reader.read_until(b'\n', &mut buffer).map_err(io)? == 0 {
                break;
            }
            line += 1;
            let text = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            stats.rows += 1;
            let typed = type_line(text, schema, used, line);
            if stats.deliver(line, typed, &mut on_record, &mut on_error) == AfterError::Stop {
                break;
            }
        }
        Ok(stats)
    }
}

pub(crate) fn type_line(
    text: &[u8],
    schema: &Schema,
    used: &[bool],
    line: u64,
) -> Result<Vec<Value>, RowError> {
    let row_error = |reason: String| RowError {
        line,
        field: None,
        reason,
    };
    if let Err(e) = std::str::from_utf8(text) {
        return Err(row_error(format!(
            "not valid UTF-8 (at byte {})",
            e.valid_up_to()
        )));
    }
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(text).map_err(|e| {
            row_error(format!(
                "not a JSON object (column {}: {})",
                e.column(),
                e.classify_str()
            ))
        })?;
    schema
        .fields
        .iter()
        .zip(used.iter().chain(std::iter::repeat(&true)))
        .enumerate()
        .map(|(f, ((name, ty), &used))| {
            let error = |reason: String| RowError {
                line,
                field: Some(name.clone()),
                reason,
            };
            let value = match object.get(name) {
                None => return Err(error("missing field".into())),
                Some(v) => json_value(v, *ty).map_err(error)?,
            };
            crate::source::in_range(schema, f, &value).map_err(error)?;
            Ok(if used { value } else { Value::Null })
        })
        .collect()
}

trait Classify {
    fn classify_str(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "not an object",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

/// A JSON value as `ty`. Errors name the JSON type found, never the value.
fn json_value(v: &serde_json::Value, ty: FieldType) -> Result<Value, String> {
    let found = || match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    };
    let mismatch = || format!("expected {}, found {}", ty.name(), found());
    match (ty, v) {
        (_, serde_json::Value::Null) => Err("missing value (null)".into()),
        (FieldType::Int, serde_json::Value::Number(n)) => n
            .as_i64()
            .map(Value::Int)
            .ok_or_else(|| "expected an int, found a number that is not a 64-bit integer".into()),
        (FieldType::Float, serde_json::Value::Number(n)) => {
            n.as_f64().map(Value::Float).ok_or_else(mismatch)
        }
        (FieldType::Str, serde_json::Value::String(s)) => Ok(Value::Str(s.clone())),
        (FieldType::Bool, serde_json::Value::Bool(b)) => Ok(Value::Bool(*b)),
        _ => Err(mismatch()),
    }
}

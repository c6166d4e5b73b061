//! Records typed one line at a time, as a stream delivers them: the same
//! checks as the file readers ([`crate::Source`]), without a file to scan
//! or divide among workers.

use crate::query::Schema;
use crate::read::SourceError;
use crate::record::RowError;
use crate::source::Format;
use crate::value::Value;

/// Types the lines of one stream of CSV or NDJSON text.
#[derive(Clone, Debug)]
pub enum LineTyper {
    /// CSV: for each schema field, its column, and the header's width.
    Csv { columns: Vec<usize>, width: usize },
    /// One JSON object per line.
    Ndjson,
}

impl LineTyper {
    /// For NDJSON (no header), or for CSV whose `header` line names the
    /// columns; `name` is how errors name the stream.
    pub fn new(
        format: Format,
        header: Option<&[u8]>,
        schema: &Schema,
        name: &std::path::Path,
    ) -> Result<LineTyper, SourceError> {
        match format {
            Format::Ndjson => Ok(LineTyper::Ndjson),
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(header.unwrap_or_default());
                let columns = crate::source::header_columns(name, schema, &mut reader)?;
                let width = reader.byte_headers().map_or(0, |h| h.len());
                Ok(LineTyper::Csv { columns, width })
            }
            other => Err(SourceError::Malformed {
                path: name.to_owned(),
                reason: format!("a stream is CSV or NDJSON, not {}", other.name()),
            }),
        }
    }

    /// Line `line` (1-based, the header counted) typed as a record of
    /// `schema`, keeping the fields `used` marks; the error names the line
    /// and the field, never a value.
    pub fn type_line(
        &self,
        text: &[u8],
        schema: &Schema,
        used: &[bool],
        line: u64,
    ) -> Result<Vec<Value>, RowError> {
        match self {
            LineTyper::Ndjson => crate::ndjson::type_line(text, schema, used, line),
            LineTyper::Csv { columns, width } if !text.contains(&b'"') => {
                // No quote: the fields are what lies between the commas (a
                // CSV reader per line would cost more than the typing).
                let row = csv::ByteRecord::from(text.split(|b| *b == b',').collect::<Vec<_>>());
                crate::source::type_row(&row, *width, columns, schema, used, line)
            }
            LineTyper::Csv { columns, width } => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(text);
                let mut row = csv::ByteRecord::new();
                match reader.read_byte_record(&mut row) {
                    Ok(true) => {}
                    Ok(false) => row.clear(),
                    Err(e) => {
                        return Err(RowError {
                            line,
                            field: None,
                            reason: format!("not a CSV row ({:?})", e.kind()),
                        });
                    }
                }
                crate::source::type_row(&row, *width, columns, schema, used, line)
            }
        }
    }
}

//! Parquet and Arrow IPC sources, read with the `arrow` crates.
//!
//! Columns are matched to fields by name and must have a compatible type
//! (any integer width for `int`, float32/64 for `float`, any UTF-8 string
//! type for `string`, boolean for `bool`); a null is a missing value of
//! that row. Rows are numbered from 1 in file order. One reader reads the
//! whole file (these formats are not split among workers yet).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use crate::query::{FieldType, Schema};
use crate::read::{AfterError, SourceError, SourceStats};
use crate::record::{Record, RowError};
use crate::value::Value;

/// Which columnar format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Columnar {
    Parquet,
    ArrowIpc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ColumnarSource {
    path: PathBuf,
    format: Columnar,
}

impl ColumnarSource {
    pub(crate) fn new(
        path: &Path,
        format: Columnar,
        schema: &Schema,
    ) -> Result<ColumnarSource, SourceError> {
        let source = ColumnarSource {
            path: path.to_owned(),
            format,
        };
        // Check the columns now, so a mismatch is one error before the job.
        let arrow_schema = source.batches()?.0;
        columns(path, &arrow_schema, schema)?;
        Ok(source)
    }

    fn malformed(&self, reason: impl std::fmt::Display) -> SourceError {
        SourceError::Malformed {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    #[allow(clippy::type_complexity)]
    fn batches(
        &self,
    ) -> Result<
        (
            arrow_schema::SchemaRef,
            Box<dyn Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>>,
        ),
        SourceError,
    > {
        let file = std::fs::File::open(&self.path).map_err(|source| SourceError::Io {
            path: self.path.clone(),
            source,
        })?;
        match self.format {
            Columnar::Parquet => {
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .map_err(|e| self.malformed(e))?
                        .with_batch_size(8192)
                        .build()
                        .map_err(|e| self.malformed(e))?;
                use arrow_array::RecordBatchReader;
                Ok((reader.schema(), Box::new(reader)))
            }
            Columnar::ArrowIpc => {
                let reader = arrow_ipc::reader::FileReader::try_new(file, None)
                    .map_err(|e| self.malformed(e))?;
                Ok((reader.schema(), Box::new(reader)))
            }
        }
    }

    pub(crate) fn read(
        &self,
        part: usize,
        schema: &Schema,
        used: &[bool],
        mut on_record: impl FnMut(Record),
        mut on_error: impl FnMut(RowError) -> AfterError,
    ) -> Result<SourceStats, SourceError> {
        let mut stats = SourceStats::default();
        if part != 0 {
            return Ok(stats);
        }
        let (arrow_schema, batches) = self.batches()?;
        let indices = columns(&self.path, &arrow_schema, schema)?;
        let mut row_number = 0u64;
        for batch in batches {
            let batch = batch.map_err(|e| self.malformed(e))?;
            let cols: Vec<ArrayRef> = indices
                .iter()
                .zip(&schema.fields)
                .map(|(&i, (_, ty))| normalize(batch.column(i), *ty))
                .collect::<Result<_, _>>()
                .map_err(|e| self.malformed(e))?;
            for r in 0..batch.num_rows() {
                row_number += 1;
                stats.rows += 1;
                let typed = type_row(&cols, schema, used, r, row_number);
                if stats.deliver(row_number, typed, &mut on_record, &mut on_error)
                    == AfterError::Stop
                {
                    return Ok(stats);
                }
            }
        }
        Ok(stats)
    }
}

/// For each field, its column index, checking names and types.
fn columns(
    path: &Path,
    arrow: &arrow_schema::Schema,
    schema: &Schema,
) -> Result<Vec<usize>, SourceError> {
    let mismatch = |reason: String| SourceError::Header {
        path: path.to_owned(),
        schema: schema.name.clone(),
        reason,
    };
    schema
        .fields
        .iter()
        .map(|(name, ty)| {
            let (index, field) = arrow
                .column_with_name(name)
                .ok_or_else(|| mismatch(format!("no column for the field `{name}`")))?;
            let compatible = match ty {
                FieldType::Int => field.data_type().is_integer(),
                FieldType::Float => {
                    matches!(field.data_type(), DataType::Float32 | DataType::Float64)
                }
                FieldType::Str => matches!(
                    field.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ),
                FieldType::Bool => field.data_type() == &DataType::Boolean,
            };
            if !compatible {
                return Err(mismatch(format!(
                    "the column `{name}` holds {}, the field is {}",
                    field.data_type(),
                    ty.name()
                )));
            }
            Ok(index)
        })
        .collect()
}

/// The column as Int64, Float64, Utf8 or Boolean. The cast is not "safe"
/// in arrow's sense (which turns what does not fit into nulls): an unsigned
/// integer beyond the 64-bit signed range fails the file instead.
fn normalize(column: &ArrayRef, ty: FieldType) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let target = match ty {
        FieldType::Int => DataType::Int64,
        FieldType::Float => DataType::Float64,
        FieldType::Str => DataType::Utf8,
        FieldType::Bool => return Ok(Arc::clone(column)),
    };
    if column.data_type() == &target {
        return Ok(Arc::clone(column));
    }
    let options = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow_cast::cast_with_options(column, &target, &options)
}

fn type_row(
    cols: &[ArrayRef],
    schema: &Schema,
    used: &[bool],
    r: usize,
    row: u64,
) -> Result<Vec<Value>, RowError> {
    let mut values = Vec::with_capacity(cols.len());
    for (f, ((col, (name, ty)), &used)) in cols
        .iter()
        .zip(&schema.fields)
        .zip(used.iter().chain(std::iter::repeat(&true)))
        .enumerate()
    {
        if col.is_null(r) {
            return Err(RowError {
                line: row,
                field: Some(name.clone()),
                reason: "missing value (null)".into(),
            });
        }
        if *ty == FieldType::Int {
            // Checked whether the job uses the field or not, as the text
            // readers do.
            let v = Value::Int(col.as_primitive::<Int64Type>().value(r));
            crate::source::in_range(schema, f, &v).map_err(|reason| RowError {
                line: row,
                field: Some(name.clone()),
                reason,
            })?;
        }
        if !used {
            values.push(Value::Null);
            continue;
        }
        values.push(match ty {
            FieldType::Int => Value::Int(col.as_primitive::<Int64Type>().value(r)),
            FieldType::Float => {
                let f = col.as_primitive::<Float64Type>().value(r);
                if !f.is_finite() {
                    return Err(RowError {
                        line: row,
                        field: Some(name.clone()),
                        reason: "expected a finite float".into(),
                    });
                }
                Value::Float(f)
            }
            FieldType::Str => Value::Str(col.as_string::<i32>().value(r).to_owned()),
            FieldType::Bool => Value::Bool(col.as_boolean().value(r)),
        });
    }
    Ok(values)
}

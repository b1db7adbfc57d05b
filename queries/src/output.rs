//! Result formats for the CLI and the HTTP API.

use arrow::array::RecordBatch;

use crate::{Error, Result};

/// How to print query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned text table.
    Table,
    /// A JSON array of row objects.
    Json,
    /// CSV with a header line.
    Csv,
    /// Arrow IPC stream (binary).
    Arrow,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "arrow" => Ok(Format::Arrow),
            other => Err(format!(
                "unknown format {other:?}: use table, json, csv or arrow"
            )),
        }
    }
}

/// Encodes record batches in the given format.
pub fn encode(batches: &[RecordBatch], format: Format) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        Format::Table => {
            let t = arrow::util::pretty::pretty_format_batches(batches)?;
            out.extend_from_slice(t.to_string().as_bytes());
            out.push(b'\n');
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs)?;
            w.finish()?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in batches {
                w.write(&flatten_nested(b)?)?;
            }
        }
        Format::Arrow => {
            let Some(first) = batches.first() else {
                return Err(Error::Output("no result batches to encode as Arrow".into()));
            };
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &first.schema())?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(out)
}

/// CSV has no nested values: lists, maps and structs become their text form
/// (`[a, b]`, `{k: v}`), nulls stay empty.
fn flatten_nested(b: &RecordBatch) -> Result<RecordBatch> {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let nested = |t: &DataType| {
        matches!(
            t,
            DataType::List(_)
                | DataType::LargeList(_)
                | DataType::FixedSizeList(..)
                | DataType::Map(..)
                | DataType::Struct(_)
        )
    };
    if !b.schema().fields().iter().any(|f| nested(f.data_type())) {
        return Ok(b.clone());
    }
    let mut fields = Vec::with_capacity(b.num_columns());
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if !nested(f.data_type()) {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
            continue;
        }
        let fmt = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())?;
        let mut s = StringBuilder::with_capacity(c.len(), c.len() * 16);
        for i in 0..c.len() {
            if c.is_null(i) {
                s.append_null();
            } else {
                s.append_value(fmt.value(i).to_string());
            }
        }
        fields.push(Field::new(f.name(), DataType::Utf8, true));
        cols.push(Arc::new(s.finish()));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

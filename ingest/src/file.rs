//! Reading event files: JSON lines, a JSON array, or CSV exported from an ERP with a
//! mapping from columns to event fields.
//!
//! Every input unit becomes exactly one record, even when it is broken: a line or array
//! element that is not valid JSON is passed on byte for byte, so the processors reject it
//! with a reason code and keep the original. Nothing is skipped except blank lines.
//!
//! ## CSV mapping
//!
//! A TOML file maps event fields (dotted paths for nested ones) to a CSV column or a
//! constant. Optional per field: `type` (`string`, `number`, `integer`, `bool`, `list`),
//! `split` (separator for `list`), `prefix`, and `map` (value translation, e.g. ERP
//! movement types to event types). An empty cell omits the field.
//!
//! ```toml
//! [fields]
//! event_id = { column = "Material Doc", prefix = "sap:mb51:" }
//! event_type = { column = "MvT", map = { "101" = "warehouse_in", "601" = "sale" } }
//! event_time = { column = "Entry Time" }
//! trace_code = { column = "Batch" }
//! "participant.id" = { value = "plant-sh-01" }
//! "participant.role" = { value = "manufacturer" }
//! "quantity.value" = { column = "Qty", type = "number" }
//! "quantity.unit" = { column = "UoM" }
//! site = { column = "Plant" }
//! inputs = { column = "Components", type = "list", split = ";" }
//! ```
//!
//! A value that cannot be converted (a `number` cell reading `n/a`) is kept as a string, so
//! validation rejects the record with `bad_field_type` instead of the row disappearing.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    JsonLines,
    /// One JSON array of objects.
    JsonArray,
    /// CSV with a header row, mapped to events by a [`CsvMapping`].
    Csv,
    /// COSE_Sign1 envelopes as a CBOR sequence (RFC 8742), as `veritrace sign --format
    /// cose` writes them: each envelope is one record, its bytes as they are.
    Cose,
    /// A GS1 EPCIS 2.0 document (JSON-LD `EPCISDocument` or `EPCISQueryDocument`): each
    /// event mapped to Veritrace events ([`crate::epcis`]).
    Epcis,
}

impl std::str::FromStr for FileFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" | "ndjson" | "json-lines" => Ok(FileFormat::JsonLines),
            "json" | "json-array" => Ok(FileFormat::JsonArray),
            "csv" => Ok(FileFormat::Csv),
            "cose" | "cbor" => Ok(FileFormat::Cose),
            "epcis" | "jsonld" => Ok(FileFormat::Epcis),
            other => Err(format!(
                "unknown format {other:?} (expected jsonl, json, csv, cose or epcis)"
            )),
        }
    }
}

impl FileFormat {
    /// Guesses the format from the file name, then from the first non-blank byte.
    pub fn detect(path: &Path, head: &[u8]) -> FileFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => return FileFormat::Csv,
            Some("jsonl" | "ndjson") => return FileFormat::JsonLines,
            Some("cose" | "cbor") => return FileFormat::Cose,
            Some("jsonld") => return FileFormat::Epcis,
            _ => {}
        }
        // COSE_Sign1: tag 18 or an array of four; no text starts with these bytes.
        if matches!(head.first(), Some(0xd2 | 0x84)) {
            return FileFormat::Cose;
        }
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => FileFormat::JsonArray,
            // An EPCIS document in a `.json` file: one object with an EPCIS body.
            Some(b'{') if head.windows(11).any(|w| w == b"\"epcisBody\"") => FileFormat::Epcis,
            _ => FileFormat::JsonLines,
        }
    }
}

/// Errors reading a file (not bad records: those become rejections downstream).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The CSV mapping is unusable.
    #[error("csv mapping {path}: {detail}")]
    Mapping {
        /// Which mapping file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The CSV file itself is unreadable (no header row, ...).
    #[error("csv {path}: {detail}")]
    Csv {
        /// Which file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// An EPCIS document cannot be imported as asked (no recorder given, ...).
    #[error("epcis {path}: {detail}")]
    Epcis {
        /// Which file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// Splits JSON lines: each non-blank line is one record (a trailing `\r` is removed).
pub fn json_lines(data: &[u8]) -> Vec<Vec<u8>> {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Splits a JSON array into its elements' original bytes without parsing them (each is
/// validated downstream). If the text is not an array, or breaks off, the unparsable
/// remainder becomes one last record, so it is rejected and kept rather than lost.
pub fn json_array(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < data.len() && data[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if data.get(i) != Some(&b'[') {
        if i < data.len() {
            out.push(data[i..].to_vec());
        }
        return out;
    }
    i += 1;
    loop {
        skip_ws(&mut i);
        match data.get(i) {
            None => return out,
            Some(b']') => {
                i += 1;
                skip_ws(&mut i);
                if i < data.len() {
                    out.push(data[i..].to_vec());
                }
                return out;
            }
            Some(b',') => {
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let start = i;
        let (mut depth, mut in_str, mut esc) = (0i64, false, false);
        while i < data.len() {
            let b = data[i];
            if in_str {
                if esc {
                    esc = false;
                } else if b == b'\\' {
                    esc = true;
                } else if b == b'"' {
                    in_str = false;
                }
            } else {
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b']' | b',' if depth == 0 => break,
                    _ => {}
                }
            }
            i += 1;
        }
        let mut end = i;
        while end > start && data[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        out.push(data[start..end].to_vec());
        if i >= data.len() {
            return out;
        }
    }
}

/// How one event field is filled from a CSV row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    /// The CSV column (header name).
    pub column: Option<String>,
    /// A constant instead of a column.
    pub value: Option<toml::Value>,
    /// Conversion: string (default), number, integer, bool, list.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Separator for `list`.
    pub split: Option<String>,
    /// Text put before the cell value.
    pub prefix: Option<String>,
    /// Value translation table.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
}

/// A CSV-to-event mapping (see the module docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvMapping {
    /// Field delimiter (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Event field (dotted path) -> how to fill it.
    pub fields: BTreeMap<String, FieldMap>,
}

impl CsvMapping {
    /// Loads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let bad = |detail: String| FileError::Mapping {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Self::parse(&text).map_err(bad)
    }

    /// Parses and checks a mapping.
    pub fn parse(text: &str) -> Result<Self, String> {
        let m: CsvMapping = toml::from_str(text).map_err(|e| e.to_string())?;
        for (field, f) in &m.fields {
            if f.column.is_some() == f.value.is_some() {
                return Err(format!(
                    "field {field}: give exactly one of `column` or `value`"
                ));
            }
            match f.kind.as_deref() {
                None | Some("string" | "number" | "integer" | "bool" | "list") => {}
                Some(k) => {
                    return Err(format!(
                        "field {field}: unknown type {k:?} (string, number, integer, bool, list)"
                    ));
                }
            }
            if field.split('.').any(str::is_empty) {
                return Err(format!("field {field:?}: empty path segment"));
            }
        }
        if !m.fields.contains_key("event_id") {
            return Err("no mapping for event_id: every event needs its source id".into());
        }
        Ok(m)
    }

    /// Converts a CSV file into one JSON record per data row. A row that cannot be read as
    /// text becomes a record holding its raw bytes (rejected downstream, kept).
    pub fn records(&self, csv_path: &str, data: &[u8]) -> Result<Vec<Vec<u8>>, FileError> {
        let bad = |detail: String| FileError::Csv {
            path: csv_path.to_owned(),
            detail,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(self.delimiter.unwrap_or(',') as u8)
            .flexible(true)
            .from_reader(data);
        let headers = rdr
            .byte_headers()
            .map_err(|e| bad(format!("header row: {e}")))?
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_owned())
            .collect::<Vec<_>>();
        let mut index = BTreeMap::new();
        for (field, f) in &self.fields {
            if let Some(c) = &f.column {
                let i = headers.iter().position(|h| h == c).ok_or_else(|| {
                    bad(format!(
                        "field {field} maps column {c:?}, which is not in the header ({})",
                        headers.join(", ")
                    ))
                })?;
                index.insert(field.as_str(), i);
            }
        }
        let mut out = Vec::new();
        let mut row = csv::ByteRecord::new();
        loop {
            match rdr.read_byte_record(&mut row) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(bad(format!("{e}"))),
            }
            let cells: Option<Vec<&str>> =
                row.iter().map(|c| std::str::from_utf8(c).ok()).collect();
            let Some(cells) = cells else {
                let raw: Vec<u8> = row.iter().collect::<Vec<_>>().join(&b","[..]);
                out.push(raw);
                continue;
            };
            let mut obj = Map::new();
            for (field, f) in &self.fields {
                let v = match (&f.value, index.get(field.as_str())) {
                    (Some(c), _) => toml_to_json(c),
                    (None, Some(&i)) => {
                        let cell = cells.get(i).map_or("", |c| c.trim());
                        if cell.is_empty() {
                            continue;
                        }
                        convert(f, cell)
                    }
                    (None, None) => continue,
                };
                insert_path(&mut obj, field, v);
            }
            out.push(serde_json::to_vec(&Value::Object(obj)).unwrap_or_default());
        }
        Ok(out)
    }
}

fn convert(f: &FieldMap, cell: &str) -> Value {
    let mapped = f.map.get(cell).map_or(cell, String::as_str);
    let text = match &f.prefix {
        Some(p) => format!("{p}{mapped}"),
        None => mapped.to_owned(),
    };
    match f.kind.as_deref() {
        Some("number") => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(text), Value::Number),
        Some("integer") => text
            .parse::<i64>()
            .map_or(Value::String(text), |n| Value::Number(n.into())),
        Some("bool") => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "y" => Value::Bool(true),
            "false" | "no" | "0" | "n" => Value::Bool(false),
            _ => Value::String(text),
        },
        Some("list") => {
            let sep = f.split.as_deref().unwrap_or(";");
            Value::Array(
                text.split(sep)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            )
        }
        _ => Value::String(text),
    }
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Number((*i).into()),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

fn insert_path(obj: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            obj.insert(path.to_owned(), v);
        }
        Some((head, rest)) => {
            let child = obj
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(m) = child {
                insert_path(m, rest, v);
            }
        }
    }
}

/// Splits a CBOR sequence into its items, each with its bytes as written. Whatever does not
/// decode (a torn or damaged tail) is kept as one last record, for the pipeline to reject
/// with its reason rather than lose it.
pub fn cbor_sequence(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let mut reader = rest;
        match ciborium::de::from_reader_with_recursion_limit::<ciborium::value::Value, _>(
            &mut reader,
            16,
        ) {
            Ok(_) => {
                let used = rest.len() - reader.len();
                out.push(rest[..used].to_vec());
                rest = &rest[used..];
            }
            Err(_) => {
                out.push(rest.to_vec());
                break;
            }
        }
    }
    out
}

/// The partition key of a record: its trace code, else its first input, else its device
/// id (the same choice as the simulator), so one object's events share a partition. For a
/// signed envelope, the same fields of the event it carries.
pub fn key_of(record: &[u8]) -> Option<Vec<u8>> {
    use veritrace_verify::signature::{parse_envelope, sniff};
    if let Some(kind) = sniff(record) {
        let signed = parse_envelope(record, kind).ok()?;
        return key_of(&signed.payload);
    }
    #[derive(Deserialize)]
    struct Keys {
        trace_code: Option<String>,
        inputs: Option<Vec<String>>,
        device_id: Option<String>,
    }
    let k: Keys = serde_json::from_slice(record).ok()?;
    k.trace_code
        .or_else(|| k.inputs.and_then(|i| i.into_iter().next()))
        .or(k.device_id)
        .map(String::into_bytes)
}

/// Records of a file, in order. JSON lines are streamed (a file of any size is read in
/// constant memory); a JSON array or CSV is read whole, then split.
pub struct Records {
    inner: RecordsInner,
    path: String,
}

enum RecordsInner {
    Lines(Box<dyn BufRead>),
    Buffered(std::vec::IntoIter<Vec<u8>>),
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Iterator for Records {
    type Item = Result<Vec<u8>, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            RecordsInner::Buffered(it) => it.next().map(Ok),
            RecordsInner::Lines(r) => loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) => return None,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        if !line.iter().all(u8::is_ascii_whitespace) {
                            return Some(Ok(line));
                        }
                    }
                    Err(source) => {
                        return Some(Err(FileError::Io {
                            path: self.path.clone(),
                            source,
                        }));
                    }
                }
            },
        }
    }
}

/// Opens `path` (`-`: standard input) as records in `format` (detected from the name and
/// the first bytes when `None`).
pub fn open_records(
    path: &Path,
    format: Option<FileFormat>,
    mapping: Option<&CsvMapping>,
    recorder: Option<&veritrace_processors::epcis::Recorder>,
    schema: Option<&crate::epcis::Schema>,
) -> Result<Records, FileError> {
    let name = path.display().to_string();
    let io = |source| FileError::Io {
        path: name.clone(),
        source,
    };
    let raw: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(io)?)
    };
    let mut reader: Box<dyn BufRead> = Box::new(std::io::BufReader::with_capacity(1 << 20, raw));
    let format = match format {
        Some(f) => f,
        None => FileFormat::detect(path, reader.fill_buf().map_err(io)?),
    };
    let inner = match format {
        FileFormat::JsonLines => RecordsInner::Lines(reader),
        FileFormat::JsonArray | FileFormat::Csv | FileFormat::Cose | FileFormat::Epcis => {
            let mut data = Vec::new();
            reader.read_to_end(&mut data).map_err(io)?;
            let recs = if format == FileFormat::JsonArray {
                json_array(&data)
            } else if format == FileFormat::Epcis {
                let r = recorder.ok_or_else(|| FileError::Epcis {
                    path: name.clone(),
                    detail: "EPCIS events do not name the party that records them: give \
                             --recorder ID:ROLE (e.g. plant-sh-01:manufacturer)"
                        .into(),
                })?;
                if let Some(schema) = schema
                    && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&data)
                {
                    // A document that fails the schema is refused whole: nothing of it is
                    // taken, and the file stays as it is.
                    schema.check(&doc).map_err(|detail| FileError::Epcis {
                        path: name.clone(),
                        detail,
                    })?;
                }
                crate::epcis::records(&data, r)
            } else if format == FileFormat::Cose {
                cbor_sequence(&data)
            } else {
                let m = mapping.ok_or_else(|| FileError::Csv {
                    path: name.clone(),
                    detail: "CSV needs a column mapping (--csv-map FILE.toml)".into(),
                })?;
                m.records(&name, &data)?
            };
            RecordsInner::Buffered(recs.into_iter())
        }
    };
    Ok(Records { inner, path: name })
}

/// Reads `path` in `format` (detected when `None`) into records.
pub fn read_records(
    path: &Path,
    format: Option<FileFormat>,
    mapping: Option<&CsvMapping>,
) -> Result<Vec<Vec<u8>>, FileError> {
    open_records(path, format, mapping, None, None)?.collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cbor_sequences_split_into_their_items_bytes_and_keep_a_damaged_tail() {
        use veritrace_verify::signature::{Alg, Claims, SigningKey, sign_cose};
        let key = SigningKey::from_bytes(Alg::EdDsa, &[3; 32]).unwrap();
        let claims = Claims {
            iss: Some("d1".into()),
            sub: None,
            iat: Some(1),
        };
        let a = sign_cose(&key, "k", &claims, br#"{"trace_code":"A"}"#);
        let b = sign_cose(&key, "k", &claims, br#"{"device_id":"B"}"#);
        let mut seq = [a.clone(), b.clone()].concat();
        assert_eq!(cbor_sequence(&seq), vec![a.clone(), b.clone()]);
        assert_eq!(key_of(&a), Some(b"A".to_vec()));
        assert_eq!(key_of(&b), Some(b"B".to_vec()));
        seq.extend_from_slice(&a[..a.len() / 2]);
        let recs = cbor_sequence(&seq);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2], a[..a.len() / 2].to_vec());
        assert_eq!(FileFormat::detect(Path::new("x"), &a), FileFormat::Cose);
    }

    #[test]
    fn json_array_keeps_each_elements_bytes() {
        let recs = json_array(br#" [ {"a":"x,]}"} , {"b":[1,2,{"c":"\""}]},{} ] "#);
        assert_eq!(
            recs,
            vec![
                br#"{"a":"x,]}"}"#.to_vec(),
                br#"{"b":[1,2,{"c":"\""}]}"#.to_vec(),
                b"{}".to_vec()
            ]
        );
    }

    #[test]
    fn a_broken_array_loses_nothing() {
        assert_eq!(
            json_array(b"[{\"a\":1}, {\"b\":"),
            vec![b"{\"a\":1}".to_vec(), b"{\"b\":".to_vec()]
        );
        assert_eq!(
            json_array(b"{\"not\":\"array\"}"),
            vec![b"{\"not\":\"array\"}".to_vec()]
        );
        assert_eq!(
            json_array(b"[1] trailing"),
            vec![b"1".to_vec(), b"trailing".to_vec()]
        );
        assert!(json_array(b"  ").is_empty());
    }

    #[test]
    fn streamed_lines_match_the_in_memory_splitter() {
        let d = tempfile::tempdir().unwrap();
        let text = b"{\"a\":1}\r\n\n  \nnot json\nlast-without-newline";
        let p = d.path().join("x.jsonl");
        std::fs::write(&p, text).unwrap();
        let streamed = read_records(&p, None, None).unwrap();
        assert_eq!(streamed, json_lines(text));
        assert_eq!(streamed.len(), 3);
        let arr = d.path().join("x.json");
        std::fs::write(&arr, b"  [1, 2]").unwrap();
        assert_eq!(
            read_records(&arr, None, None).unwrap(),
            vec![b"1".to_vec(), b"2".to_vec()]
        );
        let csv = d.path().join("x.csv");
        std::fs::write(&csv, b"a\n1\n").unwrap();
        assert!(
            read_records(&csv, None, None)
                .unwrap_err()
                .to_string()
                .contains("--csv-map")
        );
    }

    #[test]
    fn json_lines_skip_only_blank_lines() {
        assert_eq!(
            json_lines(b"{\"a\":1}\r\n\n  \nnot json\n"),
            vec![b"{\"a\":1}".to_vec(), b"not json".to_vec()]
        );
    }

    const MAP: &str = r#"
        [fields]
        event_id = { column = "Doc", prefix = "erp:" }
        event_type = { column = "MvT", map = { "601" = "sale", "101" = "warehouse_in" } }
        event_time = { column = "Time" }
        trace_code = { column = "Batch" }
        "participant.id" = { value = "plant-1" }
        "participant.role" = { value = "manufacturer" }
        "quantity.value" = { column = "Qty", type = "number" }
        "quantity.unit" = { column = "UoM" }
        inputs = { column = "Parts", type = "list", split = ";" }
    "#;

    #[test]
    fn csv_rows_map_to_events() {
        let m = CsvMapping::parse(MAP).unwrap();
        let csv = "Doc,MvT,Time,Batch,Qty,UoM,Parts\n\
                   1,601,2026-11-21T08:00:00Z,(10)LOT1,12.5,KG,\n\
                   2,999,2026-11-21T08:00:00Z,,n/a,,A;B\n";
        let recs = m.records("x.csv", csv.as_bytes()).unwrap();
        assert_eq!(recs.len(), 2);
        let a: Value = serde_json::from_slice(&recs[0]).unwrap();
        assert_eq!(a["event_id"], "erp:1");
        assert_eq!(a["event_type"], "sale");
        assert_eq!(a["quantity"]["value"], 12.5);
        assert_eq!(a["participant"]["role"], "manufacturer");
        assert!(a.get("inputs").is_none());
        let b: Value = serde_json::from_slice(&recs[1]).unwrap();
        assert_eq!(
            b["event_type"], "999",
            "unmapped values pass through to validation"
        );
        assert_eq!(
            b["quantity"]["value"], "n/a",
            "unconvertible cells stay visible"
        );
        assert_eq!(b["inputs"], serde_json::json!(["A", "B"]));
        assert!(b.get("trace_code").is_none());
    }

    #[test]
    fn csv_mapping_errors_are_clear() {
        assert!(
            CsvMapping::parse("[fields]\nsite = { column = \"S\" }")
                .unwrap_err()
                .contains("event_id")
        );
        assert!(
            CsvMapping::parse("[fields]\nevent_id = { column = \"a\", value = \"b\" }")
                .unwrap_err()
                .contains("exactly one")
        );
        let m = CsvMapping::parse("[fields]\nevent_id = { column = \"Nope\" }").unwrap();
        let e = m.records("f.csv", b"Doc\n1\n").unwrap_err().to_string();
        assert!(e.contains("Nope") && e.contains("Doc"), "{e}");
    }

    #[test]
    fn non_utf8_csv_rows_are_kept_raw() {
        let m = CsvMapping::parse("[fields]\nevent_id = { column = \"Doc\" }").unwrap();
        let recs = m.records("f.csv", b"Doc,X\nok,1\n\xff\xfe,2\n").unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1], b"\xff\xfe,2".to_vec());
    }

    proptest! {
        #[test]
        fn splitters_never_panic_and_keep_every_non_blank_byte_run(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = json_array(&data);
            let lines = json_lines(&data);
            let total: usize = lines.iter().map(Vec::len).sum();
            prop_assert!(total <= data.len());
        }

        #[test]
        fn arrays_of_objects_split_exactly(n in 0usize..20) {
            let elems: Vec<String> = (0..n).map(|i| format!("{{\"id\":\"e{i}\",\"s\":\"a,]\\\"b\"}}")).collect();
            let text = format!("[{}]", elems.join(" ,\n"));
            let got = json_array(text.as_bytes());
            prop_assert_eq!(got, elems.iter().map(|e| e.as_bytes().to_vec()).collect::<Vec<_>>());
        }
    }
}

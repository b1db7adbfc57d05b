//! SQL behaviour as sqllogictest files: `queries/tests/slt/*.slt`, run against a fixed,
//! deterministic data directory (the known-truth genealogy plus 20,000 simulator records,
//! each sealed into batches as in production).
//!
//! Expected results are never typed by hand. After changing behaviour on purpose,
//! regenerate them and review the diff:
//!
//! ```sh
//! UPDATE_SLT=1 cargo test -p veritrace-loadtest --test sqllogictest
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};
use veritrace_anchor::DataDir;
use veritrace_loadtest::genealogy::{Genealogy, Shape};
use veritrace_processors::BatchPolicy;
use veritrace_processors::runtime::{self, RuntimeConfig};
use veritrace_queries::QueryEngine;
use veritrace_simulator::{SimConfig, Simulator};

#[derive(Debug)]
struct SqlError(String);

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SqlError {}

struct Db(Arc<QueryEngine>);

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SqlError> {
    let mut out = Vec::new();
    let opts = FormatOptions::default();
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SqlError(e.to_string()))?;
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .zip(&fmts)
                    .map(|(c, f)| {
                        if c.is_null(r) {
                            "NULL".to_owned()
                        } else {
                            let v = f.value(r).to_string();
                            if v.is_empty() {
                                "(empty)".to_owned()
                            } else {
                                v
                            }
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let batches = self.0.sql(sql).await.map_err(|e| SqlError(e.to_string()))?;
        let types = batches
            .first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| column_type(f.data_type()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(DBOutput::Rows {
            types,
            rows: rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "veritrace"
    }
}

fn dataset() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = DataDir::create(tmp.path()).expect("dir");
    let policy = BatchPolicy {
        max_records: 1_000,
        max_age: Duration::from_secs(3600),
        ..BatchPolicy::default()
    };
    let g = Genealogy::generate(&Shape::default());
    let sim: Vec<(Option<Vec<u8>>, Vec<u8>)> = Simulator::new(SimConfig {
        events: 20_000,
        seed: 42,
        ..SimConfig::default()
    })
    .map(|r| (Some(r.key), r.payload))
    .collect();
    for (stream, records) in [("gen", g.records), ("sim", sim)] {
        let cfg = RuntimeConfig {
            stream: stream.into(),
            partitions: 2,
            policy,
            epoch_interval: Duration::from_secs(3600),
            ..RuntimeConfig::default()
        };
        runtime::run(&dir, &cfg, records, Arc::default()).expect("run");
    }
    tmp
}

fn main() {
    let files: Vec<PathBuf> = {
        let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../queries/tests/slt");
        let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
            .expect("queries/tests/slt")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "slt"))
            .collect();
        v.sort();
        v
    };
    assert!(!files.is_empty(), "no .slt files");
    let update = std::env::var_os("UPDATE_SLT").is_some();
    let tmp = dataset();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = Arc::new(rt.block_on(QueryEngine::open(tmp.path())).expect("engine"));
    let mut failed = 0;
    for f in &files {
        let e = engine.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let e = e.clone();
            async move { Ok::<_, SqlError>(Db(e)) }
        });
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let result = if update {
            rt.block_on(runner.update_test_file(
                f,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            ))
            .map_err(|e| e.to_string())
        } else {
            rt.block_on(runner.run_file_async(f))
                .map_err(|e| e.to_string())
        };
        match result {
            Ok(()) => println!("slt {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("slt {name} ... FAILED\n{e}");
            }
        }
    }
    assert_eq!(failed, 0, "{failed} sqllogictest file(s) failed");
}

//! What each stored table looks like, defined once: its Arrow schema, how its Parquet files
//! are encoded, which columns carry bloom filters, and how compacted files are sorted.
//! Writers (the processors' column builders, sealing, compaction, merging) and readers (the
//! query engine, lookups, `veritrace check`) all take it from here.
//!
//! | table | a row is | bloom filters | compacted files sorted by |
//! |---|---|---|---|
//! | [`EVENTS`] | an accepted event, its canonical bytes and its place in the Merkle trees | `event_id`, `trace_code` | `trace_code`, `event_id` |
//! | [`REJECTED`] | a rejected input record, original bytes kept, with the reason | - | (not compacted) |
//! | [`EDGES`] | a trace-graph edge `parent -> child` and the event that made it | `parent`, `child` | (not compacted) |

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};

/// One stored table.
#[derive(Debug)]
pub struct Table {
    /// Its SQL name.
    pub name: &'static str,
    schema: &'static LazyLock<SchemaRef>,
    /// Columns with bloom filters (point lookups).
    pub bloom_columns: &'static [&'static str],
    /// Compacted files are sorted by these columns, in order (empty: not compacted).
    pub sort_key: &'static [&'static str],
    /// Unique or document columns: no dictionary (it only costs time there) and no min/max
    /// statistics (they prune nothing).
    pub plain_columns: &'static [&'static str],
    /// Unique columns that keep their statistics (range pruning) but take no dictionary.
    pub no_dictionary_columns: &'static [&'static str],
    /// Documents that runs of rows share (a bundle's envelope): a dictionary (stored once
    /// per row group), no min/max statistics.
    pub shared_columns: &'static [&'static str],
    /// Integers that count up or hardly change: delta-encoded, a bit or two a row.
    pub delta_columns: &'static [&'static str],
    /// Columns a point lookup reads besides `canonical`, stored without compression: each
    /// compressed column chunk a lookup touches costs a zstd context (parquet creates one per
    /// column reader) and a page decompression, and these gain nothing from zstd (hashes are
    /// random; the others are delta- or dictionary-encoded to a few bytes a page).
    pub uncompressed_columns: &'static [&'static str],
    /// Times that rise with arrival: delta-encoded without a dictionary in sealed files,
    /// whose rows are in arrival order (a few bits a row, and no value interned per row).
    /// Compacted files, sorted by key, keep the dictionary.
    pub fresh_delta_columns: &'static [&'static str],
}

/// Largest data page written (encoded, before compression). A point lookup decodes one
/// page per column, so the page size is most of its cost (1 MiB, parquet's default, held
/// about 1,700 canonical events).
pub const DATA_PAGE_BYTES: usize = 64 * 1024;

/// Most rows in a data page. Narrow columns (delta-encoded integers, dictionary indices,
/// hashes) would otherwise put a whole row group in one page, and a point lookup would
/// decode up to 65,536 values to reach its row.
pub const DATA_PAGE_ROWS: usize = 1024;

/// Largest page of canonical events. A point lookup decompresses one whole canonical page
/// to return one event, so this page bounds its cost; pages half of [`DATA_PAGE_BYTES`]
/// cost about 6% more disk (BENCHMARKS.md, "Point lookups under load").
pub const CANONICAL_PAGE_BYTES: usize = 32 * 1024;

impl Table {
    /// The Arrow schema of its files and of its SQL table.
    pub fn schema(&self) -> SchemaRef {
        (*self.schema).clone()
    }

    /// Parquet settings for files of this table holding up to `rows` rows per row group:
    /// zstd, page-level statistics (the page index), bloom filters, and the encodings above.
    /// What compaction writes.
    pub fn writer_properties(&self, rows: usize) -> WriterProperties {
        self.builder(
            rows,
            Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
        )
        .build()
    }

    /// [`Table::writer_properties`] for a batch being sealed: Snappy instead of zstd, and
    /// [`Table::fresh_delta_columns`] delta-encoded. A seal is on the hot path of every event
    /// and its file lives only until compaction rewrites it with zstd. Snappy costs about 3% less
    /// of the partition thread than LZ4 for files a little smaller (BENCHMARKS.md, issue 19),
    /// and every Parquet reader knows it.
    pub fn fresh_writer_properties(&self, rows: usize) -> WriterProperties {
        delta_encoded(
            self.builder(rows, Compression::SNAPPY),
            self.fresh_delta_columns,
        )
        .build()
    }

    fn builder(&self, rows: usize, codec: Compression) -> WriterPropertiesBuilder {
        let mut b = WriterProperties::builder()
            .set_compression(codec)
            .set_data_page_size_limit(DATA_PAGE_BYTES)
            .set_column_data_page_size_limit("canonical".into(), CANONICAL_PAGE_BYTES)
            .set_data_page_row_count_limit(DATA_PAGE_ROWS)
            .set_write_batch_size(DATA_PAGE_ROWS)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(rows.max(1)));
        for c in self.plain_columns {
            b = b
                .set_column_dictionary_enabled((*c).into(), false)
                .set_column_statistics_enabled((*c).into(), EnabledStatistics::None);
        }
        for c in self.no_dictionary_columns {
            b = b.set_column_dictionary_enabled((*c).into(), false);
        }
        for c in self.shared_columns {
            b = b.set_column_statistics_enabled((*c).into(), EnabledStatistics::None);
        }
        b = delta_encoded(b, self.delta_columns);
        for c in self.uncompressed_columns {
            b = b.set_column_compression((*c).into(), Compression::UNCOMPRESSED);
        }
        for c in self.bloom_columns {
            b = b
                .set_column_bloom_filter_enabled((*c).into(), true)
                .set_column_bloom_filter_max_ndv((*c).into(), rows.max(1) as u64)
                .set_column_bloom_filter_fpp((*c).into(), 0.01);
        }
        b
    }
}

/// `columns` delta-encoded, without a dictionary.
fn delta_encoded(mut b: WriterPropertiesBuilder, columns: &[&str]) -> WriterPropertiesBuilder {
    for c in columns {
        b = b
            .set_column_dictionary_enabled((*c).into(), false)
            .set_column_encoding((*c).into(), Encoding::DELTA_BINARY_PACKED);
    }
    b
}

/// The order of rows in compacted events files: trace code (rows without one last), then
/// event id. Rows without a trace code (telemetry, maintenance, transformations) are thus
/// ordered by event id, so an event-id lookup among them prunes pages too.
pub const EVENTS_SORT_KEY: [&str; 2] = ["trace_code", "event_id"];

/// `events`: one row per accepted event.
pub static EVENTS: Table = Table {
    name: "events",
    schema: &EVENTS_SCHEMA,
    bloom_columns: &["event_id", "trace_code"],
    sort_key: &EVENTS_SORT_KEY,
    plain_columns: &[
        "canonical",
        "leaf_hash",
        "attributes",
        "attachments",
        "bundle_member",
    ],
    no_dictionary_columns: &["event_id"],
    // A bundle's events share one envelope: the dictionary stores it once per row group
    // (events signed one by one overflow it, and parquet falls back to plain pages).
    shared_columns: &["envelope"],
    delta_columns: &["leaf_index", "offset", "partition"],
    uncompressed_columns: &[
        "leaf_hash",
        "leaf_index",
        "offset",
        "partition",
        "batch_id",
        "stream",
    ],
    fresh_delta_columns: &["event_time"],
};

/// `rejected`: one row per rejected input record, original bytes kept.
pub static REJECTED: Table = Table {
    name: "rejected",
    schema: &REJECTED_SCHEMA,
    bloom_columns: &[],
    sort_key: &[],
    plain_columns: &["payload"],
    no_dictionary_columns: &["event_id"],
    shared_columns: &[],
    delta_columns: &["offset", "partition"],
    uncompressed_columns: &["offset", "partition", "batch_id", "stream"],
    fresh_delta_columns: &["rejected_at"],
};

/// `edges`: one row per trace-graph edge, `parent` (an input: a raw batch, a part lot, a
/// sub-assembly, a product packed on a pallet) -> `child` (what it went into), with the
/// assembly or transformation event that made the edge and that event's own trace code
/// (`event_trace_code`: an assembly's output; a transformation's, when it names one), so a
/// trace finds the event by trace code instead of searching for its id.
pub static EDGES: Table = Table {
    name: "edges",
    schema: &EDGES_SCHEMA,
    bloom_columns: &["parent", "child"],
    sort_key: &[],
    plain_columns: &[],
    no_dictionary_columns: &["event_id"],
    shared_columns: &[],
    delta_columns: &[],
    uncompressed_columns: &["batch_id"],
    fresh_delta_columns: &["event_time"],
};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn utf8_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn readings_map() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Float64, true),
            ])),
            false,
        )),
        false,
    )
}

static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("event_time", ts(), false),
        s("trace_code"),
        s("gtin"),
        Field::new("inputs", utf8_list(), true),
        Field::new("outputs", utf8_list(), true),
        Field::new("participant_id", DataType::Utf8, false),
        s("participant_name"),
        Field::new("participant_role", DataType::Utf8, false),
        s("counterparty_id"),
        s("counterparty_name"),
        s("counterparty_role"),
        s("operator"),
        s("result"),
        s("site"),
        s("device_id"),
        Field::new("lat", DataType::Float64, true),
        Field::new("lon", DataType::Float64, true),
        s("product_id"),
        s("batch_number"),
        s("production_line"),
        s("production_date"),
        s("model"),
        s("spec"),
        s("expiry_date"),
        Field::new("quantity", DataType::Float64, true),
        s("quantity_unit"),
        Field::new("readings", readings_map(), true),
        s("attributes"),
        s("attachments"),
        s("signer"),
        s("signer_participant"),
        s("key_id"),
        s("sig_alg"),
        Field::new("envelope", DataType::Binary, true),
        Field::new("bundle_member", DataType::Binary, true),
        Field::new("canonical", DataType::Utf8, false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("leaf_index", DataType::UInt64, false),
        Field::new("leaf_hash", DataType::FixedSizeBinary(32), false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("partition", DataType::UInt32, false),
        Field::new("offset", DataType::UInt64, false),
    ]))
});

static REJECTED_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("stream", DataType::Utf8, false),
        Field::new("partition", DataType::UInt32, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("key", DataType::Binary, true),
        Field::new("payload", DataType::Binary, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, true),
        Field::new("rejected_at", ts(), false),
        Field::new("batch_id", DataType::Utf8, false),
    ]))
});

static EDGES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("parent", DataType::Utf8, false),
        Field::new("child", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("event_time", ts(), false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("event_trace_code", DataType::Utf8, true),
    ]))
});

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, FixedSizeBinaryArray, StringArray, TimestampMillisecondArray, UInt32Array,
        UInt64Array,
    };
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ArrowReaderMetadata;
    use parquet::basic::{Compression, Encoding};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use std::fs::File;

    use arrow_array::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use veritrace_verify::merkle;

    use super::*;

    /// Each setting names its column by a plain string, which parquet turns into a column
    /// path by `From<&str>`: a dotted name (`readings.key_value.key`) becomes one path element
    /// that matches no nested column, and the setting is silently ignored. So every name must
    /// be a top-level column of a primitive type, whose name is its whole path.
    #[test]
    fn every_column_setting_names_a_top_level_leaf_column() {
        for t in [&EVENTS, &REJECTED, &EDGES] {
            let schema = t.schema();
            let lists = [
                ("bloom_columns", t.bloom_columns),
                ("sort_key", t.sort_key),
                ("plain_columns", t.plain_columns),
                ("no_dictionary_columns", t.no_dictionary_columns),
                ("shared_columns", t.shared_columns),
                ("delta_columns", t.delta_columns),
                ("uncompressed_columns", t.uncompressed_columns),
                ("fresh_delta_columns", t.fresh_delta_columns),
            ];
            for (list, names) in lists {
                for name in names {
                    let field = schema.field_with_name(name).unwrap_or_else(|_| {
                        panic!("{}.{list} names {name:?}, which is no column", t.name)
                    });
                    assert!(
                        field.data_type().is_primitive()
                            || matches!(
                                field.data_type(),
                                DataType::Utf8 | DataType::Binary | DataType::FixedSizeBinary(_)
                            ),
                        "{}.{list} names {name:?}, a nested column: give its leaf's ColumnPath",
                        t.name
                    );
                }
            }
        }
    }

    /// A point lookup reads `canonical` and these columns of one row; each compressed chunk
    /// costs it a zstd context and a page decompression (see `queries/src/lookup.rs`).
    #[test]
    fn lookup_columns_are_written_uncompressed_and_delta_encoded() {
        let n = 5_000usize;
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("canonical", DataType::Utf8, false),
            Field::new("batch_id", DataType::Utf8, false),
            Field::new("leaf_index", DataType::UInt64, false),
            Field::new("leaf_hash", DataType::FixedSizeBinary(32), false),
            Field::new("stream", DataType::Utf8, false),
            Field::new("partition", DataType::UInt32, false),
            Field::new("offset", DataType::UInt64, false),
            Field::new("event_time", ts(), false),
        ]));
        let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
        let canonical: Vec<String> = ids
            .iter()
            .map(|id| format!("{{\"event_id\":\"{id}\",\"event_type\":\"production\"}}"))
            .collect();
        let hashes: Vec<[u8; 32]> = ids
            .iter()
            .map(|id| merkle::leaf_hash(id.as_bytes()).0)
            .collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids.clone())),
            Arc::new(StringArray::from(canonical)),
            Arc::new(StringArray::from(vec!["s-p000-1"; n])),
            Arc::new(UInt64Array::from_iter_values(0..n as u64)),
            Arc::new(FixedSizeBinaryArray::try_from_iter(hashes.iter()).expect("test step")),
            Arc::new(StringArray::from(vec!["s"; n])),
            Arc::new(UInt32Array::from(vec![3u32; n])),
            Arc::new(UInt64Array::from_iter_values(1_000..1_000 + n as u64)),
            // Arrival order: rising, with ties and steps of a few milliseconds.
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    (0..n as i64).map(|i| 1_790_000_000_000 + i * 3 - (i % 7)),
                )
                .with_timezone("UTC"),
            ),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols).expect("test step");
        let tmp = tempfile::tempdir().expect("test step");
        let path = tmp.path().join("events.parquet");
        // Sealed batches take Snappy (their files live until compaction), compacted files
        // zstd; the same columns stay uncompressed in both.
        let fresh = tmp.path().join("fresh.parquet");
        let mut w = ArrowWriter::try_new(
            File::create(&fresh).expect("test step"),
            schema.clone(),
            Some(EVENTS.fresh_writer_properties(n)),
        )
        .expect("test step");
        w.write(&batch).expect("test step");
        w.close().expect("test step");
        let r =
            SerializedFileReader::new(File::open(&fresh).expect("test step")).expect("test step");
        for col in r.metadata().row_group(0).columns() {
            let name = col.column_path().string();
            let want = if EVENTS.uncompressed_columns.contains(&name.as_str()) {
                Compression::UNCOMPRESSED
            } else {
                Compression::SNAPPY
            };
            assert_eq!(col.compression(), want, "{name}");
            let delta = col.encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED);
            let fresh_delta = EVENTS.fresh_delta_columns.contains(&name.as_str());
            assert_eq!(
                delta,
                fresh_delta || EVENTS.delta_columns.contains(&name.as_str()),
                "{name}"
            );
            if fresh_delta {
                assert!(col.dictionary_page_offset().is_none(), "{name}");
            }
        }
        assert_eq!(read_back(&fresh), batch);
        let mut w = ArrowWriter::try_new(
            File::create(&path).expect("test step"),
            schema,
            Some(EVENTS.writer_properties(n)),
        )
        .expect("test step");
        w.write(&batch).expect("test step");
        w.close().expect("test step");

        let r =
            SerializedFileReader::new(File::open(&path).expect("test step")).expect("test step");
        let rg = r.metadata().row_group(0);
        let chunk = |name: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap_or_else(|| panic!("no column {name}"))
        };
        for c in ["canonical", "event_id"] {
            assert!(
                matches!(chunk(c).compression(), Compression::ZSTD(_)),
                "{c}"
            );
        }
        for c in EVENTS.uncompressed_columns {
            assert_eq!(chunk(c).compression(), Compression::UNCOMPRESSED, "{c}");
        }
        for c in EVENTS.delta_columns {
            let encodings: Vec<Encoding> = chunk(c).encodings().collect();
            assert!(
                encodings.contains(&Encoding::DELTA_BINARY_PACKED),
                "{c}: {encodings:?}"
            );
            assert!(chunk(c).dictionary_page_offset().is_none(), "{c}");
        }
        for c in EVENTS.fresh_delta_columns {
            assert!(chunk(c).dictionary_page_offset().is_some(), "{c}");
        }
        // The files read back as written, with pages of at most DATA_PAGE_ROWS rows.
        let file = File::open(&path).expect("test step");
        let meta = ArrowReaderMetadata::load(
            &file,
            parquet::arrow::arrow_reader::ArrowReaderOptions::new()
                .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required),
        )
        .expect("test step");
        let offsets = &meta.metadata().offset_index().expect("page index")[0];
        for (i, c) in rg.columns().iter().enumerate() {
            let pages = offsets[i].page_locations();
            assert!(
                pages.len() >= n.div_ceil(DATA_PAGE_ROWS),
                "{}: {} pages",
                c.column_path().string(),
                pages.len()
            );
        }
        assert_eq!(read_back(&path), batch);
    }

    fn read_back(path: &std::path::Path) -> RecordBatch {
        let rows: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                File::open(path).expect("test step"),
            )
            .expect("test step")
            .build()
            .expect("test step")
            .collect::<std::result::Result<_, _>>()
            .expect("test step");
        arrow_select::concat::concat_batches(&rows[0].schema(), &rows).expect("test step")
    }
}

//! What each column of a sealed file costs to encode: reads a Parquet file of one of the
//! stored tables, writes it again in memory with the settings of a seal
//! ([`Table::fresh_writer_properties`]), whole and one column at a time, and prints the CPU
//! time and the bytes per row of each. BENCHMARKS.md (issue 19) uses it to bound what the
//! levers on the Parquet encode can still gain.
//!
//! ```sh
//! cargo run --release -p veritrace-anchor --example encode_columns -- DATA/events/FILE.parquet [REPEATS]
//! ```

use std::error::Error;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use veritrace_anchor::tables::{EDGES, EVENTS, REJECTED, Table};

/// CPU time of the calling thread (the encode is single-threaded; wall time on a shared
/// machine also counts other processes).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Nanoseconds of CPU per row and bytes per row of writing `batch` `repeats` times.
fn encode(
    batch: &RecordBatch,
    props: &WriterProperties,
    repeats: u32,
) -> Result<(f64, f64), Box<dyn Error>> {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    let mut bytes = 0;
    for _ in 0..repeats {
        let mut out = Vec::with_capacity(batch.get_array_memory_size());
        let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props.clone()))?;
        w.write(batch)?;
        w.close()?;
        bytes = out.len();
    }
    // Without schedstat (not Linux), wall time.
    let spent = match thread_cpu().saturating_sub(cpu) {
        d if d.is_zero() => wall.elapsed(),
        d => d,
    };
    let rows = (batch.num_rows().max(1) as f64) * f64::from(repeats);
    Ok((
        spent.as_nanos() as f64 / rows,
        bytes as f64 / batch.num_rows().max(1) as f64,
    ))
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: encode_columns FILE.parquet [REPEATS]")?;
    let repeats: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?
        .with_batch_size(1 << 20)
        .build()?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let schema = batches.first().ok_or("the file has no rows")?.schema();
    let table: &Table = [&EVENTS, &REJECTED, &EDGES]
        .into_iter()
        .find(|t| t.schema().fields() == schema.fields())
        .ok_or("not a file of a stored table (events, rejected, edges)")?;
    let batch = arrow_select::concat::concat_batches(&schema, &batches)?;
    let props = table.fresh_writer_properties(batch.num_rows());

    let (ns, bytes) = encode(&batch, &props, repeats)?;
    println!(
        "{} rows of {}, {repeats} repeats: {ns:.0} ns and {bytes:.1} bytes per row, whole file",
        batch.num_rows(),
        table.name
    );
    println!("{:>20} {:>8} {:>9}", "column", "ns/row", "bytes/row");
    let mut sum = 0.0;
    for (i, field) in schema.fields().iter().enumerate() {
        let one = RecordBatch::try_new(
            Arc::new(Schema::new(vec![field.clone()])),
            vec![batch.column(i).clone()],
        )?;
        let (ns, bytes) = encode(&one, &props, repeats)?;
        sum += ns;
        println!("{:>20} {ns:>8.0} {bytes:>9.1}", field.name());
    }
    println!("{:>20} {sum:>8.0}", "sum of columns");
    Ok(())
}

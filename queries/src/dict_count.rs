//! Dictionary-aware `GROUP BY ... count(*)` over Parquet.
//!
//! `SELECT event_type, site, count(*) FROM events GROUP BY event_type, site` (and
//! `SELECT DISTINCT event_type, site`) is the analysts' everyday question. DataFusion decodes
//! every string group column into string values and hashes them row by row, although the
//! Parquet files store such low-cardinality columns dictionary-encoded: a few dozen
//! distinct strings and one small integer per row.
//!
//! [`DictionaryCountRule`] replaces the partial aggregate over such a scan with
//! [`DictionaryCountExec`], which reads the group columns as Arrow dictionary arrays (the
//! Parquet dictionary indices, never the strings), counts rows per combination of indices in
//! a flat table, and emits one partial row per combination that occurred in each column
//! chunk. The final aggregate above merges these partial rows exactly as it merges the
//! partial aggregate's. Results are identical; the module tests compare both plans on files
//! with nulls, missing columns, plain-encoded pages and split file ranges.
//!
//! The rule applies only to a plan it can answer exactly: a partial aggregate with one
//! grouping set of up to [`MAX_GROUP_COLUMNS`] plain string columns, whose aggregates are all
//! `count(*)` (or none: `DISTINCT`), with no aggregate filter, directly over a Parquet scan
//! (perhaps behind a round-robin repartition) without a predicate, a limit, or a required
//! ordering. Anything else keeps DataFusion's plan.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, new_null_array};
use arrow::compute::{can_cast_types, cast, concat_batches, take};
use arrow::datatypes::{DataType, Field, FieldRef, Int32Type, Schema, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{
    FileScanConfig, FileSource, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use hashbrown::HashMap;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};

/// Group columns the rule handles at most (their combined index fits in a `u128`).
pub const MAX_GROUP_COLUMNS: usize = 4;

/// Index combinations counted in a flat array; larger products use a hash table.
const DENSE_SLOTS: u128 = 1 << 16;

/// Rows per decoded batch: only dictionary indices are decoded, so batches can be large.
const BATCH_ROWS: usize = 65_536;

/// The type group columns are read as: Parquet dictionary indices plus the dictionary.
fn dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Physical optimizer rule: partial `count(*)` aggregates over string columns of a Parquet
/// scan become a [`DictionaryCountExec`].
#[derive(Debug, Default)]
pub struct DictionaryCountRule;

impl PhysicalOptimizerRule for DictionaryCountRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(agg) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            Ok(match rewrite(agg)? {
                Some(plan) => Transformed::yes(plan),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "dictionary_count"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// What the rule found in a matching plan.
struct Match<'a> {
    config: &'a FileScanConfig,
    /// File column names, in group order.
    columns: Vec<String>,
    /// The round-robin repartition between scan and aggregate, if any.
    round_robin: Option<Partitioning>,
}

/// The replacement for `agg`, when the rule applies.
fn rewrite(agg: &AggregateExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(m) = matches(agg) else {
        return Ok(None);
    };
    let schema = agg.schema();
    let groups = m.columns.len();
    // Every output group column must be castable from the dictionary's strings.
    if schema.fields().len() != groups + agg.aggr_expr().len()
        || schema.fields()[..groups]
            .iter()
            .any(|f| !can_cast_types(&DataType::Utf8, f.data_type()))
        || schema.fields()[groups..]
            .iter()
            .any(|f| f.data_type() != &DataType::Int64)
    {
        return Ok(None);
    }
    let files: Vec<Vec<PartitionedFile>> = m
        .config
        .file_groups
        .iter()
        .map(|g| g.files().to_vec())
        .collect();
    let exec =
        DictionaryCountExec::new(m.config.object_store_url.clone(), files, m.columns, schema);
    let mut plan: Arc<dyn ExecutionPlan> = Arc::new(exec);
    if let Some(p) = m.round_robin {
        plan = Arc::new(RepartitionExec::try_new(plan, p)?);
    }
    Ok(Some(plan))
}

fn matches(agg: &AggregateExec) -> Option<Match<'_>> {
    if *agg.mode() != AggregateMode::Partial
        || agg.properties().output_ordering().is_some()
        || agg.filter_expr().iter().any(Option::is_some)
    {
        return None;
    }
    let group_by = agg.group_expr();
    if !group_by.is_single()
        || group_by.expr().is_empty()
        || group_by.expr().len() > MAX_GROUP_COLUMNS
    {
        return None;
    }
    if !agg.aggr_expr().iter().all(|a| is_count_star(a)) {
        return None;
    }
    let mut input = agg.input();
    let mut round_robin = None;
    if let Some(r) = input.downcast_ref::<RepartitionExec>() {
        if !matches!(r.partitioning(), Partitioning::RoundRobinBatch(_)) || r.preserve_order() {
            return None;
        }
        round_robin = Some(r.partitioning().clone());
        input = r.input();
    }
    let scan = input.downcast_ref::<DataSourceExec>()?;
    let (config, source) = scan.downcast_to_file_source::<ParquetSource>()?;
    if config.limit.is_some() || source.filter().is_some() {
        return None;
    }
    let file_schema = config.file_schema();
    let mut columns = Vec::with_capacity(group_by.expr().len());
    for (expr, _) in group_by.expr() {
        let out = expr.downcast_ref::<Column>()?.index();
        // The scan's output column `out` is a table column, possibly through a projection.
        let table_index = match source.projection() {
            Some(p) => p.iter().nth(out)?.expr.downcast_ref::<Column>()?.index(),
            None => out,
        };
        // Partition columns are not in the files.
        let field = file_schema.fields().get(table_index)?;
        if !matches!(
            field.data_type(),
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        ) {
            return None;
        }
        columns.push(field.name().clone());
    }
    Some(Match {
        config,
        columns,
        round_robin,
    })
}

/// `count(*)`: DataFusion plans it as `count` of a non-null literal, without DISTINCT,
/// ordering or null handling options.
fn is_count_star(a: &datafusion::physical_expr::aggregate::AggregateFunctionExpr) -> bool {
    let args = a.expressions();
    a.fun().name() == "count"
        && !a.is_distinct()
        && a.order_bys().is_empty()
        && args.len() == 1
        && args[0]
            .downcast_ref::<Literal>()
            .is_some_and(|l| !l.value().is_null())
}

/// Counts rows per combination of dictionary indices of the group columns, straight from
/// the Parquet files, and emits partial-aggregate rows (group values, then one `count`
/// state per `count(*)`).
#[derive(Debug)]
pub struct DictionaryCountExec {
    store: ObjectStoreUrl,
    /// The files of each output partition (ranges honoured by row group, as DataFusion does).
    files: Vec<Vec<PartitionedFile>>,
    columns: Vec<String>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DictionaryCountExec {
    fn new(
        store: ObjectStoreUrl,
        files: Vec<Vec<PartitionedFile>>,
        columns: Vec<String>,
        schema: SchemaRef,
    ) -> Self {
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(files.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        DictionaryCountExec {
            store,
            files,
            columns,
            schema,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for DictionaryCountExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let files: usize = self.files.iter().map(Vec::len).sum();
        let counts = self.schema.fields().len() - self.columns.len();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "DictionaryCountExec: gby=[{}], counts={counts}, files={files}",
                self.columns.join(", ")
            ),
            DisplayFormatType::TreeRender => {
                writeln!(f, "gby={}", self.columns.join(", "))?;
                write!(f, "files={files}")
            }
        }
    }
}

impl ExecutionPlan for DictionaryCountExec {
    fn name(&self) -> &str {
        "DictionaryCountExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "DictionaryCountExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let files = match self.files.get(partition) {
            Some(f) => f.clone(),
            None if partition == 0 && self.files.is_empty() => Vec::new(),
            None => {
                return Err(DataFusionError::Internal(format!(
                    "DictionaryCountExec: no partition {partition}"
                )));
            }
        };
        let runtime = context.runtime_env();
        let store = runtime.object_store(&self.store)?;
        let cache = runtime.cache_manager.get_file_metadata_cache();
        let factory: Arc<dyn ParquetFileReaderFactory> =
            Arc::new(CachedParquetFileReaderFactory::new(store, cache));
        let job = Arc::new(Job {
            columns: self.columns.clone(),
            schema: self.schema.clone(),
            factory,
            partition,
            metrics: self.metrics.clone(),
        });
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let stream = futures::stream::iter(files)
            .then(move |file| {
                let job = job.clone();
                async move { job.count_file(file).await }
            })
            .map(move |r| {
                if let Ok(b) = &r {
                    baseline.record_output(b.num_rows());
                }
                r
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One partition's shared setup.
struct Job {
    columns: Vec<String>,
    schema: SchemaRef,
    factory: Arc<dyn ParquetFileReaderFactory>,
    partition: usize,
    metrics: ExecutionPlanMetricsSet,
}

impl Job {
    /// The partial rows of one file (its row groups within the file's range).
    async fn count_file(&self, file: PartitionedFile) -> Result<RecordBatch> {
        let location = file.object_meta.location.to_string();
        let context = |e: parquet::errors::ParquetError| {
            DataFusionError::External(format!("{location}: {e}").into())
        };
        let range = file.range.clone();
        // (`AsyncFileReader` is implemented for the plain boxed trait object.)
        let mut reader: Box<dyn AsyncFileReader> =
            self.factory
                .create_reader(self.partition, file, None, &self.metrics)?;
        let meta = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
            .await
            .map_err(context)?;
        let row_groups: Vec<usize> = meta
            .metadata()
            .row_groups()
            .iter()
            .enumerate()
            .filter(|(_, rg)| match (&range, rg.columns().first()) {
                (None, _) => true,
                (Some(r), Some(c)) => {
                    r.contains(c.dictionary_page_offset().unwrap_or(c.data_page_offset()))
                }
                (Some(_), None) => false,
            })
            .map(|(i, _)| i)
            .collect();
        let mut counter = Counter::new(&self.columns, &self.schema);
        // Read each group column present in the file as dictionary indices.
        let file_schema = meta.schema().clone();
        let mut fields: Vec<FieldRef> = file_schema.fields().iter().cloned().collect();
        let mut roots = Vec::new();
        for name in &self.columns {
            if let Some((i, f)) = file_schema.column_with_name(name) {
                if matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View) {
                    fields[i] = Arc::new(Field::clone(f).with_data_type(dictionary_type()));
                }
                roots.push(i);
            }
        }
        if roots.is_empty() {
            // None of the group columns is in this file: every row is in the all-null group.
            let rows: i64 = row_groups
                .iter()
                .map(|&i| meta.metadata().row_group(i).num_rows())
                .sum();
            counter.add_absent(u64::try_from(rows).unwrap_or(0))?;
            return counter.finish();
        }
        if row_groups.is_empty() {
            return counter.finish();
        }
        let hinted = Schema::new_with_metadata(fields, file_schema.metadata().clone());
        let meta = ArrowReaderMetadata::try_new(
            meta.metadata().clone(),
            ArrowReaderOptions::new().with_schema(Arc::new(hinted)),
        )
        .map_err(context)?;
        let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
        let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
            .with_projection(mask)
            .with_row_groups(row_groups)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(context)?;
        while let Some(batch) = stream.next().await {
            counter.add(&batch.map_err(context)?)?;
        }
        counter.finish()
    }
}

/// Row counts per combination of dictionary indices, for the dictionaries in use.
struct Counter<'a> {
    columns: &'a [String],
    schema: &'a SchemaRef,
    /// Per group column, the dictionary the counts refer to (`None`: absent from the file).
    dicts: Vec<Option<ArrayRef>>,
    /// Per group column, the dictionary length plus one (the last index stands for NULL).
    radix: Vec<u128>,
    table: Table,
    /// Per present group column, the codes of the current batch (reused buffers).
    codes: Vec<Vec<u32>>,
    /// Index combinations of the current batch (more than two columns, or sparse).
    slots: Vec<u128>,
    out: Vec<RecordBatch>,
}

enum Table {
    Dense(Vec<u64>),
    Sparse(HashMap<u128, u64>),
}

/// One group column of a batch: its dictionary and the row indices into it.
struct Keys {
    values: ArrayRef,
    keys: Int32Array,
}

impl<'a> Counter<'a> {
    fn new(columns: &'a [String], schema: &'a SchemaRef) -> Self {
        Counter {
            columns,
            schema,
            dicts: Vec::new(),
            radix: Vec::new(),
            table: Table::Dense(Vec::new()),
            codes: Vec::new(),
            slots: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Starts counting for new dictionaries (after emitting the counts for the old ones).
    fn switch(&mut self, dicts: Vec<Option<ArrayRef>>) -> Result<()> {
        self.flush()?;
        self.radix = dicts
            .iter()
            .map(|d| d.as_ref().map_or(1, |v| v.len() as u128 + 1))
            .collect();
        let product = self
            .radix
            .iter()
            .try_fold(1u128, |p, r| p.checked_mul(*r))
            .ok_or_else(|| DataFusionError::Execution("dictionary too large to count".into()))?;
        self.table = if product <= DENSE_SLOTS {
            Table::Dense(vec![0; product as usize])
        } else {
            Table::Sparse(HashMap::new())
        };
        self.dicts = dicts;
        Ok(())
    }

    fn same_dictionaries(&self, dicts: &[Option<ArrayRef>]) -> bool {
        self.dicts.len() == dicts.len()
            && self.dicts.iter().zip(dicts).all(|(a, b)| match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => a.to_data().ptr_eq(&b.to_data()),
                _ => false,
            })
    }

    /// Counts `rows` rows of a file that has none of the group columns.
    fn add_absent(&mut self, rows: u64) -> Result<()> {
        let dicts = vec![None; self.columns.len()];
        if !self.same_dictionaries(&dicts) {
            self.switch(dicts)?;
        }
        match &mut self.table {
            Table::Dense(t) => t[0] += rows,
            Table::Sparse(t) => *t.entry(0).or_default() += rows,
        }
        Ok(())
    }

    /// Counts one batch of the group columns read from a file.
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut keys = Vec::with_capacity(self.columns.len());
        for name in self.columns {
            keys.push(match batch.column_by_name(name) {
                None => None,
                Some(col) => Some(dictionary_keys(col)?),
            });
        }
        let dicts: Vec<Option<ArrayRef>> = keys
            .iter()
            .map(|k| k.as_ref().map(|k| k.values.clone()))
            .collect();
        if !self.same_dictionaries(&dicts) {
            self.switch(dicts)?;
        }
        // Per column present in the file, each row's code: its dictionary index, or the
        // NULL index. (Absent columns have radix 1 and code 0, which leave slots unchanged.)
        let mut radix = Vec::with_capacity(keys.len());
        for (k, &r) in keys.iter().zip(&self.radix) {
            let Some(k) = k else {
                continue;
            };
            let null = u32::try_from(r - 1)
                .map_err(|_| DataFusionError::Execution("dictionary too large to count".into()))?;
            if self.codes.len() <= radix.len() {
                self.codes.push(Vec::new());
            }
            let codes = &mut self.codes[radix.len()];
            codes.clear();
            let values = k.keys.values();
            match k.keys.nulls().filter(|n| n.null_count() > 0) {
                None => codes.extend(values.iter().map(|&v| v as u32)),
                Some(n) => codes.extend(
                    values.iter().enumerate().map(
                        |(i, &v)| {
                            if n.is_valid(i) { v as u32 } else { null }
                        },
                    ),
                ),
            }
            // Arrow validates dictionary keys; check anyway, so that a bad file is an
            // error and never a count in the wrong place.
            if codes.iter().copied().max().is_some_and(|m| m > null) {
                return Err(DataFusionError::Execution(
                    "dictionary index out of bounds".into(),
                ));
            }
            radix.push(r);
        }
        let codes = &self.codes[..radix.len()];
        let rows = batch.num_rows();
        match &mut self.table {
            // The table holds the product of the radices, so every slot is in it.
            Table::Dense(t) => match codes {
                [] => t[0] += rows as u64,
                [a] => {
                    for &a in a {
                        t[a as usize] += 1;
                    }
                }
                [a, b] => {
                    let rb = radix[1] as usize;
                    for (&a, &b) in a.iter().zip(b) {
                        t[a as usize * rb + b as usize] += 1;
                    }
                }
                _ => {
                    for &s in combine(&mut self.slots, codes, &radix, rows) {
                        t[s as usize] += 1;
                    }
                }
            },
            Table::Sparse(t) => {
                for &s in combine(&mut self.slots, codes, &radix, rows) {
                    *t.entry(s).or_default() += 1;
                }
            }
        }
        Ok(())
    }

    /// Emits one partial row per index combination counted since the last switch.
    fn flush(&mut self) -> Result<()> {
        let mut found: Vec<(u128, u64)> = match &mut self.table {
            Table::Dense(t) => t
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(s, c)| (s as u128, *c))
                .collect(),
            Table::Sparse(t) => t.drain().collect(),
        };
        if let Table::Dense(t) = &mut self.table {
            t.fill(0);
        }
        if found.is_empty() {
            return Ok(());
        }
        found.sort_unstable();
        let groups = self.columns.len();
        // Split each slot back into per-column indices (the last column varies fastest).
        let mut indices: Vec<Vec<Option<i32>>> = vec![Vec::with_capacity(found.len()); groups];
        for &(slot, _) in &found {
            let mut s = slot;
            for c in (0..groups).rev() {
                let r = self.radix[c];
                let k = s % r;
                s /= r;
                indices[c].push(if k == r - 1 {
                    None
                } else {
                    i32::try_from(k).ok()
                });
            }
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (c, idx) in indices.into_iter().enumerate() {
            let ty = self.schema.field(c).data_type();
            columns.push(match &self.dicts[c] {
                None => new_null_array(ty, found.len()),
                Some(values) => cast(&take(values, &Int32Array::from(idx), None)?, ty)?,
            });
        }
        let counts: ArrayRef = Arc::new(Int64Array::from_iter_values(
            found
                .iter()
                .map(|&(_, c)| i64::try_from(c).unwrap_or(i64::MAX)),
        ));
        for _ in groups..self.schema.fields().len() {
            columns.push(counts.clone());
        }
        self.out
            .push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn finish(mut self) -> Result<RecordBatch> {
        self.flush()?;
        Ok(concat_batches(self.schema, &self.out)?)
    }
}

/// Each row's index combination (mixed radix, the last column varying fastest), in `slots`.
fn combine<'s>(
    slots: &'s mut Vec<u128>,
    codes: &[Vec<u32>],
    radix: &[u128],
    rows: usize,
) -> &'s [u128] {
    slots.clear();
    slots.resize(rows, 0);
    for (c, &r) in codes.iter().zip(radix) {
        for (s, &v) in slots.iter_mut().zip(c) {
            *s = *s * r + v as u128;
        }
    }
    slots
}

/// A group column as dictionary indices: as read when the column chunk is
/// dictionary-encoded, converted otherwise (plain-encoded pages, other string types).
fn dictionary_keys(col: &ArrayRef) -> Result<Keys> {
    let dict = match col.data_type() {
        DataType::Dictionary(k, _) if **k == DataType::Int32 => col.clone(),
        _ => cast(col, &dictionary_type())?,
    };
    let d = dict.as_dictionary::<Int32Type>();
    Ok(Keys {
        values: d.values().clone(),
        keys: d.keys().clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, LargeStringArray, StringArray};
    use arrow::util::display::array_value_to_string;
    use datafusion::execution::context::{SessionConfig, SessionContext};
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::ParquetReadOptions;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use proptest::prelude::*;

    /// One test file: its columns (`a`, `b` strings, `x` numbers) and how it is written.
    struct TestFile {
        a: Option<Vec<Option<String>>>,
        b: Option<Vec<Option<String>>>,
        /// A third string column, `c`.
        c: Option<Vec<Option<String>>>,
        rows: usize,
        /// `a` as LargeUtf8 instead of Utf8.
        large_a: bool,
        /// `b` plain-encoded (no dictionary).
        plain_b: bool,
        row_group_rows: usize,
        /// Dictionary page limit in bytes (small values force the plain fallback mid-chunk).
        dictionary_limit: usize,
    }

    fn write(dir: &std::path::Path, name: &str, f: &TestFile) {
        let mut fields = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        if let Some(a) = &f.a {
            if f.large_a {
                fields.push(Field::new("a", DataType::LargeUtf8, true));
                cols.push(Arc::new(LargeStringArray::from(a.clone())));
            } else {
                fields.push(Field::new("a", DataType::Utf8, true));
                cols.push(Arc::new(StringArray::from(a.clone())));
            }
        }
        if let Some(b) = &f.b {
            fields.push(Field::new("b", DataType::Utf8, true));
            cols.push(Arc::new(StringArray::from(b.clone())));
        }
        if let Some(c) = &f.c {
            fields.push(Field::new("c", DataType::Utf8, true));
            cols.push(Arc::new(StringArray::from(c.clone())));
        }
        fields.push(Field::new("x", DataType::Int64, false));
        cols.push(Arc::new(Int64Array::from_iter_values(0..f.rows as i64)));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(f.row_group_rows))
            .set_dictionary_page_size_limit(f.dictionary_limit)
            .set_data_page_row_count_limit(97)
            .set_write_batch_size(97)
            .set_column_dictionary_enabled("b".into(), !f.plain_b)
            .build();
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn table_schema() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Utf8, true),
            Field::new("x", DataType::Int64, true),
        ])
    }

    /// A session over `dir` as table `t`, with or without the rule; small files are split
    /// into byte ranges across three partitions, as DataFusion does for large ones.
    async fn session(dir: &std::path::Path, rule: bool) -> SessionContext {
        let mut config = SessionConfig::new().with_target_partitions(3);
        config.options_mut().optimizer.repartition_file_min_size = 64;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if rule {
            state = state.with_physical_optimizer_rule(Arc::new(DictionaryCountRule));
        }
        let ctx = SessionContext::new_with_state(state.build());
        let schema = table_schema();
        ctx.register_parquet(
            "t",
            &format!("{}/", dir.display()),
            ParquetReadOptions::default().schema(&schema),
        )
        .await
        .unwrap();
        ctx
    }

    fn cell(c: &ArrayRef, r: usize) -> String {
        if c.is_null(r) {
            "NULL".into()
        } else {
            array_value_to_string(c, r).unwrap()
        }
    }

    /// The rows of `sql`, one sorted string per row, and whether the plan counted from
    /// dictionaries.
    async fn run(ctx: &SessionContext, sql: &str) -> (Vec<String>, bool) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let batches = df.collect().await.unwrap();
        let mut rows = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = b.columns().iter().map(|c| cell(c, r)).collect();
                rows.push(cells.join("|"));
            }
        }
        rows.sort();
        (rows, shown.contains("DictionaryCountExec"))
    }

    fn values(n: usize, distinct: usize, null_every: usize, seed: usize) -> Vec<Option<String>> {
        (0..n)
            .map(|i| {
                if null_every > 0 && (i * 7 + seed).is_multiple_of(null_every) {
                    None
                } else {
                    Some(format!("v{}", (i * 31 + seed * 13) % distinct.max(1)))
                }
            })
            .collect()
    }

    fn mixed_files(dir: &std::path::Path) {
        let base = |rows: usize, seed: usize| TestFile {
            a: Some(values(rows, 7, 11, seed)),
            b: Some(values(rows, 5, 0, seed + 1)),
            c: None,
            rows,
            large_a: false,
            plain_b: false,
            row_group_rows: 300,
            dictionary_limit: 1 << 20,
        };
        write(dir, "1-plain.parquet", &base(1000, 1));
        write(
            dir,
            "2-plain-b.parquet",
            &TestFile {
                plain_b: true,
                ..base(900, 2)
            },
        );
        write(
            dir,
            "3-no-b.parquet",
            &TestFile {
                b: None,
                ..base(500, 3)
            },
        );
        write(
            dir,
            "4-no-groups.parquet",
            &TestFile {
                a: None,
                b: None,
                ..base(250, 4)
            },
        );
        write(
            dir,
            "5-fallback.parquet",
            &TestFile {
                a: Some(values(1200, 900, 13, 5)),
                dictionary_limit: 256,
                ..base(1200, 5)
            },
        );
        write(
            dir,
            "6-large.parquet",
            &TestFile {
                large_a: true,
                ..base(700, 6)
            },
        );
        // More than 65,536 combinations (counted in a hash table), and a third column.
        write(
            dir,
            "7-wide.parquet",
            &TestFile {
                a: Some(values(3000, 400, 17, 7)),
                b: Some(values(3000, 200, 0, 8)),
                c: Some(values(3000, 3, 5, 9)),
                row_group_rows: 3000,
                ..base(3000, 7)
            },
        );
    }

    #[tokio::test]
    async fn counts_match_datafusion_on_mixed_files() {
        let dir = tempfile::tempdir().unwrap();
        mixed_files(dir.path());
        let with = session(dir.path(), true).await;
        let without = session(dir.path(), false).await;
        let rewritten = [
            "SELECT a, b, count(*) FROM t GROUP BY a, b",
            "SELECT b, a, count(*) AS n, count(1) FROM t GROUP BY b, a",
            "SELECT DISTINCT a, b FROM t",
            "SELECT a, count(*) FROM t GROUP BY a",
            "SELECT count(*) FROM (SELECT a, b, count(*) FROM t GROUP BY a, b)",
            "SELECT a, count(*) AS n FROM t GROUP BY a ORDER BY n DESC, a LIMIT 3",
            "SELECT b, count(*) FROM t GROUP BY b HAVING count(*) > 100",
            "SELECT a, b, c, count(*) FROM t GROUP BY a, b, c",
            "SELECT c, a, count(*) FROM t GROUP BY c, a",
            // Planned as a DISTINCT over (a, b) below a count.
            "SELECT a, count(DISTINCT b) FROM t GROUP BY a",
        ];
        for sql in rewritten {
            let (got, used) = run(&with, sql).await;
            let (want, plain) = run(&without, sql).await;
            assert!(used, "the rule should apply to {sql}");
            assert!(!plain);
            assert_eq!(got, want, "{sql}");
            assert!(!got.is_empty());
        }
        // Plans the rule must leave alone still give DataFusion's answer.
        let untouched = [
            "SELECT a, count(*) FROM t WHERE x > 100 GROUP BY a",
            "SELECT a, count(b) FROM t GROUP BY a",
            "SELECT a, sum(x) FROM t GROUP BY a",
            "SELECT x % 3, count(*) FROM t GROUP BY x % 3",
            "SELECT upper(a), count(*) FROM t GROUP BY upper(a)",
            "SELECT a, count(*) FILTER (WHERE x > 5) FROM t GROUP BY a",
            "SELECT a, b, count(*) FROM t GROUP BY ROLLUP (a, b)",
            "SELECT count(*) FROM t",
        ];
        for sql in untouched {
            let (got, used) = run(&with, sql).await;
            let (want, _) = run(&without, sql).await;
            assert!(!used, "the rule must not apply to {sql}");
            assert_eq!(got, want, "{sql}");
        }
    }

    #[tokio::test]
    async fn counts_every_row_exactly_once() {
        // Known truth, not only agreement with DataFusion: 7,550 rows.
        let dir = tempfile::tempdir().unwrap();
        mixed_files(dir.path());
        let with = session(dir.path(), true).await;
        let (rows, used) = run(&with, "SELECT a, b, count(*) FROM t GROUP BY a, b").await;
        assert!(used);
        let total: i64 = rows
            .iter()
            .map(|r| r.rsplit('|').next().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(total, 1000 + 900 + 500 + 250 + 1200 + 700 + 3000);
        // Rows of the files without `b`, and the one without either column, are counted
        // under NULL.
        assert!(rows.iter().any(|r| r.starts_with("NULL|NULL|")));
    }

    #[tokio::test]
    async fn honours_file_ranges() {
        // One file of many row groups, split by byte range (as DataFusion splits large
        // files across partitions) at many different points: every row group must be
        // counted by exactly one range.
        let dir = tempfile::tempdir().unwrap();
        let rows = 5000;
        write(
            dir.path(),
            "one.parquet",
            &TestFile {
                a: Some(values(rows, 9, 10, 1)),
                b: Some(values(rows, 4, 0, 2)),
                c: None,
                rows,
                large_a: false,
                plain_b: false,
                row_group_rows: 250,
                dictionary_limit: 1 << 20,
            },
        );
        let path = dir.path().join("one.parquet");
        let size = std::fs::metadata(&path).unwrap().len();
        let location = path.to_str().unwrap().trim_start_matches('/').to_string();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8View, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let ctx = SessionContext::new();
        let (want, _) = run(
            &session(dir.path(), false).await,
            "SELECT a, b, count(*) FROM t GROUP BY a, b",
        )
        .await;
        for parts in [1i64, 2, 3, 7, 40] {
            let step = (size as i64 + parts - 1) / parts;
            let files: Vec<Vec<PartitionedFile>> = (0..parts)
                .map(|p| {
                    vec![
                        PartitionedFile::new(location.clone(), size)
                            .with_range(p * step, ((p + 1) * step).min(size as i64)),
                    ]
                })
                .collect();
            let exec: Arc<dyn ExecutionPlan> = Arc::new(DictionaryCountExec::new(
                ObjectStoreUrl::local_filesystem(),
                files,
                vec!["a".into(), "b".into()],
                schema.clone(),
            ));
            let batches = datafusion::physical_plan::collect(exec, ctx.task_ctx())
                .await
                .unwrap();
            // Merge the partial rows as the final aggregate would.
            let mut merged: std::collections::BTreeMap<String, i64> = Default::default();
            for b in &batches {
                for r in 0..b.num_rows() {
                    let key: Vec<String> = (0..2).map(|c| cell(b.column(c), r)).collect();
                    *merged.entry(key.join("|")).or_default() += b
                        .column(2)
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .value(r);
                }
            }
            let got: Vec<String> = merged.iter().map(|(k, n)| format!("{k}|{n}")).collect();
            assert_eq!(got, want, "{parts} ranges");
            assert_eq!(merged.values().sum::<i64>(), rows as i64, "{parts} ranges");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_files_count_like_datafusion(
            files in proptest::collection::vec(
                (1usize..600, 1usize..40, 0usize..5, 1usize..200, any::<bool>(), any::<bool>(), 0u8..4),
                // At least two files: with one, DataFusion may plan a single-stage aggregate,
                // which the rule leaves alone.
                2..5,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            for (i, (rows, distinct, null_every, rg, plain_b, small_dict, absent)) in files.iter().enumerate() {
                let f = TestFile {
                    a: (*absent != 1).then(|| values(*rows, *distinct, *null_every, i)),
                    b: (*absent != 2).then(|| values(*rows, distinct / 3 + 1, null_every * 2, i + 9)),
                    c: (*absent == 0).then(|| values(*rows, distinct * 40, *null_every, i + 3)),
                    rows: *rows,
                    large_a: *absent == 3,
                    plain_b: *plain_b,
                    row_group_rows: *rg,
                    dictionary_limit: if *small_dict { 64 } else { 1 << 20 },
                };
                write(dir.path(), &format!("{i}.parquet"), &f);
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let with = session(dir.path(), true).await;
                let without = session(dir.path(), false).await;
                for sql in [
                    "SELECT a, b, count(*) FROM t GROUP BY a, b",
                    "SELECT DISTINCT b FROM t",
                    "SELECT c, a, b, count(*) FROM t GROUP BY c, a, b",
                ] {
                    let (got, used) = run(&with, sql).await;
                    let (want, _) = run(&without, sql).await;
                    prop_assert!(used);
                    prop_assert_eq!(got, want);
                }
                Ok(())
            })?;
        }
    }
}

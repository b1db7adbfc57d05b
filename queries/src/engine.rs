use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder, UInt32Builder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::datasource::MemTable;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::ParquetReadOptions;
use tokio::sync::Mutex;
use veritrace_anchor::tables;
use veritrace_anchor::{BatchHeader, DataDir, EpochLog, EpochRecord, LocalLedger};

use crate::dict_count::DictionaryCountRule;
use crate::events_table::EventsTable;
use crate::limits::QueryLimits;
use crate::trace::{Direction, EdgeIndex, TraceFunction, Walk};
use veritrace_verify::Digest;
use veritrace_verify::bundle::{EvmReceipt, LedgerEntry};

use crate::Result;

/// A table whose contents are replaced as a whole on refresh. Registered once, so a query
/// planned during a refresh sees either the old or the new contents, never "no such table".
#[derive(Debug)]
struct Swappable {
    schema: SchemaRef,
    current: std::sync::RwLock<Arc<dyn TableProvider>>,
}

impl Swappable {
    fn new(schema: SchemaRef) -> Result<Self> {
        let empty = MemTable::try_new(schema.clone(), vec![vec![]])?;
        Ok(Swappable {
            schema,
            current: std::sync::RwLock::new(Arc::new(empty)),
        })
    }

    fn replace(&self, batch: RecordBatch) -> Result<()> {
        let table = Arc::new(MemTable::try_new(self.schema.clone(), vec![vec![batch]])?);
        self.replace_provider(table);
        Ok(())
    }

    fn replace_provider(&self, table: Arc<dyn TableProvider>) {
        match self.current.write() {
            Ok(mut g) => *g = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }

    fn current(&self) -> Arc<dyn TableProvider> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[async_trait::async_trait]
impl TableProvider for Swappable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        // Parquet pruning (statistics, bloom filters, page index) needs the filters.
        self.current().supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        // Take the current table, then release the lock before awaiting.
        let table = self.current();
        table.scan(state, projection, filters, limit).await
    }
}

/// `recorded` less the events in `hidden` (the corrected view, [`crate::corrections`]).
fn corrected(
    recorded: Arc<dyn TableProvider>,
    hidden: &std::collections::BTreeSet<String>,
) -> Result<Arc<dyn TableProvider>> {
    use datafusion::datasource::{ViewTable, provider_as_source};
    use datafusion::logical_expr::{LogicalPlanBuilder, col, lit};
    if hidden.is_empty() {
        return Ok(recorded);
    }
    let plan = LogicalPlanBuilder::scan("events", provider_as_source(recorded), None)?
        .filter(col("event_id").in_list(hidden.iter().map(|i| lit(i.as_str())).collect(), true))?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// Manifests, epochs and ledger as last read, with the fingerprint they were read at.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) fingerprint: u64,
    pub(crate) headers: HashMap<String, BatchHeader>,
    pub(crate) epochs: Vec<EpochRecord>,
    pub(crate) ledger: Vec<LedgerEntry>,
    /// EVM receipts by epoch id, with the root each anchors.
    pub(crate) evm: BTreeMap<u64, (Digest, EvmReceipt)>,
    /// The events files to scan (committed compacted files, then uncompacted batches).
    pub(crate) event_files: Vec<veritrace_anchor::compact::EventFile>,
    /// The audit log's batch files (the `audit` table; never compacted).
    pub(crate) audit_files: Vec<veritrace_anchor::compact::EventFile>,
    /// Committed events files that are gone, with what names them.
    pub(crate) missing: Vec<(std::path::PathBuf, String)>,
    /// Recorded digests of the committed files (for the background verifier).
    pub(crate) digests: Vec<veritrace_anchor::integrity::FileDigest>,
    /// The committed rejected and edges files, and those of them that are gone.
    pub(crate) side: SideFiles,
    /// The events the corrected view leaves out (effective error declarations).
    pub(crate) hidden: Arc<std::collections::BTreeSet<String>>,
    /// The log over every epoch's batch headers, built on first use.
    pub(crate) log:
        std::sync::OnceLock<std::result::Result<veritrace_verify::logtree::LogTree, String>>,
}

impl Snapshot {
    /// The epoch whose checkpoint has `size` leaves.
    pub(crate) fn epoch_at_log_size(&self, size: u64) -> crate::Result<&EpochRecord> {
        self.epochs
            .iter()
            .find(|e| e.log_size == Some(size))
            .ok_or_else(|| crate::Error::NotFound {
                what: "checkpoint of log size",
                id: size.to_string(),
            })
    }

    /// The log over every epoch's batches (built once per snapshot), or why it cannot be.
    pub(crate) fn log(&self) -> crate::Result<&veritrace_verify::logtree::LogTree> {
        self.log
            .get_or_init(|| {
                veritrace_anchor::log_of_epochs(&self.epochs, |id| self.headers.get(id))
            })
            .as_ref()
            .map_err(|detail| crate::Error::corrupt("the log", detail.clone()))
    }
}

/// The `rejected` and `edges` tables: the files the batch commits named (their digest log),
/// never whatever lies in the directory. A file a writer put there and never committed (it
/// was killed before its manifest entry; recovery quarantines it later) is not read, so a
/// reader never counts a record twice.
#[derive(Debug, Default)]
pub(crate) struct SideFiles {
    pub(crate) rejected: Vec<std::path::PathBuf>,
    pub(crate) edges: Vec<std::path::PathBuf>,
    pub(crate) rejected_missing: Vec<(std::path::PathBuf, String)>,
    pub(crate) edges_missing: Vec<(std::path::PathBuf, String)>,
}

/// Which events files exist: asked of the file system one by one locally, listed once on an
/// object store (a request per file would be a round trip each).
pub(crate) enum Present {
    Local,
    Listed(std::collections::HashSet<std::path::PathBuf>),
}

impl Present {
    pub(crate) fn of(dir: &DataDir) -> Result<Present> {
        if !dir.is_remote() {
            return Ok(Present::Local);
        }
        let mut set = std::collections::HashSet::new();
        for d in [
            dir.events_dir(),
            dir.compacted_dir(),
            dir.rejected_dir(),
            dir.edges_dir(),
        ] {
            set.extend(dir.list_files(&d)?.into_iter().map(|(p, _)| p));
        }
        Ok(Present::Listed(set))
    }

    pub(crate) fn has(&self, path: &std::path::Path) -> bool {
        match self {
            Present::Local => path.exists(),
            Present::Listed(s) => s.contains(path),
        }
    }
}

/// The committed events files that are missing, and the recorded digests of every committed
/// file (batch files no compaction covers, live compacted files).
#[allow(clippy::type_complexity)]
fn committed_files(
    dir: &DataDir,
    headers: &[BatchHeader],
    log: &veritrace_anchor::compact::CompactionLog,
) -> Result<(
    Vec<(std::path::PathBuf, String)>,
    Vec<veritrace_anchor::integrity::FileDigest>,
    SideFiles,
)> {
    use std::collections::BTreeSet;
    let exists = Present::of(dir)?;
    let covered = log.covered_batches();
    let mut missing = Vec::new();
    let mut digests = Vec::new();
    let partitions: BTreeSet<(&str, u32)> = headers
        .iter()
        .map(|h| (h.stream.as_str(), h.partition))
        .collect();
    let mut recorded = HashMap::new();
    for (stream, p) in partitions {
        recorded.extend(veritrace_anchor::integrity::read_batch_files(
            dir,
            &dir.batch_files_log(stream, p),
        )?);
    }
    // Rejected and edges files are never compacted: every batch's count.
    let mut side = SideFiles::default();
    for h in headers
        .iter()
        .filter(|h| h.stream != veritrace_anchor::AUDIT_STREAM)
    {
        let (rejected, edges) = (dir.rejected_file(&h.batch_id), dir.edges_file(&h.batch_id));
        let (with_rejected, with_edges) = match recorded.get(&h.batch_id) {
            Some(b) => (
                b.files.iter().any(|f| dir.root().join(&f.file) == rejected),
                b.files.iter().any(|f| dir.root().join(&f.file) == edges),
            ),
            // A batch from before digest logs: its files if they are there.
            None => (exists.has(&rejected), exists.has(&edges)),
        };
        for (committed, path, files, gone, what) in [
            (
                with_rejected,
                rejected,
                &mut side.rejected,
                &mut side.rejected_missing,
                "rejected",
            ),
            (
                with_edges,
                edges,
                &mut side.edges,
                &mut side.edges_missing,
                "edges",
            ),
        ] {
            if !committed {
                continue;
            }
            if !exists.has(&path) {
                gone.push((
                    path.clone(),
                    format!(
                        "missing: batch {} committed its {what} file and it is gone",
                        h.batch_id
                    ),
                ));
            }
            files.push(path);
        }
    }
    for h in headers
        .iter()
        .filter(|h| !covered.contains(h.batch_id.as_str()))
    {
        let path = dir.events_file(&h.batch_id);
        if !exists.has(&path) {
            missing.push((
                path,
                format!(
                    "missing: batch {} is committed in its manifest ({} events) but its events file is gone",
                    h.batch_id, h.size
                ),
            ));
        }
        if let Some(files) = recorded.remove(&h.batch_id) {
            digests.extend(files.files);
        }
    }
    for f in log.live_files() {
        let path = dir.compacted_dir().join(&f.file);
        if !exists.has(&path) {
            missing.push((
                path,
                format!(
                    "missing: compacted file of {} events committed in the compaction log and gone",
                    f.rows
                ),
            ));
        }
        if let Some(d) = log.digest_of(&f.file) {
            digests.push(d.clone());
        }
    }
    Ok((missing, digests, side))
}

/// DataFusion over one data directory.
///
/// Cloning is cheap: clones share the session, the snapshot, the query runtime and its
/// limits. SQL statements, traces and certificates run on the engine's own query runtime
/// under [`QueryLimits`] ([`crate::limits`]); lookups and proofs run where they are called.
#[derive(Clone)]
pub struct QueryEngine {
    pub(crate) ctx: SessionContext,
    pub(crate) dir: DataDir,
    pub(crate) snapshot: Arc<Mutex<Arc<Snapshot>>>,
    guard: Arc<Guard>,
    pub(crate) verifier: Arc<crate::damage::Verifier>,
    pub(crate) lookup: Arc<crate::lookup::LookupIndex>,
    /// The code ranges of the pages of sorted events files ([`crate::events_table`]).
    code_pages: Arc<crate::events_table::PageMaps>,
    batches: Arc<Swappable>,
    epochs: Arc<Swappable>,
    /// Held to write while a refresh swaps the tables, and to read while a statement pins
    /// them: a statement sees every table of one snapshot.
    swaps: Arc<std::sync::RwLock<()>>,
    /// The trace graph, shared with the SQL table functions.
    pub(crate) edges: Arc<std::sync::RwLock<Arc<EdgeIndex>>>,
    /// The `events` table, for trace plans.
    pub(crate) events: Arc<dyn TableProvider>,
    events_table: Arc<Swappable>,
    /// Every committed event, also those declared in error (`events_as_recorded`).
    recorded_table: Arc<Swappable>,
    /// The verdicts on error declarations.
    corrections: Arc<crate::corrections::Corrections>,
    rejected_table: Arc<Swappable>,
    edges_table: Arc<Swappable>,
    /// The audit log's entries, as events ([`veritrace_processors::audit`]).
    audit_table: Arc<Swappable>,
    /// The operator's root key, to replay the identity registry (visibility grants).
    pub(crate) registry_root: Option<veritrace_verify::signature::PublicKey>,
    /// The registry's grants, with the snapshot fingerprint they were read at.
    #[allow(clippy::type_complexity)]
    pub(crate) grants: Arc<
        Mutex<
            Option<(
                u64,
                Arc<BTreeMap<String, veritrace_verify::registry::Grant>>,
            )>,
        >,
    >,
    /// What this engine's identity may see (`None`: everything) ([`crate::visibility`]).
    pub(crate) visibility: Option<Arc<crate::visibility::Visibility>>,
    /// The limits of this engine's identity, over the server's ([`crate::access::Quota`]).
    quota: Option<Arc<crate::access::Quota>>,
    /// Whether lookups refuse audit entries (every scope but admins' and auditors').
    pub(crate) hides_audit: bool,
    /// Brand keys for the resolver's signature checks ([`crate::resolver`]).
    pub(crate) brand_keys: Arc<crate::resolver::BrandKeys>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How a [`QueryEngine`] plans queries.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Answer `GROUP BY` counts and `DISTINCT` over string columns from the Parquet
    /// dictionary indices ([`crate::dict_count`]); off, DataFusion plans them as usual.
    pub dictionary_count: bool,
    /// What one query may cost ([`crate::limits`]).
    pub limits: QueryLimits,
    /// The operator's root key (`[signatures] root-key`): the registry's visibility grants
    /// are replayed with it. Without it, participants see only their own events.
    pub registry_root: Option<veritrace_verify::signature::PublicKey>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            dictionary_count: true,
            limits: QueryLimits::default(),
            registry_root: None,
        }
    }
}

impl QueryOptions {
    /// The defaults, with `VERITRACE_DICTIONARY_COUNT=off` turning dictionary counts off.
    pub fn from_env() -> Self {
        QueryOptions {
            dictionary_count: std::env::var("VERITRACE_DICTIONARY_COUNT").as_deref() != Ok("off"),
            ..Default::default()
        }
    }
}

/// A query's slots: the server's, and its identity's if it has a quota (held until the
/// query ends).
pub(crate) struct Slot(
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
    #[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>,
);

/// The query runtime, the limits and the slots of running queries, shared by clones.
struct Guard {
    exec: Executor,
    limits: QueryLimits,
    slots: Arc<tokio::sync::Semaphore>,
    metrics: QueryMetrics,
}

/// A multi-threaded runtime of its own for query work: CPU-heavy plans occupy its threads,
/// never the ones that answer health checks, metrics and lookups. Its threads have a large
/// stack ([`crate::limits::QUERY_THREAD_STACK`]).
struct Executor {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl Executor {
    fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("veritrace-query")
            .thread_stack_size(crate::limits::QUERY_THREAD_STACK)
            .enable_all()
            .build()
            .map_err(|e| crate::Error::Internal(format!("starting the query runtime: {e}")))?;
        Ok(Executor {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which is not allowed inside another
        // runtime (where engines are usually dropped); running queries are cancelled anyway.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A spawned task that is aborted when its handle is dropped: a query whose caller went away
/// (client disconnected, deadline passed) stops using CPU and memory.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Metric: queries running now on the query runtime ([`veritrace_metrics::QUERIES_RUNNING`]).
pub const QUERIES_RUNNING: &str = veritrace_metrics::QUERIES_RUNNING.name;
/// Metric: queries refused or stopped, by reason ([`veritrace_metrics::QUERIES_REFUSED`]).
pub const QUERIES_REFUSED_TOTAL: &str = veritrace_metrics::QUERIES_REFUSED.name;

#[derive(Clone)]
struct QueryMetrics {
    running: prometheus::IntGauge,
    refused: prometheus::IntCounterVec,
}

impl QueryMetrics {
    fn new() -> Result<Self> {
        let m = |e: prometheus::Error| crate::Error::Internal(format!("query metrics: {e}"));
        Ok(QueryMetrics {
            running: prometheus::IntGauge::with_opts(veritrace_metrics::opts(
                &veritrace_metrics::QUERIES_RUNNING,
            ))
            .map_err(m)?,
            refused: prometheus::IntCounterVec::new(
                veritrace_metrics::opts(&veritrace_metrics::QUERIES_REFUSED),
                veritrace_metrics::QUERIES_REFUSED.labels,
            )
            .map_err(m)?,
        })
    }
}

/// Counts a running query while alive.
struct Running(prometheus::IntGauge);

impl Running {
    fn start(g: &prometheus::IntGauge) -> Self {
        g.inc();
        Running(g.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl QueryEngine {
    /// Opens a data directory for queries (read-only: it never writes there), with
    /// [`QueryOptions::from_env`].
    pub async fn open(root: impl Into<std::path::PathBuf>) -> Result<Self> {
        Self::open_with(root, QueryOptions::from_env()).await
    }

    /// Opens a data directory for queries with the given options.
    pub async fn open_with(
        root: impl Into<std::path::PathBuf>,
        options: QueryOptions,
    ) -> Result<Self> {
        let dir = DataDir::open(root)?;
        // DataFusion settings can be tuned from the environment (`DATAFUSION_EXECUTION_...`,
        // e.g. DATAFUSION_EXECUTION_BATCH_SIZE); the ones below are what Veritrace needs.
        let env_in_list = std::env::var_os("DATAFUSION_EXECUTION_PARQUET_MAX_IN_LIST_SIZE");
        let mut config = SessionConfig::from_env()?
            .with_information_schema(true)
            .with_parquet_pruning(true)
            .with_parquet_bloom_filter_pruning(true)
            .with_parquet_page_index_pruning(true);
        // Traces filter by `IN` lists of hundreds of codes; prune row groups and pages by
        // them too (DataFusion stops at 20 by default).
        if env_in_list.is_none() {
            config.options_mut().execution.parquet.max_in_list_size = MAX_PRUNED_IN_LIST;
        }
        // Evaluate filters while decoding (late materialisation): a lookup by event id or
        // trace code decodes the filter column of the pages left after pruning, then only
        // the matching rows of the other columns. At 50 M events this takes an event-id
        // lookup from 97-136 ms to 42-44 ms and a backward trace with every column from
        // 234 ms to 76 ms (BENCHMARKS.md).
        if std::env::var_os("DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS").is_none() {
            config.options_mut().execution.parquet.pushdown_filters = true;
        }
        let limits = options.limits.clone();
        let registry_root = options.registry_root.clone();
        // One memory pool for all queries: joins, aggregates and sorts reserve from it,
        // sorts and aggregates spill to disk when it runs out, and a query that still
        // cannot fit fails with `query_memory_exceeded` naming the biggest consumers.
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(limits.memory_limit.max(1 << 20)),
            std::num::NonZeroUsize::MIN.saturating_add(2),
        );
        // No listing cache: DataFusion would otherwise list a directory table (`rejected`,
        // `edges`) once and never again, and a server on an `s3://` data directory would
        // stop seeing the files sealed after its first query.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .with_cache_manager(
                datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
                    .with_list_files_cache_limit(0),
            )
            .build_arc()?;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features();
        // Joins yield to the scheduler, so deadlines and disconnects can stop them.
        state = state.with_physical_optimizer_rule(Arc::new(crate::limits::YieldingOperators));
        // GROUP BY counts over string columns read the Parquet dictionary indices only.
        if options.dictionary_count {
            state = state.with_physical_optimizer_rule(Arc::new(DictionaryCountRule));
        }
        let ctx = SessionContext::new_with_state(state.build());
        // An `s3://` data directory: DataFusion reads its Parquet files through the same
        // store, with ranged GETs (footer, then the row groups and pages left after pruning).
        if let Some((url, store, _)) = dir.object_store() {
            let url = datafusion::execution::object_store::ObjectStoreUrl::parse(&url)?;
            ctx.register_object_store(url.as_ref(), store);
        }
        // `events` is the committed files only (compacted files plus batches no compaction
        // covers), swapped as a whole on refresh: never an event twice, never a miss.
        let es = tables::EVENTS.schema();
        let events_table = Arc::new(Swappable::new(es.clone())?);
        ctx.register_table("events", events_table.clone())?;
        let recorded_table = Arc::new(Swappable::new(es.clone())?);
        ctx.register_table("events_as_recorded", recorded_table.clone())?;
        // `rejected` and `edges`: the committed files only, swapped on refresh like events.
        let rejected_table = Arc::new(Swappable::new(tables::REJECTED.schema())?);
        ctx.register_table("rejected", rejected_table.clone())?;
        let edges_table = Arc::new(Swappable::new(tables::EDGES.schema())?);
        ctx.register_table("edges", edges_table.clone())?;
        let batches = Arc::new(Swappable::new(batches_schema())?);
        let epochs = Arc::new(Swappable::new(epochs_schema())?);
        ctx.register_table("batches", batches.clone())?;
        ctx.register_table("epochs", epochs.clone())?;
        let audit_table = Arc::new(Swappable::new(es.clone())?);
        ctx.register_table("audit", audit_view(audit_table.clone())?)?;
        ctx.register_table("clone_suspects", crate::clones::view(&ctx).await?)?;
        ctx.register_table("code_lifecycle", crate::lifecycle::view(&ctx).await?)?;
        let events: Arc<dyn TableProvider> = events_table.clone();
        let edges = Arc::new(std::sync::RwLock::new(Arc::new(EdgeIndex::default())));
        for d in [Direction::Backward, Direction::Forward] {
            let name = match d {
                Direction::Backward => "trace_backward",
                Direction::Forward => "trace_forward",
            };
            ctx.register_udtf(
                name,
                Arc::new(TraceFunction::new(
                    d,
                    edges.clone(),
                    events.clone(),
                    dir.clone(),
                )),
            );
        }
        let guard = Arc::new(Guard {
            exec: Executor::new(limits.threads)?,
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent.max(1))),
            limits,
            metrics: QueryMetrics::new()?,
        });
        let engine = QueryEngine {
            ctx,
            dir,
            snapshot: Arc::new(Mutex::new(Arc::new(Snapshot::default()))),
            guard,
            verifier: Arc::new(crate::damage::Verifier::default()),
            lookup: Arc::new(crate::lookup::LookupIndex::default()),
            code_pages: Arc::default(),
            batches,
            epochs,
            swaps: Arc::default(),
            edges,
            events,
            events_table,
            recorded_table,
            corrections: Arc::default(),
            audit_table,
            rejected_table,
            edges_table,
            registry_root,
            grants: Arc::default(),
            visibility: None,
            quota: None,
            hides_audit: false,
            brand_keys: Arc::default(),
        };
        engine.refresh().await?;
        Ok(engine)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// The DataFusion session (for embedding).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Re-reads manifests, epochs and the ledger if any of them changed, and re-registers
    /// the `batches` and `epochs` tables. Parquet tables list their files on every scan.
    pub async fn refresh(&self) -> Result<()> {
        self.snapshot().await.map(|_| ())
    }

    /// The current metadata snapshot, re-read if the files changed.
    pub(crate) async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let fp = if self.dir.is_remote() {
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || fingerprint(&dir))
                .await
                .unwrap_or(0)
        } else {
            fingerprint(&self.dir)
        };
        let mut guard = self.snapshot.lock().await;
        if guard.fingerprint == fp && fp != 0 {
            return Ok(guard.clone());
        }
        let dir = self.dir.clone();
        let snap = tokio::task::spawn_blocking(move || -> Result<Snapshot> {
            let all = dir.all_batch_headers()?;
            let epochs = EpochLog::read(&dir)?.records().to_vec();
            let ledger = LocalLedger::read_entries(&dir)?;
            let evm = veritrace_anchor::evm::read_receipts(&dir)?;
            let log = veritrace_anchor::compact::CompactionLog::read(&dir)?;
            // The audit log's batches are its own table, never events.
            let (audit, business): (Vec<_>, Vec<_>) = all
                .iter()
                .cloned()
                .partition(|h| h.stream == veritrace_anchor::AUDIT_STREAM);
            let event_files = veritrace_anchor::compact::event_files(&dir, &business, &log);
            let present = Present::of(&dir)?;
            let audit_files = audit
                .iter()
                .map(|h| dir.events_file(&h.batch_id))
                .filter(|p| present.has(p))
                .map(|path| veritrace_anchor::compact::EventFile { path, keys: None })
                .collect();
            let (missing, digests, side) = committed_files(&dir, &all, &log)?;
            Ok(Snapshot {
                fingerprint: fp,
                event_files,
                audit_files,
                missing,
                digests,
                side,
                headers: all.into_iter().map(|h| (h.batch_id.clone(), h)).collect(),
                epochs,
                ledger,
                evm,
                hidden: Arc::default(),
                log: std::sync::OnceLock::new(),
            })
        })
        .await
        .map_err(|e| crate::Error::Internal(format!("reading manifests: {e}")))??;
        let mut snap = snap;
        let retractions: Vec<veritrace_verify::bundle::Retraction> = snap
            .headers
            .values()
            .filter(|h| h.stream != veritrace_anchor::AUDIT_STREAM)
            .flat_map(|h| h.retracts.iter().cloned())
            .collect();
        if !retractions.is_empty() {
            let recorded = Arc::new(self.events_provider(snap.event_files.clone(), &snap));
            snap.hidden = self
                .corrections
                .hidden(&self.ctx, recorded, &retractions)
                .await;
        }
        let snap = Arc::new(snap);
        self.register_meta(&snap)?;
        self.verifier
            .schedule(self.dir.clone(), snap.digests.clone());
        let live = snap
            .event_files
            .iter()
            .chain(&snap.audit_files)
            .map(|f| f.path.as_path())
            .collect::<Vec<_>>();
        self.lookup.retain(&live);
        self.code_pages.retain(&live);
        *guard = snap.clone();
        Ok(snap)
    }

    /// Damage known now: committed files missing (checked live) and files whose contents
    /// differ from their recorded digests (found by the background verifier, which this
    /// also asks to look again). Empty when the data directory is intact as far as known.
    pub async fn damage(&self) -> Result<Vec<(std::path::PathBuf, String)>> {
        let snap = self.snapshot().await?;
        self.verifier
            .schedule(self.dir.clone(), snap.digests.clone());
        let check = snap.clone();
        let dir = self.dir.clone();
        let mut out = tokio::task::spawn_blocking(move || -> Result<_> {
            let present = Present::of(&dir)?;
            let mut out: Vec<(std::path::PathBuf, String)> = check.missing.clone();
            out.extend(
                check
                    .event_files
                    .iter()
                    .chain(&check.audit_files)
                    .filter(|f| !present.has(&f.path))
                    .map(|f| (f.path.clone(), "missing: committed and gone".to_owned())),
            );
            Ok(out)
        })
        .await
        .map_err(|e| crate::Error::Internal(format!("checking files: {e}")))??;
        out.extend(self.verifier.report());
        // One line per file: the first (most specific) reason found for it.
        let mut seen = std::collections::HashSet::new();
        out.retain(|(p, _)| seen.insert(p.clone()));
        out.sort();
        Ok(out)
    }

    /// Committed files hashed against their digests since the engine opened.
    pub fn files_verified(&self) -> u64 {
        self.verifier.hashed()
    }

    /// Brings the trace graph up to the committed batches of `snap`. Loaded on the first
    /// trace, not at open: lookups and aggregates never wait for it.
    pub(crate) async fn ensure_edges(&self, snap: Arc<Snapshot>) -> Result<()> {
        let edges = self.edges.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut guard = match edges.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if !guard.file_tried() {
                // The persisted index, when it fits this snapshot: only the batches sealed
                // since it was written are then read from their edges files.
                let committed = |b: &str| snap.headers.contains_key(b);
                Arc::make_mut(&mut *guard).attach_file(&dir, &committed);
            }
            let pending = snap.headers.keys().any(|b| !guard.is_loaded(b.as_str()));
            if pending {
                // In place: the index is copied only if a trace is reading it right now.
                // Batch order (not hash order) keeps walks the same from run to run.
                let mut ids: Vec<&BatchHeader> = snap.headers.values().collect();
                ids.sort_by(|a, b| {
                    (&a.stream, a.partition, a.seq).cmp(&(&b.stream, b.partition, b.seq))
                });
                let idx = Arc::make_mut(&mut *guard);
                idx.load_batches(&dir, ids.iter().map(|h| h.batch_id.as_str()))?;
            }
            // Links made by events declared in error are not followed (events loaded just
            // now may be among them).
            if pending || !guard.retracts_as(&snap.hidden) {
                Arc::make_mut(&mut *guard).retract(snap.hidden.clone());
            }
            Ok(())
        })
        .await
        .map_err(|e| crate::Error::Internal(format!("loading the trace graph: {e}")))?
    }

    fn listing_options(&self) -> datafusion::datasource::listing::ListingOptions {
        use datafusion::datasource::file_format::options::ReadOptions;
        ParquetReadOptions::default()
            .to_listing_options(&self.ctx.copied_config(), self.ctx.copied_table_options())
    }

    /// The committed events `files` as a table.
    fn events_provider(
        &self,
        files: Vec<veritrace_anchor::compact::EventFile>,
        snap: &Snapshot,
    ) -> EventsTable {
        EventsTable::new(
            tables::EVENTS.schema(),
            files,
            self.listing_options(),
            snap.missing.clone(),
            self.verifier.altered(),
            self.code_pages.clone(),
        )
    }

    fn register_events(&self, snap: &Snapshot) -> Result<()> {
        let options = self.listing_options();
        let recorded: Arc<dyn TableProvider> =
            Arc::new(self.events_provider(snap.event_files.clone(), snap));
        self.recorded_table.replace_provider(recorded.clone());
        self.events_table
            .replace_provider(corrected(recorded, &snap.hidden)?);
        self.audit_table.replace_provider(Arc::new(EventsTable::new(
            tables::EVENTS.schema(),
            snap.audit_files.clone(),
            options.clone(),
            snap.missing.clone(),
            self.verifier.altered(),
            self.code_pages.clone(),
        )));
        let plain = |files: &[std::path::PathBuf]| -> Vec<veritrace_anchor::compact::EventFile> {
            files
                .iter()
                .map(|path| veritrace_anchor::compact::EventFile {
                    path: path.clone(),
                    keys: None,
                })
                .collect()
        };
        self.rejected_table
            .replace_provider(Arc::new(EventsTable::new(
                tables::REJECTED.schema(),
                plain(&snap.side.rejected),
                options.clone(),
                snap.side.rejected_missing.clone(),
                self.verifier.altered(),
                self.code_pages.clone(),
            )));
        self.edges_table.replace_provider(Arc::new(EventsTable::new(
            tables::EDGES.schema(),
            plain(&snap.side.edges),
            options,
            snap.side.edges_missing.clone(),
            self.verifier.altered(),
            self.code_pages.clone(),
        )));
        Ok(())
    }

    fn register_meta(&self, snap: &Snapshot) -> Result<()> {
        let _swapping = self.swaps.write().unwrap_or_else(|p| p.into_inner());
        self.register_events(snap)?;
        let mut epoch_of: HashMap<&str, u64> = HashMap::new();
        for e in &snap.epochs {
            for b in &e.batch_ids {
                epoch_of.insert(b.as_str(), e.epoch_id);
            }
        }
        let mut headers: Vec<&BatchHeader> = snap.headers.values().collect();
        headers
            .sort_by(|a, b| (&a.stream, a.partition, a.seq).cmp(&(&b.stream, b.partition, b.seq)));
        let (mut id, mut stream, mut root, mut prev, mut sealed) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut part, mut seq, mut first, mut last, mut records, mut size, mut epoch) = (
            UInt32Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
        );
        for h in headers {
            id.append_value(&h.batch_id);
            stream.append_value(&h.stream);
            part.append_value(h.partition);
            seq.append_value(h.seq);
            first.append_value(h.first_offset);
            last.append_value(h.last_offset);
            records.append_value(h.records);
            size.append_value(h.size);
            root.append_value(h.root.to_hex());
            prev.append_value(h.prev_root.to_hex());
            sealed.append_value(&h.sealed_at);
            epoch.append_option(epoch_of.get(h.batch_id.as_str()).copied());
        }
        let schema = batches_schema();

        let cols: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(stream.finish()),
            Arc::new(part.finish()),
            Arc::new(seq.finish()),
            Arc::new(first.finish()),
            Arc::new(last.finish()),
            Arc::new(records.finish()),
            Arc::new(size.finish()),
            Arc::new(root.finish()),
            Arc::new(prev.finish()),
            Arc::new(sealed.finish()),
            Arc::new(epoch.finish()),
        ];
        self.batches.replace(RecordBatch::try_new(schema, cols)?)?;

        let (mut eid, mut bc, mut ev, mut lsize) = (
            UInt64Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
        );
        let (mut eroot, mut esealed, mut status, mut backend, mut anchored_at, mut pk, mut sig) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let (mut chain, mut contract, mut tx, mut block) = (
            UInt64Builder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            UInt64Builder::new(),
        );
        for e in &snap.epochs {
            eid.append_value(e.epoch_id);
            eroot.append_value(e.root.to_hex());
            bc.append_value(e.batch_count);
            ev.append_value(e.events);
            lsize.append_option(e.log_size);
            esealed.append_value(&e.sealed_at);
            let entry = snap
                .ledger
                .get(e.epoch_id as usize)
                .filter(|l| l.epoch_id == e.epoch_id && l.root == e.root);
            let evm = snap
                .evm
                .get(&e.epoch_id)
                .filter(|(root, _)| *root == e.root)
                .map(|(_, r)| r);
            status.append_value(if entry.is_some() || evm.is_some() {
                "anchored"
            } else {
                "sealed"
            });
            // A chain receipt is the stronger witness and is what proofs carry.
            backend.append_option(if evm.is_some() {
                Some("evm")
            } else {
                entry.map(|_| "local")
            });
            anchored_at.append_option(entry.map(|l| l.anchored_at.as_str()));
            pk.append_option(entry.map(|l| l.public_key.as_str()));
            sig.append_option(entry.map(|l| l.signature.as_str()));
            chain.append_option(evm.map(|r| r.chain_id));
            contract.append_option(evm.map(|r| r.contract.as_str()));
            tx.append_option(evm.map(|r| r.tx_hash.as_str()));
            block.append_option(evm.map(|r| r.block_number));
        }
        let schema = epochs_schema();

        let cols: Vec<ArrayRef> = vec![
            Arc::new(eid.finish()),
            Arc::new(eroot.finish()),
            Arc::new(bc.finish()),
            Arc::new(ev.finish()),
            Arc::new(lsize.finish()),
            Arc::new(esealed.finish()),
            Arc::new(status.finish()),
            Arc::new(backend.finish()),
            Arc::new(anchored_at.finish()),
            Arc::new(pk.finish()),
            Arc::new(sig.finish()),
            Arc::new(chain.finish()),
            Arc::new(contract.finish()),
            Arc::new(tx.finish()),
            Arc::new(block.finish()),
        ];
        self.epochs.replace(RecordBatch::try_new(schema, cols)?)?;
        Ok(())
    }

    /// The limits queries run under.
    pub fn limits(&self) -> &QueryLimits {
        &self.guard.limits
    }

    /// Registers the query-stage metrics ([`QUERIES_RUNNING`], [`QUERIES_REFUSED_TOTAL`]).
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.guard.metrics.running.clone()))?;
        registry.register(Box::new(self.guard.metrics.refused.clone()))
    }

    fn refused(&self, e: &crate::Error) {
        if let Some(reason) = e.refusal_reason() {
            self.guard
                .metrics
                .refused
                .with_label_values(&[reason])
                .inc();
        }
    }

    /// Waits for a query slot, at most [`QueryLimits::queue_timeout`].
    async fn slot(&self) -> Result<Slot> {
        let limits = &self.guard.limits;
        // The identity's own slot first, so a flood of one identity's queries waits in its
        // own line and never holds the server's slots that others need.
        let own = match self
            .quota
            .as_ref()
            .and_then(|q| Some((q, q.slots.clone()?)))
        {
            None => None,
            Some((q, slots)) => {
                match tokio::time::timeout(limits.queue_timeout, slots.acquire_owned()).await {
                    Ok(Ok(p)) => Some(p),
                    Ok(Err(_)) => {
                        return Err(crate::Error::Internal("the query slots were closed".into()));
                    }
                    Err(_) => {
                        return Err(crate::Error::TooManyQueries {
                            who: q.name.clone(),
                            running: q.limits.max_concurrent.unwrap_or(0),
                            waited: limits.queue_timeout,
                        });
                    }
                }
            }
        };
        match tokio::time::timeout(
            limits.queue_timeout,
            self.guard.slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(Slot(permit, own)),
            Ok(Err(_)) => Err(crate::Error::Internal("the query slots were closed".into())),
            Err(_) => Err(crate::Error::Busy {
                running: limits.max_concurrent,
                waited: limits.queue_timeout,
            }),
        }
    }

    /// The brand keys the resolver checks codes' AI 8030 signatures with.
    pub fn with_brand_keys(mut self, keys: crate::resolver::BrandKeys) -> Self {
        self.brand_keys = Arc::new(keys);
        self
    }

    /// This engine with `quota`'s limits on its queries.
    pub fn with_quota(mut self, quota: Option<Arc<crate::access::Quota>>) -> Self {
        if let Some(rt) = quota.as_ref().and_then(|q| q.runtime.clone()) {
            // The same tables and functions, planned and run against the identity's own
            // memory pool.
            self.ctx = SessionContext::new_with_state(
                SessionStateBuilder::new_from_existing(self.ctx.state())
                    .with_runtime_env(rt)
                    .build(),
            );
        }
        self.quota = quota;
        self
    }

    /// The deadline of one query: the server's, or the identity's if shorter.
    fn timeout(&self) -> std::time::Duration {
        let server = self.guard.limits.timeout;
        self.quota
            .as_ref()
            .and_then(|q| q.limits.timeout)
            .map_or(server, |t| t.min(server))
    }

    /// Runs `work` on the query runtime in a query slot, under the deadline; dropping the
    /// returned future (the caller went away) aborts the work.
    pub(crate) async fn run<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(QueryEngine) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let result = async {
            let permit = self.slot().await?;
            let running = Running::start(&self.guard.metrics.running);
            let fut = work(self.clone());
            let task = AbortOnDrop(self.guard.exec.handle.spawn(async move {
                let _slot = permit;
                let _running = running;
                fut.await
            }));
            let timeout = self.timeout();
            match tokio::time::timeout(timeout, task).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) if e.is_panic() => Err(crate::Error::Internal(format!(
                    "the query failed unexpectedly: {}",
                    panic_message(e.into_panic())
                ))),
                Ok(Err(e)) => Err(crate::Error::Internal(format!("the query stopped: {e}"))),
                Err(_) => Err(crate::Error::Timeout(timeout)),
            }
        }
        .await;
        if let Err(e) = &result {
            self.refused(e);
        }
        result
    }

    /// Traces `code` (any accepted trace-code form) backward or forward, at most
    /// `max_depth` levels: the walk (nodes, edge events, cycles) and every event of it.
    pub async fn trace(
        &self,
        code: &str,
        direction: Direction,
        max_depth: Option<u32>,
    ) -> Result<(Walk, Vec<RecordBatch>)> {
        let code = code.to_owned();
        self.run(move |e| async move { e.trace_unguarded(&code, direction, max_depth).await })
            .await
    }

    /// [`QueryEngine::trace`] on the current task, for work already in a query slot.
    pub(crate) async fn trace_unguarded(
        &self,
        code: &str,
        direction: Direction,
        max_depth: Option<u32>,
    ) -> Result<(Walk, Vec<RecordBatch>)> {
        let code = crate::trace::normalise(code)?;
        self.ensure_edges(self.snapshot().await?).await?;
        let mut walk =
            crate::trace::walk_shared(&self.edges, &self.dir, &code, direction, max_depth)?;
        let plan = crate::trace::plan(self.events.clone(), &walk)?;
        let mut batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
        if let Some(v) = &self.visibility {
            // The plan read only visible events; the walk itself came from every edge.
            let visible = crate::trace::column_values(&batches, "event_id")?;
            let (hidden, kept) = v.hide(&mut walk, &visible);
            walk.hidden = hidden;
            batches = crate::trace::keep_nodes(&batches, &kept)?;
        }
        Ok((walk, batches))
    }

    /// Plans one read-only SQL statement and returns its result schema (no execution).
    pub async fn sql_schema(&self, sql: &str) -> Result<arrow::datatypes::SchemaRef> {
        let sql = sql.to_owned();
        self.run(move |e| async move {
            Ok(Arc::new(
                e.dataframe(&sql).await?.schema().as_arrow().clone(),
            ))
        })
        .await
    }

    /// Runs one read-only SQL statement as a stream of record batches. The statement runs
    /// on the query runtime in a query slot until the stream ends, fails, passes the
    /// deadline (a `query_timeout` error item) or is dropped (the work is aborted).
    pub async fn sql_stream(
        &self,
        sql: &str,
    ) -> Result<(
        arrow::datatypes::SchemaRef,
        datafusion::physical_plan::SendableRecordBatchStream,
    )> {
        use futures::StreamExt;
        let permit = self.slot().await.inspect_err(|e| self.refused(e))?;
        let running = Running::start(&self.guard.metrics.running);
        let timeout = self.timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let (schema_tx, schema_rx) = tokio::sync::oneshot::channel::<Result<SchemaRef>>();
        let (tx, rx) = tokio::sync::mpsc::channel::<datafusion::error::Result<RecordBatch>>(2);
        let engine = self.clone();
        let refused = self.guard.metrics.refused.clone();
        let sql = sql.to_owned();
        let task = AbortOnDrop(self.guard.exec.handle.spawn(async move {
            let _slot = permit;
            let _running = running;
            let items = tx.clone();
            let work = async move {
                let df = match engine.dataframe(&sql).await {
                    Ok(df) => df,
                    Err(e) => return drop(schema_tx.send(Err(e))),
                };
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let mut stream = match df.execute_stream().await {
                    Ok(s) => s,
                    Err(e) => return drop(schema_tx.send(Err(e.into()))),
                };
                if schema_tx.send(Ok(schema)).is_err() {
                    return;
                }
                while let Some(item) = stream.next().await {
                    if items.send(item).await.is_err() {
                        return; // the reader went away
                    }
                }
            };
            if tokio::time::timeout_at(deadline, work).await.is_err() {
                let e = crate::Error::Timeout(timeout);
                refused.with_label_values(&[e.code()]).inc();
                let _ = tx
                    .send(Err(datafusion::error::DataFusionError::External(Box::new(
                        e,
                    ))))
                    .await;
            }
        }));
        let schema = match tokio::time::timeout_at(deadline, schema_rx).await {
            Ok(Ok(Ok(schema))) => schema,
            Ok(Ok(Err(e))) => return Err(e).inspect_err(|e| self.refused(e)),
            Ok(Err(_)) => {
                return Err(crate::Error::Internal(
                    "the query stopped before planning ended".into(),
                ));
            }
            Err(_) => {
                let e = crate::Error::Timeout(timeout);
                self.refused(&e);
                return Err(e);
            }
        };
        let batches = futures::stream::unfold((rx, task), |(mut rx, task)| async move {
            rx.recv().await.map(|item| (item, (rx, task)))
        });
        Ok((
            schema.clone(),
            Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema,
                    batches.boxed(),
                ),
            ),
        ))
    }

    /// Parses (with the shape checks of [`crate::limits`]), plans and verifies one read-only
    /// statement. Call on the query runtime: a statement can be deep until it is checked.
    async fn dataframe(&self, sql: &str) -> Result<datafusion::dataframe::DataFrame> {
        let state = self.ctx.state();
        let statement = {
            let opts = state.config_options();
            crate::limits::parse_checked(
                sql,
                opts.sql_parser.dialect.as_ref(),
                opts.sql_parser.recursion_limit.get(),
                &self.guard.limits,
            )?
        };
        let snap = self.snapshot().await?;
        // The trace functions walk the graph while the statement is planned.
        let lower = sql.to_ascii_lowercase();
        if lower.contains("trace_backward") || lower.contains("trace_forward") {
            self.ensure_edges(snap).await?;
        }
        let opts = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let plan = state.statement_to_plan(statement).await?;
        opts.verify_plan(&plan)?;
        let plan = self.pin(plan)?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// Replaces every swappable table a plan reads (in subqueries and views too) by the
    /// contents it holds now, taken together: the statement then reads one snapshot however
    /// late it runs and whatever other statements refresh meanwhile. Without this, each scan
    /// took the table current when it was planned, so two subqueries of one statement
    /// could count different snapshots.
    fn pin(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        let _pinning = self.swaps.read().unwrap_or_else(|p| p.into_inner());
        Ok(pin_tables(plan)?)
    }

    /// The walk of a trace alone (nodes, edge events, cycles), without reading events.
    pub async fn trace_walk(
        &self,
        code: &str,
        direction: Direction,
        max_depth: Option<u32>,
    ) -> Result<Walk> {
        let code = code.to_owned();
        self.run(move |e| async move {
            let code = crate::trace::normalise(&code)?;
            e.ensure_edges(e.snapshot().await?).await?;
            crate::trace::walk_shared(&e.edges, &e.dir, &code, direction, max_depth)
        })
        .await
    }

    /// The events files queries scan now (committed compacted files, then uncompacted
    /// batches).
    pub async fn event_files(&self) -> Result<Vec<std::path::PathBuf>> {
        Ok(self
            .snapshot()
            .await?
            .event_files
            .iter()
            .map(|f| f.path.clone())
            .collect())
    }

    /// Runs one read-only SQL statement (DDL, DML and SET are refused) and collects it.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.sql_limited(sql, None).await
    }

    /// Like [`QueryEngine::sql`], stopping after `max_rows` rows when given.
    pub async fn sql_limited(
        &self,
        sql: &str,
        max_rows: Option<usize>,
    ) -> Result<Vec<RecordBatch>> {
        let sql = sql.to_owned();
        self.run(move |e| async move {
            let mut df = e.dataframe(&sql).await?;
            if let Some(n) = max_rows {
                df = df.limit(0, Some(n))?;
            }
            let schema: arrow::datatypes::SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            if batches.is_empty() {
                // Keep the column names for an empty result (tables print headers, CSV a
                // header line).
                return Ok(vec![RecordBatch::new_empty(schema)]);
            }
            Ok(batches)
        })
        .await
    }
}

/// See [`QueryEngine::pin`]; call with the swaps lock held.
fn pin_tables(
    plan: datafusion::logical_expr::LogicalPlan,
) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::datasource::{provider_as_source, source_as_provider};
    use datafusion::logical_expr::LogicalPlan;
    plan.transform_up_with_subqueries(|p| {
        let LogicalPlan::TableScan(mut scan) = p else {
            return Ok(Transformed::no(p));
        };
        let Ok(provider) = source_as_provider(&scan.source) else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        let pinned: Arc<dyn TableProvider> = if let Some(s) = provider.downcast_ref::<Swappable>() {
            s.current()
        } else if let Some(view) = provider.get_logical_plan() {
            // A view over swappable tables (the audit view, a participant's scope).
            let inner = pin_tables(view.into_owned())?;
            Arc::new(datafusion::datasource::ViewTable::new(inner, None))
        } else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        scan.source = provider_as_source(pinned);
        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
    })
    .map(|t| t.data)
}

/// The `audit` table: the audit log's entries ([`veritrace_processors::audit`]) among the
/// events, with what each one says.
fn audit_view(events: Arc<Swappable>) -> Result<Arc<dyn TableProvider>> {
    use datafusion::logical_expr::{LogicalPlanBuilder, col, lit};
    let plan = LogicalPlanBuilder::scan(
        "events",
        datafusion::datasource::provider_as_source(events),
        None,
    )?
    .filter(col("event_type").eq(lit(crate::visibility::AUDIT_TYPE)))?
    .project(vec![
        col("event_id").alias("entry_id"),
        col("event_time").alias("at"),
        col("operator").alias("who"),
        col("site").alias("route"),
        col("result").alias("outcome"),
        col("participant_id").alias("node"),
        col("attributes").alias("entry"),
        col("batch_id"),
        col("leaf_index"),
    ])?
    .build()?;
    Ok(Arc::new(datafusion::datasource::ViewTable::new(plan, None)))
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The longest `IN` list whose values prune row groups and pages (a trace's node list).
/// DataFusion turns such a list into a chain of one `OR` per value and evaluates it
/// recursively: 2,000 values overflowed a 2 MiB thread stack in a debug build (the trace
/// benchmark's test). Traces with more codes than this filter by one shared set instead
/// ([`crate::string_set`]), which the events table prunes files, row groups and pages by.
pub(crate) const MAX_PRUNED_IN_LIST: usize = 500;

fn u(name: &str, t: DataType, nullable: bool) -> Field {
    Field::new(name, t, nullable)
}

/// Schema of the `batches` table.
fn batches_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        u("batch_id", DataType::Utf8, false),
        u("stream", DataType::Utf8, false),
        u("partition", DataType::UInt32, false),
        u("seq", DataType::UInt64, false),
        u("first_offset", DataType::UInt64, false),
        u("last_offset", DataType::UInt64, false),
        u("records", DataType::UInt64, false),
        u("size", DataType::UInt64, false),
        u("root", DataType::Utf8, false),
        u("prev_root", DataType::Utf8, false),
        u("sealed_at", DataType::Utf8, false),
        u("epoch_id", DataType::UInt64, true),
    ]))
}

/// Schema of the `epochs` table.
fn epochs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        u("epoch_id", DataType::UInt64, false),
        u("root", DataType::Utf8, false),
        u("batch_count", DataType::UInt64, false),
        u("events", DataType::UInt64, false),
        u("log_size", DataType::UInt64, true),
        u("sealed_at", DataType::Utf8, false),
        u("status", DataType::Utf8, false),
        u("backend", DataType::Utf8, true),
        u("anchored_at", DataType::Utf8, true),
        u("public_key", DataType::Utf8, true),
        u("signature", DataType::Utf8, true),
        u("chain_id", DataType::UInt64, true),
        u("contract", DataType::Utf8, true),
        u("tx_hash", DataType::Utf8, true),
        u("block_number", DataType::UInt64, true),
    ]))
}

/// Cheap change detector: sizes and modification times of the metadata files.
fn fingerprint(dir: &DataDir) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |x: u64| {
        h ^= x;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    if dir.is_remote() {
        // Every log's entry count: one listing per log directory.
        for d in [
            dir.batches_dir(),
            dir.epochs_file()
                .parent()
                .map(|p| p.to_owned())
                .unwrap_or_default(),
            dir.ledger_file()
                .parent()
                .map(|p| p.to_owned())
                .unwrap_or_default(),
            dir.evm_journal_file()
                .parent()
                .map(|p| p.to_owned())
                .unwrap_or_default(),
            dir.compacted_dir(),
        ] {
            match dir.list_logs(&d) {
                Ok(logs) => {
                    for (p, n) in logs {
                        for b in p.to_string_lossy().bytes() {
                            mix(u64::from(b));
                        }
                        mix(n);
                    }
                }
                // Unknown: read again next time.
                Err(_) => return 0,
            }
        }
        return h | 1;
    }
    let mut files = vec![
        dir.epochs_file(),
        dir.ledger_file(),
        dir.evm_journal_file(),
        dir.compactions_file(),
    ];
    if let Ok(rd) = std::fs::read_dir(dir.batches_dir()) {
        files.extend(rd.flatten().map(|e| e.path()));
    }
    files.sort();
    for f in files {
        if let Ok(m) = std::fs::metadata(&f) {
            mix(m.len());
            if let Ok(t) = m.modified().and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_err(std::io::Error::other)
            }) {
                mix(t.as_nanos() as u64);
            }
        }
    }
    h | 1
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use veritrace_processors::{BatchPolicy, PartitionProcessor};
    use veritrace_simulator::{SimConfig, Simulator};

    fn count(batches: &[RecordBatch], col: &str) -> u64 {
        let a = batches[0]
            .column_by_name(col)
            .expect(col)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("int64");
        a.value(0) as u64
    }

    /// A statement reads the one snapshot it was planned on, every table and every
    /// subquery of it, even when a refresh for another statement swaps the tables before
    /// it runs (the cluster run's readers saw `count(*)` and `count(DISTINCT event_id)`
    /// of one statement disagree while records streamed in).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_statement_reads_the_snapshot_it_was_planned_on() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = DataDir::create(tmp.path().join("data")).expect("create");
        let records: Vec<_> = Simulator::new(SimConfig {
            events: 400,
            seed: 7,
            invalid_ratio: 0.1,
            duplicate_ratio: 0.0,
            ..SimConfig::default()
        })
        .collect();
        let mut p = PartitionProcessor::open(&dir, "veritrace.raw", 0, BatchPolicy::default())
            .expect("open");
        let now = veritrace_processors::now_ms();
        let seal = |p: &mut PartitionProcessor, from: usize, to: usize| {
            for (i, r) in records[from..to].iter().enumerate() {
                p.push((from + i) as u64, Some(&r.key), &r.payload, now)
                    .expect("push");
            }
            p.seal(now).expect("seal");
        };
        seal(&mut p, 0, 200);
        let engine = QueryEngine::open(tmp.path().join("data"))
            .await
            .expect("engine");
        let sql = "SELECT (SELECT count(*) FROM events) AS e, \
                   (SELECT count(DISTINCT event_id) FROM events) AS d, \
                   (SELECT count(*) FROM rejected) AS r, \
                   (SELECT sum(records) FROM batches) AS b";
        let before = engine.sql(sql).await.expect("before");
        let planned = engine.dataframe(sql).await.expect("plan");
        seal(&mut p, 200, 400);
        let after = engine.sql(sql).await.expect("after");
        assert!(
            count(&after, "e") > count(&before, "e"),
            "the refresh saw nothing new"
        );
        let late = planned.collect().await.expect("run");
        for col in ["e", "d", "r"] {
            assert_eq!(count(&late, col), count(&before, col), "{col}");
        }
        let b = late[0].column_by_name("b").expect("b");
        let b = arrow::compute::cast(b, &DataType::Int64).expect("cast");
        let b = b
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("i64");
        assert_eq!(b.value(0) as u64, 200, "batches");
    }
}

#[cfg(test)]
mod code_set_tests {
    use super::*;
    use arrow::array::AsArray;
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::physical_plan::ExecutionPlan;
    use veritrace_anchor::compact::{CompactOptions, compact};
    use veritrace_processors::BatchPolicy;
    use veritrace_processors::runtime::{self, RuntimeConfig};
    use veritrace_simulator::{SimConfig, Simulator};

    /// Rows the scans of `plan` tested against their filters, and rows they matched.
    fn rows_filtered(plan: &Arc<dyn ExecutionPlan>) -> (usize, usize) {
        let mut seen = (0, 0);
        if plan.downcast_ref::<DataSourceExec>().is_some()
            && let Some(m) = plan.metrics()
        {
            let sum = |name: &str| m.sum_by_name(name).map_or(0, |v| v.as_usize());
            seen.0 += sum("pushdown_rows_pruned") + sum("pushdown_rows_matched");
            seen.1 += sum("pushdown_rows_matched");
        }
        for c in plan.children() {
            let (a, b) = rows_filtered(c);
            seen = (seen.0 + a, seen.1 + b);
        }
        seen
    }

    /// A forward trace of more codes than an `IN` list carries goes through the shared set
    /// and the events table's own access plans: it answers exactly what the list answers,
    /// and its scan tests only the rows of the pages that can hold the codes.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_trace_by_code_set_answers_as_the_in_list_and_reads_only_its_pages() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = DataDir::create(tmp.path().join("data")).expect("create");
        let cfg = RuntimeConfig {
            stream: "sets".into(),
            partitions: 2,
            policy: BatchPolicy::default(),
            epoch_interval: std::time::Duration::from_secs(3600),
            ..RuntimeConfig::default()
        };
        let records = Simulator::new(SimConfig {
            events: 30_000,
            seed: 11,
            invalid_ratio: 0.0,
            duplicate_ratio: 0.0,
            ..SimConfig::default()
        })
        .map(|r| (Some(r.key), r.payload));
        runtime::run(&dir, &cfg, records, Arc::default()).expect("ingest");
        let opts = CompactOptions {
            grace: std::time::Duration::ZERO,
            min_files: 1,
            merge_fanin: 0,
            full_merge: true,
            ..CompactOptions::default()
        };
        compact(&dir, &opts).expect("compact").expect("the lock");
        let engine = QueryEngine::open(tmp.path().join("data"))
            .await
            .expect("engine");
        let coded = usize::try_from(
            count(
                &engine,
                "SELECT count(*) FROM events WHERE trace_code IS NOT NULL",
            )
            .await,
        )
        .expect("rows");
        let roots = engine
            .sql(
                "SELECT parent, count(*) AS n FROM edges WHERE parent <> '' \
                 GROUP BY parent ORDER BY n DESC, parent LIMIT 3",
            )
            .await
            .expect("roots");
        let roots: Vec<String> = roots[0]
            .column(0)
            .as_string::<i32>()
            .iter()
            .map(|c| c.expect("code").to_owned())
            .collect();
        let mut tested = 0;
        for root in &roots {
            let walk = engine
                .trace_walk(root, Direction::Forward, None)
                .await
                .expect("walk");
            let run = |max_list: usize| {
                let (engine, walk) = (&engine, &walk);
                async move {
                    let plan = crate::trace::plan_with(engine.events.clone(), walk, max_list)
                        .expect("plan");
                    let state = engine.ctx.state();
                    let exec = state.create_physical_plan(&plan).await.expect("physical");
                    let out = datafusion::physical_plan::collect(exec.clone(), state.task_ctx())
                        .await
                        .expect("run");
                    let schema = exec.schema();
                    let out = arrow::compute::concat_batches(&schema, &out).expect("concat");
                    (out, rows_filtered(&exec))
                }
            };
            let (listed, _) = run(usize::MAX).await;
            let (by_set, (filtered, matched)) = run(0).await;
            assert_eq!(by_set, listed, "{root}: the set answers as the list");
            assert!(
                listed.num_rows() > walk.nodes.len(),
                "{root}: {}",
                listed.num_rows()
            );
            assert!(
                matched >= listed.num_rows() - walk.edge_events.len(),
                "{root}"
            );
            // Pages without one of the codes are not read: fewer rows tested than the rows
            // with a code (the files of rows without one are left out by their key ranges).
            assert!(
                filtered > 0 && filtered < coded,
                "{root}: {filtered} rows tested of {coded}"
            );
            tested += 1;
        }
        assert_eq!(tested, 3);
    }

    async fn count(engine: &QueryEngine, sql: &str) -> u64 {
        let b = engine.sql(sql).await.expect("count");
        let c = arrow::compute::cast(b[0].column(0), &DataType::UInt64).expect("cast");
        c.as_primitive::<arrow::datatypes::UInt64Type>().value(0)
    }
}

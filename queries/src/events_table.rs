//! The `events` table: the committed events files, chosen per query by key range.
//!
//! Compacted files record their trace-code range and the event-id range of their rows
//! without a trace code (see `veritrace_anchor::compact::KeyRange`). A scan keeps only the
//! files whose ranges can satisfy the query's filters on `trace_code` (equality, `IN`,
//! `IS NULL`, combined with `AND`/`OR`) and on `event_id` among rows without a code, so a
//! lookup by trace code in a merged run opens one file instead of every file. Within the
//! files kept, DataFusion prunes row groups and pages by statistics, bloom filters and the
//! page index. Files without a known range (batch files not compacted yet, compacted files
//! from before ranges were kept) are always scanned: pruning never drops a row.
//!
//! A trace's large set of codes ([`crate::string_set`]) is beyond what DataFusion prunes by,
//! so the table prunes by it itself: in a file sorted by trace code, it reads the code range
//! of every page from the page index (once per file, kept) and gives the scan an access plan
//! of the row groups and pages that can hold one of the codes ([`CodePages`]). A forward
//! trace of 36,871 codes at 50 M events then decodes the pages of its codes, not every page.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::HashMap;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use veritrace_anchor::compact::{EventFile, KeyRange};

/// The committed events files with their key ranges.
#[derive(Debug)]
pub(crate) struct EventsTable {
    schema: SchemaRef,
    files: Vec<EventFile>,
    options: ListingOptions,
    /// Committed files that are gone: what they held is unknown, so every scan fails.
    missing: Vec<(std::path::PathBuf, String)>,
    /// Files found altered: a scan that would read one fails.
    altered: crate::damage::Altered,
    /// The code ranges of the pages of sorted files, read once per file.
    pages: Arc<PageMaps>,
}

impl EventsTable {
    pub(crate) fn new(
        schema: SchemaRef,
        files: Vec<EventFile>,
        options: ListingOptions,
        missing: Vec<(std::path::PathBuf, String)>,
        altered: crate::damage::Altered,
        pages: Arc<PageMaps>,
    ) -> Self {
        EventsTable {
            schema,
            files,
            options,
            missing,
            altered,
            pages,
        }
    }

    /// Refuses a scan that would read damaged files or miss a missing one's rows.
    fn check_damage(&self, files: &[&EventFile]) -> datafusion::error::Result<()> {
        let altered = crate::damage::read(&self.altered);
        let mut found: Vec<String> = self
            .missing
            .iter()
            .map(|(p, m)| format!("{}: {m}", p.display()))
            .collect();
        found.extend(files.iter().filter_map(|f| {
            altered
                .get(&f.path)
                .map(|m| format!("{}: {m}", f.path.display()))
        }));
        if found.is_empty() {
            return Ok(());
        }
        Err(datafusion::error::DataFusionError::External(Box::new(
            crate::Error::Damaged(found),
        )))
    }

    /// The files a scan with `filters` (all of which hold) must read.
    pub(crate) fn select(&self, filters: &[Expr]) -> Vec<&EventFile> {
        let preds: Vec<Pred> = filters.iter().map(Pred::compile).collect();
        self.files
            .iter()
            .filter(|f| match &f.keys {
                None => true,
                Some(k) => preds.iter().all(|p| p.may_match(k)),
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Pruning is by range: the rows still need the filter.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let files = self.select(filters);
        self.check_damage(&files)?;
        if files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let urls = files
            .iter()
            .map(|f| ListingTableUrl::parse(f.path.to_string_lossy()))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let codes = filters
            .iter()
            .find_map(|f| match values_of(f, "trace_code") {
                Some(Values::Set(s)) => Some(s),
                _ => None,
            });
        // Sorted files by their location in the store, for the access plans below (only a
        // scan by a set of codes has them).
        let sorted: HashMap<datafusion::object_store::path::Path, &EventFile> = match codes {
            Some(_) => urls
                .iter()
                .zip(&files)
                .filter(|(_, f)| f.keys.is_some())
                .map(|(u, f)| (u.prefix().clone(), *f))
                .collect(),
            None => HashMap::default(),
        };
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(self.options.clone())
            .with_schema(self.schema.clone());
        let plan = ListingTable::try_new(config)?
            .scan(state, projection, filters, limit)
            .await?;
        match codes {
            Some(codes) if !sorted.is_empty() => {
                self.with_access_plans(state, plan, &sorted, codes.sorted())
                    .await
            }
            _ => Ok(plan),
        }
    }
}

impl EventsTable {
    /// `plan` with an access plan on each sorted file: the row groups and pages whose code
    /// range holds one of `codes` (sorted). A file whose page index cannot be read is
    /// scanned whole, as without this.
    async fn with_access_plans(
        &self,
        state: &dyn Session,
        plan: Arc<dyn ExecutionPlan>,
        sorted: &HashMap<datafusion::object_store::path::Path, &EventFile>,
        codes: &[String],
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let Some(exec) = plan.downcast_ref::<DataSourceExec>() else {
            return Ok(plan);
        };
        let Some((config, _)) = exec.downcast_to_file_source::<ParquetSource>() else {
            return Ok(plan);
        };
        let mut config = config.clone();
        let store = state.runtime_env().object_store(&config.object_store_url)?;
        let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        for group in &mut config.file_groups {
            for i in 0..group.len() {
                let file = &mut group[i];
                let Some(f) = sorted.get(&file.object_meta.location) else {
                    continue;
                };
                let pages = self
                    .pages
                    .get(&f.path, store.as_ref(), &file.object_meta, &cache)
                    .await;
                if let Some(access) = pages.and_then(|p| p.access_plan(codes)) {
                    file.extensions.insert(access);
                }
            }
        }
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// The pages of one file's `trace_code` column: per row group, its rows and each page's
/// first row and code range (from the Parquet page index).
#[derive(Debug)]
pub(crate) struct CodePages {
    row_groups: Vec<RowGroupPages>,
}

#[derive(Debug)]
struct RowGroupPages {
    rows: usize,
    /// Each page: its first row in the row group and its smallest and largest code (none:
    /// every row of the page has no code).
    pages: Vec<(usize, Option<CodeRange>)>,
}

/// A page's smallest and largest code, as bytes (the page index may truncate them to
/// shorter bounds that still hold every code of the page).
type CodeRange = (Box<[u8]>, Box<[u8]>);

impl CodePages {
    /// About the bytes it takes in memory.
    fn bytes(&self) -> usize {
        self.row_groups
            .iter()
            .flat_map(|rg| &rg.pages)
            .map(|(_, r)| 48 + r.as_ref().map_or(0, |(a, b)| a.len() + b.len()))
            .sum::<usize>()
            + self.row_groups.len() * 32
    }

    /// The pages of `metadata`'s `trace_code` column; `None` without a page index for it.
    fn of(metadata: &ParquetMetaData) -> Option<CodePages> {
        let column = metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.path().string() == "trace_code")?;
        let (index, offsets) = (metadata.column_index()?, metadata.offset_index()?);
        let mut row_groups = Vec::with_capacity(metadata.num_row_groups());
        for (r, rg) in metadata.row_groups().iter().enumerate() {
            let ColumnIndexMetaData::BYTE_ARRAY(ci) = index.get(r)?.get(column)? else {
                return None;
            };
            let locations = offsets.get(r)?.get(column)?.page_locations();
            if ci.num_pages() != locations.len() as u64 {
                return None;
            }
            let pages = locations
                .iter()
                .enumerate()
                .map(|(p, l)| {
                    let first = usize::try_from(l.first_row_index).ok()?;
                    let range = match (ci.min_value(p), ci.max_value(p)) {
                        (Some(lo), Some(hi)) => Some((lo.into(), hi.into())),
                        _ => None,
                    };
                    Some((first, range))
                })
                .collect::<Option<Vec<_>>>()?;
            row_groups.push(RowGroupPages {
                rows: usize::try_from(rg.num_rows()).ok()?,
                pages,
            });
        }
        Some(CodePages { row_groups })
    }

    /// The row groups and rows a scan for `codes` (sorted ascending) must read: the pages
    /// whose code range holds one of them. Rows without a code never match a set of codes.
    /// `None` when the page index does not describe the rows consistently.
    fn access_plan(&self, codes: &[String]) -> Option<ParquetAccessPlan> {
        let mut plan = ParquetAccessPlan::new_all(self.row_groups.len());
        for (r, rg) in self.row_groups.iter().enumerate() {
            let mut runs: Vec<RowSelector> = Vec::new();
            let (mut selected, mut skipped) = (0usize, 0usize);
            for (p, (first, range)) in rg.pages.iter().enumerate() {
                let end = rg.pages.get(p + 1).map_or(rg.rows, |n| n.0);
                let n = end.checked_sub(*first)?;
                let hit = range.as_ref().is_some_and(|(lo, hi)| {
                    let i = codes.partition_point(|c| c.as_bytes() < &lo[..]);
                    codes.get(i).is_some_and(|c| c.as_bytes() <= &hi[..])
                });
                if hit {
                    selected += n;
                } else {
                    skipped += n;
                }
                match runs.last_mut() {
                    Some(last) if last.skip != hit => last.row_count += n,
                    _ if n == 0 => {}
                    _ => runs.push(if hit {
                        RowSelector::select(n)
                    } else {
                        RowSelector::skip(n)
                    }),
                }
            }
            if selected + skipped != rg.rows || rg.pages.first().is_some_and(|p| p.0 != 0) {
                return None;
            }
            if selected == 0 {
                plan.skip(r);
            } else if skipped > 0 {
                plan.scan_selection(r, RowSelection::from(runs));
            }
        }
        Some(plan)
    }
}

/// Most bytes [`PageMaps`] holds. A 1 M-row events file's pages take about 130 KB, so this
/// holds the pages of about 10^9 events; past it the maps are dropped and read again as
/// scans need them (from DataFusion's metadata cache when it still has them).
const PAGE_MAPS_BYTES: usize = 128 << 20;

/// [`CodePages`] of the files read so far, by path (committed files never change).
#[derive(Debug)]
pub(crate) struct PageMaps {
    files: std::sync::Mutex<Files>,
    budget: usize,
}

/// The files' pages (`None`: the file has no usable page index for `trace_code`) and the
/// bytes they take.
type Files = (HashMap<std::path::PathBuf, Option<Arc<CodePages>>>, usize);

impl Default for PageMaps {
    fn default() -> Self {
        PageMaps::with_budget(PAGE_MAPS_BYTES)
    }
}

impl PageMaps {
    fn with_budget(budget: usize) -> Self {
        PageMaps {
            files: std::sync::Mutex::default(),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps only the files in `live` (after a refresh: compaction replaced the others).
    pub(crate) fn retain(&self, live: &[&std::path::Path]) {
        let live: std::collections::HashSet<&std::path::Path> = live.iter().copied().collect();
        let mut g = self.lock();
        g.0.retain(|p, _| live.contains(p.as_path()));
        g.1 = g.0.values().flatten().map(|p| p.bytes()).sum();
    }

    /// Remembers the pages of `path`, within the budget.
    fn insert(&self, path: &std::path::Path, pages: Option<Arc<CodePages>>) {
        let add = pages.as_ref().map_or(0, |p| p.bytes());
        let mut g = self.lock();
        if let Some(old) = g.0.remove(path) {
            g.1 -= old.map_or(0, |p| p.bytes());
        }
        if g.1 + add > self.budget {
            g.0.clear();
            g.1 = 0;
        }
        g.0.insert(path.to_owned(), pages);
        g.1 += add;
    }

    /// The pages of the file at `path`: read from its footer and page index the first time
    /// (through DataFusion's metadata cache, so the scan that follows finds them there).
    /// `None` when they cannot be read: the scan then reads the file whole, and reports
    /// what is wrong with it.
    async fn get(
        &self,
        path: &std::path::Path,
        store: &dyn datafusion::object_store::ObjectStore,
        meta: &datafusion::object_store::ObjectMeta,
        cache: &Arc<FileMetadataCache>,
    ) -> Option<Arc<CodePages>> {
        if let Some(p) = self.lock().0.get(path) {
            return p.clone();
        }
        let read = DFParquetMetadata::new(store, meta)
            .with_file_metadata_cache(Some(cache.clone()))
            .with_page_index_policy(Some(PageIndexPolicy::Optional))
            .fetch_metadata()
            .await;
        let pages = match read {
            Ok(m) => CodePages::of(&m).map(Arc::new),
            // Not remembered: the store may answer next time.
            Err(e) => {
                tracing::debug!(file = %path.display(), error = %e, "no page index read; the file is scanned whole");
                return None;
            }
        };
        self.insert(path, pages.clone());
        pages
    }
}

/// A filter, as far as key ranges can decide it.
#[derive(Debug)]
enum Pred {
    /// `trace_code` is one of these.
    Codes(Values),
    /// `trace_code IS NULL`.
    NoCode,
    /// `trace_code IS NULL AND event_id` is one of these.
    NoCodeEvents(Values),
    And(Vec<Pred>),
    Or(Vec<Pred>),
    /// Anything else: may match any file.
    Any,
}

fn column_is(e: &Expr, name: &str) -> bool {
    match e {
        Expr::Column(Column { name: n, .. }) => n == name,
        Expr::Cast(c) => column_is(&c.expr, name),
        Expr::TryCast(c) => column_is(&c.expr, name),
        _ => false,
    }
}

fn string_lit(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        Expr::Cast(c) => string_lit(&c.expr),
        _ => None,
    }
}

/// The string values `e` requires of column `name` (`name = 'x'`, `name IN ('x', ..)`).
fn values_of(e: &Expr, name: &str) -> Option<Values> {
    let mut v = match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if column_is(left, name) {
                vec![string_lit(right)?]
            } else if column_is(right, name) {
                vec![string_lit(left)?]
            } else {
                return None;
            }
        }
        Expr::InList(l) if !l.negated && column_is(&l.expr, name) => {
            l.list.iter().map(string_lit).collect::<Option<Vec<_>>>()?
        }
        e => match crate::string_set::as_in_set(e) {
            Some((arg, set)) if column_is(arg, name) => return Some(Values::Set(set.clone())),
            _ => return None,
        },
    };
    v.sort_unstable();
    v.dedup();
    Some(Values::List(v))
}

/// Values a filter requires of a column, sorted ascending, each once.
#[derive(Debug)]
enum Values {
    /// From literals.
    List(Vec<String>),
    /// A plan's shared set ([`crate::string_set`]), not copied.
    Set(Arc<crate::string_set::StringSet>),
}

impl Values {
    fn sorted(&self) -> &[String] {
        match self {
            Values::List(v) => v,
            Values::Set(s) => s.sorted(),
        }
    }
}

fn is_null_code(e: &Expr) -> bool {
    matches!(e, Expr::IsNull(x) if column_is(x, "trace_code"))
}

impl Pred {
    fn compile(e: &Expr) -> Pred {
        if let Some(v) = values_of(e, "trace_code") {
            return Pred::Codes(v);
        }
        if is_null_code(e) {
            return Pred::NoCode;
        }
        match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And,
                right,
            }) => {
                for (a, b) in [(left, right), (right, left)] {
                    if is_null_code(a)
                        && let Some(ids) = values_of(b, "event_id")
                    {
                        return Pred::NoCodeEvents(ids);
                    }
                }
                Pred::And(vec![Pred::compile(left), Pred::compile(right)])
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Or,
                right,
            }) => Pred::Or(vec![Pred::compile(left), Pred::compile(right)]),
            _ => Pred::Any,
        }
    }

    fn may_match(&self, k: &KeyRange) -> bool {
        match self {
            Pred::Codes(v) => k.may_hold_any_code(v.sorted()),
            Pred::NoCode => k.null_rows > 0,
            Pred::NoCodeEvents(ids) => k.may_hold_null_code_event(ids.sorted()),
            Pred::And(ps) => ps.iter().all(|p| p.may_match(k)),
            Pred::Or(ps) => ps.iter().any(|p| p.may_match(k)),
            Pred::Any => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn range(lo: &str, hi: &str, nulls: Option<(&str, &str)>) -> KeyRange {
        KeyRange {
            code_min: Some(lo.into()),
            code_max: Some(hi.into()),
            null_rows: u64::from(nulls.is_some()),
            null_event_min: nulls.map(|n| n.0.into()),
            null_event_max: nulls.map(|n| n.1.into()),
        }
    }

    #[test]
    fn ranges_decide_only_what_they_can() {
        let a = range("A", "F", None);
        let b = range("G", "M", Some(("e100", "e200")));
        let m = |e: Expr, k: &KeyRange| Pred::compile(&e).may_match(k);
        assert!(m(col("trace_code").eq(lit("C")), &a));
        assert!(!m(col("trace_code").eq(lit("C")), &b));
        assert!(m(lit("H").eq(col("trace_code")), &b));
        let list = col("trace_code").in_list(vec![lit("Z"), lit("B")], false);
        assert!(m(list.clone(), &a) && !m(list, &b));
        // Negated lists and other columns decide nothing.
        assert!(m(col("trace_code").in_list(vec![lit("C")], true), &b));
        assert!(m(col("site").eq(lit("x")), &a));
        assert!(!m(col("trace_code").is_null(), &a));
        let ids = |v: &[&str]| {
            col("trace_code")
                .is_null()
                .and(col("event_id").in_list(v.iter().map(|s| lit(*s)).collect(), false))
        };
        assert!(m(ids(&["e150"]), &b) && !m(ids(&["e300", "e050"]), &b));
        assert!(!m(ids(&["e150"]), &a));
        let either = col("trace_code").eq(lit("B")).or(ids(&["e150"]));
        assert!(m(either.clone(), &a) && m(either, &b));
        let both = col("trace_code").eq(lit("B")).and(col("site").eq(lit("x")));
        assert!(m(both.clone(), &a) && !m(both, &b));
    }

    #[test]
    fn access_plans_keep_the_pages_whose_range_holds_a_code() {
        let page = |first: usize, r: Option<(&str, &str)>| {
            (
                first,
                r.map(|(a, b)| (a.as_bytes().into(), b.as_bytes().into())),
            )
        };
        let pages = CodePages {
            row_groups: vec![
                // Pages of 10 rows: [a, c], [d, f], [g, k], then rows without a code.
                RowGroupPages {
                    rows: 40,
                    pages: vec![
                        page(0, Some(("a", "c"))),
                        page(10, Some(("d", "f"))),
                        page(20, Some(("g", "k"))),
                        page(30, None),
                    ],
                },
                RowGroupPages {
                    rows: 5,
                    pages: vec![page(0, Some(("m", "p")))],
                },
                RowGroupPages {
                    rows: 8,
                    pages: vec![page(0, Some(("q", "q"))), page(4, Some(("q", "s")))],
                },
            ],
        };
        let codes = |v: &[&str]| v.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        let plan = pages.access_plan(&codes(&["c", "h", "q"])).expect("plan");
        let expect = RowSelection::from(vec![
            RowSelector::select(10),
            RowSelector::skip(10),
            RowSelector::select(10),
            RowSelector::skip(10),
        ]);
        assert_eq!(
            plan.inner(),
            [
                datafusion::datasource::physical_plan::parquet::RowGroupAccess::Selection(expect),
                datafusion::datasource::physical_plan::parquet::RowGroupAccess::Skip,
                datafusion::datasource::physical_plan::parquet::RowGroupAccess::Scan,
            ]
        );
        // A code at a page's bounds, and one between pages.
        let plan = pages.access_plan(&codes(&["f", "l", "p"])).expect("plan");
        assert!(plan.should_scan(0) && plan.should_scan(1) && !plan.should_scan(2));
        // No code in range: nothing read.
        let plan = pages.access_plan(&codes(&["zz"])).expect("plan");
        assert!(plan.row_group_indexes().is_empty());
        // Pages that do not describe the row group's rows: no plan (the file is read whole).
        for bad in [
            vec![page(0, Some(("a", "c"))), page(60, Some(("d", "f")))],
            vec![page(5, Some(("a", "c")))],
        ] {
            let bad = CodePages {
                row_groups: vec![RowGroupPages {
                    rows: 50,
                    pages: bad,
                }],
            };
            assert!(bad.access_plan(&codes(&["a"])).is_none());
        }
    }

    #[test]
    fn page_maps_stay_within_their_budget_and_follow_the_live_files() {
        let one = || {
            Some(Arc::new(CodePages {
                row_groups: vec![RowGroupPages {
                    rows: 10,
                    pages: vec![(0, Some((b"a".as_slice().into(), b"b".as_slice().into())))],
                }],
            }))
        };
        let held = |m: &PageMaps| {
            let g = m.lock();
            (g.0.len(), g.1)
        };
        let size = one().map_or(0, |p| p.bytes());
        let maps = PageMaps::with_budget(size * 2);
        let (a, b, c) = (
            std::path::Path::new("a"),
            std::path::Path::new("b"),
            std::path::Path::new("c"),
        );
        maps.insert(a, one());
        maps.insert(b, one());
        maps.insert(b, one());
        assert_eq!(held(&maps), (2, size * 2));
        // A third would pass the budget: the others are dropped first.
        maps.insert(c, one());
        assert_eq!(held(&maps), (1, size));
        maps.insert(a, None);
        maps.retain(&[a]);
        assert_eq!(held(&maps), (1, 0));
    }
}

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

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
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
}

impl EventsTable {
    pub(crate) fn new(
        schema: SchemaRef,
        files: Vec<EventFile>,
        options: ListingOptions,
        missing: Vec<(std::path::PathBuf, String)>,
        altered: crate::damage::Altered,
    ) -> Self {
        EventsTable {
            schema,
            files,
            options,
            missing,
            altered,
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
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(self.options.clone())
            .with_schema(self.schema.clone());
        ListingTable::try_new(config)?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// A filter, as far as key ranges can decide it.
#[derive(Debug)]
enum Pred {
    /// `trace_code` is one of these (sorted, deduplicated).
    Codes(Vec<String>),
    /// `trace_code IS NULL`.
    NoCode,
    /// `trace_code IS NULL AND event_id` is one of these (sorted).
    NoCodeEvents(Vec<String>),
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
fn values_of(e: &Expr, name: &str) -> Option<Vec<String>> {
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
        _ => return None,
    };
    v.sort_unstable();
    v.dedup();
    Some(v)
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
            Pred::Codes(v) => k.may_hold_any_code(v),
            Pred::NoCode => k.null_rows > 0,
            Pred::NoCodeEvents(ids) => k.may_hold_null_code_event(ids),
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
}

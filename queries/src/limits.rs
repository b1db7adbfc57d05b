//! What one query may cost, and the checks that keep one request from taking the server
//! down.
//!
//! A SQL statement is attacker-controlled input. Three things bound it:
//!
//! 1. **Its shape, before planning.** The statement is parsed (at most
//!    [`QueryLimits::max_statement_bytes`], parser recursion bounded by DataFusion's
//!    `sql_parser.recursion_limit`) and its syntax tree is measured: expression nesting depth,
//!    query blocks (`SELECT`s, subqueries and `UNION` arms) and table references. A
//!    left-associative chain such as `1+1+...+1` or `a = 1 OR a = 2 OR ...` parses without
//!    recursion but yields a tree thousands of levels deep, and every planner pass, optimizer
//!    rule and evaluator after that recurses over it: 2,000 terms (4 KB of SQL) overflowed a
//!    2 MiB worker stack and aborted the whole process. Such a statement is refused with
//!    `statement_too_complex` before DataFusion sees it.
//! 2. **Where it runs.** Parsing, planning and execution run on the engine's own query
//!    runtime ([`Executor`]), whose threads have a large stack, so what passed the checks
//!    has ample headroom, and the HTTP runtime that answers `/healthz`, `/metrics` and point
//!    lookups is never the one a heavy plan occupies.
//! 3. **What it may consume.** A deadline ([`QueryLimits::timeout`]), a memory pool shared by
//!    all queries ([`QueryLimits::memory_limit`], spilling to disk where DataFusion can),
//!    and a cap on queries running at once ([`QueryLimits::max_concurrent`], others wait at
//!    most [`QueryLimits::queue_timeout`]). A query whose caller goes away (HTTP client
//!    disconnects, Flight stream dropped) is cancelled: its task is aborted.

use std::ops::ControlFlow;
use std::time::Duration;

use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Expr, Select, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::dialect_from_str;

use crate::{Error, Result};

/// Bounds on one query and on the query stage as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLimits {
    /// Longest SQL statement accepted, in bytes.
    pub max_statement_bytes: usize,
    /// Deepest expression nesting accepted (`1+1+1` is 3 deep, `f(g(x))` is 3).
    pub max_expression_depth: usize,
    /// Most query blocks in one statement: `SELECT`s, subqueries and `UNION` arms.
    pub max_query_blocks: usize,
    /// Most table references (tables, table functions, derived tables) in one statement.
    pub max_table_references: usize,
    /// Deadline of one query, from planning to its last row.
    pub timeout: Duration,
    /// Memory all running queries may hold together, in bytes (joins, aggregates and sorts
    /// account for theirs; sorts and aggregates spill to disk when it runs out).
    pub memory_limit: usize,
    /// Queries (SQL statements, traces, certificates) running at once; more wait.
    pub max_concurrent: usize,
    /// How long a query waits for a free slot before it is refused as `server_busy`.
    pub queue_timeout: Duration,
    /// Threads of the query runtime; 0 means one per CPU.
    pub threads: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_statement_bytes: 64 * 1024,
            max_expression_depth: 128,
            max_query_blocks: 64,
            max_table_references: 64,
            timeout: Duration::from_secs(60),
            memory_limit: 2 << 30,
            max_concurrent: 4,
            queue_timeout: Duration::from_secs(10),
            threads: 0,
        }
    }
}

/// Stack of each query-runtime thread. Statements that pass [`check_statement`] need far
/// less; the headroom is for DataFusion passes that recurse without stack protection. The
/// memory is reserved, not committed: only pages touched are used.
pub(crate) const QUERY_THREAD_STACK: usize = 64 << 20;

/// Parses one statement and checks it against `limits`. Runs on a query-runtime thread
/// (large stack): a statement of [`QueryLimits::max_statement_bytes`] can still build a deep
/// tree, which the checks walk (stopping at the first bound exceeded) and drop here.
pub(crate) fn parse_checked(
    sql: &str,
    dialect: &str,
    recursion_limit: usize,
    limits: &QueryLimits,
) -> Result<DfStatement> {
    if sql.len() > limits.max_statement_bytes {
        return Err(Error::TooComplex(format!(
            "the statement is {} bytes; at most {} are accepted",
            sql.len(),
            limits.max_statement_bytes
        )));
    }
    let dialect = dialect_from_str(dialect)
        .ok_or_else(|| Error::BadRequest(format!("unsupported SQL dialect {dialect:?}")))?;
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .with_recursion_limit(recursion_limit)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| {
            let deep = match e.find_root() {
                datafusion::error::DataFusionError::SQL(p, _) => matches!(
                    **p,
                    datafusion::sql::sqlparser::parser::ParserError::RecursionLimitExceeded
                ),
                _ => false,
            };
            if deep {
                Error::TooComplex(format!(
                    "the statement nests deeper than {recursion_limit} levels (parentheses, \
                     subqueries or function calls)"
                ))
            } else {
                Error::Sql(e)
            }
        })?;
    if statements.len() > 1 {
        return Err(Error::BadRequest(format!(
            "one SQL statement per request; got {}",
            statements.len()
        )));
    }
    let statement = statements
        .pop_front()
        .ok_or_else(|| Error::BadRequest("no SQL statement was given".into()))?;
    check_statement(&statement, limits)?;
    Ok(statement)
}

/// Checks a parsed statement's shape against `limits`.
pub(crate) fn check_statement(statement: &DfStatement, limits: &QueryLimits) -> Result<()> {
    let mut m = Measure {
        limits,
        depth: 0,
        blocks: 0,
        tables: 0,
    };
    let flow = match statement {
        DfStatement::Statement(s) => s.visit(&mut m),
        DfStatement::Explain(e) => return check_statement(&e.statement, limits),
        // COPY, CREATE EXTERNAL TABLE and RESET are refused as writes or settings later;
        // they carry no user expression trees worth measuring.
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(reason) => Err(Error::TooComplex(reason)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Measure<'a> {
    limits: &'a QueryLimits,
    depth: usize,
    blocks: usize,
    tables: usize,
}

impl Visitor for Measure<'_> {
    type Break = String;

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<String> {
        self.depth += 1;
        if self.depth > self.limits.max_expression_depth {
            return ControlFlow::Break(format!(
                "an expression nests deeper than {} levels (long chains of +, AND, OR or \
                 nested calls); split it, or use IN (...) for many alternatives",
                self.limits.max_expression_depth
            ));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<String> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, _select: &Select) -> ControlFlow<String> {
        self.blocks += 1;
        if self.blocks > self.limits.max_query_blocks {
            return ControlFlow::Break(format!(
                "the statement has more than {} query blocks (SELECTs, subqueries, UNION arms)",
                self.limits.max_query_blocks
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, _t: &TableFactor) -> ControlFlow<String> {
        self.tables += 1;
        if self.tables > self.limits.max_table_references {
            return ControlFlow::Break(format!(
                "the statement references more than {} tables",
                self.limits.max_table_references
            ));
        }
        ControlFlow::Continue(())
    }
}

/// Physical optimizer rule: puts a [`CooperativeExec`] above every operator that can emit
/// many batches per batch it reads (joins, unnest). DataFusion's own cooperation covers the
/// scans only, so a cross join of three tables ran for minutes inside one poll: its task
/// never yielded, so a deadline or a client that went away could not abort it, and its query
/// slot stayed taken. A cooperative wrapper spends the task's budget on every batch and
/// yields when it is used up.
///
/// [`CooperativeExec`]: datafusion::physical_plan::coop::CooperativeExec
#[derive(Debug, Default)]
pub(crate) struct YieldingOperators;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for YieldingOperators {
    fn optimize(
        &self,
        plan: std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        _config: &datafusion::config::ConfigOptions,
    ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
    {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::physical_plan::coop::CooperativeExec;
        plan.transform_up(|p| {
            let multiplies = matches!(
                p.name(),
                "CrossJoinExec"
                    | "NestedLoopJoinExec"
                    | "HashJoinExec"
                    | "SortMergeJoinExec"
                    | "SymmetricHashJoinExec"
                    | "PiecewiseMergeJoinExec"
                    | "UnnestExec"
            );
            Ok(if multiplies {
                Transformed::yes(std::sync::Arc::new(CooperativeExec::new(p))
                    as std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>)
            } else {
                Transformed::no(p)
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "veritrace_yielding_operators"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Result<DfStatement> {
        // The unit tests run on the test thread's stack: keep the deep cases modest here;
        // the server tests send the 2,000- and 3,000-term statements of the issue.
        parse_checked(sql, "generic", 50, &QueryLimits::default())
    }

    fn too_complex(sql: &str) -> String {
        match check(sql) {
            Err(Error::TooComplex(m)) => m,
            other => panic!("expected too complex, got {other:?}"),
        }
    }

    #[test]
    fn ordinary_statements_pass() {
        for sql in [
            "SELECT 1",
            "SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
            "SELECT * FROM trace_backward('urn:x', 3) WHERE event_type = 'sale'",
            "EXPLAIN SELECT a.x FROM events a JOIN events b ON a.event_id = b.event_id",
            "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let sum = vec!["1"; 100].join("+");
        check(&format!("SELECT {sum}")).expect("a 100-term sum is fine");
    }

    #[test]
    fn long_plus_chain_is_too_complex() {
        let sum = vec!["1"; 300].join("+");
        assert!(too_complex(&format!("SELECT {sum}")).contains("nests deeper than 128"));
    }

    #[test]
    fn long_or_chain_is_too_complex() {
        let ors: Vec<String> = (0..300).map(|i| format!("event_id = 'e{i}'")).collect();
        let sql = format!("SELECT * FROM events WHERE {}", ors.join(" OR "));
        too_complex(&sql);
        // The same alternatives as an IN list are one shallow expression.
        let ids: Vec<String> = (0..3000).map(|i| format!("'e{i}'")).collect();
        check(&format!(
            "SELECT * FROM events WHERE event_id IN ({})",
            ids.join(",")
        ))
        .expect("IN list");
    }

    #[test]
    fn deep_parentheses_hit_the_parser_limit() {
        let sql = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
        assert!(too_complex(&sql).contains("nests deeper than 50"));
    }

    #[test]
    fn many_union_arms_are_too_complex() {
        let sql = vec!["SELECT 1"; 100].join(" UNION ALL ");
        assert!(too_complex(&sql).contains("query blocks"));
    }

    #[test]
    fn many_tables_are_too_complex() {
        let tables: Vec<String> = (0..100).map(|i| format!("events e{i}")).collect();
        let sql = format!("SELECT 1 FROM {}", tables.join(", "));
        assert!(too_complex(&sql).contains("tables"));
    }

    #[test]
    fn long_statement_is_refused_by_size() {
        let sql = format!("SELECT '{}'", "x".repeat(70 * 1024));
        assert!(too_complex(&sql).contains("bytes"));
    }

    #[test]
    fn two_statements_are_refused() {
        assert!(matches!(
            check("SELECT 1; SELECT 2"),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn explain_is_measured_too() {
        let sum = vec!["1"; 300].join("+");
        too_complex(&format!("EXPLAIN SELECT {sum}"));
    }
}

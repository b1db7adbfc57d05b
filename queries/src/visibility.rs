//! Row visibility, enforced where the data is read.
//!
//! [`QueryEngine::scoped`] gives a request an engine of its own whose tables are views over
//! the shared ones: for a participant, `events` keeps the rows in which it takes part
//! (`participant_id` or `counterparty_id`) and the rows about trace codes another
//! participant shared with it in which that participant takes part; `edges` keeps the
//! edges whose event is such a row; `rejected` is empty (raw input names nobody reliably).
//! The filter is part of every plan of the session (SQL, trace functions, traces,
//! certificates, Flight SQL), and lookups by id (events, proofs) apply the same rule to the
//! event found ([`Visibility::admits`]). A trace shows the nodes reached through edges the
//! participant may see and counts the others per depth, never their codes. Analysts
//! read every row but the audit log's; admins and auditors read everything, and the
//! `audit` table.

use std::collections::BTreeMap;

use hashbrown::HashSet;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider,
};
use datafusion::datasource::{MemTable, TableProvider, ViewTable, provider_as_source};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::functions_nested::expr_fn::{array_has_any, make_array};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, col, lit};
use datafusion::prelude::in_subquery;
use serde::Serialize;
use veritrace_anchor::tables;

use crate::access::Scope;
use crate::trace::{Direction, TraceFunction, Walk};
use crate::{Error, QueryEngine, Result};

/// The event type of audit entries, which only admins and auditors read.
pub const AUDIT_TYPE: &str = "audit";

/// What one participant may see: its own events, and per grantor the codes shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    /// The participant.
    pub participant: String,
    /// Grantor -> trace codes it shared with the participant (canonical forms).
    pub shared: BTreeMap<String, Vec<String>>,
}

/// Nodes of a trace the caller may not see, at one depth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HiddenNodes {
    /// Levels from the root.
    pub depth: u32,
    /// How many.
    pub count: usize,
}

impl Visibility {
    /// The filter on `events` rows.
    pub fn predicate(&self) -> Expr {
        let takes_part = |p: &str| {
            col("participant_id")
                .eq(lit(p.to_owned()))
                .or(col("counterparty_id").eq(lit(p.to_owned())))
        };
        let mut e = takes_part(&self.participant);
        for (grantor, codes) in &self.shared {
            if codes.is_empty() {
                continue;
            }
            let list: Vec<Expr> = codes.iter().map(|c| lit(c.clone())).collect();
            let about = col("trace_code")
                .in_list(list.clone(), false)
                .or(array_has_any(col("inputs"), make_array(list.clone())))
                .or(array_has_any(col("outputs"), make_array(list)));
            e = e.or(takes_part(grantor).and(about));
        }
        e
    }

    /// The same rule on an event as stored (its canonical JSON).
    pub fn admits(&self, event: &serde_json::Value) -> bool {
        let party = |k: &str| {
            event
                .get(k)
                .and_then(|p| p.get("id"))
                .and_then(|i| i.as_str())
        };
        let takes_part =
            |p: &str| party("participant") == Some(p) || party("counterparty") == Some(p);
        if takes_part(&self.participant) {
            return true;
        }
        let codes = || {
            let own = event.get("trace_code").and_then(|c| c.as_str());
            let lists = ["inputs", "outputs"].into_iter().flat_map(|k| {
                event
                    .get(k)
                    .and_then(|l| l.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str())
            });
            own.into_iter().chain(lists)
        };
        self.shared.iter().any(|(grantor, shared)| {
            takes_part(grantor) && codes().any(|c| shared.iter().any(|s| s == c))
        })
    }

    /// Hides the parts of `walk` reached through events not among `visible`: a node stays
    /// when it is the root or its linking event is visible and its parent stays; the others
    /// are counted per depth. Returns the kept nodes' codes.
    pub fn hide(
        &self,
        walk: &mut Walk,
        visible: &HashSet<String>,
    ) -> (Vec<HiddenNodes>, HashSet<String>) {
        let mut kept: HashSet<String> = HashSet::new();
        let mut hidden: BTreeMap<u32, usize> = BTreeMap::new();
        let mut nodes = Vec::with_capacity(walk.nodes.len());
        for n in walk.nodes.drain(..) {
            let shown = match (&n.via_event, &n.from) {
                (None, None) => true,
                (Some(ev), Some(from)) => visible.contains(ev) && kept.contains(from),
                _ => false,
            };
            if shown {
                kept.insert(n.code.clone());
                nodes.push(n);
            } else {
                *hidden.entry(n.depth).or_default() += 1;
            }
        }
        walk.nodes = nodes;
        walk.edge_events
            .retain(|e| visible.contains(&e.event_id) && kept.contains(&e.node));
        walk.cycles
            .retain(|c| c.iter().all(|code| kept.contains(code)));
        (
            hidden
                .into_iter()
                .map(|(depth, count)| HiddenNodes { depth, count })
                .collect(),
            kept,
        )
    }
}

impl QueryEngine {
    /// An engine that reads what `scope` may see ([`crate::visibility`]); `Scope::All` is
    /// this engine itself. Cheap: views over the shared tables, no data copied.
    pub async fn scoped(&self, scope: &Scope) -> Result<QueryEngine> {
        let vis = match scope {
            Scope::All => return Ok(self.clone()),
            Scope::Nothing => {
                return Err(Error::Forbidden("this identity may read no rows".into()));
            }
            // Every row; only the audit table is left out of the session.
            Scope::Data => None,
            Scope::Participant(p) => Some(Arc::new(self.visibility_of(p).await?)),
        };
        let (events, ids) = match &vis {
            None => (self.events.clone(), None),
            Some(v) => {
                let pred = v.predicate();
                let plan = LogicalPlanBuilder::scan(
                    "events",
                    provider_as_source(self.events.clone()),
                    None,
                )?
                .filter(pred.clone())?
                .build()?;
                let ids = LogicalPlanBuilder::scan(
                    "events",
                    provider_as_source(self.events.clone()),
                    None,
                )?
                .filter(pred)?
                .project(vec![col("event_id")])?
                .build()?;
                let view: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, None));
                (view, Some(ids))
            }
        };
        let edges_all = self
            .ctx
            .table_provider("edges")
            .await
            .map_err(|e| Error::Internal(format!("the edges table: {e}")))?;
        let edges: Arc<dyn TableProvider> = match ids {
            Some(ids) => {
                let plan = LogicalPlanBuilder::scan("edges", provider_as_source(edges_all), None)?
                    .filter(in_subquery(col("event_id"), Arc::new(ids)))?
                    .build()?;
                Arc::new(ViewTable::new(plan, None))
            }
            None => edges_all,
        };
        // Every event as recorded (also those declared in error), in the same scope.
        let recorded_all = self
            .ctx
            .table_provider("events_as_recorded")
            .await
            .map_err(|e| Error::Internal(format!("the events_as_recorded table: {e}")))?;
        let recorded: Arc<dyn TableProvider> = match &vis {
            None => recorded_all,
            Some(v) => Arc::new(ViewTable::new(
                LogicalPlanBuilder::scan(
                    "events_as_recorded",
                    provider_as_source(recorded_all),
                    None,
                )?
                .filter(v.predicate())?
                .build()?,
                None,
            )),
        };
        let rejected: Arc<dyn TableProvider> = if vis.is_some() {
            Arc::new(MemTable::try_new(tables::REJECTED.schema(), vec![vec![]])?)
        } else {
            self.ctx
                .table_provider("rejected")
                .await
                .map_err(|e| Error::Internal(format!("the rejected table: {e}")))?
        };
        let state = self.ctx.state();
        let (catalog_name, schema_name) = {
            let o = state.config_options();
            (
                o.catalog.default_catalog.clone(),
                o.catalog.default_schema.clone(),
            )
        };
        let schema = Arc::new(MemorySchemaProvider::new());
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema(&schema_name, schema)?;
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        catalogs.register_catalog(catalog_name, catalog);
        let ctx = SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(state)
                .with_catalog_list(catalogs)
                .build(),
        );
        ctx.register_table("events", events.clone())?;
        ctx.register_table("events_as_recorded", recorded)?;
        // Over this scope's events: suspects among what the identity may see.
        ctx.register_table("clone_suspects", crate::clones::view(&ctx).await?)?;
        ctx.register_table("code_lifecycle", crate::lifecycle::view(&ctx).await?)?;
        ctx.register_table("edges", edges)?;
        ctx.register_table("rejected", rejected)?;
        for name in ["batches", "epochs"] {
            let t = self
                .ctx
                .table_provider(name)
                .await
                .map_err(|e| Error::Internal(format!("the {name} table: {e}")))?;
            ctx.register_table(name, t)?;
        }
        for (name, d) in [
            ("trace_backward", Direction::Backward),
            ("trace_forward", Direction::Forward),
        ] {
            ctx.register_udtf(
                name,
                Arc::new(TraceFunction::new(
                    d,
                    self.edges.clone(),
                    events.clone(),
                    self.dir.clone(),
                )),
            );
        }
        let mut scoped = self.clone();
        scoped.ctx = ctx;
        scoped.events = events;
        scoped.visibility = vis;
        scoped.hides_audit = true;
        Ok(scoped)
    }

    /// The visibility rule of `participant`: its grants in force now, as the registry holds
    /// them.
    async fn visibility_of(&self, participant: &str) -> Result<Visibility> {
        let grants = self.grants().await?;
        // A grant's end is checked at every request: it needs no record to take effect.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut shared: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for g in grants.values() {
            if g.grantee != participant || !g.in_force(now) {
                continue;
            }
            let codes = shared.entry(g.grantor.clone()).or_default();
            for c in &g.trace_codes {
                // A code the grant names in any accepted form matches its canonical form.
                codes.push(crate::trace::normalise(c).unwrap_or_else(|_| c.clone()));
            }
        }
        for codes in shared.values_mut() {
            codes.sort();
            codes.dedup();
        }
        Ok(Visibility {
            participant: participant.to_owned(),
            shared,
        })
    }

    /// The registry's grants, replayed from the log when the data directory changed.
    /// Without a registry root key there is no registry, so no grants.
    async fn grants(&self) -> Result<Arc<BTreeMap<String, veritrace_verify::registry::Grant>>> {
        let Some(root) = self.registry_root.clone() else {
            return Ok(Arc::default());
        };
        let snap = self.snapshot().await?;
        let mut cache = self.grants.lock().await;
        if let Some((fp, g)) = cache.as_ref()
            && *fp == snap.fingerprint
        {
            return Ok(g.clone());
        }
        let dir = self.dir.clone();
        let registry = tokio::task::spawn_blocking(move || {
            veritrace_processors::signed::load_registry(&dir, &root)
        })
        .await
        .map_err(|e| Error::Internal(format!("reading the registry: {e}")))?
        .map_err(|e| Error::corrupt("the identity registry", e))?;
        let g = Arc::new(registry.grants().clone());
        *cache = Some((snap.fingerprint, g.clone()));
        Ok(g)
    }

    /// `NotFound` unless this engine's identity may see `event` (lookups by id).
    pub(crate) fn check_visible(&self, event_id: &str, event: &serde_json::Value) -> Result<()> {
        let audit = event.get("event_type").and_then(|t| t.as_str()) == Some(AUDIT_TYPE);
        let hidden = (self.hides_audit && audit)
            || self.visibility.as_ref().is_some_and(|v| !v.admits(event));
        if hidden {
            return Err(Error::NotFound {
                what: "event (among those you may see)",
                id: event_id.to_owned(),
            });
        }
        Ok(())
    }
}

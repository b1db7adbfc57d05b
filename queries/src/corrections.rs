//! Error declarations: the corrected view.
//!
//! An `error_declaration` event names events it declares in error (`retracts`; EPCIS
//! `errorDeclaration`). Nothing is deleted: the declared events stay in the log, their proofs
//! verify, and `events_as_recorded` shows them. `events`, traces and everything built on them
//! read the corrected view, which leaves out each declared event once the declaration is
//! found to be *effective*:
//!
//! - the declared event exists, and
//! - it was recorded by the participant who declares it (no one retracts another's event),
//!   and
//! - it is not itself an error declaration (a declaration is final: correct it with a new
//!   event).
//!
//! A batch header lists its retractions ([`veritrace_verify::bundle::Retraction`]), so a
//! reader finds every declaration from the manifests it reads anyway, without scanning the
//! events. The declared events are then looked up by id (bloom filters prune to the files
//! and row groups that hold them). A verdict, once reached, is final (committed events never
//! change); a declaration whose event is not found yet (sealed later, or on another
//! partition) is looked at again at the next refresh.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use datafusion::datasource::TableProvider;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{col, lit};
use veritrace_verify::bundle::Retraction;

/// What became of one retraction.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The event is left out of the corrected view.
    Effective,
    /// The declaration does not count, and why.
    Refused(String),
}

/// The verdicts reached so far, by (declared event, declaration).
#[derive(Debug, Default)]
pub(crate) struct Corrections {
    verdicts: Mutex<HashMap<(String, String), Verdict>>,
}

/// Ids looked up in one query.
const CHUNK: usize = 500;

impl Corrections {
    /// The event ids the corrected view leaves out, given every retraction the headers
    /// list; looks up the declared events not judged yet in `recorded` (every committed
    /// event). A lookup that fails leaves its retractions for the next refresh.
    pub(crate) async fn hidden(
        &self,
        ctx: &SessionContext,
        recorded: Arc<dyn TableProvider>,
        retractions: &[Retraction],
    ) -> Arc<BTreeSet<String>> {
        let open: Vec<&Retraction> = {
            let v = self.lock();
            retractions
                .iter()
                .filter(|r| !v.contains_key(&(r.event_id.clone(), r.declaration.clone())))
                .collect()
        };
        let mut ids: Vec<&str> = open.iter().map(|r| r.event_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(CHUNK) {
            match recorders(ctx, recorded.clone(), chunk).await {
                Ok(found) => {
                    let mut v = self.lock();
                    for r in open
                        .iter()
                        .filter(|r| chunk.binary_search(&r.event_id.as_str()).is_ok())
                    {
                        let Some(rows) = found.get(&r.event_id) else {
                            continue;
                        };
                        let verdict = if rows.iter().any(|(_, t)| t == "error_declaration") {
                            Verdict::Refused(
                                "it names an error declaration, and declarations are final".into(),
                            )
                        } else if rows.iter().any(|(p, _)| *p == r.participant) {
                            Verdict::Effective
                        } else {
                            Verdict::Refused(format!(
                                "{} did not record {} ({})",
                                r.participant,
                                r.event_id,
                                rows.iter()
                                    .map(|(p, _)| p.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        };
                        if let Verdict::Refused(why) = &verdict {
                            tracing::warn!(
                                declaration = %r.declaration,
                                event = %r.event_id,
                                "error declaration not applied: {why}"
                            );
                        }
                        v.insert((r.event_id.clone(), r.declaration.clone()), verdict);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "looking up events declared in error; trying again at the next refresh");
                }
            }
        }
        let v = self.lock();
        Arc::new(
            retractions
                .iter()
                .filter(|r| {
                    v.get(&(r.event_id.clone(), r.declaration.clone())) == Some(&Verdict::Effective)
                })
                .map(|r| r.event_id.clone())
                .collect(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Verdict>> {
        self.verdicts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Who recorded each of `ids` (participant, event type), among the committed events.
async fn recorders(
    ctx: &SessionContext,
    recorded: Arc<dyn TableProvider>,
    ids: &[&str],
) -> crate::Result<HashMap<String, Vec<(String, String)>>> {
    let batches = ctx
        .read_table(recorded)?
        .filter(col("event_id").in_list(ids.iter().map(|i| lit(*i)).collect(), false))?
        .select_columns(&["event_id", "participant_id", "event_type"])?
        .collect()
        .await?;
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for b in &batches {
        let text = |i: usize| {
            b.column(i)
                .as_string_opt::<i32>()
                .ok_or_else(|| crate::Error::Internal("events: a column is not text".into()))
        };
        let (id, who, ty) = (text(0)?, text(1)?, text(2)?);
        for i in 0..b.num_rows() {
            if id.is_null(i) {
                continue;
            }
            out.entry(id.value(i).to_owned()).or_default().push((
                if who.is_null(i) {
                    String::new()
                } else {
                    who.value(i).to_owned()
                },
                ty.value(i).to_owned(),
            ));
        }
    }
    Ok(out)
}

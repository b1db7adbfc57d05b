//! Code lifecycle, derived from each trace code's own events in time order.
//!
//! | event | state after it |
//! |---|---|
//! | `code_issued` (first) | `issued` |
//! | `production`; the first `assembly` or `transformation` that makes it | `commissioned` |
//! | any other, while `issued` or `commissioned` | `in use` |
//! | `sale`, `retail` | `sold` |
//! | `decommissioning` | `decommissioned`, or `destroyed` when its EPCIS business step was `destroying` |
//! | `recall` (unless decommissioned or destroyed) | `recalled` |
//!
//! A code with none of these is `unknown`; an issue recorded after the object's life began
//! (a late import) changes nothing. The resolver ([`crate::resolver`]) and the
//! `code_lifecycle` table (one row per trace code: the state, since when, by which event)
//! apply the same rule, [`next`].

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, StringBuilder, StructArray, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::TableProvider;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The event type the table's SQL gives a `decommissioning` whose EPCIS business step was
/// `destroying` (not a valid type name, so it names nothing else).
const DESTROYING: &str = "decommissioning/destroying";

/// The state after an event of type `what` in state `state`, or `None` when the event does
/// not change it. `destroyed`: a decommissioning whose business step was `destroying`.
pub fn next(state: &str, what: &str, destroyed: bool) -> Option<&'static str> {
    Some(match what {
        "code_issued" if state == "unknown" => "issued",
        "code_issued" => return None,
        "production" => "commissioned",
        // Made by assembling or transforming: commissioned, the first time only (a pallet
        // packed again is in use, not new).
        "assembly" | "transformation" if matches!(state, "unknown" | "issued") => "commissioned",
        "sale" | "retail" => "sold",
        "decommissioning" if destroyed => "destroyed",
        "decommissioning" => "decommissioned",
        "recall" if !matches!(state, "decommissioned" | "destroyed") => "recalled",
        _ if matches!(state, "issued" | "commissioned") => "in use",
        _ => return None,
    })
}

/// The state after `steps` (event type, time, id; in time order) and the step that set it.
fn fold<'a>(
    steps: impl Iterator<Item = (&'a str, Option<usize>)>,
) -> (&'static str, Option<usize>) {
    let mut state = "unknown";
    let mut at = None;
    for (what, i) in steps {
        let (what, destroyed) = match what {
            DESTROYING => ("decommissioning", true),
            w => (w, false),
        };
        if let Some(s) = next(state, what, destroyed) {
            state = s;
            at = i;
        }
    }
    (state, at)
}

fn out_fields() -> Fields {
    Fields::from(vec![
        Field::new("state", DataType::Utf8, false),
        Field::new(
            "since",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("since_event", DataType::Utf8, true),
    ])
}

/// `code_lifecycle(event types, event times, event ids)`, three lists in time order:
/// `{state, since, since_event}`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct LifecycleUdf {
    signature: Signature,
}

fn internal(what: &str) -> DataFusionError {
    DataFusionError::Internal(format!("code_lifecycle: {what}"))
}

impl ScalarUDFImpl for LifecycleUdf {
    fn name(&self) -> &str {
        "code_lifecycle"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(out_fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [kinds, times, ids] = args.args.as_slice() else {
            return Err(internal("three arguments"));
        };
        let listed = |a: &ColumnarValue, to: &DataType| -> DfResult<(ArrayRef, ArrayRef)> {
            let a = a.to_array(args.number_rows)?;
            let l = a
                .as_list_opt::<i32>()
                .ok_or_else(|| internal("list arguments"))?;
            let values = arrow::compute::cast(l.values(), to)?;
            Ok((a, values))
        };
        let (list, kinds) = listed(kinds, &DataType::Utf8)?;
        let kinds = kinds.as_string::<i32>();
        let (time_list, times) = listed(times, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let times = times.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let (id_list, ids) = listed(ids, &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        // The three lists are aggregated in the same order over the same rows.
        let list = list.as_list::<i32>();
        if time_list.as_list::<i32>().value_offsets() != list.value_offsets()
            || id_list.as_list::<i32>().value_offsets() != list.value_offsets()
        {
            return Err(internal("lists of different lengths"));
        }

        let n = list.len();
        let mut state = StringBuilder::with_capacity(n, n * 8);
        let mut since = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut since_event = StringBuilder::with_capacity(n, n * 16);
        let offsets = list.value_offsets();
        for row in 0..n {
            let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
            let steps = (from..to)
                .filter(|&i| !list.is_null(row) && !kinds.is_null(i))
                .map(|i| (kinds.value(i), Some(i)));
            let (s, at) = fold(steps);
            state.append_value(s);
            match at {
                Some(i) if !times.is_null(i) => since.append_value(times.value(i)),
                _ => since.append_null(),
            }
            match at {
                Some(i) if !ids.is_null(i) => since_event.append_value(ids.value(i)),
                _ => since_event.append_null(),
            }
        }
        let out = StructArray::try_new(
            out_fields(),
            vec![
                Arc::new(state.finish()),
                Arc::new(since.finish()),
                Arc::new(since_event.finish()),
            ],
            None,
        )?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The `code_lifecycle` function, for a session's registry.
pub fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(LifecycleUdf {
        signature: Signature::any(3, Volatility::Immutable),
    })
}

/// The `code_lifecycle` table's SQL: one row per trace code of `events`.
pub fn sql() -> String {
    format!(
        "WITH steps AS (\
           SELECT trace_code, event_time, event_id, \
             CASE WHEN event_type = 'decommissioning' \
                    AND attributes LIKE '%\"epcis_biz_step\":\"destroying\"%' \
                  THEN '{DESTROYING}' ELSE event_type END AS kind \
           FROM events WHERE trace_code IS NOT NULL), \
         folded AS (\
           SELECT trace_code, \
             code_lifecycle(array_agg(kind ORDER BY event_time, event_id), \
               array_agg(event_time ORDER BY event_time, event_id), \
               array_agg(event_id ORDER BY event_time, event_id)) AS lc, \
             count(*) AS events, max(event_time) AS last_event_time \
           FROM steps GROUP BY trace_code) \
         SELECT trace_code, lc['state'] AS state, lc['since'] AS since, \
           lc['since_event'] AS since_event, events, last_event_time \
         FROM folded"
    )
}

/// The view, planned against `ctx`'s `events` table (registers [`udf`] in it).
pub async fn view(ctx: &SessionContext) -> crate::Result<Arc<dyn TableProvider>> {
    ctx.register_udf(udf());
    Ok(ctx.sql(&sql()).await?.into_view())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: &[&str]) -> (&'static str, Option<usize>) {
        fold(steps.iter().enumerate().map(|(i, s)| (*s, Some(i))))
    }

    #[test]
    fn the_lifecycle_follows_the_codes_events() {
        assert_eq!(run(&[]), ("unknown", None));
        assert_eq!(run(&["transport"]), ("unknown", None));
        assert_eq!(run(&["code_issued"]), ("issued", Some(0)));
        assert_eq!(
            run(&["code_issued", "production"]),
            ("commissioned", Some(1))
        );
        assert_eq!(
            run(&["assembly", "transport", "assembly"]),
            ("in use", Some(1)),
            "packed again is not made again"
        );
        assert_eq!(
            run(&["code_issued", "transformation"]),
            ("commissioned", Some(1))
        );
        assert_eq!(
            run(&["code_issued", "production", "quality_check", "transport"]),
            ("in use", Some(2))
        );
        assert_eq!(
            run(&["production", "transport", "sale", "maintenance"]),
            ("sold", Some(2))
        );
        assert_eq!(
            run(&["production", "sale", "recall"]),
            ("recalled", Some(2))
        );
        assert_eq!(
            run(&["production", "recall", "decommissioning"]),
            ("decommissioned", Some(2))
        );
        assert_eq!(
            run(&["production", "decommissioning", "recall"]),
            ("decommissioned", Some(1))
        );
        assert_eq!(
            run(&["production", DESTROYING, "recall"]),
            ("destroyed", Some(1)),
            "a recall after destruction changes nothing"
        );
        assert_eq!(
            run(&["production", "code_issued"]),
            ("commissioned", Some(0)),
            "a late issue record changes nothing"
        );
    }
}

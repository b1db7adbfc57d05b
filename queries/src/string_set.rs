//! `column IN (a large set of strings)` for plans the engine builds itself (traces), without
//! an `IN` list of literals.
//!
//! A forward trace asks for the events of tens of thousands of codes (36,871 for a coating
//! batch at 50 M events). As an `IN` list, DataFusion clones and hashes every literal again
//! for each file it opens (its pruning predicate, literal guarantees and expression
//! simplifier): two thirds of the query's time went there (BENCHMARKS.md, issue 19). The set
//! here is built once, shared by every file and batch, and tested with one hash lookup per
//! row. The events table reads it for pruning: files by key range, row groups and pages by
//! the page index ([`crate::events_table`]).
//!
//! Not callable from SQL: the function is never registered, only built into plans.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// A set of strings: sorted (for pruning by ranges) and hashed (for the rows).
pub(crate) struct StringSet {
    sorted: Vec<String>,
    hashed: hashbrown::HashSet<Box<str>>,
}

impl StringSet {
    /// The set of `values` (in any order, repeats allowed).
    pub(crate) fn new(mut values: Vec<String>) -> StringSet {
        values.sort_unstable();
        values.dedup();
        let mut hashed = hashbrown::HashSet::with_capacity(values.len());
        hashed.extend(values.iter().map(|v| Box::<str>::from(v.as_str())));
        StringSet {
            sorted: values,
            hashed,
        }
    }

    /// The values, sorted ascending, each once.
    pub(crate) fn sorted(&self) -> &[String] {
        &self.sorted
    }

    fn contains(&self, v: &str) -> bool {
        self.hashed.contains(v)
    }
}

// Plans are printed (EXPLAIN, errors): the size, not every value.
impl std::fmt::Debug for StringSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StringSet({} values)", self.sorted.len())
    }
}

/// The function `in_string_set(column)`: true where the value is in the set, null where it
/// is null (as `IN` is).
#[derive(Debug)]
pub(crate) struct InStringSet {
    set: Arc<StringSet>,
    signature: Signature,
}

// Two instances are the same function only when they share their set: comparing or
// hashing tens of thousands of strings each time the optimizer compares expressions would
// bring back the cost this module removes.
impl PartialEq for InStringSet {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.set, &other.set)
    }
}

impl Eq for InStringSet {}

impl Hash for InStringSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.set) as usize).hash(state);
    }
}

impl InStringSet {
    /// Its set.
    pub(crate) fn set(&self) -> &Arc<StringSet> {
        &self.set
    }
}

impl ScalarUDFImpl for InStringSet {
    fn name(&self) -> &str {
        "in_string_set"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return datafusion::common::exec_err!("in_string_set takes one argument");
        };
        match arg {
            ColumnarValue::Scalar(s) => Ok(ColumnarValue::Scalar(ScalarValue::Boolean(
                scalar_str(s)?.map(|v| self.set.contains(v)),
            ))),
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(Arc::new(self.test(a)?))),
        }
    }
}

fn scalar_str(s: &ScalarValue) -> DfResult<Option<&str>> {
    match s {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            Ok(v.as_deref())
        }
        ScalarValue::Null => Ok(None),
        other => datafusion::common::exec_err!("in_string_set of a {} value", other.data_type()),
    }
}

impl InStringSet {
    fn test(&self, a: &ArrayRef) -> DfResult<BooleanArray> {
        fn run<'a>(
            set: &StringSet,
            len: usize,
            nulls: Option<&arrow::buffer::NullBuffer>,
            values: impl Iterator<Item = Option<&'a str>>,
        ) -> BooleanArray {
            let mut bits = BooleanBufferBuilder::new(len);
            // Files sorted by trace code hold each code's events in a run (six on average
            // in the simulator's data): one lookup a run.
            let mut last: Option<(&str, bool)> = None;
            for v in values {
                let hit = match (v, last) {
                    (None, _) => false,
                    (Some(v), Some((l, hit))) if l == v => hit,
                    (Some(v), _) => {
                        let hit = set.contains(v);
                        last = Some((v, hit));
                        hit
                    }
                };
                bits.append(hit);
            }
            BooleanArray::new(bits.finish(), nulls.cloned())
        }
        let set = &self.set;
        Ok(match a.data_type() {
            DataType::Utf8 => run(set, a.len(), a.nulls(), a.as_string::<i32>().iter()),
            DataType::LargeUtf8 => run(set, a.len(), a.nulls(), a.as_string::<i64>().iter()),
            DataType::Utf8View => run(set, a.len(), a.nulls(), a.as_string_view().iter()),
            DataType::Null => BooleanArray::new_null(a.len()),
            _ => {
                let s = arrow::compute::cast(a, &DataType::Utf8)?;
                run(set, s.len(), s.nulls(), s.as_string::<i32>().iter())
            }
        })
    }
}

/// `e IN values`, as one shared set.
pub(crate) fn in_set(e: Expr, values: Vec<String>) -> Expr {
    let f = InStringSet {
        set: Arc::new(StringSet::new(values)),
        signature: Signature::any(1, Volatility::Immutable),
    };
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(f)),
        vec![e],
    ))
}

/// The argument and the set of an [`in_set`] expression.
pub(crate) fn as_in_set(e: &Expr) -> Option<(&Expr, &Arc<StringSet>)> {
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    let inner: &dyn Any = f.func.inner().as_ref();
    let s = inner.downcast_ref::<InStringSet>()?;
    match f.args.as_slice() {
        [arg] => Some((arg, s.set())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, StringViewArray};
    use datafusion::prelude::{SessionContext, col, lit};

    #[tokio::test]
    async fn matches_as_in_does_with_nulls_and_every_string_type() {
        let values = vec!["b".to_owned(), "a".to_owned(), "b".to_owned()];
        let e = in_set(col("x"), values.clone());
        let (arg, set) = as_in_set(&e).expect("an in_set expression");
        assert_eq!(arg, &col("x"));
        assert_eq!(set.sorted(), ["a", "b"]);
        let ctx = SessionContext::new();
        let rows = vec![Some("a"), None, Some("c"), Some("b"), Some("")];
        let utf8: ArrayRef = Arc::new(StringArray::from(rows.clone()));
        let view: ArrayRef = Arc::new(StringViewArray::from(rows.clone()));
        for a in [utf8, view] {
            let batch = arrow::array::RecordBatch::try_from_iter([("x", a)]).expect("batch");
            let df = ctx.read_batch(batch).expect("frame");
            let ours = df
                .clone()
                .select(vec![in_set(col("x"), values.clone()).alias("r")])
                .expect("select")
                .collect()
                .await
                .expect("run");
            let theirs = df
                .select(vec![
                    col("x").in_list(vec![lit("b"), lit("a")], false).alias("r"),
                ])
                .expect("select")
                .collect()
                .await
                .expect("run");
            assert_eq!(ours, theirs);
            let got: Vec<Option<bool>> = ours[0].column(0).as_boolean().iter().collect();
            assert_eq!(
                got,
                [Some(true), None, Some(false), Some(true), Some(false)]
            );
        }
    }

    #[test]
    fn two_sets_are_the_same_function_only_when_shared() {
        let a = in_set(col("x"), vec!["a".into()]);
        let b = in_set(col("x"), vec!["a".into()]);
        assert_eq!(a, a.clone());
        assert_ne!(a, b);
    }
}

//! The trace analytics benchmark end to end on a small directory: fill, compact and merge,
//! then the four questions asked of Veritrace and of DuckDB (tools/python, installed by
//! scripts/test). `traces::run` fails when the two return different row counts, so this
//! keeps the peer's recursive CTEs and Veritrace's trace semantics in step. A missing
//! Python environment fails the test, never skips it.

use veritrace_loadtest::traces::{TracesArgs, run};

#[test]
fn every_question_has_the_same_answer_in_duckdb() {
    let python =
        veritrace_testkit::python::require_python("duckdb").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let report = run(&TracesArgs {
        data: dir.path().join("data"),
        events: 30_000,
        repeat: 1,
        cold_repeat: 2,
        python: Some(python),
        fill_only: false,
        // Veritrace's traces come from the trace index, DuckDB's from the edges files.
        no_trace_index: false,
        participant: None,
    })
    .expect("benchmark run")
    .expect("a report");
    assert!(report.events > 25_000, "{} events", report.events);
    assert!(report.edges > 0);
    assert_eq!(report.timings.len(), 4);
    for t in &report.timings {
        assert!(t.rows > 0, "{}: no rows", t.question);
        assert!(t.veritrace_cold_ms > 0.0 && t.duckdb_cold_ms > 0.0);
    }
    // GROUP BY event_type, site: the dictionary counts saw every event type and site pair
    // DuckDB saw (rows agree), and there is more than one.
    assert!(report.timings[3].rows > 1);
}

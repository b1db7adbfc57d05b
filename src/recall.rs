//! `veritrace recall CODE`: every object a raw-material lot or a part batch went into, with
//! its last known state, place and custodian; and, with `--reverse`, the question a
//! complaint asks: which lots and parts could have caused it.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use clap::Args;
use veritrace_queries::trace::Direction;
use veritrace_queries::{Format, output};

/// `veritrace recall`.
#[derive(Debug, Args)]
pub struct RecallArgs {
    /// The lot, batch or part (any accepted trace code form).
    code: String,
    /// The reverse question: what went into CODE (a product with a complaint), down to the
    /// raw-material lots that could have caused it.
    #[arg(long)]
    reverse: bool,
    /// At most this many levels.
    #[arg(long)]
    depth: Option<u32>,
    /// table, json, csv, or epcis (the events of the trace as an EPCIS 2.0 document).
    #[arg(long, default_value = "table")]
    format: String,
    /// Also write a trace certificate: every event of the trace with its proof, in one
    /// file that `veritrace verify` checks offline.
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// Data directory [config: data-dir].
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// What became of one object: its last event.
#[derive(Debug, Default, Clone)]
struct Last {
    time: String,
    event_type: String,
    event_id: String,
    site: Option<String>,
    custodian: Option<String>,
    result: Option<String>,
}

/// The state an object's last event leaves it in.
fn state(last: Option<&Last>) -> String {
    let Some(l) = last else {
        return "no events".into();
    };
    match l.event_type.as_str() {
        "production" | "assembly" | "transformation" => "made".into(),
        "disassembly" => "taken apart".into(),
        "recall" => "recalled".into(),
        "decommissioning" => "decommissioned".into(),
        "code_issued" => "issued".into(),
        "quality_check" => format!("inspected ({})", l.result.as_deref().unwrap_or("?")),
        "warehouse_in" => "in stock".into(),
        "warehouse_out" | "transport" => "in transit".into(),
        "sale" | "retail" => "sold".into(),
        "maintenance" => "in service".into(),
        "telemetry" => "in use".into(),
        other => other.into(),
    }
}

/// Runs `veritrace recall`.
pub fn run(a: RecallArgs, data: &std::path::Path) -> anyhow::Result<ExitCode> {
    let direction = if a.reverse {
        Direction::Backward
    } else {
        Direction::Forward
    };
    let epcis = a.format == "epcis";
    let format: Format = if epcis {
        Format::Json
    } else {
        a.format
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{e} (or epcis)"))?
    };
    let name = format!(
        "veritrace:recall:{}:{}",
        if a.reverse { "reverse" } else { "forward" },
        a.code
    );
    let crate::cli::Traced {
        walk,
        batches,
        epcis: doc,
    } = crate::cli::traced(
        data,
        &a.code,
        direction,
        a.depth,
        a.certificate.as_deref(),
        epcis.then_some(name.as_str()),
    )?;
    // The last event of each object.
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&output::encode(&batches, Format::Json)?)?;
    let mut last: BTreeMap<String, Last> = BTreeMap::new();
    for r in &rows {
        let (Some(node), Some(time)) = (r["trace_node"].as_str(), r["event_time"].as_str()) else {
            continue;
        };
        // Only the object's own events say where it is (an edge event of its parent is
        // listed under the parent).
        if r["trace_code"].as_str() != Some(node) {
            continue;
        }
        let event_type = r["event_type"].as_str().unwrap_or("").to_owned();
        let newer = last.get(node).is_none_or(|l| time > l.time.as_str());
        if newer {
            // Who holds it: the receiving party of a hand-over, else who recorded it.
            let custodian = match event_type.as_str() {
                "warehouse_out" | "transport" | "sale" => r["counterparty_id"]
                    .as_str()
                    .or(r["participant_id"].as_str()),
                _ => r["participant_id"].as_str(),
            };
            last.insert(
                node.to_owned(),
                Last {
                    time: time.to_owned(),
                    event_type,
                    event_id: r["event_id"].as_str().unwrap_or("").to_owned(),
                    site: r["site"].as_str().map(str::to_owned),
                    custodian: custodian.map(str::to_owned),
                    result: r["result"].as_str().map(str::to_owned),
                },
            );
        }
    }
    // End of the line: no other object was reached from it.
    let reached_from: HashSet<&str> = walk
        .nodes
        .iter()
        .filter_map(|n| n.from.as_deref())
        .collect();
    let affected: Vec<_> = walk.nodes.iter().filter(|n| n.depth > 0).collect();
    let col = |f: &dyn Fn(&veritrace_queries::trace::TraceNode) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            affected.iter().map(|n| f(n)).collect::<Vec<_>>(),
        ))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("depth", DataType::UInt32, false),
        Field::new(
            if a.reverse {
                "raw_material"
            } else {
                "end_item"
            },
            DataType::Boolean,
            false,
        ),
        Field::new("reached_from", DataType::Utf8, true),
        Field::new("via_event", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, false),
        Field::new("last_event_type", DataType::Utf8, true),
        Field::new("last_event_time", DataType::Utf8, true),
        Field::new("last_event_id", DataType::Utf8, true),
        Field::new("site", DataType::Utf8, true),
        Field::new("custodian", DataType::Utf8, true),
    ]));
    let table = RecordBatch::try_new(
        schema,
        vec![
            col(&|n| Some(n.code.clone())),
            Arc::new(UInt32Array::from(
                affected.iter().map(|n| n.depth).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                affected
                    .iter()
                    .map(|n| !reached_from.contains(n.code.as_str()))
                    .collect::<Vec<_>>(),
            )),
            col(&|n| n.from.clone()),
            col(&|n| n.via_event.clone()),
            col(&|n| Some(state(last.get(&n.code)))),
            col(&|n| last.get(&n.code).map(|l| l.event_type.clone())),
            col(&|n| last.get(&n.code).map(|l| l.time.clone())),
            col(&|n| last.get(&n.code).map(|l| l.event_id.clone())),
            col(&|n| last.get(&n.code).and_then(|l| l.site.clone())),
            col(&|n| last.get(&n.code).and_then(|l| l.custodian.clone())),
        ],
    )?;
    let out = match &doc {
        Some(d) => serde_json::to_vec_pretty(d)?,
        None => output::encode(&[table], format)?,
    };
    std::io::stdout().write_all(&out)?;
    let ends = affected
        .iter()
        .filter(|n| !reached_from.contains(n.code.as_str()))
        .count();
    eprintln!(
        "{} of {}: {} objects reached, {} {}",
        if a.reverse {
            "reverse recall"
        } else {
            "recall"
        },
        walk.root,
        affected.len(),
        ends,
        if a.reverse {
            "raw materials or parts with nothing before them"
        } else {
            "end items (nothing made from them)"
        }
    );
    if walk.depth_limited {
        eprintln!("note: stopped at --depth; the graph goes further");
    }
    for c in &walk.cycles {
        eprintln!(
            "warning: cycle in the trace graph (bad data): {}",
            c.join(" -> ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

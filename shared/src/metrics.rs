//! The metrics tidemark reports, as CloudWatch Embedded Metric Format (EMF) lines: one function
//! per event, each building ONE JSON object in namespace `tidemark` with the dimensions
//! `[pipeline, table]` and units. This module owns every metric name; steps call
//! `metrics::chunk_extracted(..).emit()` and nothing else.
//!
//! Why a line on stdout and not a `tracing` event: CloudWatch Logs extracts metrics only from a
//! log event whose top-level JSON object carries `_aws`. The JSON tracing formatter nests fields
//! under `fields` and would escape the document into a string, so CloudWatch would see no metric.
//! [`Metric::emit`] is therefore the one place in the library that writes to stdout, one whole
//! line per `write_all` under the stdout lock, so it never interleaves with a tracing line. The
//! EMF line is also the event's log line (it carries `event`, `run_id` and the values): do not log
//! the same event again.
//!
//! Where a line goes is decided once per process (see [`Sink`]): stdout inside Lambda, a tracing
//! event elsewhere (the CLI keeps stdout for its own output), or nowhere. Metrics never fail a
//! step: a write error is logged and dropped.

use std::io::{self, Write};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::naming::{RunId, TableId};

/// The CloudWatch namespace of every tidemark metric.
pub const NAMESPACE: &str = "tidemark";

/// Dimensions of every metric: which pipeline and which source table (`database.table`).
const DIMENSIONS: [&str; 2] = ["pipeline", "table"];

/// Where [`Metric::emit`] sends lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// One raw EMF line on stdout: what CloudWatch Logs turns into metrics (Lambda).
    Stdout,
    /// A `tracing` event at INFO with the document as a field (CLI and local runs).
    Log,
    /// Dropped.
    Discard,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Chooses where lines go, before the first metric is emitted. Returns the sink in effect, which
/// is not `sink` when one was already chosen (explicitly or by the first [`Metric::emit`]).
pub fn set_sink(sink: Sink) -> Sink {
    *SINK.get_or_init(|| sink)
}

/// The sink in effect: the one set with [`set_sink`], else [`Sink::Stdout`] inside AWS Lambda
/// (`AWS_LAMBDA_RUNTIME_API` is set by the Lambda service for every custom runtime) and
/// [`Sink::Log`] elsewhere.
pub fn sink() -> Sink {
    *SINK.get_or_init(|| {
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
            Sink::Stdout
        } else {
            Sink::Log
        }
    })
}

/// CloudWatch metric units used here.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Count,
    Bytes,
    Seconds,
    None,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Seconds => "Seconds",
            Unit::None => "None",
        }
    }
}

/// One EMF document, ready to emit. Build it with an event function of this module.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a metric does nothing until `.emit()`"]
pub struct Metric(Value);

impl Metric {
    /// The EMF document.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// The document with `key` set to `value` as a property: a detail of the event that is not
    /// a metric (a property adds no metric series).
    pub fn with_property(mut self, key: &str, value: impl Into<Value>) -> Metric {
        if let Value::Object(fields) = &mut self.0 {
            fields.insert(key.to_owned(), value.into());
        }
        self
    }

    /// Writes the document as one line (`\n`-terminated) with a single `write_all`.
    pub fn write_line<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let mut line = serde_json::to_vec(&self.0).map_err(io::Error::other)?;
        line.push(b'\n');
        out.write_all(&line)?;
        out.flush()
    }

    /// Sends the line to the process's [`sink`]. Never fails: a write error is logged.
    pub fn emit(&self) {
        match sink() {
            Sink::Stdout => {
                if let Err(error) = self.write_line(&mut io::stdout().lock()) {
                    tracing::warn!(%error, "could not write a metric line to stdout");
                }
            }
            Sink::Log => tracing::info!(metric = %self.0, "metric"),
            Sink::Discard => {}
        }
    }
}

/// Every metric this module emits, by name: what the template's dashboard may show
/// ([`crate::dashboard`]); a test holds it equal to what the functions below emit.
pub const EMITTED: [&str; 22] = [
    "ExtractedRows",
    "ExtractedBytes",
    "ExtractSeconds",
    "CommittedRuns",
    "CommittedRows",
    "CommittedBytes",
    "CommittedFiles",
    "DataQualityScore",
    "DataQualityFailures",
    "RunsQuarantined",
    "RowsDiffering",
    "RowsInFlight",
    "VerifySeconds",
    "LoadedRuns",
    "LoadedRows",
    "LoadSeconds",
    "ScdVersionsCreated",
    "FailedRuns",
    "LoadFallbacks",
    "LagSeconds",
    "SyncDurationSeconds",
    "FailedTables",
];

/// Builds a document: `event` names it; `metrics` are (name, unit, value) and become top-level
/// members; `properties` are extra top-level members that are not metrics (e.g. `run_id`).
/// `rollup` adds the dimension set `[pipeline]` beside `[pipeline, table]`, for alarms over all
/// of a pipeline's tables.
fn document(
    event: &str,
    pipeline: &str,
    table: &TableId,
    metrics: &[(&str, Unit, f64)],
    properties: &[(&str, Value)],
    rollup: bool,
) -> Metric {
    let timestamp_ms = chrono::Utc::now().timestamp_millis();
    let mut dimension_sets = vec![json!(DIMENSIONS)];
    if rollup {
        dimension_sets.push(json!([DIMENSIONS[0]]));
    }
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit.name() }))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": definitions,
            }],
        }),
    );
    root.insert("event".to_owned(), json!(event));
    root.insert(DIMENSIONS[0].to_owned(), json!(pipeline));
    root.insert(DIMENSIONS[1].to_owned(), json!(table.to_string()));
    for (name, value) in properties {
        root.insert((*name).to_owned(), value.clone());
    }
    for (name, _, value) in metrics {
        root.insert((*name).to_owned(), json!(value));
    }
    Metric(Value::Object(root))
}

/// Seconds with millisecond precision.
fn seconds(duration: Duration) -> f64 {
    duration.as_millis() as f64 / 1000.0
}

/// One extract invocation finished a chunk (or the part of it before the deadline):
/// `ExtractedRows`, `ExtractedBytes` (Parquet bytes written), `ExtractSeconds`.
pub fn chunk_extracted(
    pipeline: &str,
    table: &TableId,
    run_id: &RunId,
    rows: u64,
    bytes: u64,
    duration: Duration,
) -> Metric {
    document(
        "chunk_extracted",
        pipeline,
        table,
        &[
            ("ExtractedRows", Unit::Count, rows as f64),
            ("ExtractedBytes", Unit::Bytes, bytes as f64),
            ("ExtractSeconds", Unit::Seconds, seconds(duration)),
        ],
        &[("run_id", json!(run_id.as_str()))],
        false,
    )
}

/// A run's manifest was committed (extracted, pending load): `CommittedRuns` (1),
/// `CommittedRows`, `CommittedBytes`, `CommittedFiles`.
pub fn run_committed(
    pipeline: &str,
    table: &TableId,
    run_id: &RunId,
    rows: u64,
    bytes: u64,
    files: u64,
) -> Metric {
    document(
        "run_committed",
        pipeline,
        table,
        &[
            ("CommittedRuns", Unit::Count, 1.0),
            ("CommittedRows", Unit::Count, rows as f64),
            ("CommittedBytes", Unit::Bytes, bytes as f64),
            ("CommittedFiles", Unit::Count, files as f64),
        ],
        &[("run_id", json!(run_id.as_str()))],
        false,
    )
}

/// A run's data quality checks, at its commit: `DataQualityScore` (checks passed / checks
/// evaluated), `DataQualityFailures` (failing rows over every check) and `RunsQuarantined` (1
/// when a `fail` check failed), also under the dimension set `[pipeline]` alone, which the
/// template's quarantine alarm watches.
pub fn data_quality(
    pipeline: &str,
    table: &TableId,
    run_id: &RunId,
    score: f64,
    failures: u64,
    quarantined: bool,
) -> Metric {
    document(
        "data_quality",
        pipeline,
        table,
        &[
            ("DataQualityScore", Unit::None, score),
            ("DataQualityFailures", Unit::Count, failures as f64),
            (
                "RunsQuarantined",
                Unit::Count,
                f64::from(u8::from(quarantined)),
            ),
        ],
        &[("run_id", json!(run_id.as_str()))],
        true,
    )
}

/// A `verify` compared a table with its source: `RowsDiffering` (missing, gone from the source
/// or changed: what the template's alarm watches, also under `[pipeline]` alone), `RowsInFlight`
/// (changed after the last loaded run) and `VerifySeconds`.
pub fn verified(
    pipeline: &str,
    table: &TableId,
    differing: u64,
    in_flight: u64,
    duration: Duration,
) -> Metric {
    document(
        "verified",
        pipeline,
        table,
        &[
            ("RowsDiffering", Unit::Count, differing as f64),
            ("RowsInFlight", Unit::Count, in_flight as f64),
            ("VerifySeconds", Unit::Seconds, duration.as_secs_f64()),
        ],
        &[],
        true,
    )
}

/// Pending runs were loaded into the target in one transaction: `LoadedRuns`, `LoadedRows`,
/// `LoadSeconds` (submit to finish).
pub fn load_finished(
    pipeline: &str,
    table: &TableId,
    runs: u64,
    rows: u64,
    duration: Duration,
) -> Metric {
    document(
        "load_finished",
        pipeline,
        table,
        &[
            ("LoadedRuns", Unit::Count, runs as f64),
            ("LoadedRows", Unit::Count, rows as f64),
            ("LoadSeconds", Unit::Seconds, seconds(duration)),
        ],
        &[],
        false,
    )
}

/// A type-2 dimension's load created versions (the old tool's `scd_changes_detected`):
/// `ScdVersionsCreated`, also under the dimension set `[pipeline]`.
pub fn scd_versions(pipeline: &str, table: &TableId, versions: u64) -> Metric {
    document(
        "scd_versions",
        pipeline,
        table,
        &[("ScdVersionsCreated", Unit::Count, versions as f64)],
        &[],
        true,
    )
}

/// A run failed and its lease was released: `FailedRuns` (1); `error_type` is the documented
/// error name (`Retryable`, `SchemaDrift`, …), kept as a property, not a dimension, so that it
/// adds no metric series.
pub fn run_failed(
    pipeline: &str,
    table: &TableId,
    run_id: Option<&RunId>,
    error_type: &str,
) -> Metric {
    let mut properties = vec![("error_type", json!(error_type))];
    if let Some(run_id) = run_id {
        properties.push(("run_id", json!(run_id.as_str())));
    }
    document(
        "run_failed",
        pipeline,
        table,
        &[("FailedRuns", Unit::Count, 1.0)],
        &properties,
        false,
    )
}

/// A load went through the SSH tunnel because the Data API could not be reached
/// (`fallback_to_tunnel`): `LoadFallbacks` (1), also under the dimension set `[pipeline]`
/// alone, which the template's fallback alarm watches.
pub fn load_fallback(pipeline: &str, table: &TableId) -> Metric {
    document(
        "load_fallback",
        pipeline,
        table,
        &[("LoadFallbacks", Unit::Count, 1.0)],
        &[],
        true,
    )
}

/// How far the target is behind the source after a load: `LagSeconds`, also under the dimension
/// set `[pipeline]` alone, which the template's freshness alarm watches (maximum over tables).
pub fn freshness(pipeline: &str, table: &TableId, lag: Duration) -> Metric {
    document(
        "freshness",
        pipeline,
        table,
        &[("LagSeconds", Unit::Seconds, seconds(lag))],
        &[],
        true,
    )
}

/// A sync of a pipeline ended (`summarize`): `SyncDurationSeconds` from `prepare` to now and
/// `FailedTables` (failed or quarantined), under the dimension set `[pipeline]` alone, which the
/// template's dashboard shows and its per-pipeline alarm watches.
pub fn sync_finished(pipeline: &str, duration: Duration, failed_tables: u64) -> Metric {
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSIONS[0]]],
                "Metrics": [
                    { "Name": "SyncDurationSeconds", "Unit": Unit::Seconds.name() },
                    { "Name": "FailedTables", "Unit": Unit::Count.name() },
                ],
            }],
        }),
    );
    root.insert("event".to_owned(), json!("sync_finished"));
    root.insert(DIMENSIONS[0].to_owned(), json!(pipeline));
    root.insert("SyncDurationSeconds".to_owned(), json!(seconds(duration)));
    root.insert("FailedTables".to_owned(), json!(failed_tables as f64));
    Metric(Value::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names of `metric`'s directive.
    fn names(metric: &Metric) -> Vec<String> {
        metric.as_json()["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["Name"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn the_emitted_list_is_what_the_functions_emit() {
        let t = table();
        let r = run_id();
        let second = Duration::from_secs(1);
        let emitted: std::collections::BTreeSet<String> = [
            chunk_extracted("p", &t, &r, 1, 1, second),
            run_committed("p", &t, &r, 1, 1, 1),
            data_quality("p", &t, &r, 1.0, 0, true),
            verified("p", &t, 0, 0, second),
            load_finished("p", &t, 1, 1, second),
            scd_versions("p", &t, 1),
            run_failed("p", &t, Some(&r), "Retryable"),
            load_fallback("p", &t),
            freshness("p", &t, second),
            sync_finished("p", second, 1),
        ]
        .iter()
        .flat_map(names)
        .collect();
        let listed: std::collections::BTreeSet<String> =
            EMITTED.iter().map(|name| (*name).to_owned()).collect();
        assert_eq!(emitted, listed);
    }

    fn table() -> TableId {
        TableId::parse("shop.orders").unwrap()
    }

    fn run_id() -> RunId {
        RunId::new(chrono::Utc::now(), 42)
    }

    /// Writes `metric` as a line, checks it is exactly one line, and parses it back.
    fn line(metric: &Metric) -> Value {
        let mut out = Vec::new();
        metric.write_line(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n'), "a line ends with a newline: {text:?}");
        assert_eq!(text.matches('\n').count(), 1, "exactly one line: {text:?}");
        serde_json::from_str(&text).unwrap()
    }

    /// Checks the EMF rules CloudWatch applies, and returns each metric's (name, unit, value).
    fn valid_emf(doc: &Value) -> Vec<(String, String, f64)> {
        let directive = &doc["_aws"];
        let timestamp = directive["Timestamp"].as_i64().expect("Timestamp in ms");
        let now = chrono::Utc::now().timestamp_millis();
        assert!((now - 60_000..=now).contains(&timestamp), "{timestamp}");
        let sets = directive["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(sets.len(), 1);
        let set = &sets[0];
        assert_eq!(set["Namespace"], NAMESPACE);
        let dimension_sets = set["Dimensions"].as_array().unwrap();
        assert_eq!(dimension_sets[0], json!(["pipeline", "table"]));
        for dimensions in dimension_sets {
            for name in dimensions.as_array().unwrap() {
                let value = doc[name.as_str().unwrap()].as_str();
                assert!(
                    value.is_some_and(|v| !v.is_empty()),
                    "dimension {name} is a top-level non-empty string"
                );
            }
        }
        set["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let name = m["Name"].as_str().unwrap().to_owned();
                let unit = m["Unit"].as_str().unwrap().to_owned();
                let value = doc[&name].as_f64().unwrap_or_else(|| {
                    panic!("metric {name} is a top-level number in {doc}");
                });
                (name, unit, value)
            })
            .collect()
    }

    fn metric(list: &[(String, String, f64)], name: &str) -> (String, f64) {
        let (_, unit, value) = list.iter().find(|(n, _, _)| n == name).unwrap();
        (unit.clone(), *value)
    }

    #[test]
    fn chunk_extracted_reports_rows_bytes_and_seconds() {
        let run = run_id();
        let doc = line(&chunk_extracted(
            "default",
            &table(),
            &run,
            1200,
            65_536,
            Duration::from_millis(2_345),
        ));
        let metrics = valid_emf(&doc);
        assert_eq!(metrics.len(), 3);
        assert_eq!(metric(&metrics, "ExtractedRows"), ("Count".into(), 1200.0));
        assert_eq!(
            metric(&metrics, "ExtractedBytes"),
            ("Bytes".into(), 65_536.0)
        );
        assert_eq!(
            metric(&metrics, "ExtractSeconds"),
            ("Seconds".into(), 2.345)
        );
        assert_eq!(doc["pipeline"], "default");
        assert_eq!(doc["table"], "shop.orders");
        assert_eq!(doc["event"], "chunk_extracted");
        assert_eq!(doc["run_id"], run.as_str());
    }

    #[test]
    fn run_committed_counts_one_run_and_its_files() {
        let run = run_id();
        let doc = line(&run_committed("p", &table(), &run, 10, 2048, 3));
        let metrics = valid_emf(&doc);
        assert_eq!(metric(&metrics, "CommittedRuns"), ("Count".into(), 1.0));
        assert_eq!(metric(&metrics, "CommittedRows"), ("Count".into(), 10.0));
        assert_eq!(metric(&metrics, "CommittedBytes"), ("Bytes".into(), 2048.0));
        assert_eq!(metric(&metrics, "CommittedFiles"), ("Count".into(), 3.0));
        assert_eq!(doc["run_id"], run.as_str());
    }

    #[test]
    fn load_finished_reports_runs_rows_and_seconds() {
        let doc = line(&load_finished(
            "p",
            &table(),
            2,
            500,
            Duration::from_secs(90),
        ));
        let metrics = valid_emf(&doc);
        assert_eq!(metric(&metrics, "LoadedRuns"), ("Count".into(), 2.0));
        assert_eq!(metric(&metrics, "LoadedRows"), ("Count".into(), 500.0));
        assert_eq!(metric(&metrics, "LoadSeconds"), ("Seconds".into(), 90.0));
        assert_eq!(doc["event"], "load_finished");
        // Details of the event ride along as properties, not as metrics or dimensions.
        let detailed = line(
            &load_finished("p", &table(), 2, 500, Duration::from_secs(90))
                .with_property("mode", "merge")
                .with_property("rows_deleted", 3u64),
        );
        assert_eq!(valid_emf(&detailed).len(), 3);
        assert_eq!(detailed["mode"], "merge");
        assert_eq!(detailed["rows_deleted"], 3);
    }

    #[test]
    fn run_failed_keeps_the_error_type_out_of_the_dimensions() {
        let run = run_id();
        let doc = line(&run_failed("p", &table(), Some(&run), "SchemaDrift"));
        let metrics = valid_emf(&doc);
        assert_eq!(metric(&metrics, "FailedRuns"), ("Count".into(), 1.0));
        assert_eq!(doc["error_type"], "SchemaDrift");
        assert_eq!(doc["run_id"], run.as_str());
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["pipeline", "table"]])
        );
        let without_run = line(&run_failed("p", &table(), None, "Retryable"));
        assert!(without_run.get("run_id").is_none());
    }

    #[test]
    fn freshness_also_rolls_up_per_pipeline_for_the_alarm() {
        let doc = line(&freshness("default", &table(), Duration::from_secs(3_700)));
        let metrics = valid_emf(&doc);
        assert_eq!(metric(&metrics, "LagSeconds"), ("Seconds".into(), 3700.0));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["pipeline", "table"], ["pipeline"]])
        );
    }

    #[test]
    fn data_quality_reports_the_score_failures_and_a_quarantine_per_pipeline_too() {
        let run = run_id();
        let doc = line(&data_quality("p", &table(), &run, 0.75, 12, true));
        let metrics = valid_emf(&doc);
        assert_eq!(metric(&metrics, "DataQualityScore"), ("None".into(), 0.75));
        assert_eq!(
            metric(&metrics, "DataQualityFailures"),
            ("Count".into(), 12.0)
        );
        assert_eq!(metric(&metrics, "RunsQuarantined"), ("Count".into(), 1.0));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["pipeline", "table"], ["pipeline"]])
        );
        let passed = line(&data_quality("p", &table(), &run, 1.0, 0, false));
        assert_eq!(metric(&valid_emf(&passed), "RunsQuarantined").1, 0.0);
    }

    #[test]
    fn metric_names_are_unique_across_events_and_never_a_dimension() {
        let run = run_id();
        let t = table();
        let all = [
            chunk_extracted("p", &t, &run, 1, 1, Duration::ZERO),
            run_committed("p", &t, &run, 1, 1, 1),
            load_finished("p", &t, 1, 1, Duration::ZERO),
            run_failed("p", &t, Some(&run), "Retryable"),
            freshness("p", &t, Duration::ZERO),
            data_quality("p", &t, &run, 0.5, 3, true),
        ];
        let mut names = Vec::new();
        for m in &all {
            for (name, _, _) in valid_emf(&line(m)) {
                assert!(!DIMENSIONS.contains(&name.as_str()));
                assert!(!names.contains(&name), "{name} is used by two events");
                names.push(name);
            }
        }
        assert_eq!(names.len(), 15);
    }

    #[test]
    fn the_first_sink_chosen_stays() {
        // No other test emits or sets a sink (and nextest runs each test in its own process), so
        // this one chooses first.
        assert_eq!(set_sink(Sink::Discard), Sink::Discard);
        assert_eq!(set_sink(Sink::Stdout), Sink::Discard);
        assert_eq!(sink(), Sink::Discard);
        chunk_extracted("p", &table(), &run_id(), 1, 1, Duration::ZERO).emit();
    }

    #[test]
    fn names_with_quotes_and_newlines_stay_on_one_line() {
        let doc = line(&load_finished(
            "we\"ird\npipe",
            &table(),
            1,
            1,
            Duration::ZERO,
        ));
        assert_eq!(doc["pipeline"], "we\"ird\npipe");
    }
}

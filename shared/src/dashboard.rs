//! The template's CloudWatch dashboard, generated from the metrics the library emits
//! ([`crate::metrics::EMITTED`]): one widget per concern, each a `SEARCH` over the
//! `[pipeline, table]` (or `[pipeline]`) dimension set, so every pipeline and table of the
//! account appears without the template knowing them. `infra/template.yaml` holds this body; a test keeps the
//! two equal.

use serde_json::{json, Value};

/// Per pipeline and table.
const TABLES: &str = "pipeline,table";
/// Per pipeline.
const PIPELINES: &str = "pipeline";

/// A widget: its title, the dimension set searched, and its metrics, each with the statistic
/// shown.
type Widget = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The widgets, in order.
const WIDGETS: [Widget; 8] = [
    ("Rows extracted", TABLES, &[("ExtractedRows", "Sum")]),
    ("Rows loaded", TABLES, &[("LoadedRows", "Sum")]),
    (
        "Freshness: seconds behind the source",
        TABLES,
        &[("LagSeconds", "Maximum")],
    ),
    ("Failed runs", TABLES, &[("FailedRuns", "Sum")]),
    (
        "Seconds extracting and loading",
        TABLES,
        &[("ExtractSeconds", "Sum"), ("LoadSeconds", "Sum")],
    ),
    (
        "Syncs: seconds per sync, tables failed",
        PIPELINES,
        &[("SyncDurationSeconds", "Maximum"), ("FailedTables", "Sum")],
    ),
    (
        "Data quality score (checks passed)",
        TABLES,
        &[("DataQualityScore", "Minimum")],
    ),
    (
        "Rows differing from the source (verify)",
        TABLES,
        &[("RowsDiffering", "Maximum")],
    ),
];

/// Seconds per data point.
const PERIOD: u32 = 300;

/// The dashboard's body, its metric widgets in `region` (the template writes
/// `${AWS::Region}`).
pub fn body(region: &str) -> Value {
    let widgets: Vec<Value> = WIDGETS
        .iter()
        .enumerate()
        .map(|(index, (title, dimensions, metrics))| {
            let searches: Vec<Value> = metrics
                .iter()
                .enumerate()
                .map(|(at, (name, stat))| {
                    json!([{
                        "expression": format!(
                            "SEARCH('{{{},{dimensions}}} MetricName=\"{name}\"', '{stat}', {PERIOD})",
                            crate::metrics::NAMESPACE
                        ),
                        "id": format!("m{at}"),
                    }])
                })
                .collect();
            json!({
                "type": "metric",
                "x": (index % 2) * 12,
                "y": (index / 2) * 6,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "region": region,
                    "view": "timeSeries",
                    "period": PERIOD,
                    "metrics": searches,
                },
            })
        })
        .collect();
    json!({ "widgets": widgets })
}

/// The metric names the dashboard shows.
pub fn metric_names() -> Vec<&'static str> {
    WIDGETS
        .iter()
        .flat_map(|(_, _, metrics)| metrics.iter().map(|(name, _)| *name))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_widget_shows_an_emitted_metric() {
        for name in super::metric_names() {
            assert!(
                crate::metrics::EMITTED.contains(&name),
                "the dashboard shows `{name}`, which the library never emits"
            );
        }
    }
}

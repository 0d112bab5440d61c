//! The template's CloudWatch dashboard, generated from the metrics the library emits
//! ([`crate::metrics::EMITTED`]): one widget per concern, each a `SEARCH` over the
//! `[pipeline, table]` dimension set, so every pipeline and table of the account appears
//! without the template knowing them. `infra/template.yaml` holds this body; a test keeps the
//! two equal.

use serde_json::{json, Value};

/// The widgets: a title and its metrics, each with the statistic shown.
const WIDGETS: [(&str, &[(&str, &str)]); 7] = [
    ("Rows extracted", &[("ExtractedRows", "Sum")]),
    ("Rows loaded", &[("LoadedRows", "Sum")]),
    (
        "Freshness: seconds behind the source",
        &[("LagSeconds", "Maximum")],
    ),
    ("Failed runs", &[("FailedRuns", "Sum")]),
    (
        "Seconds extracting and loading",
        &[("ExtractSeconds", "Sum"), ("LoadSeconds", "Sum")],
    ),
    (
        "Data quality score (checks passed)",
        &[("DataQualityScore", "Minimum")],
    ),
    (
        "Rows differing from the source (verify)",
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
        .map(|(index, (title, metrics))| {
            let searches: Vec<Value> = metrics
                .iter()
                .enumerate()
                .map(|(at, (name, stat))| {
                    json!([{
                        "expression": format!(
                            "SEARCH('{{{},pipeline,table}} MetricName=\"{name}\"', '{stat}', {PERIOD})",
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
        .flat_map(|(_, metrics)| metrics.iter().map(|(name, _)| *name))
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

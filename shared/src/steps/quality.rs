//! The operator's data quality actions on a table: `quality_report` (each recent run's checks
//! with example keys), `quality_release` (load a quarantined run as it is) and `quality_drop`
//! (discard it and every later pending run, and extract their rows again). Served by the
//! operator function and the CLI's `tidemark quality`; both edits are audited like every other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::Requester;
use crate::error::{Error, Result};
use crate::manifest::{self, RunManifest};
use crate::naming::{RunId, StorageLayout};
use crate::quality::{CheckOutcome, Verdict};
use crate::services::Services;

use super::operator::{audited, edit, EditResult};
use super::watermark::locate_table;

/// `quality_report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityReportRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table, `db.table`.
    pub table: String,
    /// How many of the newest committed runs to show. Default 10.
    #[serde(default)]
    pub runs: Option<usize>,
}

/// `quality_release` and `quality_drop`: one run of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityRunRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table, `db.table`.
    pub table: String,
    /// The quarantined run.
    pub run_id: RunId,
}

/// Where a reported run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStanding {
    /// Held back by a failed `fail` check.
    Quarantined,
    /// Waiting for the next load (behind a quarantined run, if one is listed before it).
    Pending,
    /// In the warehouse.
    Loaded,
    /// Neither pending nor loaded: dropped (its rows extracted again later) or a run without
    /// rows.
    NotLoaded,
}

/// One run in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    /// The run.
    pub run_id: RunId,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
    /// Rows it extracted.
    pub rows: u64,
    /// Where it stands.
    pub standing: RunStanding,
    /// The checks' verdict; `None` for a run committed without checks.
    pub verdict: Option<Verdict>,
    /// Checks passed / checks evaluated.
    pub score: Option<f64>,
    /// Each check's result.
    pub checks: Vec<CheckOutcome>,
}

/// `quality_report`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityReport {
    /// Pipeline name.
    pub pipeline: String,
    /// Source table.
    pub table: String,
    /// The run holding back the table's loads, if any.
    pub quarantined_run: Option<RunId>,
    /// The newest runs, newest first.
    pub runs: Vec<RunReport>,
}

/// The runs shown when the request does not say.
const DEFAULT_REPORT_RUNS: usize = 10;

/// `quality_report`: the newest committed runs of the table with their checks.
pub async fn report(services: &Services, request: &QualityReportRequest) -> Result<QualityReport> {
    let (pipeline_name, pipeline, _, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    let bucket = services.bucket(pipeline);
    let layout = StorageLayout::new(&pipeline.s3.prefix);
    let watermark = services
        .watermarks(pipeline)
        .read(&pipeline_name, &table)
        .await?
        .map(|v| v.record);
    let prefix = layout.table_runs_prefix(&pipeline_name, &table);
    let mut run_ids: Vec<RunId> = bucket
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|object| {
            let name = object.key.strip_prefix(&prefix)?.strip_suffix(".json")?;
            (!name.contains('/')).then(|| RunId::parse(name).ok())?
        })
        .collect();
    run_ids.sort_unstable_by(|a, b| b.cmp(a));
    run_ids.truncate(request.runs.unwrap_or(DEFAULT_REPORT_RUNS).max(1));
    let mut runs = Vec::with_capacity(run_ids.len());
    for run_id in run_ids {
        let key = layout.run_manifest_key(&pipeline_name, &table, &run_id);
        let Some(object) = bucket.get(&key).await? else {
            continue;
        };
        let manifest: RunManifest = manifest::parse_json(&object.body, &bucket.uri(&key))?;
        let pending = watermark
            .as_ref()
            .and_then(|w| w.pending_runs.iter().find(|p| p.run_id == run_id));
        let loaded = watermark
            .as_ref()
            .and_then(|w| w.load.last_loaded_run_id.as_ref())
            .is_some_and(|last| run_id <= *last);
        let standing = match (pending, loaded) {
            (Some(p), _) if p.quarantine.is_some() => RunStanding::Quarantined,
            (Some(_), _) => RunStanding::Pending,
            (None, true) if manifest.rows > 0 => RunStanding::Loaded,
            _ => RunStanding::NotLoaded,
        };
        runs.push(RunReport {
            run_id,
            committed_at: manifest.committed_at,
            rows: manifest.rows,
            standing,
            verdict: manifest.quality.as_ref().map(|q| q.verdict),
            score: manifest.quality.as_ref().map(|q| q.score()),
            checks: manifest.quality.map(|q| q.checks).unwrap_or_default(),
        });
    }
    Ok(QualityReport {
        pipeline: pipeline_name,
        table: table.to_string(),
        quarantined_run: watermark
            .as_ref()
            .and_then(|w| w.first_quarantined())
            .map(|run| run.run_id.clone()),
        runs,
    })
}

/// A quality decision must say why: it is the one record of why rows that failed a check are
/// in the warehouse, or were extracted again.
fn require_reason(requester: &Requester, action: &str) -> Result<()> {
    match requester.reason.as_deref().map(str::trim) {
        Some(reason) if !reason.is_empty() => Ok(()),
        _ => Err(Error::InvalidRequest(format!(
            "`{action}` needs a reason (`--reason`, or `\"reason\"` in the payload): it is recorded with who and when in the table's watermark history and audit record"
        ))),
    }
}

/// `quality_release`: the quarantined run loads as it is, in its place, with the next load.
/// No lease is needed: it only lifts the hold, and a load running now takes the runs before it.
pub async fn release(
    services: &Services,
    request: &QualityRunRequest,
    requester: &Requester,
) -> Result<EditResult> {
    let (pipeline, table) = (request.pipeline.as_deref(), request.table.as_str());
    audited(
        services,
        requester,
        "quality_release",
        pipeline,
        table,
        request,
        async {
            require_reason(requester, "quality release")?;
            edit(
                services,
                requester,
                "quality_release",
                pipeline,
                table,
                |w| w.release_quarantine(&request.run_id),
            )
            .await
        },
    )
    .await
}

/// `quality_drop`: the quarantined run and every later pending run are discarded, and the
/// cursor moves back to where the quarantined run began, so the next sync extracts their rows
/// again (after the source is fixed). Refused while a run holds the table's lease.
pub async fn drop_run(
    services: &Services,
    request: &QualityRunRequest,
    requester: &Requester,
) -> Result<EditResult> {
    let (pipeline, table) = (request.pipeline.as_deref(), request.table.as_str());
    audited(
        services,
        requester,
        "quality_drop",
        pipeline,
        table,
        request,
        async {
            require_reason(requester, "quality drop")?;
            let (pipeline_name, pipeline_config, _, table_id) =
                locate_table(services, pipeline, table)?;
            let watermark = services
                .watermarks(pipeline_config)
                .read(&pipeline_name, &table_id)
                .await?
                .map(|v| v.record)
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "`{table}` has never been synced: there is no run to drop"
                    ))
                })?;
            let key = watermark
                .quarantined_run(&request.run_id)?
                .manifest_key
                .clone();
            let bucket = services.bucket(pipeline_config);
            let manifest: RunManifest = match bucket.get(&key).await? {
                Some(object) => manifest::parse_json(&object.body, &bucket.uri(&key))?,
                None => {
                    return Err(Error::Corrupt {
                        uri: bucket.uri(&key),
                        reason: format!(
                            "the manifest of quarantined run `{}` is missing",
                            request.run_id
                        ),
                        fix: "restore it from S3 versioning: without it the cursor cannot be moved back to where the run began".to_owned(),
                    })
                }
            };
            let now = Utc::now();
            edit(services, requester, "quality_drop", pipeline, table, |w| {
                w.drop_quarantined(&request.run_id, manifest.start_cursor.clone(), now)
            })
            .await
        },
    )
    .await
}

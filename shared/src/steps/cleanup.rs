//! The cleanup step, the scheduled `tidemark-cleanup` function: which tables a cleanup covers,
//! and each one's retention run by [`crate::clean`]'s rules, table by table.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::clean::{execute, list, plan_clean, CleanOptions, CleanReport, KeyFailure, RunStatus};
use crate::config::HumanDuration;
use crate::error::{Error, Result};
use crate::naming::TableId;

use crate::services::Services;

/// The `tidemark-cleanup` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    /// Only this pipeline. Default: every pipeline.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Only these tables (`db.table`). Default: every table of the selected pipelines.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Only runs whose newest object is at least this old, e.g. `7d`. Required: retention is
    /// always stated, never implied.
    pub older_than: HumanDuration,
    /// Also delete orphaned and abandoned runs older than the 24h safety age.
    #[serde(default)]
    pub orphans: bool,
    /// Plan and report, delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// One table's part of a cleanup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableCleanup {
    /// Pipeline.
    pub pipeline: String,
    /// Source table.
    pub table: String,
    /// Runs by status, before the clean.
    pub runs: BTreeMap<RunStatus, u64>,
    /// Objects the plan deletes.
    pub planned_objects: u64,
    /// Bytes the plan frees.
    pub planned_bytes: u64,
    /// Objects deleted (0 on a dry run).
    pub deleted_objects: u64,
    /// Bytes freed (0 on a dry run).
    pub bytes_freed: u64,
    /// Keys S3 refused to delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<KeyFailure>,
}

/// The `tidemark-cleanup` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupResult {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Per table, in pipeline then table order.
    pub tables: Vec<TableCleanup>,
    /// Objects deleted in all tables.
    pub deleted_objects: u64,
    /// Bytes freed in all tables.
    pub bytes_freed: u64,
}

/// The tables a cleanup covers: `(pipeline, table)` in config order. Unknown names are errors,
/// so a typo never silently cleans nothing.
pub fn select_tables(
    config: &crate::config::Config,
    pipeline: Option<&str>,
    tables: Option<&[String]>,
) -> Result<Vec<(String, String)>> {
    if let Some(name) = pipeline {
        config.pipeline(name)?;
    }
    let qualified = tables
        .map(|names| {
            names
                .iter()
                .map(|name| config.qualify_table(pipeline, name))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let tables = qualified.as_deref();
    let selected: Vec<(String, String)> = config
        .pipelines
        .iter()
        .filter(|(name, _)| pipeline.is_none_or(|wanted| wanted == name.as_str()))
        .flat_map(|(name, p)| p.tables.keys().map(move |t| (name.clone(), t.clone())))
        .filter(|(_, t)| tables.is_none_or(|wanted| wanted.contains(t)))
        .collect();
    for wanted in tables.unwrap_or_default() {
        if !selected.iter().any(|(_, t)| t == wanted) {
            return Err(Error::InvalidRequest(format!(
                "table `{wanted}` is in no selected pipeline; `tidemark config list` shows the tables"
            )));
        }
    }
    Ok(selected)
}

/// Runs a cleanup request table by table: list, plan, and (unless a dry run) execute. A table
/// that fails stops nothing else; the first failure is returned once every table was tried.
pub async fn cleanup(services: &Services, request: &CleanupRequest) -> Result<CleanupResult> {
    let selected = select_tables(
        &services.config,
        request.pipeline.as_deref(),
        request.tables.as_deref(),
    )?;
    let mut result = CleanupResult {
        dry_run: request.dry_run,
        tables: Vec::new(),
        deleted_objects: 0,
        bytes_freed: 0,
    };
    let mut first_error = None;
    for (pipeline_name, table) in selected {
        let options = CleanOptions {
            older_than: Some(request.older_than.0),
            orphans: request.orphans,
            ..CleanOptions::new(Utc::now())
        };
        match clean_table(services, &pipeline_name, &table, &options, request.dry_run).await {
            Ok(done) => {
                result.deleted_objects += done.deleted_objects;
                result.bytes_freed += done.bytes_freed;
                result.tables.push(done);
            }
            Err(err) => {
                tracing::error!(pipeline = %pipeline_name, table = %table, error = %err, "s3clean failed");
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(result),
    }
}

async fn clean_table(
    services: &Services,
    pipeline_name: &str,
    table: &str,
    options: &CleanOptions,
    dry_run: bool,
) -> Result<TableCleanup> {
    let pipeline = services.config.pipeline(pipeline_name)?;
    let table_id = TableId::parse(table)?;
    let store = services.watermarks(pipeline);
    let listing = list(&store, pipeline_name, &table_id, options.now).await?;
    let plan = plan_clean(&listing, options);
    let report = if dry_run || plan.is_empty() {
        CleanReport::default()
    } else {
        execute(&store, &plan).await?
    };
    Ok(TableCleanup {
        pipeline: pipeline_name.to_owned(),
        table: table.to_owned(),
        runs: listing
            .by_status
            .iter()
            .map(|(status, tally)| (*status, tally.runs))
            .collect(),
        planned_objects: plan.objects,
        planned_bytes: plan.bytes,
        deleted_objects: report.deleted_objects,
        bytes_freed: report.bytes_freed,
        failures: report.failures,
    })
}

/// Parses a cleanup payload, with an error that says what is accepted.
pub fn parse_request(payload: serde_json::Value) -> Result<CleanupRequest> {
    serde_json::from_value(payload).map_err(|err| {
        Error::InvalidRequest(format!(
            "invalid cleanup payload: {err}; fields are pipeline, tables, older_than (required, e.g. `7d`), orphans, dry_run (README: s3clean)"
        ))
    })
}

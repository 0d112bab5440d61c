//! The two steps around a sync's tables: `prepare` checks the state machine's input against the
//! configuration and lists the tables to run; `summarize` counts their outcomes and words the
//! failures. Served by the watermark function (see [`super::watermark`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::naming::{RunId, TableId};
use crate::run::SyncMode;
use crate::watermark::LoadedRun;

use super::watermark::describe_error;
use crate::services::Services;

/// `prepare`: the execution input, as given by a schedule, the console or the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareRequest {
    /// `{"pipeline": …, "tables": […] (optional), "mode": … (optional), "limit": … (optional)}`.
    pub input: SyncInput,
}

/// The state machine's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncInput {
    /// Pipeline name.
    pub pipeline: String,
    /// Tables to sync (`db.table`); absent or null: every table of the pipeline.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// `full` (default), `backup_only` or `redshift_only`.
    #[serde(default)]
    pub mode: SyncMode,
    /// Run-wide cap on extracted rows per table.
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `prepare`'s answer: the Map's items and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncPlan {
    /// Pipeline name.
    pub pipeline: String,
    /// Tables to sync, in configuration order.
    pub tables: Vec<String>,
    /// Which stages run.
    pub mode: SyncMode,
    /// Row cap per table.
    pub limit: Option<u64>,
    /// Tables at once.
    pub table_concurrency: u32,
    /// Chunks of one table at once.
    pub chunk_concurrency: u32,
}

/// One table's outcome, as the state machine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOutcome {
    /// Source table.
    pub table: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// The run, when `begin` got that far.
    #[serde(default)]
    pub run_id: Option<RunId>,
    /// Rows extracted by this run.
    #[serde(default)]
    pub rows_extracted: u64,
    /// Files written.
    #[serde(default)]
    pub files: u64,
    /// Bytes written.
    #[serde(default)]
    pub bytes: u64,
    /// Runs loaded, with rows.
    #[serde(default)]
    pub loaded: Vec<LoadedRun>,
    /// The caught error (`{"Error": …, "Cause": …}`), when failed.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

/// `summarize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummarizeRequest {
    /// Pipeline name.
    pub pipeline: String,
    /// Per-table outcomes from the Map.
    pub results: Vec<TableOutcome>,
}

/// `summarize`'s answer and the execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Tables that succeeded.
    pub succeeded: u64,
    /// Tables that failed.
    pub failed: u64,
    /// One line per failed table, or `all N tables synced`.
    pub message: String,
    /// Every table's outcome.
    pub tables: Vec<TableOutcome>,
}

/// `prepare`: checks the input against the configuration and lists the tables to run.
pub fn prepare(services: &Services, request: &PrepareRequest) -> Result<SyncPlan> {
    let input = &request.input;
    let pipeline = services.config.pipeline(&input.pipeline)?;
    let tables = match &input.tables {
        None => pipeline.tables.keys().cloned().collect(),
        Some(tables) if tables.is_empty() => {
            return Err(Error::InvalidRequest(
                "`tables` is empty; leave it out to sync every table of the pipeline".to_owned(),
            ))
        }
        Some(tables) => {
            for table in tables {
                TableId::parse(table)?;
                if !pipeline.tables.contains_key(table) {
                    return Err(Error::InvalidRequest(format!(
                        "table `{table}` is not in pipeline `{}`; its tables are: {}",
                        input.pipeline,
                        pipeline
                            .tables
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
            tables.clone()
        }
    };
    if input.limit == Some(0) {
        return Err(Error::InvalidRequest(
            "`limit` must be at least 1".to_owned(),
        ));
    }
    Ok(SyncPlan {
        pipeline: input.pipeline.clone(),
        tables,
        mode: input.mode,
        limit: input.limit,
        table_concurrency: pipeline.table_concurrency,
        chunk_concurrency: pipeline.chunk_concurrency,
    })
}

/// `summarize`: counts outcomes and words the failures (the execution fails if any table did).
pub fn summarize(request: &SummarizeRequest) -> SyncSummary {
    let failed: Vec<&TableOutcome> = request
        .results
        .iter()
        .filter(|outcome| outcome.status != "succeeded")
        .collect();
    let message = if failed.is_empty() {
        format!("all {} tables synced", request.results.len())
    } else {
        failed
            .iter()
            .map(|outcome| {
                format!(
                    "{} failed: {}",
                    outcome.table,
                    outcome
                        .error
                        .as_ref()
                        .map(describe_error)
                        .unwrap_or_else(|| "unknown error".to_owned())
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    SyncSummary {
        pipeline: request.pipeline.clone(),
        succeeded: (request.results.len() - failed.len()) as u64,
        failed: failed.len() as u64,
        message,
        tables: request.results.clone(),
    }
}

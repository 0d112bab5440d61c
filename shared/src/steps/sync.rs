//! The steps around a sync's tables: `prepare` checks the state machine's input against the
//! configuration and lists the tables to run; `record_outcome` keeps each table's outcome in S3;
//! `summarize` reads them, counts them and words the failures. Served by the watermark function
//! (see [`super::watermark`]).

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::naming::{RunId, StorageLayout, TableId};
use crate::run::SyncMode;
use crate::storage::Bucket;
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
    /// Tables to sync (`db.table`, or a bare table name that names one table of the pipeline);
    /// absent or null: every table of the pipeline.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// `full` (default), `backup_only` or `redshift_only`.
    #[serde(default)]
    pub mode: SyncMode,
    /// Run-wide cap on extracted rows per table.
    #[serde(default)]
    pub limit: Option<u64>,
    /// A repair run of the one table named (`tidemark verify --repair`) instead of a sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<crate::run::RepairRun>,
}

/// `prepare`'s answer: the Map's items and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncPlan {
    /// Pipeline name.
    pub pipeline: String,
    /// Tables to sync, in configuration order.
    pub tables: Vec<String>,
    /// The tables in waves (`depends_on`): the first wave's items for the Map, and the waves after
    /// it, which the state machine takes one at a time.
    pub wave: Wave,
    /// Which stages run.
    pub mode: SyncMode,
    /// Row cap per table.
    pub limit: Option<u64>,
    /// The repair run's keys, or null (always present: the Map's items read `$.repair`).
    #[serde(default)]
    pub repair: Option<crate::run::RepairRun>,
    /// Tables at once.
    pub table_concurrency: u32,
    /// Chunks of one table at once.
    pub chunk_concurrency: u32,
    /// When `prepare` ran: `summarize` measures the sync's duration from it.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// The tables that sync together, after every table of the waves before them; `rest` is the next
/// wave (a list the state machine walks with a Pass state and a Choice, no task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// The Map's items: each table of the wave.
    pub items: Vec<SyncItem>,
    /// The next wave; absent after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<Box<Wave>>,
}

/// One item of the sync's Map: a table to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncItem {
    /// Source table, `db.table`.
    pub table: String,
    /// The table has `verify: { every }`: its child enters `VerifyIfDue` after a load (so that
    /// only those tables enter it: a table without costs no state and no invocation for it).
    pub verify: bool,
    /// Its `depends_on` tables that this sync ran in earlier waves: `begin` skips the table unless
    /// each succeeded.
    #[serde(default)]
    pub after: Vec<String>,
}

/// One table's outcome, as the state machine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOutcome {
    /// Source table.
    pub table: String,
    /// `succeeded`, `failed`, `quarantined` (a run of the table failed a `fail` data quality
    /// check: it and every later run wait for an operator), or `skipped` (a table of its
    /// `depends_on` did not succeed in this sync).
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
    /// What the `VerifyIfDue` state did, after a load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<crate::verify::VerifyOutcome>,
    /// The caught error of `VerifyIfDue`: the table's rows are loaded, its verify failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_error: Option<serde_json::Value>,
}

/// `record_outcome`: the last state of a table's child execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordOutcomeRequest {
    /// Pipeline name.
    pub pipeline: String,
    /// The sync execution (`$$.Execution.Id` of the parent).
    pub execution: String,
    /// The table's outcome.
    pub outcome: TableOutcome,
}

/// `record_outcome`'s answer: all a table passes back to the Map, so that the Map's result stays
/// small for any number of tables (a state's output is at most 256 KiB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableStatus {
    /// Source table.
    pub table: String,
    /// `succeeded`, `failed`, `quarantined` or `skipped`.
    pub status: String,
}

/// `summarize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummarizeRequest {
    /// Pipeline name.
    pub pipeline: String,
    /// The sync execution (`$$.Execution.Id`).
    pub execution: String,
    /// The tables the execution ran (`prepare`'s list).
    pub tables: Vec<String>,
    /// When `prepare` ran (`SyncDurationSeconds` is measured from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `summarize`'s answer and the execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Tables that succeeded.
    pub succeeded: u64,
    /// Tables that failed, quarantined ones included.
    pub failed: u64,
    /// Of the failed tables, those held back by a quarantined run (data quality).
    #[serde(default)]
    pub quarantined: u64,
    /// Of the failed tables, those not run because a table of their `depends_on` did not
    /// succeed in this sync.
    #[serde(default)]
    pub skipped: u64,
    /// One line per failed table (the first [`MESSAGE_FAILURES`]), or `all N tables synced`.
    pub message: String,
    /// The tables' outcomes: every one while they fit [`SUMMARY_TABLES_BYTES`], else the failed
    /// ones that fit (the execution's output is at most 256 KiB).
    pub tables: Vec<TableOutcome>,
    /// Outcomes left out of `tables`; the report holds them all.
    #[serde(default)]
    pub omitted: u64,
    /// Where the full summary is (`s3://…`), when it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// The status of a table held back by a quarantined run.
pub const QUARANTINED: &str = "quarantined";

/// The status of a table not run because a table it depends on did not succeed.
pub const SKIPPED: &str = "skipped";

/// Failed tables named in the message.
pub const MESSAGE_FAILURES: usize = 20;

/// Bytes of outcomes a summary carries inline.
pub const SUMMARY_TABLES_BYTES: usize = 128 * 1024;

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
            let tables = tables
                .iter()
                .map(|table| services.config.qualify_table(Some(&input.pipeline), table))
                .collect::<Result<Vec<_>>>()?;
            for table in &tables {
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
            tables
        }
    };
    if input.limit == Some(0) {
        return Err(Error::InvalidRequest(
            "`limit` must be at least 1".to_owned(),
        ));
    }
    if input.repair.is_some()
        && (tables.len() != 1 || input.mode != SyncMode::Full || input.limit.is_some())
    {
        return Err(Error::InvalidRequest(
            "`repair` runs for exactly one table (`tables`), in mode `full`, without `limit`"
                .to_owned(),
        ));
    }
    let waves = crate::dependencies::of_pipeline(pipeline, &tables);
    let wave = waves
        .into_iter()
        .rev()
        .fold(None, |rest, wave| {
            Some(Wave {
                items: wave
                    .into_iter()
                    .map(|ordered| SyncItem {
                        verify: pipeline
                            .tables
                            .get(&ordered.table)
                            .is_some_and(|config| config.verify.is_some()),
                        table: ordered.table,
                        after: ordered.after,
                    })
                    .collect(),
                rest: rest.map(Box::new),
            })
        })
        .ok_or_else(|| Error::internal("a sync of no tables"))?;
    Ok(SyncPlan {
        pipeline: input.pipeline.clone(),
        tables,
        wave,
        mode: input.mode,
        limit: input.limit,
        repair: input.repair.clone(),
        table_concurrency: pipeline.table_concurrency,
        chunk_concurrency: pipeline.chunk_concurrency,
        started_at: chrono::Utc::now(),
    })
}

/// `record_outcome`: writes the table's outcome where `summarize` reads it.
pub async fn record_outcome(
    services: &Services,
    request: &RecordOutcomeRequest,
) -> Result<TableStatus> {
    let pipeline = services.config.pipeline(&request.pipeline)?;
    let table = TableId::parse(&request.outcome.table)?;
    let layout = StorageLayout::new(&pipeline.s3.prefix);
    let key = layout.execution_outcome_key(&request.pipeline, &request.execution, &table);
    let mut outcome = request.outcome.clone();
    if outcome.status == "succeeded" {
        let held = services
            .watermarks(pipeline)
            .read(&request.pipeline, &table)
            .await?
            .and_then(|v| v.record.first_quarantined().cloned());
        if let Some(run) = held {
            outcome.status = QUARANTINED.to_owned();
            outcome.error = Some(serde_json::json!({
                "Error": "Quarantined",
                "Cause": format!(
                    "run `{}` failed data quality checks ({}); it and every later run of the table are held back from the warehouse: see `tidemark quality report -t {table}`, then `tidemark quality release` or `tidemark quality drop`",
                    run.run_id,
                    run.quarantine.map(|q| q.failed_checks.join(", ")).unwrap_or_default()
                ),
            }));
        }
    }
    let body = serde_json::to_vec(&outcome)
        .map_err(|err| Error::internal(format!("cannot encode an outcome: {err}")))?;
    services.bucket(pipeline).put(&key, body.into()).await?;
    Ok(TableStatus {
        table: outcome.table,
        status: outcome.status,
    })
}

/// `summarize`: reads every table's recorded outcome (a table without one failed: its child
/// execution ended before recording it), writes the full summary next to them and answers it,
/// bounded (see [`SyncSummary`]). The execution fails if any table did.
pub async fn summarize(services: &Services, request: &SummarizeRequest) -> Result<SyncSummary> {
    let pipeline = services.config.pipeline(&request.pipeline)?;
    let layout = StorageLayout::new(&pipeline.s3.prefix);
    let bucket = services.bucket(pipeline);
    // Collected first: a lazily mapped iterator here trips rustc's `Send` check of the handler's
    // future (the higher-ranked closure lifetime of rust-lang/rust#102211).
    let reads: Vec<_> = request
        .tables
        .iter()
        .map(|table| read_outcome(&bucket, &layout, request, table))
        .collect();
    let outcomes: Vec<TableOutcome> = stream::iter(reads)
        .buffered(OUTCOME_READS_AT_ONCE)
        .try_collect()
        .await?;
    let full = summarize_outcomes(&request.pipeline, outcomes);
    if let Some(started_at) = request.started_at {
        let duration = (chrono::Utc::now() - started_at)
            .to_std()
            .unwrap_or_default();
        crate::metrics::sync_finished(&request.pipeline, duration, full.failed).emit();
    }
    let key = layout.execution_summary_key(&request.pipeline, &request.execution);
    let body = serde_json::to_vec_pretty(&full)
        .map_err(|err| Error::internal(format!("cannot encode a summary: {err}")))?;
    bucket.put(&key, body.into()).await?;
    Ok(bounded(full, bucket.uri(&key)))
}

/// The outcome `table` recorded in the request's execution, or a failure that says it recorded
/// none.
async fn read_outcome(
    bucket: &Bucket,
    layout: &StorageLayout,
    request: &SummarizeRequest,
    table: &str,
) -> Result<TableOutcome> {
    let recorded =
        recorded_outcome(bucket, layout, &request.pipeline, &request.execution, table).await?;
    Ok(recorded.unwrap_or_else(|| TableOutcome {
        table: table.to_owned(),
        status: "failed".to_owned(),
        run_id: None,
        rows_extracted: 0,
        files: 0,
        bytes: 0,
        loaded: Vec::new(),
        error: Some(serde_json::json!({
            "Error": "NoOutcome",
            "Cause": "the table's child execution ended without recording an outcome (see the execution's Map Run); its lease is released when the execution ends, or by `tidemark unlock`",
        })),
        verify: None,
        verify_error: None,
    }))
}

/// The outcome `table` recorded in `execution` (`record_outcome`), if it recorded one.
async fn recorded_outcome(
    bucket: &Bucket,
    layout: &StorageLayout,
    pipeline: &str,
    execution: &str,
    table: &str,
) -> Result<Option<TableOutcome>> {
    let key = layout.execution_outcome_key(pipeline, execution, &TableId::parse(table)?);
    match bucket.get(&key).await? {
        Some(object) => Ok(Some(crate::manifest::parse_json(
            &object.body,
            &bucket.uri(&key),
        )?)),
        None => Ok(None),
    }
}

/// Whether every table in `after` succeeded in `execution` (each recorded its outcome before
/// this table's wave began): `begin`'s first check, so that a table whose dependency failed,
/// was quarantined or was skipped is skipped too, before it takes its lease.
pub async fn check_dependencies(
    services: &Services,
    pipeline_name: &str,
    pipeline: &crate::config::Pipeline,
    execution: Option<&str>,
    after: &[String],
) -> Result<()> {
    if after.is_empty() {
        return Ok(());
    }
    let execution = execution.ok_or_else(|| {
        Error::InvalidRequest(
            "`after` names tables of this sync, so `execution` (the sync's `$$.Execution.Id`) is needed to read their outcomes".to_owned(),
        )
    })?;
    let layout = StorageLayout::new(&pipeline.s3.prefix);
    let bucket = services.bucket(pipeline);
    for dependency in after {
        let recorded =
            recorded_outcome(&bucket, &layout, pipeline_name, execution, dependency).await?;
        let what = match recorded {
            None => "recorded no outcome".to_owned(),
            Some(outcome) => match outcome.status.as_str() {
                "succeeded" => continue,
                "failed" => "failed".to_owned(),
                other => format!("was {other}"),
            },
        };
        return Err(Error::DependencyNotSynced {
            dependency: dependency.clone(),
            what,
        });
    }
    Ok(())
}

/// Outcomes `summarize` reads at once.
const OUTCOME_READS_AT_ONCE: usize = 32;

/// Counts outcomes and words the failures.
pub fn summarize_outcomes(pipeline: &str, outcomes: Vec<TableOutcome>) -> SyncSummary {
    let failed: Vec<&TableOutcome> = outcomes
        .iter()
        .filter(|outcome| outcome.status != "succeeded")
        .collect();
    let message = if failed.is_empty() {
        format!("all {} tables synced", outcomes.len())
    } else {
        let mut lines: Vec<String> = failed
            .iter()
            .take(MESSAGE_FAILURES)
            .map(|outcome| {
                format!(
                    "{} {}: {}",
                    outcome.table,
                    outcome.status,
                    outcome
                        .error
                        .as_ref()
                        .map(describe_error)
                        .unwrap_or_else(|| "unknown error".to_owned())
                )
            })
            .collect();
        if failed.len() > MESSAGE_FAILURES {
            lines.push(format!(
                "and {} more failed tables (see the report)",
                failed.len() - MESSAGE_FAILURES
            ));
        }
        lines.join("; ")
    };
    SyncSummary {
        pipeline: pipeline.to_owned(),
        succeeded: (outcomes.len() - failed.len()) as u64,
        failed: failed.len() as u64,
        quarantined: failed
            .iter()
            .filter(|outcome| outcome.status == QUARANTINED)
            .count() as u64,
        skipped: failed
            .iter()
            .filter(|outcome| outcome.status == SKIPPED)
            .count() as u64,
        message,
        tables: outcomes,
        omitted: 0,
        report: None,
    }
}

/// `summary` as an execution may output it: every outcome while they fit
/// [`SUMMARY_TABLES_BYTES`], else the failed ones that fit, the rest counted in `omitted`.
fn bounded(mut summary: SyncSummary, report: String) -> SyncSummary {
    let sizes: Vec<usize> = summary
        .tables
        .iter()
        .map(|outcome| serde_json::to_vec(outcome).map_or(0, |text| text.len()))
        .collect();
    if sizes.iter().sum::<usize>() > SUMMARY_TABLES_BYTES {
        let all = summary.tables.len();
        let mut budget = SUMMARY_TABLES_BYTES;
        let mut sizes = sizes.into_iter();
        summary.tables.retain(|outcome| {
            let bytes = sizes.next().unwrap_or(usize::MAX);
            let keep = outcome.status != "succeeded" && bytes <= budget;
            if keep {
                budget -= bytes;
            }
            keep
        });
        summary.omitted = (all - summary.tables.len()) as u64;
    }
    summary.report = Some(report);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(n: usize, failed: bool) -> TableOutcome {
        TableOutcome {
            table: format!("warehouse_db.table_{n:05}"),
            status: if failed { "failed" } else { "succeeded" }.to_owned(),
            run_id: None,
            rows_extracted: 123_456,
            files: 3,
            bytes: 12_345_678,
            loaded: Vec::new(),
            error: failed.then(|| serde_json::json!({"Error": "LeaseHeld", "Cause": "locked"})),
            verify: None,
            verify_error: None,
        }
    }

    #[test]
    fn a_small_summary_keeps_every_outcome() {
        let outcomes: Vec<_> = (0..3).map(|n| outcome(n, n == 1)).collect();
        let summary = bounded(summarize_outcomes("p", outcomes.clone()), "s3://b/k".into());
        assert_eq!(summary.tables, outcomes);
        assert_eq!(
            (summary.succeeded, summary.failed, summary.omitted),
            (2, 1, 0)
        );
        assert_eq!(summary.report.as_deref(), Some("s3://b/k"));
    }

    /// Two thousand tables: the answer keeps the failed ones, counts the rest, names the first
    /// 20 failures, and fits an execution's 256 KiB output.
    #[test]
    fn a_large_summary_keeps_the_failed_outcomes_and_fits_an_execution_output() {
        let outcomes: Vec<_> = (0..2000).map(|n| outcome(n, n % 40 == 0)).collect();
        let summary = bounded(summarize_outcomes("p", outcomes), "s3://b/k".into());
        assert_eq!((summary.succeeded, summary.failed), (1950, 50));
        assert_eq!(summary.tables.len(), 50);
        assert!(summary.tables.iter().all(|t| t.status == "failed"));
        assert_eq!(summary.omitted, 1950);
        assert_eq!(
            summary.message.matches(" failed: ").count(),
            MESSAGE_FAILURES
        );
        assert!(summary
            .message
            .ends_with("and 30 more failed tables (see the report)"));
        let bytes = serde_json::to_vec(&summary).unwrap().len();
        assert!(bytes < crate::asl::PAYLOAD_QUOTA_BYTES, "{bytes}");
    }
}

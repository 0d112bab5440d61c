//! `tidemark sync`: one sync execution of a pipeline's tables — in process through the local
//! runner (default), or by starting the deployed state machine (`--aws`).

use std::path::Path;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};
use tidemark::asl::{Outcome, RunnerOptions};
use tidemark::run::SyncMode;
use tidemark::services::Services;
use tidemark::steps::sync::{SyncSummary, TableOutcome};
use tidemark::steps::watermark::locate_table;
use tidemark::steps::{local_sync, preview};

use crate::output::emit;
use crate::progress::{Display, SyncProgress};
use crate::Failure;

#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// Table to sync, `database.table` (repeatable). Default: every table of the pipeline.
    #[arg(short = 't', long = "table")]
    tables: Vec<String>,
    /// Pipeline. Default: the one pipeline that holds the tables (or the only pipeline).
    #[arg(short = 'p', long = "pipeline")]
    pipeline: Option<String>,
    /// Extract and commit only; the runs stay pending until a later sync loads them.
    #[arg(long, conflicts_with = "redshift_only")]
    backup_only: bool,
    /// Only load the runs already extracted (pending).
    #[arg(long)]
    redshift_only: bool,
    /// Extract at most N rows per table in this run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Show what would run and change nothing: per table the strategy, cursor, ceiling, an
    /// estimate of the rows, the first source query, pending runs, the target and its load SQL.
    #[arg(long)]
    dry_run: bool,
    /// Run the state machine in this process (default).
    #[arg(long, conflicts_with = "aws")]
    local: bool,
    /// Start an execution of the deployed state machine (`TIDEMARK_STATE_MACHINE_ARN`).
    #[arg(long)]
    aws: bool,
    /// In process: extractions at once, whatever table and chunk concurrency (each holds its
    /// own buffers, so this bounds memory).
    #[arg(long, default_value_t = local_sync::EXTRACTS_AT_ONCE, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..=64), usize::from), conflicts_with = "aws")]
    local_extracts: usize,
}

impl SyncArgs {
    fn sync_mode(&self) -> SyncMode {
        match (self.backup_only, self.redshift_only) {
            (true, _) => SyncMode::BackupOnly,
            (_, true) => SyncMode::RedshiftOnly,
            _ => SyncMode::Full,
        }
    }
}

/// The pipeline the tables belong to: `-p`, else the one pipeline holding them all.
fn resolve_pipeline(services: &Services, args: &SyncArgs) -> Result<String, Failure> {
    if let Some(pipeline) = &args.pipeline {
        services.config.pipeline(pipeline)?;
        return Ok(pipeline.clone());
    }
    let mut found: Option<String> = None;
    for table in &args.tables {
        let (name, ..) = locate_table(services, None, table)?;
        if found.as_ref().is_some_and(|other| *other != name) {
            return Err(Failure::config(anyhow::anyhow!(
                "the tables belong to different pipelines (`{}` and `{name}`); sync one pipeline at a time with `-p`",
                found.unwrap_or_default()
            )));
        }
        found = Some(name);
    }
    match found {
        Some(name) => Ok(name),
        None if services.config.pipelines.len() == 1 => Ok(services
            .config
            .pipelines
            .keys()
            .next()
            .cloned()
            .unwrap_or_default()),
        None => {
            Err(Failure::config(anyhow::anyhow!(
            "several pipelines are configured ({}); name one with `-p` or name tables with `-t`",
            services.config.pipelines.keys().cloned().collect::<Vec<_>>().join(", ")
        )))
        }
    }
}

pub(crate) async fn run(
    args: &SyncArgs,
    config: &Path,
    json_output: bool,
    display: Display,
) -> Result<(), Failure> {
    let services = crate::services(config).await?;
    let pipeline = resolve_pipeline(&services, args)?;
    // Bare names (the old tool's `-t orders`) become `database.table` here, once.
    let tables = args
        .tables
        .iter()
        .map(|table| services.config.qualify_table(Some(&pipeline), table))
        .collect::<tidemark::Result<Vec<_>>>()?;
    let mut input = json!({"pipeline": pipeline, "mode": args.sync_mode(), "limit": args.limit});
    if !tables.is_empty() {
        input["tables"] = json!(tables);
    }
    if args.dry_run {
        return dry_run(&services, &pipeline, &tables, args, json_output).await;
    }
    let started = std::time::Instant::now();
    let (execution, outcome, summary) = if args.aws {
        aws::run(&input, display).await?
    } else {
        let name = format!("local-{}", std::process::id());
        if display != Display::Off {
            eprintln!(
                "sync: running pipeline `{pipeline}` ({}) in process",
                args.sync_mode()
            );
        }
        let options = RunnerOptions {
            execution_name: name.clone(),
            ..RunnerOptions::default()
        };
        let progress = SyncProgress::new(display);
        let (outcome, summary) = local_sync::run_with_summary(
            &services,
            input,
            &options,
            args.local_extracts,
            Some(&progress),
        )
        .await?;
        drop(progress);
        (name, outcome, summary)
    };
    report(
        &execution,
        &outcome,
        summary,
        started.elapsed(),
        json_output,
    )
}

/// What `sync --json` prints for an execution.
#[derive(Serialize)]
struct Report<'a> {
    execution: &'a str,
    status: &'static str,
    duration_ms: u64,
    summary: ReportSummary,
}

/// Every table's outcome when known, and the execution's error when it failed.
#[derive(Serialize)]
struct ReportSummary {
    #[serde(flatten)]
    sync: Option<SyncSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
}

/// Prints the execution's result. `summary` is the `summarize` answer when the runner kept it:
/// a failed execution's own output has only the error, not each table's outcome.
fn report(
    execution: &str,
    outcome: &Outcome,
    summary: Option<SyncSummary>,
    duration: Duration,
    json_output: bool,
) -> Result<(), Failure> {
    let (status, summary) = match outcome {
        Outcome::Succeeded(output) => (
            "succeeded",
            ReportSummary {
                sync: summary.or_else(|| serde_json::from_value(output.clone()).ok()),
                error: None,
                cause: None,
            },
        ),
        Outcome::Failed(failure) => (
            "failed",
            ReportSummary {
                sync: summary,
                error: Some(failure.error.clone()),
                cause: Some(failure.cause.clone()),
            },
        ),
    };
    let document = Report {
        execution,
        status,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        summary,
    };
    let tables = document
        .summary
        .sync
        .as_ref()
        .map(|sync| sync.tables.as_slice())
        .unwrap_or_default();
    emit(json_output, &document, || {
        let mut lines = vec![format!("execution {execution}: {status}")];
        for table in tables {
            let loaded: u64 = table.loaded.iter().map(|run| run.rows_loaded).sum();
            lines.push(format!(
                "  {:<40} {:<9} extracted {:>10} rows in {} files ({} bytes), loaded {} rows{}",
                table.table,
                table.status,
                table.rows_extracted,
                table.files,
                table.bytes,
                loaded,
                table
                    .run_id
                    .as_ref()
                    .map(|id| format!(", run {id}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(sync) = document.summary.sync.as_ref().filter(|s| s.omitted > 0) {
            lines.push(format!(
                "  … and {} more tables: every outcome is in {}",
                sync.omitted,
                sync.report.as_deref().unwrap_or("the execution's summary")
            ));
        }
        if let Outcome::Failed(failure) = outcome {
            lines.push(format!(
                "  {}",
                tidemark::steps::watermark::describe_error(
                    &json!({"Error": failure.error, "Cause": failure.cause})
                )
            ));
        }
        lines
    });
    match outcome {
        Outcome::Succeeded(_) => Ok(()),
        Outcome::Failed(failure) => Err(Failure::reported(
            failed_sync_exit_code(tables),
            anyhow::anyhow!(
                "sync failed: {}",
                tidemark::steps::watermark::describe_error(&json!({
                    "Error": failure.error,
                    "Cause": failure.cause,
                }))
            ),
        )),
    }
}

/// 3 when every failed table failed on a transient fault that outlasted the retries (a source,
/// target or S3 endpoint that cannot be reached), else 1 (README "Exit codes").
fn failed_sync_exit_code(tables: &[TableOutcome]) -> u8 {
    let failed: Vec<&TableOutcome> = tables
        .iter()
        .filter(|table| table.status == "failed")
        .collect();
    let unreachable = !failed.is_empty()
        && failed.iter().all(|table| {
            table
                .error
                .as_ref()
                .is_some_and(|error| error["Error"] == tidemark::ErrorKind::Retryable.name())
        });
    if unreachable {
        3
    } else {
        1
    }
}

async fn dry_run(
    services: &Services,
    pipeline_name: &str,
    named: &[String],
    args: &SyncArgs,
    json_output: bool,
) -> Result<(), Failure> {
    let pipeline = services.config.pipeline(pipeline_name)?;
    let tables: Vec<String> = if named.is_empty() {
        pipeline.tables.keys().cloned().collect()
    } else {
        named.to_vec()
    };
    let mode = args.sync_mode();
    let waves = tidemark::dependencies::of_pipeline(pipeline, &tables);
    let mut previews = Vec::new();
    let mut placed = Vec::new();
    for (index, wave) in waves.iter().enumerate() {
        for ordered in wave {
            previews.push(
                preview::preview(services, pipeline_name, &ordered.table, mode, args.limit).await?,
            );
            placed.push((index + 1, ordered.after.clone()));
        }
    }
    let document = json!({
        "dry_run": true,
        "pipeline": pipeline_name,
        "mode": args.sync_mode(),
        "waves": waves
            .iter()
            .map(|wave| wave.iter().map(|ordered| ordered.table.clone()).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        "tables": previews,
    });
    emit(json_output, &document, || {
        let mut lines = vec![format!(
            "dry run of pipeline `{pipeline_name}` ({}); nothing is changed",
            args.sync_mode()
        )];
        for (preview, (wave, after)) in previews.iter().zip(&placed) {
            lines.push(String::new());
            lines.push(format!(
                "{}: {} → {} ({})",
                preview.table, preview.strategy, preview.target, preview.load
            ));
            if waves.len() > 1 {
                lines.push(match after.is_empty() {
                    true => format!("  wave {wave}"),
                    false => format!(
                        "  wave {wave} (after {}): skipped unless those succeed",
                        after.join(", ")
                    ),
                });
            }
            lines.push(format!(
                "  cursor:  {}",
                match preview.cursor.is_start() {
                    true => "none".to_owned(),
                    false => preview.cursor.to_string(),
                }
            ));
            lines.push(match preview.start.is_start() {
                false => format!("  starts:  after {}", preview.start),
                true => "  starts:  at the start of the table".to_owned(),
            });
            lines.push(format!(
                "  ceiling: {}",
                match preview.ceiling.is_unbounded() {
                    true => "none (the whole table)".to_owned(),
                    false => preview.ceiling.to_string(),
                }
            ));
            if let Some(read) = &preview.read {
                lines.push(format!(
                    "  rows:    about {} rows to extract",
                    read.estimated_rows
                ));
                lines.push(format!("  reads in: {}", read.order));
                lines.push(format!("  first read: {}", read.sql));
                if !read.params.is_empty() {
                    lines.push(format!("    with ? = {}", read.params.join(", ")));
                }
            }
            if let Some(warning) = &preview.warning {
                lines.push(format!("  WARNING: {warning}"));
            }
            lines.push(format!("  pending runs: {}", preview.pending_runs));
            if let Some(owner) = &preview.locked_by {
                lines.push(format!(
                    "  LOCKED by run {owner}: a sync now would fail with LeaseHeld"
                ));
            }
            if let Some(load_sql) = &preview.load_sql {
                lines.push("  load SQL:".to_owned());
                lines.extend(load_sql.lines().map(|line| format!("    {line}")));
            }
            if !preview.after_load.is_empty() {
                lines.push("  after the load (after_load):".to_owned());
                lines.extend(
                    preview
                        .after_load
                        .iter()
                        .map(|statement| format!("    {statement};")),
                );
            }
        }
        lines
    });
    Ok(())
}

/// Starting and following an execution of the deployed state machine.
mod aws {
    use super::*;

    /// The first status poll comes after this; each next one waits twice as long, up to
    /// [`POLL_MAX`].
    const POLL_FIRST: Duration = Duration::from_secs(1);
    const POLL_MAX: Duration = Duration::from_secs(5);

    /// The state whose output holds every table's outcome.
    const SUMMARY_STATE: &str = "Summarize";

    /// Starts an execution with `input`, follows it to its end, and returns its ARN, how it ended
    /// and its per-table summary.
    pub(super) async fn run(
        input: &Value,
        display: Display,
    ) -> Result<(String, Outcome, Option<SyncSummary>), Failure> {
        let arn = std::env::var("TIDEMARK_STATE_MACHINE_ARN")
            .ok()
            .filter(|arn| !arn.is_empty())
            .ok_or_else(|| {
            Failure::config(anyhow::anyhow!(
                "`--aws` needs the state machine's ARN in TIDEMARK_STATE_MACHINE_ARN (the stack output `StateMachineArn`)"
            ))
        })?;
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let client = aws_sdk_sfn::Client::new(&shared);
        let name = format!("tidemark-cli-{}", uuid::Uuid::new_v4().simple());
        let started = client
            .start_execution()
            .state_machine_arn(&arn)
            .name(&name)
            .input(input.to_string())
            .send()
            .await
            .map_err(|err| unreachable_service("starting the execution", err))?;
        let execution = started.execution_arn().to_owned();
        if display != Display::Off {
            eprintln!("sync: started {execution}; following it (Ctrl-C stops following, not the execution)");
        }
        let mut poll = POLL_FIRST;
        loop {
            let described = client
                .describe_execution()
                .execution_arn(&execution)
                .send()
                .await
                .map_err(|err| unreachable_service("following the execution", err))?;
            use aws_sdk_sfn::types::ExecutionStatus;
            match described.status() {
                ExecutionStatus::Running | ExecutionStatus::PendingRedrive => {
                    tokio::time::sleep(poll).await;
                    poll = (poll * 2).min(POLL_MAX);
                }
                ExecutionStatus::Succeeded => {
                    let output = described
                        .output()
                        .and_then(|o| serde_json::from_str(o).ok())
                        .unwrap_or(Value::Null);
                    return Ok((execution, Outcome::Succeeded(output), None));
                }
                other => {
                    let failure = tidemark::asl::TaskFailure {
                        error: described.error().unwrap_or(other.as_str()).to_owned(),
                        cause: described.cause().unwrap_or_default().to_owned(),
                    };
                    let summary = summary_from_history(&client, &execution).await;
                    return Ok((execution, Outcome::Failed(failure), summary));
                }
            }
        }
    }

    /// The last output of the `Summarize` state, from the execution's history: a failed
    /// execution's own output carries only the error, not each table's outcome. `None` when the
    /// execution failed before `Summarize` or the history cannot be read (the error says why).
    async fn summary_from_history(
        client: &aws_sdk_sfn::Client,
        execution: &str,
    ) -> Option<SyncSummary> {
        let mut pages = client
            .get_execution_history()
            .execution_arn(execution)
            .into_paginator()
            .send();
        let mut latest: Option<(i64, SyncSummary)> = None;
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(error = %aws_sdk_sfn::error::DisplayErrorContext(&err), "cannot read the execution history; per-table results are not shown");
                    return None;
                }
            };
            for event in page.events() {
                let Some(exited) = event.state_exited_event_details() else {
                    continue;
                };
                let output = exited
                    .output()
                    .and_then(|output| serde_json::from_str::<SyncSummary>(output).ok());
                if let (SUMMARY_STATE, Some(output)) = (exited.name(), output) {
                    if latest.as_ref().is_none_or(|(id, _)| event.id() > *id) {
                        latest = Some((event.id(), output));
                    }
                }
            }
        }
        latest.map(|(_, output)| output)
    }

    fn unreachable_service<E: std::error::Error + Send + Sync + 'static>(
        context: &str,
        err: E,
    ) -> Failure {
        Failure {
            code: 3,
            error: anyhow::anyhow!(
                "{context}: {}",
                aws_sdk_sfn::error::DisplayErrorContext(&err)
            ),
            reported: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_whose_tables_all_failed_unreachable_exits_3() {
        let tables = |errors: &[&str]| -> Vec<TableOutcome> {
            serde_json::from_value(json!(errors
                .iter()
                .map(|e| json!({"table": "shop.t", "status": "failed", "error": {"Error": e}}))
                .chain([json!({"table": "shop.u", "status": "succeeded"})])
                .collect::<Vec<_>>()))
            .unwrap()
        };
        assert_eq!(failed_sync_exit_code(&tables(&["Retryable"])), 3);
        assert_eq!(
            failed_sync_exit_code(&tables(&["Retryable", "Retryable"])),
            3
        );
        assert_eq!(
            failed_sync_exit_code(&tables(&["Retryable", "NonRetryable"])),
            1
        );
        assert_eq!(failed_sync_exit_code(&tables(&["SchemaDrift"])), 1);
        assert_eq!(failed_sync_exit_code(&[]), 1);
    }
}

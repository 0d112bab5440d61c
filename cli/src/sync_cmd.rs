//! `tidemark sync`: one sync execution of a pipeline's tables — in process through the local
//! runner (default), or by starting the deployed state machine (`--aws`).

use std::path::Path;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use tidemark::local::{Outcome, RunnerOptions};
use tidemark::manifest::Ceiling;
use tidemark::steps::watermark::locate_table;
use tidemark::steps::{local_sync, Services};

use crate::output::emit;
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
    /// Show what would run (strategy, cursor, ceiling, pending runs, target) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run the state machine in this process (default).
    #[arg(long, conflicts_with = "aws")]
    local: bool,
    /// Start an execution of the deployed state machine (`TIDEMARK_STATE_MACHINE_ARN`).
    #[arg(long)]
    aws: bool,
}

impl SyncArgs {
    fn mode(&self) -> &'static str {
        match (self.backup_only, self.redshift_only) {
            (true, _) => "backup_only",
            (_, true) => "redshift_only",
            _ => "full",
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

pub(crate) async fn run(args: &SyncArgs, config: &Path, json_output: bool) -> Result<(), Failure> {
    let services = crate::services(config).await?;
    let pipeline = resolve_pipeline(&services, args)?;
    let mut input = json!({"pipeline": pipeline, "mode": args.mode(), "limit": args.limit});
    if !args.tables.is_empty() {
        input["tables"] = json!(args.tables);
    }
    if args.dry_run {
        return dry_run(&services, &pipeline, args, json_output).await;
    }
    let started = std::time::Instant::now();
    let (execution, outcome, summary) = if args.aws {
        let (execution, outcome) = aws::run(&input).await?;
        (execution, outcome, None)
    } else {
        let name = format!("local-{}", std::process::id());
        eprintln!(
            "sync: running pipeline `{pipeline}` ({}) in process",
            args.mode()
        );
        let options = RunnerOptions {
            execution_name: name.clone(),
            ..RunnerOptions::default()
        };
        let (outcome, summary) =
            local_sync::run_with_summary(&services, input, &options, None).await?;
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

/// Prints the execution's result. `summary` is the `summarize` answer when the runner kept it:
/// a failed execution's own output has only the error, not each table's outcome.
fn report(
    execution: &str,
    outcome: &Outcome,
    summary: Option<Value>,
    duration: Duration,
    json_output: bool,
) -> Result<(), Failure> {
    let (status, summary) = match outcome {
        Outcome::Succeeded(output) => ("succeeded", summary.unwrap_or_else(|| output.clone())),
        Outcome::Failed(failure) => {
            let mut summary = summary.unwrap_or_else(|| json!({}));
            summary["error"] = json!(failure.error);
            summary["cause"] = json!(failure.cause);
            ("failed", summary)
        }
    };
    let document = json!({
        "execution": execution,
        "status": status,
        "duration_ms": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        "summary": summary,
    });
    emit(json_output, &document, || {
        let mut lines = vec![format!("execution {execution}: {status}")];
        if let Some(tables) = summary.get("tables").and_then(Value::as_array) {
            for table in tables {
                let loaded: u64 = table["loaded"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|run| run["rows_loaded"].as_u64())
                    .sum();
                lines.push(format!(
                    "  {:<40} {:<9} extracted {:>10} rows in {} files ({} bytes), loaded {} rows{}",
                    table["table"].as_str().unwrap_or("?"),
                    table["status"].as_str().unwrap_or("?"),
                    table["rows_extracted"].as_u64().unwrap_or(0),
                    table["files"].as_u64().unwrap_or(0),
                    table["bytes"].as_u64().unwrap_or(0),
                    loaded,
                    table["run_id"]
                        .as_str()
                        .map(|id| format!(", run {id}"))
                        .unwrap_or_default()
                ));
            }
        }
        if let Outcome::Failed(failure) = outcome {
            lines.push(format!("  {}: {}", failure.error, failure.cause));
        }
        lines
    });
    match outcome {
        Outcome::Succeeded(_) => Ok(()),
        Outcome::Failed(failure) => Err(Failure::reported(
            1,
            anyhow::anyhow!("sync failed: {}: {}", failure.error, failure.cause),
        )),
    }
}

async fn dry_run(
    services: &Services,
    pipeline_name: &str,
    args: &SyncArgs,
    json_output: bool,
) -> Result<(), Failure> {
    let pipeline = services.config.pipeline(pipeline_name)?;
    let tables: Vec<String> = if args.tables.is_empty() {
        pipeline.tables.keys().cloned().collect()
    } else {
        args.tables.clone()
    };
    let source = services.source(pipeline).await?;
    let mut plans = Vec::new();
    for table in &tables {
        let (_, _, table_config, table_id) = locate_table(services, Some(pipeline_name), table)?;
        let watermark = services
            .watermarks(pipeline)
            .read(pipeline_name, &table_id)
            .await?
            .map(|v| v.record);
        let mut conn = source.conn().await?;
        let id_column = table_config.cursor_column.as_deref();
        let ceiling: Ceiling = source
            .within(
                "reading the run's ceiling",
                tidemark::source::ceiling(&mut conn, &table_id, table_config, id_column),
            )
            .await?;
        plans.push(json!({
            "table": table,
            "strategy": table_config.cdc_strategy.to_string(),
            "load": table_config.load_mode().to_string(),
            "target": table_config.target_name.clone().unwrap_or_else(|| table_id.table().to_lowercase()),
            "cursor": watermark.as_ref().map(|w| w.extract.cursor.clone()).unwrap_or_default(),
            "ceiling": ceiling,
            "pending_runs": watermark.as_ref().map(|w| w.pending_runs.len()).unwrap_or(0),
            "locked": watermark.as_ref().is_some_and(|w| w.lease.is_some()),
            "mode": args.mode(),
        }));
    }
    let document = json!({"dry_run": true, "pipeline": pipeline_name, "tables": plans});
    emit(json_output, &document, || {
        let mut lines = vec![format!(
            "dry run of pipeline `{pipeline_name}` ({}); nothing is changed",
            args.mode()
        )];
        for plan in &plans {
            lines.push(format!(
                "  {}: {} → {} ({}), cursor {}, ceiling {}, {} pending run(s){}",
                plan["table"].as_str().unwrap_or("?"),
                plan["strategy"].as_str().unwrap_or("?"),
                plan["target"].as_str().unwrap_or("?"),
                plan["load"].as_str().unwrap_or("?"),
                plan["cursor"],
                plan["ceiling"],
                plan["pending_runs"],
                if plan["locked"].as_bool() == Some(true) {
                    ", LOCKED by another run"
                } else {
                    ""
                }
            ));
        }
        lines
    });
    Ok(())
}

/// Starting and following an execution of the deployed state machine.
mod aws {
    use super::*;

    const POLL: Duration = Duration::from_secs(5);

    pub(super) async fn run(input: &Value) -> Result<(String, Outcome), Failure> {
        let arn = std::env::var("TIDEMARK_STATE_MACHINE_ARN").map_err(|_| {
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
        eprintln!("sync: started {execution}");
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
                    tokio::time::sleep(POLL).await
                }
                ExecutionStatus::Succeeded => {
                    let output = described
                        .output()
                        .and_then(|o| serde_json::from_str(o).ok())
                        .unwrap_or(Value::Null);
                    return Ok((execution, Outcome::Succeeded(output)));
                }
                other => {
                    return Ok((
                        execution,
                        Outcome::Failed(tidemark::local::TaskFailure {
                            error: described.error().unwrap_or(other.as_str()).to_owned(),
                            cause: described.cause().unwrap_or_default().to_owned(),
                        }),
                    ))
                }
            }
        }
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

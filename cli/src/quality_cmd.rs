//! `tidemark quality report|release|drop`: what a table's data quality checks found in each run,
//! and the operator's decision on a quarantined run, through the operator function's steps.

use std::path::Path;

use clap::Subcommand;
use tidemark::naming::RunId;
use tidemark::steps::operator::EditResult;
use tidemark::steps::quality::{
    self as steps, QualityReport, QualityReportRequest, QualityRunRequest,
};

use crate::output::{confirm, emit};
use crate::watermark_cmd::{ReasonArg, TableArgs};
use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum QualityCommand {
    /// Each of the newest runs of a table: every check's rows, failures and example keys, and
    /// whether the run is quarantined, pending or loaded.
    ///
    /// Example: `tidemark quality report -t shop.orders --runs 5`
    Report {
        #[command(flatten)]
        table: TableArgs,
        /// How many of the newest runs.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Load a quarantined run as it is, with the next sync. Needs `--reason`: who, when and why
    /// are kept in the watermark history and the audit record.
    ///
    /// Example: `tidemark quality release -t shop.orders --run 20261205T101500Z-ab12 --reason "NULL emails are expected for guests"`
    Release {
        #[command(flatten)]
        table: TableArgs,
        /// The quarantined run (see `report`).
        #[arg(long = "run", value_parser = parse_run_id)]
        run_id: RunId,
        #[command(flatten)]
        reason: ReasonArg,
    },
    /// Discard a quarantined run and every later pending run, and move the cursor back, so the
    /// next sync extracts their rows again (after the source is fixed). Needs `--reason`.
    ///
    /// Example: `tidemark quality drop -t shop.orders --run 20261205T101500Z-ab12 --reason "fixed in the source" --yes`
    Drop {
        #[command(flatten)]
        table: TableArgs,
        /// The quarantined run (see `report`).
        #[arg(long = "run", value_parser = parse_run_id)]
        run_id: RunId,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        reason: ReasonArg,
    },
}

pub(crate) async fn run(
    command: &QualityCommand,
    config: &Path,
    json: bool,
) -> Result<(), Failure> {
    let services = crate::services(config).await?;
    match command {
        QualityCommand::Report { table, runs } => {
            let answer = steps::report(
                &services,
                &QualityReportRequest {
                    pipeline: table.pipeline.clone(),
                    table: table.table.clone(),
                    runs: Some(*runs),
                },
            )
            .await?;
            emit(json, &answer, || describe(&answer));
        }
        QualityCommand::Release {
            table,
            run_id,
            reason,
        } => {
            let requester = reason.requester(&services).await?;
            let answer = steps::release(&services, &run_request(table, run_id), &requester).await?;
            print_edit(json, &answer);
        }
        QualityCommand::Drop {
            table,
            run_id,
            yes,
            reason,
        } => {
            confirm(
                &format!(
                    "drop run `{run_id}` of `{}` and every later pending run, and extract their rows again",
                    table.table
                ),
                *yes,
                "`--yes`",
            )?;
            let requester = reason.requester(&services).await?;
            let answer =
                steps::drop_run(&services, &run_request(table, run_id), &requester).await?;
            print_edit(json, &answer);
        }
    }
    Ok(())
}

fn parse_run_id(text: &str) -> Result<RunId, String> {
    RunId::parse(text).map_err(|err| err.to_string())
}

fn run_request(table: &TableArgs, run_id: &RunId) -> QualityRunRequest {
    QualityRunRequest {
        pipeline: table.pipeline.clone(),
        table: table.table.clone(),
        run_id: run_id.clone(),
    }
}

fn print_edit(json: bool, answer: &EditResult) {
    emit(json, answer, || vec![answer.message.clone()]);
}

/// The report as lines: a run per block, a check per line.
fn describe(report: &QualityReport) -> Vec<String> {
    let mut lines = vec![match &report.quarantined_run {
        Some(run) => format!(
            "{}: run {run} is QUARANTINED; it and every later run wait for `tidemark quality release` or `tidemark quality drop`",
            report.table
        ),
        None => format!("{}: no run is quarantined", report.table),
    }];
    if report.runs.is_empty() {
        lines.push("  no committed runs".to_owned());
    }
    for run in &report.runs {
        lines.push(format!(
            "  run {}  {:?}  {} rows  committed {}  {}",
            run.run_id,
            run.standing,
            run.rows,
            run.committed_at.format("%Y-%m-%d %H:%M:%S"),
            match (run.verdict, run.score) {
                (Some(verdict), Some(score)) => format!("{verdict}, score {score:.2}"),
                _ => "no checks".to_owned(),
            }
        ));
        for check in &run.checks {
            lines.push(format!(
                "    {:<7} {:<40} {:>10} of {:>10} rows failed{}{}",
                if check.passed() { "pass" } else { "FAIL" },
                format!("{} [{:?}]", check.count.check, check.severity).to_lowercase(),
                check.count.failures,
                check.count.rows_checked,
                check
                    .detail
                    .as_ref()
                    .map(|d| format!("; {d}"))
                    .unwrap_or_default(),
                match check.count.examples.is_empty() {
                    true => String::new(),
                    false => format!("; e.g. keys {}", check.count.examples.join(", ")),
                }
            ));
        }
    }
    lines
}

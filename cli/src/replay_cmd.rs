//! `tidemark replay -t db.t [--since T] [--until T] [--into CONNECTION]`: a warehouse table
//! rebuilt from the Parquet runs already on S3, without reading MySQL.

use std::path::Path;

use clap::Args;
use tidemark::replay::{self, ReplayReport, ReplayRequest};

use crate::output::emit;
use crate::Failure;

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Source table, `database.table` (or its bare name when one table has it).
    #[arg(short = 't', long = "table")]
    table: String,
    /// Pipeline; default: the one pipeline that holds the table.
    #[arg(short = 'p', long = "pipeline")]
    pipeline: Option<String>,
    /// Only runs holding rows whose cursor is at or after this (`YYYY-MM-DD[ HH:MM:SS[.ffffff]]`,
    /// the cursor column's own time; UTC for TIMESTAMP columns).
    #[arg(long)]
    since: Option<String>,
    /// Only runs holding rows whose cursor is at or before this.
    #[arg(long)]
    until: Option<String>,
    /// The warehouse connection to load into; default: the pipeline's target.
    #[arg(long)]
    into: Option<String>,
}

pub(crate) async fn run(
    args: &ReplayArgs,
    config: &Path,
    json: bool,
    quiet: bool,
) -> Result<(), Failure> {
    let services = crate::services(config).await?;
    let progress = |message: &str| {
        if !quiet {
            eprintln!("replay: {}: {message}", args.table);
        }
    };
    let request = ReplayRequest {
        pipeline: args.pipeline.clone(),
        table: args.table.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        into: args.into.clone(),
    };
    let report = replay::replay(&services, &request, &progress).await?;
    emit(json, &report, || describe(&report));
    Ok(())
}

fn describe(report: &ReplayReport) -> Vec<String> {
    let mut lines = vec![format!(
        "{} → {}'s {}{}: {} run(s) replayed, {} rows staged, {} inserted, {} deleted",
        report.table,
        report.into,
        report.target,
        if report.target_existed {
            ""
        } else {
            " (created)"
        },
        report.runs.len(),
        report.rows_staged,
        report.rows_inserted,
        report.rows_deleted,
    )];
    for run in &report.runs {
        if run.already_loaded {
            lines.push(format!(
                "  {}{} as {}: loaded here by an earlier replay, nothing to do",
                run.run_id,
                if run.deletion { " (deletion run)" } else { "" },
                run.replay_id,
            ));
            continue;
        }
        lines.push(format!(
            "  {}{} as {}: {} staged, {} inserted, {} deleted",
            run.run_id,
            if run.deletion { " (deletion run)" } else { "" },
            run.replay_id,
            run.rows_staged,
            run.rows_inserted,
            run.rows_deleted
        ));
    }
    for skipped in &report.skipped {
        lines.push(format!("  {} left out: {}", skipped.run_id, skipped.reason));
    }
    lines
}

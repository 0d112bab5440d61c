//! `tidemark watermark …` and `tidemark watermark-count …`: the operator's view and edits of a
//! table's state, through the same library steps the watermark Lambda runs.

use std::path::Path;

use clap::{Args, Subcommand, ValueEnum};
use tidemark::audit::Requester;
use tidemark::services::Services;
use tidemark::steps::counts::CountReport;
use tidemark::steps::operator::{
    self as steps, GetRequest, ListRequest, ResetRequest, RestoreRequest, SetCountRequest,
    SetRequest, TableRequest,
};
use tidemark::watermark::{CountField, CountMode, Watermark};

use crate::output::{confirm, emit};
use crate::Failure;

/// Names the table (and optionally its pipeline).
#[derive(Debug, Args)]
pub(crate) struct TableArgs {
    /// Source table, `database.table`.
    #[arg(short = 't', long = "table")]
    pub(crate) table: String,
    /// Pipeline; default: the one pipeline that holds the table.
    #[arg(short = 'p', long = "pipeline")]
    pub(crate) pipeline: Option<String>,
}

/// Why an edit is made: recorded with the caller's AWS identity in the table's audit record.
#[derive(Debug, Args)]
pub(crate) struct ReasonArg {
    /// Why, for the audit record (`tidemark watermark audit`), e.g. a ticket number.
    #[arg(long)]
    reason: Option<String>,
}

impl ReasonArg {
    /// Who asks (the caller's AWS identity, from STS) and why.
    pub(crate) async fn requester(&self, services: &Services) -> Result<Requester, Failure> {
        Ok(Requester {
            requested_by: services.caller_identity().await?,
            reason: self.reason.clone(),
            via: "cli".to_owned(),
        })
    }
}

impl TableArgs {
    fn request(&self) -> TableRequest {
        TableRequest {
            pipeline: self.pipeline.clone(),
            table: self.table.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum WatermarkCommand {
    /// Show a table's watermark: cursor, statuses, pending runs, totals, lease.
    ///
    /// Example: `tidemark watermark get -t shop.orders --show-files`
    Get {
        #[command(flatten)]
        table: TableArgs,
        /// Also list the files of pending runs.
        #[arg(long)]
        show_files: bool,
    },
    /// Move the cursor by hand. A new timestamp starts before every key of that instant; a key
    /// alone keeps the timestamp. Refused beyond the source's clock unless `--force`.
    ///
    /// Example: `tidemark watermark set -t shop.orders --timestamp '2026-11-01 00:00:00'`
    Set {
        #[command(flatten)]
        table: TableArgs,
        /// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC for TIMESTAMP columns, as stored for DATETIME).
        #[arg(long)]
        timestamp: Option<String>,
        /// The key, when it is one integer column (`id_only`'s id, or a one-column key).
        #[arg(long, conflicts_with = "key")]
        id: Option<String>,
        /// One key value, in key order; repeat for a composite key:
        /// `--key 2026 --key A-17` for a key (year, code).
        #[arg(long = "key", value_name = "VALUE")]
        key: Vec<String>,
        /// Accept a cursor beyond the source's clock or largest id: every sync then succeeds with
        /// 0 rows until the source gets there.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        reason: ReasonArg,
    },
    /// Move the cursor back to the start; the next sync re-reads the whole table.
    ///
    /// Example: `tidemark watermark reset -t shop.orders --yes`
    Reset {
        #[command(flatten)]
        table: TableArgs,
        /// Also forget the pending runs (they will never be loaded).
        #[arg(long)]
        drop_pending: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        reason: ReasonArg,
    },
    /// Every table of a pipeline, one line each, with its lag.
    List {
        /// Pipeline; default: every pipeline.
        #[arg(short = 'p', long = "pipeline")]
        pipeline: Option<String>,
    },
    /// The kept earlier versions of a table's watermark, oldest first.
    History {
        #[command(flatten)]
        table: TableArgs,
    },
    /// Put a kept version back (see `history`).
    Restore {
        #[command(flatten)]
        table: TableArgs,
        /// A version name from `history`.
        #[arg(long)]
        version: String,
        #[command(flatten)]
        reason: ReasonArg,
    },
    /// Release a stuck lease, whoever holds it.
    Unlock {
        #[command(flatten)]
        table: TableArgs,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        reason: ReasonArg,
    },
    /// The table's audit record: every edit's request and outcome, who asked and why, oldest
    /// first. Nothing prunes it.
    ///
    /// Example: `tidemark watermark audit -t shop.orders`
    Audit {
        #[command(flatten)]
        table: TableArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ModeArg {
    Absolute,
    Additive,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum FieldArg {
    RowsLoaded,
    RowsExtracted,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CountCommand {
    /// Correct a total by hand (recorded as a manual edit).
    ///
    /// Example: `tidemark watermark-count set-count -t shop.orders --count 1200 --mode absolute`
    SetCount {
        #[command(flatten)]
        table: TableArgs,
        /// The number (may be negative with `additive`).
        #[arg(long, allow_hyphen_values = true)]
        count: i64,
        /// `absolute` sets the total; `additive` adds to it.
        #[arg(long, value_enum)]
        mode: ModeArg,
        /// Which total.
        #[arg(long, value_enum, default_value_t = FieldArg::RowsLoaded)]
        field: FieldArg,
        #[command(flatten)]
        reason: ReasonArg,
    },
    /// Compare the watermark's totals with the target's `COUNT(*)`, its load ledger and the
    /// source's `COUNT(*)` up to the cursor. Changes nothing; exit 1 on a mismatch, with the
    /// command that corrects it when tidemark knows the right number.
    ///
    /// Example: `tidemark watermark-count validate-counts -t shop.orders`
    ValidateCounts {
        #[command(flatten)]
        table: TableArgs,
    },
}

fn describe(w: &Watermark) -> Vec<String> {
    let mut lines = vec![
        format!(
            "table        {} → {} (pipeline {})",
            w.table, w.target, w.pipeline
        ),
        format!(
            "cursor       timestamp {} key {}",
            w.extract.cursor.timestamp.as_deref().unwrap_or("-"),
            if w.extract.cursor.key.is_empty() {
                "-".to_owned()
            } else {
                w.extract.cursor.key.join(",")
            }
        ),
        format!(
            "extract      {}{}",
            w.extract.status,
            w.extract
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        format!(
            "load         {}{}",
            w.load.status,
            w.load
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        format!(
            "totals       {} rows extracted in {} runs, {} rows loaded in {} runs",
            w.totals.rows_extracted,
            w.totals.runs_committed,
            w.totals.rows_loaded,
            w.totals.runs_loaded
        ),
        format!("pending      {} run(s)", w.pending_runs.len()),
    ];
    for run in &w.pending_runs {
        lines.push(format!(
            "  {}  {} rows, {} files, {} bytes{}",
            run.run_id,
            run.rows,
            run.files,
            run.bytes,
            match &run.quarantine {
                Some(quarantine) => format!(
                    "  QUARANTINED: failed {}; it and every later run wait for `tidemark quality release` or `quality drop`",
                    quarantine.failed_checks.join(", ")
                ),
                None => String::new(),
            }
        ));
    }
    lines.push(match &w.lease {
        Some(lease) => format!(
            "lease        held by {} until {}",
            lease.owner, lease.expires_at
        ),
        None => "lease        free".to_owned(),
    });
    if let Some(manual) = &w.manual {
        lines.push(format!(
            "last edit    {} by {} at {}: {}{}",
            manual.action,
            manual.by,
            manual.at,
            manual.detail,
            manual
                .reason
                .as_deref()
                .map(|reason| format!(" (reason: {reason})"))
                .unwrap_or_default()
        ));
    }
    lines
}

pub(crate) async fn run(
    command: &WatermarkCommand,
    config: &Path,
    json: bool,
) -> Result<(), Failure> {
    let services = crate::services(config).await?;
    match command {
        WatermarkCommand::Get { table, show_files } => {
            let answer = steps::get(
                &services,
                &GetRequest {
                    pipeline: table.pipeline.clone(),
                    table: table.table.clone(),
                    show_files: *show_files,
                },
            )
            .await?;
            emit(json, &answer, || {
                let mut lines = match &answer.watermark {
                    Some(w) => describe(w),
                    None => vec![format!("{}: never synced (no watermark yet)", table.table)],
                };
                let runs = answer
                    .pending_files
                    .iter()
                    .map(|run| ("pending", run))
                    .chain(
                        answer
                            .last_loaded_files
                            .iter()
                            .map(|run| ("last loaded", run)),
                    );
                for (state, run) in runs {
                    lines.push(format!("files of {state} run {}:", run.run_id));
                    for file in &run.files {
                        lines.push(format!(
                            "  {}  {} rows  {} bytes",
                            file.key, file.rows, file.bytes
                        ));
                    }
                }
                if *show_files && answer.last_loaded_files.is_none() {
                    if let Some(run_id) = answer
                        .watermark
                        .as_ref()
                        .and_then(|w| w.load.last_loaded_run_id.as_ref())
                    {
                        lines.push(format!(
                            "the files of last loaded run {run_id} are no longer kept (s3clean)"
                        ));
                    }
                }
                lines
            });
        }
        WatermarkCommand::Set {
            table,
            timestamp,
            id,
            key,
            force,
            reason,
        } => {
            let requester = reason.requester(&services).await?;
            let answer = steps::set(
                &services,
                &SetRequest {
                    pipeline: table.pipeline.clone(),
                    table: table.table.clone(),
                    timestamp: timestamp.clone(),
                    id: id.clone(),
                    key: (!key.is_empty()).then(|| key.clone()),
                    force: *force,
                },
                &requester,
            )
            .await?;
            emit(json, &answer, || vec![answer.message.clone()]);
        }
        WatermarkCommand::Reset {
            table,
            drop_pending,
            yes,
            reason,
        } => {
            confirm(
                &format!("reset the watermark of `{}` to the start", table.table),
                *yes,
                "`--yes`",
            )?;
            let requester = reason.requester(&services).await?;
            let answer = steps::reset(
                &services,
                &ResetRequest {
                    pipeline: table.pipeline.clone(),
                    table: table.table.clone(),
                    drop_pending: *drop_pending,
                },
                &requester,
            )
            .await?;
            emit(json, &answer, || vec![answer.message.clone()]);
        }
        WatermarkCommand::List { pipeline } => {
            let answer = steps::list(
                &services,
                &ListRequest {
                    pipeline: pipeline.clone(),
                },
            )
            .await?;
            emit(json, &answer, || {
                answer
                    .iter()
                    .map(|e| {
                        format!(
                            "{}\t{}\tcursor {}\tlag {}\textract {}\tload {}\tpending {}{}{}",
                            e.pipeline,
                            e.table,
                            e.cursor.timestamp.as_deref().unwrap_or("-"),
                            e.lag_seconds
                                .map(|s| format!("{s}s"))
                                .unwrap_or_else(|| "-".to_owned()),
                            e.extract_status,
                            e.load_status,
                            e.pending_runs,
                            if e.locked { "\tLOCKED" } else { "" },
                            if e.quarantined { "\tQUARANTINED" } else { "" }
                        )
                    })
                    .collect()
            });
        }
        WatermarkCommand::History { table } => {
            let answer = steps::history(&services, &table.request()).await?;
            emit(json, &answer, || {
                answer
                    .iter()
                    .map(|h| match &h.summary {
                        Some(v) => format!(
                            "{}\tcursor {}\textract {}\tload {}\tpending {}{}",
                            h.version,
                            v.cursor,
                            v.extract_status,
                            v.load_status,
                            v.pending_runs,
                            v.lease_owner
                                .as_ref()
                                .map(|run| format!("\tleased by run {run} (mid-run)"))
                                .unwrap_or_default()
                        ),
                        None => format!("{}\t{} bytes (unreadable)", h.version, h.bytes),
                    })
                    .collect()
            });
        }
        WatermarkCommand::Restore {
            table,
            version,
            reason,
        } => {
            let requester = reason.requester(&services).await?;
            let answer = steps::restore(
                &services,
                &RestoreRequest {
                    pipeline: table.pipeline.clone(),
                    table: table.table.clone(),
                    version: version.clone(),
                },
                &requester,
            )
            .await?;
            emit(json, &answer, || describe(&answer.watermark));
        }
        WatermarkCommand::Audit { table } => {
            let answer = steps::audit(&services, &table.request()).await?;
            emit(json, &answer, || {
                if answer.is_empty() {
                    return vec![format!("{}: no operator edits recorded", table.table)];
                }
                answer
                    .iter()
                    .map(|entry| {
                        format!(
                            "{}\t{}\t{:?}\t{} via {}{}{}",
                            entry.at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
                            entry.action,
                            entry.phase,
                            entry.requester.requested_by,
                            entry.requester.via,
                            entry
                                .requester
                                .reason
                                .as_deref()
                                .map(|reason| format!("\treason: {reason}"))
                                .unwrap_or_default(),
                            entry
                                .detail
                                .as_deref()
                                .map(|detail| format!("\t{detail}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect()
            });
        }
        WatermarkCommand::Unlock { table, yes, reason } => {
            confirm(
                &format!(
                    "release the lease of `{}` (only if its run is dead)",
                    table.table
                ),
                *yes,
                "`--yes`",
            )?;
            let requester = reason.requester(&services).await?;
            let answer = steps::unlock(&services, &table.request(), &requester).await?;
            emit(json, &answer, || vec![answer.message.clone()]);
        }
    }
    Ok(())
}

pub(crate) async fn run_count(
    command: &CountCommand,
    config: &Path,
    json: bool,
) -> Result<(), Failure> {
    let services = crate::services(config).await?;
    match command {
        CountCommand::SetCount {
            table,
            count,
            mode,
            field,
            reason,
        } => {
            let requester = reason.requester(&services).await?;
            let request = SetCountRequest {
                pipeline: table.pipeline.clone(),
                table: table.table.clone(),
                field: match field {
                    FieldArg::RowsLoaded => CountField::RowsLoaded,
                    FieldArg::RowsExtracted => CountField::RowsExtracted,
                },
                mode: match mode {
                    ModeArg::Absolute => CountMode::Absolute,
                    ModeArg::Additive => CountMode::Additive,
                },
                count: *count,
            };
            let answer = steps::set_count(&services, &request, &requester).await?;
            emit(json, &answer, || vec![answer.message.clone()]);
        }
        CountCommand::ValidateCounts { table } => {
            let report =
                tidemark::steps::counts::validate_counts(&services, &table.request()).await?;
            emit(json, &report, || describe_counts(&report));
            if report.verdict != "consistent" {
                return Err(Failure::reported(
                    1,
                    anyhow::anyhow!(
                        "the counts of `{}` do not agree; see the checks above",
                        report.table
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn describe_counts(report: &CountReport) -> Vec<String> {
    let t = &report.target_counts;
    let mut lines = vec![
        format!(
            "table        {} → {} (pipeline {}, {} / {})",
            report.table, report.target, report.pipeline, report.strategy, report.load_mode
        ),
        format!(
            "watermark    {} rows extracted, {} rows loaded, {} rows pending",
            report.watermark.rows_extracted, report.watermark.rows_loaded, report.pending_rows
        ),
        format!(
            "ledger       {} run(s): {} staged, {} inserted, {} deleted",
            t.ledger.runs, t.ledger.rows_staged, t.ledger.rows_inserted, t.ledger.rows_deleted
        ),
        format!(
            "target       {}",
            t.rows
                .map(|r| format!("{r} rows"))
                .unwrap_or_else(|| "no table yet".to_owned())
        ),
        format!(
            "source       {} rows up to the cursor (timestamp {}, key {})",
            report.source_rows,
            report.cursor.timestamp.as_deref().unwrap_or("-"),
            if report.cursor.key.is_empty() {
                "-".to_owned()
            } else {
                report.cursor.key.join(",")
            }
        ),
    ];
    for check in &report.checks {
        lines.push(format!(
            "{:<12} {}: {}",
            format!("{:?}", check.outcome).to_lowercase(),
            check.name,
            check.detail
        ));
        if let Some(fix) = &check.fix {
            lines.push(format!("             fix: {fix}"));
        }
    }
    lines.push(format!("verdict      {}", report.verdict));
    lines
}

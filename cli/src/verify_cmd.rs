//! `tidemark verify -t db.t [--repair]`: whether the target table equals its source, and every
//! row that differs, by key; with `--repair`, a repair run that re-extracts the missing and
//! changed rows through the sync's own path, then a second verify. Without `-t`, every table of
//! the pipeline.

use std::path::Path;

use clap::Args;
use serde_json::json;
use tidemark::asl::{Outcome, RunnerOptions};
use tidemark::config::DeletePolicy;
use tidemark::steps::local_sync;
use tidemark::verify::{self, Differences, VerifyOptions, VerifyReport};

use crate::output::emit;
use crate::Failure;

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Source table, `database.table`; default: every table of the pipeline (those verify
    /// cannot compare are listed as skipped, with why).
    #[arg(short = 't', long = "table")]
    table: Option<String>,
    /// Pipeline; default: the one pipeline that holds the table (without `-t`: the only one).
    #[arg(short = 'p', long = "pipeline")]
    pipeline: Option<String>,
    /// Re-extract every missing and changed row (by key, whatever its cursor) in one repair
    /// run, loaded like any run (merge, ledger, exactly once), then verify again. Rows gone from
    /// the source follow the table's `deletes`: removed under `hard`/`soft`, kept under
    /// `ignore`. Runs in this process, as `sync --local`.
    #[arg(long, requires = "table")]
    repair: bool,
}

pub(crate) async fn run(
    args: &VerifyArgs,
    config: &Path,
    json: bool,
    quiet: bool,
) -> Result<(), Failure> {
    let services = crate::services(config).await?;
    let Some(table) = &args.table else {
        return verify_pipeline(&services, args.pipeline.as_deref(), json, quiet).await;
    };
    // Progress on stderr: a large table takes minutes of hashing in both engines.
    let progress = |message: &str| {
        if !quiet {
            eprintln!("verify: {table}: {message}");
        }
    };
    let verify_once = || {
        verify::verify_with(
            &services,
            args.pipeline.as_deref(),
            table,
            VerifyOptions::default(),
            &progress,
        )
    };
    let report = verify_once().await?;
    if !args.repair {
        emit(json, &report, || describe(&report));
        return outcome(&report);
    }
    let Some(repair) = verify::repair_keys(&services, &report).await? else {
        emit(
            json,
            &json!({"before": report, "repair": null, "after": null}),
            || {
                let mut lines = describe(&report);
                lines.push("repair: no missing or changed row to re-extract".to_owned());
                lines.extend(gone_rows_stay(&report));
                lines
            },
        );
        return outcome(&report);
    };
    let deletes = services
        .config
        .pipeline(&report.pipeline)?
        .tables
        .get(&report.table)
        .map(|table| table.deletes)
        .unwrap_or_default();
    progress(&format!(
        "repairing: one run re-extracts the {} missing or changed row(s){}",
        repair.keys,
        match (report.extra.count, deletes) {
            (0, _) | (_, DeletePolicy::Ignore) => String::new(),
            (gone, _) => format!(
                " and reconciles the keys to remove the {gone} gone from the source (`deletes: {deletes}`)"
            ),
        }
    ));
    let input = json!({
        "pipeline": report.pipeline,
        "tables": [report.table],
        "mode": "full",
        "repair": repair,
    });
    let options = RunnerOptions {
        execution_name: format!("repair-{}", std::process::id()),
        ..RunnerOptions::default()
    };
    let (ran, summary) = local_sync::run_with_summary(
        &services,
        input,
        &options,
        local_sync::EXTRACTS_AT_ONCE,
        None,
    )
    .await?;
    let repaired = summary.and_then(|s| s.tables.into_iter().next());
    let Some(repaired) = repaired.filter(|t| t.status == "succeeded") else {
        let why = match ran {
            Outcome::Failed(failure) => format!("{}: {}", failure.error, failure.cause),
            Outcome::Succeeded(_) => "the repair run did not succeed".to_owned(),
        };
        return Err(Failure {
            code: 1,
            error: anyhow::anyhow!(
                "the repair run of `{}` failed, nothing of it was loaded unless a later sync loads it: {why}",
                report.table
            ),
            reported: false,
        });
    };
    let after = verify_once().await?;
    let rows_loaded: u64 = repaired.loaded.iter().map(|l| l.rows_loaded).sum();
    let document = json!({
        "before": report,
        "repair": {
            "run_id": repaired.run_id,
            "keys": repair.keys,
            "keys_object": repair.keys_object,
            "rows_extracted": repaired.rows_extracted,
            "rows_loaded": rows_loaded,
        },
        "after": after,
    });
    emit(json, &document, || {
        let mut lines = describe(&report);
        lines.push(format!(
            "repair: run {} re-extracted {} of {} listed key(s) and loaded {rows_loaded} row(s)",
            repaired
                .run_id
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            repaired.rows_extracted,
            repair.keys
        ));
        lines.extend(describe(&after));
        if deletes == DeletePolicy::Ignore {
            lines.extend(gone_rows_stay(&after));
        }
        lines
    });
    outcome(&after)
}

/// Under `deletes: ignore`, why the rows of `report` gone from the source are still there.
fn gone_rows_stay(report: &VerifyReport) -> Option<String> {
    (report.extra.count > 0).then(|| {
        format!(
            "repair: the {} row(s) gone from the source stay: the table has `deletes: ignore` (set `deletes: hard` or `soft` to remove them)",
            report.extra.count
        )
    })
}

/// Every table of `pipeline` (default: the only one), one after the other. A table verify
/// refuses (never loaded, `append`, `custom_sql`…) is skipped, with why; exit 1 when any
/// verified table differs.
async fn verify_pipeline(
    services: &tidemark::services::Services,
    pipeline: Option<&str>,
    json: bool,
    quiet: bool,
) -> Result<(), Failure> {
    let name = match pipeline {
        Some(name) => name.to_owned(),
        None => only_pipeline(services)?,
    };
    let tables: Vec<String> = services
        .config
        .pipeline(&name)?
        .tables
        .keys()
        .cloned()
        .collect();
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    for table in &tables {
        let progress = |message: &str| {
            if !quiet {
                eprintln!("verify: {table}: {message}");
            }
        };
        match verify::verify_with(
            services,
            Some(&name),
            table,
            VerifyOptions::default(),
            &progress,
        )
        .await
        {
            Ok(report) => reports.push(report),
            Err(tidemark::Error::InvalidRequest(reason)) => {
                skipped.push(json!({"table": table, "reason": reason}));
            }
            Err(other) => return Err(other.into()),
        }
    }
    let differing: Vec<&str> = reports
        .iter()
        .filter(|r| !r.equal)
        .map(|r| r.table.as_str())
        .collect();
    let document = json!({"pipeline": name, "tables": reports, "skipped": skipped});
    emit(json, &document, || {
        let mut lines: Vec<String> = reports.iter().flat_map(describe).collect();
        for skip in &skipped {
            lines.push(format!(
                "{}: not verified: {}",
                skip["table"].as_str().unwrap_or_default(),
                skip["reason"].as_str().unwrap_or_default()
            ));
        }
        lines.push(format!(
            "{} of {} verified table(s) equal; {} skipped",
            reports.len() - differing.len(),
            reports.len(),
            skipped.len()
        ));
        lines
    });
    if differing.is_empty() {
        Ok(())
    } else {
        Err(Failure::reported(
            1,
            anyhow::anyhow!("rows differ in {}", differing.join(", ")),
        ))
    }
}

/// The configuration's one pipeline; several are a usage error that names them.
fn only_pipeline(services: &tidemark::services::Services) -> Result<String, Failure> {
    let names: Vec<&str> = services
        .config
        .pipelines
        .keys()
        .map(String::as_str)
        .collect();
    match names.as_slice() {
        [only] => Ok((*only).to_owned()),
        _ => Err(Failure::config(anyhow::anyhow!(
            "several pipelines are configured ({}); name one with `-p`, or a table with `-t`",
            names.join(", ")
        ))),
    }
}

/// Exit 0 when equal, 1 when rows differ (the report is already printed).
fn outcome(report: &VerifyReport) -> Result<(), Failure> {
    if report.equal {
        Ok(())
    } else {
        Err(Failure::reported(
            1,
            anyhow::anyhow!(
                "{} row(s) of `{}` differ between the source and {}",
                report.differing(),
                report.table,
                report.target
            ),
        ))
    }
}

fn describe(report: &VerifyReport) -> Vec<String> {
    let mut lines = vec![format!(
        "{} → {}: {} ({} source rows, {} target rows; {} segments, {} differing; {} KiB read in {:.1} s)",
        report.table,
        report.target,
        if report.equal { "EQUAL" } else { "DIFFERENT" },
        report.source_rows,
        report.target_rows,
        report.segments,
        report.segments_differing,
        report.bytes_read.div_ceil(1024),
        report.elapsed_ms as f64 / 1000.0,
    )];
    let kinds: [(&str, &Differences); 4] = [
        ("missing from the target", &report.missing),
        ("gone from the source", &report.extra),
        ("values differ", &report.changed),
        (
            "not yet synced (changed after the last loaded run)",
            &report.in_flight,
        ),
    ];
    for (what, differences) in kinds {
        if differences.count == 0 {
            continue;
        }
        lines.push(format!("  {} row(s) {what}:", differences.count));
        for row in &differences.rows {
            let key: Vec<String> = row.key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if row.columns.is_empty() {
                lines.push(format!("    {}", key.join(", ")));
            } else {
                lines.push(format!(
                    "    {} (columns: {})",
                    key.join(", "),
                    row.columns.join(", ")
                ));
            }
        }
        if differences.count > differences.rows.len() as u64 {
            lines.push(format!(
                "    … and {} more",
                differences.count - differences.rows.len() as u64
            ));
        }
    }
    lines
}

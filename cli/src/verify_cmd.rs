//! `tidemark verify -t db.t`: whether the target table equals its source, and every row that
//! differs, by key.

use std::path::Path;

use tidemark::verify::{self, Differences, VerifyOptions, VerifyReport};

use crate::output::emit;
use crate::watermark_cmd::TableArgs;
use crate::Failure;

pub(crate) async fn run(
    table: &TableArgs,
    config: &Path,
    json: bool,
    quiet: bool,
) -> Result<(), Failure> {
    let services = crate::services(config).await?;
    // Progress on stderr: a large table takes minutes of hashing in both engines.
    let progress = |message: &str| {
        if !quiet {
            eprintln!("verify: {}: {message}", table.table);
        }
    };
    let report = verify::verify_with(
        &services,
        table.pipeline.as_deref(),
        &table.table,
        VerifyOptions::default(),
        &progress,
    )
    .await?;
    emit(json, &report, || describe(&report));
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

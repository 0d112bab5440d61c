//! `tidemark s3clean list|clean|clean-all`: S3 retention. Every rule (what is loaded, pending,
//! orphaned; what may go) is `tidemark::clean`; this module parses flags, prints plans, asks for
//! confirmation and maps outcomes to exit codes.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use clap::Subcommand;
use tidemark::clean::{self, CleanOptions, CleanPlan, CleanReport, Glob, Listing, RunStatus};
use tidemark::config::HumanDuration;
use tidemark::naming::TableId;
use tidemark::services::Services;
use tidemark::steps::watermark::locate_table;

use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum S3cleanCommand {
    /// The table's objects grouped by run (loaded, pending, in progress, abandoned, orphaned),
    /// with counts and sizes and totals at the end.
    ///
    /// Example: `tidemark s3clean list -t shop.orders --show-timestamps`
    List {
        /// Source table, `database.table`.
        #[arg(short, long)]
        table: String,
        /// Pipeline. Default: the only pipeline that holds the table.
        #[arg(short, long)]
        pipeline: Option<String>,
        /// Also show each run's oldest and newest object time.
        #[arg(long)]
        show_timestamps: bool,
    },
    /// Delete the files of loaded runs (and their manifests); with `--orphans`, also orphaned
    /// and abandoned runs older than 24h. Pending runs are never deleted.
    ///
    /// Example: `tidemark s3clean clean -t shop.orders --older-than 7d --dry-run`
    Clean {
        /// Source table, `database.table`.
        #[arg(short, long)]
        table: String,
        /// Pipeline. Default: the only pipeline that holds the table.
        #[arg(short, long)]
        pipeline: Option<String>,
        /// Only runs whose newest object is at least this old: `7d`, `24h`, `30m`.
        #[arg(long, value_parser = parse_age)]
        older_than: Option<Duration>,
        /// Only objects whose file name matches (`*` and `?`), e.g. `*.parquet`.
        #[arg(long, value_parser = parse_pattern)]
        pattern: Option<Glob>,
        /// Also delete orphaned runs (no committed manifest) and abandoned runs (dropped from
        /// the pending runs) whose newest object is older than 24h.
        #[arg(long)]
        orphans: bool,
        /// Print the plan and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete without asking (required when stdin is not a terminal); `--force` is the same.
        #[arg(long = "yes", alias = "force")]
        force: bool,
    },
    /// `clean --older-than AGE` for every table of every pipeline, one by one, with a summary.
    ///
    /// Example: `tidemark s3clean clean-all --older-than 30d --dry-run`
    CleanAll {
        /// Only runs whose newest object is at least this old: `7d`, `24h`, `30m`.
        #[arg(long, value_parser = parse_age)]
        older_than: Duration,
        /// Print the plans and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete without asking (required when stdin is not a terminal); `--force` is the same.
        #[arg(long = "yes", alias = "force")]
        force: bool,
    },
}

fn parse_age(text: &str) -> Result<Duration, String> {
    HumanDuration::parse(text).map(|d| d.0)
}

fn parse_pattern(text: &str) -> Result<Glob, String> {
    Glob::parse(text).map_err(|err| err.to_string())
}

pub(crate) async fn run(command: &S3cleanCommand, path: &Path, json: bool) -> Result<(), Failure> {
    let services = crate::services(path).await?;
    {
        match command {
            S3cleanCommand::List {
                table,
                pipeline,
                show_timestamps,
            } => {
                list(
                    &services,
                    pipeline.as_deref(),
                    table,
                    *show_timestamps,
                    json,
                )
                .await
            }
            S3cleanCommand::Clean {
                table,
                pipeline,
                older_than,
                pattern,
                orphans,
                dry_run,
                force,
            } => {
                let options = CleanOptions {
                    older_than: *older_than,
                    pattern: pattern.clone(),
                    orphans: *orphans,
                    ..CleanOptions::new(Utc::now())
                };
                let (pipeline_name, _, _, table_id) =
                    locate_table(&services, pipeline.as_deref(), table).map_err(Failure::from)?;
                let tables = vec![(pipeline_name, table_id.to_string())];
                clean_tables(&services, &tables, &options, *dry_run, *force, json).await
            }
            S3cleanCommand::CleanAll {
                older_than,
                dry_run,
                force,
            } => {
                let options = CleanOptions {
                    older_than: Some(*older_than),
                    ..CleanOptions::new(Utc::now())
                };
                let tables = tidemark::steps::cleanup::select_tables(&services.config, None, None)
                    .map_err(Failure::from)?;
                clean_tables(&services, &tables, &options, *dry_run, *force, json).await
            }
        }
    }
}

async fn list(
    services: &Services,
    pipeline: Option<&str>,
    table: &str,
    show_timestamps: bool,
    json: bool,
) -> Result<(), Failure> {
    let (pipeline_name, pipeline, _, table_id) =
        locate_table(services, pipeline, table).map_err(Failure::from)?;
    let store = services.watermarks(pipeline);
    let listing = clean::list(&store, &pipeline_name, &table_id, Utc::now())
        .await
        .map_err(Failure::from)?;
    if json {
        crate::output::print_json(&listing);
        return Ok(());
    }
    print_listing(&listing, show_timestamps);
    Ok(())
}

fn print_listing(listing: &Listing, show_timestamps: bool) {
    crate::output::print_line(&format!(
        "{} (pipeline {}) in s3://{}",
        listing.table, listing.pipeline, listing.bucket
    ));
    for prefix in &listing.prefixes {
        crate::output::print_line(&format!("  prefix {prefix}"));
    }
    let stamp_header = if show_timestamps {
        format!("  {:<20}  {:<20}", "OLDEST", "NEWEST")
    } else {
        String::new()
    };
    crate::output::print_line(&format!(
        "{:<34}  {:<11}  {:>7}  {:>7}  {:>10}{stamp_header}",
        "RUN", "STATUS", "FILES", "OBJECTS", "SIZE"
    ));
    for run in &listing.runs {
        let stamps = if show_timestamps {
            let at = |t: Option<chrono::DateTime<Utc>>| {
                t.map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
                    .unwrap_or_else(|| "-".to_owned())
            };
            format!("  {:<20}  {:<20}", at(run.oldest), at(run.newest))
        } else {
            String::new()
        };
        crate::output::print_line(&format!(
            "{:<34}  {:<11}  {:>7}  {:>7}  {:>10}{stamps}",
            run.run_id.as_str(),
            run.status.name(),
            run.data_files,
            run.objects.len(),
            human_bytes(run.bytes)
        ));
    }
    for object in &listing.unrecognized {
        crate::output::print_line(&format!(
            "unrecognized (never deleted): {} ({})",
            object.key,
            human_bytes(object.bytes)
        ));
    }
    let by_status: Vec<String> = listing
        .by_status
        .iter()
        .map(|(status, tally)| {
            format!(
                "{} {} ({} files, {})",
                tally.runs,
                status.name(),
                tally.data_files,
                human_bytes(tally.bytes)
            )
        })
        .collect();
    crate::output::print_line(&format!(
        "total: {} run(s), {} data file(s), {} object(s), {}{}{}",
        listing.total.runs,
        listing.total.data_files,
        listing.total.objects,
        human_bytes(listing.total.bytes),
        if by_status.is_empty() { "" } else { " — " },
        by_status.join(", ")
    ));
}

/// Lists and plans every table, shows the plans, asks once, then deletes table by table.
async fn clean_tables(
    services: &Services,
    tables: &[(String, String)],
    options: &CleanOptions,
    dry_run: bool,
    force: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut plans = Vec::new();
    let mut failed = Vec::new();
    for (pipeline_name, table) in tables {
        match plan_table(services, pipeline_name, table, options).await {
            Ok(plan) => plans.push(plan),
            Err(err) if tables.len() == 1 => return Err(Failure::from(err)),
            Err(err) => {
                eprintln!("error: {pipeline_name} {table}: {err}");
                failed.push(format!("{pipeline_name} {table}"));
            }
        }
    }
    if !json {
        for plan in &plans {
            print_plan(plan);
        }
    }
    let objects: u64 = plans.iter().map(|p| p.objects).sum();
    let bytes: u64 = plans.iter().map(|p| p.bytes).sum();
    let mut reports: Vec<Option<CleanReport>> = plans.iter().map(|_| None).collect();
    if dry_run {
        if !json {
            crate::output::print_line(&format!(
                "dry run: would delete {objects} object(s), {}; nothing was deleted",
                human_bytes(bytes)
            ));
        }
    } else if objects == 0 {
        if !json {
            crate::output::print_line("nothing to delete");
        }
    } else {
        crate::output::confirm(
            &format!(
                "delete {objects} object(s), {} from {} table(s)",
                human_bytes(bytes),
                plans.len()
            ),
            force,
            "`--yes` (or `--force`) to delete, or `--dry-run` to only see the plan",
        )?;
        for (plan, report) in plans.iter().zip(reports.iter_mut()) {
            if plan.is_empty() {
                continue;
            }
            let pipeline = services
                .config
                .pipeline(&plan.pipeline)
                .map_err(Failure::from)?;
            match clean::execute(&services.watermarks(pipeline), plan).await {
                Ok(done) => {
                    if !done.failures.is_empty() {
                        failed.push(format!("{} {}", plan.pipeline, plan.table));
                    }
                    *report = Some(done);
                }
                Err(err) if tables.len() == 1 => return Err(Failure::from(err)),
                Err(err) => {
                    eprintln!("error: {} {}: {err}", plan.pipeline, plan.table);
                    failed.push(format!("{} {}", plan.pipeline, plan.table));
                }
            }
        }
    }
    if json {
        crate::output::print_json(&serde_json::json!({
            "dry_run": dry_run,
            "tables": plans.iter().zip(&reports).map(|(plan, report)| {
                serde_json::json!({"plan": plan, "report": report})
            }).collect::<Vec<_>>(),
            "failed": failed,
        }));
    } else if !dry_run && objects > 0 {
        print_summary(&plans, &reports);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::reported(
            1,
            anyhow::anyhow!("s3clean did not finish for: {}", failed.join(", ")),
        ))
    }
}

async fn plan_table(
    services: &Services,
    pipeline_name: &str,
    table: &str,
    options: &CleanOptions,
) -> tidemark::Result<CleanPlan> {
    let pipeline = services.config.pipeline(pipeline_name)?;
    let table_id = TableId::parse(table)?;
    let listing = clean::list(
        &services.watermarks(pipeline),
        pipeline_name,
        &table_id,
        options.now,
    )
    .await?;
    Ok(clean::plan_clean(&listing, options))
}

fn print_plan(plan: &CleanPlan) {
    crate::output::print_line(&format!(
        "{} (pipeline {}) in s3://{}: delete {} object(s), {}",
        plan.table,
        plan.pipeline,
        plan.bucket,
        plan.objects,
        human_bytes(plan.bytes)
    ));
    for run in &plan.runs {
        let bytes: u64 = run.delete.iter().map(|d| d.bytes).sum();
        crate::output::print_line(&format!(
            "  {:<34}  {:<11}  delete {:>6} ({:>10})  keep {:>6}  {}",
            run.run_id.as_str(),
            run.status.name(),
            run.delete.len(),
            human_bytes(bytes),
            run.kept,
            run.reason
        ));
    }
    if plan.unrecognized > 0 {
        crate::output::print_line(&format!(
            "  {} unrecognized object(s) under the table's prefixes: never deleted (`tidemark s3clean list -t {}` shows them)",
            plan.unrecognized, plan.table
        ));
    }
    let pending = plan
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Pending)
        .count();
    if pending > 0 {
        crate::output::print_line(&format!(
            "  {pending} pending run(s) kept: they are not loaded yet"
        ));
    }
}

fn print_summary(plans: &[CleanPlan], reports: &[Option<CleanReport>]) {
    crate::output::print_line("summary:");
    let (mut objects, mut bytes) = (0, 0);
    for (plan, report) in plans.iter().zip(reports) {
        match report {
            Some(report) => {
                objects += report.deleted_objects;
                bytes += report.bytes_freed;
                crate::output::print_line(&format!(
                    "  {} {}: deleted {} object(s), freed {}{}{}",
                    plan.pipeline,
                    plan.table,
                    report.deleted_objects,
                    human_bytes(report.bytes_freed),
                    if report.failures.is_empty() {
                        String::new()
                    } else {
                        format!(", {} key(s) refused", report.failures.len())
                    },
                    if report.skipped_runs.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", {} run(s) skipped (became pending or running)",
                            report.skipped_runs.len()
                        )
                    }
                ));
                for failure in &report.failures {
                    eprintln!("    not deleted: {} ({})", failure.key, failure.reason);
                }
            }
            None => crate::output::print_line(&format!(
                "  {} {}: nothing deleted",
                plan.pipeline, plan.table
            )),
        }
    }
    crate::output::print_line(&format!(
        "deleted {objects} object(s), freed {}",
        human_bytes(bytes)
    ));
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

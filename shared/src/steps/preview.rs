//! `sync --dry-run`: what a run of a table would do — its cursor and ceiling, the first statement
//! it would send the source with an estimate of the rows, and the statements the load would run —
//! found by reading only: no lease, no object, no run, nothing in the target.

use crate::schema::Warehouse;
use chrono::Utc;
use serde::Serialize;

use crate::config::{Connection, LoadMode};
use crate::cursor::{Ceiling, Cursor};
use crate::error::Result;
use crate::extract::{self, ReadPreview};
use crate::load::sql::{self};
use crate::load::{self, CommittedRun, PlanTarget};
use crate::manifest::RunManifest;
use crate::naming::StorageLayout;
use crate::run::{RunContext, SyncMode};
use crate::watermark::PendingRun;

use super::watermark::{
    inspect_source, locate_table, new_run_id, start_cursor, target_name, SourceView,
};
use crate::load::target::not_a_warehouse;
use crate::services::Services;

/// A table's dry run.
#[derive(Debug, Clone, Serialize)]
pub struct RunPreview {
    /// Source table, `db.table`.
    pub table: String,
    /// How rows are selected.
    pub strategy: String,
    /// How rows meet the target.
    pub load: LoadMode,
    /// Target table, `schema.table`.
    pub target: String,
    /// The watermark's cursor (where the last run ended).
    pub cursor: Cursor,
    /// Where this run would start reading (the cursor moved back by `lookback`).
    pub start: Cursor,
    /// The run's upper bound, fixed from the source now.
    pub ceiling: Ceiling,
    /// The first statement extraction would send, and the rows it would read; absent for
    /// `redshift_only`.
    pub read: Option<ReadPreview>,
    /// Runs extracted earlier and waiting to be loaded.
    pub pending_runs: usize,
    /// The run holding the table's lease, if one does: a real sync would fail with `LeaseHeld`.
    pub locked_by: Option<String>,
    /// The statements of the load (creating the target if missing, then one transaction), with
    /// this run's files not yet known; absent for `backup_only`.
    pub load_sql: Option<String>,
    /// Why the run would read nothing whatever the source holds (its start is beyond its
    /// ceiling), when it would not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The `after_load` statements the load is followed by (the pipeline's, then the table's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_load: Vec<String>,
}

/// The dry run of `table` in `pipeline` under `mode` (with `limit`, as `sync --limit`).
pub async fn preview(
    services: &Services,
    pipeline_name: &str,
    table: &str,
    mode: SyncMode,
    limit: Option<u64>,
) -> Result<RunPreview> {
    let (pipeline_name, pipeline, table_config, table_id) =
        locate_table(services, Some(pipeline_name), table)?;
    let target = target_name(table_config, &table_id)?;
    let (dialect, warehouse_schema, iam_role) =
        match super::load::target_connection(services, pipeline)? {
            Connection::Postgres(postgres) => (Warehouse::Postgres, postgres.schema.as_str(), ""),
            Connection::Redshift(redshift) => (
                Warehouse::Redshift,
                redshift.schema.as_str(),
                redshift.iam_role.as_str(),
            ),
            Connection::Mysql(_) => return Err(not_a_warehouse(&pipeline.target)),
        };
    let watermark = services
        .watermarks(pipeline)
        .read(&pipeline_name, &table_id)
        .await?
        .map(|version| version.record);
    let cursor = watermark
        .as_ref()
        .map(|w| w.extract.cursor.clone())
        .unwrap_or_default();
    let SourceView {
        schema,
        key_columns,
        ceiling,
        ..
    } = inspect_source(services, pipeline, table_config, &table_id, mode).await?;
    let now = Utc::now();
    let run = RunContext {
        repair: None,
        pipeline: pipeline_name.clone(),
        table: table_id.clone(),
        target: target.clone(),
        run_id: new_run_id(now),
        mode,
        strategy: table_config.strategy.kind(),
        load_mode: table_config.load_mode(),
        start_cursor: start_cursor(&cursor, table_config)?,
        ceiling: ceiling.clone(),
        schema_fingerprint: schema.fingerprint(),
        key_columns,
        limit,
        lease_expires_at: now,
    };
    let mut read = if mode == SyncMode::RedshiftOnly {
        None
    } else {
        let source = services.source(pipeline).await?;
        let mut conn = source.conn().await?;
        let page_rows = extract::ExtractOptions::default().page_rows;
        // The plan the run would make (its order, its key ranges), so that the dry run shows the
        // statement and the order the run would really use, and why.
        let plan = source
            .within(
                "planning the run's read",
                extract::plan(
                    &mut conn,
                    &schema,
                    &run,
                    table_config,
                    pipeline.chunk_concurrency,
                ),
            )
            .await?;
        Some(extract::preview(
            &schema,
            &run,
            table_config,
            &plan,
            page_rows,
        )?)
    };
    let pending = watermark
        .as_ref()
        .map(|w| w.loadable_runs().to_vec())
        .unwrap_or_default();
    let bucket = services.bucket(pipeline);
    let load_sql = if mode == SyncMode::BackupOnly {
        None
    } else {
        let mut runs = load::committed_runs(&bucket, &pending).await?;
        if mode != SyncMode::RedshiftOnly {
            runs.push(this_run(&run, &schema, read.as_ref()));
        }
        let layout = StorageLayout::new(&pipeline.s3.prefix);
        let plan = load::plan(
            &PlanTarget {
                run: &run,
                table_config,
                schema: warehouse_schema,
                layout: &layout,
                max_runs: sql::MAX_RUNS_PER_WIRE_LOAD,
                max_runs_with_deletions: sql::MAX_RUNS_PER_WIRE_LOAD,
                iam_role,
                now,
            },
            &runs,
            &bucket,
        )?;
        match plan {
            Some(plan) => Some(format!(
                "{};\n\n{}",
                sql::create_target(dialect, &plan, &table_config.redshift_options())?,
                sql::load_script(dialect, &plan)?.to_sql()
            )),
            None => None,
        }
    };
    let warning = super::watermark::start_beyond_ceiling(&run.start_cursor, &ceiling);
    if let (Some(_), Some(read)) = (&warning, read.as_mut()) {
        read.estimated_rows = 0;
    }
    Ok(RunPreview {
        warning,
        table: table_id.to_string(),
        strategy: table_config.strategy.kind().to_string(),
        load: table_config.load_mode(),
        target: format!("{warehouse_schema}.{target}"),
        cursor,
        start: run.start_cursor,
        ceiling,
        read,
        pending_runs: pending.len(),
        locked_by: watermark
            .and_then(|w| w.lease)
            .map(|lease| lease.owner.to_string()),
        load_sql,
        after_load: match mode {
            SyncMode::BackupOnly => Vec::new(),
            _ => load::after_load::statements(pipeline, table_config)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        },
    })
}

/// The run a sync would extract, as the load would see it once committed (files unknown yet).
fn this_run(
    run: &RunContext,
    schema: &crate::schema::TableSchema,
    read: Option<&ReadPreview>,
) -> CommittedRun {
    let rows = read.map_or(0, |read| read.estimated_rows);
    CommittedRun {
        pending: PendingRun {
            run_id: run.run_id.clone(),
            manifest_key: String::new(),
            rows,
            bytes: 0,
            files: 0,
            committed_at: run.lease_expires_at,
            quarantine: None,
        },
        manifest: RunManifest {
            rows,
            ..RunManifest::without_files(run, schema.clone(), run.lease_expires_at)
        },
    }
}

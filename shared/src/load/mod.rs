//! Loading committed runs into the warehouse, exactly once.
//!
//! What is loaded is decided here and nowhere else: the table's pending runs, in the watermark's
//! order, each read from its committed run manifest — never a prefix listing, never a time
//! window. One load takes the longest prefix of pending runs written with the same schema (and,
//! through the Data API, as many as one batch holds); the rest wait for the next load.
//!
//! - [`sql`] builds every statement, for both dialects.
//! - [`wire`] runs them over the PostgreSQL protocol (PostgreSQL targets, Redshift `direct`),
//!   streaming Parquet into PostgreSQL with [`pg_copy`]; [`tunnel`] carries that protocol
//!   through an SSH bastion (`access: tunnel`, a `tunnel` block on a PostgreSQL target, and the
//!   Data API's fallback).
//! - [`data_api`] runs them through the Redshift Data API.
//! - [`stall_guard`] fails a wire-protocol connection that a stalled network leaves unanswered.
//!
//! This module never changes the watermark: `commit_load` does, with what the load reports.

pub mod after_load;
pub mod data_api;
pub mod pg_copy;
pub mod scd;
pub mod sql;
pub mod stall_guard;
pub mod target;
pub mod tunnel;
pub mod wire;

use chrono::{DateTime, Utc};

use crate::config::{DroppedColumns, LoadMode, ScdEffective, TableConfig};
use crate::error::{Error, Result};
use crate::manifest::{self, RunManifest};
use crate::naming::{self, RunId, StorageLayout, TableId};
use crate::run::RunContext;
use crate::schema::{drift_ddl, Drift, TableSchema, Warehouse};
use crate::storage::Bucket;
use crate::watermark::{LoadedRun, PendingRun};

pub use sql::{LoadPlan, PlannedRun, ScdPlan};

/// One run's row in the target's load ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The run.
    pub run_id: RunId,
    /// Rows copied into staging.
    pub rows_staged: u64,
    /// Rows the load inserted into the target for this run.
    pub rows_inserted: u64,
    /// Target rows the load deleted for this run (replaced by key, or by `replace`).
    pub rows_deleted: u64,
}

impl LedgerRow {
    /// A ledger row from a ledger query's row as text: `run_id, rows_staged, rows_inserted,
    /// rows_deleted` (a missing column reads as empty, and fails as not a count).
    pub fn from_text(row: &[String]) -> Result<Self> {
        let column = |i: usize| row.get(i).map(String::as_str).unwrap_or_default();
        Self::parse(column(0), column(1), column(2), column(3))
    }

    /// A ledger row from its columns as text.
    pub fn parse(run_id: &str, staged: &str, inserted: &str, deleted: &str) -> Result<Self> {
        let number = |text: &str, column: &str| {
            text.trim().parse::<u64>().map_err(|_| {
                Error::unexpected_answer(
                    "the target",
                    format!("the load ledger's `{column}` for run `{run_id}` (a count)"),
                    text,
                )
            })
        };
        Ok(LedgerRow {
            run_id: RunId::parse(run_id.trim())?,
            rows_staged: number(staged, "rows_staged")?,
            rows_inserted: number(inserted, "rows_inserted")?,
            rows_deleted: number(deleted, "rows_deleted")?,
        })
    }

    /// What `commit_load` needs.
    pub fn loaded(&self) -> LoadedRun {
        LoadedRun {
            run_id: self.run_id.clone(),
            rows_loaded: self.rows_inserted,
        }
    }
}

/// Refuses a target table that the ledger says another pipeline or source table loads into
/// (`owner`, as [`sql::foreign_ledger_owner`] found it): two pipelines writing one table would
/// overwrite each other's rows and add each other's columns. Checked before the schema step
/// changes anything.
pub fn refuse_foreign_target(plan: &LoadPlan, owner: Option<(String, String)>) -> Result<()> {
    match owner {
        None => Ok(()),
        Some((pipeline, source_table)) => Err(Error::TargetConflict {
            target: format!("{}.{}", plan.schema, plan.target),
            message: format!(
                "its load ledger holds runs of pipeline `{pipeline}` from `{source_table}`, and this is pipeline `{}` from `{}`; two tables cannot share one target: give one of them another `target_name` (or another target schema)",
                plan.pipeline, plan.source_table
            ),
        }),
    }
}

/// What the target holds for one table: its rows and its ledger's totals (`validate_counts`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetCounts {
    /// `COUNT(*)` of the target table; `None` when the table does not exist (never loaded).
    pub rows: Option<u64>,
    /// The ledger's sums over every run loaded into this target table.
    pub ledger: LedgerTotals,
}

/// The load ledger summed over one target table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerTotals {
    /// Runs loaded.
    pub runs: u64,
    /// Rows copied into staging.
    pub rows_staged: u64,
    /// Rows inserted into the target.
    pub rows_inserted: u64,
    /// Target rows deleted (replaced by key, or by `replace`).
    pub rows_deleted: u64,
    /// Runs among them loaded by `tidemark replay`, which the watermark does not count.
    #[serde(default)]
    pub replayed_runs: u64,
}

impl LedgerTotals {
    /// The totals from the five columns of [`sql::ledger_totals`], as text.
    pub fn parse(columns: [&str; 5]) -> Result<Self> {
        let number = |i: usize| {
            columns[i].trim().parse::<u64>().map_err(|_| {
                Error::unexpected_answer(
                    "the target",
                    "the load ledger's totals (counts)",
                    columns[i],
                )
            })
        };
        Ok(LedgerTotals {
            runs: number(0)?,
            rows_staged: number(1)?,
            rows_inserted: number(2)?,
            rows_deleted: number(3)?,
            replayed_runs: number(4)?,
        })
    }

    /// Rows the target should hold if only tidemark's loads changed it.
    pub fn net_rows(&self) -> i128 {
        i128::from(self.rows_inserted) - i128::from(self.rows_deleted)
    }
}

/// A pending run with its committed manifest.
#[derive(Debug, Clone)]
pub struct CommittedRun {
    /// The watermark's entry.
    pub pending: PendingRun,
    /// The manifest it names.
    pub manifest: RunManifest,
}

/// Reads the manifest of every pending run, in the watermark's order. A missing or unreadable
/// manifest fails the load: it never guesses the files from a listing.
pub async fn committed_runs(bucket: &Bucket, pending: &[PendingRun]) -> Result<Vec<CommittedRun>> {
    let mut runs = Vec::with_capacity(pending.len());
    for run in pending {
        let uri = bucket.uri(&run.manifest_key);
        let manifest = read_run_manifest(bucket, &run.manifest_key)
            .await?
            .ok_or_else(|| Error::Corrupt {
                uri: uri.clone(),
                reason: format!("the manifest of pending run `{}` is missing", run.run_id),
                fix: "restore it from S3 versioning, or reset the table with `--drop-pending` and sync again".to_owned(),
            })?;
        if manifest.run_id != run.run_id {
            return Err(Error::Corrupt {
                uri,
                reason: format!(
                    "it describes run `{}`, but the watermark expects run `{}`",
                    manifest.run_id, run.run_id
                ),
                fix:
                    "restore the manifest, or reset the table with `--drop-pending` and sync again"
                        .to_owned(),
            });
        }
        runs.push(CommittedRun {
            pending: run.clone(),
            manifest,
        });
    }
    Ok(runs)
}

/// The run manifest at `key`; `None` when there is none.
pub async fn read_run_manifest(bucket: &Bucket, key: &str) -> Result<Option<RunManifest>> {
    match bucket.get(key).await? {
        Some(object) => Ok(Some(manifest::parse_json(&object.body, &bucket.uri(key))?)),
        None => Ok(None),
    }
}

/// Where the plan's target lives and what it may hold at most.
#[derive(Debug, Clone)]
pub struct PlanTarget<'a> {
    /// The run that is loading (its context names the table, target and keys).
    pub run: &'a RunContext,
    /// The table's config (cursor column).
    pub table_config: &'a TableConfig,
    /// The warehouse schema.
    pub schema: &'a str,
    /// The pipeline's storage layout (COPY manifest keys).
    pub layout: &'a StorageLayout,
    /// The most runs one load may take.
    pub max_runs: usize,
    /// The most runs one load may take when deletion runs are among them.
    pub max_runs_with_deletions: usize,
    /// The IAM role for Redshift COPY (empty for PostgreSQL).
    pub iam_role: &'a str,
    /// The ledger's `loaded_at`.
    pub now: DateTime<Utc>,
}

/// The plan for the longest prefix of `runs` written with one schema, at most `max_runs`;
/// `None` when there is no run. `bucket` turns keys into `s3://` URIs.
pub fn plan(
    target: &PlanTarget<'_>,
    runs: &[CommittedRun],
    bucket: &Bucket,
) -> Result<Option<LoadPlan>> {
    let Some(first) = runs.first() else {
        return Ok(None);
    };
    let run = target.run;
    let table = run.table.clone();
    let fingerprint = &first.manifest.schema_fingerprint;
    let mut planned: Vec<PlannedRun> = runs
        .iter()
        .take(target.max_runs.max(1))
        .take_while(|r| r.manifest.schema_fingerprint == *fingerprint)
        .map(|r| PlannedRun {
            run_id: r.manifest.run_id.clone(),
            manifest_key: r.pending.manifest_key.clone(),
            files: r.manifest.files.clone(),
            rows: r.manifest.rows,
            copy_manifest_uri: bucket.uri(&target.layout.copy_manifest_key(
                &run.pipeline,
                &table,
                &r.manifest.run_id,
            )),
            deletion: r.manifest.deletion,
            version_time: version_time(target.table_config, &r.manifest),
        })
        .collect();
    if planned.iter().any(|r| r.deletion) {
        planned.truncate(target.max_runs_with_deletions.max(1));
    }
    plan_with_runs(target, &first.manifest, planned).map(Some)
}

/// When a type-2 version read by the run begins (`effective: loaded_at`: when the run began), or
/// when the versions a deletion run closes end (`effective: cursor`: where the sync that found
/// them gone began reading, in the cursor's own time — the watermark less `lookback`, which no
/// row read later precedes, so a key that comes back opens a version after its deleted one);
/// `None` otherwise.
fn version_time(table_config: &TableConfig, manifest: &RunManifest) -> Option<String> {
    if !table_config.keeps_history() {
        return None;
    }
    let run_time = || {
        manifest
            .run_id
            .started_at()
            .map(|at| at.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
    };
    match table_config.scd.effective {
        ScdEffective::LoadedAt => run_time(),
        ScdEffective::Cursor if manifest.deletion => manifest
            .start_cursor
            .timestamp
            .clone()
            .or_else(|| manifest.ceiling.timestamp.clone())
            .or_else(run_time),
        ScdEffective::Cursor => None,
    }
}

/// A plan with no run, for the schema step alone, with the schema `manifest`'s run found: the
/// first sync of an empty source table still creates its (empty) target table.
pub fn schema_only_plan(target: &PlanTarget<'_>, manifest: &RunManifest) -> Result<LoadPlan> {
    plan_with_runs(target, manifest, Vec::new())
}

/// The plan for `planned`, runs written with `manifest`'s schema and load mode.
fn plan_with_runs(
    target: &PlanTarget<'_>,
    manifest: &RunManifest,
    planned: Vec<PlannedRun>,
) -> Result<LoadPlan> {
    let run = target.run;
    let table_schema = manifest.schema.clone();
    let key_columns = run
        .key_columns
        .iter()
        .map(|key| {
            table_schema
                .column(key)
                .map(|c| c.target_name.clone())
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "key column `{key}` of `{}` is not a column of the run's files",
                        run.table
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let cursor_column = target
        .table_config
        .strategy
        .cursor_column()
        .and_then(|name| table_schema.column(name))
        .map(|c| c.target_name.clone());
    let mode = manifest.load_mode;
    if mode == LoadMode::Merge && key_columns.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "`{}` has no key columns, so `load: merge` cannot match rows; set `key_columns`, or use `load: append`",
            run.table
        )));
    }
    let scd = scd_plan(
        target.table_config,
        &table_schema,
        &run.key_columns,
        &run.table,
    )?;
    Ok(LoadPlan {
        pipeline: run.pipeline.clone(),
        source_table: run.table.to_string(),
        schema: target.schema.to_owned(),
        target: run.target.clone(),
        mode,
        table_schema,
        key_columns,
        cursor_column,
        runs: planned,
        iam_role: target.iam_role.to_owned(),
        loaded_at: target.now,
        dropped_columns: target.table_config.dropped_columns,
        deletes: target.table_config.deletes,
        keep_newer: false,
        scd,
    })
}

/// The history of a type-2 dimension: its columns' target names (folded), and the tracked
/// columns (target names; default: every column outside the key, `key_columns` as the source
/// names them), each a column of the run's files; `begin` and `config check --source` check it
/// against the source's schema before a run reads anything.
pub fn scd_plan(
    table_config: &TableConfig,
    table_schema: &TableSchema,
    key_columns: &[String],
    table: &TableId,
) -> Result<Option<ScdPlan>> {
    if !table_config.keeps_history() {
        return Ok(None);
    }
    let names = &table_config.scd;
    let tracked = match &table_config.scd_columns {
        Some(columns) => columns
            .iter()
            .map(|name| {
                table_schema
                    .column(name)
                    .map(|c| c.target_name.clone())
                    .ok_or_else(|| {
                        Error::Schema(format!(
                            "`scd_columns` of `{table}` names `{name}`, which is not a column the table syncs (its columns: {}); fix the name, or leave `scd_columns` out to track every column outside the key",
                            table_schema.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?,
        None => table_schema
            .columns
            .iter()
            .filter(|c| !key_columns.contains(&c.name))
            .map(|c| c.target_name.clone())
            .collect(),
    };
    let history: Vec<&str> = [&names.valid_from, &names.valid_to, &names.current_flag]
        .into_iter()
        .map(String::as_str)
        .chain(table_config.surrogate_key.as_deref())
        .collect();
    let mut folded = Vec::new();
    for name in history {
        let target_name = naming::target_identifier(name)?;
        if let Some(clash) = table_schema
            .columns
            .iter()
            .find(|c| c.target_name == target_name)
        {
            return Err(Error::Schema(format!(
                "`{}` of `{table}` would become the target column `{target_name}`, which its type-2 history uses (`scd`, `surrogate_key`): give the history column another name, or leave `{}` out with `columns: {{ exclude: [...] }}`",
                clash.name, clash.name
            )));
        }
        folded.push(target_name);
    }
    Ok(Some(ScdPlan {
        valid_from: folded[0].clone(),
        valid_to: folded[1].clone(),
        current_flag: folded[2].clone(),
        surrogate_key: folded.get(3).cloned(),
        tracked,
    }))
}

/// The statements the schema step runs for `drifts`, each on its own, outside any transaction:
/// the automatic drift ([`drift_ddl`], which refuses incompatible drift), then what
/// `dropped_columns` does with target columns the source no longer feeds.
pub fn schema_changes(
    plan: &LoadPlan,
    drifts: &[Drift],
    warehouse: Warehouse,
) -> Result<Vec<String>> {
    let mut ddl = drift_ddl(&plan.schema, &plan.target, drifts, warehouse)?;
    ddl.extend(missing_column_ddl(plan, drifts)?);
    Ok(ddl)
}

/// The schema step's part for target columns no source column feeds (a column dropped, renamed
/// or excluded in the source): under `dropped_columns: keep`, a warning per column, which the
/// sync shows; under `drop`, one `ALTER TABLE … DROP COLUMN` each.
fn missing_column_ddl(plan: &LoadPlan, drifts: &[Drift]) -> Result<Vec<String>> {
    let qualified = naming::quote_warehouse_qualified(
        &naming::target_identifier(&plan.schema)?,
        &naming::target_identifier(&plan.target)?,
    );
    let mut ddl = Vec::new();
    for drift in drifts {
        let Drift::MissingInSource { column } = drift else {
            continue;
        };
        match plan.dropped_columns {
            DroppedColumns::Keep => tracing::warn!(
                table = %plan.source_table,
                target = %qualified,
                column = %column,
                "target column `{column}` is no longer fed by the source (dropped, renamed or excluded there): it stays, NULL in rows loaded from now on; set `dropped_columns: drop` to drop it"
            ),
            DroppedColumns::Drop => ddl.push(format!(
                "ALTER TABLE {qualified} DROP COLUMN {}",
                naming::quote_warehouse(column)
            )),
        }
    }
    Ok(ddl)
}

/// How the existing target differs from the load's schema (the one the load mode declares).
/// An incompatible change to the cursor or a key column cannot be left out with `exclude` —
/// the run refuses that — so its hint names the reload instead.
pub fn target_drift(
    plan: &LoadPlan,
    existing: &[crate::schema::TargetColumn],
    warehouse: crate::schema::Warehouse,
) -> Vec<crate::schema::Drift> {
    let mut drifts = sql::declared_schema(plan).drift(existing, warehouse);
    for drift in &mut drifts {
        if let crate::schema::Drift::Incompatible { column, hint, .. } = drift {
            let role = if plan.cursor_column.as_ref() == Some(column) {
                "cursor"
            } else if plan.key_columns.contains(column) {
                "key"
            } else {
                continue;
            };
            *hint = format!(
                "it is the table's {role} column, which cannot be left out, and a warehouse column cannot change to the source's type in place: reload the table (drop the target table, `tidemark watermark reset -t {} --yes`, sync)",
                plan.source_table
            );
        }
    }
    drifts
}

/// Writes each run's Redshift COPY manifest (exact byte sizes) next to the data, for COPY.
pub async fn write_copy_manifests(
    bucket: &Bucket,
    layout: &StorageLayout,
    plan: &LoadPlan,
) -> Result<()> {
    let table = TableId::parse(&plan.source_table)?;
    for run in &plan.runs {
        let key = layout.copy_manifest_key(&plan.pipeline, &table, &run.run_id);
        let body = sql::copy_manifest(&run.files, |k| bucket.uri(k));
        bucket.put(&key, body.into_bytes().into()).await?;
    }
    Ok(())
}

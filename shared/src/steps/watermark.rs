//! The watermark steps: `begin`, `commit`, `commit_load`, `fail` of a run, and the operator's
//! actions (`get`, `list`, `set`, `reset`, `history`, `restore`, `unlock`, `set_count`,
//! `validate_counts`).
//! Each takes a payload type and returns one; the Lambda `tidemark-watermark` and the CLI both
//! call these, so their behaviour cannot differ.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{CdcStrategy, LoadMode, TableConfig};
use crate::error::{Error, Result};
use crate::load::{LedgerTotals, TargetCounts};
use crate::manifest::{self, ChunkManifest, Cursor, DataFile, RunManifest};
use crate::naming::{self, RunId, StorageLayout, TableId};
use crate::run::{RunContext, SyncMode};
use crate::schema;
use crate::storage::PutOutcome;
use crate::watermark::{
    compare_cursors, CountField, CountMode, HistoryEntry, LoadedRun, Stage, Totals, Watermark,
};

use super::{process_is_alive, Services};

/// Every request the watermark function answers, chosen by `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WatermarkRequest {
    /// Check a sync's input and expand it into the tables to run (first state of the machine).
    Prepare(PrepareRequest),
    /// Summarize the per-table results of a sync (last state of the machine).
    Summarize(SummarizeRequest),
    /// Start a run: take the lease, fix the ceiling.
    Begin(BeginRequest),
    /// Commit an extracted run.
    Commit(CommitRequest),
    /// Record loaded runs and release the lease.
    CommitLoad(CommitLoadRequest),
    /// Record a failure and release the lease.
    Fail(FailRequest),
    /// Show a table's watermark.
    Get(GetRequest),
    /// Every table of a pipeline, one line each.
    List(ListRequest),
    /// Move the cursor by hand.
    Set(SetRequest),
    /// Back to the start.
    Reset(ResetRequest),
    /// The kept earlier versions.
    History(TableRequest),
    /// Put a kept version back.
    Restore(RestoreRequest),
    /// Release a stuck lease.
    Unlock(TableRequest),
    /// Correct a total.
    SetCount(SetCountRequest),
    /// Compare the watermark's totals with the target, its load ledger and the source.
    ValidateCounts(TableRequest),
}

/// `prepare`: the execution input, as given by a schedule, the console or the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareRequest {
    /// `{"pipeline": …, "tables": […] (optional), "mode": … (optional), "limit": … (optional)}`.
    pub input: SyncInput,
}

/// The state machine's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncInput {
    /// Pipeline name.
    pub pipeline: String,
    /// Tables to sync (`db.table`); absent or null: every table of the pipeline.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// `full` (default), `backup_only` or `redshift_only`.
    #[serde(default)]
    pub mode: SyncMode,
    /// Run-wide cap on extracted rows per table.
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `prepare`'s answer: the Map's items and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncPlan {
    /// Pipeline name.
    pub pipeline: String,
    /// Tables to sync, in configuration order.
    pub tables: Vec<String>,
    /// Which stages run.
    pub mode: SyncMode,
    /// Row cap per table.
    pub limit: Option<u64>,
    /// Tables at once.
    pub table_concurrency: u32,
    /// Chunks of one table at once.
    pub chunk_concurrency: u32,
}

/// One table's outcome, as the state machine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOutcome {
    /// Source table.
    pub table: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// The run, when `begin` got that far.
    #[serde(default)]
    pub run_id: Option<RunId>,
    /// Rows extracted by this run.
    #[serde(default)]
    pub rows_extracted: u64,
    /// Files written.
    #[serde(default)]
    pub files: u64,
    /// Bytes written.
    #[serde(default)]
    pub bytes: u64,
    /// Runs loaded, with rows.
    #[serde(default)]
    pub loaded: Vec<LoadedRun>,
    /// The caught error (`{"Error": …, "Cause": …}`), when failed.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

/// `summarize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummarizeRequest {
    /// Pipeline name.
    pub pipeline: String,
    /// Per-table outcomes from the Map.
    pub results: Vec<TableOutcome>,
}

/// `summarize`'s answer and the execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Tables that succeeded.
    pub succeeded: u64,
    /// Tables that failed.
    pub failed: u64,
    /// One line per failed table, or `all N tables synced`.
    pub message: String,
    /// Every table's outcome.
    pub tables: Vec<TableOutcome>,
}

/// `prepare`: checks the input against the configuration and lists the tables to run.
pub fn prepare(services: &Services, request: &PrepareRequest) -> Result<SyncPlan> {
    let input = &request.input;
    let pipeline = services.config.pipeline(&input.pipeline)?;
    let tables = match &input.tables {
        None => pipeline.tables.keys().cloned().collect(),
        Some(tables) if tables.is_empty() => {
            return Err(Error::InvalidRequest(
                "`tables` is empty; leave it out to sync every table of the pipeline".to_owned(),
            ))
        }
        Some(tables) => {
            for table in tables {
                TableId::parse(table)?;
                if !pipeline.tables.contains_key(table) {
                    return Err(Error::InvalidRequest(format!(
                        "table `{table}` is not in pipeline `{}`; its tables are: {}",
                        input.pipeline,
                        pipeline
                            .tables
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
            tables.clone()
        }
    };
    if input.limit == Some(0) {
        return Err(Error::InvalidRequest(
            "`limit` must be at least 1".to_owned(),
        ));
    }
    Ok(SyncPlan {
        pipeline: input.pipeline.clone(),
        tables,
        mode: input.mode,
        limit: input.limit,
        table_concurrency: pipeline.table_concurrency,
        chunk_concurrency: pipeline.chunk_concurrency,
    })
}

/// `summarize`: counts outcomes and words the failures (the execution fails if any table did).
pub fn summarize(request: &SummarizeRequest) -> SyncSummary {
    let failed: Vec<&TableOutcome> = request
        .results
        .iter()
        .filter(|outcome| outcome.status != "succeeded")
        .collect();
    let message = if failed.is_empty() {
        format!("all {} tables synced", request.results.len())
    } else {
        failed
            .iter()
            .map(|outcome| {
                format!(
                    "{} failed: {}",
                    outcome.table,
                    outcome
                        .error
                        .as_ref()
                        .map(describe_error)
                        .unwrap_or_else(|| "unknown error".to_owned())
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    SyncSummary {
        pipeline: request.pipeline.clone(),
        succeeded: (request.results.len() - failed.len()) as u64,
        failed: failed.len() as u64,
        message,
        tables: request.results.clone(),
    }
}

/// Names a table of a pipeline. `pipeline` defaults to the one that holds the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRequest {
    /// Pipeline name; default: the only pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table, `db.table`.
    pub table: String,
}

/// `begin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeginRequest {
    /// Pipeline name.
    pub pipeline: String,
    /// Source table, `db.table`.
    pub table: String,
    /// Which stages run. Default `full`.
    #[serde(default)]
    pub mode: SyncMode,
    /// Run-wide row cap.
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `commit`: the run and the chunk manifests its extraction wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The run.
    pub run: RunContext,
    /// S3 keys of the chunk manifests, one per chunk.
    pub chunk_manifest_keys: Vec<String>,
}

/// What `commit` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitResult {
    /// The run.
    pub run_id: RunId,
    /// Its manifest's key.
    pub manifest_key: String,
    /// Rows extracted.
    pub rows: u64,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Runs now waiting to be loaded, this one included.
    pub pending_runs: u64,
    /// False when this run had been committed before (a retry): nothing changed.
    pub newly_committed: bool,
}

/// `commit_load`: what the load step reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitLoadRequest {
    /// The run holding the lease.
    pub run: RunContext,
    /// Runs the load step reports loaded. Advisory: commit_load re-reads the target's ledger and
    /// commits what it holds; a run listed here but not there stays pending (logged at WARN).
    pub loaded: Vec<LoadedRun>,
}

/// `fail`: a caught error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// Pipeline name.
    pub pipeline: String,
    /// Source table.
    pub table: String,
    /// The failed run, if `begin` got far enough to name one.
    #[serde(default)]
    pub run_id: Option<RunId>,
    /// Which stage failed.
    pub stage: Stage,
    /// The Step Functions error object (`{"Error": …, "Cause": …}`) or any text.
    pub error: serde_json::Value,
}

/// `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// Also list the files of pending runs.
    #[serde(default)]
    pub show_files: bool,
}

/// `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// Pipeline name; default: every pipeline.
    #[serde(default)]
    pub pipeline: Option<String>,
}

/// `set`: fields not given are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Integer id: the key of a table whose key (or `id_only` id column) is one integer column.
    #[serde(default)]
    pub id: Option<String>,
    /// The key values, in key order: one per key column (`key_columns`, else the primary key;
    /// the id column for `id_only`). Give this or `id`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    /// Accept a cursor beyond the source's clock (or, for `id_only`, beyond its largest id):
    /// every sync then succeeds with 0 rows until the source reaches it. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// `reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// Also forget the pending runs (they will never be loaded).
    #[serde(default)]
    pub drop_pending: bool,
}

/// `restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// A version name from `history`.
    pub version: String,
}

/// `set_count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCountRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// Which total. Default `rows_loaded`.
    #[serde(default = "default_count_field")]
    pub field: CountField,
    /// `absolute` or `additive`.
    pub mode: CountMode,
    /// The number (may be negative with `additive`).
    pub count: i64,
}

fn default_count_field() -> CountField {
    CountField::RowsLoaded
}

/// What an operator edit did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditResult {
    /// What changed, in words.
    pub message: String,
    /// The watermark after the edit.
    pub watermark: Watermark,
}

/// `get`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetResult {
    /// The watermark, or `None` before the first run.
    pub watermark: Option<Watermark>,
    /// With `show_files`: each pending run's files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_files: Vec<RunFiles>,
    /// With `show_files`: the files of the last loaded run, while its manifest is kept (`s3clean`
    /// deletes loaded runs past retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_loaded_files: Option<RunFiles>,
}

/// The files of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFiles {
    /// The run.
    pub run_id: RunId,
    /// Its files.
    pub files: Vec<DataFile>,
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    /// Pipeline.
    pub pipeline: String,
    /// Source table.
    pub table: String,
    /// The cursor.
    pub cursor: Cursor,
    /// Seconds between now and the cursor's timestamp, when it has one.
    pub lag_seconds: Option<i64>,
    /// Extraction status.
    pub extract_status: crate::watermark::StageStatus,
    /// Load status.
    pub load_status: crate::watermark::StageStatus,
    /// Runs waiting to be loaded.
    pub pending_runs: usize,
    /// Whether a lease is held.
    pub locked: bool,
}

/// Resolves `pipeline` (or the unique pipeline holding `table`) and the table's config.
pub fn locate_table<'c>(
    services: &'c Services,
    pipeline: Option<&str>,
    table: &str,
) -> Result<(
    String,
    &'c crate::config::Pipeline,
    &'c TableConfig,
    TableId,
)> {
    let table_id = TableId::parse(table)?;
    let name = match pipeline {
        Some(name) => name.to_owned(),
        None => {
            let holders: Vec<&String> = services
                .config
                .pipelines
                .iter()
                .filter(|(_, p)| p.tables.contains_key(table))
                .map(|(name, _)| name)
                .collect();
            match holders.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(Error::InvalidRequest(format!(
                        "table `{table}` is in no pipeline of the configuration; `tidemark config list` shows the tables"
                    )))
                }
                many => {
                    return Err(Error::InvalidRequest(format!(
                        "table `{table}` is in several pipelines ({}); name one with `-p`",
                        many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
    };
    let pipeline = services.config.pipeline(&name)?;
    let table_config = pipeline.tables.get(table).ok_or_else(|| {
        Error::InvalidRequest(format!("table `{table}` is not in pipeline `{name}`"))
    })?;
    Ok((name, pipeline, table_config, table_id))
}

pub(super) fn target_name(table_config: &TableConfig, table: &TableId) -> Result<String> {
    table_config.target_table(table)
}

/// A new run id: the time now and 48 random bits.
pub fn new_run_id(now: DateTime<Utc>) -> RunId {
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    RunId::new(now, random)
}

/// `begin`: takes the lease, checks the source schema, fixes the ceiling, returns the run context.
pub async fn begin(services: &Services, request: &BeginRequest) -> Result<RunContext> {
    let (pipeline_name, pipeline, table_config, table) =
        locate_table(services, Some(&request.pipeline), &request.table)?;
    let target = target_name(table_config, &table)?;
    let store = services.watermarks(pipeline);
    let now = Utc::now();
    let run_id = new_run_id(now);
    let local = services.local_owner().cloned();
    let (watermark, ()) = store
        .update(&pipeline_name, &table, &target, &run_id, now, |w| {
            w.take_lease(
                &run_id,
                now,
                pipeline.lease_ttl.0,
                local.clone(),
                process_is_alive,
            )?;
            if request.mode != SyncMode::RedshiftOnly {
                w.mark_extract_started(&run_id, now);
            }
            Ok(())
        })
        .await?;
    let lease_expires_at = watermark
        .lease
        .as_ref()
        .map(|lease| lease.expires_at)
        .unwrap_or(now);
    let prepared = prepare_run(
        services,
        &pipeline_name,
        pipeline,
        table_config,
        &table,
        request.mode,
        RunIds {
            this: &run_id,
            // A run from the start of the table (a first load, a reset) re-reads every row: no
            // earlier schema to compare with.
            previous: watermark
                .extract
                .last_committed_run_id
                .as_ref()
                .filter(|_| !watermark.extract.cursor.is_start()),
        },
    )
    .await;
    let PreparedRun {
        ceiling,
        fingerprint,
        key_columns,
        backfill_reason,
    } = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            let message = err.to_string();
            store
                .update(&pipeline_name, &table, &target, &run_id, Utc::now(), |w| {
                    w.apply_failure(Stage::Extract, &message, Utc::now());
                    w.release_lease(&run_id);
                    Ok(())
                })
                .await?;
            return Err(err);
        }
    };
    let mut start = start_cursor(&watermark.extract.cursor, table_config)?;
    if let Some(reason) = backfill_reason.filter(|_| !start.is_start()) {
        if backfills(table_config) {
            // Rows loaded before hold NULL in an added column, or a value MySQL has since
            // rewritten: re-read the whole table, through the same merge.
            tracing::warn!(
                table = %table,
                "{reason}: this run re-reads the whole table so that rows loaded before get the source's values (a backfill)"
            );
            start = Cursor::default();
        } else {
            tracing::warn!(
                table = %table,
                "{reason}: rows loaded before keep their old values under `cdc_strategy: {}` with `load: {}`; to reload them, `tidemark watermark reset -t {table} --yes` and sync",
                table_config.cdc_strategy,
                table_config.load_mode()
            );
        }
    }
    if let Some(warning) = start_beyond_ceiling(&start, &ceiling) {
        tracing::warn!(table = %table, "{warning}");
    }
    Ok(RunContext {
        pipeline: pipeline_name,
        table: table.to_string(),
        target,
        run_id,
        mode: request.mode,
        strategy: table_config.cdc_strategy,
        load_mode: table_config.load_mode(),
        start_cursor: start,
        ceiling,
        schema_fingerprint: fingerprint,
        key_columns,
        limit: request.limit,
        lease_expires_at,
    })
}

/// The target's rows are keyed by the source's primary key of the runs loaded so far (unless
/// `key_columns` fixes the key): a changed primary key would merge by another key than the
/// target's, and a PostgreSQL target refuses the rows ("duplicate key"). Refused as drift, with
/// the two ways out.
fn refuse_a_changed_primary_key(
    table: &TableId,
    table_config: &TableConfig,
    before: &schema::TableSchema,
    now: &schema::TableSchema,
) -> Result<()> {
    let same = before.primary_key.len() == now.primary_key.len()
        && before
            .primary_key
            .iter()
            .zip(&now.primary_key)
            .all(|(a, b)| a.eq_ignore_ascii_case(b));
    if same || table_config.key_columns.is_some() {
        return Ok(());
    }
    Err(Error::SchemaDrift {
        table: table.to_string(),
        details: format!(
            "the source's primary key changed from ({}) to ({}), and the target's rows are keyed by the old one; keep loading by the old key with `key_columns: [{}]` (if it still identifies a row), or reload under the new key: drop the target table, `tidemark watermark reset -t {table} --yes`, and sync",
            before.primary_key.join(", "),
            now.primary_key.join(", "),
            before.primary_key.join(", ")
        ),
    })
}

/// Whether an added column makes the next run re-read the whole table: for a cursor strategy
/// under `merge`. `full_sync` reads everything anyway; `append` keeps the versions it has (an
/// old version gets no value for a column added after it was read); `custom_sql` starts where
/// its own statement says.
fn backfills(table_config: &TableConfig) -> bool {
    matches!(
        table_config.cdc_strategy,
        CdcStrategy::Hybrid | CdcStrategy::TimestampOnly | CdcStrategy::IdOnly
    ) && table_config.load_mode() == LoadMode::Merge
}

/// Why a run starting at `start` reads nothing however the source changes, when its timestamp
/// lies beyond the run's `ceiling` (a `watermark set` into the future, or a source clock moved
/// back): every such sync succeeds with 0 rows until the source's clock passes the cursor.
pub fn start_beyond_ceiling(start: &Cursor, ceiling: &manifest::Ceiling) -> Option<String> {
    match (&start.timestamp, &ceiling.timestamp) {
        (Some(start), Some(ceiling)) if start > ceiling => Some(format!(
            "the cursor `{start}` is after this run's ceiling `{ceiling}` (the source's clock less `lag`): syncs read nothing until the source's clock passes it; if that is a mistake, move it back with `tidemark watermark set`"
        )),
        _ => None,
    }
}

/// The run `begin` starts, and the table's last committed run (whose schema it compares).
#[derive(Clone, Copy)]
struct RunIds<'a> {
    this: &'a RunId,
    previous: Option<&'a RunId>,
}

/// What `begin` learns from the source and S3 before the run starts.
struct PreparedRun {
    ceiling: manifest::Ceiling,
    fingerprint: String,
    key_columns: Vec<String>,
    /// Why rows loaded before need the source's values again ([`schema::TableSchema::backfill_reason`]).
    backfill_reason: Option<String>,
}

async fn prepare_run(
    services: &Services,
    pipeline_name: &str,
    pipeline: &crate::config::Pipeline,
    table_config: &TableConfig,
    table: &TableId,
    mode: SyncMode,
    runs: RunIds<'_>,
) -> Result<PreparedRun> {
    let RunIds {
        this: run_id,
        previous: previous_run,
    } = runs;
    let SourceView {
        schema,
        key_columns,
        ceiling,
        ..
    } = inspect_source(services, pipeline, table_config, table, mode).await?;
    // The schema travels in S3, not in the payload: commit embeds it in the run manifest.
    let layout = StorageLayout::new(&pipeline.s3.prefix);
    let backfill_reason = match previous_run {
        Some(previous) => {
            let key = layout.run_manifest_key(pipeline_name, table, previous);
            match crate::load::read_run_manifest(&services.bucket(pipeline), &key).await? {
                // A manifest s3clean removed says nothing: no backfill is started on a guess.
                None => None,
                Some(manifest) => {
                    refuse_a_changed_primary_key(table, table_config, &manifest.schema, &schema)?;
                    schema.backfill_reason(&manifest.schema)
                }
            }
        }
        None => None,
    };
    let schema_key = layout.run_schema_key(pipeline_name, table, run_id);
    let body = serde_json::to_vec_pretty(&schema)
        .map_err(|err| Error::InvalidRequest(format!("cannot encode the schema: {err}")))?;
    services
        .bucket(pipeline)
        .put(&schema_key, body.into())
        .await?;
    Ok(PreparedRun {
        ceiling,
        fingerprint: schema.fingerprint(),
        key_columns,
        backfill_reason,
    })
}

/// What a run needs to know of its source table before it starts; reading it changes nothing.
pub(super) struct SourceView {
    /// The table's schema as extraction writes it.
    pub schema: schema::TableSchema,
    /// The columns that identify a row in the target (source names).
    pub key_columns: Vec<String>,
    /// The run's upper bound (none for `redshift_only`).
    pub ceiling: manifest::Ceiling,
    /// `id_only`'s id column: `cursor_column`, else a one-column key.
    pub id_column: Option<String>,
}

/// Discovers the table's schema, checks its key columns against the load mode, and fixes the
/// ceiling from the source.
pub(super) async fn inspect_source(
    services: &Services,
    pipeline: &crate::config::Pipeline,
    table_config: &TableConfig,
    table: &TableId,
    mode: SyncMode,
) -> Result<SourceView> {
    let source = services.source(pipeline).await?;
    let mut conn = source.conn().await?;
    let schema = source
        .within(
            "reading the table's schema",
            schema::discover(&mut conn, table, &table_config.schema_options()),
        )
        .await?;
    if services.config.target_warehouse(pipeline)? == schema::Warehouse::Postgres {
        // Checked here, before a run exists: a run committed with a name the target cannot take
        // could never load.
        for column in &schema.columns {
            if naming::check_postgres_identifier(&column.target_name).is_err() {
                return Err(Error::Schema(format!(
                    "column `{}` of `{table}` is {} bytes long, and PostgreSQL names are at most {} bytes (it would cut the name): leave it out with `columns: {{ exclude: [{}] }}`, or rename it in the source",
                    column.name,
                    column.target_name.len(),
                    naming::POSTGRES_IDENTIFIER_MAX_BYTES,
                    column.name
                )));
            }
        }
    }
    let key_columns = match &table_config.key_columns {
        Some(keys) => keys.clone(),
        None => schema.primary_key.clone(),
    };
    for key in &key_columns {
        if schema.column(key).is_none() {
            return Err(Error::InvalidRequest(format!(
                "key column `{key}` of `{table}` is not an extracted column; check `key_columns` and `columns`"
            )));
        }
    }
    if let (Some(configured), LoadMode::Merge | LoadMode::Replace) =
        (&table_config.key_columns, table_config.load_mode())
    {
        // `merge` keeps one row per key: a key that is not unique collapses rows silently.
        let unique = source
            .within(
                "reading the unique indexes",
                crate::source::unique_keys(&mut conn, table),
            )
            .await?;
        if crate::source::covering_index(&unique, configured).is_none() {
            return Err(Error::Schema(format!(
                "`key_columns` ({}) of `{table}` are not unique in the source: no PRIMARY KEY or UNIQUE index over NOT NULL columns lies within them, so `load: {}` would keep one row of every group sharing them; list columns such an index covers{}",
                configured.join(", "),
                table_config.load_mode(),
                match unique.first() {
                    Some(index) => format!(" (for example `key_columns: [{}]`)", index.join(", ")),
                    None => ", or use `load: append`".to_owned(),
                }
            )));
        }
    }
    if table_config.load_mode() == LoadMode::Merge {
        // `DELETE … USING` matches by `=`, and NULL never equals NULL: rows with a NULL key
        // would pile up in the target at every merge.
        if let Some(nullable) = key_columns
            .iter()
            .find(|key| schema.column(key).is_some_and(|c| c.nullable))
        {
            return Err(Error::Schema(format!(
                "key column `{nullable}` of `{table}` may hold NULL, which never matches in a merge (rows with a NULL key would be inserted again at every sync); use NOT NULL key columns in `key_columns`"
            )));
        }
    }
    if key_columns.is_empty() && table_config.load_mode() == LoadMode::Merge {
        return Err(Error::InvalidRequest(format!(
            "`{table}` has no primary key, so `load: merge` cannot match rows; set `key_columns`, or use `load: append`"
        )));
    }
    let id_column = match table_config.cdc_strategy {
        CdcStrategy::IdOnly => table_config
            .cursor_column
            .clone()
            .or_else(|| (key_columns.len() == 1).then(|| key_columns[0].clone())),
        _ => None,
    };
    let ceiling = if mode == SyncMode::RedshiftOnly {
        manifest::Ceiling::default()
    } else {
        source
            .within(
                "reading the run's ceiling",
                crate::source::ceiling(&mut conn, table, table_config, id_column.as_deref()),
            )
            .await?
    };
    Ok(SourceView {
        schema,
        key_columns,
        ceiling,
        id_column,
    })
}

/// Where a run starts reading: the watermark's cursor, moved back by `lookback` (which restarts
/// the key tie-break, so every row of the overlap window is read again), or for `id_only` by
/// `id_lookback` ids.
pub(super) fn start_cursor(cursor: &Cursor, table_config: &TableConfig) -> Result<Cursor> {
    let lookback = table_config.lookback().0;
    if let (CdcStrategy::IdOnly, [id]) = (table_config.cdc_strategy, cursor.key.as_slice()) {
        // `id_only`: back by `id_lookback` ids, for rows whose transaction committed after a
        // later id's. A non-integer id column keeps its cursor.
        let back = i128::from(table_config.id_lookback());
        return Ok(match id.parse::<i128>() {
            Ok(id) if back > 0 => Cursor {
                timestamp: None,
                key: vec![(id - back).to_string()],
            },
            _ => cursor.clone(),
        });
    }
    match &cursor.timestamp {
        Some(timestamp) if !lookback.is_zero() => {
            let parsed = chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|_| {
                    Error::InvalidRequest(format!(
                        "the watermark's cursor `{timestamp}` is not a timestamp; fix it with `tidemark watermark set`"
                    ))
                })?;
            let back = chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::zero());
            Ok(Cursor {
                timestamp: Some((parsed - back).format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
                key: Vec::new(),
            })
        }
        _ => Ok(cursor.clone()),
    }
}

/// `commit`: writes the run manifest from the chunk manifests, advances the cursor, queues the
/// run for loading. Committing a run again is a no-op that answers the same.
pub async fn commit(services: &Services, request: &CommitRequest) -> Result<CommitResult> {
    let run = &request.run;
    let (pipeline, _, layout) = run.resolve(&services.config)?;
    let table = run.table_id()?;
    let bucket = services.bucket(pipeline);
    let store = services.watermarks(pipeline);
    let mut chunks = Vec::with_capacity(request.chunk_manifest_keys.len());
    for key in &request.chunk_manifest_keys {
        let object = bucket.get(key).await?.ok_or_else(|| {
            Error::InvalidRequest(format!(
                "chunk manifest {} does not exist; the extraction did not finish",
                bucket.uri(key)
            ))
        })?;
        let chunk: ChunkManifest = manifest::parse_json(&object.body, &bucket.uri(key))?;
        if chunk.run_id != run.run_id || chunk.table != run.table {
            return Err(Error::InvalidRequest(format!(
                "chunk manifest {} belongs to run `{}` of `{}`, not to this run",
                bucket.uri(key),
                chunk.run_id,
                chunk.table
            )));
        }
        if chunk.schema_fingerprint != run.schema_fingerprint {
            return Err(Error::InvalidRequest(format!(
                "chunk {} was written with another schema than the run began with; re-run the sync",
                chunk.chunk
            )));
        }
        chunks.push(chunk);
    }
    chunks.sort_by_key(|chunk| chunk.chunk);
    let schema_key = layout.run_schema_key(&run.pipeline, &table, &run.run_id);
    let schema_object = bucket.get(&schema_key).await?.ok_or_else(|| {
        Error::InvalidRequest(format!(
            "{} is missing: `begin` of run `{}` did not finish; start a new sync",
            bucket.uri(&schema_key),
            run.run_id
        ))
    })?;
    let schema: schema::TableSchema =
        manifest::parse_json(&schema_object.body, &bucket.uri(&schema_key))?;
    let files: Vec<DataFile> = chunks.iter().flat_map(|c| c.files.clone()).collect();
    let max_cursor = files
        .iter()
        .map(|file| &file.max_cursor)
        .max_by(|a, b| compare_cursors(a, b))
        .cloned();
    let manifest_key = layout.run_manifest_key(&run.pipeline, &table, &run.run_id);
    let run_manifest = RunManifest {
        max_cursor,
        rows: files.iter().map(|f| f.rows).sum(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        zero_dates_nulled: chunks.iter().map(|c| c.zero_dates_nulled).sum(),
        oversize_truncated: chunks.iter().map(|c| c.oversize_truncated).sum(),
        oversize_nulled: chunks.iter().map(|c| c.oversize_nulled).sum(),
        files,
        ..RunManifest::without_files(run, schema, Utc::now())
    };
    let body = serde_json::to_vec_pretty(&run_manifest)
        .map_err(|err| Error::InvalidRequest(format!("cannot encode the run manifest: {err}")))?;
    // Written once: a retried commit finds the manifest already there and keeps the first one.
    let run_manifest = match bucket.put_if_absent(&manifest_key, body.into()).await? {
        PutOutcome::Written(_) => run_manifest,
        PutOutcome::PreconditionFailed => {
            let existing = bucket.get(&manifest_key).await?.ok_or_else(|| {
                Error::InvalidRequest(format!("{} vanished", bucket.uri(&manifest_key)))
            })?;
            manifest::parse_json(&existing.body, &bucket.uri(&manifest_key))?
        }
    };
    crate::faults::point("before_commit")?;
    let now = Utc::now();
    let (watermark, newly_committed) = store
        .update(&run.pipeline, &table, &run.target, &run.run_id, now, |w| {
            w.require_lease(&run.run_id)?;
            refuse_a_limit_that_cannot_progress(run, &run_manifest, &w.extract.cursor)?;
            let newly = w.apply_commit(&run_manifest, &manifest_key, now)?;
            if run.mode == SyncMode::BackupOnly {
                w.release_lease(&run.run_id);
            }
            Ok(newly)
        })
        .await?;
    if newly_committed && run.strategy == CdcStrategy::FullSync && run_manifest.rows == 0 {
        // An empty read replaces nothing: it is more often a mistake (a source truncated during
        // a migration, a view the user may no longer read) than the truth, and emptying a
        // warehouse table cannot be undone. Said, so that nobody mistakes it for a sync.
        tracing::warn!(
            table = %table,
            target = %run.target,
            "the source table is empty: a `replace` target keeps the rows it has (an empty read is never loaded); truncate the target yourself if the source is really empty"
        );
    }
    if newly_committed {
        crate::metrics::run_committed(
            &run.pipeline,
            &table,
            &run.run_id,
            run_manifest.rows,
            run_manifest.bytes,
            run_manifest.files.len() as u64,
        )
        .emit();
    }
    crate::faults::point("after_commit")?;
    Ok(CommitResult {
        run_id: run.run_id.clone(),
        manifest_key,
        rows: run_manifest.rows,
        files: run_manifest.files.len() as u64,
        bytes: run_manifest.bytes,
        pending_runs: watermark.pending_runs.len() as u64,
        newly_committed,
    })
}

/// A run cut short by `--limit` whose rows all lie at or before the stored cursor re-read only
/// the lookback window: committing it would succeed without moving the cursor, and so would
/// every later run with that limit. Refused, with the fix.
fn refuse_a_limit_that_cannot_progress(
    run: &RunContext,
    manifest: &RunManifest,
    cursor: &Cursor,
) -> Result<()> {
    let (Some(limit), Some(max)) = (run.limit, &manifest.max_cursor) else {
        return Ok(());
    };
    if manifest.rows < limit || compare_cursors(max, cursor).is_gt() {
        return Ok(());
    }
    Err(Error::InvalidRequest(format!(
        "`--limit {limit}` is no larger than the rows `{}` re-reads in its lookback window: this run read {} row(s), none after the cursor ({cursor}), so the cursor cannot move; raise `--limit` above the rows changed within `lookback` of the cursor, or sync without `--limit`; nothing was committed",
        run.table, manifest.rows
    )))
}

/// `commit_load`: marks runs loaded, counts their rows once, releases the lease.
pub async fn commit_load(services: &Services, request: &CommitLoadRequest) -> Result<Watermark> {
    let run = &request.run;
    let (pipeline, table_config, _) = run.resolve(&services.config)?;
    let table = run.table_id()?;
    crate::faults::point("before_commit_load")?;
    // The payload's `loaded` list is not trusted: a forged or stale one would drop runs the
    // warehouse never received from the pending list (and cleanup would then delete their
    // files). The target's own ledger says which of the pending runs are loaded.
    let target = target_name(table_config, &table)?;
    let pending: Vec<RunId> = services
        .watermarks(pipeline)
        .read(&run.pipeline, &table)
        .await?
        .map(|v| {
            v.record
                .pending_runs
                .iter()
                .map(|p| p.run_id.clone())
                .collect()
        })
        .unwrap_or_default();
    let ledger = if pending.is_empty() {
        Vec::new()
    } else {
        super::load::TargetClient::connect(services, &pipeline.target)
            .await?
            .ledger_rows(&target, &pending)
            .await?
    };
    let loaded: Vec<LoadedRun> = ledger.iter().map(|row| row.loaded()).collect();
    let unconfirmed: Vec<&str> = request
        .loaded
        .iter()
        .filter(|claimed| !loaded.iter().any(|l| l.run_id == claimed.run_id))
        .map(|claimed| claimed.run_id.as_str())
        .collect();
    if !unconfirmed.is_empty() {
        tracing::warn!(table = %table, runs = %unconfirmed.join(", "), "commit_load was told these runs were loaded, but the target's ledger does not hold them: they stay pending");
    }
    let now = Utc::now();
    let (watermark, ()) = services
        .watermarks(pipeline)
        .update(&run.pipeline, &table, &run.target, &run.run_id, now, |w| {
            w.require_lease(&run.run_id)?;
            w.apply_load(&loaded, now);
            w.release_lease(&run.run_id);
            Ok(())
        })
        .await?;
    if let Some(lag) = cursor_lag(&watermark.extract.cursor, now) {
        crate::metrics::freshness(&run.pipeline, &table, lag).emit();
    }
    Ok(watermark)
}

/// `fail`: records the error on the stage and releases the run's lease; the cursor stays.
pub async fn fail(services: &Services, request: &FailRequest) -> Result<Watermark> {
    let (pipeline_name, pipeline, table_config, table) =
        locate_table(services, Some(&request.pipeline), &request.table)?;
    let target = target_name(table_config, &table)?;
    let message = describe_error(&request.error);
    let error_type = request
        .error
        .get("Error")
        .and_then(|e| e.as_str())
        .unwrap_or("NonRetryable");
    crate::metrics::run_failed(&pipeline_name, &table, request.run_id.as_ref(), error_type).emit();
    let tag = match &request.run_id {
        Some(run_id) => run_id.clone(),
        None => RunId::parse("failed-begin").map_err(|e| Error::InvalidRequest(e.to_string()))?,
    };
    let now = Utc::now();
    let (watermark, ()) = services
        .watermarks(pipeline)
        .update(&pipeline_name, &table, &target, &tag, now, |w| {
            w.apply_failure(request.stage, &message, now);
            if let Some(run_id) = &request.run_id {
                w.release_lease(run_id);
            }
            Ok(())
        })
        .await?;
    Ok(watermark)
}

/// Text of a Step Functions error object (`Error` and `Cause`), or of any JSON: `Kind: message`,
/// with a Lambda error's JSON `Cause` reduced to its `errorMessage`.
pub fn describe_error(error: &serde_json::Value) -> String {
    match error {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Object(map) => {
            let kind = map.get("Error").and_then(|v| v.as_str()).unwrap_or("Error");
            let cause = map
                .get("Cause")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            // A Lambda error's Cause is itself JSON with `errorMessage`.
            let message = serde_json::from_str::<serde_json::Value>(cause)
                .ok()
                .and_then(|c| {
                    c.get("errorMessage")
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| cause.to_owned());
            format!("{kind}: {message}")
        }
        other => other.to_string(),
    }
}

/// `get`.
pub async fn get(services: &Services, request: &GetRequest) -> Result<GetResult> {
    let (pipeline_name, pipeline, _, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    let watermark = services
        .watermarks(pipeline)
        .read(&pipeline_name, &table)
        .await?
        .map(|v| v.record);
    let mut pending_files = Vec::new();
    let mut last_loaded_files = None;
    if let (true, Some(watermark)) = (request.show_files, &watermark) {
        let bucket = services.bucket(pipeline);
        for run in &watermark.pending_runs {
            let manifest = read_run_manifest(&bucket, &run.manifest_key)
                .await?
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "run manifest {} of pending run `{}` is missing",
                        bucket.uri(&run.manifest_key),
                        run.run_id
                    ))
                })?;
            pending_files.push(RunFiles {
                run_id: run.run_id.clone(),
                files: manifest.files,
            });
        }
        if let Some(run_id) = &watermark.load.last_loaded_run_id {
            let layout = StorageLayout::new(&pipeline.s3.prefix);
            let key = layout.run_manifest_key(&pipeline_name, &table, run_id);
            last_loaded_files = read_run_manifest(&bucket, &key)
                .await?
                .map(|manifest| RunFiles {
                    run_id: run_id.clone(),
                    files: manifest.files,
                });
        }
    }
    Ok(GetResult {
        watermark,
        pending_files,
        last_loaded_files,
    })
}

/// The run manifest at `key`, or `None` when there is none.
async fn read_run_manifest(
    bucket: &crate::storage::Bucket,
    key: &str,
) -> Result<Option<RunManifest>> {
    match bucket.get(key).await? {
        Some(object) => Ok(Some(manifest::parse_json(&object.body, &bucket.uri(key))?)),
        None => Ok(None),
    }
}

/// `list`.
pub async fn list(services: &Services, request: &ListRequest) -> Result<Vec<ListEntry>> {
    let now = Utc::now();
    let mut entries = Vec::new();
    for (name, pipeline) in &services.config.pipelines {
        if request
            .pipeline
            .as_deref()
            .is_some_and(|wanted| wanted != name)
        {
            continue;
        }
        let records = services.watermarks(pipeline).list(name).await?;
        for table in pipeline.tables.keys() {
            let record = records.iter().find(|r| r.table == *table);
            let cursor = record.map(|r| r.extract.cursor.clone()).unwrap_or_default();
            let lag_seconds = cursor_lag(&cursor, now).map(|lag| lag.as_secs() as i64);
            entries.push(ListEntry {
                pipeline: name.clone(),
                table: table.clone(),
                cursor,
                lag_seconds,
                extract_status: record.map(|r| r.extract.status).unwrap_or_default(),
                load_status: record.map(|r| r.load.status).unwrap_or_default(),
                pending_runs: record.map(|r| r.pending_runs.len()).unwrap_or(0),
                locked: record.is_some_and(|r| r.lease.is_some()),
            });
        }
    }
    Ok(entries)
}

async fn edit(
    services: &Services,
    pipeline: Option<&str>,
    table: &str,
    apply: impl FnMut(&mut Watermark) -> Result<String>,
) -> Result<EditResult> {
    let (pipeline_name, pipeline, table_config, table) = locate_table(services, pipeline, table)?;
    let target = target_name(table_config, &table)?;
    let tag = RunId::parse("manual").map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let (watermark, message) = services
        .watermarks(pipeline)
        .update(&pipeline_name, &table, &target, &tag, Utc::now(), apply)
        .await?;
    Ok(EditResult { message, watermark })
}

/// `set`: checks the new cursor against the source first — as many key values as the table's
/// key has, and not beyond the source's clock or largest id unless `force` — then writes it.
pub async fn set(services: &Services, request: &SetRequest) -> Result<EditResult> {
    let (_, pipeline, table_config, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    let key = match (&request.id, &request.key) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidRequest(
                "give `id` or `key`, not both".to_owned(),
            ))
        }
        (Some(id), None) => {
            let parsed: i128 = id
                .trim()
                .parse()
                .map_err(|_| Error::InvalidRequest(format!("`{id}` is not an integer id")))?;
            Some(vec![parsed.to_string()])
        }
        (None, key) => key.clone(),
    };
    let timestamp = request
        .timestamp
        .as_deref()
        .map(crate::watermark::normalize_timestamp)
        .transpose()?;
    let strategy = table_config.cdc_strategy;
    if strategy == CdcStrategy::FullSync {
        return Err(Error::InvalidRequest(format!(
            "`{table}` uses `full_sync`, which reads the whole table every run and has no cursor to set"
        )));
    }
    if timestamp.is_some() && strategy == CdcStrategy::IdOnly {
        return Err(Error::InvalidRequest(format!(
            "`{table}` uses `id_only`: its cursor is an id; set it with `--id` (or `--key`)"
        )));
    }
    let view = inspect_source(services, pipeline, table_config, &table, SyncMode::Full).await?;
    let key_names: Vec<String> = match strategy {
        CdcStrategy::IdOnly => view.id_column.clone().into_iter().collect(),
        _ => view.key_columns.clone(),
    };
    if let Some(key) = &key {
        if key.len() != key_names.len() {
            return Err(Error::InvalidRequest(format!(
                "`{table}`'s cursor key is ({}): {} value(s), in that order, and {} were given; set it with one `--key VALUE` per column{}",
                key_names.join(", "),
                key_names.len(),
                key.len(),
                if key_names.len() == 1 { ", or `--id N`" } else { "" }
            )));
        }
    }
    if !request.force {
        let beyond = match (&timestamp, &key, strategy) {
            (Some(timestamp), _, _) => {
                let source = services.source(pipeline).await?;
                let mut conn = source.conn().await?;
                let now = source
                    .within("reading the source clock", crate::source::clock(&mut conn))
                    .await?;
                (timestamp.as_str() > now.as_str()).then(|| {
                    format!("`{timestamp}` is after the source's clock (`NOW()` = `{now}`, UTC)")
                })
            }
            (None, Some(key), CdcStrategy::IdOnly) => match (key.first(), &view.ceiling.id) {
                (Some(id), Some(max)) if crate::watermark::compare_values(id, max).is_gt() => Some(
                    format!("id `{id}` is beyond the table's largest id `{max}`"),
                ),
                _ => None,
            },
            _ => None,
        };
        if let Some(beyond) = beyond {
            return Err(Error::InvalidRequest(format!(
                "{beyond}: every sync would succeed with 0 rows until the source gets there; check the value (TIMESTAMP columns are in UTC), or pass `--force` if that is what you want"
            )));
        }
    }
    edit(services, request.pipeline.as_deref(), &request.table, |w| {
        w.set_cursor(timestamp.as_deref(), key.clone(), Utc::now())
    })
    .await
}

/// `reset`.
pub async fn reset(services: &Services, request: &ResetRequest) -> Result<EditResult> {
    edit(services, request.pipeline.as_deref(), &request.table, |w| {
        Ok(w.reset(request.drop_pending, Utc::now()))
    })
    .await
}

/// `unlock`.
pub async fn unlock(services: &Services, request: &TableRequest) -> Result<EditResult> {
    edit(services, request.pipeline.as_deref(), &request.table, |w| {
        Ok(w.unlock(Utc::now()))
    })
    .await
}

/// `set_count`.
pub async fn set_count(services: &Services, request: &SetCountRequest) -> Result<EditResult> {
    edit(services, request.pipeline.as_deref(), &request.table, |w| {
        w.set_count(request.field, request.mode, request.count, Utc::now())
    })
    .await
}

/// How one comparison of `validate_counts` came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// The numbers agree.
    Consistent,
    /// The numbers differ the way the strategy or load mode predicts (append keeps every version
    /// of a row; pending runs are not loaded yet).
    Expected,
    /// The numbers differ and nothing in the configuration explains it.
    Mismatch,
}

/// One comparison of `validate_counts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountCheck {
    /// `watermark_loaded_vs_ledger`, `watermark_extracted_vs_ledger`, `ledger_vs_target` or
    /// `source_vs_target`.
    pub name: String,
    /// How it came out.
    pub outcome: CheckOutcome,
    /// Which numbers were compared, and why they may differ.
    pub detail: String,
    /// The command that corrects it, when tidemark knows the right number.
    pub fix: Option<String>,
}

/// `validate_counts`' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountReport {
    /// Pipeline.
    pub pipeline: String,
    /// Source table.
    pub table: String,
    /// Target table, `schema.table`.
    pub target: String,
    /// How rows are found.
    pub strategy: CdcStrategy,
    /// How rows meet the target.
    pub load_mode: LoadMode,
    /// The watermark's totals (zero when it has none).
    pub watermark: Totals,
    /// Rows in committed runs not loaded yet.
    pub pending_rows: u64,
    /// The extraction cursor the source count stops at.
    pub cursor: Cursor,
    /// `COUNT(*)` of the source up to the cursor (the whole table without a cursor).
    pub source_rows: u64,
    /// The target's rows and its ledger's sums.
    pub target_counts: TargetCounts,
    /// Each comparison.
    pub checks: Vec<CountCheck>,
    /// `consistent` when no check is a mismatch, else `mismatch`.
    pub verdict: String,
}

/// `validate_counts`: the watermark's totals against the target's `COUNT(*)`, the load ledger's
/// sums for that target, and the source's `COUNT(*)` up to the cursor. It changes nothing; a
/// mismatch it can correct comes with the exact `set-count` command.
pub async fn validate_counts(services: &Services, request: &TableRequest) -> Result<CountReport> {
    let (pipeline_name, pipeline, table_config, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    let target = target_name(table_config, &table)?;
    let watermark = services
        .watermarks(pipeline)
        .read(&pipeline_name, &table)
        .await?
        .map(|v| v.record);
    let totals = watermark
        .as_ref()
        .map(|w| w.totals.clone())
        .unwrap_or_default();
    let pending_rows: u64 = watermark
        .iter()
        .flat_map(|w| &w.pending_runs)
        .map(|r| r.rows)
        .sum();
    let cursor = watermark
        .as_ref()
        .map(|w| w.extract.cursor.clone())
        .unwrap_or_default();
    let (column, value) = match table_config.cdc_strategy {
        CdcStrategy::Hybrid | CdcStrategy::TimestampOnly => {
            (table_config.cursor_column.clone(), cursor.timestamp.clone())
        }
        CdcStrategy::IdOnly => (
            table_config.cursor_column.clone().or_else(|| {
                table_config
                    .key_columns
                    .as_ref()
                    .filter(|keys| keys.len() == 1)
                    .map(|keys| keys[0].clone())
            }),
            cursor.key.first().cloned(),
        ),
        CdcStrategy::FullSync | CdcStrategy::CustomSql => (None, None),
    };
    let source = services.source(pipeline).await?;
    let mut conn = source.conn().await?;
    let source_rows = source
        .within(
            "counting the source's rows",
            crate::source::count_rows_up_to(&mut conn, &table, column.as_deref(), value.as_deref()),
        )
        .await?;
    let client = super::load::TargetClient::connect(services, &pipeline.target).await?;
    let target_counts = client.counts(&target).await?;
    let schema = match services.config.connections.get(&pipeline.target) {
        Some(crate::config::Connection::Postgres(c)) => c.schema.clone(),
        Some(crate::config::Connection::Redshift(c)) => c.schema.clone(),
        _ => String::new(),
    };
    let select = format!(
        "-t {}{}",
        request.table,
        request
            .pipeline
            .as_ref()
            .map(|p| format!(" -p {p}"))
            .unwrap_or_default()
    );
    let checks = count_checks(
        &CountFacts {
            totals: &totals,
            pending_rows,
            source_rows,
            target: &target_counts,
            load_mode: table_config.load_mode(),
            strategy: table_config.cdc_strategy,
        },
        &select,
    );
    let verdict = if checks.iter().any(|c| c.outcome == CheckOutcome::Mismatch) {
        "mismatch"
    } else {
        "consistent"
    };
    Ok(CountReport {
        pipeline: pipeline_name,
        table: request.table.clone(),
        target: format!("{schema}.{target}"),
        strategy: table_config.cdc_strategy,
        load_mode: table_config.load_mode(),
        watermark: totals,
        pending_rows,
        cursor,
        source_rows,
        target_counts,
        checks,
        verdict: verdict.to_owned(),
    })
}

/// The numbers `validate_counts` compares.
struct CountFacts<'a> {
    totals: &'a Totals,
    pending_rows: u64,
    source_rows: u64,
    target: &'a TargetCounts,
    load_mode: LoadMode,
    strategy: CdcStrategy,
}

/// The comparisons, worded for an operator. `select` is the command line's `-t T [-p P]`.
fn count_checks(facts: &CountFacts<'_>, select: &str) -> Vec<CountCheck> {
    let ledger: &LedgerTotals = &facts.target.ledger;
    let totals = facts.totals;
    let check = |name: &str, outcome, detail: String, fix: Option<String>| CountCheck {
        name: name.to_owned(),
        outcome,
        detail,
        fix,
    };
    let mut checks = Vec::new();
    checks.push(if totals.rows_loaded == ledger.rows_inserted {
        check(
            "watermark_loaded_vs_ledger",
            CheckOutcome::Consistent,
            format!("the watermark's rows_loaded {} equals the rows the ledger's {} run(s) inserted", totals.rows_loaded, ledger.runs),
            None,
        )
    } else {
        check(
            "watermark_loaded_vs_ledger",
            CheckOutcome::Mismatch,
            format!(
                "the watermark counts {} rows loaded but the target's ledger records {} rows inserted by {} run(s); the ledger is written in each load's own transaction, so it is right: the watermark's total was edited by hand (`set-count`) or restored from an older version",
                totals.rows_loaded, ledger.rows_inserted, ledger.runs
            ),
            Some(format!(
                "tidemark watermark-count set-count {select} --count {} --mode absolute",
                ledger.rows_inserted
            )),
        )
    });
    let accounted = ledger.rows_staged + facts.pending_rows;
    checks.push(if totals.rows_extracted == accounted {
        check(
            "watermark_extracted_vs_ledger",
            CheckOutcome::Consistent,
            format!("the watermark's rows_extracted {} equals the rows staged by loaded runs plus the rows of pending runs", totals.rows_extracted),
            None,
        )
    } else {
        check(
            "watermark_extracted_vs_ledger",
            CheckOutcome::Mismatch,
            format!(
                "the watermark counts {} rows extracted but loaded runs staged {} and pending runs hold {} ({accounted} in all); runs dropped by `reset --drop-pending` stay counted as extracted, and a hand edit or restore also explains it",
                totals.rows_extracted, ledger.rows_staged, facts.pending_rows
            ),
            Some(format!(
                "tidemark watermark-count set-count {select} --count {accounted} --mode absolute --field rows-extracted"
            )),
        )
    });
    let net = ledger.net_rows();
    checks.push(match facts.target.rows {
        None if ledger.runs == 0 => check(
            "ledger_vs_target",
            CheckOutcome::Consistent,
            "the target table does not exist yet and the ledger records no load".to_owned(),
            None,
        ),
        Some(rows) if i128::from(rows) == net => check(
            "ledger_vs_target",
            CheckOutcome::Consistent,
            format!("the target holds {rows} rows, what the ledger's loads net (inserted − deleted)"),
            None,
        ),
        rows => check(
            "ledger_vs_target",
            CheckOutcome::Mismatch,
            format!(
                "the target holds {} rows but the ledger's loads net {net} ({} inserted − {} deleted): rows were changed in the target outside tidemark (deleted, truncated, inserted by hand) or it was dropped and recreated; a full reload (`watermark reset`, then `sync`) rebuilds it",
                rows.map(|r| r.to_string()).unwrap_or_else(|| "no".to_owned()),
                ledger.rows_inserted,
                ledger.rows_deleted
            ),
            None,
        ),
    });
    let target = facts.target.rows.unwrap_or(0);
    let source = facts.source_rows;
    let pending = facts.pending_rows;
    let (outcome, detail) = match facts.load_mode {
        _ if target == source => (
            CheckOutcome::Consistent,
            format!("source and target both hold {source} rows up to the cursor"),
        ),
        LoadMode::Append if target > source => (
            CheckOutcome::Expected,
            format!("the target holds {target} rows, the source {source}: `append` keeps every extracted version of a row, so updated rows appear more than once"),
        ),
        _ if target < source && source - target <= pending => (
            CheckOutcome::Expected,
            format!("the target holds {target} rows, the source {source}: {pending} rows are in runs extracted but not loaded yet (`sync --redshift-only` loads them)"),
        ),
        LoadMode::Replace => (
            CheckOutcome::Mismatch,
            format!("the target holds {target} rows, the source {source}: `replace` copies the whole table at each sync, so the source changed since the last one (the next sync replaces the target)"),
        ),
        _ if target > source => (
            CheckOutcome::Mismatch,
            format!("the target holds {target} rows, the source {source} up to the cursor: `merge` collapses updates by key, so the extra rows were deleted in the source (incremental syncs do not see hard deletes) or inserted in the target by hand"),
        ),
        _ if facts.strategy == CdcStrategy::IdOnly => (
            CheckOutcome::Mismatch,
            format!("the target holds {target} rows, the source {source} up to the cursor: rows at or below the cursor's id were never extracted — their transaction committed after a later id's, by more ids than `id_lookback` re-reads, or the cursor was moved forward by hand; raise `id_lookback`, then `watermark set --id` to a lower id and `sync` to reload them"),
        ),
        _ => (
            CheckOutcome::Mismatch,
            format!("the target holds {target} rows, the source {source} up to the cursor: rows at or before the cursor were never extracted — they committed later than `lag` + `lookback` allows, or the cursor was moved forward by hand; `watermark set` to an earlier point (or `reset`) and `sync` reloads them"),
        ),
    };
    checks.push(check("source_vs_target", outcome, detail, None));
    checks
}

/// `history`.
pub async fn history(services: &Services, request: &TableRequest) -> Result<Vec<HistoryEntry>> {
    let (pipeline_name, pipeline, _, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    services
        .watermarks(pipeline)
        .history(&pipeline_name, &table)
        .await
}

/// `restore`.
pub async fn restore(services: &Services, request: &RestoreRequest) -> Result<Watermark> {
    let (pipeline_name, pipeline, _, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    services
        .watermarks(pipeline)
        .restore(&pipeline_name, &table, &request.version, Utc::now())
        .await
}

/// Runs any watermark request and returns its answer as JSON.
pub async fn handle(services: &Services, request: &WatermarkRequest) -> Result<serde_json::Value> {
    fn json<T: Serialize>(value: T) -> Result<serde_json::Value> {
        serde_json::to_value(value)
            .map_err(|err| Error::InvalidRequest(format!("cannot encode the answer: {err}")))
    }
    match request {
        WatermarkRequest::Prepare(r) => json(prepare(services, r)?),
        WatermarkRequest::Summarize(r) => json(summarize(r)),
        WatermarkRequest::Begin(r) => json(begin(services, r).await?),
        WatermarkRequest::Commit(r) => json(commit(services, r).await?),
        WatermarkRequest::CommitLoad(r) => json(commit_load(services, r).await?),
        WatermarkRequest::Fail(r) => json(fail(services, r).await?),
        WatermarkRequest::Get(r) => json(get(services, r).await?),
        WatermarkRequest::List(r) => json(list(services, r).await?),
        WatermarkRequest::Set(r) => json(set(services, r).await?),
        WatermarkRequest::Reset(r) => json(reset(services, r).await?),
        WatermarkRequest::History(r) => json(history(services, r).await?),
        WatermarkRequest::Restore(r) => json(restore(services, r).await?),
        WatermarkRequest::Unlock(r) => json(unlock(services, r).await?),
        WatermarkRequest::SetCount(r) => json(set_count(services, r).await?),
        WatermarkRequest::ValidateCounts(r) => json(validate_counts(services, r).await?),
    }
}

/// Parses a payload into a request, with an error that lists what is accepted.
pub fn parse_request(payload: serde_json::Value) -> Result<WatermarkRequest> {
    serde_json::from_value(payload).map_err(|err| {
        Error::InvalidRequest(format!(
            "invalid watermark payload: {err}; actions are prepare, summarize, begin, commit, commit_load, fail, get, list, set, reset, history, restore, unlock, set_count, validate_counts (README: Lambda payloads)"
        ))
    })
}

/// How far the cursor's timestamp is behind `now`, for the freshness metric.
fn cursor_lag(cursor: &Cursor, now: DateTime<Utc>) -> Option<std::time::Duration> {
    let at =
        chrono::NaiveDateTime::parse_from_str(cursor.timestamp.as_deref()?, "%Y-%m-%d %H:%M:%S%.f")
            .ok()?;
    (now.naive_utc() - at).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(facts: &CountFacts<'_>) -> Vec<CheckOutcome> {
        count_checks(facts, "-t shop.orders")
            .into_iter()
            .map(|c| c.outcome)
            .collect()
    }

    fn target(rows: u64, inserted: u64, deleted: u64, staged: u64) -> TargetCounts {
        TargetCounts {
            rows: Some(rows),
            ledger: LedgerTotals {
                runs: 2,
                rows_staged: staged,
                rows_inserted: inserted,
                rows_deleted: deleted,
            },
        }
    }

    #[test]
    fn append_keeps_updated_rows_and_pending_runs_explain_a_short_target() {
        let totals = Totals {
            rows_extracted: 15,
            rows_loaded: 12,
            ..Totals::default()
        };
        // 10 source rows, 2 of them updated once: append holds 12, merge would hold 10.
        let appended = target(12, 12, 0, 12);
        let facts = CountFacts {
            totals: &totals,
            pending_rows: 3,
            source_rows: 10,
            target: &appended,
            load_mode: LoadMode::Append,
            strategy: CdcStrategy::Hybrid,
        };
        use CheckOutcome::*;
        assert_eq!(
            outcomes(&facts),
            [Consistent, Consistent, Consistent, Expected]
        );
        let merged = target(10, 12, 2, 12);
        let merge = CountFacts {
            target: &merged,
            source_rows: 13,
            load_mode: LoadMode::Merge,
            ..facts
        };
        assert_eq!(
            outcomes(&merge),
            [Consistent, Consistent, Consistent, Expected]
        );
        let short = CountFacts {
            source_rows: 14,
            ..merge
        };
        assert_eq!(outcomes(&short)[3], Mismatch, "more missing than pending");
        let ids = CountFacts {
            strategy: CdcStrategy::IdOnly,
            ..short
        };
        let checks = count_checks(&ids, "-t shop.orders");
        assert!(
            checks[3].detail.contains("id_lookback"),
            "{}",
            checks[3].detail
        );
    }

    #[test]
    fn a_hand_edited_total_gets_the_command_that_restores_the_ledgers_number() {
        let totals = Totals {
            rows_extracted: 10,
            rows_loaded: 7,
            ..Totals::default()
        };
        let loaded = target(10, 10, 0, 10);
        let checks = count_checks(
            &CountFacts {
                totals: &totals,
                pending_rows: 0,
                source_rows: 10,
                target: &loaded,
                load_mode: LoadMode::Merge,
                strategy: CdcStrategy::Hybrid,
            },
            "-t shop.orders -p p",
        );
        assert_eq!(checks[0].outcome, CheckOutcome::Mismatch);
        assert_eq!(
            checks[0].fix.as_deref(),
            Some(
                "tidemark watermark-count set-count -t shop.orders -p p --count 10 --mode absolute"
            )
        );
        assert!(checks[1..]
            .iter()
            .all(|c| c.outcome == CheckOutcome::Consistent));
    }
}

//! A run's life on its watermark: `begin`, `commit`, `commit_load`, `fail`; and the watermark
//! function's dispatch, which also serves the sync's `prepare` and `summarize` ([`super::sync`]).
//! Each takes a payload type and returns one; the Lambda `tidemark-watermark` and the CLI's local
//! runner both call these, so their behaviour cannot differ. Operator actions are in
//! [`super::operator`], served by a function of their own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{CdcStrategy, DeletePolicy, LoadMode, Strategy, TableConfig};
use crate::cursor::{Ceiling, Cursor, CursorTimestamp};
use crate::deletion::{self, Reconciled};
use crate::error::{Error, Result};
use crate::lineage::{self, EventType, RunFacts};
use crate::manifest::{self, ChunkManifest, DataFile, RunManifest};
use crate::naming::{self, RunId, StorageLayout, TableId};
use crate::quality;
use crate::run::{RepairRun, RunContext, SyncMode};
use crate::schema;
use crate::storage::PutOutcome;
use crate::watermark::{LoadedRun, Stage, Watermark};

use super::process_is_alive;
use super::sync::{
    prepare, record_outcome, summarize, PrepareRequest, RecordOutcomeRequest, SummarizeRequest,
};
use crate::services::Services;

/// Every request the watermark function answers, chosen by `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WatermarkRequest {
    /// Check a sync's input and expand it into the tables to run (first state of the machine).
    Prepare(PrepareRequest),
    /// Record a table's outcome (last state of its child execution).
    RecordOutcome(RecordOutcomeRequest),
    /// Summarize the tables' recorded outcomes (last state of the machine).
    Summarize(SummarizeRequest),
    /// Start a run: take the lease, fix the ceiling.
    Begin(BeginRequest),
    /// Commit an extracted run.
    Commit(CommitRequest),
    /// Record loaded runs and release the lease.
    CommitLoad(CommitLoadRequest),
    /// Record a failure and release the lease.
    Fail(FailRequest),
    /// Release the leases of an execution that ended without running `fail`.
    Release(ReleaseRequest),
    /// Verify a loaded table when its `verify.every` has passed (`VerifyIfDue`).
    VerifyDue(crate::verify::VerifyDueRequest),
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
    /// The state machine execution running it (`$$.Execution.Id`), recorded on the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// A repair run's keys (`verify --repair`); null for a sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairRun>,
    /// Tables of its `depends_on` this sync ran in earlier waves: unless each succeeded, the
    /// table is skipped (`DependencyFailed`) before it takes its lease.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// `release`: a state machine execution ended without running `fail` (an EventBridge rule on
/// FAILED, TIMED_OUT and ABORTED executions sends it): every lease its runs hold is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The execution's ARN.
    pub execution: String,
    /// How it ended: `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: String,
}

/// What `release` did: `pipeline db.table` of each lease released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseResult {
    /// The tables whose lease was released.
    pub released: Vec<String>,
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
    /// The data quality verdict, for a table with checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<quality::Verdict>,
    /// The checks that failed, `fail` and `warn` alike.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<String>,
    /// Target rows whose key a reconciliation found gone from the source: the keys of the
    /// deletion run queued after this one (`deletes: hard | soft`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gone_keys: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
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

/// Resolves `pipeline` (or the unique pipeline holding `table`) and the table's config.
/// `table` is `database.table`, or a bare table name that names one configured table.
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
    let qualified = services.config.qualify_table(pipeline, table)?;
    let table = qualified.as_str();
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
    super::sync::check_dependencies(
        services,
        &pipeline_name,
        pipeline,
        request.execution.as_deref(),
        &request.after,
    )
    .await?;
    if request.repair.is_some() {
        refuse_a_repair_that_cannot_be(table_config, &table, request.mode)?;
    }
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
            w.record_lease_execution(request.execution.clone());
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
        schema,
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
    let repair = request.repair.is_some();
    if let Some(reason) = backfill_reason.filter(|_| !start.is_start() && !repair) {
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
                table_config.strategy.kind(),
                table_config.load_mode()
            );
        }
    }
    if let Some(warning) = start_beyond_ceiling(&start, &ceiling).filter(|_| !repair) {
        tracing::warn!(table = %table, "{warning}");
    }
    // A repair run reads the listed keys, whatever their cursor: no bounds, and the cursor stays.
    let (start, ceiling) = match request.repair {
        Some(_) => (Cursor::default(), Ceiling::default()),
        None => (start, ceiling),
    };
    lineage::emit(
        services,
        &RunFacts {
            schema: Some(&schema),
            ..RunFacts::of(&pipeline_name, pipeline, &table, &target, &run_id)
        },
        EventType::Start,
    )
    .await;
    Ok(RunContext {
        pipeline: pipeline_name,
        table: table.clone(),
        target,
        run_id,
        mode: request.mode,
        strategy: table_config.strategy.kind(),
        load_mode: table_config.load_mode(),
        start_cursor: start,
        ceiling,
        schema_fingerprint: fingerprint,
        key_columns,
        limit: request.limit,
        lease_expires_at,
        repair: request.repair.clone(),
    })
}

/// A repair run re-extracts keys and merges them: only a `merge` table of one source table, in
/// a run that also loads, can take one.
pub fn refuse_a_repair_that_cannot_be(
    table_config: &TableConfig,
    table: &TableId,
    mode: SyncMode,
) -> Result<()> {
    let why = match (table_config.strategy.kind(), table_config.load_mode(), mode) {
        (CdcStrategy::CustomSql, _, _) => {
            "its rows come from a `custom_sql` statement, not from one source table"
        }
        (_, LoadMode::Replace, _) => {
            "it loads with `replace`: its next sync rewrites it whole — run `tidemark sync` instead"
        }
        (_, LoadMode::Append, _) => "it loads with `append`, which keeps every version of a row",
        (_, _, SyncMode::Full) => return Ok(()),
        _ => "a repair extracts and loads in one run (mode `full`)",
    };
    Err(Error::InvalidRequest(format!(
        "`{table}` cannot be repaired: {why}"
    )))
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
        table_config.strategy.kind(),
        CdcStrategy::Hybrid | CdcStrategy::TimestampOnly | CdcStrategy::IdOnly
    ) && table_config.load_mode() == LoadMode::Merge
}

/// Why a run starting at `start` reads nothing however the source changes, when its timestamp
/// lies beyond the run's `ceiling` (a `watermark set` into the future, or a source clock moved
/// back): every such sync succeeds with 0 rows until the source's clock passes the cursor.
pub fn start_beyond_ceiling(start: &Cursor, ceiling: &Ceiling) -> Option<String> {
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
    ceiling: Ceiling,
    schema: schema::TableSchema,
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
        .map_err(|err| Error::internal(format!("cannot encode the schema: {err}")))?;
    services
        .bucket(pipeline)
        .put(&schema_key, body.into())
        .await?;
    Ok(PreparedRun {
        ceiling,
        fingerprint: schema.fingerprint(),
        schema,
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
    pub ceiling: Ceiling,
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
    refuse_deletes_that_cannot_be(table, table_config, &schema, &key_columns)?;
    crate::load::scd_plan(table_config, &schema, &key_columns, table)?;
    if key_columns.is_empty() && table_config.load_mode() == LoadMode::Merge {
        return Err(Error::InvalidRequest(format!(
            "`{table}` has no primary key, so `load: merge` cannot match rows; set `key_columns`, or use `load: append`"
        )));
    }
    let id_column = match &table_config.strategy {
        Strategy::IdOnly { id_column, .. } => id_column
            .clone()
            .or_else(|| (key_columns.len() == 1).then(|| key_columns[0].clone())),
        _ => None,
    };
    let ceiling = if mode == SyncMode::RedshiftOnly {
        Ceiling::default()
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

/// `deletes` names a row by its key's text: a float key rounds (two keys could read as one),
/// and under `soft` the target's own column must not be a source column.
fn refuse_deletes_that_cannot_be(
    table: &TableId,
    table_config: &TableConfig,
    schema: &schema::TableSchema,
    key_columns: &[String],
) -> Result<()> {
    if table_config.deletes == DeletePolicy::Ignore {
        return Ok(());
    }
    if let Some(float) = key_columns.iter().find(|key| {
        schema.column(key).is_some_and(|c| {
            matches!(
                c.ty,
                schema::ColumnType::Float32 | schema::ColumnType::Float64
            )
        })
    }) {
        return Err(Error::Schema(format!(
            "key column `{float}` of `{table}` is a floating-point number, which tidemark compares rounded, so a deleted row could not be told from its neighbour: `deletes: {}` needs exact key columns; set `key_columns`, or `deletes: ignore`",
            table_config.deletes
        )));
    }
    if table_config.deletes == DeletePolicy::Soft {
        if let Some(clash) = schema
            .columns
            .iter()
            .find(|c| c.target_name == crate::load::sql::DELETED_AT_COLUMN)
        {
            return Err(Error::Schema(format!(
                "column `{}` of `{table}` has the name `deletes: soft` gives its own column in the target; leave it out with `columns: {{ exclude: [{}] }}`, or use `deletes: hard`",
                clash.name, clash.name
            )));
        }
    }
    Ok(())
}

/// Where a run starts reading: the watermark's cursor, moved back by `lookback` (which restarts
/// the key tie-break, so every row of the overlap window is read again), or for `id_only` by
/// `id_lookback` ids.
pub(super) fn start_cursor(cursor: &Cursor, table_config: &TableConfig) -> Result<Cursor> {
    let lookback = table_config.lookback().0;
    if let (CdcStrategy::IdOnly, [id]) = (table_config.strategy.kind(), cursor.key.as_slice()) {
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
            let earlier = timestamp
                .parse::<CursorTimestamp>()
                .ok()
                .and_then(|at| at.minus(lookback))
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "the watermark's cursor `{timestamp}` is not a timestamp; fix it with `tidemark watermark set`"
                    ))
                })?;
            Ok(Cursor {
                timestamp: Some(earlier.to_string()),
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
    let (pipeline, table_config, layout) = run.resolve(&services.config)?;
    let table = run.table.clone();
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
        if chunk.run_id != run.run_id || chunk.table != run.table.to_string() {
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
        .max_by(|a, b| a.compare(b))
        .cloned();
    let manifest_key = layout.run_manifest_key(&run.pipeline, &table, &run.run_id);
    let rows: u64 = files.iter().map(|f| f.rows).sum();
    // A repair run holds the listed keys only: judged by no check (a `row_count` or a
    // `freshness` would quarantine the very rows that fix the target).
    let quality = match run.repair {
        Some(_) => None,
        None => {
            judge_run(
                services,
                run,
                table_config,
                &chunks,
                rows,
                max_cursor.as_ref(),
            )
            .await?
        }
    };
    let run_manifest = RunManifest {
        max_cursor,
        rows,
        quality,
        bytes: files.iter().map(|f| f.bytes).sum(),
        zero_dates_nulled: chunks.iter().map(|c| c.zero_dates_nulled).sum(),
        oversize_truncated: chunks.iter().map(|c| c.oversize_truncated).sum(),
        oversize_nulled: chunks.iter().map(|c| c.oversize_nulled).sum(),
        files,
        ..RunManifest::without_files(run, schema, Utc::now())
    };
    let body = serde_json::to_vec_pretty(&run_manifest)
        .map_err(|err| Error::internal(format!("cannot encode the run manifest: {err}")))?;
    // Written once: a retried commit finds the manifest already there and keeps the first one.
    let run_manifest = match bucket.put_if_absent(&manifest_key, body.into()).await? {
        PutOutcome::Written(_) => run_manifest,
        PutOutcome::PreconditionFailed => {
            let existing = bucket.get(&manifest_key).await?.ok_or_else(|| {
                Error::unexpected_answer(
                    "S3",
                    format!(
                        "a read of `{}` just after a write refused as existing",
                        bucket.uri(&manifest_key)
                    ),
                    "no such key",
                )
            })?;
            manifest::parse_json(&existing.body, &bucket.uri(&manifest_key))?
        }
    };
    // Deleted rows are looked for inside the lease, once per commit: a retried commit of a run
    // already committed finds nothing to do. A table that ignores deletes costs no read.
    let before = match deletion::applies(table_config, run) {
        true => store.read(&run.pipeline, &table).await?.map(|v| v.record),
        false => None,
    };
    let reconciled = match before {
        Some(w)
            if !w.is_committed(&run.run_id)
                && deletion::due(table_config, run, w.reconciled_at, Utc::now()) =>
        {
            deletion::reconcile(services, pipeline, table_config, run, &run_manifest).await?
        }
        _ => None,
    };
    crate::faults::point(crate::faults::FaultPoint::BeforeCommit)?;
    let now = Utc::now();
    let (watermark, newly_committed) = store
        .update(&run.pipeline, &table, &run.target, &run.run_id, now, |w| {
            w.require_lease(&run.run_id)?;
            refuse_a_limit_that_cannot_progress(run, &run_manifest, &w.extract.cursor)?;
            let newly = w.apply_commit(&run_manifest, &manifest_key, now)?;
            if let (true, Some(reconciled)) = (newly, &reconciled) {
                w.reconciled_at = Some(reconciled.at);
                if let Some((deletion, key)) = &reconciled.run {
                    w.queue_deletion(deletion, key, now);
                }
            }
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
    if let (true, Some(quality)) = (newly_committed, &run_manifest.quality) {
        report_quality(run, quality);
    }
    if newly_committed && run.mode == SyncMode::BackupOnly {
        // The run ends here: its load is another run's.
        lineage::emit(
            services,
            &RunFacts {
                schema: Some(&run_manifest.schema),
                extracted: Some((run_manifest.rows, run_manifest.bytes)),
                ..RunFacts::of(&run.pipeline, pipeline, &table, &run.target, &run.run_id)
            },
            EventType::Complete,
        )
        .await;
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
    crate::faults::point(crate::faults::FaultPoint::AfterCommit)?;
    Ok(CommitResult {
        run_id: run.run_id.clone(),
        manifest_key,
        rows: run_manifest.rows,
        files: run_manifest.files.len() as u64,
        bytes: run_manifest.bytes,
        pending_runs: watermark.pending_runs.len() as u64,
        newly_committed,
        verdict: run_manifest.quality.as_ref().map(|q| q.verdict),
        failed_checks: run_manifest
            .quality
            .iter()
            .flat_map(|q| q.checks.iter().filter(|c| !c.passed()))
            .map(|c| c.count.check.clone())
            .collect(),
        gone_keys: match (newly_committed, &reconciled) {
            (
                true,
                Some(Reconciled {
                    run: Some((deletion, _)),
                    ..
                }),
            ) => deletion.rows,
            _ => 0,
        },
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
    if manifest.rows < limit || max.compare(cursor).is_gt() {
        return Ok(());
    }
    Err(Error::InvalidRequest(format!(
        "`--limit {limit}` is no larger than the rows `{}` re-reads in its lookback window: this run read {} row(s), none after the cursor ({cursor}), so the cursor cannot move; raise `--limit` above the rows changed within `lookback` of the cursor, or sync without `--limit`; nothing was committed",
        run.table, manifest.rows
    )))
}

/// The verdict of the table's data quality checks on the run (none without checks): the
/// chunks' counts summed, `unique` merged across chunks, `row_count` and `freshness` measured.
async fn judge_run(
    services: &Services,
    run: &RunContext,
    table_config: &TableConfig,
    chunks: &[ChunkManifest],
    rows: u64,
    max_cursor: Option<&Cursor>,
) -> Result<Option<quality::RunQuality>> {
    if table_config.checks.is_empty() {
        return Ok(None);
    }
    let (pipeline, ..) = run.resolve(&services.config)?;
    // A run that read nothing is as fresh as the newest row committed before it.
    let watermark_cursor = match max_cursor {
        Some(_) => None,
        None => services
            .watermarks(pipeline)
            .read(&run.pipeline, &run.table)
            .await?
            .map(|v| v.record.extract.cursor),
    };
    // A chunk extracted before the table had checks has none: `judge` refuses the run then.
    let unchecked = quality::ChunkQuality::default();
    let counts: Vec<&quality::ChunkQuality> = chunks
        .iter()
        .map(|chunk| chunk.quality.as_ref().unwrap_or(&unchecked))
        .collect();
    let facts = quality::RunFacts {
        rows,
        newest: max_cursor.or(watermark_cursor.as_ref()),
        ceiling: &run.ceiling,
        lag: table_config.lag.0,
    };
    let started = std::time::Instant::now();
    let judged = quality::judge(
        &table_config.checks,
        &counts,
        &facts,
        &services.bucket(pipeline),
    )
    .await?;
    tracing::info!(
        table = %run.table,
        run_id = %run.run_id,
        verdict = %judged.verdict,
        digests = counts.iter().map(|c| c.digests.len()).sum::<usize>(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "data quality checks judged"
    );
    Ok(Some(judged))
}

/// Logs and measures a newly committed run's checks.
fn report_quality(run: &RunContext, quality: &quality::RunQuality) {
    let (passed, of) = quality.passed_of();
    let quarantined = quality.verdict == quality::Verdict::Quarantined;
    crate::metrics::data_quality(
        &run.pipeline,
        &run.table,
        &run.run_id,
        quality.score(),
        quality.failures(),
        quarantined,
    )
    .emit();
    for check in quality.checks.iter().filter(|c| !c.passed()) {
        tracing::warn!(
            table = %run.table,
            run_id = %run.run_id,
            check = %check.count.check,
            severity = ?check.severity,
            failures = check.count.failures,
            rows_checked = check.count.rows_checked,
            examples = %check.count.examples.join(", "),
            detail = check.detail.as_deref().unwrap_or(""),
            "a data quality check failed"
        );
    }
    if quarantined {
        tracing::error!(
            table = %run.table,
            run_id = %run.run_id,
            passed,
            checks = of,
            failed = %quality.failed(quality::Severity::Fail).join(", "),
            "run quarantined: it and every later run of the table are held back from the warehouse until `tidemark quality release` or `tidemark quality drop`"
        );
    }
}

/// `commit_load`: marks runs loaded, counts their rows once, releases the lease.
pub async fn commit_load(services: &Services, request: &CommitLoadRequest) -> Result<Watermark> {
    let run = &request.run;
    let (pipeline, table_config, _) = run.resolve(&services.config)?;
    let table = run.table.clone();
    crate::faults::point(crate::faults::FaultPoint::BeforeCommitLoad)?;
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
        services
            .target(&pipeline.target)
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
    // The rows are loaded and recorded: a failing statement fails the table, not the load.
    crate::load::after_load::run(services, pipeline, table_config, &table).await?;
    let bucket = services.bucket(pipeline);
    let layout = StorageLayout::new(&pipeline.s3.prefix);
    let extracted = crate::load::read_run_manifest(
        &bucket,
        &layout.run_manifest_key(&run.pipeline, &table, &run.run_id),
    )
    .await
    .ok()
    .flatten();
    let schema = match &extracted {
        Some(manifest) => Some(manifest.schema.clone()),
        None => run_schema(services, pipeline, &run.pipeline, &table, &run.run_id).await,
    };
    lineage::emit(
        services,
        &RunFacts {
            schema: schema.as_ref(),
            extracted: extracted.as_ref().map(|m| (m.rows, m.bytes)),
            loaded: Some(loaded.iter().map(|l| l.rows_loaded).sum()),
            ..RunFacts::of(&run.pipeline, pipeline, &table, &run.target, &run.run_id)
        },
        EventType::Complete,
    )
    .await;
    Ok(watermark)
}

/// The schema `begin` recorded for `run_id`, if it is still there.
async fn run_schema(
    services: &Services,
    pipeline: &crate::config::Pipeline,
    pipeline_name: &str,
    table: &TableId,
    run_id: &RunId,
) -> Option<schema::TableSchema> {
    let bucket = services.bucket(pipeline);
    let key = StorageLayout::new(&pipeline.s3.prefix).run_schema_key(pipeline_name, table, run_id);
    let object = bucket.get(&key).await.ok().flatten()?;
    manifest::parse_json(&object.body, &bucket.uri(&key)).ok()
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
        None => RunId::parse("failed-begin").map_err(|e| Error::internal(e.to_string()))?,
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
    if let Some(run_id) = &request.run_id {
        let schema = run_schema(services, pipeline, &pipeline_name, &table, run_id).await;
        lineage::emit(
            services,
            &RunFacts {
                schema: schema.as_ref(),
                error: Some(&message),
                ..RunFacts::of(&pipeline_name, pipeline, &table, &target, run_id)
            },
            EventType::Fail,
        )
        .await;
    }
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

/// `release`: every table of every pipeline whose lease a run of the ended execution holds gets
/// it released, its running stages marked failed, and the release recorded as the watermark's
/// last edit. Tables held by other runs are left alone; releasing twice releases nothing.
pub async fn release(services: &Services, request: &ReleaseRequest) -> Result<ReleaseResult> {
    let tag = RunId::parse("release").map_err(|e| Error::internal(e.to_string()))?;
    let mut released = Vec::new();
    for (pipeline_name, pipeline) in &services.config.pipelines {
        let store = services.watermarks(pipeline);
        for (table_name, table_config) in &pipeline.tables {
            let table = naming::TableId::parse(table_name)?;
            let held = store
                .read(pipeline_name, &table)
                .await?
                .and_then(|v| v.record.lease)
                .filter(|lease| lease.execution.as_deref() == Some(&request.execution));
            let Some(held) = held else {
                continue;
            };
            let target = target_name(table_config, &table)?;
            let now = Utc::now();
            let (_, done) = store
                .update(pipeline_name, &table, &target, &tag, now, |w| {
                    let done = w.release_execution(&request.execution, &request.status, now);
                    if let Some(detail) = &done {
                        w.manual = Some(crate::watermark::ManualEdit {
                            by: request.execution.clone(),
                            at: now,
                            action: "release".to_owned(),
                            detail: detail.clone(),
                            reason: Some(format!("the execution ended {}", request.status)),
                        });
                    }
                    Ok(done)
                })
                .await?;
            if let Some(detail) = done {
                tracing::warn!(pipeline = %pipeline_name, table = %table, execution = %request.execution, "{detail}");
                released.push(format!("{pipeline_name} {table}"));
                let schema =
                    run_schema(services, pipeline, pipeline_name, &table, &held.owner).await;
                lineage::emit(
                    services,
                    &RunFacts {
                        schema: schema.as_ref(),
                        error: Some(&format!("the execution ended {}", request.status)),
                        ..RunFacts::of(pipeline_name, pipeline, &table, &target, &held.owner)
                    },
                    EventType::Abort,
                )
                .await;
            }
        }
    }
    Ok(ReleaseResult { released })
}

/// Runs a watermark request and returns its answer as JSON.
pub async fn handle(services: &Services, request: &WatermarkRequest) -> Result<serde_json::Value> {
    match request {
        WatermarkRequest::Prepare(r) => super::answer(prepare(services, r)?),
        WatermarkRequest::RecordOutcome(r) => super::answer(record_outcome(services, r).await?),
        WatermarkRequest::Summarize(r) => super::answer(summarize(services, r).await?),
        WatermarkRequest::Begin(r) => super::answer(begin(services, r).await?),
        WatermarkRequest::Commit(r) => super::answer(commit(services, r).await?),
        WatermarkRequest::CommitLoad(r) => super::answer(commit_load(services, r).await?),
        WatermarkRequest::Fail(r) => super::answer(fail(services, r).await?),
        WatermarkRequest::Release(r) => super::answer(release(services, r).await?),
        WatermarkRequest::VerifyDue(r) => {
            super::answer(Box::pin(crate::verify::verify_due(services, r)).await?)
        }
    }
}

/// Parses a payload into a request, with an error that lists what is accepted and sends an
/// operator action to the operator function.
pub fn parse_request(payload: serde_json::Value) -> Result<WatermarkRequest> {
    let action = payload.get("action").and_then(|a| a.as_str()).unwrap_or("");
    if super::operator::ACTIONS.contains(&action) {
        return Err(Error::InvalidRequest(format!(
            "`{action}` is an operator action: invoke the operator function (`tidemark-operator`) instead; the watermark function serves only the state machine (README: Lambda payloads)"
        )));
    }
    serde_json::from_value(payload).map_err(|err| {
        Error::InvalidRequest(format!(
            "invalid watermark payload: {err}; actions are {} (README: Lambda payloads)",
            ACTIONS.join(", ")
        ))
    })
}

/// The actions of [`WatermarkRequest`], as a payload names them.
pub const ACTIONS: [&str; 9] = [
    "prepare",
    "record_outcome",
    "summarize",
    "begin",
    "commit",
    "commit_load",
    "fail",
    "release",
    "verify_due",
];

/// How far the cursor's timestamp is behind `now`, for the freshness metric.
pub(super) fn cursor_lag(cursor: &Cursor, now: DateTime<Utc>) -> Option<std::time::Duration> {
    let at = cursor
        .timestamp
        .as_deref()?
        .parse::<CursorTimestamp>()
        .ok()?
        .to_naive()?;
    (now.naive_utc() - at).to_std().ok()
}

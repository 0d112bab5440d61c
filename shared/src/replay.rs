//! `tidemark replay`: a warehouse table rebuilt from its Parquet runs on S3 without reading
//! MySQL — the runs already loaded whose rows fall in a window, in order, loaded again through
//! the load's own transaction under replay ids in the ledger, into the pipeline's target or
//! another warehouse connection. A replayed row never replaces a newer one.

use std::collections::BTreeSet;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::config::{Connection, LoadMode, Strategy, TableConfig};
use crate::cursor::CursorTimestamp;
use crate::error::{Error, Result};
use crate::load::sql::{self, REPLAY_MARK};
use crate::load::target::TargetClient;
use crate::load::{self, CommittedRun, LedgerRow, PlanTarget};
use crate::manifest::RunManifest;
use crate::naming::{RunId, StorageLayout, TableId};
use crate::run::{RunContext, SyncMode};
use crate::services::Services;
use crate::steps::watermark::{locate_table, new_run_id};
use crate::watermark::PendingRun;

/// What to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Pipeline (default: the one holding the table).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table, `db.table` or a bare name.
    pub table: String,
    /// Only runs holding rows whose cursor timestamp is at or after this.
    #[serde(default)]
    pub since: Option<String>,
    /// Only runs holding rows whose cursor timestamp is at or before this.
    #[serde(default)]
    pub until: Option<String>,
    /// The warehouse connection to load into (default: the pipeline's target).
    #[serde(default)]
    pub into: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Pipeline.
    pub pipeline: String,
    /// Source table.
    pub table: String,
    /// The connection loaded into.
    pub into: String,
    /// `schema.table` there.
    pub target: String,
    /// Whether the target table existed before the replay.
    pub target_existed: bool,
    /// The runs loaded again, in order, with their ledger rows (and those this destination
    /// holds already, loaded by an earlier replay).
    pub runs: Vec<ReplayedRun>,
    /// Loaded runs left out, with why.
    pub skipped: Vec<SkippedRun>,
    /// Rows the runs loaded by this replay staged, inserted and deleted, per the ledger.
    pub rows_staged: u64,
    /// See `rows_staged`.
    pub rows_inserted: u64,
    /// See `rows_staged`.
    pub rows_deleted: u64,
}

/// One run loaded again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayedRun {
    /// The run as the sync committed it.
    pub run_id: RunId,
    /// Its id in the target's ledger for this replay.
    pub replay_id: RunId,
    /// A deletion run (`deletes`).
    pub deletion: bool,
    /// An earlier replay loaded it here already: this one changed nothing for it.
    pub already_loaded: bool,
    /// Its ledger row's counts: staged, inserted, deleted.
    pub rows_staged: u64,
    /// See `rows_staged`.
    pub rows_inserted: u64,
    /// See `rows_staged`.
    pub rows_deleted: u64,
}

/// A loaded run a replay leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRun {
    /// The run.
    pub run_id: RunId,
    /// Why.
    pub reason: String,
}

/// A committed run: its manifest's key and the manifest.
type StoredRun = (String, RunManifest);

/// The cursor window of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Window {
    since: Option<CursorTimestamp>,
    until: Option<CursorTimestamp>,
}

impl Window {
    fn parse(since: Option<&str>, until: Option<&str>) -> Result<Self> {
        let bound = |text: Option<&str>, flag: &str| -> Result<Option<CursorTimestamp>> {
            text.map(|text| {
                text.parse::<CursorTimestamp>()
                    .ok()
                    .filter(CursorTimestamp::is_calendar_date)
                    .ok_or_else(|| {
                        Error::InvalidRequest(format!(
                            "`--{flag} {text}` is not a timestamp: write `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD HH:MM:SS.ffffff`, in the cursor column's own time (UTC for TIMESTAMP columns)"
                        ))
                    })
            })
            .transpose()
        };
        let window = Window {
            since: bound(since, "since")?,
            until: bound(until, "until")?,
        };
        if let (Some(since), Some(until)) = (window.since, window.until) {
            if since > until {
                return Err(Error::InvalidRequest(format!(
                    "`--since {since}` is after `--until {until}`: nothing can fall in that window"
                )));
            }
        }
        Ok(window)
    }

    fn is_whole(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Whether a run holds rows in the window: one of its files' cursor timestamp ranges meets it.
    fn holds(&self, manifest: &RunManifest) -> bool {
        let bound = |text: &Option<String>| text.as_deref().and_then(|t| t.parse().ok());
        manifest.files.iter().any(|file| {
            let first: Option<CursorTimestamp> = bound(&file.min_cursor.timestamp);
            let last: Option<CursorTimestamp> = bound(&file.max_cursor.timestamp);
            let after_since = match (self.since, last) {
                (Some(since), Some(last)) => last >= since,
                _ => true,
            };
            let before_until = match (self.until, first) {
                (Some(until), Some(first)) => first <= until,
                _ => true,
            };
            after_since && before_until
        })
    }
}

/// Whether the table's cursor is a timestamp, the only thing a window can bound.
fn timestamp_cursor(table_config: &TableConfig) -> bool {
    matches!(
        table_config.strategy,
        Strategy::Hybrid { .. } | Strategy::TimestampOnly { .. } | Strategy::CustomSql { .. }
    )
}

/// The id a run is recorded under in a replay into `into`'s `schema.target`: the run's own, with
/// [`REPLAY_MARK`] and a tag of the destination, so that replaying it there again is a no-op.
fn replay_id(run: &RunId, into: &str, schema: &str, target: &str) -> Result<RunId> {
    let tag = crate::load::data_api::fnv1a_128(format!("{into}\n{schema}\n{target}").as_bytes());
    RunId::parse(&format!(
        "{run}{REPLAY_MARK}{:012x}",
        tag & 0xffff_ffff_ffff
    ))
}

/// Replays `request`, telling `progress` what it does.
pub async fn replay(
    services: &Services,
    request: &ReplayRequest,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ReplayReport> {
    let (pipeline_name, pipeline, table_config, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    let window = Window::parse(request.since.as_deref(), request.until.as_deref())?;
    if !window.is_whole() && !timestamp_cursor(table_config) {
        return Err(Error::InvalidRequest(format!(
            "`{table}` has no timestamp cursor (`cdc_strategy: {}`), so a window cannot select its runs: replay it whole, without `--since`/`--until`",
            table_config.strategy.kind()
        )));
    }
    let into = request
        .into
        .clone()
        .unwrap_or_else(|| pipeline.target.clone());
    let connection = services.config.connections.get(&into).ok_or_else(|| {
        Error::InvalidRequest(format!(
            "`--into {into}` is not a connection of the configuration; `tidemark config list` shows them"
        ))
    })?;
    let (schema, iam_role, redshift) = match connection {
        Connection::Postgres(postgres) => (postgres.schema.clone(), String::new(), None),
        Connection::Redshift(redshift) => (
            redshift.schema.clone(),
            redshift.iam_role.clone(),
            Some(redshift.as_ref()),
        ),
        Connection::Mysql(_) => {
            return Err(Error::InvalidRequest(format!(
                "`--into {into}` is a MySQL connection: replay loads into a warehouse (postgres or redshift)"
            )))
        }
    };
    let store = services.watermarks(pipeline);
    let watermark = store
        .read(&pipeline_name, &table)
        .await?
        .map(|v| v.record)
        .ok_or_else(|| nothing_loaded(&table))?;
    let last_loaded = watermark
        .load
        .last_loaded_run_id
        .clone()
        .ok_or_else(|| nothing_loaded(&table))?;
    let pending: BTreeSet<&RunId> = watermark.pending_runs.iter().map(|r| &r.run_id).collect();
    let layout = StorageLayout::new(&pipeline.s3.prefix);
    let bucket = services.bucket(pipeline);

    progress("listing the table's runs on S3");
    let prefix = layout.table_runs_prefix(&pipeline_name, &table);
    let mut ids: Vec<RunId> = bucket
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|object| {
            let name = object.key.strip_prefix(&prefix)?.strip_suffix(".json")?;
            (!name.contains('/'))
                .then(|| RunId::parse(name).ok())
                .flatten()
        })
        .filter(|id| *id <= last_loaded && !pending.contains(id))
        .collect();
    ids.sort();
    let mut manifests = Vec::with_capacity(ids.len());
    for id in &ids {
        let key = layout.run_manifest_key(&pipeline_name, &table, id);
        if let Some(manifest) = load::read_run_manifest(&bucket, &key).await? {
            manifests.push((key, manifest));
        }
    }

    let target_table = table_config.target_table(&table)?;
    let mut session = TargetClient::connect(services.reach(), &services.config, &into).await?;
    let target_existed = session.table_exists(&target_table).await?;
    let (selected, skipped) = select_runs(table_config, manifests, window, target_existed);
    if table_config.load_mode() == LoadMode::Replace && target_existed {
        let held = session
            .counts(&target_table, table_config.current_flag())
            .await?
            .rows
            .unwrap_or(0);
        if held > 0 {
            return Err(Error::InvalidRequest(format!(
                "`{table}` loads with `replace`, and {into}'s `{schema}.{target_table}` holds {held} rows: a replayed run would make it older than its last sync; replay into an empty or new table, or let the next `tidemark sync` rewrite it"
            )));
        }
    }
    let mut report = ReplayReport {
        pipeline: pipeline_name.clone(),
        table: table.to_string(),
        into: into.clone(),
        target: format!("{schema}.{target_table}"),
        target_existed,
        runs: Vec::new(),
        skipped,
        rows_staged: 0,
        rows_inserted: 0,
        rows_deleted: 0,
    };
    if selected.is_empty() {
        progress("no loaded run falls in the window: nothing to replay");
        return Ok(report);
    }
    check_files_retained(&bucket, &selected).await?;

    // A replay into the pipeline's own target holds the table's lease: no sync loads between
    // its batches.
    let session_id = new_run_id(Utc::now());
    let holds_lease = into == pipeline.target;
    let replay_session = &session_id;
    let lease = |take: bool| {
        let local = services.local_owner().cloned();
        store.update(
            &pipeline_name,
            &table,
            &watermark.target,
            replay_session,
            Utc::now(),
            move |w| match take {
                true => w.take_lease(
                    replay_session,
                    Utc::now(),
                    pipeline.lease_ttl.0,
                    local.clone(),
                    crate::steps::process_is_alive,
                ),
                false => {
                    w.release_lease(replay_session);
                    Ok(())
                }
            },
        )
    };
    if holds_lease {
        lease(true).await?;
    }
    let loaded = load_runs(
        &mut session,
        ReplayTarget {
            pipeline: &pipeline_name,
            table: &table,
            table_config,
            layout: &layout,
            bucket: &bucket,
            into: &into,
            schema: &schema,
            iam_role: &iam_role,
            redshift,
            target: &target_table,
            session_id: &session_id,
            target_existed,
        },
        &selected,
        progress,
    )
    .await;
    if holds_lease {
        lease(false).await?;
    }
    for (run, row, already_loaded) in loaded? {
        if !already_loaded {
            report.rows_staged += row.rows_staged;
            report.rows_inserted += row.rows_inserted;
            report.rows_deleted += row.rows_deleted;
        }
        report.runs.push(ReplayedRun {
            run_id: run.run_id.clone(),
            replay_id: row.run_id,
            deletion: run.deletion,
            already_loaded,
            rows_staged: row.rows_staged,
            rows_inserted: row.rows_inserted,
            rows_deleted: row.rows_deleted,
        });
    }
    Ok(report)
}

fn nothing_loaded(table: &TableId) -> Error {
    Error::InvalidRequest(format!(
        "`{table}` has no loaded run to replay: `tidemark sync -t {table}` loads its first"
    ))
}

/// The loaded runs to replay, in order, and those left out with why. `manifests` are every
/// loaded run's, in order.
fn select_runs(
    table_config: &TableConfig,
    manifests: Vec<StoredRun>,
    window: Window,
    target_existed: bool,
) -> (Vec<StoredRun>, Vec<SkippedRun>) {
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    let skip = |manifest: &RunManifest, reason: &str| SkippedRun {
        run_id: manifest.run_id.clone(),
        reason: reason.to_owned(),
    };
    for (key, manifest) in manifests {
        if manifest.rows == 0 {
            continue;
        }
        if manifest.deletion {
            // A deletion removes rows by key, whatever their cursor: over a table that holds
            // newer rows it could remove a key that came back since.
            match (target_existed, window.is_whole()) {
                (false, true) => selected.push((key, manifest)),
                (true, _) => skipped.push(skip(
                    &manifest,
                    "a deletion run is replayed only into a table the replay creates (this one existed)",
                )),
                (false, false) => skipped.push(skip(
                    &manifest,
                    "a deletion run is replayed only with the whole history (no --since/--until)",
                )),
            }
            continue;
        }
        if window.holds(&manifest) {
            selected.push((key, manifest));
        } else {
            skipped.push(skip(&manifest, "no row in the window"));
        }
    }
    if table_config.load_mode() == LoadMode::Replace {
        // Each run is the whole table: the newest of the window is its content.
        let last = selected.pop();
        for (_, older) in selected.drain(..) {
            skipped.push(skip(
                &older,
                "a `replace` table is its newest run: older ones are not replayed",
            ));
        }
        selected.extend(last);
    }
    (selected, skipped)
}

/// Fails, naming the run, when a file of a run to replay is gone (s3clean) or changed.
async fn check_files_retained(bucket: &crate::storage::Bucket, runs: &[StoredRun]) -> Result<()> {
    for (key, manifest) in runs {
        for file in &manifest.files {
            match bucket.size(&file.key).await? {
                Some(size) if size == file.bytes => {}
                found => {
                    return Err(Error::Corrupt {
                        uri: bucket.uri(&file.key),
                        reason: format!(
                            "run `{}` ({}) names it with {} bytes, and it is {}",
                            manifest.run_id,
                            bucket.uri(key),
                            file.bytes,
                            match found {
                                None => "gone".to_owned(),
                                Some(size) => format!("{size} bytes"),
                            }
                        ),
                        fix: "s3clean removes loaded runs' files (`--older-than` keeps the recent ones): replay a window after this run with `--since`, or restore the file from S3 versioning".to_owned(),
                    })
                }
            }
        }
    }
    Ok(())
}

/// Where a replay loads, and with what.
struct ReplayTarget<'a> {
    pipeline: &'a str,
    table: &'a TableId,
    table_config: &'a TableConfig,
    layout: &'a StorageLayout,
    bucket: &'a crate::storage::Bucket,
    into: &'a str,
    schema: &'a str,
    iam_role: &'a str,
    redshift: Option<&'a crate::config::RedshiftConnection>,
    target: &'a str,
    session_id: &'a RunId,
    target_existed: bool,
}

/// Loads `runs` under their replay ids, as many per load as the route takes; each run with the
/// ledger row its load recorded, and whether an earlier replay had (then nothing changed).
async fn load_runs(
    session: &mut TargetClient,
    to: ReplayTarget<'_>,
    runs: &[StoredRun],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<(RunManifest, LedgerRow, bool)>> {
    if !to.target_existed && session.table_exists(sql::LEDGER_TABLE).await? {
        // Ledger rows of a table that no longer exists describe nothing: a replay into it
        // again must load again.
        session
            .execute(&sql::forget_ledger_of(to.schema, to.target)?)
            .await?;
    }
    let mut committed = Vec::with_capacity(runs.len());
    for (key, manifest) in runs {
        let replay_id = replay_id(&manifest.run_id, to.into, to.schema, to.target)?;
        committed.push(CommittedRun {
            pending: PendingRun {
                run_id: replay_id.clone(),
                manifest_key: key.clone(),
                rows: manifest.rows,
                bytes: manifest.bytes,
                files: manifest.files.len() as u64,
                committed_at: manifest.committed_at,
                quarantine: None,
            },
            manifest: RunManifest {
                run_id: replay_id,
                ..manifest.clone()
            },
        });
    }
    let replay_ids: Vec<RunId> = committed
        .iter()
        .map(|c| c.manifest.run_id.clone())
        .collect();
    let before: BTreeSet<RunId> = session
        .ledger_rows(to.target, &replay_ids)
        .await?
        .into_iter()
        .map(|row| row.run_id)
        .collect();
    let first = &committed[0].manifest;
    let context = RunContext {
        pipeline: to.pipeline.to_owned(),
        table: to.table.clone(),
        target: to.target.to_owned(),
        run_id: to.session_id.clone(),
        mode: SyncMode::Full,
        strategy: first.strategy,
        load_mode: first.load_mode,
        start_cursor: Default::default(),
        ceiling: Default::default(),
        schema_fingerprint: first.schema_fingerprint.clone(),
        key_columns: to
            .table_config
            .key_columns
            .clone()
            .unwrap_or_else(|| first.schema.primary_key.clone()),
        limit: None,
        lease_expires_at: Utc::now(),
        repair: None,
    };
    let type_2 = to.table_config.keeps_history();
    let max_runs = match session {
        TargetClient::DataApi(_) => (
            sql::max_runs_per_batch(false, type_2),
            sql::max_runs_per_batch(true, type_2),
        ),
        TargetClient::Wire { .. } => (sql::MAX_RUNS_PER_WIRE_LOAD, sql::MAX_RUNS_PER_WIRE_LOAD),
    };
    let mut loaded = Vec::with_capacity(runs.len());
    let mut rest: &[CommittedRun] = &committed;
    while !rest.is_empty() {
        let target = PlanTarget {
            run: &context,
            table_config: to.table_config,
            schema: to.schema,
            layout: to.layout,
            max_runs: max_runs.0,
            max_runs_with_deletions: max_runs.1,
            iam_role: to.iam_role,
            now: Utc::now(),
        };
        let Some(mut plan) = load::plan(&target, rest, to.bucket)? else {
            break;
        };
        plan.keep_newer = true;
        progress(&format!(
            "loading {} run(s) into {}'s {}.{} ({} left after them)",
            plan.runs.len(),
            to.into,
            to.schema,
            to.target,
            rest.len() - plan.runs.len()
        ));
        if to.redshift.is_some() {
            load::write_copy_manifests(to.bucket, to.layout, &plan).await?;
        }
        let rows = session
            .load_now(
                &plan,
                to.bucket,
                &to.table_config.redshift_options(),
                to.redshift,
                format!("tidemark-load-{}", to.target),
            )
            .await?;
        for planned in &plan.runs {
            let row = rows
                .iter()
                .find(|row| row.run_id == planned.run_id)
                .cloned()
                .ok_or_else(|| Error::Corrupt {
                    uri: format!("{}.{}", to.schema, to.target),
                    reason: format!(
                        "the load of replay run `{}` committed, but its ledger has no row for it",
                        planned.run_id
                    ),
                    fix: "run the replay again: runs already in the ledger are skipped".to_owned(),
                })?;
            let (_, original) = &runs[loaded.len()];
            let already = before.contains(&row.run_id);
            loaded.push((original.clone(), row, already));
        }
        rest = &rest[plan.runs.len()..];
    }
    Ok(loaded)
}

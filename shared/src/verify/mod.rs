//! `tidemark verify`: proves a target table equal to its source, or names every row that is not.
//! Both engines fingerprint their own rows ([`fingerprint`]); tidemark compares per-segment
//! counts and checksums, descends only into segments that disagree, and reads keys and row
//! hashes of those alone. A difference whose source row changed after the last loaded run's
//! ceiling is in flight (the next sync carries it), not a difference.

pub mod fingerprint;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use crate::config::{LoadMode, Strategy};
use crate::cursor::{Ceiling, Cursor};
use crate::error::{Error, Result};
use crate::load::target::TargetClient;
use crate::manifest::{self, RunManifest};
use crate::naming::{self, StorageLayout, TableId};
use crate::run::RepairRun;
use crate::schema;
use crate::services::Services;
use crate::steps::watermark::locate_table;

pub use fingerprint::{Engine, Fingerprint};

/// Rows named per kind of difference; all are counted.
pub const NAMED_ROWS: usize = 100;
/// By default, a disagreeing segment holding more rows than this on either side is split again
/// (up to [`MAX_DEPTH`]) before its rows are read.
pub const SPLIT_ROWS: u64 = 2_000;
/// Levels of segmentation at most: 4096^4 segments.
pub const MAX_DEPTH: usize = 4;
/// Segments named in one query.
const SEGMENTS_PER_QUERY: usize = 1_000;
/// Rows one pair of row queries reads at most (each side), unless one segment holds more: what
/// bounds the memory of a comparison with many differences.
const ROWS_PER_READ: u64 = 50_000;

/// What `verify` found. The latest report of each table is kept at
/// [`StorageLayout::verify_report_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The pipeline.
    pub pipeline: String,
    /// The source table, `database.table`.
    pub table: String,
    /// The target table, `schema.table`.
    pub target: String,
    /// When the comparison started.
    pub verified_at: DateTime<Utc>,
    /// No missing, extra or changed row (rows in flight do not count).
    pub equal: bool,
    /// The ceiling of the last loaded run: source rows changed after it are in flight. None for
    /// `full_sync` tables.
    pub loaded_ceiling: Option<Ceiling>,
    /// Rows in the source.
    pub source_rows: u64,
    /// Rows in the target.
    pub target_rows: u64,
    /// Columns compared (target names).
    pub columns: Vec<String>,
    /// Segments compared at the first level.
    pub segments: u64,
    /// Of those, segments whose count or checksum differed.
    pub segments_differing: u64,
    /// Rows in the source, loaded before the ceiling, that the target lacks.
    pub missing: Differences,
    /// Rows in the target whose key is gone from the source.
    pub extra: Differences,
    /// Rows whose values differ, with the differing columns.
    pub changed: Differences,
    /// Rows changed in the source after the last loaded ceiling: the next sync carries them.
    pub in_flight: Differences,
    /// Bytes of query results read from both engines.
    pub bytes_read: u64,
    /// Wall time.
    pub elapsed_ms: u64,
    /// Every missing and changed row's key (canonical texts, in key order): what a repair run
    /// re-extracts. Not in the report's JSON.
    #[serde(skip)]
    pub to_repair: Vec<Vec<String>>,
}

impl VerifyReport {
    /// Rows missing, gone from the source or changed (rows in flight are not differences).
    pub fn differing(&self) -> u64 {
        self.missing.count + self.extra.count + self.changed.count
    }
}

/// One kind of difference: every row counted, the first [`NAMED_ROWS`] named by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Differences {
    /// How many rows.
    pub count: u64,
    /// The first rows, by key.
    pub rows: Vec<DifferingRow>,
}

/// A row named by its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DifferingRow {
    /// Key column (target name) → the value's canonical text.
    pub key: BTreeMap<String, String>,
    /// For a changed row: the columns whose values differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

impl Differences {
    fn add(&mut self, key: BTreeMap<String, String>) {
        self.count += 1;
        if self.rows.len() < NAMED_ROWS {
            self.rows.push(DifferingRow {
                key,
                columns: Vec::new(),
            });
        }
    }
}

/// Counts and checksum of one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Segment {
    rows: u64,
    checksum: u128,
}

/// One row as the rows query reads it.
#[derive(Debug, Clone)]
struct RowHash {
    hash: String,
    cursor: Option<String>,
}

/// How `verify` descends into disagreeing segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// A disagreeing segment with more rows than this on either side is split into its 4,096
    /// sub-segments before its rows are read: fewer rows read per difference, one more scan.
    pub split_rows: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            split_rows: SPLIT_ROWS,
        }
    }
}

/// Compares `table` (bare or `database.table`) of `pipeline` (default: the one holding it) in
/// the source and the target, with the default [`VerifyOptions`].
pub async fn verify(
    services: &Services,
    pipeline: Option<&str>,
    table: &str,
) -> Result<VerifyReport> {
    verify_with(services, pipeline, table, VerifyOptions::default(), &|_| {}).await
}

/// [`verify`] with `options`, telling `progress` what it is doing (each step is also logged).
pub async fn verify_with(
    services: &Services,
    pipeline: Option<&str>,
    table: &str,
    options: VerifyOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<VerifyReport> {
    let started = Instant::now();
    let verified_at = Utc::now();
    let (pipeline_name, pipeline, table_config, table_id) =
        locate_table(services, pipeline, table)?;
    if let Strategy::CustomSql { .. } = table_config.strategy {
        return Err(Error::InvalidRequest(format!(
            "`{table_id}` is a `custom_sql` table: its rows come from a statement, not from one source table, so there is nothing to compare them with"
        )));
    }
    if table_config.load_mode() == LoadMode::Append {
        return Err(Error::InvalidRequest(format!(
            "`{table_id}` loads with `load: append`, which keeps every version of a row: verify compares one row per key, as `merge` and `replace` keep"
        )));
    }
    let watermark = services
        .watermarks(pipeline)
        .read(&pipeline_name, &table_id)
        .await?
        .map(|v| v.record);
    let Some(last_loaded) = watermark
        .as_ref()
        .and_then(|w| w.load.last_loaded_run_id.clone())
    else {
        return Err(Error::InvalidRequest(format!(
            "`{table_id}` has not been loaded yet, so there is nothing to verify: run `tidemark sync -t {table_id}` first"
        )));
    };
    let layout = StorageLayout::new(&pipeline.s3.prefix);
    let bucket = services.bucket(pipeline);
    let manifest_key = layout.run_manifest_key(&pipeline_name, &table_id, &last_loaded);
    let loaded_ceiling = match bucket.get(&manifest_key).await? {
        Some(object) => {
            let run: RunManifest = manifest::parse_json(&object.body, &bucket.uri(&manifest_key))?;
            Some(run.ceiling).filter(|c| !c.is_unbounded())
        }
        None => {
            return Err(Error::InvalidRequest(format!(
                "the manifest of `{table_id}`'s last loaded run {last_loaded} is gone ({}), so its ceiling is unknown; run `tidemark sync -t {table_id}` and verify again",
                bucket.uri(&manifest_key)
            )))
        }
    };

    let source = services.source(pipeline).await?;
    let mut conn = source.conn().await?;
    let schema = source
        .within(
            "reading the table's schema",
            schema::discover(&mut conn, &table_id, &table_config.schema_options()),
        )
        .await?;
    let key_columns = table_config
        .key_columns
        .clone()
        .unwrap_or_else(|| schema.primary_key.clone());
    if key_columns.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "`{table_id}` has no primary key and no `key_columns`: verify names rows by key; set `key_columns`"
        )));
    }
    let target = services.target(&pipeline.target).await?;
    let warehouse = target.dialect();
    let fingerprint = Fingerprint::new(&schema, &key_columns, table_config.nul_in_text, warehouse)
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "a key column of `{table_id}` ({}) is not an extracted column; check `key_columns` and `columns`",
                key_columns.join(", ")
            ))
        })?;
    let target_table = table_config.target_table(&table_id)?;
    let cursor = cursor_expression(&table_config.strategy, &schema, &key_columns);

    // Both engines work at once: each scan is CPU-bound in its own server.
    let mut source_side = Side {
        engine: Engine::Mysql,
        table: table_id.mysql_quoted(),
        session: Session::Source {
            conn: &mut conn,
            source: &source,
        },
        bytes_read: 0,
    };
    // Rows marked deleted (`deletes: soft`) stand for no source row.
    let live_rows = target
        .live_rows(&target_table, table_config.current_flag())
        .await?.ok_or_else(|| {
        Error::InvalidRequest(format!(
            "the target table {} does not exist, so there is nothing to verify: run `tidemark sync -t {table_id}` to create and load it",
            naming::quote_warehouse_qualified(target.schema(), &target_table)
        ))
    })?;
    let mut target_side = Side {
        engine: fingerprint.target(),
        table: live_rows,
        session: Session::Target(&target),
        bytes_read: 0,
    };
    let say = |message: String| {
        tracing::info!(table = %table_id, "verify: {message}");
        progress(&message);
    };
    let compared = compare(
        &mut source_side,
        &mut target_side,
        &fingerprint,
        options,
        cursor.as_deref(),
        &say,
    )
    .await?;
    let mut report = VerifyReport {
        pipeline: pipeline_name.clone(),
        table: table_id.to_string(),
        target: format!("{}.{target_table}", target.schema()),
        verified_at,
        equal: true,
        loaded_ceiling,
        source_rows: compared.source_rows,
        target_rows: compared.target_rows,
        columns: fingerprint
            .columns()
            .iter()
            .map(|c| c.target_name.clone())
            .collect(),
        segments: compared.segments,
        segments_differing: compared.segments_differing,
        missing: Differences::default(),
        extra: Differences::default(),
        changed: Differences::default(),
        in_flight: Differences::default(),
        bytes_read: 0,
        elapsed_ms: 0,
        to_repair: Vec::new(),
    };
    let Compared {
        source: source_rows,
        target: target_rows,
        ..
    } = compared;

    let key_names: Vec<String> = key_columns
        .iter()
        .filter_map(|k| schema.column(k))
        .map(|c| c.target_name.clone())
        .collect();
    let named = |key: &[String]| -> BTreeMap<String, String> {
        key_names.iter().cloned().zip(key.iter().cloned()).collect()
    };
    let in_flight = |row: &RowHash| -> bool {
        match (&report.loaded_ceiling, &row.cursor) {
            (Some(ceiling), Some(value)) => {
                !ceiling.contains(&cursor_of(&table_config.strategy, value))
            }
            _ => false,
        }
    };
    let mut to_repair: Vec<Vec<String>> = Vec::new();
    let mut missing = Differences::default();
    let mut changed = Differences::default();
    let mut in_flight_rows = Differences::default();
    let mut extra = Differences::default();
    for (key, row) in &source_rows {
        match target_rows.get(key) {
            Some(loaded) if loaded.hash == row.hash => {}
            _ if in_flight(row) => in_flight_rows.add(named(key)),
            Some(_) => {
                changed.add(named(key));
                to_repair.push(key.clone());
            }
            None => {
                missing.add(named(key));
                to_repair.push(key.clone());
            }
        }
    }
    for key in target_rows.keys() {
        if !source_rows.contains_key(key) {
            extra.add(named(key));
        }
    }
    // The named changed rows' keys, back in key-column order.
    let changed_keys: Vec<Vec<String>> = changed
        .rows
        .iter()
        .map(|row| key_names.iter().map(|k| row.key[k].clone()).collect())
        .collect();
    if !changed_keys.is_empty() {
        say(format!(
            "naming the columns of {} changed row(s)",
            changed_keys.len()
        ));
        let (source_columns, target_columns) = tokio::try_join!(
            source_side.columns(&fingerprint, &changed_keys),
            target_side.columns(&fingerprint, &changed_keys),
        )?;
        for (row, key) in changed.rows.iter_mut().zip(&changed_keys) {
            if let (Some(before), Some(after)) = (source_columns.get(key), target_columns.get(key))
            {
                row.columns = report
                    .columns
                    .iter()
                    .zip(before.iter().zip(after))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(name, _)| name.clone())
                    .collect();
            }
        }
    }
    report.missing = missing;
    report.extra = extra;
    report.changed = changed;
    report.in_flight = in_flight_rows;
    report.to_repair = to_repair;
    report.equal = report.differing() == 0;
    report.bytes_read = source_side.bytes_read + target_side.bytes_read;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    crate::metrics::verified(
        &pipeline_name,
        &table_id,
        report.differing(),
        report.in_flight.count,
        started.elapsed(),
    )
    .emit();
    let key = layout.verify_report_key(&pipeline_name, &table_id);
    let body = serde_json::to_vec_pretty(&report)
        .map_err(|err| Error::internal(format!("cannot encode a verify report: {err}")))?;
    bucket.put(&key, body.into()).await?;
    Ok(report)
}

/// Lists `report`'s missing and changed rows for a repair run: writes their keys where the
/// run's extraction reads them and answers the run's `repair`, or none when nothing is to
/// repair. Rows gone from the source are not listed: a repair run's commit reconciles the
/// table's keys and removes them under `deletes: hard | soft` (so a report with only such rows
/// still makes a run, of no key); under `deletes: ignore` the target keeps them.
pub async fn repair_keys(services: &Services, report: &VerifyReport) -> Result<Option<RepairRun>> {
    let pipeline = services.config.pipeline(&report.pipeline)?;
    let table = TableId::parse(&report.table)?;
    let deletes = match pipeline.tables.get(&report.table) {
        Some(config) => {
            crate::steps::watermark::refuse_a_repair_that_cannot_be(
                config,
                &table,
                crate::run::SyncMode::Full,
            )?;
            config.deletes
        }
        None => crate::config::DeletePolicy::Ignore,
    };
    let removes_gone = report.extra.count > 0 && deletes != crate::config::DeletePolicy::Ignore;
    if report.to_repair.is_empty() && !removes_gone {
        return Ok(None);
    }
    let key = StorageLayout::new(&pipeline.s3.prefix).repair_keys_key(
        &report.pipeline,
        &table,
        report.verified_at,
    );
    let body = serde_json::to_vec(&report.to_repair)
        .map_err(|err| Error::internal(format!("cannot encode the keys to repair: {err}")))?;
    services.bucket(pipeline).put(&key, body.into()).await?;
    Ok(Some(RepairRun {
        keys_object: key,
        keys: report.to_repair.len() as u64,
    }))
}

/// `verify_due`: the sync state machine's `VerifyIfDue` state, after a table's load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyDueRequest {
    /// Pipeline name.
    pub pipeline: String,
    /// Source table, `db.table`.
    pub table: String,
}

/// What `verify_due` did: a verify when the table's `verify.every` has passed since the last
/// kept report, else nothing and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyOutcome {
    /// Whether a verify ran.
    pub verified: bool,
    /// The table equals its source (when verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equal: Option<bool>,
    /// Rows missing, gone from the source or changed.
    #[serde(default)]
    pub differing: u64,
    /// Rows changed after the last loaded run.
    #[serde(default)]
    pub in_flight: u64,
    /// Where the whole report is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Why no verify ran, when the table has `verify` configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Verifies `request.table` when its `verify.every` has passed since its last kept report (or
/// it has none); a table without `verify`, or not loaded yet, is not verified.
pub async fn verify_due(services: &Services, request: &VerifyDueRequest) -> Result<VerifyOutcome> {
    let not_verified = |reason: Option<String>| VerifyOutcome {
        verified: false,
        equal: None,
        differing: 0,
        in_flight: 0,
        report: None,
        reason,
    };
    let pipeline = services.config.pipeline(&request.pipeline)?;
    let table = TableId::parse(&request.table)?;
    let Some(schedule) = pipeline
        .tables
        .get(&request.table)
        .and_then(|config| config.verify)
    else {
        return Ok(not_verified(None));
    };
    let bucket = services.bucket(pipeline);
    let key = StorageLayout::new(&pipeline.s3.prefix).verify_report_key(&request.pipeline, &table);
    if let Some(object) = bucket.get(&key).await? {
        let last: VerifyReport = manifest::parse_json(&object.body, &bucket.uri(&key))?;
        let next = last.verified_at
            + chrono::Duration::from_std(schedule.every.0).unwrap_or(chrono::TimeDelta::MAX);
        if Utc::now() < next {
            return Ok(not_verified(Some(format!(
                "verified at {}; next after {} (`verify.every` {})",
                last.verified_at.to_rfc3339(),
                next.to_rfc3339(),
                schedule.every
            ))));
        }
    }
    let loaded = services
        .watermarks(pipeline)
        .read(&request.pipeline, &table)
        .await?
        .is_some_and(|v| v.record.load.last_loaded_run_id.is_some());
    if !loaded {
        return Ok(not_verified(Some("not loaded yet".to_owned())));
    }
    let report = Box::pin(verify(services, Some(&request.pipeline), &request.table)).await?;
    Ok(VerifyOutcome {
        verified: true,
        equal: Some(report.equal),
        differing: report.differing(),
        in_flight: report.in_flight.count,
        report: Some(bucket.uri(&key)),
        reason: None,
    })
}

/// The source's cursor as text in the format the ceiling keeps: the timestamp column for
/// `hybrid` and `timestamp_only`, the id column for `id_only`; none for `full_sync`.
fn cursor_expression(
    strategy: &Strategy,
    schema: &schema::TableSchema,
    key_columns: &[String],
) -> Option<String> {
    match strategy {
        Strategy::Hybrid { cursor_column } | Strategy::TimestampOnly { cursor_column } => {
            let column = naming::quote_mysql(&schema.column(cursor_column)?.name);
            Some(format!("DATE_FORMAT({column}, '%Y-%m-%d %H:%i:%s.%f')"))
        }
        Strategy::IdOnly { id_column, .. } => {
            let name = id_column
                .as_deref()
                .or_else(|| (key_columns.len() == 1).then(|| key_columns[0].as_str()))?;
            Some(format!(
                "CAST({} AS CHAR)",
                naming::quote_mysql(&schema.column(name)?.name)
            ))
        }
        Strategy::FullSync | Strategy::CustomSql { .. } => None,
    }
}

/// A source row's position, comparable with a ceiling.
fn cursor_of(strategy: &Strategy, value: &str) -> Cursor {
    match strategy {
        Strategy::IdOnly { .. } => Cursor {
            timestamp: None,
            key: vec![value.to_owned()],
        },
        _ => Cursor {
            timestamp: Some(value.to_owned()),
            key: Vec::new(),
        },
    }
}

/// Disagreeing segments of at most `split_rows` rows (read row by row), and the larger ones
/// (split again).
/// What [`compare`] found: both sides' totals, and the keys and row hashes of the rows of
/// disagreeing segments that differ (a key on one side only, or with another hash).
struct Compared {
    source_rows: u64,
    target_rows: u64,
    segments: u64,
    segments_differing: u64,
    source: BTreeMap<Vec<String>, RowHash>,
    target: BTreeMap<Vec<String>, RowHash>,
}

/// Fingerprints both sides by segment, descends into the segments that disagree until each is
/// small enough, and reads their rows' keys and hashes (with the source's `cursor`).
async fn compare(
    source_side: &mut Side<'_>,
    target_side: &mut Side<'_>,
    fingerprint: &Fingerprint<'_>,
    options: VerifyOptions,
    cursor: Option<&str>,
    say: &(dyn Fn(String) + Sync),
) -> Result<Compared> {
    say("fingerprinting every row in the source and in the target (one scan in each)".to_owned());
    let (source_segments, target_segments) = tokio::try_join!(
        source_side.segments(fingerprint, 1, None),
        target_side.segments(fingerprint, 1, None),
    )?;
    let first_level = disagreeing(&source_segments, &target_segments);
    let segments = source_segments
        .keys()
        .chain(target_segments.keys())
        .collect::<BTreeSet<_>>()
        .len() as u64;
    let segments_differing = first_level.len() as u64;
    say(format!(
        "{segments} segments compared, {segments_differing} disagree"
    ));

    // Descend into the disagreeing segments until each is small enough to read row by row.
    let (small, mut large) = split_by_size(first_level, options.split_rows);
    let mut to_read: Vec<(usize, Vec<(String, u64)>)> = vec![(1, small)];
    let mut depth = 1;
    while !large.is_empty() {
        if depth == MAX_DEPTH {
            // Their rows are unknown here: each is read on its own.
            to_read.push((
                depth,
                large.into_iter().map(|s| (s, ROWS_PER_READ)).collect(),
            ));
            break;
        }
        depth += 1;
        let (source_next, target_next) = tokio::try_join!(
            source_side.segments(fingerprint, depth, Some(&large)),
            target_side.segments(fingerprint, depth, Some(&large)),
        )?;
        let next = disagreeing(&source_next, &target_next);
        say(format!(
            "split the large ones: {} of their sub-segments (level {depth}) disagree",
            next.len()
        ));
        let (small, larger) = split_by_size(next, options.split_rows);
        to_read.push((depth, small));
        large = larger;
    }

    let batches: Vec<(usize, Vec<String>)> = to_read
        .into_iter()
        .flat_map(|(depth, segments)| {
            read_batches(segments)
                .into_iter()
                .map(move |batch| (depth, batch))
        })
        .collect();
    if !batches.is_empty() {
        say(format!(
            "reading the keys and row hashes of the disagreeing segments ({} query pair(s), at most {ROWS_PER_READ} rows each)",
            batches.len()
        ));
    }
    // Only the rows that differ are kept: memory follows the differences and the read
    // batches, not the table.
    let mut source_rows: BTreeMap<Vec<String>, RowHash> = BTreeMap::new();
    let mut target_rows: BTreeMap<Vec<String>, RowHash> = BTreeMap::new();
    for (depth, batch) in &batches {
        let (source_batch, target_batch) = tokio::try_join!(
            source_side.rows(fingerprint, *depth, batch, cursor),
            target_side.rows(fingerprint, *depth, batch, None),
        )?;
        let mut source_batch: BTreeMap<Vec<String>, RowHash> = source_batch.into_iter().collect();
        let mut target_batch: BTreeMap<Vec<String>, RowHash> = target_batch.into_iter().collect();
        let equal: Vec<Vec<String>> = source_batch
            .iter()
            .filter(|(key, row)| target_batch.get(*key).is_some_and(|t| t.hash == row.hash))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &equal {
            source_batch.remove(key);
            target_batch.remove(key);
        }
        source_rows.extend(source_batch);
        target_rows.extend(target_batch);
    }
    Ok(Compared {
        source_rows: source_segments.values().map(|s| s.rows).sum(),
        target_rows: target_segments.values().map(|s| s.rows).sum(),
        segments,
        segments_differing,
        source: source_rows,
        target: target_rows,
    })
}

/// The segments small enough to read (with their rows) and the names of those to split.
fn split_by_size(
    segments: Vec<(String, u64)>,
    split_rows: u64,
) -> (Vec<(String, u64)>, Vec<String>) {
    let (small, large): (Vec<_>, Vec<_>) = segments
        .into_iter()
        .partition(|(_, rows)| *rows <= split_rows);
    (small, large.into_iter().map(|(s, _)| s).collect())
}

/// `segments` (with their rows) in read batches: at most [`SEGMENTS_PER_QUERY`] segments and
/// [`ROWS_PER_READ`] rows each (a larger segment alone).
fn read_batches(segments: Vec<(String, u64)>) -> Vec<Vec<String>> {
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut rows_in_last = 0;
    for (segment, rows) in segments {
        let full = batches.last().is_none_or(|last| {
            last.len() >= SEGMENTS_PER_QUERY || rows_in_last + rows > ROWS_PER_READ
        });
        if full {
            batches.push(Vec::new());
            rows_in_last = 0;
        }
        rows_in_last += rows;
        if let Some(last) = batches.last_mut() {
            last.push(segment);
        }
    }
    batches
}

/// Segments whose count or checksum differ between the sides, with the larger row count.
fn disagreeing(
    source: &BTreeMap<String, Segment>,
    target: &BTreeMap<String, Segment>,
) -> Vec<(String, u64)> {
    source
        .keys()
        .chain(target.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|segment| {
            let a = source.get(segment).copied().unwrap_or_default();
            let b = target.get(segment).copied().unwrap_or_default();
            (a != b).then(|| (segment.clone(), a.rows.max(b.rows)))
        })
        .collect()
}

/// One engine's session on the table, and what it has sent.
struct Side<'a> {
    engine: Engine,
    /// The table, quoted for the engine.
    table: String,
    session: Session<'a>,
    bytes_read: u64,
}

enum Session<'a> {
    Source {
        conn: &'a mut mysql_async::Conn,
        source: &'a crate::source::Source,
    },
    Target(&'a TargetClient),
}

impl Side<'_> {
    /// Every row of `query`, values as text (NULL as None).
    async fn query(&mut self, query: &str) -> Result<Vec<Vec<Option<String>>>> {
        let rows: Vec<Vec<Option<String>>> = match &mut self.session {
            Session::Source { conn, source } => {
                let rows: Vec<mysql_async::Row> = source
                    .within("comparing rows with the target", async {
                        conn.query(query).await.map_err(|err| {
                            Error::mysql("computing row fingerprints in the source", err)
                        })
                    })
                    .await?;
                rows.into_iter()
                    .map(|row| row.unwrap().into_iter().map(value_text).collect())
                    .collect()
            }
            Session::Target(target) => target
                .rows(query, "computing row fingerprints in the target")
                .await?
                .into_iter()
                .map(|row| row.into_iter().map(Some).collect())
                .collect(),
        };
        self.bytes_read += rows
            .iter()
            .flatten()
            .map(|value| value.as_ref().map_or(1, |v| v.len() as u64))
            .sum::<u64>();
        Ok(rows)
    }

    /// Counts and checksums of the segments `depth` levels deep (within `within`).
    async fn segments(
        &mut self,
        fingerprint: &Fingerprint<'_>,
        depth: usize,
        within: Option<&[String]>,
    ) -> Result<BTreeMap<String, Segment>> {
        let mut segments = BTreeMap::new();
        let batches: Vec<Option<&[String]>> = match within {
            Some(all) => all.chunks(SEGMENTS_PER_QUERY).map(Some).collect(),
            None => vec![None],
        };
        for batch in batches {
            let query = fingerprint.segments_query(self.engine, &self.table, depth, batch);
            for row in self.query(&query).await? {
                let [Some(segment), Some(rows), Some(checksum)] = row.as_slice() else {
                    return Err(bad_answer(self.engine, "segment, rows, checksum", &row));
                };
                let parsed = rows.parse().ok().zip(checksum.parse().ok());
                let Some((rows, checksum)) = parsed else {
                    return Err(bad_answer(self.engine, "segment, rows, checksum", &row));
                };
                segments.insert(segment.clone(), Segment { rows, checksum });
            }
        }
        Ok(segments)
    }

    /// Key → row hash (and cursor) of the rows of `segments`, `depth` levels deep.
    async fn rows(
        &mut self,
        fingerprint: &Fingerprint<'_>,
        depth: usize,
        segments: &[String],
        cursor: Option<&str>,
    ) -> Result<Vec<(Vec<String>, RowHash)>> {
        let query = fingerprint.rows_query(self.engine, &self.table, depth, segments, cursor);
        let extra = if cursor.is_some() { 3 } else { 2 };
        let engine = self.engine;
        self.query(&query)
            .await?
            .into_iter()
            .map(|row| {
                let keys = row.len().checked_sub(extra).filter(|n| *n > 0);
                let Some(keys) = keys else {
                    return Err(bad_answer(engine, "key, key hash, row hash", &row));
                };
                let key: Vec<String> = row[..keys]
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect();
                Ok((
                    key,
                    RowHash {
                        hash: row[keys + 1].clone().unwrap_or_default(),
                        cursor: cursor.and_then(|_| row[keys + 2].clone()),
                    },
                ))
            })
            .collect()
    }

    /// Key → the columns' canonical texts, for the rows of `keys`.
    async fn columns(
        &mut self,
        fingerprint: &Fingerprint<'_>,
        keys: &[Vec<String>],
    ) -> Result<BTreeMap<Vec<String>, Vec<Option<String>>>> {
        let query = fingerprint.columns_query(self.engine, &self.table, keys);
        let key_count = keys.first().map_or(0, Vec::len);
        Ok(self
            .query(&query)
            .await?
            .into_iter()
            .map(|mut row| {
                let columns = row.split_off(key_count.min(row.len()));
                let key = row.into_iter().map(Option::unwrap_or_default).collect();
                (key, columns)
            })
            .collect())
    }
}

fn value_text(value: mysql_async::Value) -> Option<String> {
    use mysql_async::Value;
    match value {
        Value::NULL => None,
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true)),
    }
}

fn bad_answer(engine: Engine, expected: &str, row: &[Option<String>]) -> Error {
    Error::unexpected_answer(
        match engine {
            Engine::Mysql => "the source",
            Engine::Postgres | Engine::Redshift => "the target",
        },
        "a fingerprint query",
        format!("expected {expected}, got {row:?}"),
    )
}

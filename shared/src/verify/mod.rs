//! `tidemark verify`: proves a target table equal to its source, or names every row that is not.
//! Both engines fingerprint their own rows ([`fingerprint`]); tidemark compares per-segment
//! counts and checksums, descends only into segments that disagree, and reads keys and row
//! hashes of those alone. A difference whose source row changed after the last loaded run's
//! ceiling is in flight (the next sync carries it), not a difference.

pub mod fingerprint;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::config::{LoadMode, Strategy};
use crate::cursor::{Ceiling, Cursor};
use crate::error::{Error, Result};
use crate::load::target::TargetClient;
use crate::manifest::{self, RunManifest};
use crate::naming::{self, StorageLayout};
use crate::schema;
use crate::services::Services;
use crate::steps::watermark::locate_table;

pub use fingerprint::{Engine, Fingerprint};

/// Rows named per kind of difference; all are counted.
pub const NAMED_ROWS: usize = 100;
/// A disagreeing segment holding more rows than this on either side is split again (up to
/// [`MAX_DEPTH`]) before its rows are read.
pub const SPLIT_ROWS: u64 = 2_000;
/// Levels of segmentation at most: 4096^4 segments.
pub const MAX_DEPTH: usize = 4;
/// Segments named in one query.
const SEGMENTS_PER_QUERY: usize = 1_000;

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The pipeline.
    pub pipeline: String,
    /// The source table, `database.table`.
    pub table: String,
    /// The target table, `schema.table`.
    pub target: String,
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
}

/// One kind of difference: every row counted, the first [`NAMED_ROWS`] named by key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Differences {
    /// How many rows.
    pub count: u64,
    /// The first rows, by key.
    pub rows: Vec<DifferingRow>,
}

/// A row named by its key.
#[derive(Debug, Clone, Serialize)]
pub struct DifferingRow {
    /// Key column (target name) → the value's canonical text.
    pub key: BTreeMap<String, String>,
    /// For a changed row: the columns whose values differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
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

/// Compares `table` (bare or `database.table`) of `pipeline` (default: the one holding it) in
/// the source and the target.
pub async fn verify(
    services: &Services,
    pipeline: Option<&str>,
    table: &str,
) -> Result<VerifyReport> {
    let started = Instant::now();
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
    let target_qualified = naming::quote_warehouse_qualified(target.schema(), &target_table);
    let source_qualified = table_id.mysql_quoted();
    let cursor = cursor_expression(&table_config.strategy, &schema, &key_columns);

    let mut sides = Sides {
        conn: &mut conn,
        source: &source,
        target: &target,
        bytes_read: 0,
    };
    let source_segments = sides
        .segments(Engine::Mysql, &fingerprint, &source_qualified, 1, None)
        .await?;
    let target_segments = sides
        .segments(
            fingerprint.target(),
            &fingerprint,
            &target_qualified,
            1,
            None,
        )
        .await?;
    let first_level = disagreeing(&source_segments, &target_segments);
    let mut report = VerifyReport {
        pipeline: pipeline_name.clone(),
        table: table_id.to_string(),
        target: format!("{}.{target_table}", target.schema()),
        equal: true,
        loaded_ceiling,
        source_rows: source_segments.values().map(|s| s.rows).sum(),
        target_rows: target_segments.values().map(|s| s.rows).sum(),
        columns: fingerprint
            .columns()
            .iter()
            .map(|c| c.target_name.clone())
            .collect(),
        segments: source_segments
            .keys()
            .chain(target_segments.keys())
            .collect::<BTreeSet<_>>()
            .len() as u64,
        segments_differing: first_level.len() as u64,
        missing: Differences::default(),
        extra: Differences::default(),
        changed: Differences::default(),
        in_flight: Differences::default(),
        bytes_read: 0,
        elapsed_ms: 0,
    };
    tracing::info!(
        table = %table_id,
        segments = report.segments,
        differing = report.segments_differing,
        "segments compared"
    );

    // Descend into the disagreeing segments until each is small enough to read row by row.
    let mut to_read: Vec<(usize, Vec<String>)> = Vec::new();
    let mut level: Vec<String> = first_level
        .iter()
        .filter(|(_, rows)| *rows <= SPLIT_ROWS)
        .map(|(segment, _)| segment.clone())
        .collect();
    to_read.push((1, std::mem::take(&mut level)));
    let mut large: Vec<String> = first_level
        .into_iter()
        .filter(|(_, rows)| *rows > SPLIT_ROWS)
        .map(|(segment, _)| segment)
        .collect();
    let mut depth = 1;
    while !large.is_empty() {
        if depth == MAX_DEPTH {
            to_read.push((depth, large));
            break;
        }
        depth += 1;
        let source_next = sides
            .segments(
                Engine::Mysql,
                &fingerprint,
                &source_qualified,
                depth,
                Some(&large),
            )
            .await?;
        let target_next = sides
            .segments(
                fingerprint.target(),
                &fingerprint,
                &target_qualified,
                depth,
                Some(&large),
            )
            .await?;
        let next = disagreeing(&source_next, &target_next);
        tracing::info!(table = %table_id, depth, differing = next.len(), "segments split");
        to_read.push((
            depth,
            next.iter()
                .filter(|(_, rows)| *rows <= SPLIT_ROWS)
                .map(|(segment, _)| segment.clone())
                .collect(),
        ));
        large = next
            .into_iter()
            .filter(|(_, rows)| *rows > SPLIT_ROWS)
            .map(|(segment, _)| segment)
            .collect();
    }

    let mut source_rows: BTreeMap<Vec<String>, RowHash> = BTreeMap::new();
    let mut target_rows: BTreeMap<Vec<String>, RowHash> = BTreeMap::new();
    for (depth, segments) in &to_read {
        for batch in segments.chunks(SEGMENTS_PER_QUERY) {
            let query = fingerprint.rows_query(
                Engine::Mysql,
                &source_qualified,
                *depth,
                batch,
                cursor.as_deref(),
            );
            source_rows.extend(sides.rows(Engine::Mysql, &query, cursor.is_some()).await?);
            let query = fingerprint.rows_query(
                fingerprint.target(),
                &target_qualified,
                *depth,
                batch,
                None,
            );
            target_rows.extend(sides.rows(fingerprint.target(), &query, false).await?);
        }
    }

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
    let mut changed_keys: Vec<Vec<String>> = Vec::new();
    let mut missing = Differences::default();
    let mut changed = Differences::default();
    let mut in_flight_rows = Differences::default();
    let mut extra = Differences::default();
    for (key, row) in &source_rows {
        match target_rows.get(key) {
            Some(loaded) if loaded.hash == row.hash => {}
            _ if in_flight(row) => in_flight_rows.add(named(key)),
            Some(_) => {
                if changed_keys.len() < NAMED_ROWS {
                    changed_keys.push(key.clone());
                }
                changed.add(named(key));
            }
            None => missing.add(named(key)),
        }
    }
    for key in target_rows.keys() {
        if !source_rows.contains_key(key) {
            extra.add(named(key));
        }
    }
    if !changed_keys.is_empty() {
        let source_columns = sides
            .columns(
                Engine::Mysql,
                &fingerprint.columns_query(Engine::Mysql, &source_qualified, &changed_keys),
                key_names.len(),
            )
            .await?;
        let target_columns = sides
            .columns(
                fingerprint.target(),
                &fingerprint.columns_query(fingerprint.target(), &target_qualified, &changed_keys),
                key_names.len(),
            )
            .await?;
        for row in &mut changed.rows {
            let key: Vec<String> = key_names.iter().map(|k| row.key[k].clone()).collect();
            if let (Some(before), Some(after)) =
                (source_columns.get(&key), target_columns.get(&key))
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
    report.equal = missing.count == 0 && extra.count == 0 && changed.count == 0;
    report.missing = missing;
    report.extra = extra;
    report.changed = changed;
    report.in_flight = in_flight_rows;
    report.bytes_read = sides.bytes_read;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
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

/// The two sessions, and what they have sent.
struct Sides<'a> {
    conn: &'a mut mysql_async::Conn,
    source: &'a crate::source::Source,
    target: &'a TargetClient,
    bytes_read: u64,
}

impl Sides<'_> {
    /// Every row of `query` on `engine`, values as text (NULL as None).
    async fn query(&mut self, engine: Engine, query: &str) -> Result<Vec<Vec<Option<String>>>> {
        let rows: Vec<Vec<Option<String>>> = match engine {
            Engine::Mysql => {
                let conn = &mut *self.conn;
                let rows: Vec<mysql_async::Row> = self
                    .source
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
            Engine::Postgres | Engine::Redshift => self
                .target
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

    async fn segments(
        &mut self,
        engine: Engine,
        fingerprint: &Fingerprint<'_>,
        table: &str,
        depth: usize,
        within: Option<&[String]>,
    ) -> Result<BTreeMap<String, Segment>> {
        let mut segments = BTreeMap::new();
        let batches: Vec<Option<&[String]>> = match within {
            Some(all) => all.chunks(SEGMENTS_PER_QUERY).map(Some).collect(),
            None => vec![None],
        };
        for batch in batches {
            let query = fingerprint.segments_query(engine, table, depth, batch);
            for row in self.query(engine, &query).await? {
                let [Some(segment), Some(rows), Some(checksum)] = row.as_slice() else {
                    return Err(bad_answer(engine, "segment, rows, checksum", &row));
                };
                let parsed = rows.parse().ok().zip(checksum.parse().ok());
                let Some((rows, checksum)) = parsed else {
                    return Err(bad_answer(engine, "segment, rows, checksum", &row));
                };
                segments.insert(segment.clone(), Segment { rows, checksum });
            }
        }
        Ok(segments)
    }

    async fn rows(
        &mut self,
        engine: Engine,
        query: &str,
        with_cursor: bool,
    ) -> Result<Vec<(Vec<String>, RowHash)>> {
        let extra = if with_cursor { 3 } else { 2 };
        self.query(engine, query)
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
                        cursor: if with_cursor {
                            row[keys + 2].clone()
                        } else {
                            None
                        },
                    },
                ))
            })
            .collect()
    }

    /// Key → the columns' canonical texts.
    async fn columns(
        &mut self,
        engine: Engine,
        query: &str,
        keys: usize,
    ) -> Result<BTreeMap<Vec<String>, Vec<Option<String>>>> {
        Ok(self
            .query(engine, query)
            .await?
            .into_iter()
            .map(|mut row| {
                let columns = row.split_off(keys.min(row.len()));
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

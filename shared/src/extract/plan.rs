//! Planning a run's extraction: which order it reads in and why, how many chunks and which key
//! ranges, the row estimates, and the dry run's preview of the first statement.

use mysql_async::prelude::Queryable;
use mysql_async::Row;
use serde::Serialize;

use crate::config::{CdcStrategy, TableConfig};
use crate::error::{Error, Result};
use crate::naming::TableId;
use crate::run::RunContext;
use crate::schema::TableSchema;

use super::query::{Order, PageQuery, ReadPlan};
use super::{ChunkSpec, KeyRange, KeySlice, PlanResult};

/// Keys a repair run's chunk reads: one `IN` list of bound values each, well under MySQL's
/// 65,535 placeholders a statement for keys of up to 13 columns.
pub const REPAIR_KEYS_PER_CHUNK: u64 = 5_000;

/// A run reads in primary-key order once it reads at least this share of the table (1/20, 5%)
/// and more rows than `chunk_rows`. Measured on the 2M-row bench table, larger than the buffer
/// pool (issue #22): a read in cursor order through the cursor's secondary index costs about
/// 67 µs per row (one random clustered-index read each: 134 s for the whole table), a scan in
/// key order about 2.5 µs per row of the table (5 s), whatever share of it matches — so the scan
/// wins from about 4% of the table.
const KEY_ORDER_SHARE_DIVISOR: u64 = 20;

/// Splits a run into chunks and chooses the order it reads in.
///
/// - A `hybrid` or `timestamp_only` run with a key reads in primary-key order when it is large:
///   more rows than `chunk_rows` and at least 5% of the table (a first load always is, once the
///   table holds more than `chunk_rows` rows). The run's cursor bounds (its start, its ceiling)
///   filter the rows; they do not order them. With a single integer key the run is split into up
///   to `max_chunks` key ranges from the key's MIN and MAX (one range, open at both ends, at
///   concurrency 1); any other key is read as one chunk in key order. A small run reads in cursor
///   order through the cursor's index, which is right for it.
/// - A run with `limit` reads in cursor order as one chunk, so that its rows are the earliest
///   changes and the limit holds run-wide.
/// - `id_only` reads in the order of its id; a first load of more than `chunk_rows` rows with a
///   single integer id is split into key ranges.
/// - A `full_sync` run is one chunk, read by one connection under one consistent snapshot: its
///   rows replace the target's, so they must be one state of the source (key ranges read at
///   different moments lost or doubled rows that a writer moved between them).
/// - `custom_sql` is one chunk in the statement's own order.
///
/// Rows with NULL in the cursor column are counted and warned about.
pub async fn plan(
    conn: &mut mysql_async::Conn,
    schema: &TableSchema,
    run: &RunContext,
    table: &TableConfig,
    max_chunks: u32,
) -> Result<PlanResult> {
    if let Some(repair) = &run.repair {
        let chunks: Vec<ChunkSpec> = (0..repair.keys.div_ceil(REPAIR_KEYS_PER_CHUNK))
            .map(|n| {
                let first = n * REPAIR_KEYS_PER_CHUNK;
                ChunkSpec {
                    chunk: u32::try_from(n).unwrap_or(u32::MAX),
                    key_range: None,
                    repair_keys: Some(KeySlice {
                        first,
                        count: REPAIR_KEYS_PER_CHUNK.min(repair.keys - first),
                    }),
                }
            })
            .collect();
        let order = format!(
            "the {} keys to repair, at most {REPAIR_KEYS_PER_CHUNK} per chunk, in primary-key order",
            repair.keys
        );
        tracing::info!(table = %run.table, run_id = %run.run_id, chunks = chunks.len(), %order, "repair planned");
        return Ok(PlanResult {
            chunks,
            null_cursor_rows: 0,
            estimated_rows: repair.keys,
            run_rows: repair.keys,
            order,
        });
    }
    let table_id = run.table.clone();
    let whole = ChunkSpec {
        chunk: 0,
        key_range: None,
        repair_keys: None,
    };
    let read = ReadPlan::new(schema, run, table, &whole)?;

    let cursor_column = match run.strategy {
        CdcStrategy::Hybrid | CdcStrategy::TimestampOnly | CdcStrategy::CustomSql => {
            read.ts.as_ref()
        }
        CdcStrategy::IdOnly => read.keys.first(),
        CdcStrategy::FullSync => None,
    };
    let null_cursor_rows = match cursor_column {
        Some(column) => {
            crate::source::null_cursor_rows(conn, &table_id, &column.column.name).await?
        }
        None => 0,
    };
    if let Some(column) = cursor_column.filter(|_| null_cursor_rows > 0) {
        tracing::warn!(
            table = %table_id,
            column = %column.column.name,
            rows = null_cursor_rows,
            "rows with NULL in the cursor column can never be picked up by this cursor"
        );
    }
    let estimated_rows = estimated_rows(conn, &table_id).await?;
    let run_rows = run_rows(conn, &read, run, estimated_rows).await?;
    let choice = choose_order(&read, run, table, estimated_rows, run_rows);
    let chunks = match &choice {
        ReadOrder::ByKey { ranges: true, .. } => {
            let wanted = run_rows.div_ceil(table.chunk_rows.max(1)).max(1);
            let count = wanted.min(u64::from(max_chunks.max(1)));
            let key = read
                .keys
                .first()
                .ok_or_else(|| Error::internal("key ranges of a table without a key"))?;
            key_ranges(conn, &table_id, key.quoted(), count).await?
        }
        ReadOrder::ByKey { ranges: false, .. } => vec![ChunkSpec {
            chunk: 0,
            key_range: Some(KeyRange::default()),
            repair_keys: None,
        }],
        ReadOrder::AsPlanned(_) => vec![whole],
    };
    let order = choice.describe(chunks.len());
    tracing::info!(
        table = %table_id,
        run_id = %run.run_id,
        chunks = chunks.len(),
        estimated_rows,
        run_rows,
        null_cursor_rows,
        order = %order,
        "extraction planned"
    );
    Ok(PlanResult {
        chunks,
        null_cursor_rows,
        estimated_rows,
        run_rows,
        order,
    })
}

/// The order a run reads in, and why.
enum ReadOrder {
    /// Primary-key order, the run's cursor bounds as filters.
    ByKey {
        /// Split into ranges of a single integer key (else one chunk over the whole key).
        ranges: bool,
        why: String,
    },
    /// The order the strategy's read plan has for one whole chunk, and why.
    AsPlanned(String),
}

impl ReadOrder {
    fn describe(&self, chunks: usize) -> String {
        match self {
            ReadOrder::ByKey { ranges: true, why } => {
                format!("primary-key order, in {chunks} key range(s): {why}")
            }
            ReadOrder::ByKey { ranges: false, why } => {
                format!("primary-key order, one chunk over the whole (composite or non-integer) key: {why}")
            }
            ReadOrder::AsPlanned(what) => what.clone(),
        }
    }
}

fn choose_order(
    read: &ReadPlan,
    run: &RunContext,
    table: &TableConfig,
    table_rows: u64,
    run_rows: u64,
) -> ReadOrder {
    let integer_key = matches!(read.keys.as_slice(), [key] if key.is_integer());
    let first_load = run.start_cursor.is_start();
    let large = run_rows > table.chunk_rows
        && run_rows.saturating_mul(KEY_ORDER_SHARE_DIVISOR) >= table_rows;
    let size = format!("this run reads about {run_rows} of the table's about {table_rows} rows");
    match (&read.order, run.strategy) {
        (Order::Whole, _) => ReadOrder::AsPlanned(
            "one statement over the whole table, under one snapshot (it has no key)".to_owned(),
        ),
        (_, CdcStrategy::FullSync) => ReadOrder::AsPlanned(
            "key order, one chunk under one snapshot (`full_sync` replaces the target with one state of the source)".to_owned(),
        ),
        (Order::Custom(_), _) => {
            ReadOrder::AsPlanned("the order of the `custom_sql` statement".to_owned())
        }
        _ if read.empty => ReadOrder::AsPlanned("nothing to read: the table was empty at begin".to_owned()),
        (_, CdcStrategy::IdOnly) => {
            if integer_key && first_load && run.limit.is_none() && run_rows > table.chunk_rows {
                ReadOrder::ByKey {
                    ranges: true,
                    why: format!("a first load of more than `chunk_rows` ({}) rows", table.chunk_rows),
                }
            } else {
                ReadOrder::AsPlanned("key order of the id column (`id_only`)".to_owned())
            }
        }
        (Order::TimestampOnly, _) => ReadOrder::AsPlanned(format!(
            "cursor order (timestamp): the table has no key to read in order of; {size}"
        )),
        _ if run.limit.is_some() => ReadOrder::AsPlanned(
            "cursor order (timestamp, then key), through the cursor's index: a run with a limit reads the earliest changes first".to_owned(),
        ),
        _ if large => ReadOrder::ByKey {
            ranges: integer_key,
            why: format!(
                "{size}, more than `chunk_rows` ({}) and at least 1/{KEY_ORDER_SHARE_DIVISOR} of the table; the start and ceiling filter the rows, and reading that many in cursor order through the cursor's index would cost a random read per row",
                table.chunk_rows
            ),
        },
        _ => ReadOrder::AsPlanned(format!(
            "cursor order (timestamp, then key), through the cursor's index: {size}, no more than `chunk_rows` ({}) or under 1/{KEY_ORDER_SHARE_DIVISOR} of the table",
            table.chunk_rows
        )),
    }
}

async fn estimated_rows(conn: &mut mysql_async::Conn, table: &TableId) -> Result<u64> {
    let rows: Option<Option<u64>> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (table.database(), table.table()),
        )
        .await
        .map_err(|err| Error::mysql(format!("estimating the rows of `{table}`"), err))?;
    Ok(rows.flatten().unwrap_or(0))
}

/// The server's estimate of the rows `run` reads: the table's for a first load, a `full_sync`
/// or `custom_sql` run; otherwise the optimizer's estimate (`EXPLAIN`) of the whole run's read
/// in cursor order, between its start and its ceiling.
async fn run_rows(
    conn: &mut mysql_async::Conn,
    read: &ReadPlan,
    run: &RunContext,
    table_rows: u64,
) -> Result<u64> {
    if read.empty {
        return Ok(0);
    }
    let position = read.first_position(run)?;
    let everything = match &read.order {
        _ if position.is_none() => None,
        Order::TimestampKey | Order::Key => Some(read.keyset_page(position.as_ref(), u64::MAX)?),
        Order::TimestampOnly => Some(read.timestamp_page(position.as_ref(), None)?),
        Order::Whole | Order::Custom(_) => None,
    };
    let rows = match everything {
        Some(query) => explained_rows(conn, &read.table, query).await?,
        None => table_rows,
    };
    Ok(run.limit.map_or(rows, |limit| rows.min(limit)))
}

/// The optimizer's estimate of the rows `query` returns: the rows its plan examines times the
/// share its conditions keep (`filtered`, a percentage: a full scan of a table whose cursor has
/// no index examines every row but keeps few).
async fn explained_rows(
    conn: &mut mysql_async::Conn,
    table: &TableId,
    query: PageQuery,
) -> Result<u64> {
    let plan: Vec<Row> = conn
        .exec(format!("EXPLAIN {}", query.sql), query.params)
        .await
        .map_err(|err| Error::mysql(format!("explaining the read of `{table}`"), err))?;
    let Some(first) = plan.first() else {
        return Ok(0);
    };
    let examined = first
        .get_opt::<Option<u64>, _>("rows")
        .and_then(|rows| rows.ok().flatten())
        .unwrap_or(0);
    let kept_percent = first
        .get_opt::<Option<f64>, _>("filtered")
        .and_then(|filtered| filtered.ok().flatten())
        .unwrap_or(100.0)
        .clamp(0.0, 100.0);
    // Rounded up: a read the optimizer expects anything from is not empty.
    Ok((examined as f64 * kept_percent / 100.0).ceil() as u64)
}

/// Up to `count` contiguous ranges covering the key's MIN..MAX, the ends left open.
async fn key_ranges(
    conn: &mut mysql_async::Conn,
    table: &TableId,
    key: &str,
    count: u64,
) -> Result<Vec<ChunkSpec>> {
    let sql = format!(
        "SELECT CAST(MIN({key}) + 0 AS CHAR), CAST(MAX({key}) + 0 AS CHAR) FROM {}",
        table.mysql_quoted()
    );
    let bounds: Option<(Option<String>, Option<String>)> = conn
        .query_first(sql)
        .await
        .map_err(|err| Error::mysql(format!("reading the key range of `{table}`"), err))?;
    let parse = |text: Option<String>| text.and_then(|t| t.parse::<i128>().ok());
    let (Some(min), Some(max)) = bounds.map_or((None, None), |(lo, hi)| (parse(lo), parse(hi)))
    else {
        // An empty table: one range open at both ends still reads whatever is there by then.
        return Ok(vec![ChunkSpec {
            chunk: 0,
            key_range: Some(KeyRange::default()),
            repair_keys: None,
        }]);
    };
    let span = max - min + 1;
    let count = i128::from(count).clamp(1, span.max(1));
    let step = (span + count - 1) / count;
    let mut chunks = Vec::new();
    let mut lower = min;
    let mut number = 0u32;
    while lower <= max {
        let upper = (lower + step - 1).min(max);
        chunks.push(ChunkSpec {
            chunk: number,
            key_range: Some(KeyRange {
                lower: (number > 0).then(|| lower.to_string()),
                upper: (upper < max).then(|| upper.to_string()),
            }),
            repair_keys: None,
        });
        number += 1;
        lower = upper + 1;
    }
    Ok(chunks)
}

/// The first statement a run would send the source, and the server's estimate of the rows it
/// would read — for `sync --dry-run`. Reads nothing but the query plan (`EXPLAIN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadPreview {
    /// The statement, with `?` for each bound value.
    pub sql: String,
    /// The bound values, as SQL literals, in order.
    pub params: Vec<String>,
    /// The server's estimate of the rows the run reads (see [`PlanResult::run_rows`]).
    pub estimated_rows: u64,
    /// The order the run reads in, and why (see [`PlanResult::order`]).
    pub order: String,
}

/// What the first page of the run `plan` planned would read (see [`ReadPreview`]).
pub fn preview(
    schema: &TableSchema,
    run: &RunContext,
    table: &TableConfig,
    plan: &PlanResult,
    page_rows: u64,
) -> Result<ReadPreview> {
    let whole = ChunkSpec {
        chunk: 0,
        key_range: None,
        repair_keys: None,
    };
    let first_chunk = plan.chunks.first().unwrap_or(&whole);
    let read = ReadPlan::new(schema, run, table, first_chunk)?;
    let position = read.first_position(run)?;
    let first_limit = run.limit.map_or(page_rows, |limit| limit.min(page_rows));
    let first = match &read.order {
        Order::TimestampKey | Order::Key => read.keyset_page(position.as_ref(), first_limit)?,
        Order::TimestampOnly => read.timestamp_page(position.as_ref(), None)?,
        Order::Whole => read.whole_query(run.limit),
        Order::Custom(_) => read.custom_page(position.as_ref(), first_limit)?,
    };
    Ok(ReadPreview {
        sql: first.sql,
        params: first
            .params
            .iter()
            .map(|value| value.as_sql(false))
            .collect(),
        estimated_rows: plan.run_rows,
        order: plan.order.clone(),
    })
}

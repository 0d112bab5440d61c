//! Planning a run's extraction: how many chunks and which key ranges, the row estimate, and the
//! dry run's preview of the first statement.

use mysql_async::prelude::Queryable;
use mysql_async::Row;
use serde::Serialize;

use crate::config::{CdcStrategy, TableConfig};
use crate::error::{Error, Result};
use crate::naming::TableId;
use crate::run::RunContext;
use crate::schema::TableSchema;

use super::query::{Order, ReadPlan};
use super::{ChunkSpec, KeyRange, PlanResult};

/// Splits a run into chunks. An ordinary incremental run is one chunk. An initial load (the run
/// starts at the start of the table) of `hybrid`, `timestamp_only` or `id_only` of a table paged
/// by a single integer key with more rows than `chunk_rows` is split into up to `max_chunks` key
/// ranges from the key's MIN and MAX. A `full_sync` run is one chunk, read by one connection
/// under one consistent snapshot: its rows replace the target's, so they must be one state of
/// the source (key ranges read at different moments lost or doubled rows that a writer moved
/// between them). A run with `limit` is one chunk, so the limit holds run-wide. Rows with NULL in
/// the cursor column are counted and warned about.
pub async fn plan(
    conn: &mut mysql_async::Conn,
    schema: &TableSchema,
    run: &RunContext,
    table: &TableConfig,
    max_chunks: u32,
) -> Result<PlanResult> {
    let table_id = run.table.clone();
    let whole = ChunkSpec {
        chunk: 0,
        key_range: None,
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

    let initial_load = match run.strategy {
        CdcStrategy::FullSync => false,
        CdcStrategy::Hybrid | CdcStrategy::TimestampOnly | CdcStrategy::IdOnly => {
            run.start_cursor.is_start()
        }
        CdcStrategy::CustomSql => false,
    };
    let key = match read.keys.as_slice() {
        [key] if key.is_integer() => Some(key),
        _ => None,
    };
    let wanted = estimated_rows.div_ceil(table.chunk_rows.max(1));
    // Even one chunk is a key range (open at both ends) then: a key range reads in primary-key
    // order, and a large first load read in cursor order through a secondary index costs one
    // random read per row once the table outgrows the buffer pool (issue #22: 134 s against 5 s
    // for 2M rows).
    let chunks = match key {
        Some(key)
            if initial_load
                && run.limit.is_none()
                && !read.empty
                && estimated_rows > table.chunk_rows =>
        {
            let count = wanted.min(u64::from(max_chunks.max(1)));
            key_ranges(conn, &table_id, key.quoted(), count).await?
        }
        _ => vec![whole],
    };
    tracing::info!(
        table = %table_id,
        run_id = %run.run_id,
        chunks = chunks.len(),
        estimated_rows,
        null_cursor_rows,
        "extraction planned"
    );
    Ok(PlanResult {
        chunks,
        null_cursor_rows,
        estimated_rows,
    })
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
        return Ok(vec![ChunkSpec {
            chunk: 0,
            key_range: None,
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
        });
        number += 1;
        lower = upper + 1;
    }
    // A single range stays a range (open at both ends): it still reads in key order.
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
    /// The optimizer's estimate of the rows between the run's start and its ceiling (capped by
    /// the run's limit); the whole table's estimate for `custom_sql` and for a run split into
    /// several key ranges.
    pub estimated_rows: u64,
    /// The order the run reads in, and why.
    pub order: String,
}

/// What the first page of `run` would read (see [`ReadPreview`]). The estimate reads the
/// whole run's range without a page limit.
pub async fn preview(
    conn: &mut mysql_async::Conn,
    schema: &TableSchema,
    run: &RunContext,
    table: &TableConfig,
    chunks: &[ChunkSpec],
    page_rows: u64,
) -> Result<ReadPreview> {
    let table_id = run.table.clone();
    let whole = ChunkSpec {
        chunk: 0,
        key_range: None,
    };
    let first_chunk = chunks.first().unwrap_or(&whole);
    let read = ReadPlan::new(schema, run, table, first_chunk)?;
    let order = match &read.order {
        Order::Key if first_chunk.key_range.is_some() => format!(
            "primary-key order, in {} key range(s): a first load of more than `chunk_rows` rows \
             reads by key, not through the cursor's index",
            chunks.len()
        ),
        Order::Key => "key order".to_owned(),
        Order::TimestampKey => {
            "cursor order (timestamp, then key), through the cursor's index: an incremental run"
                .to_owned()
        }
        Order::TimestampOnly => "cursor order (timestamp)".to_owned(),
        Order::Whole => "one statement over the whole table (it has no key)".to_owned(),
        Order::Custom(_) => "the order of the `custom_sql` statement".to_owned(),
    };
    let position = read.first_position(run)?;
    let first_limit = run.limit.map_or(page_rows, |limit| limit.min(page_rows));
    let (first, everything) = match &read.order {
        Order::TimestampKey | Order::Key => (
            read.keyset_page(position.as_ref(), first_limit)?,
            Some(read.keyset_page(position.as_ref(), u64::MAX)?),
        ),
        Order::TimestampOnly => {
            let through_ceiling = read.timestamp_page(position.as_ref(), None)?;
            (through_ceiling.clone(), Some(through_ceiling))
        }
        Order::Whole => (read.whole_query(run.limit), Some(read.whole_query(None))),
        Order::Custom(_) => (read.custom_page(position.as_ref(), first_limit)?, None),
    };
    let estimated_rows = match everything {
        Some(_) if chunks.len() > 1 => estimated_rows(conn, &table_id).await?,
        Some(query) if !read.empty => {
            let plan: Vec<Row> = conn
                .exec(format!("EXPLAIN {}", query.sql), query.params)
                .await
                .map_err(|err| Error::mysql(format!("explaining the read of `{table_id}`"), err))?;
            plan.first()
                .and_then(|row| row.get_opt::<Option<u64>, _>("rows"))
                .and_then(|rows| rows.ok().flatten())
                .unwrap_or(0)
        }
        Some(_) => 0,
        None => estimated_rows(conn, &table_id).await?,
    };
    Ok(ReadPreview {
        sql: first.sql,
        params: first
            .params
            .iter()
            .map(|value| value.as_sql(false))
            .collect(),
        estimated_rows: run
            .limit
            .map_or(estimated_rows, |limit| estimated_rows.min(limit)),
        order,
    })
}

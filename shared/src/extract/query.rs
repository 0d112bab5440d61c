//! What one chunk reads and in which order: the keyset page statements of every strategy, with
//! every value bound and every identifier quoted by [`crate::naming::quote_mysql`].
//!
//! The keyset forms are the index-friendly ones of DESIGN §3, never the row constructor:
//! `ts >= :ts AND (ts > :ts OR id > :id) AND ts <= :ceiling ORDER BY ts, id LIMIT :n`; a
//! composite key extends the tie-break (`k1 > :k1 OR (k1 = :k1 AND k2 > :k2)`).

use mysql_async::Value;

use crate::config::{CdcStrategy, Strategy, TableConfig};
use crate::cursor::{unhex, Cursor, CursorTimestamp};
use crate::error::{Error, Result};
use crate::naming::{quote_mysql, TableId};
use crate::run::RunContext;
use crate::schema::{Column, ColumnType, TableSchema};

use super::decode::RowPosition;
use super::{ChunkSpec, KeyRange};
use crate::custom_sql::{CustomQuery, Placeholder};

/// A column the pages are ordered or filtered by.
#[derive(Debug, Clone)]
pub(crate) struct OrderColumn {
    /// Position in the schema's columns (and in every decoded row).
    pub index: usize,
    pub column: Column,
    quoted: String,
    /// `?`, or a cast that gives the bound text the column's type.
    placeholder: String,
}

impl OrderColumn {
    fn new(schema: &TableSchema, name: &str, role: &str) -> Result<Self> {
        let index = schema
            .columns
            .iter()
            .position(|c| {
                c.name.eq_ignore_ascii_case(name) || c.name.to_lowercase() == name.to_lowercase()
            })
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "{role} `{name}` is not among the extracted columns of `{}` ({}): it must \
                     exist and must not be left out by `columns`",
                    schema.table,
                    schema.column_names().join(", ")
                ))
            })?;
        let column = schema.columns[index].clone();
        let placeholder = match &column.ty {
            ColumnType::Decimal { precision, scale } if !is_unsigned_bigint(&column) => {
                format!("CAST(? AS DECIMAL({precision}, {scale}))")
            }
            ColumnType::Json => {
                return Err(Error::InvalidRequest(format!(
                    "{role} `{name}` is JSON, which cannot order rows"
                )))
            }
            _ => "?".to_owned(),
        };
        Ok(OrderColumn {
            index,
            quoted: quote_mysql(&column.name),
            column,
            placeholder,
        })
    }

    /// The bound value of a key cursor text for this column.
    pub fn key_value(&self, text: &str) -> Result<Value> {
        let invalid = || {
            Error::InvalidRequest(format!(
                "`{text}` is not a value of key column `{}` ({})",
                self.column.name, self.column.column_type
            ))
        };
        Ok(match &self.column.ty {
            ColumnType::Int16
            | ColumnType::Int32
            | ColumnType::Int64
            | ColumnType::Boolean { .. } => Value::Int(text.parse().map_err(|_| invalid())?),
            ColumnType::Bits { .. } => Value::UInt(text.parse().map_err(|_| invalid())?),
            ColumnType::Decimal { .. } if is_unsigned_bigint(&self.column) => {
                Value::UInt(text.parse().map_err(|_| invalid())?)
            }
            ColumnType::Decimal { .. } | ColumnType::Text { .. } | ColumnType::Json => {
                Value::Bytes(text.as_bytes().to_vec())
            }
            ColumnType::Binary { .. } => Value::Bytes(unhex(text).ok_or_else(invalid)?),
            ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampTz => {
                date_value(text.parse::<CursorTimestamp>()?)
            }
            ColumnType::Float32 | ColumnType::Float64 => {
                Value::Double(text.parse().map_err(|_| invalid())?)
            }
        })
    }

    /// Whether the key holds integers (what a key range splits).
    pub fn is_integer(&self) -> bool {
        matches!(
            self.column.ty,
            ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64 | ColumnType::Bits { .. }
        ) || is_unsigned_bigint(&self.column)
    }

    /// The quoted column name.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }
}

fn is_unsigned_bigint(column: &Column) -> bool {
    let column_type = column.column_type.to_ascii_lowercase();
    matches!(column.ty, ColumnType::Decimal { scale: 0, .. })
        && column_type.starts_with("bigint")
        && column_type.contains("unsigned")
}

fn date_value(at: CursorTimestamp) -> Value {
    Value::Date(
        at.year, at.month, at.day, at.hour, at.minute, at.second, at.micro,
    )
}

/// How the pages of a chunk are ordered.
#[derive(Debug, Clone)]
pub(crate) enum Order {
    /// `ORDER BY ts, key…` (hybrid, timestamp_only with a key).
    TimestampKey,
    /// `ORDER BY ts`, every page extended to the end of its last timestamp (timestamp_only
    /// without a key).
    TimestampOnly,
    /// `ORDER BY key…` (id_only, full_sync, the key ranges of a split initial load).
    Key,
    /// One unordered read of the whole table (full_sync of a table without a key).
    Whole,
    /// The user's statement.
    Custom(CustomQuery),
}

/// One statement to run for a page.
#[derive(Debug, Clone)]
pub(crate) struct PageQuery {
    pub sql: String,
    pub params: Vec<Value>,
    /// The `LIMIT` bound, when the statement has one: fewer rows means the chunk is done.
    pub limit: Option<u64>,
}

/// Everything one chunk reads: its columns, order, bounds.
#[derive(Debug, Clone)]
pub(crate) struct ReadPlan {
    pub table: TableId,
    pub order: Order,
    /// The timestamp cursor column.
    pub ts: Option<OrderColumn>,
    /// The key columns (for id_only, the id column).
    pub keys: Vec<OrderColumn>,
    /// Nothing can match (an id_only run of a table that was empty at begin).
    pub empty: bool,
    select_list: String,
    filters: Vec<String>,
    filter_params: Vec<Value>,
    ceiling: Option<CursorTimestamp>,
}

impl ReadPlan {
    /// Works out what `chunk` of `run` reads.
    pub fn new(
        schema: &TableSchema,
        run: &RunContext,
        table: &TableConfig,
        chunk: &ChunkSpec,
    ) -> Result<ReadPlan> {
        let table_id = run.table.clone();
        // The key was fixed at begin (the config's `key_columns`, else the primary key).
        let keys = run
            .key_columns
            .iter()
            .map(|name| OrderColumn::new(schema, name, "key column"))
            .collect::<Result<Vec<_>>>()?;
        let ts = |required: bool| -> Result<Option<OrderColumn>> {
            match table.strategy.cursor_column() {
                Some(name) => {
                    let column = OrderColumn::new(schema, name, "cursor column")?;
                    if !matches!(
                        column.column.ty,
                        ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampTz
                    ) {
                        return Err(Error::InvalidRequest(format!(
                            "cursor column `{name}` of `{table_id}` is `{}`; `{}` needs a DATETIME, TIMESTAMP or DATE",
                            column.column.column_type, run.strategy
                        )));
                    }
                    Ok(Some(column))
                }
                None if required => Err(Error::InvalidRequest(format!(
                    "`{}` of `{table_id}` needs `cursor_column`",
                    run.strategy
                ))),
                None => Ok(None),
            }
        };
        let ceiling_ts = || -> Result<CursorTimestamp> {
            let text = run.ceiling.timestamp.as_deref().ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "run `{}` has no timestamp ceiling; `{}` needs one (begin fixes it)",
                    run.run_id, run.strategy
                ))
            })?;
            text.parse::<CursorTimestamp>()
        };

        let mut plan = ReadPlan {
            select_list: schema.mysql_select_list(),
            table: table_id.clone(),
            order: Order::Key,
            ts: None,
            keys: Vec::new(),
            empty: false,
            filters: Vec::new(),
            filter_params: Vec::new(),
            ceiling: None,
        };
        if run.repair.is_some() {
            // The listed keys, in key order, whatever their cursor ([`ReadPlan::restrict_to_keys`]).
            if keys.is_empty() {
                return Err(Error::InvalidRequest(format!(
                    "`{table_id}` has no key columns, so no rows can be listed for a repair"
                )));
            }
            plan.keys = keys;
            return Ok(plan);
        }
        match run.strategy {
            CdcStrategy::Hybrid | CdcStrategy::TimestampOnly => {
                let ts = ts(true)?;
                let ceiling = ceiling_ts()?;
                plan.ceiling = Some(ceiling);
                if let Some(ts) = &ts {
                    plan.filters.push(format!("{} <= ?", ts.quoted));
                    plan.filter_params.push(date_value(ceiling));
                }
                plan.ts = ts;
                plan.order = if chunk.key_range.is_some() {
                    Order::Key
                } else if keys.is_empty() {
                    Order::TimestampOnly
                } else {
                    Order::TimestampKey
                };
                plan.keys = keys;
                if matches!(plan.order, Order::Key) {
                    plan.filter_after_start(&run.start_cursor)?;
                }
            }
            CdcStrategy::IdOnly => {
                let id = match (table.strategy.cursor_column(), keys.as_slice()) {
                    (Some(name), _) => OrderColumn::new(schema, name, "cursor column")?,
                    (None, [single]) => single.clone(),
                    _ => {
                        return Err(Error::InvalidRequest(format!(
                            "`id_only` of `{table_id}` needs an id column: set `cursor_column`, or \
                             give the table a one-column primary key"
                        )))
                    }
                };
                match &run.ceiling.id {
                    Some(max) => {
                        plan.filters
                            .push(format!("{} <= {}", id.quoted, id.placeholder));
                        plan.filter_params.push(id.key_value(max)?);
                    }
                    None => plan.empty = true,
                }
                plan.order = Order::Key;
                plan.keys = vec![id];
            }
            CdcStrategy::FullSync => {
                plan.order = if keys.is_empty() {
                    Order::Whole
                } else {
                    Order::Key
                };
                plan.keys = keys;
            }
            CdcStrategy::CustomSql => {
                // `RunContext::resolve` refused a table whose strategy changed since begin.
                let Strategy::CustomSql { statement, .. } = &table.strategy else {
                    return Err(Error::internal(format!(
                        "run `{}` of `{table_id}` is `custom_sql`, its table config `{}`",
                        run.run_id,
                        table.strategy.kind()
                    )));
                };
                let query = statement.query().clone();
                if query.params.contains(&Placeholder::Ceiling) || run.ceiling.timestamp.is_some() {
                    plan.ceiling = Some(ceiling_ts()?);
                }
                if query.uses_last_id() && keys.len() != 1 {
                    return Err(Error::InvalidRequest(format!(
                        "`custom_sql` of `{table_id}` uses `:last_id`, which needs exactly one key \
                         column (set `key_columns`)"
                    )));
                }
                plan.ts = ts(true)?;
                plan.keys = keys;
                plan.order = Order::Custom(query);
            }
        }

        if let Some(range) = chunk
            .key_range
            .as_ref()
            .filter(|range| range.lower.is_some() || range.upper.is_some())
        {
            let key = match plan.keys.as_slice() {
                [single] if single.is_integer() => single.clone(),
                _ => {
                    return Err(Error::InvalidRequest(format!(
                    "chunk {} has a key range, but `{table_id}` is not paged by one integer key",
                    chunk.chunk
                )))
                }
            };
            let KeyRange { lower, upper } = range;
            if let Some(lower) = lower {
                plan.filters
                    .push(format!("{} >= {}", key.quoted, key.placeholder));
                plan.filter_params.push(key.key_value(lower)?);
            }
            if let Some(upper) = upper {
                plan.filters
                    .push(format!("{} <= {}", key.quoted, key.placeholder));
                plan.filter_params.push(key.key_value(upper)?);
            }
        }
        Ok(plan)
    }

    /// Reads only the rows of `keys` (each the key columns' values as text, in key order): a
    /// repair run's chunk. Floating-point keys have no exact text and are refused.
    pub fn restrict_to_keys(&mut self, keys: &[Vec<String>]) -> Result<()> {
        if let Some(float) = self
            .keys
            .iter()
            .find(|k| matches!(k.column.ty, ColumnType::Float32 | ColumnType::Float64))
        {
            return Err(Error::InvalidRequest(format!(
                "key column `{}` of `{}` is a floating-point number, whose text is not exact: its rows cannot be listed for a repair",
                float.column.name, self.table
            )));
        }
        let columns: Vec<&str> = self.keys.iter().map(|k| k.quoted.as_str()).collect();
        let one: Vec<&str> = self.keys.iter().map(|k| k.placeholder.as_str()).collect();
        let tuple = |parts: &[&str]| match parts {
            [single] => (*single).to_owned(),
            _ => format!("({})", parts.join(", ")),
        };
        let mut params = Vec::with_capacity(keys.len() * self.keys.len());
        for key in keys {
            if key.len() != self.keys.len() {
                return Err(Error::InvalidRequest(format!(
                    "a key to repair has {} values, `{}` has {} key columns",
                    key.len(),
                    self.table,
                    self.keys.len()
                )));
            }
            for (column, text) in self.keys.iter().zip(key) {
                params.push(column.key_value(text)?);
            }
        }
        if keys.is_empty() {
            self.empty = true;
            return Ok(());
        }
        self.filters.push(format!(
            "{} IN ({})",
            tuple(&columns),
            vec![tuple(&one); keys.len()].join(", ")
        ));
        self.filter_params.extend(params);
        Ok(())
    }

    /// A timestamp strategy read in key order: the rows after the run's start cursor in cursor
    /// order, as a filter (see [`ReadPlan::after_in_cursor_order`]).
    fn filter_after_start(&mut self, start: &Cursor) -> Result<()> {
        if start.is_start() {
            return Ok(());
        }
        let mut params = Vec::new();
        let condition = self.after_in_cursor_order(start, &mut params)?;
        self.filters.push(condition);
        self.filter_params.extend(params);
        Ok(())
    }

    /// The rows strictly after `position` in (timestamp, key) order, in the index-friendly form
    /// `ts >= :ts AND (ts > :ts OR key > :key)`. A position without a key, as `lookback` leaves
    /// it, sits before every key at its timestamp: `ts >= :ts`, so those rows are read.
    fn after_in_cursor_order(&self, position: &Cursor, params: &mut Vec<Value>) -> Result<String> {
        let ts = self
            .ts
            .as_ref()
            .ok_or_else(|| Error::internal("no timestamp column"))?;
        let at = position.timestamp.as_deref().ok_or_else(|| {
            Error::InvalidRequest(format!(
                "the cursor of `{}` has no timestamp: {position:?}",
                self.table
            ))
        })?;
        let at = date_value(at.parse::<CursorTimestamp>()?);
        if position.key.is_empty() {
            params.push(at);
            return Ok(format!("{} >= ?", ts.quoted));
        }
        let mut tie = Vec::new();
        let after = self.after_keys(&position.key, &mut tie)?;
        params.push(at.clone());
        params.push(at);
        params.extend(tie);
        Ok(format!(
            "{ts} >= ? AND ({ts} > ? OR {after})",
            ts = ts.quoted
        ))
    }

    /// Where the chunk's first invocation starts: the run's start cursor (exclusive), except for
    /// `full_sync`, which reads the whole table every run, and a timestamp strategy read in key
    /// order, whose start is a filter (see [`ReadPlan::filter_after_start`]).
    pub fn first_position(&self, run: &RunContext) -> Result<Option<Cursor>> {
        let start = &run.start_cursor;
        if run.strategy == CdcStrategy::FullSync
            || start.is_start()
            || (matches!(self.order, Order::Key) && self.ts.is_some())
        {
            return Ok(None);
        }
        Ok(Some(start.clone()))
    }

    /// Whether pages come in cursor order, so a file's first and last rows are its minimum and
    /// maximum cursor. False for the key-ordered ranges of a timestamp strategy.
    pub fn pages_in_cursor_order(&self) -> bool {
        !(matches!(self.order, Order::Key) && self.ts.is_some())
    }

    /// Whether an invocation may stop between two rows of a page (and resume after the last
    /// one read). Not for a page extended to its last timestamp, nor for a custom statement
    /// (its paging is the user's), nor for a whole-table read.
    pub fn can_stop_inside_a_page(&self) -> bool {
        matches!(self.order, Order::TimestampKey | Order::Key)
    }

    /// The pagination position of a row: its cursor, without the timestamp when pages are
    /// ordered by key alone.
    pub fn page_position(&self, row: &RowPosition) -> Cursor {
        let mut cursor = row.to_cursor();
        if matches!(self.order, Order::Key) {
            cursor.timestamp = None;
        }
        cursor
    }

    fn base_select(&self) -> String {
        format!(
            "SELECT {} FROM {}",
            self.select_list,
            self.table.mysql_quoted()
        )
    }

    fn where_clause(conditions: &[String]) -> String {
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        }
    }

    /// `k1 > ? OR (k1 = ? AND k2 > ?) OR …`: strictly after `values` in key order.
    fn after_keys(&self, values: &[String], params: &mut Vec<Value>) -> Result<String> {
        if values.len() != self.keys.len() {
            return Err(Error::InvalidRequest(format!(
                "the cursor has {} key values, `{}` pages by {} key columns",
                values.len(),
                self.table,
                self.keys.len()
            )));
        }
        let mut alternatives = Vec::with_capacity(self.keys.len());
        for i in 0..self.keys.len() {
            let mut parts = Vec::with_capacity(i + 1);
            for (key, value) in self.keys[..i].iter().zip(values) {
                parts.push(format!("{} = {}", key.quoted, key.placeholder));
                params.push(key.key_value(value)?);
            }
            let key = &self.keys[i];
            parts.push(format!("{} > {}", key.quoted, key.placeholder));
            params.push(key.key_value(&values[i])?);
            alternatives.push(if parts.len() == 1 {
                parts.remove(0)
            } else {
                format!("({})", parts.join(" AND "))
            });
        }
        Ok(alternatives.join(" OR "))
    }

    /// The keyset page after `position` (exclusive), at most `limit` rows, for the orders that
    /// page with one statement.
    pub fn keyset_page(&self, position: Option<&Cursor>, limit: u64) -> Result<PageQuery> {
        let mut conditions = self.filters.clone();
        let mut params = self.filter_params.clone();
        let position = position.filter(|p| !p.is_start());
        let order_by: Vec<&str> = match &self.order {
            Order::TimestampKey => {
                let ts = self
                    .ts
                    .as_ref()
                    .ok_or_else(|| Error::internal("no timestamp column"))?;
                if let Some(position) = position {
                    conditions.push(self.after_in_cursor_order(position, &mut params)?);
                }
                std::iter::once(ts.quoted.as_str())
                    .chain(self.keys.iter().map(|k| k.quoted.as_str()))
                    .collect()
            }
            Order::Key => {
                if let Some(position) = position {
                    let mut tie = Vec::new();
                    let after = self.after_keys(&position.key, &mut tie)?;
                    if self.keys.len() == 1 {
                        conditions.push(after);
                    } else {
                        // The leading column's range lets the index do the work.
                        let first = &self.keys[0];
                        conditions.push(format!(
                            "{} >= {} AND ({after})",
                            first.quoted, first.placeholder
                        ));
                        params.push(first.key_value(&position.key[0])?);
                    }
                    params.extend(tie);
                }
                self.keys.iter().map(|k| k.quoted.as_str()).collect()
            }
            Order::Whole | Order::TimestampOnly | Order::Custom(_) => {
                return Err(Error::internal(
                    "keyset_page of an order without keyset pages",
                ))
            }
        };
        params.push(Value::UInt(limit));
        Ok(PageQuery {
            sql: format!(
                "{}{} ORDER BY {} LIMIT ?",
                self.base_select(),
                Self::where_clause(&conditions),
                order_by.join(", ")
            ),
            params,
            limit: Some(limit),
        })
    }

    /// full_sync of a table without a key: one read of the whole table (at most `limit` rows
    /// when the run has a limit). It cannot stop early and resume, so it ignores `chunk_rows` and
    /// the deadline: give such tables a key (or `key_columns`) to make them resumable.
    pub fn whole_query(&self, limit: Option<u64>) -> PageQuery {
        let mut sql = format!(
            "{}{}",
            self.base_select(),
            Self::where_clause(&self.filters)
        );
        let mut params = self.filter_params.clone();
        if let Some(limit) = limit {
            sql.push_str(" LIMIT ?");
            params.push(Value::UInt(limit));
        }
        PageQuery { sql, params, limit }
    }

    /// timestamp_only without a key, step 1: the timestamp of the `limit`-th row after
    /// `position`, if there are that many.
    pub fn boundary_query(&self, position: Option<&Cursor>, limit: u64) -> Result<PageQuery> {
        let ts = self
            .ts
            .as_ref()
            .ok_or_else(|| Error::internal("no timestamp column"))?;
        let (mut conditions, mut params) = self.after_timestamp(position)?;
        conditions.extend(self.filters.iter().cloned());
        params.extend(self.filter_params.iter().cloned());
        params.push(Value::UInt(limit.saturating_sub(1)));
        Ok(PageQuery {
            sql: format!(
                "SELECT {ts} FROM {}{} ORDER BY {ts} LIMIT 1 OFFSET ?",
                self.table.mysql_quoted(),
                Self::where_clause(&conditions),
                ts = ts.quoted
            ),
            params,
            limit: None,
        })
    }

    /// timestamp_only without a key, step 2: every row after `position` up to and including
    /// `through` (the boundary, or the ceiling when there is none) — so a page always ends with
    /// every row of its last timestamp.
    pub fn timestamp_page(
        &self,
        position: Option<&Cursor>,
        through: Option<Value>,
    ) -> Result<PageQuery> {
        let ts = self
            .ts
            .as_ref()
            .ok_or_else(|| Error::internal("no timestamp column"))?;
        let (mut conditions, mut params) = self.after_timestamp(position)?;
        conditions.extend(self.filters.iter().cloned());
        params.extend(self.filter_params.iter().cloned());
        if let Some(through) = through {
            conditions.push(format!("{} <= ?", ts.quoted));
            params.push(through);
        }
        Ok(PageQuery {
            sql: format!(
                "{}{} ORDER BY {}",
                self.base_select(),
                Self::where_clause(&conditions),
                ts.quoted
            ),
            params,
            limit: None,
        })
    }

    fn after_timestamp(&self, position: Option<&Cursor>) -> Result<(Vec<String>, Vec<Value>)> {
        let ts = self
            .ts
            .as_ref()
            .ok_or_else(|| Error::internal("no timestamp column"))?;
        match position.and_then(|p| p.timestamp.as_deref()) {
            Some(at) => Ok((
                vec![format!("{} > ?", ts.quoted)],
                vec![date_value(at.parse::<CursorTimestamp>()?)],
            )),
            None => Ok((Vec::new(), Vec::new())),
        }
    }

    /// The user's statement with its placeholders bound for the page after `position`.
    pub fn custom_page(&self, position: Option<&Cursor>, limit: u64) -> Result<PageQuery> {
        let Order::Custom(query) = &self.order else {
            return Err(Error::internal("custom_page of a keyset order"));
        };
        let position = position.filter(|p| !p.is_start());
        let last_ts = match position.and_then(|p| p.timestamp.as_deref()) {
            Some(text) => date_value(text.parse::<CursorTimestamp>()?),
            None => date_value(CursorTimestamp::EARLIEST),
        };
        let last_id = match (position.and_then(|p| p.key.first()), self.keys.first()) {
            (Some(text), Some(key)) => key.key_value(text)?,
            (None, Some(key)) => start_key_value(key),
            (_, None) => Value::NULL,
        };
        let ceiling = self.ceiling.map(date_value).unwrap_or(Value::NULL);
        let params = query
            .params
            .iter()
            .map(|p| match p {
                Placeholder::LastTs => last_ts.clone(),
                Placeholder::LastId => last_id.clone(),
                Placeholder::Ceiling => ceiling.clone(),
                Placeholder::Limit => Value::UInt(limit),
            })
            .collect();
        Ok(PageQuery {
            sql: query.sql.clone(),
            params,
            limit: query.pages().then_some(limit),
        })
    }
}

/// `:last_id` before the first row: below every value of the key's type.
fn start_key_value(key: &OrderColumn) -> Value {
    match key.column.ty {
        ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64 | ColumnType::Boolean { .. } => {
            Value::Int(i64::MIN)
        }
        ColumnType::Bits { .. } => Value::Int(-1),
        ColumnType::Decimal { .. } => Value::Int(i64::MIN),
        ColumnType::Float32 | ColumnType::Float64 => Value::Double(f64::MIN),
        ColumnType::Date | ColumnType::Timestamp | ColumnType::TimestampTz => {
            date_value(CursorTimestamp::EARLIEST)
        }
        ColumnType::Text { .. } | ColumnType::Json | ColumnType::Binary { .. } => {
            Value::Bytes(Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{SchemaOptions, SourceColumn};

    fn src(name: &str, data_type: &str, column_type: &str) -> SourceColumn {
        SourceColumn {
            name: name.to_owned(),
            data_type: data_type.to_owned(),
            column_type: column_type.to_owned(),
            nullable: false,
            ..Default::default()
        }
    }

    fn schema(keys: &[&str]) -> TableSchema {
        TableSchema::from_source_columns(
            &TableId::parse("shop.orders").unwrap(),
            vec![
                src("id", "bigint", "bigint(20) unsigned"),
                src("region", "varchar", "varchar(10)"),
                src("updated_at", "datetime", "datetime(6)"),
                src("amount", "decimal", "decimal(12,2)"),
            ],
            keys.iter().map(|k| (*k).to_owned()).collect(),
            &SchemaOptions::default(),
        )
        .unwrap()
    }

    fn run(strategy: CdcStrategy, keys: &[&str]) -> RunContext {
        serde_json::from_value(serde_json::json!({
            "pipeline": "p", "table": "shop.orders", "target": "orders",
            "run_id": "20260101T000000000Z-000000000001", "mode": "full",
            "strategy": strategy, "load_mode": "merge",
            "start_cursor": {}, "ceiling": {"timestamp": "2026-01-01 00:00:00.000000", "id": "99"},
            "schema_fingerprint": "f", "key_columns": keys,
            "lease_expires_at": "2026-01-01T01:00:00Z"
        }))
        .unwrap()
    }

    fn table(strategy: CdcStrategy, cursor: Option<&str>) -> TableConfig {
        let mut value = serde_json::json!({ "cdc_strategy": strategy });
        if let Some(cursor) = cursor {
            value["cursor_column"] = cursor.into();
        }
        serde_json::from_value(value).unwrap()
    }

    fn chunk() -> ChunkSpec {
        ChunkSpec {
            chunk: 0,
            key_range: None,
            repair_keys: None,
        }
    }

    fn cursor(ts: Option<&str>, key: &[&str]) -> Cursor {
        Cursor {
            timestamp: ts.map(str::to_owned),
            key: key.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[test]
    fn hybrid_pages_use_the_index_friendly_form() {
        let plan = ReadPlan::new(
            &schema(&["id"]),
            &run(CdcStrategy::Hybrid, &["id"]),
            &table(CdcStrategy::Hybrid, Some("updated_at")),
            &chunk(),
        )
        .unwrap();
        let page = plan
            .keyset_page(
                Some(&cursor(Some("2025-01-01 00:00:00.000001"), &["7"])),
                100,
            )
            .unwrap();
        assert_eq!(
            page.sql,
            "SELECT `id`, `region`, `updated_at`, `amount` FROM `shop`.`orders` WHERE \
             `updated_at` <= ? AND `updated_at` >= ? AND (`updated_at` > ? OR `id` > ?) \
             ORDER BY `updated_at`, `id` LIMIT ?"
        );
        assert_eq!(
            page.params,
            [
                Value::Date(2026, 1, 1, 0, 0, 0, 0),
                Value::Date(2025, 1, 1, 0, 0, 0, 1),
                Value::Date(2025, 1, 1, 0, 0, 0, 1),
                Value::UInt(7),
                Value::UInt(100)
            ]
        );
        let first = plan.keyset_page(None, 5).unwrap();
        assert!(
            first.sql.contains("WHERE `updated_at` <= ? ORDER BY"),
            "{}",
            first.sql
        );
    }

    #[test]
    fn composite_keys_extend_the_tie_break() {
        let plan = ReadPlan::new(
            &schema(&["region", "id"]),
            &run(CdcStrategy::FullSync, &["region", "id"]),
            &table(CdcStrategy::FullSync, None),
            &chunk(),
        )
        .unwrap();
        let page = plan
            .keyset_page(Some(&cursor(None, &["eu", "3"])), 10)
            .unwrap();
        assert!(
            page.sql.ends_with(
                "WHERE `region` >= ? AND (`region` > ? OR (`region` = ? AND `id` > ?)) \
                 ORDER BY `region`, `id` LIMIT ?"
            ),
            "{}",
            page.sql
        );
        assert_eq!(page.params.len(), 5);

        let hybrid = ReadPlan::new(
            &schema(&["region", "id"]),
            &run(CdcStrategy::Hybrid, &["region", "id"]),
            &table(CdcStrategy::Hybrid, Some("updated_at")),
            &chunk(),
        )
        .unwrap();
        let page = hybrid
            .keyset_page(Some(&cursor(Some("2025-01-01 00:00:00"), &["eu", "3"])), 10)
            .unwrap();
        assert!(
            page.sql.contains(
                "`updated_at` >= ? AND (`updated_at` > ? OR `region` > ? OR (`region` = ? AND `id` > ?))"
            ),
            "{}",
            page.sql
        );
    }

    #[test]
    fn key_ranges_and_id_ceilings_bound_the_pages() {
        let plan = ReadPlan::new(
            &schema(&["id"]),
            &run(CdcStrategy::IdOnly, &["id"]),
            &table(CdcStrategy::IdOnly, None),
            &ChunkSpec {
                chunk: 1,
                key_range: Some(KeyRange {
                    lower: Some("10".into()),
                    upper: None,
                }),
                repair_keys: None,
            },
        )
        .unwrap();
        let page = plan.keyset_page(Some(&cursor(None, &["12"])), 3).unwrap();
        assert!(
            page.sql
                .ends_with("WHERE `id` <= ? AND `id` >= ? AND `id` > ? ORDER BY `id` LIMIT ?"),
            "{}",
            page.sql
        );
        assert_eq!(
            page.params,
            [
                Value::UInt(99),
                Value::UInt(10),
                Value::UInt(12),
                Value::UInt(3)
            ]
        );
    }

    #[test]
    fn a_split_hybrid_chunk_pages_by_key_under_the_ceiling() {
        let plan = ReadPlan::new(
            &schema(&["id"]),
            &run(CdcStrategy::Hybrid, &["id"]),
            &table(CdcStrategy::Hybrid, Some("updated_at")),
            &ChunkSpec {
                chunk: 0,
                key_range: Some(KeyRange {
                    lower: None,
                    upper: Some("50".into()),
                }),
                repair_keys: None,
            },
        )
        .unwrap();
        assert!(!plan.pages_in_cursor_order());
        let page = plan.keyset_page(None, 3).unwrap();
        assert!(
            page.sql
                .ends_with("WHERE `updated_at` <= ? AND `id` <= ? ORDER BY `id` LIMIT ?"),
            "{}",
            page.sql
        );
    }

    #[test]
    fn decimal_keys_are_cast_and_json_keys_refused() {
        let plan = ReadPlan::new(
            &schema(&["amount"]),
            &run(CdcStrategy::FullSync, &["amount"]),
            &table(CdcStrategy::FullSync, None),
            &chunk(),
        )
        .unwrap();
        let page = plan.keyset_page(Some(&cursor(None, &["1.50"])), 3).unwrap();
        assert!(
            page.sql.contains("`amount` > CAST(? AS DECIMAL(12, 2))"),
            "{}",
            page.sql
        );
        assert_eq!(page.params[0], Value::Bytes(b"1.50".to_vec()));
    }

    #[test]
    fn timestamp_only_without_a_key_pages_in_two_steps() {
        let plan = ReadPlan::new(
            &schema(&[]),
            &run(CdcStrategy::TimestampOnly, &[]),
            &table(CdcStrategy::TimestampOnly, Some("updated_at")),
            &chunk(),
        )
        .unwrap();
        assert!(matches!(plan.order, Order::TimestampOnly));
        let at = cursor(Some("2025-01-01 00:00:00.000000"), &[]);
        let boundary = plan.boundary_query(Some(&at), 10).unwrap();
        assert_eq!(
            boundary.sql,
            "SELECT `updated_at` FROM `shop`.`orders` WHERE `updated_at` > ? AND `updated_at` <= ? \
             ORDER BY `updated_at` LIMIT 1 OFFSET ?"
        );
        assert_eq!(boundary.params.last(), Some(&Value::UInt(9)));
        let page = plan
            .timestamp_page(Some(&at), Some(Value::Date(2025, 6, 1, 0, 0, 0, 0)))
            .unwrap();
        assert!(
            page.sql.ends_with(
                "WHERE `updated_at` > ? AND `updated_at` <= ? AND `updated_at` <= ? ORDER BY `updated_at`"
            ),
            "{}",
            page.sql
        );
    }

    #[test]
    fn a_missing_cursor_column_is_named() {
        let err = ReadPlan::new(
            &schema(&["id"]),
            &run(CdcStrategy::Hybrid, &["id"]),
            &table(CdcStrategy::Hybrid, Some("changed_at")),
            &chunk(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`changed_at`"), "{err}");
        let err = ReadPlan::new(
            &schema(&["id"]),
            &run(CdcStrategy::Hybrid, &["id"]),
            &table(CdcStrategy::Hybrid, Some("amount")),
            &chunk(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("DATETIME"), "{err}");
    }
}

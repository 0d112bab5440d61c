//! Discovery: the `information_schema` reads that describe a MySQL table, every value bound.

use mysql_async::prelude::Queryable;

use crate::error::{Error, Result};
use crate::naming::{self, TableId};

use super::{SchemaOptions, SourceColumn, TableSchema};

/// Reads the table's columns, primary key and (on MariaDB) JSON checks, and maps them. Every
/// value is a bound parameter.
pub async fn discover(
    conn: &mut mysql_async::Conn,
    table: &TableId,
    options: &SchemaOptions,
) -> Result<TableSchema> {
    type ColumnRow = (
        String,
        String,
        String,
        String,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
    );
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_OCTET_LENGTH, \
                    NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (table.database(), table.table()),
        )
        .await
        .map_err(|e| Error::mysql(format!("reading the columns of `{table}`"), e))?;
    if rows.is_empty() {
        return Err(table_not_found(table));
    }
    let mut columns: Vec<SourceColumn> = rows
        .into_iter()
        .map(
            |(name, data_type, column_type, nullable, octets, precision, scale, dt_precision)| {
                SourceColumn {
                    name,
                    data_type,
                    column_type,
                    nullable: nullable.eq_ignore_ascii_case("YES"),
                    octet_length: octets,
                    numeric_precision: precision,
                    numeric_scale: scale,
                    datetime_precision: dt_precision,
                    json_checked: false,
                }
            },
        )
        .collect();

    let primary_key: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = ? \
             ORDER BY SEQ_IN_INDEX",
            (table.database(), table.table(), "PRIMARY"),
        )
        .await
        .map_err(|e| Error::mysql(format!("reading the primary key of `{table}`"), e))?;

    // MariaDB spells JSON as LONGTEXT plus a `json_valid(col)` CHECK; MySQL has a real JSON type.
    if columns
        .iter()
        .any(|c| c.data_type.eq_ignore_ascii_case("longtext"))
    {
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| Error::mysql("reading the server version", e))?;
        if version.is_some_and(|v| v.to_ascii_lowercase().contains("mariadb")) {
            let checks: Vec<String> = conn
                .exec(
                    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                     WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                    (table.database(), table.table()),
                )
                .await
                .map_err(|e| {
                    Error::mysql(format!("reading the CHECK constraints of `{table}`"), e)
                })?;
            for column in &mut columns {
                column.json_checked = checks
                    .iter()
                    .any(|check| is_json_valid_check(check, &column.name));
            }
        }
    }

    TableSchema::from_source_columns(table, columns, primary_key, options)
}

pub(super) fn table_not_found(table: &TableId) -> Error {
    Error::Schema(format!(
        "table `{table}` not found in the source: check the database and table names in the \
         config (they are case-sensitive on most servers) and that the source user has SELECT on it"
    ))
}

/// `json_valid(`col`)`, as MariaDB stores the CHECK it adds for a JSON column.
pub(super) fn is_json_valid_check(check_clause: &str, column: &str) -> bool {
    let expected = format!("json_valid({})", naming::quote_mysql(column));
    let normalized: String = check_clause.split_whitespace().collect();
    let expected: String = expected.split_whitespace().collect();
    normalized.eq_ignore_ascii_case(&expected)
}

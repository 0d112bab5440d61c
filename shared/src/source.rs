//! The MySQL source: connecting (UTC session, utf8mb4, TLS when configured), bounding every
//! exchange with the server by the connection's `read_timeout`, and the questions a run asks the
//! source before it reads — the ceiling and the rows a cursor can never see.
//!
//! mysql_async has no read timeout of its own: a stalled network (a peer that keeps the
//! connection open and says nothing) would hang a query forever. Every await on the server goes
//! through [`Source::within`] / [`within`] instead, which fails it as `Retryable`.
//! Values are always bound parameters; identifiers always go through `naming::quote_mysql`.

use std::future::Future;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::config::{CdcStrategy, HumanDuration, MysqlConnection, TableConfig, TlsMode};
use crate::cursor::Ceiling;
use crate::error::{Error, Result};
use crate::naming::{quote_mysql, TableId};
use crate::secret::{expose, SecretResolver};

/// Statements every source session runs first: UTC for TIMESTAMP values, 4-byte UTF-8.
///
/// They are mysql_async *setup* commands, not *init* commands: init runs once when a connection
/// is opened, and a pooled connection is reset (`COM_RESET_CONNECTION`) when it returns to the
/// pool, which puts the session back in the server's zone. Setup runs again after every reset.
/// On a server in local time, an init-only UTC shifted every TIMESTAMP and the cursor with it,
/// and rows were skipped (issue #23).
const SESSION_SETUP: [&str; 2] = ["SET time_zone = '+00:00'", "SET NAMES utf8mb4"];

/// A connection pool to one source, and how long the server may keep it waiting.
#[derive(Debug, Clone)]
pub struct Source {
    pool: mysql_async::Pool,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Source {
    /// A connection from the pool, opened within the connection's `connect_timeout`.
    pub async fn conn(&self) -> Result<mysql_async::Conn> {
        let context = "connecting to the source";
        match tokio::time::timeout(self.connect_timeout, self.pool.get_conn()).await {
            Ok(conn) => conn.map_err(|err| Error::mysql(context, err)),
            Err(_) => Err(timed_out(
                context,
                format!(
                    "no connection within {} (`connect_timeout`)",
                    HumanDuration(self.connect_timeout)
                ),
            )),
        }
    }

    /// Closes the pool's idle connections (a short-lived pool, like a connection probe's).
    pub async fn disconnect(self) {
        // A connection that cannot say goodbye is gone anyway.
        let _ = self.pool.disconnect().await;
    }

    /// The connection's `read_timeout`.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// `exchange` — queries on a connection of this source — failed as `Retryable` when the
    /// server leaves it waiting longer than `read_timeout`; `context` says what it was doing.
    pub async fn within<T>(
        &self,
        context: &str,
        exchange: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        within(self.read_timeout, context, exchange).await
    }
}

/// `exchange`, failed as `Retryable` when it takes longer than `read_timeout` (see [`Source::within`]).
pub async fn within<T>(
    read_timeout: Duration,
    context: &str,
    exchange: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(read_timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(timed_out(
                context,
                format!(
                    "the server sent nothing for {} (the source's `read_timeout`): the network or the server stalled; the step is retried — raise `read_timeout` if the server is only slow",
                    HumanDuration(read_timeout)
                ),
            ))
        })
}

/// A timeout as the I/O error it is: `Retryable`, like a lost connection.
fn timed_out(context: &str, message: String) -> Error {
    Error::mysql(
        context,
        mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            message,
        ))),
    )
}

/// Opens a connection pool to `connection`, resolving its password secret if it has one.
pub async fn connect(
    connection: &MysqlConnection,
    secrets: Option<&SecretResolver>,
) -> Result<Source> {
    let password = match (&connection.password, &connection.password_secret) {
        (Some(password), _) => Some(expose(password).to_owned()),
        (None, Some(id)) => {
            let resolver = secrets.ok_or_else(|| Error::Secret {
                id: id.clone(),
                reason: "no Secrets Manager client is configured here".to_owned(),
            })?;
            Some(expose(&resolver.password(id).await?).to_owned())
        }
        (None, None) => None,
    };
    let mut options = mysql_async::OptsBuilder::default()
        .ip_or_hostname(connection.host.clone())
        .tcp_port(connection.port)
        .user(Some(connection.user.clone()))
        .pass(password.filter(|p| !p.is_empty()))
        .setup(SESSION_SETUP.to_vec())
        .tcp_keepalive(Some(Duration::from_secs(30)))
        // The driver's cap on one packet: a longer row fails as it arrives (see `max_row_mib`).
        .max_allowed_packet(Some(connection.max_row_mib as usize * 1024 * 1024))
        .prefer_socket(false);
    let ca = crate::tls::ca_bundle(
        crate::tls::CaSource {
            connection: &connection.host,
            file: connection.tls_ca_file.as_deref(),
            secret: connection.tls_ca_secret.as_deref(),
        },
        secrets,
    )
    .await?;
    // Mozilla's roots (mysql_async's built-in ones, as for the warehouse) and the CA bundle.
    let ssl =
        mysql_async::SslOpts::default().with_root_certs(ca.into_iter().map(Into::into).collect());
    match connection.tls {
        TlsMode::Disabled => {}
        TlsMode::Required => options = options.ssl_opts(Some(ssl)),
        TlsMode::Unverified => {
            options = options.ssl_opts(Some(ssl.with_danger_accept_invalid_certs(true)))
        }
    }
    let source = Source {
        pool: mysql_async::Pool::new(options),
        connect_timeout: connection.connect_timeout.0,
        read_timeout: connection.read_timeout.0,
    };
    // Fail here, with the address, rather than at the first query.
    let address = format!("{}:{}", connection.host, connection.port);
    source.conn().await.map_err(|err| match err {
        Error::Mysql { source, .. } => Error::mysql(format!("connecting to {address}"), source),
        other => other,
    })?;
    Ok(source)
}

/// The column sets of the table's unique indexes (the primary key included) whose columns are
/// all NOT NULL: each identifies one row. A UNIQUE index over a nullable column does not (it
/// allows many NULLs).
pub async fn unique_keys(
    conn: &mut mysql_async::Conn,
    table: &TableId,
) -> Result<Vec<Vec<String>>> {
    let rows: Vec<(String, String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME, NULLABLE FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (table.database(), table.table()),
        )
        .await
        .map_err(|err| Error::mysql(format!("reading the unique indexes of `{table}`"), err))?;
    let mut keys: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (index, column, nullable) in rows {
        match keys.last_mut() {
            Some((name, columns, all_not_null)) if *name == index => {
                columns.push(column);
                *all_not_null &= nullable.is_empty();
            }
            _ => keys.push((index, vec![column], nullable.is_empty())),
        }
    }
    Ok(keys
        .into_iter()
        .filter(|(_, _, all_not_null)| *all_not_null)
        .map(|(_, columns, _)| columns)
        .collect())
}

/// The first of `unique` (see [`unique_keys`]) whose columns all lie within `key`: an index that
/// makes `key` identify one row. `None` when no index does, and rows may share `key`.
pub fn covering_index<'a>(unique: &'a [Vec<String>], key: &[String]) -> Option<&'a [String]> {
    unique
        .iter()
        .find(|index| {
            index
                .iter()
                .all(|column| key.iter().any(|k| k.eq_ignore_ascii_case(column)))
        })
        .map(Vec::as_slice)
}

/// The source's clock, `NOW(6)` of a UTC session, as a cursor timestamp.
pub async fn clock(conn: &mut mysql_async::Conn) -> Result<String> {
    let now: Option<String> = conn
        .query_first("SELECT DATE_FORMAT(NOW(6), '%Y-%m-%d %H:%i:%s.%f')")
        .await
        .map_err(|err| Error::mysql("reading the source clock", err))?;
    now.ok_or_else(|| Error::unexpected_answer("the source", "`SELECT NOW(6)`", "no row"))
}

/// Fixes the run's upper bound from the source's own clock or state, so the run always ends even
/// under continuous writes: `NOW(6) - lag` for timestamp cursors, `MAX(id)` for id cursors.
pub async fn ceiling(
    conn: &mut mysql_async::Conn,
    table: &TableId,
    config: &TableConfig,
    id_column: Option<&str>,
) -> Result<Ceiling> {
    let lag_micros = u64::try_from(config.lag.0.as_micros()).unwrap_or(u64::MAX);
    match config.strategy.kind() {
        CdcStrategy::Hybrid | CdcStrategy::TimestampOnly | CdcStrategy::CustomSql => {
            let now: Option<String> = conn
                .exec_first(
                    "SELECT DATE_FORMAT(NOW(6) - INTERVAL ? MICROSECOND, '%Y-%m-%d %H:%i:%s.%f')",
                    (lag_micros,),
                )
                .await
                .map_err(|err| Error::mysql("reading the source clock", err))?;
            Ok(Ceiling {
                timestamp: now,
                id: None,
            })
        }
        CdcStrategy::IdOnly => {
            let column = id_column.ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "`{table}` uses `id_only` but has no id column: set `cursor_column` or give the table a one-column primary key"
                ))
            })?;
            let sql = format!(
                "SELECT CAST(MAX({}) AS CHAR) FROM {}",
                quote_mysql(column),
                table.mysql_quoted()
            );
            let max: Option<Option<String>> = conn
                .query_first(sql)
                .await
                .map_err(|err| Error::mysql(format!("reading MAX of `{table}`"), err))?;
            Ok(Ceiling {
                timestamp: None,
                id: max.flatten(),
            })
        }
        CdcStrategy::FullSync => Ok(Ceiling::default()),
    }
}

/// How many rows have NULL in the cursor column: such rows can never be picked up by that cursor.
pub async fn null_cursor_rows(
    conn: &mut mysql_async::Conn,
    table: &TableId,
    cursor_column: &str,
) -> Result<u64> {
    let sql = format!(
        "SELECT COUNT(*) FROM {} WHERE {} IS NULL",
        table.mysql_quoted(),
        quote_mysql(cursor_column)
    );
    let count: Option<u64> = conn
        .query_first(sql)
        .await
        .map_err(|err| Error::mysql(format!("counting NULL cursors of `{table}`"), err))?;
    Ok(count.unwrap_or(0))
}

/// Rows of the table at or below `cursor` (for `validate_counts`), or all rows at the start.
pub async fn count_rows_up_to(
    conn: &mut mysql_async::Conn,
    table: &TableId,
    cursor_column: Option<&str>,
    cursor_value: Option<&str>,
) -> Result<u64> {
    let count: Option<u64> = match (cursor_column, cursor_value) {
        (Some(column), Some(value)) => {
            let sql = format!(
                "SELECT COUNT(*) FROM {} WHERE {} <= ?",
                table.mysql_quoted(),
                quote_mysql(column)
            );
            conn.exec_first(sql, (value,)).await
        }
        _ => {
            let sql = format!("SELECT COUNT(*) FROM {}", table.mysql_quoted());
            conn.query_first(sql).await
        }
    }
    .map_err(|err| Error::mysql(format!("counting rows of `{table}`"), err))?;
    Ok(count.unwrap_or(0))
}

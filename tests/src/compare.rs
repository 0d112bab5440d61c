//! Source-versus-target comparison for end-to-end tests: the same rows, rendered the same way on
//! both sides, so a mismatch in any column of any row shows.

use mysql_async::prelude::Queryable;

/// Rows of a MySQL query, each rendered as its columns joined with `|` (NULL as `∅`).
pub async fn mysql_rows(conn: &mut mysql_async::Conn, sql: &str) -> anyhow::Result<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn.query(sql).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (0..row.len())
                .map(|i| match row.as_ref(i) {
                    Some(mysql_async::Value::NULL) | None => "∅".to_owned(),
                    Some(mysql_async::Value::Bytes(bytes)) => {
                        String::from_utf8_lossy(bytes).into_owned()
                    }
                    Some(other) => other.as_sql(true).trim_matches('\'').to_owned(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect())
}

/// Rows of a PostgreSQL query whose columns are all text, rendered like [`mysql_rows`].
pub async fn postgres_rows(
    client: &tokio_postgres::Client,
    sql: &str,
) -> anyhow::Result<Vec<String>> {
    Ok(client
        .query(sql, &[])
        .await?
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.get::<_, Option<String>>(i)
                        .unwrap_or_else(|| "∅".to_owned())
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect())
}

//! `replay` through the Redshift Data API stand-in (issue #20): the Data API route of the
//! replay's loads — its batches, their ledger read-back — rebuilds a dropped table from S3
//! equal to the synced one, deletion runs included, and a second replay is a no-op.

use anyhow::ensure;
use mysql_async::prelude::Queryable;
use serde_json::json;
use tidemark::replay::{self, ReplayRequest};
use tidemark::steps::local_sync::{self, EXTRACTS_AT_ONCE};
use tidemark_tests::compare::postgres_rows;
use tidemark_tests::stack::{fast_runner, with_stack, Target};
use tidemark_tests::tables::Table;

#[tokio::test]
async fn a_dropped_table_is_rebuilt_through_the_data_api() {
    with_stack(Target::Redshift, async |stack| {
        let mut conn = stack.mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE items (id INT PRIMARY KEY, v VARCHAR(20), updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        conn.query_drop(
            "INSERT INTO items SELECT seq, CONCAT('v', seq), '2025-01-01' FROM \
             (SELECT a.n * 10 + b.n + 1 AS seq FROM \
               (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4) a, \
               (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION \
                SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) b) s",
        )
        .await?;
        let table = Table::hybrid("items", "updated_at")
            .with("deletes", "hard")
            .with("reconcile_every", "0s");
        let services = stack.services(&table.yaml()).await?;
        let sync = async |round: u32| {
            local_sync::run(
                &services,
                json!({"pipeline": "p"}),
                &fast_runner(&format!("replay-{round}")),
                EXTRACTS_AT_ONCE,
            )
            .await
        };
        sync(0).await?;
        conn.query_drop("UPDATE items SET v = 'changed', updated_at = '2025-02-01' WHERE id % 4 = 0")
            .await?;
        conn.query_drop("DELETE FROM items WHERE id % 5 = 0").await?;
        sync(1).await?;
        sync(2).await?;
        let rows = format!(
            "SELECT id::text, v FROM \"{}\".items AS t ORDER BY t.id",
            stack.pg.schema()
        );
        let synced = postgres_rows(stack.pg.client(), &rows).await?;
        ensure!(synced.len() == 40, "{} rows after the syncs", synced.len());

        stack
            .pg
            .client()
            .batch_execute(&format!("DROP TABLE \"{}\".items", stack.pg.schema()))
            .await?;
        let request = ReplayRequest {
            table: "items".to_owned(),
            ..ReplayRequest::default()
        };
        let report = replay::replay(&services, &request, &|_| {}).await?;
        ensure!(
            !report.target_existed && report.runs.iter().any(|r| r.deletion),
            "{report:#?}"
        );
        ensure!(
            postgres_rows(stack.pg.client(), &rows).await? == synced,
            "the replayed table differs from the synced one"
        );
        let again = replay::replay(&services, &request, &|_| {}).await?;
        ensure!(
            again.rows_staged == 0 && again.runs.iter().all(|r| r.already_loaded),
            "{again:#?}"
        );
        Ok(())
    })
    .await;
}

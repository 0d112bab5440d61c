//! `after_load` (issue #19): the pipeline's statements and then the table's run in the target
//! after each load; `--dry-run` shows them; a failing one fails the table but leaves its rows
//! loaded, and the next sync runs them again; `config check` refuses two statements in one item.

use anyhow::ensure;
use mysql_async::prelude::Queryable;
use tidemark_tests::scenario::{create_table, describe, insert_rows, Scenario};
use tidemark_tests::tables::Table;
use tidemark_tests::TestMysql;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

#[tokio::test]
async fn after_load_statements_follow_each_load_and_a_failure_leaves_the_rows_loaded() {
    TestMysql::run(async |mysql| {
        let scenario =
            Scenario::new(mysql, BINARY, &Table::hybrid("orders", "updated_at").yaml()).await?;
        let schema = scenario.pg.schema().to_owned();
        let pg = scenario.pg.client();
        pg.batch_execute(&format!("CREATE TABLE \"{schema}\".order_count (n BIGINT)"))
            .await?;
        let id = mysql.table("orders").to_string();
        let table_statements = |statement: &str| -> anyhow::Result<()> {
            scenario.set_config(
                &["pipelines", "p", "tables", &id, "after_load"],
                &serde_json::to_string(&[statement])?,
            )
        };
        scenario.set_config(
            &["pipelines", "p", "after_load"],
            &serde_json::to_string(&[format!("DELETE FROM \"{schema}\".order_count")])?,
        )?;
        let count_rows = format!(
            "INSERT INTO \"{schema}\".order_count SELECT COUNT(*) FROM \"{schema}\".orders"
        );
        table_statements(&count_rows)?;
        let counted = async || -> anyhow::Result<Vec<i64>> {
            Ok(pg
                .query(&format!("SELECT n FROM \"{schema}\".order_count"), &[])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect())
        };

        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        insert_rows(&mut conn, "orders", 1, 50, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("orders")?;
        ensure!(
            counted().await? == [50],
            "after the first load: {:?}",
            counted().await?
        );
        insert_rows(&mut conn, "orders", 51, 60, "2025-02-01 00:00:00").await?;
        scenario.sync_ok("orders")?;
        ensure!(
            counted().await? == [60],
            "the pipeline's statement runs first: {:?}",
            counted().await?
        );

        let out = scenario.run(&["sync", "-t", &id, "--dry-run"], None);
        let shown = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success()
                && shown.contains("after the load (after_load):")
                && shown.contains(&count_rows),
            "{}",
            describe(&out)
        );

        // A statement that fails: the table fails, its rows are loaded all the same.
        table_statements(&format!("INSERT INTO \"{schema}\".no_such_table SELECT 1"))?;
        insert_rows(&mut conn, "orders", 61, 65, "2025-03-01 00:00:00").await?;
        let out = scenario.sync("orders", None);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            out.status.code() == Some(1)
                && said.contains("are loaded (they are not loaded again)")
                && said.contains("no_such_table"),
            "{}",
            describe(&out)
        );
        let loaded: i64 = pg
            .query_one(&format!("SELECT COUNT(*) FROM \"{schema}\".orders"), &[])
            .await?
            .get(0);
        ensure!(loaded == 65, "{loaded} rows loaded of 65");
        let watermark = scenario.watermark("orders").await?.expect("a watermark");
        ensure!(
            watermark.pending_runs.is_empty() && watermark.lease.is_none(),
            "{watermark:?}"
        );

        // Fixed: the next sync runs the statements again.
        table_statements(&count_rows)?;
        scenario.sync_ok("orders")?;
        ensure!(
            counted().await? == [65],
            "after the fix: {:?}",
            counted().await?
        );

        table_statements("DELETE FROM a; DELETE FROM b")?;
        let out = scenario.run(&["config", "check"], None);
        ensure!(
            out.status.code() == Some(2)
                && String::from_utf8_lossy(&out.stderr)
                    .contains("item 1: it holds more than one statement"),
            "{}",
            describe(&out)
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

//! `depends_on` (issue #19 part 2), through `tidemark sync` of a whole pipeline: a table syncs
//! in a wave after the tables it depends on, even with `table_concurrency` to run them all at
//! once; when one of those fails, its dependents (and theirs) are reported `skipped` with the
//! reason, begin no run and load nothing, while unrelated tables sync; `--dry-run` shows the
//! waves.

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use serde_json::Value;
use tidemark_tests::scenario::{create_table, describe, insert_rows, Scenario};
use tidemark_tests::tables::{yaml, Table};
use tidemark_tests::TestMysql;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

fn dependent(name: &str, on: &str) -> anyhow::Result<Table> {
    Table::hybrid(name, "updated_at").with_yaml("depends_on", &format!("['{{db}}.{on}']"))
}

#[tokio::test]
async fn tables_sync_after_their_dependencies_and_are_skipped_when_one_fails() {
    TestMysql::run(async |mysql| {
        let tables = [
            Table::hybrid("customers", "updated_at"),
            dependent("orders", "customers")?,
            dependent("daily", "orders")?,
            Table::hybrid("audit", "updated_at"),
        ];
        let scenario = Scenario::new(mysql, BINARY, &yaml(&tables)).await?;
        scenario.set_config(&["pipelines", "p", "table_concurrency"], "4")?;
        let mut conn = mysql.conn().await?;
        for (name, rows) in [("customers", 30), ("orders", 40), ("daily", 20), ("audit", 10)] {
            conn.query_drop(create_table(name)).await?;
            insert_rows(&mut conn, name, 1, rows, "2025-01-01 00:00:00").await?;
        }
        let id = |name: &str| mysql.table(name).to_string();

        let out = scenario.run(&["sync", "--dry-run"], None);
        let shown = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success()
                && shown.contains(&format!("wave 2 (after {})", id("customers")))
                && shown.contains(&format!("wave 3 (after {})", id("orders"))),
            "{}",
            describe(&out)
        );

        let out = scenario.run(&["--json", "sync"], None);
        ensure!(out.status.success(), "{}", describe(&out));
        let pg = scenario.pg.client();
        let schema = scenario.pg.schema();
        for (name, rows) in [("customers", 30), ("orders", 40), ("daily", 20), ("audit", 10)] {
            let loaded: i64 = pg
                .query_one(&format!("SELECT COUNT(*) FROM \"{schema}\".{name}"), &[])
                .await?
                .get(0);
            ensure!(loaded == rows, "{name}: {loaded} rows loaded of {rows}");
        }
        // Each dependency's load committed before its dependent's run began (run ids start
        // with the time `begin` took them).
        let loaded_at = async |name: &str| -> anyhow::Result<chrono::NaiveDateTime> {
            Ok(pg
                .query_one(
                    &format!(
                        "SELECT MAX(loaded_at) FROM \"{schema}\".tidemark_load_ledger WHERE source_table = $1"
                    ),
                    &[&id(name)],
                )
                .await?
                .get(0))
        };
        let begun_at = async |name: &str| -> anyhow::Result<chrono::NaiveDateTime> {
            let run = scenario
                .watermark(name)
                .await?
                .context("a watermark")?
                .extract
                .last_run_id
                .context("a run")?;
            Ok(chrono::NaiveDateTime::parse_from_str(
                &run.to_string()[..18],
                "%Y%m%dT%H%M%S%3f",
            )?)
        };
        for (dependency, dependent) in [("customers", "orders"), ("orders", "daily")] {
            let (loaded, begun) = (loaded_at(dependency).await?, begun_at(dependent).await?);
            ensure!(
                loaded <= begun,
                "{dependency} loaded at {loaded}, after {dependent} began at {begun}"
            );
        }

        // `customers` fails (its source table is gone): `orders` and `daily` are skipped.
        conn.query_drop("DROP TABLE customers").await?;
        insert_rows(&mut conn, "orders", 41, 45, "2025-02-01 00:00:00").await?;
        insert_rows(&mut conn, "audit", 11, 12, "2025-02-01 00:00:00").await?;
        let orders_run = scenario
            .watermark("orders")
            .await?
            .context("a watermark")?
            .extract
            .last_run_id;
        let out = scenario.run(&["--json", "sync"], None);
        ensure!(out.status.code() == Some(1), "{}", describe(&out));
        let report: Value = serde_json::from_slice(&out.stdout)?;
        let status = |name: &str| {
            report["summary"]["tables"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["table"] == id(name))
                .cloned()
                .unwrap_or_default()
        };
        ensure!(
            status("customers")["status"] == "failed"
                && status("orders")["status"] == "skipped"
                && status("daily")["status"] == "skipped"
                && status("audit")["status"] == "succeeded"
                && report["summary"]["skipped"] == 2,
            "{}",
            describe(&out)
        );
        let reason = status("daily")["error"]["Cause"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(
            reason.contains(&format!("`{}`, which it depends on", id("orders")))
                && reason.contains("was skipped"),
            "{reason}"
        );
        // A skipped table began no run, recorded no failure and loaded nothing.
        let watermark = scenario.watermark("orders").await?.context("a watermark")?;
        ensure!(
            watermark.extract.last_run_id == orders_run
                && watermark.extract.error.is_none()
                && watermark.lease.is_none(),
            "{watermark:?}"
        );
        let counted = async |name: &str| -> anyhow::Result<i64> {
            Ok(pg
                .query_one(&format!("SELECT COUNT(*) FROM \"{schema}\".{name}"), &[])
                .await?
                .get(0))
        };
        ensure!(counted("orders").await? == 40, "orders loaded while skipped");
        ensure!(counted("audit").await? == 12, "audit did not sync");

        // The dependency back: the next sync catches the dependents up.
        conn.query_drop(create_table("customers")).await?;
        insert_rows(&mut conn, "customers", 1, 30, "2025-01-01 00:00:00").await?;
        let out = scenario.run(&["--json", "sync"], None);
        ensure!(out.status.success(), "{}", describe(&out));
        ensure!(counted("orders").await? == 45, "orders did not catch up");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

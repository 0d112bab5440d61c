//! `deletes` through the real binary (issue #17): how often keys are reconciled
//! (`reconcile_every`), `verify --repair` removing rows gone from the source under the table's
//! policy, an empty source that deletes nothing, and the tables `deletes` refuses.

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use tidemark_tests::scenario::{create_table, describe, insert_rows, Scenario};
use tidemark_tests::tables::Table;
use tidemark_tests::TestMysql;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

/// The target's ids, and those of them marked deleted.
async fn target_ids(scenario: &Scenario<'_>) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let rows = scenario
        .pg
        .client()
        .query(
            &format!(
                "SELECT id, _tidemark_deleted_at IS NOT NULL FROM \"{}\".\"orders\" ORDER BY id",
                scenario.pg.schema()
            ),
            &[],
        )
        .await?;
    let all = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
    let marked = rows
        .iter()
        .filter(|r| r.get::<_, bool>(1))
        .map(|r| r.get::<_, i64>(0))
        .collect();
    Ok((all, marked))
}

/// `deletes: soft` with `reconcile_every: 1d`: the first sync after the table's creation
/// reconciles and marks a deleted row; the next, within the day, does not look; `verify` names
/// the row as gone from the source, and `verify --repair` marks it in a deletion run with its
/// ledger row, after which verify reports equal. A row that comes back is live again.
#[tokio::test]
async fn soft_deletes_are_found_every_reconcile_every_and_by_verify_repair() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("orders", "updated_at")
            .lag("0s")
            .with("deletes", "soft")
            .with("reconcile_every", "1d");
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        insert_rows(&mut conn, "orders", 1, 100, "2025-01-01 00:00:00").await?;
        // The first sync creates the target: nothing can have been deleted from it yet.
        scenario.sync_ok("orders")?;
        ensure!(
            scenario
                .watermark("orders")
                .await?
                .and_then(|w| w.reconciled_at)
                .is_none(),
            "a reconciliation before the target existed"
        );

        conn.query_drop("DELETE FROM orders WHERE id = 10").await?;
        scenario.sync_ok("orders")?;
        let (all, marked) = target_ids(&scenario).await?;
        ensure!(
            all.len() == 100 && marked == [10],
            "marked {marked:?} of {} rows",
            all.len()
        );
        let reconciled = scenario
            .watermark("orders")
            .await?
            .and_then(|w| w.reconciled_at);
        ensure!(reconciled.is_some(), "no reconciliation recorded");

        // Within the day: not looked for.
        conn.query_drop("DELETE FROM orders WHERE id = 20").await?;
        scenario.sync_ok("orders")?;
        let (_, marked) = target_ids(&scenario).await?;
        ensure!(
            marked == [10],
            "marked {marked:?} before the next reconciliation"
        );
        ensure!(
            scenario
                .watermark("orders")
                .await?
                .and_then(|w| w.reconciled_at)
                == reconciled,
            "reconciled again within `reconcile_every`"
        );

        let id = mysql.table("orders").to_string();
        let out = scenario.run(&["--json", "verify", "-t", &id, "--repair"], None);
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("verify --repair: {}", describe(&out)))?;
        ensure!(out.status.success(), "{}", describe(&out));
        ensure!(
            answer["before"]["extra"]["count"] == 1
                && answer["before"]["extra"]["rows"][0]["key"]["id"] == "20",
            "{answer:#}"
        );
        ensure!(answer["after"]["equal"] == true, "{answer:#}");
        let (all, marked) = target_ids(&scenario).await?;
        ensure!(all.len() == 100 && marked == [10, 20], "marked {marked:?}");
        let ledger = scenario.ledger("orders").await?;
        ensure!(
            ledger.values().filter(|c| c[1] == 0 && c[2] == 1).count() == 2,
            "two deletion runs, one row each: {ledger:?}"
        );

        // A key that comes back is live again, once.
        conn.query_drop("INSERT INTO orders VALUES (10, 'back', 1.5, '2025-06-01 00:00:00')")
            .await?;
        scenario.sync_ok("orders")?;
        let (all, marked) = target_ids(&scenario).await?;
        ensure!(
            all.len() == 100 && marked == [20],
            "marked {marked:?} of {}",
            all.len()
        );
        let out = scenario.run(&["verify", "-t", &id], None);
        ensure!(out.status.success(), "{}", describe(&out));
        // The counts agree too: marked rows stand for no source row, nor for a ledger row.
        let out = scenario.run(&["watermark-count", "validate-counts", "-t", &id], None);
        ensure!(out.status.success(), "{}", describe(&out));
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// `verify --repair` under `deletes: hard` deletes the target rows gone from the source, even
/// when nothing else differs; under `ignore` they stay, and it says why.
#[tokio::test]
async fn verify_repair_deletes_rows_gone_from_the_source_under_hard() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("orders", "updated_at")
            .lag("0s")
            .with("deletes", "hard")
            .with("reconcile_every", "1d");
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        insert_rows(&mut conn, "orders", 1, 50, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("orders")?;
        scenario.sync_ok("orders")?;
        conn.query_drop("DELETE FROM orders WHERE id IN (3, 33)")
            .await?;
        let id = mysql.table("orders").to_string();
        let out = scenario.run(&["verify", "-t", &id, "--repair"], None);
        ensure!(out.status.success(), "{}", describe(&out));
        let count: i64 = scenario
            .pg
            .client()
            .query_one(
                &format!(
                    "SELECT count(*) FROM \"{}\".\"orders\" WHERE id IN (3, 33)",
                    scenario.pg.schema()
                ),
                &[],
            )
            .await?
            .get(0);
        ensure!(count == 0, "{count} deleted rows left");
        let out = scenario.run(&["watermark-count", "validate-counts", "-t", &id], None);
        ensure!(out.status.success(), "{}", describe(&out));
        let ledger = scenario.ledger("orders").await?;
        ensure!(
            ledger.values().any(|c| *c == [2, 0, 2]),
            "a deletion run of two keys that deleted two rows: {ledger:?}"
        );

        scenario.set_config(&["pipelines", "p", "tables", &id, "deletes"], "ignore")?;
        scenario.set_config(
            &["pipelines", "p", "tables", &id, "reconcile_every"],
            "null",
        )?;
        conn.query_drop("DELETE FROM orders WHERE id = 5").await?;
        let out = scenario.run(&["verify", "-t", &id, "--repair"], None);
        ensure!(out.status.code() == Some(1), "{}", describe(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            stdout.contains("gone from the source stay: the table has `deletes: ignore`"),
            "{}",
            describe(&out)
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// An empty source deletes nothing: the sync succeeds, says why, and the target keeps its rows.
#[tokio::test]
async fn an_empty_source_deletes_nothing() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("orders", "updated_at")
            .with("deletes", "hard")
            .with("reconcile_every", "0s");
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        insert_rows(&mut conn, "orders", 1, 30, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("orders")?;
        conn.query_drop("DELETE FROM orders").await?;
        let out = scenario.sync("orders", None);
        ensure!(out.status.success(), "{}", describe(&out));
        ensure!(
            String::from_utf8_lossy(&out.stderr).contains("does not delete a whole table"),
            "{}",
            describe(&out)
        );
        let count: i64 = scenario
            .pg
            .client()
            .query_one(
                &format!(
                    "SELECT count(*) FROM \"{}\".\"orders\"",
                    scenario.pg.schema()
                ),
                &[],
            )
            .await?
            .get(0);
        ensure!(count == 30, "{count} rows left of 30");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A key that rounds cannot name a deleted row: refused before anything is read, with the fix.
#[tokio::test]
async fn deletes_refuse_a_floating_point_key() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("floats", "updated_at").with("deletes", "hard");
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE floats (k DOUBLE PRIMARY KEY, updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        conn.query_drop("INSERT INTO floats VALUES (0.5, '2025-01-01')")
            .await?;
        let out = scenario.sync("floats", None);
        ensure!(!out.status.success(), "{}", describe(&out));
        ensure!(
            String::from_utf8_lossy(&out.stderr).contains("is a floating-point number"),
            "{}",
            describe(&out)
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

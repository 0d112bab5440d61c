//! `tidemark verify` (issue #17), through the real binary against MariaDB and PostgreSQL: equal
//! tables of every type family report equal; each kind of difference planted behind tidemark's
//! back in the target is named by key; rows changed after the last sync are in flight, not
//! differences.

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use serde_json::json;
use tidemark_tests::scenario::{create_table, describe, insert_rows, Scenario};
use tidemark_tests::tables::{self, Table};
use tidemark_tests::{type_zoo, TestMysql};

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

/// `verify --json`: its exit code and report.
fn verify(scenario: &Scenario<'_>, table: &str) -> anyhow::Result<(i32, serde_json::Value)> {
    let id = scenario.mysql.table(table).to_string();
    let out = scenario.run(&["--json", "verify", "-t", &id], None);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("verify's answer: {}", describe(&out)))?;
    Ok((out.status.code().unwrap_or(-1), report))
}

/// The `id` keys a kind of difference names, sorted.
fn ids(report: &serde_json::Value, kind: &str) -> Vec<String> {
    let mut ids: Vec<String> = report[kind]["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row["key"]["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The type zoo (every type tidemark maps, edge values, zero dates, all-NULL rows) verifies
/// equal after a sync; then a changed value of each type family, a changed NULL, a missing
/// row and an extra row, planted in the target, are each named by key and column.
#[tokio::test]
async fn verify_names_every_difference_planted_in_the_target() {
    TestMysql::run(async |mysql| {
        let table = Table::new(type_zoo::TABLE).strategy("full_sync");
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        type_zoo::create(&mut mysql.conn().await?).await?;
        scenario.sync_ok(type_zoo::TABLE)?;

        let (code, report) = verify(&scenario, type_zoo::TABLE)?;
        ensure!(
            code == 0 && report["equal"] == true,
            "the zoo differs: {report:#}"
        );
        ensure!(
            report["source_rows"] == 5 && report["target_rows"] == 5,
            "{report:#}"
        );

        let pg = scenario.pg.client();
        let target = format!("\"{}\".\"type_zoo\"", scenario.pg.schema());
        for (id, change) in [
            (1, "ti = 5"),
            (2, "dec_money = dec_money - 0.01"),
            (1, "d = d / 2"),
            (2, "dtm6 = dtm6 - INTERVAL '1 microsecond'"),
            (1, "vc = 'changed'"),
            (2, "vb = '\\x00ff7f81'::bytea"),
            (4, "flag = true"),
            (2, "tm = NULL"),
        ] {
            pg.batch_execute(&format!("UPDATE {target} SET {change} WHERE id = {id}"))
                .await?;
        }
        pg.batch_execute(&format!("DELETE FROM {target} WHERE id = 5"))
            .await?;
        pg.batch_execute(&format!(
            "INSERT INTO {target} (id, dec_money, created_at) VALUES (99, 0, '2024-01-01')"
        ))
        .await?;

        let (code, report) = verify(&scenario, type_zoo::TABLE)?;
        ensure!(code == 1 && report["equal"] == false, "{report:#}");
        ensure!(ids(&report, "missing") == ["5"], "{report:#}");
        ensure!(ids(&report, "extra") == ["99"], "{report:#}");
        ensure!(ids(&report, "changed") == ["1", "2", "4"], "{report:#}");
        let columns = |id: &str| -> Vec<String> {
            report["changed"]["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|row| row["key"]["id"] == id)
                .flat_map(|row| row["columns"].as_array().cloned().unwrap_or_default())
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        };
        ensure!(columns("1") == ["ti", "d", "vc"], "{report:#}");
        ensure!(
            columns("2") == ["dec_money", "dtm6", "tm", "vb"],
            "{report:#}"
        );
        ensure!(columns("4") == ["flag"], "{report:#}");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// Rows changed in the source after the last sync are in flight, not differences, and the next
/// sync carries them; a row deleted in the source is named as gone from it, and a row changed
/// without moving its cursor (which no sync can see) as changed.
#[tokio::test]
async fn rows_changed_after_the_last_sync_are_in_flight() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("orders", "updated_at").with_yaml("lag", "0s")?;
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        insert_rows(&mut conn, "orders", 1, 300, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("orders")?;
        let (code, report) = verify(&scenario, "orders")?;
        ensure!(code == 0 && report["equal"] == true, "{report:#}");

        conn.query_drop("UPDATE orders SET v = 'late', updated_at = NOW(6) WHERE id = 5")
            .await?;
        conn.query_drop("INSERT INTO orders VALUES (301, 'new', 1, NOW(6))")
            .await?;
        conn.query_drop("DELETE FROM orders WHERE id = 7").await?;
        conn.query_drop("UPDATE orders SET amount = 0 WHERE id = 9")
            .await?;
        let (code, report) = verify(&scenario, "orders")?;
        ensure!(code == 1 && report["equal"] == false, "{report:#}");
        ensure!(ids(&report, "in_flight") == ["301", "5"], "{report:#}");
        ensure!(ids(&report, "extra") == ["7"], "{report:#}");
        ensure!(ids(&report, "changed") == ["9"], "{report:#}");
        ensure!(
            report["changed"]["rows"][0]["columns"] == json!(["amount"]),
            "{report:#}"
        );
        ensure!(report["missing"]["count"] == 0, "{report:#}");

        // The human report names each kind.
        let id = mysql.table("orders").to_string();
        let out = scenario.run(&["verify", "-t", &id], None);
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.code() == Some(1), "{}", describe(&out));
        // Progress on stderr, step by step.
        let progress = String::from_utf8_lossy(&out.stderr);
        for step in [
            "fingerprinting every row in the source and in",
            "segments compared, ",
            "reading the keys and row hashes of ",
            "naming the columns of 1 changed row(s)",
        ] {
            ensure!(progress.contains(step), "`{step}` not in:\n{progress}");
        }
        for line in [
            "DIFFERENT",
            "1 row(s) gone from the source:",
            "    id=7",
            "1 row(s) values differ:",
            "    id=9 (columns: amount)",
            "2 row(s) not yet synced",
        ] {
            ensure!(text.contains(line), "`{line}` not in:\n{text}");
        }

        scenario.sync_ok("orders")?;
        let (_, report) = verify(&scenario, "orders")?;
        ensure!(report["in_flight"]["count"] == 0, "{report:#}");
        // Row 9 is equal again only because every row lies within the lookback window (all are
        // stamped within a millisecond), which the second sync re-read.
        ensure!(
            ids(&report, "extra") == ["7"] && report["changed"]["count"] == 0,
            "{report:#}"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// Tables verify cannot compare are refused with the reason and what to do.
#[tokio::test]
async fn verify_refuses_what_it_cannot_compare() {
    TestMysql::run(async |mysql| {
        let tables = tables::yaml(&[
            Table::hybrid("orders", "updated_at"),
            Table::new("log").strategy("id_only").load("append"),
            Table::new("whole").strategy("full_sync"),
        ]);
        let scenario = Scenario::new(mysql, BINARY, &tables).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        conn.query_drop(create_table("log")).await?;
        // A `replace` table is compared, but not repaired: its next sync rewrites it whole.
        conn.query_drop(create_table("whole")).await?;
        insert_rows(&mut conn, "whole", 1, 20, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("whole")?;
        let id = mysql.table("whole").to_string();
        let out = scenario.run(&["verify", "-t", &id, "--repair"], None);
        ensure!(
            out.status.code() == Some(2)
                && String::from_utf8_lossy(&out.stderr)
                    .contains("cannot be repaired: it loads with `replace`"),
            "{}",
            describe(&out)
        );
        for (table, expected) in [
            ("orders", "has not been loaded yet"),
            ("log", "`load: append`"),
        ] {
            let id = mysql.table(table).to_string();
            let out = scenario.run(&["verify", "-t", &id], None);
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(
                out.status.code() == Some(2) && stderr.contains(expected),
                "{table}: {}",
                describe(&out)
            );
        }
        // Without `-t`: every table of the pipeline; those it cannot compare are skipped, with why.
        let whole_pipeline =
            |scenario: &Scenario<'_>| -> anyhow::Result<(Option<i32>, serde_json::Value)> {
                let out = scenario.run(&["--json", "verify", "-p", "p"], None);
                let answer = serde_json::from_slice(&out.stdout)
                    .with_context(|| format!("verify -p: {}", describe(&out)))?;
                Ok((out.status.code(), answer))
            };
        let (code, answer) = whole_pipeline(&scenario)?;
        let skipped: Vec<&str> = answer["skipped"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["reason"].as_str())
            .collect();
        ensure!(
            code == Some(0)
                && answer["tables"].as_array().map(Vec::len) == Some(1)
                && answer["tables"][0]["equal"] == true
                && skipped.len() == 2
                && skipped
                    .iter()
                    .any(|r| r.contains("has not been loaded yet"))
                && skipped.iter().any(|r| r.contains("`load: append`")),
            "{answer:#}"
        );
        scenario
            .pg
            .client()
            .batch_execute(&format!(
                "DELETE FROM \"{}\".\"whole\" WHERE id = 3",
                scenario.pg.schema()
            ))
            .await?;
        let (code, answer) = whole_pipeline(&scenario)?;
        ensure!(
            code == Some(1) && ids(&answer["tables"][0], "missing") == ["3"],
            "{answer:#}"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A table with `verify: { every: … }` is verified by the sync state machine after its load:
/// the sync's outcome carries the verify, a difference planted in the target is counted there
/// without failing the sync, and a verify kept less than `every` ago is not run again.
#[tokio::test]
async fn the_sync_verifies_a_table_when_its_verify_is_due() {
    TestMysql::run(async |mysql| {
        // No lookback: the second sync reads nothing again, so what is planted stays.
        let table = Table::hybrid("orders", "updated_at")
            .lookback("0s")
            .with_yaml("verify", "{ every: 0s }")?;
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        insert_rows(&mut conn, "orders", 1, 120, "2025-01-01 00:00:00").await?;
        let sync = |scenario: &Scenario<'_>| -> anyhow::Result<serde_json::Value> {
            let out = scenario.sync("orders", None);
            ensure!(out.status.success(), "sync: {}", describe(&out));
            let answer: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            Ok(answer["summary"]["tables"][0].clone())
        };
        let outcome = sync(&scenario)?;
        ensure!(
            outcome["verify"]["verified"] == true
                && outcome["verify"]["equal"] == true
                && outcome["verify"]["differing"] == 0,
            "{outcome:#}"
        );
        ensure!(
            outcome["verify"]["report"].as_str().is_some_and(
                |uri| uri.ends_with(&format!("/verify/p/{}/orders.json", mysql.database()))
            ),
            "{outcome:#}"
        );

        let target = format!("\"{}\".\"orders\"", scenario.pg.schema());
        scenario
            .pg
            .client()
            .batch_execute(&format!("DELETE FROM {target} WHERE id = 60"))
            .await?;
        let outcome = sync(&scenario)?;
        ensure!(outcome["status"] == "succeeded", "{outcome:#}");
        ensure!(
            outcome["verify"]["equal"] == false && outcome["verify"]["differing"] == 1,
            "{outcome:#}"
        );
        let (_, report) = verify(&scenario, "orders")?;
        ensure!(ids(&report, "missing") == ["60"], "{report:#}");

        scenario.set_config(
            &[
                "pipelines",
                "p",
                "tables",
                &mysql.table("orders").to_string(),
                "verify",
                "every",
            ],
            "1d",
        )?;
        let outcome = sync(&scenario)?;
        ensure!(
            outcome["verify"]["verified"] == false
                && outcome["verify"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("`verify.every` 1d")),
            "{outcome:#}"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// `verify --repair`: the missing rows and the changed ones — planted in the target, or changed
/// in the source without moving the cursor, which no sync sees — are re-extracted by key in one
/// repair run, loaded once with a ledger row, without moving the watermark's cursor; a row gone
/// from the source stays. A repair run that crashes after its commit is loaded by the next sync.
#[tokio::test]
async fn verify_repair_re_extracts_the_missing_and_changed_rows() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("orders", "updated_at").lookback("0s");
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        insert_rows(&mut conn, "orders", 1, 300, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("orders")?;
        let cursor_before = scenario.watermark("orders").await?.map(|w| w.extract.cursor);

        let target = format!("\"{}\".\"orders\"", scenario.pg.schema());
        let pg = scenario.pg.client();
        pg.batch_execute(&format!(
            "UPDATE {target} SET amount = -1 WHERE id IN (10, 20); DELETE FROM {target} WHERE id IN (30, 40); \
             INSERT INTO {target} (id, v, amount, updated_at) VALUES (999, 'extra', 0, '2025-01-01')"
        ))
        .await?;
        conn.query_drop("UPDATE orders SET v = 'silent' WHERE id = 50").await?;

        let id = mysql.table("orders").to_string();
        let out = scenario.run(&["--json", "verify", "-t", &id, "--repair"], None);
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("verify --repair: {}", describe(&out)))?;
        // The extra row stays: tables keep rows gone from the source.
        ensure!(out.status.code() == Some(1), "{}", describe(&out));
        ensure!(ids(&answer["before"], "changed") == ["10", "20", "50"], "{answer:#}");
        ensure!(ids(&answer["before"], "missing") == ["30", "40"], "{answer:#}");
        ensure!(answer["repair"]["keys"] == 5 && answer["repair"]["rows_loaded"] == 5, "{answer:#}");
        let after = &answer["after"];
        ensure!(
            after["missing"]["count"] == 0 && after["changed"]["count"] == 0 && ids(after, "extra") == ["999"],
            "{answer:#}"
        );
        let v: String = pg
            .query_one(&format!("SELECT v FROM {target} WHERE id = 50"), &[])
            .await?
            .get(0);
        ensure!(v == "silent", "row 50 holds `{v}`");
        let run_id = answer["repair"]["run_id"].as_str().unwrap_or_default().to_owned();
        let ledger = scenario.ledger("orders").await?;
        ensure!(ledger.get(&run_id).map(|c| c[0]) == Some(5), "{ledger:?}");
        let cursor_after = scenario.watermark("orders").await?.map(|w| w.extract.cursor);
        ensure!(cursor_after == cursor_before, "{cursor_before:?} → {cursor_after:?}");

        // A crash after the repair run's commit: the next sync loads it, once.
        pg.batch_execute(&format!("DELETE FROM {target} WHERE id = 999; UPDATE {target} SET amount = -2 WHERE id = 77"))
            .await?;
        let crashed = scenario.run(&["verify", "-t", &id, "--repair"], Some("after_commit=abort"));
        ensure!(!crashed.status.success(), "{}", describe(&crashed));
        scenario.run(&["watermark", "unlock", "-t", &id, "--yes", "--reason", "test"], None);
        scenario.sync_ok("orders")?;
        let (code, report) = verify(&scenario, "orders")?;
        ensure!(code == 0 && report["equal"] == true, "{report:#}");
        let ledger = scenario.ledger("orders").await?;
        ensure!(ledger.values().filter(|c| c[0] == 1).count() == 1, "{ledger:?}");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A floating-point key cannot list its rows for a repair (its text is rounded): the repair run
/// is refused, saying why, and the next sync runs as before.
#[tokio::test]
async fn verify_repair_refuses_a_floating_point_key() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("floats", "updated_at");
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE floats (k DOUBLE PRIMARY KEY, v INT, updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        conn.query_drop(
            "INSERT INTO floats VALUES (0.5, 1, '2025-01-01'), (1.25, 2, '2025-01-01')",
        )
        .await?;
        scenario.sync_ok("floats")?;
        scenario
            .pg
            .client()
            .batch_execute(&format!(
                "UPDATE \"{}\".\"floats\" SET v = 9 WHERE v = 1",
                scenario.pg.schema()
            ))
            .await?;
        let id = mysql.table("floats").to_string();
        let out = scenario.run(&["verify", "-t", &id, "--repair"], None);
        ensure!(out.status.code() == Some(1), "{}", describe(&out));
        ensure!(
            String::from_utf8_lossy(&out.stderr).contains("is a floating-point number"),
            "{}",
            describe(&out)
        );
        scenario.sync_ok("floats")?;
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

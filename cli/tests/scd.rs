//! `scd_type: type_2` mistakes a user can make (issue #18): a tracked column the source lacks,
//! and a source column with a history column's name, refused by `config check --source` at the
//! line and by `sync` before it reads a row, each with the fix.

use anyhow::ensure;
use mysql_async::prelude::Queryable;
use tidemark_tests::scenario::{describe, Scenario};
use tidemark_tests::tables::Table;
use tidemark_tests::TestMysql;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

#[tokio::test]
async fn tracked_columns_and_history_names_are_checked_against_the_source() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("customers", "updated_at")
            .with("table_type", "dimension")
            .with("scd_type", "type_2")
            .with_yaml("scd_columns", "[name, tier]")?;
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), valid_from DATE, \
             updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        conn.query_drop("INSERT INTO customers VALUES (1, 'a', '2025-01-01', NOW(6))")
            .await?;
        let config = std::fs::read_to_string(scenario.config_path())?;
        let line = config
            .lines()
            .position(|l| l.contains("scd_columns"))
            .map(|i| i + 1)
            .unwrap_or_default();

        let out = scenario.run(&["config", "check", "--source"], None);
        let said = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2)
                && said.contains(&format!(":{line}:"))
                && said.contains("names `tier`, which is not a column the table syncs"),
            "{}",
            describe(&out)
        );
        let out = scenario.sync("customers", None);
        ensure!(
            out.status.code() == Some(1)
                && String::from_utf8_lossy(&out.stdout).contains("which is not a column the table syncs"),
            "{}",
            describe(&out)
        );

        // Tracked columns that exist; a source column `valid_from` clashes with the history.
        scenario.set_config(
            &["pipelines", "p", "tables", &mysql.table("customers").to_string(), "scd_columns"],
            "[name]",
        )?;
        let out = scenario.run(&["config", "check", "--source"], None);
        ensure!(
            out.status.code() == Some(2)
                && String::from_utf8_lossy(&out.stderr)
                    .contains("`valid_from` of `")
                && String::from_utf8_lossy(&out.stderr).contains("give the history column another name"),
            "{}",
            describe(&out)
        );
        // Named otherwise, the table syncs, one current version per row.
        scenario.set_config(
            &["pipelines", "p", "tables", &mysql.table("customers").to_string(), "scd"],
            "{ valid_from: version_from }",
        )?;
        scenario.sync_ok("customers")?;
        let current: i64 = scenario
            .pg
            .client()
            .query_one(
                &format!(
                    "SELECT count(*) FROM \"{}\".customers WHERE is_current AND version_from IS NOT NULL",
                    scenario.pg.schema()
                ),
                &[],
            )
            .await?
            .get(0);
        ensure!(current == 1, "{current} current versions");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// `effective: loaded_at`: a version begins when the run that read it began (UTC), whatever the
/// row's own timestamp says; `verify` compares the current versions with the source.
#[tokio::test]
async fn versions_can_be_dated_by_the_run_that_read_them() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("plans", "updated_at")
            .with("table_type", "dimension")
            .with("scd_type", "type_2")
            .with_yaml("scd", "{ effective: loaded_at }")?;
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE plans (id INT PRIMARY KEY, price INT, updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        conn.query_drop("INSERT INTO plans VALUES (1, 10, '2020-01-01'), (2, 20, '2020-01-01')")
            .await?;
        let before_first = chrono::Utc::now().naive_utc();
        scenario.sync_ok("plans")?;
        conn.query_drop("UPDATE plans SET price = 11, updated_at = '2020-02-01' WHERE id = 1")
            .await?;
        let before_second = chrono::Utc::now().naive_utc();
        scenario.sync_ok("plans")?;
        let after = chrono::Utc::now().naive_utc();
        let rows = scenario
            .pg
            .client()
            .query(
                &format!(
                    "SELECT id, price, valid_from, valid_to, is_current FROM \"{}\".plans ORDER BY id, valid_from",
                    scenario.pg.schema()
                ),
                &[],
            )
            .await?;
        let versions: Vec<(i32, i32, chrono::NaiveDateTime, Option<chrono::NaiveDateTime>, bool)> =
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                .collect();
        ensure!(versions.len() == 3, "{versions:?}");
        let (first, second) = (versions[0].2, versions[1].2);
        let margin = chrono::Duration::milliseconds(1);
        ensure!(
            before_first - margin <= first && first <= before_second
                && before_second - margin <= second && second <= after
                && versions[0] == (1, 10, first, Some(second), false)
                && versions[1] == (1, 11, second, None, true)
                && versions[2] == (2, 20, first, None, true),
            "{versions:?} (syncs began after {before_first} and {before_second})"
        );
        // `verify` compares the current versions with the source: equal.
        let id = mysql.table("plans").to_string();
        let out = scenario.run(&["verify", "-t", &id], None);
        ensure!(out.status.success(), "{}", describe(&out));
        // A row changed in the target's current version is found; a closed one is history.
        scenario
            .pg
            .client()
            .batch_execute(&format!(
                "UPDATE \"{schema}\".plans SET price = 99 WHERE id = 2; UPDATE \"{schema}\".plans SET price = 0 WHERE NOT is_current",
                schema = scenario.pg.schema()
            ))
            .await?;
        let out = scenario.run(&["--json", "verify", "-t", &id], None);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        ensure!(
            out.status.code() == Some(1)
                && report["target_rows"] == 2
                && report["changed"]["count"] == 1
                && report["missing"]["count"] == 0
                && report["extra"]["count"] == 0,
            "{}",
            describe(&out)
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

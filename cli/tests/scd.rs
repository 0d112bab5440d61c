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

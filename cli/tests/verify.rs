//! `tidemark verify` (issue #17), through the real binary against MariaDB and PostgreSQL: equal
//! tables of every type family report equal; each kind of difference planted behind tidemark's
//! back in the target is named by key; rows changed after the last sync are in flight, not
//! differences.

use anyhow::{ensure, Context};
use tidemark_tests::scenario::{describe, Scenario};
use tidemark_tests::tables::Table;
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

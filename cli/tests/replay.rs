//! `tidemark replay` (issue #20): a dropped target rebuilt from the runs on S3 with MySQL out of
//! reach, equal to the source; a replay over the current target changes nothing; a retried
//! replay is a no-op; a window selects runs; `--into` loads another warehouse connection.

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::scenario::{change_rows, create_table, describe, insert_rows, Mode, Scenario};
use tidemark_tests::TestMysql;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

/// `replay --json` with `args`: its report.
fn replay(scenario: &Scenario<'_>, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut command = vec!["--json", "replay"];
    command.extend_from_slice(args);
    let out = scenario.run(&command, None);
    ensure!(out.status.success(), "replay {args:?}: {}", describe(&out));
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("replay's answer: {}", describe(&out)))
}

/// The rows of `schema.table` in the target, as text, by id.
async fn target_rows(
    scenario: &Scenario<'_>,
    schema: &str,
    table: &str,
) -> anyhow::Result<Vec<String>> {
    postgres_rows(
        scenario.pg.client(),
        &format!("SELECT id::text, v, amount::text, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') FROM \"{schema}\".\"{table}\" AS t ORDER BY t.id"),
    )
    .await
}

/// Three syncs of a `deletes: hard` table (inserts, updates, deletes, keys back), the target
/// dropped, the source table renamed away so that nothing can read it: the replay rebuilds the
/// target row for row, and with the source back `verify` says equal. Replaying again over it
/// changes nothing and records nothing; dropped again, it is rebuilt again.
#[tokio::test]
async fn a_dropped_target_is_rebuilt_from_s3_without_mysql() {
    TestMysql::run(async |mysql| {
        let mode = Mode::HardDeletes;
        let table = mode.name();
        let scenario = Scenario::new(mysql, BINARY, &mode.table().yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table(table)).await?;
        insert_rows(&mut conn, table, 1, 200, "2025-01-01 00:00:00").await?;
        scenario.sync_ok(table)?;
        for round in 1..3 {
            change_rows(&mut conn, mode, table, round, 200).await?;
            scenario.sync_ok(table)?;
        }
        scenario.check(mode, table).await?;
        let schema = scenario.pg.schema().to_owned();
        let before = target_rows(&scenario, &schema, table).await?;
        let id = mysql.table(table).to_string();

        conn.query_drop(format!("RENAME TABLE `{table}` TO `{table}_away`")).await?;
        for attempt in 0..2 {
            scenario
                .pg
                .client()
                .batch_execute(&format!("DROP TABLE \"{schema}\".\"{table}\""))
                .await?;
            let report = replay(&scenario, &["-t", &id])?;
            ensure!(report["target_existed"] == false, "{report:#}");
            let deletions = report["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["deletion"] == true)
                .count();
            ensure!(deletions >= 1, "attempt {attempt}: no deletion run replayed: {report:#}");
            let after = target_rows(&scenario, &schema, table).await?;
            ensure!(
                after == before,
                "attempt {attempt}: the replayed target ({} rows) differs from the synced one ({} rows)",
                after.len(),
                before.len()
            );
        }
        // Over the current target: every run is in the ledger under its replay id already.
        let ledger = scenario.ledger(table).await?;
        let report = replay(&scenario, &["-t", &id])?;
        ensure!(
            report["rows_staged"] == 0
                && report["runs"]
                    .as_array()
                    .is_some_and(|runs| runs.iter().all(|r| r["already_loaded"] == true)),
            "{report:#}"
        );
        ensure!(scenario.ledger(table).await? == ledger, "a repeated replay wrote the ledger");
        ensure!(target_rows(&scenario, &schema, table).await? == before, "a repeated replay changed rows");

        conn.query_drop(format!("RENAME TABLE `{table}_away` TO `{table}`")).await?;
        let out = scenario.run(&["verify", "-t", &id], None);
        ensure!(out.status.success(), "{}", describe(&out));
        let out = scenario.run(&["watermark-count", "validate-counts", "-t", &id], None);
        ensure!(out.status.success(), "{}", describe(&out));
        // The next sync goes on from there.
        change_rows(&mut conn, mode, table, 3, 200).await?;
        scenario.sync_ok(table)?;
        let out = scenario.run(&["verify", "-t", &id], None);
        ensure!(out.status.success(), "{}", describe(&out));
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// Replaying an old window over the current target changes nothing (a replayed row never
/// replaces a newer one); `--since` selects the runs holding rows from then on, and `--into`
/// loads them into another warehouse connection.
#[tokio::test]
async fn a_window_replays_its_runs_and_never_makes_a_row_older() {
    TestMysql::run(async |mysql| {
        let mode = Mode::Merge;
        let table = mode.name();
        // No lookback: each run holds exactly the rows changed since the one before.
        let config = mode.table().lookback("0s");
        let scenario = Scenario::new(mysql, BINARY, &config.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table(table)).await?;
        insert_rows(&mut conn, table, 1, 200, "2025-01-01 00:00:00").await?;
        scenario.sync_ok(table)?;
        // Round 1 stamps its inserts and updates in March 2025.
        change_rows(&mut conn, mode, table, 1, 200).await?;
        scenario.sync_ok(table)?;
        let schema = scenario.pg.schema().to_owned();
        let current = target_rows(&scenario, &schema, table).await?;
        let id = mysql.table(table).to_string();

        let report = replay(&scenario, &["-t", &id, "--until", "2025-01-02"])?;
        ensure!(
            report["runs"].as_array().map(Vec::len) == Some(1) && report["rows_staged"] == 200,
            "{report:#}"
        );
        ensure!(report["rows_inserted"] == 0, "an old run replaced newer rows: {report:#}");
        ensure!(
            target_rows(&scenario, &schema, table).await? == current,
            "an old window changed the target"
        );

        // Another warehouse connection: the same server, a schema of its own.
        let other = format!("{schema}_other");
        scenario.add_target_connection("other", &other)?;
        let report = replay(&scenario, &["-t", &id, "--since", "2025-02-01", "--into", "other"])?;
        ensure!(report["target_existed"] == false && report["into"] == "other", "{report:#}");
        let source = |filter: &str| {
            format!("SELECT id, v, CAST(amount AS CHAR), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM `{table}` {filter} ORDER BY id")
        };
        let since = mysql_rows(&mut conn, &source("WHERE updated_at >= '2025-02-01'")).await?;
        let all = mysql_rows(&mut conn, &source("")).await?;
        let replayed = target_rows(&scenario, &other, table).await?;
        scenario
            .pg
            .client()
            .batch_execute(&format!("DROP SCHEMA \"{other}\" CASCADE"))
            .await?;
        ensure!(
            replayed == since && since.len() < all.len(),
            "the window replayed {} rows; the source holds {} from then on, of {}",
            replayed.len(),
            since.len(),
            all.len()
        );

        // Bad windows and destinations are refused with what to write.
        for (args, said) in [
            (vec!["--since", "yesterday"], "is not a timestamp"),
            (vec!["--since", "2025-03-01", "--until", "2025-02-01"], "is after"),
            (vec!["--into", "src"], "is a MySQL connection"),
            (vec!["--into", "nowhere"], "is not a connection"),
        ] {
            let mut command = vec!["replay", "-t", &id];
            command.extend(args.iter().copied());
            let out = scenario.run(&command, None);
            ensure!(
                !out.status.success() && String::from_utf8_lossy(&out.stderr).contains(said),
                "{args:?}: {}",
                describe(&out)
            );
        }
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

//! Concurrency through the real binary: two syncs of one table at once (one wins, the other
//! fails with `LeaseHeld`, nothing is loaded twice); a writer inserting and updating without
//! pause — many rows per microsecond timestamp, transactions held open longer than `lag` —
//! while syncs run back to back; and the exact rule for late commits: a row whose transaction
//! commits H after it took its timestamp is seen when `lag + lookback >= H`, and can be missed
//! otherwise (README "Guarantees").

use std::time::{Duration, Instant};

use anyhow::ensure;
use mysql_async::prelude::Queryable;
use tidemark_tests::scenario::{
    create_table, describe, insert_rows, report, scale, Mode, Scenario,
};
use tidemark_tests::TestMysql;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");
const TABLE: &str = "merged";

/// The merge table with `lag` and `lookback`, seeded with `rows` rows.
async fn merge_table<'a>(
    mysql: &'a TestMysql,
    lag: &str,
    lookback: &str,
    rows: u64,
) -> anyhow::Result<Scenario<'a>> {
    let yaml = Mode::Merge.table().lag(lag).lookback(lookback).yaml();
    let scenario = Scenario::new(mysql, BINARY, &yaml).await?;
    let mut conn = mysql.conn().await?;
    conn.query_drop(create_table(TABLE)).await?;
    insert_rows(&mut conn, TABLE, 1, rows, "2025-01-01 00:00:00").await?;
    Ok(scenario)
}

#[tokio::test]
async fn two_syncs_at_once_one_wins_the_other_gets_lease_held() {
    TestMysql::run(async |mysql| {
        let scenario = merge_table(mysql, "0s", "0s", 300).await?;
        let table = mysql.table(TABLE).to_string();
        let mut conn = mysql.conn().await?;
        let mut contested = 0;
        let mut pairs = 0;
        // Both processes race for `begin`; a pair where one finished before the other began
        // proves nothing about the lease, so race again (bounded).
        while contested == 0 && pairs < 10 {
            pairs += 1;
            conn.query_drop(format!(
                "UPDATE `{TABLE}` SET v = CONCAT(v, '+'), updated_at = TIMESTAMP'2025-03-01 00:00:00' + INTERVAL {pairs} SECOND WHERE id % 3 = 0"
            ))
            .await?;
            let args = ["--json", "sync", "-t", &table];
            let first = scenario.command(&args, None).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
            let second = scenario.command(&args, None).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
            let outs = [first.wait_with_output()?, second.wait_with_output()?];
            let won = outs.iter().filter(|o| o.status.success()).count();
            ensure!(won >= 1, "neither sync succeeded: {}\n{}", describe(&outs[0]), describe(&outs[1]));
            if won == 1 {
                let lost = outs.iter().find(|o| !o.status.success()).map(describe).unwrap_or_default();
                ensure!(lost.contains("LeaseHeld") && lost.starts_with("exit status: 1"), "the loser must fail with LeaseHeld, exit 1: {lost}");
                contested += 1;
            }
            // Whatever the interleaving, nothing is loaded twice.
            scenario.check(Mode::Merge, TABLE).await?;
        }
        ensure!(contested > 0, "no pair of syncs overlapped in {pairs} tries");
        report("two syncs at once", pairs * 2, 0, 300, 0);
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// Inserts and updates until `until`: 20 rows per statement share one `NOW(6)`, and an update
/// of every 13th row gives many rows one timestamp. Returns the statements run.
async fn write_continuously(
    mut conn: mysql_async::Conn,
    until: Instant,
    first_id: u64,
) -> anyhow::Result<u64> {
    let mut next = first_id;
    let mut statements = 0;
    while Instant::now() < until {
        let values: Vec<String> = (next..next + 20)
            .map(|id| format!("({id}, 'new {id}', 1.5, NOW(6))"))
            .collect();
        next += 20;
        conn.query_drop(format!("INSERT INTO `{TABLE}` VALUES {}", values.join(",")))
            .await?;
        conn.query_drop(format!(
            "UPDATE `{TABLE}` SET v = CONCAT(LEFT(v, 30), '+'), updated_at = NOW(6) WHERE id % 13 = {}",
            statements % 13
        ))
        .await?;
        statements += 2;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(statements)
}

/// Until `until`, one transaction after another that stamps rows with `NOW(6)` and commits
/// `hold` later. Returns how many committed.
async fn commit_late(
    mut conn: mysql_async::Conn,
    until: Instant,
    hold: Duration,
) -> anyhow::Result<u64> {
    let mut committed = 0;
    while Instant::now() < until {
        let mut tx = conn
            .start_transaction(mysql_async::TxOpts::default())
            .await?;
        tx.query_drop(format!(
            "UPDATE `{TABLE}` SET v = 'late {committed}', updated_at = NOW(6) WHERE id % 17 = {}",
            committed % 17
        ))
        .await?;
        tokio::time::sleep(hold).await;
        tx.commit().await?;
        committed += 1;
    }
    Ok(committed)
}

/// A writer and late commits (held 2 s, longer than `lag` 1 s) while syncs run back to back;
/// `lookback` 2 s makes `lag + lookback` cover the hold, so after one last sync target == source.
#[tokio::test(flavor = "multi_thread")]
async fn a_continuous_writer_with_late_commits_converges_when_lag_plus_lookback_covers_them() {
    TestMysql::run(async |mysql| {
        let rows = 200;
        let scenario = merge_table(mysql, "1s", "2s", rows).await?;
        let until = Instant::now() + Duration::from_secs(4 * scale());
        let writer = tokio::spawn(write_continuously(mysql.conn().await?, until, rows + 1));
        let late = tokio::spawn(commit_late(
            mysql.conn().await?,
            until,
            Duration::from_secs(2),
        ));
        let mut syncs = 0;
        while !writer.is_finished() || !late.is_finished() {
            let out = tokio::task::block_in_place(|| scenario.sync(TABLE, None));
            ensure!(
                out.status.success(),
                "a sync during writes failed: {}",
                describe(&out)
            );
            syncs += 1;
        }
        let statements = writer.await??;
        let late_commits = late.await??;
        ensure!(late_commits > 0 && statements > 0);
        // The last writes must be older than `lag` before the last sync's ceiling passes them.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        scenario.sync_ok(TABLE)?;
        let checked = scenario.check(Mode::Merge, TABLE).await?;
        report(
            "writer + late commits (lag 1s, lookback 2s, hold 2s)",
            syncs + 1,
            0,
            checked.rows,
            0,
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// One late commit against one sync: stamp row 1 at T0 in an open transaction, commit a row at
/// T0 + 0.2 s, sync once more than `lag` later (its cursor moves past T0), then commit the open
/// transaction and sync again. Returns whether the target got row 1's new value.
async fn late_commit_is_seen(lag: &str, lookback: &str) -> anyhow::Result<bool> {
    let mut seen = false;
    TestMysql::run(async |mysql| {
        let scenario = merge_table(mysql, lag, lookback, 50).await?;
        scenario.sync_ok(TABLE)?;
        let lag_time = Duration::from_secs(lag.trim_end_matches('s').parse()?);
        let mut open = mysql.conn().await?;
        let mut tx = open
            .start_transaction(mysql_async::TxOpts::default())
            .await?;
        tx.query_drop(format!(
            "UPDATE `{TABLE}` SET v = 'late', updated_at = NOW(6) WHERE id = 1"
        ))
        .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut conn = mysql.conn().await?;
        conn.query_drop(format!(
            "INSERT INTO `{TABLE}` VALUES (1000, 'on time', 1, NOW(6))"
        ))
        .await?;
        tokio::time::sleep(lag_time + Duration::from_millis(300)).await;
        scenario.sync_ok(TABLE)?;
        tx.commit().await?;
        tokio::time::sleep(lag_time + Duration::from_millis(100)).await;
        scenario.sync_ok(TABLE)?;
        let target: Option<String> = scenario
            .pg
            .client()
            .query_one(
                &format!(
                    "SELECT v FROM \"{}\".\"{TABLE}\" WHERE id = 1",
                    scenario.pg.schema()
                ),
                &[],
            )
            .await?
            .get(0);
        seen = target.as_deref() == Some("late");
        if seen {
            scenario.check(Mode::Merge, TABLE).await?;
        }
        scenario.cleanup().await
    })
    .await?;
    Ok(seen)
}

#[tokio::test]
async fn a_commit_later_than_lag_is_missed_without_lookback() {
    // lag 1s, lookback 0s, the transaction commits ~1.5 s after its timestamp: missed.
    // The defaults (lag 5s, lookback 0s) behave the same for transactions open longer than 5 s.
    assert!(!late_commit_is_seen("1s", "0s").await.unwrap());
}

#[tokio::test]
async fn a_commit_later_than_lag_is_seen_when_lookback_covers_it() {
    assert!(late_commit_is_seen("1s", "3s").await.unwrap());
}

//! Crash anywhere: for every fault point and every load mode, `tidemark sync` runs as a
//! subprocess with `TIDEMARK_FAULTS=<point>=abort` (the process dies on the spot, like a killed
//! Lambda), then again without faults — taking over the dead process's lease — and the target
//! must equal the source with every bookkeeping promise kept (see `tidemark_tests::scenario`).
//! Two rounds per case: the first load (target created) and an incremental one after changes.
//! `error` (retried inside the execution) and `fatal` (the execution fails, exit 1) for a few
//! points; an interrupted `s3clean clean` is finished by the next one.

use anyhow::ensure;
use mysql_async::prelude::Queryable;
use tidemark_tests::scenario::{
    aborted, change_rows, create_table, describe, insert_rows, report, scale, Mode, Scenario,
};
use tidemark_tests::TestMysql;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

/// Seeds `mode`'s table and returns the scenario and the number of seeded rows.
async fn seeded<'a>(mysql: &'a TestMysql, mode: Mode) -> anyhow::Result<(Scenario<'a>, u64)> {
    let scenario = Scenario::new(mysql, BINARY, &mode.table().yaml()).await?;
    let mut conn = mysql.conn().await?;
    conn.query_drop(create_table(mode.name())).await?;
    let rows = 200 * scale();
    insert_rows(&mut conn, mode.name(), 1, rows, "2025-01-01 00:00:00").await?;
    Ok((scenario, rows))
}

/// Two rounds of: (change,) sync with `plan` — which must fire — then sync clean and check.
/// `expect` is the faulted sync's outcome: `None` = aborted, `Some(code)` = exit code.
async fn fault_and_recover(mode: Mode, plan: &str, expect: Option<i32>) {
    TestMysql::run(async |mysql| {
        let (scenario, rows) = seeded(mysql, mode).await?;
        let table = mode.name();
        let mut conn = mysql.conn().await?;
        let mut compared = 0;
        for round in 0..2 {
            if round > 0 {
                change_rows(&mut conn, mode, table, round, rows).await?;
            }
            let out = scenario.sync(table, Some(plan));
            match expect {
                None => ensure!(aborted(&out), "`{plan}` did not abort: {}", describe(&out)),
                Some(code) => ensure!(
                    out.status.code() == Some(code),
                    "`{plan}`: expected exit {code}: {}",
                    describe(&out)
                ),
            }
            scenario.sync_ok(table)?;
            compared += scenario.check(mode, table).await?.rows;
        }
        report(
            &format!("fault {plan} ({})", mode.name()),
            4,
            2,
            compared,
            0,
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

macro_rules! every_mode {
    ($($point:ident),* $(,)?) => {
        $(
            mod $point {
                use super::*;
                #[tokio::test]
                async fn merge() {
                    fault_and_recover(Mode::Merge, concat!(stringify!($point), "=abort"), None).await;
                }
                #[tokio::test]
                async fn append() {
                    fault_and_recover(Mode::Append, concat!(stringify!($point), "=abort"), None).await;
                }
                #[tokio::test]
                async fn replace() {
                    fault_and_recover(Mode::Replace, concat!(stringify!($point), "=abort"), None).await;
                }
            }
        )*
    };
}

// Every point on a sync's path (`during_cleanup_delete` is tested below).
every_mode!(
    after_part_upload,
    before_chunk_manifest,
    after_chunk_manifest,
    before_commit,
    after_commit,
    before_load_commit,
    after_load_commit,
    before_commit_load,
);

/// A table under `deletes` (`mode`), synced once; then twice: rows deleted, brought back and
/// updated in the source, a sync with `plan` — which must fire: the reconciliation finds the
/// deleted rows at every sync —, a sync without, and every promise checked (soft-deleted rows
/// apart): no row deleted twice, no deletion lost.
async fn fault_a_deletion_run(mode: Mode, plan: &str) {
    TestMysql::run(async |mysql| {
        let (scenario, rows) = seeded(mysql, mode).await?;
        let table = mode.name();
        let mut conn = mysql.conn().await?;
        scenario.sync_ok(table)?;
        let mut compared = 0;
        for round in 1..3 {
            change_rows(&mut conn, mode, table, round, rows).await?;
            let out = scenario.sync(table, Some(plan));
            ensure!(aborted(&out), "`{plan}` did not abort: {}", describe(&out));
            scenario.sync_ok(table)?;
            compared += scenario.check(mode, table).await?.rows;
        }
        report(
            &format!("fault {plan} ({})", mode.name()),
            5,
            2,
            compared,
            0,
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

macro_rules! every_deletes_policy {
    ($($point:ident),* $(,)?) => {
        $(
            mod $point {
                use super::*;
                #[tokio::test]
                async fn hard_deletes() {
                    fault_a_deletion_run(Mode::HardDeletes, concat!(stringify!($point), "=abort")).await;
                }
                #[tokio::test]
                async fn soft_deletes() {
                    fault_a_deletion_run(Mode::SoftDeletes, concat!(stringify!($point), "=abort")).await;
                }
                /// A type-2 dimension with hard deletes: after the crash and a sync, no
                /// duplicate or overlapping version, current versions equal to the source.
                #[tokio::test]
                async fn type_2() {
                    fault_a_deletion_run(Mode::Scd2, concat!(stringify!($point), "=abort")).await;
                }
            }
        )*
    };
}

/// The points a deletion run passes, from its files to the watermark after its load (a type-2
/// dimension's data and deletion runs pass them all).
mod deletion_run {
    use super::*;
    every_deletes_policy!(
        after_deletion_files,
        before_commit,
        after_commit,
        before_load_commit,
        after_load_commit,
        before_commit_load,
    );
}

#[test]
fn every_point_is_covered() {
    let covered = include_str!("faults.rs");
    for point in tidemark::faults::FaultPoint::ALL.map(|p| p.name()) {
        assert!(
            covered.contains(&format!("    {point},\n")) || point == "during_cleanup_delete",
            "fault point `{point}` has no crash test"
        );
    }
}

/// A retryable error is retried inside the execution: the sync succeeds.
#[tokio::test]
async fn a_retryable_error_after_the_load_commit_is_retried_in_the_same_execution() {
    fault_and_recover(Mode::Merge, "after_load_commit=error", Some(0)).await;
}

/// A non-retryable error fails the table and the execution (exit 1); the next sync converges.
#[tokio::test]
async fn a_fatal_error_after_the_chunk_manifest_fails_the_sync_and_the_next_converges() {
    fault_and_recover(Mode::Replace, "after_chunk_manifest=fatal", Some(1)).await;
}

#[tokio::test]
async fn a_fatal_error_before_commit_load_leaves_loaded_runs_that_are_counted_once() {
    fault_and_recover(Mode::Append, "before_commit_load=fatal", Some(1)).await;
}

#[tokio::test]
async fn a_fatal_error_before_commit_fails_the_sync_and_the_next_converges() {
    fault_and_recover(Mode::Merge, "before_commit=fatal", Some(1)).await;
}

/// `s3clean clean` killed between deleting data and deleting run manifests: the next clean
/// finishes, and syncs go on converging.
#[tokio::test]
async fn during_cleanup_delete() {
    TestMysql::run(async |mysql| {
        let mode = Mode::Merge;
        let (scenario, rows) = seeded(mysql, mode).await?;
        let table = mode.name();
        let id = mysql.table(table).to_string();
        let mut conn = mysql.conn().await?;
        scenario.sync_ok(table)?;
        change_rows(&mut conn, mode, table, 1, rows).await?;
        scenario.sync_ok(table)?;
        let clean = ["s3clean", "clean", "-t", &id, "--force"];
        let out = scenario.run(&clean, Some("during_cleanup_delete=abort"));
        ensure!(aborted(&out), "the clean did not abort: {}", describe(&out));
        scenario.check(mode, table).await?;
        let out = scenario.run(&clean, None);
        ensure!(out.status.success(), "{}", describe(&out));
        let left = scenario.bucket.bucket().list("tm/data/").await?;
        ensure!(left.is_empty(), "data of loaded runs left: {left:?}");
        change_rows(&mut conn, mode, table, 2, rows).await?;
        scenario.sync_ok(table)?;
        let checked = scenario.check(mode, table).await?;
        report(
            "fault during_cleanup_delete=abort (merged)",
            5,
            1,
            checked.rows,
            0,
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

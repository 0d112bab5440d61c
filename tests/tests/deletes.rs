//! `deletes: hard | soft` (issue #17) through the local state machine, into PostgreSQL and the
//! Redshift Data API stand-in: over several syncs with deletes, re-inserts and updates
//! interleaved, the target's live rows equal the source's after each; deleted rows are gone
//! (`hard`) or kept and marked (`soft`); each deletion run's ledger row counts exactly the rows
//! it removed. Keys are composite and textual, with the characters that could make two keys read
//! as one (`|`, `:`, quotes, backslashes, multi-byte letters).

use anyhow::ensure;
use mysql_async::prelude::Queryable;
use serde_json::json;
use tidemark::steps::local_sync::{self, EXTRACTS_AT_ONCE};
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::stack::{fast_runner, with_stack, Stack, Target};
use tidemark_tests::tables::Table;

/// Key texts chosen so that a careless joined key (`a|b`, `1:x`) would name another row.
const CODES: [&str; 8] = ["a|b", "a", "b|", "1:x", "it's", "back\\slash", "é😀", ""];
/// Rows per code.
const PER_CODE: u32 = 30;

/// Syncs the pipeline; every table must succeed.
async fn sync(services: &tidemark::services::Services, round: u32) -> anyhow::Result<()> {
    let (outcome, summary) = local_sync::run_with_summary(
        services,
        json!({"pipeline": "p"}),
        &fast_runner(&format!("deletes-{round}")),
        EXTRACTS_AT_ONCE,
        None,
    )
    .await?;
    let failed = summary.as_ref().map_or(1, |s| s.failed);
    ensure!(failed == 0, "sync {round} failed: {outcome:?} {summary:#?}");
    Ok(())
}

/// The target's rows as text: live ones (`_tidemark_deleted_at` NULL, or every row under
/// `hard`), and the keys of the marked ones.
async fn target_rows(stack: &Stack<'_>, soft: bool) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let table = format!("\"{}\".\"codes\"", stack.pg.schema());
    let live = match soft {
        true => "WHERE _tidemark_deleted_at IS NULL",
        false => "",
    };
    let rows = postgres_rows(
        stack.pg.client(),
        &format!(
            "SELECT code, n::text, v FROM {table} AS t {live} ORDER BY convert_to(t.code, 'UTF8'), t.n"
        ),
    )
    .await?;
    let marked = match soft {
        true => {
            postgres_rows(
                stack.pg.client(),
                &format!("SELECT code, n::text FROM {table} AS t WHERE _tidemark_deleted_at IS NOT NULL ORDER BY convert_to(t.code, 'UTF8'), t.n"),
            )
            .await?
        }
        false => Vec::new(),
    };
    Ok((rows, marked))
}

/// The ledger's deletion rows: `rows_staged` (keys) and `rows_deleted` of runs that inserted
/// nothing, in run order.
async fn deletion_ledger(stack: &Stack<'_>) -> anyhow::Result<Vec<(i64, i64)>> {
    let rows = stack
        .pg
        .client()
        .query(
            &format!(
                "SELECT rows_staged, rows_deleted FROM \"{}\".tidemark_load_ledger WHERE target_table = 'codes' AND rows_inserted = 0 ORDER BY run_id",
                stack.pg.schema()
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn deletes_follow_the_source(stack: &Stack<'_>, policy: &str) -> anyhow::Result<()> {
    let soft = policy == "soft";
    let mut conn = stack.mysql.conn().await?;
    conn.query_drop(
        "CREATE TABLE codes (code VARCHAR(20) NOT NULL, n INT NOT NULL, v VARCHAR(20), \
         updated_at DATETIME(6) NOT NULL, PRIMARY KEY (code, n), KEY (updated_at)) DEFAULT CHARSET=utf8mb4",
    )
    .await?;
    let rows: Vec<(String, u32, String)> = CODES
        .iter()
        .flat_map(|code| (1..=PER_CODE).map(move |n| (code.to_string(), n, format!("v{n}"))))
        .collect();
    conn.exec_batch(
        "INSERT INTO codes VALUES (?, ?, ?, '2025-01-01 00:00:00')",
        rows.clone(),
    )
    .await?;
    let table = Table::hybrid("codes", "updated_at")
        .lag("0s")
        .with("deletes", policy)
        .with("reconcile_every", "0s");
    let services = stack.services(&table.chunk_rows(100).yaml()).await?;
    sync(&services, 0).await?;

    // Each round deletes some rows, brings back some deleted before, and updates others; the
    // last round deletes nothing, so its reconciliation finds nothing.
    type Restore = fn(&str, u32) -> bool;
    let rounds: [(&str, Restore, &str); 4] = [
        ("n % 7 = 1", |_, _| false, "n % 5 = 0"),
        (
            "n % 7 = 2 OR code = 'a'",
            |_, n| n % 7 == 1 && n < 10,
            "n % 3 = 0",
        ),
        (
            "n % 7 = 3 AND code NOT IN ('a|b', 'a')",
            |code, _| code == "a",
            "n = 4",
        ),
        ("", |_, _| false, "n % 4 = 1"),
    ];
    let mut deleted_before: Vec<(String, u32)> = Vec::new();
    for (round, (delete, restore, update)) in rounds.iter().enumerate() {
        let round = round as u32 + 1;
        let stamp = format!("2025-02-0{round} 00:00:00");
        let mut deleted_now = 0;
        // Keys deleted before come back, with a new cursor value.
        let (back, still_gone): (Vec<_>, Vec<_>) = deleted_before
            .drain(..)
            .partition(|(code, n)| restore(code, *n));
        deleted_before = still_gone;
        conn.exec_batch(
            format!("INSERT INTO codes VALUES (?, ?, 'back', '{stamp}')"),
            back.clone(),
        )
        .await?;
        if !delete.is_empty() {
            let doomed: Vec<(String, u32)> = conn
                .query(format!("SELECT code, n FROM codes WHERE {delete}"))
                .await?;
            conn.query_drop(format!("DELETE FROM codes WHERE {delete}"))
                .await?;
            // A key brought back and deleted again before the sync never reached the target.
            deleted_now = doomed.iter().filter(|key| !back.contains(key)).count();
            deleted_before.extend(doomed);
        }
        conn.query_drop(format!(
            "UPDATE codes SET v = CONCAT('u', {round}), updated_at = '{stamp}' + INTERVAL 1 SECOND WHERE {update}"
        ))
        .await?;
        sync(&services, round).await?;

        let source = mysql_rows(
            &mut conn,
            "SELECT code, CAST(n AS CHAR), v FROM codes ORDER BY CAST(code AS BINARY), n",
        )
        .await?;
        let (live, marked) = target_rows(stack, soft).await?;
        ensure!(
            live == source,
            "round {round} ({policy}): the target's live rows ({}) differ from the source's ({}); first: {:?}",
            live.len(),
            source.len(),
            live.iter().zip(&source).find(|(a, b)| a != b)
        );
        if soft {
            // Every marked key is gone from the source, and none is marked twice.
            let source_keys: Vec<String> = source
                .iter()
                .map(|row| {
                    row.rsplit_once('|')
                        .map(|(key, _)| key.to_owned())
                        .unwrap_or_default()
                })
                .collect();
            ensure!(
                marked.iter().all(|key| !source_keys.contains(key)),
                "round {round}: a marked row's key is in the source"
            );
            ensure!(
                !marked.is_empty(),
                "round {round}: nothing is marked deleted"
            );
        }
        let ledger = deletion_ledger(stack).await?;
        if deleted_now > 0 {
            let last = ledger.last().copied().unwrap_or_default();
            ensure!(
                last == (deleted_now as i64, deleted_now as i64),
                "round {round} ({policy}): the deletion run's ledger row says {last:?}, {deleted_now} rows were deleted in the source"
            );
        }
    }
    // The last round deleted nothing: no deletion run was loaded for it.
    ensure!(
        deletion_ledger(stack).await?.len() == 3,
        "a deletion run per round that deleted rows: {:?}",
        deletion_ledger(stack).await?
    );
    Ok(())
}

#[tokio::test]
async fn hard_deletes_follow_the_source_into_postgresql() {
    with_stack(Target::Postgres, async |stack| {
        deletes_follow_the_source(stack, "hard").await
    })
    .await;
}

#[tokio::test]
async fn soft_deletes_follow_the_source_into_postgresql() {
    with_stack(Target::Postgres, async |stack| {
        deletes_follow_the_source(stack, "soft").await
    })
    .await;
}

#[tokio::test]
async fn hard_deletes_follow_the_source_into_redshift() {
    with_stack(Target::Redshift, async |stack| {
        deletes_follow_the_source(stack, "hard").await
    })
    .await;
}

#[tokio::test]
async fn soft_deletes_follow_the_source_into_redshift() {
    with_stack(Target::Redshift, async |stack| {
        deletes_follow_the_source(stack, "soft").await
    })
    .await;
}

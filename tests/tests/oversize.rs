//! Values longer than Redshift holds (issue #9, bad input): a MEDIUMTEXT value of 70,000 bytes
//! and values whose multi-byte character straddles the 65,535-byte VARCHAR limit, synced through
//! the real state machine into Redshift (the Data API stand-in) under each `oversize_in_redshift`
//! policy, and into PostgreSQL, which holds them whole.
//!
//! `fail` must stop the run before anything is committed — target, load ledger and watermark as
//! they were — with an error naming the table, column, row and length and the setting to change;
//! the sync after changing it converges. `truncate` must cut at a character boundary, `null`
//! write NULL; every other value arrives equal to the source.

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use serde_json::json;
use tidemark::asl::Outcome;
use tidemark::manifest::RunManifest;
use tidemark::naming::StorageLayout;
use tidemark::steps::local_sync::{self, EXTRACTS_AT_ONCE};
use tidemark::watermark::Watermark;
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::stack::{fast_runner, with_stack, Stack, Target};
use tidemark_tests::tables::Table;

/// Redshift's VARCHAR limit, in bytes.
const LIMIT: usize = 65_535;

/// Row 1 fits; row 2 is 70,000 ASCII bytes; in rows 3 and 4 an `é` (2 bytes) and a `🚀`
/// (4 bytes) straddle the limit; row 5 is exactly 65,535 bytes and must arrive whole.
const OVERSIZE_ROWS: &str = "INSERT INTO docs VALUES
    (2, 'ascii', REPEAT('x', 70000), '2025-01-02'),
    (3, 'accent', CONCAT(REPEAT('a', 65534), REPEAT('é', 5)), '2025-01-03'),
    (4, 'emoji', CONCAT(REPEAT('b', 65533), '🚀tail'), '2025-01-04'),
    (5, 'exact', CONCAT(REPEAT('c', 65533), 'é'), '2025-01-05')";

/// Every column but `body`, and `body` where it fits: what must arrive unchanged.
const SOURCE_UNCHANGED: &str = "SELECT id, title, IF(OCTET_LENGTH(body) <= 65535, body, '(too long)'), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM docs ORDER BY id";

fn target_unchanged(schema: &str) -> String {
    format!(
        "SELECT id::text, title, CASE WHEN id IN (2, 3, 4) THEN '(too long)' ELSE body END, \
         to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') FROM \"{schema}\".docs ORDER BY id"
    )
}

fn tables(policy: Option<&str>) -> String {
    let docs = Table::hybrid("docs", "updated_at");
    match policy {
        Some(policy) => docs.with("oversize_in_redshift", policy),
        None => docs,
    }
    .yaml()
}

async fn sync(stack: &Stack<'_>, tables: &str) -> anyhow::Result<Outcome> {
    let services = stack.services(tables).await?;
    let options = fast_runner("oversize");
    Ok(local_sync::run(
        &services,
        json!({"pipeline": "p"}),
        &options,
        EXTRACTS_AT_ONCE,
    )
    .await?)
}

async fn watermark(stack: &Stack<'_>) -> anyhow::Result<Watermark> {
    let services = stack.services(&tables(None)).await?;
    let pipeline = services.config.pipeline("p")?;
    let stored = services
        .watermarks(pipeline)
        .read("p", &stack.mysql.table("docs"))
        .await?
        .context("the table has a watermark")?;
    Ok(stored.record)
}

/// Values the last committed run truncated and nulled, from its run manifest.
async fn oversize_counts(stack: &Stack<'_>) -> anyhow::Result<(u64, u64)> {
    let run_id = watermark(stack)
        .await?
        .extract
        .last_committed_run_id
        .context("a committed run")?;
    let key = StorageLayout::new("tm").run_manifest_key("p", &stack.mysql.table("docs"), &run_id);
    let object = stack
        .bucket
        .bucket()
        .get(&key)
        .await?
        .context("the run manifest")?;
    let run: RunManifest = serde_json::from_slice(&object.body)?;
    Ok((run.oversize_truncated, run.oversize_nulled))
}

/// `body` of every target row, by id.
async fn target_bodies(stack: &Stack<'_>) -> anyhow::Result<Vec<Option<String>>> {
    let sql = format!(
        "SELECT body FROM \"{}\".docs ORDER BY id",
        stack.pg.schema()
    );
    let rows = stack.pg.client().query(&sql, &[]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

async fn assert_other_values_equal_the_source(stack: &Stack<'_>) -> anyhow::Result<()> {
    let source = mysql_rows(&mut stack.mysql.conn().await?, SOURCE_UNCHANGED).await?;
    let target = postgres_rows(stack.pg.client(), &target_unchanged(stack.pg.schema())).await?;
    ensure!(target == source, "target {target:?}\nsource {source:?}");
    Ok(())
}

async fn ledger_runs(stack: &Stack<'_>) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT COUNT(*) FROM \"{}\".tidemark_load_ledger",
        stack.pg.schema()
    );
    Ok(stack.pg.client().query_one(&sql, &[]).await?.get(0))
}

/// A fresh database, bucket and schema; `docs` (a NOT NULL MEDIUMTEXT `body`) holds one row that
/// fits, synced once under `first_policy` (which creates the target table), before
/// `OVERSIZE_ROWS` arrive.
async fn with_docs(
    target: Target,
    first_policy: Option<&str>,
    test: impl AsyncFnOnce(&Stack<'_>) -> anyhow::Result<()>,
) {
    with_stack(target, async |stack| {
        let mut conn = stack.mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE docs (id INT PRIMARY KEY, title VARCHAR(20) NOT NULL, \
             body MEDIUMTEXT NOT NULL, updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        conn.query_drop("INSERT INTO docs VALUES (1, 'short', 'hello é🚀', '2025-01-01')")
            .await?;
        let first = sync(stack, &tables(first_policy)).await?;
        ensure!(matches!(first, Outcome::Succeeded(_)), "{first:?}");
        conn.query_drop(OVERSIZE_ROWS).await?;
        test(stack).await
    })
    .await
}

#[tokio::test]
async fn fail_stops_before_anything_is_committed_and_truncate_then_converges() {
    with_docs(Target::Redshift, None, async |stack| {
        let before = watermark(stack).await?;
        let outcome = sync(stack, &tables(Some("fail"))).await?;
        let Outcome::Failed(failure) = outcome else {
            anyhow::bail!("the sync must fail: {outcome:?}")
        };
        let table = stack.mysql.table("docs").to_string();
        for needle in [
            table.as_str(),
            "column `body`",
            "key `id` = `2`",
            "cursor `updated_at` = `2025-01-02 00:00:00.000000`",
            "70000 bytes",
            "at most 65535 bytes",
            "oversize_in_redshift: truncate",
        ] {
            ensure!(
                failure.cause.contains(needle),
                "`{needle}` missing from: {}",
                failure.cause
            );
        }

        let after = watermark(stack).await?;
        ensure!(
            after.extract.cursor == before.extract.cursor,
            "the cursor moved: {after:?}"
        );
        ensure!(
            after.totals == before.totals,
            "the totals changed: {after:?}"
        );
        ensure!(
            after.pending_runs.is_empty() && after.lease.is_none(),
            "{after:?}"
        );
        ensure!(
            after
                .extract
                .error
                .as_deref()
                .is_some_and(|e| e.contains("oversize_in_redshift")),
            "the watermark records the error: {after:?}"
        );
        let failed_run = after
            .extract
            .last_run_id
            .clone()
            .context("the failed run")?;
        let data =
            StorageLayout::new("tm").run_data_prefix("p", &stack.mysql.table("docs"), &failed_run);
        let left = stack.bucket.bucket().list(&data).await?;
        ensure!(left.is_empty(), "the failed run left files: {left:?}");
        ensure!(
            ledger_runs(stack).await? == 1,
            "only the first run is loaded"
        );
        ensure!(
            target_bodies(stack).await? == [Some("hello é🚀".to_owned())],
            "the target is untouched"
        );

        let outcome = sync(stack, &tables(Some("truncate"))).await?;
        ensure!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
        let bodies = target_bodies(stack).await?;
        let expected = [
            "hello é🚀".to_owned(),
            "x".repeat(LIMIT),
            "a".repeat(LIMIT - 1),
            "b".repeat(LIMIT - 2),
            format!("{}é", "c".repeat(LIMIT - 2)),
        ];
        ensure!(bodies.len() == expected.len(), "{} rows", bodies.len());
        for (id, (body, expected)) in bodies.iter().zip(&expected).enumerate() {
            ensure!(
                body.as_ref() == Some(expected),
                "row {}: {:?} bytes, expected {}",
                id + 1,
                body.as_ref().map(String::len),
                expected.len()
            );
        }
        assert_other_values_equal_the_source(stack).await?;
        let counts = oversize_counts(stack).await?;
        ensure!(counts == (3, 0), "(truncated, nulled) = {counts:?}");
        Ok(())
    })
    .await;
}

/// The table is created under `null`, so its `body` is nullable although the source's is not (a
/// target created NOT NULL must first allow NULL: README, Troubleshooting).
#[tokio::test]
async fn null_writes_null_for_values_too_long_and_the_rest_arrives() {
    with_docs(Target::Redshift, Some("null"), async |stack| {
        let outcome = sync(stack, &tables(Some("null"))).await?;
        ensure!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
        let bodies = target_bodies(stack).await?;
        let lengths: Vec<Option<usize>> =
            bodies.iter().map(|b| b.as_ref().map(String::len)).collect();
        ensure!(
            lengths == [Some("hello é🚀".len()), None, None, None, Some(LIMIT)],
            "{lengths:?}"
        );
        assert_other_values_equal_the_source(stack).await?;
        let counts = oversize_counts(stack).await?;
        ensure!(counts == (0, 3), "(truncated, nulled) = {counts:?}");
        Ok(())
    })
    .await;
}

/// PostgreSQL's `text` has no length limit: the Redshift setting does not apply, and every value
/// arrives whole even under `fail`.
#[tokio::test]
async fn a_postgres_target_holds_every_value_whole_whatever_the_setting() {
    with_docs(Target::Postgres, None, async |stack| {
        let outcome = sync(stack, &tables(Some("fail"))).await?;
        ensure!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
        let source = mysql_rows(
            &mut stack.mysql.conn().await?,
            "SELECT id, body FROM docs ORDER BY id",
        )
        .await?;
        let target = postgres_rows(
            stack.pg.client(),
            &format!(
                "SELECT id::text, body FROM \"{}\".docs ORDER BY id",
                stack.pg.schema()
            ),
        )
        .await?;
        ensure!(
            target.len() == 5 && target == source,
            "the values differ from the source"
        );
        let counts = oversize_counts(stack).await?;
        ensure!(counts == (0, 0), "(truncated, nulled) = {counts:?}");
        Ok(())
    })
    .await;
}

//! Issue #22 end to end: a large run (a first load, or an incremental run after a mass UPDATE)
//! reads in primary-key order whatever the chunk concurrency, a small incremental run reads in
//! cursor order, and either way the target equals the source — for each strategy, through the
//! real state machine in the local runner, with `chunk_rows` small enough that every key range
//! continues in its middle and that groups of rows sharing a timestamp straddle range edges.

use mysql_async::prelude::Queryable;
use serde_json::json;
use tidemark::asl::Outcome;
use tidemark::run::SyncMode;
use tidemark::services::Services;
use tidemark::steps::local_sync::{self, EXTRACTS_AT_ONCE};
use tidemark::steps::preview;
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::redshift_standin::services_with_target;
use tidemark_tests::stack::{fast_runner, with_stack, with_stack_on, Stack, Target};
use tidemark_tests::tables::Table;
use tidemark_tests::MysqlServer;

/// Rows per extraction invocation: every key range of the 2,000-row table continues mid-range.
const CHUNK_ROWS: u64 = 200;

/// The source table of a timestamp-strategy case.
#[derive(Clone, Copy)]
struct Shape {
    /// Where the source database lives.
    server: MysqlServer,
    /// The key's columns.
    primary_key: &'static str,
    /// The cursor column's type.
    cursor_type: &'static str,
}

/// `t` keyed by `id`, its cursor a DATETIME(6), on the shared server (in UTC).
const BY_ID: Shape = Shape {
    server: MysqlServer::Shared,
    primary_key: "id",
    cursor_type: "DATETIME(6)",
};

/// Beyond any ceiling, and within TIMESTAMP's range: a timestamp strategy never reads these.
const FUTURE: &str = "2037-01-01";

/// 2,000 rows whose timestamps come in groups of 300 (so groups straddle key-range edges), and
/// three rows at [`FUTURE`], in the session's UTC.
async fn seed(stack: &Stack<'_>, shape: Shape) -> anyhow::Result<()> {
    let mut conn = stack.mysql.conn().await?;
    conn.query_drop("SET SESSION max_recursive_iterations = 10000")
        .await?;
    conn.query_drop(format!(
        "CREATE TABLE t (id BIGINT NOT NULL, grp INT NOT NULL, note VARCHAR(200) NOT NULL, \
         updated_at {} NOT NULL, PRIMARY KEY ({}), KEY (updated_at))",
        shape.cursor_type, shape.primary_key
    ))
    .await?;
    conn.query_drop(
        "INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         SELECT i, i % 7, CONCAT('row ', i, ' ', REPEAT('x', 100)), \
                '2026-01-01 00:00:00' + INTERVAL (i DIV 300) SECOND FROM n",
    )
    .await?;
    conn.query_drop(format!(
        "INSERT INTO t VALUES (2001, 0, 'future', '{FUTURE}'), (2002, 0, 'future', '{FUTURE}'), \
         (2003, 0, 'future', '{FUTURE}')"
    ))
    .await?;
    conn.query_drop("ANALYZE TABLE t").await?;
    Ok(())
}

/// Pipeline `p` with `table` and `chunk_concurrency`, against the stack's target.
async fn services(stack: &Stack<'_>, table: &Table, concurrency: u32) -> anyhow::Result<Services> {
    let mut config = stack
        .mysql
        .config(stack.bucket.bucket().name(), &table.yaml())?;
    if let Some(pipeline) = config.pipelines.get_mut("p") {
        pipeline.chunk_concurrency = concurrency;
    }
    services_with_target(config, stack.pg.schema(), None).await
}

/// The order the dry run says the next run reads in.
async fn planned_order(services: &Services, stack: &Stack<'_>) -> anyhow::Result<String> {
    let table = format!("{}.t", stack.mysql.database());
    let preview = preview::preview(services, "p", &table, SyncMode::Full, None).await?;
    Ok(preview.read.map(|read| read.order).unwrap_or_default())
}

/// Syncs, then compares every target row with the source rows `source_filter` selects.
async fn sync_and_compare(
    services: &Services,
    stack: &Stack<'_>,
    source_filter: &str,
) -> anyhow::Result<()> {
    let outcome = local_sync::run(
        services,
        json!({"pipeline": "p"}),
        &fast_runner("ko"),
        EXTRACTS_AT_ONCE,
    )
    .await?;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    let mut conn = stack.mysql.conn().await?;
    let source = mysql_rows(
        &mut conn,
        &format!(
            "SELECT id, grp, note, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM t \
             {source_filter} ORDER BY id"
        ),
    )
    .await?;
    let target = postgres_rows(
        stack.pg.client(),
        &format!(
            "SELECT id::text, grp::text, note, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') \
             FROM \"{}\".t AS t ORDER BY t.id",
            stack.pg.schema()
        ),
    )
    .await?;
    let first_difference = target.iter().zip(&source).find(|(t, s)| t != s);
    assert_eq!(
        first_difference, None,
        "the first row that differs (target, source)"
    );
    assert_eq!(target.len(), source.len(), "row count");
    Ok(())
}

fn assert_order(order: &str, expected: &str) {
    assert!(
        order.starts_with(expected),
        "expected {expected:?}: {order}"
    );
}

/// A first load, an UPDATE of half the rows (new timestamps in groups that straddle range edges,
/// plus rows sharing the stored cursor's timestamp after its key), then an UPDATE of five rows.
/// Large runs must plan `key_order`.
async fn timestamp_strategy(table: Table, concurrency: u32, shape: Shape, key_order: &str) {
    with_stack_on(shape.server, Target::Postgres, async |stack| {
        seed(stack, shape).await?;
        let services = services(stack, &table, concurrency).await?;
        let below_ceiling = &format!("WHERE updated_at < '{FUTURE}'");

        assert_order(&planned_order(&services, stack).await?, key_order);
        sync_and_compare(&services, stack, below_ceiling).await?;

        let mut conn = stack.mysql.conn().await?;
        conn.query_drop(
            "UPDATE t SET note = CONCAT('changed ', id), \
             updated_at = '2026-03-01 00:00:00' + INTERVAL (id DIV 300) * 10 SECOND WHERE id % 2 = 0",
        )
        .await?;
        conn.query_drop(
            "INSERT INTO t VALUES (2004, 7, 'at the cursor', '2026-01-01 00:00:06'), \
             (2005, 7, 'at the cursor', '2026-01-01 00:00:06')",
        )
        .await?;
        assert_order(&planned_order(&services, stack).await?, key_order);
        sync_and_compare(&services, stack, below_ceiling).await?;

        conn.query_drop(
            "UPDATE t SET note = 'small', updated_at = '2026-05-01' WHERE id IN (3, 500, 1001, 1500, 1999)",
        )
        .await?;
        assert_order(&planned_order(&services, stack).await?, "cursor order");
        sync_and_compare(&services, stack, below_ceiling).await
    })
    .await;
}

#[tokio::test]
async fn hybrid_reads_large_runs_in_key_order_at_concurrency_1() {
    let table = Table::hybrid("t", "updated_at")
        .lookback("0s")
        .chunk_rows(CHUNK_ROWS);
    timestamp_strategy(table, 1, BY_ID, "primary-key order, in 1 key range").await;
}

/// A key of two columns cannot be split into ranges: large runs read as one chunk over the whole
/// key, paged by `(grp, id)`, continuing mid-key; the rows added at the stored cursor's timestamp
/// sort after its key (`grp` 7 > every other).
#[tokio::test]
async fn hybrid_with_a_composite_key_reads_large_runs_as_one_key_ordered_chunk() {
    let table = Table::hybrid("t", "updated_at")
        .lookback("0s")
        .chunk_rows(CHUNK_ROWS);
    let shape = Shape {
        primary_key: "grp, id",
        ..BY_ID
    };
    timestamp_strategy(
        table,
        4,
        shape,
        "primary-key order, one chunk over the whole (composite or non-integer) key",
    )
    .await;
}

#[tokio::test]
async fn timestamp_only_reads_large_runs_in_key_ranges_at_concurrency_4() {
    let table = Table::hybrid("t", "updated_at")
        .strategy("timestamp_only")
        .lookback("1s")
        .chunk_rows(CHUNK_ROWS);
    timestamp_strategy(table, 4, BY_ID, "primary-key order, in 4 key range").await;
}

/// A TIMESTAMP cursor on a server whose time zone is +05:30: the start and ceiling, bound as
/// filters of a key-ordered read, mean the same instants as in a cursor-ordered one.
#[tokio::test]
async fn hybrid_on_a_timestamp_column_in_local_time_reads_large_runs_in_key_order() {
    let table = Table::hybrid("t", "updated_at")
        .lookback("0s")
        .chunk_rows(CHUNK_ROWS);
    let shape = Shape {
        server: MysqlServer::HalfHourOffset,
        cursor_type: "TIMESTAMP(6)",
        ..BY_ID
    };
    timestamp_strategy(table, 2, shape, "primary-key order, in 2 key range").await;
}

#[tokio::test]
async fn id_only_reads_in_key_order_first_and_after_many_inserts() {
    with_stack(Target::Postgres, async |stack| {
        seed(stack, BY_ID).await?;
        let table = Table::new("t").strategy("id_only").chunk_rows(CHUNK_ROWS);
        let services = services(stack, &table, 1).await?;
        assert_order(
            &planned_order(&services, stack).await?,
            "primary-key order, in 1 key range",
        );
        sync_and_compare(&services, stack, "").await?;

        let mut conn = stack.mysql.conn().await?;
        conn.query_drop("SET SESSION max_recursive_iterations = 10000")
            .await?;
        conn.query_drop(
            "INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 3001 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             SELECT i, i % 7, CONCAT('new ', i), '2026-02-01' FROM n",
        )
        .await?;
        assert_order(&planned_order(&services, stack).await?, "key order of the id column");
        sync_and_compare(&services, stack, "").await?;

        conn.query_drop("INSERT INTO t VALUES (5001, 1, 'one more', '2026-02-02')")
            .await?;
        sync_and_compare(&services, stack, "").await
    })
    .await;
}

#[tokio::test]
async fn full_sync_reads_in_key_order_under_one_snapshot() {
    with_stack(Target::Postgres, async |stack| {
        seed(stack, BY_ID).await?;
        let table = Table::new("t").strategy("full_sync").chunk_rows(CHUNK_ROWS);
        let services = services(stack, &table, 4).await?;
        assert_order(
            &planned_order(&services, stack).await?,
            "key order, one chunk",
        );
        sync_and_compare(&services, stack, "").await?;

        let mut conn = stack.mysql.conn().await?;
        conn.query_drop("UPDATE t SET note = CONCAT('changed ', id) WHERE id % 2 = 0")
            .await?;
        conn.query_drop("DELETE FROM t WHERE id BETWEEN 100 AND 109")
            .await?;
        sync_and_compare(&services, stack, "").await
    })
    .await;
}

/// Changes the source once, from inside a run: when the run's `at`-th extract invocation starts,
/// `statements` run on their own connection (on a thread with its own runtime, since the
/// observer cannot await), so the change lands between two parts of a key-ordered read.
struct ChangeDuringRun {
    conn_opts: mysql_async::Opts,
    at: usize,
    statements: Vec<String>,
    extracts: std::sync::atomic::AtomicUsize,
}

impl local_sync::StepObserver for ChangeDuringRun {
    fn started(&self, _function: &str, payload: &serde_json::Value) {
        if payload["action"] != "extract" {
            return;
        }
        let seen = self
            .extracts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if seen != self.at {
            return;
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for the change");
                    runtime.block_on(async {
                        let mut conn = mysql_async::Conn::new(self.conn_opts.clone())
                            .await
                            .expect("a connection for the change");
                        for statement in &self.statements {
                            conn.query_drop(statement).await.expect(statement);
                        }
                    });
                })
                .join()
                .expect("the change ran");
        });
    }

    fn finished(
        &self,
        _: &str,
        _: &serde_json::Value,
        _: &Result<serde_json::Value, tidemark::asl::TaskFailure>,
    ) {
    }
}

/// Rows change while a large first load reads in primary-key order: one already read, one not
/// yet read (its new timestamp is beyond the run's ceiling, so the ceiling filter leaves it to the
/// next run), and a new row. After that run the row read before its change holds its old
/// version and the row changed before it was read is in flight (absent); the next run brings
/// both, and the target equals the source. Nothing is lost, nothing read twice as two rows.
#[tokio::test]
async fn rows_changed_during_a_key_ordered_run_arrive_with_the_next_run() {
    with_stack(Target::Postgres, async |stack| {
        seed(stack, BY_ID).await?;
        let table = Table::hybrid("t", "updated_at")
            .lookback("0s")
            .chunk_rows(CHUNK_ROWS);
        let services = services(stack, &table, 1).await?;
        assert_order(&planned_order(&services, stack).await?, "primary-key order");
        let conn = stack.mysql.conn().await?;
        let change = ChangeDuringRun {
            conn_opts: conn.opts().clone(),
            at: 3,
            statements: vec![
                "UPDATE t SET note = 'changed after it was read', updated_at = UTC_TIMESTAMP(6) WHERE id = 1".into(),
                "UPDATE t SET note = 'changed before it was read', updated_at = UTC_TIMESTAMP(6) WHERE id = 1990".into(),
                "INSERT INTO t VALUES (2010, 3, 'inserted during the run', UTC_TIMESTAMP(6))".into(),
            ],
            extracts: std::sync::atomic::AtomicUsize::new(0),
        };
        drop(conn);
        let (outcome, _) = local_sync::run_with_summary(
            &services,
            json!({"pipeline": "p"}),
            &fast_runner("ko"),
            EXTRACTS_AT_ONCE,
            Some(&change),
        )
        .await?;
        assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
        assert!(
            change.extracts.load(std::sync::atomic::Ordering::SeqCst) > 3,
            "the change must land mid-run"
        );
        let notes = postgres_rows(
            stack.pg.client(),
            &format!(
                "SELECT id::text, note FROM \"{}\".t AS t WHERE t.id IN (1, 1990, 2010) ORDER BY t.id",
                stack.pg.schema()
            ),
        )
        .await?;
        assert_eq!(notes.len(), 1, "only row 1 is loaded by the first run: {notes:?}");
        assert!(notes[0].starts_with("1|row 1 "), "the version read before the change: {notes:?}");

        sync_and_compare(&services, stack, &format!("WHERE updated_at < '{FUTURE}'")).await
    })
    .await;
}

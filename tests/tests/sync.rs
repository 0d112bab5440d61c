//! End to end: the real state machine, run in process by the local runner, syncs two MariaDB
//! tables into PostgreSQL through the local S3 endpoint; the target is compared row by row with
//! the source after the first sync, after changes, and across backup_only / redshift_only runs.

use mysql_async::prelude::Queryable;
use serde_json::json;
use tidemark::asl::Outcome;
use tidemark::steps::local_sync::{self, EXTRACTS_AT_ONCE};
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::stack::{fast_runner, with_stack, Stack, Target};
use tidemark_tests::tables::{self, Table};
use tidemark_tests::TestMysql;

/// The pipeline's tables: `orders` in chunks of 40 rows, `customers` whole every run.
pub(crate) fn tables() -> String {
    tables::yaml(&[
        Table::hybrid("orders", "updated_at").chunk_rows(40),
        Table::new("customers").strategy("full_sync"),
    ])
}

const ORDERS_SOURCE: &str = "SELECT id, customer_id, CAST(amount AS CHAR), status, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM orders ORDER BY id";
const CUSTOMERS_SOURCE: &str = "SELECT id, name, IF(vip, 't', 'f') FROM customers ORDER BY id";

fn orders_target(schema: &str) -> String {
    format!("SELECT id::text, customer_id::text, amount::text, status, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') FROM \"{schema}\".orders AS t ORDER BY t.id")
}

fn customers_target(schema: &str) -> String {
    format!("SELECT id::text, name, CASE WHEN vip THEN 't' ELSE 'f' END FROM \"{schema}\".customers AS t ORDER BY t.id")
}

/// One sync of pipeline `p` (all of [`tables`]) with `input`.
async fn sync(stack: &Stack<'_>, input: serde_json::Value) -> Outcome {
    let services = stack.services(&tables()).await.unwrap();
    local_sync::run(&services, input, &fast_runner("e2e"), EXTRACTS_AT_ONCE)
        .await
        .unwrap()
}

pub(crate) async fn assert_target_equals_source(stack: &Stack<'_>) -> anyhow::Result<()> {
    let mut conn = stack.mysql.conn().await?;
    let source = mysql_rows(&mut conn, ORDERS_SOURCE).await?;
    let target = postgres_rows(stack.pg.client(), &orders_target(stack.pg.schema())).await?;
    assert_eq!(target.len(), source.len(), "orders row count");
    assert_eq!(target, source, "orders rows");
    let source = mysql_rows(&mut conn, CUSTOMERS_SOURCE).await?;
    let target = postgres_rows(stack.pg.client(), &customers_target(stack.pg.schema())).await?;
    assert_eq!(target, source, "customers rows");
    Ok(())
}

pub(crate) async fn seed(mysql: &TestMysql) -> anyhow::Result<()> {
    let mut conn = mysql.conn().await?;
    conn.query_drop(
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(12,2), status VARCHAR(16) NOT NULL, updated_at DATETIME(6) NOT NULL, KEY (updated_at, id))",
    )
    .await?;
    conn.query_drop("CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, vip TINYINT(1) NOT NULL)").await?;
    // 150 orders, 60 of them sharing one timestamp so pages and chunks split inside it.
    conn.query_drop(
        "INSERT INTO orders SELECT seq, seq % 7, seq * 1.25, IF(seq % 3 = 0, 'paid', 'new'), \
         IF(seq BETWEEN 40 AND 99, '2026-01-01 00:00:00.000001', '2026-01-01 00:00:00' + INTERVAL seq SECOND) \
         FROM (SELECT a.n * 10 + b.n + 1 AS seq FROM \
           (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9 UNION SELECT 10 UNION SELECT 11 UNION SELECT 12 UNION SELECT 13 UNION SELECT 14) a, \
           (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) b) s",
    )
    .await?;
    conn.query_drop(
        "INSERT INTO customers VALUES (1, 'Ada', 1), (2, 'Grace', 0), (3, 'Émile 🚀', 0)",
    )
    .await?;
    Ok(())
}

/// A [`Stack`] whose source holds the seeded `orders` and `customers`.
async fn with_seeded_stack(
    target: Target,
    test: impl AsyncFnOnce(&Stack<'_>) -> anyhow::Result<()>,
) {
    with_stack(target, async |stack| {
        seed(stack.mysql).await?;
        test(stack).await
    })
    .await
}

#[tokio::test]
async fn two_tables_sync_and_stay_in_step_after_changes() {
    with_seeded_stack(Target::Postgres, sync_change_and_compare).await;
}

#[tokio::test]
async fn two_tables_sync_into_redshift_through_the_data_api_standin() {
    with_seeded_stack(Target::Redshift, sync_change_and_compare).await;
}

/// Sync, compare; change rows (updates and inserts sharing a timestamp, a delete in the
/// full-sync table), sync, compare; sync with nothing new, compare.
async fn sync_change_and_compare(stack: &Stack<'_>) -> anyhow::Result<()> {
    let outcome = sync(stack, json!({"pipeline": "p"})).await;
    let Outcome::Succeeded(summary) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(summary["succeeded"], 2, "{summary}");
    assert_target_equals_source(stack).await?;

    let mut conn = stack.mysql.conn().await?;
    conn.query_drop("UPDATE orders SET status = 'shipped', updated_at = '2026-02-01 00:00:00.5' WHERE id IN (1, 50, 150)").await?;
    conn.query_drop("INSERT INTO orders VALUES (151, 1, 9.99, 'new', '2026-02-01 00:00:00.5'), (152, 2, NULL, 'new', '2026-02-01 00:00:00.5')").await?;
    conn.query_drop("UPDATE customers SET vip = 1 WHERE id = 2")
        .await?;
    conn.query_drop("DELETE FROM customers WHERE id = 3")
        .await?;
    let outcome = sync(stack, json!({"pipeline": "p"})).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    assert_target_equals_source(stack).await?;

    // A sync with nothing new changes nothing and still succeeds.
    let outcome = sync(stack, json!({"pipeline": "p"})).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    assert_target_equals_source(stack).await
}

/// Empty source tables get their (empty) target tables on the first sync, through either
/// warehouse path, and the rows inserted later arrive (issue #23 item 6).
async fn empty_tables_get_target_tables(stack: &Stack<'_>) -> anyhow::Result<()> {
    let mut conn = stack.mysql.conn().await?;
    conn.query_drop("DELETE FROM orders").await?;
    conn.query_drop("DELETE FROM customers").await?;
    let outcome = sync(stack, json!({"pipeline": "p"})).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    assert_target_equals_source(stack).await?;
    conn.query_drop("INSERT INTO customers VALUES (1, 'Ada', 1)")
        .await?;
    let outcome = sync(stack, json!({"pipeline": "p"})).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    assert_target_equals_source(stack).await
}

#[tokio::test]
async fn empty_tables_get_target_tables_in_postgres() {
    with_seeded_stack(Target::Postgres, empty_tables_get_target_tables).await;
}

#[tokio::test]
async fn empty_tables_get_target_tables_in_redshift_through_the_data_api_standin() {
    with_seeded_stack(Target::Redshift, empty_tables_get_target_tables).await;
}

#[tokio::test]
async fn backup_only_then_redshift_only_loads_what_was_extracted() {
    with_seeded_stack(Target::Postgres, async |stack| {
        let table = format!("{}.orders", stack.mysql.database());
        let outcome = sync(stack, json!({"pipeline": "p", "tables": [table], "mode": "backup_only"})).await;
        assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
        let exists = stack.pg.client().query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'orders'",
            &[&stack.pg.schema()],
        ).await?;
        assert!(exists.is_none(), "backup_only must not load");
        let outcome = sync(stack, json!({"pipeline": "p", "tables": [table], "mode": "redshift_only"})).await;
        let Outcome::Succeeded(summary) = outcome else { panic!("{outcome:?}") };
        assert_eq!(summary["tables"][0]["loaded"][0]["rows_loaded"], 150, "{summary}");
        let mut conn = stack.mysql.conn().await?;
        let source = mysql_rows(&mut conn, ORDERS_SOURCE).await?;
        let target = postgres_rows(stack.pg.client(), &orders_target(stack.pg.schema())).await?;
        assert_eq!(target, source);
        Ok(())
    })
    .await;
}

/// Counts the extractions running at once, as the invoker shows them (after their slot).
#[derive(Default)]
struct ConcurrentExtracts {
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl local_sync::StepObserver for ConcurrentExtracts {
    fn started(&self, _function: &str, payload: &serde_json::Value) {
        use std::sync::atomic::Ordering;
        if payload["action"] == "extract" {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
        }
    }

    fn finished(
        &self,
        _function: &str,
        payload: &serde_json::Value,
        _answer: &Result<serde_json::Value, tidemark::asl::TaskFailure>,
    ) {
        if payload["action"] == "extract" {
            self.running
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A first sync of the seeded pipeline with `slots` extraction slots: the most extractions
/// that ran at once. The target is compared with the source.
async fn peak_extractions(slots: usize) -> usize {
    let peak = std::sync::atomic::AtomicUsize::new(0);
    with_seeded_stack(Target::Postgres, async |stack| {
        let services = stack.services(&tables()).await?;
        let seen = ConcurrentExtracts::default();
        let (outcome, _) = local_sync::run_with_summary(
            &services,
            json!({"pipeline": "p"}),
            &fast_runner(&format!("slots-{slots}")),
            slots,
            Some(&seen),
        )
        .await?;
        assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
        peak.store(
            seen.peak.load(std::sync::atomic::Ordering::SeqCst),
            std::sync::atomic::Ordering::SeqCst,
        );
        assert_target_equals_source(stack).await
    })
    .await;
    peak.into_inner()
}

/// A local sync runs at most `extracts_at_once` extractions at a time, whatever the tables and
/// chunks the state machine runs at once (4 key ranges of `orders` and `customers` here): that
/// is what bounds its memory (issue #22). With room for 4 they do overlap, so the count sees it.
#[tokio::test]
async fn a_local_sync_runs_at_most_its_extraction_slots_at_once() {
    assert_eq!(peak_extractions(1).await, 1, "one slot");
    let peak = peak_extractions(4).await;
    assert!(
        (2..=4).contains(&peak),
        "{peak} extractions at once with 4 slots"
    );
}

//! Silent wrong data (issue #23), through the real binary: each case once lost or changed rows,
//! or left a table stuck, while `sync` reported success. Every test compares the target's rows
//! with the source's.

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::scenario::{create_table, describe, insert_rows, Mode, Scenario};
use tidemark_tests::{MysqlServer, TestMysql};

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

/// A table with a TIMESTAMP cursor and a second TIMESTAMP column; lookback 0 so a shifted cursor
/// skips rows instead of re-reading them.
const EVENTS_TABLE: &str =
    "      \"{db}.events\":\n        cursor_column: updated_at\n        lag: 0s\n        lookback: 0s\n";

const EVENTS_DDL: &str =
    "CREATE TABLE events (id BIGINT PRIMARY KEY, happened_at TIMESTAMP(6) NULL, \
     updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), KEY (updated_at, id))";

/// The events' rows in UTC, read on a UTC session.
async fn source_events(mysql: &TestMysql) -> anyhow::Result<Vec<String>> {
    let mut conn = mysql.conn().await?;
    mysql_rows(
        &mut conn,
        "SELECT id, DATE_FORMAT(happened_at, '%Y-%m-%d %H:%i:%s.%f'), \
         DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM events ORDER BY id",
    )
    .await
}

async fn target_events(scenario: &Scenario<'_>) -> anyhow::Result<Vec<String>> {
    postgres_rows(
        scenario.pg.client(),
        &format!(
            "SELECT id::text, to_char(happened_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), \
             to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
             FROM \"{}\".events AS t ORDER BY t.id",
            scenario.pg.schema()
        ),
    )
    .await
}

async fn events_agree(
    mysql: &TestMysql,
    scenario: &Scenario<'_>,
    when: &str,
) -> anyhow::Result<()> {
    let source = source_events(mysql).await?;
    let target = target_events(scenario).await?;
    ensure!(
        source == target,
        "{when}: target differs from source\nsource: {source:#?}\ntarget: {target:#?}"
    );
    Ok(())
}

/// A source server in local time (a half-hour offset; SYSTEM in a DST zone) loses and shifts
/// nothing: TIMESTAMPs arrive in UTC, the watermark cursor is the newest UTC value, a row
/// inserted later just after it arrives, and rows written a minute ago are within the first
/// run's ceiling. The CLI runs every step in one process, so extraction reuses the pooled
/// connection that fixed the ceiling, after the pool reset it.
#[tokio::test]
async fn a_source_server_in_local_time_shifts_and_skips_nothing() {
    for server in [MysqlServer::HalfHourOffset, MysqlServer::SystemZoneWithDst] {
        TestMysql::run_on(server, async |mysql| {
            let scenario = Scenario::new(mysql, BINARY, EVENTS_TABLE).await?;
            let mut conn = mysql.conn().await?;
            conn.query_drop(EVENTS_DDL).await?;
            // UTC literals (the session is UTC): both sides of New York's 2026 DST changes,
            // including the hour that repeats in local time in November, and rows of a minute ago.
            conn.query_drop(
                "INSERT INTO events VALUES \
                 (1, '2026-03-08 06:59:59.5', '2026-03-08 06:59:59.500001'), \
                 (2, '2026-03-08 07:00:00.5', '2026-03-08 07:00:00.500001'), \
                 (3, '2026-11-01 05:30:00', '2026-11-01 05:30:00'), \
                 (4, '2026-11-01 06:30:00', '2026-11-01 06:30:00'), \
                 (5, NULL, UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE), \
                 (6, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE)",
            )
            .await?;
            scenario.sync_ok("events")?;
            events_agree(mysql, &scenario, &format!("{server:?}, first sync")).await?;
            let newest: Option<String> = conn
                .query_first("SELECT DATE_FORMAT(MAX(updated_at), '%Y-%m-%d %H:%i:%s.%f') FROM events")
                .await?;
            let cursor = scenario
                .watermark("events")
                .await?
                .context("no watermark")?
                .extract
                .cursor
                .timestamp;
            ensure!(
                cursor == newest,
                "{server:?}: the cursor is {cursor:?}, the newest row's UTC time {newest:?}"
            );
            // Just after the cursor in UTC, but before it as the server's local time would read it.
            conn.query_drop(
                "INSERT INTO events SELECT 7, NULL, MAX(updated_at) + INTERVAL 1 SECOND FROM events",
            )
            .await?;
            scenario.sync_ok("events")?;
            events_agree(mysql, &scenario, &format!("{server:?}, second sync")).await?;
            ensure!(
                target_events(&scenario).await?.len() == 7,
                "{server:?}: not all 7 rows arrived"
            );
            scenario.cleanup().await
        })
        .await
        .unwrap_or_else(|err| panic!("{server:?}: {err:#}"));
    }
}

/// A table's YAML: hybrid cursor on `updated_at`, no lag, no lookback, and `extra` lines.
fn merged_table(name: &str, extra: &str) -> String {
    format!(
        "      \"{{db}}.{name}\":\n        cursor_column: updated_at\n        lag: 0s\n        lookback: 0s\n{extra}"
    )
}

/// A second pipeline whose table loads into the first's target table (another config file, so
/// `config check` cannot see both) is refused at load, before the schema step adds its columns,
/// naming both pipelines and tables; the first table's rows stay the source's.
#[tokio::test]
async fn a_target_table_of_another_pipeline_is_refused_at_load() {
    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &merged_table("orders", "")).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        insert_rows(&mut conn, "orders", 1, 30, "2025-01-01 00:00:00").await?;
        conn.query_drop(create_table("other")).await?;
        insert_rows(&mut conn, "other", 1, 40, "2025-03-01 00:00:00").await?;
        conn.query_drop("ALTER TABLE other ADD COLUMN extra INT DEFAULT 7").await?;
        scenario.sync_ok("orders")?;

        let db = mysql.database();
        let second = std::fs::read_to_string(scenario.config_path())?
            .replace("\n  p:\n", "\n  q:\n")
            .replace(
                &format!("\"{db}.orders\":\n"),
                &format!("\"{db}.other\":\n        target_name: orders\n"),
            );
        let second_config = tempfile::NamedTempFile::new()?;
        std::fs::write(second_config.path(), second)?;
        let out = std::process::Command::new(BINARY)
            .arg("--config")
            .arg(second_config.path())
            .args(["sync", "-t", &format!("{db}.other")])
            .stdin(std::process::Stdio::null())
            .output()?;
        let said = describe(&out);
        ensure!(out.status.code() == Some(1), "expected exit 1: {said}");
        ensure!(
            said.contains("pipeline `p`")
                && said.contains(&format!("`{db}.orders`"))
                && said.contains("pipeline `q`")
                && said.contains("target_name"),
            "the error must name both tables and the fix: {said}"
        );
        let columns: i64 = scenario
            .pg
            .client()
            .query_one(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'orders' AND column_name = 'extra'",
                &[&scenario.pg.schema()],
            )
            .await?
            .get(0);
        ensure!(columns == 0, "the other table's column was added to `orders`");
        scenario.check(Mode::Merge, "orders").await?;
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// Source columns named like tidemark's staging columns are refused at begin with the fix
/// (exclude them), and nothing is committed; excluded, the table syncs.
#[tokio::test]
async fn source_columns_named_like_tidemark_s_own_are_refused_with_the_fix() {
    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &merged_table("merged", "")).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("merged")).await?;
        insert_rows(&mut conn, "merged", 1, 20, "2025-01-01 00:00:00").await?;
        conn.query_drop("ALTER TABLE merged ADD COLUMN _tidemark_run INT DEFAULT 1, ADD COLUMN _TIDEMARK_rank INT")
            .await?;
        let out = scenario.sync("merged", None);
        let said = describe(&out);
        ensure!(out.status.code() == Some(1), "expected exit 1: {said}");
        ensure!(
            said.contains("`_tidemark_run`") && said.contains("exclude"),
            "the error must name the column and the fix: {said}"
        );
        let watermark = scenario.watermark("merged").await?.context("no watermark")?;
        ensure!(
            watermark.pending_runs.is_empty() && watermark.extract.cursor.is_start(),
            "a run was committed: {watermark:?}"
        );
        scenario.set_config(
            &["pipelines", "p", "tables", &format!("{}.merged", mysql.database()), "columns"],
            "{ exclude: [_tidemark_run, _TIDEMARK_rank] }",
        )?;
        scenario.sync_ok("merged")?;
        scenario.check(Mode::Merge, "merged").await?;
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// The first sync of an empty source table creates the (empty) target table, on PostgreSQL;
/// rows inserted later arrive.
#[tokio::test]
async fn an_empty_source_table_gets_its_target_table_on_the_first_sync() {
    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &merged_table("merged", "")).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("merged")).await?;
        scenario.sync_ok("merged")?;
        let rows: i64 = scenario
            .pg
            .client()
            .query_one(
                &format!("SELECT count(*) FROM \"{}\".merged", scenario.pg.schema()),
                &[],
            )
            .await
            .context("the target table was not created")?
            .get(0);
        ensure!(rows == 0, "{rows} rows in the target of an empty table");
        scenario.sync_ok("merged")?;
        insert_rows(&mut conn, "merged", 1, 25, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("merged")?;
        let checked = scenario.check(Mode::Merge, "merged").await?;
        ensure!(checked.rows == 25, "{} rows compared", checked.rows);
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

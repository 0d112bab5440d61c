//! Silent wrong data (issue #23), through the real binary: each case once lost or changed rows,
//! or left a table stuck, while `sync` reported success. Every test compares the target's rows
//! with the source's.

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::scenario::Scenario;
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

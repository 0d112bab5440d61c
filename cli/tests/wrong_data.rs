//! Silent wrong data (issues #23 and #24), through the real binary: each case once lost or
//! changed rows, or left a table stuck, while `sync` reported success. Every test compares the
//! target's rows with the source's.

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::scenario::{create_table, describe, insert_rows, Mode, Scenario};
use tidemark_tests::tables::Table;
use tidemark_tests::{MysqlServer, TestMysql};

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

/// A table with a TIMESTAMP cursor and a second TIMESTAMP column; lookback 0 so a shifted cursor
/// skips rows instead of re-reading them.
fn events_table() -> String {
    Table::hybrid("events", "updated_at").lookback("0s").yaml()
}

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
            let scenario = Scenario::new(mysql, BINARY, &events_table()).await?;
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

/// A table: hybrid cursor on `updated_at`, no lag, no lookback.
fn merged_table(name: &str) -> Table {
    Table::hybrid(name, "updated_at").lookback("0s")
}

/// A scenario for `tables` (YAML) whose source table `table` ([`create_table`]'s shape) holds
/// ids 1 to `rows`, from 2025-01-01 on, and a connection to the source.
async fn seeded<'a>(
    mysql: &'a TestMysql,
    tables: &str,
    table: &str,
    rows: u64,
) -> anyhow::Result<(Scenario<'a>, mysql_async::Conn)> {
    let scenario = Scenario::new(mysql, BINARY, tables).await?;
    let mut conn = mysql.conn().await?;
    conn.query_drop(create_table(table)).await?;
    insert_rows(&mut conn, table, 1, rows, "2025-01-01 00:00:00").await?;
    Ok((scenario, conn))
}

/// `COUNT(*)` of target table `table` in the scenario's schema.
async fn target_count(scenario: &Scenario<'_>, table: &str) -> anyhow::Result<i64> {
    Ok(scenario
        .pg
        .client()
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{}\".\"{table}\"",
                scenario.pg.schema()
            ),
            &[],
        )
        .await?
        .get(0))
}

/// A sync of `table` that fails (exit 1) saying each of `needles`, with no run committed.
async fn refused_before_commit(
    scenario: &Scenario<'_>,
    table: &str,
    needles: &[&str],
) -> anyhow::Result<()> {
    let out = scenario.sync(table, None);
    let said = describe(&out);
    ensure!(out.status.code() == Some(1), "expected exit 1: {said}");
    for needle in needles {
        ensure!(said.contains(needle), "`{needle}` missing from: {said}");
    }
    let watermark = scenario.watermark(table).await?;
    ensure!(
        watermark
            .as_ref()
            .is_none_or(|w| w.pending_runs.is_empty() && w.extract.cursor.is_start()),
        "a run was committed: {watermark:?}"
    );
    Ok(())
}

/// A second pipeline whose table loads into the first's target table (another config file, so
/// `config check` cannot see both) is refused at load, before the schema step adds its columns,
/// naming both pipelines and tables; the first table's rows stay the source's.
#[tokio::test]
async fn a_target_table_of_another_pipeline_is_refused_at_load() {
    TestMysql::run(async |mysql| {
        let (scenario, mut conn) = seeded(mysql, &merged_table("orders").yaml(), "orders", 30).await?;
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
        let (scenario, mut conn) = seeded(mysql, &merged_table("merged").yaml(), "merged", 20).await?;
        conn.query_drop("ALTER TABLE merged ADD COLUMN _tidemark_run INT DEFAULT 1, ADD COLUMN _TIDEMARK_rank INT")
            .await?;
        refused_before_commit(&scenario, "merged", &["`_tidemark_run`", "exclude"]).await?;
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
        let scenario = Scenario::new(mysql, BINARY, &merged_table("merged").yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("merged")).await?;
        scenario.sync_ok("merged")?;
        let rows = target_count(&scenario, "merged")
            .await
            .context("the target table was not created")?;
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

/// `watermark set` checks the cursor against the source: beyond its clock only with `--force`;
/// exactly as many key values as the key has (`--id` on a two-column key is refused, naming the
/// columns; `--key` per column works); `history` shows each version's cursor.
#[tokio::test]
async fn watermark_set_refuses_a_future_cursor_and_a_key_of_the_wrong_width() {
    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &merged_table("pairs").yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE pairs (a INT, b VARCHAR(8), updated_at DATETIME(6) NOT NULL, PRIMARY KEY (a, b))",
        )
        .await?;
        conn.query_drop("INSERT INTO pairs VALUES (1, 'x', '2025-01-01 00:00:00')").await?;
        let table = mysql.table("pairs").to_string();
        let set = |extra: &[&str]| {
            let mut args = vec!["--json", "watermark", "set", "-t", &table];
            args.extend_from_slice(extra);
            scenario.run(&args, None)
        };

        let future = set(&["--timestamp", "2999-01-01 00:00:00"]);
        let said = describe(&future);
        ensure!(future.status.code() == Some(2), "{said}");
        ensure!(said.contains("after the source's clock") && said.contains("--force"), "{said}");
        ensure!(scenario.watermark("pairs").await?.is_none(), "a refused set wrote a watermark");

        let narrow = set(&["--id", "5"]);
        let said = describe(&narrow);
        ensure!(narrow.status.code() == Some(2), "{said}");
        ensure!(said.contains("(a, b)") && said.contains("--key"), "{said}");

        let ok = set(&["--timestamp", "2025-01-01 00:00:00", "--key", "1", "--key", "x"]);
        let said = describe(&ok);
        ensure!(ok.status.success(), "{said}");
        ensure!(
            said.contains("cursor the start -> timestamp 2025-01-01 00:00:00.000000, key (1, x)")
                && !said.contains("Cursor {"),
            "the edit must read as text, not Rust Debug: {said}"
        );
        let forced = set(&["--timestamp", "2999-01-01 00:00:00", "--force"]);
        ensure!(forced.status.success(), "{}", describe(&forced));
        let cursor = scenario.watermark("pairs").await?.context("no watermark")?.extract.cursor;
        ensure!(
            cursor.timestamp.as_deref() == Some("2999-01-01 00:00:00.000000") && cursor.key.is_empty(),
            "a new timestamp must start before every key of that instant: {cursor:?}"
        );
        // A forced future cursor: the sync and the dry run say why nothing is read.
        let sync = scenario.run(&["sync", "-t", &table], None);
        let said = describe(&sync);
        ensure!(
            sync.status.success() && said.contains("after this run's ceiling"),
            "the sync must say its start is beyond its ceiling: {said}"
        );
        let dry = scenario.run(&["--json", "sync", "-t", &table, "--dry-run"], None);
        let said = describe(&dry);
        let document: serde_json::Value = serde_json::from_slice(&dry.stdout)
            .with_context(|| format!("dry run: {said}"))?;
        let preview = &document["tables"][0];
        ensure!(
            preview["warning"].as_str().is_some_and(|w| w.contains("after this run's ceiling"))
                && preview["read"]["estimated_rows"] == 0,
            "the dry run must warn and predict no rows: {document}"
        );
        let history = scenario.run(&["watermark", "history", "-t", &table], None);
        let said = describe(&history);
        ensure!(
            history.status.success()
                && said.contains("cursor timestamp 2025-01-01 00:00:00.000000, key (1, x)"),
            "history must show each version's cursor: {said}"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// The old tool's "fresh sync from a date": rows lost in the warehouse are reloaded by setting
/// the watermark's timestamp back. Rows at exactly that timestamp with a key below the old
/// cursor's key arrive too (the old key used to be kept, and skipped them).
#[tokio::test]
async fn setting_a_timestamp_rereads_every_row_of_that_instant() {
    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &merged_table("merged").yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("merged")).await?;
        // Ids 10..=14 share one timestamp (insert_rows steps the time every fifth id).
        insert_rows(&mut conn, "merged", 1, 30, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("merged")?;
        let shared: Option<String> = conn
            .query_first(
                "SELECT DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM merged WHERE id = 10",
            )
            .await?;
        let shared = shared.context("no row 10")?;
        scenario
            .pg
            .client()
            .execute(
                &format!(
                    "DELETE FROM \"{}\".merged WHERE updated_at >= CAST($1::text AS timestamp)",
                    scenario.pg.schema()
                ),
                &[&shared],
            )
            .await?;
        let out = scenario.run(
            &[
                "watermark",
                "set",
                "-t",
                &mysql.table("merged").to_string(),
                "--timestamp",
                &shared,
            ],
            None,
        );
        ensure!(out.status.success(), "{}", describe(&out));
        scenario.sync_ok("merged")?;
        let target = target_count(&scenario, "merged").await?;
        ensure!(
            target == 30,
            "the target holds {target} of 30 rows after the re-read"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// The README's automation contracts: `--json` prints one JSON document for usage errors too;
/// a missing config file is a usage error (exit 2) that names `--config` and `TIDEMARK_CONFIG`;
/// an S3 error is one readable line (no SDK dump); logs carry no colour codes off a terminal.
#[tokio::test]
async fn usage_errors_and_service_errors_read_as_documented() {
    for args in [
        vec!["--json", "sync", "-t", "a.b", "--limit", "0"],
        vec!["--json", "frobnicate"],
        vec![
            "--json",
            "sync",
            "--backup-only",
            "--redshift-only",
            "-t",
            "a.b",
        ],
    ] {
        let out = std::process::Command::new(BINARY)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        let document: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
                panic!(
                    "{args:?}: stdout is not one JSON document ({err}): {}",
                    describe(&out)
                )
            });
        assert_eq!(document["exit_code"], 2, "{document}");
    }

    let missing = std::process::Command::new(BINARY)
        .args([
            "--config",
            "/nonexistent/tidemark.yaml",
            "sync",
            "-t",
            "a.b",
        ])
        .env_remove("TIDEMARK_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = describe(&missing);
    assert_eq!(missing.status.code(), Some(2), "{said}");
    assert!(
        said.contains("--config") && said.contains("TIDEMARK_CONFIG"),
        "{said}"
    );

    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &merged_table("merged").yaml()).await?;
        mysql
            .conn()
            .await?
            .query_drop(create_table("merged"))
            .await?;
        scenario.set_config(
            &["pipelines", "p", "s3", "bucket"],
            "tidemark-no-such-bucket",
        )?;
        let out = scenario.run(&["sync", "-t", &mysql.table("merged").to_string()], None);
        let said = describe(&out);
        ensure!(out.status.code() == Some(1), "{said}");
        ensure!(
            said.contains("NoSuchBucket: The specified bucket does not exist")
                && said.contains("`s3.bucket`")
                && !said.contains("ServiceError")
                && !said.contains("errorMessage")
                && !said.contains('\u{1b}'),
            "{said}"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// `sync --limit N` whose lookback window holds N rows or more cannot move the cursor: it fails
/// saying so (it used to succeed, re-reading the same rows forever); a larger limit progresses.
#[tokio::test]
async fn a_limit_smaller_than_the_lookback_window_says_so() {
    TestMysql::run(async |mysql| {
        let yaml = Table::hybrid("merged", "updated_at").lookback("1h").yaml();
        let (scenario, mut conn) = seeded(mysql, &yaml, "merged", 30).await?;
        scenario.sync_ok("merged")?;
        insert_rows(&mut conn, "merged", 31, 35, "2025-01-01 00:10:00").await?;
        let table = mysql.table("merged").to_string();
        let before = scenario
            .watermark("merged")
            .await?
            .context("no watermark")?;
        let out = scenario.run(&["sync", "-t", &table, "--limit", "5"], None);
        let said = describe(&out);
        ensure!(out.status.code() == Some(1), "{said}");
        ensure!(
            said.contains("`--limit 5`")
                && said.contains("lookback")
                && said.contains("nothing was committed"),
            "{said}"
        );
        let after = scenario
            .watermark("merged")
            .await?
            .context("no watermark")?;
        ensure!(
            after.extract.cursor == before.extract.cursor && after.pending_runs.is_empty(),
            "the refused run changed the watermark: {after:?}"
        );
        let out = scenario.run(&["sync", "-t", &table, "--limit", "40"], None);
        ensure!(out.status.success(), "{}", describe(&out));
        let checked = scenario.check(Mode::Merge, "merged").await?;
        ensure!(checked.rows == 35, "{} rows compared", checked.rows);
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A NUL byte in a text value stopped the PostgreSQL load as "db error", and the table stayed
/// stuck. Now the extraction refuses it before anything is committed, naming the column and the
/// row and the setting; with `nul_in_text: strip` the row arrives without it.
#[tokio::test]
async fn a_nul_byte_in_text_is_refused_with_the_fix_or_stripped() {
    TestMysql::run(async |mysql| {
        let (scenario, mut conn) =
            seeded(mysql, &merged_table("merged").yaml(), "merged", 20).await?;
        conn.query_drop("UPDATE merged SET v = CONCAT('bad', CHAR(0), 'value') WHERE id = 7")
            .await?;
        refused_before_commit(&scenario, "merged", &["column `v`", "`7`", "nul_in_text"]).await?;
        scenario.set_config(
            &[
                "pipelines",
                "p",
                "tables",
                &format!("{}.merged", mysql.database()),
                "nul_in_text",
            ],
            "strip",
        )?;
        scenario.sync_ok("merged")?;
        conn.query_drop("UPDATE merged SET v = REPLACE(v, CHAR(0), '') WHERE id = 7")
            .await?;
        // The source now holds what the target was given; the check compares every row.
        let checked = scenario.check(Mode::Merge, "merged").await?;
        ensure!(checked.rows == 20, "{} rows compared", checked.rows);
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A 64-character column name does not fit PostgreSQL: the sync is refused at begin, before any
/// run is committed, naming the column and the fix; once the column is excluded the table syncs
/// (no run committed under the old config is left to fail the load).
#[tokio::test]
async fn a_column_name_too_long_for_the_target_is_refused_before_any_run_commits() {
    TestMysql::run(async |mysql| {
        let (scenario, mut conn) =
            seeded(mysql, &merged_table("merged").yaml(), "merged", 20).await?;
        let long = "c".repeat(64);
        conn.query_drop(format!("ALTER TABLE merged ADD COLUMN `{long}` INT"))
            .await?;
        refused_before_commit(
            &scenario,
            "merged",
            &[&format!("column `{long}`"), "exclude"],
        )
        .await?;
        scenario.set_config(
            &[
                "pipelines",
                "p",
                "tables",
                &format!("{}.merged", mysql.database()),
                "columns",
            ],
            &format!("{{ exclude: [{long}] }}"),
        )?;
        scenario.sync_ok("merged")?;
        scenario.check(Mode::Merge, "merged").await?;
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// `tidemark --json … | head`: a reader that closes the pipe ends tidemark quietly with 141
/// (128 + SIGPIPE), as other Unix tools end; it used to panic with exit 101.
#[test]
fn a_closed_stdout_ends_quietly() {
    let script = format!("(sleep 0.3; exec {BINARY} --json frobnicate 2>/tmp/tidemark-pipe-$$) | true; echo ${{PIPESTATUS[0]}}; cat /tmp/tidemark-pipe-$$; rm -f /tmp/tidemark-pipe-$$");
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("141\n"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

/// `load: append` keeps every version of a row, once: an UPDATE appends the new version (it used
/// to fail on the target's primary key and block the table), and re-reading the same versions —
/// `watermark set` into the past, `watermark reset` — appends nothing twice (issue #24 item 1).
#[tokio::test]
async fn append_keeps_each_version_of_a_row_once() {
    TestMysql::run(async |mysql| {
        let yaml = Table::hybrid("events", "updated_at").load("append").yaml();
        let (scenario, mut conn) = seeded(mysql, &yaml, "events", 20).await?;
        scenario.sync_ok("events")?;
        conn.query_drop("UPDATE events SET v = 'second version', updated_at = '2025-02-01 00:00:00' WHERE id = 5")
            .await?;
        scenario.sync_ok("events")?;
        let table = mysql.table("events").to_string();
        let versions = async || -> anyhow::Result<(i64, i64)> {
            let row = scenario
                .pg
                .client()
                .query_one(
                    &format!(
                        "SELECT count(*), count(DISTINCT (id, updated_at)) FROM \"{}\".events",
                        scenario.pg.schema()
                    ),
                    &[],
                )
                .await?;
            Ok((row.get(0), row.get(1)))
        };
        ensure!(versions().await? == (21, 21), "after the update: {:?}", versions().await?);
        for edit in [
            vec!["watermark", "set", "-t", &table, "--timestamp", "2000-01-01 00:00:00"],
            vec!["watermark", "reset", "-t", &table, "--yes"],
        ] {
            let out = scenario.run(&edit, None);
            ensure!(out.status.success(), "{edit:?}: {}", describe(&out));
            scenario.sync_ok("events")?;
            ensure!(
                versions().await? == (21, 21),
                "after {edit:?} and a sync: {:?} (rows, distinct versions)",
                versions().await?
            );
        }
        // Every source row's current version is in the target.
        let current = postgres_rows(
            scenario.pg.client(),
            &format!(
                "SELECT count(*)::text FROM \"{}\".events WHERE id = 5 AND v = 'second version'",
                scenario.pg.schema()
            ),
        )
        .await?;
        ensure!(current == ["1"], "{current:?}");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// `id_only`: a transaction that holds an auto-increment id while a later id commits and a sync
/// passes it is still loaded once it commits, through the `id_lookback` re-read window (issue
/// #24 item 2). Two sessions: one holds its insert open across a sync.
#[tokio::test]
async fn id_only_loads_a_row_committed_after_a_later_id() {
    TestMysql::run(async |mysql| {
        let yaml = Table::new("ev").strategy("id_only").load("append").yaml();
        let scenario = Scenario::new(mysql, BINARY, &yaml).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE ev (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40), amount DECIMAL(12,2), updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        // MariaDB's built-in sequence engine: 20 rows.
        conn.query_drop("INSERT INTO ev (v, amount, updated_at) SELECT 'early', 1.5, '2025-01-01' FROM seq_1_to_20")
            .await?;
        let mut holder = mysql.conn().await?;
        holder.query_drop("START TRANSACTION").await?;
        holder
            .query_drop("INSERT INTO ev (v, amount, updated_at) VALUES ('late commit', 2.5, '2025-01-02')")
            .await?;
        conn.query_drop("INSERT INTO ev (v, amount, updated_at) VALUES ('later id', 3.5, '2025-01-03')")
            .await?;
        scenario.sync_ok("ev")?;
        holder.query_drop("COMMIT").await?;
        scenario.sync_ok("ev")?;
        let checked = scenario.check(Mode::Append, "ev").await?;
        ensure!(checked.rows == 22, "{} rows compared", checked.rows);
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A `full_sync` + `replace` table publishes one state of the source while a writer moves rows
/// between keys during the sync: the run is read under one consistent snapshot. It used to be
/// read in key ranges and invocations of `chunk_rows` rows, each its own snapshot, and the
/// target held moved rows twice or not at all (issue #24 item 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_sync_publishes_one_snapshot_while_rows_move() {
    TestMysql::run(async |mysql| {
        let yaml = Table::new("moving").strategy("full_sync").chunk_rows(50).yaml();
        let (scenario, _) = seeded(mysql, &yaml, "moving", 2000).await?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writer_conn = mysql.conn().await?;
        let writer_stop = stop.clone();
        // Moves the lowest row to the top of the key space, over and over: the table always
        // holds the same 2000 rows, under changing keys.
        let writer = tokio::spawn(async move {
            let mut moved = 0u64;
            while !writer_stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer_conn
                    .query_drop("UPDATE moving SET id = id + 1000000 ORDER BY id LIMIT 1")
                    .await?;
                moved += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            anyhow::Ok(moved)
        });
        let table = mysql.table("moving").to_string();
        let out = tokio::task::spawn_blocking({
            let mut command = scenario.command(&["sync", "-t", &table], None);
            move || command.output()
        })
        .await??;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let moved = writer.await??;
        ensure!(out.status.success(), "{}", describe(&out));
        ensure!(moved > 0, "the writer moved no row during the sync");
        let row = scenario
            .pg
            .client()
            .query_one(
                &format!("SELECT count(*), count(DISTINCT v) FROM \"{}\".moving", scenario.pg.schema()),
                &[],
            )
            .await?;
        let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
        ensure!(
            (rows, distinct) == (2000, 2000),
            "the target holds {rows} rows ({distinct} distinct) of the source's 2000 ({moved} moved during the sync)"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// The target's `(id, column)` pairs, and the source's, as text.
async fn column_pairs(
    scenario: &Scenario<'_>,
    mysql: &TestMysql,
    column: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let source = mysql_rows(
        &mut mysql.conn().await?,
        &format!("SELECT id, CAST({column} AS CHAR) FROM merged ORDER BY id"),
    )
    .await?;
    let target = postgres_rows(
        scenario.pg.client(),
        &format!(
            "SELECT id::text, {column}::text FROM \"{}\".merged AS t ORDER BY t.id",
            scenario.pg.schema()
        ),
    )
    .await?;
    Ok((source, target))
}

/// An added column reaches the rows loaded before it existed (`ADD COLUMN … DEFAULT 7` left NULL
/// in every existing target row): the next sync re-reads the table. A rename is a drop and an
/// add: the new column is backfilled, the old one is kept with a warning in the sync's output,
/// or dropped with `dropped_columns: drop` (issue #24 items 3 and 4).
#[tokio::test]
async fn added_and_renamed_columns_arrive_in_every_row() {
    TestMysql::run(async |mysql| {
        let (scenario, mut conn) = seeded(mysql, &merged_table("merged").yaml(), "merged", 30).await?;
        scenario.sync_ok("merged")?;

        conn.query_drop("ALTER TABLE merged ADD COLUMN qty INT NOT NULL DEFAULT 7").await?;
        conn.query_drop("UPDATE merged SET qty = 9, updated_at = '2025-03-01' WHERE id = 3").await?;
        scenario.sync_ok("merged")?;
        let (source, target) = column_pairs(&scenario, mysql, "qty").await?;
        ensure!(source == target, "after ADD COLUMN: source {source:?}\ntarget {target:?}");

        conn.query_drop("ALTER TABLE merged RENAME COLUMN qty TO quantity").await?;
        let out = scenario.run(&["sync", "-t", &mysql.table("merged").to_string()], None);
        let said = describe(&out);
        ensure!(out.status.success(), "{said}");
        ensure!(
            said.contains("`qty` is no longer fed by the source") && said.contains("dropped_columns"),
            "the sync must say the old column stays: {said}"
        );
        let (source, target) = column_pairs(&scenario, mysql, "quantity").await?;
        ensure!(source == target, "after RENAME COLUMN: source {source:?}\ntarget {target:?}");
        scenario.check(Mode::Merge, "merged").await?;

        scenario.set_config(
            &["pipelines", "p", "tables", &format!("{}.merged", mysql.database()), "dropped_columns"],
            "drop",
        )?;
        // The schema step runs with the next load: give it a row to load.
        conn.query_drop("UPDATE merged SET quantity = 11, updated_at = '2025-04-01' WHERE id = 4")
            .await?;
        scenario.sync_ok("merged")?;
        let left: i64 = scenario
            .pg
            .client()
            .query_one(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'merged' AND column_name = 'qty'",
                &[&scenario.pg.schema()],
            )
            .await?
            .get(0);
        ensure!(left == 0, "`dropped_columns: drop` left the old column");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// `merge` with `key_columns` that are not unique collapsed rows silently (100 became 10): the
/// run is refused at begin, naming a unique key to use, and nothing is committed; `config check
/// --source` says the same before any sync; with a unique key the table syncs (issue #24 item 6).
#[tokio::test]
async fn merge_refuses_key_columns_that_are_not_unique() {
    TestMysql::run(async |mysql| {
        let yaml = merged_table("merged").key_columns(&["v"]).yaml();
        let (scenario, mut conn) = seeded(mysql, &yaml, "merged", 100).await?;
        conn.query_drop("UPDATE merged SET v = CONCAT('group ', id % 10)")
            .await?;
        refused_before_commit(
            &scenario,
            "merged",
            &["are not unique in the source", "key_columns: [id]"],
        )
        .await?;
        // `config check --source` says so before any sync, exit 2, naming a unique key.
        let out = scenario.run(&["config", "check", "--source"], None);
        let said = describe(&out);
        ensure!(
            out.status.code() == Some(2)
                && said.contains("key_columns (v)")
                && said.contains("NOT unique in the source")
                && said.contains("a unique key is (id)"),
            "{said}"
        );
        scenario.set_config(
            &[
                "pipelines",
                "p",
                "tables",
                &format!("{}.merged", mysql.database()),
                "key_columns",
            ],
            "[id]",
        )?;
        let out = scenario.run(&["config", "check", "--source"], None);
        let said = describe(&out);
        ensure!(
            out.status.success()
                && said.contains("key_columns (id)")
                && said.contains("unique in the source (index over id)"),
            "{said}"
        );
        scenario.sync_ok("merged")?;
        let checked = scenario.check(Mode::Merge, "merged").await?;
        ensure!(checked.rows == 100, "{} rows compared", checked.rows);
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A changed source primary key ended in "db error": it is schema drift naming both keys and the
/// fix, and the reload it names brings every row (issue #24 item 7).
#[tokio::test]
async fn a_changed_primary_key_is_drift_with_the_fix() {
    TestMysql::run(async |mysql| {
        let (scenario, mut conn) = seeded(mysql, &merged_table("merged").yaml(), "merged", 20).await?;
        scenario.sync_ok("merged")?;
        conn.query_drop("ALTER TABLE merged MODIFY v VARCHAR(40) NOT NULL, DROP PRIMARY KEY, ADD PRIMARY KEY (id, v)")
            .await?;
        conn.query_drop("INSERT INTO merged VALUES (3, 'another v', 9.5, '2025-02-01')").await?;
        let table = mysql.table("merged").to_string();
        let out = scenario.run(&["sync", "-t", &table], None);
        let said = describe(&out);
        ensure!(out.status.code() == Some(1), "{said}");
        ensure!(
            said.contains("primary key changed from (id) to (id, v)")
                && said.contains("watermark reset"),
            "{said}"
        );
        scenario
            .pg
            .client()
            .batch_execute(&format!("DROP TABLE \"{}\".merged", scenario.pg.schema()))
            .await?;
        let reset = scenario.run(&["watermark", "reset", "-t", &table, "--yes"], None);
        ensure!(reset.status.success(), "{}", describe(&reset));
        scenario.sync_ok("merged")?;
        let source = mysql_rows(&mut conn, "SELECT id, v FROM merged ORDER BY id, v").await?;
        let target = postgres_rows(
            scenario.pg.client(),
            &format!("SELECT id::text, v FROM \"{}\".merged AS t ORDER BY t.id, t.v", scenario.pg.schema()),
        )
        .await?;
        ensure!(source == target && source.len() == 21, "source {source:?}\ntarget {target:?}");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// The first sync into a brand-new database works: the target schema is created when missing
/// (it failed as "db error") (issue #14 item 5).
#[tokio::test]
async fn a_missing_target_schema_is_created() {
    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &merged_table("merged").yaml()).await?;
        let fresh = format!("{}_new", scenario.pg.schema());
        scenario.set_config(&["connections", "wh", "schema"], &format!("\"{fresh}\""))?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("merged")).await?;
        insert_rows(&mut conn, "merged", 1, 10, "2025-01-01 00:00:00").await?;
        let out = scenario.sync("merged", None);
        let rows: anyhow::Result<i64> = async {
            Ok(scenario
                .pg
                .client()
                .query_one(&format!("SELECT count(*) FROM \"{fresh}\".merged"), &[])
                .await?
                .get(0))
        }
        .await;
        scenario
            .pg
            .client()
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{fresh}\" CASCADE"))
            .await?;
        ensure!(out.status.success(), "{}", describe(&out));
        ensure!(rows? == 10, "not every row arrived in the new schema");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A database error carries the server's words — SQLSTATE, message, detail — not "db error"
/// (issue #14 item 6): here a check constraint an operator put on the target table.
#[tokio::test]
async fn a_database_error_carries_the_server_s_words() {
    TestMysql::run(async |mysql| {
        let (scenario, mut conn) =
            seeded(mysql, &merged_table("merged").yaml(), "merged", 10).await?;
        scenario.sync_ok("merged")?;
        scenario
            .pg
            .client()
            .batch_execute(&format!(
                "ALTER TABLE \"{}\".merged ADD CONSTRAINT no_big_amounts CHECK (amount < 100)",
                scenario.pg.schema()
            ))
            .await?;
        conn.query_drop("UPDATE merged SET amount = 500, updated_at = '2025-02-01' WHERE id = 2")
            .await?;
        let out = scenario.sync("merged", None);
        let said = describe(&out);
        ensure!(out.status.code() == Some(1), "{said}");
        ensure!(
            said.contains("23514")
                && said.contains("no_big_amounts")
                && !said.contains(": db error"),
            "{said}"
        );
        // The load failed after the run committed: the summary still says what it extracted
        // (it said 0) (issue #24).
        let document: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let table = &document["summary"]["tables"][0];
        ensure!(
            table["status"] == "failed" && table["rows_extracted"] == 1 && table["files"] == 1,
            "{document}"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A key column that may hold NULL never matches in a merge (rows with a NULL key piled up at
/// every sync): refused at begin, naming the column (issue #14 item 7).
#[tokio::test]
async fn merge_refuses_a_nullable_key_column() {
    TestMysql::run(async |mysql| {
        let yaml = merged_table("merged").key_columns(&["id", "v"]).yaml();
        let (scenario, _) = seeded(mysql, &yaml, "merged", 10).await?;
        refused_before_commit(&scenario, "merged", &["key column `v`", "NULL"]).await?;
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// `replace` when the source becomes empty: the target keeps its rows — an empty read is more
/// often a mistake than the truth, and emptying a warehouse table cannot be undone — and the
/// sync says so (issue #14 item 8: documented and tested rather than changed).
#[tokio::test]
async fn an_empty_full_sync_keeps_the_target_and_says_so() {
    TestMysql::run(async |mysql| {
        let yaml = Table::new("replaced").strategy("full_sync").yaml();
        let (scenario, mut conn) = seeded(mysql, &yaml, "replaced", 10).await?;
        scenario.sync_ok("replaced")?;
        conn.query_drop("DELETE FROM replaced").await?;
        let out = scenario.run(&["sync", "-t", &mysql.table("replaced").to_string()], None);
        let said = describe(&out);
        ensure!(out.status.success(), "{said}");
        ensure!(
            said.contains("the source table is empty"),
            "the sync must say so: {said}"
        );
        let rows = target_count(&scenario, "replaced").await?;
        ensure!(rows == 10, "the target holds {rows} rows");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A TIMESTAMP column altered to DATETIME was refused as "cannot change in place". MySQL rewrites
/// each value in the altering session's time zone (here the server's, +05:30), so the target's
/// column becomes a zone-less TIMESTAMP and the next sync re-reads the table: every row then
/// holds the source's new wall-clock value, not the UTC one loaded before (issue #24 item 8).
#[tokio::test]
async fn a_timestamp_become_datetime_holds_the_source_s_values() {
    TestMysql::run_on(MysqlServer::HalfHourOffset, async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &events_table()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(EVENTS_DDL).await?;
        conn.query_drop(
            "INSERT INTO events VALUES (1, '2026-01-01 00:00:00.25', '2026-01-02 00:00:00'), \
             (2, '2026-06-30 20:00:00', '2026-01-02 00:00:00'), (3, NULL, '2026-01-03 00:00:00')",
        )
        .await?;
        scenario.sync_ok("events")?;
        // As a DBA runs it: in the server's own time zone.
        conn.query_drop("SET time_zone = @@global.time_zone").await?;
        conn.query_drop("ALTER TABLE events MODIFY happened_at DATETIME(6) NULL").await?;
        conn.query_drop("SET time_zone = '+00:00'").await?;
        conn.query_drop("INSERT INTO events VALUES (4, '1969-07-20 20:17:40', '2026-01-04 00:00:00')")
            .await?;
        scenario.sync_ok("events")?;
        let source = mysql_rows(
            &mut conn,
            "SELECT id, DATE_FORMAT(happened_at, '%Y-%m-%d %H:%i:%s.%f') FROM events ORDER BY id",
        )
        .await?;
        let target = postgres_rows(
            scenario.pg.client(),
            &format!(
                "SELECT id::text, to_char(happened_at, 'YYYY-MM-DD HH24:MI:SS.US') \
                 FROM \"{}\".events AS t ORDER BY t.id",
                scenario.pg.schema()
            ),
        )
        .await?;
        ensure!(
            source == target && source[0] == "1|2026-01-01 05:30:00.250000",
            "source {source:?}\ntarget {target:?}"
        );
        let typed: String = scenario
            .pg
            .client()
            .query_one(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'events' AND column_name = 'happened_at'",
                &[&scenario.pg.schema()],
            )
            .await?
            .get(0);
        ensure!(typed == "timestamp without time zone", "{typed}");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

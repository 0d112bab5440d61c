//! Bad input through the real binary (and the Lambda payload parsers): each is refused with an
//! error that says what is wrong and what to do, writes nothing, and loses nothing. What the
//! config, naming, watermark-payload and `watermark set` tests already cover is not repeated.

use anyhow::ensure;
use mysql_async::prelude::Queryable;
use serde_json::json;
use tidemark_tests::scenario::{create_table, describe, insert_rows, Mode, Scenario};
use tidemark_tests::tables::Table;
use tidemark_tests::TestMysql;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// No object under the data, runs and watermarks prefixes, and no target table.
async fn nothing_written(scenario: &Scenario<'_>, table: &str) -> anyhow::Result<()> {
    for prefix in ["tm/data/", "tm/runs/"] {
        let left = scenario.bucket.bucket().list(prefix).await?;
        ensure!(left.is_empty(), "`{prefix}` has objects: {left:?}");
    }
    let exists = scenario
        .pg
        .client()
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
            &[&scenario.pg.schema(), &table],
        )
        .await?;
    ensure!(exists.is_none(), "target `{table}` was created");
    Ok(())
}

#[tokio::test]
async fn hostile_or_unknown_table_names_are_usage_errors_that_write_nothing() {
    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &Mode::Merge.table().yaml()).await?;
        let db = mysql.database();
        for name in [
            format!("{db}.x\"; DROP TABLE t; --"),
            format!("{db}.`x`"),
            format!("{db}.x;y"),
            format!("{db}.tablé_🚀"),
            format!("{db}.does_not_exist"),
            "no_database".to_owned(),
        ] {
            let out = scenario.run(&["sync", "-t", &name], None);
            ensure!(out.status.code() == Some(2), "`{name}`: {}", describe(&out));
            let said = text(&out);
            ensure!(
                said.contains("config list")
                    || said.contains("database.table")
                    || said.contains("not"),
                "`{name}`: the error must say what is wrong: {said}"
            );
        }
        nothing_written(&scenario, "merged").await?;
        ensure!(
            scenario.bucket.bucket().list("").await?.is_empty(),
            "objects were written"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// A table the pipeline names, with a problem only the source shows: the sync fails (exit 1)
/// naming the table and the fix, and nothing reaches S3 data or the target.
async fn refused_at_begin(create: &str, yaml: &str, expect: &[&str]) {
    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, yaml).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create).await?;
        let out = scenario.sync("bad", None);
        ensure!(out.status.code() == Some(1), "{}", describe(&out));
        let said = text(&out);
        for word in expect {
            ensure!(
                said.contains(word),
                "the error must mention `{word}`: {said}"
            );
        }
        nothing_written(&scenario, "bad").await?;
        let watermark = scenario.watermark("bad").await?;
        ensure!(
            watermark.is_some_and(|w| w.lease.is_none() && w.pending_runs.is_empty()),
            "the failed begin must release its lease"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_table_without_a_primary_key_under_merge_is_refused() {
    refused_at_begin(
        "CREATE TABLE bad (id INT, updated_at DATETIME(6) NOT NULL)",
        &Table::new("bad").cursor_column("updated_at").yaml(),
        &["no primary key", "key_columns", "load: append"],
    )
    .await;
}

#[tokio::test]
async fn a_decimal_wider_than_38_digits_without_as_text_is_refused() {
    refused_at_begin(
        "CREATE TABLE bad (id INT PRIMARY KEY, d DECIMAL(65,30), updated_at DATETIME(6) NOT NULL)",
        &Table::new("bad").cursor_column("updated_at").yaml(),
        &["`d`", "as: text"],
    )
    .await;
}

/// Creates and fills `table` (a `hybrid` cursor on `updated_at`) with `setup`, syncs it (which
/// must succeed), and answers the sync's output and `column` of every target row, by `id`.
async fn synced_column(
    mysql: &TestMysql,
    table: &str,
    setup: &[&str],
    column: &str,
) -> anyhow::Result<(String, Vec<String>)> {
    let yaml = Table::hybrid(table, "updated_at").yaml();
    let scenario = Scenario::new(mysql, BINARY, &yaml).await?;
    let mut conn = mysql.conn().await?;
    for statement in setup {
        conn.query_drop(*statement).await?;
    }
    let out = scenario.sync(table, None);
    ensure!(out.status.success(), "{}", describe(&out));
    let sql = format!(
        "SELECT ({column})::text FROM \"{}\".\"{table}\" ORDER BY id",
        scenario.pg.schema()
    );
    let rows = scenario.pg.client().query(&sql, &[]).await?;
    let values = rows.iter().map(|r| r.get(0)).collect();
    scenario.cleanup().await?;
    Ok((text(&out), values))
}

/// Documented limitation: rows whose cursor is NULL are never picked up by that cursor; the
/// plan counts them and warns. Every other row arrives.
#[tokio::test]
async fn rows_with_a_null_cursor_are_reported_and_never_loaded() {
    TestMysql::run(async |mysql| {
        let (said, ids) = synced_column(
            mysql,
            "nullable",
            &[
                "CREATE TABLE nullable (id INT PRIMARY KEY, updated_at DATETIME(6) NULL)",
                "INSERT INTO nullable VALUES (1, '2025-01-01'), (2, NULL), (3, NULL), (4, '2025-01-02')",
            ],
            "id",
        )
        .await?;
        ensure!(said.contains("NULL in the cursor column"), "the plan must warn: {said}");
        ensure!(ids == ["1", "4"], "{ids:?}");
        Ok(())
    })
    .await
    .unwrap();
}

/// Zero dates and dates with a zero month or day become NULL (counted), the rest of the row
/// arrives; the sync does not fail.
#[tokio::test]
async fn zero_and_invalid_dates_load_as_null() {
    TestMysql::run(async |mysql| {
        let (_, rows) = synced_column(
            mysql,
            "dates",
            &[
                "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'",
                "CREATE TABLE dates (id INT PRIMARY KEY, d DATE, dt DATETIME, updated_at DATETIME(6) NOT NULL)",
                "INSERT INTO dates VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '2025-01-01'), (2, '2024-02-00', '2024-00-15 12:00:00', '2025-01-01'), (3, '2024-02-29', '2024-02-29 12:00:00', '2025-01-01')",
            ],
            "concat_ws('|', id, coalesce(d::text, '∅'), coalesce(dt::text, '∅'))",
        )
        .await?;
        ensure!(
            rows == ["1|∅|∅", "2|∅|∅", "3|2024-02-29|2024-02-29 12:00:00"],
            "{rows:?}"
        );
        Ok(())
    })
    .await
    .unwrap();
}

/// A damaged watermark stops the sync (exit 1) with the restore hint; nothing is extracted or
/// loaded, and the damaged object is left for `restore`.
#[tokio::test]
async fn a_corrupted_watermark_stops_the_sync_with_the_restore_hint() {
    TestMysql::run(async |mysql| {
        let scenario = Scenario::new(mysql, BINARY, &Mode::Merge.table().yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("merged")).await?;
        insert_rows(&mut conn, "merged", 1, 50, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("merged")?;
        let key = format!("tm/watermarks/p/{}/merged.json", mysql.database());
        scenario
            .bucket
            .bucket()
            .put(&key, b"{\"version\": 1, \"garbage".to_vec().into())
            .await?;
        insert_rows(&mut conn, "merged", 51, 60, "2025-02-01 00:00:00").await?;
        let runs_before = scenario.bucket.bucket().list("tm/runs/").await?.len();
        let out = scenario.sync("merged", None);
        ensure!(out.status.code() == Some(1), "{}", describe(&out));
        let said = text(&out);
        ensure!(
            said.contains("not a valid watermark") && said.contains("restore"),
            "{said}"
        );
        ensure!(
            scenario.bucket.bucket().list("tm/runs/").await?.len() == runs_before,
            "a run was written"
        );
        let target: i64 = scenario
            .pg
            .client()
            .query_one(
                &format!("SELECT count(*) FROM \"{}\".merged", scenario.pg.schema()),
                &[],
            )
            .await?
            .get(0);
        ensure!(target == 50, "the target changed: {target} rows");
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// Wrong MySQL credentials: a clear error, exit code 1 or 3, and the password appears nowhere.
#[tokio::test]
async fn wrong_mysql_credentials_never_show_the_password() {
    TestMysql::run(async |mysql| {
        const SECRET: &str = "Sup3r-S3cret-Pa55word";
        let scenario = Scenario::new(mysql, BINARY, &Mode::Merge.table().yaml()).await?;
        let yaml = std::fs::read_to_string(scenario.config_path())?;
        let wrong = yaml.replacen(
            &format!(
                "password: \"{}\"",
                std::env::var("TIDEMARK_MYSQL_PASSWORD").unwrap_or_default()
            ),
            &format!("password: \"{SECRET}\""),
            1,
        );
        ensure!(
            wrong.contains(SECRET),
            "the test could not set the password"
        );
        std::fs::write(scenario.config_path(), wrong)?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("merged")).await?;
        for args in [
            &["sync", "-t", &mysql.table("merged").to_string()][..],
            &["--json", "sync", "-t", &mysql.table("merged").to_string()],
            &[
                "-v",
                "sync",
                "--dry-run",
                "-t",
                &mysql.table("merged").to_string(),
            ],
            &["config", "show"],
        ] {
            let out = scenario.run(args, None);
            let said = text(&out);
            ensure!(
                !said.contains(SECRET),
                "{args:?} shows the password: {said}"
            );
            if args.contains(&"sync") {
                ensure!(!out.status.success(), "{args:?}: {said}");
                ensure!(
                    said.contains("Access denied") || said.contains("access denied"),
                    "{args:?}: {said}"
                );
            }
        }
        nothing_written(&scenario, "merged").await?;
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

/// The extract and load Lambdas refuse payloads with a missing or an unknown field, as
/// `NonRetryable`, naming what is accepted.
#[test]
fn extract_and_load_payloads_with_missing_or_extra_fields_are_refused() {
    use tidemark::steps::{extract, load};
    let fixture = |path: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(format!(
            "{}/../tests/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mut payload: serde_json::Value = serde_json::from_str(&text).unwrap();
        // The extract fixtures hold the request without its `action` tag.
        if payload.get("action").is_none() {
            let action = if path.contains("plan") {
                "plan"
            } else {
                "extract"
            };
            payload["action"] = json!(action);
        }
        payload
    };
    /// A fixture's name, its payload, and the parser's error (`kind|message`) if any.
    type Case = (
        &'static str,
        serde_json::Value,
        fn(serde_json::Value) -> Option<String>,
    );
    let cases: Vec<Case> = vec![
        (
            "extract/plan_request.json",
            fixture("extract/plan_request.json"),
            |p| {
                extract::parse_request(p)
                    .err()
                    .map(|e| format!("{}|{e}", e.kind().name()))
            },
        ),
        (
            "extract/extract_request.json",
            fixture("extract/extract_request.json"),
            |p| {
                extract::parse_request(p)
                    .err()
                    .map(|e| format!("{}|{e}", e.kind().name()))
            },
        ),
        ("load/submit.json", fixture("load/submit.json"), |p| {
            load::parse_request(p)
                .err()
                .map(|e| format!("{}|{e}", e.kind().name()))
        }),
        ("load/status.json", fixture("load/status.json"), |p| {
            load::parse_request(p)
                .err()
                .map(|e| format!("{}|{e}", e.kind().name()))
        }),
    ];
    for (name, good, parse) in cases {
        let parsed = parse(good.clone());
        assert!(
            parsed.is_none(),
            "{name}: the fixture must parse: {parsed:?}"
        );
        let mut extra = good.clone();
        extra["surprise"] = json!(1);
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("run");
        for (what, payload) in [("extra", extra), ("missing", missing)] {
            let err = parse(payload)
                .unwrap_or_else(|| panic!("{name}: a payload with an {what} field parsed"));
            assert!(err.starts_with("NonRetryable|"), "{name} {what}: {err}");
            assert!(
                err.contains("README"),
                "{name} {what}: the error must point at the payload reference: {err}"
            );
        }
    }
}

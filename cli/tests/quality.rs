//! Data quality (issue #16), through the real binary: each check counts exactly the rows the
//! source says fail it (NULLs, type boundaries, a duplicate across chunks); a quarantined run
//! holds back itself and every later run; `quality release` loads them in order and `quality
//! drop` extracts them again; crashes and a release racing a sync lose and duplicate nothing.
//! Every outcome is checked against the rows of the target and the source.

use std::collections::BTreeSet;

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use tidemark_tests::scenario::{create_table, describe, insert_rows, Mode, Scenario};
use tidemark_tests::tables::Table;
use tidemark_tests::TestMysql;

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

/// The table of the counting test: one column per check, with values at the checks' edges.
const CHECKED_DDL: &str = "CREATE TABLE checked (
    id BIGINT PRIMARY KEY,
    customer_id INT NULL,
    email VARCHAR(60) NULL,
    status ENUM('new','paid','shipped','cancelled','lost') NULL,
    amount DECIMAL(12,2) NOT NULL,
    big BIGINT NULL,
    ratio DOUBLE NULL,
    updated_at DATETIME(6) NOT NULL,
    KEY (updated_at, id))";

/// 240 rows, 50 per extraction chunk: every check has failures, some in the second chunk or
/// later, a duplicate email spans chunks, and the bounds meet BIGINT's extremes.
const CHECKED_ROWS: &str = "INSERT INTO checked
    SELECT seq,
        IF(seq % 17 = 0, NULL, seq % 50),
        CASE WHEN seq % 13 = 0 THEN NULL
             WHEN seq % 29 = 0 THEN CONCAT('no address ', seq)
             ELSE CONCAT('u', seq % 200, '@example.org') END,
        CASE WHEN seq % 31 = 0 THEN 'lost' WHEN seq % 19 = 0 THEN NULL
             ELSE ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'cancelled') END,
        seq * 5 - 10,
        CASE seq WHEN 77 THEN 9223372036854775807 WHEN 78 THEN -9223372036854775808
             WHEN 79 THEN 9223372036854775806 ELSE seq END,
        IF(seq = 120, -0.5, seq / 240),
        TIMESTAMP'2025-01-01 00:00:00' + INTERVAL seq SECOND
    FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_1_to_240) AS numbers";

/// Every check, with `severity: warn` (counted, not quarantined) or `fail`, as YAML.
fn checks(severity: &str) -> String {
    format!(
        r#"
- {{ null_check: [customer_id], severity: {severity} }}
- {{ duplicate_check: [email], severity: {severity} }}
- {{ range: {{ column: amount, min: 0, max: 1000 }}, severity: {severity} }}
- {{ range_check: {{ column: big, min: -9223372036854775807, max: "9223372036854775806" }}, severity: {severity} }}
- {{ range: {{ column: ratio, min: 0, max: 1 }}, severity: {severity} }}
- {{ accepted_values: {{ column: status, values: [new, paid, shipped, cancelled] }}, severity: {severity} }}
- {{ pattern: {{ column: email, regex: '^[^@\s]+@[^@\s]+$' }}, severity: {severity} }}
- {{ row_count: {{ min: 1, max: 100 }}, severity: {severity} }}
- {{ freshness: {{ max_age: 1h }}, severity: {severity} }}
"#
    )
}

/// For each check, in order: the ids of the source rows that fail it (for `unique`, every row
/// whose email another row shares), and how many failures the check reports.
async fn failing_ids(conn: &mut mysql_async::Conn) -> anyhow::Result<Vec<(BTreeSet<i64>, u64)>> {
    let ids =
        async |conn: &mut mysql_async::Conn, condition: &str| -> anyhow::Result<BTreeSet<i64>> {
            let rows: Vec<i64> = conn
                .query(format!("SELECT id FROM checked WHERE {condition}"))
                .await?;
            Ok(rows.into_iter().collect())
        };
    let mut expected = Vec::new();
    let nulls = ids(conn, "customer_id IS NULL").await?;
    let count = nulls.len() as u64;
    expected.push((nulls, count));
    let shared = ids(
        conn,
        "email IN (SELECT email FROM checked GROUP BY email HAVING COUNT(*) > 1)",
    )
    .await?;
    let extra: u64 = conn
        .query_first("SELECT COUNT(email) - COUNT(DISTINCT email) FROM checked")
        .await?
        .unwrap_or(0);
    expected.push((shared, extra));
    for condition in [
        "amount < 0 OR amount > 1000",
        "big < -9223372036854775807 OR big > 9223372036854775806",
        "ratio < 0 OR ratio > 1",
        "status NOT IN ('new', 'paid', 'shipped', 'cancelled')",
        "email NOT REGEXP '^[^@[:space:]]+@[^@[:space:]]+$'",
    ] {
        let failing = ids(conn, condition).await?;
        let count = failing.len() as u64;
        expected.push((failing, count));
    }
    Ok(expected)
}

/// Every check counts exactly the rows the source's own SQL says fail it, over five chunks,
/// with failing keys that are real failing rows; `warn` checks let the run load whole; the
/// run-level checks (240 rows > 100, rows from 2025 older than 1h) fail with their measure.
#[tokio::test]
async fn each_check_counts_the_rows_the_source_says_fail_it() {
    TestMysql::run(async |mysql| {
        let table = Table::hybrid("checked", "updated_at")
            .chunk_rows(50)
            .with_yaml("checks", &checks("warn"))?;
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(CHECKED_DDL).await?;
        conn.query_drop(CHECKED_ROWS).await?;
        scenario.sync_ok("checked")?;

        let id = mysql.table("checked").to_string();
        let out = scenario.run(&["--json", "quality", "report", "-t", &id], None);
        ensure!(out.status.success(), "quality report: {}", describe(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let run = &report["runs"][0];
        ensure!(
            run["verdict"] == "warned" && run["standing"] == "loaded",
            "{run:#}"
        );
        let outcomes = run["checks"].as_array().context("no checks")?;
        ensure!(outcomes.len() == 9, "{run:#}");
        for (index, (failing, count)) in failing_ids(&mut conn).await?.into_iter().enumerate() {
            let outcome = &outcomes[index];
            ensure!(
                outcome["failures"] == count && outcome["rows_checked"] == 240,
                "check {index}: the source says {count} of 240 rows fail; reported {outcome:#}"
            );
            let examples = outcome["examples"].as_array().context("no examples")?;
            ensure!(
                examples.len() as u64 == count.min(10) || (index == 1 && examples.len() == 10),
                "check {index}: {} examples for {count} failures: {outcome:#}",
                examples.len()
            );
            for example in examples {
                let key: i64 = example.as_str().context("a key")?.parse()?;
                ensure!(
                    failing.contains(&key),
                    "check {index}: example key {key} does not fail it: {outcome:#}"
                );
            }
        }
        ensure!(
            outcomes[7]["failures"] == 1 && outcomes[8]["failures"] == 1,
            "row_count and freshness: {:#} {:#}",
            outcomes[7],
            outcomes[8]
        );
        let target: i64 = scenario
            .pg
            .client()
            .query_one(
                &format!("SELECT count(*) FROM \"{}\".checked", scenario.pg.schema()),
                &[],
            )
            .await?
            .get(0);
        ensure!(
            target == 240,
            "warn checks held rows back: {target} of 240 loaded"
        );
        scenario.cleanup().await
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
}

/// A suite table (id, v, amount, updated_at) whose `v` must not be NULL and whose `amount` must
/// not be negative, both `fail`.
fn guarded_table() -> anyhow::Result<Table> {
    Mode::Merge.table().lookback("0s").lag("0s").with_yaml(
        "checks",
        "- not_null: [v]\n- range: { column: amount, min: 0 }\n",
    )
}

/// A scenario with the guarded table `merged` holding 100 good rows, synced.
async fn synced_guarded(mysql: &TestMysql) -> anyhow::Result<(Scenario<'_>, mysql_async::Conn)> {
    let scenario = Scenario::new(mysql, BINARY, &guarded_table()?.yaml()).await?;
    let mut conn = mysql.conn().await?;
    conn.query_drop(create_table("merged")).await?;
    insert_rows(&mut conn, "merged", 1, 100, "2025-01-01 00:00:00").await?;
    scenario.sync_ok("merged")?;
    scenario.check(Mode::Merge, "merged").await?;
    Ok((scenario, conn))
}

/// Rows in the target table `merged`.
async fn target_rows(scenario: &Scenario<'_>) -> anyhow::Result<i64> {
    Ok(scenario
        .pg
        .client()
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".merged", scenario.pg.schema()),
            &[],
        )
        .await?
        .get(0))
}

/// A bad row (NULL `v`, id 101) arrives and is quarantined; good rows after it are extracted
/// by the next sync but held back too. Returns the quarantined run.
async fn quarantine_a_bad_row(
    scenario: &Scenario<'_>,
    conn: &mut mysql_async::Conn,
    faults: Option<&str>,
) -> anyhow::Result<String> {
    conn.query_drop("INSERT INTO merged VALUES (101, NULL, 3.25, TIMESTAMP'2025-02-01 00:00:00')")
        .await?;
    let out = scenario.sync("merged", faults);
    ensure!(
        out.status.code() == Some(1) || faults.is_some(),
        "{}",
        describe(&out)
    );
    if faults.is_none() {
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let table = &summary["summary"]["tables"][0];
        ensure!(
            table["status"] == "quarantined"
                && summary["summary"]["quarantined"] == 1
                && describe(&out).contains("not_null(v)"),
            "expected the table quarantined for not_null(v): {}",
            describe(&out)
        );
    }
    let watermark = scenario
        .watermark("merged")
        .await?
        .context("no watermark")?;
    let held = watermark
        .first_quarantined()
        .context("no quarantined run")?;
    ensure!(
        held.quarantine
            .as_ref()
            .is_some_and(|q| q.failed_checks == ["not_null(v)"]),
        "{held:?}"
    );
    let run = held.run_id.to_string();
    ensure!(
        target_rows(scenario).await? == 100,
        "the bad row was loaded"
    );

    // Backups keep flowing: the next run is extracted and committed, and held back.
    insert_rows(conn, "merged", 102, 120, "2025-03-01 00:00:00").await?;
    let out = scenario.sync("merged", None);
    ensure!(out.status.code() == Some(1), "{}", describe(&out));
    let watermark = scenario
        .watermark("merged")
        .await?
        .context("no watermark")?;
    ensure!(
        watermark.pending_runs.len() == 2 && watermark.loadable_runs().is_empty(),
        "expected the quarantined run and the one after it pending: {:?}",
        watermark.pending_runs
    );
    ensure!(
        target_rows(scenario).await? == 100,
        "a held-back run was loaded"
    );
    let list = scenario.run(&["--json", "watermark", "list"], None);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout)?;
    ensure!(
        listed[0]["quarantined"] == true && listed[0]["pending_runs"] == 2,
        "`watermark list` marks the table: {listed:#}"
    );
    Ok(run)
}

/// Release loads the quarantined run and the run after it, in order: the target equals the
/// source (the NULL included), each run once in the ledger, and the release is recorded with
/// who and why.
#[tokio::test]
async fn release_loads_the_quarantined_run_and_the_ones_after_it_in_order() {
    TestMysql::run(async |mysql| {
        let (scenario, mut conn) = synced_guarded(mysql).await?;
        let run = quarantine_a_bad_row(&scenario, &mut conn, None).await?;
        let id = mysql.table("merged").to_string();

        let out = scenario.run(&["--json", "quality", "report", "-t", &id], None);
        ensure!(out.status.success(), "quality report: {}", describe(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let runs = report["runs"].as_array().context("no runs")?;
        let standings: Vec<(&str, &str)> = runs
            .iter()
            .map(|r| {
                (
                    r["standing"].as_str().unwrap_or(""),
                    r["verdict"].as_str().unwrap_or(""),
                )
            })
            .collect();
        ensure!(
            standings
                == [
                    ("pending", "passed"),
                    ("quarantined", "quarantined"),
                    ("loaded", "passed")
                ]
                && report["quarantined_run"] == run.as_str()
                && runs[1]["checks"][0]["examples"][0] == "101",
            "newest first: the run after, the quarantined one, the first load: {report:#}"
        );

        let refused = scenario.run(&["quality", "release", "-t", &id, "--run", &run], None);
        ensure!(
            !refused.status.success() && describe(&refused).contains("needs a reason"),
            "a release without a reason: {}",
            describe(&refused)
        );
        let out = scenario.run(
            &[
                "quality",
                "release",
                "-t",
                &id,
                "--run",
                &run,
                "--reason",
                "guest rows have no v",
            ],
            None,
        );
        ensure!(out.status.success(), "release: {}", describe(&out));
        let watermark = scenario
            .watermark("merged")
            .await?
            .context("no watermark")?;
        let edit = watermark.manual.context("no edit recorded")?;
        ensure!(
            edit.action == "quality_release"
                && edit.reason.as_deref() == Some("guest rows have no v"),
            "{edit:?}"
        );

        scenario.sync_ok("merged")?;
        scenario.check(Mode::Merge, "merged").await?;
        let ledger = scenario.ledger("merged").await?;
        ensure!(ledger.contains_key(&run), "{ledger:?}");
        scenario.cleanup().await
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
}

/// Drop discards the quarantined run and the run after it and rewinds the cursor: after the
/// source is fixed (without touching the row's cursor), the next sync extracts both again and
/// the target equals the source, with no row counted twice.
#[tokio::test]
async fn drop_extracts_the_quarantined_and_later_runs_again() {
    TestMysql::run(async |mysql| {
        let (scenario, mut conn) = synced_guarded(mysql).await?;
        let run = quarantine_a_bad_row(&scenario, &mut conn, None).await?;
        let id = mysql.table("merged").to_string();
        conn.query_drop("UPDATE merged SET v = 'fixed' WHERE id = 101")
            .await?;

        let out = scenario.run(
            &[
                "quality",
                "drop",
                "-t",
                &id,
                "--run",
                &run,
                "--reason",
                "fixed at the source",
                "--yes",
            ],
            None,
        );
        ensure!(out.status.success(), "drop: {}", describe(&out));
        let watermark = scenario
            .watermark("merged")
            .await?
            .context("no watermark")?;
        ensure!(
            watermark.pending_runs.is_empty(),
            "{:?}",
            watermark.pending_runs
        );
        ensure!(
            watermark.totals.rows_extracted == 100,
            "the dropped runs' rows are still counted: {:?}",
            watermark.totals
        );

        scenario.sync_ok("merged")?;
        scenario.check(Mode::Merge, "merged").await?;
        let watermark = scenario
            .watermark("merged")
            .await?
            .context("no watermark")?;
        ensure!(
            watermark.totals.rows_extracted == 120,
            "120 source rows, extracted once each: {:?}",
            watermark.totals
        );
        ensure!(!scenario.ledger("merged").await?.contains_key(&run));
        scenario.cleanup().await
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
}

/// A crash right after the quarantining commit, a crash between the released load and its
/// `commit_load`, and releases racing syncs: the target ends equal to the source, every run
/// once in the ledger.
#[tokio::test]
async fn crashes_and_a_release_racing_a_sync_lose_and_duplicate_nothing() {
    TestMysql::run(async |mysql| {
        let (scenario, mut conn) = synced_guarded(mysql).await?;
        let run = quarantine_a_bad_row(&scenario, &mut conn, Some("after_commit=abort")).await?;
        let id = mysql.table("merged").to_string();
        let out = scenario.run(
            &[
                "quality", "release", "-t", &id, "--run", &run, "--reason", "expected",
            ],
            None,
        );
        ensure!(out.status.success(), "release: {}", describe(&out));
        let crashed = scenario.sync("merged", Some("before_commit_load=abort"));
        ensure!(!crashed.status.success(), "{}", describe(&crashed));
        scenario.sync_ok("merged")?;
        scenario.check(Mode::Merge, "merged").await?;

        // Each round quarantines a bad row, then releases it while a sync runs.
        for round in 0..3u64 {
            let bad = 200 + round;
            // Each round's rows come after the last round's: the cursor only moves forward.
            conn.query_drop(format!(
                "INSERT INTO merged VALUES ({bad}, NULL, 1.00, TIMESTAMP'2025-{:02}-01 00:00:00')",
                round + 6
            ))
            .await?;
            let out = scenario.sync("merged", None);
            ensure!(out.status.code() == Some(1), "{}", describe(&out));
            let held = scenario
                .watermark("merged")
                .await?
                .and_then(|w| w.first_quarantined().map(|r| r.run_id.to_string()))
                .context("not quarantined")?;
            let later = format!("2025-{:02}-15 00:00:00", round + 6);
            insert_rows(
                &mut conn,
                "merged",
                300 + round * 10,
                305 + round * 10,
                &later,
            )
            .await?;
            let table = id.clone();
            let mut sync = scenario.command(&["--json", "sync", "-t", &table], None);
            let racing = std::thread::spawn(move || sync.output());
            let out = scenario.run(
                &[
                    "quality", "release", "-t", &id, "--run", &held, "--reason", "race",
                ],
                None,
            );
            ensure!(out.status.success(), "release: {}", describe(&out));
            let raced = racing
                .join()
                .map_err(|_| anyhow::anyhow!("the sync thread panicked"))??;
            ensure!(
                raced.status.code().is_some_and(|code| code <= 1),
                "{}",
                describe(&raced)
            );
            scenario.sync_ok("merged")?;
            scenario.check(Mode::Merge, "merged").await?;
        }
        scenario.cleanup().await
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
}

/// `config check --source` names, at the check's line, a column the table does not have and a
/// check that cannot read its column's type; plain `config check` names an invalid regex, a
/// `min` above its `max`, and two checks in one item.
#[tokio::test]
async fn config_check_locates_each_mistake_in_the_checks() {
    TestMysql::run(async |mysql| {
        let table = Mode::Merge.table().with_yaml(
            "checks",
            "- not_null: [no_such_column]\n- range: { column: v, min: 0 }\n- pattern: { column: amount, regex: '^x' }\n",
        )?;
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("merged")).await?;
        let out = scenario.run(&["config", "check", "--source"], None);
        let said = describe(&out);
        ensure!(out.status.code() == Some(2), "{said}");
        let text = std::fs::read_to_string(scenario.config_path())?;
        let line_of = |needle: &str| {
            text.lines()
                .position(|line| line.contains(needle))
                .map(|i| i + 1)
                .unwrap_or(0)
        };
        for (needle, says) in [
            ("- not_null:", "`no_such_column` is not an extracted column"),
            ("- range:", "`range` compares numbers"),
            ("- pattern:", "`pattern` matches text"),
        ] {
            let at = format!("{}:{}:", scenario.config_path().display(), line_of(needle));
            ensure!(
                said.lines().any(|l| l.contains(&at) && l.contains(says)),
                "expected `{says}` at {at}: {said}"
            );
        }

        let invalid = "- pattern: { column: v, regex: '(unclosed' }\n- range: { column: amount, min: 5, max: 1 }\n- { not_null: [v], unique: [v] }\n";
        scenario.set_config(&["pipelines", "p", "tables", &mysql.table("merged").to_string(), "checks"], invalid)?;
        let out = scenario.run(&["config", "check"], None);
        let said = describe(&out);
        ensure!(out.status.code() == Some(2), "{said}");
        let text = std::fs::read_to_string(scenario.config_path())?;
        for (needle, says) in [
            ("- pattern:", "not a valid regular expression"),
            ("- range:", "`min` (5) is greater than `max` (1)"),
            ("- not_null:", "one check per list item"),
        ] {
            let line = text
                .lines()
                .position(|l| l.contains(needle))
                .map(|i| i + 1)
                .unwrap_or(0);
            ensure!(
                said.contains(&format!(":{line}:")) && said.contains(says),
                "expected `{says}` at line {line}: {said}\n{text}"
            );
        }
        scenario.cleanup().await
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
}

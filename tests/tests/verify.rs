//! Verify's fingerprints across engines (issue #17): random rows of every type family, synced by
//! the real load path, fingerprint alike in MariaDB and in PostgreSQL or Redshift (the Data API
//! stand-in), so equal tables verify equal; one value changed behind tidemark's back is then
//! found by key and column, whatever its type.

use anyhow::ensure;
use mysql_async::prelude::Queryable;
use mysql_async::Value;
use serde_json::json;
use tidemark::schema::{NulPolicy, SchemaOptions, Warehouse};
use tidemark::steps::local_sync::{self, EXTRACTS_AT_ONCE};
use tidemark::verify::{self, Fingerprint};
use tidemark_tests::stack::{fast_runner, with_stack, with_stack_on, Stack, Target};
use tidemark_tests::tables::Table;
use tidemark_tests::MysqlServer;
use tidemark_tests::{assert_golden, type_zoo};

/// One column of each type family tidemark maps, with awkward widths and precisions.
const DDL: &str = "CREATE TABLE fuzz (
    id INT PRIMARY KEY,
    flag TINYINT(1) NULL, small TINYINT NULL, big BIGINT NULL, huge BIGINT UNSIGNED NULL,
    money DECIMAL(20,6) NULL, f FLOAT NULL, d DOUBLE NULL, bits BIT(12) NULL, yr YEAR NULL,
    day DATE NULL, moment DATETIME(6) NULL, stamp TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(3) NULL,
    name VARCHAR(50) NULL, body TEXT NULL, size ENUM('s','m','l') NULL, doc JSON NULL,
    raw VARBINARY(40) NULL,
    updated_at DATETIME(6) NOT NULL,
    KEY (updated_at, id)
) DEFAULT CHARSET=utf8mb4";

/// Rows generated.
const ROWS: u32 = 400;

/// A small deterministic generator (SplitMix64): the same rows on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self, max: u64) -> String {
        const PIECES: [&str; 12] = [
            "a", "Z", " ", "|", "'", "\\", "\"", "é", "😀", "N", "\n", "漢",
        ];
        (0..self.below(max + 1))
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }

    /// A number of magnitude 10^-`range` to 10^`range`, either sign, or an integer-valued one.
    fn double(&mut self, range: u64) -> f64 {
        let mantissa = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let exponent = self.below(2 * range + 1) as i32 - range as i32;
        let sign = if self.below(2) == 0 { -1.0 } else { 1.0 };
        match self.below(4) {
            0 => sign * (self.below(1_000_000) as f64),
            _ => sign * (1.0 + mantissa) * 10f64.powi(exponent),
        }
    }
}

fn row(rng: &mut Rng, id: u32) -> Vec<Value> {
    let seconds = rng.below(4_000_000_000) as i64;
    let moment = chrono::DateTime::from_timestamp(seconds - 1_000_000_000, 0)
        .unwrap_or_default()
        .naive_utc();
    let micros = rng.below(1_000_000);
    let moment_text = format!("{}.{micros:06}", moment.format("%Y-%m-%d %H:%M:%S"));
    let stamp = format!(
        "{}.{:06}",
        chrono::DateTime::from_timestamp(1 + rng.below(2_000_000_000) as i64, 0)
            .unwrap_or_default()
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S"),
        rng.below(1_000_000)
    );
    let raw: Vec<u8> = (0..rng.below(41)).map(|_| rng.below(256) as u8).collect();
    let doc = json!({"k": rng.text(5), "n": rng.below(1000), "a": [rng.below(2) == 0, null]});
    let mut values = vec![
        Value::from(id),
        (Value::from(rng.below(2))),
        (Value::from(rng.below(256) as i64 - 128)),
        (Value::from(rng.next() as i64)),
        (Value::from(rng.next())),
        (Value::from(format!(
            "{}{}.{:06}",
            if rng.below(2) == 0 { "-" } else { "" },
            rng.below(100_000_000_000_000),
            rng.below(1_000_000)
        ))),
        (Value::from(rng.double(30) as f32)),
        (Value::from(rng.double(300))),
        (Value::from(rng.below(4096))),
        (Value::from(1901 + rng.below(255))),
        (Value::from(moment.format("%Y-%m-%d").to_string())),
        (Value::from(moment_text)),
        (Value::from(stamp)),
        (Value::from(format!(
            "{}{}:{:02}:{:02}.{:03}",
            if rng.below(4) == 0 { "-" } else { "" },
            rng.below(839),
            rng.below(60),
            rng.below(60),
            rng.below(1000)
        ))),
        (Value::from(rng.text(50))),
        (Value::from(rng.text(300))),
        (Value::from(["s", "m", "l"][rng.below(3) as usize])),
        (Value::from(doc.to_string())),
        (Value::from(raw)),
        Value::from("2025-06-01 12:00:00.000000"),
    ];
    // Every column but the key and the cursor is NULL one time in eight.
    let last = values.len() - 1;
    for value in &mut values[1..last] {
        if rng.below(8) == 0 {
            *value = Value::NULL;
        }
    }
    values
}

/// Creates and fills `fuzz` with [`ROWS`] rows from `seed`.
async fn seed(stack: &Stack<'_>, seed: u64) -> anyhow::Result<()> {
    let mut conn = stack.mysql.conn().await?;
    conn.query_drop(DDL).await?;
    let mut rng = Rng(seed);
    let rows: Vec<Vec<Value>> = (1..=ROWS).map(|id| row(&mut rng, id)).collect();
    conn.exec_batch(
        format!("INSERT INTO fuzz VALUES ({})", vec!["?"; 20].join(", ")),
        rows,
    )
    .await?;
    Ok(())
}

async fn random_rows_verify_equal_then_one_change_is_found(
    stack: &Stack<'_>,
) -> anyhow::Result<()> {
    random_rows_with(stack, Table::hybrid("fuzz", "updated_at"), 17).await
}

/// [`random_rows_verify_equal_then_one_change_is_found`] with `table`'s settings and the rows
/// of `rows_seed`.
async fn random_rows_with(stack: &Stack<'_>, table: Table, rows_seed: u64) -> anyhow::Result<()> {
    seed(stack, rows_seed).await?;
    let tables = table.chunk_rows(150).yaml();
    let services = stack.services(&tables).await?;
    local_sync::run(
        &services,
        json!({"pipeline": "p"}),
        &fast_runner("verify"),
        EXTRACTS_AT_ONCE,
    )
    .await?;
    let table = format!("{}.fuzz", stack.mysql.database());
    let report = verify::verify(&services, None, &table).await?;
    ensure!(
        report.equal
            && report.source_rows == u64::from(ROWS)
            && report.target_rows == u64::from(ROWS),
        "random rows differ after a sync: {}",
        serde_json::to_string_pretty(&report)?
    );

    // One change per type family, each in its own row, behind tidemark's back.
    let target = format!("\"{}\".\"fuzz\"", stack.pg.schema());
    let changes = [
        ("small", "small = COALESCE(small, 0) + 1"),
        ("money", "money = COALESCE(money, 0) + 0.000001"),
        ("f", "f = COALESCE(f, 1) * 2"),
        ("d", "d = COALESCE(d, 1) * 1.00000000001"),
        (
            "moment",
            "moment = COALESCE(moment, '2020-01-01') + INTERVAL '1 second'",
        ),
        (
            "stamp",
            "stamp = COALESCE(stamp, '2020-01-01 00:00:00+00') + INTERVAL '1 microsecond'",
        ),
        ("name", "name = COALESCE(name, '') || 'x'"),
        ("raw", "raw = COALESCE(raw, ''::bytea) || '\\x00'::bytea"),
        ("flag", "flag = NOT COALESCE(flag, false)"),
        ("yr", "yr = CASE WHEN yr IS NULL THEN 2000 ELSE NULL END"),
    ];
    for (i, (_, change)) in changes.iter().enumerate() {
        stack
            .pg
            .client()
            .batch_execute(&format!(
                "UPDATE {target} SET {change} WHERE id = {}",
                i + 1
            ))
            .await?;
    }
    let report = verify::verify(&services, None, &table).await?;
    ensure!(
        !report.equal && report.changed.count == changes.len() as u64,
        "{report:#?}"
    );
    for (i, (column, _)) in changes.iter().enumerate() {
        let id = (i + 1).to_string();
        let found = report
            .changed
            .rows
            .iter()
            .find(|row| row.key.get("id") == Some(&id))
            .ok_or_else(|| anyhow::anyhow!("row {id} ({column}) not named: {report:#?}"))?;
        ensure!(
            found.columns == [*column],
            "row {id}: {:?} instead of {column}",
            found.columns
        );
    }
    Ok(())
}

#[tokio::test]
async fn random_rows_fingerprint_alike_in_mariadb_and_postgresql() {
    for rows_seed in [17, 29, 41] {
        with_stack(Target::Postgres, async |stack| {
            random_rows_with(stack, Table::hybrid("fuzz", "updated_at"), rows_seed).await
        })
        .await;
    }
}

#[tokio::test]
async fn random_rows_fingerprint_alike_in_mariadb_and_redshift() {
    with_stack(
        Target::Redshift,
        random_rows_verify_equal_then_one_change_is_found,
    )
    .await;
}

/// JSON loaded as VARCHAR into Redshift is compared as text.
#[tokio::test]
async fn random_rows_fingerprint_alike_with_json_as_varchar_in_redshift() {
    with_stack(Target::Redshift, async |stack| {
        let table = Table::hybrid("fuzz", "updated_at").with("json_in_redshift", "varchar");
        random_rows_with(stack, table, 17).await
    })
    .await;
}

/// A source server in local time with daylight saving: TIMESTAMP values are compared in UTC
/// on both sides.
#[tokio::test]
async fn random_rows_fingerprint_alike_from_a_server_in_local_time() {
    with_stack_on(
        MysqlServer::SystemZoneWithDst,
        Target::Postgres,
        random_rows_verify_equal_then_one_change_is_found,
    )
    .await;
}

/// Text with NUL bytes loaded under `nul_in_text: strip` and `replace` verifies equal: the
/// source's side of the fingerprint applies the same policy.
#[tokio::test]
async fn text_altered_by_the_nul_policy_verifies_equal() {
    with_stack(Target::Postgres, async |stack| {
        let mut conn = stack.mysql.conn().await?;
        for table in ["stripped", "replaced"] {
            conn.query_drop(format!(
                "CREATE TABLE {table} (id INT PRIMARY KEY, short VARCHAR(20), long_text TEXT)"
            ))
            .await?;
            conn.query_drop(format!(
                "INSERT INTO {table} VALUES (1, CONCAT('a', CHAR(0), 'b'), CONCAT(CHAR(0), 'x', CHAR(0))), \
                 (2, 'plain', NULL), (3, CHAR(0), CONCAT('é', CHAR(0)))"
            ))
            .await?;
        }
        let tables = tidemark_tests::tables::yaml(&[
            Table::new("stripped").strategy("full_sync").with("nul_in_text", "strip"),
            Table::new("replaced").strategy("full_sync").with("nul_in_text", "replace"),
        ]);
        let services = stack.services(&tables).await?;
        local_sync::run(&services, json!({"pipeline": "p"}), &fast_runner("verify"), EXTRACTS_AT_ONCE)
            .await?;
        for table in ["stripped", "replaced"] {
            let name = format!("{}.{table}", stack.mysql.database());
            let report = verify::verify(&services, None, &name).await?;
            ensure!(report.equal && report.target_rows == 3, "{table}: {report:#?}");
        }
        Ok(())
    })
    .await;
}

/// The fingerprint statements of the type zoo, as Redshift and PostgreSQL get them: the golden
/// files, which `scripts/check-iac` parses with sqlfluff's Redshift dialect.
#[tokio::test]
async fn the_fingerprint_queries_match_the_golden_files() {
    tidemark_tests::TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        type_zoo::create(&mut conn).await?;
        let schema = tidemark::schema::discover(
            &mut conn,
            &mysql.table(type_zoo::TABLE),
            &SchemaOptions::default(),
        )
        .await?;
        for (warehouse, golden) in [
            (Warehouse::Redshift, "redshift/verify_type_zoo.sql"),
            (Warehouse::Postgres, "postgres/verify_type_zoo.sql"),
        ] {
            let fingerprint =
                Fingerprint::new(&schema, &["id".to_owned()], NulPolicy::Strip, warehouse)
                    .ok_or_else(|| anyhow::anyhow!("no key column `id`"))?;
            let engine = fingerprint.target();
            let table = "\"analytics\".\"type_zoo\"";
            let segments = ["0a1".to_owned(), "ffe".to_owned()];
            let statements = [
                fingerprint.segments_query(engine, table, 1, None),
                fingerprint.segments_query(engine, table, 2, Some(&segments)),
                fingerprint.rows_query(engine, table, 1, &segments, None),
                fingerprint.columns_query(
                    engine,
                    table,
                    &[vec!["1".to_owned()], vec!["it's".to_owned()]],
                ),
            ];
            assert_golden(golden, &format!("{};\n", statements.join(";\n\n")))?;
        }
        Ok(())
    })
    .await
    .unwrap();
}

/// Keys that are text and composite, with quotes, backslashes, the `|` the key texts are
/// joined with, `N` (the NULL marker) and the empty string: equal tables verify equal; then
/// changed, missing and extra rows are named exactly, with every disagreeing segment split down
/// to the deepest level before its rows are read (`split_rows: 0`).
#[tokio::test]
async fn text_and_composite_keys_are_named_exactly_at_every_level() {
    with_stack(Target::Postgres, async |stack| {
        const CODES: [&str; 8] = ["it's", "back\\slash", "pi|pe", "é😀", "N", "", "a|", "|a"];
        let mut conn = stack.mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE codes (code VARCHAR(20) NOT NULL, n INT NOT NULL, v VARCHAR(20), \
             PRIMARY KEY (code, n)) DEFAULT CHARSET=utf8mb4",
        )
        .await?;
        let rows: Vec<(String, u32, String)> = CODES
            .iter()
            .flat_map(|code| (1..=40).map(move |n| (code.to_string(), n, format!("v{n}"))))
            .collect();
        conn.exec_batch("INSERT INTO codes VALUES (?, ?, ?)", rows.clone())
            .await?;
        let services = stack
            .services(&Table::new("codes").strategy("full_sync").yaml())
            .await?;
        local_sync::run(
            &services,
            json!({"pipeline": "p"}),
            &fast_runner("verify"),
            EXTRACTS_AT_ONCE,
        )
        .await?;
        let table = format!("{}.codes", stack.mysql.database());
        let deepest = verify::VerifyOptions { split_rows: 0 };
        let report = verify::verify_with(&services, None, &table, deepest, &|_| {}).await?;
        ensure!(
            report.equal && report.source_rows == rows.len() as u64,
            "{report:#?}"
        );

        let pg = stack.pg.client();
        let target = format!("\"{}\".\"codes\"", stack.pg.schema());
        pg.execute(&format!("UPDATE {target} SET v = 'x' WHERE n % 4 = 0"), &[])
            .await?;
        pg.execute(
            &format!("DELETE FROM {target} WHERE n = 7 AND code = ANY($1)"),
            &[&vec!["it's", "back\\slash", "N"]],
        )
        .await?;
        pg.execute(
            &format!("INSERT INTO {target} VALUES ('it''s', 99, 'new'), ('', 0, NULL)"),
            &[],
        )
        .await?;
        let report = verify::verify_with(&services, None, &table, deepest, &|_| {}).await?;
        let named = |differences: &verify::Differences| -> Vec<(String, String)> {
            let mut keys: Vec<(String, String)> = differences
                .rows
                .iter()
                .map(|row| (row.key["code"].clone(), row.key["n"].clone()))
                .collect();
            keys.sort();
            keys
        };
        let mut changed: Vec<(String, String)> = rows
            .iter()
            .filter(|(_, n, _)| n % 4 == 0)
            .map(|(code, n, _)| (code.clone(), n.to_string()))
            .collect();
        changed.sort();
        ensure!(report.changed.count == changed.len() as u64, "{report:#?}");
        ensure!(
            named(&report.changed) == changed[..changed.len().min(verify::NAMED_ROWS)],
            "{report:#?}"
        );
        ensure!(
            report.changed.rows.iter().all(|row| row.columns == ["v"]),
            "{report:#?}"
        );
        let mut missing: Vec<(String, String)> = ["it's", "back\\slash", "N"]
            .iter()
            .map(|code| (code.to_string(), "7".to_owned()))
            .collect();
        missing.sort();
        ensure!(named(&report.missing) == missing, "{report:#?}");
        ensure!(
            named(&report.extra)
                == [
                    ("".to_owned(), "0".to_owned()),
                    ("it's".to_owned(), "99".to_owned())
                ],
            "{report:#?}"
        );
        Ok(())
    })
    .await;
}

/// `verify_due` (the state machine's `VerifyIfDue`): a table never loaded is not verified and
/// says why; the sync that loads it verifies it; within `verify.every` the next one waits, and
/// says until when.
#[tokio::test]
async fn verify_due_waits_for_a_load_and_for_its_schedule() {
    with_stack(Target::Postgres, async |stack| {
        let mut conn = stack.mysql.conn().await?;
        conn.query_drop("CREATE TABLE due (id INT PRIMARY KEY, updated_at DATETIME(6) NOT NULL)")
            .await?;
        conn.query_drop("INSERT INTO due VALUES (1, '2025-01-01'), (2, '2025-01-02')")
            .await?;
        let table = Table::hybrid("due", "updated_at").with_yaml("verify", "{ every: 1d }")?;
        let services = stack.services(&table.yaml()).await?;
        let request = verify::VerifyDueRequest {
            pipeline: "p".to_owned(),
            table: format!("{}.due", stack.mysql.database()),
        };
        let before = verify::verify_due(&services, &request).await?;
        ensure!(
            !before.verified && before.reason.as_deref() == Some("not loaded yet"),
            "{before:?}"
        );
        let (outcome, summary) = local_sync::run_with_summary(
            &services,
            json!({"pipeline": "p"}),
            &fast_runner("verify-due"),
            EXTRACTS_AT_ONCE,
            None,
        )
        .await?;
        let verified = summary
            .as_ref()
            .and_then(|s| s.tables.first())
            .and_then(|t| t.verify.clone());
        ensure!(
            verified
                .as_ref()
                .is_some_and(|v| v.verified && v.equal == Some(true)),
            "the sync's VerifyIfDue: {verified:?} ({outcome:?})"
        );
        let again = verify::verify_due(&services, &request).await?;
        ensure!(
            !again.verified
                && again
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("next after")),
            "{again:?}"
        );
        Ok(())
    })
    .await;
}

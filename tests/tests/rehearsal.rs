//! The AWS rehearsal: the template deployed locally ([`LocalAws`]) — the real definition in
//! moto's Step Functions engine, its Lambda tasks served by the real function binaries with the
//! template's environment — driven by `tidemark sync --aws` and by the payloads the template's
//! schedules and the README send. Rows are compared in the target, as in `sync`.

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::local_aws::{binaries_dir, Deployment, LocalAws};
use tidemark_tests::stack::{with_stack, Stack, Target};
use tidemark_tests::tables::Table;

use crate::sync::{assert_target_equals_source, seed, tables};

/// The longest a rehearsal execution may take before the test gives up.
const EXECUTION_LIMIT: Duration = Duration::from_secs(240);

/// A deployment of the template for `stack`'s pipeline `p` (`config`, uploaded where
/// `ConfigUri` points), with `parameters` over the test's own.
async fn deploy(
    stack: &Stack<'_>,
    config: &str,
    parameters: &[(&str, &str)],
) -> anyhow::Result<LocalAws> {
    let bucket = stack.bucket.bucket().name().to_owned();
    stack
        .bucket
        .client()
        .put_object()
        .bucket(&bucket)
        .key("config/tidemark.yaml")
        .body(config.as_bytes().to_vec().into())
        .send()
        .await?;
    let mut all: BTreeMap<String, String> = [
        ("ConfigUri", format!("s3://{bucket}/config/tidemark.yaml")),
        ("DataBucket", bucket.clone()),
        ("DataPrefix", "tm".to_owned()),
        ("LogLevel", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (name, value) in parameters {
        all.insert((*name).to_owned(), (*value).to_owned());
    }
    LocalAws::deploy(Deployment {
        parameters: all,
        function_environment: stack.target_environment().into_iter().collect(),
        instances: 2,
    })
    .await
}

/// `tidemark --config <config> <args>` against the deployment, as a user runs it; awaited, so
/// that the deployment's Lambda service (in this process) keeps serving meanwhile, and killed
/// after [`EXECUTION_LIMIT`].
async fn tidemark(
    aws: &LocalAws,
    config: &tempfile::NamedTempFile,
    args: &[&str],
) -> anyhow::Result<Output> {
    let run = tokio::process::Command::new(binaries_dir()?.join("tidemark"))
        .arg("--config")
        .arg(config.path())
        .args(args)
        .envs(aws.cli_environment())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(EXECUTION_LIMIT, run).await {
        Ok(output) => Ok(output?),
        Err(_) => anyhow::bail!(
            "tidemark {args:?} still running after {EXECUTION_LIMIT:?}\n{}",
            aws.logs()
        ),
    }
}

fn config_file(text: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(file)
}

fn document(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

fn explain(aws: &LocalAws, output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        aws.logs()
    )
}

/// `sync`'s tables and `table`, read whole every run (`full_sync`).
fn sync_tables_and_whole(table: &str) -> String {
    format!(
        "{}{}",
        tables(),
        Table::new(table).strategy("full_sync").yaml()
    )
}

/// Template parameters that leave an extract invocation no time (its deadline margin is its
/// whole timeout): each reads one batch (8192 rows) and answers a continuation.
const NO_TIME_TO_EXTRACT: [(&str, &str); 2] = [
    ("ExtractTimeout", "60"),
    ("ExtractDeadlineMarginSeconds", "60"),
];

/// Creates `events` with `rows` rows in the source.
async fn create_events(stack: &Stack<'_>, rows: u32) -> anyhow::Result<()> {
    let mut conn = stack.mysql.conn().await?;
    conn.query_drop("CREATE TABLE events (id INT PRIMARY KEY, kind VARCHAR(16) NOT NULL)")
        .await?;
    conn.query_drop(format!(
        "INSERT INTO events SELECT seq, IF(seq % 2 = 0, 'even', 'odd') FROM seq_1_to_{rows}"
    ))
    .await?;
    Ok(())
}

/// The `events` table's rows in the source and in the target, by id.
async fn events_in_source_and_target(
    stack: &Stack<'_>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut conn = stack.mysql.conn().await?;
    let source = mysql_rows(&mut conn, "SELECT id, kind FROM events ORDER BY id").await?;
    let target = postgres_rows(
        stack.pg.client(),
        &format!(
            "SELECT id::text, kind FROM \"{}\".events AS t ORDER BY t.id",
            stack.pg.schema()
        ),
    )
    .await?;
    Ok((source, target))
}

/// Pipeline `p` syncing `tables` tables at once.
fn concurrent(config: String, tables: u32) -> String {
    config.replace(
        "    tables:\n",
        &format!("    table_concurrency: {tables}\n    tables:\n"),
    )
}

/// sync → change the source → sync → sync with nothing new, two tables at once, through the
/// rehearsal engine; the target equals the source after each.
#[tokio::test]
async fn syncs_through_the_rehearsal_engine_and_stays_in_step() {
    with_stack(Target::Postgres, async |stack| {
        seed(stack.mysql).await?;
        let config = concurrent(stack.config_yaml(&tables())?, 2);
        let aws = deploy(stack, &config, &[]).await?;
        let file = config_file(&config)?;

        let first = tidemark(&aws, &file, &["--json", "sync", "--aws", "-p", "p"]).await?;
        anyhow::ensure!(first.status.success(), "{}", explain(&aws, &first));
        let summary = &document(&first)["summary"];
        assert_eq!(summary["succeeded"], 2, "{}", explain(&aws, &first));
        assert_target_equals_source(stack).await?;

        let mut conn = stack.mysql.conn().await?;
        conn.query_drop("UPDATE orders SET status = 'shipped', updated_at = '2026-02-01 00:00:00.5' WHERE id IN (1, 50, 150)").await?;
        conn.query_drop("INSERT INTO orders VALUES (151, 1, 9.99, 'new', '2026-02-01 00:00:00.5')").await?;
        conn.query_drop("DELETE FROM customers WHERE id = 3").await?;
        let second = tidemark(&aws, &file, &["--json", "sync", "--aws", "-p", "p"]).await?;
        anyhow::ensure!(second.status.success(), "{}", explain(&aws, &second));
        assert_target_equals_source(stack).await?;

        let quiet = tidemark(&aws, &file, &["--json", "sync", "--aws", "-p", "p"]).await?;
        anyhow::ensure!(quiet.status.success(), "{}", explain(&aws, &quiet));
        assert_target_equals_source(stack).await?;
        Ok(())
    })
    .await;
}

/// One table fails (its source table is gone) while the other finishes: the execution fails
/// with `TablesFailed`, the CLI exits 1 naming the failed table, the good table is loaded.
#[tokio::test]
async fn a_failed_table_fails_the_execution_while_the_others_finish() {
    with_stack(Target::Postgres, async |stack| {
        seed(stack.mysql).await?;
        let mut conn = stack.mysql.conn().await?;
        conn.query_drop("CREATE TABLE doomed (id INT PRIMARY KEY, note VARCHAR(8))")
            .await?;
        conn.query_drop("INSERT INTO doomed VALUES (1, 'x')")
            .await?;
        let tables = sync_tables_and_whole("doomed");
        let config = concurrent(stack.config_yaml(&tables)?, 2);
        let aws = deploy(stack, &config, &[]).await?;
        let file = config_file(&config)?;
        conn.query_drop("DROP TABLE doomed").await?;

        let output = tidemark(&aws, &file, &["--json", "sync", "--aws", "-p", "p"]).await?;
        assert_eq!(output.status.code(), Some(1), "{}", explain(&aws, &output));
        let answer = document(&output);
        assert_eq!(answer["status"], "failed", "{answer:#}");
        assert_eq!(answer["summary"]["error"], "TablesFailed", "{answer:#}");
        assert_eq!(answer["summary"]["succeeded"], 2, "{answer:#}");
        let failed: Vec<&Value> = answer["summary"]["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["status"] == "failed")
            .collect();
        assert_eq!(failed.len(), 1, "{answer:#}");
        assert!(
            failed[0]["table"]
                .as_str()
                .is_some_and(|t| t.ends_with(".doomed")),
            "{answer:#}"
        );
        assert_target_equals_source(stack).await?;
        Ok(())
    })
    .await;
}

/// Data quality through the deployed path: a `full_sync` table with a NULL where a `fail` check
/// forbids one is quarantined by the commit Lambda; the execution fails with `TablesFailed` and
/// that table's result is `quarantined` (the others load); `quality_release` sent to the operator
/// function lets the next execution load it, then the run after the source is fixed, and the
/// target equals the source.
#[tokio::test]
async fn a_quarantined_table_waits_for_the_operator_function_s_release() {
    with_stack(Target::Postgres, async |stack| {
        seed(stack.mysql).await?;
        create_events(stack, 300).await?;
        let mut conn = stack.mysql.conn().await?;
        conn.query_drop("ALTER TABLE events MODIFY kind VARCHAR(16) NULL")
            .await?;
        conn.query_drop("UPDATE events SET kind = NULL WHERE id = 250")
            .await?;
        let tables = format!(
            "{}{}",
            tables(),
            Table::new("events")
                .strategy("full_sync")
                .with_yaml("checks", "- not_null: [kind]\n")?
                .yaml()
        );
        let config = concurrent(stack.config_yaml(&tables)?, 2);
        let aws = deploy(stack, &config, &[]).await?;
        let file = config_file(&config)?;

        let output = tidemark(&aws, &file, &["--json", "sync", "--aws", "-p", "p"]).await?;
        assert_eq!(output.status.code(), Some(1), "{}", explain(&aws, &output));
        let answer = document(&output);
        assert_eq!(answer["summary"]["error"], "TablesFailed", "{answer:#}");
        assert_eq!(answer["summary"]["quarantined"], 1, "{answer:#}");
        let events = stack.mysql.table("events").to_string();
        let held = answer["summary"]["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["table"] == events.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(held["status"], "quarantined", "{answer:#}");
        let loaded: i64 = stack
            .pg
            .client()
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'events'",
                &[&stack.pg.schema()],
            )
            .await?
            .get(0);
        if loaded > 0 {
            let (_, target) = events_in_source_and_target(stack).await?;
            assert!(target.is_empty(), "a quarantined run was loaded: {} rows", target.len());
        }

        let report = aws
            .invoke(
                "OperatorFunction",
                &json!({"action": "quality_report", "table": events}),
            )
            .await?;
        let run_id = report.payload["quarantined_run"].clone();
        assert!(run_id.is_string(), "{:#}", report.payload);
        let released = aws
            .invoke(
                "OperatorFunction",
                &json!({"action": "quality_release", "table": events, "run_id": run_id,
                        "requested_by": "ana@example.com", "reason": "NULL kinds are expected"}),
            )
            .await?;
        assert_eq!(released.function_error, None, "{:#}", released.payload);
        // `full_sync` reads the whole table again: fixed in the source, the next run passes and
        // replaces the released one's rows.
        conn.query_drop("UPDATE events SET kind = 'even' WHERE id = 250")
            .await?;

        let output = tidemark(&aws, &file, &["--json", "sync", "--aws", "-p", "p"]).await?;
        assert!(output.status.success(), "{}", explain(&aws, &output));
        let (source, target) = events_in_source_and_target(stack).await?;
        assert_eq!(source, target);
        assert_target_equals_source(stack).await?;
        Ok(())
    })
    .await;
}

/// A Data API target (the stand-in), `--backup-only` then `--redshift-only`, and extraction under
/// a real deadline: with `ExtractDeadlineMarginSeconds` equal to `ExtractTimeout`, every extract
/// invocation has no time left, reads one batch (8192 rows) and answers a continuation, so
/// `ContinueChunk` loops until the 20,000-row full-sync table is read.
#[tokio::test]
async fn backup_only_then_redshift_only_into_the_data_api_with_continued_chunks() {
    with_stack(Target::Redshift, async |stack| {
        seed(stack.mysql).await?;
        create_events(stack, 20_000).await?;
        let tables = sync_tables_and_whole("events");
        // All three at once: each Data API load polls with the definition's real waits (5 s, 10 s).
        let config = concurrent(stack.config_yaml(&tables)?, 3);
        let aws = deploy(stack, &config, &NO_TIME_TO_EXTRACT).await?;
        let file = config_file(&config)?;

        let backup = tidemark(
            &aws,
            &file,
            &["--json", "sync", "--aws", "-p", "p", "--backup-only"],
        )
        .await?;
        anyhow::ensure!(backup.status.success(), "{}", explain(&aws, &backup));
        let loaded_after_backup = aws.invocations()["tidemark-load"];
        assert_eq!(loaded_after_backup, 0, "--backup-only loads nothing");
        // One plan per table and one extraction per 8192 rows at least: events alone needs 3.
        let extractions = aws.invocations()["tidemark-extract"];
        assert!(
            extractions >= 3 + 3,
            "{extractions} extract invocations:\n{}",
            aws.logs()
        );

        let load = tidemark(
            &aws,
            &file,
            &["--json", "sync", "--aws", "-p", "p", "--redshift-only"],
        )
        .await?;
        anyhow::ensure!(load.status.success(), "{}", explain(&aws, &load));
        assert_eq!(
            aws.invocations()["tidemark-extract"],
            extractions,
            "--redshift-only extracts nothing"
        );
        assert_target_equals_source(stack).await?;
        let (source, target) = events_in_source_and_target(stack).await?;
        assert_eq!(source.len(), 20_000);
        assert_eq!(target, source, "events rows");
        Ok(())
    })
    .await;
}

/// The deployed payloads: a sync schedule's exact `Input` (as `schedules apply` writes it)
/// starts a sync that loads the tables; every operator payload the README documents (its golden fixtures) works on the real
/// operator function; the cleanup schedule's exact `Input` runs the cleanup. A refused payload
/// and an unknown function are answered as Lambda answers them.
#[tokio::test]
async fn the_schedule_cleanup_and_operator_payloads_work_as_sent() {
    with_stack(Target::Postgres, async |stack| {
        seed(stack.mysql).await?;
        let config = stack.config_yaml(&tables())?;
        let aws = deploy(stack, &config, &[]).await?;

        // The input `tidemark schedules apply` gives pipeline `p`'s schedule.
        let input = tidemark::schedules::sync_input("p");
        let ended = aws
            .execute("scheduled-sync", &input, EXECUTION_LIMIT)
            .await?;
        assert_eq!(
            ended.status(),
            &aws_sdk_sfn::types::ExecutionStatus::Succeeded,
            "{ended:?}\n{}",
            aws.logs()
        );
        assert_target_equals_source(stack).await?;

        let orders = stack.mysql.table("orders").to_string();
        let fixtures = tidemark_tests::local_aws::workspace_root().join("tests/fixtures/operator");
        let mut names: Vec<_> = std::fs::read_dir(&fixtures)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        names.sort();
        // `verify` on the synced table, before the edits below reset its watermark: equal.
        let verified = aws
            .invoke(
                "OperatorFunction",
                &json!({"action": "verify", "table": orders}),
            )
            .await?;
        assert_eq!(
            (
                verified.function_error.as_deref(),
                &verified.payload["equal"]
            ),
            (None, &json!(true)),
            "{:#}",
            verified.payload
        );
        // `restore` needs a version that exists: the newest one `history` lists.
        let history = aws
            .invoke(
                "OperatorFunction",
                &json!({"action": "history", "table": orders}),
            )
            .await?;
        let versions = history.payload.as_array().cloned().unwrap_or_default();
        let newest = versions
            .last()
            .and_then(|v| v["version"].as_str())
            .ok_or_else(|| anyhow::anyhow!("no watermark versions: {:#}", history.payload))?
            .to_owned();
        for path in names {
            let mut payload: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            if payload.get("table").is_some() {
                payload["table"] = json!(orders);
            }
            if payload["action"] == "restore" {
                payload["version"] = json!(newest);
            }
            let answer = aws.invoke("OperatorFunction", &payload).await?;
            // No run is quarantined here: a release or drop is refused, saying so.
            if ["quality_release", "quality_drop"]
                .contains(&payload["action"].as_str().unwrap_or(""))
            {
                assert_eq!(
                    answer.function_error.as_deref(),
                    Some("Unhandled"),
                    "{:#}",
                    answer.payload
                );
                assert!(
                    answer.payload["errorMessage"]
                        .as_str()
                        .is_some_and(|m| m.contains("is not a pending run")
                            && m.contains("no run is quarantined")),
                    "{}: {:#}",
                    path.display(),
                    answer.payload
                );
                continue;
            }
            // By then `reset` (sorted before it) has forgotten the loaded runs: refused, saying so.
            if payload["action"] == "verify" {
                assert!(
                    answer.payload["errorMessage"]
                        .as_str()
                        .is_some_and(|m| m.contains("has not been loaded yet")),
                    "{:#}",
                    answer.payload
                );
                continue;
            }
            assert_eq!(
                answer.function_error,
                None,
                "{}: {:#}\n{}",
                path.display(),
                answer.payload,
                aws.logs()
            );
        }
        let watermark = aws
            .invoke(
                "OperatorFunction",
                &json!({"action": "get", "table": orders}),
            )
            .await?;
        assert_eq!(watermark.function_error, None, "{:#}", watermark.payload);

        let cleanup = aws
            .template()
            .property("CleanupSchedule", &["Target", "Input"])?;
        let answer = aws
            .invoke("CleanupFunction", &serde_json::from_str(&cleanup)?)
            .await?;
        assert_eq!(
            answer.function_error,
            None,
            "{:#}\n{}",
            answer.payload,
            aws.logs()
        );

        // As Lambda answers: a refused payload is HTTP 200 with `X-Amz-Function-Error` and the
        // function's error document; a function that does not exist is a 404.
        let refused = aws
            .invoke("OperatorFunction", &json!({"action": "no_such_action"}))
            .await?;
        assert_eq!(refused.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(
            refused.payload["errorType"], "NonRetryable",
            "{:#}",
            refused.payload
        );
        let (status, headers, _) = tidemark_tests::local_aws::http(
            aws.lambda_address(),
            "POST",
            "/2015-03-31/functions/no-such-function/invocations",
            "{}",
        )
        .await?;
        assert_eq!(status, 404);
        assert!(headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("x-amzn-ErrorType")
                && v == "ResourceNotFoundException"));
        Ok(())
    })
    .await;
}

/// An execution stopped mid-run (`StopExecution`: no `Catch` runs) keeps its table's lease until
/// the template's `ExecutionEndedRule` delivers its event to the watermark function: with the
/// rule's own input template, the lease is released and the next sync loads everything. moto
/// emits no EventBridge events, so the test delivers the rule's payload through Invoke.
#[tokio::test]
async fn an_execution_stopped_mid_run_releases_its_leases_through_the_ended_rule() {
    with_stack(Target::Postgres, async |stack| {
        create_events(stack, 40_000).await?;
        let config = stack.config_yaml(&Table::new("events").strategy("full_sync").yaml())?;
        // No time per extraction: the events table takes several invocations, time to stop it.
        let aws = deploy(stack, &config, &NO_TIME_TO_EXTRACT).await?;
        let started = aws
            .sfn()
            .start_execution()
            .state_machine_arn(aws.state_machine_arn())
            .name("stopped-mid-run")
            .input(r#"{"pipeline": "p"}"#)
            .send()
            .await?;
        let execution = started.execution_arn().to_owned();
        let began = std::time::Instant::now();
        while aws.invocations()["tidemark-extract"] < 2 {
            anyhow::ensure!(
                began.elapsed() < EXECUTION_LIMIT,
                "no extraction started:\n{}",
                aws.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        aws.sfn()
            .stop_execution()
            .execution_arn(&execution)
            .send()
            .await?;
        let ended = aws.wait(&execution, EXECUTION_LIMIT).await?;
        assert_eq!(
            ended.status(),
            &aws_sdk_sfn::types::ExecutionStatus::Aborted
        );

        let file = config_file(&config)?;
        let held = tidemark(&aws, &file, &["--json", "sync", "--aws", "-p", "p"]).await?;
        assert_eq!(
            held.status.code(),
            Some(1),
            "the stopped run still holds the lease: {}",
            explain(&aws, &held)
        );
        assert!(
            String::from_utf8_lossy(&held.stdout).contains("LeaseHeld"),
            "{}",
            explain(&aws, &held)
        );

        let template = aws.template().property(
            "ExecutionEndedRule",
            &["Targets", "0", "InputTransformer", "InputTemplate"],
        )?;
        let event = template
            .replace("<execution>", &json!(execution).to_string())
            .replace("<status>", &json!("ABORTED").to_string());
        let released = aws
            .invoke("WatermarkFunction", &serde_json::from_str(&event)?)
            .await?;
        assert_eq!(released.function_error, None, "{:#}", released.payload);
        let events = stack.mysql.table("events").to_string();
        assert!(
            released.payload["released"].to_string().contains(&events),
            "{:#}",
            released.payload
        );
        // The stopped run's lineage ends with ABORT.
        let aborted = stack
            .bucket
            .bucket()
            .list("")
            .await?
            .into_iter()
            .filter(|o| o.key.contains("/lineage/") && o.key.ends_with("-abort.json"))
            .count();
        assert_eq!(aborted, 1, "one ABORT lineage event for the stopped run");

        let after = tidemark(&aws, &file, &["--json", "sync", "--aws", "-p", "p"]).await?;
        anyhow::ensure!(after.status.success(), "{}", explain(&aws, &after));
        let (source, target) = events_in_source_and_target(stack).await?;
        assert_eq!(target, source, "events rows");
        Ok(())
    })
    .await;
}

/// Tables `t0`…`t{n-1}`, 20 rows each, synced by their `updated_at`.
/// A schema of the test's that does not exist yet: the first load must create it, its ledger and
/// its tables.
fn new_schema(stack: &Stack<'_>) -> String {
    format!("{}_new", stack.pg.schema())
}

/// Rows of `t0`…`t{n-1}` in [`new_schema`], which is dropped afterwards (a leftover goes with
/// the harness's hourly sweep of `tidemark_test_` names).
async fn rows_in_new_schema(stack: &Stack<'_>, n: usize) -> anyhow::Result<Vec<i64>> {
    let schema = new_schema(stack);
    let mut rows = Vec::new();
    for i in 0..n {
        let row = stack
            .pg
            .client()
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".t{i}"), &[])
            .await?;
        rows.push(row.get(0));
    }
    stack
        .pg
        .client()
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    Ok(rows)
}

/// Pipeline `p` of `n` tables, five at once, loading into [`new_schema`].
async fn many_tables(stack: &Stack<'_>, n: usize) -> anyhow::Result<String> {
    let mut conn = stack.mysql.conn().await?;
    let mut tables = Vec::new();
    for i in 0..n {
        conn.query_drop(format!(
            "CREATE TABLE t{i} (id INT PRIMARY KEY, v VARCHAR(8) NOT NULL, updated_at DATETIME(6) NOT NULL)"
        ))
        .await?;
        conn.query_drop(format!(
            "INSERT INTO t{i} SELECT seq, 'v', '2026-01-01' + INTERVAL seq SECOND FROM seq_1_to_20"
        ))
        .await?;
        tables.push(Table::hybrid(&format!("t{i}"), "updated_at"));
    }
    let config = stack
        .config_yaml(&tidemark_tests::tables::yaml(&tables))?
        .replace(
            &format!("schema: \"{}\"", stack.pg.schema()),
            &format!("schema: \"{}\"", new_schema(stack)),
        );
    Ok(concurrent(config, 5))
}

/// Invocations per function (`extract`, `watermark`, `load`) of one sync.
type Invocations = BTreeMap<String, u64>;

/// Counts the local runner's invocations by function.
#[derive(Default)]
struct CountingObserver(std::sync::Mutex<Invocations>);

impl tidemark::steps::local_sync::StepObserver for CountingObserver {
    fn started(&self, function: &str, _payload: &Value) {
        let name = function
            .trim_start_matches("${")
            .trim_end_matches('}')
            .trim_end_matches("FunctionArn")
            .to_ascii_lowercase();
        *self.0.lock().unwrap().entry(name).or_default() += 1;
    }

    fn finished(&self, _: &str, _: &Value, _: &Result<Value, tidemark::asl::TaskFailure>) {}
}

/// `after - before` per function, named without the stack's prefix.
fn invoked_between(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Invocations {
    after
        .iter()
        .map(|(name, count)| {
            (
                name.trim_start_matches("tidemark-").to_owned(),
                count - before.get(name).copied().unwrap_or(0),
            )
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

/// The same pipeline of ten tables, synced twice (first load, then nothing new) by moto's engine
/// and by tidemark's runner, invokes the same functions the same number of times: both engines
/// walk the definition alike. Each starts from a target schema that does not exist (tidemark
/// creates it, its ledger and its tables), and every table ends with its 20 rows. The figures (per sync: invocations, and the runner's billed state
/// transitions and history events) are printed for the README's cost table;
/// `TIDEMARK_REHEARSAL_TABLES=50` measures another size.
#[tokio::test]
async fn both_engines_invoke_the_same_steps_for_a_ten_table_pipeline() {
    let tables: usize = std::env::var("TIDEMARK_REHEARSAL_TABLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let rehearsed = std::sync::Mutex::new(Vec::<(Invocations, f64)>::new());
    with_stack(Target::Postgres, async |stack| {
        let config = many_tables(stack, tables).await?;
        let aws = deploy(stack, &config, &[]).await?;
        let file = config_file(&config)?;
        for _ in 0..2 {
            let before = (
                aws.invocations(),
                aws.gigabyte_seconds().values().sum::<f64>(),
            );
            let output = tidemark(&aws, &file, &["--json", "sync", "--aws", "-p", "p"]).await?;
            anyhow::ensure!(output.status.success(), "{}", explain(&aws, &output));
            rehearsed.lock().unwrap().push((
                invoked_between(&before.0, &aws.invocations()),
                aws.gigabyte_seconds().values().sum::<f64>() - before.1,
            ));
        }
        assert_eq!(rows_in_new_schema(stack, tables).await?, vec![20; tables]);
        Ok(())
    })
    .await;
    let ran_locally = std::sync::Mutex::new(Vec::<(Invocations, u64, u64)>::new());
    with_stack(Target::Postgres, async |stack| {
        let config = many_tables(stack, tables).await?;
        let services = tidemark::services::Services::from_env(
            tidemark::config::Config::from_yaml(
                &config,
                "figures.yaml",
                &tidemark::config::Environment::new(),
            )?,
            None,
        )
        .await;
        for _ in 0..2 {
            let observer = CountingObserver::default();
            let options = tidemark_tests::stack::fast_runner("figures");
            let (outcome, _) = tidemark::steps::local_sync::run_with_summary(
                &services,
                json!({"pipeline": "p"}),
                &options,
                tidemark::steps::local_sync::EXTRACTS_AT_ONCE,
                Some(&observer),
            )
            .await?;
            anyhow::ensure!(
                matches!(outcome, tidemark::asl::Outcome::Succeeded(_)),
                "{outcome:?}"
            );
            let events: u64 = options
                .executions
                .lock()
                .unwrap()
                .iter()
                .map(|e| e.history_events)
                .sum();
            ran_locally.lock().unwrap().push((
                observer.0.into_inner().unwrap(),
                options.transitions(),
                events,
            ));
        }
        assert_eq!(rows_in_new_schema(stack, tables).await?, vec![20; tables]);
        Ok(())
    })
    .await;
    let rehearsed = rehearsed.into_inner().unwrap();
    let ran_locally = ran_locally.into_inner().unwrap();
    for (sync, ((moto, gigabyte_seconds), (local, transitions, events))) in
        ["first load", "no change"]
            .iter()
            .zip(rehearsed.iter().zip(&ran_locally))
    {
        eprintln!("{tables} tables, {sync}: invocations {local:?}, {transitions} state transitions, {events} history events, {gigabyte_seconds:.1} GB-s at the template's memory settings");
        assert_eq!(
            moto, local,
            "{sync}: moto's engine and tidemark's runner invoked different steps"
        );
    }
}

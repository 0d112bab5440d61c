//! OpenLineage events (issue #20): a sync's run writes START and COMPLETE, a failed one START and
//! FAIL, a `--backup-only` one START and COMPLETE with its extraction's counts; every event is
//! valid by the OpenLineage client's own classes (`tests/lineage/validate.py`, openlineage-python
//! in the stack's venv), names the MySQL table and the warehouse table by the spec's naming
//! conventions, and is POSTed to `lineage.endpoint` as well.

use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use serde_json::Value;
use tidemark_tests::scenario::{create_table, describe, insert_rows, Scenario};
use tidemark_tests::tables::Table;
use tidemark_tests::TestMysql;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");

/// Every lineage event of the scenario's `table`, by S3 key (`…/{run_id}-{event}.json`).
async fn events(scenario: &Scenario<'_>, table: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let id = scenario.mysql.table(table);
    let prefix = format!("tm/lineage/p/{}/{}/", id.database(), id.table());
    let mut found = Vec::new();
    for object in scenario.bucket.bucket().list(&prefix).await? {
        let body = scenario
            .bucket
            .bucket()
            .get(&object.key)
            .await?
            .context("a listed event is gone")?;
        found.push((object.key.clone(), serde_json::from_slice(&body.body)?));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Runs the OpenLineage client's classes over `events` (`tests/lineage/validate.py`).
fn validate(events: &[Value]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut paths = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let path = dir.path().join(format!("event-{i}.json"));
        std::fs::write(&path, serde_json::to_vec(event)?)?;
        paths.push(path);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/lineage/validate.py");
    let out = std::process::Command::new("python")
        .arg(script)
        .args(&paths)
        .output()
        .context("python (the stack's venv, on PATH from `scripts/stack env`)")?;
    ensure!(out.status.success(), "{}", describe(&out));
    Ok(())
}

/// A one-connection HTTP server that answers 201 to every POST and keeps the bodies.
async fn endpoint() -> anyhow::Result<(u16, Arc<Mutex<Vec<Value>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stream.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        if let Ok(event) = serde_json::from_str(body) {
                            kept.lock().unwrap().push(event);
                        }
                        let _ = stream
                            .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        break;
                    }
                }
            }
        }
    });
    Ok((port, received))
}

// Multi-threaded: the endpoint answers while the test waits for the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_run_writes_valid_openlineage_events() {
    TestMysql::run(async |mysql| {
        // No lookback: each run reads only the rows changed since the one before.
        let table = Table::hybrid("orders", "updated_at").lookback("0s");
        let scenario = Scenario::new(mysql, BINARY, &table.yaml()).await?;
        let (port, posted) = endpoint().await?;
        scenario.set_config(
            &["pipelines", "p", "lineage"],
            &format!("{{ namespace: shop-sync, endpoint: 'http://127.0.0.1:{port}/api/v1/lineage' }}"),
        )?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table("orders")).await?;
        insert_rows(&mut conn, "orders", 1, 120, "2025-01-01 00:00:00").await?;
        scenario.sync_ok("orders")?;

        let first = events(&scenario, "orders").await?;
        let kinds: Vec<&str> = first.iter().map(|(_, e)| e["eventType"].as_str().unwrap_or("")).collect();
        ensure!(kinds.len() == 2 && kinds.contains(&"START") && kinds.contains(&"COMPLETE"), "{kinds:?}");
        let complete = &first.iter().find(|(_, e)| e["eventType"] == "COMPLETE").context("COMPLETE")?.1;
        let start = &first.iter().find(|(_, e)| e["eventType"] == "START").context("START")?.1;
        ensure!(complete["run"]["runId"] == start["run"]["runId"], "START and COMPLETE of one run differ");
        let id = mysql.table("orders");
        ensure!(complete["job"] == serde_json::json!({"namespace": "shop-sync", "name": format!("p.{id}"), "facets": {}}), "{complete:#}");
        ensure!(
            complete["inputs"][0]["namespace"] == format!("mysql://127.0.0.1:{}", std::env::var("TIDEMARK_MYSQL_PORT").unwrap_or_else(|_| "3306".into()))
                && complete["inputs"][0]["name"] == id.to_string(),
            "{complete:#}"
        );
        ensure!(
            complete["outputs"][0]["name"] == format!("postgres.{}.orders", scenario.pg.schema())
                && complete["outputs"][0]["namespace"].as_str().is_some_and(|n| n.starts_with("postgres://")),
            "{complete:#}"
        );
        ensure!(complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 120, "{complete:#}");
        ensure!(complete["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == 120, "{complete:#}");
        let fields = complete["inputs"][0]["facets"]["schema"]["fields"].as_array().map(Vec::len);
        ensure!(fields == Some(4), "the schema facet: {complete:#}");

        // A run that fails after `begin`: START, then FAIL with the error.
        insert_rows(&mut conn, "orders", 121, 130, "2025-02-01 00:00:00").await?;
        let out = scenario.sync("orders", Some("before_commit=fatal"));
        ensure!(out.status.code() == Some(1), "{}", describe(&out));
        // An extraction without its load: COMPLETE with what was extracted, nothing loaded.
        let out = scenario.run(&["sync", "-t", &id.to_string(), "--backup-only"], None);
        ensure!(out.status.success(), "{}", describe(&out));

        let all = events(&scenario, "orders").await?;
        let fail = &all.iter().find(|(_, e)| e["eventType"] == "FAIL").context("FAIL")?.1;
        let message = fail["run"]["facets"]["errorMessage"]["message"].as_str().unwrap_or_default();
        ensure!(message.contains("before_commit"), "{fail:#}");
        let backup = all
            .iter()
            .filter(|(_, e)| e["eventType"] == "COMPLETE")
            .map(|(_, e)| e)
            .find(|e| e["outputs"][0].get("outputFacets").is_none())
            .context("the backup-only run's COMPLETE")?;
        ensure!(backup["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] == 10, "{backup:#}");
        ensure!(all.len() == 6, "{} events: {:?}", all.len(), all.iter().map(|(k, _)| k).collect::<Vec<_>>());

        let written: Vec<Value> = all.into_iter().map(|(_, e)| e).collect();
        validate(&written)?;
        let mut posted = posted.lock().unwrap().clone();
        let mut stored = written.clone();
        let by_time = |a: &Value, b: &Value| a["eventTime"].as_str().cmp(&b["eventTime"].as_str());
        posted.sort_by(by_time);
        stored.sort_by(by_time);
        ensure!(posted == stored, "the endpoint received {} events, S3 holds {}", posted.len(), stored.len());
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

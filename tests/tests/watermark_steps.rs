//! The watermark and operator Lambdas' payloads: every golden fixture round-trips, bad payloads
//! are refused with a clear error, each handler answers every action against the local stack,
//! and every operator edit lands in the audit record with who asked and why.

use std::path::PathBuf;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use tidemark::audit::{AuditEntry, Phase};
use tidemark::run::RunContext;
use tidemark::services::Services;
use tidemark::steps::operator::{self, EditResult, GetResult, ListEntry, OperatorCall};
use tidemark::steps::watermark::{handle, parse_request, CommitResult, WatermarkRequest};
use tidemark::watermark::{HistoryEntry, Watermark};
use tidemark::ErrorKind;
use tidemark_tests::s3::TestBucket;
use tidemark_tests::tables::Table;
use tidemark_tests::TestMysql;

const ACTIONS: [&str; 8] = [
    "prepare",
    "record_outcome",
    "summarize",
    "begin",
    "commit",
    "commit_load",
    "fail",
    "verify_due",
];

const OPERATOR_ACTIONS: [&str; 14] = [
    "get",
    "list",
    "set",
    "reset",
    "history",
    "restore",
    "unlock",
    "set_count",
    "validate_counts",
    "audit",
    "quality_report",
    "quality_release",
    "quality_drop",
    "verify",
];

/// The edits among [`OPERATOR_ACTIONS`]: they need a `requested_by`.
const EDITS: [&str; 7] = [
    "set",
    "reset",
    "restore",
    "unlock",
    "set_count",
    "quality_release",
    "quality_drop",
];

const VIA: &str = "lambda:tidemark-operator";

fn read_fixture(folder: &str, name: &str) -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{folder}/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn fixture(name: &str) -> Value {
    read_fixture("watermark", name)
}

#[test]
fn every_fixture_round_trips() {
    for action in ACTIONS {
        let payload = fixture(action);
        let request = parse_request(payload.clone()).unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(serde_json::to_value(&request).unwrap(), payload, "{action}");
    }
    for action in OPERATOR_ACTIONS {
        let mut payload = read_fixture("operator", action);
        let call = operator::parse_request(payload.clone(), VIA)
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        let fields = payload.as_object_mut().unwrap();
        let requested_by = fields.remove("requested_by");
        let reason = fields.remove("reason");
        assert_eq!(EDITS.contains(&action), requested_by.is_some(), "{action}");
        assert_eq!(
            serde_json::to_value(&call.request).unwrap(),
            payload,
            "{action}"
        );
        let requester = call.requester.map(|r| {
            assert_eq!(r.via, VIA);
            (json!(r.requested_by), json!(r.reason))
        });
        assert_eq!(
            requester,
            requested_by.map(|by| (by, reason.unwrap_or(Value::Null))),
            "{action}"
        );
    }
    let context = fixture("run_context");
    let parsed: RunContext = serde_json::from_value(context.clone()).unwrap();
    assert_eq!(serde_json::to_value(parsed).unwrap(), context);
}

#[test]
fn bad_payloads_are_refused_with_what_is_accepted() {
    let mut extra = fixture("begin");
    extra["colour"] = json!("blue");
    let mut missing = fixture("begin");
    missing.as_object_mut().unwrap().remove("table");
    let cases = [
        (extra, "unknown field `colour`"),
        (missing, "missing field `table`"),
        (json!({"action": "explode"}), "unknown variant `explode`"),
        (json!({"table": "shop.orders"}), "missing field `action`"),
    ];
    for (payload, expected) in cases {
        let err = parse_request(payload).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
        let text = err.to_string();
        assert!(text.contains(expected), "{text}");
        assert!(
            text.contains("actions are prepare, record_outcome, summarize, begin"),
            "{text}"
        );
    }
    // An operator action sent to the state machine's function is sent on to the right one.
    for action in OPERATOR_ACTIONS {
        let err = parse_request(read_fixture("operator", action)).unwrap_err();
        assert!(
            err.to_string().contains("invoke the operator function"),
            "{action}: {err}"
        );
    }
    let operator_cases = [
        (
            json!({"action": "set", "table": "shop.orders", "timestamp": 5}),
            "invalid type",
        ),
        (
            json!({"action": "begin", "pipeline": "p", "table": "shop.orders"}),
            "unknown variant `begin`",
        ),
        (
            json!({"action": "unlock", "table": "shop.orders", "requested_by": 7}),
            "`requested_by` must be a string",
        ),
        (json!(["get"]), "expected a JSON object"),
    ];
    for (payload, expected) in operator_cases {
        let err = operator::parse_request(payload, VIA).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
        let text = err.to_string();
        assert!(text.contains(expected), "{text}");
    }
}

/// `fixture` retargeted at the test's pipeline `p` and table.
fn payload(action: &str, table: &str, run: Option<&Value>) -> WatermarkRequest {
    serde_json::from_value(retargeted(fixture(action), table, run)).unwrap()
}

/// An operator fixture retargeted at the test's pipeline `p` and table.
fn operator_payload(action: &str, table: &str) -> Value {
    retargeted(read_fixture("operator", action), table, None)
}

/// Runs an operator payload and decodes its answer.
async fn operate<T: serde::de::DeserializeOwned>(
    services: &Services,
    payload: Value,
) -> tidemark::Result<T> {
    let call: OperatorCall = operator::parse_request(payload, VIA)?;
    let answer = operator::handle(services, &call).await?;
    Ok(serde_json::from_value(answer).unwrap())
}

fn retargeted(mut value: Value, table: &str, run: Option<&Value>) -> Value {
    let object = value.as_object_mut().unwrap();
    if object.contains_key("pipeline") && !object["pipeline"].is_null() {
        object.insert("pipeline".into(), json!("p"));
    }
    if object.contains_key("table") {
        object.insert("table".into(), json!(table));
    }
    if let Some(run) = run {
        object.insert("run".into(), run.clone());
        if let Some(loaded) = object.get_mut("loaded") {
            loaded[0]["run_id"] = run["run_id"].clone();
        }
    }
    match object["action"].as_str() {
        Some("commit") => {
            object.insert("chunk_manifest_keys".into(), json!([]));
        }
        Some("fail") => {
            object.insert("run_id".into(), Value::Null);
        }
        _ => {}
    }
    value
}

/// A source table `orders` (empty), a fresh bucket, and a config syncing one into the other.
async fn orders_world(
    mysql: &TestMysql,
) -> anyhow::Result<(TestBucket, String, tidemark::config::Config)> {
    let mut conn = mysql.conn().await?;
    conn.query_drop("CREATE TABLE orders (id BIGINT PRIMARY KEY, updated_at DATETIME(6) NOT NULL)")
        .await?;
    let bucket = TestBucket::fresh().await?;
    let table = mysql.table("orders").to_string();
    let config = mysql.config(
        bucket.bucket().name(),
        &Table::hybrid("orders", "updated_at").yaml(),
    )?;
    Ok((bucket, table, config))
}

#[tokio::test]
async fn the_handler_answers_every_action() {
    TestMysql::run(async |mysql| {
        let (bucket, table, config) = orders_world(mysql).await?;
        let services = Services::from_env(config, None).await;

        let context = handle(&services, &payload("begin", &table, None)).await?;
        let run: RunContext = serde_json::from_value(context.clone())?;
        assert_eq!(run.key_columns, vec!["id".to_owned()]);
        assert!(run.ceiling.timestamp.is_some());
        let second = handle(&services, &payload("begin", &table, None))
            .await
            .unwrap_err();
        assert_eq!(second.kind(), ErrorKind::LeaseHeld, "{second}");

        let committed: CommitResult = serde_json::from_value(
            handle(&services, &payload("commit", &table, Some(&context))).await?,
        )?;
        assert_eq!((committed.rows, committed.pending_runs), (0, 0));
        let loaded: Watermark = serde_json::from_value(
            handle(&services, &payload("commit_load", &table, Some(&context))).await?,
        )?;
        assert!(loaded.lease.is_none(), "commit_load releases the lease");

        let set: EditResult = operate(&services, operator_payload("set", &table)).await?;
        assert_eq!(
            set.watermark.extract.cursor.timestamp.as_deref(),
            Some("2026-11-01 00:00:00.000000")
        );
        let edit = set.watermark.manual.as_ref().unwrap();
        assert_eq!(
            (
                edit.by.as_str(),
                edit.action.as_str(),
                edit.reason.as_deref()
            ),
            (
                "ana@example.com",
                "set",
                Some("INC-4211: re-sync after the source restore")
            )
        );
        let got: GetResult = operate(&services, operator_payload("get", &table)).await?;
        assert_eq!(
            got.watermark.unwrap().extract.cursor,
            set.watermark.extract.cursor
        );
        let listed: Vec<ListEntry> = operate(&services, operator_payload("list", &table)).await?;
        assert_eq!(listed.len(), 1);
        let counted: EditResult = operate(&services, operator_payload("set_count", &table)).await?;
        assert_eq!(counted.watermark.totals.rows_loaded, 1200);
        let unlocked: EditResult = operate(&services, operator_payload("unlock", &table)).await?;
        assert!(
            unlocked.message.contains("no lease"),
            "{}",
            unlocked.message
        );
        let reset: EditResult = operate(&services, operator_payload("reset", &table)).await?;
        assert!(reset.watermark.extract.cursor.is_start());
        let failed: Watermark =
            serde_json::from_value(handle(&services, &payload("fail", &table, None)).await?)?;
        assert_eq!(
            failed.load.error.as_deref(),
            Some("NonRetryable: copy failed")
        );

        let history: Vec<HistoryEntry> =
            operate(&services, operator_payload("history", &table)).await?;
        assert!(history.len() >= 6, "{history:?}");
        let mut restore = operator_payload("restore", &table);
        // Oldest first; the third newest is the state between set_count and unlock.
        let before_set = &history[history.len() - 3];
        restore["version"] = json!(before_set.version);
        let restored: EditResult = operate(&services, restore).await?;
        assert_eq!(
            restored.watermark.extract.cursor.timestamp.as_deref(),
            Some("2026-11-01 00:00:00.000000")
        );

        let plan = handle(
            &services,
            &parse_request(json!({"action": "prepare", "input": {"pipeline": "p"}}))?,
        )
        .await?;
        assert_eq!(plan["tables"], json!([table]));
        assert_eq!(plan["table_concurrency"], 1);
        let stranger = handle(
            &services,
            &parse_request(
                json!({"action": "prepare", "input": {"pipeline": "p", "tables": ["other.t"]}}),
            )?,
        )
        .await;
        assert!(stranger
            .unwrap_err()
            .to_string()
            .contains("not in pipeline `p`"));
        let extra =
            parse_request(json!({"action": "prepare", "input": {"pipeline": "p", "table": "x"}}));
        assert!(extra
            .unwrap_err()
            .to_string()
            .contains("unknown field `table`"));

        let missing = operate::<GetResult>(&services, operator_payload("get", "nope.orders"))
            .await
            .unwrap_err();
        assert!(missing.to_string().contains("in no pipeline"), "{missing}");
        bucket.remove().await?;
        Ok(())
    })
    .await
    .unwrap();
}

/// Issue #25 item 4: an edit without `requested_by` changes nothing; every other edit leaves its
/// request and its outcome (applied or refused) in the audit record, which history pruning never
/// touches and no entry can overwrite.
#[tokio::test]
async fn every_edit_is_in_the_audit_record_with_who_asked_and_why() {
    TestMysql::run(async |mysql| {
        let (bucket, table, mut config) = orders_world(mysql).await?;
        for pipeline in config.pipelines.values_mut() {
            pipeline.watermark_history = 1;
            pipeline.watermark_history_age =
                tidemark::config::HumanDuration(std::time::Duration::ZERO);
        }
        let services = Services::from_env(config, None).await;
        let audit = || async {
            operate::<Vec<AuditEntry>>(&services, operator_payload("audit", &table)).await
        };

        let mut anonymous = operator_payload("set", &table);
        anonymous.as_object_mut().unwrap().remove("requested_by");
        let refused = operate::<EditResult>(&services, anonymous)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("`requested_by` is required"),
            "{refused}"
        );
        let got: GetResult = operate(&services, operator_payload("get", &table)).await?;
        assert!(got.watermark.is_none(), "a refused edit wrote a watermark");
        assert!(audit().await?.is_empty());

        for _ in 0..3 {
            let _: EditResult = operate(&services, operator_payload("set_count", &table)).await?;
        }
        let mut unknown = operator_payload("restore", &table);
        unknown["version"] = json!("20200101T000000000000Z-manual");
        let err = operate::<EditResult>(&services, unknown).await.unwrap_err();

        let entries = audit().await?;
        let phases: Vec<(&str, Phase)> = entries
            .iter()
            .map(|e| (e.action.as_str(), e.phase))
            .collect();
        use Phase::*;
        assert_eq!(
            phases,
            [
                ("set_count", Requested),
                ("set_count", Applied),
                ("set_count", Requested),
                ("set_count", Applied),
                ("set_count", Requested),
                ("set_count", Applied),
                ("restore", Requested),
                ("restore", Refused),
            ]
        );
        let first = &entries[0];
        assert_eq!(first.requester.requested_by, "ana@example.com");
        assert_eq!(
            first.requester.reason.as_deref(),
            Some("INC-4211: re-sync after the source restore")
        );
        assert_eq!(first.requester.via, VIA);
        assert_eq!(first.request["count"], json!(1200));
        assert_eq!(entries[1].edit_id, first.edit_id);
        assert!(entries[1].detail.as_deref().unwrap().contains("1200"));
        assert_eq!(entries[7].detail.as_deref(), Some(err.to_string().as_str()));
        let history: Vec<HistoryEntry> =
            operate(&services, operator_payload("history", &table)).await?;
        assert_eq!(history.len(), 1, "history is pruned to one version");

        let pipeline = services.config.pipeline("p")?;
        let trail = tidemark::audit::AuditTrail::new(
            services.bucket(pipeline),
            tidemark::naming::StorageLayout::new(&pipeline.s3.prefix),
        );
        let again = trail.append(first).await.unwrap_err();
        assert_eq!(again.kind(), ErrorKind::ConcurrentUpdate, "{again}");
        assert_eq!(audit().await?.len(), entries.len());
        bucket.remove().await?;
        Ok(())
    })
    .await
    .unwrap();
}

/// Issue #26 item 3: an execution that dies without running `fail` (history quota, timeout,
/// abort) has its leases released when the EventBridge rule on its end invokes `release`; a
/// table another execution holds keeps its lease, and a second release changes nothing.
#[tokio::test]
async fn an_execution_that_dies_releases_its_leases() {
    TestMysql::run(async |mysql| {
        let (bucket, table, mut config) = orders_world(mysql).await?;
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE refunds (id BIGINT PRIMARY KEY, updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        let other = mysql.table("refunds").to_string();
        for pipeline in config.pipelines.values_mut() {
            let settings = pipeline.tables.values().next().cloned().unwrap();
            pipeline.tables.insert(other.clone(), settings);
        }
        let services = Services::from_env(config, None).await;
        let dead = "arn:aws:states:eu-west-1:123456789012:execution:tidemark-sync:dead";
        let alive = "arn:aws:states:eu-west-1:123456789012:execution:tidemark-sync:alive";
        let begin = |table: &str, execution: &str| {
            let mut request = serde_json::to_value(payload("begin", table, None)).unwrap();
            request["execution"] = json!(execution);
            serde_json::from_value::<WatermarkRequest>(request).unwrap()
        };
        handle(&services, &begin(&table, dead)).await?;
        handle(&services, &begin(&other, alive)).await?;

        let release =
            parse_request(json!({"action": "release", "execution": dead, "status": "TIMED_OUT"}))?;
        let answer = handle(&services, &release).await?;
        assert_eq!(answer["released"], json!([format!("p {table}")]));
        let got: GetResult = operate(&services, operator_payload("get", &table)).await?;
        let record = got.watermark.unwrap();
        assert!(
            record.lease.is_none(),
            "the dead execution's lease is released"
        );
        assert_eq!(record.extract.status.to_string(), "failed");
        assert!(
            record
                .extract
                .error
                .as_deref()
                .unwrap()
                .contains("ended TIMED_OUT"),
            "{:?}",
            record.extract.error
        );
        let edit = record.manual.unwrap();
        assert_eq!((edit.action.as_str(), edit.by.as_str()), ("release", dead));
        let kept: GetResult = operate(&services, operator_payload("get", &other)).await?;
        assert_eq!(
            kept.watermark.unwrap().lease.unwrap().execution.as_deref(),
            Some(alive),
            "another execution's lease is kept"
        );
        let again = handle(&services, &release).await?;
        assert_eq!(again["released"], json!([]));
        handle(&services, &begin(&table, alive)).await?;
        bucket.remove().await?;
        Ok(())
    })
    .await
    .unwrap();
}

/// `record_outcome` keeps a table's outcome in S3 and answers only its status; `summarize`
/// reads every table's, fails a table that recorded none (its child execution ended early),
/// and writes the full summary where its `report` says.
#[tokio::test]
async fn summarize_reads_recorded_outcomes_and_fails_a_table_without_one() {
    TestMysql::run(async |mysql| {
        let (bucket, table, config) = orders_world(mysql).await?;
        let services = Services::from_env(config, None).await;
        let execution = "arn:aws:states:eu-west-1:123456789012:execution:tidemark-sync:e1";
        let recorded = handle(
            &services,
            &parse_request(json!({
                "action": "record_outcome", "pipeline": "p", "execution": execution,
                "outcome": {"table": table, "status": "succeeded", "rows_extracted": 7, "files": 1,
                            "bytes": 99, "loaded": [], "run_id": null, "error": null}
            }))?,
        )
        .await?;
        assert_eq!(recorded, json!({"table": table, "status": "succeeded"}));

        let silent = format!("{}.silent", mysql.database());
        let summary = handle(
            &services,
            &parse_request(json!({
                "action": "summarize", "pipeline": "p", "execution": execution,
                "tables": [table, silent]
            }))?,
        )
        .await?;
        assert_eq!(
            (summary["succeeded"].clone(), summary["failed"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(summary["tables"][0]["rows_extracted"], 7, "{summary}");
        assert_eq!(
            summary["tables"][1]["error"]["Error"], "NoOutcome",
            "{summary}"
        );
        assert!(summary["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{silent} failed")));
        let report = summary["report"].as_str().unwrap();
        let key = report
            .strip_prefix(&format!("s3://{}/", bucket.bucket().name()))
            .unwrap();
        assert_eq!(key, "tm/executions/p/e1/summary.json");
        let stored = bucket.bucket().get(key).await?.unwrap();
        let stored: Value = serde_json::from_slice(&stored.body)?;
        assert_eq!(stored["tables"], summary["tables"]);
        bucket.remove().await?;
        Ok(())
    })
    .await
    .unwrap();
}

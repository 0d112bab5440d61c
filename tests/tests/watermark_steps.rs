//! The watermark Lambda's payloads: every golden fixture round-trips, bad payloads are refused
//! with a clear error, and the handler answers every action against the local stack.

use std::path::PathBuf;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use tidemark::run::RunContext;
use tidemark::steps::watermark::{
    handle, parse_request, CommitResult, EditResult, GetResult, ListEntry, WatermarkRequest,
};
use tidemark::steps::Services;
use tidemark::watermark::{HistoryEntry, Watermark};
use tidemark::ErrorKind;
use tidemark_tests::s3::TestBucket;
use tidemark_tests::TestMysql;

const ACTIONS: [&str; 15] = [
    "prepare",
    "summarize",
    "begin",
    "commit",
    "commit_load",
    "fail",
    "get",
    "list",
    "set",
    "reset",
    "history",
    "restore",
    "unlock",
    "set_count",
    "validate_counts",
];

fn fixture(name: &str) -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/watermark/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_fixture_round_trips() {
    for action in ACTIONS {
        let payload = fixture(action);
        let request = parse_request(payload.clone()).unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(serde_json::to_value(&request).unwrap(), payload, "{action}");
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
        (
            json!({"action": "set", "table": "shop.orders", "timestamp": 5}),
            "invalid type",
        ),
    ];
    for (payload, expected) in cases {
        let err = parse_request(payload).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
        let text = err.to_string();
        assert!(text.contains(expected), "{text}");
        assert!(
            text.contains("actions are prepare, summarize, begin"),
            "{text}"
        );
    }
}

/// `fixture` retargeted at the test's pipeline `p` and table.
fn payload(action: &str, table: &str, run: Option<&Value>) -> WatermarkRequest {
    let mut value = fixture(action);
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
    if action == "commit" {
        object.insert("chunk_manifest_keys".into(), json!([]));
    }
    if action == "fail" {
        object.insert("run_id".into(), Value::Null);
    }
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn the_handler_answers_every_action() {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        let bucket = TestBucket::fresh().await?;
        let table = mysql.table("orders").to_string();
        let config = mysql.config(
            bucket.bucket().name(),
            "      \"{db}.orders\":\n        cursor_column: updated_at\n        lag: 0s\n",
        )?;
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

        let set: EditResult =
            serde_json::from_value(handle(&services, &payload("set", &table, None)).await?)?;
        assert_eq!(
            set.watermark.extract.cursor.timestamp.as_deref(),
            Some("2026-11-01 00:00:00.000000")
        );
        let got: GetResult =
            serde_json::from_value(handle(&services, &payload("get", &table, None)).await?)?;
        assert_eq!(
            got.watermark.unwrap().extract.cursor,
            set.watermark.extract.cursor
        );
        let listed: Vec<ListEntry> =
            serde_json::from_value(handle(&services, &payload("list", &table, None)).await?)?;
        assert_eq!(listed.len(), 1);
        let counted: EditResult =
            serde_json::from_value(handle(&services, &payload("set_count", &table, None)).await?)?;
        assert_eq!(counted.watermark.totals.rows_loaded, 1200);
        let unlocked: EditResult =
            serde_json::from_value(handle(&services, &payload("unlock", &table, None)).await?)?;
        assert!(
            unlocked.message.contains("no lease"),
            "{}",
            unlocked.message
        );
        let reset: EditResult =
            serde_json::from_value(handle(&services, &payload("reset", &table, None)).await?)?;
        assert!(reset.watermark.extract.cursor.is_start());
        let failed: Watermark =
            serde_json::from_value(handle(&services, &payload("fail", &table, None)).await?)?;
        assert_eq!(
            failed.load.error.as_deref(),
            Some("NonRetryable: copy failed")
        );

        let history: Vec<HistoryEntry> =
            serde_json::from_value(handle(&services, &payload("history", &table, None)).await?)?;
        assert!(history.len() >= 6, "{history:?}");
        let mut restore = serde_json::to_value(payload("restore", &table, None))?;
        // Oldest first; the third newest is the state between set_count and unlock.
        let before_set = &history[history.len() - 3];
        restore["version"] = json!(before_set.version);
        let restored: Watermark =
            serde_json::from_value(handle(&services, &serde_json::from_value(restore)?).await?)?;
        assert_eq!(
            restored.extract.cursor.timestamp.as_deref(),
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

        let missing = handle(&services, &payload("get", "nope.orders", None))
            .await
            .unwrap_err();
        assert!(missing.to_string().contains("in no pipeline"), "{missing}");
        bucket.remove().await?;
        Ok(())
    })
    .await
    .unwrap();
}

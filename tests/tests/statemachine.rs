//! statemachine/sync.asl.json executed by the local runner against scripted step functions:
//! every path of the per-table flow (full, backup_only, redshift_only, chunk continuations,
//! the load status loop, a failed table beside a healthy one) ends where it should.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};
use tidemark::asl::{InvokeFuture, Invoker, Outcome, RunnerOptions, StateMachine, TaskFailure};
use tidemark::steps::sync::{summarize_outcomes, TableOutcome};
use tidemark::steps::watermark::{parse_request, WatermarkRequest};

const DEFINITION: &str = include_str!("../../statemachine/sync.asl.json");
const FUNCTIONS: [&str; 3] = [
    "ExtractFunctionArn",
    "WatermarkFunctionArn",
    "LoadFunctionArn",
];

/// Answers each action like the real functions would, and records every call.
struct Script {
    calls: Mutex<Vec<(String, String, Value)>>,
    /// What `record_outcome` recorded, by table, for `summarize`.
    outcomes: Mutex<BTreeMap<String, TableOutcome>>,
    failing_table: Option<&'static str>,
    failing_load: bool,
    /// Every `status` answers `running`, as a batch that never ends.
    endless_load: bool,
    /// Every `status` answers `finished`, and `prepare` lists this many tables.
    instant_load_of: Option<usize>,
}

impl Script {
    fn new(failing_table: Option<&'static str>) -> Self {
        Script {
            calls: Mutex::new(Vec::new()),
            outcomes: Mutex::default(),
            failing_table,
            failing_load: false,
            endless_load: false,
            instant_load_of: None,
        }
    }

    fn actions(&self, table: &str) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, p)| p["table"] == table || p["run"]["table"] == table)
            .map(|(_, action, _)| action.clone())
            .collect()
    }

    fn count(&self, action: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, a, _)| a == action)
            .count()
    }
}

impl Invoker for Script {
    fn invoke<'a>(&'a self, resource: &'a str, payload: Value) -> InvokeFuture<'a> {
        Box::pin(async move {
            let action = payload["action"].as_str().unwrap_or_default().to_owned();
            let status_calls = self.count("status");
            self.calls
                .lock()
                .unwrap()
                .push((resource.to_owned(), action.clone(), payload.clone()));
            let run = &payload["run"];
            // As `status` counts: the state machine passes the calls so far.
            let polls = payload["polls"].as_u64().unwrap_or(0) + 1;
            Ok(match (resource, action.as_str()) {
                ("WatermarkFunctionArn", "prepare") if self.instant_load_of.is_some() => {
                    let tables: Vec<String> = (0..self.instant_load_of.unwrap_or_default())
                        .map(|i| format!("shop.t{i:04}"))
                        .collect();
                    // No table has `verify`: none enters `VerifyIfDue`.
                    let items: Vec<Value> = tables
                        .iter()
                        .map(|t| json!({"table": t, "verify": false, "after": []}))
                        .collect();
                    json!({"pipeline": "p", "tables": tables, "wave": {"items": items}, "mode": "full", "limit": null,
                           "repair": null, "table_concurrency": 8, "chunk_concurrency": 2,
                           "started_at": "2026-12-05T00:00:00Z"})
                }
                ("WatermarkFunctionArn", "prepare") if payload["input"].get("waves").is_some() => {
                    // The waves as `prepare` orders `depends_on`: [[{table, after}, …], …].
                    let waves = payload["input"]["waves"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let tables: Vec<Value> = waves
                        .iter()
                        .flat_map(|wave| wave.as_array().cloned().unwrap_or_default())
                        .map(|item| item["table"].clone())
                        .collect();
                    let wave = waves.iter().rev().fold(Value::Null, |rest, wave| {
                        let items: Vec<Value> = wave
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|item| json!({"table": item["table"], "verify": false, "after": item["after"]}))
                            .collect();
                        match rest {
                            Value::Null => json!({"items": items}),
                            rest => json!({"items": items, "rest": rest}),
                        }
                    });
                    json!({"pipeline": "p", "tables": tables, "wave": wave, "mode": "full", "limit": null,
                           "repair": null, "table_concurrency": 2, "chunk_concurrency": 2,
                           "started_at": "2026-12-05T00:00:00Z"})
                }
                ("WatermarkFunctionArn", "prepare") => {
                    let input = &payload["input"];
                    let tables = input
                        .get("tables")
                        .cloned()
                        .unwrap_or(json!(["shop.a", "shop.b"]));
                    // Every table has `verify` here.
                    let items: Vec<Value> = tables
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| json!({"table": t, "verify": true, "after": []}))
                        .collect();
                    json!({"pipeline": input["pipeline"], "tables": tables, "wave": {"items": items},
                           "mode": input.get("mode").cloned().unwrap_or(json!("full")), "limit": null,
                           "repair": null, "table_concurrency": 2, "chunk_concurrency": 2,
                           "started_at": "2026-12-05T00:00:00Z"})
                }
                ("WatermarkFunctionArn", "begin") => {
                    // As `steps::sync::check_dependencies`: each table of `after` must have
                    // recorded `succeeded` before this wave began.
                    let not_synced = payload["after"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .find(|dependency| {
                            self.outcomes
                                .lock()
                                .unwrap()
                                .get(*dependency)
                                .is_none_or(|outcome| outcome.status != "succeeded")
                        })
                        .map(str::to_owned);
                    if let Some(dependency) = not_synced {
                        return Err(TaskFailure {
                            error: "DependencyFailed".into(),
                            cause: format!(
                                "{{\"errorMessage\":\"not run: `{dependency}` failed\"}}"
                            ),
                        });
                    }
                    if Some(payload["table"].as_str().unwrap_or_default()) == self.failing_table {
                        return Err(TaskFailure {
                            error: "LeaseHeld".into(),
                            cause: "{\"errorMessage\":\"locked by run r0\"}".into(),
                        });
                    }
                    json!({"table": payload["table"], "run_id": format!("run-{}", payload["table"].as_str().unwrap_or_default().replace('.', "-")), "mode": payload["mode"]})
                }
                ("ExtractFunctionArn", "plan") => {
                    json!({"chunks": [{"chunk": 0}, {"chunk": 1}], "null_cursor_rows": 0, "estimated_rows": 10})
                }
                ("ExtractFunctionArn", "extract") => {
                    let chunk = payload["chunk"]["chunk"].as_u64().unwrap_or_default();
                    if payload["continuation"].is_null() {
                        json!({"chunk": chunk, "done": false, "continuation": {"next": 1}, "chunk_manifest_key": null, "rows": 5, "files": 1})
                    } else {
                        json!({"chunk": chunk, "done": true, "continuation": null, "chunk_manifest_key": format!("{}/chunk-{chunk}", run["table"].as_str().unwrap()), "rows": 5, "files": 1})
                    }
                }
                ("WatermarkFunctionArn", "commit") => {
                    json!({"rows": 20, "files": 4, "bytes": 400, "keys": payload["chunk_manifest_keys"]})
                }
                ("LoadFunctionArn", "submit") => {
                    json!({"runs": [run["run_id"]], "statement_id": "s1", "state": "submitted"})
                }
                ("LoadFunctionArn", "status") if self.failing_load => {
                    json!({"state": "failed", "loaded": [], "error": "serialization conflict 1023", "error_type": "Retryable", "remaining_runs": 0, "polls": polls, "wait_seconds": 5})
                }
                ("LoadFunctionArn", "status") if self.instant_load_of.is_some() => {
                    json!({"state": "finished", "loaded": [{"run_id": run["run_id"], "rows_loaded": 20}], "error": null, "polls": polls, "wait_seconds": 5})
                }
                ("LoadFunctionArn", "status") if self.endless_load => {
                    json!({"state": "running", "loaded": [], "error": null, "polls": polls, "wait_seconds": tidemark::steps::load::poll_wait_seconds(polls as u32)})
                }
                ("LoadFunctionArn", "status") => {
                    let state = if status_calls.is_multiple_of(2) {
                        "running"
                    } else {
                        "finished"
                    };
                    json!({"state": state, "loaded": [{"run_id": run["run_id"], "rows_loaded": 20}], "error": null, "polls": polls, "wait_seconds": 5})
                }
                ("WatermarkFunctionArn", "commit_load") | ("WatermarkFunctionArn", "fail") => {
                    json!({})
                }
                // `shop.b`'s verify cannot reach its source: retried, then caught.
                ("WatermarkFunctionArn", "verify_due") if payload["table"] == "shop.b" => {
                    return Err(TaskFailure {
                        error: "Retryable".into(),
                        cause: "{\"errorMessage\":\"the source sent nothing\"}".into(),
                    });
                }
                ("WatermarkFunctionArn", "verify_due") => {
                    json!({"verified": true, "equal": true, "differing": 0, "in_flight": 0})
                }
                ("WatermarkFunctionArn", "record_outcome") => {
                    let Ok(WatermarkRequest::RecordOutcome(request)) =
                        parse_request(payload.clone())
                    else {
                        return Err(TaskFailure {
                            error: "NonRetryable".into(),
                            cause: format!("bad record_outcome payload {payload}"),
                        });
                    };
                    let answer =
                        json!({"table": request.outcome.table, "status": request.outcome.status});
                    self.outcomes
                        .lock()
                        .unwrap()
                        .insert(request.outcome.table.clone(), request.outcome);
                    answer
                }
                ("WatermarkFunctionArn", "summarize") => {
                    let Ok(WatermarkRequest::Summarize(request)) = parse_request(payload.clone())
                    else {
                        return Err(TaskFailure {
                            error: "NonRetryable".into(),
                            cause: format!("bad summarize payload {payload}"),
                        });
                    };
                    let recorded = self.outcomes.lock().unwrap();
                    let outcomes = request
                        .tables
                        .iter()
                        .filter_map(|table| recorded.get(table).cloned())
                        .collect();
                    serde_json::to_value(summarize_outcomes(&request.pipeline, outcomes)).unwrap()
                }
                other => {
                    return Err(TaskFailure {
                        error: "NonRetryable".into(),
                        cause: format!("unexpected {other:?}"),
                    })
                }
            })
        })
    }
}

async fn execute(input: Value, script: &Script) -> Outcome {
    execute_counting(input, script).await.0
}

/// Runs the definition; also answers the runner's meters (transitions, executions).
async fn execute_counting(input: Value, script: &Script) -> (Outcome, RunnerOptions) {
    let machine = StateMachine::load(DEFINITION, &FUNCTIONS).unwrap();
    let options = RunnerOptions {
        wait_scale: 0.0,
        retry_scale: 0.0,
        execution_name: "test".into(),
        ..RunnerOptions::default()
    };
    let outcome = machine.execute(input, script, &options).await;
    (outcome, options)
}

#[tokio::test]
async fn a_full_sync_runs_every_stage_for_every_table() {
    let script = Script::new(None);
    let outcome = execute(json!({"pipeline": "default"}), &script).await;
    let Outcome::Succeeded(output) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(output["succeeded"], 2);
    assert_eq!(output["tables"][0]["rows_extracted"], 20);
    assert_eq!(output["tables"][1]["loaded"][0]["rows_loaded"], 20);
    for table in ["shop.a", "shop.b"] {
        let actions = script.actions(table);
        assert_eq!(
            actions.iter().filter(|a| *a == "extract").count(),
            4,
            "two chunks, each continued once: {actions:?}"
        );
        assert_eq!(actions.first().map(String::as_str), Some("begin"));
        assert_eq!(actions.last().map(String::as_str), Some("verify_due"));
    }
    // A verify runs after each load; one that fails leaves its table succeeded, the error kept.
    let tables = output["tables"].as_array().cloned().unwrap_or_default();
    let outcome = |name: &str| tables.iter().find(|t| t["table"] == name).cloned().unwrap();
    assert_eq!(outcome("shop.a")["verify"]["equal"], true);
    assert_eq!(outcome("shop.b")["status"], "succeeded");
    assert_eq!(outcome("shop.b")["verify_error"]["Error"], "Retryable");
    assert_eq!(
        script
            .actions("shop.b")
            .iter()
            .filter(|a| *a == "verify_due")
            .count(),
        3,
        "tried, then retried twice"
    );
    // The scripted `status` answers alternate running, finished across both tables: each load
    // is polled until its first `finished`, so two loads take exactly four polls.
    assert_eq!(script.count("status"), 4);
    let commit = script
        .calls
        .lock()
        .unwrap()
        .iter()
        .find(|(_, a, p)| a == "commit" && p["run"]["table"] == "shop.a")
        .cloned()
        .unwrap();
    assert_eq!(
        commit.2["chunk_manifest_keys"],
        json!(["shop.a/chunk-0", "shop.a/chunk-1"])
    );
}

#[tokio::test]
async fn backup_only_stops_after_commit_and_redshift_only_only_loads() {
    let script = Script::new(None);
    let outcome = execute(
        json!({"pipeline": "default", "tables": ["shop.a"], "mode": "backup_only"}),
        &script,
    )
    .await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    assert_eq!(
        script.actions("shop.a"),
        ["begin", "plan", "extract", "extract", "extract", "extract", "commit"]
    );

    let script = Script::new(None);
    let outcome = execute(
        json!({"pipeline": "default", "tables": ["shop.a"], "mode": "redshift_only"}),
        &script,
    )
    .await;
    let Outcome::Succeeded(output) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(output["tables"][0]["rows_extracted"], 0);
    let actions = script.actions("shop.a");
    assert!(
        !actions
            .iter()
            .any(|a| a == "plan" || a == "extract" || a == "commit"),
        "{actions:?}"
    );
    assert_eq!(actions.last().map(String::as_str), Some("verify_due"));
}

#[tokio::test]
async fn a_failed_table_is_recorded_and_fails_the_execution_while_others_finish() {
    let script = Script::new(Some("shop.a"));
    let outcome = execute(json!({"pipeline": "default"}), &script).await;
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.error, "TablesFailed");
    assert!(
        failure
            .cause
            .contains("shop.a failed: LeaseHeld: locked by run r0"),
        "{}",
        failure.cause
    );
    assert_eq!(script.actions("shop.a"), ["begin", "fail"]);
    assert_eq!(
        script.actions("shop.b").last().map(String::as_str),
        Some("verify_due")
    );
    let fail = script
        .calls
        .lock()
        .unwrap()
        .iter()
        .find(|(_, a, _)| a == "fail")
        .cloned()
        .unwrap();
    assert_eq!(fail.2["run_id"], Value::Null);
    assert_eq!(fail.2["error"]["Error"], "LeaseHeld");
}

/// Issue #19 part 2: waves run one after another; a table whose dependency failed, or was
/// skipped itself, is skipped with the reason and never begins a run.
#[tokio::test]
async fn tables_run_in_waves_and_a_failed_dependency_skips_its_dependents() {
    let script = Script::new(Some("shop.a"));
    let waves = json!([
        [{"table": "shop.a", "after": []}, {"table": "shop.b", "after": []}],
        [{"table": "shop.c", "after": ["shop.a"]}, {"table": "shop.d", "after": ["shop.b"]}],
        [{"table": "shop.e", "after": ["shop.c", "shop.d"]}, {"table": "shop.f", "after": ["shop.d"]}],
    ]);
    let outcome = execute(json!({"pipeline": "p", "waves": waves}), &script).await;
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.error, "TablesFailed");
    let statuses: BTreeMap<String, String> = script
        .outcomes
        .lock()
        .unwrap()
        .iter()
        .map(|(table, outcome)| (table.clone(), outcome.status.clone()))
        .collect();
    assert_eq!(
        statuses,
        BTreeMap::from(
            [
                ("shop.a", "failed"),
                ("shop.b", "succeeded"),
                ("shop.c", "skipped"),
                ("shop.d", "succeeded"),
                ("shop.e", "skipped"),
                ("shop.f", "succeeded"),
            ]
            .map(|(t, s)| (t.to_owned(), s.to_owned()))
        )
    );
    // A skipped table begins nothing and records no failure on its watermark.
    assert_eq!(script.actions("shop.c"), ["begin"]);
    assert_eq!(script.actions("shop.e"), ["begin"]);
    let recorded = script.outcomes.lock().unwrap();
    assert!(
        recorded["shop.e"].error.as_ref().unwrap()["Cause"]
            .as_str()
            .unwrap()
            .contains("`shop.c`"),
        "{:?}",
        recorded["shop.e"]
    );
    // Every table of a wave recorded its outcome before the next wave's first `begin`.
    let calls = script.calls.lock().unwrap();
    let position = |action: &str, table: &str| {
        calls
            .iter()
            .position(|(_, a, p)| {
                a == action && (p["table"] == table || p["outcome"]["table"] == table)
            })
            .unwrap()
    };
    for earlier in ["shop.a", "shop.b"] {
        for later in ["shop.c", "shop.d"] {
            assert!(position("record_outcome", earlier) < position("begin", later));
        }
    }
    for later in ["shop.e", "shop.f"] {
        assert!(position("record_outcome", "shop.d") < position("begin", later));
    }
    assert!(
        failure.cause.contains("shop.c skipped") && failure.cause.contains("shop.a failed"),
        "{}",
        failure.cause
    );
}

#[tokio::test]
async fn a_failed_load_batch_is_recorded_on_the_load_stage() {
    let mut script = Script::new(None);
    script.failing_load = true;
    let outcome = execute(
        json!({"pipeline": "default", "tables": ["shop.a"]}),
        &script,
    )
    .await;
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        failure
            .cause
            .contains("Retryable: serialization conflict 1023"),
        "{}",
        failure.cause
    );
    let actions = script.actions("shop.a");
    assert_eq!(
        actions.last().map(String::as_str),
        Some("fail"),
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| a == "commit_load"));
    let fail = script
        .calls
        .lock()
        .unwrap()
        .iter()
        .find(|(_, a, _)| a == "fail")
        .cloned()
        .unwrap();
    assert_eq!(fail.2["stage"], "load");
    assert_eq!(fail.2["run_id"], "run-shop-a");
}

/// Every `(function, action)` a Task of the definition sends.
fn task_actions(states: &Value, found: &mut Vec<(String, String)>) {
    for state in states.as_object().into_iter().flat_map(|s| s.values()) {
        if state["Type"] == "Task" {
            let resource = state["Resource"].as_str().unwrap_or_default();
            let function = resource.trim_start_matches("${").trim_end_matches('}');
            let action = state["Parameters"]["action"].as_str().unwrap_or_default();
            found.push((function.to_owned(), action.to_owned()));
        }
        if let Some(processor) = state.get("ItemProcessor") {
            task_actions(&processor["States"], found);
        }
    }
}

#[test]
fn every_action_the_definition_sends_is_one_its_function_dispatches() {
    let definition: Value = serde_json::from_str(DEFINITION).unwrap();
    let mut actions = Vec::new();
    task_actions(&definition["States"], &mut actions);
    assert!(actions.len() >= 8, "{actions:?}");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    for (function, action) in actions {
        let (dir, file) = match function.as_str() {
            "WatermarkFunctionArn" => ("watermark", format!("{action}.json")),
            "ExtractFunctionArn" => ("extract", format!("{action}_request.json")),
            "LoadFunctionArn" => ("load", format!("{action}.json")),
            other => panic!("unknown function {other}"),
        };
        let path = fixtures.join(dir).join(&file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{function} `{action}` has no golden fixture {}: {e}",
                path.display()
            )
        });
        let mut payload: Value = serde_json::from_str(&text).unwrap();
        payload["action"] = json!(action);
        let parsed = match function.as_str() {
            "WatermarkFunctionArn" => {
                tidemark::steps::watermark::parse_request(payload).map(|_| ())
            }
            "ExtractFunctionArn" => tidemark::steps::extract::parse_request(payload).map(|_| ()),
            _ => tidemark::steps::load::parse_request(payload).map(|_| ()),
        };
        assert!(
            parsed.is_ok(),
            "{function} does not dispatch `{action}`: {parsed:?}"
        );
    }
}

/// Every `lease_ttl` must outlive an execution (issue #26 item 6), and the config checks it
/// against `config::EXECUTION_TIMEOUT`: that constant is the definition's own timeout.
#[test]
fn the_config_knows_the_execution_timeout() {
    let definition: Value = serde_json::from_str(tidemark::steps::local_sync::DEFINITION).unwrap();
    assert_eq!(
        definition["TimeoutSeconds"].as_u64(),
        Some(tidemark::config::EXECUTION_TIMEOUT.as_secs())
    );
}

/// Issue #26 item 2: the load-status loop is bounded. `status` is asked at most `MAX_POLLS`
/// times, 5 s doubling to 60 s apart (the definition's Wait reads the answer's `wait_seconds`);
/// a batch that never ends fails its table as `Retryable` (the next sync loads what it did not)
/// and the other table finishes.
#[tokio::test]
async fn a_load_that_never_ends_stops_polling_after_max_polls() {
    let definition: Value = serde_json::from_str(DEFINITION).unwrap();
    let text = definition.to_string();
    assert!(
        text.contains(&format!(
            "\"NumericGreaterThanEquals\":{}",
            tidemark::steps::load::MAX_POLLS
        )),
        "the definition's poll limit is MAX_POLLS"
    );
    let waits: Vec<u64> = (1..=6)
        .map(tidemark::steps::load::poll_wait_seconds)
        .collect();
    assert_eq!(waits, [5, 10, 20, 40, 60, 60]);

    let mut script = Script::new(None);
    script.endless_load = true;
    let outcome = execute(json!({"pipeline": "p", "tables": ["shop.a"]}), &script).await;
    let Outcome::Failed(_) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        script.count("status"),
        tidemark::steps::load::MAX_POLLS as usize
    );
    let fail = script
        .calls
        .lock()
        .unwrap()
        .iter()
        .find(|(_, action, _)| action == "fail")
        .map(|(_, _, payload)| payload.clone())
        .expect("the table's failure is recorded");
    assert_eq!(fail["stage"], "load");
    assert_eq!(fail["error"]["Error"], "Retryable");
    assert!(fail["error"]["Cause"]
        .as_str()
        .unwrap()
        .contains("300 status polls"));
}

/// Issue #26, figures: a pipeline of `tables` tables, each with 2 chunks of one continuation and
/// a load finished at its first status. Every table runs as its own child execution of the
/// Distributed Map, so no history grows with the number of tables: the sync's own execution holds
/// 22 events whatever their number, and each table's 93. Transitions: 26 per table and 6 for the
/// sync (Prepare, SyncTables, MoreWaves?, Summarize, AnyTableFailed?, SyncSucceeded) — the
/// figures the README's cost estimate starts from. Every table is begun, committed and loaded exactly once.
async fn a_pipeline_of(tables: usize) {
    let mut script = Script::new(None);
    script.instant_load_of = Some(tables);
    let (outcome, options) = execute_counting(json!({"pipeline": "p"}), &script).await;
    let Outcome::Succeeded(output) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(output["succeeded"], tables, "{output}");
    for action in ["begin", "plan", "commit", "submit", "status", "commit_load"] {
        assert_eq!(script.count(action), tables, "{action}");
    }
    assert_eq!(script.count("extract"), tables * 2 * 2);
    // Tables without `verify` never enter `VerifyIfDue`.
    assert_eq!(script.count("verify_due"), 0);
    // Each child's `begin` records the sync's execution on the lease, not its own, so that the
    // sync's end releases it.
    let calls = script.calls.lock().unwrap().clone();
    assert!(calls
        .iter()
        .filter(|(_, action, _)| action == "begin")
        .all(|(_, _, payload)| payload["execution"] == "local:test"));
    let executions = options.executions.lock().unwrap().clone();
    assert_eq!(
        executions.len(),
        tables + 1,
        "one child execution per table"
    );
    let (sync, children): (Vec<_>, Vec<_>) = executions.iter().partition(|e| e.name == "test");
    assert_eq!(sync[0].history_events, 22, "{:?}", sync[0]);
    assert!(
        children
            .iter()
            .all(|child| child.history_events == 93 && child.transitions == 26),
        "{:?}",
        children.first()
    );
    assert_eq!(sync[0].transitions, 6);
    let transitions = options.transitions();
    assert_eq!(transitions, tables as u64 * 26 + 6);
    eprintln!(
        "{tables} tables: {} executions; history events: sync {}, each table {}; transitions: {} per table + {} = {transitions}",
        executions.len(),
        sync[0].history_events,
        children[0].history_events,
        children[0].transitions,
        sync[0].transitions,
    );
}

#[tokio::test]
async fn two_hundred_tables_run_as_child_executions_of_known_size() {
    a_pipeline_of(200).await;
}

/// A thousand tables fit every quota: their statuses fit the Map's result, and no history grows.
#[tokio::test]
async fn a_thousand_tables_fit_every_quota() {
    a_pipeline_of(1000).await;
}

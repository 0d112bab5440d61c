//! The runner's tests: every supported construct, and what is refused at load.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Records calls; `flaky` fails its first N calls with `Retryable`.
struct Recorder {
    calls: Mutex<Vec<(String, Value)>>,
    failures_left: AtomicU32,
    error: &'static str,
}

impl Recorder {
    fn new(failures: u32, error: &'static str) -> Self {
        Recorder {
            calls: Mutex::new(Vec::new()),
            failures_left: AtomicU32::new(failures),
            error,
        }
    }
}

impl Invoker for Recorder {
    fn invoke<'a>(&'a self, resource: &'a str, payload: Value) -> InvokeFuture<'a> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push((resource.to_owned(), payload.clone()));
            if self.failures_left.load(Ordering::SeqCst) > 0 {
                self.failures_left.fetch_sub(1, Ordering::SeqCst);
                return Err(TaskFailure {
                    error: self.error.to_owned(),
                    cause: "boom".to_owned(),
                });
            }
            Ok(serde_json::json!({"echo": payload}))
        })
    }
}

fn fast() -> RunnerOptions {
    RunnerOptions {
        wait_scale: 0.0,
        retry_scale: 0.0,
        execution_name: "t".into(),
        ..RunnerOptions::default()
    }
}

async fn run(definition: Value, input: Value, invoker: &Recorder) -> Outcome {
    let machine = StateMachine::load(&definition.to_string(), &["Fn"]).unwrap();
    machine.execute(input, invoker, &fast()).await
}

#[tokio::test]
async fn task_parameters_result_selector_and_paths() {
    let definition = serde_json::json!({
        "StartAt": "T",
        "States": {"T": {
            "Type": "Task", "Resource": "${Fn}",
            "InputPath": "$.inner",
            "Parameters": {"action": "x", "value.$": "$.v", "name.$": "$$.Execution.Name"},
            "ResultSelector": {"got.$": "$.echo.value"},
            "ResultPath": "$.result",
            "OutputPath": "$.result",
            "End": true
        }}
    });
    let recorder = Recorder::new(0, "");
    let outcome = run(
        definition,
        serde_json::json!({"inner": {"v": 7}}),
        &recorder,
    )
    .await;
    assert_eq!(outcome, Outcome::Succeeded(serde_json::json!({"got": 7})));
    assert_eq!(
        recorder.calls.lock().unwrap()[0].1,
        serde_json::json!({"action": "x", "value": 7, "name": "t"})
    );
}

#[tokio::test]
async fn retry_then_success_and_catch_when_exhausted() {
    let retrying = |max| {
        serde_json::json!({
            "StartAt": "T",
            "States": {
                "T": {"Type": "Task", "Resource": "${Fn}", "Next": "Done",
                      "Retry": [{"ErrorEquals": ["Retryable"], "MaxAttempts": max, "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxDelaySeconds": 5}],
                      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}]},
                "Done": {"Type": "Succeed"},
                "Caught": {"Type": "Pass", "End": true}
            }
        })
    };
    let recorder = Recorder::new(2, "Retryable");
    assert!(matches!(
        run(retrying(2), serde_json::json!({}), &recorder).await,
        Outcome::Succeeded(_)
    ));
    assert_eq!(recorder.calls.lock().unwrap().len(), 3);

    let recorder = Recorder::new(5, "Retryable");
    let outcome = run(retrying(1), serde_json::json!({"keep": 1}), &recorder).await;
    assert_eq!(
        outcome,
        Outcome::Succeeded(
            serde_json::json!({"keep": 1, "error": {"Error": "Retryable", "Cause": "boom"}})
        )
    );
    assert_eq!(recorder.calls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn non_retryable_errors_are_not_retried() {
    let definition = serde_json::json!({
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "${Fn}", "End": true,
            "Retry": [{"ErrorEquals": ["Retryable"], "MaxAttempts": 5}]}}
    });
    let recorder = Recorder::new(1, "NonRetryable");
    let outcome = run(definition, serde_json::json!({}), &recorder).await;
    assert_eq!(
        outcome,
        Outcome::Failed(TaskFailure {
            error: "NonRetryable".into(),
            cause: "boom".into()
        })
    );
    assert_eq!(recorder.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn choice_wait_and_fail() {
    let definition = serde_json::json!({
        "StartAt": "C",
        "States": {
            "C": {"Type": "Choice", "Choices": [
                {"And": [{"Variable": "$.n", "NumericGreaterThan": 1}, {"Variable": "$.s", "StringEquals": "go"}], "Next": "W"},
                {"Variable": "$.missing", "IsPresent": false, "Next": "F"}
            ], "Default": "F"},
            "W": {"Type": "Wait", "Seconds": 30, "Next": "P"},
            "P": {"Type": "Pass", "Result": {"ok": true}, "End": true},
            "F": {"Type": "Fail", "Error": "Nope", "CausePath": "$.s"}
        }
    });
    let recorder = Recorder::new(0, "");
    assert_eq!(
        run(
            definition.clone(),
            serde_json::json!({"n": 2, "s": "go"}),
            &recorder
        )
        .await,
        Outcome::Succeeded(serde_json::json!({"ok": true}))
    );
    assert_eq!(
        run(
            definition,
            serde_json::json!({"n": 0, "s": "stop"}),
            &recorder
        )
        .await,
        Outcome::Failed(TaskFailure {
            error: "Nope".into(),
            cause: "stop".into()
        })
    );
}

#[tokio::test]
async fn map_keeps_item_order_and_uses_item_selector() {
    let definition = serde_json::json!({
        "StartAt": "M",
        "States": {"M": {
            "Type": "Map", "ItemsPath": "$.items", "MaxConcurrencyPath": "$.n",
            "ItemSelector": {"value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "tag.$": "$.tag"},
            "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "${Fn}", "OutputPath": "$.echo", "End": true}}},
            "ResultPath": "$.results", "End": true
        }}
    });
    let recorder = Recorder::new(0, "");
    let outcome = run(
        definition,
        serde_json::json!({"items": ["a", "b", "c"], "n": 2, "tag": "t"}),
        &recorder,
    )
    .await;
    let Outcome::Succeeded(output) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        output["results"],
        serde_json::json!([
            {"value": "a", "index": 0, "tag": "t"}, {"value": "b", "index": 1, "tag": "t"}, {"value": "c", "index": 2, "tag": "t"}
        ])
    );
}

#[tokio::test]
async fn a_missing_path_is_a_runtime_error_that_catch_sees() {
    let definition = serde_json::json!({
        "StartAt": "P",
        "States": {
            "P": {"Type": "Pass", "Parameters": {"x.$": "$.absent"}, "End": true}
        }
    });
    let outcome = run(definition, serde_json::json!({}), &Recorder::new(0, "")).await;
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.error, "States.Runtime");
    assert!(failure.cause.contains("$.absent"), "{}", failure.cause);
}

#[test]
fn the_sync_definition_loads() {
    let text = include_str!("../../../statemachine/sync.asl.json");
    StateMachine::load(
        text,
        &[
            "ExtractFunctionArn",
            "WatermarkFunctionArn",
            "LoadFunctionArn",
        ],
    )
    .unwrap();
    let err = StateMachine::load(text, &["WatermarkFunctionArn"]).unwrap_err();
    assert!(err.to_string().contains("ExtractFunctionArn"), "{err}");
}

#[test]
fn unsupported_constructs_are_refused_at_load_naming_the_state() {
    let cases = [
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Parallel", "End": true}}}),
            "type `Parallel`",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "Y"}}}),
            "unknown state `Y`",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Task", "Resource": "arn:aws:lambda:x", "End": true}}}),
            "not a `${Name}`",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Task", "Resource": "${Other}", "End": true}}}),
            "not one of",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Pass", "Heartbeat": 3, "End": true}}}),
            "field `Heartbeat`",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Pass"}}}),
            "neither `Next` nor `End`",
        ),
    ];
    for (definition, expected) in cases {
        let err = StateMachine::load(&definition.to_string(), &["Fn"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("state `X`") && err.contains(expected), "{err}");
    }
}

#[test]
fn a_jitter_strategy_other_than_full_or_none_is_refused_naming_the_state() {
    let text = r#"{"StartAt": "Pick", "States": {"Pick": {"Type": "Task",
        "Resource": "${F}", "End": true,
        "Retry": [{"ErrorEquals": ["Retryable"], "JitterStrategy": "HALF"}]}}}"#;
    let err = StateMachine::load(text, &["F"]).unwrap_err().to_string();
    assert!(
        err.contains("Pick") && err.contains("`JitterStrategy` is `FULL` or `NONE`"),
        "{err}"
    );
    let full = text.replace("HALF", "FULL");
    assert!(StateMachine::load(&full, &["F"]).is_ok());
}

#[test]
fn choice_rules_result_paths_and_map_fields_are_checked_at_load() {
    let cases = [
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Choice", "Default": "Y",
                "Choices": [{"Variable": "$.a", "StringMatches": "a*", "Next": "Y"}]},
                "Y": {"Type": "Succeed"}}}),
            "unknown field `StringMatches`",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Choice", "Default": "Y",
                "Choices": [{"Variable": "$.a", "StringEquals": "a", "IsPresent": true, "Next": "Y"}]},
                "Y": {"Type": "Succeed"}}}),
            "exactly one comparison",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Choice", "Default": "Y",
                "Choices": [{"Variable": "$.a", "IsPresent": true, "Next": "Z"}]},
                "Y": {"Type": "Succeed"}}}),
            "unknown state `Z`",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Pass", "ResultPath": "$.a[0]", "End": true}}}),
            "may only name fields",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Map", "End": true,
                "Retry": [{"ErrorEquals": ["States.ALL"]}],
                "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}}}),
            "unknown field `Retry`",
        ),
        (
            serde_json::json!({"StartAt": "X", "States": {"X": {"Type": "Map", "End": true,
                "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Task", "Resource": "${Other}", "End": true}}}}}}),
            "state `X/I`",
        ),
    ];
    for (definition, expected) in cases {
        let err = StateMachine::load(&definition.to_string(), &["Fn"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state `X") && err.contains(expected),
            "{expected}: {err}"
        );
    }
}

/// A Task in a loop, caught by `States.ALL`: the history quota ends the execution anyway,
/// uncaught, at the event that passes it.
#[tokio::test]
async fn the_history_quota_fails_an_endless_loop_uncaught() {
    let definition = serde_json::json!({
        "StartAt": "T",
        "States": {
            "T": {"Type": "Task", "Resource": "${Fn}", "ResultPath": null, "Next": "T",
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
            "Caught": {"Type": "Succeed"}
        }
    });
    let options = fast();
    let machine = StateMachine::load(&definition.to_string(), &["Fn"]).unwrap();
    let recorder = Recorder::new(0, "");
    let outcome = machine
        .execute(serde_json::json!({}), &recorder, &options)
        .await;
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.error, "States.Runtime");
    assert!(failure.cause.contains("25000"), "{}", failure.cause);
    // Five events a loop (entered, scheduled, started, succeeded, exited) after ExecutionStarted.
    assert_eq!(recorder.calls.lock().unwrap().len(), 4999);
    let executions = options.executions.lock().unwrap();
    assert!(!executions[0].succeeded);
}

/// A state whose output passes 256 KiB fails the execution with `States.DataLimitExceeded`,
/// which `States.ALL` does not catch.
#[tokio::test]
async fn the_payload_quota_fails_an_oversized_output_uncaught() {
    let big = "x".repeat(PAYLOAD_QUOTA_BYTES);
    let definition = serde_json::json!({
        "StartAt": "P",
        "States": {
            "P": {"Type": "Pass", "Result": big, "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    });
    let outcome = run(definition, serde_json::json!({}), &Recorder::new(0, "")).await;
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.error, "States.DataLimitExceeded");
    assert!(failure.cause.contains("state `P`"), "{}", failure.cause);
}

/// A Distributed Map runs each item as a child execution with its own `$$.Execution` and
/// history; a failed child fails the Map only beyond `ToleratedFailurePercentage`.
#[tokio::test]
async fn a_distributed_map_runs_child_executions_within_its_tolerance() {
    let definition = |tolerated: u32| {
        serde_json::json!({
            "StartAt": "M",
            "States": {"M": {
                "Type": "Map", "ItemsPath": "$.items", "Label": "item",
                "ToleratedFailurePercentage": tolerated,
                "ItemSelector": {"n.$": "$$.Map.Item.Value", "parent.$": "$$.Execution.Id"},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "T",
                    "States": {"T": {"Type": "Task", "Resource": "${Fn}",
                        "Parameters": {"n.$": "$.n", "parent.$": "$.parent", "me.$": "$$.Execution.Name"},
                        "End": true}}
                },
                "End": true
            }}
        })
    };
    let input = serde_json::json!({"items": [1, 2, 3, 4]});
    // The first call fails (not retried): one child of four.
    let options = fast();
    let machine = StateMachine::load(&definition(25).to_string(), &["Fn"]).unwrap();
    let outcome = machine
        .execute(input.clone(), &Recorder::new(1, "Boom"), &options)
        .await;
    let Outcome::Succeeded(output) = outcome else {
        panic!("{outcome:?}")
    };
    let failed: Vec<_> = output
        .as_array()
        .unwrap()
        .iter()
        .filter(|result| result["Error"] == "Boom")
        .collect();
    assert_eq!(failed.len(), 1, "{output}");
    let echoed = output
        .as_array()
        .unwrap()
        .iter()
        .find(|result| result["Error"].is_null())
        .unwrap();
    assert_eq!(echoed["echo"]["parent"], "local:t");
    assert!(echoed["echo"]["me"].as_str().unwrap().starts_with("item:"));
    let executions = options.executions.lock().unwrap().clone();
    assert_eq!(executions.len(), 5, "four children and the execution");
    assert_eq!(executions.iter().filter(|e| !e.succeeded).count(), 1);

    let outcome = run(definition(20), input, &Recorder::new(1, "Boom")).await;
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.error, "States.ExceedToleratedFailureThreshold");
}

/// `States.ALL` does not catch `States.Runtime` (nor `States.DataLimitExceeded`): a Task whose
/// `Parameters` read a missing path fails the execution although it has a `Catch`.
#[tokio::test]
async fn states_all_does_not_catch_a_runtime_error() {
    let definition = serde_json::json!({
        "StartAt": "T",
        "States": {
            "T": {"Type": "Task", "Resource": "${Fn}", "Parameters": {"x.$": "$.absent"},
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
            "Caught": {"Type": "Succeed"}
        }
    });
    let outcome = run(definition, serde_json::json!({}), &Recorder::new(0, "")).await;
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(failure.error, "States.Runtime");
}

//! Running a checked machine: one state after another, Tasks through the [`Invoker`] with their
//! `Retry` and `Catch`, Map iterations concurrently up to their limit (a Distributed Map's as
//! child executions), the billed state transitions and the history events counted, and the
//! history and payload quotas enforced.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;

use super::model::{
    substitution_name, Catcher, Fail, Jitter, Machine, Map, Pass, Retrier, State, Task, Wait,
};
use super::path::{place_result, read_path, render, select};
use super::{
    ExecutionRecord, Invoker, RunnerOptions, TaskFailure, HISTORY_EVENT_QUOTA, PAYLOAD_QUOTA_BYTES,
};

/// One execution: its name and id (`$$.Execution`), and its meters.
pub(super) struct Execution {
    name: String,
    id: String,
    history_events: AtomicU64,
    transitions: AtomicU64,
}

impl Execution {
    pub fn new(name: String, id: String) -> Execution {
        Execution {
            name,
            id,
            history_events: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
        }
    }

    /// Records `events` history events; past the quota the execution fails, uncaught.
    fn record_events(&self, events: u64) -> Result<(), TaskFailure> {
        let total = self.history_events.fetch_add(events, Ordering::Relaxed) + events;
        if total > HISTORY_EVENT_QUOTA {
            return Err(TaskFailure {
                error: "States.Runtime".to_owned(),
                cause: format!(
                    "execution `{}` reached the {HISTORY_EVENT_QUOTA} history events an execution may hold",
                    self.name
                ),
            });
        }
        Ok(())
    }
}

/// What every state of one execution sees.
pub(super) struct Context<'a> {
    pub invoker: &'a dyn Invoker,
    pub options: &'a RunnerOptions,
    pub execution_input: Value,
    pub execution: Execution,
}

/// Runs `machine` as one execution (the one started, or a Distributed Map's child): its
/// `ExecutionStarted` and closing events counted, its output held to the payload quota, and its
/// record kept in `options.executions`.
pub(super) async fn run_execution(
    machine: &Machine,
    input: Value,
    invoker: &dyn Invoker,
    options: &RunnerOptions,
    execution: Execution,
) -> Result<Value, TaskFailure> {
    let context = Context {
        invoker,
        options,
        execution_input: input.clone(),
        execution,
    };
    let result = match context.execution.record_events(1) {
        Ok(()) => run_machine(machine, input, &context, Value::Null).await,
        Err(failure) => Err(failure),
    };
    // `ExecutionSucceeded` or `ExecutionFailed`: the history's last event, whatever the quota.
    context
        .execution
        .history_events
        .fetch_add(1, Ordering::Relaxed);
    let record = ExecutionRecord {
        name: context.execution.name.clone(),
        history_events: context.execution.history_events.load(Ordering::Relaxed),
        transitions: context.execution.transitions.load(Ordering::Relaxed),
        succeeded: result.is_ok(),
    };
    if let Ok(mut executions) = options.executions.lock() {
        executions.push(record);
    }
    result
}

/// History events a state records besides its Task attempts and Map iterations: entered and
/// exited (`MapStateStarted`/`MapRunStarted` and their ends too, for a Map); a Fail only enters.
fn state_events(state: &State) -> u64 {
    match state {
        State::Map(_) => 4,
        State::Fail(_) => 1,
        _ => 2,
    }
}

/// Fails the execution, uncaught, when a state's output exceeds the payload quota.
fn check_payload(name: &str, output: &Value) -> Result<(), TaskFailure> {
    let bytes = serde_json::to_vec(output).map_or(0, |text| text.len());
    if bytes > PAYLOAD_QUOTA_BYTES {
        return Err(TaskFailure {
            error: "States.DataLimitExceeded".to_owned(),
            cause: format!(
                "state `{name}`: its output is {bytes} bytes, over the {PAYLOAD_QUOTA_BYTES} a state may pass on"
            ),
        });
    }
    Ok(())
}

type StateResult = Result<(Value, Option<String>), TaskFailure>;

fn runtime_failure(state: &str, message: impl std::fmt::Display) -> TaskFailure {
    TaskFailure {
        error: "States.Runtime".to_owned(),
        cause: format!("state `{state}`: {message}"),
    }
}

/// Runs `machine` from its `StartAt` until a state ends it.
fn run_machine<'a>(
    machine: &'a Machine,
    input: Value,
    context: &'a Context<'a>,
    map_item: Value,
) -> Pin<Box<dyn Future<Output = Result<Value, TaskFailure>> + Send + 'a>> {
    Box::pin(async move {
        let mut name = machine.start_at.clone();
        let mut data = input;
        loop {
            let state = machine
                .states
                .get(&name)
                .ok_or_else(|| runtime_failure(&name, "no such state"))?;
            context
                .execution
                .transitions
                .fetch_add(1, Ordering::Relaxed);
            context.execution.record_events(state_events(state))?;
            let (output, next) = run_state(&name, state, data, context, &map_item).await?;
            check_payload(&name, &output)?;
            data = output;
            match next {
                Some(next) => name = next,
                None => return Ok(data),
            }
        }
    })
}

/// The context object `$$` for paths: execution input and name, and the Map item.
fn context_object(context: &Context<'_>, map_item: &Value) -> Value {
    serde_json::json!({
        "Execution": {
            "Id": context.execution.id,
            "Input": context.execution_input,
            "Name": context.execution.name,
        },
        "Map": {"Item": map_item},
    })
}

async fn run_state(
    name: &str,
    state: &State,
    input: Value,
    context: &Context<'_>,
    map_item: &Value,
) -> StateResult {
    let ctx = context_object(context, map_item);
    let path_error = |err: String| runtime_failure(name, err);
    match state {
        State::Succeed(succeed) => {
            let selected = select(&succeed.input_path, input).map_err(path_error)?;
            Ok((
                select(&succeed.output_path, selected).map_err(path_error)?,
                None,
            ))
        }
        State::Fail(fail) => Err(fail_with(fail, &input, &ctx).map_err(path_error)?),
        State::Choice(choice) => {
            let selected = select(&choice.input_path, input).map_err(path_error)?;
            let mut target = None;
            for rule in &choice.choices {
                if rule.condition.holds(&selected, &ctx).map_err(path_error)? {
                    target = Some(rule.next.clone());
                    break;
                }
            }
            let target = target
                .or_else(|| choice.default.clone())
                .ok_or_else(|| TaskFailure {
                    error: "States.NoChoiceMatched".to_owned(),
                    cause: format!("state `{name}`: no choice matched"),
                })?;
            Ok((
                select(&choice.output_path, selected).map_err(path_error)?,
                Some(target),
            ))
        }
        State::Wait(wait) => run_wait(wait, input, context, &ctx)
            .await
            .map_err(path_error),
        State::Pass(pass) => run_pass(pass, input, &ctx).map_err(path_error),
        State::Task(task) => match run_task(name, task, input.clone(), context, &ctx).await {
            Ok(output) => Ok((output, task.next.clone())),
            Err(failure) => catch(name, &task.catch, input, failure),
        },
        State::Map(map) => match run_map(name, map, input.clone(), context, &ctx).await {
            Ok(output) => Ok((output, map.next.clone())),
            Err(failure) => catch(name, &map.catch, input, failure),
        },
    }
}

fn fail_with(fail: &Fail, input: &Value, ctx: &Value) -> Result<TaskFailure, String> {
    let cause = match &fail.cause_path {
        Some(path) => {
            let value = read_path(input, ctx, path)?;
            value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string())
        }
        None => fail.cause.clone().unwrap_or_default(),
    };
    Ok(TaskFailure {
        error: fail
            .error
            .clone()
            .unwrap_or_else(|| "States.Fail".to_owned()),
        cause,
    })
}

async fn run_wait(
    wait: &Wait,
    input: Value,
    context: &Context<'_>,
    ctx: &Value,
) -> Result<(Value, Option<String>), String> {
    let selected = select(&wait.input_path, input)?;
    let seconds = match &wait.seconds_path {
        Some(path) => read_path(&selected, ctx, path)?.as_f64().unwrap_or(0.0),
        None => wait.seconds.unwrap_or(0.0),
    };
    tokio::time::sleep(Duration::from_secs_f64(
        (seconds * context.options.wait_scale).max(0.0),
    ))
    .await;
    Ok((select(&wait.output_path, selected)?, wait.next.clone()))
}

fn run_pass(pass: &Pass, input: Value, ctx: &Value) -> Result<(Value, Option<String>), String> {
    let selected = select(&pass.input_path, input.clone())?;
    let result = match (&pass.result, &pass.parameters) {
        (Some(result), _) => result.clone(),
        (None, Some(template)) => render(template, &selected, ctx)?,
        (None, None) => selected,
    };
    let merged = place_result(&pass.result_path, input, result)?;
    Ok((select(&pass.output_path, merged)?, pass.next.clone()))
}

/// Routes a failure to the first matching `Catch`, or passes it on.
fn catch(name: &str, catchers: &[Catcher], input: Value, failure: TaskFailure) -> StateResult {
    match catchers
        .iter()
        .find(|catcher| error_matches(&catcher.error_equals, &failure.error))
    {
        Some(catcher) => {
            let error = serde_json::json!({"Error": failure.error, "Cause": failure.cause});
            let output = place_result(&catcher.result_path, input, error)
                .map_err(|e| runtime_failure(name, e))?;
            Ok((output, Some(catcher.next.clone())))
        }
        None => Err(failure),
    }
}

/// Whether a `Retry` or `Catch` rule applies. `States.ALL` matches every error but the terminal
/// `States.DataLimitExceeded` and `States.Runtime` (Step Functions developer guide, "Handling
/// errors", "Error names").
fn error_matches(error_equals: &[String], error: &str) -> bool {
    error_equals.iter().any(|name| match name.as_str() {
        "States.ALL" => !matches!(error, "States.DataLimitExceeded" | "States.Runtime"),
        "States.TaskFailed" => !error.starts_with("States.") || error == "States.TaskFailed",
        other => other == error,
    })
}

/// A Task: its input shaped by `InputPath` and `Parameters`, the call retried by `Retry`, the
/// answer shaped by `ResultSelector`, `ResultPath` and `OutputPath`.
async fn run_task(
    name: &str,
    task: &Task,
    input: Value,
    context: &Context<'_>,
    ctx: &Value,
) -> Result<Value, TaskFailure> {
    let path_error = |err: String| runtime_failure(name, err);
    let selected = select(&task.input_path, input.clone()).map_err(path_error)?;
    let payload = match &task.parameters {
        Some(template) => render(template, &selected, ctx).map_err(path_error)?,
        None => selected,
    };
    let result = invoke_with_retry(name, task, payload, context).await?;
    let result = match &task.result_selector {
        Some(selector) => render(selector, &result, ctx).map_err(path_error)?,
        None => result,
    };
    let merged = place_result(&task.result_path, input, result).map_err(path_error)?;
    select(&task.output_path, merged).map_err(path_error)
}

async fn invoke_with_retry(
    name: &str,
    task: &Task,
    payload: Value,
    context: &Context<'_>,
) -> Result<Value, TaskFailure> {
    // Checked when the definition loaded.
    let resource = substitution_name(&task.resource).unwrap_or_default();
    let mut attempts_by_rule = vec![0u64; task.retry.len()];
    loop {
        // Scheduled, started, and succeeded or failed.
        context.execution.record_events(3)?;
        let failure = match context.invoker.invoke(resource, payload.clone()).await {
            Ok(output) => return Ok(output),
            Err(failure) => failure,
        };
        let Some(index) = task
            .retry
            .iter()
            .position(|rule| error_matches(&rule.error_equals, &failure.error))
        else {
            return Err(failure);
        };
        let rule = &task.retry[index];
        let attempt = attempts_by_rule[index];
        if attempt >= rule.max_attempts {
            return Err(failure);
        }
        attempts_by_rule[index] += 1;
        let delay = retry_delay(rule, attempt);
        tracing::warn!(state = name, error = %failure.error, attempt = attempt + 1, delay_seconds = delay, "retrying task");
        tokio::time::sleep(Duration::from_secs_f64(
            (delay * context.options.retry_scale).max(0.0),
        ))
        .await;
    }
}

/// The wait before retry number `attempt` (0-based) under `rule`.
fn retry_delay(rule: &Retrier, attempt: u64) -> f64 {
    let mut delay = rule.interval_seconds
        * rule
            .backoff_rate
            .powi(i32::try_from(attempt).unwrap_or(i32::MAX));
    if let Some(max) = rule.max_delay_seconds {
        delay = delay.min(max);
    }
    if rule.jitter_strategy == Jitter::Full {
        // As Step Functions does: a random delay between 0 and the computed one, so that
        // tables failing together do not retry together.
        delay *= (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
    }
    delay
}

/// A Map: every item of `ItemsPath` through the processor, at most `MaxConcurrency` (or the
/// number at `MaxConcurrencyPath`; 0 = all) at once, results in item order. Inline, iterations
/// share the execution's history; distributed, each is a child execution with its own, a failed
/// child's place in the results holds its error and cause, and the Map fails
/// (`States.ExceedToleratedFailureThreshold`) when more than `ToleratedFailurePercentage` of its
/// children failed.
async fn run_map(
    name: &str,
    map: &Map,
    input: Value,
    context: &Context<'_>,
    ctx: &Value,
) -> Result<Value, TaskFailure> {
    let path_error = |err: String| runtime_failure(name, err);
    let selected = select(&map.input_path, input.clone()).map_err(path_error)?;
    let items = read_path(&selected, ctx, &map.items_path)
        .map_err(path_error)?
        .as_array()
        .cloned()
        .ok_or_else(|| runtime_failure(name, format!("`{}` is not an array", map.items_path)))?;
    let concurrency = match &map.max_concurrency_path {
        Some(path) => read_path(&selected, ctx, path)
            .map_err(path_error)?
            .as_u64()
            .unwrap_or(0),
        None => map.max_concurrency.unwrap_or(0),
    };
    let limit = match concurrency {
        0 => items.len().max(1),
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let selected = &selected;
    let total = items.len();
    let failed_children = &AtomicU64::new(0);
    let results = stream::iter(items.into_iter().enumerate())
        .map(|(index, value)| async move {
            let item = serde_json::json!({"Index": index, "Value": value});
            let item_ctx = context_object(context, &item);
            let item_input = match &map.item_selector {
                Some(template) => {
                    render(template, selected, &item_ctx).map_err(|e| runtime_failure(name, e))?
                }
                None => item["Value"].clone(),
            };
            let Some(distributed) = &map.distributed else {
                // MapIterationStarted, and MapIterationSucceeded or MapIterationFailed.
                context.execution.record_events(2)?;
                return run_machine(&map.processor, item_input, context, item).await;
            };
            let child_name = format!("{}:{index}", distributed.label);
            let child = Execution::new(
                child_name.clone(),
                format!("{}/{child_name}", context.execution.id),
            );
            let options = context.options;
            Ok(
                match run_execution(&map.processor, item_input, context.invoker, options, child)
                    .await
                {
                    Ok(output) => output,
                    Err(failure) => {
                        failed_children.fetch_add(1, Ordering::Relaxed);
                        serde_json::json!({"Error": failure.error, "Cause": failure.cause})
                    }
                },
            )
        })
        .buffered(limit)
        .try_collect::<Vec<Value>>()
        .await
        .map(Value::Array)?;
    if let Some(distributed) = &map.distributed {
        let failed = failed_children.load(Ordering::Relaxed);
        if failed as f64 * 100.0 > distributed.tolerated_failure_percentage * total as f64 {
            return Err(TaskFailure {
                error: "States.ExceedToleratedFailureThreshold".to_owned(),
                cause: format!(
                    "state `{name}`: {failed} of {total} child executions failed, more than the tolerated {}%",
                    distributed.tolerated_failure_percentage
                ),
            });
        }
    }
    let results = match &map.result_selector {
        Some(selector) => render(selector, &results, ctx).map_err(path_error)?,
        None => results,
    };
    let merged = place_result(&map.result_path, input, results).map_err(path_error)?;
    select(&map.output_path, merged).map_err(path_error)
}

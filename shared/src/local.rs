//! The local runner: interprets the subset of Amazon States Language that
//! `statemachine/sync.asl.json` uses, so the one orchestration definition runs in AWS and in
//! process alike.
//!
//! Supported: Task, Pass, Choice, Wait, Map (inline), Succeed, Fail; InputPath, Parameters and
//! ItemSelector (`.$` keys, `$$` context), ResultSelector, ResultPath, OutputPath; Retry
//! (ErrorEquals incl. `States.ALL`, IntervalSeconds, MaxAttempts, BackoffRate, MaxDelaySeconds,
//! JitterStrategy)
//! and Catch; JSONPath of the form `$`, `$.a.b`, `$.a[0]`. Anything else is refused when the
//! definition is loaded, naming the state. Task resources resolve through their
//! `${Substitution}` name to an [`Invoker`] — never to a network call.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A Task's failure, as Step Functions sees it: an error name (the Lambda `errorType`) and a cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// Error name, matched by `ErrorEquals`.
    pub error: String,
    /// Human-readable cause.
    pub cause: String,
}

/// A boxed future returned by an [`Invoker`].
pub type InvokeFuture<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<Value, TaskFailure>> + Send + 'a>>;

/// Runs a Task's resource.
pub trait Invoker: Sync {
    /// Calls the function named by `resource` (the `${Substitution}` name) with `payload`.
    fn invoke<'a>(&'a self, resource: &'a str, payload: Value) -> InvokeFuture<'a>;
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Succeeded with this output.
    Succeeded(Value),
    /// Failed with this error and cause.
    Failed(TaskFailure),
}

/// Settings of a local execution.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Wait states sleep their time multiplied by this (1.0 = as written). Tests shorten waits
    /// here, explicitly; nothing shortens them silently.
    pub wait_scale: f64,
    /// Retry intervals are multiplied by this too.
    pub retry_scale: f64,
    /// The execution's name (`$$.Execution.Name`).
    pub execution_name: String,
    /// Counts every state entered — Step Functions' billed "state transitions" — across the
    /// execution and its Map iterations.
    pub transitions: Arc<AtomicU64>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            wait_scale: 1.0,
            retry_scale: 1.0,
            execution_name: "local".to_owned(),
            transitions: Arc::default(),
        }
    }
}

/// A loaded, checked state machine definition.
#[derive(Debug, Clone)]
pub struct StateMachine {
    definition: Value,
}

const STATE_TYPES: [&str; 7] = ["Task", "Pass", "Choice", "Wait", "Map", "Succeed", "Fail"];
const STATE_FIELDS: [&str; 27] = [
    "Type",
    "Comment",
    "Next",
    "End",
    "Resource",
    "Parameters",
    "InputPath",
    "OutputPath",
    "ResultPath",
    "ResultSelector",
    "Result",
    "Retry",
    "Catch",
    "TimeoutSeconds",
    "Choices",
    "Default",
    "Seconds",
    "SecondsPath",
    "ItemsPath",
    "ItemSelector",
    "ItemProcessor",
    "Iterator",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "Error",
    "Cause",
    "CausePath",
];

impl StateMachine {
    /// Parses and checks a definition; `substitutions` are the `${Name}`s Task resources may use.
    pub fn load(text: &str, substitutions: &[&str]) -> Result<StateMachine> {
        let definition: Value = serde_json::from_str(text).map_err(|err| {
            Error::InvalidRequest(format!("the state machine is not JSON: {err}"))
        })?;
        check_machine(&definition, substitutions, "")?;
        Ok(StateMachine { definition })
    }

    /// Runs the machine on `input`.
    pub async fn execute(
        &self,
        input: Value,
        invoker: &dyn Invoker,
        options: &RunnerOptions,
    ) -> Outcome {
        let context = Context {
            invoker,
            options,
            execution_input: input.clone(),
        };
        match run_machine(&self.definition, input, &context, Value::Null).await {
            Ok(output) => Outcome::Succeeded(output),
            Err(failure) => Outcome::Failed(failure),
        }
    }
}

fn refuse(path: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!(
        "state machine: {}{message}",
        if path.is_empty() {
            String::new()
        } else {
            format!("state `{path}`: ")
        }
    ))
}

fn check_machine(machine: &Value, substitutions: &[&str], parent: &str) -> Result<()> {
    let states = machine
        .get("States")
        .and_then(Value::as_object)
        .ok_or_else(|| refuse(parent, "no `States` object"))?;
    let start = machine
        .get("StartAt")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(parent, "no `StartAt`"))?;
    if !states.contains_key(start) {
        return Err(refuse(
            parent,
            format!("`StartAt` names unknown state `{start}`"),
        ));
    }
    for (name, state) in states {
        let path = if parent.is_empty() {
            name.clone()
        } else {
            format!("{parent}/{name}")
        };
        let object = state
            .as_object()
            .ok_or_else(|| refuse(&path, "is not an object"))?;
        let kind = object.get("Type").and_then(Value::as_str).unwrap_or("");
        if !STATE_TYPES.contains(&kind) {
            return Err(refuse(
                &path,
                format!("type `{kind}` is not supported by the local runner"),
            ));
        }
        for field in object.keys() {
            if !STATE_FIELDS.contains(&field.as_str()) {
                return Err(refuse(
                    &path,
                    format!("field `{field}` is not supported by the local runner"),
                ));
            }
        }
        let mut targets: Vec<&str> = Vec::new();
        if let Some(next) = object.get("Next").and_then(Value::as_str) {
            targets.push(next);
        }
        if let Some(default) = object.get("Default").and_then(Value::as_str) {
            targets.push(default);
        }
        for choice in object
            .get("Choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            targets.extend(choice.get("Next").and_then(Value::as_str));
        }
        for catcher in object
            .get("Catch")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            targets.extend(catcher.get("Next").and_then(Value::as_str));
        }
        for target in targets {
            if !states.contains_key(target) {
                return Err(refuse(&path, format!("goes to unknown state `{target}`")));
            }
        }
        let terminal = matches!(kind, "Choice" | "Succeed" | "Fail");
        let ends = object.get("End").and_then(Value::as_bool).unwrap_or(false);
        if !terminal && !ends && object.get("Next").is_none() {
            return Err(refuse(&path, "has neither `Next` nor `End`"));
        }
        if kind == "Task" {
            let resource = object.get("Resource").and_then(Value::as_str).unwrap_or("");
            let name = substitution_name(resource).ok_or_else(|| {
                refuse(
                    &path,
                    format!("resource `{resource}` is not a `${{Name}}` substitution"),
                )
            })?;
            if !substitutions.contains(&name) {
                return Err(refuse(
                    &path,
                    format!("resource `${{{name}}}` is not one of {substitutions:?}"),
                ));
            }
        }
        for rules in ["Retry", "Catch"] {
            for rule in object
                .get(rules)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if rule.get("ErrorEquals").and_then(Value::as_array).is_none() {
                    return Err(refuse(
                        &path,
                        format!("a `{rules}` rule has no `ErrorEquals`"),
                    ));
                }
                match rule.get("JitterStrategy").map(|j| j.as_str()) {
                    None | Some(Some("FULL" | "NONE")) => {}
                    Some(other) => {
                        return Err(refuse(
                            &path,
                            format!("`JitterStrategy` is `FULL` or `NONE`, not {other:?}"),
                        ))
                    }
                }
            }
        }
        if kind == "Map" {
            let processor = object
                .get("ItemProcessor")
                .or_else(|| object.get("Iterator"))
                .ok_or_else(|| refuse(&path, "a Map needs `ItemProcessor`"))?;
            check_machine(processor, substitutions, &path)?;
        }
    }
    Ok(())
}

fn substitution_name(resource: &str) -> Option<&str> {
    resource.strip_prefix("${")?.strip_suffix('}')
}

struct Context<'a> {
    invoker: &'a dyn Invoker,
    options: &'a RunnerOptions,
    execution_input: Value,
}

fn runtime_failure(state: &str, message: impl std::fmt::Display) -> TaskFailure {
    TaskFailure {
        error: "States.Runtime".to_owned(),
        cause: format!("state `{state}`: {message}"),
    }
}

fn run_machine<'a>(
    machine: &'a Value,
    input: Value,
    context: &'a Context<'a>,
    map_item: Value,
) -> Pin<Box<dyn Future<Output = std::result::Result<Value, TaskFailure>> + Send + 'a>> {
    Box::pin(async move {
        let states = &machine["States"];
        let mut name = machine["StartAt"].as_str().unwrap_or_default().to_owned();
        let mut data = input;
        loop {
            let state = &states[&name];
            context.options.transitions.fetch_add(1, Ordering::Relaxed);
            let (output, next) = run_state(&name, state, data, context, &map_item).await?;
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
            "Id": format!("local:{}", context.options.execution_name),
            "Input": context.execution_input,
            "Name": context.options.execution_name,
        },
        "Map": {"Item": map_item},
    })
}

async fn run_state(
    name: &str,
    state: &Value,
    input: Value,
    context: &Context<'_>,
    map_item: &Value,
) -> std::result::Result<(Value, Option<String>), TaskFailure> {
    let kind = state["Type"].as_str().unwrap_or_default();
    let next = state.get("Next").and_then(Value::as_str).map(str::to_owned);
    let ctx = context_object(context, map_item);
    let path_error = |err: String| runtime_failure(name, err);
    match kind {
        "Succeed" => Ok((
            filter_output(state, select_input(state, &input).map_err(path_error)?)
                .map_err(path_error)?,
            None,
        )),
        "Fail" => {
            let cause = match state.get("CausePath").and_then(Value::as_str) {
                Some(path) => read_path(&input, &ctx, path)
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .map_err(path_error)?,
                None => state
                    .get("Cause")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            };
            Err(TaskFailure {
                error: state
                    .get("Error")
                    .and_then(Value::as_str)
                    .unwrap_or("States.Fail")
                    .to_owned(),
                cause,
            })
        }
        "Choice" => {
            let selected = select_input(state, &input).map_err(path_error)?;
            let choices = state["Choices"].as_array().cloned().unwrap_or_default();
            for choice in &choices {
                if evaluate_rule(choice, &selected, &ctx).map_err(path_error)? {
                    let target = choice["Next"].as_str().unwrap_or_default().to_owned();
                    return Ok((
                        filter_output(state, selected).map_err(path_error)?,
                        Some(target),
                    ));
                }
            }
            match state.get("Default").and_then(Value::as_str) {
                Some(default) => Ok((
                    filter_output(state, selected).map_err(path_error)?,
                    Some(default.to_owned()),
                )),
                None => Err(TaskFailure {
                    error: "States.NoChoiceMatched".to_owned(),
                    cause: format!("state `{name}`: no choice matched"),
                }),
            }
        }
        "Wait" => {
            let selected = select_input(state, &input).map_err(path_error)?;
            let seconds = match state.get("SecondsPath").and_then(Value::as_str) {
                Some(path) => read_path(&selected, &ctx, path)
                    .map_err(path_error)?
                    .as_f64()
                    .unwrap_or(0.0),
                None => state.get("Seconds").and_then(Value::as_f64).unwrap_or(0.0),
            };
            tokio::time::sleep(Duration::from_secs_f64(
                (seconds * context.options.wait_scale).max(0.0),
            ))
            .await;
            Ok((filter_output(state, selected).map_err(path_error)?, next))
        }
        "Pass" | "Task" | "Map" => {
            let attempt = async {
                let selected = select_input(state, &input).map_err(path_error)?;
                let effective = match state
                    .get("Parameters")
                    .or_else(|| (kind == "Map").then(|| state.get("ItemSelector")).flatten())
                {
                    Some(template) if kind != "Map" => {
                        render(template, &selected, &ctx).map_err(path_error)?
                    }
                    _ => selected.clone(),
                };
                let result = match kind {
                    "Pass" => state.get("Result").cloned().unwrap_or(effective),
                    "Task" => run_task(name, state, effective, context).await?,
                    _ => run_map(name, state, selected, context, &ctx).await?,
                };
                let result = match state.get("ResultSelector") {
                    Some(selector) => render(selector, &result, &ctx).map_err(path_error)?,
                    None => result,
                };
                let merged = apply_result_path(state, input.clone(), result).map_err(path_error)?;
                filter_output(state, merged).map_err(path_error)
            };
            match attempt.await {
                Ok(output) => Ok((output, next)),
                Err(failure) => catch(name, state, input, failure),
            }
        }
        other => Err(runtime_failure(name, format!("unsupported type `{other}`"))),
    }
}

/// Routes a failure to the first matching `Catch`, or passes it on.
fn catch(
    name: &str,
    state: &Value,
    input: Value,
    failure: TaskFailure,
) -> std::result::Result<(Value, Option<String>), TaskFailure> {
    for catcher in state
        .get("Catch")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if error_matches(catcher, &failure.error) {
            let error = serde_json::json!({"Error": failure.error, "Cause": failure.cause});
            let rule = serde_json::json!({"ResultPath": catcher.get("ResultPath").cloned().unwrap_or(Value::String("$".into()))});
            let output =
                apply_result_path(&rule, input, error).map_err(|e| runtime_failure(name, e))?;
            return Ok((output, catcher["Next"].as_str().map(str::to_owned)));
        }
    }
    Err(failure)
}

fn error_matches(rule: &Value, error: &str) -> bool {
    rule["ErrorEquals"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|name| match name.as_str() {
            Some("States.ALL") => true,
            Some("States.TaskFailed") => {
                !error.starts_with("States.") || error == "States.TaskFailed"
            }
            Some(other) => other == error,
            None => false,
        })
}

async fn run_task(
    name: &str,
    state: &Value,
    payload: Value,
    context: &Context<'_>,
) -> std::result::Result<Value, TaskFailure> {
    let resource =
        substitution_name(state["Resource"].as_str().unwrap_or_default()).unwrap_or_default();
    let retriers = state
        .get("Retry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut attempts_by_rule = vec![0u64; retriers.len()];
    loop {
        let failure = match context.invoker.invoke(resource, payload.clone()).await {
            Ok(output) => return Ok(output),
            Err(failure) => failure,
        };
        let Some(index) = retriers
            .iter()
            .position(|rule| error_matches(rule, &failure.error))
        else {
            return Err(failure);
        };
        let rule = &retriers[index];
        let max_attempts = rule.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
        let attempt = attempts_by_rule[index];
        if attempt >= max_attempts {
            return Err(failure);
        }
        attempts_by_rule[index] += 1;
        let interval = rule
            .get("IntervalSeconds")
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let backoff = rule
            .get("BackoffRate")
            .and_then(Value::as_f64)
            .unwrap_or(2.0);
        let mut delay = interval * backoff.powi(i32::try_from(attempt).unwrap_or(i32::MAX));
        if let Some(max) = rule.get("MaxDelaySeconds").and_then(Value::as_f64) {
            delay = delay.min(max);
        }
        if rule.get("JitterStrategy").and_then(Value::as_str) == Some("FULL") {
            // As Step Functions does: a random delay between 0 and the computed one, so that
            // tables failing together do not retry together.
            delay *= (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
        }
        tracing::warn!(state = name, error = %failure.error, attempt = attempt + 1, delay_seconds = delay, "retrying task");
        tokio::time::sleep(Duration::from_secs_f64(
            (delay * context.options.retry_scale).max(0.0),
        ))
        .await;
    }
}

async fn run_map(
    name: &str,
    state: &Value,
    input: Value,
    context: &Context<'_>,
    ctx: &Value,
) -> std::result::Result<Value, TaskFailure> {
    let items_path = state
        .get("ItemsPath")
        .and_then(Value::as_str)
        .unwrap_or("$");
    let items = read_path(&input, ctx, items_path)
        .map_err(|e| runtime_failure(name, e))?
        .as_array()
        .cloned()
        .ok_or_else(|| runtime_failure(name, format!("`{items_path}` is not an array")))?;
    let concurrency = match state.get("MaxConcurrencyPath").and_then(Value::as_str) {
        Some(path) => read_path(&input, ctx, path)
            .map_err(|e| runtime_failure(name, e))?
            .as_u64()
            .unwrap_or(0),
        None => state
            .get("MaxConcurrency")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    };
    let limit = if concurrency == 0 {
        items.len().max(1)
    } else {
        concurrency as usize
    };
    let processor = state
        .get("ItemProcessor")
        .or_else(|| state.get("Iterator"))
        .cloned()
        .unwrap_or(Value::Null);
    let selector = state
        .get("ItemSelector")
        .or_else(|| state.get("Parameters"))
        .cloned();
    let processor = &processor;
    let selector = &selector;
    let input = &input;
    stream::iter(items.into_iter().enumerate())
        .map(|(index, value)| async move {
            let item = serde_json::json!({"Index": index, "Value": value});
            let item_ctx = context_object(context, &item);
            let item_input = match selector {
                Some(template) => {
                    render(template, input, &item_ctx).map_err(|e| runtime_failure(name, e))?
                }
                None => item["Value"].clone(),
            };
            run_machine(processor, item_input, context, item).await
        })
        .buffered(limit)
        .try_collect::<Vec<Value>>()
        .await
        .map(Value::Array)
}

fn select_input(state: &Value, input: &Value) -> std::result::Result<Value, String> {
    match state.get("InputPath") {
        Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(Value::String(path)) => read_path(input, &Value::Null, path),
        _ => Ok(input.clone()),
    }
}

fn filter_output(state: &Value, output: Value) -> std::result::Result<Value, String> {
    match state.get("OutputPath") {
        Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(Value::String(path)) => read_path(&output, &Value::Null, path),
        _ => Ok(output),
    }
}

fn apply_result_path(
    state: &Value,
    input: Value,
    result: Value,
) -> std::result::Result<Value, String> {
    match state.get("ResultPath") {
        Some(Value::Null) => Ok(input),
        None => Ok(result),
        Some(Value::String(path)) if path == "$" => Ok(result),
        Some(Value::String(path)) => {
            let segments = parse_path(path)?;
            let mut root = input;
            if !root.is_object() {
                root = Value::Object(Map::new());
            }
            let mut cursor = &mut root;
            for (i, segment) in segments.iter().enumerate() {
                let PathSegment::Field(field) = segment else {
                    return Err(format!("ResultPath `{path}` may only name fields"));
                };
                let object = cursor
                    .as_object_mut()
                    .ok_or_else(|| format!("ResultPath `{path}`: not an object"))?;
                if i + 1 == segments.len() {
                    object.insert(field.clone(), result);
                    return Ok(root);
                }
                cursor = object
                    .entry(field.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            Ok(root)
        }
        Some(other) => Err(format!("ResultPath `{other}` is not a path")),
    }
}

/// Fills a Parameters/ItemSelector/ResultSelector template: keys ending in `.$` take a path.
fn render(template: &Value, input: &Value, ctx: &Value) -> std::result::Result<Value, String> {
    match template {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, value) in fields {
                match key.strip_suffix(".$") {
                    Some(stripped) => {
                        let path = value
                            .as_str()
                            .ok_or_else(|| format!("`{key}` must be a path string"))?;
                        out.insert(stripped.to_owned(), read_path(input, ctx, path)?);
                    }
                    None => {
                        out.insert(key.clone(), render(value, input, ctx)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(values) => values
            .iter()
            .map(|v| render(v, input, ctx))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum PathSegment {
    Field(String),
    Index(usize),
}

fn parse_path(path: &str) -> std::result::Result<Vec<PathSegment>, String> {
    let rest = path
        .strip_prefix('$')
        .ok_or_else(|| format!("`{path}` is not a JSONPath"))?;
    let mut segments = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut field = String::new();
                while let Some(&next) = chars.peek() {
                    if next == '.' || next == '[' {
                        break;
                    }
                    field.push(next);
                    chars.next();
                }
                if field.is_empty() {
                    return Err(format!("`{path}` has an empty field"));
                }
                segments.push(PathSegment::Field(field));
            }
            '[' => {
                let mut digits = String::new();
                for next in chars.by_ref() {
                    if next == ']' {
                        break;
                    }
                    digits.push(next);
                }
                let index = digits
                    .parse()
                    .map_err(|_| format!("`{path}`: only numeric indexes are supported"))?;
                segments.push(PathSegment::Index(index));
            }
            _ => return Err(format!("`{path}` is not supported by the local runner")),
        }
    }
    Ok(segments)
}

/// Reads `path` from `input` (`$…`) or from the context object (`$$…`).
fn read_path(input: &Value, ctx: &Value, path: &str) -> std::result::Result<Value, String> {
    let (root, path_in_root) = match path.strip_prefix("$$") {
        Some(rest) => (ctx, format!("${rest}")),
        None => (input, path.to_owned()),
    };
    let mut value = root;
    for segment in parse_path(&path_in_root)? {
        value = match (&segment, value) {
            (PathSegment::Field(field), Value::Object(object)) => object.get(field),
            (PathSegment::Index(index), Value::Array(array)) => array.get(*index),
            _ => None,
        }
        .ok_or_else(|| format!("the path `{path}` does not exist in the state's input"))?;
    }
    Ok(value.clone())
}

fn evaluate_rule(rule: &Value, input: &Value, ctx: &Value) -> std::result::Result<bool, String> {
    if let Some(all) = rule.get("And").and_then(Value::as_array) {
        for inner in all {
            if !evaluate_rule(inner, input, ctx)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(any) = rule.get("Or").and_then(Value::as_array) {
        for inner in any {
            if evaluate_rule(inner, input, ctx)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if let Some(inner) = rule.get("Not") {
        return Ok(!evaluate_rule(inner, input, ctx)?);
    }
    let variable = rule
        .get("Variable")
        .and_then(Value::as_str)
        .ok_or("a choice rule has no `Variable`")?;
    let value = read_path(input, ctx, variable);
    let comparisons: BTreeMap<&str, &Value> = rule
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "Variable" && *k != "Next")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let (operator, expected) = comparisons
        .into_iter()
        .next()
        .ok_or("a choice rule has no comparison")?;
    match operator {
        "IsPresent" => return Ok(value.is_ok() == expected.as_bool().unwrap_or(true)),
        "IsNull" => {
            return Ok(
                value.map(|v| v.is_null()).unwrap_or(false) == expected.as_bool().unwrap_or(true)
            )
        }
        _ => {}
    }
    let value = value?;
    Ok(match operator {
        "StringEquals" => value.as_str() == expected.as_str(),
        "BooleanEquals" => value.as_bool() == expected.as_bool(),
        "NumericEquals" => value.as_f64() == expected.as_f64(),
        "NumericGreaterThan" => {
            matches!((value.as_f64(), expected.as_f64()), (Some(a), Some(b)) if a > b)
        }
        "NumericLessThan" => {
            matches!((value.as_f64(), expected.as_f64()), (Some(a), Some(b)) if a < b)
        }
        "NumericGreaterThanEquals" => {
            matches!((value.as_f64(), expected.as_f64()), (Some(a), Some(b)) if a >= b)
        }
        other => {
            return Err(format!(
                "choice operator `{other}` is not supported by the local runner"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
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
        let text = include_str!("../../statemachine/sync.asl.json");
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
}

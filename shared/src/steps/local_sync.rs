//! A sync run in process: `statemachine/sync.asl.json` executed by the local runner, with each
//! Task resource bound to the same step the corresponding Lambda function runs.

use std::time::Duration;

use serde_json::Value;

use crate::asl::{InvokeFuture, Invoker, Outcome, RunnerOptions, StateMachine, TaskFailure};
use crate::error::{Error, Result};

use super::sync::SyncSummary;
use super::Function;
use crate::services::Services;

/// The orchestration definition, the same file the SAM template deploys.
pub const DEFINITION: &str = include_str!("../../../statemachine/sync.asl.json");

/// The `${Substitution}` names the definition's Task resources use: the functions of a run's
/// steps (cleanup runs on its own schedule, operator for people).
pub const FUNCTIONS: [&str; 3] = [
    Function::Extract.substitution(),
    Function::Watermark.substitution(),
    Function::Load.substitution(),
];

/// Binds each function name to its library step.
pub struct StepInvoker<'a> {
    services: &'a Services,
    extract_time_limit: Option<Duration>,
}

impl<'a> StepInvoker<'a> {
    /// Steps run against `services`; each extraction stops after `extract_time_limit` (as a
    /// Lambda would at its deadline) and continues in a following invocation.
    pub fn new(services: &'a Services, extract_time_limit: Option<Duration>) -> Self {
        StepInvoker {
            services,
            extract_time_limit,
        }
    }

    async fn dispatch(&self, resource: &str, payload: Value) -> Result<Value> {
        let function = Function::from_substitution(resource)
            .filter(|function| FUNCTIONS.contains(&function.substitution()))
            .ok_or_else(|| Error::InvalidRequest(format!("no step is bound to `{resource}`")))?;
        // In process only an extraction is bounded (to exercise continuations); a load has all
        // the time it needs.
        let time_left = match function {
            Function::Extract => self.extract_time_limit,
            _ => None,
        };
        function.handle(self.services, payload, time_left).await
    }
}

impl Invoker for StepInvoker<'_> {
    fn invoke<'b>(&'b self, resource: &'b str, payload: Value) -> InvokeFuture<'b> {
        Box::pin(async move {
            self.dispatch(resource, payload).await.map_err(|err| {
                let error = err.kind().name().to_owned();
                // The same shape as a Lambda error's Cause in Step Functions.
                let cause = serde_json::json!({"errorType": error, "errorMessage": err.to_string()});
                tracing::warn!(function = resource, error_type = %error, error = %err, "step failed");
                TaskFailure {
                    error,
                    cause: cause.to_string(),
                }
            })
        })
    }
}

/// Runs one sync execution in process and returns how it ended.
pub async fn run(
    services: &Services,
    input: Value,
    options: &RunnerOptions,
    extract_time_limit: Option<Duration>,
) -> Result<Outcome> {
    let machine = StateMachine::load(DEFINITION, &FUNCTIONS)?;
    let invoker = StepInvoker::new(services, extract_time_limit);
    Ok(machine.execute(input, &invoker, options).await)
}

/// Sees every step of a local execution as it starts and ends — for progress displays. Called
/// on the runner's task: keep it quick and never block.
pub trait StepObserver: Sync {
    /// `function` (one of [`FUNCTIONS`]) is about to run with `payload`.
    fn started(&self, function: &str, payload: &Value);
    /// It ended with `answer`.
    fn finished(
        &self,
        function: &str,
        payload: &Value,
        answer: &std::result::Result<Value, TaskFailure>,
    );
}

/// Like [`run`], and also returns the `summarize` answer (every table's outcome), which a failed
/// execution's output does not carry: the CLI reports per-table results either way. `observer`,
/// when given, sees every step.
pub async fn run_with_summary(
    services: &Services,
    input: Value,
    options: &RunnerOptions,
    extract_time_limit: Option<Duration>,
    observer: Option<&dyn StepObserver>,
) -> Result<(Outcome, Option<SyncSummary>)> {
    let machine = StateMachine::load(DEFINITION, &FUNCTIONS)?;
    let invoker = SummaryCapture {
        inner: StepInvoker::new(services, extract_time_limit),
        summary: std::sync::Mutex::new(None),
        observer,
    };
    let outcome = machine.execute(input, &invoker, options).await;
    let summary = invoker.summary.lock().ok().and_then(|mut s| s.take());
    let summary = summary
        .map(serde_json::from_value::<SyncSummary>)
        .transpose()
        .map_err(|err| {
            Error::internal(format!("the `summarize` answer is not a summary: {err}"))
        })?;
    Ok((outcome, summary))
}

/// Passes every Task to the steps, shows it to the observer, and keeps the last `summarize`
/// answer.
struct SummaryCapture<'a> {
    inner: StepInvoker<'a>,
    summary: std::sync::Mutex<Option<Value>>,
    observer: Option<&'a dyn StepObserver>,
}

impl Invoker for SummaryCapture<'_> {
    fn invoke<'b>(&'b self, resource: &'b str, payload: Value) -> InvokeFuture<'b> {
        Box::pin(async move {
            let summarize = payload.get("action").and_then(Value::as_str) == Some("summarize");
            let seen = self.observer.map(|observer| {
                observer.started(resource, &payload);
                (observer, payload.clone())
            });
            let answer = self.inner.invoke(resource, payload).await;
            if let Some((observer, payload)) = seen {
                observer.finished(resource, &payload, &answer);
            }
            if let (true, Ok(summary)) = (summarize, &answer) {
                if let Ok(mut kept) = self.summary.lock() {
                    *kept = Some(summary.clone());
                }
            }
            answer
        })
    }
}

//! A sync run in process: `statemachine/sync.asl.json` executed by the local runner, with each
//! Task resource bound to the same step the corresponding Lambda function runs.

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

/// Extractions one process runs at once by default, whatever `table_concurrency` ×
/// `chunk_concurrency`: each holds its own read, encode and upload buffers, so this is what
/// bounds a local sync's memory. Measured with `scripts/bench order` on the 2M-row bench table
/// (release CLI, 2 cores, two runs): peak RSS 101–105 MiB with 1, 141–174 MiB with 2, 208–263
/// MiB with 4 extractions at once. Only 1 stays within the 160 MiB the project allows at default
/// settings; a first load in 4 key ranges took 4.95 s with 1 and 4.39 s with 2.
pub const EXTRACTS_AT_ONCE: usize = 1;

/// Binds each function name to its library step, at most so many extractions at a time, and
/// shows each step to the observer as it really starts (after waiting for its slot) and ends.
pub struct StepInvoker<'a> {
    services: &'a Services,
    extract_slots: tokio::sync::Semaphore,
    observer: Option<&'a dyn StepObserver>,
}

impl<'a> StepInvoker<'a> {
    /// Steps run against `services`, at most `extracts_at_once` extractions at a time (the
    /// state machine's other chunks and tables wait for a slot).
    pub fn new(
        services: &'a Services,
        extracts_at_once: usize,
        observer: Option<&'a dyn StepObserver>,
    ) -> Self {
        StepInvoker {
            services,
            extract_slots: tokio::sync::Semaphore::new(extracts_at_once.max(1)),
            observer,
        }
    }

    async fn dispatch(&self, resource: &str, payload: Value) -> Result<Value> {
        let function = Function::from_substitution(resource)
            .filter(|function| FUNCTIONS.contains(&function.substitution()))
            .ok_or_else(|| Error::InvalidRequest(format!("no step is bound to `{resource}`")))?;
        // In process no step has a deadline: an extraction reads its chunk to the end.
        function.handle(self.services, payload, None).await
    }
}

impl Invoker for StepInvoker<'_> {
    fn invoke<'b>(&'b self, resource: &'b str, payload: Value) -> InvokeFuture<'b> {
        Box::pin(async move {
            let extracting = resource == Function::Extract.substitution()
                && payload.get("action").and_then(Value::as_str) == Some("extract");
            let _slot = match extracting {
                // The semaphore is never closed.
                true => self.extract_slots.acquire().await.ok(),
                false => None,
            };
            let seen = self.observer.map(|observer| {
                observer.started(resource, &payload);
                (observer, payload.clone())
            });
            let answer = self.dispatch(resource, payload).await.map_err(|err| {
                let error = err.kind().name().to_owned();
                // The same shape as a Lambda error's Cause in Step Functions.
                let cause = serde_json::json!({"errorType": error, "errorMessage": err.to_string()});
                tracing::warn!(function = resource, error_type = %error, error = %err, "step failed");
                TaskFailure {
                    error,
                    cause: cause.to_string(),
                }
            });
            if let Some((observer, payload)) = seen {
                observer.finished(resource, &payload, &answer);
            }
            answer
        })
    }
}

/// Runs one sync execution in process, at most `extracts_at_once` extractions at a time, and
/// returns how it ended.
pub async fn run(
    services: &Services,
    input: Value,
    options: &RunnerOptions,
    extracts_at_once: usize,
) -> Result<Outcome> {
    let machine = StateMachine::load(DEFINITION, &FUNCTIONS)?;
    let invoker = StepInvoker::new(services, extracts_at_once, None);
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
    extracts_at_once: usize,
    observer: Option<&dyn StepObserver>,
) -> Result<(Outcome, Option<SyncSummary>)> {
    let machine = StateMachine::load(DEFINITION, &FUNCTIONS)?;
    let invoker = SummaryCapture {
        inner: StepInvoker::new(services, extracts_at_once, observer),
        summary: std::sync::Mutex::new(None),
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

/// Passes every Task to the steps and keeps the last `summarize` answer.
struct SummaryCapture<'a> {
    inner: StepInvoker<'a>,
    summary: std::sync::Mutex<Option<Value>>,
}

impl Invoker for SummaryCapture<'_> {
    fn invoke<'b>(&'b self, resource: &'b str, payload: Value) -> InvokeFuture<'b> {
        Box::pin(async move {
            let summarize = payload.get("action").and_then(Value::as_str) == Some("summarize");
            let answer = self.inner.invoke(resource, payload).await;
            if let (true, Ok(summary)) = (summarize, &answer) {
                if let Ok(mut kept) = self.summary.lock() {
                    *kept = Some(summary.clone());
                }
            }
            answer
        })
    }
}

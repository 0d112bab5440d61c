//! Amazon States Language, locally: parses the subset that `statemachine/sync.asl.json` uses
//! into a typed model and runs it, so the one orchestration definition runs in AWS and in
//! process alike.
//!
//! Supported: Task, Pass, Choice, Wait, Map (inline, and distributed: each iteration a child
//! execution with its own history, `Label`, `ToleratedFailurePercentage`), Succeed, Fail; InputPath, Parameters and
//! ItemSelector (`.$` keys, `$$` context), ResultSelector, ResultPath, OutputPath; Retry
//! (ErrorEquals incl. `States.ALL`, IntervalSeconds, MaxAttempts, BackoffRate, MaxDelaySeconds,
//! JitterStrategy)
//! and Catch; JSONPath of the form `$`, `$.a.b`, `$.a[0]`. Anything else is refused when the
//! definition is loaded, naming the state. Task resources resolve through their
//! `${Substitution}` name to an [`Invoker`] — never to a network call.
//!
//! Step Functions' hard limits hold here too, so that a definition that outgrows them fails
//! locally first (<https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html>): an
//! execution's history holds at most [`HISTORY_EVENT_QUOTA`] events, counted as
//! `GetExecutionHistory` lists them, and a state's output at most [`PAYLOAD_QUOTA_BYTES`]
//! (`States.DataLimitExceeded`). `States.ALL` catches neither that nor any `States.Runtime` error
//! (<https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html>, "Error
//! names").

mod choice;
mod model;
mod path;
mod runner;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::error::{Error, Result};

use model::Machine;
use runner::{run_execution, Execution};

/// Events one execution's history may hold (a hard quota of Step Functions).
pub const HISTORY_EVENT_QUOTA: u64 = 25_000;

/// Bytes a state's input or output may hold (256 KiB, a hard quota of Step Functions).
pub const PAYLOAD_QUOTA_BYTES: usize = 256 * 1024;

/// One execution the runner ran: the one started, or a Distributed Map's child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRecord {
    /// `$$.Execution.Name`.
    pub name: String,
    /// History events, counted as Step Functions records them.
    pub history_events: u64,
    /// States entered (billed state transitions).
    pub transitions: u64,
    /// Whether it succeeded.
    pub succeeded: bool,
}

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
    /// Every execution run (the one started and each child), in the order they ended.
    pub executions: Arc<Mutex<Vec<ExecutionRecord>>>,
}

impl RunnerOptions {
    /// Every state entered — Step Functions' billed "state transitions" — across the executions
    /// that ended, their Map iterations and their child executions.
    pub fn transitions(&self) -> u64 {
        self.executions.lock().map_or(0, |executions| {
            executions.iter().map(|e| e.transitions).sum()
        })
    }
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            wait_scale: 1.0,
            retry_scale: 1.0,
            execution_name: "local".to_owned(),
            executions: Arc::default(),
        }
    }
}

/// A loaded, checked state machine definition.
#[derive(Debug, Clone)]
pub struct StateMachine {
    machine: Machine,
}

impl StateMachine {
    /// Parses and checks a definition; `substitutions` are the `${Name}`s Task resources may use.
    pub fn load(text: &str, substitutions: &[&str]) -> Result<StateMachine> {
        let definition: Value = serde_json::from_str(text).map_err(|err| {
            Error::InvalidRequest(format!("the state machine is not JSON: {err}"))
        })?;
        Ok(StateMachine {
            machine: Machine::parse(definition, substitutions, "")?,
        })
    }

    /// Runs the machine on `input`.
    pub async fn execute(
        &self,
        input: Value,
        invoker: &dyn Invoker,
        options: &RunnerOptions,
    ) -> Outcome {
        let execution = Execution::new(
            options.execution_name.clone(),
            format!("local:{}", options.execution_name),
        );
        match run_execution(&self.machine, input, invoker, options, execution).await {
            Ok(output) => Outcome::Succeeded(output),
            Err(failure) => Outcome::Failed(failure),
        }
    }
}

//! Amazon States Language, locally: parses the subset that `statemachine/sync.asl.json` uses
//! into a typed model and runs it, so the one orchestration definition runs in AWS and in
//! process alike.
//!
//! Supported: Task, Pass, Choice, Wait, Map (inline), Succeed, Fail; InputPath, Parameters and
//! ItemSelector (`.$` keys, `$$` context), ResultSelector, ResultPath, OutputPath; Retry
//! (ErrorEquals incl. `States.ALL`, IntervalSeconds, MaxAttempts, BackoffRate, MaxDelaySeconds,
//! JitterStrategy)
//! and Catch; JSONPath of the form `$`, `$.a.b`, `$.a[0]`. Anything else is refused when the
//! definition is loaded, naming the state. Task resources resolve through their
//! `${Substitution}` name to an [`Invoker`] — never to a network call.

mod choice;
mod model;
mod path;
mod runner;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};

use model::Machine;
use runner::{run_machine, Context};

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
        let context = Context {
            invoker,
            options,
            execution_input: input.clone(),
        };
        match run_machine(&self.machine, input, &context, Value::Null).await {
            Ok(output) => Outcome::Succeeded(output),
            Err(failure) => Outcome::Failed(failure),
        }
    }
}

//! The states the runner supports, as typed values: a definition is parsed into these once, and
//! anything else (another state type, a field the runner would not honour, a transition to no
//! state, a resource that is not a known `${Name}`) is refused then, naming the state.

use std::collections::BTreeMap;

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{Error, Result};

use super::choice::{Choice, RawRule};

/// A state machine, or a Map's item processor.
#[derive(Debug, Clone)]
pub(super) struct Machine {
    /// The first state.
    pub start_at: String,
    /// The states by name.
    pub states: BTreeMap<String, State>,
}

/// A state and what it does next.
#[derive(Debug, Clone)]
pub(super) enum State {
    Task(Task),
    Pass(Pass),
    Choice(ChoiceState),
    Wait(Wait),
    Map(Map),
    Succeed(Succeed),
    Fail(Fail),
}

/// What the definition's top level, or a Map's `ItemProcessor`, holds.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawMachine {
    start_at: String,
    states: BTreeMap<String, Value>,
    #[serde(default, rename = "Comment")]
    _comment: IgnoredAny,
    /// Enforced by Step Functions, not here: a local execution ends when its steps do.
    #[serde(default, rename = "TimeoutSeconds")]
    _timeout_seconds: IgnoredAny,
}

/// `InputPath` and `OutputPath`: absent keeps the whole value, `null` gives `{}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum Selection {
    #[default]
    Whole,
    Nothing,
    Path(String),
}

impl<'de> Deserialize<'de> for Selection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(match Option::<String>::deserialize(deserializer)? {
            None => Selection::Nothing,
            Some(path) => Selection::Path(path),
        })
    }
}

/// `ResultPath`: absent or `$` replaces the input with the result, `null` discards the result,
/// `$.a.b` puts it at that field of the input.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum ResultPath {
    #[default]
    Replace,
    Discard,
    At(Vec<String>),
}

impl<'de> Deserialize<'de> for ResultPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(ResultPath::Discard),
            Some(path) if path == "$" => Ok(ResultPath::Replace),
            Some(path) => {
                let fields = path
                    .strip_prefix("$.")
                    .map(|rest| rest.split('.').map(str::to_owned).collect::<Vec<_>>())
                    .filter(|fields| {
                        fields
                            .iter()
                            .all(|f| !f.is_empty() && !f.contains(['[', ']', '*']))
                    })
                    .ok_or_else(|| {
                        D::Error::custom(format!(
                            "`ResultPath` `{path}` may only name fields (`$.a.b`)"
                        ))
                    })?;
                Ok(ResultPath::At(fields))
            }
        }
    }
}

/// A `Retry` rule. Defaults as in the Amazon States Language.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct Retrier {
    pub error_equals: Vec<String>,
    #[serde(default = "one_second")]
    pub interval_seconds: f64,
    #[serde(default = "three")]
    pub max_attempts: u64,
    #[serde(default = "two")]
    pub backoff_rate: f64,
    #[serde(default)]
    pub max_delay_seconds: Option<f64>,
    #[serde(default)]
    pub jitter_strategy: Jitter,
}

/// `JitterStrategy`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) enum Jitter {
    #[default]
    None,
    Full,
}

impl<'de> Deserialize<'de> for Jitter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "FULL" => Ok(Jitter::Full),
            "NONE" => Ok(Jitter::None),
            other => Err(D::Error::custom(format!(
                "`JitterStrategy` is `FULL` or `NONE`, not {other:?}"
            ))),
        }
    }
}

/// A `Catch` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    #[serde(default)]
    pub result_path: ResultPath,
}

/// A Task: one call of a `${Name}` resource.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct Task {
    #[serde(default, rename = "Comment")]
    _comment: IgnoredAny,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: bool,
    pub resource: String,
    #[serde(default)]
    pub input_path: Selection,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub result_selector: Option<Value>,
    #[serde(default)]
    pub result_path: ResultPath,
    #[serde(default)]
    pub output_path: Selection,
    #[serde(default)]
    pub retry: Vec<Retrier>,
    #[serde(default)]
    pub catch: Vec<Catcher>,
}

/// A Pass: its input, shaped, or a fixed `Result`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct Pass {
    #[serde(default, rename = "Comment")]
    _comment: IgnoredAny,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: bool,
    #[serde(default)]
    pub input_path: Selection,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub result_path: ResultPath,
    #[serde(default)]
    pub output_path: Selection,
}

/// A Choice: the first rule that holds names the next state, else `Default`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawChoiceState {
    #[serde(default, rename = "Comment")]
    _comment: IgnoredAny,
    choices: Vec<RawRule>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    input_path: Selection,
    #[serde(default)]
    output_path: Selection,
}

/// A Choice, its rules checked.
#[derive(Debug, Clone)]
pub(super) struct ChoiceState {
    pub choices: Vec<Choice>,
    pub default: Option<String>,
    pub input_path: Selection,
    pub output_path: Selection,
}

/// A Wait: `Seconds`, or a number read at `SecondsPath`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct Wait {
    #[serde(default, rename = "Comment")]
    _comment: IgnoredAny,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: bool,
    #[serde(default)]
    pub seconds: Option<f64>,
    #[serde(default)]
    pub seconds_path: Option<String>,
    #[serde(default)]
    pub input_path: Selection,
    #[serde(default)]
    pub output_path: Selection,
}

/// `ItemProcessor.ProcessorConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ProcessorConfig {
    mode: ProcessorMode,
    /// Distributed only; `EXPRESS` children are not run here.
    #[serde(default)]
    execution_type: Option<ChildExecutionType>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum ProcessorMode {
    Inline,
    Distributed,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum ChildExecutionType {
    Standard,
}

/// A Distributed Map: every iteration is a child workflow execution with its own history.
#[derive(Debug, Clone)]
pub(super) struct Distributed {
    /// `Label`, else the state's name: names the child executions.
    pub label: String,
    /// `ToleratedFailurePercentage` (0 when absent): the Map fails once a larger share of its
    /// child executions failed.
    pub tolerated_failure_percentage: f64,
}

/// A Map, as written.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RawMap {
    #[serde(default, rename = "Comment")]
    _comment: IgnoredAny,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    end: bool,
    #[serde(default)]
    input_path: Selection,
    #[serde(default)]
    items_path: Option<String>,
    #[serde(default)]
    item_selector: Option<Value>,
    /// The older name of `ItemSelector`.
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    item_processor: Option<Value>,
    /// The older name of `ItemProcessor`.
    #[serde(default)]
    iterator: Option<Value>,
    #[serde(default)]
    max_concurrency: Option<u64>,
    #[serde(default)]
    max_concurrency_path: Option<String>,
    #[serde(default)]
    result_selector: Option<Value>,
    #[serde(default)]
    result_path: ResultPath,
    #[serde(default)]
    output_path: Selection,
    #[serde(default)]
    catch: Vec<Catcher>,
    /// Distributed only.
    #[serde(default)]
    label: Option<String>,
    /// Distributed only.
    #[serde(default)]
    tolerated_failure_percentage: Option<f64>,
}

/// A Map: its item processor run on every item of `ItemsPath`, inline or as child executions.
#[derive(Debug, Clone)]
pub(super) struct Map {
    /// Present for a Distributed Map.
    pub distributed: Option<Distributed>,
    pub next: Option<String>,
    pub end: bool,
    pub input_path: Selection,
    pub items_path: String,
    pub item_selector: Option<Value>,
    pub processor: Box<Machine>,
    pub max_concurrency: Option<u64>,
    pub max_concurrency_path: Option<String>,
    pub result_selector: Option<Value>,
    pub result_path: ResultPath,
    pub output_path: Selection,
    pub catch: Vec<Catcher>,
}

/// A Succeed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct Succeed {
    #[serde(default, rename = "Comment")]
    _comment: IgnoredAny,
    #[serde(default)]
    pub input_path: Selection,
    #[serde(default)]
    pub output_path: Selection,
}

/// A Fail: `Error`, and `Cause` or a cause read at `CausePath`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct Fail {
    #[serde(default, rename = "Comment")]
    _comment: IgnoredAny,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub cause_path: Option<String>,
}

fn one_second() -> f64 {
    1.0
}

fn three() -> u64 {
    3
}

fn two() -> f64 {
    2.0
}

/// The error for a definition the runner cannot run, naming the state at `path`.
pub(super) fn refuse(path: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!(
        "state machine: {}{message}",
        if path.is_empty() {
            String::new()
        } else {
            format!("state `{path}`: ")
        }
    ))
}

/// The `Name` of a `${Name}` resource.
pub(super) fn substitution_name(resource: &str) -> Option<&str> {
    resource.strip_prefix("${")?.strip_suffix('}')
}

impl Machine {
    /// Parses and checks `value` (the definition, or a Map's processor at `parent`);
    /// `substitutions` are the `${Name}`s Task resources may use.
    pub fn parse(value: Value, substitutions: &[&str], parent: &str) -> Result<Machine> {
        let raw: RawMachine = serde_json::from_value(value).map_err(|err| refuse(parent, err))?;
        let mut states = BTreeMap::new();
        for (name, value) in raw.states {
            let path = match parent {
                "" => name.clone(),
                _ => format!("{parent}/{name}"),
            };
            states.insert(name, State::parse(value, substitutions, &path)?);
        }
        let machine = Machine {
            start_at: raw.start_at,
            states,
        };
        machine.check_transitions(parent)?;
        Ok(machine)
    }

    fn check_transitions(&self, parent: &str) -> Result<()> {
        if !self.states.contains_key(&self.start_at) {
            return Err(refuse(
                parent,
                format!("`StartAt` names unknown state `{}`", self.start_at),
            ));
        }
        for (name, state) in &self.states {
            let path = match parent {
                "" => name.clone(),
                _ => format!("{parent}/{name}"),
            };
            if let Some(target) = state
                .targets()
                .into_iter()
                .find(|target| !self.states.contains_key(*target))
            {
                return Err(refuse(&path, format!("goes to unknown state `{target}`")));
            }
        }
        Ok(())
    }
}

impl State {
    fn parse(value: Value, substitutions: &[&str], path: &str) -> Result<State> {
        let kind = value
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut fields = match value {
            Value::Object(fields) => fields,
            _ => return Err(refuse(path, "is not an object")),
        };
        fields.remove("Type");
        let body = Value::Object(fields);
        let state = match kind.as_str() {
            "Task" => State::Task(typed(body, path)?),
            "Pass" => State::Pass(typed(body, path)?),
            "Choice" => {
                let raw: RawChoiceState = typed(body, path)?;
                State::Choice(ChoiceState {
                    choices: raw
                        .choices
                        .into_iter()
                        .map(|choice| choice.check_choice().map_err(|why| refuse(path, why)))
                        .collect::<Result<_>>()?,
                    default: raw.default,
                    input_path: raw.input_path,
                    output_path: raw.output_path,
                })
            }
            "Wait" => State::Wait(typed(body, path)?),
            "Map" => {
                let raw: RawMap = typed(body, path)?;
                let mut processor = raw
                    .item_processor
                    .or(raw.iterator)
                    .ok_or_else(|| refuse(path, "a Map needs `ItemProcessor`"))?;
                let config = processor
                    .as_object_mut()
                    .and_then(|fields| fields.remove("ProcessorConfig"))
                    .map(serde_json::from_value::<ProcessorConfig>)
                    .transpose()
                    .map_err(|err| refuse(path, format!("`ProcessorConfig`: {err}")))?;
                let distributed = match config {
                    Some(ProcessorConfig {
                        mode: ProcessorMode::Distributed,
                        execution_type,
                    }) => {
                        if execution_type.is_none() {
                            return Err(refuse(
                                path,
                                "a Distributed Map needs `ExecutionType` (`STANDARD`)",
                            ));
                        }
                        let tolerated = raw.tolerated_failure_percentage.unwrap_or(0.0);
                        if !(0.0..=100.0).contains(&tolerated) {
                            return Err(refuse(
                                path,
                                "`ToleratedFailurePercentage` must be between 0 and 100",
                            ));
                        }
                        Some(Distributed {
                            label: raw.label.clone().unwrap_or_else(|| path.to_owned()),
                            tolerated_failure_percentage: tolerated,
                        })
                    }
                    _ => None,
                };
                if distributed.is_none()
                    && (raw.label.is_some() || raw.tolerated_failure_percentage.is_some())
                {
                    return Err(refuse(
                        path,
                        "`Label` and `ToleratedFailurePercentage` belong to a Distributed Map",
                    ));
                }
                State::Map(Map {
                    distributed,
                    next: raw.next,
                    end: raw.end,
                    input_path: raw.input_path,
                    items_path: raw.items_path.unwrap_or_else(|| "$".to_owned()),
                    item_selector: raw.item_selector.or(raw.parameters),
                    processor: Box::new(Machine::parse(processor, substitutions, path)?),
                    max_concurrency: raw.max_concurrency,
                    max_concurrency_path: raw.max_concurrency_path,
                    result_selector: raw.result_selector,
                    result_path: raw.result_path,
                    output_path: raw.output_path,
                    catch: raw.catch,
                })
            }
            "Succeed" => State::Succeed(typed(body, path)?),
            "Fail" => State::Fail(typed(body, path)?),
            other => {
                return Err(refuse(
                    path,
                    format!("type `{other}` is not supported by the local runner"),
                ))
            }
        };
        if let State::Task(task) = &state {
            let name = substitution_name(&task.resource).ok_or_else(|| {
                refuse(
                    path,
                    format!(
                        "resource `{}` is not a `${{Name}}` substitution",
                        task.resource
                    ),
                )
            })?;
            if !substitutions.contains(&name) {
                return Err(refuse(
                    path,
                    format!("resource `${{{name}}}` is not one of {substitutions:?}"),
                ));
            }
        }
        if state.flows_on() && state.next().is_none() && !state.ends() {
            return Err(refuse(path, "has neither `Next` nor `End`"));
        }
        Ok(state)
    }

    /// Whether the state goes on by `Next`/`End` (Choice, Succeed and Fail do not).
    fn flows_on(&self) -> bool {
        !matches!(self, State::Choice(_) | State::Succeed(_) | State::Fail(_))
    }

    /// `Next`, for the states that flow on.
    pub fn next(&self) -> Option<&str> {
        match self {
            State::Task(s) => s.next.as_deref(),
            State::Pass(s) => s.next.as_deref(),
            State::Wait(s) => s.next.as_deref(),
            State::Map(s) => s.next.as_deref(),
            State::Choice(_) | State::Succeed(_) | State::Fail(_) => None,
        }
    }

    fn ends(&self) -> bool {
        match self {
            State::Task(s) => s.end,
            State::Pass(s) => s.end,
            State::Wait(s) => s.end,
            State::Map(s) => s.end,
            State::Choice(_) | State::Succeed(_) | State::Fail(_) => false,
        }
    }

    /// Every state this one may go to.
    fn targets(&self) -> Vec<&str> {
        let mut targets: Vec<&str> = self.next().into_iter().collect();
        let catchers: &[Catcher] = match self {
            State::Task(s) => &s.catch,
            State::Map(s) => &s.catch,
            _ => &[],
        };
        targets.extend(catchers.iter().map(|c| c.next.as_str()));
        if let State::Choice(choice) = self {
            targets.extend(choice.choices.iter().map(|c| c.next.as_str()));
            targets.extend(choice.default.as_deref());
        }
        targets
    }
}

fn typed<T: for<'de> Deserialize<'de>>(body: Value, path: &str) -> Result<T> {
    serde_json::from_value(body).map_err(|err| refuse(path, err))
}

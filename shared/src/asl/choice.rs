//! Choice rules: parsed into a [`Condition`] when the definition loads (exactly one comparison
//! per rule, only the operators below), evaluated against a state's input.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::path::read_path;

/// A rule as written: one of `And`, `Or`, `Not`, or `Variable` with one comparison; a
/// top-level rule also names its `Next` state.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    and: Option<Vec<RawRule>>,
    #[serde(default)]
    or: Option<Vec<RawRule>>,
    #[serde(default)]
    not: Option<Box<RawRule>>,
    #[serde(default)]
    variable: Option<String>,
    #[serde(default)]
    string_equals: Option<String>,
    #[serde(default)]
    boolean_equals: Option<bool>,
    #[serde(default)]
    numeric_equals: Option<f64>,
    #[serde(default)]
    numeric_greater_than: Option<f64>,
    #[serde(default)]
    numeric_less_than: Option<f64>,
    #[serde(default)]
    numeric_greater_than_equals: Option<f64>,
    #[serde(default)]
    is_present: Option<bool>,
    #[serde(default)]
    is_null: Option<bool>,
    #[serde(default, rename = "Comment")]
    _comment: IgnoredAny,
}

/// A checked top-level rule.
#[derive(Debug, Clone)]
pub(super) struct Choice {
    /// When it holds.
    pub condition: Condition,
    /// Where it goes then.
    pub next: String,
}

/// A checked condition.
#[derive(Debug, Clone)]
pub(super) enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Test { variable: String, test: Test },
}

/// One comparison of a variable.
#[derive(Debug, Clone)]
pub(super) enum Test {
    StringEquals(String),
    BooleanEquals(bool),
    NumericEquals(f64),
    NumericGreaterThan(f64),
    NumericLessThan(f64),
    NumericGreaterThanEquals(f64),
    IsPresent(bool),
    IsNull(bool),
}

impl RawRule {
    /// A top-level rule checked, or why it cannot run.
    pub fn check_choice(mut self) -> Result<Choice, String> {
        let next = self
            .next
            .take()
            .ok_or("a top-level choice rule needs `Next`")?;
        Ok(Choice {
            condition: self.check()?,
            next,
        })
    }

    fn check(self) -> Result<Condition, String> {
        if self.next.is_some() {
            return Err("only a top-level choice rule has `Next`".to_owned());
        }
        let tests: Vec<Test> = [
            self.string_equals.map(Test::StringEquals),
            self.boolean_equals.map(Test::BooleanEquals),
            self.numeric_equals.map(Test::NumericEquals),
            self.numeric_greater_than.map(Test::NumericGreaterThan),
            self.numeric_less_than.map(Test::NumericLessThan),
            self.numeric_greater_than_equals
                .map(Test::NumericGreaterThanEquals),
            self.is_present.map(Test::IsPresent),
            self.is_null.map(Test::IsNull),
        ]
        .into_iter()
        .flatten()
        .collect();
        let combinators = usize::from(self.and.is_some())
            + usize::from(self.or.is_some())
            + usize::from(self.not.is_some());
        match (self.and, self.or, self.not, self.variable, tests.len()) {
            (Some(all), None, None, None, 0) => Ok(Condition::And(check_all(all)?)),
            (None, Some(any), None, None, 0) => Ok(Condition::Or(check_all(any)?)),
            (None, None, Some(inner), None, 0) => Ok(Condition::Not(Box::new(inner.check()?))),
            (None, None, None, Some(variable), 1) => Ok(Condition::Test {
                variable,
                test: tests
                    .into_iter()
                    .next()
                    .ok_or("a choice rule has no comparison")?,
            }),
            (None, None, None, Some(_), 0) => Err("a choice rule has no comparison".to_owned()),
            (None, None, None, None, _) if combinators == 0 => {
                Err("a choice rule has no `Variable`".to_owned())
            }
            _ => Err(
                "a choice rule holds one of `And`, `Or`, `Not`, or `Variable` with exactly one \
                 comparison (`StringEquals`, `BooleanEquals`, `NumericEquals`, \
                 `NumericGreaterThan`, `NumericLessThan`, `NumericGreaterThanEquals`, \
                 `IsPresent`, `IsNull`)"
                    .to_owned(),
            ),
        }
    }
}

fn check_all(rules: Vec<RawRule>) -> Result<Vec<Condition>, String> {
    rules.into_iter().map(RawRule::check).collect()
}

impl Condition {
    /// Whether the condition holds for `input` (`$$` paths read `ctx`).
    pub fn holds(&self, input: &Value, ctx: &Value) -> Result<bool, String> {
        match self {
            Condition::And(all) => {
                for inner in all {
                    if !inner.holds(input, ctx)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Condition::Or(any) => {
                for inner in any {
                    if inner.holds(input, ctx)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Condition::Not(inner) => Ok(!inner.holds(input, ctx)?),
            Condition::Test { variable, test } => {
                let value = read_path(input, ctx, variable);
                let number = |v: &Value| v.as_f64();
                Ok(match test {
                    Test::IsPresent(expected) => value.is_ok() == *expected,
                    Test::IsNull(expected) => value.is_ok_and(|v| v.is_null()) == *expected,
                    Test::StringEquals(expected) => value?.as_str() == Some(expected.as_str()),
                    Test::BooleanEquals(expected) => value?.as_bool() == Some(*expected),
                    Test::NumericEquals(expected) => number(&value?) == Some(*expected),
                    Test::NumericGreaterThan(bound) => number(&value?).is_some_and(|v| v > *bound),
                    Test::NumericLessThan(bound) => number(&value?).is_some_and(|v| v < *bound),
                    Test::NumericGreaterThanEquals(bound) => {
                        number(&value?).is_some_and(|v| v >= *bound)
                    }
                })
            }
        }
    }
}

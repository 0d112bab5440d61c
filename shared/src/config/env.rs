//! `${VAR}` substitution in the config's string values, from an environment the caller passes.
//!
//! serde gives a field's `deserialize_with` function no context, so the environment of one parse
//! reaches it through a thread-local that [`EnvironmentGuard`] sets for the parse and clears
//! after: parsing never reads the process environment by itself.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serializer};

use crate::secret::{SecretString, MASK};

use super::CheckedStr;

/// The variables `${VAR}` can name, for the duration of one parse.
pub type Environment = BTreeMap<String, String>;

/// The variables a config read by a Lambda function may name: `TIDEMARK_*` only. The function's
/// environment also holds its AWS credentials; whoever may write the config object must not be
/// able to read them through it.
pub fn lambda_environment(process: impl IntoIterator<Item = (String, String)>) -> Environment {
    process
        .into_iter()
        .filter(|(name, _)| name.starts_with("TIDEMARK_"))
        .collect()
}

thread_local! {
    static PARSE_ENVIRONMENT: RefCell<Option<Environment>> = const { RefCell::new(None) };
}

/// Substitutes `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
pub(super) fn substitute(text: &str, env: &Environment) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body
                .find('}')
                // The value is never echoed: it may be a password.
                .ok_or_else(|| {
                    "an unclosed `${` in this value; write `$${` for a literal `${`".to_owned()
                })?;
            let (name, default) = match body[..close].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..close], None),
            };
            let valid_name =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(
                    "a `${…}` in this value is not a variable reference (names are `A-Z a-z 0-9 _`); write `$$` for a literal `$`"
                        .to_owned(),
                );
            }
            if name.starts_with("AWS_") {
                return Err(format!(
                    "`${{{name}}}` is refused: `AWS_*` variables hold the process's own AWS credentials and settings, which a config must never read (in a host name they would leave by DNS); put the value in a `TIDEMARK_*` variable or a secret"
                ));
            }
            match (env.get(name), default) {
                (Some(value), _) => out.push_str(value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set; set it, or write `${{{name}:-default}}`"
                    ))
                }
            }
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute_in_parse(raw: &str) -> std::result::Result<String, String> {
    PARSE_ENVIRONMENT.with(|cell| match cell.borrow().as_ref() {
        Some(env) => substitute(raw, env),
        None => Ok(raw.to_owned()),
    })
}

/// A string value with `${VAR}` substituted while parsing.
struct Interpolated(String);

impl<'de> Deserialize<'de> for Interpolated {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer
            .deserialize_str(CheckedStr {
                expecting: "a string",
                check: substitute_in_parse,
            })
            .map(Interpolated)
    }
}

pub(super) fn interpolated<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<String, D::Error> {
    Interpolated::deserialize(deserializer).map(|value| value.0)
}

pub(super) fn interpolated_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<String>, D::Error> {
    Ok(Option::<Interpolated>::deserialize(deserializer)?.map(|value| value.0))
}

pub(super) fn interpolated_secret<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<SecretString>, D::Error> {
    Ok(interpolated_option(deserializer)?.map(SecretString::from))
}

pub(super) fn masked<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str(MASK),
        None => serializer.serialize_none(),
    }
}

/// Sets the parse environment for the current thread until dropped.
pub(super) struct EnvironmentGuard;

impl EnvironmentGuard {
    pub(super) fn set(env: &Environment) -> Self {
        PARSE_ENVIRONMENT.with(|cell| *cell.borrow_mut() = Some(env.clone()));
        EnvironmentGuard
    }
}

impl Drop for EnvironmentGuard {
    fn drop(&mut self) {
        PARSE_ENVIRONMENT.with(|cell| *cell.borrow_mut() = None);
    }
}

//! The Lambda edge shared by the five functions: JSON tracing, services built once from the
//! environment, each invocation's time budget, and errors narrowed to the documented
//! `errorType` names Step Functions matches. A function's `main` is `serve(Function::…)`.

use std::time::{Duration, SystemTime};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::config::{Config, Environment};
use crate::error::{Error, ErrorKind, Result};
use crate::services::Services;
use crate::steps::Function;
use crate::storage::{self, Bucket};

/// Where the configuration is, when `TIDEMARK_CONFIG` is not set: bundled beside the binary.
const DEFAULT_CONFIG: &str = "tidemark.yaml";

/// How long before the invocation's deadline an extraction stops reading and finishes the part
/// it is writing, unless `TIDEMARK_EXTRACT_DEADLINE_MARGIN_SECONDS` says otherwise.
const DEFAULT_EXTRACT_MARGIN: Duration = Duration::from_secs(60);

/// Runs `function` under the Lambda runtime until the runtime stops it: tracing, the
/// configuration and clients (once), then each invocation through [`Function::handle`] with the
/// time left before its deadline (less the extract margin).
pub async fn serve(function: Function) -> std::result::Result<(), lambda_runtime::Error> {
    init_tracing();
    let margin = match function {
        Function::Extract => {
            extract_margin(std::env::var("TIDEMARK_EXTRACT_DEADLINE_MARGIN_SECONDS").ok())?
        }
        _ => Duration::ZERO,
    };
    let services = services_from_env().await?;
    let services = &services;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let time_left = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(margin);
        function
            .handle(services, event.payload, Some(time_left))
            .await
            .map_err(diagnostic)
    }))
    .await
}

/// The extract margin from `TIDEMARK_EXTRACT_DEADLINE_MARGIN_SECONDS` (whole seconds); a value
/// that is not one fails the function's start, naming the setting.
pub fn extract_margin(setting: Option<String>) -> Result<Duration> {
    match setting {
        None => Ok(DEFAULT_EXTRACT_MARGIN),
        Some(text) => text.trim().parse().map(Duration::from_secs).map_err(|_| {
            Error::config(
                "TIDEMARK_EXTRACT_DEADLINE_MARGIN_SECONDS",
                format!("`{text}` is not a whole number of seconds (the template's ExtractDeadlineMarginSeconds)"),
            )
        }),
    }
}

/// JSON logs, one object per line, as CloudWatch expects; level from `RUST_LOG` (default info).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .init();
}

/// Loads the configuration from a local path or an `s3://bucket/key` URI.
pub async fn load_config(location: &str, env: &Environment) -> Result<Config> {
    match location.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, key) = rest.split_once('/').ok_or_else(|| {
                Error::config(location, "an S3 config location is `s3://bucket/key`")
            })?;
            let bucket = Bucket::new(storage::client_from_env().await, bucket);
            let object = bucket.get(key).await?.ok_or_else(|| {
                Error::config(location, "no such object; upload the configuration there")
            })?;
            let text = String::from_utf8(object.body.to_vec())
                .map_err(|_| Error::config(location, "the configuration is not UTF-8 text"))?;
            Config::from_yaml(&text, location, env)
        }
        None => Config::from_file(std::path::Path::new(location), env),
    }
}

/// Services for a Lambda function: config from `TIDEMARK_CONFIG` (path or `s3://` URI).
pub async fn services_from_env() -> Result<Services> {
    let env = crate::config::lambda_environment(std::env::vars());
    let location = env
        .get("TIDEMARK_CONFIG")
        .cloned()
        .unwrap_or_else(|| DEFAULT_CONFIG.to_owned());
    let config = load_config(&location, &env).await?;
    Ok(Services::from_env(config, None).await)
}

/// The Lambda error for `err`: `errorType` is one of the documented kinds.
pub fn diagnostic(err: Error) -> Diagnostic {
    // ERROR is for data loss or operator action (STYLE §6): a fault the state machine retries,
    // or a table another run holds, is a warning.
    match err.kind() {
        ErrorKind::Retryable | ErrorKind::ConcurrentUpdate | ErrorKind::LeaseHeld => {
            tracing::warn!(error_type = err.kind().name(), error = %err, "step failed; the state machine retries it, or fails the table");
        }
        ErrorKind::DependencyFailed => {
            tracing::info!(error_type = err.kind().name(), error = %err, "table skipped");
        }
        ErrorKind::NonRetryable | ErrorKind::SchemaDrift => {
            tracing::error!(error_type = err.kind().name(), error = %err, "step failed");
        }
    }
    Diagnostic {
        error_type: err.kind().name().to_owned(),
        error_message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extract_margin_is_whole_seconds_or_the_function_does_not_start() {
        assert_eq!(extract_margin(None).unwrap(), Duration::from_secs(60));
        assert_eq!(
            extract_margin(Some(" 90 ".into())).unwrap(),
            Duration::from_secs(90)
        );
        let err = extract_margin(Some("1m".into())).unwrap_err().to_string();
        assert!(
            err.contains("TIDEMARK_EXTRACT_DEADLINE_MARGIN_SECONDS") && err.contains("`1m`"),
            "{err}"
        );
    }
}

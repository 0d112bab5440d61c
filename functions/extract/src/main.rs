//! Lambda `tidemark-extract`: `plan` a run into chunks and `extract` one chunk.
//! Wiring only: every action is `tidemark::steps::extract`; the invocation's deadline, less
//! `TIDEMARK_EXTRACT_DEADLINE_MARGIN_SECONDS` (default 60), bounds each extraction.

use std::time::{Duration, SystemTime};

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use tidemark::lambda::{diagnostic, init_tracing, services_from_env};
use tidemark::steps::extract::{handle, parse_request};

const DEFAULT_MARGIN_SECONDS: u64 = 60;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let services = services_from_env().await?;
    let services = &services;
    let margin = Duration::from_secs(
        std::env::var("TIDEMARK_EXTRACT_DEADLINE_MARGIN_SECONDS")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(DEFAULT_MARGIN_SECONDS),
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let time_left = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(margin);
        let request = parse_request(event.payload).map_err(diagnostic)?;
        handle(services, &request, Some(time_left))
            .await
            .map_err(diagnostic)
    }))
    .await
}

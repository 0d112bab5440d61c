//! Lambda `tidemark-watermark`: prepare/summarize a sync, begin/commit/commit_load/fail a run.
//! Wiring only: every action is `tidemark::steps::watermark`.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use tidemark::lambda::{diagnostic, init_tracing, services_from_env};
use tidemark::steps::watermark::{handle, parse_request};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let services = services_from_env().await?;
    let services = &services;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request = parse_request(event.payload).map_err(diagnostic)?;
        handle(services, &request).await.map_err(diagnostic)
    }))
    .await
}

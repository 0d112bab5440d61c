//! Lambda `tidemark-operator`: an operator's reads and audited edits of a table's watermark.
//! Wiring only: every action is `tidemark::steps::operator`. The state machine never invokes
//! this function, and operators need invoke on nothing else.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use tidemark::lambda::{diagnostic, init_tracing, services_from_env};
use tidemark::steps::operator::{handle, parse_request};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let services = services_from_env().await?;
    let services = &services;
    // The caller's identity is not part of a Lambda event: the payload's `requested_by` names
    // who asked, and CloudTrail's Invoke data events name the principal that invoked.
    let via = format!(
        "lambda:{}",
        std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|_| "tidemark-operator".to_owned())
    );
    let via = &via;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let call = parse_request(event.payload, via).map_err(diagnostic)?;
        handle(services, &call).await.map_err(diagnostic)
    }))
    .await
}

//! Lambda `tidemark-cleanup`: S3 retention on a schedule. Wiring only: every rule is
//! `tidemark::clean`, the same code `tidemark s3clean` runs, so pending data is never deleted.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use tidemark::clean::{cleanup, parse_request};
use tidemark::lambda::{diagnostic, init_tracing, services_from_env};
use tidemark::steps::answer;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let services = services_from_env().await?;
    let services = &services;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request = parse_request(event.payload).map_err(diagnostic)?;
        let result = cleanup(services, &request).await.map_err(diagnostic)?;
        answer(result).map_err(diagnostic)
    }))
    .await
}

//! Lambda `tidemark-cleanup`: S3 retention of loaded runs, on its own schedule.
//! Wiring only: `tidemark::steps::Function::Cleanup` holds the step it runs.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tidemark::lambda::serve(tidemark::steps::Function::Cleanup).await
}

//! Lambda `tidemark-watermark`: prepare/summarize a sync, begin/commit/commit_load/fail a run.
//! Wiring only: `tidemark::steps::Function::Watermark` holds the step it runs.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tidemark::lambda::serve(tidemark::steps::Function::Watermark).await
}

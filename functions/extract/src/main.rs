//! Lambda `tidemark-extract`: `plan` a run into chunks and `extract` one chunk, each extraction
//! bounded by the invocation's deadline less `TIDEMARK_EXTRACT_DEADLINE_MARGIN_SECONDS`.
//! Wiring only: `tidemark::steps::Function::Extract` holds the step it runs.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tidemark::lambda::serve(tidemark::steps::Function::Extract).await
}

//! Lambda `tidemark-load`: `submit` and `status` of a table's load into the warehouse.
//! Wiring only: `tidemark::steps::Function::Load` holds the step it runs.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tidemark::lambda::serve(tidemark::steps::Function::Load).await
}

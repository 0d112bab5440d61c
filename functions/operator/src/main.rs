//! Lambda `tidemark-operator`: an operator's reads and audited edits of a table's watermark.
//! The state machine never invokes it, and operators need invoke on nothing else.
//! Wiring only: `tidemark::steps::Function::Operator` holds the step it runs.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tidemark::lambda::serve(tidemark::steps::Function::Operator).await
}

//! The extract steps: `plan` a run into chunks and `extract` one chunk (or its continuation).
//! The Lambda `tidemark-extract` and the local runner both call [`handle`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::extract::{self, ExtractOptions, ExtractRequest, PlanRequest};
use crate::manifest;
use crate::run::RunContext;
use crate::schema::TableSchema;

use crate::services::Services;

/// Every request the extract function answers, chosen by `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ExtractStepRequest {
    /// Split the run into chunk specs.
    Plan(PlanRequest),
    /// Extract one chunk, or continue it.
    Extract(ExtractRequest),
}

/// Parses a payload, with an error that lists what is accepted.
pub fn parse_request(payload: serde_json::Value) -> Result<ExtractStepRequest> {
    serde_json::from_value(payload).map_err(|err| {
        Error::InvalidRequest(format!(
            "invalid extract payload: {err}; actions are plan and extract (README: Lambda payloads)"
        ))
    })
}

/// The schema `begin` recorded for the run: every chunk writes files with exactly this schema.
async fn run_schema(services: &Services, run: &RunContext) -> Result<TableSchema> {
    let (pipeline, _, layout) = run.resolve(&services.config)?;
    let bucket = services.bucket(pipeline);
    let key = layout.run_schema_key(&run.pipeline, &run.table, &run.run_id);
    let object = bucket.get(&key).await?.ok_or_else(|| {
        Error::InvalidRequest(format!(
            "{} is missing: `begin` of run `{}` did not finish; start a new sync",
            bucket.uri(&key),
            run.run_id
        ))
    })?;
    manifest::parse_json(&object.body, &bucket.uri(&key))
}

/// Runs a request. `time_left` is how long the invocation may still run (the Lambda deadline
/// minus the configured margin); `None` locally.
pub async fn handle(
    services: &Services,
    request: &ExtractStepRequest,
    time_left: Option<Duration>,
) -> Result<serde_json::Value> {
    let run = match request {
        ExtractStepRequest::Plan(plan) => &plan.run,
        ExtractStepRequest::Extract(extract) => &extract.run,
    };
    let (pipeline, table_config, layout) = run.resolve(&services.config)?;
    let schema = run_schema(services, run).await?;
    let source = services.source(pipeline).await?;
    let answer = match request {
        ExtractStepRequest::Plan(_) => {
            let mut conn = source.conn().await?;
            let plan = source
                .within(
                    "planning the extraction",
                    extract::plan(
                        &mut conn,
                        &schema,
                        run,
                        table_config,
                        pipeline.chunk_concurrency,
                    ),
                )
                .await?;
            serde_json::to_value(plan)
        }
        ExtractStepRequest::Extract(request) => {
            let options = ExtractOptions {
                deadline: time_left.map(|left| tokio::time::Instant::now() + left),
                target: services.config.target_warehouse(pipeline)?,
                ..ExtractOptions::default()
            };
            let bucket = services.bucket(pipeline);
            let started = std::time::Instant::now();
            let job = extract::ExtractJob {
                source: &source,
                bucket: &bucket,
                layout: &layout,
                schema: &schema,
                table: table_config,
            };
            let result = extract::extract_chunk(&job, request, &options).await?;
            if result.done {
                crate::metrics::chunk_extracted(
                    &run.pipeline,
                    &run.table,
                    &run.run_id,
                    result.rows,
                    result.bytes,
                    started.elapsed(),
                )
                .emit();
            }
            serde_json::to_value(result)
        }
    };
    answer.map_err(|err| Error::internal(format!("cannot encode the answer: {err}")))
}

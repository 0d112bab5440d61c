//! The five Lambda functions as one type: how each is named in the template and the state
//! machine's definition, and the one dispatch from a payload to its step, used alike by the
//! Lambda runtime ([`crate::lambda::serve`]) and the local runner ([`super::local_sync`]).

use std::time::Duration;

use serde_json::Value;

use crate::error::Result;

use super::{cleanup, extract, load, operator, watermark};
use crate::services::Services;

/// A tidemark Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `tidemark-extract`: plan a run into chunks, extract one chunk.
    Extract,
    /// `tidemark-watermark`: a sync's prepare/summarize, a run's begin/commit/commit_load/fail.
    Watermark,
    /// `tidemark-load`: submit a load, ask its status.
    Load,
    /// `tidemark-cleanup`: S3 retention, on its own schedule.
    Cleanup,
    /// `tidemark-operator`: people's watermark reads and audited edits.
    Operator,
}

impl Function {
    /// Every function.
    pub const ALL: [Function; 5] = [
        Function::Extract,
        Function::Watermark,
        Function::Load,
        Function::Cleanup,
        Function::Operator,
    ];

    /// The binary's name, which is also the function's default name in AWS.
    pub const fn binary(self) -> &'static str {
        match self {
            Function::Extract => "tidemark-extract",
            Function::Watermark => "tidemark-watermark",
            Function::Load => "tidemark-load",
            Function::Cleanup => "tidemark-cleanup",
            Function::Operator => "tidemark-operator",
        }
    }

    /// The `${…}` substitution that names the function's ARN in a definition.
    pub const fn substitution(self) -> &'static str {
        match self {
            Function::Extract => "ExtractFunctionArn",
            Function::Watermark => "WatermarkFunctionArn",
            Function::Load => "LoadFunctionArn",
            Function::Cleanup => "CleanupFunctionArn",
            Function::Operator => "OperatorFunctionArn",
        }
    }

    /// The function whose ARN `name` substitutes.
    pub fn from_substitution(name: &str) -> Option<Function> {
        Function::ALL
            .into_iter()
            .find(|function| function.substitution() == name)
    }

    /// Runs one invocation: parses `payload` for this function's step and answers as JSON.
    /// `time_left` is what the invocation has left: an extraction stops and asks to be continued
    /// before it; a wire-protocol load is cancelled (and says why) rather than killed.
    pub async fn handle(
        self,
        services: &Services,
        payload: Value,
        time_left: Option<Duration>,
    ) -> Result<Value> {
        match self {
            Function::Extract => {
                let request = extract::parse_request(payload)?;
                extract::handle(services, &request, time_left).await
            }
            Function::Watermark => {
                watermark::handle(services, &watermark::parse_request(payload)?).await
            }
            Function::Load => {
                load::handle(services, &load::parse_request(payload)?, time_left).await
            }
            Function::Cleanup => {
                super::answer(cleanup::cleanup(services, &cleanup::parse_request(payload)?).await?)
            }
            Function::Operator => {
                // The caller's identity is not part of an invocation: the payload's
                // `requested_by` names who asked, and CloudTrail's Invoke data events name the
                // principal that invoked.
                let via = format!(
                    "lambda:{}",
                    std::env::var("AWS_LAMBDA_FUNCTION_NAME")
                        .unwrap_or_else(|_| self.binary().to_owned())
                );
                operator::handle(services, &operator::parse_request(payload, &via)?).await
            }
        }
    }
}

//! The clients a process builds once and every step, and the CLI's operator tools, share: the
//! configuration, S3, Secrets Manager, the Redshift Data API, STS, and a pool per MySQL source.

use std::collections::HashMap;

use tokio::sync::Mutex;

use crate::config::{Config, Connection, Pipeline};
use crate::error::{Error, Result};
use crate::load::target::{Reach, TargetClient};
use crate::naming::StorageLayout;
use crate::secret::SecretResolver;
use crate::source::Source;
use crate::storage::{self, Bucket};
use crate::watermark::{LocalOwner, WatermarkStore};

/// Clients built once per process and shared by every step.
#[derive(Debug)]
pub struct Services {
    /// The parsed configuration.
    pub config: Config,
    s3: aws_sdk_s3::Client,
    secrets: SecretResolver,
    redshift_data: aws_sdk_redshiftdata::Client,
    sts: aws_sdk_sts::Client,
    local_owner: Option<LocalOwner>,
    sources: Mutex<HashMap<String, Source>>,
}

impl Services {
    /// Services with clients from the standard AWS environment (`AWS_ENDPOINT_URL` included),
    /// bounded by the configuration's `aws` settings. `local_owner` identifies a local process
    /// (CLI) so its leases can be taken over once it is gone.
    pub async fn from_env(config: Config, local_owner: Option<LocalOwner>) -> Self {
        let shared = storage::sdk_config(&config.aws).await;
        Services {
            config,
            s3: storage::client_from_config(&shared),
            secrets: SecretResolver::new(aws_sdk_secretsmanager::Client::new(&shared)),
            redshift_data: aws_sdk_redshiftdata::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
            local_owner,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// These services with another Redshift Data API client: tests point it at their stand-in
    /// (an endpoint override) while S3 stays on the local endpoint, without touching the process
    /// environment. In AWS, `AWS_ENDPOINT_URL_REDSHIFT_DATA` does the same for `from_env`.
    pub fn with_redshift_data(mut self, client: aws_sdk_redshiftdata::Client) -> Self {
        self.redshift_data = client;
        self
    }

    /// The AWS identity (ARN) these services act as, from STS `GetCallerIdentity`: who an
    /// operator edit from the CLI is recorded as.
    pub async fn caller_identity(&self) -> Result<String> {
        let answer = self.sts.get_caller_identity().send().await.map_err(|err| {
            Error::config("AWS credentials", format!(
                "cannot tell who is asking: STS GetCallerIdentity failed ({}); every watermark edit records the caller's AWS identity, so give the CLI working AWS credentials (AWS_PROFILE, or `aws sso login`)",
                aws_sdk_sts::error::DisplayErrorContext(&err)
            ))
        })?;
        answer.arn.ok_or_else(|| {
            Error::InvalidRequest(
                "STS GetCallerIdentity answered without an ARN: cannot record who is asking"
                    .to_owned(),
            )
        })
    }

    /// The clients a warehouse session is opened with.
    pub fn reach(&self) -> Reach<'_> {
        Reach {
            secrets: &self.secrets,
            data_api: &self.redshift_data,
        }
    }

    /// A session on the configuration's connection `name`, reached as configured.
    pub async fn target(&self, name: &str) -> Result<TargetClient> {
        TargetClient::connect(self.reach(), &self.config, name).await
    }

    /// The S3 client.
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    /// The secret resolver.
    pub fn secrets(&self) -> &SecretResolver {
        &self.secrets
    }

    /// The Redshift Data API client.
    pub fn redshift_data(&self) -> &aws_sdk_redshiftdata::Client {
        &self.redshift_data
    }

    /// This process, when it is a local run.
    pub fn local_owner(&self) -> Option<&LocalOwner> {
        self.local_owner.as_ref()
    }

    /// The pipeline's bucket.
    pub fn bucket(&self, pipeline: &Pipeline) -> Bucket {
        Bucket::new(self.s3.clone(), &pipeline.s3.bucket)
            .with_expected_owner(pipeline.s3.expected_bucket_owner.clone())
    }

    /// The pipeline's watermark store.
    pub fn watermarks(&self, pipeline: &Pipeline) -> WatermarkStore {
        WatermarkStore::new(
            self.bucket(pipeline),
            StorageLayout::new(&pipeline.s3.prefix),
            pipeline.watermark_history,
        )
        .keeping_for(pipeline.watermark_history_age.0)
    }

    /// A connection pool to the pipeline's source, opened once per process.
    pub async fn source(&self, pipeline: &Pipeline) -> Result<Source> {
        let mut pools = self.sources.lock().await;
        if let Some(source) = pools.get(&pipeline.source) {
            return Ok(source.clone());
        }
        let Some(Connection::Mysql(connection)) = self.config.connections.get(&pipeline.source)
        else {
            return Err(Error::InvalidRequest(format!(
                "source `{}` is not a mysql connection",
                pipeline.source
            )));
        };
        let source = crate::source::connect(connection, Some(&self.secrets)).await?;
        pools.insert(pipeline.source.clone(), source.clone());
        Ok(source)
    }
}

//! One test's world for a sync: a fresh MariaDB database, PostgreSQL schema and bucket, and the
//! warehouse reached as the scenario asks — PostgreSQL, Redshift through the Data API stand-in,
//! or PostgreSQL through an SSH bastion — with the services built for a pipeline of its tables.

use tidemark::asl::RunnerOptions;
use tidemark::config::Connection;
use tidemark::services::Services;

use crate::bastion::Bastion;
use crate::redshift_standin::{self, RedshiftStandin};
use crate::s3::TestBucket;
use crate::{postgres_address, MysqlServer, TestMysql, TestPostgres};

/// Where the warehouse is; every kind keeps its tables in the test's PostgreSQL schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `kind: postgres`.
    Postgres,
    /// `kind: redshift, access: data_api`, served by the Data API stand-in.
    Redshift,
    /// `kind: postgres` through an SSH bastion (its key in Secrets Manager, as Lambda has it).
    Tunnel,
}

/// The world: pipeline `p` from `mysql`'s database to `pg`'s schema through `bucket`.
pub struct Stack<'a> {
    /// The source database.
    pub mysql: &'a TestMysql,
    /// The target schema.
    pub pg: &'a TestPostgres,
    /// The pipeline's bucket.
    pub bucket: TestBucket,
    /// How the warehouse is reached.
    pub target: Target,
    /// The bastion, for [`Target::Tunnel`].
    pub bastion: Option<Bastion>,
    standin: Option<RedshiftStandin>,
    bastion_key_secret: Option<String>,
}

impl<'a> Stack<'a> {
    /// A fresh bucket, and the stand-in or bastion `target` needs.
    pub async fn new(
        mysql: &'a TestMysql,
        pg: &'a TestPostgres,
        target: Target,
    ) -> anyhow::Result<Stack<'a>> {
        let bucket = TestBucket::fresh().await?;
        let (mut standin, mut bastion, mut bastion_key_secret) = (None, None, None);
        match target {
            Target::Postgres => {}
            Target::Redshift => standin = Some(RedshiftStandin::start().await?),
            Target::Tunnel => {
                let address = postgres_address()?;
                let started = Bastion::start(&format!("{}:{}", address.host, address.port)).await?;
                bastion_key_secret = Some(store_secret(&started.private_key()?).await?);
                bastion = Some(started);
            }
        }
        Ok(Stack {
            mysql,
            pg,
            bucket,
            target,
            bastion,
            standin,
            bastion_key_secret,
        })
    }

    /// Services for pipeline `p` with `tables` (YAML under `tables:`, `{db}` for the source
    /// database), built anew each call, as a changed config file would be.
    pub async fn services(&self, tables: &str) -> anyhow::Result<Services> {
        let mut config = self.mysql.config(self.bucket.bucket().name(), tables)?;
        if let (Some(bastion), Some(secret)) = (&self.bastion, &self.bastion_key_secret) {
            let Some(Connection::Postgres(target)) = config.connections.get_mut("wh") else {
                anyhow::bail!("the harness config has no postgres target `wh`");
            };
            let mut tunnel = bastion.tunnel_config();
            tunnel.private_key_file = None;
            tunnel.private_key_secret = Some(secret.clone());
            target.tunnel = Some(tunnel);
        }
        redshift_standin::services_with_target(config, self.pg.schema(), self.standin.as_ref())
            .await
    }

    /// The configuration file [`Stack::services`] builds from, as text for the CLI or a deployed
    /// function, with `tables`. Only the PostgreSQL and Redshift targets have one: a tunnel's key
    /// lives in Secrets Manager, which the text names only for [`Target::Tunnel`]'s services.
    pub fn config_yaml(&self, tables: &str) -> anyhow::Result<String> {
        let yaml = self
            .mysql
            .config_yaml(self.bucket.bucket().name(), tables)?;
        let schema = self.pg.schema();
        Ok(match self.target {
            Target::Postgres => yaml.replace("schema: public", &format!("schema: \"{schema}\"")),
            Target::Redshift => {
                let (before, after) = yaml
                    .split_once("  wh:\n")
                    .ok_or_else(|| anyhow::anyhow!("the harness config has no `wh`"))?;
                let rest = after
                    .split_once("pipelines:")
                    .map(|(_, rest)| rest)
                    .unwrap_or_default();
                format!(
                    "{before}  wh:\n    {{kind: redshift, access: data_api, workgroup: standin, database: dev, schema: \"{schema}\", iam_role: \"arn:aws:iam::123456789012:role/tidemark-copy\"}}\npipelines:{rest}"
                )
            }
            Target::Tunnel => anyhow::bail!("a tunnel target has no configuration text here"),
        })
    }

    /// What a process reading [`Stack::config_yaml`] needs in its environment to reach this
    /// stack's warehouse (the Data API stand-in's endpoint).
    pub fn target_environment(&self) -> Vec<(String, String)> {
        self.standin
            .iter()
            .map(|standin| {
                (
                    "AWS_ENDPOINT_URL_REDSHIFT_DATA".to_owned(),
                    standin.endpoint_url().to_owned(),
                )
            })
            .collect()
    }

    /// Removes the bucket (the database and schema go with their own guards).
    pub async fn remove(self) -> anyhow::Result<()> {
        self.bucket.remove().await
    }
}

/// Runs `test` in a fresh [`Stack`] for `target`, and removes everything after it, pass or fail.
pub async fn with_stack(target: Target, test: impl AsyncFnOnce(&Stack<'_>) -> anyhow::Result<()>) {
    with_stack_on(MysqlServer::Shared, target, test).await;
}

/// [`with_stack`] with its source database on `server` (e.g. one in local time).
pub async fn with_stack_on(
    server: MysqlServer,
    target: Target,
    test: impl AsyncFnOnce(&Stack<'_>) -> anyhow::Result<()>,
) {
    TestMysql::run_on(server, async |mysql| {
        TestPostgres::run(async |pg| {
            let stack = Stack::new(mysql, pg, target).await?;
            let outcome = test(&stack).await;
            stack.remove().await?;
            outcome
        })
        .await
    })
    .await
    .unwrap();
}

/// Runner options for tests: no waits between polls and retries, named `execution`.
pub fn fast_runner(execution: &str) -> RunnerOptions {
    RunnerOptions {
        wait_scale: 0.0,
        retry_scale: 0.0,
        execution_name: execution.to_owned(),
        ..RunnerOptions::default()
    }
}

/// Stores `text` as a new Secrets Manager secret and answers its name.
pub async fn store_secret(text: &str) -> anyhow::Result<String> {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let name = format!("tidemark-test-{}", uuid::Uuid::new_v4().simple());
    aws_sdk_secretsmanager::Client::new(&shared)
        .create_secret()
        .name(&name)
        .secret_string(text)
        .send()
        .await?;
    Ok(name)
}

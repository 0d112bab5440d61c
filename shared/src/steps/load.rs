//! The load steps: `submit` loads (or, through the Data API, starts loading) the table's pending
//! runs; `status` says how that went and hands `loaded` on to watermark `commit_load`.
//!
//! PostgreSQL targets and Redshift `access: direct`/`tunnel` (and the Data API's fallback to the
//! tunnel when the API is unreachable or refuses the credentials) load synchronously inside
//! `submit`, which
//! answers `finished` with the result, so `status` answers at once from the submission. Through
//! the Data API, `submit` runs the schema step, sends ONE batch and answers `submitted` with its
//! statement id; the state machine then polls `status` (Wait + Choice) until it is `finished` or
//! `failed`. A failed batch is reported as data (`state: failed`, `error`, `error_type`), not as a
//! Lambda error, because retrying `status` cannot help: the state machine submits again with
//! `attempt` + 1 when `error_type` is `Retryable`.

use chrono::Utc;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::config::{
    Connection, PostgresConnection, RedshiftAccess, RedshiftConnection, TunnelConfig,
};
use crate::error::{Error, ErrorKind, Result};
use crate::load::data_api::{self, DataApi, StatementState};
use crate::load::{self, sql, tunnel, wire, CommittedRun, Dialect, LoadPlan, PlanTarget};
use crate::naming::{self, RunId};
use crate::run::RunContext;
use crate::schema::RedshiftTableOptions;
use crate::secret::{expose, SecretString};
use crate::watermark::LoadedRun;

use super::Services;

/// Every request the load function answers, chosen by `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum LoadRequest {
    /// Load (or start loading) the table's pending runs.
    Submit(SubmitRequest),
    /// How a submitted load is doing.
    Status(StatusRequest),
}

/// `submit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The run holding the table's lease.
    pub run: RunContext,
    /// Which try this is after failed Data API batches (part of the batch's idempotency token).
    /// Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// The run holding the table's lease.
    pub run: RunContext,
    /// What `submit` answered.
    pub submission: LoadSubmission,
}

/// Where a load is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadState {
    /// Accepted by the warehouse, not started.
    Submitted,
    /// Running.
    Running,
    /// Committed; `loaded` says what.
    Finished,
    /// Nothing was committed; `error` says why.
    Failed,
}

/// What `submit` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSubmission {
    /// The runs this load takes, oldest first.
    pub runs: Vec<RunId>,
    /// The Data API statement id of the batch; `None` when the load ran synchronously.
    pub statement_id: Option<String>,
    /// `finished` when the load ran synchronously, else `submitted`.
    pub state: LoadState,
    /// With `finished`: the runs loaded, with rows from the target's ledger.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loaded: Vec<LoadedRun>,
    /// Pending runs left for a later load (another schema, or more than one batch holds).
    #[serde(default)]
    pub remaining_runs: u64,
}

/// What `status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadStatus {
    /// Where the load is.
    pub state: LoadState,
    /// With `finished`: the runs loaded, with rows from the target's ledger — `commit_load`'s input.
    pub loaded: Vec<LoadedRun>,
    /// With `failed`: why.
    pub error: Option<String>,
    /// With `failed`: `Retryable` or `NonRetryable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Pending runs left for a later load.
    #[serde(default)]
    pub remaining_runs: u64,
}

/// `submit`: the schema step, then the load of the table's pending runs (see the module doc).
pub async fn submit(services: &Services, request: &SubmitRequest) -> Result<LoadSubmission> {
    let started = std::time::Instant::now();
    let run = &request.run;
    let (pipeline, table_config, layout) = run.resolve(&services.config)?;
    let table = run.table_id()?;
    let bucket = services.bucket(pipeline);
    let watermark = services
        .watermarks(pipeline)
        .read(&run.pipeline, &table)
        .await?
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "`{}` has no watermark: `begin` did not run for run `{}`",
                run.table, run.run_id
            ))
        })?
        .record;
    watermark.require_lease(&run.run_id)?;
    let committed = load::committed_runs(&bucket, &watermark.pending_runs).await?;
    let connection = target_connection(services, pipeline)?;
    let now = Utc::now();
    // A table that has never loaded a row still gets its target table, from the schema of its
    // last committed (empty) run: queries on a new, empty source table must not fail.
    let empty_table_manifest = match (&committed[..], &watermark.extract.last_committed_run_id) {
        ([], Some(last)) if watermark.totals.runs_loaded == 0 => {
            let key = layout.run_manifest_key(&run.pipeline, &table, last);
            load::read_run_manifest(&bucket, &key).await?
        }
        _ => None,
    };
    let plan_for = |schema: &str, iam_role: &str, max_runs: usize| -> Result<Option<LoadPlan>> {
        let target = PlanTarget {
            run,
            table_config,
            schema,
            layout: &layout,
            max_runs,
            iam_role,
            now,
        };
        match load::plan(&target, &committed, &bucket)? {
            Some(plan) => Ok(Some(plan)),
            None => empty_table_manifest
                .as_ref()
                .map(|manifest| load::schema_only_plan(&target, manifest))
                .transpose(),
        }
    };
    let redshift_options = table_config.redshift_options();
    match connection {
        Connection::Postgres(postgres) => {
            let Some(plan) = plan_for(&postgres.schema, "", sql::MAX_RUNS_PER_WIRE_LOAD)? else {
                return Ok(nothing_pending(run));
            };
            let wire_target = postgres_wire_target(services, postgres).await?;
            let rows =
                load_over_wire(services, &wire_target, &plan, &bucket, &redshift_options).await?;
            Ok(finished(run, &plan, &committed, &rows, started.elapsed()))
        }
        Connection::Redshift(redshift) => {
            let max_runs = match redshift.access {
                RedshiftAccess::DataApi => sql::max_runs_per_batch(),
                RedshiftAccess::Direct | RedshiftAccess::Tunnel => sql::MAX_RUNS_PER_WIRE_LOAD,
            };
            let Some(plan) = plan_for(&redshift.schema, &redshift.iam_role, max_runs)? else {
                return Ok(nothing_pending(run));
            };
            load::write_copy_manifests(&bucket, &layout, &plan).await?;
            let over_wire = async |tunnel: Option<&TunnelConfig>| -> Result<LoadSubmission> {
                let wire_target = redshift_wire_target(services, redshift, tunnel).await?;
                let rows =
                    load_over_wire(services, &wire_target, &plan, &bucket, &redshift_options)
                        .await?;
                Ok(finished(run, &plan, &committed, &rows, started.elapsed()))
            };
            match redshift.access {
                RedshiftAccess::DataApi => {
                    let submitted = submit_data_api(
                        services,
                        redshift,
                        request,
                        &plan,
                        &committed,
                        &redshift_options,
                    )
                    .await;
                    match (submitted, &redshift.tunnel) {
                        // A network failure, with the fallback opted in: the tunnel runs the
                        // same SQL; the ledger keeps it exactly once even if a batch did start.
                        (
                            Err(Error::DataApi {
                                unreachable: true,
                                context,
                                message,
                                ..
                            }),
                            Some(tunnel),
                        ) if redshift.fallback_to_tunnel => {
                            tracing::warn!(target = %run.target, bastion = %tunnel.bastion_host, context = %context, error = %message, "the Data API cannot be reached; loading through the SSH tunnel instead (fallback_to_tunnel)");
                            crate::metrics::load_fallback(
                                &run.pipeline,
                                &naming::TableId::parse(&run.table)?,
                            )
                            .emit();
                            over_wire(Some(tunnel)).await
                        }
                        (submitted, _) => submitted,
                    }
                }
                RedshiftAccess::Direct => over_wire(None).await,
                RedshiftAccess::Tunnel => match &redshift.tunnel {
                    Some(tunnel) => over_wire(Some(tunnel)).await,
                    None => Err(Error::config(
                        "connections",
                        "Redshift `access: tunnel` needs a `tunnel` block",
                    )),
                },
            }
        }
        Connection::Mysql(_) => Err(not_a_warehouse(pipeline)),
    }
}

/// The connection a pipeline loads into.
pub(super) fn target_connection<'c>(
    services: &'c Services,
    pipeline: &crate::config::Pipeline,
) -> Result<&'c Connection> {
    services
        .config
        .connections
        .get(&pipeline.target)
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "target `{}` is not a connection of the configuration",
                pipeline.target
            ))
        })
}

/// The error for a pipeline whose target names a MySQL connection.
pub(super) fn not_a_warehouse(pipeline: &crate::config::Pipeline) -> Error {
    Error::InvalidRequest(format!(
        "target `{}` is a mysql connection; a pipeline's target is postgres or redshift",
        pipeline.target
    ))
}

/// A wire-protocol warehouse: its dialect, login, and how to reach it.
struct WireTarget<'a> {
    dialect: Dialect,
    config: tokio_postgres::Config,
    /// The connection's TLS; `None` for `tls: disabled`.
    tls: Option<crate::tls::PostgresTls>,
    /// The bastion in front of it, if any.
    tunnel: Option<&'a TunnelConfig>,
    /// The server as the bastion sees it.
    host: &'a str,
    port: u16,
    statement_timeout: Duration,
    connect_timeout: Duration,
}

/// PostgreSQL, direct or through its `tunnel`.
async fn postgres_wire_target<'a>(
    services: &Services,
    postgres: &'a PostgresConnection,
) -> Result<WireTarget<'a>> {
    let password = password(
        services,
        postgres.password.as_ref(),
        postgres.password_secret.as_deref(),
    )
    .await?;
    let tls = crate::tls::postgres_tls(
        postgres.tls,
        crate::tls::CaSource {
            connection: &postgres.host,
            file: postgres.tls_ca_file.as_deref(),
            secret: postgres.tls_ca_secret.as_deref(),
        },
        Some(services.secrets()),
        &postgres.host,
    )
    .await?;
    Ok(WireTarget {
        dialect: Dialect::Postgres,
        tls,
        config: wire::postgres_config(postgres, password.as_deref())?,
        tunnel: postgres.tunnel.as_ref(),
        host: &postgres.host,
        port: postgres.port,
        statement_timeout: postgres.statement_timeout.0,
        connect_timeout: postgres.connect_timeout.0,
    })
}

/// Redshift over the wire protocol (`direct`, `tunnel`, or the Data API's fallback).
async fn redshift_wire_target<'a>(
    services: &Services,
    redshift: &'a RedshiftConnection,
    tunnel: Option<&'a TunnelConfig>,
) -> Result<WireTarget<'a>> {
    let password = password(
        services,
        redshift.password.as_ref(),
        redshift.secret_arn.as_deref(),
    )
    .await?;
    let config = wire::redshift_config(redshift, password.as_deref())?;
    let host = redshift.host.as_deref().unwrap_or_default();
    let tls = crate::tls::postgres_tls(
        redshift.tls,
        crate::tls::CaSource {
            connection: host,
            file: redshift.tls_ca_file.as_deref(),
            secret: redshift.tls_ca_secret.as_deref(),
        },
        Some(services.secrets()),
        host,
    )
    .await?;
    Ok(WireTarget {
        dialect: Dialect::Redshift,
        tls,
        host: redshift.host.as_deref().unwrap_or_default(),
        port: redshift.port,
        statement_timeout: redshift.statement_timeout.0,
        connect_timeout: config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(30)),
        config,
        tunnel,
    })
}

/// The schema step and the load over one wire-protocol connection, direct or through the
/// target's tunnel (closed when the load ends).
async fn load_over_wire(
    services: &Services,
    target: &WireTarget<'_>,
    plan: &LoadPlan,
    bucket: &crate::storage::Bucket,
    redshift_options: &RedshiftTableOptions,
) -> Result<Vec<load::LedgerRow>> {
    let (mut client, _open_tunnel) = connect_wire(services, target).await?;
    wire::prepare_target(&client, target.dialect, plan, redshift_options).await?;
    if plan.runs.is_empty() {
        return Ok(Vec::new());
    }
    wire::load(&mut client, target.dialect, plan, bucket).await
}

/// A wire-protocol session to the target, direct or through its tunnel; the tunnel, when there
/// is one, must live as long as the session.
async fn connect_wire(
    services: &Services,
    target: &WireTarget<'_>,
) -> Result<(tokio_postgres::Client, Option<tunnel::Tunnel>)> {
    match target.tunnel {
        None => Ok((
            wire::connect(
                &target.config,
                target.tls.as_ref(),
                target.statement_timeout,
            )
            .await?,
            None,
        )),
        Some(config) => {
            let key = tunnel::private_key(config, services.secrets()).await?;
            let open = tunnel::open(config, &key, target.connect_timeout).await?;
            let client = open
                .connect(
                    &target.config,
                    target.tls.as_ref(),
                    target.host,
                    target.port,
                    target.statement_timeout,
                )
                .await?;
            Ok((client, Some(open)))
        }
    }
}

async fn submit_data_api(
    services: &Services,
    redshift: &RedshiftConnection,
    request: &SubmitRequest,
    plan: &LoadPlan,
    committed: &[CommittedRun],
    redshift_options: &RedshiftTableOptions,
) -> Result<LoadSubmission> {
    let run = &request.run;
    let api = DataApi::new(services.redshift_data().clone(), redshift.clone());
    api.prepare_target(plan, redshift_options).await?;
    if plan.runs.is_empty() {
        return Ok(nothing_pending(run));
    }
    let script = sql::load_script(Dialect::Redshift, plan)?;
    let runs: Vec<RunId> = plan.runs.iter().map(|r| r.run_id.clone()).collect();
    let token = data_api::client_token(
        &run.pipeline,
        &run.table,
        &run.target,
        &run.run_id,
        &runs,
        request.attempt,
    );
    let batch = data_api::batch_request(
        redshift,
        &script,
        token,
        format!("tidemark-load-{}", run.target),
    )?;
    // Through the Data API the batch commits inside Redshift: these points bracket its submission
    // and the first status that sees it finished.
    crate::faults::point("before_load_commit")?;
    let statement_id = api.submit(&batch).await?;
    tracing::info!(table = %run.table, target = %run.target, runs = runs.len(), statement_id = %statement_id, "load batch submitted");
    Ok(LoadSubmission {
        runs,
        statement_id: Some(statement_id),
        state: LoadState::Submitted,
        loaded: Vec::new(),
        remaining_runs: (committed.len() - plan.runs.len()) as u64,
    })
}

fn nothing_pending(run: &RunContext) -> LoadSubmission {
    tracing::info!(table = %run.table, target = %run.target, "no pending run to load");
    LoadSubmission {
        runs: Vec::new(),
        statement_id: None,
        state: LoadState::Finished,
        loaded: Vec::new(),
        remaining_runs: 0,
    }
}

fn finished(
    run: &RunContext,
    plan: &LoadPlan,
    committed: &[CommittedRun],
    rows: &[load::LedgerRow],
    elapsed: std::time::Duration,
) -> LoadSubmission {
    if plan.runs.is_empty() {
        // A schema-only plan (a table that never loaded a row): the target exists now, nothing
        // was loaded.
        return nothing_pending(run);
    }
    let loaded: Vec<LoadedRun> = rows.iter().map(load::LedgerRow::loaded).collect();
    let inserted: u64 = rows.iter().map(|r| r.rows_inserted).sum();
    let deleted: u64 = rows.iter().map(|r| r.rows_deleted).sum();
    tracing::info!(table = %run.table, target = %run.target, runs = loaded.len(), rows_inserted = inserted, rows_deleted = deleted, mode = %plan.mode, "load committed");
    if let Ok(table) = run.table_id() {
        crate::metrics::load_finished(
            &run.pipeline,
            &table,
            loaded.len() as u64,
            inserted,
            elapsed,
        )
        .emit();
    }
    LoadSubmission {
        runs: plan.runs.iter().map(|r| r.run_id.clone()).collect(),
        statement_id: None,
        state: LoadState::Finished,
        loaded,
        remaining_runs: (committed.len() - plan.runs.len()) as u64,
    }
}

/// A connected target, for the questions an operator asks it (`validate_counts`, `connections
/// test`), reached exactly as the load reaches it: over the wire protocol (PostgreSQL, Redshift
/// `direct`, either through its SSH tunnel when configured, Redshift `tunnel`) or through the
/// Data API.
pub enum TargetClient {
    /// PostgreSQL, or Redshift `access: direct` / `tunnel`.
    Wire {
        /// The connected session.
        client: tokio_postgres::Client,
        /// Its SQL flavour.
        dialect: Dialect,
        /// The schema holding the targets and the ledger.
        schema: String,
        /// The SSH tunnel the session runs through, kept open while the client lives.
        tunnel: Option<Box<tunnel::Tunnel>>,
    },
    /// Redshift `access: data_api`.
    DataApi(Box<DataApi>),
}

impl std::fmt::Debug for TargetClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetClient::Wire {
                dialect, schema, ..
            } => {
                write!(f, "TargetClient::Wire({dialect:?}, {schema})")
            }
            TargetClient::DataApi(_) => f.write_str("TargetClient::DataApi"),
        }
    }
}

impl TargetClient {
    /// Connects to the configuration's connection `name`, with the load's own settings.
    pub async fn connect(services: &Services, name: &str) -> Result<Self> {
        let connection = services.config.connections.get(name).ok_or_else(|| {
            Error::InvalidRequest(format!("`{name}` is not a connection of the configuration"))
        })?;
        let (target, schema) = match connection {
            Connection::Postgres(postgres) => (
                postgres_wire_target(services, postgres).await?,
                &postgres.schema,
            ),
            Connection::Redshift(redshift) => {
                let tunnel = match redshift.access {
                    RedshiftAccess::DataApi => {
                        return Ok(TargetClient::DataApi(Box::new(DataApi::new(
                            services.redshift_data().clone(),
                            (**redshift).clone(),
                        ))))
                    }
                    RedshiftAccess::Direct => None,
                    RedshiftAccess::Tunnel => Some(redshift.tunnel.as_ref().ok_or_else(|| {
                        Error::config(
                            "connections",
                            "Redshift `access: tunnel` needs a `tunnel` block",
                        )
                    })?),
                };
                (
                    redshift_wire_target(services, redshift, tunnel).await?,
                    &redshift.schema,
                )
            }
            Connection::Mysql(_) => {
                return Err(Error::InvalidRequest(format!(
                    "`{name}` is a mysql connection, not a target"
                )))
            }
        };
        let (client, tunnel) = connect_wire(services, &target).await?;
        Ok(TargetClient::Wire {
            client,
            dialect: target.dialect,
            schema: schema.clone(),
            tunnel: tunnel.map(Box::new),
        })
    }

    /// The server's version string.
    pub async fn version(&self) -> Result<String> {
        match self {
            TargetClient::Wire { client, .. } => wire::server_version(client).await,
            TargetClient::DataApi(api) => api.server_version().await,
        }
    }

    /// The first row of `query`, each value as text (empty: no row).
    pub async fn first_row(&self, query: &str) -> Result<Vec<String>> {
        match self {
            TargetClient::Wire { client, .. } => {
                let messages = client
                    .simple_query(query)
                    .await
                    .map_err(|err| Error::postgres("running a query", err))?;
                Ok(wire::first_row(&messages).unwrap_or_default())
            }
            TargetClient::DataApi(api) => api.first_row(query).await,
        }
    }

    /// Runs `statement` on its own (autocommit).
    pub async fn execute(&self, statement: &str) -> Result<()> {
        match self {
            TargetClient::Wire { client, .. } => client
                .batch_execute(statement)
                .await
                .map_err(|err| Error::postgres("running a statement", err)),
            TargetClient::DataApi(api) => api.first_row(statement).await.map(|_| ()),
        }
    }

    /// The ledger rows of `runs` loaded into `target`: what the warehouse itself says was loaded.
    pub async fn ledger_rows(&self, target: &str, runs: &[RunId]) -> Result<Vec<load::LedgerRow>> {
        match self {
            TargetClient::Wire {
                client,
                dialect,
                schema,
                ..
            } => wire::ledger_rows_of(client, *dialect, schema, target, runs).await,
            TargetClient::DataApi(api) => api.ledger_rows_of(target, runs).await,
        }
    }

    /// The target table's rows and its ledger's totals.
    pub async fn counts(&self, target: &str) -> Result<load::TargetCounts> {
        match self {
            TargetClient::Wire {
                client,
                dialect,
                schema,
                ..
            } => wire::target_counts(client, *dialect, schema, target).await,
            TargetClient::DataApi(api) => api.target_counts(target).await,
        }
    }
}

async fn password(
    services: &Services,
    inline: Option<&SecretString>,
    secret_id: Option<&str>,
) -> Result<Option<String>> {
    match (inline, secret_id) {
        (Some(password), _) => Ok(Some(expose(password).to_owned())),
        (None, Some(id)) => Ok(Some(
            expose(&services.secrets().password(id).await?).to_owned(),
        )),
        (None, None) => Ok(None),
    }
}

/// `status`: answers a synchronous submission at once; asks the Data API about a batch.
pub async fn status(services: &Services, request: &StatusRequest) -> Result<LoadStatus> {
    let submission = &request.submission;
    let answer = |state, loaded, error: Option<(String, ErrorKind)>| LoadStatus {
        state,
        loaded,
        error_type: error.as_ref().map(|(_, kind)| kind.name().to_owned()),
        error: error.map(|(message, _)| message),
        remaining_runs: submission.remaining_runs,
    };
    let Some(statement_id) = &submission.statement_id else {
        return Ok(answer(submission.state, submission.loaded.clone(), None));
    };
    let run = &request.run;
    let (pipeline, _, _) = run.resolve(&services.config)?;
    let Some(Connection::Redshift(redshift)) = services.config.connections.get(&pipeline.target)
    else {
        return Err(Error::InvalidRequest(format!(
            "the submission names a Data API statement, but target `{}` is not a redshift connection",
            pipeline.target
        )));
    };
    let api = DataApi::new(services.redshift_data().clone(), (**redshift).clone());
    let described = api.describe(statement_id).await?;
    Ok(match described.state {
        StatementState::Submitted => answer(LoadState::Submitted, Vec::new(), None),
        StatementState::Running => answer(LoadState::Running, Vec::new(), None),
        StatementState::Failed { message, kind } => {
            tracing::warn!(table = %run.table, statement_id = %statement_id, error_type = kind.name(), error = %message, "load batch failed");
            answer(LoadState::Failed, Vec::new(), Some((message, kind)))
        }
        StatementState::Finished => {
            crate::faults::point("after_load_commit")?;
            let rows = api.ledger_rows(&described.last_result_id).await?;
            let missing: Vec<String> = submission
                .runs
                .iter()
                .filter(|id| !rows.iter().any(|row| row.run_id == **id))
                .map(|id| format!("`{id}`"))
                .collect();
            if !missing.is_empty() {
                let message = format!(
                    "the load batch finished but the ledger of `{}` has no row for run(s) {}",
                    naming::quote_warehouse(&run.target),
                    missing.join(", ")
                );
                return Ok(answer(
                    LoadState::Failed,
                    Vec::new(),
                    Some((message, ErrorKind::NonRetryable)),
                ));
            }
            answer(
                LoadState::Finished,
                rows.iter().map(load::LedgerRow::loaded).collect(),
                None,
            )
        }
    })
}

/// Runs any load request and returns its answer as JSON.
pub async fn handle(services: &Services, request: &LoadRequest) -> Result<serde_json::Value> {
    match request {
        LoadRequest::Submit(r) => super::answer(submit(services, r).await?),
        LoadRequest::Status(r) => super::answer(status(services, r).await?),
    }
}

/// Parses a payload into a request, with an error that lists what is accepted.
pub fn parse_request(payload: serde_json::Value) -> Result<LoadRequest> {
    serde_json::from_value(payload).map_err(|err| {
        Error::InvalidRequest(format!(
            "invalid load payload: {err}; actions are submit, status (README: Lambda payloads)"
        ))
    })
}

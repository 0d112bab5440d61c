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

use crate::schema::Warehouse;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::config::{Connection, DataApiTunnel, RedshiftAccess, RedshiftConnection};
use crate::error::{Error, ErrorKind, Result};
use crate::load::data_api::{self, DataApi, StatementState};
use crate::load::target::{not_a_warehouse, Route, TargetClient};
use crate::load::{self, sql, wire, CommittedRun, LoadPlan, PlanTarget};
use crate::naming::{self, RunId};
use crate::run::RunContext;
use crate::schema::RedshiftTableOptions;
use crate::watermark::LoadedRun;

use crate::services::Services;

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
    /// How many times `status` was asked before (the state machine counts; 0 the first time).
    #[serde(default)]
    pub polls: u32,
}

/// The most times the state machine asks `status` about one load: with waits of 5 s doubling to
/// 60 s, about 4.9 hours — the execution's 5-hour timeout bounds it anyway, and this bound keeps
/// one table's polling within a few thousand history events. A test keeps the definition's
/// Choice on it.
pub const MAX_POLLS: u32 = 300;

/// The wait after the first `status`; each later one doubles, up to [`MAX_POLL_WAIT_SECONDS`].
pub const FIRST_POLL_WAIT_SECONDS: u64 = 5;

/// The longest wait between two `status` calls.
pub const MAX_POLL_WAIT_SECONDS: u64 = 60;

/// The wait after the `polls`-th `status` call (1-based): 5, 10, 20, 40, then 60 s.
pub fn poll_wait_seconds(polls: u32) -> u64 {
    let doublings = polls.saturating_sub(1).min(16);
    (FIRST_POLL_WAIT_SECONDS << doublings).min(MAX_POLL_WAIT_SECONDS)
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
    /// How many times `status` has now been asked about this load.
    #[serde(default)]
    pub polls: u32,
    /// How long the state machine waits before asking again (5 s doubling to 60 s).
    #[serde(default)]
    pub wait_seconds: u64,
}

/// How long before a Lambda's deadline a wire-protocol load must have ended: time to roll back
/// and answer.
pub const LOAD_DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// `submit`: the schema step, then the load of the table's pending runs (see the module doc).
pub async fn submit(services: &Services, request: &SubmitRequest) -> Result<LoadSubmission> {
    submit_within(services, request, None).await
}

/// As [`submit`], in an invocation with `time_left` (a Lambda's, less the extract margin): a
/// wire-protocol load that would outlast it is cancelled by its `statement_timeout` (lowered to
/// `time_left` less [`LOAD_DEADLINE_MARGIN`]) and fails saying so, instead of the function being
/// killed mid-transaction.
pub async fn submit_within(
    services: &Services,
    request: &SubmitRequest,
    time_left: Option<Duration>,
) -> Result<LoadSubmission> {
    let started = std::time::Instant::now();
    let run = &request.run;
    let (pipeline, table_config, layout) = run.resolve(&services.config)?;
    let table = run.table.clone();
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
    // Runs from the first quarantined one on wait for an operator (`tidemark quality`).
    let committed = load::committed_runs(&bucket, watermark.loadable_runs()).await?;
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
    let plan_for = |schema: &str,
                    iam_role: &str,
                    (max_runs, max_runs_with_deletions): (usize, usize)|
     -> Result<Option<LoadPlan>> {
        let target = PlanTarget {
            run,
            table_config,
            schema,
            layout: &layout,
            max_runs,
            max_runs_with_deletions,
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
    let route = Route::of(&pipeline.target, connection)?;
    let (schema, iam_role) = match connection {
        Connection::Postgres(postgres) => (postgres.schema.as_str(), ""),
        Connection::Redshift(redshift) => (redshift.schema.as_str(), redshift.iam_role.as_str()),
        Connection::Mysql(_) => return Err(not_a_warehouse(&pipeline.target)),
    };
    let type_2 = table_config.keeps_history();
    let max_runs = match route.is_wire() {
        false => (
            sql::max_runs_per_batch(false, type_2),
            sql::max_runs_per_batch(true, type_2),
        ),
        true => (sql::MAX_RUNS_PER_WIRE_LOAD, sql::MAX_RUNS_PER_WIRE_LOAD),
    };
    let Some(plan) = plan_for(schema, iam_role, max_runs)? else {
        return Ok(nothing_pending(run));
    };
    if let Connection::Redshift(_) = connection {
        load::write_copy_manifests(&bucket, &layout, &plan).await?;
    }
    let time_limit = time_left.map(|left| {
        left.saturating_sub(LOAD_DEADLINE_MARGIN)
            .max(Duration::from_millis(1))
    });
    let over_wire = async |route: Route<'_>| -> Result<LoadSubmission> {
        let session = TargetClient::open_within(
            services.reach(),
            &pipeline.target,
            connection,
            route,
            time_limit,
        )
        .await?;
        let rows = load_over_wire(session, &plan, &bucket, &redshift_options)
            .await
            .map_err(|err| out_of_time(err, run, time_limit))?;
        Ok(finished(run, &plan, &committed, &rows, started.elapsed()))
    };
    let Connection::Redshift(redshift) = connection else {
        return over_wire(route).await;
    };
    if route.is_wire() {
        return over_wire(route).await;
    }
    let submitted = submit_data_api(
        services,
        redshift,
        request,
        &plan,
        &committed,
        &redshift_options,
    )
    .await;
    let fallback = match &redshift.access {
        RedshiftAccess::DataApi {
            tunnel:
                Some(DataApiTunnel {
                    tunnel,
                    fallback: Some(endpoint),
                }),
            ..
        } => Some((tunnel, endpoint)),
        _ => None,
    };
    match (submitted, fallback) {
        // A network failure, with the fallback opted in: the tunnel runs the same SQL; the ledger
        // keeps it exactly once even if a batch did start.
        (
            Err(Error::DataApi {
                unreachable: true,
                context,
                message,
                ..
            }),
            Some((tunnel, endpoint)),
        ) => {
            tracing::warn!(target = %run.target, bastion = %tunnel.bastion_host, context = %context, error = %message, "the Data API cannot be reached; loading through the SSH tunnel instead (fallback_to_tunnel)");
            crate::metrics::load_fallback(&run.pipeline, &run.table).emit();
            over_wire(Route::RedshiftWire {
                endpoint,
                tunnel: Some(tunnel),
            })
            .await
        }
        (submitted, _) => submitted,
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

/// A statement cancelled by a `statement_timeout` that the invocation's time left had lowered:
/// the load needs more time than a Lambda has, which only another way of loading cures.
fn out_of_time(err: Error, run: &RunContext, time_limit: Option<Duration>) -> Error {
    match (err, time_limit) {
        (Error::Postgres { context, source }, Some(limit))
            if source.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) =>
        {
            Error::postgres(
                format!(
                    "{context}: the load of `{}` did not end within the {:.3} s this invocation had left (its statement_timeout was lowered to that, so that the function answers before it is killed mid-transaction); nothing was committed. A load this long needs `access: data_api` (Redshift runs it; the function only polls), or one run from the CLI, which has no such limit: `tidemark sync --redshift-only -t {}`",
                    run.target,
                    limit.as_secs_f64(),
                    run.table
                ),
                source,
            )
        }
        (err, _) => err,
    }
}

/// The schema step and the load over one wire-protocol session (its tunnel, if any, closes
/// when the load ends).
async fn load_over_wire(
    session: TargetClient,
    plan: &LoadPlan,
    bucket: &crate::storage::Bucket,
    redshift_options: &RedshiftTableOptions,
) -> Result<Vec<load::LedgerRow>> {
    session.prepare_target(plan, redshift_options).await?;
    if plan.runs.is_empty() {
        return Ok(Vec::new());
    }
    match session {
        TargetClient::Wire {
            mut client,
            dialect,
            tunnel: _open_tunnel,
            ..
        } => wire::load(&mut client, dialect, plan, bucket).await,
        TargetClient::DataApi(_) => Err(Error::internal("a wire load on a Data API session")),
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
    let session = TargetClient::DataApi(Box::new(api.clone()));
    session.prepare_target(plan, redshift_options).await?;
    if plan.runs.is_empty() {
        return Ok(nothing_pending(run));
    }
    let script = sql::load_script(Warehouse::Redshift, plan)?;
    let runs: Vec<RunId> = plan.runs.iter().map(|r| r.run_id.clone()).collect();
    let token = data_api::client_token(
        &run.pipeline,
        &run.table.to_string(),
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
    crate::faults::point(crate::faults::FaultPoint::BeforeLoadCommit)?;
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
    // The metric line is the event's log line (metrics.rs): no second "load committed" line.
    crate::metrics::load_finished(
        &run.pipeline,
        &run.table,
        loaded.len() as u64,
        inserted,
        elapsed,
    )
    .with_property("target", run.target.as_str())
    .with_property("rows_deleted", deleted)
    .with_property("mode", plan.mode.to_string())
    .emit();
    if plan.scd.is_some() {
        // A type-2 dimension's inserted rows are its new versions.
        crate::metrics::scd_versions(&run.pipeline, &run.table, inserted).emit();
    }
    LoadSubmission {
        runs: plan.runs.iter().map(|r| r.run_id.clone()).collect(),
        statement_id: None,
        state: LoadState::Finished,
        loaded,
        remaining_runs: (committed.len() - plan.runs.len()) as u64,
    }
}

/// `status`: answers a synchronous submission at once; asks the Data API about a batch.
pub async fn status(services: &Services, request: &StatusRequest) -> Result<LoadStatus> {
    let submission = &request.submission;
    let polls = request.polls.saturating_add(1);
    let answer = |state, loaded, error: Option<(String, ErrorKind)>| LoadStatus {
        state,
        loaded,
        error_type: error.as_ref().map(|(_, kind)| kind.name().to_owned()),
        error: error.map(|(message, _)| message),
        remaining_runs: submission.remaining_runs,
        polls,
        wait_seconds: poll_wait_seconds(polls),
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
            crate::faults::point(crate::faults::FaultPoint::AfterLoadCommit)?;
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
pub async fn handle(
    services: &Services,
    request: &LoadRequest,
    time_left: Option<Duration>,
) -> Result<serde_json::Value> {
    match request {
        LoadRequest::Submit(r) => super::answer(submit_within(services, r, time_left).await?),
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

//! The one place that decides how a warehouse is reached — PostgreSQL over the wire protocol,
//! Redshift over the wire protocol (`direct`, or through its SSH tunnel), or Redshift through the
//! Data API — and the questions every load and every operator command asks a warehouse, written
//! once over that choice: the schema step, the target's counts, the ledger, the server version.
//!
//! The load itself stays with its transport ([`super::wire::load`]: one transaction;
//! [`super::data_api`]: one batch), since the two commit differently.

use crate::schema::Warehouse;
use std::time::Duration;

use crate::config::{
    Config, Connection, PostgresConnection, RedshiftAccess, RedshiftConnection, TunnelConfig,
    WireEndpoint,
};
use crate::error::{Error, Result};
use crate::naming::{self, RunId};
use crate::schema::{drift_error, RedshiftTableOptions, TargetColumn};
use crate::secret::{expose, SecretResolver, SecretString};

use super::data_api::DataApi;
use super::sql::{self, LoadPlan};
use super::{tunnel, wire, LedgerRow, LedgerTotals, TargetCounts};

/// How a session reaches its warehouse.
#[derive(Debug, Clone, Copy)]
pub enum Route<'c> {
    /// PostgreSQL's wire protocol, direct or through an SSH tunnel.
    Postgres {
        /// The bastion in front of the warehouse, if any.
        tunnel: Option<&'c TunnelConfig>,
    },
    /// Redshift over the wire protocol: `direct`, `tunnel`, or the Data API's fallback.
    RedshiftWire {
        /// The cluster endpoint and user.
        endpoint: &'c WireEndpoint,
        /// The bastion in front of it, if any.
        tunnel: Option<&'c TunnelConfig>,
    },
    /// The Redshift Data API (HTTPS).
    DataApi,
}

impl<'c> Route<'c> {
    /// The route the configuration gives `connection`: its own tunnel for PostgreSQL; for
    /// Redshift, by `access`.
    pub fn of(name: &str, connection: &'c Connection) -> Result<Self> {
        match connection {
            Connection::Postgres(postgres) => Ok(Route::Postgres {
                tunnel: postgres.tunnel.as_ref(),
            }),
            Connection::Redshift(redshift) => Ok(match &redshift.access {
                RedshiftAccess::DataApi { .. } => Route::DataApi,
                RedshiftAccess::Direct(endpoint) => Route::RedshiftWire {
                    endpoint,
                    tunnel: None,
                },
                RedshiftAccess::Tunnel { endpoint, tunnel } => Route::RedshiftWire {
                    endpoint,
                    tunnel: Some(tunnel),
                },
            }),
            Connection::Mysql(_) => Err(not_a_warehouse(name)),
        }
    }

    /// Whether statements go over the wire protocol (a session), not the Data API (batches).
    pub fn is_wire(&self) -> bool {
        !matches!(self, Route::DataApi)
    }
}

/// The error for a MySQL connection named where a warehouse belongs.
pub fn not_a_warehouse(name: &str) -> Error {
    Error::InvalidRequest(format!(
        "`{name}` is a mysql connection, not a warehouse; a pipeline's target is postgres or redshift"
    ))
}

/// The clients a session is opened with: the secrets (passwords, tunnel keys, CA bundles) and
/// the Data API.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'s> {
    /// Where secrets come from.
    pub secrets: &'s SecretResolver,
    /// The Redshift Data API client.
    pub data_api: &'s aws_sdk_redshiftdata::Client,
}

/// A session on a warehouse, however it is reached.
pub enum TargetClient {
    /// PostgreSQL, or Redshift over the wire protocol.
    Wire {
        /// The connected session.
        client: tokio_postgres::Client,
        /// Its SQL flavour.
        dialect: Warehouse,
        /// The schema holding the targets and the ledger.
        schema: String,
        /// The SSH tunnel the session runs through, kept open while the client lives.
        tunnel: Option<Box<tunnel::Tunnel>>,
    },
    /// Redshift through the Data API.
    DataApi(Box<DataApi>),
}

impl std::fmt::Debug for TargetClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetClient::Wire {
                dialect, schema, ..
            } => write!(f, "TargetClient::Wire({dialect:?}, {schema})"),
            TargetClient::DataApi(_) => f.write_str("TargetClient::DataApi"),
        }
    }
}

impl TargetClient {
    /// A session on the configuration's connection `name`, by its configured route.
    pub async fn connect(reach: Reach<'_>, config: &Config, name: &str) -> Result<Self> {
        let connection = config.connections.get(name).ok_or_else(|| {
            Error::InvalidRequest(format!("`{name}` is not a connection of the configuration"))
        })?;
        Self::open(reach, name, connection, Route::of(name, connection)?).await
    }

    /// A session on `connection` (named `name`) by `route`: the load's fallback takes the wire
    /// route to a Data API connection.
    pub async fn open(
        reach: Reach<'_>,
        name: &str,
        connection: &Connection,
        route: Route<'_>,
    ) -> Result<Self> {
        Self::open_within(reach, name, connection, route, None).await
    }

    /// As [`TargetClient::open`], with every statement of a wire-protocol session bounded by
    /// `time_limit` as well as by the connection's `statement_timeout` (a Lambda's time left).
    pub async fn open_within(
        reach: Reach<'_>,
        name: &str,
        connection: &Connection,
        route: Route<'_>,
        time_limit: Option<Duration>,
    ) -> Result<Self> {
        let target = match (connection, route) {
            (Connection::Redshift(redshift), Route::DataApi) => {
                return Ok(TargetClient::DataApi(Box::new(DataApi::new(
                    reach.data_api.clone(),
                    (**redshift).clone(),
                ))))
            }
            (Connection::Postgres(postgres), Route::Postgres { tunnel }) => {
                postgres_wire_target(reach, postgres, tunnel).await?
            }
            (Connection::Redshift(redshift), Route::RedshiftWire { endpoint, tunnel }) => {
                redshift_wire_target(reach, redshift, endpoint, tunnel).await?
            }
            (Connection::Postgres(_), Route::DataApi | Route::RedshiftWire { .. })
            | (Connection::Redshift(_), Route::Postgres { .. }) => {
                return Err(Error::internal(format!(
                    "`{name}` cannot be reached by {route:?}"
                )))
            }
            (Connection::Mysql(_), _) => return Err(not_a_warehouse(name)),
        };
        let mut target = target;
        if let Some(limit) = time_limit {
            target.statement_timeout = target.statement_timeout.min(limit);
        }
        let (client, tunnel) = connect_wire(reach, &target).await?;
        Ok(TargetClient::Wire {
            client,
            dialect: target.dialect,
            schema: target.schema.to_owned(),
            tunnel: tunnel.map(Box::new),
        })
    }

    /// The SQL flavour the warehouse speaks.
    pub fn dialect(&self) -> Warehouse {
        match self {
            TargetClient::Wire { dialect, .. } => *dialect,
            TargetClient::DataApi(_) => Warehouse::Redshift,
        }
    }

    /// The connection's schema (targets and ledger).
    pub fn schema(&self) -> &str {
        match self {
            TargetClient::Wire { schema, .. } => schema,
            TargetClient::DataApi(api) => api.schema(),
        }
    }

    /// Runs `statement` on its own (autocommit); `what` names it in an error.
    async fn run(&self, statement: &str, what: &str) -> Result<()> {
        match self {
            TargetClient::Wire { client, .. } => client
                .batch_execute(statement)
                .await
                .map_err(|err| Error::postgres(what, err)),
            TargetClient::DataApi(api) => api.run(statement).await.map(|_| ()),
        }
    }

    /// Runs a `CREATE … IF NOT EXISTS`, once more if it fails: two loads creating the same
    /// schema or ledger at once race inside the catalog (PostgreSQL answers the loser with a
    /// unique violation on `pg_type`/`pg_namespace` instead of "already exists"), and the second
    /// attempt sees the winner's object and does nothing. A real failure fails twice.
    async fn create_if_missing(&self, statement: &str, what: &str) -> Result<()> {
        match self.run(statement, what).await {
            Ok(()) => Ok(()),
            Err(first) => {
                tracing::info!(what, error = %first, "creating again: another load may have created it at the same time");
                self.run(statement, what).await
            }
        }
    }

    /// Every row of `query`, each value as text (NULL as empty); `what` names it in an error.
    pub async fn rows(&self, query: &str, what: &str) -> Result<Vec<Vec<String>>> {
        match self {
            TargetClient::Wire { client, .. } => {
                let messages = client
                    .simple_query(query)
                    .await
                    .map_err(|err| Error::postgres(what, err))?;
                Ok(wire::text_rows(&messages))
            }
            TargetClient::DataApi(api) => api.text_rows(query).await,
        }
    }

    /// The first row of `query`, each value as text (empty: no row).
    pub async fn first_row(&self, query: &str) -> Result<Vec<String>> {
        let rows = self.rows(query, "running a query").await?;
        Ok(rows.into_iter().next().unwrap_or_default())
    }

    /// Runs `statement` on its own (autocommit).
    pub async fn execute(&self, statement: &str) -> Result<()> {
        self.run(statement, "running a statement").await
    }

    /// The server's version string (`SELECT version()`).
    pub async fn version(&self) -> Result<String> {
        let rows = self
            .rows("SELECT version()", "reading the server version")
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .unwrap_or_default())
    }

    /// The columns of `schema`.`table` as the warehouse describes them (none: no such table).
    async fn existing_columns(&self, schema: &str, table: &str) -> Result<Vec<TargetColumn>> {
        let (schema, table) = (
            naming::target_identifier(schema)?,
            naming::target_identifier(table)?,
        );
        match self {
            TargetClient::Wire {
                client, dialect, ..
            } => wire::existing_columns(client, *dialect, &schema, &table).await,
            TargetClient::DataApi(api) => api.existing_columns(&schema, &table).await,
        }
    }

    /// Whether `table` exists in the connection's schema (it has columns).
    pub async fn table_exists(&self, table: &str) -> Result<bool> {
        Ok(!self
            .existing_columns(self.schema(), table)
            .await?
            .is_empty())
    }

    /// The schema step: creates the plan's schema, the ledger and the target if missing, refuses
    /// a target another table loads into, then applies the automatic drift (added columns,
    /// widened VARCHARs, a widened key) one statement at a time, outside any transaction.
    /// Incompatible drift fails with [`Error::SchemaDrift`]. Returns the DDL it ran.
    pub async fn prepare_target(
        &self,
        plan: &LoadPlan,
        redshift: &RedshiftTableOptions,
    ) -> Result<Vec<String>> {
        let dialect = self.dialect();
        self.create_if_missing(
            &sql::create_schema(&plan.schema)?,
            &format!("creating schema `{}`", plan.schema),
        )
        .await?;
        self.create_if_missing(
            &sql::create_ledger(&plan.schema)?,
            "creating the load ledger",
        )
        .await?;
        let owner = self
            .rows(&sql::foreign_ledger_owner(plan)?, "reading the load ledger")
            .await?;
        let owner = owner
            .into_iter()
            .next()
            .and_then(|row| match row.as_slice() {
                [pipeline, source_table, ..] => Some((pipeline.clone(), source_table.clone())),
                _ => None,
            });
        super::refuse_foreign_target(plan, owner)?;
        self.run(
            &sql::create_target(dialect, plan, redshift)?,
            &format!("creating `{}`", plan.target),
        )
        .await?;
        let existing = self.existing_columns(&plan.schema, &plan.target).await?;
        let drifts = super::target_drift(plan, &existing, dialect);
        let table = format!("{}.{}", plan.schema, plan.target);
        if let Some(error) = drift_error(&table, &drifts) {
            return Err(error);
        }
        let ddl = super::schema_changes(plan, &drifts, dialect)?;
        for statement in &ddl {
            tracing::info!(table = %table, ddl = %statement, "applying schema drift");
            self.run(statement, &format!("changing `{table}`")).await?;
        }
        Ok(ddl)
    }

    /// Loads `plan` now, waiting for the end: the schema step, then its runs in one transaction
    /// (wire protocol) or one Data API batch named `batch_name` (`redshift` is then the
    /// connection's settings); answers the ledger rows of its runs. The Redshift COPY manifests
    /// must be written.
    pub async fn load_now(
        &mut self,
        plan: &LoadPlan,
        bucket: &crate::storage::Bucket,
        layout_options: &RedshiftTableOptions,
        redshift: Option<&crate::config::RedshiftConnection>,
        batch_name: String,
    ) -> Result<Vec<LedgerRow>> {
        self.prepare_target(plan, layout_options).await?;
        match self {
            TargetClient::Wire {
                client, dialect, ..
            } => wire::load(client, *dialect, plan, bucket).await,
            TargetClient::DataApi(api) => {
                let redshift = redshift.ok_or_else(|| {
                    Error::internal("a Data API session without its Redshift connection")
                })?;
                let runs: Vec<RunId> = plan.runs.iter().map(|r| r.run_id.clone()).collect();
                let script = sql::load_script(Warehouse::Redshift, plan)?;
                let submitter = runs
                    .first()
                    .cloned()
                    .ok_or_else(|| Error::internal("a load of no run"))?;
                let token = super::data_api::client_token(
                    &plan.pipeline,
                    &plan.source_table,
                    &plan.target,
                    &submitter,
                    &runs,
                    0,
                );
                let batch = super::data_api::batch_request(redshift, &script, token, batch_name)?;
                api.run_batch(&batch, redshift.statement_timeout.0).await?;
                self.ledger_rows(&plan.target, &runs).await
            }
        }
    }

    /// The ledger rows of `runs` loaded into `target`: what the warehouse itself says was loaded
    /// (none when there is no ledger yet).
    pub async fn ledger_rows(&self, target: &str, runs: &[RunId]) -> Result<Vec<LedgerRow>> {
        if runs.is_empty() || !self.table_exists(sql::LEDGER_TABLE).await? {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(
                &sql::ledger_rows_of(self.schema(), target, runs)?,
                "reading the load ledger",
            )
            .await?;
        rows.iter().map(|row| LedgerRow::from_text(row)).collect()
    }

    /// The rows of `table` that stand for source rows, as a FROM item: the table itself, or,
    /// when it has a [`sql::DELETED_AT_COLUMN`] (`deletes: soft`), its rows where that is NULL —
    /// a row with it set was deleted in the source — or, for a type-2 dimension (its
    /// `current_flag`, [`crate::config::TableConfig::current_flag`]), its current versions.
    /// `None` when the table does not exist.
    pub async fn live_rows(
        &self,
        table: &str,
        current_flag: Option<&str>,
    ) -> Result<Option<String>> {
        let columns = self.existing_columns(self.schema(), table).await?;
        if columns.is_empty() {
            return Ok(None);
        }
        let soft = columns.iter().any(|c| c.name == sql::DELETED_AT_COLUMN);
        sql::live_rows(self.schema(), table, soft, current_flag).map(Some)
    }

    /// The target table's rows (those standing for source rows: [`TargetClient::live_rows`])
    /// and its ledger's totals; a missing table or ledger counts as empty.
    pub async fn counts(&self, target: &str, current_flag: Option<&str>) -> Result<TargetCounts> {
        let mut counts = TargetCounts::default();
        if let Some(rows_of) = self.live_rows(target, current_flag).await? {
            let rows = self
                .rows(
                    &format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {rows_of}"),
                    &format!("counting the rows of `{target}`"),
                )
                .await?;
            let text = rows
                .into_iter()
                .next()
                .and_then(|row| row.into_iter().next())
                .unwrap_or_default();
            counts.rows = Some(text.trim().parse().map_err(|_| {
                Error::unexpected_answer("the target", format!("`COUNT(*)` of `{target}`"), text)
            })?);
        }
        if self.table_exists(sql::LEDGER_TABLE).await? {
            let rows = self
                .rows(
                    &sql::ledger_totals(self.schema(), target)?,
                    "summing the load ledger",
                )
                .await?;
            if let Some(row) = rows.first() {
                let column = |i: usize| row.get(i).map(String::as_str).unwrap_or_default();
                counts.ledger =
                    LedgerTotals::parse([column(0), column(1), column(2), column(3), column(4)])?;
            }
        }
        Ok(counts)
    }
}

/// A wire-protocol warehouse: its dialect, login, and how to reach it.
struct WireTarget<'a> {
    dialect: Warehouse,
    schema: &'a str,
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

/// PostgreSQL, direct or through `tunnel`.
async fn postgres_wire_target<'a>(
    reach: Reach<'_>,
    postgres: &'a PostgresConnection,
    tunnel: Option<&'a TunnelConfig>,
) -> Result<WireTarget<'a>> {
    let password = password(
        reach.secrets,
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
        Some(reach.secrets),
        &postgres.host,
    )
    .await?;
    Ok(WireTarget {
        dialect: Warehouse::Postgres,
        schema: &postgres.schema,
        tls,
        config: wire::postgres_config(postgres, password.as_deref()),
        tunnel,
        host: &postgres.host,
        port: postgres.port,
        statement_timeout: postgres.statement_timeout.0,
        connect_timeout: postgres.connect_timeout.0,
    })
}

/// Redshift over the wire protocol (`direct`, `tunnel`, or the Data API's fallback).
async fn redshift_wire_target<'a>(
    reach: Reach<'_>,
    redshift: &'a RedshiftConnection,
    endpoint: &'a WireEndpoint,
    tunnel: Option<&'a TunnelConfig>,
) -> Result<WireTarget<'a>> {
    let password = password(
        reach.secrets,
        redshift.password.as_ref(),
        redshift.secret_arn.as_deref(),
    )
    .await?;
    let config = wire::redshift_config(redshift, endpoint, password.as_deref());
    let host = endpoint.host.as_str();
    let tls = crate::tls::postgres_tls(
        redshift.tls,
        crate::tls::CaSource {
            connection: host,
            file: redshift.tls_ca_file.as_deref(),
            secret: redshift.tls_ca_secret.as_deref(),
        },
        Some(reach.secrets),
        host,
    )
    .await?;
    Ok(WireTarget {
        dialect: Warehouse::Redshift,
        schema: &redshift.schema,
        tls,
        host,
        port: endpoint.port,
        statement_timeout: redshift.statement_timeout.0,
        connect_timeout: config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(30)),
        config,
        tunnel,
    })
}

/// A wire-protocol session to the target, direct or through its tunnel; the tunnel, when there
/// is one, must live as long as the session.
async fn connect_wire(
    reach: Reach<'_>,
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
            let key = tunnel::private_key(config, reach.secrets).await?;
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

async fn password(
    secrets: &SecretResolver,
    inline: Option<&SecretString>,
    secret_id: Option<&str>,
) -> Result<Option<String>> {
    match (inline, secret_id) {
        (Some(password), _) => Ok(Some(expose(password).to_owned())),
        (None, Some(id)) => Ok(Some(expose(&secrets.password(id).await?).to_owned())),
        (None, None) => Ok(None),
    }
}

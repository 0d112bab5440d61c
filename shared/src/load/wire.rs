//! The load over the PostgreSQL wire protocol: PostgreSQL targets, and Redshift with
//! `access: direct`, and both through an SSH tunnel ([`super::tunnel`]). Every function here
//! takes an already connected [`tokio_postgres::Client`], so a tunnel only provides the connection.
//!
//! The schema step runs each statement on its own (Redshift cannot alter a column inside a
//! transaction block); the load script runs in ONE transaction that commits only after every
//! count has been checked. Nothing here builds SQL: [`super::sql`] does.

use crate::schema::Warehouse;
use std::time::Duration;

use futures::{pin_mut, SinkExt, StreamExt};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::config::{PostgresConnection, RedshiftConnection, WireEndpoint};
use crate::error::{Error, Result};
use crate::naming::RunId;
use crate::schema::TargetColumn;
use crate::storage::Bucket;
use crate::tls::PostgresTls;

use super::pg_copy;
use super::sql::{self, LoadPlan, Role};
use super::stall_guard::{answer_limit, StallGuard};
use super::LedgerRow;

/// TCP keepalive idle time: a dead peer (or tunnel) is noticed within about a minute.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// The connection settings for a PostgreSQL target; `password` already resolved.
pub fn postgres_config(
    connection: &PostgresConnection,
    password: Option<&str>,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&connection.host)
        .port(connection.port)
        .dbname(&connection.database)
        .user(&connection.user)
        .connect_timeout(connection.connect_timeout.0)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .application_name("tidemark-load");
    if let Some(password) = password {
        config.password(password);
    }
    config
}

/// The connection settings for Redshift over the wire protocol at `endpoint`; `password`
/// already resolved.
pub fn redshift_config(
    connection: &RedshiftConnection,
    endpoint: &WireEndpoint,
    password: Option<&str>,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&endpoint.host)
        .port(endpoint.port)
        .dbname(&connection.database)
        .user(&endpoint.user)
        .connect_timeout(Duration::from_secs(30))
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE);
    if let Some(password) = password {
        config.password(password);
    }
    config
}

/// Connects (with TLS when `tls` is given), starts the connection task, and sets the statement
/// timeout. A request left unanswered longer than `statement_timeout` allows fails the
/// connection (a stalled network, see [`StallGuard`]).
pub async fn connect(
    config: &tokio_postgres::Config,
    tls: Option<&PostgresTls>,
    statement_timeout: Duration,
) -> Result<Client> {
    let socket = open_socket(config).await?;
    let guarded = StallGuard::new(socket, answer_limit(statement_timeout));
    start_session(
        config,
        guarded,
        tls,
        statement_timeout,
        "connecting to the warehouse",
    )
    .await
}

/// The session over `stream` (a TCP socket, or a tunnel's channel): the handshake, TLS when
/// `tls` is given, the connection task, and the statement timeout.
pub async fn start_session<S>(
    config: &tokio_postgres::Config,
    stream: S,
    tls: Option<&PostgresTls>,
    statement_timeout: Duration,
    context: &str,
) -> Result<Client>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let client = match tls {
        None => handshake(config, stream, tokio_postgres::NoTls, context).await?,
        Some(tls) => handshake(config, stream, tls.clone(), context).await?,
    };
    set_statement_timeout(&client, statement_timeout).await?;
    Ok(client)
}

/// The protocol handshake over `stream` through `tls`, and the task that runs the connection.
async fn handshake<S, T>(
    config: &tokio_postgres::Config,
    stream: S,
    tls: T,
    context: &str,
) -> Result<Client>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio_postgres::tls::TlsConnect<S>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config
        .connect_raw(stream, tls)
        .await
        .map_err(|err| Error::postgres(context, err))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %error_chain(&err), "warehouse connection ended");
        }
    });
    Ok(client)
}

/// `err` and every error below it, joined by `: `. tokio-postgres's own message says only
/// "error communicating with the server", not why (a reset, a stall).
pub fn error_chain(err: &tokio_postgres::Error) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(below) = cause {
        text.push_str(": ");
        text.push_str(&below.to_string());
        cause = below.source();
    }
    text
}

/// A TCP connection to `config`'s first host and port, within its connect timeout, with TCP
/// keepalives on.
async fn open_socket(config: &tokio_postgres::Config) -> Result<tokio::net::TcpStream> {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => {
            return Err(Error::config(
                "connections",
                "a warehouse is reached by TCP: give `host` as a name or an address",
            ))
        }
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let address = format!("{host}:{port}");
    let context = || format!("connecting to the warehouse at `{address}`");
    let timeout = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(30));
    let socket = tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| Error::Network {
        context: context(),
        source: std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer within {}s (`connect_timeout`)",
                timeout.as_secs()
            ),
        ),
    })?
    .map_err(|source| Error::Network {
        context: context(),
        source,
    })?;
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    socket2::SockRef::from(&socket)
        .set_tcp_keepalive(&keepalive)
        .map_err(|source| Error::Network {
            context: context(),
            source,
        })?;
    socket.set_nodelay(true).map_err(|source| Error::Network {
        context: context(),
        source,
    })?;
    Ok(socket)
}

/// `SET statement_timeout`, so that no statement (and no dead peer) can hang a load.
pub async fn set_statement_timeout(client: &Client, timeout: Duration) -> Result<()> {
    client
        .batch_execute(&format!("SET statement_timeout TO {}", timeout.as_millis()))
        .await
        .map_err(|err| Error::postgres("setting the statement timeout", err))
}

/// The columns of `schema`.`table` (quoted-safe identifiers) from information_schema.
pub(super) async fn existing_columns(
    client: &Client,
    dialect: Warehouse,
    schema: &str,
    table: &str,
) -> Result<Vec<TargetColumn>> {
    let rows = client
        .query(
            &sql::existing_columns_query(dialect, false),
            &[&schema, &table],
        )
        .await
        .map_err(|err| Error::postgres(format!("reading the columns of `{table}`"), err))?;
    Ok(rows
        .iter()
        .map(|row| TargetColumn {
            name: row.get(0),
            data_type: row.get(1),
            character_maximum_length: row.get(2),
            numeric_precision: row.get(3),
            numeric_scale: row.get(4),
            nullable: row.get::<_, Option<String>>(5).as_deref() != Some("NO"),
            primary_key: row.get(6),
        })
        .collect())
}

/// The ledger rows of the plan's runs, as the ledger holds them now.
pub async fn read_ledger(client: &Client, plan: &LoadPlan) -> Result<Vec<LedgerRow>> {
    let messages = client
        .simple_query(&sql::read_ledger(plan)?)
        .await
        .map_err(|err| Error::postgres("reading the load ledger", err))?;
    ledger_rows(&messages)
}

/// Every row of a simple query's answer, every column as text (NULL as empty).
pub(super) fn text_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or_default().to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn ledger_rows(messages: &[SimpleQueryMessage]) -> Result<Vec<LedgerRow>> {
    text_rows(messages)
        .iter()
        .map(|row| LedgerRow::from_text(row))
        .collect()
}

fn affected(messages: &[SimpleQueryMessage]) -> u64 {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .sum()
}

/// Loads the plan's runs in ONE transaction (see [`sql::load_script`]). Runs the ledger already
/// has are skipped; when it has them all, nothing runs and the ledger's rows are returned.
/// PostgreSQL reads each file from `bucket` and streams it with binary COPY; Redshift COPYs from
/// the run's COPY manifest, which the caller has written. The transaction commits only when
/// every run staged exactly its manifest's rows and the ledger's counts equal the statements'.
pub async fn load(
    client: &mut Client,
    dialect: Warehouse,
    plan: &LoadPlan,
    bucket: &Bucket,
) -> Result<Vec<LedgerRow>> {
    let before = read_ledger(client, plan).await?;
    if plan
        .runs
        .iter()
        .all(|run| before.iter().any(|row| row.run_id == run.run_id))
    {
        tracing::info!(table = %plan.target, runs = plan.runs.len(), "every run is in the ledger already; nothing to load");
        return Ok(before);
    }
    let script = sql::load_script(dialect, plan)?;
    let transaction = client
        .transaction()
        .await
        .map_err(|err| Error::postgres("starting the load transaction", err))?;
    let mut inserted = 0;
    let mut deleted = 0;
    let mut ledger = Vec::new();
    for statement in &script.statements {
        let context = |what: &str| format!("loading `{}`: {what}", plan.target);
        match (statement.role, dialect) {
            (Role::CopyRun { run }, Warehouse::Postgres) => {
                copy_run_files(&transaction, &statement.sql, plan, run, bucket).await?;
            }
            (role, _) => {
                let messages = transaction
                    .simple_query(&statement.sql)
                    .await
                    .map_err(|err| verification_error(plan, role, err, &context))?;
                match role {
                    Role::TagRun { run } => {
                        let staged = affected(&messages);
                        let planned = &plan.runs[run];
                        if staged != planned.rows {
                            return Err(rows_differ(plan, &planned.run_id, staged, planned.rows));
                        }
                    }
                    Role::DeleteTarget | Role::RemoveGone => deleted += affected(&messages),
                    Role::InsertTarget => inserted += affected(&messages),
                    Role::InsertClosed => {
                        // Versions a later one already follows: inserted, and no longer current.
                        let born_closed = affected(&messages);
                        inserted += born_closed;
                        deleted += born_closed;
                    }
                    Role::ReadLedger => ledger = ledger_rows(&messages)?,
                    _ => {}
                }
            }
        }
    }
    let new: Vec<&LedgerRow> = ledger
        .iter()
        .filter(|row| !before.iter().any(|b| b.run_id == row.run_id))
        .collect();
    let ledger_inserted: u64 = new.iter().map(|r| r.rows_inserted).sum();
    let ledger_deleted: u64 = new.iter().map(|r| r.rows_deleted).sum();
    if ledger_inserted != inserted || ledger_deleted != deleted || ledger.len() != plan.runs.len() {
        return Err(Error::Corrupt {
            uri: format!("{}.{}", plan.schema, plan.target),
            reason: format!(
                "the load inserted {inserted} and deleted {deleted} rows but its ledger rows say {ledger_inserted} and {ledger_deleted} (for {} of {} runs); nothing was committed",
                ledger.len(),
                plan.runs.len()
            ),
            fix: "the target has rows that share a key; remove the duplicates, then load again".to_owned(),
        });
    }
    crate::faults::point(crate::faults::FaultPoint::BeforeLoadCommit)?;
    transaction
        .commit()
        .await
        .map_err(|err| Error::postgres(format!("committing the load of `{}`", plan.target), err))?;
    crate::faults::point(crate::faults::FaultPoint::AfterLoadCommit)?;
    Ok(ledger)
}

/// Streams every file of run `run` into staging with one binary COPY per file.
async fn copy_run_files(
    transaction: &tokio_postgres::Transaction<'_>,
    copy_sql: &str,
    plan: &LoadPlan,
    run: usize,
    bucket: &Bucket,
) -> Result<()> {
    let planned = &plan.runs[run];
    let file_schema = match planned.deletion {
        false => plan.table_schema.clone(),
        true => crate::deletion::key_file_schema(&plan.table_schema.table),
    };
    for file in &planned.files {
        let uri = bucket.uri(&file.key);
        let size = bucket
            .size(&file.key)
            .await?
            .ok_or_else(|| Error::Corrupt {
                uri: uri.clone(),
                reason: format!(
                    "the file is missing, but run `{}` names it in {}",
                    planned.run_id,
                    bucket.uri(&planned.manifest_key)
                ),
                fix: "restore the file, or reset the table with `--drop-pending` and sync again"
                    .to_owned(),
            })?;
        if size != file.bytes {
            return Err(Error::Corrupt {
                uri,
                reason: format!(
                    "the file is {} bytes but run `{}`'s manifest says {}",
                    size,
                    planned.run_id,
                    file.bytes
                ),
                fix: "the file was replaced after the run committed; restore it, or reset the table with `--drop-pending` and sync again".to_owned(),
            });
        }
        // Read by ranges, a row group at a time: the load never holds a whole file.
        let batches = pg_copy::stream_file(bucket, &file.key, size, &file_schema, &uri).await?;
        pin_mut!(batches);
        let sink = transaction
            .copy_in(copy_sql)
            .await
            .map_err(|err| Error::postgres(format!("copying {uri}"), err))?;
        pin_mut!(sink);
        let send_error = |err| Error::postgres(format!("copying {uri}"), err);
        sink.send(pg_copy::header()).await.map_err(send_error)?;
        while let Some(batch) = batches.next().await {
            let (bytes, _) = batch?;
            sink.send(bytes).await.map_err(send_error)?;
        }
        sink.send(pg_copy::trailer()).await.map_err(send_error)?;
        let copied = sink.as_mut().finish().await.map_err(send_error)?;
        if copied != file.rows {
            return Err(Error::Corrupt {
                uri,
                reason: format!(
                    "the file holds {copied} rows but run `{}`'s manifest says {}",
                    planned.run_id, file.rows
                ),
                fix: "the file was replaced after the run committed; restore it, or reset the table with `--drop-pending` and sync again".to_owned(),
            });
        }
    }
    Ok(())
}

fn rows_differ(plan: &LoadPlan, run_id: &RunId, staged: u64, expected: u64) -> Error {
    Error::Corrupt {
        uri: format!("{}.{}", plan.schema, plan.target),
        reason: format!(
            "run `{run_id}` staged {staged} rows but its manifest says {expected}; nothing was committed"
        ),
        fix: "a file of the run was changed after it committed; restore it, or reset the table with `--drop-pending` and sync again".to_owned(),
    }
}

/// A failed statement; the verification statement's own failure becomes the clear error it means.
fn verification_error(
    plan: &LoadPlan,
    role: Role,
    err: tokio_postgres::Error,
    context: &dyn Fn(&str) -> String,
) -> Error {
    if role == Role::VerifyStaged && err.to_string().contains(sql::VERIFY_MARKER) {
        return Error::Corrupt {
            uri: format!("{}.{}", plan.schema, plan.target),
            reason: format!("{}; nothing was committed", sql::VERIFY_MARKER),
            fix: "a file of a run was changed after it committed; restore it, or reset the table with `--drop-pending` and sync again".to_owned(),
        };
    }
    if role == Role::VerifyKeys {
        let text = match err.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => err.to_string(),
        };
        if text.contains(sql::AMBIGUOUS_MARKER) {
            return Error::SchemaDrift {
                table: plan.source_table.clone(),
                details: sql::ambiguous_keys_message(&text),
            };
        }
    }
    Error::postgres(context(&format!("{role:?}")), err)
}

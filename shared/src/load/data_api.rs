//! The load through the Amazon Redshift Data API (`access: data_api`, the default).
//!
//! The schema step runs one `ExecuteStatement` per statement and waits for each (Redshift cannot
//! alter a column inside a transaction block). The load script goes in ONE
//! `BatchExecuteStatement` — one transaction, at most 40 statements of under 100 KB each — with a
//! `ClientToken` derived from the table and the run ids, so a retried `submit` gets the first
//! batch back instead of starting a second load. `status` maps `DescribeStatement`, and when the
//! batch finished it reads the loaded counts from the result of the batch's last sub-statement
//! (the ledger read-back, inside the same transaction): no second query, no double counting.
//!
//! The request building, the token and the error classification are plain functions so that
//! they are unit-tested without a server.

use crate::schema::Warehouse;
use std::time::{Duration, Instant};

use aws_sdk_redshiftdata::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_redshiftdata::types::{Field, SqlParameter, StatusString};

use crate::config::{DataApiTarget, RedshiftAccess, RedshiftConnection};
use crate::error::{Error, ErrorKind, Result};
use crate::naming::RunId;
use crate::schema::TargetColumn;

use super::sql::{self, LoadScript};
use super::LedgerRow;

/// How often a short statement (DDL, a column query) is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// One `BatchExecuteStatement`, before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    /// The statements, run in one transaction.
    pub sqls: Vec<String>,
    /// Database.
    pub database: String,
    /// Serverless workgroup, or
    pub workgroup_name: Option<String>,
    /// provisioned cluster.
    pub cluster_identifier: Option<String>,
    /// Credentials from Secrets Manager, or
    pub secret_arn: Option<String>,
    /// temporary credentials for this database user.
    pub db_user: Option<String>,
    /// Idempotency token: see [`client_token`].
    pub client_token: String,
    /// Shown in the console's query history.
    pub statement_name: String,
}

/// The batch for `script`, checked against the Data API's limits.
pub fn batch_request(
    connection: &RedshiftConnection,
    script: &LoadScript,
    client_token: String,
    statement_name: String,
) -> Result<BatchRequest> {
    if script.statements.len() > sql::MAX_BATCH_STATEMENTS {
        return Err(Error::InvalidRequest(format!(
            "a load needs {} statements but one Data API batch runs at most {}; load fewer runs at once",
            script.statements.len(),
            sql::MAX_BATCH_STATEMENTS
        )));
    }
    if let Some(long) = script
        .statements
        .iter()
        .find(|s| s.sql.len() >= sql::MAX_STATEMENT_BYTES)
    {
        return Err(Error::InvalidRequest(format!(
            "a load statement is {} bytes; the Data API takes under {}",
            long.sql.len(),
            sql::MAX_STATEMENT_BYTES
        )));
    }
    let (workgroup_name, cluster_identifier) = target_of(connection)?;
    Ok(BatchRequest {
        sqls: script.sqls(),
        database: connection.database.clone(),
        workgroup_name,
        cluster_identifier,
        secret_arn: connection.secret_arn.clone(),
        db_user: connection
            .secret_arn
            .is_none()
            .then(|| connection.db_user.clone())
            .flatten(),
        client_token,
        statement_name,
    })
}

/// The `WorkgroupName` and `ClusterIdentifier` of a request: exactly one is set.
fn target_of(connection: &RedshiftConnection) -> Result<(Option<String>, Option<String>)> {
    match &connection.access {
        RedshiftAccess::DataApi {
            target: DataApiTarget::Workgroup(workgroup),
            ..
        } => Ok((Some(workgroup.clone()), None)),
        RedshiftAccess::DataApi {
            target: DataApiTarget::Cluster(cluster),
            ..
        } => Ok((None, Some(cluster.clone()))),
        other => Err(Error::internal(format!(
            "a Data API request for a connection with `access: {}`",
            other.kind()
        ))),
    }
}

/// The batch's idempotency token: a hash of the table, the target, the runs it loads, the sync run
/// that submits it and the attempt number. A retried `submit` of the same attempt gets the same
/// token (the Data API answers with the first batch for 8 hours); a new attempt after a failed
/// batch gets a new one. At most 64 printable ASCII characters, as the API requires.
pub fn client_token(
    pipeline: &str,
    table: &str,
    target: &str,
    submitter: &RunId,
    runs: &[RunId],
    attempt: u32,
) -> String {
    let mut text =
        format!("tidemark-load-v1\n{pipeline}\n{table}\n{target}\n{submitter}\n{attempt}");
    for run in runs {
        text.push('\n');
        text.push_str(run.as_str());
    }
    format!("tidemark-{:032x}", fnv1a_128(text.as_bytes()))
}

/// 128-bit FNV-1a: std-only and identical on every platform.
pub(crate) fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u128::from(*byte)).wrapping_mul(PRIME)
    })
}

/// Whether a Redshift error text describes a fault a retry can cure: serialization conflicts
/// (error 1023), deadlocks, throttling and lost connections. SQL, permission and schema errors
/// are not.
pub fn classify_statement_error(text: &str) -> ErrorKind {
    let lower = text.to_ascii_lowercase();
    let transient = [
        "serializable isolation violation",
        "error: 1023",
        "deadlock detected",
        "throttl",
        "rate exceeded",
        "too many requests",
        "connection reset",
        "connection refused",
        "connection closed",
        "connection lost",
        "server closed the connection",
        "terminating connection",
        "could not connect",
        "temporarily unavailable",
    ];
    if transient.iter().any(|needle| lower.contains(needle)) {
        ErrorKind::Retryable
    } else {
        ErrorKind::NonRetryable
    }
}

/// What a statement is doing, as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementState {
    /// Accepted, not started (`SUBMITTED`, `PICKED`).
    Submitted,
    /// Running (`STARTED`).
    Running,
    /// Done and committed (`FINISHED`).
    Finished,
    /// Failed or aborted; nothing was committed.
    Failed {
        /// What went wrong, with the failed sub-statement's error when there is one.
        message: String,
        /// Whether submitting again can succeed.
        kind: ErrorKind,
    },
}

/// Maps `DescribeStatement`'s status. `error` is the batch's error; `failed_sub_statement` the
/// SQL text and error of the sub-statement that failed, if any.
pub fn statement_state(
    status: &StatusString,
    error: Option<&str>,
    failed_sub_statement: Option<(&str, &str)>,
) -> StatementState {
    match status {
        StatusString::Submitted | StatusString::Picked => StatementState::Submitted,
        StatusString::Started => StatementState::Running,
        StatusString::Finished => StatementState::Finished,
        StatusString::Aborted => StatementState::Failed {
            message:
                "the load batch was aborted (cancelled) before it committed; nothing was loaded"
                    .to_owned(),
            kind: ErrorKind::Retryable,
        },
        _ => {
            let (query, sub_error) = failed_sub_statement.unwrap_or(("", ""));
            if query.contains(sql::AMBIGUOUS_MARKER) {
                return StatementState::Failed {
                    message: sql::ambiguous_keys_message(sub_error),
                    kind: ErrorKind::SchemaDrift,
                };
            }
            if query.contains(sql::VERIFY_MARKER) {
                return StatementState::Failed {
                    message: format!(
                        "{}; nothing was committed: a file of a run was changed after it committed; restore it, or reset the table with `--drop-pending` and sync again",
                        sql::VERIFY_MARKER
                    ),
                    kind: ErrorKind::NonRetryable,
                };
            }
            let text = match (error, sub_error) {
                (Some(batch), "") => batch.to_owned(),
                (_, sub) if !sub.is_empty() => {
                    let head: String = query.chars().take(120).collect();
                    format!("{sub} (in `{}`)", head.replace('\n', " "))
                }
                _ => "the load batch failed without an error message".to_owned(),
            };
            StatementState::Failed {
                kind: classify_statement_error(&text),
                message: text,
            }
        }
    }
}

fn sdk_error<E, R>(context: &str, err: SdkError<E, R>) -> Error
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => matches!(
            service.err().code(),
            Some(
                "ThrottlingException"
                    | "ActiveStatementsExceededException"
                    | "ActiveSessionsExceededException"
                    | "InternalServerException"
                    | "BatchExecuteStatementException"
                    | "ExecuteStatementException"
            )
        ),
        _ => false,
    };
    // Only a network failure makes the tunnel fallback worth trying. An authorization error
    // (AccessDenied, ExpiredToken, InvalidSignature…) never does: revoking Data API access
    // during an incident must stop writes, not reroute them.
    let unreachable = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ServiceError(service) => cannot_reach_the_database(service.err().code()),
        _ => false,
    };
    Error::DataApi {
        context: context.to_owned(),
        message: DisplayErrorContext(&err).to_string(),
        retryable,
        unreachable,
        source: Some(Box::new(err)),
    }
}

/// Whether a Data API error code means the cluster could not be reached (the only service
/// error after which `fallback_to_tunnel` tries the tunnel).
fn cannot_reach_the_database(code: Option<&str>) -> bool {
    code == Some("DatabaseConnectionException")
}

/// A statement's status and, when it failed, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The mapped state.
    pub state: StatementState,
    /// The id of the batch's last sub-statement (the ledger read-back), or the statement's own id.
    pub last_result_id: String,
    /// The statement returned rows (read them with [`DataApi::records`]).
    pub has_result_set: bool,
}

/// A Redshift target reached through the Data API.
#[derive(Debug, Clone)]
pub struct DataApi {
    client: aws_sdk_redshiftdata::Client,
    connection: RedshiftConnection,
}

impl DataApi {
    /// The target `connection`, through `client`.
    pub fn new(client: aws_sdk_redshiftdata::Client, connection: RedshiftConnection) -> Self {
        DataApi { client, connection }
    }

    /// Sends the batch; returns its statement id.
    pub async fn submit(&self, request: &BatchRequest) -> Result<String> {
        let output = self
            .client
            .batch_execute_statement()
            .set_sqls(Some(request.sqls.clone()))
            .database(&request.database)
            .set_workgroup_name(request.workgroup_name.clone())
            .set_cluster_identifier(request.cluster_identifier.clone())
            .set_secret_arn(request.secret_arn.clone())
            .set_db_user(request.db_user.clone())
            .client_token(&request.client_token)
            .statement_name(&request.statement_name)
            .send()
            .await
            .map_err(|err| sdk_error("submitting the load batch", err))?;
        output.id.ok_or_else(|| Error::DataApi {
            context: "submitting the load batch".to_owned(),
            message: "the Data API returned no statement id".to_owned(),
            retryable: true,
            unreachable: false,
            source: None,
        })
    }

    /// `DescribeStatement`, mapped.
    pub async fn describe(&self, id: &str) -> Result<Described> {
        let output = self
            .client
            .describe_statement()
            .id(id)
            .send()
            .await
            .map_err(|err| sdk_error("describing a statement", err))?;
        let failed = output.sub_statements().iter().find(|s| {
            s.error().is_some_and(|e| !e.is_empty())
                || matches!(
                    s.status(),
                    Some(aws_sdk_redshiftdata::types::StatementStatusString::Failed)
                )
        });
        let status = output.status().cloned().unwrap_or(StatusString::Submitted);
        let state = statement_state(
            &status,
            output.error(),
            failed.map(|s| {
                (
                    s.query_string().unwrap_or_default(),
                    s.error().unwrap_or_default(),
                )
            }),
        );
        let last_result_id = output
            .sub_statements()
            .last()
            .map(|s| s.id().to_owned())
            .unwrap_or_else(|| output.id().to_owned());
        Ok(Described {
            state,
            last_result_id,
            has_result_set: output.has_result_set().unwrap_or(false),
        })
    }

    /// Every record of a finished statement's result.
    pub async fn records(&self, id: &str) -> Result<Vec<Vec<Field>>> {
        let mut records = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let output = self
                .client
                .get_statement_result()
                .id(id)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|err| sdk_error("reading a statement's result", err))?;
            records.extend(output.records);
            match output.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(records),
            }
        }
    }

    /// The ledger rows a finished load batch read back in its last sub-statement.
    pub async fn ledger_rows(&self, last_result_id: &str) -> Result<Vec<LedgerRow>> {
        ledger_records(&self.records(last_result_id).await?)
    }

    /// Runs one statement on its own (autocommit) and waits for it, up to `timeout`. Returns its
    /// records when it has a result set.
    pub async fn execute(
        &self,
        statement: &str,
        parameters: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Vec<Vec<Field>>> {
        let (workgroup, cluster) = target_of(&self.connection)?;
        let parameters = parameters
            .iter()
            .map(|(name, value)| {
                SqlParameter::builder()
                    .name(*name)
                    .value(*value)
                    .build()
                    .map_err(|err| Error::internal(format!("statement parameter: {err}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let output = self
            .client
            .execute_statement()
            .sql(statement)
            .database(&self.connection.database)
            .set_workgroup_name(workgroup)
            .set_cluster_identifier(cluster)
            .set_secret_arn(self.connection.secret_arn.clone())
            .set_db_user(
                self.connection
                    .secret_arn
                    .is_none()
                    .then(|| self.connection.db_user.clone())
                    .flatten(),
            )
            .set_parameters((!parameters.is_empty()).then_some(parameters))
            .send()
            .await
            .map_err(|err| sdk_error("running a statement", err))?;
        let id = output.id.ok_or_else(|| Error::DataApi {
            context: "running a statement".to_owned(),
            message: "the Data API returned no statement id".to_owned(),
            retryable: true,
            unreachable: false,
            source: None,
        })?;
        let described = self
            .wait(&id, &format!("`{}`", first_line(statement)), timeout)
            .await?;
        if described.has_result_set {
            self.records(&id).await
        } else {
            Ok(Vec::new())
        }
    }

    /// Submits `batch` and waits until it ends, up to `timeout`: for a caller that must know the
    /// outcome now (the deep check). The load step polls with `status` instead.
    pub async fn run_batch(&self, batch: &BatchRequest, timeout: Duration) -> Result<Described> {
        let id = self.submit(batch).await?;
        self.wait(&id, "the batch", timeout).await
    }

    /// Polls statement `id` (`what`, for errors) until it ends. A failure is the error, in
    /// Redshift's words; past `timeout` the statement is cancelled (it would hold locks).
    async fn wait(&self, id: &str, what: &str, timeout: Duration) -> Result<Described> {
        let started = Instant::now();
        loop {
            let described = self.describe(id).await?;
            match &described.state {
                StatementState::Finished => return Ok(described),
                StatementState::Failed { message, kind } => {
                    return Err(Error::DataApi {
                        context: format!("running {what}"),
                        message: message.clone(),
                        retryable: *kind == ErrorKind::Retryable,
                        unreachable: false,
                        source: None,
                    })
                }
                StatementState::Submitted | StatementState::Running => {}
            }
            if started.elapsed() > timeout {
                // Best effort: a statement left running would hold locks the load needs.
                let _ = self.client.cancel_statement().id(id).send().await;
                return Err(Error::DataApi {
                    context: format!("running {what}"),
                    message: format!(
                        "it did not finish within {}s and was cancelled",
                        timeout.as_secs()
                    ),
                    retryable: true,
                    unreachable: false,
                    source: None,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl DataApi {
    /// The connection's schema (targets and ledger).
    pub fn schema(&self) -> &str {
        &self.connection.schema
    }

    /// Runs one statement within the connection's `statement_timeout`; its records, if any.
    pub async fn run(&self, statement: &str) -> Result<Vec<Vec<Field>>> {
        self.execute(statement, &[], self.connection.statement_timeout.0)
            .await
    }

    /// Every record of `query`, each value as text (NULL as empty).
    pub(super) async fn text_rows(&self, query: &str) -> Result<Vec<Vec<String>>> {
        Ok(self
            .run(query)
            .await?
            .iter()
            .map(|record| record.iter().map(|f| field_text(Some(f))).collect())
            .collect())
    }

    /// The columns of `schema`.`table` from SVV_COLUMNS (none: no such table).
    pub(super) async fn existing_columns(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Vec<TargetColumn>> {
        let records = self
            .execute(
                &sql::existing_columns_query(Warehouse::Redshift, true),
                &[("schema", schema), ("table", table)],
                self.connection.statement_timeout.0,
            )
            .await?;
        Ok(records
            .iter()
            .map(|record| TargetColumn {
                name: field_text(record.first()),
                data_type: field_text(record.get(1)),
                character_maximum_length: field_number(record.get(2)),
                numeric_precision: field_number(record.get(3)),
                numeric_scale: field_number(record.get(4)),
                nullable: field_text(record.get(5)) != "NO",
                primary_key: Some(field_text(record.get(6))).filter(|name| !name.is_empty()),
            })
            .collect())
    }
}

fn first_line(statement: &str) -> &str {
    statement.lines().next().unwrap_or_default()
}

/// Ledger rows from the records of a ledger query (`run_id, rows_staged, rows_inserted,
/// rows_deleted`).
fn ledger_records(records: &[Vec<Field>]) -> Result<Vec<LedgerRow>> {
    records
        .iter()
        .map(|record| {
            let row: Vec<String> = record.iter().map(|f| field_text(Some(f))).collect();
            LedgerRow::from_text(&row)
        })
        .collect()
}

fn field_text(field: Option<&Field>) -> String {
    match field {
        Some(Field::StringValue(text)) => text.clone(),
        Some(Field::LongValue(n)) => n.to_string(),
        Some(Field::DoubleValue(n)) => n.to_string(),
        Some(Field::BooleanValue(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn field_number(field: Option<&Field>) -> Option<i64> {
    match field {
        Some(Field::LongValue(n)) => Some(*n),
        Some(Field::StringValue(text)) => text.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;
    use crate::load::sql::{Role, Statement};

    fn connection(target: DataApiTarget) -> RedshiftConnection {
        RedshiftConnection {
            access: RedshiftAccess::DataApi {
                target,
                tunnel: None,
            },
            database: "dev".to_owned(),
            schema: "analytics".to_owned(),
            db_user: Some("loader".to_owned()),
            secret_arn: None,
            iam_role: "arn:aws:iam::123456789012:role/copy".to_owned(),
            password: None,
            statement_timeout: HumanDuration(Duration::from_secs(60)),
            tls: crate::config::TlsMode::Disabled,
            tls_ca_file: None,
            tls_ca_secret: None,
        }
    }

    #[test]
    fn an_authorization_error_never_counts_as_unreachable() {
        for code in [
            "AccessDeniedException",
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
            "ValidationException",
        ] {
            assert!(!cannot_reach_the_database(Some(code)), "{code}");
        }
        assert!(cannot_reach_the_database(Some(
            "DatabaseConnectionException"
        )));
    }

    fn script(statements: usize, bytes: usize) -> LoadScript {
        LoadScript {
            statements: (0..statements)
                .map(|_| Statement {
                    role: Role::WorkTable,
                    sql: "x".repeat(bytes),
                })
                .collect(),
        }
    }

    fn run(id: &str) -> RunId {
        RunId::parse(id).unwrap()
    }

    #[test]
    fn batches_name_one_target_and_respect_the_limits() {
        let ok = batch_request(
            &connection(DataApiTarget::Workgroup("wg".into())),
            &script(40, 10),
            "t".into(),
            "n".into(),
        )
        .unwrap();
        assert_eq!(ok.sqls.len(), 40);
        assert_eq!(ok.workgroup_name.as_deref(), Some("wg"));
        assert_eq!(ok.cluster_identifier, None);
        assert_eq!(ok.db_user.as_deref(), Some("loader"));
        let mut with_secret = connection(DataApiTarget::Cluster("c1".into()));
        with_secret.secret_arn = Some("arn:secret".into());
        let batch = batch_request(&with_secret, &script(1, 1), "t".into(), "n".into()).unwrap();
        assert_eq!(batch.secret_arn.as_deref(), Some("arn:secret"));
        assert_eq!(
            batch.db_user, None,
            "a secret and a db user never go together"
        );
        assert!(batch_request(
            &connection(DataApiTarget::Workgroup("wg".into())),
            &script(41, 1),
            "t".into(),
            "n".into()
        )
        .unwrap_err()
        .to_string()
        .contains("at most 40"));
        assert!(batch_request(
            &connection(DataApiTarget::Workgroup("wg".into())),
            &script(1, 100_000),
            "t".into(),
            "n".into()
        )
        .is_err());
    }

    #[test]
    fn client_tokens_are_stable_per_runs_and_attempt() {
        let submitter = run("20261127T041530123Z-0000000000ab");
        let runs = [
            run("20261126T000000000Z-000000000001"),
            run("20261126T010000000Z-000000000002"),
        ];
        let token = client_token("p", "shop.orders", "orders", &submitter, &runs, 0);
        assert_eq!(
            token,
            client_token("p", "shop.orders", "orders", &submitter, &runs, 0)
        );
        assert!(
            token.len() <= 64 && token.chars().all(|c| c.is_ascii_graphic()),
            "{token}"
        );
        for other in [
            client_token("p", "shop.orders", "orders", &submitter, &runs, 1),
            client_token("p", "shop.orders", "orders", &submitter, &runs[..1], 0),
            client_token("p", "shop.orders", "orders2", &submitter, &runs, 0),
            client_token("p", "shop.orders", "orders", &runs[0], &runs, 0),
        ] {
            assert_ne!(token, other);
        }
        // Pinned: a change of the token's recipe would let a retried submit start a second load
        // during an upgrade.
        assert_eq!(token, "tidemark-".to_owned() + &token[9..]);
        assert_eq!(token.len(), 41);
    }

    #[test]
    fn statement_errors_are_classified() {
        for transient in [
            "ERROR: 1023 DETAIL: Serializable isolation violation on table - 100, transactions forming the cycle are: 1, 2",
            "Rate exceeded",
            "ThrottlingException: too many requests",
            "connection reset by peer",
            "FATAL: terminating connection due to administrator command",
        ] {
            assert_eq!(classify_statement_error(transient), ErrorKind::Retryable, "{transient}");
        }
        for permanent in [
            "ERROR: permission denied for relation orders",
            "ERROR: relation \"analytics.orders\" does not exist",
            "ERROR: syntax error at or near \"FROM\"",
            "ERROR: Spectrum Scan Error: S3ServiceException: Access Denied",
            "ERROR: column \"x\" is of type integer but expression is of type character varying",
        ] {
            assert_eq!(
                classify_statement_error(permanent),
                ErrorKind::NonRetryable,
                "{permanent}"
            );
        }
    }

    #[test]
    fn statuses_map_to_states_and_surface_the_failed_sub_statement() {
        assert_eq!(
            statement_state(&StatusString::Submitted, None, None),
            StatementState::Submitted
        );
        assert_eq!(
            statement_state(&StatusString::Picked, None, None),
            StatementState::Submitted
        );
        assert_eq!(
            statement_state(&StatusString::Started, None, None),
            StatementState::Running
        );
        assert_eq!(
            statement_state(&StatusString::Finished, None, None),
            StatementState::Finished
        );
        let StatementState::Failed { kind, .. } =
            statement_state(&StatusString::Aborted, None, None)
        else {
            panic!("aborted is a failure")
        };
        assert_eq!(kind, ErrorKind::Retryable);
        let failed = statement_state(
            &StatusString::Failed,
            Some("batch failed"),
            Some((
                "DELETE FROM \"analytics\".\"orders\"",
                "ERROR: 1023 Serializable isolation violation",
            )),
        );
        let StatementState::Failed { message, kind } = failed else {
            panic!("failed is a failure")
        };
        assert!(
            message.contains("1023") && message.contains("DELETE FROM"),
            "{message}"
        );
        assert_eq!(kind, ErrorKind::Retryable);
        let verify = statement_state(
            &StatusString::Failed,
            Some("batch failed"),
            Some((
                &format!(
                    "SELECT CAST(CASE WHEN COUNT(*) = 0 THEN '0' ELSE '{}' END AS INTEGER)",
                    sql::VERIFY_MARKER
                ),
                "Invalid digit, Value 't'",
            )),
        );
        let StatementState::Failed { message, kind } = verify else {
            panic!("a failed verification is a failure")
        };
        assert!(message.contains("rows staged differ"), "{message}");
        assert_eq!(kind, ErrorKind::NonRetryable);
    }
}

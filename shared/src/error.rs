//! The library's one error type and its stable names.
//!
//! Every fallible function in `tidemark` returns [`Result`]. [`Error::kind`] narrows an error to the
//! small, documented set of names that Step Functions `Retry`/`Catch` match on and that the CLI maps
//! to exit codes. Messages are lowercase, put values in backticks, and never carry a secret.

use std::fmt;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The stable failure classes, as sent to Step Functions in a Lambda error's `errorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A transient fault (connection lost, throttling, write conflict): the same step may succeed if retried.
    Retryable,
    /// A fault that will recur until someone changes the input, the config or the data.
    NonRetryable,
    /// Another live run holds the table's lease.
    LeaseHeld,
    /// The source schema changed in a way the target cannot follow on its own.
    SchemaDrift,
    /// A compare-and-swap write lost a race to another writer.
    ConcurrentUpdate,
    /// A table of the run's `depends_on` did not succeed in this sync: the table is skipped.
    DependencyFailed,
}

impl ErrorKind {
    /// Every kind: the only names besides `States.*` and `Lambda.*` a `Retry` or `Catch` of the
    /// state machine may match (`tests/tests/infra.rs` checks it).
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Retryable,
        ErrorKind::NonRetryable,
        ErrorKind::LeaseHeld,
        ErrorKind::SchemaDrift,
        ErrorKind::ConcurrentUpdate,
        ErrorKind::DependencyFailed,
    ];

    /// The name used as the Lambda `errorType` and in the state machine's `ErrorEquals`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Retryable => "Retryable",
            ErrorKind::NonRetryable => "NonRetryable",
            ErrorKind::LeaseHeld => "LeaseHeld",
            ErrorKind::SchemaDrift => "SchemaDrift",
            ErrorKind::ConcurrentUpdate => "ConcurrentUpdate",
            ErrorKind::DependencyFailed => "DependencyFailed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in tidemark.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is malformed or inconsistent. `location` is `file:line:column` when known.
    #[error("{location}: {message}")]
    Config {
        /// Where: `file:line:column`, or the file or setting.
        location: String,
        /// What is wrong, and the fix.
        message: String,
    },

    /// A table, column or other name cannot be used safely.
    #[error("invalid name {name}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// The source schema cannot be represented in the target.
    #[error("{0}")]
    Schema(String),

    /// The source schema changed incompatibly with an existing target table.
    #[error("schema drift in `{table}`: {details}")]
    SchemaDrift {
        /// The table (source or target), as the message names it.
        table: String,
        /// Each difference, with the fix.
        details: String,
    },

    /// A target table that belongs to another pipeline or source table (its load ledger says so).
    #[error("target `{target}` belongs to another table: {message}")]
    TargetConflict {
        /// The target table.
        target: String,
        /// Who else loads into it, and the fix.
        message: String,
    },

    /// A stored object that tidemark wrote cannot be read back.
    #[error("`{uri}` cannot be read: {reason}; {fix}")]
    Corrupt {
        /// The object (`s3://…`) or table.
        uri: String,
        /// What is wrong with it.
        reason: String,
        /// What to do.
        fix: String,
    },

    /// Another live run holds the table's lease.
    #[error("`{table}` is locked by run `{owner}` until {expires_at}; wait for it, or if that run is dead, `tidemark watermark unlock -t {table}`")]
    LeaseHeld {
        /// The source table.
        table: String,
        /// The run holding the lease.
        owner: String,
        /// When the lease lapses.
        expires_at: String,
    },

    /// A compare-and-swap write kept losing to other writers.
    #[error("`{uri}` was changed by someone else {attempts} times while tidemark was updating it; retry the command")]
    ConcurrentUpdate {
        /// The object being updated.
        uri: String,
        /// How many compare-and-swap writes lost.
        attempts: u32,
    },

    /// A request (Lambda payload, CLI arguments) that cannot be carried out as given.
    #[error("{0}")]
    InvalidRequest(String),

    /// An `after_load` statement failed after the table's load committed.
    #[error("{message}")]
    AfterLoad {
        /// The source table.
        table: String,
        /// What failed, and that the rows are loaded.
        message: String,
    },

    /// A table this table `depends_on` did not succeed in this sync, so it was not run.
    #[error("not run: `{dependency}`, which it depends on (`depends_on`), {what} in this sync; it runs again at the next sync once `{dependency}` succeeds")]
    DependencyNotSynced {
        /// The dependency.
        dependency: String,
        /// What became of it: `failed`, `was quarantined`, `was skipped`, or that it recorded
        /// no outcome.
        what: String,
    },

    /// Something tidemark's own code guarantees did not hold: a bug, never the user's doing.
    #[error("internal error (a tidemark bug; please report it with this message): {0}")]
    Internal(String),

    /// The run no longer holds the table's lease (it expired, or an operator unlocked it): the
    /// run must stop, and a new sync starts over from the watermark.
    #[error("run `{run_id}` does not hold the lease of `{table}` (it expired or was unlocked); start a new sync")]
    LeaseLost {
        /// The table.
        table: String,
        /// The run that lost it.
        run_id: String,
    },

    /// A server answered something tidemark cannot use (a count that is not a number, no row
    /// where one must be).
    #[error("{server} answered {what} with `{answer}`")]
    UnexpectedAnswer {
        /// Who answered: the source, the target, S3.
        server: String,
        /// The question, in words.
        what: String,
        /// The answer as received.
        answer: String,
    },

    /// A fault injected by `TIDEMARK_FAULTS` (fault drills and tests only).
    #[error("injected fault at `{point}` (hit {hit}): TIDEMARK_FAULTS asked for {}", if *.retryable { "an error" } else { "a non-retryable error" })]
    InjectedFault {
        /// The fault point.
        point: String,
        /// Which hit of the point fired.
        hit: u64,
        /// Whether the step should be retried.
        retryable: bool,
    },

    /// A secret could not be resolved. The message names the secret's id, never its value.
    #[error("secret `{id}`: {reason}")]
    Secret {
        /// The secret's name or ARN (never its value).
        id: String,
        /// Why it could not be used.
        reason: String,
    },

    /// The MySQL source failed.
    #[error("mysql: {context}: {source}")]
    Mysql {
        /// What tidemark was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },

    /// A PostgreSQL-protocol target failed.
    #[error("postgres: {context}: {}{}", server_words(.source), closed_connection_hint(.source))]
    Postgres {
        /// What tidemark was doing.
        context: String,
        /// The driver's error (with the server's words, when it answered).
        #[source]
        source: tokio_postgres::Error,
    },

    /// An S3 call failed.
    #[error("s3: {context}: {message}")]
    S3 {
        /// What tidemark was doing.
        context: String,
        /// S3's error, in one line.
        message: String,
        /// Whether trying again can succeed.
        retryable: bool,
        /// The SDK's error, when the call itself failed (not when S3's answer was unusable).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A Redshift Data API call or statement failed. `retryable` is decided where the error is
    /// understood (see `load::data_api::classify_statement_error`).
    #[error("redshift data api: {context}: {message}")]
    DataApi {
        /// What tidemark was doing.
        context: String,
        /// The API's or Redshift's words.
        message: String,
        /// Whether trying again can succeed.
        retryable: bool,
        /// The API or the cluster could not be reached (a network failure, never an authorization
        /// or SQL error): with `fallback_to_tunnel` the load goes through the SSH tunnel.
        unreachable: bool,
        /// The SDK's error, when the API call itself failed (not for a failed statement).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The SSH tunnel to a warehouse could not be opened or broke. Host key and authentication
    /// failures are not retryable; a lost or unreachable bastion is.
    #[error("ssh tunnel through `{bastion}`: {message}")]
    Tunnel {
        /// The bastion, `host:port`.
        bastion: String,
        /// What failed, and the fix.
        message: String,
        /// Whether trying again can succeed.
        retryable: bool,
    },

    /// A network connection could not be opened, or stalled.
    #[error("{context}: {source}")]
    Network {
        /// What tidemark was reaching.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Reading or writing a local file failed.
    #[error("{context}: {source}")]
    Io {
        /// The file or operation.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A configuration error at a known place.
    pub fn config(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            location: location.into(),
            message: message.into(),
        }
    }

    /// A name that cannot be used safely.
    pub fn invalid_name(name: &str, reason: impl Into<String>) -> Self {
        Error::InvalidName {
            name: format!("`{}`", name.escape_debug()),
            reason: reason.into(),
        }
    }

    /// A tidemark bug, described.
    pub fn internal(what: impl Into<String>) -> Self {
        Error::Internal(what.into())
    }

    /// An answer of `server` to `what` that tidemark cannot use.
    pub fn unexpected_answer(
        server: impl Into<String>,
        what: impl Into<String>,
        answer: impl Into<String>,
    ) -> Self {
        Error::UnexpectedAnswer {
            server: server.into(),
            what: what.into(),
            answer: answer.into(),
        }
    }

    /// A MySQL failure with what tidemark was doing.
    pub fn mysql(context: impl Into<String>, source: mysql_async::Error) -> Self {
        let context = context.into();
        if is_packet_too_large(&source) {
            return Error::Schema(format!(
                "{context}: a row is longer than the source connection's `max_row_mib` allows \
                 (default 64 MiB), and the driver refused it before holding it in memory; raise \
                 `max_row_mib` (the function then needs about three times that much memory), or \
                 leave the long column out with `columns.exclude`"
            ));
        }
        Error::Mysql { context, source }
    }

    /// A PostgreSQL failure with what tidemark was doing.
    pub fn postgres(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Error::Postgres {
            context: context.into(),
            source,
        }
    }

    /// The stable class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. }
            | Error::InvalidName { .. }
            | Error::Schema(_)
            | Error::TargetConflict { .. }
            | Error::Secret { .. }
            | Error::Corrupt { .. }
            | Error::InvalidRequest(_)
            | Error::AfterLoad { .. }
            | Error::Internal(_)
            | Error::LeaseLost { .. }
            | Error::UnexpectedAnswer { .. }
            | Error::Io { .. } => ErrorKind::NonRetryable,
            Error::LeaseHeld { .. } => ErrorKind::LeaseHeld,
            Error::Network { .. } => ErrorKind::Retryable,
            Error::ConcurrentUpdate { .. } => ErrorKind::ConcurrentUpdate,
            Error::SchemaDrift { .. } => ErrorKind::SchemaDrift,
            Error::DependencyNotSynced { .. } => ErrorKind::DependencyFailed,
            Error::Mysql { source, .. } => match source {
                mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => ErrorKind::Retryable,
                mysql_async::Error::Server(server) if is_transient_mysql_code(server.code) => {
                    ErrorKind::Retryable
                }
                _ => ErrorKind::NonRetryable,
            },
            Error::Postgres { source, .. } => match source.as_db_error() {
                None => ErrorKind::Retryable,
                Some(_) if source.is_closed() => ErrorKind::Retryable,
                Some(db) if is_transient_postgres(db.code().code(), db.message()) => {
                    ErrorKind::Retryable
                }
                Some(_) => ErrorKind::NonRetryable,
            },
            Error::S3 { retryable, .. }
            | Error::DataApi { retryable, .. }
            | Error::InjectedFault { retryable, .. }
            | Error::Tunnel { retryable, .. } => {
                if *retryable {
                    ErrorKind::Retryable
                } else {
                    ErrorKind::NonRetryable
                }
            }
        }
    }
}

/// A PostgreSQL-protocol error in the server's own words — severity, SQLSTATE, message, detail
/// and hint — where tokio-postgres alone prints only "db error".
fn server_words(source: &tokio_postgres::Error) -> String {
    match source.as_db_error() {
        Some(db) => {
            let mut words = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                words.push_str(&format!("; detail: {detail}"));
            }
            if let Some(hint) = db.hint() {
                words.push_str(&format!("; hint: {hint}"));
            }
            words
        }
        None => {
            // tokio-postgres says only "error performing TLS handshake"; why is below it.
            let mut words = source.to_string();
            let mut cause = std::error::Error::source(source);
            while let Some(below) = cause {
                words.push_str(&format!(": {below}"));
                cause = below.source();
            }
            if words.contains("certificate") {
                words.push_str(
                    " (the server's certificate must chain to Mozilla's roots or to `tls_ca_file` / \
                     `tls_ca_secret`, and name the connection's `host`)",
                );
            }
            words
        }
    }
}

/// Why a warehouse connection may have closed under a request — tokio-postgres says only
/// "connection closed"; the reason, when it was a stall, is in the `warehouse connection ended`
/// warning logged just before.
fn closed_connection_hint(source: &tokio_postgres::Error) -> &'static str {
    if source.is_closed() {
        " (the warehouse connection ended under the request: the network dropped, or stalled \
         longer than `statement_timeout` + 10 s, or the server closed the session; the step is \
         retried)"
    } else {
        ""
    }
}

/// PostgreSQL (and Redshift wire-protocol) errors that a retry can cure: serialization failure,
/// deadlock, connection exceptions, insufficient resources, administrator shutdown, and Redshift's
/// serializable isolation violation (error 1023, reported with a generic SQLSTATE).
fn is_transient_postgres(code: &str, message: &str) -> bool {
    matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
        || code.starts_with("08")
        || code.starts_with("53")
        || message.contains("Serializable isolation violation")
}

/// The driver's refusal of a packet longer than its `max_allowed_packet` (tidemark's
/// `max_row_mib`): an I/O error wrapping mysql_common's codec error.
fn is_packet_too_large(err: &mysql_async::Error) -> bool {
    use mysql_common::proto::codec::error::PacketCodecError;
    match err {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<PacketCodecError>())
            .is_some_and(|codec| matches!(codec, PacketCodecError::PacketTooLarge)),
        _ => false,
    }
}

/// MySQL server errors that a retry can cure: lock wait timeout, deadlock, too many connections,
/// server shutdown in progress, query interrupted.
fn is_transient_mysql_code(code: u16) -> bool {
    matches!(code, 1205 | 1213 | 1040 | 1053 | 1317)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of failure has its own variant, and its kind decides whether the state machine
    /// retries it: only an injected fault that asks for it is retried among these.
    #[test]
    fn bugs_lost_leases_odd_answers_and_injected_faults_are_told_apart() {
        let lost = Error::LeaseLost {
            table: "shop.orders".into(),
            run_id: "r1".into(),
        };
        assert!(lost
            .to_string()
            .contains("does not hold the lease of `shop.orders`"));
        let answer = Error::unexpected_answer("the target", "`COUNT(*)` of `orders`", "many");
        assert_eq!(
            answer.to_string(),
            "the target answered `COUNT(*)` of `orders` with `many`"
        );
        let bug = Error::internal("no timestamp column");
        assert!(bug
            .to_string()
            .starts_with("internal error (a tidemark bug"));
        let fault = |retryable| Error::InjectedFault {
            point: "after_commit".into(),
            hit: 2,
            retryable,
        };
        assert_eq!(
            [lost, answer, bug, fault(false)].map(|e| e.kind()),
            [ErrorKind::NonRetryable; 4]
        );
        assert_eq!(fault(true).kind(), ErrorKind::Retryable);
        assert!(fault(true).to_string().contains("`after_commit` (hit 2)"));
    }
}

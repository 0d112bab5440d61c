//! The configuration file: typed, parsed once, every error located at its file, line and column.
//!
//! The structs below ARE the user documentation of the YAML format (README's reference mirrors
//! them). Unknown keys are rejected. `${VAR}` and `${VAR:-default}` are substituted in string
//! values from an environment the caller passes in, so parsing never reads the process environment
//! by itself. This module never resolves secrets and never prints one.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::naming;
use crate::schema::{DistStyle, Warehouse};
use crate::secret::SecretString;

use env::{interpolated, interpolated_option, interpolated_secret, masked, EnvironmentGuard};
pub use env::{lambda_environment, Environment};
use locate::{problems_error, yaml_error, KeyLocator, Problems};
pub use redshift::{
    DataApiTarget, DataApiTunnel, RawRedshiftConnection, RedshiftAccess, RedshiftAccessKind,
    RedshiftConnection, WireEndpoint,
};
pub use scd::{ScdEffective, ScdNames, ScdType, TableType};
pub use table::{
    RawTableConfig, Strategy, TableConfig, VerifySchedule, DEFAULT_ID_LOOKBACK,
    DEFAULT_RECONCILE_EVERY,
};

/// The whole file. `T` and `R` are how a table and a Redshift connection are held:
/// [`RawTableConfig`] and [`RawRedshiftConnection`] as written, while the file is checked (so
/// that each problem is located at its key), then [`TableConfig`] and [`RedshiftConnection`],
/// whose strategy and way in carry their data.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config<T = TableConfig, R = RedshiftConnection> {
    /// Named sources and targets, referred to by pipelines.
    pub connections: BTreeMap<String, Connection<R>>,
    /// Named pipelines: a source, a target, an S3 location and the tables to sync.
    pub pipelines: BTreeMap<String, Pipeline<T>>,
    /// How every AWS API call of the process (S3, Secrets Manager, the Redshift Data API) is
    /// bounded and retried.
    #[serde(default)]
    pub aws: AwsSettings,
}

/// Timeouts and retries of the AWS clients: one setting for the whole process, so a stalled
/// or cut connection to S3 fails its request in bounded time and the request is retried.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Longest wait to open a connection to an AWS endpoint. Default `5s`.
    #[serde(default = "default_aws_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Longest wait for a response to begin, and longest pause inside an upload or download;
    /// a request that stalls longer fails and is retried. Default `60s`.
    #[serde(default = "default_aws_read_timeout")]
    pub read_timeout: HumanDuration,
    /// Attempts per request, the first included, before the step fails (and the state machine
    /// retries the step). Default 3.
    #[serde(default = "default_aws_max_attempts")]
    pub max_attempts: u32,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            connect_timeout: default_aws_connect_timeout(),
            read_timeout: default_aws_read_timeout(),
            max_attempts: default_aws_max_attempts(),
        }
    }
}

/// A source or target, chosen by `kind`. `R` as in [`Config`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Connection<R = RedshiftConnection> {
    /// A MySQL or MariaDB source.
    Mysql(MysqlConnection),
    /// A PostgreSQL warehouse.
    Postgres(PostgresConnection),
    /// An Amazon Redshift warehouse (provisioned or serverless).
    Redshift(Box<R>),
}

/// The TLS settings a Redshift connection has, as written and as checked.
pub trait RedshiftTls {
    /// `tls`, `tls_ca_file` and `tls_ca_secret`.
    fn tls_settings(&self) -> (TlsMode, Option<&str>, Option<&str>);
}

impl RedshiftTls for RedshiftConnection {
    fn tls_settings(&self) -> (TlsMode, Option<&str>, Option<&str>) {
        (
            self.tls,
            self.tls_ca_file.as_deref(),
            self.tls_ca_secret.as_deref(),
        )
    }
}

impl RedshiftTls for RawRedshiftConnection {
    fn tls_settings(&self) -> (TlsMode, Option<&str>, Option<&str>) {
        (
            self.tls,
            self.tls_ca_file.as_deref(),
            self.tls_ca_secret.as_deref(),
        )
    }
}

impl<R: RedshiftTls> Connection<R> {
    /// `tls`, `tls_ca_file` and `tls_ca_secret`.
    pub fn tls_settings(&self) -> (TlsMode, Option<&str>, Option<&str>) {
        match self {
            Connection::Mysql(c) => (c.tls, c.tls_ca_file.as_deref(), c.tls_ca_secret.as_deref()),
            Connection::Postgres(c) => {
                (c.tls, c.tls_ca_file.as_deref(), c.tls_ca_secret.as_deref())
            }
            Connection::Redshift(c) => c.tls_settings(),
        }
    }
}

impl<R> Connection<R> {
    fn kind_name(&self) -> &'static str {
        match self {
            Connection::Mysql(_) => "mysql",
            Connection::Postgres(_) => "postgres",
            Connection::Redshift(_) => "redshift",
        }
    }
}

impl Connection<RawRedshiftConnection> {
    /// The warehouse schema a target connection writes into, written the same way for two
    /// connections that name the same place (`None` for a source): `postgres://host:port/db/schema`,
    /// or `redshift://<workgroup | cluster | host>/db/schema`.
    fn warehouse_place(&self) -> Option<String> {
        let host = |host: &str| match host.to_ascii_lowercase().as_str() {
            "localhost" | "::1" => "127.0.0.1".to_owned(),
            other => other.to_owned(),
        };
        let folded =
            |name: &str| naming::target_identifier(name).unwrap_or_else(|_| name.to_owned());
        match self {
            Connection::Mysql(_) => None,
            Connection::Postgres(pg) => Some(format!(
                "postgres://{}:{}/{}/{}",
                host(&pg.host),
                pg.port,
                pg.database,
                folded(&pg.schema)
            )),
            Connection::Redshift(rs) => {
                let place = rs
                    .workgroup
                    .as_deref()
                    .map(|wg| format!("workgroup:{}", wg.to_ascii_lowercase()))
                    .or_else(|| {
                        rs.cluster_identifier
                            .as_deref()
                            .map(|c| format!("cluster:{}", c.to_ascii_lowercase()))
                    })
                    .or_else(|| {
                        rs.host
                            .as_deref()
                            .map(|h| format!("{}:{}", host(h), rs.port))
                    })?;
                Some(format!(
                    "redshift://{place}/{}/{}",
                    folded(&rs.database),
                    folded(&rs.schema)
                ))
            }
        }
    }
}

/// A MySQL or MariaDB server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConnection {
    /// Host name or address.
    #[serde(deserialize_with = "interpolated")]
    pub host: String,
    /// TCP port. Default 3306.
    #[serde(default = "default_mysql_port")]
    pub port: u16,
    /// User name.
    #[serde(deserialize_with = "interpolated")]
    pub user: String,
    /// The password, usually `${ENV_VAR}`. Prefer `password_secret`.
    #[serde(
        default,
        deserialize_with = "interpolated_secret",
        serialize_with = "masked"
    )]
    pub password: Option<SecretString>,
    /// Secrets Manager name or ARN holding the password (plain, or JSON with a `password` field).
    #[serde(default, deserialize_with = "interpolated_option")]
    pub password_secret: Option<String>,
    /// TLS: `disabled` (default), `required` (encrypt; verify the certificate chain and the
    /// host name) or `unverified` (encrypt; take any certificate).
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of CA certificates trusted besides Mozilla's roots, for `tls: required` (the
    /// Amazon RDS bundle, a private CA). Give this or `tls_ca_secret`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub tls_ca_file: Option<String>,
    /// A Secrets Manager id whose string is that PEM (for Lambda, which has no such file).
    #[serde(default, deserialize_with = "interpolated_option")]
    pub tls_ca_secret: Option<String>,
    /// Connect timeout. Default `10s`.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Longest wait for the server's next answer: a statement's first row, or the next row of a
    /// stream. A connection silent for longer (a stalled network) fails the step, which is
    /// retried. Raise it if a legitimate query is slower to start, e.g. a `custom_sql` that
    /// sorts, or `validate-counts` on a very large table. Default `5m`.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    /// The most one row may take on the wire, in MiB (1–1024). The driver refuses a longer row
    /// as it arrives, before holding it in memory, so one huge JSON or BLOB value cannot exhaust
    /// a Lambda's memory: the step fails naming this setting. An extraction holds a row about
    /// three times over (the packet, the decoded value, the Arrow batch). Default 64.
    #[serde(default = "default_max_row_mib")]
    pub max_row_mib: u32,
}

/// A PostgreSQL server used as the warehouse.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConnection {
    /// Host name or address.
    #[serde(deserialize_with = "interpolated")]
    pub host: String,
    /// TCP port. Default 5432.
    #[serde(default = "default_postgres_port")]
    pub port: u16,
    /// Database name.
    #[serde(deserialize_with = "interpolated")]
    pub database: String,
    /// User name.
    #[serde(deserialize_with = "interpolated")]
    pub user: String,
    /// The password, usually `${ENV_VAR}`. Prefer `password_secret`.
    #[serde(
        default,
        deserialize_with = "interpolated_secret",
        serialize_with = "masked"
    )]
    pub password: Option<SecretString>,
    /// Secrets Manager name or ARN holding the password.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub password_secret: Option<String>,
    /// Schema that holds the target tables and the load ledger. Default `public`.
    #[serde(default = "default_schema", deserialize_with = "interpolated")]
    pub schema: String,
    /// TLS: `disabled` (default), `required` (encrypt; verify the certificate chain and the
    /// host name) or `unverified` (encrypt; take any certificate).
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of CA certificates trusted besides Mozilla's roots, for `tls: required` (the
    /// Amazon RDS bundle, a private CA). Give this or `tls_ca_secret`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub tls_ca_file: Option<String>,
    /// A Secrets Manager id whose string is that PEM (for Lambda, which has no such file).
    #[serde(default, deserialize_with = "interpolated_option")]
    pub tls_ca_secret: Option<String>,
    /// Longest any one statement may run: the server cancels it then, and tidemark stops
    /// waiting for an answer 10 s later (a stalled network), failing the step so it is retried.
    /// Default `30m`.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: HumanDuration,
    /// Connect timeout. Default `10s`.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// SSH bastion in front of the server: when given, every connection goes through it and
    /// `host`/`port` are the server as the bastion sees it.
    #[serde(default)]
    pub tunnel: Option<TunnelConfig>,
}

/// An SSH bastion in front of a warehouse (Redshift or PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    /// Bastion host name or address.
    #[serde(deserialize_with = "interpolated")]
    pub bastion_host: String,
    /// Bastion SSH port. Default 22.
    #[serde(default = "default_ssh_port")]
    pub bastion_port: u16,
    /// SSH user.
    #[serde(deserialize_with = "interpolated")]
    pub user: String,
    /// Secrets Manager id of the private key (PEM/OpenSSH text). Give this or `private_key_file`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub private_key_secret: Option<String>,
    /// Path of the private key file. Give this or `private_key_secret`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub private_key_file: Option<String>,
    /// The bastion's expected host key (`ssh-ed25519 AAAA…`), checked unless `verify_host_key` is false.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub host_key: Option<String>,
    /// Check the bastion's host key against `host_key`. Default true.
    #[serde(default = "yes")]
    pub verify_host_key: bool,
}

/// Transport encryption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disabled,
    /// TLS with the server's certificate verified against Mozilla's roots and the connection's
    /// CA bundle, and its host name checked; connecting fails otherwise (libpq's `verify-full`).
    #[serde(alias = "verify_full")]
    Required,
    /// TLS that takes any certificate (libpq's `require`): no eavesdropping, but no proof that
    /// the server is the one named. For a server whose CA cannot be had; prefer `required`.
    Unverified,
}

impl TlsMode {
    /// The value as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Disabled => "disabled",
            TlsMode::Required => "required",
            TlsMode::Unverified => "unverified",
        }
    }
}

/// The sync state machine's timeout (`TimeoutSeconds` of `statemachine/sync.asl.json`; a test
/// keeps the two equal): every `lease_ttl` must be longer, since a timed-out execution releases
/// no lease.
pub const EXECUTION_TIMEOUT: Duration = Duration::from_secs(5 * 3600);

/// The most extractions one pipeline may run at once (`table_concurrency` x
/// `chunk_concurrency`): each holds a session on the production source.
pub const MAX_SOURCE_SESSIONS: u64 = 40;

/// One pipeline: tables from one source to one target through one S3 location.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline<T = TableConfig> {
    /// Name of a `kind: mysql` connection.
    pub source: String,
    /// Name of a `kind: postgres` or `kind: redshift` connection.
    pub target: String,
    /// Where Parquet files, manifests and watermarks live.
    pub s3: S3Location,
    /// How many tables sync at once: 1 (default) is sequential, N is inter-table parallel.
    #[serde(default = "one")]
    pub table_concurrency: u32,
    /// How many chunks of one table extract at once. Default 4.
    #[serde(default = "default_chunk_concurrency")]
    pub chunk_concurrency: u32,
    /// How long a run's lease on a table lasts before another run may take it over. Must be
    /// longer than the state machine's timeout. Default `6h`.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: HumanDuration,
    /// How many earlier versions of each watermark are kept for `restore`, at least. Default 50.
    #[serde(default = "default_watermark_history")]
    pub watermark_history: usize,
    /// Every earlier version younger than this is kept too, whatever `watermark_history` says
    /// (an hourly schedule writes 24 a day). Default `30d`.
    #[serde(default = "default_watermark_history_age")]
    pub watermark_history_age: HumanDuration,
    /// When the deployed state machine syncs the pipeline: an EventBridge Scheduler expression,
    /// `rate(1 hour)` or `cron(0 6 * * ? *)`, put in place by `tidemark schedules apply`
    /// (README: Schedules and alarms). Default none.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub schedule: Option<String>,
    /// The IANA time zone a `cron(…)` schedule is read in, e.g. `Europe/Berlin`. Default `UTC`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub schedule_timezone: Option<String>,
    /// The freshness alarm fires when the pipeline's largest `LagSeconds` exceeds this (or,
    /// with a `schedule`, when no sync reports it). Default `2h` with a `schedule`, none without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_alarm: Option<HumanDuration>,
    /// OpenLineage events of every table run (README: Lineage).
    #[serde(default)]
    pub lineage: LineageConfig,
    /// Statements run in the target after each table's load, before the table's own
    /// `after_load` (README: SQL after a load).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_load: Vec<String>,
    /// The tables, keyed `database.table`.
    pub tables: BTreeMap<String, T>,
}

/// Where a pipeline's OpenLineage events go besides S3 (`lineage:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineageConfig {
    /// The namespace of the pipeline's jobs. Default `tidemark`.
    #[serde(default = "default_lineage_namespace")]
    pub namespace: String,
    /// An OpenLineage HTTP endpoint each event is also POSTed to (`http://` or `https://`, e.g.
    /// Marquez's `…/api/v1/lineage`). Default none.
    #[serde(default)]
    pub endpoint: Option<String>,
}

impl Default for LineageConfig {
    fn default() -> Self {
        LineageConfig {
            namespace: default_lineage_namespace(),
            endpoint: None,
        }
    }
}

fn default_lineage_namespace() -> String {
    "tidemark".to_owned()
}

/// An S3 location.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Location {
    /// Bucket name.
    #[serde(deserialize_with = "interpolated")]
    pub bucket: String,
    /// Key prefix under which everything of the pipeline lives. Default `tidemark`.
    #[serde(default = "default_prefix", deserialize_with = "interpolated")]
    pub prefix: String,
    /// The 12-digit AWS account that must own the bucket: every S3 call passes it as
    /// `ExpectedBucketOwner`, so a mistyped or reclaimed bucket name of another account is never
    /// read or written. Recommended; default none.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub expected_bucket_owner: Option<String>,
}

/// What the schema step does with a target column no source column feeds any more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DroppedColumns {
    /// Keep it (NULL from now on), with a warning.
    #[default]
    Keep,
    /// Drop it from the target.
    Drop,
}

/// What the target does with a row whose key is gone from the source (`deletes:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletePolicy {
    /// Keep it: the target holds every row it was ever sent.
    #[default]
    Ignore,
    /// Delete it from the target.
    Hard,
    /// Keep it, with `_tidemark_deleted_at` set to when the deletion was loaded; a key that
    /// comes back in the source is loaded live again.
    Soft,
}

impl fmt::Display for DeletePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeletePolicy::Ignore => "ignore",
            DeletePolicy::Hard => "hard",
            DeletePolicy::Soft => "soft",
        })
    }
}

/// Column selection and per-column overrides.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnsConfig {
    /// Only these columns (default: all).
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Never these columns.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Per-column overrides, e.g. `{ big_amount: { as: text } }`.
    #[serde(default)]
    pub overrides: BTreeMap<String, ColumnOverride>,
}

/// An override for one column.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnOverride {
    /// `text`: carry the value as its text form (for DECIMAL wider than 38 digits, spatial types…).
    #[serde(rename = "as")]
    pub as_type: OverrideType,
}

/// What an override turns a column into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideType {
    /// Text.
    Text,
}

/// Redshift layout of one table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedshiftTableConfig {
    /// `auto` (default), `even`, `all` or `key` (needs `distkey`).
    #[serde(default)]
    pub diststyle: Option<DistStyle>,
    /// Distribution key column.
    #[serde(default)]
    pub distkey: Option<String>,
    /// Sort key columns.
    #[serde(default)]
    pub sortkey: Vec<String>,
}

/// How rows are found between runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CdcStrategy {
    /// Timestamp cursor, ties broken by the key.
    #[default]
    Hybrid,
    /// Timestamp cursor only.
    TimestampOnly,
    /// Increasing integer id; append-only tables.
    IdOnly,
    /// The whole table every run.
    FullSync,
    /// The user's own SELECT.
    CustomSql,
}

/// How loaded rows meet the target's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// Replace rows with the same key, insert the others.
    Merge,
    /// Insert every row.
    Append,
    /// Make the target's content exactly the run's rows.
    Replace,
}

/// A duration written `250ms`, `30s`, `10m`, `2h` or `7d`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let invalid = || {
            format!("invalid duration `{text}`: write a whole number and a unit, e.g. `250ms`, `30s`, `10m`, `2h`, `7d`")
        };
        let amount: u64 = number.parse().map_err(|_| invalid())?;
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        amount
            .checked_mul(millis_per_unit)
            .map(|millis| HumanDuration(Duration::from_millis(millis)))
            .ok_or_else(invalid)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if millis.is_multiple_of(size) && millis > 0 {
                return write!(f, "{}{unit}", millis / size);
            }
        }
        if millis == 0 {
            f.write_str("0s")
        } else {
            write!(f, "{millis}ms")
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr {
            expecting: "a duration such as `30s`",
            check: HumanDuration::parse,
        })
    }
}

/// Checks a string inside the deserializer's visit, so that an error carries the value's own
/// line and column rather than its parent's.
struct CheckedStr<F> {
    expecting: &'static str,
    check: F,
}

impl<'de, T, F> serde::de::Visitor<'de> for CheckedStr<F>
where
    F: FnOnce(&str) -> std::result::Result<T, String>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<T, E> {
        (self.check)(text).map_err(E::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn default_mysql_port() -> u16 {
    3306
}
fn default_postgres_port() -> u16 {
    5432
}
fn default_redshift_port() -> u16 {
    5439
}
fn default_ssh_port() -> u16 {
    22
}
fn default_schema() -> String {
    "public".to_owned()
}
fn default_prefix() -> String {
    "tidemark".to_owned()
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_max_row_mib() -> u32 {
    64
}
fn default_read_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5 * 60))
}
fn default_aws_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_aws_read_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_aws_max_attempts() -> u32 {
    3
}
fn default_statement_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30 * 60))
}
fn default_chunk_rows() -> u64 {
    500_000
}
fn default_lookback() -> HumanDuration {
    HumanDuration(Duration::from_secs(5 * 60))
}
fn default_lag() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_lease_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(6 * 3600))
}
fn default_watermark_history_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(30 * 24 * 3600))
}

fn default_watermark_history() -> usize {
    50
}
fn default_chunk_concurrency() -> u32 {
    4
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

impl Config {
    /// Parses and validates `text`; `file` names it in errors; `${VAR}` resolves from `env`.
    pub fn from_yaml(text: &str, file: &str, env: &Environment) -> Result<Config> {
        let locator = KeyLocator::new(text);
        // Before serde: it keeps the last of two equal map keys (a second table or pipeline
        // entry silently replaced the first).
        let duplicates: Vec<String> = locator
            .duplicates()
            .into_iter()
            .map(|(key, (first_line, first_col), (line, col))| {
                format!(
                    "{file}:{line}:{col}: `{key}` is defined twice (first at {file}:{first_line}:{first_col}); YAML keys must be unique: merge the two, or rename or delete one"
                )
            })
            .collect();
        if !duplicates.is_empty() {
            return Err(problems_error(file, duplicates));
        }
        let config: Config<RawTableConfig, RawRedshiftConnection> = {
            let _guard = EnvironmentGuard::set(env);
            serde_yaml::from_str(text).map_err(|err| yaml_error(file, text, &err))?
        };
        let mut problems = Problems {
            file,
            locator,
            found: Vec::new(),
        };
        config.validate(&mut problems);
        match problems.found.len() {
            0 => config.typed(),
            _ => Err(problems_error(file, problems.found)),
        }
    }

    /// Reads and parses a local file.
    pub fn from_file(path: &std::path::Path, env: &Environment) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading config `{}`", path.display()),
            source,
        })?;
        Config::from_yaml(&text, &path.display().to_string(), env)
    }

    /// The pipeline named `name`.
    pub fn pipeline(&self, name: &str) -> Result<&Pipeline> {
        self.pipelines.get(name).ok_or_else(|| {
            Error::config(
                "config",
                format!(
                    "no pipeline `{name}`; pipelines are: {}",
                    self.pipelines
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    /// The `database.table` a command's `-t NAME` means: `NAME` itself when it has a dot; else
    /// the one configured table of that name (in `pipeline`, or in any pipeline) — the old tool's
    /// habit of naming a table without its database. Several or none is an error listing them.
    pub fn qualify_table(&self, pipeline: Option<&str>, name: &str) -> Result<String> {
        if name.contains('.') {
            return Ok(name.to_owned());
        }
        let configured: Vec<&String> = self
            .pipelines
            .iter()
            .filter(|(pipeline_name, _)| pipeline.is_none_or(|wanted| wanted == *pipeline_name))
            .flat_map(|(_, p)| p.tables.keys())
            .collect();
        let same = |exact: bool| {
            let mut found: Vec<&String> = configured
                .iter()
                .copied()
                .filter(|key| {
                    key.split_once('.').is_some_and(|(_, table)| match exact {
                        true => table == name,
                        false => table.eq_ignore_ascii_case(name),
                    })
                })
                .collect();
            found.sort();
            found.dedup();
            found
        };
        let exact = same(true);
        let candidates = if exact.is_empty() { same(false) } else { exact };
        let listed = |tables: &[&String]| {
            tables
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match candidates.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::InvalidRequest(format!(
                "no configured table is named `{name}`{}; name it as `database.table` — the tables are: {}",
                pipeline.map(|p| format!(" in pipeline `{p}`")).unwrap_or_default(),
                listed(&configured)
            ))),
            several => Err(Error::InvalidRequest(format!(
                "`{name}` names several configured tables: {}; name one as `database.table`",
                listed(several)
            ))),
        }
    }

    /// The kind of warehouse the pipeline loads into.
    pub fn target_warehouse(&self, pipeline: &Pipeline) -> Result<Warehouse> {
        match self.connections.get(&pipeline.target) {
            Some(Connection::Redshift(_)) => Ok(Warehouse::Redshift),
            Some(Connection::Postgres(_)) => Ok(Warehouse::Postgres),
            Some(Connection::Mysql(_)) | None => Err(Error::config(
                "config",
                format!(
                    "target `{}` is not a `kind: postgres` or `kind: redshift` connection",
                    pipeline.target
                ),
            )),
        }
    }
}

/// `file:line:column` of the key path `path` in the config text `text` (its deepest key the
/// text has; a list item's first key), for problems found against the source after parsing.
pub fn locate(file: &str, text: &str, path: &[&str]) -> String {
    match KeyLocator::new(text).locate(path) {
        Some((line, column)) => format!("{file}:{line}:{column}"),
        None => file.to_owned(),
    }
}

/// The configuration as YAML, defaults filled in and secrets masked (`config show`).
pub fn to_yaml(config: &Config) -> Result<String> {
    serde_yaml::to_string(config).map_err(|err| Error::config("config", err.to_string()))
}

mod env;
mod locate;
mod redshift;
mod scd;
mod table;
#[cfg(test)]
mod tests;
mod validate;

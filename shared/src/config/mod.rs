//! The configuration file: typed, parsed once, every error located at its file, line and column.
//!
//! The structs below ARE the user documentation of the YAML format (README's reference mirrors
//! them). Unknown keys are rejected. `${VAR}` and `${VAR:-default}` are substituted in string
//! values from an environment the caller passes in, so parsing never reads the process environment
//! by itself. This module never resolves secrets and never prints one.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::naming::{self, TableId};
use crate::schema::{
    DistStyle, JsonTarget, NulPolicy, OversizePolicy, RedshiftTableOptions, SchemaOptions,
    Warehouse,
};
use crate::secret::{SecretString, MASK};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Named sources and targets, referred to by pipelines.
    pub connections: BTreeMap<String, Connection>,
    /// Named pipelines: a source, a target, an S3 location and the tables to sync.
    pub pipelines: BTreeMap<String, Pipeline>,
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

/// A source or target, chosen by `kind`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Connection {
    /// A MySQL or MariaDB source.
    Mysql(MysqlConnection),
    /// A PostgreSQL warehouse.
    Postgres(PostgresConnection),
    /// An Amazon Redshift warehouse (provisioned or serverless).
    Redshift(Box<RedshiftConnection>),
}

impl Connection {
    /// `tls`, `tls_ca_file` and `tls_ca_secret`.
    pub fn tls_settings(&self) -> (TlsMode, Option<&str>, Option<&str>) {
        let (tls, file, secret) = match self {
            Connection::Mysql(c) => (c.tls, &c.tls_ca_file, &c.tls_ca_secret),
            Connection::Postgres(c) => (c.tls, &c.tls_ca_file, &c.tls_ca_secret),
            Connection::Redshift(c) => (c.tls, &c.tls_ca_file, &c.tls_ca_secret),
        };
        (tls, file.as_deref(), secret.as_deref())
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Connection::Mysql(_) => "mysql",
            Connection::Postgres(_) => "postgres",
            Connection::Redshift(_) => "redshift",
        }
    }

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

/// Amazon Redshift.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedshiftConnection {
    /// How statements reach Redshift: `data_api` (default), `direct` (PostgreSQL wire protocol,
    /// e.g. from a Lambda in the VPC) or `tunnel` (wire protocol through `tunnel`'s SSH bastion).
    #[serde(default)]
    pub access: RedshiftAccess,
    /// Serverless workgroup name (Data API). Give this or `cluster_identifier`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub workgroup: Option<String>,
    /// Provisioned cluster identifier (Data API). Give this or `workgroup`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub cluster_identifier: Option<String>,
    /// Database name.
    #[serde(deserialize_with = "interpolated")]
    pub database: String,
    /// Schema that holds the target tables and the load ledger. Default `public`.
    #[serde(default = "default_schema", deserialize_with = "interpolated")]
    pub schema: String,
    /// Database user for temporary credentials (provisioned clusters, Data API).
    #[serde(default, deserialize_with = "interpolated_option")]
    pub db_user: Option<String>,
    /// Secrets Manager ARN with the database credentials (Data API `SecretArn`; also the password
    /// for `direct`/`tunnel` when `password` is not given).
    #[serde(default, deserialize_with = "interpolated_option")]
    pub secret_arn: Option<String>,
    /// IAM role ARN that Redshift assumes to read the Parquet files in COPY. Required.
    #[serde(deserialize_with = "interpolated")]
    pub iam_role: String,
    /// Cluster endpoint host, for `direct` and `tunnel`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub host: Option<String>,
    /// Cluster port, for `direct` and `tunnel`. Default 5439.
    #[serde(default = "default_redshift_port")]
    pub port: u16,
    /// User name, for `direct` and `tunnel`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub user: Option<String>,
    /// Password for `direct` and `tunnel`, usually `${ENV_VAR}`.
    #[serde(
        default,
        deserialize_with = "interpolated_secret",
        serialize_with = "masked"
    )]
    pub password: Option<SecretString>,
    /// SSH bastion: required for `access: tunnel`; with `data_api` and `fallback_to_tunnel`,
    /// the way in when the Data API cannot be reached.
    #[serde(default)]
    pub tunnel: Option<TunnelConfig>,
    /// With `access: data_api`: load through `tunnel` when the Data API cannot be reached (a
    /// network failure; never an authorization error, so that revoking the Data API stops
    /// writes). Logged at WARN and counted as `LoadFallbacks`. Default false.
    #[serde(default)]
    pub fallback_to_tunnel: bool,
    /// Longest any one statement may run. Default `30m`.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: HumanDuration,
    /// TLS of `direct` and `tunnel` (the Data API is always HTTPS): `disabled` (default),
    /// `required` (verify the certificate chain and the host name; Redshift's certificates chain
    /// to Amazon's roots, which Mozilla's include) or `unverified`. Clusters with `require_ssl`
    /// refuse plain connections.
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of CA certificates trusted besides Mozilla's roots, for `tls: required` (the
    /// Amazon RDS bundle, a private CA). Give this or `tls_ca_secret`.
    #[serde(default, deserialize_with = "interpolated_option")]
    pub tls_ca_file: Option<String>,
    /// A Secrets Manager id whose string is that PEM (for Lambda, which has no such file).
    #[serde(default, deserialize_with = "interpolated_option")]
    pub tls_ca_secret: Option<String>,
}

/// An SSH bastion in front of a warehouse (Redshift or PostgreSQL).
#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// How tidemark reaches Redshift.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedshiftAccess {
    /// The Redshift Data API (HTTPS, IAM).
    #[default]
    DataApi,
    /// The PostgreSQL wire protocol to the cluster endpoint.
    Direct,
    /// The wire protocol through an SSH bastion.
    Tunnel,
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
pub struct Pipeline {
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
    /// EventBridge schedule expression for the deployed state machine, e.g. `rate(1 hour)`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The tables, keyed `database.table`.
    pub tables: BTreeMap<String, TableConfig>,
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

/// How one table is synced.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `hybrid` (default: timestamp cursor + key), `timestamp_only`, `id_only` (append-only
    /// tables), `full_sync` (whole table every run) or `custom_sql`.
    #[serde(default)]
    pub cdc_strategy: CdcStrategy,
    /// The cursor column: a DATETIME/TIMESTAMP for `hybrid` and `timestamp_only`; for `id_only`
    /// an integer column (default: the single-column key).
    #[serde(default)]
    pub cursor_column: Option<String>,
    /// Columns that identify a row in the target. Default: the source table's primary key.
    #[serde(default)]
    pub key_columns: Option<Vec<String>>,
    /// Target table name. Default: the source table name (folded to lowercase).
    #[serde(default)]
    pub target_name: Option<String>,
    /// Which columns to sync and how.
    #[serde(default)]
    pub columns: ColumnsConfig,
    /// Rows per extraction chunk before a continuation. Default 500000.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
    /// How far behind the source clock a run's ceiling stays, so that transactions still open
    /// are not skipped. Default `5s`.
    #[serde(default = "default_lag")]
    pub lag: HumanDuration,
    /// How much before the watermark each run starts re-reading, to catch rows whose transaction
    /// committed late: a row stamped T and committed at T + H is loaded only if
    /// H ≤ `lag` + `lookback`. Re-read rows are merged, so this costs reading, not correctness.
    /// Default `5m` for `merge` and `replace`; `append` must keep `0s` (a re-read row would be
    /// appended twice).
    #[serde(default)]
    pub lookback: Option<HumanDuration>,
    /// For `id_only`: how many ids below the watermark each run starts re-reading, so that a
    /// row whose transaction committed after a later id's is not lost (its id was invisible when
    /// an earlier run read past it). A row is loaded when, at the first sync after its commit, its
    /// id is within `id_lookback` of the watermark. Re-read rows are merged (`append` skips a row
    /// already in the target). Default `1000`; `0` turns it off. Only for `id_only`.
    #[serde(default)]
    pub id_lookback: Option<u64>,
    /// `merge` (upsert by key; default), `append`, or `replace` (whole table; default for
    /// `full_sync`).
    #[serde(default)]
    pub load: Option<LoadMode>,
    /// A target column no source column feeds any more (dropped, renamed or excluded in the
    /// source): `keep` (default: it stays, NULL in every row loaded from now on, with a warning
    /// at each sync) or `drop` (`ALTER TABLE … DROP COLUMN` in the schema step, and its data is
    /// gone). A rename is a drop and an add: the new column is backfilled (see README).
    #[serde(default)]
    pub dropped_columns: DroppedColumns,
    /// Redshift table layout.
    #[serde(default)]
    pub redshift: RedshiftTableConfig,
    /// For `cdc_strategy: custom_sql`: one SELECT with `:last_ts`, `:last_id`, `:ceiling`, `:limit`.
    #[serde(default)]
    pub custom_sql: Option<String>,
    /// Load `tinyint(1)` as BOOLEAN (default true) or keep it an integer.
    #[serde(default = "yes")]
    pub tinyint1_as_boolean: bool,
    /// JSON columns in Redshift: `super` (default) or `varchar`.
    #[serde(default)]
    pub json_in_redshift: JsonTarget,
    /// A value longer than its Redshift column holds (VARCHAR and JSON: 65535 bytes; VARBYTE:
    /// 16 MiB): `fail` (default: the run stops before anything is committed, naming the row),
    /// `truncate` (text cut at a character boundary, binary at the byte, JSON becomes NULL) or
    /// `null`. Counted and logged. PostgreSQL targets ignore it: they hold such values whole.
    #[serde(default)]
    pub oversize_in_redshift: OversizePolicy,
    /// A NUL byte (U+0000) in a text or JSON value, which PostgreSQL refuses and Redshift's COPY
    /// treats as a terminator: `fail` (default: the run stops before anything is committed,
    /// naming the column and row), `strip` (the NUL bytes are removed) or `replace` (each becomes
    /// U+FFFD). Counted and logged. Binary columns keep NUL bytes: they are data there.
    #[serde(default)]
    pub nul_in_text: NulPolicy,
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

impl TableConfig {
    /// The lookback, defaulted from the load mode (see the field).
    pub fn lookback(&self) -> HumanDuration {
        self.lookback.unwrap_or(match self.load_mode() {
            LoadMode::Append => HumanDuration::default(),
            LoadMode::Merge | LoadMode::Replace => default_lookback(),
        })
    }

    /// The warehouse name of the table `table` loads into: `target_name`, else the source
    /// table's name, folded.
    pub fn target_table(&self, table: &TableId) -> Result<String> {
        naming::target_identifier(self.target_name.as_deref().unwrap_or(table.table()))
    }

    /// The `id_only` re-read window in ids (see the field); 0 for other strategies.
    pub fn id_lookback(&self) -> u64 {
        match self.cdc_strategy {
            CdcStrategy::IdOnly => self.id_lookback.unwrap_or(DEFAULT_ID_LOOKBACK),
            _ => 0,
        }
    }

    /// The load mode, defaulted from the strategy.
    pub fn load_mode(&self) -> LoadMode {
        self.load.unwrap_or(match self.cdc_strategy {
            CdcStrategy::FullSync => LoadMode::Replace,
            _ => LoadMode::Merge,
        })
    }

    /// How the schema module maps this table's columns.
    pub fn schema_options(&self) -> SchemaOptions {
        SchemaOptions {
            tinyint1_as_boolean: self.tinyint1_as_boolean,
            json_in_redshift: self.json_in_redshift,
            include: self.columns.include.clone(),
            exclude: self.columns.exclude.clone(),
            as_text: self
                .columns
                .overrides
                .iter()
                .filter(|(_, o)| o.as_type == OverrideType::Text)
                .map(|(column, _)| column.clone())
                .collect::<BTreeSet<_>>(),
            oversize_in_redshift: self.oversize_in_redshift,
        }
    }

    /// The Redshift layout options for the schema module.
    pub fn redshift_options(&self) -> RedshiftTableOptions {
        RedshiftTableOptions {
            diststyle: self.redshift.diststyle,
            distkey: self.redshift.distkey.clone(),
            sortkey: self.redshift.sortkey.clone(),
        }
    }
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

/// The variables `${VAR}` can name, for the duration of one parse.
pub type Environment = BTreeMap<String, String>;

/// The variables a config read by a Lambda function may name: `TIDEMARK_*` only. The function's
/// environment also holds its AWS credentials; whoever may write the config object must not be
/// able to read them through it.
pub fn lambda_environment(process: impl IntoIterator<Item = (String, String)>) -> Environment {
    process
        .into_iter()
        .filter(|(name, _)| name.starts_with("TIDEMARK_"))
        .collect()
}

thread_local! {
    static PARSE_ENVIRONMENT: RefCell<Option<Environment>> = const { RefCell::new(None) };
}

/// Substitutes `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
fn substitute(text: &str, env: &Environment) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body
                .find('}')
                // The value is never echoed: it may be a password.
                .ok_or_else(|| {
                    "an unclosed `${` in this value; write `$${` for a literal `${`".to_owned()
                })?;
            let (name, default) = match body[..close].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..close], None),
            };
            let valid_name =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(
                    "a `${…}` in this value is not a variable reference (names are `A-Z a-z 0-9 _`); write `$$` for a literal `$`"
                        .to_owned(),
                );
            }
            if name.starts_with("AWS_") {
                return Err(format!(
                    "`${{{name}}}` is refused: `AWS_*` variables hold the process's own AWS credentials and settings, which a config must never read (in a host name they would leave by DNS); put the value in a `TIDEMARK_*` variable or a secret"
                ));
            }
            match (env.get(name), default) {
                (Some(value), _) => out.push_str(value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set; set it, or write `${{{name}:-default}}`"
                    ))
                }
            }
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute_in_parse(raw: &str) -> std::result::Result<String, String> {
    PARSE_ENVIRONMENT.with(|cell| match cell.borrow().as_ref() {
        Some(env) => substitute(raw, env),
        None => Ok(raw.to_owned()),
    })
}

/// A string value with `${VAR}` substituted while parsing.
struct Interpolated(String);

impl<'de> Deserialize<'de> for Interpolated {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer
            .deserialize_str(CheckedStr {
                expecting: "a string",
                check: substitute_in_parse,
            })
            .map(Interpolated)
    }
}

fn interpolated<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<String, D::Error> {
    Interpolated::deserialize(deserializer).map(|value| value.0)
}

fn interpolated_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<String>, D::Error> {
    Ok(Option::<Interpolated>::deserialize(deserializer)?.map(|value| value.0))
}

fn interpolated_secret<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<SecretString>, D::Error> {
    Ok(interpolated_option(deserializer)?.map(SecretString::from))
}

fn masked<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str(MASK),
        None => serializer.serialize_none(),
    }
}

/// Sets the parse environment for the current thread until dropped.
struct EnvironmentGuard;

impl EnvironmentGuard {
    fn set(env: &Environment) -> Self {
        PARSE_ENVIRONMENT.with(|cell| *cell.borrow_mut() = Some(env.clone()));
        EnvironmentGuard
    }
}

impl Drop for EnvironmentGuard {
    fn drop(&mut self) {
        PARSE_ENVIRONMENT.with(|cell| *cell.borrow_mut() = None);
    }
}

/// A 1-based `(line, column)` in the config text.
type LineColumn = (usize, usize);

/// Finds the line and column of a key path in the YAML text, for errors found after parsing.
struct KeyLocator {
    keys: Vec<(Vec<String>, usize, usize)>,
}

impl KeyLocator {
    fn new(text: &str) -> Self {
        use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
        use yaml_rust2::scanner::Marker;

        enum Frame {
            Map { expecting_key: bool },
            Seq { index: usize },
        }
        struct Collector {
            stack: Vec<Frame>,
            path: Vec<String>,
            keys: Vec<(Vec<String>, usize, usize)>,
        }
        impl Collector {
            /// A value (scalar or collection) begins at the current position.
            fn value_started(&mut self, is_collection: bool) {
                match self.stack.last_mut() {
                    Some(Frame::Map { expecting_key }) => {
                        *expecting_key = true;
                        if !is_collection {
                            self.path.pop();
                        }
                    }
                    Some(Frame::Seq { index }) => {
                        self.path.push(index.to_string());
                        *index += 1;
                        if !is_collection {
                            self.path.pop();
                        }
                    }
                    None => {}
                }
            }
        }
        impl MarkedEventReceiver for Collector {
            fn on_event(&mut self, event: Event, mark: Marker) {
                match event {
                    Event::Scalar(value, ..) => {
                        if let Some(Frame::Map { expecting_key }) = self.stack.last_mut() {
                            if *expecting_key {
                                *expecting_key = false;
                                self.path.push(value);
                                self.keys
                                    .push((self.path.clone(), mark.line(), mark.col() + 1));
                                return;
                            }
                        }
                        self.value_started(false);
                    }
                    Event::Alias(_) => self.value_started(false),
                    Event::MappingStart(..) => {
                        self.value_started(true);
                        self.stack.push(Frame::Map {
                            expecting_key: true,
                        });
                    }
                    Event::SequenceStart(..) => {
                        self.value_started(true);
                        self.stack.push(Frame::Seq { index: 0 });
                    }
                    Event::MappingEnd | Event::SequenceEnd => {
                        self.stack.pop();
                        if !self.stack.is_empty() {
                            self.path.pop();
                        }
                    }
                    _ => {}
                }
            }
        }

        let mut collector = Collector {
            stack: Vec::new(),
            path: Vec::new(),
            keys: Vec::new(),
        };
        // A text that does not parse never gets here: serde_yaml rejected it first.
        let _ = Parser::new_from_str(text).load(&mut collector, false);
        KeyLocator {
            keys: collector.keys,
        }
    }

    /// Every key written twice in one mapping, with the `line:column` of both: YAML forbids them,
    /// and serde_yaml would silently keep the last (a second `tables:` block replaced the first).
    fn duplicates(&self) -> Vec<(String, LineColumn, LineColumn)> {
        let mut first_seen: HashMap<&[String], LineColumn> = HashMap::new();
        let mut duplicates = Vec::new();
        for (path, line, col) in &self.keys {
            match first_seen.get(path.as_slice()) {
                Some(first) => duplicates.push((path.join("."), *first, (*line, *col))),
                None => {
                    first_seen.insert(path, (*line, *col));
                }
            }
        }
        duplicates
    }

    /// `line:column` of the first key called `name` on or after `from_line`.
    fn first_key_named_from(&self, name: &str, from_line: usize) -> Option<(usize, usize)> {
        self.keys
            .iter()
            .filter(|(path, line, _)| *line >= from_line && path.last().is_some_and(|k| k == name))
            .map(|(_, line, col)| (*line, *col))
            .min()
    }

    /// `line:column` of the deepest key of `path` that exists in the text.
    fn locate(&self, path: &[&str]) -> Option<(usize, usize)> {
        (1..=path.len()).rev().find_map(|depth| {
            self.keys
                .iter()
                .find(|(key_path, ..)| {
                    key_path.len() == depth && key_path.iter().zip(path).all(|(a, b)| a == b)
                })
                .map(|(_, line, col)| (*line, *col))
        })
    }
}

/// One error for `found` (each `location: message`, at least one): the first, then the others.
fn problems_error(file: &str, mut found: Vec<String>) -> Error {
    let first = found.remove(0);
    let (location, message) = first.split_once(": ").unwrap_or((file, &first));
    let mut message = message.to_owned();
    for more in found {
        message.push_str("\n  also: ");
        message.push_str(&more);
    }
    Error::config(location, message)
}

/// Collects semantic errors with their locations.
struct Problems<'a> {
    file: &'a str,
    locator: KeyLocator,
    found: Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, path: &[&str], message: impl Into<String>) {
        let location = match self.locator.locate(path) {
            Some((line, col)) => format!("{}:{line}:{col}", self.file),
            None => self.file.to_owned(),
        };
        self.found.push(format!("{location}: {}", message.into()));
    }
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
        let config: Config = {
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
            0 => Ok(config),
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

    fn validate(&self, problems: &mut Problems<'_>) {
        if self.aws.max_attempts == 0 {
            problems.add(
                &["aws", "max_attempts"],
                "must be at least 1 (the first attempt)",
            );
        }
        for (key, timeout) in [
            ("connect_timeout", self.aws.connect_timeout),
            ("read_timeout", self.aws.read_timeout),
        ] {
            if timeout.0.is_zero() {
                problems.add(&["aws", key], "must be longer than `0s`");
            }
        }
        for (name, connection) in &self.connections {
            validate_connection(name, connection, problems);
        }
        if self.pipelines.is_empty() {
            problems.add(
                &["pipelines"],
                "no pipelines: add at least one under `pipelines`",
            );
        }
        for (name, pipeline) in &self.pipelines {
            if let Err(err) = naming::validate_pipeline_name(name) {
                problems.add(&["pipelines", name], err.to_string());
            }
            self.validate_pipeline(name, pipeline, problems);
        }
        self.validate_shared_targets(problems);
    }

    /// Two pipelines must not load into one table: the same schema of the same warehouse, reached
    /// through one connection or through two that name the same place (inside one pipeline,
    /// `validate_pipeline` reports it).
    fn validate_shared_targets(&self, problems: &mut Problems<'_>) {
        let mut owners: BTreeMap<(String, String), (&str, &str)> = BTreeMap::new();
        for (name, pipeline) in &self.pipelines {
            let Some(place) = self
                .connections
                .get(&pipeline.target)
                .and_then(Connection::warehouse_place)
            else {
                continue;
            };
            for (table_key, table) in &pipeline.tables {
                let Ok(table_id) = TableId::parse(table_key) else {
                    continue;
                };
                let Ok(folded) = table.target_table(&table_id) else {
                    continue;
                };
                match owners.get(&(place.clone(), folded.clone())) {
                    Some((other_pipeline, other_table)) if *other_pipeline != name => problems.add(
                        &["pipelines", name, "tables", table_key],
                        format!(
                            "`{table_key}` of pipeline `{name}` and `{other_table}` of pipeline `{other_pipeline}` both load into `{folded}` in {place}; each would overwrite the other's rows: set a distinct `target_name`, or another target schema"
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        owners.insert((place.clone(), folded), (name, table_key));
                    }
                }
            }
        }
    }

    fn validate_pipeline(&self, name: &str, pipeline: &Pipeline, problems: &mut Problems<'_>) {
        let at = |key: &'static str| ["pipelines", name, key];
        match self.connections.get(&pipeline.source) {
            Some(Connection::Mysql(_)) => {}
            Some(other) => problems.add(
                &at("source"),
                format!(
                    "source `{}` is a `{}` connection; a source must be `kind: mysql`",
                    pipeline.source,
                    other.kind_name()
                ),
            ),
            None => problems.add(&at("source"), self.unknown_connection(&pipeline.source)),
        }
        match self.connections.get(&pipeline.target) {
            Some(Connection::Postgres(_) | Connection::Redshift(_)) => {}
            Some(Connection::Mysql(_)) => problems.add(
                &at("target"),
                format!(
                    "target `{}` is a mysql connection; a target must be `kind: postgres` or `kind: redshift`",
                    pipeline.target
                ),
            ),
            None => problems.add(&at("target"), self.unknown_connection(&pipeline.target)),
        }
        if pipeline.s3.bucket.is_empty() {
            problems.add(
                &["pipelines", name, "s3", "bucket"],
                "the bucket name is empty",
            );
        }
        if let Some(owner) = &pipeline.s3.expected_bucket_owner {
            if owner.len() != 12 || !owner.chars().all(|c| c.is_ascii_digit()) {
                problems.add(
                    &["pipelines", name, "s3", "expected_bucket_owner"],
                    "an AWS account id: 12 digits",
                );
            }
        }
        if pipeline.table_concurrency == 0 {
            problems.add(&at("table_concurrency"), "must be at least 1");
        }
        if pipeline.watermark_history == 0 {
            problems.add(
                &at("watermark_history"),
                "keep at least 1 version, so that a mistake can be undone",
            );
        }
        if pipeline.lease_ttl.0 <= EXECUTION_TIMEOUT {
            problems.add(
                &at("lease_ttl"),
                format!(
                    "must be longer than the sync state machine's timeout ({}): an execution that times out runs no `fail`, and its lease must lapse on its own; the default is `6h`",
                    HumanDuration(EXECUTION_TIMEOUT)
                ),
            );
        }
        if pipeline.chunk_concurrency == 0 {
            problems.add(&at("chunk_concurrency"), "must be at least 1");
        }
        let sessions =
            u64::from(pipeline.table_concurrency) * u64::from(pipeline.chunk_concurrency);
        if sessions > MAX_SOURCE_SESSIONS {
            problems.add(
                &at("table_concurrency"),
                format!(
                    "table_concurrency {} x chunk_concurrency {} = {sessions} extractions at once, each a session on the source; at most {MAX_SOURCE_SESSIONS}: lower one of them (README: Concurrency)",
                    pipeline.table_concurrency, pipeline.chunk_concurrency
                ),
            );
        }
        if pipeline.tables.is_empty() {
            problems.add(
                &at("tables"),
                "no tables: add at least one `database.table`",
            );
        }
        let mut target_names = BTreeMap::new();
        for (table_key, table) in &pipeline.tables {
            let path = ["pipelines", name, "tables", table_key.as_str()];
            let table_id = match TableId::parse(table_key) {
                Ok(id) => id,
                Err(err) => {
                    problems.add(&path, err.to_string());
                    continue;
                }
            };
            validate_table(&path, table, problems);
            match table.target_table(&table_id) {
                Ok(folded) if folded.starts_with(naming::RESERVED_TARGET_PREFIX) => problems.add(
                    &path,
                    format!(
                        "target table `{folded}` starts with `{}`, which tidemark reserves for its own tables (the load ledger, staging): set `target_name`",
                        naming::RESERVED_TARGET_PREFIX
                    ),
                ),
                Ok(folded) => {
                    if let Some(other) = target_names.insert(folded.clone(), table_key) {
                        problems.add(
                            &path,
                            format!(
                                "`{table_key}` and `{other}` both load into target table `{folded}`; set a distinct `target_name`"
                            ),
                        );
                    }
                }
                Err(err) => problems.add(&path, err.to_string()),
            }
        }
    }

    fn unknown_connection(&self, name: &str) -> String {
        format!(
            "no connection named `{name}`; connections are: {}",
            self.connections
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn validate_connection(name: &str, connection: &Connection, problems: &mut Problems<'_>) {
    let at = |key: &'static str| ["connections", name, key];
    let (tls, ca_file, ca_secret) = connection.tls_settings();
    if ca_file.is_some() && ca_secret.is_some() {
        problems.add(
            &at("tls_ca_secret"),
            "give `tls_ca_file` or `tls_ca_secret`, not both",
        );
    }
    if (ca_file.is_some() || ca_secret.is_some()) && tls != TlsMode::Required {
        problems.add(
            &at("tls"),
            "`tls_ca_file` and `tls_ca_secret` verify the server's certificate: set `tls: required`",
        );
    }
    match connection {
        Connection::Mysql(mysql) => {
            if mysql.password.is_some() && mysql.password_secret.is_some() {
                problems.add(
                    &at("password_secret"),
                    "give `password` or `password_secret`, not both",
                );
            }
            if mysql.read_timeout.0.is_zero() {
                problems.add(&at("read_timeout"), "must be longer than `0s`");
            }
        }
        Connection::Postgres(postgres) => {
            if postgres.password.is_some() && postgres.password_secret.is_some() {
                problems.add(
                    &at("password_secret"),
                    "give `password` or `password_secret`, not both",
                );
            }
            if let Some(tunnel) = &postgres.tunnel {
                validate_tunnel(name, tunnel, problems);
            }
        }
        Connection::Redshift(redshift) => {
            let data_api_target =
                redshift.workgroup.is_some() as u8 + redshift.cluster_identifier.is_some() as u8;
            match redshift.access {
                RedshiftAccess::DataApi if data_api_target != 1 => problems.add(
                    &at("access"),
                    "`access: data_api` needs exactly one of `workgroup` (serverless) or `cluster_identifier` (provisioned)",
                ),
                RedshiftAccess::DataApi
                    if redshift.cluster_identifier.is_some()
                        && redshift.db_user.is_none()
                        && redshift.secret_arn.is_none() =>
                {
                    problems.add(
                        &at("cluster_identifier"),
                        "a provisioned cluster through the Data API needs `db_user` (temporary credentials) or `secret_arn`",
                    )
                }
                RedshiftAccess::Direct | RedshiftAccess::Tunnel => {
                    if redshift.host.is_none() || redshift.user.is_none() {
                        problems.add(
                            &at("access"),
                            "`access: direct` and `access: tunnel` need `host` and `user` (the cluster endpoint)",
                        );
                    }
                    if redshift.password.is_none() && redshift.secret_arn.is_none() {
                        problems.add(
                            &at("access"),
                            "`access: direct` and `access: tunnel` need `password` or `secret_arn`",
                        );
                    }
                    if redshift.access == RedshiftAccess::Tunnel && redshift.tunnel.is_none() {
                        problems.add(&at("access"), "`access: tunnel` needs a `tunnel` block");
                    }
                }
                RedshiftAccess::DataApi => {}
            }
            if redshift.fallback_to_tunnel
                && (redshift.access != RedshiftAccess::DataApi || redshift.tunnel.is_none())
            {
                problems.add(
                    &at("fallback_to_tunnel"),
                    "`fallback_to_tunnel` needs `access: data_api` and a `tunnel` block",
                );
            }
            if !redshift.iam_role.starts_with("arn:") {
                problems.add(
                    &at("iam_role"),
                    "`iam_role` must be the ARN of the role Redshift assumes for COPY (`arn:aws:iam::…:role/…`)",
                );
            }
            if let Some(tunnel) = &redshift.tunnel {
                validate_tunnel(name, tunnel, problems);
            }
        }
    }
}

fn validate_tunnel(name: &str, tunnel: &TunnelConfig, problems: &mut Problems<'_>) {
    let keys = tunnel.private_key_secret.is_some() as u8 + tunnel.private_key_file.is_some() as u8;
    if keys != 1 {
        problems.add(
            &["connections", name, "tunnel"],
            "a tunnel needs exactly one of `private_key_secret` or `private_key_file`",
        );
    }
    if tunnel.verify_host_key && tunnel.host_key.is_none() {
        problems.add(
            &["connections", name, "tunnel"],
            "give the bastion's `host_key` (`ssh-keyscan HOST` prints it), or set `verify_host_key: false`",
        );
    }
}

fn validate_table(path: &[&str; 4], table: &TableConfig, problems: &mut Problems<'_>) {
    let at = |key: &'static str| [path[0], path[1], path[2], path[3], key];
    let strategy = table.cdc_strategy;
    match strategy {
        CdcStrategy::Hybrid | CdcStrategy::TimestampOnly if table.cursor_column.is_none() => {
            problems.add(
                &at("cdc_strategy"),
                format!(
                    "`{}` needs `cursor_column`: the DATETIME/TIMESTAMP column that changes on every insert and update",
                    strategy_name(strategy)
                ),
            )
        }
        CdcStrategy::CustomSql if table.custom_sql.is_none() => problems.add(
            &at("cdc_strategy"),
            "`custom_sql` needs `custom_sql`: one SELECT using `:last_ts`, `:last_id`, `:ceiling` and `:limit`",
        ),
        CdcStrategy::CustomSql if table.cursor_column.is_none() => problems.add(
            &at("cdc_strategy"),
            "`custom_sql` needs `cursor_column`: the column of its result that the watermark follows",
        ),
        _ => {}
    }
    if let Some(sql) = &table.custom_sql {
        if let Err(err) = crate::extract::validate_custom_sql(sql) {
            problems.add(&at("custom_sql"), err.to_string());
        }
    }
    if table.custom_sql.is_some() && strategy != CdcStrategy::CustomSql {
        problems.add(
            &at("custom_sql"),
            "`custom_sql` is only used with `cdc_strategy: custom_sql`",
        );
    }
    if let Some(keys) = &table.key_columns {
        if keys.is_empty() && table.load_mode() == LoadMode::Merge {
            problems.add(
                &at("key_columns"),
                "`load: merge` needs key columns to match rows; list them, or use `load: append`",
            );
        }
    }
    if table.load_mode() == LoadMode::Append && table.lookback().0 > Duration::ZERO {
        problems.add(
            &at("lookback"),
            "`load: append` cannot re-read rows: every re-read row would be appended again; use `lookback: 0s`, or `load: merge`",
        );
    }
    if table.load_mode() == LoadMode::Replace && strategy != CdcStrategy::FullSync {
        problems.add(
            &at("load"),
            "`load: replace` makes the target equal to one run's rows, so it needs `cdc_strategy: full_sync`",
        );
    }
    if table.id_lookback.is_some() && strategy != CdcStrategy::IdOnly {
        problems.add(
            &at("id_lookback"),
            format!(
                "`id_lookback` re-reads ids and only applies to `cdc_strategy: id_only`; `{}` re-reads by time with `lookback`",
                strategy_name(strategy)
            ),
        );
    }
    if table.chunk_rows == 0 {
        problems.add(&at("chunk_rows"), "must be at least 1");
    }
    if table.redshift.diststyle == Some(DistStyle::Key) && table.redshift.distkey.is_none() {
        problems.add(&at("redshift"), "`diststyle: key` needs `distkey`");
    }
    if let Some(include) = &table.columns.include {
        for excluded in &table.columns.exclude {
            if include.contains(excluded) {
                problems.add(
                    &at("columns"),
                    format!("`{excluded}` is both included and excluded"),
                );
            }
        }
    }
}

/// The `id_only` re-read window when the table does not set `id_lookback`.
pub const DEFAULT_ID_LOOKBACK: u64 = 1000;

fn strategy_name(strategy: CdcStrategy) -> &'static str {
    match strategy {
        CdcStrategy::Hybrid => "hybrid",
        CdcStrategy::TimestampOnly => "timestamp_only",
        CdcStrategy::IdOnly => "id_only",
        CdcStrategy::FullSync => "full_sync",
        CdcStrategy::CustomSql => "custom_sql",
    }
}

impl fmt::Display for CdcStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(strategy_name(*self))
    }
}

impl fmt::Display for LoadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadMode::Merge => "merge",
            LoadMode::Append => "append",
            LoadMode::Replace => "replace",
        })
    }
}

/// The configuration as YAML, defaults filled in and secrets masked (`config show`).
pub fn to_yaml(config: &Config) -> Result<String> {
    serde_yaml::to_string(config).map_err(|err| Error::config("config", err.to_string()))
}

fn yaml_error(file: &str, text: &str, err: &serde_yaml::Error) -> Error {
    let message = err.to_string();
    // serde_yaml appends " at line L column C" to its message; the location goes in front instead.
    let message = match message.rfind(" at line ") {
        Some(cut) if err.location().is_some() => message[..cut].to_owned(),
        _ => message,
    };
    let reported = err.location().map(|at| (at.line(), at.column()));
    // Values inside a `kind`-tagged connection are buffered by serde, which then reports the
    // enclosing mapping; find the offending key or reference itself, at or after that place.
    let refined = reported.and_then(|(line, _)| {
        if let Some(field) = backticked_after(&message, "unknown field `") {
            KeyLocator::new(text).first_key_named_from(field, line)
        } else if let Some(variable) = backticked_after(&message, "environment variable `") {
            first_text_from(text, &format!("${{{variable}"), line)
        } else {
            None
        }
    });
    let location = match refined.or(reported) {
        Some((line, column)) => format!("{file}:{line}:{column}"),
        None => file.to_owned(),
    };
    let hint = if message.contains("unknown field") || message.contains("unknown variant") {
        " (see the configuration reference in README.md)"
    } else {
        ""
    };
    Error::config(location, format!("{message}{hint}"))
}

/// The text between `marker` and the next backtick.
fn backticked_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let start = message.find(marker)? + marker.len();
    let length = message[start..].find('`')?;
    Some(&message[start..start + length])
}

/// `line:column` of the first occurrence of `needle` on or after `from_line` (1-based).
fn first_text_from(text: &str, needle: &str, from_line: usize) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find_map(|(index, line)| {
            line.find(needle)
                .map(|byte| (index + 1, line[..byte].chars().count() + 1))
        })
}

#[cfg(test)]
mod tests;

//! Test harness for tidemark's integration tests against the local stack (DESIGN.md §8): a fresh,
//! uniquely named database / schema / bucket per test, shared fixtures, and golden files.
//!
//! Addresses come from the environment that `eval "$(scripts/stack env)"` exports
//! (`TIDEMARK_MYSQL_URL`, `TIDEMARK_PG_URL`, `AWS_ENDPOINT_URL`), with this machine's defaults
//! when unset. Every database and schema the harness creates is named `tidemark_test_<unix
//! seconds>_<random>`. `TestMysql::run` / `TestPostgres::run` drop theirs after the test, also
//! when it fails or panics; any such name older than an hour (left by a killed test run) is
//! dropped the next time the harness starts.

// Test harness: a broken setup stops the test with its message (the workspace lints deny these
// outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bastion;
pub mod compare;
pub mod local_aws;
pub mod net_proxy;
pub mod redshift_standin;
pub mod runs;
pub mod s3;
pub mod scenario;
pub mod stack;
pub mod stored_runs;
pub mod tables;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::FutureExt;
use mysql_async::prelude::Queryable;
use tidemark::naming::{self, TableId};

/// Prefix of every database and schema the harness creates.
const TEST_PREFIX: &str = "tidemark_test_";
/// A test database older than this is a leftover and is dropped.
const STALE_AFTER_SECS: u64 = 3600;

/// `TIDEMARK_MYSQL_URL`, or root without a password on 127.0.0.1:3306.
pub fn mysql_url() -> String {
    std::env::var("TIDEMARK_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// The source servers the harness can create a database on: the shared one, and the two private
/// servers in local time that `scripts/stack up` starts (its header says how they are set up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlServer {
    /// `TIDEMARK_MYSQL_URL`: the shared server, in UTC.
    Shared,
    /// `TIDEMARK_MYSQL_OFFSET_URL`: `default_time_zone = '+05:30'`, a half-hour offset.
    HalfHourOffset,
    /// `TIDEMARK_MYSQL_DST_URL`: time zone `SYSTEM` on a process whose TZ is America/New_York.
    SystemZoneWithDst,
    /// 127.0.0.1:`TIDEMARK_MYSQL_TLS_PORT`: TLS with a certificate for `localhost` signed by
    /// [`test_ca`]; plain connections are taken too.
    Tls,
}

impl MysqlServer {
    /// The server's `mysql://` URL.
    pub fn url(self) -> String {
        let (variable, default) = match self {
            MysqlServer::Shared => return mysql_url(),
            MysqlServer::HalfHourOffset => {
                ("TIDEMARK_MYSQL_OFFSET_URL", "mysql://root@127.0.0.1:3307")
            }
            MysqlServer::SystemZoneWithDst => {
                ("TIDEMARK_MYSQL_DST_URL", "mysql://root@127.0.0.1:3308")
            }
            MysqlServer::Tls => {
                return format!(
                    "mysql://root@127.0.0.1:{}",
                    tls_port("TIDEMARK_MYSQL_TLS_PORT", 3309)
                )
            }
        };
        std::env::var(variable).unwrap_or_else(|_| default.into())
    }
}

fn tls_port(variable: &str, default: u16) -> u16 {
    std::env::var(variable)
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(default)
}

/// The port of `scripts/stack`'s PostgreSQL with TLS (a certificate for `localhost` signed by
/// [`test_ca`]; plain connections are taken too).
pub fn tls_postgres_port() -> u16 {
    tls_port("TIDEMARK_PG_TLS_PORT", 5433)
}

/// The PEM file of the CA that signed the TLS servers' certificates.
pub fn test_ca() -> String {
    std::env::var("TIDEMARK_TLS_CA").unwrap_or_else(|_| "/var/tmp/tidemark-stack/ca/ca.pem".into())
}

/// The PEM file of a CA that signed nothing: the wrong CA.
pub fn other_ca() -> String {
    std::env::var("TIDEMARK_TLS_OTHER_CA")
        .unwrap_or_else(|_| "/var/tmp/tidemark-stack/ca/other-ca.pem".into())
}

/// `TIDEMARK_PG_URL`, or `postgres` with trust auth on 127.0.0.1:5432.
pub fn postgres_url() -> String {
    std::env::var("TIDEMARK_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `tidemark_test_<unix seconds>_<12 hex>`: unique, and its age is readable from the name.
fn fresh_name() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{TEST_PREFIX}{}_{}", unix_now(), &random[..12])
}

/// Whether `name` is a harness name created more than an hour before `now`.
fn is_stale(name: &str, now: u64) -> bool {
    name.strip_prefix(TEST_PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|secs| secs.parse::<u64>().ok())
        .is_some_and(|created| now.saturating_sub(created) > STALE_AFTER_SECS)
}

/// A fresh MySQL/MariaDB database, dropped by [`TestMysql::cleanup`].
pub struct TestMysql {
    opts: mysql_async::Opts,
    database: String,
}

impl TestMysql {
    /// Creates `tidemark_test_…` (utf8mb4) on `TIDEMARK_MYSQL_URL`, after dropping stale ones.
    pub async fn fresh() -> anyhow::Result<Self> {
        Self::fresh_on(MysqlServer::Shared).await
    }

    /// Creates `tidemark_test_…` (utf8mb4) on `server`, after dropping stale ones.
    pub async fn fresh_on(server: MysqlServer) -> anyhow::Result<Self> {
        let url = server.url();
        let opts = mysql_async::Opts::from_url(&url)
            .with_context(|| format!("{server:?}: `{url}` is not a mysql:// URL"))?;
        let mut conn = mysql_async::Conn::new(opts.clone())
            .await
            .with_context(|| {
                "cannot connect to MySQL; is the local stack up? run `scripts/stack up` and \
             `eval \"$(scripts/stack env)\"`"
            })?;
        let existing: Vec<String> = conn
            .exec(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?",
                (format!("{}%", TEST_PREFIX.replace('_', "\\_")),),
            )
            .await?;
        let now = unix_now();
        for stale in existing.iter().filter(|name| is_stale(name, now)) {
            conn.query_drop(format!(
                "DROP DATABASE IF EXISTS {}",
                naming::quote_mysql(stale)
            ))
            .await?;
        }
        let database = fresh_name();
        conn.query_drop(format!(
            "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            naming::quote_mysql(&database)
        ))
        .await?;
        conn.disconnect().await?;
        Ok(TestMysql { opts, database })
    }

    /// Runs `test` against a fresh database and drops the database afterwards, also when the
    /// test fails or panics.
    pub async fn run<F>(test: F) -> anyhow::Result<()>
    where
        F: AsyncFnOnce(&TestMysql) -> anyhow::Result<()>,
    {
        Self::run_on(MysqlServer::Shared, test).await
    }

    /// [`TestMysql::run`] on `server`.
    pub async fn run_on<F>(server: MysqlServer, test: F) -> anyhow::Result<()>
    where
        F: AsyncFnOnce(&TestMysql) -> anyhow::Result<()>,
    {
        let mysql = TestMysql::fresh_on(server).await?;
        let outcome = AssertUnwindSafe(test(&mysql)).catch_unwind().await;
        let cleaned = mysql.cleanup().await;
        finish(outcome, cleaned)
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// `database.table` in this database.
    pub fn table(&self, table: &str) -> TableId {
        TableId::parse(&format!("{}.{table}", self.database))
            .unwrap_or_else(|err| panic!("test table name `{table}`: {err}"))
    }

    /// A connection with this database selected and the session in UTC, as tidemark runs it.
    pub async fn conn(&self) -> anyhow::Result<mysql_async::Conn> {
        let opts = mysql_async::OptsBuilder::from_opts(self.opts.clone())
            .db_name(Some(self.database.clone()))
            .init(vec!["SET time_zone = '+00:00'"]);
        Ok(mysql_async::Conn::new(opts).await?)
    }

    /// Drops the database.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        let mut conn = mysql_async::Conn::new(self.opts.clone()).await?;
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS {}",
            naming::quote_mysql(&self.database)
        ))
        .await?;
        conn.disconnect().await?;
        Ok(())
    }
}

/// A fresh PostgreSQL schema, dropped (with everything in it) by [`TestPostgres::cleanup`].
pub struct TestPostgres {
    client: tokio_postgres::Client,
    schema: String,
}

impl TestPostgres {
    /// Creates schema `tidemark_test_…` on `TIDEMARK_PG_URL`, after dropping stale ones.
    pub async fn fresh() -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
            .await
            .with_context(|| {
                "cannot connect to PostgreSQL; is the local stack up? run `scripts/stack up` \
                 and `eval \"$(scripts/stack env)\"`"
            })?;
        tokio::spawn(async move {
            // The connection ends when the client is dropped; its error has no one to go to.
            let _ = connection.await;
        });
        let existing = client
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1)",
                &[&TEST_PREFIX],
            )
            .await?;
        let now = unix_now();
        for row in existing {
            let name: String = row.get(0);
            if is_stale(&name, now) {
                client
                    .batch_execute(&format!(
                        "DROP SCHEMA IF EXISTS {} CASCADE",
                        naming::quote_warehouse(&name)
                    ))
                    .await?;
            }
        }
        let schema = fresh_name();
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {}",
                naming::quote_warehouse(&schema)
            ))
            .await?;
        Ok(TestPostgres { client, schema })
    }

    /// Runs `test` against a fresh schema and drops the schema afterwards, also when the test
    /// fails or panics.
    pub async fn run<F>(test: F) -> anyhow::Result<()>
    where
        F: AsyncFnOnce(&TestPostgres) -> anyhow::Result<()>,
    {
        let pg = TestPostgres::fresh().await?;
        let outcome = AssertUnwindSafe(test(&pg)).catch_unwind().await;
        let cleaned = pg.cleanup().await;
        finish(outcome, cleaned)
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connected client.
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Drops the schema and everything in it.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                naming::quote_warehouse(&self.schema)
            ))
            .await?;
        Ok(())
    }
}

/// A test's outcome after its cleanup: the test's panic or error wins over a cleanup error.
fn finish(
    outcome: std::thread::Result<anyhow::Result<()>>,
    cleaned: anyhow::Result<()>,
) -> anyhow::Result<()> {
    match outcome {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(Err(error)) => Err(error),
        Ok(Ok(())) => cleaned.context("cleaning up after the test"),
    }
}

/// Compares `actual` with the golden file `tests/golden/<relative>`; with
/// `TIDEMARK_UPDATE_GOLDEN=1` in the environment, rewrites the file instead.
pub fn assert_golden(relative: &str, actual: &str) -> anyhow::Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(relative);
    if std::env::var("TIDEMARK_UPDATE_GOLDEN").as_deref() == Ok("1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, actual)
            .with_context(|| format!("writing golden file {}", path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading golden file {} (create it with TIDEMARK_UPDATE_GOLDEN=1)",
            path.display()
        )
    })?;
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        bail!(
            "{} differs from the output at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             If the change is intended, rerun with TIDEMARK_UPDATE_GOLDEN=1 and review the diff.\n\
             --- actual ---\n{actual}",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end of file>"),
            actual.lines().nth(line).unwrap_or("<end of output>"),
        );
    }
    Ok(())
}

/// The type zoo: one table with every MySQL type tidemark maps, and rows with each type's edge
/// values (signed/unsigned minimum and maximum, widest decimals, zero dates, 4-byte UTF-8,
/// negative TIME, all-NULL). Shared by the schema, extraction and load tests.
pub mod type_zoo {
    use mysql_async::prelude::Queryable;

    /// The table's name.
    pub const TABLE: &str = "type_zoo";

    /// Strict (out-of-range values are errors, not clipped) but zero dates allowed, as in
    /// legacy MySQL schemas.
    pub const SQL_MODE: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'";

    /// `CREATE TABLE type_zoo`.
    pub const CREATE: &str = "CREATE TABLE type_zoo (
        id INT NOT NULL,
        flag TINYINT(1),
        ti TINYINT, ti_u TINYINT UNSIGNED,
        si SMALLINT, si_u SMALLINT UNSIGNED,
        mi MEDIUMINT, mi_u MEDIUMINT UNSIGNED,
        i INT, i_u INT UNSIGNED,
        bi BIGINT, bi_u BIGINT UNSIGNED,
        dec_wide DECIMAL(38,10), dec_money DECIMAL(12,2) NOT NULL DEFAULT 0,
        f FLOAT, d DOUBLE,
        bit1 BIT(1), bit10 BIT(10), bit64 BIT(64),
        yr YEAR,
        dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts6 TIMESTAMP(6) NULL DEFAULT NULL,
        tm TIME, tm6 TIME(6),
        latin VARCHAR(10) CHARACTER SET latin1,
        ch CHAR(10), vc VARCHAR(255), tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT,
        en ENUM('small','medium','large'), st SET('red','green','blue'),
        js JSON,
        bn BINARY(16), vb VARBINARY(255), tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB,
        `Mixed Case` VARCHAR(20),
        created_at DATETIME(6) NOT NULL,
        PRIMARY KEY (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

    /// The rows: 1 minimums, 2 maximums, 3 zero dates, 4 NULL in every nullable column,
    /// 5 dates with a zero month or day.
    pub const INSERT: &str = "INSERT INTO type_zoo VALUES
        (1, 0, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
         -9999999999999999999999999999.9999999999, -9999999999.99, -3.40282e38,
         -1.7976931348623157e308, b'0', b'0', b'0', 1901,
         '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000000',
         '1970-01-01 00:00:01.000000', '-838:59:59', '-838:59:59.000000',
         '', '', '', '', '', '', '', 'small', '', '[]',
         x'00000000000000000000000000000000', '', '', '', '', '', 'lower',
         '1000-01-01 00:00:00.000000'),
        (2, 1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
         9223372036854775807, 18446744073709551615,
         9999999999999999999999999999.9999999999, 9999999999.99, 3.40282e38,
         1.7976931348623157e308, b'1', b'1111111111',
         b'1111111111111111111111111111111111111111111111111111111111111111', 2155,
         '9999-12-31', '9999-12-31 23:59:59', '9999-12-31 23:59:59.999999',
         '2038-01-19 03:14:07.999999', '838:59:59', '838:59:59.999999',
         'àéîõüÿçñøß', REPEAT('😀', 10), REPEAT('😀', 255), REPEAT('😀', 63),
         REPEAT('é😀', 10000), REPEAT('x', 70000),
         CONCAT('line 1\nline 2\ttab \\\\ \"quoted\" ', REPEAT('😀', 1000)),
         'large', 'red,green,blue', '{\"k\": [1, 2.5, \"é😀\", null], \"nested\": {\"a\": true}}',
         x'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF', x'00FF7F80', x'DEADBEEF', x'00', x'0102', x'FF',
         'UPPER 😀', '9999-12-31 23:59:59.999999'),
        (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL,
         NULL, NULL, NULL, 0, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000',
         '0000-00-00 00:00:00.000000', '00:00:00', '00:00:00.000000',
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, '0000-00-00 00:00:00.000000'),
        (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2024-01-01 00:00:00.000000'),
        (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL,
         NULL, NULL, NULL, NULL, '2024-02-00', '2024-00-15 12:00:00', NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2024-01-01 00:00:00.000000')";

    /// Creates the table in the connection's database and inserts the rows.
    pub async fn create(conn: &mut mysql_async::Conn) -> anyhow::Result<()> {
        conn.query_drop(SQL_MODE).await?;
        conn.query_drop(CREATE).await?;
        conn.query_drop(INSERT).await?;
        Ok(())
    }
}

impl TestMysql {
    /// A tidemark configuration whose pipeline `p` reads this database into the local
    /// PostgreSQL, through `bucket`. `tables` is the YAML of the pipeline's `tables:` block,
    /// indented by eight spaces, with `{db}` standing for this database's name.
    pub fn config(&self, bucket: &str, tables: &str) -> anyhow::Result<tidemark::config::Config> {
        Ok(tidemark::config::Config::from_yaml(
            &self.config_yaml(bucket, tables)?,
            "test.yaml",
            &tidemark::config::Environment::new(),
        )?)
    }

    /// The text of [`TestMysql::config`], for tests that hand a file to the CLI.
    pub fn config_yaml(&self, bucket: &str, tables: &str) -> anyhow::Result<String> {
        let pg = postgres_address()?;
        Ok(format!(
            "connections:\n  src:\n    kind: mysql\n    host: \"{host}\"\n    port: {port}\n    user: \"{user}\"\n    password: \"{password}\"\n  wh:\n    kind: postgres\n    host: \"{pg_host}\"\n    port: {pg_port}\n    database: postgres\n    user: \"{pg_user}\"\n    schema: public\npipelines:\n  p:\n    source: src\n    target: wh\n    s3: {{ bucket: \"{bucket}\", prefix: tm }}\n    tables:\n{tables}",
            host = self.opts.ip_or_hostname(),
            port = self.opts.tcp_port(),
            user = self.opts.user().unwrap_or("root"),
            password = self.opts.pass().unwrap_or(""),
            pg_host = pg.host,
            pg_port = pg.port,
            pg_user = pg.user,
            tables = tables.replace("{db}", &self.database),
        ))
    }
}

/// The parts of `TIDEMARK_PG_URL` a config needs.
struct PostgresAddress {
    host: String,
    port: u16,
    user: String,
}

fn postgres_address() -> anyhow::Result<PostgresAddress> {
    let config: tokio_postgres::Config = postgres_url().parse()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    Ok(PostgresAddress {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        user: config.get_user().unwrap_or("postgres").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_names_carry_their_age() {
        let name = fresh_name();
        assert!(name.starts_with(TEST_PREFIX) && name.len() <= 63, "{name}");
        assert!(!is_stale(&name, unix_now()));
        assert!(is_stale(&name, unix_now() + STALE_AFTER_SECS + 1));
        assert!(!is_stale("tidemark_prod", u64::MAX));
        assert!(!is_stale("tidemark_test_notanumber_x", u64::MAX));
    }
}

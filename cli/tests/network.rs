//! Network faults through the real binary: a TCP proxy (`tidemark_tests::net_proxy`) sits
//! between `tidemark sync` and one service at a time — MariaDB, PostgreSQL, the S3 endpoint —
//! and cuts or stalls the traffic in the middle of a sync: after half the bytes that the same
//! sync of the same data moved without faults.
//!
//! - A cut resets every open connection. The step it hits fails and the state machine retries
//!   it (for S3 the SDK's own retry usually absorbs it first); the sync succeeds.
//! - A stall keeps the connections open and silent. The step must fail within the service's
//!   timeout — the source's `read_timeout`, the warehouse's `statement_timeout` + 10 s, the AWS
//!   `read_timeout` — which the test sees in the log before it lets traffic pass again; the
//!   retry succeeds. A sync still running after [`HANG`] fails the test.
//!
//! Either way target == source with every bookkeeping promise kept (`Scenario::check`), and a
//! later sync of further changes converges too.

use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use tidemark_tests::net_proxy::NetProxy;
use tidemark_tests::scenario::{
    change_rows, create_table, describe, insert_rows, report, scale, Mode, Scenario,
};
use tidemark_tests::TestMysql;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

const BINARY: &str = env!("CARGO_BIN_EXE_tidemark");
const MODE: Mode = Mode::Merge;
/// The longest any sync here may take; a sync still running then hangs, and fails the test.
const HANG: Duration = Duration::from_secs(120);

/// The service the proxy stands in front of.
#[derive(Debug, Clone, Copy)]
enum Service {
    Mysql,
    Postgres,
    S3,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Mysql => "mysql",
            Service::Postgres => "postgres",
            Service::S3 => "s3",
        }
    }

    /// Puts a proxy in front of the service for the scenario's syncs, with a short timeout so a
    /// stall ends quickly. Returns the proxy and the environment the syncs need.
    async fn route(
        self,
        scenario: &Scenario<'_>,
    ) -> anyhow::Result<(NetProxy, Vec<(String, String)>)> {
        match self {
            Service::Mysql | Service::Postgres => {
                let (connection, timeout) = match self {
                    Service::Mysql => ("src", ("read_timeout", "2s")),
                    _ => ("wh", ("statement_timeout", "5s")),
                };
                let proxy = NetProxy::start(&scenario.connection_address(connection)?).await?;
                let at = |key| ["connections", connection, key];
                scenario.set_config(&at("host"), "\"127.0.0.1\"")?;
                scenario.set_config(&at("port"), &proxy.port().to_string())?;
                scenario.set_config(&at(timeout.0), timeout.1)?;
                Ok((proxy, Vec::new()))
            }
            Service::S3 => {
                let endpoint = std::env::var("AWS_ENDPOINT_URL")
                    .unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned());
                let upstream = endpoint
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned();
                let proxy = NetProxy::start(&upstream).await?;
                scenario.set_config(&["aws", "read_timeout"], "2s")?;
                let env = vec![("AWS_ENDPOINT_URL".to_owned(), proxy.http_url())];
                Ok((proxy, env))
            }
        }
    }

    /// What the log of a sync says when a stall of this service ended a step: one of these.
    fn stall_messages(self) -> &'static [&'static str] {
        match self {
            Service::Mysql => &["`read_timeout`"],
            Service::Postgres => &["`statement_timeout`"],
            // A response that never began; a transfer that stopped (stalled-stream protection,
            // bounded by the same `read_timeout`).
            Service::S3 => &["read timeout", "throughput"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Cut,
    Stall,
}

/// Runs `tidemark --json sync` of the table through the proxy's environment, bounded by
/// [`HANG`]. When `on_step_failure` is given, it is called once, as soon as the log reports a
/// failed step.
async fn sync(
    scenario: &Scenario<'_>,
    env: &[(String, String)],
    on_step_failure: Option<&dyn Fn()>,
) -> anyhow::Result<Output> {
    let table = scenario.mysql.table(MODE.name()).to_string();
    let mut command = scenario.command(&["--json", "sync", "-t", &table], None);
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut child = tokio::process::Command::from(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = child.stdout.take().context("stdout is piped")?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let run = async {
        let mut out = Vec::new();
        let reading = stdout.read_to_end(&mut out);
        let watching = async {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut log = String::new();
            let mut reported = false;
            while let Some(line) = lines.next_line().await? {
                if !reported && line.contains("step failed") {
                    if let Some(react) = on_step_failure {
                        react();
                        reported = true;
                    }
                }
                log.push_str(&line);
                log.push('\n');
            }
            anyhow::Ok(log)
        };
        let (read, log) = tokio::join!(reading, watching);
        read?;
        let status = child.wait().await?;
        anyhow::Ok(Output {
            status,
            stdout: out,
            stderr: log?.into_bytes(),
        })
    };
    tokio::time::timeout(HANG, run)
        .await
        .with_context(|| format!("the sync hung: still running after {}s", HANG.as_secs()))?
}

/// Seeds the table, syncs it once through a passing proxy (measuring its traffic), rewrites
/// every row, syncs that with `fault` armed at half the measured traffic, and checks; then
/// changes rows, syncs cleanly and checks again.
async fn fault_mid_stream(service: Service, fault: Fault) {
    TestMysql::run(async |mysql| {
        let tables = MODE.table().chunk_rows(1_000_000).yaml();
        let scenario = Scenario::new(mysql, BINARY, &tables).await?;
        let table = MODE.name();
        let rows = 3000 * scale();
        let mut conn = mysql.conn().await?;
        conn.query_drop(create_table(table)).await?;
        insert_rows(&mut conn, table, 1, rows, "2025-01-01 00:00:00").await?;
        let (proxy, env) = service.route(&scenario).await?;

        let first = sync(&scenario, &env, None).await?;
        ensure!(
            first.status.success(),
            "the clean first sync failed: {}",
            describe(&first)
        );
        let traffic = proxy.forwarded();
        conn.query_drop(format!(
            "UPDATE `{table}` SET v = CONCAT(v, ' n'), updated_at = updated_at + INTERVAL 1 DAY"
        ))
        .await?;

        match fault {
            Fault::Cut => proxy.cut_after(traffic / 2),
            Fault::Stall => proxy.stall_after(traffic / 2),
        }
        let resets = proxy.resets();
        let stalled_then_passed = std::sync::atomic::AtomicBool::new(false);
        let pass_after_stall = || {
            if proxy.is_stalled() {
                stalled_then_passed.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            proxy.pass();
        };
        let faulted = match fault {
            Fault::Cut => sync(&scenario, &env, None).await?,
            Fault::Stall => sync(&scenario, &env, Some(&pass_after_stall)).await?,
        };
        let out = &faulted;
        ensure!(
            out.status.success(),
            "the step was not retried to success: {}",
            describe(out)
        );
        let log = String::from_utf8_lossy(&out.stderr);
        match fault {
            Fault::Cut => {
                ensure!(
                    proxy.resets() > resets,
                    "the cut never fired: {}",
                    describe(out)
                );
                if !matches!(service, Service::S3) {
                    ensure!(
                        log.contains("step failed") && log.contains("Retryable"),
                        "a cut of {} must fail a step as Retryable: {}",
                        service.name(),
                        describe(out)
                    );
                }
            }
            Fault::Stall => {
                ensure!(
                    stalled_then_passed.load(std::sync::atomic::Ordering::SeqCst),
                    "no step failed while the proxy stalled: {}",
                    describe(out)
                );
                // MariaDB and PostgreSQL name the timeout in the step's own error; S3's SDK
                // words it in the log of the request it gave up.
                let said = match service {
                    Service::S3 => log.to_string(),
                    Service::Mysql | Service::Postgres => log
                        .lines()
                        .filter(|line| line.contains("step failed"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                };
                ensure!(
                    service.stall_messages().iter().any(|m| said.contains(m)),
                    "the step that the stall ended does not name its timeout ({:?}): {}",
                    service.stall_messages(),
                    describe(out)
                );
            }
        }
        let mut compared = scenario.check(MODE, table).await?.rows;

        change_rows(&mut conn, MODE, table, 1, rows).await?;
        let last = sync(&scenario, &env, None).await?;
        ensure!(
            last.status.success(),
            "the sync after the fault failed: {}",
            describe(&last)
        );
        compared += scenario.check(MODE, table).await?.rows;
        report(
            &format!("network {} {:?}", service.name(), fault),
            3,
            1,
            compared,
            0,
        );
        drop(proxy);
        scenario.cleanup().await
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_mysql_connection_fails_the_step_and_the_retry_converges() {
    fault_mid_stream(Service::Mysql, Fault::Cut).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_mysql_connection_ends_at_read_timeout_and_the_retry_converges() {
    fault_mid_stream(Service::Mysql, Fault::Stall).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_postgres_connection_fails_the_load_and_the_retry_converges() {
    fault_mid_stream(Service::Postgres, Fault::Cut).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_postgres_connection_ends_after_statement_timeout_and_the_retry_converges() {
    fault_mid_stream(Service::Postgres, Fault::Stall).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_s3_connections_are_retried_and_the_sync_converges() {
    fault_mid_stream(Service::S3, Fault::Cut).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_s3_connection_ends_at_the_aws_read_timeout_and_the_retry_converges() {
    fault_mid_stream(Service::S3, Fault::Stall).await;
}

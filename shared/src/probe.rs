//! `connections test`: reach every service the configuration references — sources, targets,
//! buckets, secrets, SSH bastions — and report each one's version and latency, or exactly what
//! failed. Probes only read: they never write to a service, and never show a secret's value.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::config::{Connection, DataApiTarget, RedshiftAccess, TunnelConfig};
use crate::error::{Error, Result};
use crate::services::Services;

/// Longest a probe may take when its connection names no timeout of its own.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What kind of service a probe reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// A MySQL/MariaDB source.
    Mysql,
    /// A PostgreSQL target.
    Postgres,
    /// A Redshift target.
    Redshift,
    /// A pipeline's S3 bucket.
    Bucket,
    /// A Secrets Manager secret a connection names.
    Secret,
    /// The SSH bastion in front of a Redshift connection.
    Tunnel,
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeResult {
    /// What was probed.
    pub kind: ServiceKind,
    /// The connection's, bucket's or secret's name.
    pub name: String,
    /// Where: `host:port`, `s3://bucket`, or the secret's id.
    pub address: String,
    /// Whether a pipeline needs it (false for connections no pipeline uses, tested with `--all`).
    pub required: bool,
    /// Whether it answered.
    pub ok: bool,
    /// The server's version, when it says.
    pub version: Option<String>,
    /// Round trip of the probe, milliseconds.
    pub latency_ms: u64,
    /// What failed.
    pub error: Option<String>,
    /// Something to know even though it answered.
    pub note: Option<String>,
}

/// Which services to probe.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this connection (with its secrets and tunnel), or this bucket.
    pub name: Option<String>,
    /// Also connections no pipeline uses.
    pub all: bool,
}

/// A service to probe, before it is probed.
struct Target {
    kind: ServiceKind,
    name: String,
    address: String,
    required: bool,
}

/// Probes the selected services, one after the other, in configuration order.
pub async fn probe(services: &Services, selection: &Selection) -> Result<Vec<ProbeResult>> {
    let config = &services.config;
    let used = |name: &str| {
        config
            .pipelines
            .values()
            .any(|p| p.source == name || p.target == name)
    };
    if let Some(name) = &selection.name {
        let known = config.connections.contains_key(name)
            || config.pipelines.values().any(|p| p.s3.bucket == *name);
        if !known {
            return Err(Error::InvalidRequest(format!(
                "`{name}` is neither a connection nor a bucket of the configuration; connections: {}",
                config.connections.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let wanted = |name: &str| selection.name.as_deref().is_none_or(|n| n == name);
    let mut results = Vec::new();
    for (name, connection) in &config.connections {
        let required = used(name) || selection.name.as_deref() == Some(name.as_str());
        if !wanted(name) || !(required || selection.all) {
            continue;
        }
        for secret in secrets_of(connection) {
            let target = Target {
                kind: ServiceKind::Secret,
                name: name.clone(),
                address: secret.to_owned(),
                required,
            };
            results.push(
                run(target, PROBE_TIMEOUT, async {
                    services.secrets().password(secret).await?;
                    Ok((None, None))
                })
                .await,
            );
        }
        if let Connection::Redshift(redshift) = connection {
            if let Some(tunnel) = redshift.access.tunnel() {
                let target = Target {
                    kind: ServiceKind::Tunnel,
                    name: name.clone(),
                    address: format!("{}:{}", tunnel.bastion_host, tunnel.bastion_port),
                    required,
                };
                results.push(run(target, PROBE_TIMEOUT, ssh_banner(tunnel)).await);
            }
        }
        results.push(probe_connection(services, name, connection, required).await);
    }
    let mut buckets: Vec<&str> = config
        .pipelines
        .values()
        .map(|p| p.s3.bucket.as_str())
        .collect();
    buckets.dedup();
    for bucket in buckets {
        if !wanted(bucket) {
            continue;
        }
        let target = Target {
            kind: ServiceKind::Bucket,
            name: bucket.to_owned(),
            address: format!("s3://{bucket}"),
            required: true,
        };
        let reached = crate::storage::Bucket::new(services.s3().clone(), bucket);
        results.push(
            run(target, PROBE_TIMEOUT, async {
                // A read of a key that is never written: answers "no such key" when the bucket
                // exists and may be read, and fails with S3's reason otherwise.
                reached.get(".tidemark-connection-test").await?;
                Ok((None, None))
            })
            .await,
        );
    }
    Ok(results)
}

fn secrets_of(connection: &Connection) -> Vec<&str> {
    match connection {
        Connection::Mysql(c) => c.password_secret.iter().map(String::as_str).collect(),
        Connection::Postgres(c) => c.password_secret.iter().map(String::as_str).collect(),
        Connection::Redshift(c) => {
            let mut ids: Vec<&str> = c.secret_arn.iter().map(String::as_str).collect();
            if let Some(key) = c
                .access
                .tunnel()
                .and_then(|t| t.private_key_secret.as_deref())
            {
                ids.push(key);
            }
            ids
        }
    }
}

async fn probe_connection(
    services: &Services,
    name: &str,
    connection: &Connection,
    required: bool,
) -> ProbeResult {
    match connection {
        Connection::Mysql(mysql) => {
            let target = Target {
                kind: ServiceKind::Mysql,
                name: name.to_owned(),
                address: format!("{}:{}", mysql.host, mysql.port),
                required,
            };
            run(target, mysql.connect_timeout.0 + PROBE_TIMEOUT, async {
                let source = crate::source::connect(mysql, Some(services.secrets())).await?;
                let mut conn = source.conn().await?;
                let version: Option<String> = source
                    .within("reading the server version", async {
                        conn.query_first("SELECT VERSION()")
                            .await
                            .map_err(|err| Error::mysql("reading the server version", err))
                    })
                    .await?;
                drop(conn);
                source.disconnect().await;
                Ok((version, None))
            })
            .await
        }
        Connection::Postgres(postgres) => {
            let target = Target {
                kind: ServiceKind::Postgres,
                name: name.to_owned(),
                address: format!("{}:{}", postgres.host, postgres.port),
                required,
            };
            run(
                target,
                postgres.connect_timeout.0 + PROBE_TIMEOUT,
                target_version(services, name),
            )
            .await
        }
        Connection::Redshift(redshift) => {
            let address = match &redshift.access {
                RedshiftAccess::DataApi {
                    target: DataApiTarget::Workgroup(workgroup),
                    ..
                } => format!("data api workgroup {workgroup}"),
                RedshiftAccess::DataApi {
                    target: DataApiTarget::Cluster(cluster),
                    ..
                } => format!("data api cluster {cluster}"),
                RedshiftAccess::Direct(endpoint) | RedshiftAccess::Tunnel { endpoint, .. } => {
                    format!("{}:{}", endpoint.host, endpoint.port)
                }
            };
            let target = Target {
                kind: ServiceKind::Redshift,
                name: name.to_owned(),
                address,
                required,
            };
            run(target, PROBE_TIMEOUT * 2, target_version(services, name)).await
        }
    }
}

async fn target_version(
    services: &Services,
    name: &str,
) -> Result<(Option<String>, Option<String>)> {
    let client = services.target(name).await?;
    Ok((Some(client.version().await?), None))
}

/// Reaches the bastion's SSH port and reads its banner (`SSH-2.0-…`): the tunnel itself is not
/// opened (no key is used).
async fn ssh_banner(tunnel: &TunnelConfig) -> Result<(Option<String>, Option<String>)> {
    let address = format!("{}:{}", tunnel.bastion_host, tunnel.bastion_port);
    let io = |err: std::io::Error| Error::Io {
        context: format!("reaching the SSH bastion {address}"),
        source: err,
    };
    let stream = tokio::net::TcpStream::connect(&address).await.map_err(io)?;
    let mut banner = String::new();
    tokio::io::BufReader::new(stream)
        .read_line(&mut banner)
        .await
        .map_err(io)?;
    let banner = banner.trim().to_owned();
    if !banner.starts_with("SSH-") {
        return Err(Error::InvalidRequest(format!(
            "{address} answered `{}`, not an SSH banner",
            banner.chars().take(60).collect::<String>()
        )));
    }
    Ok((
        Some(banner),
        Some("bastion reached; the tunnel itself is not opened by this test".to_owned()),
    ))
}

/// Runs one probe under `timeout` and times it.
async fn run(
    target: Target,
    timeout: Duration,
    probe: impl std::future::Future<Output = Result<(Option<String>, Option<String>)>>,
) -> ProbeResult {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, probe).await {
        Ok(outcome) => outcome.map_err(|err| err.to_string()),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    };
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (ok, version, note, error) = match outcome {
        Ok((version, note)) => (true, version, note, None),
        Err(error) => (false, None, None, Some(error)),
    };
    tracing::debug!(kind = ?target.kind, name = %target.name, ok, latency_ms, "probed");
    ProbeResult {
        kind: target.kind,
        name: target.name,
        address: target.address,
        required: target.required,
        ok,
        version,
        latency_ms,
        error,
        note,
    }
}

//! OpenLineage run events of every table run — START when `begin` takes the lease, COMPLETE when
//! the run ends (its load committed, or its commit for `--backup-only`), FAIL when the state
//! machine records its error, ABORT when its execution ended without one (`release`) — with the MySQL table as input and the warehouse table as output,
//! each with its schema facet, the run's row counts and, for FAIL, the error. Each event is
//! written to S3 under the pipeline's prefix and, with `lineage.endpoint`, POSTed there. Lineage
//! never fails a run: an event that cannot be delivered is logged.
//!
//! Event and facet shapes follow the OpenLineage spec 2-0-2 (https://openlineage.io/spec/2-0-2/
//! OpenLineage.json); dataset namespaces its naming conventions
//! (https://openlineage.io/docs/spec/naming): `mysql://{host}:{port}` with `{database}.{table}`,
//! `postgres://{host}:{port}` and `redshift://{cluster}.{region}:{port}` with
//! `{database}.{schema}.{table}`.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::{Connection, DataApiTarget, Pipeline, RedshiftAccess, TlsMode};
use crate::error::{Error, Result};
use crate::naming::{RunId, StorageLayout, TableId};
use crate::schema::{TableSchema, Warehouse};
use crate::services::Services;

/// The spec version of every event.
const RUN_EVENT_SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const SCHEMA_FACET: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const OUTPUT_STATISTICS_FACET: &str = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";
const INPUT_STATISTICS_FACET: &str = "https://openlineage.io/spec/facets/1-0-0/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet";
const ERROR_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
/// How long a POST to the endpoint may take.
const ENDPOINT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The producer every event and facet names.
fn producer() -> String {
    format!(
        "https://github.com/tidemark/tidemark/releases/tag/v{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Which transition of a run an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `begin` took the lease.
    Start,
    /// The run ended: loaded, or committed under `--backup-only`.
    Complete,
    /// The state machine recorded its error.
    Fail,
    /// Its execution ended without recording one (stopped, timed out): `release` freed its lease.
    Abort,
}

impl EventType {
    fn name(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
            EventType::Abort => "ABORT",
        }
    }
}

/// What one event says of a table run.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    /// Pipeline name.
    pub pipeline: &'a str,
    /// The pipeline.
    pub config: &'a Pipeline,
    /// Source table.
    pub table: &'a TableId,
    /// Target table name.
    pub target: &'a str,
    /// The run.
    pub run_id: &'a RunId,
    /// The run's schema (none when it is not known, e.g. `begin` failed before reading it).
    pub schema: Option<&'a TableSchema>,
    /// Rows and bytes the run extracted, when it did.
    pub extracted: Option<(u64, u64)>,
    /// Rows the run's load inserted into the target, when it loaded.
    pub loaded: Option<u64>,
    /// The error, for FAIL.
    pub error: Option<&'a str>,
}

impl<'a> RunFacts<'a> {
    /// The facts of `run_id` of `table` (loading into `target`), nothing known of it yet.
    pub fn of(
        pipeline: &'a str,
        config: &'a Pipeline,
        table: &'a TableId,
        target: &'a str,
        run_id: &'a RunId,
    ) -> Self {
        RunFacts {
            pipeline,
            config,
            table,
            target,
            run_id,
            schema: None,
            extracted: None,
            loaded: None,
            error: None,
        }
    }
}

/// The run's id as OpenLineage wants it: a UUID, derived from tidemark's run id (the same run
/// id always gives the same UUID, so START and COMPLETE meet).
pub fn run_uuid(run_id: &RunId) -> String {
    let bits = crate::load::data_api::fnv1a_128(run_id.as_str().as_bytes());
    // Version 8 ("custom") and the RFC 4122 variant, as a derived id should say.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x8 << 76) | (0x2 << 62);
    uuid::Uuid::from_u128(bits).hyphenated().to_string()
}

/// The event `kind` of `facts`, at `now`.
pub fn event(
    services: &Services,
    facts: &RunFacts<'_>,
    kind: EventType,
    now: DateTime<Utc>,
) -> Value {
    let producer = producer();
    let facet = |schema_url: &str, body: Value| -> Value {
        let mut facet = json!({"_producer": producer, "_schemaURL": schema_url});
        if let (Some(facet), Value::Object(body)) = (facet.as_object_mut(), body) {
            facet.extend(body);
        }
        facet
    };
    let mut run_facets = serde_json::Map::new();
    if let Some(error) = facts.error {
        run_facets.insert(
            "errorMessage".to_owned(),
            facet(
                ERROR_FACET,
                json!({"message": error, "programmingLanguage": "Rust"}),
            ),
        );
    }
    let warehouse = match services.config.connections.get(&facts.config.target) {
        Some(Connection::Redshift(_)) => Warehouse::Redshift,
        _ => Warehouse::Postgres,
    };
    let schema_facet = |in_warehouse: bool| -> Option<Value> {
        facts.schema.map(|schema| {
            let fields: Vec<Value> = schema
                .columns
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    let (name, ty) = match (in_warehouse, warehouse) {
                        (false, _) => (&column.name, column.column_type.clone()),
                        (true, Warehouse::Postgres) => {
                            (&column.target_name, column.ty.postgres_type())
                        }
                        (true, Warehouse::Redshift) => (
                            &column.target_name,
                            column.ty.redshift_type(schema.json_in_redshift),
                        ),
                    };
                    json!({"name": name, "type": ty, "ordinal_position": i + 1})
                })
                .collect();
            facet(SCHEMA_FACET, json!({ "fields": fields }))
        })
    };
    let (source_namespace, source_name) = source_dataset(services, facts);
    let (target_namespace, target_name) = target_dataset(services, facts);
    let mut input = json!({"namespace": source_namespace, "name": source_name, "facets": {}});
    let mut output = json!({"namespace": target_namespace, "name": target_name, "facets": {}});
    if let Some(schema) = schema_facet(false) {
        input["facets"]["schema"] = schema;
    }
    if let Some(schema) = schema_facet(true) {
        output["facets"]["schema"] = schema;
    }
    if let Some((rows, bytes)) = facts.extracted {
        input["inputFacets"] = json!({
            "inputStatistics": facet(INPUT_STATISTICS_FACET, json!({"rowCount": rows, "size": bytes}))
        });
    }
    if let Some(rows) = facts.loaded {
        output["outputFacets"] = json!({
            "outputStatistics": facet(OUTPUT_STATISTICS_FACET, json!({"rowCount": rows}))
        });
    }
    json!({
        "eventType": kind.name(),
        "eventTime": now.to_rfc3339_opts(SecondsFormat::Micros, true),
        "producer": producer,
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": run_uuid(facts.run_id), "facets": run_facets},
        "job": {
            "namespace": facts.config.lineage.namespace,
            "name": format!("{}.{}", facts.pipeline, facts.table),
            "facets": {}
        },
        "inputs": [input],
        "outputs": [output],
    })
}

/// The MySQL table's namespace and name.
fn source_dataset(services: &Services, facts: &RunFacts<'_>) -> (String, String) {
    let namespace = match services.config.connections.get(&facts.config.source) {
        Some(Connection::Mysql(mysql)) => format!("mysql://{}:{}", mysql.host, mysql.port),
        _ => format!("mysql://{}", facts.config.source),
    };
    (namespace, facts.table.to_string())
}

/// The warehouse table's namespace and name.
fn target_dataset(services: &Services, facts: &RunFacts<'_>) -> (String, String) {
    match services.config.connections.get(&facts.config.target) {
        Some(Connection::Postgres(postgres)) => (
            format!("postgres://{}:{}", postgres.host, postgres.port),
            format!("{}.{}.{}", postgres.database, postgres.schema, facts.target),
        ),
        Some(Connection::Redshift(redshift)) => {
            let region = std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|_| "unknown-region".to_owned());
            let host = match &redshift.access {
                RedshiftAccess::DataApi { target, .. } => {
                    let (DataApiTarget::Workgroup(id) | DataApiTarget::Cluster(id)) = target;
                    format!("{id}.{region}:5439")
                }
                RedshiftAccess::Direct(endpoint) | RedshiftAccess::Tunnel { endpoint, .. } => {
                    redshift_host(&endpoint.host, endpoint.port)
                }
            };
            (
                format!("redshift://{host}"),
                format!("{}.{}.{}", redshift.database, redshift.schema, facts.target),
            )
        }
        // The configuration checks that a target is one of the two.
        _ => (
            format!("unknown://{}", facts.config.target),
            facts.target.to_owned(),
        ),
    }
}

/// `{cluster}.{region}:{port}` from a Redshift endpoint host
/// (`{cluster}.{id}.{region}.redshift.amazonaws.com`, or a serverless workgroup's
/// `{workgroup}.{account}.{region}.redshift-serverless.amazonaws.com`); the host as given
/// otherwise.
fn redshift_host(host: &str, port: u16) -> String {
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [cluster, _, region, "redshift" | "redshift-serverless", "amazonaws", "com"] => {
            format!("{cluster}.{region}:{port}")
        }
        _ => format!("{host}:{port}"),
    }
}

/// Writes the event to S3 and POSTs it to the pipeline's endpoint. Never fails: what cannot be
/// delivered is logged at WARN.
pub async fn emit(services: &Services, facts: &RunFacts<'_>, kind: EventType) {
    let now = Utc::now();
    let body = event(services, facts, kind, now);
    let text = body.to_string();
    let key = StorageLayout::new(&facts.config.s3.prefix).lineage_event_key(
        facts.pipeline,
        facts.table,
        facts.run_id,
        &kind.name().to_ascii_lowercase(),
    );
    if let Err(err) = services
        .bucket(facts.config)
        .put(&key, text.clone().into_bytes().into())
        .await
    {
        tracing::warn!(table = %facts.table, run_id = %facts.run_id, error = %err, "the lineage event could not be written to S3");
    }
    if let Some(endpoint) = &facts.config.lineage.endpoint {
        let posted = match Endpoint::parse(endpoint) {
            Ok(endpoint) => tokio::time::timeout(ENDPOINT_TIMEOUT, endpoint.post(&text))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::InvalidRequest(format!(
                        "no answer within {}s",
                        ENDPOINT_TIMEOUT.as_secs()
                    )))
                }),
            Err(err) => Err(err),
        };
        if let Err(err) = posted {
            // The path or query may carry a token: only the origin is logged.
            let origin = endpoint
                .splitn(4, '/')
                .take(3)
                .collect::<Vec<_>>()
                .join("/");
            tracing::warn!(table = %facts.table, run_id = %facts.run_id, endpoint = %origin, error = %err, "the lineage event could not be posted");
        }
    }
}

/// An OpenLineage HTTP endpoint: `http[s]://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

impl Endpoint {
    /// Parses `url`: `http://` or `https://`, a host, an optional port and path.
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = || {
            Error::InvalidRequest(format!(
                "`{url}` is not an http:// or https:// URL with a host"
            ))
        };
        let (tls, rest) = match url.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            _ => return Err(invalid()),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| invalid())?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(invalid());
        }
        Ok(Endpoint {
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// POSTs `body` (JSON) and fails unless the answer is 2xx.
    async fn post(&self, body: &str) -> Result<()> {
        let io = |err: std::io::Error| Error::Io {
            context: format!("posting a lineage event to {}:{}", self.host, self.port),
            source: err,
        };
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(io)?;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.path,
            self.host,
            body.len()
        );
        let answer = match self.tls {
            false => exchange(stream, &request).await.map_err(io)?,
            true => {
                let config: Arc<rustls::ClientConfig> =
                    crate::tls::client_config(TlsMode::Required, None)?
                        .ok_or_else(|| Error::internal("no TLS configuration for `required`"))?;
                let name =
                    rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|_| {
                        Error::InvalidRequest(format!("`{}` is not a host name", self.host))
                    })?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .map_err(io)?;
                exchange(stream, &request).await.map_err(io)?
            }
        };
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .unwrap_or(0);
        match status {
            200..=299 => Ok(()),
            _ => Err(Error::unexpected_answer(
                "the lineage endpoint",
                "a 2xx answer",
                answer.lines().next().unwrap_or_default(),
            )),
        }
    }
}

/// Sends `request` and reads the answer's first line.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
) -> std::io::Result<String> {
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.contains(&b'\n') && answer.len() < 8192 {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_become_stable_version_8_uuids() {
        let run = RunId::parse("20261205T100000123Z-0000000000ab").unwrap();
        let uuid = run_uuid(&run);
        assert_eq!(uuid, run_uuid(&run));
        let parsed = uuid::Uuid::parse_str(&uuid).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        let other = RunId::parse("20261205T100000123Z-0000000000ac").unwrap();
        assert_ne!(run_uuid(&other), uuid);
    }

    #[test]
    fn endpoints_are_http_or_https_urls_with_a_host() {
        assert_eq!(
            Endpoint::parse("https://marquez.example.com/api/v1/lineage").unwrap(),
            Endpoint {
                tls: true,
                host: "marquez.example.com".into(),
                port: 443,
                path: "/api/v1/lineage".into()
            }
        );
        let plain = Endpoint::parse("http://10.0.0.5:5000").unwrap();
        assert_eq!((plain.port, plain.path.as_str()), (5000, "/"));
        for bad in [
            "ftp://x/y",
            "marquez:5000",
            "http://:80/",
            "http://h:port/",
            "https://user@h/",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redshift_endpoints_name_their_cluster_and_region() {
        assert_eq!(
            redshift_host("analytics.c1ab2cd3.us-east-1.redshift.amazonaws.com", 5439),
            "analytics.us-east-1:5439"
        );
        assert_eq!(
            redshift_host(
                "wg.123456789012.eu-west-1.redshift-serverless.amazonaws.com",
                5439
            ),
            "wg.eu-west-1:5439"
        );
        assert_eq!(redshift_host("10.0.0.9", 5439), "10.0.0.9:5439");
    }
}

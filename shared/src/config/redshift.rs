//! A Redshift connection: as the file writes it ([`RawRedshiftConnection`], flat keys) and
//! checked ([`RedshiftConnection`], whose [`RedshiftAccess`] carries what its way in needs).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

use super::env::{interpolated, interpolated_option, interpolated_secret, masked};
use super::{
    default_redshift_port, default_schema, default_statement_timeout, HumanDuration, TlsMode,
    TunnelConfig,
};

/// Amazon Redshift, checked: [`RedshiftAccess`] holds exactly what the way in needs (the Data
/// API's workgroup or cluster; the endpoint and user of the wire protocol; the bastion of a
/// tunnel), so a way in without its settings cannot exist past parsing. The other fields are as
/// in [`RawRedshiftConnection`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawRedshiftConnection", into = "RawRedshiftConnection")]
pub struct RedshiftConnection {
    /// How statements reach Redshift, with what that needs.
    pub access: RedshiftAccess,
    /// See [`RawRedshiftConnection::database`].
    pub database: String,
    /// See [`RawRedshiftConnection::schema`].
    pub schema: String,
    /// See [`RawRedshiftConnection::db_user`].
    pub db_user: Option<String>,
    /// See [`RawRedshiftConnection::secret_arn`].
    pub secret_arn: Option<String>,
    /// See [`RawRedshiftConnection::iam_role`].
    pub iam_role: String,
    /// See [`RawRedshiftConnection::password`].
    pub password: Option<SecretString>,
    /// See [`RawRedshiftConnection::statement_timeout`].
    pub statement_timeout: HumanDuration,
    /// See [`RawRedshiftConnection::tls`].
    pub tls: TlsMode,
    /// See [`RawRedshiftConnection::tls_ca_file`].
    pub tls_ca_file: Option<String>,
    /// See [`RawRedshiftConnection::tls_ca_secret`].
    pub tls_ca_secret: Option<String>,
}

/// How statements reach Redshift, with the settings that way needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedshiftAccess {
    /// The Redshift Data API (HTTPS, IAM).
    DataApi {
        /// The serverless workgroup or provisioned cluster the API addresses.
        target: DataApiTarget,
        /// A bastion: checked by `connections test`, and the way in when the API cannot be
        /// reached if its `fallback` is set.
        tunnel: Option<DataApiTunnel>,
    },
    /// The PostgreSQL wire protocol to the cluster endpoint.
    Direct(WireEndpoint),
    /// The wire protocol through an SSH bastion.
    Tunnel {
        /// The cluster endpoint, as the bastion reaches it.
        endpoint: WireEndpoint,
        /// The bastion.
        tunnel: TunnelConfig,
    },
}

impl RedshiftAccess {
    /// The value of `access` this way in is written as.
    pub fn kind(&self) -> RedshiftAccessKind {
        match self {
            RedshiftAccess::DataApi { .. } => RedshiftAccessKind::DataApi,
            RedshiftAccess::Direct(_) => RedshiftAccessKind::Direct,
            RedshiftAccess::Tunnel { .. } => RedshiftAccessKind::Tunnel,
        }
    }

    /// The bastion the configuration names, whatever it is used for.
    pub fn tunnel(&self) -> Option<&TunnelConfig> {
        match self {
            RedshiftAccess::DataApi { tunnel, .. } => tunnel.as_ref().map(|t| &t.tunnel),
            RedshiftAccess::Direct(_) => None,
            RedshiftAccess::Tunnel { tunnel, .. } => Some(tunnel),
        }
    }

    /// The wire endpoint the configuration names, whatever it is used for.
    pub fn endpoint(&self) -> Option<&WireEndpoint> {
        match self {
            RedshiftAccess::DataApi { tunnel, .. } => {
                tunnel.as_ref().and_then(|t| t.fallback.as_ref())
            }
            RedshiftAccess::Direct(endpoint) | RedshiftAccess::Tunnel { endpoint, .. } => {
                Some(endpoint)
            }
        }
    }
}

/// What the Data API addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataApiTarget {
    /// A Redshift Serverless workgroup.
    Workgroup(String),
    /// A provisioned cluster.
    Cluster(String),
}

/// The bastion of a Data API connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataApiTunnel {
    /// The bastion.
    pub tunnel: TunnelConfig,
    /// With `fallback_to_tunnel`: the cluster endpoint to load through the bastion when the Data
    /// API cannot be reached.
    pub fallback: Option<WireEndpoint>,
}

/// A cluster endpoint for the wire protocol, and who logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEndpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub user: String,
}

/// Amazon Redshift, as the file writes it: checked by [`RawRedshiftConnection::access`] and
/// turned into a [`RedshiftConnection`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedshiftConnection {
    /// How statements reach Redshift: `data_api` (default), `direct` (PostgreSQL wire protocol,
    /// e.g. from a Lambda in the VPC) or `tunnel` (wire protocol through `tunnel`'s SSH bastion).
    #[serde(default)]
    pub access: RedshiftAccessKind,
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

/// The value of a Redshift connection's `access`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedshiftAccessKind {
    /// The Redshift Data API (HTTPS, IAM).
    #[default]
    DataApi,
    /// The PostgreSQL wire protocol to the cluster endpoint.
    Direct,
    /// The wire protocol through an SSH bastion.
    Tunnel,
}

impl fmt::Display for RedshiftAccessKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RedshiftAccessKind::DataApi => "data_api",
            RedshiftAccessKind::Direct => "direct",
            RedshiftAccessKind::Tunnel => "tunnel",
        })
    }
}

impl RawRedshiftConnection {
    /// The way in with its settings, or why the settings do not make one. The rules:
    /// `data_api` needs exactly one of `workgroup` and `cluster_identifier` (a cluster also
    /// `db_user` or `secret_arn`); `direct` and `tunnel` need `host`, `user`, and `password` or
    /// `secret_arn`; `tunnel` needs a `tunnel` block; `fallback_to_tunnel` needs `data_api`, a
    /// `tunnel` block, and `host` and `user` to load through it.
    pub fn access(&self) -> std::result::Result<RedshiftAccess, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let endpoint = match (&self.host, &self.user) {
            (Some(host), Some(user)) => Some(WireEndpoint {
                host: host.clone(),
                port: self.port,
                user: user.clone(),
            }),
            _ => None,
        };
        let access = match self.access {
            RedshiftAccessKind::DataApi => {
                let target = match (&self.workgroup, &self.cluster_identifier) {
                    (Some(workgroup), None) => Some(DataApiTarget::Workgroup(workgroup.clone())),
                    (None, Some(_)) if self.db_user.is_none() && self.secret_arn.is_none() => {
                        problems.push(("cluster_identifier", "a provisioned cluster through the Data API needs `db_user` (temporary credentials) or `secret_arn`".to_owned()));
                        None
                    }
                    (None, Some(cluster)) => Some(DataApiTarget::Cluster(cluster.clone())),
                    _ => {
                        problems.push(("access", "`access: data_api` needs exactly one of `workgroup` (serverless) or `cluster_identifier` (provisioned)".to_owned()));
                        None
                    }
                };
                let fallback = match (self.fallback_to_tunnel, &endpoint) {
                    (false, _) => None,
                    (true, Some(_)) if self.password.is_none() && self.secret_arn.is_none() => {
                        problems.push(("fallback_to_tunnel", "`fallback_to_tunnel` logs in over the wire protocol: it needs `password` or `secret_arn`".to_owned()));
                        None
                    }
                    (true, Some(endpoint)) => Some(endpoint.clone()),
                    (true, None) => {
                        problems.push(("fallback_to_tunnel", "`fallback_to_tunnel` loads over the wire protocol through the bastion: it needs `host` and `user` (the cluster endpoint)".to_owned()));
                        None
                    }
                };
                target.map(|target| RedshiftAccess::DataApi {
                    target,
                    tunnel: self
                        .tunnel
                        .clone()
                        .map(|tunnel| DataApiTunnel { tunnel, fallback }),
                })
            }
            RedshiftAccessKind::Direct | RedshiftAccessKind::Tunnel => {
                if endpoint.is_none() {
                    problems.push(("access", "`access: direct` and `access: tunnel` need `host` and `user` (the cluster endpoint)".to_owned()));
                }
                if self.password.is_none() && self.secret_arn.is_none() {
                    problems.push((
                        "access",
                        "`access: direct` and `access: tunnel` need `password` or `secret_arn`"
                            .to_owned(),
                    ));
                }
                match (self.access, endpoint, &self.tunnel) {
                    (RedshiftAccessKind::Direct, Some(endpoint), _) => {
                        Some(RedshiftAccess::Direct(endpoint))
                    }
                    (RedshiftAccessKind::Tunnel, Some(endpoint), Some(tunnel)) => {
                        Some(RedshiftAccess::Tunnel {
                            endpoint,
                            tunnel: tunnel.clone(),
                        })
                    }
                    (RedshiftAccessKind::Tunnel, _, None) => {
                        problems.push((
                            "access",
                            "`access: tunnel` needs a `tunnel` block".to_owned(),
                        ));
                        None
                    }
                    _ => None,
                }
            }
        };
        if self.fallback_to_tunnel
            && (self.access != RedshiftAccessKind::DataApi || self.tunnel.is_none())
        {
            problems.push((
                "fallback_to_tunnel",
                "`fallback_to_tunnel` needs `access: data_api` and a `tunnel` block".to_owned(),
            ));
        }
        match access {
            Some(access) if problems.is_empty() => Ok(access),
            _ => Err(problems),
        }
    }
}

impl TryFrom<RawRedshiftConnection> for RedshiftConnection {
    type Error = String;

    fn try_from(raw: RawRedshiftConnection) -> std::result::Result<RedshiftConnection, String> {
        Ok(RedshiftConnection {
            access: raw.access().map_err(|problems| {
                problems
                    .into_iter()
                    .map(|(key, message)| format!("`{key}`: {message}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })?,
            database: raw.database,
            schema: raw.schema,
            db_user: raw.db_user,
            secret_arn: raw.secret_arn,
            iam_role: raw.iam_role,
            password: raw.password,
            statement_timeout: raw.statement_timeout,
            tls: raw.tls,
            tls_ca_file: raw.tls_ca_file,
            tls_ca_secret: raw.tls_ca_secret,
        })
    }
}

impl From<RedshiftConnection> for RawRedshiftConnection {
    fn from(redshift: RedshiftConnection) -> RawRedshiftConnection {
        let access = redshift.access.kind();
        let endpoint = redshift.access.endpoint().cloned();
        let tunnel = redshift.access.tunnel().cloned();
        let (workgroup, cluster_identifier, fallback_to_tunnel) = match redshift.access {
            RedshiftAccess::DataApi { target, tunnel } => {
                let fallback = tunnel.is_some_and(|t| t.fallback.is_some());
                match target {
                    DataApiTarget::Workgroup(workgroup) => (Some(workgroup), None, fallback),
                    DataApiTarget::Cluster(cluster) => (None, Some(cluster), fallback),
                }
            }
            RedshiftAccess::Direct(_) | RedshiftAccess::Tunnel { .. } => (None, None, false),
        };
        RawRedshiftConnection {
            access,
            workgroup,
            cluster_identifier,
            database: redshift.database,
            schema: redshift.schema,
            db_user: redshift.db_user,
            secret_arn: redshift.secret_arn,
            iam_role: redshift.iam_role,
            host: endpoint.as_ref().map(|e| e.host.clone()),
            port: endpoint
                .as_ref()
                .map_or_else(default_redshift_port, |e| e.port),
            user: endpoint.map(|e| e.user),
            password: redshift.password,
            tunnel,
            fallback_to_tunnel,
            statement_timeout: redshift.statement_timeout,
            tls: redshift.tls,
            tls_ca_file: redshift.tls_ca_file,
            tls_ca_secret: redshift.tls_ca_secret,
        }
    }
}

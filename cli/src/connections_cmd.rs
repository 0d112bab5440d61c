//! `tidemark connections test [NAME] [--all]`: reach each service the configuration references
//! and report versions and latency, or exactly what failed (exit 3 when a required one fails).

use std::path::Path;

use clap::Subcommand;
use tidemark::probe::{self, Selection};

use crate::output::emit;
use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum ConnectionsCommand {
    /// Reach every source, target, bucket, secret and SSH bastion the pipelines use.
    ///
    /// Example: `tidemark connections test` or `tidemark connections test warehouse`
    Test {
        /// Only this connection (with its secrets and bastion) or this bucket.
        name: Option<String>,
        /// Also connections that no pipeline uses.
        #[arg(long)]
        all: bool,
    },
}

pub(crate) async fn run(
    command: &ConnectionsCommand,
    config: &Path,
    json: bool,
) -> Result<(), Failure> {
    let ConnectionsCommand::Test { name, all } = command;
    let services = crate::services(config).await?;
    let results = probe::probe(
        &services,
        &Selection {
            name: name.clone(),
            all: *all,
        },
    )
    .await?;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.required && !r.ok)
        .map(|r| format!("{} `{}`", kind(r.kind), r.name))
        .collect();
    let document = serde_json::json!({"checks": results, "reachable": failed.is_empty()});
    emit(json, &document, || {
        results
            .iter()
            .map(|r| {
                format!(
                    "{:<4} {:<8} {:<20} {:<32} {:>6} ms  {}{}",
                    if r.ok { "ok" } else { "FAIL" },
                    kind(r.kind),
                    r.name,
                    r.address,
                    r.latency_ms,
                    r.version
                        .as_deref()
                        .or(r.error.as_deref().map(headline))
                        .unwrap_or(if r.ok { "reachable" } else { "" }),
                    r.note
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                )
            })
            .collect()
    });
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::reported(
            3,
            anyhow::anyhow!("could not reach {}", failed.join(", ")),
        ))
    }
}

/// An error without the AWS SDK's raw response dump (`--json` keeps the whole text).
fn headline(error: &str) -> &str {
    error
        .find(" (ServiceError(")
        .map_or(error, |cut| &error[..cut])
}

fn kind(kind: probe::ServiceKind) -> &'static str {
    match kind {
        probe::ServiceKind::Mysql => "mysql",
        probe::ServiceKind::Postgres => "postgres",
        probe::ServiceKind::Redshift => "redshift",
        probe::ServiceKind::Bucket => "bucket",
        probe::ServiceKind::Secret => "secret",
        probe::ServiceKind::Tunnel => "tunnel",
    }
}

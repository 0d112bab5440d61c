//! `tidemark connections test [NAME] [--all] [--deep]`: reach each service the configuration
//! references and report versions and latency, or exactly what failed (exit 3 when a required
//! one fails); with `--deep`, check one warehouse through the real load path.

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
        /// Check warehouse NAME in depth before the first production sync: in a scratch schema
        /// it creates and drops, load every type at its limits, a JSON document with duplicate
        /// keys, a 5 MB binary value and a widened VARCHAR key through the real load path, and
        /// read every value back. Exit 3 when a check fails.
        #[arg(long, requires = "name")]
        deep: bool,
    },
}

pub(crate) async fn run(
    command: &ConnectionsCommand,
    config: &Path,
    json: bool,
) -> Result<(), Failure> {
    let ConnectionsCommand::Test { name, all, deep } = command;
    let services = crate::services(config).await?;
    if let (true, Some(name)) = (*deep, name) {
        return deep_check(&services, name, json).await;
    }
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

/// `connections test --deep NAME`: one line per check; exit 3 when one failed.
async fn deep_check(
    services: &tidemark::services::Services,
    name: &str,
    json: bool,
) -> Result<(), Failure> {
    use tidemark::deep_check::Outcome;
    let checks = tidemark::deep_check::run(services, name).await?;
    let failed = checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .count();
    let document = serde_json::json!({"checks": checks, "passed": failed == 0});
    emit(json, &document, || {
        checks
            .iter()
            .map(|check| match &check.outcome {
                Outcome::Passed => format!("passed   {}", check.name),
                Outcome::Failed(why) => format!("FAILED   {}: {why}", check.name),
                Outcome::Skipped(why) => format!("skipped  {}: {why}", check.name),
            })
            .collect()
    });
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::reported(
            3,
            anyhow::anyhow!(
                "{failed} of {} deep checks of `{name}` failed",
                checks.len()
            ),
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

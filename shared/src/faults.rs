//! The fault-injection seam: named points between side effects where a test can make the
//! process abort (no unwinding, no cleanup — like a killed Lambda) or a step fail.
//!
//! Off unless the process is started with `TIDEMARK_FAULTS` set, e.g.
//! `TIDEMARK_FAULTS=after_part_upload=abort@2,before_commit=error`: the point's action fires on its
//! Nth hit (default the first). `abort` kills the process, `error` fails the step with a
//! retryable error (the state machine retries it), `fatal` with a non-retryable one (the table
//! fails and the execution with it). Nothing else switches it on, so production never injects a fault
//! by accident; the plan is read once per process and logged at WARN when present.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Every point the code checks, in the order a sync passes them:
///
/// - `after_part_upload`: after each multipart part is sent (the upload is still open) and after
///   each data file is complete (`parquet_sink`); one counter for both.
/// - `before_chunk_manifest` / `after_chunk_manifest`: around the write of a chunk's manifest or
///   progress object (`extract::extract_chunk`).
/// - `after_deletion_files`: in `commit`, after a deletion run's key files are written and
///   before its manifest is (`deletion::write_run`).
/// - `before_commit` / `after_commit`: around the watermark update of `commit`.
/// - `before_load_commit` / `after_load_commit`: around the COMMIT of the load transaction
///   (`load::wire`); through the Data API, before the batch is submitted and when `status`
///   first sees it finished.
/// - `before_commit_load`: before `commit_load` updates the watermark.
/// - `during_cleanup_delete`: in `clean::execute`, after the data objects are deleted and
///   before the run manifests are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// `after_part_upload`.
    AfterPartUpload,
    /// `before_chunk_manifest`.
    BeforeChunkManifest,
    /// `after_chunk_manifest`.
    AfterChunkManifest,
    /// `after_deletion_files`.
    AfterDeletionFiles,
    /// `before_commit`.
    BeforeCommit,
    /// `after_commit`.
    AfterCommit,
    /// `before_load_commit`.
    BeforeLoadCommit,
    /// `after_load_commit`.
    AfterLoadCommit,
    /// `before_commit_load`.
    BeforeCommitLoad,
    /// `during_cleanup_delete`.
    DuringCleanupDelete,
}

impl FaultPoint {
    /// Every point, in the order a sync passes them.
    pub const ALL: [FaultPoint; 10] = [
        FaultPoint::AfterPartUpload,
        FaultPoint::BeforeChunkManifest,
        FaultPoint::AfterChunkManifest,
        FaultPoint::AfterDeletionFiles,
        FaultPoint::BeforeCommit,
        FaultPoint::AfterCommit,
        FaultPoint::BeforeLoadCommit,
        FaultPoint::AfterLoadCommit,
        FaultPoint::BeforeCommitLoad,
        FaultPoint::DuringCleanupDelete,
    ];

    /// The name a `TIDEMARK_FAULTS` plan uses.
    pub const fn name(self) -> &'static str {
        match self {
            FaultPoint::AfterPartUpload => "after_part_upload",
            FaultPoint::BeforeChunkManifest => "before_chunk_manifest",
            FaultPoint::AfterChunkManifest => "after_chunk_manifest",
            FaultPoint::AfterDeletionFiles => "after_deletion_files",
            FaultPoint::BeforeCommit => "before_commit",
            FaultPoint::AfterCommit => "after_commit",
            FaultPoint::BeforeLoadCommit => "before_load_commit",
            FaultPoint::AfterLoadCommit => "after_load_commit",
            FaultPoint::BeforeCommitLoad => "before_commit_load",
            FaultPoint::DuringCleanupDelete => "during_cleanup_delete",
        }
    }
}

/// What a point does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// `std::process::abort()`: the process dies on the spot.
    Abort,
    /// The step returns a retryable error (the state machine retries the step).
    Error,
    /// The step returns a non-retryable error (the state machine records it with `fail`).
    Fatal,
}

#[derive(Debug)]
struct Trigger {
    action: FaultAction,
    on_hit: u64,
    hits: AtomicU64,
}

/// Parses a plan such as `after_commit=abort@2,before_load_commit=error`.
fn parse_plan(text: &str) -> std::result::Result<BTreeMap<String, Trigger>, String> {
    let mut plan = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (point, rule) = entry
            .split_once('=')
            .ok_or_else(|| format!("`{entry}`: write `point=abort` or `point=error@N`"))?;
        if !FaultPoint::ALL.iter().any(|known| known.name() == point) {
            let names: Vec<&str> = FaultPoint::ALL.iter().map(|p| p.name()).collect();
            return Err(format!(
                "`{point}` is not a fault point; points are {}",
                names.join(", ")
            ));
        }
        let (action, on_hit) = match rule.split_once('@') {
            Some((action, n)) => (
                action,
                n.parse::<u64>()
                    .map_err(|_| format!("`{entry}`: `@N` needs a number"))?,
            ),
            None => (rule, 1),
        };
        let action = match action {
            "abort" => FaultAction::Abort,
            "error" => FaultAction::Error,
            "fatal" => FaultAction::Fatal,
            other => {
                return Err(format!(
                    "`{other}`: the action is `abort`, `error` or `fatal`"
                ))
            }
        };
        plan.insert(
            point.to_owned(),
            Trigger {
                action,
                on_hit: on_hit.max(1),
                hits: AtomicU64::new(0),
            },
        );
    }
    Ok(plan)
}

fn plan() -> &'static BTreeMap<String, Trigger> {
    static PLAN: OnceLock<BTreeMap<String, Trigger>> = OnceLock::new();
    PLAN.get_or_init(|| match std::env::var("TIDEMARK_FAULTS") {
        Err(_) => BTreeMap::new(),
        Ok(text) => match parse_plan(&text) {
            Ok(plan) => {
                tracing::warn!(plan = %text, "fault injection is on (TIDEMARK_FAULTS)");
                plan
            }
            Err(message) => {
                tracing::error!(%message, "TIDEMARK_FAULTS is malformed; no fault will be injected");
                BTreeMap::new()
            }
        },
    })
}

/// Passes `point`: fires its fault if the plan says so, else does nothing.
pub fn point(point: FaultPoint) -> Result<()> {
    let name = point.name();
    let Some(trigger) = plan().get(name) else {
        return Ok(());
    };
    let hit = trigger.hits.fetch_add(1, Ordering::SeqCst) + 1;
    if hit != trigger.on_hit {
        return Ok(());
    }
    match trigger.action {
        FaultAction::Abort => {
            tracing::error!(point = name, hit, "injected fault: aborting the process");
            std::process::abort()
        }
        FaultAction::Error | FaultAction::Fatal => Err(Error::InjectedFault {
            point: name.to_owned(),
            hit,
            retryable: trigger.action == FaultAction::Error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_reject_unknown_points() {
        let plan = parse_plan("after_commit=abort@2, before_commit=error").unwrap();
        assert_eq!(plan["after_commit"].action, FaultAction::Abort);
        assert_eq!(plan["after_commit"].on_hit, 2);
        assert_eq!(plan["before_commit"].on_hit, 1);
        assert_eq!(
            parse_plan("after_commit=fatal").unwrap()["after_commit"].action,
            FaultAction::Fatal
        );
        assert!(parse_plan("nowhere=abort")
            .unwrap_err()
            .contains("not a fault point"));
        assert!(parse_plan("after_commit=explode").is_err());
        assert!(parse_plan("after_commit").is_err());
        assert!(parse_plan("after_commit=error@x").is_err());
    }

    #[test]
    fn without_a_plan_no_point_fires() {
        // The test process does not set TIDEMARK_FAULTS.
        for each in FaultPoint::ALL {
            assert!(point(each).is_ok());
        }
    }
}

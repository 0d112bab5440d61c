//! The per-table state in S3: the watermark record, its compare-and-swap store with history, the
//! lease, and the state transitions of a run and of an operator's edits.
//!
//! Every write is conditional (`If-Match` the ETag read, `If-None-Match: *` to create) and keeps
//! the previous version under the history prefix first. A lost race re-reads and re-applies the
//! edit, so an edit's checks (is the lease free? was this run committed already?) always run on
//! the latest state. Counts move only by run id: committing or loading a run twice changes nothing.

use std::cmp::Ordering;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cursor::{Cursor, CursorTimestamp};
use crate::error::{Error, Result};
use crate::manifest::RunManifest;
use crate::naming::{RunId, StorageLayout, TableId};
use crate::quality::{Severity, Verdict};
use crate::storage::{Bucket, PutOutcome};

/// Version of the watermark format written by this code.
pub const WATERMARK_FORMAT_VERSION: u32 = 1;

/// How many times a conditional write is re-tried against fresh state before giving up.
const CAS_ATTEMPTS: u32 = 8;

/// The state of one (pipeline, source table, target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watermark {
    /// Format version.
    pub version: u32,
    /// Pipeline name.
    pub pipeline: String,
    /// Source table, `db.table`.
    pub table: String,
    /// Target table name.
    pub target: String,
    /// Where extraction stands.
    pub extract: ExtractState,
    /// Where loading stands.
    pub load: LoadState,
    /// Runs extracted and committed but not yet loaded, oldest first.
    pub pending_runs: Vec<PendingRun>,
    /// Rows counted by run id, never per batch.
    pub totals: Totals,
    /// The run that may change this table now, if any.
    pub lease: Option<Lease>,
    /// The last operator edit.
    pub manual: Option<ManualEdit>,
    /// When the table's keys were last reconciled with the source to find deleted rows
    /// (`deletes: hard | soft`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<DateTime<Utc>>,
    /// When this version was written.
    pub updated_at: DateTime<Utc>,
}

/// Status of a stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Never ran, or reset.
    #[default]
    Idle,
    /// A run is in this stage.
    Running,
    /// The last run finished this stage.
    Succeeded,
    /// The last run failed in this stage.
    Failed,
}

impl std::fmt::Display for StageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StageStatus::Idle => "idle",
            StageStatus::Running => "running",
            StageStatus::Succeeded => "succeeded",
            StageStatus::Failed => "failed",
        })
    }
}

/// Extraction state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractState {
    /// The position up to which rows have been extracted and committed.
    pub cursor: Cursor,
    /// Status of the last run's extraction.
    pub status: StageStatus,
    /// The last run that began.
    pub last_run_id: Option<RunId>,
    /// The last run whose extraction was committed.
    pub last_committed_run_id: Option<RunId>,
    /// When the last run began.
    pub started_at: Option<DateTime<Utc>>,
    /// When the last run's extraction was committed or failed.
    pub finished_at: Option<DateTime<Utc>>,
    /// The last extraction error.
    pub error: Option<String>,
}

/// Load state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadState {
    /// Status of the last load.
    pub status: StageStatus,
    /// The last run loaded into the target.
    pub last_loaded_run_id: Option<RunId>,
    /// When the last load started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the last load finished or failed.
    pub finished_at: Option<DateTime<Utc>>,
    /// The last load error.
    pub error: Option<String>,
}

/// A committed run waiting to be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingRun {
    /// The run.
    pub run_id: RunId,
    /// Its run manifest's key.
    pub manifest_key: String,
    /// Rows in its files.
    pub rows: u64,
    /// Bytes in its files.
    pub bytes: u64,
    /// Number of files.
    pub files: u64,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
    /// Set when a `fail` data quality check failed: neither this run nor any later one is
    /// loaded until an operator releases or drops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Quarantine>,
}

/// Why a run is held back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantine {
    /// The `fail` checks that failed.
    pub failed_checks: Vec<String>,
}

/// Counts, each moved once per run id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Rows in committed runs (a deletion run's keys included: the ledger stages them too).
    pub rows_extracted: u64,
    /// Rows the target's loads reported.
    pub rows_loaded: u64,
    /// Committed runs.
    pub runs_committed: u64,
    /// Loaded runs.
    pub runs_loaded: u64,
}

/// Who may change the table now, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// The run holding it.
    pub owner: RunId,
    /// When it was taken.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses by itself.
    pub expires_at: DateTime<Utc>,
    /// For a local run: the host and process holding it.
    #[serde(default)]
    pub local: Option<LocalOwner>,
    /// For a run of a deployed state machine: its execution (ARN), so that the execution's end
    /// can release the lease even when the execution could not run `fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
}

/// A local process holding a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalOwner {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

/// The last operator edit, kept on the watermark (every edit is in the audit record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualEdit {
    /// Who asked: the caller's AWS identity (CLI) or the payload's `requested_by` (Lambda).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Which action.
    pub action: String,
    /// What changed.
    pub detail: String,
    /// Why, as the requester said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ManualEdit {
    /// `requester`'s `action` at `at`, which did `detail`.
    pub fn new(
        requester: &crate::audit::Requester,
        action: &str,
        detail: String,
        at: DateTime<Utc>,
    ) -> Self {
        ManualEdit {
            by: requester.requested_by.clone(),
            at,
            action: action.to_owned(),
            detail,
            reason: requester.reason.clone(),
        }
    }
}

impl Watermark {
    /// The state of a table never synced.
    pub fn new(pipeline: &str, table: &TableId, target: &str, now: DateTime<Utc>) -> Self {
        Watermark {
            version: WATERMARK_FORMAT_VERSION,
            pipeline: pipeline.to_owned(),
            table: table.to_string(),
            target: target.to_owned(),
            extract: ExtractState::default(),
            load: LoadState::default(),
            pending_runs: Vec::new(),
            totals: Totals::default(),
            lease: None,
            manual: None,
            reconciled_at: None,
            updated_at: now,
        }
    }

    /// Takes the lease for `run_id`, or fails with `LeaseHeld` while another live run holds it.
    /// An expired lease is taken over; so is a lease of a local process on this host that is gone.
    pub fn take_lease(
        &mut self,
        run_id: &RunId,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
        local: Option<LocalOwner>,
        process_is_alive: impl Fn(u32) -> bool,
    ) -> Result<()> {
        if let Some(held) = &self.lease {
            let expired = held.expires_at <= now;
            let owner_process_gone = match (&held.local, &local) {
                (Some(holder), Some(me)) => holder.host == me.host && !process_is_alive(holder.pid),
                _ => false,
            };
            if held.owner != *run_id && !expired && !owner_process_gone {
                return Err(Error::LeaseHeld {
                    table: self.table.clone(),
                    owner: held.owner.to_string(),
                    expires_at: held.expires_at.to_rfc3339(),
                });
            }
        }
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(6));
        self.lease = Some(Lease {
            owner: run_id.clone(),
            acquired_at: now,
            expires_at: now + ttl,
            local,
            execution: None,
        });
        Ok(())
    }

    /// Records which state machine execution runs the lease's holder.
    pub fn record_lease_execution(&mut self, execution: Option<String>) {
        if let Some(lease) = &mut self.lease {
            lease.execution = execution;
        }
    }

    /// Releases the lease if a run of `execution` holds it, after that execution ended with
    /// `status` (FAILED, TIMED_OUT, ABORTED) without running `fail`: the stages it left running
    /// are marked failed. Returns what was released, or `None` when nothing of it was held.
    pub fn release_execution(
        &mut self,
        execution: &str,
        status: &str,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let lease = self
            .lease
            .take_if(|lease| lease.execution.as_deref() == Some(execution))?;
        let error = format!(
            "the state machine execution `{execution}` ended {status} without recording this run's failure; its lease was released when it ended"
        );
        for stage in [Stage::Extract, Stage::Load] {
            let running = match stage {
                Stage::Extract => self.extract.status,
                Stage::Load => self.load.status,
            } == StageStatus::Running;
            if running {
                self.apply_failure(stage, &error, now);
            }
        }
        Some(format!(
            "released the lease of run `{}` (execution ended {status})",
            lease.owner
        ))
    }

    /// Releases the lease if `run_id` holds it (a lease taken over by another run is left alone).
    pub fn release_lease(&mut self, run_id: &RunId) {
        if self
            .lease
            .as_ref()
            .is_some_and(|lease| lease.owner == *run_id)
        {
            self.lease = None;
        }
    }

    /// Fails unless `run_id` holds the lease: a run whose lease was taken over must stop.
    pub fn require_lease(&self, run_id: &RunId) -> Result<()> {
        match &self.lease {
            Some(lease) if lease.owner == *run_id => Ok(()),
            Some(lease) => Err(Error::LeaseHeld {
                table: self.table.clone(),
                owner: lease.owner.to_string(),
                expires_at: lease.expires_at.to_rfc3339(),
            }),
            None => Err(Error::LeaseLost {
                table: self.table.clone(),
                run_id: run_id.to_string(),
            }),
        }
    }

    /// The pending runs a load may take: every one before the first quarantined run.
    pub fn loadable_runs(&self) -> &[PendingRun] {
        let held = self
            .pending_runs
            .iter()
            .position(|run| run.quarantine.is_some())
            .unwrap_or(self.pending_runs.len());
        &self.pending_runs[..held]
    }

    /// The first quarantined pending run, which holds back itself and every later run.
    pub fn first_quarantined(&self) -> Option<&PendingRun> {
        self.pending_runs
            .iter()
            .find(|run| run.quarantine.is_some())
    }

    /// Releases quarantined run `run_id`: it loads as it is, in its place, with the next load
    /// (a run without rows has nothing to load and leaves the pending list).
    pub fn release_quarantine(&mut self, run_id: &RunId) -> Result<String> {
        let index = self.quarantined_index(run_id)?;
        let run = &mut self.pending_runs[index];
        let checks = run
            .quarantine
            .take()
            .map(|q| q.failed_checks.join(", "))
            .unwrap_or_default();
        let rows = run.rows;
        if rows == 0 {
            self.pending_runs.remove(index);
        }
        let held = self.first_quarantined().map(|run| run.run_id.to_string());
        Ok(format!(
            "released run `{run_id}` ({rows} rows; failed {checks}): it loads as it is with the next load{}",
            match held {
                Some(other) => format!(", after which run `{other}` is still quarantined"),
                None => String::new(),
            }
        ))
    }

    /// Drops quarantined run `run_id` and every later pending run (they came after its rows),
    /// and moves the cursor back to where it began (`start`), so that the next run extracts
    /// them all again from the source. Refused while a run holds the lease: a run extracting
    /// now would move the cursor past the rows again.
    pub fn drop_quarantined(
        &mut self,
        run_id: &RunId,
        start: Cursor,
        now: DateTime<Utc>,
    ) -> Result<String> {
        if let Some(lease) = self.lease.as_ref().filter(|lease| lease.expires_at > now) {
            return Err(Error::LeaseHeld {
                table: self.table.clone(),
                owner: lease.owner.to_string(),
                expires_at: lease.expires_at.to_rfc3339(),
            });
        }
        let index = self.quarantined_index(run_id)?;
        let dropped: Vec<PendingRun> = self.pending_runs.drain(index..).collect();
        let rows: u64 = dropped.iter().map(|run| run.rows).sum();
        // Their rows are counted again when they are extracted again.
        self.totals.rows_extracted = self.totals.rows_extracted.saturating_sub(rows);
        self.totals.runs_committed = self
            .totals
            .runs_committed
            .saturating_sub(dropped.len() as u64);
        let before = std::mem::replace(&mut self.extract.cursor, start);
        Ok(format!(
            "dropped run(s) {} ({rows} rows); cursor {before} -> {}: the next sync extracts their rows again from the source",
            dropped
                .iter()
                .map(|run| format!("`{}`", run.run_id))
                .collect::<Vec<_>>()
                .join(", "),
            self.extract.cursor
        ))
    }

    /// Pending run `run_id`, which must be quarantined; else why not.
    pub fn quarantined_run(&self, run_id: &RunId) -> Result<&PendingRun> {
        self.quarantined_index(run_id)
            .map(|index| &self.pending_runs[index])
    }

    fn quarantined_index(&self, run_id: &RunId) -> Result<usize> {
        match self.pending_runs.iter().position(|run| run.run_id == *run_id) {
            Some(index) if self.pending_runs[index].quarantine.is_some() => Ok(index),
            Some(_) => Err(Error::InvalidRequest(format!(
                "run `{run_id}` of `{}` is pending but not quarantined: it loads with the next sync",
                self.table
            ))),
            None => Err(Error::InvalidRequest(format!(
                "run `{run_id}` is not a pending run of `{}`{}; `tidemark quality report -t {}` lists its runs",
                self.table,
                match self.first_quarantined() {
                    Some(run) => format!(" (the quarantined run is `{}`)", run.run_id),
                    None => " (no run is quarantined)".to_owned(),
                },
                self.table
            ))),
        }
    }

    /// Records that `run_id` began extracting.
    pub fn mark_extract_started(&mut self, run_id: &RunId, now: DateTime<Utc>) {
        self.extract.status = StageStatus::Running;
        self.extract.last_run_id = Some(run_id.clone());
        self.extract.started_at = Some(now);
        self.extract.finished_at = None;
        self.extract.error = None;
    }

    /// Whether `run_id` has been committed already (pending or older than the last commit).
    pub fn is_committed(&self, run_id: &RunId) -> bool {
        self.pending_runs.iter().any(|run| run.run_id == *run_id)
            || self
                .extract
                .last_committed_run_id
                .as_ref()
                .is_some_and(|last| run_id <= last)
    }

    /// Applies a committed run: advances the cursor (never backwards, never past the ceiling),
    /// queues the run for loading and counts its rows — once per run id.
    pub fn apply_commit(
        &mut self,
        manifest: &RunManifest,
        manifest_key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        if self.is_committed(&manifest.run_id) {
            return Ok(false);
        }
        // A repair run's rows are the listed keys' current versions: where the cursor stands
        // says nothing about them, and moving it past them would skip rows not yet read.
        if let Some(max) = manifest.max_cursor.as_ref().filter(|_| !manifest.repair) {
            if !manifest.ceiling.contains(max) {
                return Err(Error::internal(format!(
                    "run `{}` read past its ceiling ({max:?} > {:?}); nothing was committed",
                    manifest.run_id, manifest.ceiling
                )));
            }
            if max.compare(&self.extract.cursor) == Ordering::Greater {
                self.extract.cursor = max.clone();
            }
        }
        let quarantine = manifest
            .quality
            .as_ref()
            .filter(|quality| quality.verdict == Verdict::Quarantined)
            .map(|quality| Quarantine {
                failed_checks: quality.failed(Severity::Fail),
            });
        // A quarantined run is kept even without rows (a `row_count` or `freshness` failure):
        // it holds back the later runs until an operator acts.
        if manifest.rows > 0 || quarantine.is_some() {
            self.queue(manifest, manifest_key, now, quarantine);
        }
        self.totals.runs_committed += 1;
        self.extract.status = StageStatus::Succeeded;
        self.extract.last_committed_run_id = Some(manifest.run_id.clone());
        self.extract.finished_at = Some(now);
        self.extract.error = None;
        Ok(true)
    }

    /// Queues a deletion run committed with the data run just applied (its keys found gone by a
    /// reconciliation at `now`): loaded after it, in the same order. Moves no cursor. Its keys
    /// count as rows extracted, as the ledger counts them staged, so that the two still agree.
    pub fn queue_deletion(
        &mut self,
        manifest: &RunManifest,
        manifest_key: &str,
        now: DateTime<Utc>,
    ) {
        self.queue(manifest, manifest_key, now, None);
        self.totals.runs_committed += 1;
        self.extract.last_committed_run_id = Some(manifest.run_id.clone());
    }

    /// Adds a committed run to `pending_runs` and counts its rows as extracted.
    fn queue(
        &mut self,
        manifest: &RunManifest,
        manifest_key: &str,
        now: DateTime<Utc>,
        quarantine: Option<Quarantine>,
    ) {
        self.pending_runs.push(PendingRun {
            run_id: manifest.run_id.clone(),
            manifest_key: manifest_key.to_owned(),
            rows: manifest.rows,
            bytes: manifest.bytes,
            files: manifest.files.len() as u64,
            committed_at: now,
            quarantine,
        });
        self.totals.rows_extracted += manifest.rows;
    }

    /// Applies a finished load of `loaded` runs: they leave `pending_runs` and their rows are
    /// counted, each run once.
    pub fn apply_load(&mut self, loaded: &[LoadedRun], now: DateTime<Utc>) {
        for run in loaded {
            let already = self
                .load
                .last_loaded_run_id
                .as_ref()
                .is_some_and(|last| run.run_id <= *last);
            self.pending_runs
                .retain(|pending| pending.run_id != run.run_id);
            if already {
                continue;
            }
            self.totals.rows_loaded += run.rows_loaded;
            self.totals.runs_loaded += 1;
            self.load.last_loaded_run_id = Some(run.run_id.clone());
        }
        self.load.status = StageStatus::Succeeded;
        self.load.finished_at = Some(now);
        self.load.error = None;
    }

    /// Records a failure of `stage`; the cursor does not move.
    pub fn apply_failure(&mut self, stage: Stage, error: &str, now: DateTime<Utc>) {
        let state = match stage {
            Stage::Extract => (
                &mut self.extract.status,
                &mut self.extract.error,
                &mut self.extract.finished_at,
            ),
            Stage::Load => (
                &mut self.load.status,
                &mut self.load.error,
                &mut self.load.finished_at,
            ),
        };
        *state.0 = StageStatus::Failed;
        *state.1 = Some(error.to_owned());
        *state.2 = Some(now);
    }
}

/// How `set_count` changes a total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountMode {
    /// The total becomes the given number.
    Absolute,
    /// The given number (may be negative) is added to the total.
    Additive,
}

/// Which total `set_count` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountField {
    /// `totals.rows_extracted`.
    RowsExtracted,
    /// `totals.rows_loaded`.
    RowsLoaded,
}

impl Watermark {
    /// Moves the cursor by hand. A field not given is kept, not cleared. The timestamp is
    /// validated and normalized to microseconds; the id must be an integer.
    pub fn set_cursor(
        &mut self,
        timestamp: Option<&str>,
        key: Option<Vec<String>>,
    ) -> Result<String> {
        if timestamp.is_none() && key.is_none() {
            return Err(Error::InvalidRequest(
                "give a timestamp, a key, or both".to_owned(),
            ));
        }
        let before = self.extract.cursor.clone();
        if let Some(timestamp) = timestamp {
            self.extract.cursor.timestamp = Some(CursorTimestamp::parse_operator_input(timestamp)?);
            // A new timestamp starts before every key of that instant: keeping the old key would
            // skip the rows at exactly that timestamp with a lower key.
            self.extract.cursor.key = Vec::new();
        }
        if let Some(key) = key {
            self.extract.cursor.key = key;
        }
        let detail = format!("cursor {before} -> {}", self.extract.cursor);
        Ok(detail)
    }

    /// Moves the cursor back to the start. Pending runs stay (they are still loaded first)
    /// unless `drop_pending`. Returns what the next sync will do.
    pub fn reset(&mut self, drop_pending: bool) -> String {
        let dropped = if drop_pending {
            std::mem::take(&mut self.pending_runs).len()
        } else {
            0
        };
        self.extract.cursor = Cursor::default();
        self.extract.status = StageStatus::Idle;
        self.extract.error = None;
        let kept = self.pending_runs.len();
        let detail = format!(
            "cursor reset to the start; the next sync re-reads the whole table{}{}",
            if kept > 0 {
                format!(", after loading the {kept} pending run(s) first")
            } else {
                String::new()
            },
            if dropped > 0 {
                format!("; {dropped} pending run(s) dropped and will never be loaded (their files stay in S3 until s3clean)")
            } else {
                String::new()
            }
        );
        detail
    }

    /// Releases the lease whoever holds it.
    pub fn unlock(&mut self) -> String {
        let detail = match self.lease.take() {
            Some(lease) => format!(
                "released the lease of run `{}` (taken {}, expiring {})",
                lease.owner, lease.acquired_at, lease.expires_at
            ),
            None => "no lease was held".to_owned(),
        };
        detail
    }

    /// Corrects a total by hand.
    pub fn set_count(&mut self, field: CountField, mode: CountMode, value: i64) -> Result<String> {
        let total = match field {
            CountField::RowsExtracted => &mut self.totals.rows_extracted,
            CountField::RowsLoaded => &mut self.totals.rows_loaded,
        };
        let before = *total;
        let after = match mode {
            CountMode::Absolute => u64::try_from(value).ok(),
            CountMode::Additive => before.checked_add_signed(value),
        }
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "a count cannot become negative ({before} with {mode:?} {value})"
            ))
        })?;
        *total = after;
        let detail = format!("{field:?} {before} -> {after} ({mode:?} {value})");
        Ok(detail)
    }
}

/// A run the target reports as loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadedRun {
    /// The run.
    pub run_id: RunId,
    /// Rows the load inserted for it (from the load ledger).
    pub rows_loaded: u64,
}

/// The two stages that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Begin, plan, extract or commit.
    Extract,
    /// Load or commit_load.
    Load,
}

/// A watermark as read, with the ETag a write must match.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// The record.
    pub record: Watermark,
    /// Its ETag.
    pub etag: String,
}

/// One kept earlier version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The version's name, for `restore`.
    pub version: String,
    /// Its size.
    pub bytes: u64,
    /// When it was replaced, seconds since the epoch.
    pub replaced_at_epoch_seconds: i64,
    /// What the version says, so that `restore` is not guesswork; `None` when it cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<VersionSummary>,
}

/// The parts of a kept watermark version an operator chooses a `restore` by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSummary {
    /// Its extraction cursor.
    pub cursor: Cursor,
    /// Its extraction status.
    pub extract_status: StageStatus,
    /// Its load status.
    pub load_status: StageStatus,
    /// Runs it lists as pending.
    pub pending_runs: usize,
    /// The run that held the lease in it (a version taken mid-run); `restore` never brings a
    /// lease back.
    pub lease_owner: Option<RunId>,
}

impl VersionSummary {
    fn of(watermark: &Watermark) -> Self {
        VersionSummary {
            cursor: watermark.extract.cursor.clone(),
            extract_status: watermark.extract.status,
            load_status: watermark.load.status,
            pending_runs: watermark.pending_runs.len(),
            lease_owner: watermark.lease.as_ref().map(|lease| lease.owner.clone()),
        }
    }
}

/// Reads and writes watermarks of one pipeline's bucket.
#[derive(Debug, Clone)]
pub struct WatermarkStore {
    bucket: Bucket,
    layout: StorageLayout,
    history_keep: usize,
    /// Versions younger than this are kept whatever their number.
    history_age: std::time::Duration,
}

impl WatermarkStore {
    /// A store under `layout` in `bucket` that keeps `history_keep` earlier versions per table
    /// (and, with [`WatermarkStore::keeping_for`], every version younger than an age).
    pub fn new(bucket: Bucket, layout: StorageLayout, history_keep: usize) -> Self {
        WatermarkStore {
            bucket,
            layout,
            history_keep,
            history_age: std::time::Duration::ZERO,
        }
    }

    /// This store, keeping every earlier version younger than `age` too: an hourly schedule
    /// writes 24 versions a day, so a count alone keeps too little to undo last week's mistake.
    pub fn keeping_for(mut self, age: std::time::Duration) -> Self {
        self.history_age = age;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The key layout.
    pub fn layout(&self) -> &StorageLayout {
        &self.layout
    }

    /// The table's watermark, or `None` before its first run.
    pub async fn read(&self, pipeline: &str, table: &TableId) -> Result<Option<Versioned>> {
        let key = self.layout.watermark_key(pipeline, table);
        match self.bucket.get(&key).await? {
            None => Ok(None),
            Some(object) => Ok(Some(Versioned {
                record: parse_watermark(&object.body, &self.bucket.uri(&key), table)?,
                etag: object.etag,
            })),
        }
    }

    /// Applies `edit` to the latest state and writes it by compare-and-swap, keeping the previous
    /// version in history. On a lost race the edit runs again on the new state. `tag` names the
    /// writer in the history key (a run id, or `manual`).
    pub async fn update<T>(
        &self,
        pipeline: &str,
        table: &TableId,
        target: &str,
        tag: &RunId,
        now: DateTime<Utc>,
        mut edit: impl FnMut(&mut Watermark) -> Result<T>,
    ) -> Result<(Watermark, T)> {
        let key = self.layout.watermark_key(pipeline, table);
        let uri = self.bucket.uri(&key);
        for _ in 0..CAS_ATTEMPTS {
            let current = self.bucket.get(&key).await?;
            let mut record = match &current {
                Some(object) => parse_watermark(&object.body, &uri, table)?,
                None => Watermark::new(pipeline, table, target, now),
            };
            let outcome = edit(&mut record)?;
            record.updated_at = now;
            let body =
                Bytes::from(serde_json::to_vec_pretty(&record).map_err(|err| {
                    Error::internal(format!("cannot encode the watermark: {err}"))
                })?);
            let written = match &current {
                Some(previous) => {
                    self.keep_in_history(pipeline, table, tag, now, previous.body.clone())
                        .await?;
                    self.bucket.put_if_match(&key, body, &previous.etag).await?
                }
                None => self.bucket.put_if_absent(&key, body).await?,
            };
            if let PutOutcome::Written(_) = written {
                self.prune_history(pipeline, table).await?;
                return Ok((record, outcome));
            }
        }
        Err(Error::ConcurrentUpdate {
            uri,
            attempts: CAS_ATTEMPTS,
        })
    }

    async fn keep_in_history(
        &self,
        pipeline: &str,
        table: &TableId,
        tag: &RunId,
        now: DateTime<Utc>,
        previous: Bytes,
    ) -> Result<()> {
        let stamp = now.format("%Y%m%dT%H%M%S%6fZ").to_string();
        let key = self
            .layout
            .watermark_history_key(pipeline, table, &stamp, tag);
        self.bucket.put(&key, previous).await?;
        Ok(())
    }

    async fn prune_history(&self, pipeline: &str, table: &TableId) -> Result<()> {
        let kept = self
            .bucket
            .list(&self.layout.watermark_history_prefix(pipeline, table))
            .await?;
        if kept.len() > self.history_keep {
            let excess = kept.len() - self.history_keep;
            let horizon = Utc::now().timestamp()
                - i64::try_from(self.history_age.as_secs()).unwrap_or(i64::MAX);
            // Oldest first: beyond the newest `history_keep`, only versions older than the age go.
            let expired: Vec<String> = kept
                .into_iter()
                .take(excess)
                .filter(|o| o.last_modified_epoch_seconds <= horizon)
                .map(|o| o.key)
                .collect();
            if !expired.is_empty() {
                self.bucket.delete_many(&expired).await?;
            }
        }
        Ok(())
    }

    /// The kept earlier versions, oldest first.
    pub async fn history(&self, pipeline: &str, table: &TableId) -> Result<Vec<HistoryEntry>> {
        let prefix = self.layout.watermark_history_prefix(pipeline, table);
        let mut entries = Vec::new();
        for object in self.bucket.list(&prefix).await? {
            let summary = self
                .bucket
                .get(&object.key)
                .await?
                .and_then(|stored| {
                    parse_watermark(&stored.body, &self.bucket.uri(&object.key), table).ok()
                })
                .map(|watermark| VersionSummary::of(&watermark));
            entries.push(HistoryEntry {
                version: object
                    .key
                    .strip_prefix(&prefix)
                    .unwrap_or(&object.key)
                    .trim_end_matches(".json")
                    .to_owned(),
                bytes: object.size,
                replaced_at_epoch_seconds: object.last_modified_epoch_seconds,
                summary,
            });
        }
        Ok(entries)
    }

    /// Puts a kept version back as the current watermark (a compare-and-swap write itself; the
    /// current version, even a corrupt one, is kept in history first), marked as `edit`.
    pub async fn restore(
        &self,
        pipeline: &str,
        table: &TableId,
        version: &str,
        edit: ManualEdit,
        now: DateTime<Utc>,
    ) -> Result<Watermark> {
        let history_prefix = self.layout.watermark_history_prefix(pipeline, table);
        let valid_version = !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_version {
            return Err(Error::InvalidRequest(format!(
                "`{version}` is not a version name; `tidemark watermark history -t {table}` lists them"
            )));
        }
        let history_key = format!("{history_prefix}{version}.json");
        let Some(saved) = self.bucket.get(&history_key).await? else {
            return Err(Error::InvalidRequest(format!(
                "no saved version `{version}` of `{table}`; `tidemark watermark history -t {table}` lists them"
            )));
        };
        let restored = parse_watermark(&saved.body, &self.bucket.uri(&history_key), table)?;
        let key = self.layout.watermark_key(pipeline, table);
        let manual = RunId::parse("restore").map_err(|err| Error::internal(err.to_string()))?;
        for _ in 0..CAS_ATTEMPTS {
            let current = self.bucket.get(&key).await?;
            let mut record = restored.clone();
            // The lease is about now, not about the saved version: a version saved mid-run must
            // not bring back that run's lease, and a run holding the table now keeps it — and
            // is waited for, since restoring under it would be overwritten or overwrite it.
            let current_lease = current
                .as_ref()
                .and_then(|c| parse_watermark(&c.body, &self.bucket.uri(&key), table).ok())
                .and_then(|w| w.lease);
            if let Some(lease) = current_lease.filter(|l| l.expires_at > now) {
                return Err(Error::LeaseHeld {
                    table: table.to_string(),
                    owner: lease.owner.to_string(),
                    expires_at: lease.expires_at.to_rfc3339(),
                });
            }
            record.lease = None;
            record.updated_at = now;
            record.manual = Some(edit.clone());
            let body =
                Bytes::from(serde_json::to_vec_pretty(&record).map_err(|err| {
                    Error::internal(format!("cannot encode the watermark: {err}"))
                })?);
            let written = match current {
                Some(previous) => {
                    self.keep_in_history(pipeline, table, &manual, now, previous.body)
                        .await?;
                    self.bucket.put_if_match(&key, body, &previous.etag).await?
                }
                None => self.bucket.put_if_absent(&key, body).await?,
            };
            if let PutOutcome::Written(_) = written {
                return Ok(record);
            }
        }
        Err(Error::ConcurrentUpdate {
            uri: self.bucket.uri(&key),
            attempts: CAS_ATTEMPTS,
        })
    }

    /// Every watermark of a pipeline, by table.
    pub async fn list(&self, pipeline: &str) -> Result<Vec<Watermark>> {
        let prefix = self.layout.pipeline_watermarks_prefix(pipeline);
        let mut records = Vec::new();
        for object in self.bucket.list(&prefix).await? {
            let Some(rest) = object.key.strip_prefix(&prefix) else {
                continue;
            };
            let Some((database, file)) = rest.split_once('/') else {
                continue;
            };
            let Some(table_name) = file.strip_suffix(".json").filter(|t| !t.contains('/')) else {
                continue;
            };
            let table = TableId::parse(&format!("{database}.{table_name}"))?;
            if let Some(versioned) = self.read(pipeline, &table).await? {
                records.push(versioned.record);
            }
        }
        Ok(records)
    }
}

fn parse_watermark(body: &[u8], uri: &str, table: &TableId) -> Result<Watermark> {
    let record: Watermark = serde_json::from_slice(body).map_err(|err| Error::Corrupt {
        uri: uri.to_owned(),
        reason: format!("it is not a valid watermark ({err})"),
        fix: format!(
            "`tidemark watermark history -t {table}` lists the saved versions and `tidemark watermark restore -t {table} --version V` puts one back"
        ),
    })?;
    if record.version != WATERMARK_FORMAT_VERSION {
        return Err(Error::Corrupt {
            uri: uri.to_owned(),
            reason: format!(
                "it has format version {} but this tidemark reads version {WATERMARK_FORMAT_VERSION}",
                record.version
            ),
            fix: "use the tidemark version that wrote it, or restore an earlier version".to_owned(),
        });
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::Ceiling;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn run(n: u64) -> RunId {
        RunId::new(
            at("2026-11-27T00:00:00Z") + chrono::Duration::seconds(n as i64),
            n,
        )
    }

    fn table() -> TableId {
        TableId::parse("shop.orders").unwrap()
    }

    fn one_column_schema() -> crate::schema::TableSchema {
        let id = crate::schema::SourceColumn {
            name: "id".into(),
            data_type: "bigint".into(),
            column_type: "bigint(20)".into(),
            ..Default::default()
        };
        crate::schema::TableSchema::from_source_columns(
            &TableId::parse("shop.orders").unwrap(),
            vec![id],
            vec!["id".into()],
            &Default::default(),
        )
        .unwrap()
    }

    fn manifest(run_id: RunId, rows: u64, max_ts: &str, ceiling: &str) -> RunManifest {
        RunManifest {
            version: 1,
            pipeline: "p".into(),
            table: "shop.orders".into(),
            target: "orders".into(),
            run_id,
            strategy: crate::config::CdcStrategy::Hybrid,
            load_mode: crate::config::LoadMode::Merge,
            start_cursor: Cursor::default(),
            ceiling: Ceiling {
                timestamp: Some(ceiling.into()),
                id: None,
            },
            max_cursor: Some(Cursor {
                timestamp: Some(max_ts.into()),
                key: vec!["7".into()],
            }),
            files: vec![],
            rows,
            bytes: 10,
            zero_dates_nulled: 0,
            oversize_truncated: 0,
            oversize_nulled: 0,
            schema_fingerprint: "f".into(),
            schema: one_column_schema(),
            committed_at: at("2026-11-27T01:00:00Z"),
            quality: None,
            repair: false,
            deletion: false,
        }
    }

    /// `manifest` with the verdict `quarantined` for a failed `not_null(v)`.
    fn quarantined(run_id: RunId, rows: u64, max_ts: &str) -> RunManifest {
        use crate::quality::{CheckCount, CheckOutcome, RunQuality, Severity, Verdict};
        RunManifest {
            quality: Some(RunQuality {
                verdict: Verdict::Quarantined,
                checks: vec![CheckOutcome {
                    count: CheckCount {
                        check: "not_null(v)".into(),
                        rows_checked: rows,
                        failures: 1,
                        examples: vec!["7".into()],
                    },
                    severity: Severity::Fail,
                    detail: None,
                }],
            }),
            ..manifest(run_id, rows, max_ts, "2026-11-27 00:00:00.000000")
        }
    }

    /// A watermark with runs 1 (3 rows), 2 (4 rows, quarantined) and 3 (5 rows) pending.
    fn three_runs_the_second_quarantined(now: DateTime<Utc>) -> Watermark {
        let mut w = Watermark::new("p", &table(), "orders", now);
        let ceiling = "2026-11-27 00:00:00.000000";
        for (n, rows, at) in [(1, 3, "01"), (2, 4, "02"), (3, 5, "03")] {
            let max = format!("2026-11-26 {at}:00:00.000000");
            let committed = match n {
                2 => quarantined(run(n), rows, &max),
                _ => manifest(run(n), rows, &max, ceiling),
            };
            w.apply_commit(&committed, &format!("k{n}"), now).unwrap();
        }
        w
    }

    #[test]
    fn a_quarantined_run_holds_back_itself_and_every_later_run() {
        let now = at("2026-11-27T01:00:00Z");
        let mut w = three_runs_the_second_quarantined(now);
        // An empty quarantined run (a `row_count` failure) is kept too.
        w.apply_commit(
            &quarantined(run(4), 0, "2026-11-26 03:00:00.000000"),
            "k4",
            now,
        )
        .unwrap();
        let loadable: Vec<&RunId> = w.loadable_runs().iter().map(|r| &r.run_id).collect();
        assert_eq!(loadable, [&run(1)]);
        assert_eq!(w.first_quarantined().map(|r| &r.run_id), Some(&run(2)));
        assert!(
            w.release_quarantine(&run(1)).is_err(),
            "run 1 is not quarantined"
        );
        assert!(w
            .release_quarantine(&run(9))
            .unwrap_err()
            .to_string()
            .contains("`20261127T000002"));

        let released = w.release_quarantine(&run(2)).unwrap();
        assert!(
            released.contains(&format!("run `{}` is still quarantined", run(4))),
            "{released}"
        );
        let loadable: Vec<&RunId> = w.loadable_runs().iter().map(|r| &r.run_id).collect();
        assert_eq!(loadable, [&run(1), &run(2), &run(3)]);
        // Releasing the empty run leaves nothing of it to load.
        w.release_quarantine(&run(4)).unwrap();
        assert_eq!(w.pending_runs.len(), 3);
        assert!(w.first_quarantined().is_none());
    }

    #[test]
    fn dropping_a_quarantined_run_rewinds_forgets_the_later_runs_and_waits_for_a_live_lease() {
        let now = at("2026-11-27T01:00:00Z");
        let mut w = three_runs_the_second_quarantined(now);
        let start = Cursor {
            timestamp: Some("2026-11-26 01:00:00.000000".into()),
            key: vec!["7".into()],
        };
        w.take_lease(
            &run(4),
            now,
            std::time::Duration::from_secs(60),
            None,
            |_| true,
        )
        .unwrap();
        let refused = w.drop_quarantined(&run(2), start.clone(), now).unwrap_err();
        assert!(matches!(refused, Error::LeaseHeld { .. }), "{refused}");
        // A lapsed lease belongs to a dead run: the drop goes ahead.
        let later = now + chrono::Duration::seconds(61);
        w.drop_quarantined(&run(2), start.clone(), later).unwrap();
        assert_eq!(
            w.pending_runs.iter().map(|r| &r.run_id).collect::<Vec<_>>(),
            [&run(1)]
        );
        assert_eq!(w.extract.cursor, start);
        assert_eq!((w.totals.rows_extracted, w.totals.runs_committed), (3, 1));
    }

    #[test]
    fn committing_a_run_twice_counts_it_once() {
        let now = at("2026-11-27T01:00:00Z");
        let mut w = Watermark::new("p", &table(), "orders", now);
        let m = manifest(
            run(1),
            5,
            "2026-11-26 00:00:00.000001",
            "2026-11-27 00:00:00.000000",
        );
        assert!(w.apply_commit(&m, "k", now).unwrap());
        assert!(!w.apply_commit(&m, "k", now).unwrap());
        assert_eq!(w.totals.rows_extracted, 5);
        assert_eq!(w.pending_runs.len(), 1);
        assert_eq!(
            w.extract.cursor.timestamp.as_deref(),
            Some("2026-11-26 00:00:00.000001")
        );
    }

    #[test]
    fn the_cursor_never_moves_backwards_or_past_the_ceiling() {
        let now = at("2026-11-27T01:00:00Z");
        let mut w = Watermark::new("p", &table(), "orders", now);
        w.apply_commit(
            &manifest(
                run(1),
                1,
                "2026-11-26 10:00:00.000000",
                "2026-11-27 00:00:00.000000",
            ),
            "k",
            now,
        )
        .unwrap();
        w.apply_commit(
            &manifest(
                run(2),
                1,
                "2026-11-26 09:00:00.000000",
                "2026-11-27 00:00:00.000000",
            ),
            "k",
            now,
        )
        .unwrap();
        assert_eq!(
            w.extract.cursor.timestamp.as_deref(),
            Some("2026-11-26 10:00:00.000000")
        );
        let beyond = manifest(
            run(3),
            1,
            "2026-11-28 00:00:00.000000",
            "2026-11-27 00:00:00.000000",
        );
        assert!(w.apply_commit(&beyond, "k", now).is_err());
    }

    #[test]
    fn loading_counts_each_run_once_and_clears_pending() {
        let now = at("2026-11-27T01:00:00Z");
        let mut w = Watermark::new("p", &table(), "orders", now);
        w.apply_commit(
            &manifest(
                run(1),
                3,
                "2026-11-26 00:00:00.000000",
                "2026-11-27 00:00:00.000000",
            ),
            "k",
            now,
        )
        .unwrap();
        let loaded = [LoadedRun {
            run_id: run(1),
            rows_loaded: 3,
        }];
        w.apply_load(&loaded, now);
        w.apply_load(&loaded, now);
        assert_eq!(w.totals.rows_loaded, 3);
        assert_eq!(w.totals.runs_loaded, 1);
        assert!(w.pending_runs.is_empty());
    }

    #[test]
    fn a_live_lease_blocks_and_an_expired_or_orphaned_one_does_not() {
        let now = at("2026-11-27T01:00:00Z");
        let ttl = std::time::Duration::from_secs(3600);
        let mut w = Watermark::new("p", &table(), "orders", now);
        let here = |pid| {
            Some(LocalOwner {
                host: "h".into(),
                pid,
            })
        };
        w.take_lease(&run(1), now, ttl, here(10), |_| true).unwrap();
        let err = w
            .take_lease(&run(2), now, ttl, here(11), |_| true)
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::LeaseHeld);
        assert!(err.to_string().contains(run(1).as_str()), "{err}");
        // The holder's process is gone on this host: take over.
        w.take_lease(&run(2), now, ttl, here(11), |pid| pid != 11 && pid != 10)
            .unwrap();
        // Expired: take over from anywhere.
        let later = now + chrono::Duration::hours(2);
        w.take_lease(&run(3), later, ttl, None, |_| true).unwrap();
        w.release_lease(&run(2));
        assert_eq!(w.lease.as_ref().unwrap().owner, run(3));
        w.release_lease(&run(3));
        assert!(w.lease.is_none());
    }
}

//! s3clean: storage retention that cannot delete what is still needed.
//!
//! This module owns the classification of every object under a table's exact prefixes (data,
//! run manifests, COPY manifests) into runs, the deletion plan built from that classification,
//! and its execution by batched DeleteObjects. The CLI (`tidemark s3clean`) and the Lambda
//! (`tidemark-cleanup`) both call it, so their rules cannot differ.
//!
//! It must never delete an object of a pending run (whatever the options), an object of the run
//! that holds the table's lease, an object it cannot attribute to a run, another table's object
//! (prefixes end with `/`, so `orders/` never matches `orders_old/`), or a watermark and its
//! history. A run's manifest goes last, and only when every other object of the run goes too,
//! so an interrupted clean never turns what is left of a loaded run into an "orphan".
//!
//! How a run is classified (first rule that holds):
//! 1. **pending** — in the watermark's `pending_runs`: waiting to be loaded; never deleted.
//! 2. **in_progress** — the owner of a live lease: extracting or loading now; never deleted.
//! 3. **loaded** — its run manifest exists and its id is at or before `load.last_loaded_run_id`:
//!    deletable by default.
//! 4. **abandoned** — its run manifest exists but it will never be loaded (dropped by
//!    `reset --drop-pending`, a zero-row run committed after the last load, a commit that lost
//!    its lease): deletable only with `orphans`, like an orphan.
//! 5. **orphaned** — no run manifest (a crashed or running extraction): deletable only with
//!    `orphans`, and only once its newest object is older than the safety age.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::naming::{RunId, TableId};
use crate::storage::ObjectInfo;
use crate::watermark::{Watermark, WatermarkStore};

/// How old an orphan's newest object must be before `orphans` may delete it, by default: long
/// enough that a running extraction (bounded by the lease TTL) is never taken.
pub const DEFAULT_ORPHAN_MIN_AGE: Duration = Duration::from_secs(24 * 3600);

/// What a run is, for retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Loaded into the target: its files are no longer needed.
    Loaded,
    /// Committed and waiting to be loaded: never deleted.
    Pending,
    /// Owned by the live lease: never deleted.
    InProgress,
    /// Committed, but will never be loaded (dropped from the pending runs).
    Abandoned,
    /// No committed run manifest: a crashed or running extraction.
    Orphaned,
}

impl RunStatus {
    /// The status as written in listings.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Loaded => "loaded",
            RunStatus::Pending => "pending",
            RunStatus::InProgress => "in_progress",
            RunStatus::Abandoned => "abandoned",
            RunStatus::Orphaned => "orphaned",
        }
    }
}

/// What an object is to its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectRole {
    /// A data file under the run's data prefix.
    Data,
    /// The committed run manifest.
    RunManifest,
    /// The Redshift COPY manifest.
    CopyManifest,
    /// A chunk manifest.
    ChunkManifest,
    /// An unfinished chunk's progress record.
    ChunkProgress,
    /// The schema the run began with.
    Schema,
    /// Anything else under the run's own prefix.
    Other,
}

/// One object of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableObject {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Last modification, when S3 reported one.
    pub last_modified: Option<DateTime<Utc>>,
    /// What it is to its run.
    pub role: ObjectRole,
}

/// A run's objects and what the run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunEntry {
    /// The run.
    pub run_id: RunId,
    /// Its status.
    pub status: RunStatus,
    /// Data files.
    pub data_files: u64,
    /// Bytes of all its objects.
    pub bytes: u64,
    /// Oldest modification of its objects.
    pub oldest: Option<DateTime<Utc>>,
    /// Newest modification of its objects: a run's age is the age of this.
    pub newest: Option<DateTime<Utc>>,
    /// Every object, data files first.
    pub objects: Vec<TableObject>,
}

/// Counts of one status (or of everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    /// Runs.
    pub runs: u64,
    /// Data files.
    pub data_files: u64,
    /// Objects of every role.
    pub objects: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Every object of a table, grouped by run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// Pipeline.
    pub pipeline: String,
    /// Source table, `db.table`.
    pub table: String,
    /// Bucket.
    pub bucket: String,
    /// The exact prefixes listed.
    pub prefixes: Vec<String>,
    /// Runs in id order.
    pub runs: Vec<RunEntry>,
    /// Objects under the table's prefixes that belong to no run: listed, never deleted.
    pub unrecognized: Vec<TableObject>,
    /// Counts by status.
    pub by_status: BTreeMap<RunStatus, Tally>,
    /// Counts of everything, unrecognized objects included.
    pub total: Tally,
}

/// Reads the table's objects (every page of each exact prefix), then its watermark, and
/// classifies each run. The watermark is read last, so a run committed while listing is seen
/// as pending rather than as an orphan.
pub async fn list(
    store: &WatermarkStore,
    pipeline: &str,
    table: &TableId,
    now: DateTime<Utc>,
) -> Result<Listing> {
    let layout = store.layout();
    let prefixes = [
        (Area::Data, layout.table_data_prefix(pipeline, table)),
        (Area::Runs, layout.table_runs_prefix(pipeline, table)),
        (Area::Copy, layout.table_copy_prefix(pipeline, table)),
    ];
    let mut found = Vec::new();
    for (area, prefix) in &prefixes {
        for object in store.bucket().list(prefix).await? {
            found.push((*area, prefix.as_str(), object));
        }
    }
    let watermark = store.read(pipeline, table).await?.map(|v| v.record);
    let mut runs: BTreeMap<RunId, Vec<TableObject>> = BTreeMap::new();
    let mut unrecognized = Vec::new();
    for (area, prefix, object) in found {
        match attribute(area, prefix, &object) {
            Some((run_id, role)) => runs
                .entry(run_id)
                .or_default()
                .push(table_object(object, role)),
            None => unrecognized.push(table_object(object, ObjectRole::Other)),
        }
    }
    let runs: Vec<RunEntry> = runs
        .into_iter()
        .map(|(run_id, objects)| run_entry(run_id, objects, watermark.as_ref(), now))
        .collect();
    let mut by_status: BTreeMap<RunStatus, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    for run in &runs {
        for tally in [by_status.entry(run.status).or_default(), &mut total] {
            tally.runs += 1;
            tally.data_files += run.data_files;
            tally.objects += run.objects.len() as u64;
            tally.bytes += run.bytes;
        }
    }
    total.objects += unrecognized.len() as u64;
    total.bytes += unrecognized.iter().map(|o| o.bytes).sum::<u64>();
    Ok(Listing {
        pipeline: pipeline.to_owned(),
        table: table.to_string(),
        bucket: store.bucket().name().to_owned(),
        prefixes: prefixes.into_iter().map(|(_, prefix)| prefix).collect(),
        runs,
        unrecognized,
        by_status,
        total,
    })
}

#[derive(Debug, Clone, Copy)]
enum Area {
    Data,
    Runs,
    Copy,
}

/// Which run an object belongs to, from its key alone; `None` for anything off the layout.
fn attribute(area: Area, prefix: &str, object: &ObjectInfo) -> Option<(RunId, ObjectRole)> {
    let rest = object.key.strip_prefix(prefix)?;
    match area {
        Area::Data => {
            let (run, file) = rest.split_once('/')?;
            (!file.is_empty()).then_some(())?;
            Some((RunId::parse(run).ok()?, ObjectRole::Data))
        }
        Area::Copy => Some((
            RunId::parse(rest.strip_suffix(".manifest")?).ok()?,
            ObjectRole::CopyManifest,
        )),
        Area::Runs => match rest.split_once('/') {
            None => Some((
                RunId::parse(rest.strip_suffix(".json")?).ok()?,
                ObjectRole::RunManifest,
            )),
            Some((run, inside)) => {
                let role = if inside == "schema.json" {
                    ObjectRole::Schema
                } else if inside.starts_with("progress/") {
                    ObjectRole::ChunkProgress
                } else if inside.starts_with("chunk-") && !inside.contains('/') {
                    ObjectRole::ChunkManifest
                } else if inside.is_empty() {
                    return None;
                } else {
                    ObjectRole::Other
                };
                Some((RunId::parse(run).ok()?, role))
            }
        },
    }
}

fn table_object(object: ObjectInfo, role: ObjectRole) -> TableObject {
    TableObject {
        last_modified: (object.last_modified_epoch_seconds > 0)
            .then(|| DateTime::from_timestamp(object.last_modified_epoch_seconds, 0))
            .flatten(),
        key: object.key,
        bytes: object.size,
        role,
    }
}

fn run_entry(
    run_id: RunId,
    mut objects: Vec<TableObject>,
    watermark: Option<&Watermark>,
    now: DateTime<Utc>,
) -> RunEntry {
    objects.sort_by_key(|o| (o.role != ObjectRole::Data, o.key.clone()));
    let has_manifest = objects.iter().any(|o| o.role == ObjectRole::RunManifest);
    let status = classify(&run_id, has_manifest, watermark, now);
    RunEntry {
        status,
        data_files: objects
            .iter()
            .filter(|o| o.role == ObjectRole::Data)
            .count() as u64,
        bytes: objects.iter().map(|o| o.bytes).sum(),
        oldest: objects.iter().filter_map(|o| o.last_modified).min(),
        newest: objects.iter().filter_map(|o| o.last_modified).max(),
        objects,
        run_id,
    }
}

/// The rules of the module header, in order.
fn classify(
    run_id: &RunId,
    has_manifest: bool,
    watermark: Option<&Watermark>,
    now: DateTime<Utc>,
) -> RunStatus {
    let Some(watermark) = watermark else {
        return if has_manifest {
            RunStatus::Abandoned
        } else {
            RunStatus::Orphaned
        };
    };
    if watermark.pending_runs.iter().any(|p| p.run_id == *run_id) {
        return RunStatus::Pending;
    }
    if watermark
        .lease
        .as_ref()
        .is_some_and(|lease| lease.owner == *run_id && lease.expires_at > now)
    {
        return RunStatus::InProgress;
    }
    let loaded = watermark
        .load
        .last_loaded_run_id
        .as_ref()
        .is_some_and(|last| run_id <= last);
    match (has_manifest, loaded) {
        (true, true) => RunStatus::Loaded,
        (true, false) => RunStatus::Abandoned,
        (false, _) => RunStatus::Orphaned,
    }
}

/// A file-name pattern: `*` matches any run of characters, `?` exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    /// Parses a pattern matched against the last segment of a key (the file name).
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Error::InvalidRequest(format!(
                "invalid pattern `{text}`: {why}; patterns match file names with `*` and `?`, e.g. `*.parquet` or `part-00003-*`"
            ))
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if text.contains('/') {
            return Err(invalid(
                "it contains `/`, but it is matched against file names",
            ));
        }
        if text.contains(['[', ']', '{', '}', '\\']) {
            return Err(invalid("only `*` and `?` are special"));
        }
        Ok(Glob(text.chars().collect()))
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let (mut p, mut n) = (0, 0);
        // Where the last `*` was, and the name position it is currently taken to cover up to.
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.0.get(p) {
                Some('*') => {
                    star = Some((p, n));
                    p += 1;
                }
                Some(&c) if c == '?' || c == name[n] => {
                    p += 1;
                    n += 1;
                }
                _ => match star {
                    Some((star_p, star_n)) => {
                        p = star_p + 1;
                        n = star_n + 1;
                        star = Some((star_p, star_n + 1));
                    }
                    None => return false,
                },
            }
        }
        self.0[p..].iter().all(|&c| c == '*')
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.iter().collect::<String>())
    }
}

/// What a clean may delete.
#[derive(Debug, Clone)]
pub struct CleanOptions {
    /// Only runs whose newest object is at least this old.
    pub older_than: Option<Duration>,
    /// Only objects whose file name matches.
    pub pattern: Option<Glob>,
    /// Also delete orphaned and abandoned runs (past `orphan_min_age`).
    pub orphans: bool,
    /// How old an orphaned or abandoned run's newest object must be. Default 24h.
    pub orphan_min_age: Duration,
    /// The time ages are measured at (the clock, except in tests).
    pub now: DateTime<Utc>,
}

impl CleanOptions {
    /// Loaded runs of any age, no pattern, no orphans, the default safety age.
    pub fn new(now: DateTime<Utc>) -> Self {
        CleanOptions {
            older_than: None,
            pattern: None,
            orphans: false,
            orphan_min_age: DEFAULT_ORPHAN_MIN_AGE,
            now,
        }
    }
}

/// One object to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Doomed {
    /// Key.
    pub key: String,
    /// Size.
    pub bytes: u64,
    /// What it is to its run (run manifests go last).
    pub role: ObjectRole,
}

/// The decision for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDecision {
    /// The run.
    pub run_id: RunId,
    /// Its status.
    pub status: RunStatus,
    /// Objects that go.
    pub delete: Vec<Doomed>,
    /// Objects that stay.
    pub kept: u64,
    /// Why, in words.
    pub reason: String,
}

/// What a clean will delete, and why every run is treated as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanPlan {
    /// Pipeline.
    pub pipeline: String,
    /// Source table.
    pub table: String,
    /// Bucket.
    pub bucket: String,
    /// Every run, with its decision.
    pub runs: Vec<RunDecision>,
    /// Objects to delete.
    pub objects: u64,
    /// Bytes they hold.
    pub bytes: u64,
    /// Objects under the table's prefixes that belong to no run, left alone.
    pub unrecognized: u64,
}

impl CleanPlan {
    /// Whether the plan deletes nothing.
    pub fn is_empty(&self) -> bool {
        self.objects == 0
    }
}

/// Decides, run by run, what may go. Pure: lists nothing, deletes nothing.
pub fn plan_clean(listing: &Listing, options: &CleanOptions) -> CleanPlan {
    let runs: Vec<RunDecision> = listing
        .runs
        .iter()
        .map(|run| decide(run, options))
        .collect();
    CleanPlan {
        pipeline: listing.pipeline.clone(),
        table: listing.table.clone(),
        bucket: listing.bucket.clone(),
        objects: runs.iter().map(|r| r.delete.len() as u64).sum(),
        bytes: runs.iter().flat_map(|r| &r.delete).map(|d| d.bytes).sum(),
        unrecognized: listing.unrecognized.len() as u64,
        runs,
    }
}

fn decide(run: &RunEntry, options: &CleanOptions) -> RunDecision {
    let keep = |reason: String| RunDecision {
        run_id: run.run_id.clone(),
        status: run.status,
        delete: Vec::new(),
        kept: run.objects.len() as u64,
        reason,
    };
    let age = run
        .newest
        .map(|newest| (options.now - newest).to_std().unwrap_or(Duration::ZERO))
        .unwrap_or(Duration::ZERO);
    match run.status {
        RunStatus::Pending => return keep("pending load: never deleted".to_owned()),
        RunStatus::InProgress => {
            return keep("holds the table's lease (running now): never deleted".to_owned())
        }
        RunStatus::Loaded => {}
        RunStatus::Abandoned | RunStatus::Orphaned => {
            let what = if run.status == RunStatus::Orphaned {
                "orphaned (no committed run manifest)"
            } else {
                "abandoned (committed, but dropped from the pending runs)"
            };
            if !options.orphans {
                return keep(format!("{what}: kept without --orphans"));
            }
            if age < options.orphan_min_age {
                return keep(format!(
                    "{what}: newest object {} old, younger than the safety age {}: kept (it may belong to a running extraction)",
                    describe_age(age),
                    describe_age(options.orphan_min_age)
                ));
            }
        }
    }
    if let Some(older_than) = options.older_than {
        if age < older_than {
            return keep(format!(
                "{}: newest object {} old, younger than --older-than {}: kept",
                run.status.name(),
                describe_age(age),
                describe_age(older_than)
            ));
        }
    }
    let matches = |object: &TableObject| match &options.pattern {
        None => true,
        Some(glob) => glob.matches(object.key.rsplit('/').next().unwrap_or(&object.key)),
    };
    let mut delete: Vec<Doomed> = run
        .objects
        .iter()
        .filter(|o| o.role != ObjectRole::RunManifest && matches(o))
        .map(|o| Doomed {
            key: o.key.clone(),
            bytes: o.bytes,
            role: o.role,
        })
        .collect();
    let others = run
        .objects
        .iter()
        .filter(|o| o.role != ObjectRole::RunManifest)
        .count();
    let mut manifest_note = "";
    if delete.len() == others {
        for manifest in run
            .objects
            .iter()
            .filter(|o| o.role == ObjectRole::RunManifest)
        {
            if matches(manifest) {
                delete.push(Doomed {
                    key: manifest.key.clone(),
                    bytes: manifest.bytes,
                    role: manifest.role,
                });
            }
        }
    } else if run
        .objects
        .iter()
        .any(|o| o.role == ObjectRole::RunManifest)
    {
        manifest_note = "; the run manifest stays until every other object of the run is gone";
    }
    let kept = run.objects.len() as u64 - delete.len() as u64;
    let reason = match (&options.pattern, delete.is_empty()) {
        (Some(glob), true) => format!(
            "{}: no object matches --pattern {glob}: kept",
            run.status.name()
        ),
        (Some(glob), false) => format!(
            "{}: {} of {} object(s) match --pattern {glob}{manifest_note}",
            run.status.name(),
            delete.len(),
            run.objects.len()
        ),
        (None, _) => format!("{}: every object deleted", run.status.name()),
    };
    RunDecision {
        run_id: run.run_id.clone(),
        status: run.status,
        delete,
        kept,
        reason,
    }
}

/// `3d`, `5h`, `12m` or `40s`: the largest whole unit, for reasons and listings.
pub fn describe_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A key S3 refused to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFailure {
    /// The key.
    pub key: String,
    /// S3's code and message.
    pub reason: String,
}

/// What a clean did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanReport {
    /// Objects deleted.
    pub deleted_objects: u64,
    /// Bytes they held.
    pub bytes_freed: u64,
    /// Runs with at least one object deleted.
    pub runs_cleaned: u64,
    /// Planned runs left alone because the watermark, read again before deleting, now protects
    /// them (they became pending or took the lease).
    pub skipped_runs: Vec<RunId>,
    /// Keys S3 refused to delete.
    pub failures: Vec<KeyFailure>,
}

/// Deletes what `plan` names, in batches of 1000 keys. The watermark is read again first and
/// any run it now protects is skipped. Run manifests go last, and not at all for a run that
/// kept any other object after a refused delete.
pub async fn execute(store: &WatermarkStore, plan: &CleanPlan) -> Result<CleanReport> {
    let table = TableId::parse(&plan.table)?;
    let watermark = store.read(&plan.pipeline, &table).await?.map(|v| v.record);
    let now = Utc::now();
    let protected = |run_id: &RunId| {
        watermark.as_ref().is_some_and(|w| {
            w.pending_runs.iter().any(|p| p.run_id == *run_id)
                || w.lease
                    .as_ref()
                    .is_some_and(|l| l.owner == *run_id && l.expires_at > now)
        })
    };
    let mut report = CleanReport::default();
    let mut runs = Vec::new();
    for run in plan.runs.iter().filter(|r| !r.delete.is_empty()) {
        if protected(&run.run_id) {
            tracing::warn!(table = %plan.table, run_id = %run.run_id, "run became protected since planning; skipped");
            report.skipped_runs.push(run.run_id.clone());
        } else {
            runs.push(run);
        }
    }
    let bytes_of: BTreeMap<&str, u64> = runs
        .iter()
        .flat_map(|r| &r.delete)
        .map(|d| (d.key.as_str(), d.bytes))
        .collect();
    let first: Vec<String> = runs
        .iter()
        .flat_map(|r| &r.delete)
        .filter(|d| d.role != ObjectRole::RunManifest)
        .map(|d| d.key.clone())
        .collect();
    let mut failures = store.bucket().delete_many(&first).await?;
    // Data gone, run manifests still there: the state an interrupted clean leaves.
    crate::faults::point(crate::faults::FaultPoint::DuringCleanupDelete)?;
    let failed_runs: Vec<&RunId> = runs
        .iter()
        .filter(|r| {
            r.delete
                .iter()
                .any(|d| failures.iter().any(|f| f.key == d.key))
        })
        .map(|r| &r.run_id)
        .collect();
    let last: Vec<String> = runs
        .iter()
        .filter(|r| !failed_runs.contains(&&r.run_id))
        .flat_map(|r| &r.delete)
        .filter(|d| d.role == ObjectRole::RunManifest)
        .map(|d| d.key.clone())
        .collect();
    failures.extend(store.bucket().delete_many(&last).await?);
    let failed: std::collections::HashSet<&str> = failures.iter().map(|f| f.key.as_str()).collect();
    for key in first.iter().chain(&last) {
        if !failed.contains(key.as_str()) {
            report.deleted_objects += 1;
            report.bytes_freed += bytes_of.get(key.as_str()).copied().unwrap_or(0);
        }
    }
    report.runs_cleaned = runs
        .iter()
        .filter(|r| r.delete.iter().any(|d| !failed.contains(d.key.as_str())))
        .count() as u64;
    report.failures = failures
        .into_iter()
        .map(|f| KeyFailure {
            key: f.key,
            reason: f.reason,
        })
        .collect();
    if report.failures.is_empty() {
        tracing::info!(table = %plan.table, objects = report.deleted_objects, bytes = report.bytes_freed, "s3clean deleted");
    } else {
        tracing::error!(table = %plan.table, objects = report.deleted_objects, failed = report.failures.len(), "s3clean could not delete every key");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_file_names() {
        let g = |p: &str| Glob::parse(p).unwrap();
        assert!(g("*.parquet").matches("part-00001-00002.parquet"));
        assert!(!g("*.parquet").matches("part-00001-00002.parquet.tmp"));
        assert!(g("part-0000?-*").matches("part-00003-00001.parquet"));
        assert!(!g("part-0000?-*").matches("part-00013-00001.parquet"));
        assert!(g("*").matches(""));
        assert!(g("a*b*c").matches("aXbYbZc"));
        assert!(!g("a*b*c").matches("aXbYbZ"));
        assert!(g("*chunk*").matches("chunk-00001.json"));
        assert!(g("é?").matches("éx"));
        for bad in ["", "a/b", "[ab]", "{a,b}", "a\\*"] {
            assert!(Glob::parse(bad).is_err(), "{bad}");
        }
    }

    fn object(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.to_owned(),
            size: 1,
            last_modified_epoch_seconds: 1,
        }
    }

    #[test]
    fn keys_are_attributed_to_runs_by_layout_only() {
        let run = "20261127T041530123Z-0000000000ab";
        let data = "t/data/p/shop/orders/";
        let runs = "t/runs/p/shop/orders/";
        let copy = "t/copy/p/shop/orders/";
        let role = |area, prefix: &str, key: String| {
            attribute(area, prefix, &object(&key)).map(|(_, role)| role)
        };
        assert_eq!(
            role(
                Area::Data,
                data,
                format!("{data}{run}/part-00000-00000.parquet")
            ),
            Some(ObjectRole::Data)
        );
        assert_eq!(role(Area::Data, data, format!("{data}stray.txt")), None);
        assert_eq!(
            role(Area::Data, data, format!("{data}not a run/x.parquet")),
            None
        );
        assert_eq!(
            role(Area::Runs, runs, format!("{runs}{run}.json")),
            Some(ObjectRole::RunManifest)
        );
        assert_eq!(
            role(Area::Runs, runs, format!("{runs}{run}/schema.json")),
            Some(ObjectRole::Schema)
        );
        assert_eq!(
            role(Area::Runs, runs, format!("{runs}{run}/chunk-00001.json")),
            Some(ObjectRole::ChunkManifest)
        );
        assert_eq!(
            role(
                Area::Runs,
                runs,
                format!("{runs}{run}/progress/chunk-00001-00003.json")
            ),
            Some(ObjectRole::ChunkProgress)
        );
        assert_eq!(
            role(Area::Copy, copy, format!("{copy}{run}.manifest")),
            Some(ObjectRole::CopyManifest)
        );
        assert_eq!(role(Area::Copy, copy, format!("{copy}{run}.json")), None);
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn the_lease_owner_and_pending_runs_are_never_planned() {
        let now = at("2026-11-27T00:00:00Z");
        let table = TableId::parse("shop.orders").unwrap();
        let run = |n: i64| RunId::new(now - chrono::Duration::days(30 - n), n as u64);
        let mut watermark = Watermark::new("p", &table, "orders", now);
        watermark.load.last_loaded_run_id = Some(run(5));
        watermark
            .take_lease(&run(9), now, Duration::from_secs(3600), None, |_| true)
            .unwrap();
        watermark.pending_runs.push(crate::watermark::PendingRun {
            run_id: run(6),
            manifest_key: "k".into(),
            rows: 1,
            bytes: 10,
            files: 1,
            committed_at: now,
            quarantine: None,
        });
        let objects = |run_id: &RunId, manifest: bool| {
            let mut keys = vec![(
                format!("d/{run_id}/part-00000-00000.parquet"),
                ObjectRole::Data,
            )];
            if manifest {
                keys.push((format!("r/{run_id}.json"), ObjectRole::RunManifest));
            }
            keys.into_iter()
                .map(|(key, role)| TableObject {
                    key,
                    bytes: 10,
                    last_modified: Some(now - chrono::Duration::days(20)),
                    role,
                })
                .collect::<Vec<_>>()
        };
        let entry = |n: i64, manifest: bool| {
            run_entry(run(n), objects(&run(n), manifest), Some(&watermark), now)
        };
        let runs = vec![
            entry(4, true),
            entry(6, true),
            entry(8, true),
            entry(9, false),
            entry(7, false),
        ];
        let statuses: Vec<RunStatus> = runs.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                RunStatus::Loaded,
                RunStatus::Pending,
                RunStatus::Abandoned,
                RunStatus::InProgress,
                RunStatus::Orphaned
            ]
        );
        let listing = Listing {
            pipeline: "p".into(),
            table: table.to_string(),
            bucket: "b".into(),
            prefixes: vec![],
            runs,
            unrecognized: vec![],
            by_status: BTreeMap::new(),
            total: Tally::default(),
        };
        let plan = plan_clean(
            &listing,
            &CleanOptions {
                orphans: true,
                ..CleanOptions::new(now)
            },
        );
        let deleted: Vec<RunStatus> = plan
            .runs
            .iter()
            .filter(|r| !r.delete.is_empty())
            .map(|r| r.status)
            .collect();
        assert_eq!(
            deleted,
            [RunStatus::Loaded, RunStatus::Abandoned, RunStatus::Orphaned]
        );
        // The run manifest is planned after the data files of its run.
        assert_eq!(plan.runs[0].delete[1].role, ObjectRole::RunManifest);
    }

    #[test]
    fn ages_read_in_their_largest_unit() {
        assert_eq!(describe_age(Duration::from_secs(40)), "40s");
        assert_eq!(describe_age(Duration::from_secs(3 * 86_400 + 5)), "3d");
        assert_eq!(describe_age(Duration::from_secs(7_200)), "2h");
    }
}

//! The operator's actions on a table's state: reads (`get`, `list`, `history`, `audit`,
//! `validate_counts`, `quality_report`, `verify`) and edits (`set`, `reset`, `restore`, `unlock`,
//! `set_count`, `quality_release`, `quality_drop`).
//! The Lambda `tidemark-operator` and the CLI both call these; the state machine never does, so
//! IAM can let operators invoke this function without letting them invoke the run's own steps.
//! Every edit names who asked (a [`Requester`]) and is recorded in the [`AuditTrail`] before and
//! after it is applied.

use std::future::Future;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEntry, AuditTrail, Phase, Requester};
use crate::config::CdcStrategy;
use crate::cursor::{compare_key_values, Cursor, CursorTimestamp};
use crate::error::{Error, Result};
use crate::manifest::{self, DataFile, RunManifest};
use crate::naming::{RunId, StorageLayout};
use crate::run::SyncMode;
use crate::watermark::{CountField, CountMode, HistoryEntry, ManualEdit, Watermark};

use super::counts::validate_counts;
use super::quality::{self, QualityReportRequest, QualityRunRequest};
use super::watermark::{cursor_lag, inspect_source, locate_table, target_name};
use crate::services::Services;

/// Every request the operator function answers, chosen by `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OperatorRequest {
    /// Show a table's watermark.
    Get(GetRequest),
    /// Every table of a pipeline, one line each.
    List(ListRequest),
    /// Move the cursor by hand.
    Set(SetRequest),
    /// Back to the start.
    Reset(ResetRequest),
    /// The kept earlier versions.
    History(TableRequest),
    /// Put a kept version back.
    Restore(RestoreRequest),
    /// Release a stuck lease.
    Unlock(TableRequest),
    /// Correct a total.
    SetCount(SetCountRequest),
    /// Compare the watermark's totals with the target, its load ledger and the source.
    ValidateCounts(TableRequest),
    /// The table's record of operator edits, oldest first.
    Audit(TableRequest),
    /// Each recent run's data quality checks, with example keys.
    QualityReport(QualityReportRequest),
    /// Load a quarantined run as it is.
    QualityRelease(QualityRunRequest),
    /// Discard a quarantined run and every later pending run, and extract their rows again.
    QualityDrop(QualityRunRequest),
    /// Compare the table in the target with its source (`tidemark verify`).
    Verify(TableRequest),
}

/// The actions of [`OperatorRequest`], as a payload names them.
pub const ACTIONS: [&str; 14] = [
    "get",
    "list",
    "set",
    "reset",
    "history",
    "restore",
    "unlock",
    "set_count",
    "validate_counts",
    "audit",
    "quality_report",
    "quality_release",
    "quality_drop",
    "verify",
];

/// A parsed operator payload: the request and, for an edit, who asks and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCall {
    /// The action and its arguments.
    pub request: OperatorRequest,
    /// `requested_by` and `reason` from the payload, with the way it arrived.
    pub requester: Option<Requester>,
}

/// Parses an operator payload: the action's fields plus `requested_by` (required for an edit)
/// and `reason`. `via` says how it arrived (`lambda:<function name>`).
pub fn parse_request(payload: serde_json::Value, via: &str) -> Result<OperatorCall> {
    let mut payload = payload;
    let Some(fields) = payload.as_object_mut() else {
        return Err(Error::InvalidRequest(
            "invalid operator payload: expected a JSON object with an `action` (README: Lambda payloads)".to_owned(),
        ));
    };
    let mut take = |name: &str| -> Result<Option<String>> {
        match fields.remove(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(Error::InvalidRequest(format!(
                "invalid operator payload: `{name}` must be a string, not `{other}`"
            ))),
        }
    };
    let requested_by = take("requested_by")?;
    let reason = take("reason")?;
    let request = serde_json::from_value(payload).map_err(|err| {
        Error::InvalidRequest(format!(
            "invalid operator payload: {err}; actions are {} (README: Lambda payloads)",
            ACTIONS.join(", ")
        ))
    })?;
    Ok(OperatorCall {
        request,
        requester: requested_by.map(|requested_by| Requester {
            requested_by,
            reason,
            via: via.to_owned(),
        }),
    })
}

/// Runs an operator request and returns its answer as JSON. An edit without a requester is
/// refused before anything is read.
pub async fn handle(services: &Services, call: &OperatorCall) -> Result<serde_json::Value> {
    let requester = |action| edit_requester(action, call.requester.as_ref());
    // Boxed: an edit's future (the source check inside the audit record's two writes) is too
    // large for a thread's stack in an unoptimized build.
    match &call.request {
        OperatorRequest::Get(r) => super::answer(get(services, r).await?),
        OperatorRequest::List(r) => super::answer(list(services, r).await?),
        OperatorRequest::History(r) => super::answer(history(services, r).await?),
        OperatorRequest::ValidateCounts(r) => {
            super::answer(Box::pin(validate_counts(services, r)).await?)
        }
        OperatorRequest::Audit(r) => super::answer(audit(services, r).await?),
        OperatorRequest::QualityReport(r) => super::answer(quality::report(services, r).await?),
        OperatorRequest::Verify(r) => super::answer(
            Box::pin(crate::verify::verify(
                services,
                r.pipeline.as_deref(),
                &r.table,
            ))
            .await?,
        ),
        OperatorRequest::QualityRelease(r) => super::answer(
            Box::pin(quality::release(services, r, requester("quality_release")?)).await?,
        ),
        OperatorRequest::QualityDrop(r) => super::answer(
            Box::pin(quality::drop_run(services, r, requester("quality_drop")?)).await?,
        ),
        OperatorRequest::Set(r) => {
            super::answer(Box::pin(set(services, r, requester("set")?)).await?)
        }
        OperatorRequest::Reset(r) => {
            super::answer(Box::pin(reset(services, r, requester("reset")?)).await?)
        }
        OperatorRequest::Restore(r) => {
            super::answer(Box::pin(restore(services, r, requester("restore")?)).await?)
        }
        OperatorRequest::Unlock(r) => {
            super::answer(Box::pin(unlock(services, r, requester("unlock")?)).await?)
        }
        OperatorRequest::SetCount(r) => {
            super::answer(Box::pin(set_count(services, r, requester("set_count")?)).await?)
        }
    }
}

/// The requester of edit `action`, which must name someone.
fn edit_requester<'r>(action: &str, requester: Option<&'r Requester>) -> Result<&'r Requester> {
    match requester {
        Some(requester) if !requester.requested_by.trim().is_empty() => Ok(requester),
        _ => {
            Err(Error::InvalidRequest(format!(
                "`requested_by` is required for `{action}`: every edit records who asked (and, with `reason`, why) in the table's audit record; add `\"requested_by\": \"you@example.com\"` to the payload"
            )))
        }
    }
}

/// Names a table of a pipeline. `pipeline` defaults to the one that holds the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRequest {
    /// Pipeline name; default: the only pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table, `db.table`.
    pub table: String,
}

/// `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// Also list the files of pending runs.
    #[serde(default)]
    pub show_files: bool,
}

/// `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// Pipeline name; default: every pipeline.
    #[serde(default)]
    pub pipeline: Option<String>,
}

/// `set`: fields not given are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Integer id: the key of a table whose key (or `id_only` id column) is one integer column.
    #[serde(default)]
    pub id: Option<String>,
    /// The key values, in key order: one per key column (`key_columns`, else the primary key;
    /// the id column for `id_only`). Give this or `id`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    /// Accept a cursor beyond the source's clock (or, for `id_only`, beyond its largest id):
    /// every sync then succeeds with 0 rows until the source reaches it. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// `reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// Also forget the pending runs (they will never be loaded).
    #[serde(default)]
    pub drop_pending: bool,
}

/// `restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// A version name from `history`.
    pub version: String,
}

/// `set_count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCountRequest {
    /// Pipeline name; default: the pipeline that holds `table`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Source table.
    pub table: String,
    /// Which total. Default `rows_loaded`.
    #[serde(default = "default_count_field")]
    pub field: CountField,
    /// `absolute` or `additive`.
    pub mode: CountMode,
    /// The number (may be negative with `additive`).
    pub count: i64,
}

fn default_count_field() -> CountField {
    CountField::RowsLoaded
}

/// What an operator edit did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditResult {
    /// What changed, in words.
    pub message: String,
    /// The watermark after the edit.
    pub watermark: Watermark,
}

/// `get`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetResult {
    /// The watermark, or `None` before the first run.
    pub watermark: Option<Watermark>,
    /// With `show_files`: each pending run's files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_files: Vec<RunFiles>,
    /// With `show_files`: the files of the last loaded run, while its manifest is kept (`s3clean`
    /// deletes loaded runs past retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_loaded_files: Option<RunFiles>,
}

/// The files of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFiles {
    /// The run.
    pub run_id: RunId,
    /// Its files.
    pub files: Vec<DataFile>,
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    /// Pipeline.
    pub pipeline: String,
    /// Source table.
    pub table: String,
    /// The cursor.
    pub cursor: Cursor,
    /// Seconds between now and the cursor's timestamp, when it has one.
    pub lag_seconds: Option<i64>,
    /// Extraction status.
    pub extract_status: crate::watermark::StageStatus,
    /// Load status.
    pub load_status: crate::watermark::StageStatus,
    /// Runs waiting to be loaded.
    pub pending_runs: usize,
    /// Whether a lease is held.
    pub locked: bool,
    /// Whether a quarantined run holds the table's loads back (`tidemark quality report`).
    #[serde(default)]
    pub quarantined: bool,
}

/// `get`.
pub async fn get(services: &Services, request: &GetRequest) -> Result<GetResult> {
    let (pipeline_name, pipeline, _, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    let watermark = services
        .watermarks(pipeline)
        .read(&pipeline_name, &table)
        .await?
        .map(|v| v.record);
    let mut pending_files = Vec::new();
    let mut last_loaded_files = None;
    if let (true, Some(watermark)) = (request.show_files, &watermark) {
        let bucket = services.bucket(pipeline);
        for run in &watermark.pending_runs {
            let manifest = read_run_manifest(&bucket, &run.manifest_key)
                .await?
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "run manifest {} of pending run `{}` is missing",
                        bucket.uri(&run.manifest_key),
                        run.run_id
                    ))
                })?;
            pending_files.push(RunFiles {
                run_id: run.run_id.clone(),
                files: manifest.files,
            });
        }
        if let Some(run_id) = &watermark.load.last_loaded_run_id {
            let layout = StorageLayout::new(&pipeline.s3.prefix);
            let key = layout.run_manifest_key(&pipeline_name, &table, run_id);
            last_loaded_files = read_run_manifest(&bucket, &key)
                .await?
                .map(|manifest| RunFiles {
                    run_id: run_id.clone(),
                    files: manifest.files,
                });
        }
    }
    Ok(GetResult {
        watermark,
        pending_files,
        last_loaded_files,
    })
}

/// The run manifest at `key`, or `None` when there is none.
async fn read_run_manifest(
    bucket: &crate::storage::Bucket,
    key: &str,
) -> Result<Option<RunManifest>> {
    match bucket.get(key).await? {
        Some(object) => Ok(Some(manifest::parse_json(&object.body, &bucket.uri(key))?)),
        None => Ok(None),
    }
}

/// `list`.
pub async fn list(services: &Services, request: &ListRequest) -> Result<Vec<ListEntry>> {
    let now = Utc::now();
    let mut entries = Vec::new();
    for (name, pipeline) in &services.config.pipelines {
        if request
            .pipeline
            .as_deref()
            .is_some_and(|wanted| wanted != name)
        {
            continue;
        }
        let records = services.watermarks(pipeline).list(name).await?;
        for table in pipeline.tables.keys() {
            let record = records.iter().find(|r| r.table == *table);
            let cursor = record.map(|r| r.extract.cursor.clone()).unwrap_or_default();
            let lag_seconds = cursor_lag(&cursor, now).map(|lag| lag.as_secs() as i64);
            entries.push(ListEntry {
                pipeline: name.clone(),
                table: table.clone(),
                cursor,
                lag_seconds,
                extract_status: record.map(|r| r.extract.status).unwrap_or_default(),
                load_status: record.map(|r| r.load.status).unwrap_or_default(),
                pending_runs: record.map(|r| r.pending_runs.len()).unwrap_or(0),
                locked: record.is_some_and(|r| r.lease.is_some()),
                quarantined: record.is_some_and(|r| r.first_quarantined().is_some()),
            });
        }
    }
    Ok(entries)
}

/// Records the request in the table's audit record, runs `work`, records its outcome. An edit
/// whose request cannot be recorded is not made; one whose outcome cannot be recorded reports
/// that, naming the edit id, since the watermark has changed.
pub(super) async fn audited<T: Serialize>(
    services: &Services,
    requester: &Requester,
    action: &str,
    pipeline: Option<&str>,
    table: &str,
    request: &T,
    work: impl Future<Output = Result<EditResult>>,
) -> Result<EditResult> {
    let (pipeline_name, pipeline, _, table_id) = locate_table(services, pipeline, table)?;
    let trail = AuditTrail::new(
        services.bucket(pipeline),
        StorageLayout::new(&pipeline.s3.prefix),
    );
    let now = Utc::now();
    let request = serde_json::to_value(request)
        .map_err(|err| Error::internal(format!("cannot encode the request: {err}")))?;
    let requested = AuditEntry {
        edit_id: format!(
            "{:012x}",
            uuid::Uuid::new_v4().as_u128() as u64 & 0xffff_ffff_ffff
        ),
        at: now,
        requester: requester.clone(),
        pipeline: pipeline_name,
        table: table_id.to_string(),
        action: action.to_owned(),
        request,
        phase: Phase::Requested,
        detail: None,
    };
    trail.append(&requested).await?;
    let outcome = work.await;
    let (phase, detail) = match &outcome {
        Ok(done) => (Phase::Applied, done.message.clone()),
        Err(err) => (Phase::Refused, err.to_string()),
    };
    let recorded = trail
        .append(&AuditEntry {
            at: Utc::now(),
            phase,
            detail: Some(detail),
            ..requested.clone()
        })
        .await;
    match (outcome, recorded) {
        (Ok(_), Err(err)) => Err(Error::InvalidRequest(format!(
            "the {action} of `{table}` was applied, but its outcome could not be added to the audit record ({err}); its request is recorded as edit `{}`, and `tidemark watermark get -t {table}` shows the change",
            requested.edit_id
        ))),
        (outcome, _) => outcome,
    }
}

/// An edit of the watermark alone, audited.
async fn audited_edit<T: Serialize>(
    services: &Services,
    requester: &Requester,
    action: &str,
    pipeline: Option<&str>,
    table: &str,
    request: &T,
    apply: impl FnMut(&mut Watermark) -> Result<String>,
) -> Result<EditResult> {
    let work = edit(services, requester, action, pipeline, table, apply);
    audited(services, requester, action, pipeline, table, request, work).await
}

/// Applies `apply` to the table's watermark and marks it as `requester`'s manual edit.
pub(super) async fn edit(
    services: &Services,
    requester: &Requester,
    action: &str,
    pipeline: Option<&str>,
    table: &str,
    mut apply: impl FnMut(&mut Watermark) -> Result<String>,
) -> Result<EditResult> {
    let (pipeline_name, pipeline, table_config, table) = locate_table(services, pipeline, table)?;
    let target = target_name(table_config, &table)?;
    let tag = RunId::parse("manual").map_err(|e| Error::internal(e.to_string()))?;
    let now = Utc::now();
    let (watermark, message) = services
        .watermarks(pipeline)
        .update(&pipeline_name, &table, &target, &tag, now, |w| {
            let detail = apply(w)?;
            w.manual = Some(ManualEdit::new(requester, action, detail.clone(), now));
            Ok(detail)
        })
        .await?;
    Ok(EditResult { message, watermark })
}

/// `set`: checks the new cursor against the source first — as many key values as the table's
/// key has, and not beyond the source's clock or largest id unless `force` — then writes it.
pub async fn set(
    services: &Services,
    request: &SetRequest,
    requester: &Requester,
) -> Result<EditResult> {
    let (pipeline, table) = (request.pipeline.as_deref(), request.table.as_str());
    audited(services, requester, "set", pipeline, table, request, async {
        let (_, pipeline, table_config, table) =
            locate_table(services, request.pipeline.as_deref(), &request.table)?;
        let key = match (&request.id, &request.key) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidRequest(
                    "give `id` or `key`, not both".to_owned(),
                ))
            }
            (Some(id), None) => {
                let parsed: i128 = id
                    .trim()
                    .parse()
                    .map_err(|_| Error::InvalidRequest(format!("`{id}` is not an integer id")))?;
                Some(vec![parsed.to_string()])
            }
            (None, key) => key.clone(),
        };
        let timestamp = request
            .timestamp
            .as_deref()
            .map(CursorTimestamp::parse_operator_input)
            .transpose()?;
        let strategy = table_config.strategy.kind();
        if strategy == CdcStrategy::FullSync {
            return Err(Error::InvalidRequest(format!(
                "`{table}` uses `full_sync`, which reads the whole table every run and has no cursor to set"
            )));
        }
        if timestamp.is_some() && strategy == CdcStrategy::IdOnly {
            return Err(Error::InvalidRequest(format!(
                "`{table}` uses `id_only`: its cursor is an id; set it with `--id` (or `--key`)"
            )));
        }
        let view = inspect_source(services, pipeline, table_config, &table, SyncMode::Full).await?;
        let key_names: Vec<String> = match strategy {
            CdcStrategy::IdOnly => view.id_column.clone().into_iter().collect(),
            _ => view.key_columns.clone(),
        };
        if let Some(key) = &key {
            if key.len() != key_names.len() {
                return Err(Error::InvalidRequest(format!(
                    "`{table}`'s cursor key is ({}): {} value(s), in that order, and {} were given; set it with one `--key VALUE` per column{}",
                    key_names.join(", "),
                    key_names.len(),
                    key.len(),
                    if key_names.len() == 1 { ", or `--id N`" } else { "" }
                )));
            }
        }
        if !request.force {
            let beyond = match (&timestamp, &key, strategy) {
                (Some(timestamp), _, _) => {
                    let source = services.source(pipeline).await?;
                    let mut conn = source.conn().await?;
                    let now = source
                        .within("reading the source clock", crate::source::clock(&mut conn))
                        .await?;
                    (timestamp.as_str() > now.as_str()).then(|| {
                        format!("`{timestamp}` is after the source's clock (`NOW()` = `{now}`, UTC)")
                    })
                }
                (None, Some(key), CdcStrategy::IdOnly) => match (key.first(), &view.ceiling.id) {
                    (Some(id), Some(max)) if compare_key_values(id, max).is_gt() => Some(
                        format!("id `{id}` is beyond the table's largest id `{max}`"),
                    ),
                    _ => None,
                },
                _ => None,
            };
            if let Some(beyond) = beyond {
                return Err(Error::InvalidRequest(format!(
                    "{beyond}: every sync would succeed with 0 rows until the source gets there; check the value (TIMESTAMP columns are in UTC), or pass `--force` if that is what you want"
                )));
            }
        }
        edit(services, requester, "set", request.pipeline.as_deref(), &request.table, |w| {
            w.set_cursor(timestamp.as_deref(), key.clone())
        })
        .await
    })
    .await
}

/// `reset`.
pub async fn reset(
    services: &Services,
    request: &ResetRequest,
    requester: &Requester,
) -> Result<EditResult> {
    let (pipeline, table) = (request.pipeline.as_deref(), request.table.as_str());
    audited_edit(
        services,
        requester,
        "reset",
        pipeline,
        table,
        request,
        |w| Ok(w.reset(request.drop_pending)),
    )
    .await
}

/// `unlock`.
pub async fn unlock(
    services: &Services,
    request: &TableRequest,
    requester: &Requester,
) -> Result<EditResult> {
    let (pipeline, table) = (request.pipeline.as_deref(), request.table.as_str());
    audited_edit(
        services,
        requester,
        "unlock",
        pipeline,
        table,
        request,
        |w| Ok(w.unlock()),
    )
    .await
}

/// `set_count`.
pub async fn set_count(
    services: &Services,
    request: &SetCountRequest,
    requester: &Requester,
) -> Result<EditResult> {
    let (pipeline, table) = (request.pipeline.as_deref(), request.table.as_str());
    audited_edit(
        services,
        requester,
        "set_count",
        pipeline,
        table,
        request,
        |w| w.set_count(request.field, request.mode, request.count),
    )
    .await
}

/// `history`.
pub async fn history(services: &Services, request: &TableRequest) -> Result<Vec<HistoryEntry>> {
    let (pipeline_name, pipeline, _, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    services
        .watermarks(pipeline)
        .history(&pipeline_name, &table)
        .await
}

/// `restore`.
pub async fn restore(
    services: &Services,
    request: &RestoreRequest,
    requester: &Requester,
) -> Result<EditResult> {
    let (pipeline, table) = (request.pipeline.as_deref(), request.table.as_str());
    audited(
        services,
        requester,
        "restore",
        pipeline,
        table,
        request,
        async {
            let (pipeline_name, pipeline, _, table) = locate_table(services, pipeline, table)?;
            let version = &request.version;
            let now = Utc::now();
            let message = format!("restored version `{version}`");
            let edit = ManualEdit::new(requester, "restore", message.clone(), now);
            let watermark = services
                .watermarks(pipeline)
                .restore(&pipeline_name, &table, version, edit, now)
                .await?;
            Ok(EditResult { message, watermark })
        },
    )
    .await
}

/// `audit`: the table's record of operator edits, oldest first.
pub async fn audit(services: &Services, request: &TableRequest) -> Result<Vec<AuditEntry>> {
    let (pipeline_name, pipeline, _, table) =
        locate_table(services, request.pipeline.as_deref(), &request.table)?;
    AuditTrail::new(
        services.bucket(pipeline),
        StorageLayout::new(&pipeline.s3.prefix),
    )
    .entries(&pipeline_name, &table)
    .await
}

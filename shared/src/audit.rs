//! The audit record of operator edits: who asked, when, why, what, and how it came out, in
//! objects that are only ever added (never overwritten, never pruned).
//!
//! Each edit writes two entries under `{prefix}/audit/{pipeline}/{db}/{table}/`: the request,
//! before the watermark is touched (an edit whose request cannot be recorded does not happen),
//! and its outcome. Both are created with `If-None-Match: *`, so an entry can never replace
//! another; the template denies every role the deletion of `audit/`, and the operator role may
//! write there only with that header.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::naming::{StorageLayout, TableId};
use crate::storage::{Bucket, PutOutcome};

/// Who asks for an edit, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requester {
    /// The caller: the AWS identity (ARN) for the CLI, the payload's `requested_by` for Lambda.
    pub requested_by: String,
    /// The reason given, if any.
    pub reason: Option<String>,
    /// How the edit arrived: `cli`, or `lambda:<function name>`.
    pub via: String,
}

/// How far an edit got when its entry was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Asked for; the watermark is not touched yet.
    Requested,
    /// Done: the watermark changed as `detail` says.
    Applied,
    /// Not done: `detail` says why.
    Refused,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Requested => "requested",
            Phase::Applied => "applied",
            Phase::Refused => "refused",
        }
    }
}

/// One entry of the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Shared by an edit's request and outcome entries.
    pub edit_id: String,
    /// When this entry was written.
    pub at: DateTime<Utc>,
    /// Who asked, why, and by which way.
    pub requester: Requester,
    /// Pipeline.
    pub pipeline: String,
    /// Source table, `db.table`.
    pub table: String,
    /// The edit: `set`, `reset`, `restore`, `unlock`, `set_count`.
    pub action: String,
    /// The request as given (without the requester).
    pub request: serde_json::Value,
    /// How far the edit got.
    pub phase: Phase,
    /// What changed (`applied`) or why not (`refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The audit record of one pipeline's bucket.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    bucket: Bucket,
    layout: StorageLayout,
}

impl AuditTrail {
    /// The record kept in `bucket` under `layout`'s prefix.
    pub fn new(bucket: Bucket, layout: StorageLayout) -> Self {
        AuditTrail { bucket, layout }
    }

    /// Adds `entry`; never replaces one.
    pub async fn append(&self, entry: &AuditEntry) -> Result<()> {
        let table = TableId::parse(&entry.table)?;
        let key = self.layout.audit_key(
            &entry.pipeline,
            &table,
            entry.at,
            &entry.edit_id,
            entry.phase.name(),
        );
        let body = serde_json::to_vec_pretty(entry)
            .map_err(|err| Error::internal(format!("cannot encode the audit entry: {err}")))?;
        match self.bucket.put_if_absent(&key, Bytes::from(body)).await? {
            PutOutcome::Written(_) => Ok(()),
            PutOutcome::PreconditionFailed => Err(Error::ConcurrentUpdate {
                uri: self.bucket.uri(&key),
                attempts: 1,
            }),
        }
    }

    /// The table's entries, oldest first.
    pub async fn entries(&self, pipeline: &str, table: &TableId) -> Result<Vec<AuditEntry>> {
        let prefix = self.layout.audit_prefix(pipeline, table);
        let mut objects = self.bucket.list(&prefix).await?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let mut entries = Vec::with_capacity(objects.len());
        for object in objects {
            let Some(stored) = self.bucket.get(&object.key).await? else {
                continue;
            };
            let entry = serde_json::from_slice(&stored.body).map_err(|err| Error::Corrupt {
                uri: self.bucket.uri(&object.key),
                reason: format!("it is not an audit entry ({err})"),
                fix: "audit entries are written only by tidemark; check who else writes under the audit prefix".to_owned(),
            })?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

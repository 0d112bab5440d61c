//! The records that say which files a run produced: chunk manifests (written by extract) and run
//! manifests (written once by commit). The loader loads exactly the files a committed run
//! manifest names — never a prefix listing — so these types are the contract between the stages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{CdcStrategy, LoadMode};
use crate::cursor::{Ceiling, Cursor};
use crate::error::{Error, Result};
use crate::naming::RunId;
use crate::quality::{ChunkQuality, RunQuality};
use crate::run::RunContext;
use crate::schema::TableSchema;

/// Version of the manifest format written by this code.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// One Parquet file of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// S3 key (in the pipeline's bucket).
    pub key: String,
    /// Exact object size; Redshift COPY of Parquet requires it in the COPY manifest.
    pub bytes: u64,
    /// Rows in the file.
    pub rows: u64,
    /// Cursor of the file's first row.
    pub min_cursor: Cursor,
    /// Cursor of the file's last row.
    pub max_cursor: Cursor,
}

/// What one fully extracted chunk wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkManifest {
    /// Format version.
    pub version: u32,
    /// Pipeline name.
    pub pipeline: String,
    /// Source table, `db.table`.
    pub table: String,
    /// The run.
    pub run_id: RunId,
    /// Chunk number within the run.
    pub chunk: u32,
    /// Files in write order.
    pub files: Vec<DataFile>,
    /// Rows in all files.
    pub rows: u64,
    /// Zero dates (`0000-00-00`) written as NULL.
    pub zero_dates_nulled: u64,
    /// Values longer than their Redshift column, cut to fit (`oversize_in_redshift: truncate`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oversize_truncated: u64,
    /// Values longer than their Redshift column, written as NULL.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oversize_nulled: u64,
    /// The schema every file was written with.
    pub schema_fingerprint: String,
    /// What the table's data quality checks found in the chunk (absent without checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<ChunkQuality>,
}

/// A committed run: the only thing the loader reads to know what to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunManifest {
    /// Format version.
    pub version: u32,
    /// Pipeline name.
    pub pipeline: String,
    /// Source table, `db.table`.
    pub table: String,
    /// Target table name.
    pub target: String,
    /// The run.
    pub run_id: RunId,
    /// How rows were selected.
    pub strategy: CdcStrategy,
    /// How the rows meet the target.
    pub load_mode: LoadMode,
    /// Where the run started reading (after lookback).
    pub start_cursor: Cursor,
    /// The run's upper bound.
    pub ceiling: Ceiling,
    /// Cursor of the last row read, if any row was read.
    pub max_cursor: Option<Cursor>,
    /// Every file, by chunk then sequence.
    pub files: Vec<DataFile>,
    /// Rows in all files.
    pub rows: u64,
    /// Bytes in all files.
    pub bytes: u64,
    /// Zero dates written as NULL.
    pub zero_dates_nulled: u64,
    /// Values longer than their Redshift column, cut to fit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oversize_truncated: u64,
    /// Values longer than their Redshift column, written as NULL.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oversize_nulled: u64,
    /// The schema the files were written with.
    pub schema_fingerprint: String,
    /// The source schema the files were written with: column order and types for the target's
    /// DDL and for COPY, which maps Parquet columns by position.
    pub schema: TableSchema,
    /// When the run was committed.
    pub committed_at: DateTime<Utc>,
    /// The data quality checks' results and verdict (absent without checks). A `quarantined`
    /// run is not loaded until an operator releases it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<RunQuality>,
    /// A repair run (`verify --repair`): the rows of listed keys, whatever their cursor; its
    /// commit leaves the watermark's cursor where it is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
    /// A deletion run (`deletes: hard | soft`): its files hold the keys of target rows gone from
    /// the source, one text column ([`crate::deletion`]), and its rows count those keys.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deletion: bool,
}

/// Counts that are absent from manifests written before they existed, and when zero.
fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl RunManifest {
    /// The manifest of `run` before any file: its identity, bounds and `schema`, every count
    /// zero. Commit fills in the files and their counts; a dry run shows it as is.
    pub fn without_files(
        run: &RunContext,
        schema: TableSchema,
        committed_at: DateTime<Utc>,
    ) -> RunManifest {
        RunManifest {
            version: MANIFEST_FORMAT_VERSION,
            pipeline: run.pipeline.clone(),
            table: run.table.to_string(),
            target: run.target.clone(),
            run_id: run.run_id.clone(),
            strategy: run.strategy,
            load_mode: run.load_mode,
            start_cursor: run.start_cursor.clone(),
            ceiling: run.ceiling.clone(),
            max_cursor: None,
            files: Vec::new(),
            rows: 0,
            bytes: 0,
            zero_dates_nulled: 0,
            oversize_truncated: 0,
            oversize_nulled: 0,
            schema_fingerprint: run.schema_fingerprint.clone(),
            schema,
            committed_at,
            quality: None,
            repair: run.repair.is_some(),
            deletion: false,
        }
    }
}

/// Parses a manifest object, naming it in the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], uri: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|err| Error::Corrupt {
        uri: uri.to_owned(),
        reason: format!("not a valid tidemark manifest ({err})"),
        fix: "it was changed by hand or by another version of tidemark; restore it from S3 versioning or re-run the sync".to_owned(),
    })
}

//! Extraction: MySQL rows → Parquet files on S3, one chunk at a time, resumable, bounded in memory.
//!
//! [`plan`] chooses the order a run reads in and splits it into chunk specs (one for a small
//! incremental run, read in cursor order; key ranges for a large run, read in primary-key order).
//! [`extract_chunk`] reads one chunk by keyset pagination over
//! the binary protocol, decodes rows straight into Arrow batches and streams them through
//! [`crate::parquet_sink`] to S3. It stops after `chunk_rows` rows or before the deadline and
//! returns a [`Continuation`]; when the chunk is finished it writes the chunk manifest the commit
//! step reads.
//!
//! Correctness rules this module owns (DESIGN §3): pages are keyset pages in (cursor, key) order
//! — never OFFSET, never `ts > x` alone — so rows sharing a timestamp across a page, invocation or
//! chunk boundary are read exactly once; every value is bound and every identifier quoted; the
//! run's ceiling bounds every read; a table whose schema changes mid-run fails the run; a failed
//! invocation leaves no object behind. It never commits anything: the commit step does.

mod chunk;
pub(crate) mod decode;
mod plan;
mod query;

pub use chunk::{extract_chunk, ExtractJob};
pub use plan::{plan, preview, ReadPreview};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cursor::Cursor;
use crate::parquet_sink::{FileCompression, SinkOptions};
use crate::run::RunContext;
use crate::schema::Warehouse;

/// `plan` action input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The run context from `begin`.
    pub run: RunContext,
}

/// `plan` action output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanResult {
    /// The chunks to extract (a Map state runs them).
    pub chunks: Vec<ChunkSpec>,
    /// Rows with NULL in the cursor column: no run of this cursor can ever pick them up.
    pub null_cursor_rows: u64,
    /// The server's estimate of the table's rows (`information_schema.TABLES.TABLE_ROWS`).
    pub estimated_rows: u64,
    /// The server's estimate of the rows this run reads (capped by its limit): the table's for
    /// a first load, otherwise the optimizer's estimate of the rows between start and ceiling.
    #[serde(default)]
    pub run_rows: u64,
    /// The order the run reads in, and why (shown by the dry run and the CLI's progress).
    #[serde(default)]
    pub order: String,
}

/// One chunk of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkSpec {
    /// Chunk number within the run (names its files and manifest).
    pub chunk: u32,
    /// Present when the chunk reads in primary-key order with the run's cursor bounds as
    /// filters (a large run): its range of the key. Absent: the strategy's own order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_range: Option<KeyRange>,
    /// For a repair run: which of its listed keys this chunk reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair_keys: Option<KeySlice>,
}

/// Keys `first .. first + count` of a repair run's key list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySlice {
    /// Index of the first key.
    pub first: u64,
    /// How many keys.
    pub count: u64,
}

/// An inclusive range of a single integer key, as exact decimal text (unsigned 64-bit keys do
/// not fit a JSON number safely). A missing bound is open: the first chunk has no lower bound and
/// the last no upper bound, so rows outside the MIN/MAX seen at plan time are still read. Both
/// bounds missing: the whole key, of any type or width.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRange {
    /// Lowest key of the chunk, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<String>,
    /// Highest key of the chunk, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<String>,
}

/// `extract` action input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractRequest {
    /// The run context from `begin`.
    pub run: RunContext,
    /// The chunk to extract.
    pub chunk: ChunkSpec,
    /// Where the previous invocation of this chunk stopped; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
}

/// Where an unfinished chunk resumes. Small on purpose: the file list lives in S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Continuation {
    /// The pagination position of the last row read: the next invocation reads strictly after it.
    pub cursor: Cursor,
    /// The file number the next invocation writes first.
    pub next_seq: u32,
    /// The progress object: a chunk manifest of everything written so far.
    pub progress_key: String,
}

/// `extract` action output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractResult {
    /// The chunk.
    pub chunk: u32,
    /// Whether the chunk is fully extracted.
    pub done: bool,
    /// Where to resume, when not done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
    /// The chunk manifest, when done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_manifest_key: Option<String>,
    /// Rows the chunk has written so far (all invocations).
    pub rows: u64,
    /// Files the chunk has written so far (all invocations).
    pub files: u32,
    /// Bytes of those files.
    #[serde(default)]
    pub bytes: u64,
}

/// How [`extract_chunk`] reads and writes. Not part of any payload: the caller (Lambda or CLI)
/// sets it.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Stop before this instant (the Lambda deadline minus a margin) and return a continuation.
    /// At least one batch is always read, so that every invocation makes progress.
    pub deadline: Option<Instant>,
    /// Roll to a new file once a file reaches this size. Default 128 MiB.
    pub target_file_bytes: u64,
    /// At most this many rows per file. Default: no limit.
    pub max_rows_per_file: Option<u64>,
    /// At most this many rows per Parquet row group. Default 1 Mi.
    pub row_group_rows: usize,
    /// At most this many encoded bytes per row group; bounds the encoder's memory. Default 32 MiB.
    pub row_group_bytes: usize,
    /// Parquet compression. Default: the target's profile ([`FileCompression::for_warehouse`]).
    pub compression: Option<FileCompression>,
    /// Rows decoded into one Arrow batch. Default 8192.
    pub batch_rows: usize,
    /// Rows per keyset page (`LIMIT`). Default 500000. Larger pages mean fewer restarts of the
    /// server's scan (measured: 500000-row pages extract the bench table ~10% faster than
    /// 100000-row ones), but stopping at the deadline inside a page still reads and discards the
    /// rest of that page (about 0.5 s per 500000 rows here): keep the deadline margin above that.
    pub page_rows: u64,
    /// Bytes per multipart part (at least 5 MiB). Default 8 MiB.
    pub part_bytes: usize,
    /// Rows of a `unique` check's digest held before they are written out (see
    /// [`crate::quality::digest::SPILL_ROWS`], the default).
    pub digest_spill_rows: usize,
    /// The warehouse the files are for. For Redshift (the default) every value is held to its
    /// column's byte length by the table's `oversize_in_redshift`, so that no committed file
    /// fails to load; PostgreSQL holds every value whole.
    pub target: Warehouse,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            deadline: None,
            target_file_bytes: 128 * 1024 * 1024,
            max_rows_per_file: None,
            row_group_rows: 1024 * 1024,
            row_group_bytes: 32 * 1024 * 1024,
            compression: None,
            batch_rows: 8192,
            page_rows: 500_000,
            part_bytes: 8 * 1024 * 1024,
            digest_spill_rows: crate::quality::digest::SPILL_ROWS,
            target: Warehouse::Redshift,
        }
    }
}

impl ExtractOptions {
    fn sink_options(&self) -> SinkOptions {
        SinkOptions {
            target_file_bytes: self.target_file_bytes,
            part_bytes: self.part_bytes,
            row_group_rows: self.row_group_rows,
            row_group_bytes: self.row_group_bytes,
            compression: self
                .compression
                .unwrap_or_else(|| FileCompression::for_warehouse(self.target)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_refuse_unknown_fields_and_stay_small() {
        let spec: ChunkSpec =
            serde_json::from_str(r#"{"chunk": 2, "key_range": {"lower": "10", "upper": "19"}}"#)
                .unwrap();
        assert_eq!(spec.key_range.unwrap().upper.as_deref(), Some("19"));
        assert!(serde_json::from_str::<ChunkSpec>(r#"{"chunk": 2, "extra": 1}"#).is_err());
        let result = ExtractResult {
            chunk: 0,
            done: false,
            continuation: Some(Continuation {
                cursor: Cursor {
                    timestamp: Some("2026-01-01 00:00:00.000000".into()),
                    key: vec!["42".into()],
                },
                next_seq: 3,
                progress_key: "p/runs/x/progress/chunk-00000-00003.json".into(),
            }),
            chunk_manifest_key: None,
            rows: 7,
            files: 3,
            bytes: 1 << 20,
        };
        let json = serde_json::to_string(&result).unwrap();
        assert!(!json.contains("chunk_manifest_key"), "{json}");
        assert_eq!(
            serde_json::from_str::<ExtractResult>(&json).unwrap(),
            result
        );
    }
}

//! Deletion runs (`deletes: hard | soft`): when a commit looks for rows deleted in the source,
//! and the run that carries the keys it found to the target — key-only Parquet files and a run
//! manifest, queued right after the data run and loaded in the same ledgered transaction as data
//! runs ([`crate::load::sql`] builds its statements).

use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::config::{DeletePolicy, Pipeline, TableConfig};
use crate::error::{Error, Result};
use crate::load::sql::GONE_KEY_COLUMN;
use crate::manifest::{DataFile, RunManifest};
use crate::naming::{StorageLayout, TableId};
use crate::run::{RunContext, SyncMode};
use crate::schema::{Column, ColumnType, TableSchema, TextSource};
use crate::services::Services;
use crate::verify::reconcile::{gone_keys, Reconciliation};

/// Keys per row group (and per Arrow batch) of a deletion run's file.
const KEYS_PER_ROW_GROUP: usize = 100_000;
/// The longest key text a deletion run carries: a Redshift VARCHAR's 65,535 bytes.
const MAX_KEY_BYTES: usize = 65_535;

/// Whether `run`'s commit may reconcile keys at all: the table deletes rows and the run loads
/// (not `--backup-only`). Only then is the watermark read for [`due`].
pub fn applies(table_config: &TableConfig, run: &RunContext) -> bool {
    table_config.deletes != DeletePolicy::Ignore && run.mode != SyncMode::BackupOnly
}

/// Whether `run`'s commit reconciles keys: it [`applies`], and the run is a repair run (whose
/// point is to make the target equal) or `reconcile_every` has passed since `reconciled_at`.
pub fn due(
    table_config: &TableConfig,
    run: &RunContext,
    reconciled_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    if !applies(table_config, run) {
        return false;
    }
    if run.repair.is_some() {
        return true;
    }
    match reconciled_at {
        None => true,
        // A clock behind `at` (another host's) waits: `to_std` of a negative span fails.
        Some(at) => (now - at)
            .to_std()
            .is_ok_and(|since| since >= table_config.reconcile_every()),
    }
}

/// What a commit's reconciliation did.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// When it compared the keys.
    pub at: DateTime<Utc>,
    /// The deletion run it wrote, with its manifest's key; none when no key is gone.
    pub run: Option<(RunManifest, String)>,
}

/// Reconciles the keys of `run`'s table (`data` is the run's own manifest) and, when some are
/// gone from the source, writes a deletion run for them. `Ok(None)`: skipped, said why at WARN.
pub async fn reconcile(
    services: &Services,
    pipeline: &Pipeline,
    table_config: &TableConfig,
    run: &RunContext,
    data: &RunManifest,
) -> Result<Option<Reconciled>> {
    let at = Utc::now();
    let found = gone_keys(
        services,
        pipeline,
        table_config,
        &run.table,
        &data.schema,
        &run.key_columns,
    )
    .await?;
    let keys = match found {
        Reconciliation::Skipped(why) => {
            tracing::warn!(table = %run.table, "deleted rows were not looked for: {why}");
            return Ok(None);
        }
        Reconciliation::Gone { keys, .. } => keys,
    };
    if keys.is_empty() {
        return Ok(Some(Reconciled { at, run: None }));
    }
    tracing::info!(
        table = %run.table,
        gone = keys.len(),
        deletes = %table_config.deletes,
        "target rows whose key is gone from the source: a deletion run carries them"
    );
    let layout = StorageLayout::new(&pipeline.s3.prefix);
    let written = write_run(services, pipeline, &layout, data, &keys, at).await?;
    Ok(Some(Reconciled {
        at,
        run: Some(written),
    }))
}

/// Writes the deletion run for `keys`: its file, then its manifest (the data run `data`'s
/// schema and ceiling, so that it loads in one plan with it and `verify` reads the same bounds).
async fn write_run(
    services: &Services,
    pipeline: &Pipeline,
    layout: &StorageLayout,
    data: &RunManifest,
    keys: &[String],
    at: DateTime<Utc>,
) -> Result<(RunManifest, String)> {
    let table = TableId::parse(&data.table)?;
    let run_id = data
        .run_id
        .next_after(at, uuid::Uuid::new_v4().as_u128() as u64);
    let bucket = services.bucket(pipeline);
    let file_key = layout.data_file_key(&data.pipeline, &table, &run_id, 0, 0);
    let body = key_file(&table, keys)?;
    let file = DataFile {
        key: file_key.clone(),
        bytes: body.len() as u64,
        rows: keys.len() as u64,
        min_cursor: Default::default(),
        max_cursor: Default::default(),
    };
    bucket.put(&file_key, body.into()).await?;
    crate::faults::point(crate::faults::FaultPoint::AfterDeletionFiles)?;
    let manifest = RunManifest {
        run_id: run_id.clone(),
        max_cursor: None,
        rows: file.rows,
        bytes: file.bytes,
        files: vec![file],
        zero_dates_nulled: 0,
        oversize_truncated: 0,
        oversize_nulled: 0,
        quality: None,
        repair: false,
        deletion: true,
        committed_at: at,
        ..data.clone()
    };
    let manifest_key = layout.run_manifest_key(&data.pipeline, &table, &run_id);
    let body = serde_json::to_vec_pretty(&manifest)
        .map_err(|err| Error::internal(format!("cannot encode a deletion run manifest: {err}")))?;
    bucket.put(&manifest_key, body.into()).await?;
    Ok((manifest, manifest_key))
}

/// The schema of a deletion run's files: one text column, [`GONE_KEY_COLUMN`].
pub fn key_file_schema(table: &TableId) -> TableSchema {
    TableSchema {
        table: table.clone(),
        columns: vec![Column {
            name: GONE_KEY_COLUMN.to_owned(),
            target_name: GONE_KEY_COLUMN.to_owned(),
            column_type: "text".to_owned(),
            ty: ColumnType::Text {
                max_octets: MAX_KEY_BYTES as u64,
                source: TextSource::Text,
            },
            nullable: false,
        }],
        primary_key: Vec::new(),
        json_in_redshift: Default::default(),
    }
}

/// A Parquet file of `keys`, Snappy-compressed (a codec Redshift's COPY reads).
fn key_file(table: &TableId, keys: &[String]) -> Result<Vec<u8>> {
    if let Some(long) = keys.iter().find(|key| key.len() > MAX_KEY_BYTES) {
        return Err(Error::InvalidRequest(format!(
            "a key of `{table}` is {} bytes as text, and a deletion run carries keys of at most {MAX_KEY_BYTES} bytes (a Redshift VARCHAR); `deletes` cannot apply to this table: set `deletes: ignore`",
            long.len()
        )));
    }
    let schema = key_file_schema(table).arrow_schema();
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(KEYS_PER_ROW_GROUP))
        .build();
    let failed = |err: parquet::errors::ParquetError| {
        Error::internal(format!(
            "cannot write a deletion run's keys as Parquet: {err}"
        ))
    };
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties)).map_err(failed)?;
    for chunk in keys.chunks(KEYS_PER_ROW_GROUP) {
        let column = StringArray::from_iter_values(chunk);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(column)])
            .map_err(|err| Error::internal(format!("a deletion run's key batch: {err}")))?;
        writer.write(&batch).map_err(failed)?;
    }
    writer.into_inner().map_err(failed)
}

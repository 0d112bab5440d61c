//! A table's storage written straight to S3 and its watermark, as extract, commit and load
//! leave it — for tests that need runs in every state (loaded, pending, abandoned, orphaned)
//! without MySQL or a warehouse, e.g. s3clean's.

use crate::tables::Table;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use tidemark::cursor::{Ceiling, Cursor};
use tidemark::manifest::{ChunkManifest, DataFile, RunManifest};
use tidemark::naming::{RunId, StorageLayout, TableId};
use tidemark::storage::Bucket;
use tidemark::watermark::{LoadedRun, WatermarkStore};

/// The pipeline every stored run belongs to.
pub const PIPELINE: &str = "p";
/// The pipeline's S3 prefix.
pub const PREFIX: &str = "tm";
/// Size of every data file.
pub const DATA_FILE_BYTES: usize = 100;
/// How many puts run at once.
const PARALLEL_PUTS: usize = 64;

/// Run `n` of a test: ids sort by `n`, whatever the clock.
pub fn run_id(n: u64) -> RunId {
    let base = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default();
    RunId::new(base + chrono::Duration::minutes(n as i64), n)
}

/// The objects one run wrote.
#[derive(Debug, Clone)]
pub struct StoredRun {
    /// The run.
    pub run_id: RunId,
    /// Every key it wrote, data files first.
    pub keys: Vec<String>,
    /// Its committed manifest's key, if committed.
    pub manifest_key: Option<String>,
}

/// One table of pipeline [`PIPELINE`] in a test bucket.
pub struct TableStorage {
    bucket: Bucket,
    store: WatermarkStore,
    table: TableId,
}

impl TableStorage {
    /// The table `db.table` in `bucket`, under [`PREFIX`].
    pub fn new(bucket: &Bucket, table: &str) -> anyhow::Result<Self> {
        Ok(TableStorage {
            bucket: bucket.clone(),
            store: WatermarkStore::new(bucket.clone(), StorageLayout::new(PREFIX), 10),
            table: TableId::parse(table)?,
        })
    }

    /// The watermark store.
    pub fn store(&self) -> &WatermarkStore {
        &self.store
    }

    /// The table.
    pub fn table(&self) -> &TableId {
        &self.table
    }

    fn layout(&self) -> &StorageLayout {
        self.store.layout()
    }

    /// An extraction that wrote `files` data files (chunk 0), its schema, a progress record and
    /// its chunk manifest, and was never committed: an orphan once it is old enough.
    pub async fn extracted(&self, run_id: &RunId, files: u32) -> anyhow::Result<StoredRun> {
        let layout = self.layout();
        let data: Vec<DataFile> = (0..files)
            .map(|seq| DataFile {
                key: layout.data_file_key(PIPELINE, &self.table, run_id, 0, seq),
                bytes: DATA_FILE_BYTES as u64,
                rows: 1,
                min_cursor: cursor(seq),
                max_cursor: cursor(seq),
            })
            .collect();
        let chunk = ChunkManifest {
            version: 1,
            pipeline: PIPELINE.into(),
            table: self.table.to_string(),
            run_id: run_id.clone(),
            chunk: 0,
            files: data.clone(),
            rows: u64::from(files),
            zero_dates_nulled: 0,
            oversize_truncated: 0,
            oversize_nulled: 0,
            schema_fingerprint: "f".into(),
            quality: None,
        };
        let mut objects: Vec<(String, Bytes)> = data
            .iter()
            .map(|f| (f.key.clone(), Bytes::from(vec![b'x'; DATA_FILE_BYTES])))
            .collect();
        objects.push((
            layout.run_schema_key(PIPELINE, &self.table, run_id),
            Bytes::from(serde_json::to_vec(&one_column_schema(&self.table)?)?),
        ));
        objects.push((
            layout.chunk_progress_key(PIPELINE, &self.table, run_id, 0, files),
            Bytes::from_static(b"{}"),
        ));
        objects.push((
            layout.chunk_manifest_key(PIPELINE, &self.table, run_id, 0),
            Bytes::from(serde_json::to_vec(&chunk)?),
        ));
        self.put_all(&objects).await?;
        Ok(StoredRun {
            run_id: run_id.clone(),
            keys: objects.into_iter().map(|(key, _)| key).collect(),
            manifest_key: None,
        })
    }

    /// [`TableStorage::extracted`], then the run manifest and COPY manifest, and the commit in
    /// the watermark: a pending run.
    pub async fn committed(&self, run_id: &RunId, files: u32) -> anyhow::Result<StoredRun> {
        let mut run = self.extracted(run_id, files).await?;
        let layout = self.layout();
        let data: Vec<DataFile> = (0..files)
            .map(|seq| DataFile {
                key: layout.data_file_key(PIPELINE, &self.table, run_id, 0, seq),
                bytes: DATA_FILE_BYTES as u64,
                rows: 1,
                min_cursor: cursor(seq),
                max_cursor: cursor(seq),
            })
            .collect();
        let manifest = RunManifest {
            version: 1,
            pipeline: PIPELINE.into(),
            table: self.table.to_string(),
            target: self.table.table().to_owned(),
            run_id: run_id.clone(),
            strategy: tidemark::config::CdcStrategy::Hybrid,
            load_mode: tidemark::config::LoadMode::Merge,
            start_cursor: Cursor::default(),
            ceiling: Ceiling {
                timestamp: Some("2030-01-01 00:00:00.000000".into()),
                id: None,
            },
            max_cursor: data.last().map(|f| f.max_cursor.clone()),
            rows: u64::from(files),
            bytes: data.iter().map(|f| f.bytes).sum(),
            files: data,
            zero_dates_nulled: 0,
            oversize_truncated: 0,
            oversize_nulled: 0,
            schema_fingerprint: "f".into(),
            schema: one_column_schema(&self.table)?,
            committed_at: Utc::now(),
            quality: None,
            repair: false,
            deletion: false,
        };
        let manifest_key = layout.run_manifest_key(PIPELINE, &self.table, run_id);
        let copy_key = layout.copy_manifest_key(PIPELINE, &self.table, run_id);
        self.put_all(&[
            (copy_key.clone(), Bytes::from_static(b"{\"entries\": []}")),
            (
                manifest_key.clone(),
                Bytes::from(serde_json::to_vec(&manifest)?),
            ),
        ])
        .await?;
        let now = Utc::now();
        self.store
            .update(
                PIPELINE,
                &self.table,
                self.table.table(),
                run_id,
                now,
                |w| w.apply_commit(&manifest, &manifest_key, now),
            )
            .await?;
        run.keys.push(copy_key);
        run.keys.push(manifest_key.clone());
        run.manifest_key = Some(manifest_key);
        Ok(run)
    }

    /// Records `runs` as loaded.
    pub async fn loaded(&self, runs: &[&StoredRun]) -> anyhow::Result<()> {
        let loaded: Vec<LoadedRun> = runs
            .iter()
            .map(|run| LoadedRun {
                run_id: run.run_id.clone(),
                rows_loaded: 1,
            })
            .collect();
        let now = Utc::now();
        let tag = RunId::parse("load")?;
        self.store
            .update(PIPELINE, &self.table, self.table.table(), &tag, now, |w| {
                w.apply_load(&loaded, now);
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// `reset --drop-pending`: the pending runs become abandoned.
    pub async fn drop_pending(&self) -> anyhow::Result<()> {
        let now = Utc::now();
        let tag = RunId::parse("manual")?;
        self.store
            .update(PIPELINE, &self.table, self.table.table(), &tag, now, |w| {
                Ok(w.reset(true))
            })
            .await?;
        Ok(())
    }

    async fn put_all(&self, objects: &[(String, Bytes)]) -> anyhow::Result<()> {
        futures::stream::iter(objects.iter().cloned())
            .map(|(key, body)| {
                let bucket = self.bucket.clone();
                async move { bucket.put(&key, body).await }
            })
            .buffer_unordered(PARALLEL_PUTS)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }
}

fn cursor(seq: u32) -> Cursor {
    Cursor {
        timestamp: Some("2026-01-01 00:00:00.000000".into()),
        key: vec![seq.to_string()],
    }
}

fn one_column_schema(table: &TableId) -> anyhow::Result<tidemark::schema::TableSchema> {
    let id = tidemark::schema::SourceColumn {
        name: "id".into(),
        data_type: "bigint".into(),
        column_type: "bigint(20)".into(),
        ..Default::default()
    };
    Ok(tidemark::schema::TableSchema::from_source_columns(
        table,
        vec![id],
        vec!["id".into()],
        &Default::default(),
    )?)
}

/// A configuration whose pipeline [`PIPELINE`] keeps `tables` in `bucket` under [`PREFIX`]. Its
/// source and target are never contacted by storage-only commands.
pub fn config_yaml(bucket: &str, tables: &[&str]) -> String {
    let tables = crate::tables::yaml(
        &tables
            .iter()
            .map(|t| Table::named(t).cursor_column("updated_at"))
            .collect::<Vec<_>>(),
    );
    format!(
        "connections:\n  src:\n    kind: mysql\n    host: 127.0.0.1\n    user: root\n  wh:\n    kind: postgres\n    host: 127.0.0.1\n    database: postgres\n    user: postgres\npipelines:\n  {PIPELINE}:\n    source: src\n    target: wh\n    s3: {{ bucket: \"{bucket}\", prefix: {PREFIX} }}\n    tables:\n{tables}"
    )
}

/// [`config_yaml`], parsed.
pub fn config(bucket: &str, tables: &[&str]) -> anyhow::Result<tidemark::config::Config> {
    Ok(tidemark::config::Config::from_yaml(
        &config_yaml(bucket, tables),
        "test.yaml",
        &tidemark::config::Environment::new(),
    )?)
}

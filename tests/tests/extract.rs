//! Extraction against the real local MariaDB and S3 endpoint: every strategy reads every row
//! exactly once across pages, invocations, files and chunks (also when hundreds of rows share one
//! timestamp), continuations resume exactly, `limit` holds, every written file reads back with the
//! run's schema and the source's values, and failures leave no object behind.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use mysql_async::prelude::Queryable;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::LogicalType;
use tidemark::config::{Config, Connection};
use tidemark::cursor::Cursor;
use tidemark::extract::{
    self, extract_chunk, ChunkSpec, ExtractJob, ExtractOptions, ExtractRequest, ExtractResult,
};
use tidemark::manifest::ChunkManifest;
use tidemark::naming::{self, RunId, TableId};
use tidemark::run::RunContext;
use tidemark::schema::{self, BooleanSource, ColumnType, TableSchema, Warehouse};
use tidemark::services::Services;
use tidemark::source::Source;
use tidemark::steps::watermark::{begin, BeginRequest};
use tidemark::{Error, ErrorKind};
use tidemark_tests::s3::TestBucket;
use tidemark_tests::tables::Table;
use tidemark_tests::{type_zoo, TestMysql};

fn fixture(name: &str) -> serde_json::Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("fixtures/extract/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(name: &str) {
    let payload = fixture(name);
    let parsed: T =
        serde_json::from_value(payload.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(serde_json::to_value(parsed).unwrap(), payload, "{name}");
    let mut extra = payload;
    extra["colour"] = "blue".into();
    let err = serde_json::from_value::<T>(extra)
        .err()
        .map(|e| e.to_string());
    assert!(
        err.is_some_and(|e| e.contains("unknown field `colour`")),
        "{name} refuses unknown fields"
    );
}

#[test]
fn every_extract_payload_fixture_round_trips() {
    round_trips::<extract::PlanRequest>("plan_request");
    round_trips::<extract::PlanResult>("plan_result");
    round_trips::<ExtractRequest>("extract_request");
    round_trips::<ExtractResult>("extract_result");
}

/// Rows that share one timestamp: far more than a page, an invocation or a file.
const SHARED: u64 = 250;
/// The events every ordering test reads: 20 early rows whose timestamps fall as their ids rise,
/// 250 rows sharing one timestamp, 20 later rows, and 5 rows beyond any ceiling.
const EVENTS: &str = "CREATE TABLE events (
    id BIGINT NOT NULL PRIMARY KEY,
    updated_at DATETIME(6) NOT NULL,
    note VARCHAR(40),
    KEY (updated_at)
)";
const EVENTS_ROWS: u64 = 290;

async fn seed_events(conn: &mut mysql_async::Conn) -> anyhow::Result<()> {
    conn.query_drop(EVENTS).await?;
    conn.query_drop(
        "INSERT INTO events
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 295)
         SELECT i,
                CASE WHEN i <= 20 THEN '2023-06-01 00:00:00' + INTERVAL (20 - i) SECOND
                     WHEN i <= 270 THEN '2024-01-01 00:00:00.500000'
                     WHEN i <= 290 THEN '2024-06-01 00:00:00' + INTERVAL i MICROSECOND
                     ELSE '2999-01-01 00:00:00' END,
                CONCAT('row ', i)
         FROM n",
    )
    .await?;
    Ok(())
}

/// One test's world: the config, the steps' services, a bucket, the source.
struct Harness {
    config: Config,
    services: Services,
    bucket: TestBucket,
    source: Source,
}

impl Harness {
    /// `tables` is the pipeline's `tables:` YAML, eight spaces in, `{db}` for the database.
    async fn new(mysql: &TestMysql, tables: &str) -> anyhow::Result<Harness> {
        Harness::with_config(mysql, tables, |_| {}).await
    }

    /// As [`Harness::new`], with the parsed config changed by `edit` first.
    async fn with_config(
        mysql: &TestMysql,
        tables: &str,
        edit: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Harness> {
        let bucket = TestBucket::fresh().await?;
        let mut config = mysql.config(bucket.bucket().name(), tables)?;
        edit(&mut config);
        let services = Services::from_env(config.clone(), None).await;
        let source = services.source(config.pipeline("p")?).await?;
        Ok(Harness {
            config,
            services,
            bucket,
            source,
        })
    }

    async fn remove(self) -> anyhow::Result<()> {
        self.source.disconnect().await;
        self.bucket.remove().await
    }

    /// `begin` of the watermark step: the run context the state machine passes on.
    async fn begin(&self, table: &TableId, limit: Option<u64>) -> anyhow::Result<RunContext> {
        Ok(begin(
            &self.services,
            &BeginRequest {
                pipeline: "p".into(),
                table: table.to_string(),
                mode: Default::default(),
                limit,
                execution: None,
                repair: None,
                after: Vec::new(),
            },
        )
        .await?)
    }

    async fn schema(&self, run: &RunContext) -> anyhow::Result<TableSchema> {
        let (_, table, _) = run.resolve(&self.config)?;
        let mut conn = self.source.conn().await?;
        Ok(schema::discover(&mut conn, &run.table, &table.schema_options()).await?)
    }

    async fn plan(&self, run: &RunContext, max_chunks: u32) -> anyhow::Result<extract::PlanResult> {
        let (_, table, _) = run.resolve(&self.config)?;
        let schema = self.schema(run).await?;
        let mut conn = self.source.conn().await?;
        Ok(extract::plan(&mut conn, &schema, run, table, max_chunks).await?)
    }

    /// One invocation.
    async fn extract_once(
        &self,
        run: &RunContext,
        chunk: &ChunkSpec,
        continuation: Option<extract::Continuation>,
        options: &ExtractOptions,
    ) -> tidemark::Result<ExtractResult> {
        let (_, table, layout) = run.resolve(&self.config)?;
        let mut conn = self.source.conn().await?;
        let schema = schema::discover(&mut conn, &run.table, &table.schema_options()).await?;
        drop(conn);
        let request = ExtractRequest {
            run: run.clone(),
            chunk: chunk.clone(),
            continuation,
        };
        let job = ExtractJob {
            source: &self.source,
            bucket: self.bucket.bucket(),
            layout: &layout,
            schema: &schema,
            table,
        };
        let result = extract_chunk(&job, &request, options).await?;
        let payload =
            serde_json::to_string(&result).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        assert!(payload.len() < 2048, "payloads stay small: {payload}");
        Ok(result)
    }

    /// Invocations until the chunk is done; the results and the chunk manifest.
    async fn extract_all(
        &self,
        run: &RunContext,
        chunk: &ChunkSpec,
        options: &ExtractOptions,
    ) -> anyhow::Result<(Vec<ExtractResult>, ChunkManifest)> {
        let mut results: Vec<ExtractResult> = Vec::new();
        loop {
            let continuation = results.last().and_then(|r| r.continuation.clone());
            let result = self.extract_once(run, chunk, continuation, options).await?;
            ensure!(
                result.done != result.continuation.is_some(),
                "a result continues exactly when it is not done: {result:?}"
            );
            results.push(result.clone());
            if result.done {
                break;
            }
            ensure!(results.len() < 5000, "the chunk never finishes");
        }
        let key = results
            .last()
            .and_then(|r| r.chunk_manifest_key.clone())
            .context("a done chunk names its manifest")?;
        let manifest = self.manifest(&key).await?;
        ensure!(manifest.chunk == chunk.chunk && manifest.run_id == run.run_id);
        ensure!(
            manifest.rows == results.last().map_or(0, |r| r.rows),
            "the result counts the manifest's rows"
        );
        Ok((results, manifest))
    }

    async fn manifest(&self, key: &str) -> anyhow::Result<ChunkManifest> {
        let object = self
            .bucket
            .bucket()
            .get(key)
            .await?
            .context("manifest exists")?;
        Ok(serde_json::from_slice(&object.body)?)
    }

    /// Every file of `manifest`, read back: the exact size, the run's schema, the row counts.
    async fn read_files(
        &self,
        schema: &TableSchema,
        manifest: &ChunkManifest,
    ) -> anyhow::Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        let mut total = 0;
        for file in &manifest.files {
            let object = self
                .bucket
                .bucket()
                .get(&file.key)
                .await?
                .with_context(|| format!("{} exists", file.key))?;
            ensure!(
                object.body.len() as u64 == file.bytes,
                "{}: exact size",
                file.key
            );
            let builder = ParquetRecordBatchReaderBuilder::try_new(object.body)?;
            ensure!(
                builder.schema().fields() == schema.arrow_schema().fields(),
                "{}: the run's schema",
                file.key
            );
            let mut rows = 0;
            for batch in builder.build()? {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                batches.push(batch);
            }
            ensure!(
                rows == file.rows,
                "{}: {rows} rows, manifest says {}",
                file.key,
                file.rows
            );
            ensure!(
                file.min_cursor.compare(&file.max_cursor) != std::cmp::Ordering::Greater,
                "{}: min ≤ max",
                file.key
            );
            total += rows;
        }
        ensure!(total == manifest.rows, "manifest rows");
        Ok(batches)
    }

    /// Every object under the run's data prefix.
    async fn data_objects(&self, run: &RunContext) -> anyhow::Result<Vec<(String, u64)>> {
        let (_, _, layout) = run.resolve(&self.config)?;
        let prefix = layout.run_data_prefix(&run.pipeline, &run.table, &run.run_id);
        Ok(self
            .bucket
            .bucket()
            .list(&prefix)
            .await?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect())
    }
}

/// The distinct codecs of a Parquet file's column chunks, as text.
fn codecs(metadata: &parquet::file::metadata::ParquetMetaData) -> Vec<String> {
    let mut codecs: Vec<String> = metadata
        .row_groups()
        .iter()
        .flat_map(|group| {
            group
                .columns()
                .iter()
                .map(|c| format!("{:?}", c.compression()))
        })
        .collect();
    codecs.sort();
    codecs.dedup();
    codecs
}

fn whole_chunk() -> ChunkSpec {
    ChunkSpec {
        chunk: 0,
        key_range: None,
        repair_keys: None,
    }
}

/// The plan of a small incremental run (or one with a limit): one chunk, in cursor order.
fn assert_one_chunk_in_cursor_order(plan: &extract::PlanResult) {
    assert_eq!(plan.chunks, vec![whole_chunk()], "{plan:?}");
    assert!(plan.order.starts_with("cursor order"), "{plan:?}");
}

/// Small pages, batches and files, so that every boundary falls inside the shared timestamp.
fn small_options() -> ExtractOptions {
    ExtractOptions {
        page_rows: 3,
        batch_rows: 2,
        max_rows_per_file: Some(5),
        ..ExtractOptions::default()
    }
}

/// The integer values of column `name` in every batch, in order.
fn ints(batches: &[RecordBatch], name: &str) -> anyhow::Result<Vec<i64>> {
    let mut out = Vec::new();
    for batch in batches {
        let column = batch.column_by_name(name).context("column exists")?;
        match column.data_type() {
            DataType::Int64 => out.extend(column.as_primitive::<Int64Type>().iter().flatten()),
            DataType::Int32 => out.extend(
                column
                    .as_primitive::<Int32Type>()
                    .iter()
                    .flatten()
                    .map(i64::from),
            ),
            other => anyhow::bail!("{name} is {other}"),
        }
    }
    Ok(out)
}

/// The source's ids in `sql` order.
async fn source_ids(mysql: &TestMysql, sql: &str) -> anyhow::Result<Vec<i64>> {
    let mut conn = mysql.conn().await?;
    Ok(conn.query(sql).await?)
}

/// Each id exactly once, and exactly the expected ones.
fn assert_exactly_once(read: &[i64], expected: &[i64]) {
    let mut sorted = read.to_vec();
    sorted.sort_unstable();
    let unique: BTreeSet<i64> = read.iter().copied().collect();
    assert_eq!(unique.len(), read.len(), "no row is read twice");
    let mut wanted = expected.to_vec();
    wanted.sort_unstable();
    assert_eq!(sorted, wanted, "every row is read");
}

/// hybrid and timestamp_only-with-a-key: pages of 3, batches of 2, files of 5, invocations of 7
/// rows, all inside 250 rows sharing one timestamp.
async fn keyset_reads_every_row_once(strategy: &str) -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        seed_events(&mut mysql.conn().await?).await?;
        let h = Harness::new(
            mysql,
            &Table::new("events")
                .strategy(strategy)
                .cursor_column("updated_at")
                .chunk_rows(7)
                .lag("0s")
                .yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("events"), None).await?;
        let schema = h.schema(&run).await?;
        let (results, manifest) = h
            .extract_all(&run, &whole_chunk(), &small_options())
            .await?;
        assert_eq!(
            results.len() as u64,
            EVENTS_ROWS.div_ceil(7) + u64::from(EVENTS_ROWS.is_multiple_of(7))
        );
        let batches = h.read_files(&schema, &manifest).await?;
        let ids = ints(&batches, "id")?;
        let expected = source_ids(
            mysql,
            "SELECT id FROM events WHERE updated_at < '2999-01-01' ORDER BY updated_at, id",
        )
        .await?;
        assert_exactly_once(&ids, &expected);
        assert_eq!(ids, expected, "files hold rows in (timestamp, id) order");

        // Files cover consecutive, non-overlapping cursor ranges in order.
        for pair in manifest.files.windows(2) {
            assert_eq!(
                pair[0].max_cursor.compare(&pair[1].min_cursor),
                std::cmp::Ordering::Less,
                "{:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
        assert!(manifest.files.iter().all(|f| f.rows <= 5));
        let shared = manifest
            .files
            .iter()
            .filter(|f| f.min_cursor.timestamp.as_deref() == Some("2024-01-01 00:00:00.500000"))
            .count();
        assert!(
            shared as u64 >= SHARED / 5,
            "{shared} files start inside the shared timestamp"
        );
        let last = manifest.files.last().context("files")?;
        assert_eq!(
            last.max_cursor,
            Cursor {
                timestamp: Some("2024-06-01 00:00:00.000290".into()),
                key: vec!["290".into()]
            }
        );
        // Exactly the manifest's files exist, with the manifest's sizes.
        let mut listed = h.data_objects(&run).await?;
        listed.sort();
        let mut named: Vec<(String, u64)> = manifest
            .files
            .iter()
            .map(|f| (f.key.clone(), f.bytes))
            .collect();
        named.sort();
        assert_eq!(listed, named);
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn hybrid_reads_every_row_once_across_a_shared_timestamp() -> anyhow::Result<()> {
    keyset_reads_every_row_once("hybrid").await
}

#[tokio::test]
async fn timestamp_only_with_a_key_reads_every_row_once() -> anyhow::Result<()> {
    keyset_reads_every_row_once("timestamp_only").await
}

#[tokio::test]
async fn a_run_starts_strictly_after_its_start_cursor_inside_a_shared_timestamp(
) -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        seed_events(&mut mysql.conn().await?).await?;
        let h = Harness::new(
            mysql,
            &Table::new("events")
                .cursor_column("updated_at")
                .chunk_rows(7)
                .lag("0s")
                .yaml(),
        )
        .await?;
        let mut run = h.begin(&mysql.table("events"), None).await?;
        let schema = h.schema(&run).await?;
        let shared = "2024-01-01 00:00:00.500000";
        // The watermark of an earlier run that stopped inside the shared timestamp.
        run.start_cursor = Cursor {
            timestamp: Some(shared.into()),
            key: vec!["100".into()],
        };
        let (_, manifest) = h
            .extract_all(&run, &whole_chunk(), &small_options())
            .await?;
        let ids = ints(&h.read_files(&schema, &manifest).await?, "id")?;
        assert_eq!(ids, (101..=290).collect::<Vec<_>>());

        // A timestamp without a key (what `lookback` leaves) re-reads its whole timestamp.
        let rerun = RunContext {
            start_cursor: Cursor {
                timestamp: Some(shared.into()),
                key: Vec::new(),
            },
            run_id: RunId::new(chrono::Utc::now(), 7),
            ..run.clone()
        };
        let (_, manifest) = h
            .extract_all(&rerun, &whole_chunk(), &small_options())
            .await?;
        let ids = ints(&h.read_files(&schema, &manifest).await?, "id")?;
        assert_eq!(ids, (21..=290).collect::<Vec<_>>());
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn full_sync_reads_the_whole_table_whatever_the_watermark_in_the_redshift_profile(
) -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        seed_events(&mut mysql.conn().await?).await?;
        let h = Harness::new(
            mysql,
            &Table::new("events")
                .strategy("full_sync")
                .chunk_rows(100)
                .yaml(),
        )
        .await?;
        let mut run = h.begin(&mysql.table("events"), None).await?;
        run.start_cursor = Cursor {
            timestamp: None,
            key: vec!["295".into()],
        };
        let schema = h.schema(&run).await?;
        let (results, manifest) = h
            .extract_all(&run, &whole_chunk(), &ExtractOptions::default())
            .await?;
        assert_eq!(
            results.len(),
            1,
            "one invocation, one snapshot: `chunk_rows` does not split a full_sync"
        );
        let ids = ints(&h.read_files(&schema, &manifest).await?, "id")?;
        assert_eq!(ids, (1..=295).collect::<Vec<_>>());
        // The default target is Redshift, whose write profile compresses with Snappy.
        let object = h
            .bucket
            .bucket()
            .get(&manifest.files[0].key)
            .await?
            .context("file")?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(object.body)?;
        assert_eq!(codecs(reader.metadata()), ["SNAPPY"]);
        let plan = h.plan(&run, 4).await?;
        assert_eq!(plan.chunks.len(), 1, "a full_sync is one chunk: {plan:?}");
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn full_sync_of_a_table_without_a_key_reads_it_in_one_pass() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop("CREATE TABLE tags (label VARCHAR(20) NOT NULL, n INT NOT NULL)")
            .await?;
        conn.query_drop(
            "INSERT INTO tags WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30) \
             SELECT CONCAT('tag ', i), i FROM n",
        )
        .await?;
        let h = Harness::new(
            mysql,
            &Table::new("tags").strategy("full_sync").chunk_rows(7).yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("tags"), None).await?;
        let schema = h.schema(&run).await?;
        let (results, manifest) = h.extract_all(&run, &whole_chunk(), &small_options()).await?;
        assert_eq!(results.len(), 1, "nothing to resume from without a key");
        assert_exactly_once(&ints(&h.read_files(&schema, &manifest).await?, "n")?, &(1..=30).collect::<Vec<_>>());
        h.remove().await
    })
    .await
}

/// A `full_sync` table read in one invocation writes its `unique` digests out every
/// `digest_spill_rows` rows (memory bounded however large the table), and the merge of those
/// objects still finds the one duplicate between the first and the last rows, by both keys.
#[tokio::test]
async fn unique_digests_spill_while_reading_and_still_meet_in_the_merge() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop("CREATE TABLE people (id INT PRIMARY KEY, email VARCHAR(40) NULL)")
            .await?;
        conn.query_drop(
            "INSERT INTO people SELECT seq, IF(seq = 997, 'p3@example.org', CONCAT('p', seq, '@example.org')) \
             FROM seq_1_to_1000",
        )
        .await?;
        let table = Table::new("people")
            .strategy("full_sync")
            .with_yaml("checks", "- unique: [email]\n")?;
        let h = Harness::new(mysql, &table.yaml()).await?;
        let run = h.begin(&mysql.table("people"), None).await?;
        let options = ExtractOptions {
            batch_rows: 50,
            digest_spill_rows: 100,
            ..ExtractOptions::default()
        };
        let (results, manifest) = h.extract_all(&run, &whole_chunk(), &options).await?;
        ensure!(results.len() == 1, "full_sync reads in one invocation");
        let quality = manifest.quality.context("the chunk has its checks' counts")?;
        ensure!(
            quality.digests.len() >= 10,
            "1000 rows spilled every 100 make at least 10 digests: {:?}",
            quality.digests
        );
        let (_, table_config, _) = run.resolve(&h.config)?;
        let facts = tidemark::quality::RunFacts {
            rows: manifest.rows,
            newest: None,
            ceiling: &run.ceiling,
            lag: Duration::ZERO,
        };
        let judged =
            tidemark::quality::judge(&table_config.checks, &[&quality], &facts, h.bucket.bucket())
                .await?;
        let unique = &judged.checks[0];
        ensure!(
            unique.count.failures == 1 && unique.count.examples == ["3", "997"],
            "{unique:?}"
        );
        ensure!(judged.verdict == tidemark::quality::Verdict::Quarantined);
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn timestamp_only_without_a_key_extends_pages_to_their_last_timestamp() -> anyhow::Result<()>
{
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE logs (happened_at DATETIME(6) NOT NULL, seq INT NOT NULL, KEY (happened_at))",
        )
        .await?;
        conn.query_drop(
            "INSERT INTO logs
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
             SELECT CASE WHEN i <= 25 THEN '2023-01-01 00:00:00' + INTERVAL i SECOND
                         WHEN i <= 275 THEN '2024-01-01 12:00:00.000001'
                         ELSE '2024-02-01 00:00:00' + INTERVAL i SECOND END, i
             FROM n",
        )
        .await?;
        let h = Harness::new(
            mysql,
            &Table::new("logs").strategy("timestamp_only").cursor_column("happened_at").load("append").chunk_rows(7).lag("0s").yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("logs"), None).await?;
        assert!(run.key_columns.is_empty());
        let schema = h.schema(&run).await?;
        let (results, manifest) = h.extract_all(&run, &whole_chunk(), &small_options()).await?;
        let batches = h.read_files(&schema, &manifest).await?;
        let seqs = ints(&batches, "seq")?;
        assert_exactly_once(&seqs, &(1..=300).collect::<Vec<_>>());
        // The page that reaches the shared timestamp takes all 250 of its rows at once.
        let big = results
            .windows(2)
            .map(|w| w[1].rows - w[0].rows)
            .max()
            .unwrap_or_default();
        assert!(big >= SHARED, "one invocation read the whole shared timestamp ({big})");
        for file in &manifest.files {
            assert!(file.min_cursor.key.is_empty() && file.min_cursor.timestamp.is_some());
        }
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn id_only_reads_after_the_start_and_up_to_the_ceiling() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        seed_events(&mut conn).await?;
        let h = Harness::new(
            mysql,
            &Table::new("events")
                .strategy("id_only")
                .load("append")
                .chunk_rows(11)
                .yaml(),
        )
        .await?;
        let mut run = h.begin(&mysql.table("events"), None).await?;
        assert_eq!(run.ceiling.id.as_deref(), Some("295"));
        // Rows appended after begin are the next run's.
        conn.query_drop(
            "INSERT INTO events VALUES (296, '2000-01-01', 'late'), (400, '2000-01-01', 'late')",
        )
        .await?;
        run.start_cursor = Cursor {
            timestamp: None,
            key: vec!["17".into()],
        };
        let schema = h.schema(&run).await?;
        let (_, manifest) = h
            .extract_all(&run, &whole_chunk(), &small_options())
            .await?;
        let ids = ints(&h.read_files(&schema, &manifest).await?, "id")?;
        assert_eq!(ids, (18..=295).collect::<Vec<_>>());
        assert_eq!(
            manifest.files.last().map(|f| f.max_cursor.clone()),
            Some(Cursor {
                timestamp: None,
                key: vec!["295".into()]
            })
        );
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn an_id_only_initial_load_splits_into_key_ranges_that_cover_the_table() -> anyhow::Result<()>
{
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        seed_events(&mut conn).await?;
        conn.query_drop("ANALYZE TABLE events").await?;
        let h = Harness::new(
            mysql,
            &Table::new("events")
                .strategy("id_only")
                .chunk_rows(50)
                .yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("events"), None).await?;
        let plan = h.plan(&run, 4).await?;
        assert!(plan.estimated_rows > 200, "{plan:?}");
        assert_eq!(plan.chunks.len(), 4, "{plan:?}");
        let ranges: Vec<_> = plan.chunks.iter().map(|c| c.key_range.clone()).collect();
        assert!(
            ranges[0].as_ref().is_some_and(|r| r.lower.is_none()),
            "the first range is open below"
        );
        assert!(
            ranges[3].as_ref().is_some_and(|r| r.upper.is_none()),
            "the last range is open above"
        );
        for pair in ranges.windows(2) {
            let upper: i64 = pair[0]
                .as_ref()
                .and_then(|r| r.upper.clone())
                .context("upper")?
                .parse()?;
            let lower: i64 = pair[1]
                .as_ref()
                .and_then(|r| r.lower.clone())
                .context("lower")?
                .parse()?;
            assert_eq!(upper + 1, lower, "ranges are contiguous");
        }
        let schema = h.schema(&run).await?;
        let mut ids = Vec::new();
        for (i, chunk) in plan.chunks.iter().enumerate() {
            assert_eq!(chunk.chunk, i as u32);
            let (_, manifest) = h.extract_all(&run, chunk, &small_options()).await?;
            assert!(manifest
                .files
                .iter()
                .all(|f| f.key.contains(&format!("part-{i:05}-"))));
            ids.extend(ints(&h.read_files(&schema, &manifest).await?, "id")?);
        }
        assert_exactly_once(&ids, &(1..=295).collect::<Vec<_>>());
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn a_hybrid_initial_load_splits_by_key_and_stays_under_the_ceiling() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        seed_events(&mut conn).await?;
        conn.query_drop("ANALYZE TABLE events").await?;
        let h = Harness::new(
            mysql,
            &Table::new("events")
                .cursor_column("updated_at")
                .chunk_rows(100)
                .lag("0s")
                .yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("events"), None).await?;
        let plan = h.plan(&run, 8).await?;
        assert_eq!(plan.chunks.len(), 3, "{plan:?}");
        let schema = h.schema(&run).await?;
        let mut ids = Vec::new();
        let mut max: Option<Cursor> = None;
        for chunk in &plan.chunks {
            let (_, manifest) = h.extract_all(&run, chunk, &small_options()).await?;
            for file in &manifest.files {
                assert!(
                    file.max_cursor.timestamp.is_some(),
                    "file cursors are (timestamp, key)"
                );
                if max
                    .as_ref()
                    .is_none_or(|m| file.max_cursor.compare(m).is_gt())
                {
                    max = Some(file.max_cursor.clone());
                }
            }
            ids.extend(ints(&h.read_files(&schema, &manifest).await?, "id")?);
        }
        assert_exactly_once(&ids, &(1..=290).collect::<Vec<_>>());
        assert_eq!(
            max,
            Some(Cursor {
                timestamp: Some("2024-06-01 00:00:00.000290".into()),
                key: vec!["290".into()]
            }),
            "the run's max cursor is the largest (timestamp, key), not the largest key"
        );
        h.remove().await
    })
    .await
}

/// With `chunk_concurrency: 1` a large first load is still a key range, read in key order: ids
/// 1–20 have falling timestamps, so a read in cursor order would start at id 20 (issue #22).
#[tokio::test]
async fn a_large_first_load_in_one_chunk_reads_in_key_order() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        seed_events(&mut conn).await?;
        conn.query_drop("ANALYZE TABLE events").await?;
        let h = Harness::new(
            mysql,
            &Table::hybrid("events", "updated_at").chunk_rows(100).yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("events"), None).await?;
        let plan = h.plan(&run, 1).await?;
        assert_eq!(plan.chunks.len(), 1, "{plan:?}");
        let range = plan.chunks[0].key_range.clone().context("a key range")?;
        assert_eq!(
            (range.lower, range.upper),
            (None, None),
            "open at both ends"
        );
        let schema = h.schema(&run).await?;
        // The dry run shows that order and its statement.
        let (_, table, _) = run.resolve(&h.config)?;
        let preview = extract::preview(&schema, &run, table, &plan, 100)?;
        assert!(
            preview
                .order
                .starts_with("primary-key order, in 1 key range"),
            "{preview:?}"
        );
        assert!(preview.sql.contains("ORDER BY `id`"), "{preview:?}");
        let (results, manifest) = h
            .extract_all(&run, &plan.chunks[0], &small_options())
            .await?;
        assert_eq!(results.len(), 3, "100-row invocations continue by key");
        let ids = ints(&h.read_files(&schema, &manifest).await?, "id")?;
        assert_eq!(
            ids,
            (1..=290).collect::<Vec<_>>(),
            "key order, under the ceiling"
        );
        h.remove().await
    })
    .await
}

/// A large incremental run reads in key order, its start cursor (inside the 2023 rows, whose
/// timestamps fall as ids rise) and its ceiling as filters: exactly the rows after the start in
/// cursor order, in key order, through invocations that continue mid-range (issue #22).
#[tokio::test]
async fn a_large_incremental_run_reads_in_key_order_between_its_start_and_ceiling(
) -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        seed_events(&mut conn).await?;
        conn.query_drop("ANALYZE TABLE events").await?;
        let h = Harness::new(
            mysql,
            &Table::hybrid("events", "updated_at").chunk_rows(100).yaml(),
        )
        .await?;
        let mut run = h.begin(&mysql.table("events"), None).await?;
        // Id 15 is at 00:00:05; ids 1–14 come later in cursor order, 16–20 earlier.
        run.start_cursor = Cursor {
            timestamp: Some("2023-06-01 00:00:05.000000".into()),
            key: vec!["15".into()],
        };
        let plan = h.plan(&run, 1).await?;
        assert_eq!(
            plan.chunks[0].key_range,
            Some(extract::KeyRange::default()),
            "{plan:?}"
        );
        assert!(plan.order.starts_with("primary-key order"), "{plan:?}");
        let schema = h.schema(&run).await?;
        let (results, manifest) = h
            .extract_all(&run, &plan.chunks[0], &small_options())
            .await?;
        assert_eq!(results.len(), 3, "100-row invocations continue by key");
        let ids = ints(&h.read_files(&schema, &manifest).await?, "id")?;
        let expected: Vec<i64> = (1..=14).chain(21..=290).collect();
        assert_eq!(
            ids, expected,
            "key order, after the start, under the ceiling"
        );
        let max = manifest
            .files
            .iter()
            .map(|file| file.max_cursor.clone())
            .max_by(|a, b| a.compare(b));
        assert_eq!(
            max.and_then(|cursor| cursor.timestamp),
            Some("2024-06-01 00:00:00.000290".into()),
            "the run's max cursor is its largest (timestamp, key)"
        );

        // The same start with a limit keeps cursor order: the earliest changes first.
        run.limit = Some(50);
        assert_one_chunk_in_cursor_order(&h.plan(&run, 1).await?);
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn plan_counts_null_cursors_and_keeps_small_incremental_runs_whole() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE t (id INT PRIMARY KEY, updated_at DATETIME(6) NULL, KEY (updated_at))",
        )
            .await?;
        conn.query_drop(
            "INSERT INTO t VALUES (1, '2024-01-01'), (2, NULL), (3, NULL), (4, '2024-01-02'), (5, NULL)",
        )
        .await?;
        conn.query_drop("ANALYZE TABLE t").await?;
        let h = Harness::new(
            mysql,
            &Table::new("t").cursor_column("updated_at").chunk_rows(2).lag("0s").yaml(),
        )
        .await?;
        let mut run = h.begin(&mysql.table("t"), None).await?;
        let plan = h.plan(&run, 4).await?;
        assert_eq!(plan.null_cursor_rows, 3);
        assert!(plan.chunks.len() > 1, "an initial load is split: {plan:?}");
        run.start_cursor = Cursor {
            timestamp: Some("2024-01-01 00:00:00.000000".into()),
            key: vec!["1".into()],
        };
        assert_one_chunk_in_cursor_order(&h.plan(&run, 4).await?);
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn a_passed_deadline_returns_a_continuation_that_resumes_exactly() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        seed_events(&mut mysql.conn().await?).await?;
        let h = Harness::new(
            mysql,
            &Table::new("events")
                .cursor_column("updated_at")
                .lag("0s")
                .yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("events"), None).await?;
        let schema = h.schema(&run).await?;
        let options = ExtractOptions {
            deadline: Some(tokio::time::Instant::now()),
            batch_rows: 25,
            page_rows: 1000,
            ..ExtractOptions::default()
        };
        let first = h.extract_once(&run, &whole_chunk(), None, &options).await?;
        assert!(!first.done);
        assert_eq!(first.rows, 25, "one batch, then the deadline");
        let continuation = first.continuation.clone().context("continuation")?;
        assert_eq!(continuation.next_seq, 1);
        assert_eq!(
            continuation.cursor,
            Cursor {
                timestamp: Some("2024-01-01 00:00:00.500000".into()),
                key: vec!["25".into()]
            }
        );
        // A retried invocation (same input) rewrites the same files and answers the same.
        let again = h.extract_once(&run, &whole_chunk(), None, &options).await?;
        assert_eq!(again, first);

        let (results, manifest) = h.extract_all(&run, &whole_chunk(), &options).await?;
        assert_eq!(results.len() as u64, EVENTS_ROWS.div_ceil(25));
        let ids = ints(&h.read_files(&schema, &manifest).await?, "id")?;
        let expected = source_ids(
            mysql,
            "SELECT id FROM events WHERE id <= 290 ORDER BY updated_at, id",
        )
        .await?;
        assert_eq!(ids, expected);
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn limit_caps_the_run_at_the_first_rows_in_cursor_order() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        seed_events(&mut mysql.conn().await?).await?;
        let h = Harness::new(
            mysql,
            &Table::new("events")
                .cursor_column("updated_at")
                .chunk_rows(7)
                .lag("0s")
                .yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("events"), Some(40)).await?;
        assert_eq!(run.limit, Some(40));
        let plan = h.plan(&run, 8).await?;
        assert_eq!(
            plan.chunks,
            vec![whole_chunk()],
            "a limited run is one chunk"
        );
        let schema = h.schema(&run).await?;
        let (results, manifest) = h
            .extract_all(&run, &whole_chunk(), &small_options())
            .await?;
        assert_eq!(manifest.rows, 40);
        assert_eq!(results.len(), 6, "7+7+7+7+7+5");
        let ids = ints(&h.read_files(&schema, &manifest).await?, "id")?;
        let expected = source_ids(
            mysql,
            "SELECT id FROM events ORDER BY updated_at, id LIMIT 40",
        )
        .await?;
        assert_eq!(ids, expected);
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn custom_sql_pages_with_its_placeholders() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        seed_events(&mut mysql.conn().await?).await?;
        let sql = format!(
            "SELECT e.* FROM {}.events AS e WHERE e.updated_at >= :last_ts AND (e.updated_at > :last_ts OR e.id > :last_id) AND e.updated_at <= :ceiling ORDER BY e.updated_at, e.id LIMIT :limit",
            naming::quote_mysql(mysql.database())
        );
        let h = Harness::new(
            mysql,
            &Table::new("events").strategy("custom_sql").cursor_column("updated_at").with("custom_sql", sql.as_str()).chunk_rows(100).lag("0s").yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("events"), None).await?;
        let schema = h.schema(&run).await?;
        let (results, manifest) = h.extract_all(&run, &whole_chunk(), &small_options()).await?;
        assert_eq!(results.len(), 3);
        let ids = ints(&h.read_files(&schema, &manifest).await?, "id")?;
        let expected = source_ids(mysql, "SELECT id FROM events WHERE id <= 290 ORDER BY updated_at, id").await?;
        assert_eq!(ids, expected);
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn custom_sql_that_is_not_one_select_is_refused() -> anyhow::Result<()> {
    for bad in [
        "DELETE FROM events",
        "SELECT * FROM events; DROP TABLE events",
        "UPDATE events SET note = 'x'",
    ] {
        let err = tidemark::custom_sql::validate_custom_sql(bad).expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
    }
    TestMysql::run(async |mysql| {
        seed_events(&mut mysql.conn().await?).await?;
        let sql = format!(
            "SELECT * FROM {db}.events; DELETE FROM {db}.events",
            db = naming::quote_mysql(mysql.database())
        );
        // `config check` (and every command, since all parse the config) refuses it first.
        let err = mysql
            .config(
                "never-created",
                &Table::new("events")
                    .strategy("custom_sql")
                    .cursor_column("updated_at")
                    .with("custom_sql", sql.as_str())
                    .lag("0s")
                    .yaml(),
            )
            .expect_err("two statements");
        assert!(err.to_string().contains("more than one statement"), "{err}");
        let rows: Option<u64> = mysql
            .conn()
            .await?
            .query_first("SELECT COUNT(*) FROM events")
            .await?;
        assert_eq!(rows, Some(295));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_write_inside_custom_sql_fails_in_the_read_only_transaction() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        seed_events(&mut conn).await?;
        conn.query_drop("CREATE TABLE audit (n INT)").await?;
        conn.query_drop(
            "CREATE FUNCTION bump() RETURNS INT MODIFIES SQL DATA BEGIN INSERT INTO audit VALUES (1); RETURN 1; END",
        )
        .await?;
        let sql = format!(
            "SELECT e.* FROM {db}.events AS e WHERE {db}.bump() = 1 AND e.updated_at <= :ceiling",
            db = naming::quote_mysql(mysql.database())
        );
        tidemark::custom_sql::validate_custom_sql(&sql)?;
        let h = Harness::new(
            mysql,
            &Table::new("events").strategy("custom_sql").cursor_column("updated_at").with("custom_sql", sql.as_str()).lag("0s").yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("events"), None).await?;
        let err = h
            .extract_once(&run, &whole_chunk(), None, &ExtractOptions::default())
            .await
            .expect_err("the write is refused");
        let message = err.to_string();
        assert!(message.to_lowercase().contains("read only"), "{message}");
        assert_eq!(err.kind(), ErrorKind::NonRetryable);
        let written: Option<u64> = conn.query_first("SELECT COUNT(*) FROM audit").await?;
        assert_eq!(written, Some(0));
        assert!(h.data_objects(&run).await?.is_empty(), "no file");
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn a_table_altered_mid_run_fails_with_schema_drift() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        seed_events(&mut conn).await?;
        let h = Harness::new(
            mysql,
            &Table::new("events")
                .cursor_column("updated_at")
                .chunk_rows(100)
                .lag("0s")
                .yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("events"), None).await?;
        let first = h
            .extract_once(&run, &whole_chunk(), None, &ExtractOptions::default())
            .await?;
        assert!(!first.done);
        conn.query_drop("ALTER TABLE events ADD COLUMN extra INT")
            .await?;
        let err = h
            .extract_once(
                &run,
                &whole_chunk(),
                first.continuation,
                &ExtractOptions::default(),
            )
            .await
            .expect_err("the table changed");
        assert_eq!(err.kind(), ErrorKind::SchemaDrift);
        assert!(err.to_string().contains("changed while run"), "{err}");
        h.remove().await
    })
    .await
}

/// 64 KiB of random bytes.
fn incompressible() -> Vec<u8> {
    (0..4096)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect()
}

async fn seed_blobs(conn: &mut mysql_async::Conn, rows: u32) -> anyhow::Result<()> {
    conn.query_drop(
        "CREATE TABLE blobs (id INT PRIMARY KEY, updated_at DATETIME(6) NOT NULL DEFAULT '2024-01-01', payload MEDIUMBLOB NOT NULL)",
    )
    .await?;
    for id in 1..=rows {
        conn.exec_drop(
            "INSERT INTO blobs (id, payload) VALUES (?, ?)",
            (id, incompressible()),
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn large_files_roll_at_the_target_size_through_multipart_uploads() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        seed_blobs(&mut conn, 200).await?;
        let h = Harness::new(mysql, &Table::new("blobs").strategy("full_sync").yaml()).await?;
        let run = h.begin(&mysql.table("blobs"), None).await?;
        let schema = h.schema(&run).await?;
        let options = ExtractOptions {
            target_file_bytes: 6 * 1024 * 1024,
            row_group_bytes: 1024 * 1024,
            part_bytes: 5 * 1024 * 1024,
            batch_rows: 8,
            ..ExtractOptions::default()
        };
        let (_, manifest) = h.extract_all(&run, &whole_chunk(), &options).await?;
        assert!(manifest.files.len() >= 2, "{} files", manifest.files.len());
        assert!(
            manifest.files.iter().any(|f| f.bytes > 5 * 1024 * 1024),
            "some file went through a multipart upload"
        );
        let batches = h.read_files(&schema, &manifest).await?;
        assert_exactly_once(&ints(&batches, "id")?, &(1..=200).collect::<Vec<_>>());
        let sample: Option<Vec<u8>> = conn
            .query_first("SELECT payload FROM blobs WHERE id = 123")
            .await?;
        let mut found = None;
        for batch in &batches {
            let ids = batch
                .column_by_name("id")
                .context("id")?
                .as_primitive::<Int32Type>();
            let payloads = batch
                .column_by_name("payload")
                .context("payload")?
                .as_binary::<i32>();
            for row in 0..batch.num_rows() {
                if ids.value(row) == 123 {
                    found = Some(payloads.value(row).to_vec());
                }
            }
        }
        assert_eq!(found, sample, "bytes are carried exactly");
        h.remove().await
    })
    .await
}

#[tokio::test]
async fn a_killed_connection_aborts_the_upload_and_leaves_no_object() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        seed_blobs(&mut conn, 160).await?;
        // Rows after 100 come slowly, so the kill lands mid-stream, after parts were uploaded.
        let sql = format!(
            "SELECT b.* FROM {}.blobs AS b WHERE IF(b.id > 100, SLEEP(0.2), 0) = 0 AND b.updated_at <= :ceiling ORDER BY b.id",
            naming::quote_mysql(mysql.database())
        );
        let h = Harness::new(
            mysql,
            &Table::new("blobs").strategy("custom_sql").cursor_column("updated_at").with("custom_sql", sql.as_str()).lag("0s").yaml(),
        )
        .await?;
        let run = h.begin(&mysql.table("blobs"), None).await?;
        let options = ExtractOptions {
            row_group_bytes: 512 * 1024,
            part_bytes: 5 * 1024 * 1024,
            batch_rows: 4,
            ..ExtractOptions::default()
        };
        let client = h.bucket.client().clone();
        let bucket_name = h.bucket.bucket().name().to_owned();
        let killer = async {
            let started = std::time::Instant::now();
            loop {
                let uploads = client.list_multipart_uploads().bucket(&bucket_name).send().await?;
                if !uploads.uploads().is_empty() {
                    break;
                }
                ensure!(started.elapsed() < Duration::from_secs(30), "no multipart upload began");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut admin = mysql.conn().await?;
            let id: Option<u64> = admin
                .query_first("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%SLEEP(0.2)%' AND ID <> CONNECTION_ID()")
                .await?;
            admin.query_drop(format!("KILL CONNECTION {}", id.context("the extraction's connection")?)).await?;
            anyhow::Ok(())
        };
        let chunk = whole_chunk();
        let (extracted, killed) =
            tokio::join!(h.extract_once(&run, &chunk, None, &options), killer);
        killed?;
        let err = extracted.expect_err("the connection was killed");
        assert_eq!(err.kind(), ErrorKind::Retryable, "{err:?}");
        assert!(h.data_objects(&run).await?.is_empty(), "no data object");
        let uploads = client.list_multipart_uploads().bucket(&bucket_name).send().await?;
        assert!(uploads.uploads().is_empty(), "the multipart upload was aborted");
        h.remove().await
    })
    .await
}

/// The source's exact text of every zoo value (zero dates as NULL), in id order.
async fn zoo_source_text(
    mysql: &TestMysql,
    schema: &TableSchema,
) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let select: Vec<String> = schema
        .columns
        .iter()
        .map(|c| {
            let q = naming::quote_mysql(&c.name);
            match c.ty {
                ColumnType::Boolean { source: BooleanSource::TinyInt } => format!("CAST(({q} <> 0) AS CHAR)"),
                ColumnType::Boolean { source: BooleanSource::Bit }
                | ColumnType::Bits { .. }
                | ColumnType::Int16
                | ColumnType::Int32
                | ColumnType::Int64 => format!("CAST({q} + 0 AS CHAR)"),
                ColumnType::Date => format!("IF(MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0, NULL, CAST({q} AS CHAR))"),
                ColumnType::Timestamp | ColumnType::TimestampTz => format!(
                    "IF(MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0, NULL, DATE_FORMAT({q}, '%Y-%m-%d %H:%i:%s.%f'))"
                ),
                ColumnType::Binary { .. } => format!("HEX({q})"),
                ColumnType::Text { .. } | ColumnType::Json => c.mysql_select_expr(),
                _ => format!("CAST({q} AS CHAR)"),
            }
        })
        .collect();
    let mut conn = mysql.conn().await?;
    let rows: Vec<mysql_async::Row> = conn
        .query(format!(
            "SELECT {} FROM type_zoo ORDER BY id",
            select.join(", ")
        ))
        .await?;
    rows.into_iter()
        .map(|mut row| {
            (0..schema.columns.len())
                .map(|i| row.take::<Option<String>, _>(i).context("value"))
                .collect()
        })
        .collect()
}

/// An Arrow value as the text `zoo_source_text` reads from MySQL.
fn arrow_text(array: &dyn Array, row: usize) -> anyhow::Result<Option<String>> {
    if array.is_null(row) {
        return Ok(None);
    }
    Ok(Some(match array.data_type() {
        DataType::Boolean => u8::from(array.as_boolean().value(row)).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Decimal128(_, scale) => {
            let value = array.as_primitive::<Decimal128Type>().value(row);
            let digits = value.unsigned_abs().to_string();
            let scale = usize::try_from(*scale)?;
            let sign = if value < 0 { "-" } else { "" };
            if scale == 0 {
                format!("{sign}{digits}")
            } else {
                let padded = format!("{digits:0>width$}", width = scale + 1);
                let (whole, fraction) = padded.split_at(padded.len() - scale);
                format!("{sign}{whole}.{fraction}")
            }
        }
        DataType::Float32 => array.as_primitive::<Float32Type>().value(row).to_string(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).context("epoch")?
                + chrono::Duration::days(i64::from(days)))
            .format("%Y-%m-%d")
            .to_string()
        }
        DataType::Timestamp(_, _) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            chrono::DateTime::from_timestamp_micros(micros)
                .context("timestamp in range")?
                .naive_utc()
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string()
        }
        DataType::Utf8 => array.as_string::<i32>().value(row).to_owned(),
        DataType::Binary => array
            .as_binary::<i32>()
            .value(row)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect(),
        other => anyhow::bail!("unexpected type {other}"),
    }))
}

#[tokio::test]
async fn the_type_zoo_reads_back_equal_to_the_source() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        type_zoo::create(&mut mysql.conn().await?).await?;
        let h = Harness::new(mysql, &Table::new(type_zoo::TABLE).strategy("full_sync").yaml()).await?;
        let run = h.begin(&mysql.table(type_zoo::TABLE), None).await?;
        let schema = h.schema(&run).await?;
        // For PostgreSQL, which holds every value whole: `mt` has 70000 bytes, more than a
        // Redshift VARCHAR takes (`oversize.rs` covers that).
        let options = ExtractOptions { target: Warehouse::Postgres, ..ExtractOptions::default() };
        let (_, manifest) = h.extract_all(&run, &whole_chunk(), &options).await?;
        assert_eq!(manifest.rows, 5);
        // Row 3: dt, dtm, dtm6, ts6 and created_at; row 5: dt and dtm.
        assert_eq!(manifest.zero_dates_nulled, 7);
        assert_eq!(manifest.schema_fingerprint, run.schema_fingerprint);
        let batches = h.read_files(&schema, &manifest).await?;

        // Decimals keep their declared precision and scale; timestamps are INT64 microseconds.
        let object = h.bucket.bucket().get(&manifest.files[0].key).await?.context("file")?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(object.body)?;
        let parquet_schema = reader.metadata().file_metadata().schema_descr();
        for (name, precision, scale) in [("dec_wide", 38, 10), ("dec_money", 12, 2), ("bi_u", 20, 0), ("bit64", 20, 0)] {
            let column = (0..parquet_schema.num_columns())
                .map(|i| parquet_schema.column(i))
                .find(|c| c.name() == name)
                .context("column")?;
            let Some(LogicalType::Decimal(decimal)) = column.logical_type_ref() else {
                anyhow::bail!("{name} is not a decimal: {:?}", column.logical_type_ref());
            };
            assert_eq!((decimal.precision, decimal.scale), (precision, scale), "{name}");
        }
        // The PostgreSQL write profile compresses with zstd (the Redshift one: `full_sync_…`).
        assert_eq!(codecs(reader.metadata()), ["ZSTD(ZstdLevel(1))"]);
        let dtm6 = (0..parquet_schema.num_columns())
            .map(|i| parquet_schema.column(i))
            .find(|c| c.name() == "dtm6")
            .context("dtm6")?;
        assert_eq!(dtm6.physical_type(), parquet::basic::Type::INT64);
        assert!(
            matches!(dtm6.logical_type_ref(), Some(LogicalType::Timestamp(t)) if t.unit == parquet::basic::TimeUnit::MICROS),
            "{:?}",
            dtm6.logical_type_ref()
        );

        let expected = zoo_source_text(mysql, &schema).await?;
        let mut row_index = 0;
        for batch in &batches {
            for row in 0..batch.num_rows() {
                let source = &expected[row_index];
                for (i, column) in schema.columns.iter().enumerate() {
                    let actual = arrow_text(batch.column(i).as_ref(), row)?;
                    let wanted = &source[i];
                    match column.ty {
                        ColumnType::Float32 | ColumnType::Float64 => {
                            let parse = |v: &Option<String>| v.as_deref().map(|t| t.parse::<f64>());
                            match (parse(&actual).transpose()?, parse(wanted).transpose()?) {
                                (Some(a), Some(w)) => assert!(
                                    ((a - w) / w).abs() < 1e-6,
                                    "{} row {row_index}: {a} vs {w}",
                                    column.name
                                ),
                                (a, w) => assert_eq!(a, w, "{} row {row_index}", column.name),
                            }
                        }
                        _ => assert_eq!(&actual, wanted, "{} row {row_index}", column.name),
                    }
                }
                row_index += 1;
            }
        }
        assert_eq!(row_index, 5);
        h.remove().await
    })
    .await
}

/// A row longer than the source connection's `max_row_mib` fails the extraction as it arrives —
/// before it is held in memory — naming the setting, and is not retried; with the cap raised the
/// same row extracts whole.
#[tokio::test]
async fn a_row_longer_than_max_row_mib_is_refused_as_it_arrives() -> anyhow::Result<()> {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB NOT NULL, \
             updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        conn.query_drop(
            "INSERT INTO blobs VALUES (1, REPEAT('x', 100), '2025-01-01'), \
             (2, REPEAT('y', 3 * 1024 * 1024), '2025-01-02')",
        )
        .await?;
        let tables = Table::hybrid("blobs", "updated_at").yaml();
        for (cap, refused) in [(1, true), (8, false)] {
            let h = Harness::with_config(mysql, &tables, |config| {
                if let Some(Connection::Mysql(source)) = config.connections.get_mut("src") {
                    source.max_row_mib = cap;
                }
            })
            .await?;
            let run = h.begin(&mysql.table("blobs"), None).await?;
            if refused {
                let err = h
                    .extract_once(&run, &whole_chunk(), None, &small_options())
                    .await
                    .expect_err("a 3 MiB row over a 1 MiB cap is refused");
                assert_eq!(err.kind(), ErrorKind::NonRetryable, "{err}");
                let text = err.to_string();
                assert!(text.contains("`max_row_mib`"), "{text}");
                assert!(text.contains("columns.exclude"), "{text}");
            } else {
                let (_, manifest) = h
                    .extract_all(&run, &whole_chunk(), &small_options())
                    .await?;
                assert_eq!(manifest.rows, 2);
            }
            h.remove().await?;
        }
        Ok(())
    })
    .await
}

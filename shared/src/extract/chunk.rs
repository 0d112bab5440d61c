//! Extracting one chunk: keyset pages read from MySQL, decoded into Arrow batches, streamed to
//! Parquet on S3, and recorded in a progress object or the chunk manifest.

use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, TxOpts, Value};
use tokio::time::Instant;

use crate::config::{CdcStrategy, TableConfig};
use crate::cursor::Cursor;
use crate::error::{Error, Result};
use crate::manifest::{parse_json, ChunkManifest, MANIFEST_FORMAT_VERSION};
use crate::naming::{quote_mysql, StorageLayout, TableId};
use crate::parquet_sink::{ParquetSink, SinkBatch};
use crate::quality::digest::DigestWriter;
use crate::quality::{ChunkQuality, QualityMeter};
use crate::run::RunContext;
use crate::schema::{self, TableSchema, Warehouse};
use crate::source::{within, Source};
use crate::storage::Bucket;

use super::decode::{cursor_key, cursor_timestamp, BatchBuilder, RowPosition, ValueRules};
use super::query::{Order, PageQuery, ReadPlan};
use super::{Continuation, ExtractOptions, ExtractRequest, ExtractResult};

/// A batch also ends when its variable-length values reach this many bytes, so that wide rows
/// cannot make a batch large.
const BATCH_VALUE_BYTES: usize = 8 * 1024 * 1024;

/// What an extraction reads from and writes to: the table's source and config, its schema as
/// discovered at the start of the invocation, and the pipeline's bucket and layout.
#[derive(Debug, Clone, Copy)]
pub struct ExtractJob<'a> {
    /// The MySQL source.
    pub source: &'a Source,
    /// The pipeline's bucket.
    pub bucket: &'a Bucket,
    /// Where the pipeline's objects live in it.
    pub layout: &'a StorageLayout,
    /// The table's schema (checked against the one the run began with).
    pub schema: &'a TableSchema,
    /// The table's config.
    pub table: &'a TableConfig,
}

/// Extracts one chunk, or as much of it as `chunk_rows`, `run.limit` and the deadline allow.
///
/// Files are keyed `layout.data_file_key(pipeline, table, run_id, chunk, seq)`; a retried
/// invocation rewrites the same keys. When the chunk is finished the chunk manifest is written at
/// `layout.chunk_manifest_key(…)`; otherwise a progress object (the manifest so far) is written
/// and a [`Continuation`] returned. On any error the upload in progress is aborted and this
/// invocation's files are deleted; connection faults, and a server silent for longer than the
/// source's `read_timeout`, are `Retryable`.
pub async fn extract_chunk(
    job: &ExtractJob<'_>,
    request: &ExtractRequest,
    options: &ExtractOptions,
) -> Result<ExtractResult> {
    let ExtractJob {
        source,
        bucket,
        layout,
        schema,
        table,
    } = *job;
    let run = &request.run;
    let started = StdInstant::now();
    let table_id = run.table.clone();
    let chunk = request.chunk.chunk;
    let mut read = ReadPlan::new(schema, run, table, &request.chunk)?;
    if let (Some(repair), Some(slice)) = (&run.repair, &request.chunk.repair_keys) {
        let object = bucket.get(&repair.keys_object).await?.ok_or_else(|| {
            Error::InvalidRequest(format!(
                "the keys to repair, {}, are gone; run `tidemark verify --repair` again",
                bucket.uri(&repair.keys_object)
            ))
        })?;
        let keys: Vec<Vec<String>> =
            crate::manifest::parse_json(&object.body, &bucket.uri(&repair.keys_object))?;
        let first = usize::try_from(slice.first).unwrap_or(usize::MAX);
        let count = usize::try_from(slice.count).unwrap_or(usize::MAX);
        let listed = keys
            .get(first..first.saturating_add(count))
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "chunk {chunk} reads keys {first}..{} of {}, which lists {}",
                    first.saturating_add(count),
                    bucket.uri(&repair.keys_object),
                    keys.len()
                ))
            })?;
        read.restrict_to_keys(listed)?;
    }

    let mut conn = source.conn().await?;
    source
        .within(
            "checking the table's schema",
            verify_schema(&mut conn, schema, run, table, &table_id),
        )
        .await?;

    let (mut manifest, position, first_seq) = match &request.continuation {
        Some(continuation) => (
            read_progress(bucket, run, chunk, continuation).await?,
            Some(continuation.cursor.clone()),
            continuation.next_seq,
        ),
        None => (
            ChunkManifest {
                version: MANIFEST_FORMAT_VERSION,
                pipeline: run.pipeline.clone(),
                table: run.table.to_string(),
                run_id: run.run_id.clone(),
                chunk,
                files: Vec::new(),
                rows: 0,
                zero_dates_nulled: 0,
                oversize_truncated: 0,
                oversize_nulled: 0,
                schema_fingerprint: run.schema_fingerprint.clone(),
                quality: None,
            },
            read.first_position(run)?,
            0,
        ),
    };

    let limit_left = run.limit.map(|limit| limit.saturating_sub(manifest.rows));
    // `full_sync` reads on in one invocation (one snapshot) until it is done or the deadline
    // comes: a continuation would start a new snapshot (see `plan`).
    let chunk_rows = match run.strategy {
        CdcStrategy::FullSync => u64::MAX,
        _ => table.chunk_rows.max(1),
    };
    let budget = Budget {
        rows: limit_left.map_or(chunk_rows, |left| left.min(chunk_rows)),
        ends_chunk: limit_left.is_some_and(|left| left <= chunk_rows),
    };

    let sink = {
        let layout = layout.clone();
        let pipeline = run.pipeline.clone();
        let run_id = run.run_id.clone();
        let table_id = table_id.clone();
        ParquetSink::start(
            bucket.clone(),
            schema.arrow_schema(),
            &options.sink_options(),
            first_seq,
            move |seq| layout.data_file_key(&pipeline, &table_id, &run_id, chunk, seq),
        )?
    };

    let rules = ValueRules {
        oversize: match options.target {
            Warehouse::Redshift => Some(table.oversize_in_redshift),
            Warehouse::Postgres => None,
        },
        nul: table.nul_in_text,
    };
    let mut reader = Reader::new(
        &read,
        schema,
        options,
        &sink,
        rules,
        &run.key_columns,
        source.read_timeout(),
    )?;
    if !table.checks.is_empty() {
        reader.meter = Some(QualityMeter::new(&table.checks, schema, &run.key_columns)?);
        let (layout, run_id, pipeline, table_id) = (layout, &run.run_id, &run.pipeline, &table_id);
        reader.digests = Some(DigestWriter::new(bucket, move |part, check| {
            layout.quality_digest_key(pipeline, table_id, run_id, (chunk, first_seq, part), check)
        }));
    }
    let read_result = match transaction_options(run.strategy) {
        Some(tx_options) => match source
            .within("starting a read-only transaction", async {
                conn.start_transaction(tx_options)
                    .await
                    .map_err(|err| Error::mysql("starting a read-only transaction", err))
            })
            .await
        {
            Ok(mut tx) => match reader.run(&mut tx, position.clone(), budget).await {
                Ok(outcome) => source
                    .within("ending the read-only transaction", async {
                        tx.commit()
                            .await
                            .map_err(|err| Error::mysql("ending the read-only transaction", err))
                    })
                    .await
                    .map(|()| outcome),
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        },
        None => reader.run(&mut conn, position.clone(), budget).await,
    };
    let read_result = read_result.and_then(|outcome| Ok((outcome, reader.flush_last()?)));
    let stats = reader.stats.clone();
    let rows_read = reader.rows;
    let meter = reader.meter.take();
    let digests = reader.digests.take();
    let last_position = reader.last.take().map(|p| read.page_position(&p));
    drop(reader);
    drop(conn);
    let outcome = match read_result {
        Ok((outcome, last_batch)) => {
            if let Some(batch) = last_batch {
                if let Err(err) = sink.write(batch).await {
                    return Err(sink.finish().await.err().unwrap_or(err));
                }
            }
            outcome
        }
        // When the writer failed first, the reader only saw it stop: report the writer's error.
        Err(err) => return Err(sink.abort().await.unwrap_or(err)),
    };
    let written_files = sink.finish().await?;
    let mut digest_keys = Vec::new();
    if let (Some(mut meter), Some(mut digests)) = (meter, digests) {
        let written = match digests.write(meter.take_digests()).await {
            Ok(()) => digests.finish().await,
            Err(err) => Err(digests.finish().await.err().unwrap_or(err)),
        };
        digest_keys.extend(digests.written.iter().map(|d| d.key.clone()));
        if let Err(err) = written {
            delete_quietly(bucket, &digest_keys).await;
            let files: Vec<String> = written_files
                .files
                .iter()
                .map(|f| f.file.key.clone())
                .collect();
            delete_quietly(bucket, &files).await;
            return Err(err);
        }
        let quality = manifest.quality.get_or_insert_with(ChunkQuality::default);
        quality.absorb(&meter.counts);
        for digest in digests.written {
            // A retried invocation rewrote the same objects: each listed once.
            if !quality.digests.iter().any(|d| d.key == digest.key) {
                quality.digests.push(digest);
            }
        }
    }

    manifest.rows += rows_read;
    let nul_altered: u64 = written_files
        .files
        .iter()
        .map(|f| f.altered.nul_altered)
        .sum();
    if nul_altered > 0 {
        tracing::warn!(
            table = %table_id,
            chunk,
            values = nul_altered,
            policy = ?table.nul_in_text,
            "text values held NUL bytes, which no warehouse takes in text; they were stripped or replaced (`nul_in_text`)"
        );
    }
    for file in &written_files.files {
        manifest.zero_dates_nulled += file.altered.zero_dates;
        manifest.oversize_truncated += file.altered.oversize_truncated;
        manifest.oversize_nulled += file.altered.oversize_nulled;
    }
    let new_files = written_files.files.len() as u32;
    let bytes: u64 = written_files.files.iter().map(|f| f.file.bytes).sum();
    let new_keys: Vec<String> = written_files
        .files
        .iter()
        .map(|f| f.file.key.clone())
        .chain(digest_keys)
        .collect();
    manifest
        .files
        .extend(written_files.files.into_iter().map(|f| f.file));

    let done = outcome == Outcome::Done;
    let (key, continuation) = if done {
        (
            layout.chunk_manifest_key(&run.pipeline, &table_id, &run.run_id, chunk),
            None,
        )
    } else {
        let next_seq = first_seq + new_files;
        let progress_key =
            layout.chunk_progress_key(&run.pipeline, &table_id, &run.run_id, chunk, next_seq);
        let continuation = Continuation {
            cursor: last_position.or(position).unwrap_or_default(),
            next_seq,
            progress_key: progress_key.clone(),
        };
        (progress_key, Some(continuation))
    };
    // A retried invocation rewrote the same files, so its manifest replaces the old one.
    let recorded = match crate::faults::point(crate::faults::FaultPoint::BeforeChunkManifest) {
        Ok(()) => put_json(bucket, &key, &manifest).await,
        Err(err) => Err(err),
    };
    if let Err(err) = recorded {
        delete_quietly(bucket, &new_keys).await;
        return Err(err);
    }
    crate::faults::point(crate::faults::FaultPoint::AfterChunkManifest)?;
    let chunk_manifest_key = done.then_some(key);

    tracing::info!(
        table = %table_id,
        run_id = %run.run_id,
        chunk,
        done,
        rows = rows_read,
        files = new_files,
        bytes,
        chunk_total_rows = manifest.rows,
        zero_dates_nulled = manifest.zero_dates_nulled,
        oversize_truncated = manifest.oversize_truncated,
        oversize_nulled = manifest.oversize_nulled,
        elapsed_ms = started.elapsed().as_millis() as u64,
        read_wait_ms = stats.read_wait.as_millis() as u64,
        decode_ms = stats.decode.as_millis() as u64,
        writer_wait_ms = stats.writer_wait.as_millis() as u64,
        encode_ms = written_files.encode_time.as_millis() as u64,
        upload_ms = written_files.upload_time.as_millis() as u64,
        "chunk extracted"
    );
    if manifest.zero_dates_nulled > 0 && done {
        tracing::warn!(
            table = %table_id,
            chunk,
            zero_dates = manifest.zero_dates_nulled,
            "zero dates (`0000-00-00`) have no warehouse value and were written as NULL"
        );
    }
    if (manifest.oversize_truncated > 0 || manifest.oversize_nulled > 0) && done {
        tracing::warn!(
            table = %table_id,
            chunk,
            truncated = manifest.oversize_truncated,
            nulled = manifest.oversize_nulled,
            policy = ?table.oversize_in_redshift,
            "values longer than their Redshift column were cut to fit or written as NULL (`oversize_in_redshift`)"
        );
    }
    Ok(ExtractResult {
        chunk,
        done,
        continuation,
        chunk_manifest_key,
        rows: manifest.rows,
        files: manifest.files.len() as u32,
        bytes: manifest.files.iter().map(|file| file.bytes).sum(),
    })
}

async fn put_json(bucket: &Bucket, key: &str, manifest: &ChunkManifest) -> Result<()> {
    let body = serde_json::to_vec_pretty(manifest).map_err(|err| Error::Io {
        context: "serializing the chunk manifest".to_owned(),
        source: err.into(),
    })?;
    bucket.put(key, Bytes::from(body)).await.map(|_| ())
}

/// Best effort: the files of an invocation that cannot record them would be orphans.
async fn delete_quietly(bucket: &Bucket, keys: &[String]) {
    match bucket.delete_many(keys).await {
        Ok(failures) if failures.is_empty() => {}
        Ok(failures) => tracing::warn!(
            files = failures.len(),
            "could not delete unrecorded files of a failed extraction; s3clean removes orphans"
        ),
        Err(err) => tracing::warn!(
            files = keys.len(),
            error = %err,
            "could not delete unrecorded files of a failed extraction; s3clean removes orphans"
        ),
    }
}

/// `full_sync` reads one consistent snapshot per invocation; `custom_sql` runs read-only so the
/// server refuses any write it attempts.
fn transaction_options(strategy: CdcStrategy) -> Option<TxOpts> {
    let mut options = TxOpts::new();
    match strategy {
        CdcStrategy::FullSync => {
            options.with_consistent_snapshot(true).with_readonly(true);
            Some(options)
        }
        CdcStrategy::CustomSql => {
            options.with_readonly(true);
            Some(options)
        }
        _ => None,
    }
}

/// The table must still have the schema the run began with: files of one run share one schema.
async fn verify_schema(
    conn: &mut mysql_async::Conn,
    schema: &TableSchema,
    run: &RunContext,
    table: &TableConfig,
    table_id: &TableId,
) -> Result<()> {
    let given = schema.fingerprint();
    let now = if given == run.schema_fingerprint {
        schema::discover(conn, table_id, &table.schema_options())
            .await?
            .fingerprint()
    } else {
        given
    };
    if now != run.schema_fingerprint {
        return Err(Error::SchemaDrift {
            table: table_id.to_string(),
            details: format!(
                "the table changed while run `{}` was extracting it (schema fingerprint `{}` → `{now}`); \
                 one run writes one schema, so this run fails: the next run picks up the new schema",
                run.run_id, run.schema_fingerprint
            ),
        });
    }
    Ok(())
}

async fn read_progress(
    bucket: &Bucket,
    run: &RunContext,
    chunk: u32,
    continuation: &Continuation,
) -> Result<ChunkManifest> {
    let uri = bucket.uri(&continuation.progress_key);
    let object = bucket
        .get(&continuation.progress_key)
        .await?
        .ok_or_else(|| Error::Corrupt {
            uri: uri.clone(),
            reason: "the progress object of this continuation does not exist".to_owned(),
            fix: "the continuation does not belong to this bucket or was deleted; restart the run"
                .to_owned(),
        })?;
    let manifest: ChunkManifest = parse_json(&object.body, &uri)?;
    if manifest.run_id != run.run_id
        || manifest.chunk != chunk
        || manifest.table != run.table.to_string()
    {
        return Err(Error::InvalidRequest(format!(
            "the continuation's progress `{uri}` belongs to run `{}` chunk {}, not run `{}` chunk {chunk}",
            manifest.run_id, manifest.chunk, run.run_id
        )));
    }
    Ok(manifest)
}

/// How many rows this invocation may read, and whether reaching that many ends the chunk (the
/// run's `limit`) or only this invocation (`chunk_rows`).
#[derive(Debug, Clone, Copy)]
struct Budget {
    rows: u64,
    ends_chunk: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing is left in the chunk.
    Done,
    /// The invocation stopped early; the chunk continues after the last row read.
    Stopped,
}

/// Where the reader's time went.
#[derive(Debug, Clone, Default)]
struct ReadStats {
    read_wait: Duration,
    decode: Duration,
    writer_wait: Duration,
}

/// The smallest and largest cursor of the current batch's rows.
#[derive(Default)]
struct BatchBounds {
    min: Option<RowPosition>,
    max: Option<RowPosition>,
}

/// Reads pages into batches for the sink (`'a`), evaluating the checks; the digests go to S3
/// through a writer of their own lifetime (`'d`), which outlives the sink.
struct Reader<'a, 'd> {
    plan: &'a ReadPlan,
    schema: &'a TableSchema,
    options: &'a ExtractOptions,
    sink: &'a ParquetSink,
    builder: BatchBuilder,
    bounds: BatchBounds,
    rows_in_file: u64,
    rows: u64,
    last: Option<RowPosition>,
    stats: ReadStats,
    /// The longest the server may leave any one read waiting.
    read_timeout: Duration,
    /// The table's data quality checks, evaluated on every batch.
    meter: Option<QualityMeter>,
    /// Where the `unique` checks' digests go once they hold `digest_spill_rows` rows.
    digests: Option<DigestWriter<'d>>,
}

impl<'a, 'd> Reader<'a, 'd> {
    fn new(
        plan: &'a ReadPlan,
        schema: &'a TableSchema,
        options: &'a ExtractOptions,
        sink: &'a ParquetSink,
        rules: ValueRules,
        key_columns: &[String],
        read_timeout: Duration,
    ) -> Result<Self> {
        Ok(Reader {
            plan,
            schema,
            options,
            sink,
            builder: BatchBuilder::new(
                schema,
                options.batch_rows.clamp(1, 1 << 20),
                rules,
                key_columns,
            )?,
            bounds: BatchBounds::default(),
            rows_in_file: 0,
            rows: 0,
            last: None,
            stats: ReadStats::default(),
            read_timeout,
            meter: None,
            digests: None,
        })
    }

    fn deadline_passed(&self) -> bool {
        self.options.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Reads pages until the chunk is done or the invocation must stop.
    async fn run<Q: Queryable>(
        &mut self,
        conn: &mut Q,
        start: Option<Cursor>,
        budget: Budget,
    ) -> Result<Outcome> {
        if self.plan.empty {
            return Ok(Outcome::Done);
        }
        let mut position = start;
        loop {
            let remaining = budget.rows.saturating_sub(self.rows);
            if remaining == 0 {
                return Ok(if budget.ends_chunk {
                    Outcome::Done
                } else {
                    Outcome::Stopped
                });
            }
            if self.rows > 0 && self.deadline_passed() {
                return Ok(Outcome::Stopped);
            }
            let limit = self.options.page_rows.clamp(1, remaining);
            let page_done = match &self.plan.order {
                Order::TimestampKey | Order::Key => {
                    let query = self.plan.keyset_page(position.as_ref(), limit)?;
                    let may_stop = self.plan.can_stop_inside_a_page();
                    match self.read_page(conn, &query, may_stop).await? {
                        PageEnd::Stopped => return Ok(Outcome::Stopped),
                        PageEnd::Rows(n) => n < limit,
                    }
                }
                Order::TimestampOnly => {
                    let boundary_query = self.plan.boundary_query(position.as_ref(), limit)?;
                    let what = "finding the end of a page";
                    let boundary: Option<Row> = within(self.read_timeout, what, async {
                        conn.exec_first(boundary_query.sql.as_str(), boundary_query.params)
                            .await
                            .map_err(|err| self.mysql_error(what, err))
                    })
                    .await?;
                    let boundary =
                        boundary.and_then(|row| row.unwrap_raw().into_iter().next().flatten());
                    let last_page = boundary.is_none();
                    let query = self.plan.timestamp_page(position.as_ref(), boundary)?;
                    self.read_page(conn, &query, false).await?;
                    last_page
                }
                Order::Whole => {
                    let query = self
                        .plan
                        .whole_query(budget.ends_chunk.then_some(remaining));
                    self.read_page(conn, &query, false).await?;
                    true
                }
                Order::Custom(_) => {
                    let query = self.plan.custom_page(position.as_ref(), limit)?;
                    match self.read_page(conn, &query, false).await? {
                        PageEnd::Rows(n) => query.limit.is_none_or(|limit| n < limit),
                        PageEnd::Stopped => return Ok(Outcome::Stopped),
                    }
                }
            };
            if page_done {
                return Ok(Outcome::Done);
            }
            if let Some(last) = &self.last {
                position = Some(self.plan.page_position(last));
            }
        }
    }

    fn mysql_error(&self, what: &str, err: mysql_async::Error) -> Error {
        Error::mysql(format!("{what} of `{}`", self.plan.table), err)
    }

    /// Streams one statement's rows into batches. With `may_stop`, returns early (after a
    /// flushed batch) once the deadline has passed.
    async fn read_page<Q: Queryable>(
        &mut self,
        conn: &mut Q,
        query: &PageQuery,
        may_stop: bool,
    ) -> Result<PageEnd> {
        let what = "reading a page";
        let mut result = within(self.read_timeout, what, async {
            conn.exec_iter(query.sql.as_str(), query.params.clone())
                .await
                .map_err(|err| self.mysql_error(what, err))
        })
        .await?;
        let stream = within(self.read_timeout, what, async {
            result
                .stream::<Row>()
                .await
                .map_err(|err| self.mysql_error(what, err))
        })
        .await?;
        let Some(mut stream) = stream else {
            return Err(Error::InvalidRequest(format!(
                "the extraction statement of `{}` returned no result set: it must be a SELECT",
                self.plan.table
            )));
        };
        let permutation = self.column_order(stream.columns_ref())?;
        let mut rows = 0u64;
        loop {
            let waited = StdInstant::now();
            let next = within(self.read_timeout, what, async {
                stream
                    .next()
                    .await
                    .transpose()
                    .map_err(|err| self.mysql_error(what, err))
            })
            .await?;
            self.stats.read_wait += waited.elapsed();
            let Some(row) = next else { break };
            let decoding = StdInstant::now();
            let mut values = row.unwrap_raw();
            if let Some(order) = &permutation {
                values = order.iter().map(|&i| values[i].take()).collect();
            }
            self.append(values)?;
            rows += 1;
            self.stats.decode += decoding.elapsed();
            let file_full = self
                .options
                .max_rows_per_file
                .is_some_and(|max| self.rows_in_file >= max.max(1));
            if file_full
                || self.builder.rows() >= self.options.batch_rows.max(1)
                || self.builder.value_bytes() >= BATCH_VALUE_BYTES
            {
                self.flush(file_full).await?;
                if may_stop && self.deadline_passed() {
                    return Ok(PageEnd::Stopped);
                }
            }
        }
        Ok(PageEnd::Rows(rows))
    }

    /// For a custom statement, the source column of every schema column; `None` when the
    /// statement's columns are the schema's, in order. Any other mismatch means the table changed.
    fn column_order(&self, columns: &[mysql_async::Column]) -> Result<Option<Vec<usize>>> {
        let names: Vec<String> = columns.iter().map(|c| c.name_str().into_owned()).collect();
        if !matches!(self.plan.order, Order::Custom(_)) {
            if names.len() != self.schema.columns.len() {
                return Err(Error::SchemaDrift {
                    table: self.plan.table.to_string(),
                    details: format!(
                        "a page returned {} columns where the run's schema has {}: the table changed during the run",
                        names.len(),
                        self.schema.columns.len()
                    ),
                });
            }
            return Ok(None);
        }
        let mut order = Vec::with_capacity(self.schema.columns.len());
        let mut missing = Vec::new();
        for column in &self.schema.columns {
            match names.iter().position(|n| {
                n.eq_ignore_ascii_case(&column.name)
                    || n.to_lowercase() == column.name.to_lowercase()
            }) {
                Some(i) => order.push(i),
                None => missing.push(quote_mysql(&column.name)),
            }
        }
        let extra: Vec<String> = names
            .iter()
            .filter(|n| self.schema.column(n).is_none())
            .map(|n| quote_mysql(n))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "`custom_sql` of `{}` must return the table's extracted columns ({}); missing: [{}], unexpected: [{}]",
                self.plan.table,
                self.schema.column_names().join(", "),
                missing.join(", "),
                extra.join(", ")
            )));
        }
        let identity = order.iter().enumerate().all(|(i, &j)| i == j) && names.len() == order.len();
        Ok((!identity).then_some(order))
    }

    fn append(&mut self, values: Vec<Option<Value>>) -> Result<()> {
        // The last row's position is rewritten in place: no allocation per row for integer keys.
        let last = self.last.get_or_insert_with(RowPosition::default);
        last.ts = match &self.plan.ts {
            Some(ts) => Some(cursor_timestamp(&ts.column, values[ts.index].as_ref())?),
            None => None,
        };
        last.key.clear();
        for key in &self.plan.keys {
            last.key
                .push(cursor_key(&key.column, values[key.index].as_ref())?);
        }
        let (plan, position, row_number) = (self.plan, &*last, self.rows + 1);
        self.builder
            .append(values, || describe_row(plan, position, row_number))?;
        self.rows += 1;
        self.rows_in_file += 1;
        let bounds = &mut self.bounds;
        if self.plan.pages_in_cursor_order() {
            // The batch's largest row is its last: taken when the batch is.
            if bounds.min.is_none() {
                bounds.min = Some(last.clone());
            }
        } else {
            if bounds.min.as_ref().is_none_or(|min| *last < *min) {
                bounds.min = Some(last.clone());
            }
            if bounds.max.as_ref().is_none_or(|max| *last > *max) {
                bounds.max = Some(last.clone());
            }
        }
        Ok(())
    }

    /// The rows buffered so far as one batch for the sink, if there are any.
    fn take_batch(&mut self, end_file: bool) -> Result<Option<SinkBatch>> {
        if self.builder.rows() == 0 {
            return Ok(None);
        }
        let (batch, altered) = self.builder.finish()?;
        if let Some(meter) = &mut self.meter {
            meter.observe(&batch);
        }
        let mut bounds = std::mem::take(&mut self.bounds);
        if self.plan.pages_in_cursor_order() {
            bounds.max = self.last.clone();
        }
        if end_file {
            self.rows_in_file = 0;
        }
        Ok(Some(SinkBatch {
            batch,
            min_cursor: bounds.min.map(|p| p.to_cursor()).unwrap_or_default(),
            max_cursor: bounds.max.map(|p| p.to_cursor()).unwrap_or_default(),
            altered,
            end_file,
        }))
    }

    async fn flush(&mut self, end_file: bool) -> Result<()> {
        if let Some(batch) = self.take_batch(end_file)? {
            let waited = StdInstant::now();
            self.sink.write(batch).await?;
            self.stats.writer_wait += waited.elapsed();
        }
        if let (Some(meter), Some(digests)) = (&mut self.meter, &mut self.digests) {
            if meter.digest_rows() >= self.options.digest_spill_rows.max(1) {
                digests.write(meter.take_digests()).await?;
            }
        }
        Ok(())
    }

    /// The last, partial batch (sent by the caller, which can then tell a writer failure apart).
    fn flush_last(&mut self) -> Result<Option<SinkBatch>> {
        self.take_batch(false)
    }
}

/// A row as an operator finds it in the source: its key values and cursor, or (for a table read
/// whole without a key) its place in this invocation's read.
fn describe_row(plan: &ReadPlan, position: &RowPosition, row_number: u64) -> String {
    let cursor = position.to_cursor();
    let key: Vec<String> = plan
        .keys
        .iter()
        .zip(&cursor.key)
        .map(|(key, value)| format!("`{}` = `{value}`", key.column.name))
        .collect();
    let mut parts = Vec::new();
    if !key.is_empty() {
        parts.push(format!("key {}", key.join(", ")));
    }
    if let (Some(ts), Some(value)) = (&plan.ts, &cursor.timestamp) {
        parts.push(format!("cursor `{}` = `{value}`", ts.column.name));
    }
    if parts.is_empty() {
        format!("number {row_number} of this read (the table has no key)")
    } else {
        parts.join(" and ")
    }
}

/// How a page ended.
enum PageEnd {
    /// Every row of the statement was read.
    Rows(u64),
    /// The deadline passed inside the page.
    Stopped,
}

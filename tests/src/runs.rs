//! Committed runs without the extractor: writes rows to Parquet exactly as extraction does (the
//! run's own schema as `schema.arrow_schema()`, zstd), uploads them to the run's data keys,
//! writes the chunk manifest, and lets the real `commit` step build the run manifest. Load tests
//! use it to produce pending runs through the real `begin`/`commit` steps.
//!
//! Rows are JSON values, one per schema column in order: numbers for integers and floats,
//! strings for decimals (`"-12.50"`), dates (`"2024-01-31"`), timestamps
//! (`"2024-01-31 12:00:00.000001"`) and text, `"hex:00ff"` for bytes, booleans, `null`.

use std::sync::Arc;

use anyhow::{bail, Context};
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use tidemark::manifest::{ChunkManifest, DataFile, MANIFEST_FORMAT_VERSION};
use tidemark::naming::StorageLayout;
use tidemark::run::RunContext;
use tidemark::schema::TableSchema;
use tidemark::services::Services;
use tidemark::steps::watermark::{commit, CommitRequest, CommitResult};

/// The schema `begin` stored for `run`.
pub async fn run_schema(services: &Services, run: &RunContext) -> anyhow::Result<TableSchema> {
    let (pipeline, _, layout) = run.resolve(&services.config)?;
    let key = layout.run_schema_key(&run.pipeline, &run.table, &run.run_id);
    let object = services
        .bucket(pipeline)
        .get(&key)
        .await?
        .context("begin wrote no schema")?;
    Ok(serde_json::from_slice(&object.body)?)
}

/// A record batch of `rows` in `schema`'s Arrow schema.
pub fn batch(schema: &TableSchema, rows: &[Vec<Value>]) -> anyhow::Result<RecordBatch> {
    let arrow = schema.arrow_schema();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (index, field) in arrow.fields().iter().enumerate() {
        let values: Vec<&Value> = rows.iter().map(|row| &row[index]).collect();
        columns.push(column(field.data_type(), &values).with_context(|| field.name().clone())?);
    }
    Ok(RecordBatch::try_new(arrow, columns)?)
}

fn column(data_type: &DataType, values: &[&Value]) -> anyhow::Result<ArrayRef> {
    macro_rules! build {
        ($builder:expr, $convert:expr) => {{
            let mut builder = $builder;
            for value in values {
                if value.is_null() {
                    builder.append_null();
                } else {
                    builder.append_value($convert(value)?);
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    let int = |v: &Value| v.as_i64().context("not an integer");
    let text = |v: &Value| v.as_str().map(str::to_owned).context("not a string");
    Ok(match data_type {
        DataType::Boolean => build!(BooleanBuilder::new(), |v: &Value| v
            .as_bool()
            .context("not a boolean")),
        DataType::Int16 => build!(Int16Builder::new(), |v| Ok::<_, anyhow::Error>(
            i16::try_from(int(v)?)?
        )),
        DataType::Int32 => build!(Int32Builder::new(), |v| Ok::<_, anyhow::Error>(
            i32::try_from(int(v)?)?
        )),
        DataType::Int64 => build!(Int64Builder::new(), int),
        DataType::Float32 => build!(Float32Builder::new(), |v: &Value| v
            .as_f64()
            .map(|f| f as f32)
            .context("not a number")),
        DataType::Float64 => build!(Float64Builder::new(), |v: &Value| v
            .as_f64()
            .context("not a number")),
        DataType::Decimal128(precision, scale) => build!(
            Decimal128Builder::new().with_precision_and_scale(*precision, *scale)?,
            |v| decimal(&text(v)?, *scale)
        ),
        DataType::Date32 => build!(Date32Builder::new(), |v| {
            let date = chrono::NaiveDate::parse_from_str(&text(v)?, "%Y-%m-%d")?;
            Ok::<_, anyhow::Error>(
                (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).context("epoch")?).num_days()
                    as i32,
            )
        }),
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let mut builder = TimestampMicrosecondBuilder::new();
            for value in values {
                if value.is_null() {
                    builder.append_null();
                } else {
                    let at = chrono::NaiveDateTime::parse_from_str(
                        &text(value)?,
                        "%Y-%m-%d %H:%M:%S%.f",
                    )?;
                    builder.append_value(at.and_utc().timestamp_micros());
                }
            }
            Arc::new(builder.finish().with_timezone_opt(zone.clone())) as ArrayRef
        }
        DataType::Utf8 => build!(StringBuilder::new(), text),
        DataType::Binary => build!(BinaryBuilder::new(), |v| {
            let hex = text(v)?;
            let hex = hex
                .strip_prefix("hex:")
                .context("bytes are written `hex:…`")?;
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(anyhow::Error::from))
                .collect::<anyhow::Result<Vec<u8>>>()
        }),
        other => bail!("the test harness cannot build {other} columns"),
    })
}

/// `-12.5` with scale 2 → -1250.
fn decimal(text: &str, scale: i8) -> anyhow::Result<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = usize::try_from(scale)?;
    if fraction.len() > scale {
        bail!("`{text}` has more than {scale} decimals");
    }
    let unscaled: i128 = format!("{integer}{fraction:0<scale$}").parse()?;
    Ok(if negative { -unscaled } else { unscaled })
}

/// Parquet bytes of `batches`, written like extraction writes them (zstd).
pub fn parquet_bytes(schema: &TableSchema, batches: &[RecordBatch]) -> anyhow::Result<Vec<u8>> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.arrow_schema(), Some(properties))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(out)
}

/// Writes `files` (each a list of rows) as the Parquet parts of chunk 0 of `run`, and the chunk
/// manifest; returns the chunk manifest's key, as extraction would hand it to `commit`.
pub async fn write_chunk(
    services: &Services,
    run: &RunContext,
    files: &[Vec<Vec<Value>>],
) -> anyhow::Result<String> {
    let (pipeline, _, layout) = run.resolve(&services.config)?;
    let layout: StorageLayout = layout;
    let table = run.table.clone();
    let bucket = services.bucket(pipeline);
    let schema = run_schema(services, run).await?;
    let cursor = tidemark::cursor::Cursor {
        timestamp: run.ceiling.timestamp.clone(),
        key: Vec::new(),
    };
    let mut data_files = Vec::new();
    for (seq, rows) in files.iter().enumerate() {
        let body = parquet_bytes(&schema, &[batch(&schema, rows)?])?;
        let key = layout.data_file_key(&run.pipeline, &table, &run.run_id, 0, u32::try_from(seq)?);
        data_files.push(DataFile {
            key: key.clone(),
            bytes: body.len() as u64,
            rows: rows.len() as u64,
            min_cursor: cursor.clone(),
            max_cursor: cursor.clone(),
        });
        bucket.put(&key, body.into()).await?;
    }
    let manifest = ChunkManifest {
        version: MANIFEST_FORMAT_VERSION,
        pipeline: run.pipeline.clone(),
        table: run.table.to_string(),
        run_id: run.run_id.clone(),
        chunk: 0,
        rows: data_files.iter().map(|f| f.rows).sum(),
        files: data_files,
        zero_dates_nulled: 0,
        oversize_truncated: 0,
        oversize_nulled: 0,
        schema_fingerprint: run.schema_fingerprint.clone(),
        quality: None,
    };
    let key = layout.chunk_manifest_key(&run.pipeline, &table, &run.run_id, 0);
    bucket
        .put(&key, serde_json::to_vec_pretty(&manifest)?.into())
        .await?;
    Ok(key)
}

/// Writes `files` for `run` and commits it with the real `commit` step.
pub async fn commit_rows(
    services: &Services,
    run: &RunContext,
    files: &[Vec<Vec<Value>>],
) -> anyhow::Result<CommitResult> {
    let key = write_chunk(services, run, files).await?;
    Ok(commit(
        services,
        &CommitRequest {
            run: run.clone(),
            chunk_manifest_keys: vec![key],
        },
    )
    .await?)
}

//! The measuring half of `scripts/bench extract` (a benchmark, not a test). Run it through the
//! script, which builds the table, builds this in release mode and wraps it in `/usr/bin/time -v`.
//!
//! ```text
//! bench_extract baseline DATABASE TABLE   bare binary-protocol streaming read, rows discarded
//! bench_extract extract  DATABASE TABLE   tidemark begin → plan → extract (full_sync, default
//!                                         options) to Parquet on the S3 endpoint of the environment
//! ```
//!
//! Prints one JSON line of figures on stdout; tidemark's own log (with the per-invocation
//! `read_wait_ms`, `decode_ms`, `writer_wait_ms`, `encode_ms`, `upload_ms`) goes to stderr.

// Its one output is the JSON line of figures on stdout.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use anyhow::{bail, Context};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use tidemark::config::{Config, Environment};
use tidemark::extract::{self, ExtractOptions, ExtractRequest};
use tidemark::naming::TableId;
use tidemark::parquet_sink::FileCompression;
use tidemark::schema;
use tidemark::services::Services;
use tidemark::steps::watermark::{begin, BeginRequest};
use tidemark::storage::Bucket;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, database, table] = args.as_slice() else {
        bail!("usage: bench_extract baseline|extract DATABASE TABLE");
    };
    let table = TableId::parse(&format!("{database}.{table}"))?;
    match mode.as_str() {
        "baseline" => baseline(&table, None).await,
        "baseline-pages" => {
            let rows = env("BENCH_PAGE_ROWS", "100000").parse()?;
            baseline(&table, Some(rows)).await
        }
        "extract" => extract_table(&table).await,
        other => bail!("unknown mode `{other}`"),
    }
}

/// Streams every row over the binary protocol (a prepared statement) and drops it; with
/// `page_rows`, in keyset pages of the `id` key as tidemark reads them.
async fn baseline(table: &TableId, page_rows: Option<u64>) -> anyhow::Result<()> {
    let opts =
        mysql_async::Opts::from_url(&env("TIDEMARK_MYSQL_URL", "mysql://root@127.0.0.1:3306"))?;
    let opts = mysql_async::OptsBuilder::from_opts(opts)
        .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]);
    let mut conn = mysql_async::Conn::new(opts).await?;
    let started = Instant::now();
    let mut rows = 0u64;
    let mut pages = 0u64;
    let mut last: Option<i64> = None;
    loop {
        let (sql, params): (String, Vec<mysql_async::Value>) = match (page_rows, last) {
            (None, _) => (format!("SELECT * FROM {}", table.mysql_quoted()), vec![]),
            (Some(n), None) => (
                format!(
                    "SELECT * FROM {} ORDER BY `id` LIMIT ?",
                    table.mysql_quoted()
                ),
                vec![n.into()],
            ),
            (Some(n), Some(id)) => (
                format!(
                    "SELECT * FROM {} WHERE `id` > ? ORDER BY `id` LIMIT ?",
                    table.mysql_quoted()
                ),
                vec![id.into(), n.into()],
            ),
        };
        let mut result = conn.exec_iter(sql, params).await?;
        let mut page = 0u64;
        if let Some(mut stream) = result.stream::<mysql_async::Row>().await? {
            while let Some(row) = stream.next().await {
                let mut row = row?;
                if page_rows.is_some() {
                    last = row.take::<i64, _>(0);
                }
                page += 1;
            }
        }
        drop(result);
        rows += page;
        pages += 1;
        if page_rows.is_none_or(|n| page < n) {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    conn.disconnect().await?;
    println!(
        "{}",
        serde_json::json!({"mode": "baseline", "rows": rows, "pages": pages, "seconds": seconds})
    );
    Ok(())
}

/// begin → plan → every invocation of every chunk, with the defaults a Lambda would use.
async fn extract_table(table: &TableId) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(env(
            "RUST_LOG",
            "tidemark=info",
        )))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let bucket_name = format!("tidemark-bench-{}", uuid::Uuid::new_v4().simple());
    let yaml = format!(
        r#"connections:
  src:
    kind: mysql
    host: "${{TIDEMARK_MYSQL_HOST:-127.0.0.1}}"
    port: {port}
    user: "${{TIDEMARK_MYSQL_USER:-root}}"
    password: "${{TIDEMARK_MYSQL_PASSWORD:-}}"
  wh:
    kind: postgres
    host: 127.0.0.1
    database: postgres
    user: postgres
pipelines:
  bench:
    source: src
    target: wh
    s3: {{ bucket: "{bucket_name}", prefix: bench }}
    tables:
      "{table}":
        cdc_strategy: full_sync
"#,
        port = env("TIDEMARK_MYSQL_PORT", "3306"),
    );
    let environment: Environment = std::env::vars().collect();
    let config = Config::from_yaml(&yaml, "bench.yaml", &environment)?;
    let services = Services::from_env(config.clone(), None).await;
    services
        .s3()
        .create_bucket()
        .bucket(&bucket_name)
        .send()
        .await
        .context("creating the bench bucket (is the local stack up?)")?;
    let bucket = Bucket::new(services.s3().clone(), &bucket_name);
    let outcome = run_extract(&services, &config, table).await;
    let keys: Vec<String> = bucket.list("").await?.into_iter().map(|o| o.key).collect();
    bucket.delete_many(&keys).await?;
    services
        .s3()
        .delete_bucket()
        .bucket(&bucket_name)
        .send()
        .await?;
    let figures = outcome?;
    println!("{figures}");
    Ok(())
}

/// The defaults, or the experiment's `BENCH_PAGE_ROWS`, `BENCH_BATCH_ROWS`,
/// `BENCH_ROW_GROUP_MIB` and `BENCH_COMPRESSION` (`zstd1`…`zstd9`, `snappy`, `none`).
fn options_from_env() -> anyhow::Result<ExtractOptions> {
    let mut options = ExtractOptions::default();
    if let Ok(rows) = std::env::var("BENCH_PAGE_ROWS") {
        options.page_rows = rows.parse()?;
    }
    if let Ok(rows) = std::env::var("BENCH_BATCH_ROWS") {
        options.batch_rows = rows.parse()?;
    }
    if let Ok(mib) = std::env::var("BENCH_ROW_GROUP_MIB") {
        options.row_group_bytes = mib.parse::<usize>()? * 1024 * 1024;
    }
    if let Ok(codec) = std::env::var("BENCH_COMPRESSION") {
        options.compression = Some(match codec.as_str() {
            "snappy" => FileCompression::Snappy,
            "none" => FileCompression::Uncompressed,
            zstd => FileCompression::Zstd(
                zstd.strip_prefix("zstd")
                    .context("BENCH_COMPRESSION: zstdN, snappy or none")?
                    .parse()?,
            ),
        });
    }
    Ok(options)
}

async fn run_extract(
    services: &Services,
    config: &Config,
    table: &TableId,
) -> anyhow::Result<serde_json::Value> {
    let run = begin(
        services,
        &BeginRequest {
            pipeline: "bench".into(),
            table: table.to_string(),
            mode: Default::default(),
            limit: None,
            execution: None,
            repair: None,
            after: Vec::new(),
        },
    )
    .await?;
    let (pipeline, table_config, layout) = run.resolve(config)?;
    let source = services.source(pipeline).await?;
    let bucket = services.bucket(pipeline);
    let options = options_from_env()?;

    let started = Instant::now();
    let mut conn = source.conn().await?;
    let schema = schema::discover(&mut conn, table, &table_config.schema_options()).await?;
    let plan = extract::plan(&mut conn, &schema, &run, table_config, 1).await?;
    drop(conn);
    let (mut rows, mut files, mut invocations) = (0u64, 0u64, 0u64);
    let mut parquet_bytes = 0u64;
    for chunk in &plan.chunks {
        let mut continuation = None;
        loop {
            let request = ExtractRequest {
                run: run.clone(),
                chunk: chunk.clone(),
                continuation,
            };
            let job = extract::ExtractJob {
                source: &source,
                bucket: &bucket,
                layout: &layout,
                schema: &schema,
                table: table_config,
            };
            let result = extract::extract_chunk(&job, &request, &options).await?;
            invocations += 1;
            if result.done {
                let key = result.chunk_manifest_key.context("manifest key")?;
                let object = bucket.get(&key).await?.context("manifest")?;
                let manifest: tidemark::manifest::ChunkManifest =
                    serde_json::from_slice(&object.body)?;
                rows += manifest.rows;
                files += manifest.files.len() as u64;
                parquet_bytes += manifest.files.iter().map(|f| f.bytes).sum::<u64>();
                break;
            }
            continuation = result.continuation;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    source.disconnect().await;
    Ok(serde_json::json!({
        "mode": "extract",
        "table": table.to_string(),
        "rows": rows,
        "seconds": seconds,
        "files": files,
        "invocations": invocations,
        "chunks": plan.chunks.len(),
        "parquet_bytes": parquet_bytes,
    }))
}

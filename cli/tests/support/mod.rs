//! What the CLI's end-to-end tests share: a fresh source database, bucket and target schema per
//! test, a configuration file naming them, and the real `tidemark` binary run against it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use mysql_async::prelude::Queryable;
use tidemark::naming::{StorageLayout, TableId};
use tidemark::watermark::{Watermark, WatermarkStore};
use tidemark_tests::compare::{mysql_rows, postgres_rows};
use tidemark_tests::s3::TestBucket;
use tidemark_tests::tables::Table;
use tidemark_tests::{TestMysql, TestPostgres};

/// The `orders` table every workflow test syncs: 20 rows, one per minute of 2026-01-01 from
/// 00:01, and rows 11–12 sharing 00:11.
pub const ORDERS_DDL: &str = "CREATE TABLE orders (id BIGINT PRIMARY KEY, status VARCHAR(16) NOT NULL, updated_at DATETIME(6) NOT NULL, KEY (updated_at, id))";
pub const ORDERS_ROWS: &str = "INSERT INTO orders SELECT n, IF(n % 2 = 0, 'paid', 'new'), '2026-01-01 00:00:00' + INTERVAL LEAST(n, GREATEST(n - 1, 11)) MINUTE FROM (SELECT 1 n UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9 UNION SELECT 10 UNION SELECT 11 UNION SELECT 12 UNION SELECT 13 UNION SELECT 14 UNION SELECT 15 UNION SELECT 16 UNION SELECT 17 UNION SELECT 18 UNION SELECT 19 UNION SELECT 20) s";
/// `orders` in the pipeline's `tables:` block; no lookback, so a run reads exactly what follows
/// the cursor.
pub fn orders_table() -> Table {
    Table::hybrid("orders", "updated_at").lookback("0s")
}

const ORDERS_SOURCE: &str =
    "SELECT id, status, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM orders ORDER BY id";

/// One test's services and the configuration file that names them.
pub struct Stack<'a> {
    pub mysql: &'a TestMysql,
    pub bucket: TestBucket,
    pub pg: TestPostgres,
    pub config: tempfile::NamedTempFile,
    /// `db.orders`.
    pub table: String,
}

impl Stack<'_> {
    /// Runs `tidemark --config FILE ARGS…` with stdin closed.
    pub fn run(&self, args: &[&str]) -> Output {
        tidemark(self.config.path(), args, &[])
    }

    /// Runs it with `--json`, expects success and exactly one JSON document on stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        assert!(
            output.status.success(),
            "{args:?} exit {:?}: {}",
            output.status.code(),
            text(&output.stderr)
        );
        one_document(&output)
    }

    /// The table's stored watermark.
    pub async fn watermark(&self) -> Option<Watermark> {
        WatermarkStore::new(self.bucket.bucket().clone(), StorageLayout::new("tm"), 50)
            .read("p", &TableId::parse(&self.table).unwrap())
            .await
            .unwrap()
            .map(|v| v.record)
    }

    /// The target's `orders` rows, rendered like [`Stack::source_orders`].
    pub async fn target_orders(&self) -> anyhow::Result<Vec<String>> {
        postgres_rows(
            self.pg.client(),
            &format!("SELECT id::text, status, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') FROM \"{}\".orders AS t ORDER BY t.id", self.pg.schema()),
        )
        .await
    }

    /// The source's `orders` rows.
    pub async fn source_orders(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = self.mysql.conn().await?;
        mysql_rows(&mut conn, ORDERS_SOURCE).await
    }

    /// Whether the target table exists.
    pub async fn target_exists(&self) -> anyhow::Result<bool> {
        Ok(self
            .pg
            .client()
            .query_opt(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'orders'",
                &[&self.pg.schema()],
            )
            .await?
            .is_some())
    }
}

/// Runs `test` against a fresh database holding `orders`, a fresh bucket and a fresh target
/// schema; `tables` is the pipeline's `tables:` block (see `TestMysql::config`). Everything is
/// dropped afterwards, also when the test fails.
pub async fn with_stack(tables: &str, test: impl AsyncFnOnce(&Stack<'_>) -> anyhow::Result<()>) {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop(ORDERS_DDL).await?;
        conn.query_drop(ORDERS_ROWS).await?;
        let bucket = TestBucket::fresh().await?;
        let pg = TestPostgres::fresh().await?;
        let yaml = mysql
            .config_yaml(bucket.bucket().name(), tables)?
            .replace("schema: public", &format!("schema: {}", pg.schema()));
        let mut config = tempfile::NamedTempFile::new()?;
        std::io::Write::write_all(&mut config, yaml.as_bytes())?;
        let stack = Stack {
            mysql,
            table: mysql.table("orders").to_string(),
            bucket,
            pg,
            config,
        };
        let outcome = test(&stack).await;
        let Stack { bucket, pg, .. } = stack;
        pg.cleanup().await?;
        bucket.remove().await?;
        outcome
    })
    .await
    .unwrap();
}

/// Runs the binary with `--config config`, extra environment, stdin closed.
pub fn tidemark(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the tidemark binary runs")
}

/// Stdout must be exactly one JSON document.
pub fn one_document(output: &Output) -> serde_json::Value {
    let mut documents = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<serde_json::Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}: {}", text(&output.stdout)));
    assert_eq!(
        documents.len(),
        1,
        "stdout holds {} JSON documents: {}",
        documents.len(),
        text(&output.stdout)
    );
    documents.remove(0)
}

/// Bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

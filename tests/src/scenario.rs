//! One table synced by the real `tidemark` binary, and the checks that say the sync kept its
//! promise: target rows == source rows, no duplicate key, ledger and watermark totals consistent
//! with the target for the table's load mode, no pending run or lease left behind, and every run
//! in S3 that the target does not hold listed by `s3clean list` as orphaned or abandoned.
//!
//! The binary's path comes from the caller (`env!("CARGO_BIN_EXE_tidemark")` in `cli/tests`).
//! Shared by the crash-anywhere, concurrency and bad-input suites.

use crate::tables::Table;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{ensure, Context};
use mysql_async::prelude::Queryable;
use tidemark::naming::{StorageLayout, TableId};
use tidemark::watermark::{Watermark, WatermarkStore};

use crate::compare::{mysql_rows, postgres_rows};
use crate::s3::TestBucket;
use crate::{TestMysql, TestPostgres};

/// How a table is loaded, with the table settings the suites use for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `hybrid` cursor on `updated_at`, `load: merge`: updates and inserts.
    Merge,
    /// `id_only` cursor on `id`, `load: append`: inserts only.
    Append,
    /// `full_sync`, `load: replace`: updates, inserts and hard deletes.
    Replace,
    /// As `Merge`, with `deletes: hard` reconciled at every sync: also deletes and re-inserts.
    HardDeletes,
    /// As `Merge`, with `deletes: soft` reconciled at every sync: also deletes and re-inserts;
    /// the target keeps deleted rows, marked.
    SoftDeletes,
    /// As `HardDeletes`, as a type-2 dimension (`scd_type: type_2`, every column tracked): the
    /// target keeps every version; a deleted key's current version is closed.
    Scd2,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 3] = [Mode::Merge, Mode::Append, Mode::Replace];

    /// Its name, also the table's name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Merge => "merged",
            Mode::Append => "appended",
            Mode::Replace => "replaced",
            Mode::HardDeletes => "hard_deleted",
            Mode::SoftDeletes => "soft_deleted",
            Mode::Scd2 => "versioned",
        }
    }

    /// The table's config: chunks of 80 rows, read by the mode's strategy.
    pub fn table(self) -> Table {
        match self {
            Mode::Merge => Table::hybrid(self.name(), "updated_at"),
            Mode::Append => Table::new(self.name()).strategy("id_only").load("append"),
            Mode::Replace => Table::new(self.name()).strategy("full_sync"),
            Mode::HardDeletes | Mode::SoftDeletes => Table::hybrid(self.name(), "updated_at")
                .with(
                    "deletes",
                    if self == Mode::HardDeletes {
                        "hard"
                    } else {
                        "soft"
                    },
                )
                .with("reconcile_every", "0s"),
            Mode::Scd2 => Table::hybrid(self.name(), "updated_at")
                .with("table_type", "dimension")
                .with("scd_type", "type_2")
                .with("deletes", "hard")
                .with("reconcile_every", "0s"),
        }
        .chunk_rows(80)
    }

    /// Whether the source's deletes reach the target.
    pub fn deletes(self) -> bool {
        matches!(
            self,
            Mode::Replace | Mode::HardDeletes | Mode::SoftDeletes | Mode::Scd2
        )
    }

    /// The target's rows that stand for source rows: all but those marked deleted, or the
    /// current versions.
    fn live_rows(self) -> &'static str {
        match self {
            Mode::SoftDeletes => "WHERE t._tidemark_deleted_at IS NULL",
            Mode::Scd2 => "WHERE t.is_current",
            _ => "",
        }
    }
}

/// `CREATE TABLE` for a suite table: a key, text, a decimal, and a microsecond cursor.
pub fn create_table(name: &str) -> String {
    format!(
        "CREATE TABLE `{name}` (id BIGINT PRIMARY KEY, v VARCHAR(40), amount DECIMAL(12,2), \
         updated_at DATETIME(6) NOT NULL, KEY (updated_at, id))"
    )
}

/// Inserts ids `from..=to`; every fifth row shares one timestamp with its neighbours, so pages
/// split inside equal cursor values.
pub async fn insert_rows(
    conn: &mut mysql_async::Conn,
    table: &str,
    from: u64,
    to: u64,
    stamp: &str,
) -> anyhow::Result<()> {
    let mut values = Vec::new();
    for id in from..=to {
        values.push(format!(
            "({id}, 'row {id} é', {id}.25, TIMESTAMP'{stamp}' + INTERVAL {} MICROSECOND)",
            id / 5
        ));
    }
    for chunk in values.chunks(500) {
        conn.query_drop(format!("INSERT INTO `{table}` VALUES {}", chunk.join(",")))
            .await?;
    }
    Ok(())
}

/// Changes the source the way `mode` can see: updates and inserts; for replace also deletes.
pub async fn change_rows(
    conn: &mut mysql_async::Conn,
    mode: Mode,
    table: &str,
    round: u64,
    rows: u64,
) -> anyhow::Result<()> {
    let stamp = format!("2025-0{}-01 00:00:00", 2 + round.min(7));
    let first_new = rows * (round + 1) + 1;
    insert_rows(conn, table, first_new, first_new + rows / 4, &stamp).await?;
    if mode != Mode::Append {
        conn.query_drop(format!(
            "UPDATE `{table}` SET v = CONCAT(v, ' u{round}'), updated_at = TIMESTAMP'{stamp}' + INTERVAL 1 SECOND WHERE id % 7 = {}",
            round % 7
        ))
        .await?;
    }
    if mode.deletes() {
        conn.query_drop(format!(
            "DELETE FROM `{table}` WHERE id % 11 = {}",
            round % 11
        ))
        .await?;
    }
    if matches!(mode, Mode::HardDeletes | Mode::SoftDeletes | Mode::Scd2) && round > 0 {
        // Some keys deleted the round before come back, with a new cursor value.
        let previous = (round - 1) % 11;
        for id in (1..=rows / 4).filter(|id| id % 11 == previous) {
            conn.query_drop(format!(
                "INSERT IGNORE INTO `{table}` VALUES ({id}, 'back {round}', {id}.5, TIMESTAMP'{stamp}' + INTERVAL 2 SECOND)"
            ))
            .await?;
        }
    }
    Ok(())
}

/// A database, a PostgreSQL schema, a bucket and a config file; tables added by the caller.
pub struct Scenario<'a> {
    /// The source database.
    pub mysql: &'a TestMysql,
    /// The target schema.
    pub pg: TestPostgres,
    /// The bucket.
    pub bucket: TestBucket,
    config: tempfile::NamedTempFile,
    binary: PathBuf,
}

/// What one check compared.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked {
    /// Rows compared (source side).
    pub rows: u64,
}

impl<'a> Scenario<'a> {
    /// A scenario whose pipeline `p` holds `tables` (YAML, as for [`TestMysql::config_yaml`]).
    pub async fn new(mysql: &'a TestMysql, binary: &str, tables: &str) -> anyhow::Result<Self> {
        let bucket = TestBucket::fresh().await?;
        let pg = TestPostgres::fresh().await?;
        let yaml = mysql
            .config_yaml(bucket.bucket().name(), tables)?
            .replace("schema: public", &format!("schema: \"{}\"", pg.schema()));
        let mut config = tempfile::NamedTempFile::new()?;
        std::io::Write::write_all(&mut config, yaml.as_bytes())?;
        Ok(Scenario {
            mysql,
            pg,
            bucket,
            config,
            binary: PathBuf::from(binary),
        })
    }

    /// The config file's path.
    pub fn config_path(&self) -> &std::path::Path {
        self.config.path()
    }

    /// `host:port` of connection `name` in the config file.
    pub fn connection_address(&self, name: &str) -> anyhow::Result<String> {
        let config = self.config_value()?;
        let connection = &config["connections"][name];
        let host = connection["host"]
            .as_str()
            .with_context(|| format!("connection `{name}` has no `host`"))?;
        let port = connection["port"]
            .as_u64()
            .with_context(|| format!("connection `{name}` has no `port`"))?;
        Ok(format!("{host}:{port}"))
    }

    /// Sets the key at `path` (e.g. `["connections", "src", "port"]`) in the config file to
    /// `value`, read as YAML; missing blocks on the way are created. For routing a connection
    /// through a proxy, or shortening a timeout.
    pub fn set_config(&self, path: &[&str], value: &str) -> anyhow::Result<()> {
        let mut config = self.config_value()?;
        let (last, blocks) = path.split_last().context("an empty config path")?;
        let mut block = &mut config;
        for key in blocks {
            let mapping = block
                .as_mapping_mut()
                .with_context(|| format!("`{key}`'s parent in {path:?} is not a mapping"))?;
            block = mapping
                .entry(serde_yaml::Value::from(*key))
                .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
        }
        block
            .as_mapping_mut()
            .with_context(|| format!("the parent of `{last}` in {path:?} is not a mapping"))?
            .insert(serde_yaml::Value::from(*last), serde_yaml::from_str(value)?);
        std::fs::write(self.config.path(), serde_yaml::to_string(&config)?)?;
        Ok(())
    }

    /// Adds connection `name`: the target `wh`'s server and login, with schema `schema`.
    pub fn add_target_connection(&self, name: &str, schema: &str) -> anyhow::Result<()> {
        let mut connection = self.config_value()?["connections"]["wh"].clone();
        connection["schema"] = serde_yaml::Value::from(schema);
        self.set_config(&["connections", name], &serde_yaml::to_string(&connection)?)
    }

    fn config_value(&self) -> anyhow::Result<serde_yaml::Value> {
        Ok(serde_yaml::from_str(&std::fs::read_to_string(
            self.config.path(),
        )?)?)
    }

    /// A command of the binary with this config and `faults` (or none) in `TIDEMARK_FAULTS`.
    pub fn command(&self, args: &[&str], faults: Option<&str>) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(self.config.path())
            .args(args)
            .stdin(Stdio::null());
        match faults {
            Some(plan) => command.env("TIDEMARK_FAULTS", plan),
            None => command.env_remove("TIDEMARK_FAULTS"),
        };
        command
    }

    /// Runs the binary to the end.
    pub fn run(&self, args: &[&str], faults: Option<&str>) -> Output {
        self.command(args, faults)
            .output()
            .expect("the tidemark binary runs")
    }

    /// `tidemark --json sync -t <db>.<table>`.
    pub fn sync(&self, table: &str, faults: Option<&str>) -> Output {
        let table = self.mysql.table(table).to_string();
        self.run(&["--json", "sync", "-t", &table], faults)
    }

    /// A sync without faults that must succeed.
    pub fn sync_ok(&self, table: &str) -> anyhow::Result<()> {
        let out = self.sync(table, None);
        ensure!(
            out.status.success(),
            "sync of `{table}` failed: {}",
            describe(&out)
        );
        Ok(())
    }

    /// The table's watermark.
    pub async fn watermark(&self, table: &str) -> anyhow::Result<Option<Watermark>> {
        let store = WatermarkStore::new(self.bucket.bucket().clone(), StorageLayout::new("tm"), 50);
        let id = TableId::parse(&self.mysql.table(table).to_string())?;
        Ok(store.read("p", &id).await?.map(|v| v.record))
    }

    /// The ledger rows of target `table`: run id → (staged, inserted, deleted).
    pub async fn ledger(&self, table: &str) -> anyhow::Result<BTreeMap<String, [u64; 3]>> {
        let rows = self
            .pg
            .client()
            .query(
                &format!(
                    "SELECT run_id::text, rows_staged, rows_inserted, rows_deleted FROM \"{}\".tidemark_load_ledger WHERE target_table = $1 ORDER BY run_id",
                    self.pg.schema()
                ),
                &[&table],
            )
            .await?;
        let mut ledger = BTreeMap::new();
        for row in rows {
            let run: String = row.get(0);
            let counts = [1, 2, 3].map(|i| row.get::<_, i64>(i) as u64);
            ensure!(
                ledger.insert(run.clone(), counts).is_none(),
                "run `{run}` is twice in the ledger"
            );
        }
        Ok(ledger)
    }

    /// Every promise, checked for `table` loaded by `mode`.
    pub async fn check(&self, mode: Mode, table: &str) -> anyhow::Result<Checked> {
        let schema = self.pg.schema();
        let mut conn = self.mysql.conn().await?;
        let source = mysql_rows(
            &mut conn,
            &format!("SELECT id, v, CAST(amount AS CHAR), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') FROM `{table}` ORDER BY id"),
        )
        .await?;
        let target = postgres_rows(
            self.pg.client(),
            &format!("SELECT id::text, v, amount::text, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') FROM \"{schema}\".\"{table}\" AS t {} ORDER BY t.id", mode.live_rows()),
        )
        .await?;
        if target != source {
            let missing: Vec<&String> = source
                .iter()
                .filter(|r| !target.contains(r))
                .take(5)
                .collect();
            let extra: Vec<&String> = target
                .iter()
                .filter(|r| !source.contains(r))
                .take(5)
                .collect();
            anyhow::bail!(
                "`{table}`: target ({} rows) differs from source ({} rows); missing {missing:?}, extra {extra:?}",
                target.len(),
                source.len()
            );
        }
        let duplicates: i64 = self
            .pg
            .client()
            .query_one(
                &format!(
                    "SELECT count(*) - count(DISTINCT id) FROM \"{schema}\".\"{table}\" AS t {}",
                    mode.live_rows()
                ),
                &[],
            )
            .await?
            .get(0);
        ensure!(duplicates == 0, "`{table}`: {duplicates} duplicate keys");
        if mode == Mode::Scd2 {
            // No version twice, and no gap: each closed version ends where the key's next
            // begins, or (a deleted key) no later than that.
            let broken: i64 = self
                .pg
                .client()
                .query_one(
                    &format!(
                        "SELECT (SELECT count(*) - count(DISTINCT (id, valid_from)) FROM \"{schema}\".\"{table}\")
                              + (SELECT count(*) FROM (
                                    SELECT valid_to, is_current, LEAD(valid_from) OVER (PARTITION BY id ORDER BY valid_from) AS next
                                    FROM \"{schema}\".\"{table}\") AS v
                                 WHERE (next IS NULL AND valid_to IS NOT NULL AND is_current)
                                    OR (next IS NOT NULL AND (valid_to IS NULL OR valid_to > next OR is_current)))"
                    ),
                    &[],
                )
                .await?
                .get(0);
            ensure!(
                broken == 0,
                "`{table}`: {broken} duplicate, overlapping or open versions"
            );
        }
        if mode == Mode::SoftDeletes {
            // Every marked row's key is gone from the source.
            let marked = postgres_rows(
                self.pg.client(),
                &format!("SELECT id::text FROM \"{schema}\".\"{table}\" WHERE _tidemark_deleted_at IS NOT NULL ORDER BY id"),
            )
            .await?;
            let source_ids = mysql_rows(&mut conn, &format!("SELECT id FROM `{table}`")).await?;
            let back: Vec<&String> = marked
                .iter()
                .filter(|id| source_ids.contains(id))
                .take(5)
                .collect();
            ensure!(
                back.is_empty(),
                "`{table}`: rows marked deleted exist in the source: {back:?}"
            );
        }

        let count = target.len() as u64;
        let ledger = self.ledger(table).await?;
        let inserted: u64 = ledger.values().map(|c| c[1]).sum();
        let deleted: u64 = ledger.values().map(|c| c[2]).sum();
        match mode {
            // Each load deletes the target rows its keys replace and inserts the deduped rows;
            // a deletion run's ledger row counts the rows it deleted or marked.
            Mode::Merge | Mode::HardDeletes | Mode::SoftDeletes | Mode::Scd2 => ensure!(
                inserted - deleted == count,
                "`{table}`: ledger inserted {inserted} - deleted {deleted} != {count} target rows"
            ),
            Mode::Append => ensure!(
                inserted == count && deleted == 0,
                "`{table}`: ledger inserted {inserted} (deleted {deleted}) != {count} target rows"
            ),
            // The last load replaced everything.
            Mode::Replace => {
                let last = ledger.values().next_back().map(|c| c[1]).unwrap_or(0);
                ensure!(
                    last == count,
                    "`{table}`: the last replace inserted {last} != {count} target rows"
                );
            }
        }
        let watermark = self
            .watermark(table)
            .await?
            .context("no watermark after a sync")?;
        ensure!(
            watermark.pending_runs.is_empty(),
            "`{table}`: runs left pending: {:?}",
            watermark.pending_runs
        );
        ensure!(
            watermark.lease.is_none(),
            "`{table}`: lease left: {:?}",
            watermark.lease
        );
        ensure!(
            watermark.totals.rows_loaded == inserted,
            "`{table}`: watermark rows_loaded {} != ledger rows_inserted {inserted}",
            watermark.totals.rows_loaded
        );
        ensure!(
            watermark.totals.runs_loaded == ledger.len() as u64,
            "`{table}`: watermark runs_loaded {} != {} ledger runs",
            watermark.totals.runs_loaded,
            ledger.len()
        );
        ensure!(
            watermark
                .load
                .last_loaded_run_id
                .as_ref()
                .map(|r| r.to_string())
                == ledger.keys().next_back().cloned(),
            "`{table}`: last loaded run {:?} is not the ledger's last",
            watermark.load.last_loaded_run_id
        );
        self.check_storage(table, &ledger)?;
        Ok(Checked {
            rows: source.len() as u64,
        })
    }

    /// `s3clean list`: nothing is pending or in progress; runs the target holds are `loaded`; a
    /// run without a run manifest (a crashed extraction) is `orphaned`; a run with a manifest
    /// that the target does not hold is `abandoned` — or `loaded` when it is older than the last
    /// loaded run, because the listing cannot tell a committed empty run (nothing to load) from
    /// a run whose commit crashed after its manifest was written (README "Guarantees").
    fn check_storage(
        &self,
        table: &str,
        ledger: &BTreeMap<String, [u64; 3]>,
    ) -> anyhow::Result<()> {
        let id = self.mysql.table(table).to_string();
        let out = self.run(&["--json", "s3clean", "list", "-t", &id], None);
        ensure!(out.status.success(), "s3clean list: {}", describe(&out));
        let listing: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let last_loaded = ledger.keys().next_back().map(String::as_str).unwrap_or("");
        for run in listing["runs"].as_array().into_iter().flatten() {
            let run_id = run["run_id"].as_str().unwrap_or_default();
            let status = run["status"].as_str().unwrap_or_default();
            let has_manifest = run["objects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["role"] == "run_manifest");
            let expected: &[&str] = if ledger.contains_key(run_id) {
                &["loaded"]
            } else if !has_manifest {
                &["orphaned"]
            } else if run_id < last_loaded {
                &["abandoned", "loaded"]
            } else {
                &["abandoned"]
            };
            ensure!(
                expected.contains(&status),
                "`{table}`: s3clean lists run `{run_id}` ({} data files) as `{status}`, expected one of {expected:?}; the ledger holds {:?}",
                run["data_files"],
                ledger.keys().collect::<Vec<_>>()
            );
        }
        Ok(())
    }

    /// Drops the schema and the bucket (the database is the caller's).
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.pg.cleanup().await?;
        self.bucket.remove().await
    }
}

/// Exit status, stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether the process died of SIGABRT (an injected `abort`).
pub fn aborted(out: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal() == Some(6)
}

/// Appends one line to the soak report (`TIDEMARK_SOAK_REPORT`), when it is set.
pub fn report(scenario: &str, runs: u64, faults: u64, rows: u64, mismatches: u64) {
    let Ok(path) = std::env::var("TIDEMARK_SOAK_REPORT") else {
        return;
    };
    let line = serde_json::json!({"scenario": scenario, "runs": runs, "faults": faults, "rows": rows, "mismatches": mismatches});
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes());
    }
}

/// `TIDEMARK_SOAK_SCALE` (default 1): the soak script raises it to run the long versions.
pub fn scale() -> u64 {
    std::env::var("TIDEMARK_SOAK_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

//! The load steps end to end against the local stack: runs begun and committed by the real
//! watermark steps (Parquet written by the harness, as extraction writes it), loaded into a
//! fresh PostgreSQL schema, with the target's rows compared to the expected rows every time.
//! Every scenario runs three times: against a `kind: postgres` target (wire protocol, binary
//! COPY); against a `kind: redshift, access: data_api` target served by the harness's Redshift
//! Data API stand-in, which runs the Redshift SQL on the same PostgreSQL; and against the same
//! `kind: postgres` target through an SSH tunnel (a private sshd, the key in Secrets Manager)
//! — modules `postgres::`, `redshift::` and `tunnel::`.
//!
//! Why the tunnel is tested with a PostgreSQL target: the server behind the bastion is
//! PostgreSQL, which cannot run Redshift's SQL over the wire (COPY from S3, DISTKEY, SUPER).
//! Redshift `access: tunnel` and the Data API's fallback use the very same transport
//! (`tunnel::open` + `Tunnel::connect` + `wire::load`) with the Redshift dialect; only the SQL
//! differs, and that is covered through the stand-in. Also: the golden Redshift and PostgreSQL
//! load SQL, and the load payloads.

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use tidemark::config::{
    Connection, DataApiTarget, DataApiTunnel, DeletePolicy, LoadMode, RedshiftAccess, WireEndpoint,
};
use tidemark::load::sql::{self, LoadPlan, PlannedRun, Role};
use tidemark::manifest::DataFile;
use tidemark::naming::{RunId, TableId};
use tidemark::run::{RunContext, SyncMode};
use tidemark::schema::Warehouse;
use tidemark::schema::{DistStyle, RedshiftTableOptions, SchemaOptions, SourceColumn, TableSchema};
use tidemark::services::Services;
use tidemark::steps::load::{
    parse_request, status, submit, LoadRequest, LoadState, LoadStatus, LoadSubmission,
    StatusRequest, SubmitRequest,
};
use tidemark::steps::watermark::{
    begin, commit_load, fail, BeginRequest, CommitLoadRequest, FailRequest,
};
use tidemark::watermark::{Stage, Watermark};
use tidemark::ErrorKind;
use tidemark_tests::bastion::Bastion;
use tidemark_tests::redshift_standin;
use tidemark_tests::runs::commit_rows;
use tidemark_tests::stack::{Stack, Target};
use tidemark_tests::tables::Table;
use tidemark_tests::{assert_golden, TestMysql, TestPostgres};

const ORDERS: &str =
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, updated_at DATETIME(6) NOT NULL, \
                      amount DECIMAL(12,2), note VARCHAR(50))";
fn orders_config() -> Table {
    Table::hybrid("orders", "updated_at")
}

/// One test's world: a [`Stack`] with a table, and the services of its pipeline.
struct World<'a> {
    stack: Stack<'a>,
    services: Services,
    table: String,
    target: String,
}

impl<'a> World<'a> {
    async fn new(
        kind: Target,
        mysql: &'a TestMysql,
        pg: &'a TestPostgres,
        create: &str,
        table: Table,
    ) -> anyhow::Result<World<'a>> {
        mysql.conn().await?.query_drop(create).await?;
        let stack = Stack::new(mysql, pg, kind).await?;
        let services = stack.services(&table.yaml()).await?;
        let name = table.source_name();
        Ok(World {
            stack,
            services,
            table: mysql.table(name).to_string(),
            target: name.to_owned(),
        })
    }

    async fn begin(&self, mode: SyncMode) -> anyhow::Result<RunContext> {
        Ok(begin(
            &self.services,
            &BeginRequest {
                pipeline: "p".into(),
                table: self.table.clone(),
                mode,
                limit: None,
                execution: None,
                repair: None,
                after: Vec::new(),
            },
        )
        .await?)
    }

    /// A committed run of `files`, left pending with the lease released.
    async fn pending_run(&self, files: &[Vec<Vec<Value>>]) -> anyhow::Result<RunId> {
        let run = self.begin(SyncMode::BackupOnly).await?;
        commit_rows(&self.services, &run, files).await?;
        Ok(run.run_id)
    }

    /// `status` until the load is finished or failed, as the state machine's Wait loop polls it.
    async fn wait(
        &self,
        run: &RunContext,
        submission: LoadSubmission,
    ) -> anyhow::Result<LoadStatus> {
        let request = StatusRequest {
            run: run.clone(),
            submission,
            polls: 0,
        };
        for _ in 0..600 {
            let answer = status(&self.services, &request).await?;
            if !matches!(answer.state, LoadState::Submitted | LoadState::Running) {
                return Ok(answer);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        anyhow::bail!("the load of run `{}` did not end within 12 s", run.run_id)
    }

    /// A load that must fail: `submit`'s error, or the failed `status` of a Data API batch, as
    /// (error type, message).
    /// Runs `statement` (an `ALTER TABLE`) on the source, as a DBA changing the schema would.
    async fn alter_source(&self, statement: &str) -> anyhow::Result<()> {
        Ok(self.stack.mysql.conn().await?.query_drop(statement).await?)
    }

    /// Alters the source with `alter`, commits a run of `row` and loads it: the load must fail,
    /// and its error type and text are returned.
    async fn failed_load_after(
        &self,
        alter: &str,
        row: Vec<Value>,
    ) -> anyhow::Result<(String, String)> {
        self.alter_source(alter).await?;
        let run = self.begin(SyncMode::Full).await?;
        commit_rows(&self.services, &run, &[vec![row]]).await?;
        self.failed_load(&run).await
    }

    async fn failed_load(&self, run: &RunContext) -> anyhow::Result<(String, String)> {
        let request = SubmitRequest {
            run: run.clone(),
            attempt: 0,
        };
        let submission = match submit(&self.services, &request).await {
            Err(err) => return Ok((err.kind().name().to_owned(), err.to_string())),
            Ok(submission) => submission,
        };
        let answer = self.wait(run, submission).await?;
        assert_eq!(answer.state, LoadState::Failed, "{answer:?}");
        Ok((
            answer.error_type.unwrap_or_default(),
            answer.error.unwrap_or_default(),
        ))
    }

    /// A run of `row`, committed and submitted with `services` (this world's, with another
    /// target configuration); the submit must fail, and its error is returned.
    async fn failing_submit(
        &self,
        services: &Services,
        row: Vec<Value>,
    ) -> anyhow::Result<tidemark::Error> {
        let run = self.begin(SyncMode::Full).await?;
        commit_rows(services, &run, &[vec![row]]).await?;
        match submit(services, &SubmitRequest { run, attempt: 0 }).await {
            Ok(submission) => anyhow::bail!("the load should have failed: {submission:?}"),
            Err(err) => Ok(err),
        }
    }

    /// Syncs one order and returns the target's rows and ledger: what a failing load must leave.
    async fn one_order_loaded(&self) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        self.sync(&[vec![order(1, "2024-01-01 00:00:00", "1.00", "one")]])
            .await?;
        Ok((self.rows().await?, self.ledger().await?))
    }

    /// After a failed load: target and ledger as they were, the run still pending.
    async fn assert_nothing_committed(
        &self,
        rows: &[String],
        ledger: &[String],
    ) -> anyhow::Result<()> {
        assert_eq!(self.rows().await?, rows, "the target is unchanged");
        assert_eq!(self.ledger().await?, ledger, "the ledger is unchanged");
        assert_eq!(
            self.watermark().await?.pending_runs.len(),
            1,
            "the run stays pending"
        );
        Ok(())
    }

    /// submit → status (polled) → commit_load, as the state machine runs them.
    async fn load(&self, run: &RunContext) -> anyhow::Result<LoadStatus> {
        let submission = submit(
            &self.services,
            &SubmitRequest {
                run: run.clone(),
                attempt: 0,
            },
        )
        .await?;
        let answer = self.wait(run, submission).await?;
        assert_eq!(answer.state, LoadState::Finished, "{answer:?}");
        commit_load(
            &self.services,
            &CommitLoadRequest {
                run: run.clone(),
                loaded: answer.loaded.clone(),
            },
        )
        .await?;
        Ok(answer)
    }

    /// A full sync of `files`: begin, commit, load.
    async fn sync(&self, files: &[Vec<Vec<Value>>]) -> anyhow::Result<LoadStatus> {
        let run = self.begin(SyncMode::Full).await?;
        commit_rows(&self.services, &run, files).await?;
        self.load(&run).await
    }

    /// Loads whatever is pending with a `redshift_only` run.
    async fn load_pending(&self) -> anyhow::Result<LoadStatus> {
        let run = self.begin(SyncMode::RedshiftOnly).await?;
        self.load(&run).await
    }

    /// The target's rows as PostgreSQL prints them, ordered by every column.
    async fn rows(&self) -> anyhow::Result<Vec<String>> {
        let sql = format!(
            "SELECT CAST(t AS text) FROM {} AS t ORDER BY 1",
            tidemark::naming::quote_warehouse_qualified(self.stack.pg.schema(), &self.target)
        );
        Ok(self
            .stack
            .pg
            .client()
            .query(&sql, &[])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    /// The ledger: `run_id files staged inserted deleted`, by run id.
    async fn ledger(&self) -> anyhow::Result<Vec<String>> {
        let sql = format!(
            "SELECT run_id || ' ' || files || ' ' || rows_staged || ' ' || rows_inserted || ' ' || rows_deleted \
             FROM {} WHERE target_table = $1 ORDER BY run_id",
            tidemark::naming::quote_warehouse_qualified(self.stack.pg.schema(), sql::LEDGER_TABLE)
        );
        Ok(self
            .stack
            .pg
            .client()
            .query(&sql, &[&self.target])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    async fn watermark(&self) -> anyhow::Result<Watermark> {
        let pipeline = self.services.config.pipeline("p")?;
        Ok(self
            .services
            .watermarks(pipeline)
            .read("p", &TableId::parse(&self.table)?)
            .await?
            .expect("a watermark")
            .record)
    }

    async fn finish(self) -> anyhow::Result<()> {
        if let Some(bastion) = &self.stack.bastion {
            // Proof that the loads really went through the tunnel.
            let log = bastion.log();
            anyhow::ensure!(
                log.contains("Accepted publickey for"),
                "sshd saw no login:\n{log}"
            );
        }
        self.stack.remove().await
    }
}

fn order(id: i64, at: &str, amount: &str, note: &str) -> Vec<Value> {
    vec![json!(id), json!(at), json!(amount), json!(note)]
}

fn loaded(answer: &LoadStatus) -> Vec<(String, u64)> {
    answer
        .loaded
        .iter()
        .map(|r| (r.run_id.to_string(), r.rows_loaded))
        .collect()
}

async fn in_world<F>(kind: Target, create: &'static str, table: Table, test: F)
where
    F: AsyncFnOnce(&World<'_>) -> anyhow::Result<()>,
{
    TestMysql::run(async |mysql| {
        TestPostgres::run(async |pg| {
            let world = World::new(kind, mysql, pg, create, table.clone()).await?;
            let outcome = test(&world).await;
            world.finish().await?;
            outcome
        })
        .await
    })
    .await
    .unwrap();
}

async fn the_first_load_creates_the_table_and_records_the_ledger(kind: Target) {
    in_world(kind, ORDERS, orders_config(), async |w| {
        let answer = w
            .sync(&[
                vec![
                    order(1, "2024-01-01 00:00:00", "12.50", "first"),
                    order(2, "2024-01-01 00:00:01.000001", "-0.01", "second"),
                ],
                vec![order(3, "2024-01-02 10:00:00", "99999999.99", "third")],
            ])
            .await?;
        assert_eq!(
            w.rows().await?,
            [
                "(1,\"2024-01-01 00:00:00\",12.50,first)",
                "(2,\"2024-01-01 00:00:01.000001\",-0.01,second)",
                "(3,\"2024-01-02 10:00:00\",99999999.99,third)",
            ]
        );
        let run = answer.loaded[0].run_id.to_string();
        assert_eq!(loaded(&answer), [(run.clone(), 3)]);
        assert_eq!(w.ledger().await?, [format!("{run} 2 3 3 0")]);
        let watermark = w.watermark().await?;
        assert!(watermark.pending_runs.is_empty());
        assert_eq!(watermark.totals.rows_loaded, 3);
        assert!(watermark.lease.is_none());
        Ok(())
    })
    .await;
}

async fn merge_replaces_updated_rows_and_keeps_the_newest_of_two_pending_runs(kind: Target) {
    in_world(kind, ORDERS, orders_config(), async |w| {
        w.sync(&[vec![
            order(1, "2024-01-01 00:00:00", "1.00", "one"),
            order(2, "2024-01-01 00:00:00", "2.00", "two"),
            order(3, "2024-01-01 00:00:00", "3.00", "three"),
        ]])
        .await?;
        let a = w
            .pending_run(&[vec![
                order(2, "2024-02-01 00:00:00", "2.10", "two, updated"),
                order(4, "2024-02-01 00:00:00", "4.00", "four"),
            ]])
            .await?;
        let b = w
            .pending_run(&[vec![
                order(2, "2024-03-01 00:00:00", "2.20", "two, newest"),
                order(5, "2024-03-01 00:00:00", "5.00", "five"),
            ]])
            .await?;
        let answer = w.load_pending().await?;
        assert_eq!(
            w.rows().await?,
            [
                "(1,\"2024-01-01 00:00:00\",1.00,one)",
                "(2,\"2024-03-01 00:00:00\",2.20,\"two, newest\")",
                "(3,\"2024-01-01 00:00:00\",3.00,three)",
                "(4,\"2024-02-01 00:00:00\",4.00,four)",
                "(5,\"2024-03-01 00:00:00\",5.00,five)",
            ]
        );
        // Run A's update of key 2 lost to run B's: A inserted only key 4.
        assert_eq!(loaded(&answer), [(a.to_string(), 1), (b.to_string(), 2)]);
        let ledger = w.ledger().await?;
        assert_eq!(
            &ledger[1..],
            [format!("{a} 1 2 1 0"), format!("{b} 1 2 2 1")]
        );
        assert_eq!(w.watermark().await?.totals.rows_loaded, 3 + 3);
        Ok(())
    })
    .await;
}

const EVENTS: &str =
    "CREATE TABLE events (id BIGINT NOT NULL, at DATETIME(6) NOT NULL, kind VARCHAR(20))";
fn events_config() -> Table {
    Table::hybrid("events", "at").load("append")
}

fn event(id: i64, at: &str, kind: &str) -> Vec<Value> {
    vec![json!(id), json!(at), json!(kind)]
}

async fn append_inserts_every_row_of_every_run(kind: Target) {
    in_world(kind, EVENTS, events_config(), async |w| {
        w.sync(&[vec![
            event(1, "2024-01-01 00:00:00", "open"),
            event(1, "2024-01-01 00:00:00", "open"),
        ]])
        .await?;
        w.pending_run(&[vec![event(1, "2024-01-02 00:00:00", "close")]])
            .await?;
        w.pending_run(&[vec![event(2, "2024-01-03 00:00:00", "open")]])
            .await?;
        let answer = w.load_pending().await?;
        assert_eq!(
            answer
                .loaded
                .iter()
                .map(|r| r.rows_loaded)
                .collect::<Vec<_>>(),
            [1, 1]
        );
        assert_eq!(
            w.rows().await?,
            [
                "(1,\"2024-01-01 00:00:00\",open)",
                "(1,\"2024-01-01 00:00:00\",open)",
                "(1,\"2024-01-02 00:00:00\",close)",
                "(2,\"2024-01-03 00:00:00\",open)",
            ]
        );
        Ok(())
    })
    .await;
}

fn full_config() -> Table {
    Table::new("orders").strategy("full_sync").lag("0s")
}

async fn replace_makes_the_target_exactly_the_latest_run(kind: Target) {
    in_world(kind, ORDERS, full_config(), async |w| {
        w.sync(&[vec![
            order(1, "2024-01-01 00:00:00", "1.00", "one"),
            order(2, "2024-01-01 00:00:00", "2.00", "two"),
            order(3, "2024-01-01 00:00:00", "3.00", "three"),
        ]])
        .await?;
        let older = w
            .pending_run(&[vec![order(9, "2024-01-05 00:00:00", "9.00", "stale")]])
            .await?;
        let latest = w
            .pending_run(&[vec![
                order(2, "2024-01-06 00:00:00", "2.50", "two again"),
                order(4, "2024-01-06 00:00:00", "4.00", "four"),
            ]])
            .await?;
        let answer = w.load_pending().await?;
        assert_eq!(
            w.rows().await?,
            [
                "(2,\"2024-01-06 00:00:00\",2.50,\"two again\")",
                "(4,\"2024-01-06 00:00:00\",4.00,four)",
            ]
        );
        assert_eq!(
            loaded(&answer),
            [(older.to_string(), 0), (latest.to_string(), 2)]
        );
        let ledger = w.ledger().await?;
        assert_eq!(
            &ledger[1..],
            [format!("{older} 1 1 0 0"), format!("{latest} 1 2 2 3")]
        );
        Ok(())
    })
    .await;
}

async fn a_run_loaded_twice_changes_nothing(kind: Target) {
    in_world(kind, EVENTS, events_config(), async |w| {
        // The same submit twice (a retried Lambda): the second is answered from the ledger
        // (wire protocol), or gets the first batch back by its ClientToken (Data API).
        let run = w.begin(SyncMode::Full).await?;
        commit_rows(
            &w.services,
            &run,
            &[vec![event(1, "2024-01-01 00:00:00", "open")]],
        )
        .await?;
        let request = SubmitRequest {
            run: run.clone(),
            attempt: 0,
        };
        let first = submit(&w.services, &request).await?;
        assert_eq!(
            w.wait(&run, first.clone()).await?.state,
            LoadState::Finished
        );
        let rows = w.rows().await?;
        let ledger = w.ledger().await?;
        assert_eq!(rows.len(), 1);
        let second = submit(&w.services, &request).await?;
        assert_eq!(first, second);
        assert_eq!(w.wait(&run, second).await?.state, LoadState::Finished);
        assert_eq!(w.rows().await?, rows);
        assert_eq!(w.ledger().await?, ledger);

        // A load that died before commit_load leaves its run pending; the next load takes it
        // with a new run and must not append its rows again.
        fail(
            &w.services,
            &FailRequest {
                pipeline: "p".into(),
                table: w.table.clone(),
                run_id: Some(run.run_id.clone()),
                stage: Stage::Load,
                error: json!("lost before commit_load"),
            },
        )
        .await?;
        let next = w
            .pending_run(&[vec![event(2, "2024-01-02 00:00:00", "close")]])
            .await?;
        let answer = w.load_pending().await?;
        assert_eq!(
            loaded(&answer),
            [(run.run_id.to_string(), 1), (next.to_string(), 1)]
        );
        assert_eq!(
            w.rows().await?,
            [
                "(1,\"2024-01-01 00:00:00\",open)",
                "(2,\"2024-01-02 00:00:00\",close)",
            ]
        );
        let watermark = w.watermark().await?;
        assert!(watermark.pending_runs.is_empty());
        assert_eq!(watermark.totals.rows_loaded, 2);
        Ok(())
    })
    .await;
}

/// Loads a pending run whose files were tampered with by `damage`; the load must fail with
/// `expected` (PostgreSQL's check, or Redshift COPY's) in its message and leave target, ledger
/// and watermark as they were.
async fn failing_load(w: &World<'_>, damage: &str, expected: [&str; 2]) -> anyhow::Result<()> {
    let expected = match w.stack.target {
        Target::Postgres | Target::Tunnel => expected[0],
        Target::Redshift => expected[1],
    };
    let (rows, ledger) = w.one_order_loaded().await?;
    let run = w.begin(SyncMode::Full).await?;
    let committed = commit_rows(
        &w.services,
        &run,
        &[
            vec![order(1, "2024-02-01 00:00:00", "1.50", "one, updated")],
            vec![order(2, "2024-02-01 00:00:00", "2.00", "two")],
        ],
    )
    .await?;
    let manifest: tidemark::manifest::RunManifest = serde_json::from_slice(
        &w.stack
            .bucket
            .bucket()
            .get(&committed.manifest_key)
            .await?
            .unwrap()
            .body,
    )?;
    let victim = &manifest.files[1].key;
    match damage {
        "delete" => {
            w.stack
                .bucket
                .bucket()
                .delete_many(std::slice::from_ref(victim))
                .await?;
        }
        _ => {
            let mut body = w
                .stack
                .bucket
                .bucket()
                .get(victim)
                .await?
                .unwrap()
                .body
                .to_vec();
            body.extend_from_slice(b"trailing bytes");
            w.stack.bucket.bucket().put(victim, body.into()).await?;
        }
    }
    let (error_type, text) = w.failed_load(&run).await?;
    assert_eq!(error_type, ErrorKind::NonRetryable.name(), "{text}");
    assert!(
        text.contains(expected) && text.contains(victim.as_str()),
        "{text}"
    );
    w.assert_nothing_committed(&rows, &ledger).await?;
    Ok(())
}

async fn a_missing_file_fails_the_load_and_commits_nothing(kind: Target) {
    in_world(kind, ORDERS, orders_config(), async |w| {
        failing_load(
            w,
            "delete",
            ["missing", "mandatory but the file was not found"],
        )
        .await
    })
    .await;
}

async fn a_file_of_another_size_fails_the_load_and_commits_nothing(kind: Target) {
    in_world(kind, ORDERS, orders_config(), async |w| {
        failing_load(w, "grow", ["bytes but run", "invalid content length"]).await
    })
    .await;
}

async fn an_added_column_is_added_to_the_target(kind: Target) {
    in_world(kind, ORDERS, orders_config(), async |w| {
        w.sync(&[vec![order(1, "2024-01-01 00:00:00", "1.00", "one")]])
            .await?;
        w.alter_source("ALTER TABLE orders ADD COLUMN channel VARCHAR(10) AFTER amount")
            .await?;
        w.sync(&[vec![vec![
            json!(2),
            json!("2024-02-01 00:00:00"),
            json!("2.00"),
            json!("web"),
            json!("two"),
        ]]])
        .await?;
        // The column is added at the end of the target; rows loaded before it have NULL there.
        assert_eq!(
            w.rows().await?,
            [
                "(1,\"2024-01-01 00:00:00\",1.00,one,)",
                "(2,\"2024-02-01 00:00:00\",2.00,two,web)",
            ]
        );
        Ok(())
    })
    .await;
}

/// An incompatible change to a key column: its hint names the reload, never `exclude`, which
/// the run would refuse for a key (issue #24 item 8).
#[tokio::test]
async fn an_incompatible_key_change_names_the_reload_not_exclude() {
    in_world(Target::Postgres, ORDERS, orders_config(), async |w| {
        w.sync(&[vec![order(1, "2024-01-01 00:00:00", "1.00", "one")]])
            .await?;
        let (error_type, text) = w
            .failed_load_after(
                "ALTER TABLE orders MODIFY id VARCHAR(20)",
                vec![
                    json!("2"),
                    json!("2024-02-01 00:00:00"),
                    json!("2.00"),
                    json!("two"),
                ],
            )
            .await?;
        assert_eq!(error_type, ErrorKind::SchemaDrift.name(), "{text}");
        assert!(
            text.contains("`id`")
                && text.contains("key column")
                && text.contains("watermark reset")
                && !text.contains("exclude"),
            "{text}"
        );
        Ok(())
    })
    .await;
}

/// A forged `commit_load` (issue #25 item 3): told that a committed but never loaded run was
/// loaded, it asks the target's ledger instead, so the run stays pending (cleanup would delete
/// the files of a run dropped from the pending list) and the next load brings its rows.
async fn a_forged_commit_load_drops_no_pending_run(kind: Target) {
    in_world(kind, ORDERS, orders_config(), async |w| {
        w.sync(&[vec![order(1, "2024-01-01 00:00:00", "1.00", "one")]])
            .await?;
        let run = w.begin(SyncMode::Full).await?;
        commit_rows(
            &w.services,
            &run,
            &[vec![order(2, "2024-02-01 00:00:00", "2.00", "two")]],
        )
        .await?;
        commit_load(
            &w.services,
            &CommitLoadRequest {
                run: run.clone(),
                loaded: vec![tidemark::watermark::LoadedRun {
                    run_id: run.run_id.clone(),
                    rows_loaded: 1,
                }],
            },
        )
        .await?;
        let watermark = w.watermark().await?;
        assert_eq!(
            watermark
                .pending_runs
                .iter()
                .map(|p| &p.run_id)
                .collect::<Vec<_>>(),
            [&run.run_id],
            "the forged claim dropped a pending run"
        );
        assert_eq!(watermark.totals.rows_loaded, 1);
        w.load_pending().await?;
        assert_eq!(w.rows().await?.len(), 2);
        Ok(())
    })
    .await;
}

/// Two loads creating the ledger at the same moment (two tables' first loads into one new
/// schema): PostgreSQL answers the one that loses the race in its catalog with a unique
/// violation, not "already exists". Another session holds an uncommitted `CREATE TABLE` of the
/// ledger; the load's own `CREATE … IF NOT EXISTS` waits on it, then meets the violation when it
/// commits — every time — and the load still succeeds with its rows.
#[tokio::test]
async fn a_ledger_created_at_the_same_moment_by_another_load_does_not_fail_the_load() {
    in_world(Target::Postgres, ORDERS, orders_config(), async |w| {
        let (other, connection) =
            tokio_postgres::connect(&tidemark_tests::postgres_url(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        other.batch_execute("BEGIN").await?;
        other
            .batch_execute(&sql::create_ledger(w.stack.pg.schema())?)
            .await?;
        let files = [vec![order(1, "2024-01-01 00:00:00", "1.00", "raced")]];
        let load = w.sync(&files);
        let release = async {
            // Commit once the load waits for the ledger's creation. Watched from a third session:
            // inside a transaction, pg_stat_activity keeps its first snapshot.
            for _ in 0..200 {
                let waiting: i64 = w
                    .stack
                    .pg
                    .client()
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                         AND query LIKE '%tidemark_load_ledger%'",
                        &[],
                    )
                    .await?
                    .get(0);
                if waiting > 0 {
                    other.batch_execute("COMMIT").await?;
                    return Ok(true);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other.batch_execute("COMMIT").await?;
            anyhow::Ok(false)
        };
        let (answer, waited) = tokio::join!(load, release);
        assert!(
            waited?,
            "the load never waited on the other session's ledger"
        );
        let answer = answer?;
        assert_eq!(loaded(&answer).len(), 1, "{answer:?}");
        assert_eq!(w.rows().await?, ["(1,\"2024-01-01 00:00:00\",1.00,raced)"]);
        Ok(())
    })
    .await;
}

/// A wire-protocol load with less time left than it needs (a Lambda near its deadline, issue
/// #26 item 6): its statements are cancelled by the lowered `statement_timeout`, it fails saying
/// why and what to do instead, nothing is committed, and the same load with time enough loads.
#[tokio::test]
async fn a_load_out_of_lambda_time_is_cancelled_and_says_why() {
    in_world(Target::Postgres, ORDERS, orders_config(), async |w| {
        let run = w.begin(SyncMode::Full).await?;
        let rows: Vec<Vec<Value>> = (1..=20_000)
            .map(|id| order(id, "2024-01-01 00:00:00", "1.00", "a row"))
            .collect();
        commit_rows(&w.services, &run, &[rows]).await?;
        let request = SubmitRequest {
            run: run.clone(),
            attempt: 0,
        };
        // 1 ms left for the load itself.
        let nearly_out =
            tidemark::steps::load::LOAD_DEADLINE_MARGIN + std::time::Duration::from_millis(1);
        let err = tidemark::steps::load::submit_within(&w.services, &request, Some(nearly_out))
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("a load with 1 ms left finished"))?;
        let text = err.to_string();
        assert!(
            text.contains("did not end within the 0.001 s this invocation had left")
                && text.contains("access: data_api")
                && text.contains("tidemark sync --redshift-only -t"),
            "{text}"
        );
        assert_eq!(err.kind(), tidemark::ErrorKind::NonRetryable);
        assert!(
            w.ledger().await.unwrap_or_default().is_empty(),
            "nothing committed"
        );
        w.load(&run).await?;
        assert_eq!(w.rows().await?.len(), 20_000);
        Ok(())
    })
    .await;
}

/// A forged `submit` (issue #25 item 3): a payload naming another target table or other keys
/// than the configuration is refused, and nothing is loaded anywhere; the true run loads.
#[tokio::test]
async fn a_forged_submit_is_refused() {
    in_world(Target::Postgres, ORDERS, orders_config(), async |w| {
        let run = w.begin(SyncMode::Full).await?;
        commit_rows(
            &w.services,
            &run,
            &[vec![order(1, "2024-01-01 00:00:00", "1.00", "one")]],
        )
        .await?;
        for forged in [
            RunContext {
                target: "elsewhere".into(),
                ..run.clone()
            },
            RunContext {
                load_mode: tidemark::config::LoadMode::Append,
                ..run.clone()
            },
        ] {
            let err = submit(
                &w.services,
                &SubmitRequest {
                    run: forged,
                    attempt: 0,
                },
            )
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("a forged submit was taken"))?;
            assert!(
                err.to_string().contains("come from the configuration"),
                "{err}"
            );
        }
        let exists: bool = w
            .stack
            .pg
            .client()
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("\"{}\".\"elsewhere\"", w.stack.pg.schema())],
            )
            .await?
            .get(0);
        assert!(!exists, "a forged target was created");
        w.load(&run).await?;
        assert_eq!(w.rows().await?.len(), 1);
        Ok(())
    })
    .await;
}

/// Two rows of one run with the same key and cursor value: which is the newest version cannot be
/// told, and the merge once kept one of them at random. The load fails, names the count, and
/// commits nothing (issue #24 item 6).
async fn keys_held_twice_with_one_cursor_value_fail_the_load(kind: Target) {
    in_world(kind, ORDERS, orders_config(), async |w| {
        w.sync(&[vec![order(1, "2024-01-01 00:00:00", "1.00", "one")]])
            .await?;
        let rows = w.rows().await?;
        let run = w.begin(SyncMode::Full).await?;
        let at = "2024-02-01 00:00:00";
        commit_rows(
            &w.services,
            &run,
            &[
                vec![order(2, at, "2.00", "two"), order(3, at, "3.00", "three")],
                vec![
                    order(2, at, "2.50", "two again"),
                    order(3, at, "3.50", "three again"),
                ],
                vec![order(4, at, "4.00", "four")],
            ],
        )
        .await?;
        let (error_type, text) = w.failed_load(&run).await?;
        assert_eq!(error_type, ErrorKind::SchemaDrift.name(), "{text}");
        assert!(text.contains("2 keys appear twice in one run"), "{text}");
        assert_eq!(w.rows().await?, rows);
        Ok(())
    })
    .await;
}

async fn an_incompatible_change_is_schema_drift(kind: Target) {
    in_world(kind, ORDERS, orders_config(), async |w| {
        w.sync(&[vec![order(1, "2024-01-01 00:00:00", "1.00", "one")]])
            .await?;
        let rows = w.rows().await?;
        let (error_type, text) = w
            .failed_load_after(
                "ALTER TABLE orders MODIFY amount VARCHAR(20)",
                vec![
                    json!(2),
                    json!("2024-02-01 00:00:00"),
                    json!("about 2"),
                    json!("two"),
                ],
            )
            .await?;
        assert_eq!(error_type, ErrorKind::SchemaDrift.name(), "{text}");
        assert!(text.contains("`amount`"), "{text}");
        assert_eq!(w.rows().await?, rows);
        Ok(())
    })
    .await;
}

/// A safe widening (DECIMAL(12,2) → DECIMAL(16,4)) was refused as "cannot change in place": it is
/// applied — in place on PostgreSQL, by add/copy/drop/rename on Redshift, whose stand-in refuses
/// ALTER COLUMN TYPE to anything but VARCHAR as Redshift does — and old and new values load
/// exactly (issue #24 item 8).
async fn a_widened_decimal_is_retyped_and_keeps_every_value(kind: Target) {
    in_world(kind, ORDERS, orders_config(), async |w| {
        w.sync(&[vec![order(1, "2024-01-01 00:00:00", "1234567890.25", "one")]])
            .await?;
        w.alter_source("ALTER TABLE orders MODIFY amount DECIMAL(16,4)").await?;
        w.sync(&[vec![order(2, "2024-02-01 00:00:00", "123456789012.3456", "two")]])
            .await?;
        // By name: Redshift's add/copy/drop/rename moves the column to the end of the table.
        let rows = tidemark_tests::compare::postgres_rows(
            w.stack.pg.client(),
            &format!(
                "SELECT id::text, amount::text, note FROM \"{}\".orders ORDER BY id",
                w.stack.pg.schema()
            ),
        )
        .await?;
        assert_eq!(
            rows,
            ["1|1234567890.2500|one", "2|123456789012.3456|two"],
            "{rows:?}"
        );
        let typed: String = w
            .stack
            .pg
            .client()
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'amount'",
                &[&format!("\"{}\".\"orders\"", w.stack.pg.schema())],
            )
            .await?
            .get(0);
        assert_eq!(typed, "numeric(16,4)");
        Ok(())
    })
    .await;
}

const STAMPS: &str = "CREATE TABLE stamps (id BIGINT PRIMARY KEY, seen TIMESTAMP(6) NULL, \
                      updated_at DATETIME(6) NOT NULL)";
fn stamps_config() -> Table {
    Table::hybrid("stamps", "updated_at")
}

/// A TIMESTAMP altered to DATETIME is retyped from TIMESTAMPTZ to TIMESTAMP — in place on
/// PostgreSQL, by add/copy/drop/rename on Redshift — and the loaded values become their UTC
/// wall-clock time until the backfill the change starts re-reads them (issue #24 item 8; the
/// backfill itself is `a_timestamp_become_datetime_holds_the_source_s_values` in the CLI tests).
async fn a_timestamp_become_datetime_is_retyped(kind: Target) {
    in_world(kind, STAMPS, stamps_config(), async |w| {
        w.sync(&[vec![vec![
            json!(1),
            json!("2024-01-01 23:30:00.5"),
            json!("2024-01-01 00:00:00"),
        ]]])
        .await?;
        w.alter_source("ALTER TABLE stamps MODIFY seen DATETIME(6) NULL")
            .await?;
        w.sync(&[vec![vec![
            json!(2),
            json!("2024-06-01 12:00:00"),
            json!("2024-02-01 00:00:00"),
        ]]])
        .await?;
        let rows = tidemark_tests::compare::postgres_rows(
            w.stack.pg.client(),
            &format!(
                "SELECT id::text, seen::text, pg_typeof(seen)::text FROM \"{}\".stamps ORDER BY id",
                w.stack.pg.schema()
            ),
        )
        .await?;
        assert_eq!(
            rows,
            [
                "1|2024-01-01 23:30:00.5|timestamp without time zone",
                "2|2024-06-01 12:00:00|timestamp without time zone"
            ],
            "{rows:?}"
        );
        Ok(())
    })
    .await;
}

const CODES: &str = "CREATE TABLE codes (code VARCHAR(10) NOT NULL PRIMARY KEY, \
                     updated_at DATETIME(6) NOT NULL, note VARCHAR(20))";
fn codes_config() -> Table {
    Table::hybrid("codes", "updated_at")
}

/// A string key grows in the source (VARCHAR(10) → VARCHAR(40)). Redshift's ALTER COLUMN TYPE
/// cannot change a PRIMARY KEY column (r_ALTER_TABLE; the stand-in refuses it, as it refuses it
/// inside a transaction): the key is dropped, the column widened and the key declared again,
/// each autocommitted, and the longer key loads. PostgreSQL widens it in place (issue #14 item 2).
async fn a_widened_varchar_key_keeps_its_primary_key(kind: Target) {
    in_world(kind, CODES, codes_config(), async |w| {
        w.sync(&[vec![vec![json!("short"), json!("2024-01-01 00:00:00"), json!("one")]]])
            .await?;
        w.alter_source("ALTER TABLE codes MODIFY code VARCHAR(40) NOT NULL").await?;
        let long = "a-key-of-forty-characters-0123456789abcd";
        w.sync(&[vec![
            vec![json!(long), json!("2024-02-01 00:00:00"), json!("two")],
            vec![json!("short"), json!("2024-02-01 00:00:00"), json!("one again")],
        ]])
        .await?;
        let rows = tidemark_tests::compare::postgres_rows(
            w.stack.pg.client(),
            &format!("SELECT code, note FROM \"{}\".codes ORDER BY code", w.stack.pg.schema()),
        )
        .await?;
        assert_eq!(rows, [format!("{long}|two"), "short|one again".to_owned()], "{rows:?}");
        let key: Vec<String> = tidemark_tests::compare::postgres_rows(
            w.stack.pg.client(),
            &format!(
                "SELECT u.column_name FROM information_schema.table_constraints AS c \
                 JOIN information_schema.key_column_usage AS u ON u.constraint_name = c.constraint_name \
                 AND u.table_schema = c.table_schema AND u.table_name = c.table_name \
                 WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = '{}' AND c.table_name = 'codes'",
                w.stack.pg.schema()
            ),
        )
        .await?;
        assert_eq!(key, ["code"]);
        Ok(())
    })
    .await;
}

const KEYED: &str =
    "CREATE TABLE keyed (id BIGINT PRIMARY KEY, at DATETIME(6) NOT NULL, kind VARCHAR(20))";
fn keyed_config() -> Table {
    Table::hybrid("keyed", "at").load("append")
}

/// `append` with a key keeps each version of a row once: a later run that reads a version
/// again (a lookback window, `watermark set` into the past) appends only the new version, and
/// the target declares no key, so versions sharing a key load (issue #24 item 1, on every
/// warehouse path).
async fn append_keeps_each_version_of_a_key_once(kind: Target) {
    in_world(kind, KEYED, keyed_config(), async |w| {
        w.sync(&[vec![
            event(1, "2024-01-01 00:00:00", "open"),
            event(2, "2024-01-01 00:00:00", "open"),
        ]])
        .await?;
        let answer = w
            .sync(&[vec![
                event(1, "2024-01-01 00:00:00", "open"),
                event(1, "2024-01-02 00:00:00", "close"),
            ]])
            .await?;
        assert_eq!(
            answer
                .loaded
                .iter()
                .map(|r| r.rows_loaded)
                .collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(
            w.rows().await?,
            [
                "(1,\"2024-01-01 00:00:00\",open)",
                "(1,\"2024-01-02 00:00:00\",close)",
                "(2,\"2024-01-01 00:00:00\",open)",
            ]
        );
        Ok(())
    })
    .await;
}

const LABELS: &str = "CREATE TABLE labels (id BIGINT PRIMARY KEY, label VARCHAR(20) NOT NULL, \
                      updated_at DATETIME(6) NOT NULL)";
fn labels_config() -> Table {
    Table::hybrid("labels", "updated_at")
}

/// A source column that now takes NULL used to fail the load on the target's NOT NULL: the
/// schema step drops the constraint (PostgreSQL) or rebuilds the column nullable (Redshift,
/// which cannot change nullability in place), and the NULL arrives (issue #14 item 10).
async fn a_column_that_now_takes_null_takes_it_in_the_target(kind: Target) {
    in_world(kind, LABELS, labels_config(), async |w| {
        w.sync(&[vec![vec![
            json!(1),
            json!("first"),
            json!("2024-01-01 00:00:00"),
        ]]])
        .await?;
        w.alter_source("ALTER TABLE labels MODIFY label VARCHAR(20) NULL")
            .await?;
        w.sync(&[vec![vec![
            json!(2),
            Value::Null,
            json!("2024-02-01 00:00:00"),
        ]]])
        .await?;
        let rows = tidemark_tests::compare::postgres_rows(
            w.stack.pg.client(),
            &format!(
                "SELECT id::text, label FROM \"{}\".labels ORDER BY id",
                w.stack.pg.schema()
            ),
        )
        .await?;
        assert_eq!(rows, ["1|first", "2|∅"], "{rows:?}");
        Ok(())
    })
    .await;
}

const ZOO: &str = "CREATE TABLE zoo (
    id INT NOT NULL PRIMARY KEY, flag TINYINT(1), si SMALLINT, i INT, bi BIGINT,
    bu BIGINT UNSIGNED, dw DECIMAL(38,10), f FLOAT, d DOUBLE, b10 BIT(10), dt DATE,
    dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), vc VARCHAR(20), js JSON,
    vb VARBINARY(10), updated_at DATETIME(6) NOT NULL)";
fn zoo_config() -> Table {
    Table::hybrid("zoo", "updated_at")
}

async fn every_type_loads_exactly(kind: Target) {
    in_world(kind, ZOO, zoo_config(), async |w| {
        let at = "2024-01-01 00:00:00";
        w.sync(&[vec![
            vec![
                json!(1), json!(true), json!(-32768), json!(-2147483648_i64),
                json!(i64::MIN), json!("18446744073709551615"),
                json!("-9999999999999999999999999999.9999999999"), json!(1.5), json!(-2.25),
                json!(1023), json!("0001-01-01"), json!("1000-01-01 00:00:00.000001"),
                json!("2038-01-19 03:14:07.999999"), json!("-838:59:59.000000"),
                json!("é😀 \"q\" \\ ,"), json!("{\"k\": [1, 2.5, null]}"), json!("hex:00ff7f80"),
                json!(at),
            ],
            vec![
                json!(2), json!(false), json!(32767), json!(2147483647), json!(i64::MAX),
                json!("0"), json!("0.0000000001"), json!(0.0), json!(1e308), json!(0),
                json!("9999-12-31"), json!("9999-12-31 23:59:59.999999"),
                json!("1970-01-01 00:00:01"), json!("838:59:59.999999"), json!(""),
                json!("[]"), json!("hex:"), json!(at),
            ],
            std::iter::once(json!(3))
                .chain(std::iter::repeat_n(Value::Null, 16))
                .chain(std::iter::once(json!(at)))
                .collect(),
        ]])
        .await?;
        let text = w.rows().await?;
        assert_eq!(
            text,
            [
                "(1,t,-32768,-2147483648,-9223372036854775808,18446744073709551615,-9999999999999999999999999999.9999999999,1.5,-2.25,1023,0001-01-01,\"1000-01-01 00:00:00.000001\",\"2038-01-19 03:14:07.999999+00\",-838:59:59.000000,\"é😀 \"\"q\"\" \\\\ ,\",\"{\"\"k\"\": [1, 2.5, null]}\",\"\\\\x00ff7f80\",\"2024-01-01 00:00:00\")",
                "(2,f,32767,2147483647,9223372036854775807,0,0.0000000001,0,1e+308,0,9999-12-31,\"9999-12-31 23:59:59.999999\",\"1970-01-01 00:00:01+00\",838:59:59.999999,\"\",[],\"\\\\x\",\"2024-01-01 00:00:00\")",
                "(3,,,,,,,,,,,,,,,,,\"2024-01-01 00:00:00\")",
            ]
        );
        Ok(())
    })
    .await;
}

/// One `#[tokio::test]` per scenario and target: `postgres::`, `redshift::`, `tunnel::<scenario>`.
macro_rules! on_every_target {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Target::Postgres).await
            })*
        }
        mod redshift {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Target::Redshift).await
            })*
        }
        mod tunnel {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Target::Tunnel).await
            })*
        }
    };
}

on_every_target!(
    the_first_load_creates_the_table_and_records_the_ledger,
    merge_replaces_updated_rows_and_keeps_the_newest_of_two_pending_runs,
    append_inserts_every_row_of_every_run,
    replace_makes_the_target_exactly_the_latest_run,
    a_run_loaded_twice_changes_nothing,
    a_missing_file_fails_the_load_and_commits_nothing,
    a_file_of_another_size_fails_the_load_and_commits_nothing,
    an_added_column_is_added_to_the_target,
    an_incompatible_change_is_schema_drift,
    keys_held_twice_with_one_cursor_value_fail_the_load,
    a_forged_commit_load_drops_no_pending_run,
    a_widened_decimal_is_retyped_and_keeps_every_value,
    a_timestamp_become_datetime_is_retyped,
    a_widened_varchar_key_keeps_its_primary_key,
    a_column_that_now_takes_null_takes_it_in_the_target,
    append_keeps_each_version_of_a_key_once,
    every_type_loads_exactly,
);

/// MariaDB's JSON may hold duplicate object keys; Redshift's JSON_PARSE refuses them unless
/// `json_parse_dedup_attributes` is on, and the stand-in enforces that. The load turns it on, so
/// the document loads with the last value of each key, as MySQL itself reads it (issue #14
/// item 4); on PostgreSQL `jsonb` keeps the last too.
async fn json_with_duplicate_keys_keeps_the_last_value(kind: Target) {
    in_world(kind, ZOO, zoo_config(), async |w| {
        let at = "2024-01-01 00:00:00";
        let mut row: Vec<Value> = std::iter::once(json!(4))
            .chain(std::iter::repeat_n(Value::Null, 16))
            .chain(std::iter::once(json!(at)))
            .collect();
        row[15] = json!("{\"a\": 1, \"b\": {\"c\": 1, \"c\": 2}, \"a\": 3}");
        w.sync(&[vec![row]]).await?;
        let text = w.rows().await?;
        assert!(
            text[0].contains(r#"{""a"": 3, ""b"": {""c"": 2}}"#),
            "{text:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn json_with_duplicate_keys_keeps_the_last_value_in_redshift() {
    json_with_duplicate_keys_keeps_the_last_value(Target::Redshift).await
}

#[tokio::test]
async fn json_with_duplicate_keys_keeps_the_last_value_in_postgres() {
    json_with_duplicate_keys_keeps_the_last_value(Target::Postgres).await
}

/// Redshift's VARCHAR(n) holds n bytes, not characters: the stand-in's COPY refuses a string of
/// 51 emoji (204 bytes) for `note VARCHAR(50)` (utf8mb4: VARCHAR(200)), as Redshift does, although
/// PostgreSQL's `varchar(200)` would take 51 characters. Extraction never writes such a value
/// (`oversize_in_redshift`, `oversize.rs`); this keeps the stand-in honest about the limit.
#[tokio::test]
async fn the_standin_copy_refuses_a_string_longer_in_bytes_than_its_varchar() {
    in_world(Target::Redshift, ORDERS, orders_config(), async |w| {
        let (rows, ledger) = w.one_order_loaded().await?;
        let run = w.begin(SyncMode::Full).await?;
        let wide = "😀".repeat(51);
        commit_rows(
            &w.services,
            &run,
            &[vec![order(2, "2024-02-01 00:00:00", "2.00", &wide)]],
        )
        .await?;
        let (error_type, text) = w.failed_load(&run).await?;
        assert_eq!(error_type, ErrorKind::NonRetryable.name(), "{text}");
        assert!(
            text.contains("The length of the data column note is longer than the length defined in the table. Table: 200, Data: 204"),
            "{text}"
        );
        w.assert_nothing_committed(&rows, &ledger).await
    })
    .await;
}

/// RSA bastion keys are refused with the reason and the fix: tidemark is built without the
/// `rsa` crate, whose timing side channel has no fix (RUSTSEC-2023-0071; issue #25).
#[tokio::test]
async fn an_rsa_bastion_key_is_refused_with_the_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("id_rsa");
    let made = tokio::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&path)
        .status()
        .await?;
    anyhow::ensure!(made.success(), "ssh-keygen failed");
    let tunnel = tidemark::config::TunnelConfig {
        bastion_host: "127.0.0.1".to_owned(),
        bastion_port: 9,
        user: "nobody".to_owned(),
        private_key_secret: None,
        private_key_file: None,
        host_key: None,
        verify_host_key: false,
    };
    let key = std::fs::read_to_string(&path)?;
    let err = tidemark::load::tunnel::open(&tunnel, &key, std::time::Duration::from_secs(2))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("an RSA key opened a tunnel"))?
        .to_string();
    assert!(
        err.contains("RSA keys are not supported") && err.contains("ssh-keygen -t ed25519"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_bastion_with_another_host_key_is_refused() {
    in_world(Target::Tunnel, ORDERS, orders_config(), async |w| {
        // The right key works...
        let (rows, ledger) = w.one_order_loaded().await?;
        // ...another bastion's key is refused before anything is sent.
        let bastion = w
            .stack
            .bastion
            .as_ref()
            .expect("a tunnel world has a bastion");
        let impostor = Bastion::start("127.0.0.1:5432").await?;
        let mut config = w.services.config.clone();
        let Some(Connection::Postgres(target)) = config.connections.get_mut("wh") else {
            anyhow::bail!("no postgres target");
        };
        // The key file this time (the world's own tunnel reads it from Secrets Manager).
        let mut tunnel = bastion.tunnel_config();
        tunnel.host_key = Some(impostor.host_key().to_owned());
        target.tunnel = Some(tunnel);
        let services = Services::from_env(config, None).await;
        let err = w
            .failing_submit(&services, order(2, "2024-02-01 00:00:00", "2.00", "two"))
            .await?;
        assert_eq!(err.kind(), ErrorKind::NonRetryable, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("presented host key `ssh-ed25519 SHA256:")
                && text.contains("not the configured `host_key`"),
            "{text}"
        );
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert_eq!(w.rows().await?, rows);
        assert_eq!(w.ledger().await?, ledger);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn operator_questions_reach_a_tunnelled_target_through_its_tunnel() {
    in_world(Target::Tunnel, ORDERS, orders_config(), async |w| {
        let (rows, _) = w.one_order_loaded().await?;
        // `validate-counts` and `connections test` ask through the same client.
        let client = w.services.target("wh").await?;
        let counts = client.counts(&w.target, None).await?;
        assert_eq!(counts.rows, Some(rows.len() as u64));
        assert_eq!(counts.ledger.runs, 1);
        assert!(client.version().await?.contains("PostgreSQL"));
        drop(client);
        // Without the bastion the question fails, naming it: it never went around the tunnel.
        w.stack
            .bastion
            .as_ref()
            .expect("a tunnel world has a bastion")
            .kill();
        let err = w
            .services
            .target("wh")
            .await
            .expect_err("the bastion is gone");
        assert!(matches!(err, tidemark::Error::Tunnel { .. }), "{err}");
        Ok(())
    })
    .await;
}

/// Services for `config` with `redshift` as its warehouse `wh`, whose Data API calls go to a
/// port nothing listens on: every call is a dispatch failure.
async fn with_unreachable_data_api(
    mut config: tidemark::config::Config,
    redshift: tidemark::config::RedshiftConnection,
) -> Services {
    config
        .connections
        .insert("wh".into(), Connection::Redshift(Box::new(redshift)));
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let unreachable = aws_sdk_redshiftdata::Client::from_conf(
        aws_sdk_redshiftdata::config::Builder::from(&shared)
            .endpoint_url("http://127.0.0.1:1")
            .build(),
    );
    Services::from_env(config, None)
        .await
        .with_redshift_data(unreachable)
}

/// Without `fallback_to_tunnel`, the Data API's failure is the answer: nothing is rerouted, so
/// revoking Data API access during an incident stops writes (issue #25 item 2). The tunnel here
/// leads nowhere: had it been tried, the error would be the tunnel's.
#[tokio::test]
async fn an_unreachable_data_api_does_not_fall_back_unless_opted_in() {
    in_world(Target::Postgres, ORDERS, orders_config(), async |w| {
        let config = w.services.config.clone();
        let mut redshift = redshift_standin::data_api_connection(w.stack.pg.schema());
        redshift.access = RedshiftAccess::DataApi {
            target: DataApiTarget::Workgroup("standin".into()),
            tunnel: Some(DataApiTunnel {
                tunnel: tidemark::config::TunnelConfig {
                    bastion_host: "127.0.0.1".into(),
                    bastion_port: 9,
                    user: "nobody".into(),
                    private_key_secret: None,
                    private_key_file: Some("/nonexistent".into()),
                    host_key: None,
                    verify_host_key: false,
                },
                fallback: None,
            }),
        };
        let services = with_unreachable_data_api(config, redshift).await;
        let err = w
            .failing_submit(&services, order(1, "2024-01-01 00:00:00", "1.00", "one"))
            .await?;
        assert!(matches!(err, tidemark::Error::DataApi { .. }), "{err}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_data_api_falls_back_to_the_tunnel_when_opted_in() {
    in_world(Target::Tunnel, ORDERS, orders_config(), async |w| {
        let bastion = w
            .stack
            .bastion
            .as_ref()
            .expect("a tunnel world has a bastion");
        let config = w.services.config.clone();
        let mut redshift = redshift_standin::data_api_connection(w.stack.pg.schema());
        let pg: tokio_postgres::Config = tidemark_tests::postgres_url().parse()?;
        redshift.database = pg.get_dbname().unwrap_or("postgres").to_owned();
        redshift.access = RedshiftAccess::DataApi {
            target: DataApiTarget::Workgroup("standin".into()),
            tunnel: Some(DataApiTunnel {
                tunnel: bastion.tunnel_config(),
                fallback: Some(WireEndpoint {
                    host: "127.0.0.1".into(),
                    port: pg.get_ports().first().copied().unwrap_or(5432),
                    user: pg.get_user().unwrap_or("postgres").to_owned(),
                }),
            }),
        };
        let services = with_unreachable_data_api(config, redshift).await;
        let err = w
            .failing_submit(&services, order(1, "2024-01-01 00:00:00", "1.00", "one"))
            .await?;
        // The fallback reached the warehouse through the bastion; the server behind it is
        // PostgreSQL, so Redshift's DDL is where it stops (see the module doc).
        let text = format!("{:#}", anyhow::Error::from(err));
        assert!(
            text.contains("creating `orders`") && text.contains("at or near \"ENCODE\""),
            "{text}"
        );
        assert!(bastion.log().contains("Accepted publickey for"));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_tunnel_killed_mid_load_fails_within_the_timeout_and_commits_nothing() {
    in_world(Target::Tunnel, ORDERS, orders_config(), async |w| {
        let (rows, ledger) = w.one_order_loaded().await?;
        let run = w.begin(SyncMode::Full).await?;
        commit_rows(
            &w.services,
            &run,
            &[vec![order(2, "2024-02-01 00:00:00", "2.00", "two")]],
        )
        .await?;
        // Hold the target so the load stops inside its transaction, after staging.
        let (holder, connection) =
            tokio_postgres::connect(&tidemark_tests::postgres_url(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let target = tidemark::naming::quote_warehouse_qualified(w.stack.pg.schema(), &w.target);
        holder
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {target} IN ACCESS EXCLUSIVE MODE"
            ))
            .await?;
        let started = std::time::Instant::now();
        let request = SubmitRequest {
            run: run.clone(),
            attempt: 0,
        };
        let load = submit(&w.services, &request);
        let kill = async {
            let blocked = format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tidemark-load' \
                 AND wait_event_type = 'Lock' AND position({} in query) > 0",
                tidemark::load::sql::literal(w.stack.pg.schema())?
            );
            for _ in 0..500 {
                let waiting: i64 = w.stack.pg.client().query_one(&blocked, &[]).await?.get(0);
                if waiting > 0 {
                    w.stack.bastion.as_ref().expect("a bastion").kill();
                    return Ok::<_, anyhow::Error>(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            anyhow::bail!("the load never waited for the target's lock")
        };
        let (outcome, killed) = tokio::join!(load, kill);
        killed?;
        let err = outcome.expect_err("a load whose tunnel died cannot succeed");
        // The connection's statement timeout is 30 minutes: the broken channel, not a timer,
        // ended the load.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
        assert!(err.to_string().contains("connection closed"), "{err}");
        holder.batch_execute("ROLLBACK").await?;
        // The server side of the dead session rolls back as soon as it runs again.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        w.assert_nothing_committed(&rows, &ledger).await?;
        Ok(())
    })
    .await;
}

fn golden_plan(mode: LoadMode) -> anyhow::Result<LoadPlan> {
    let table = TableId::parse("shop.orders")?;
    let column = |name: &str, data_type: &str, column_type: &str, nullable: bool| SourceColumn {
        name: name.into(),
        data_type: data_type.into(),
        column_type: column_type.into(),
        nullable,
        octet_length: None,
        numeric_precision: None,
        numeric_scale: None,
        datetime_precision: None,
        json_checked: false,
    };
    let mut note = column("Note", "varchar", "varchar(50)", true);
    note.octet_length = Some(200);
    let mut amount = column("amount", "decimal", "decimal(12,2)", true);
    amount.numeric_precision = Some(12);
    amount.numeric_scale = Some(2);
    let mut updated = column("updated_at", "datetime", "datetime(6)", false);
    updated.datetime_precision = Some(6);
    let schema = TableSchema::from_source_columns(
        &table,
        vec![
            column("id", "bigint", "bigint(20)", false),
            updated,
            amount,
            note,
            column("payload", "json", "json", true),
        ],
        vec!["id".into()],
        &SchemaOptions::default(),
    )?;
    let run = |id: &str, files: usize, rows: u64| PlannedRun {
        run_id: RunId::parse(id).unwrap(),
        manifest_key: format!("tm/runs/p/shop/orders/{id}.json"),
        files: (0..files)
            .map(|seq| DataFile {
                key: format!("tm/data/p/shop/orders/{id}/part-00000-{seq:05}.parquet"),
                bytes: 1000,
                rows: rows / files as u64,
                min_cursor: Default::default(),
                max_cursor: Default::default(),
            })
            .collect(),
        rows,
        copy_manifest_uri: format!("s3://tidemark-data/tm/copy/p/shop/orders/{id}.manifest"),
        deletion: false,
        version_time: None,
    };
    Ok(LoadPlan {
        pipeline: "p".into(),
        source_table: "shop.orders".into(),
        schema: "analytics".into(),
        target: "orders".into(),
        mode,
        key_columns: vec!["id".into()],
        cursor_column: (mode != LoadMode::Replace).then(|| "updated_at".into()),
        table_schema: schema,
        runs: vec![
            run("20261127T041530123Z-0000000000ab", 2, 1200),
            run("20261127T051530123Z-0000000000cd", 1, 7),
        ],
        iam_role: "arn:aws:iam::123456789012:role/tidemark-copy".into(),
        loaded_at: chrono::DateTime::parse_from_rfc3339("2026-11-27T06:00:00.123456Z")?
            .with_timezone(&chrono::Utc),
        dropped_columns: Default::default(),
        deletes: Default::default(),
        keep_newer: false,
        scd: None,
    })
}

/// The merge plan of [`golden_plan`] under `deletes`, with a deletion run between its two
/// data runs.
fn golden_deletion_plan(deletes: DeletePolicy) -> anyhow::Result<LoadPlan> {
    let mut plan = golden_plan(LoadMode::Merge)?;
    let id = "20261127T041531456Z-0000000000ef";
    let deletion = PlannedRun {
        run_id: RunId::parse(id)?,
        manifest_key: format!("tm/runs/p/shop/orders/{id}.json"),
        files: vec![DataFile {
            key: format!("tm/data/p/shop/orders/{id}/part-00000-00000.parquet"),
            bytes: 300,
            rows: 12,
            min_cursor: Default::default(),
            max_cursor: Default::default(),
        }],
        rows: 12,
        copy_manifest_uri: format!("s3://tidemark-data/tm/copy/p/shop/orders/{id}.manifest"),
        deletion: true,
        version_time: None,
    };
    plan.runs.insert(1, deletion);
    plan.deletes = deletes;
    Ok(plan)
}

/// The deletion plan of [`golden_deletion_plan`] (`hard`) as a type-2 dimension tracking
/// `amount` and `note`, with a surrogate key; the deletion run closes versions at its ceiling.
fn golden_scd_plan() -> anyhow::Result<LoadPlan> {
    let mut plan = golden_deletion_plan(DeletePolicy::Hard)?;
    plan.runs[1].version_time = Some("2026-11-27 04:15:30.000000".into());
    plan.scd = Some(sql::ScdPlan {
        valid_from: "valid_from".into(),
        valid_to: "valid_to".into(),
        current_flag: "is_current".into(),
        surrogate_key: Some("customer_sk".into()),
        tracked: vec!["amount".into(), "note".into()],
    });
    Ok(plan)
}

#[test]
fn the_load_sql_matches_the_golden_files() -> anyhow::Result<()> {
    let dist = RedshiftTableOptions {
        diststyle: Some(DistStyle::Key),
        distkey: Some("id".into()),
        sortkey: vec!["updated_at".into()],
    };
    for (mode, name) in [
        (LoadMode::Merge, "merge"),
        (LoadMode::Append, "append"),
        (LoadMode::Replace, "replace"),
    ] {
        let plan = golden_plan(mode)?;
        for (dialect, dir) in [
            (Warehouse::Redshift, "redshift"),
            (Warehouse::Postgres, "postgres"),
        ] {
            let script = sql::load_script(dialect, &plan)?;
            // Redshift copies each run into a table of exactly the files' columns, then moves
            // its rows into staging with their tag: one more statement per run, two fixed. The
            // key verification is one more on both.
            let (fixed, per_run) = match dialect {
                Warehouse::Redshift => (14, 3),
                Warehouse::Postgres => (11, 2),
            };
            let expected =
                fixed + per_run * plan.runs.len() - usize::from(mode == LoadMode::Append);
            assert_eq!(script.statements.len(), expected, "{name} {dir}");
            assert_eq!(
                script.statements.last().map(|s| s.role),
                Some(Role::ReadLedger)
            );
            assert_golden(&format!("{dir}/load_{name}.sql"), &script.to_sql())?;
        }
    }
    // A full Data API batch stays within its 40 statements.
    let mut full = golden_plan(LoadMode::Merge)?;
    let first = full.runs[0].clone();
    full.runs = vec![first; sql::max_runs_per_batch(false, false)];
    let statements = sql::load_script(Warehouse::Redshift, &full)?
        .statements
        .len();
    assert!(
        statements <= sql::MAX_BATCH_STATEMENTS,
        "{statements} statements"
    );
    // So does one with deletion runs among its runs, soft (one statement more) or hard.
    for deletes in [DeletePolicy::Soft, DeletePolicy::Hard] {
        let mut full = golden_deletion_plan(deletes)?;
        let (data, deletion) = (full.runs[0].clone(), full.runs[1].clone());
        full.runs = (0..sql::max_runs_per_batch(true, false))
            .map(|i| {
                if i % 2 == 0 {
                    data.clone()
                } else {
                    deletion.clone()
                }
            })
            .collect();
        let statements = sql::load_script(Warehouse::Redshift, &full)?
            .statements
            .len();
        assert!(
            statements <= sql::MAX_BATCH_STATEMENTS,
            "{deletes}: {statements} statements"
        );
    }
    // A replay's merge keeps target rows at least as new as the replayed ones.
    let mut replay = golden_plan(LoadMode::Merge)?;
    replay.keep_newer = true;
    for (dialect, dir) in [
        (Warehouse::Redshift, "redshift"),
        (Warehouse::Postgres, "postgres"),
    ] {
        let script = sql::load_script(dialect, &replay)?;
        assert_golden(&format!("{dir}/load_replay_merge.sql"), &script.to_sql())?;
    }
    for (deletes, name) in [(DeletePolicy::Hard, "hard"), (DeletePolicy::Soft, "soft")] {
        let plan = golden_deletion_plan(deletes)?;
        for (dialect, dir) in [
            (Warehouse::Redshift, "redshift"),
            (Warehouse::Postgres, "postgres"),
        ] {
            let script = sql::load_script(dialect, &plan)?;
            assert_golden(&format!("{dir}/load_deletes_{name}.sql"), &script.to_sql())?;
        }
    }
    // A type-2 dimension (`scd_type: type_2`) with a deletion run: versions, not rows.
    let scd = golden_scd_plan()?;
    for (dialect, dir) in [
        (Warehouse::Redshift, "redshift"),
        (Warehouse::Postgres, "postgres"),
    ] {
        let script = sql::load_script(dialect, &scd)?;
        assert_golden(&format!("{dir}/load_scd2.sql"), &script.to_sql())?;
    }
    for deletions in [false, true] {
        let mut full = golden_scd_plan()?;
        let (data, deletion) = (full.runs[0].clone(), full.runs[1].clone());
        full.runs = (0..sql::max_runs_per_batch(deletions, true))
            .map(|i| match deletions && i % 2 == 1 {
                true => deletion.clone(),
                false => data.clone(),
            })
            .collect();
        let statements = sql::load_script(Warehouse::Redshift, &full)?
            .statements
            .len();
        assert!(
            statements <= sql::MAX_BATCH_STATEMENTS,
            "type 2, deletions {deletions}: {statements} statements"
        );
    }
    let plan = golden_plan(LoadMode::Merge)?;
    let schema_step = [
        sql::create_target(Warehouse::Redshift, &plan, &dist)?,
        sql::create_ledger(&plan.schema)?,
    ];
    assert_golden(
        "redshift/load_schema.sql",
        &schema_step.map(|s| format!("{s};\n")).join("\n"),
    )?;
    let manifest = sql::copy_manifest(&plan.runs[0].files, |k| format!("s3://tidemark-data/{k}"));
    assert_golden("redshift/copy.manifest", &format!("{manifest}\n"))?;
    Ok(())
}

#[test]
fn the_load_payloads_round_trip() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/load");
    for name in ["submit", "status", "status_data_api"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let payload: Value = serde_json::from_str(&text).unwrap();
        let request = parse_request(payload.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(serde_json::to_value(&request).unwrap(), payload, "{name}");
        if let LoadRequest::Status(status) = request {
            assert!(!status.submission.runs.is_empty());
        }
    }
    for name in ["submission", "load_status"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let payload: Value = serde_json::from_str(&text).unwrap();
        let round = match name {
            "submission" => serde_json::to_value(
                serde_json::from_value::<LoadSubmission>(payload.clone()).unwrap(),
            ),
            _ => {
                serde_json::to_value(serde_json::from_value::<LoadStatus>(payload.clone()).unwrap())
            }
        }
        .unwrap();
        assert_eq!(round, payload, "{name}");
    }
    let err = parse_request(json!({"action": "load"})).unwrap_err();
    assert!(
        err.to_string().contains("actions are submit, status"),
        "{err}"
    );
    let err = parse_request(json!({"action": "submit", "run": {}, "colour": 1})).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NonRetryable);
}

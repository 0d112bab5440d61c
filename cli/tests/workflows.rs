//! The operator workflows of the `tidemark` CLI, run with the real binary against the local
//! stack, checking the effect in S3 and in the target (rows compared with the source):
//! a fresh sync from a date; `--backup-only` then `--redshift-only` with `watermark get
//! --show-files` in between; `--dry-run` changing nothing; `--json` printing one document;
//! usage errors (exit 2) and a failed table (exit 1); progress as lines, as bars on a terminal,
//! and none with `-q`.

use crate::support::{one_document, orders_table, text, with_stack, Stack};
use mysql_async::prelude::Queryable;
use tidemark_tests::tables::{self, Table};

/// Source rows of `orders` with `id >= from`, rendered like the target's.
async fn source_from(stack: &Stack<'_>, from: i64) -> anyhow::Result<Vec<String>> {
    Ok(stack
        .source_orders()
        .await?
        .into_iter()
        .filter(|row| row.split('|').next().unwrap().parse::<i64>().unwrap() >= from)
        .collect())
}

#[tokio::test]
async fn a_fresh_sync_from_a_date_reloads_only_the_rows_after_it() {
    with_stack(&orders_table().yaml(), async |stack| {
        let table = stack.table.as_str();
        stack.json(&["sync", "-t", table]);
        assert_eq!(stack.target_orders().await?, stack.source_orders().await?);

        // Empty the target by hand, then sync again from 00:15:30: rows 17–20 come back, only.
        stack
            .pg
            .client()
            .execute(
                &format!("DELETE FROM \"{}\".orders", stack.pg.schema()),
                &[],
            )
            .await?;
        stack.json(&["watermark", "reset", "-t", table, "--yes"]);
        stack.json(&[
            "watermark",
            "set",
            "-t",
            table,
            "--timestamp",
            "2026-01-01 00:15:30",
        ]);
        let synced = stack.json(&["sync", "-t", table]);
        let outcome = &synced["summary"]["tables"][0];
        assert_eq!(outcome["rows_extracted"], 4, "{synced:#}");
        assert_eq!(stack.target_orders().await?, source_from(stack, 17).await?);

        // The run's files in S3 hold exactly those rows.
        let run_id = outcome["run_id"].as_str().unwrap();
        let watermark = stack.watermark().await.unwrap();
        assert!(watermark.pending_runs.is_empty());
        assert_eq!(watermark.load.last_loaded_run_id.unwrap().as_str(), run_id);
        let data: Vec<_> = stack
            .bucket
            .bucket()
            .list("")
            .await?
            .into_iter()
            .filter(|o| o.key.contains(run_id) && o.key.ends_with(".parquet"))
            .collect();
        assert!(!data.is_empty(), "the run's parquet files are in S3");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn backup_only_runs_are_listed_with_their_files_and_redshift_only_loads_them_all() {
    with_stack(&orders_table().yaml(), async |stack| {
        let table = stack.table.as_str();
        stack.json(&["sync", "-t", table, "--backup-only"]);
        let mut conn = stack.mysql.conn().await?;
        conn.query_drop("UPDATE orders SET status = 'shipped', updated_at = '2026-02-01 00:00:00' WHERE id IN (2, 19)").await?;
        conn.query_drop("INSERT INTO orders VALUES (21, 'new', '2026-02-01 00:00:00')")
            .await?;
        stack.json(&["sync", "-t", table, "--backup-only"]);
        assert!(!stack.target_exists().await?, "backup-only never loads");

        let shown = stack.json(&["watermark", "get", "-t", table, "--show-files"]);
        let runs = shown["pending_files"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{shown:#}");
        let mut rows = 0;
        for run in runs {
            for file in run["files"].as_array().unwrap() {
                let key = file["key"].as_str().unwrap();
                let object = stack.bucket.bucket().get(key).await?.expect(key);
                assert_eq!(object.body.len() as u64, file["bytes"].as_u64().unwrap());
                rows += file["rows"].as_u64().unwrap();
            }
        }
        assert_eq!(rows, 23, "20 rows, then 2 updated and 1 new");
        let human = stack.run(&["watermark", "get", "-t", table, "--show-files"]);
        let printed = text(&human.stdout);
        let first_key = runs[0]["files"][0]["key"].as_str().unwrap();
        assert!(printed.contains(first_key), "{printed}");

        let loaded = stack.json(&["sync", "-t", table, "--redshift-only"]);
        let outcome = &loaded["summary"]["tables"][0];
        assert_eq!(outcome["loaded"].as_array().unwrap().len(), 2, "{loaded:#}");
        assert_eq!(outcome["rows_extracted"], 0);
        assert_eq!(stack.target_orders().await?, stack.source_orders().await?);
        assert!(stack.watermark().await.unwrap().pending_runs.is_empty());

        // Once loaded, `--show-files` shows the files of the last loaded run (the second one).
        let shown_after = stack.json(&["watermark", "get", "-t", table, "--show-files"]);
        assert!(shown_after["pending_files"].is_null(), "{shown_after:#}");
        let last = &shown_after["last_loaded_files"];
        assert_eq!(last["run_id"], runs[1]["run_id"], "{shown_after:#}");
        assert_eq!(last["files"], runs[1]["files"]);
        let human = stack.run(&["watermark", "get", "-t", table, "--show-files"]);
        let printed = text(&human.stdout);
        let run_id = runs[1]["run_id"].as_str().unwrap();
        assert!(printed.contains(&format!("files of last loaded run {run_id}:")), "{printed}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn dry_run_changes_nothing_and_json_prints_one_document() {
    with_stack(&orders_table().yaml(), async |stack| {
        let table = stack.table.as_str();
        let dry = stack.run(&["sync", "-t", table, "--dry-run"]);
        assert!(dry.status.success(), "{}", text(&dry.stderr));
        let printed = text(&dry.stdout);
        for part in [
            "hybrid",
            &format!("→ {}.orders", stack.pg.schema()),
            "cursor",
            "ceiling",
            "rows to extract",
            "reads in: cursor order (timestamp, then key)",
            "first read: SELECT",
            "load SQL:",
            "CREATE TABLE IF NOT EXISTS",
            "COPY",
            "nothing is changed",
        ] {
            assert!(printed.contains(part), "`{part}` in {printed}");
        }
        assert!(
            stack.watermark().await.is_none(),
            "dry run wrote a watermark"
        );
        assert!(!stack.target_exists().await?, "dry run created the target");

        let output = stack.run(&["--json", "sync", "-t", table]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let document = one_document(&output);
        assert!(document["execution"]
            .as_str()
            .is_some_and(|e| !e.is_empty()));
        assert_eq!(document["status"], "succeeded");
        assert!(document["duration_ms"].is_u64(), "{document:#}");
        let outcome = &document["summary"]["tables"][0];
        assert_eq!(outcome["table"], table);
        assert_eq!(outcome["status"], "succeeded");
        assert_eq!(outcome["rows_extracted"], 20);
        assert_eq!(outcome["loaded"][0]["rows_loaded"], 20);
        // 20 rows are one chunk and one file; its bytes are the Parquet objects in the bucket.
        let parquet: Vec<_> = stack
            .bucket
            .bucket()
            .list("")
            .await?
            .into_iter()
            .filter(|object| object.key.ends_with(".parquet"))
            .collect();
        assert_eq!(outcome["files"], 1);
        assert_eq!(parquet.len(), 1);
        assert_eq!(outcome["bytes"], parquet[0].size);
        assert!(outcome["run_id"].is_string());
        assert!(outcome["error"].is_null());

        let before = stack.watermark().await.unwrap();
        let target_before = stack.target_orders().await?;
        let mut conn = stack.mysql.conn().await?;
        conn.query_drop(
            "UPDATE orders SET status = 'dry', updated_at = '2026-03-01 00:00:00' WHERE id = 1",
        )
        .await?;
        let dry = stack.json(&["sync", "-t", table, "--dry-run"]);
        let plan = &dry["tables"][0];
        assert_eq!(plan["strategy"], "hybrid");
        assert_eq!(plan["target"], format!("{}.orders", stack.pg.schema()));
        assert_eq!(plan["cursor"]["timestamp"], "2026-01-01 00:19:00.000000");
        assert!(plan["ceiling"]["timestamp"].is_string());
        // The next run reads after the cursor: the one updated row, bound as parameters.
        let read = &plan["read"];
        assert!(
            read["sql"].as_str().unwrap().contains("`updated_at`"),
            "{read:#}"
        );
        assert!(
            read["params"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p.as_str().unwrap().starts_with("'2026-01-01 00:19:00")),
            "{read:#}"
        );
        let estimate = read["estimated_rows"].as_u64().unwrap();
        assert!((1..=20).contains(&estimate), "{read:#}");
        assert!(plan["load_sql"].as_str().unwrap().contains("orders"));
        let backup_only = stack.json(&["sync", "-t", table, "--dry-run", "--backup-only"]);
        assert!(backup_only["tables"][0]["load_sql"].is_null());
        let limited = stack.json(&["sync", "-t", table, "--dry-run", "--limit", "1"]);
        assert_eq!(limited["tables"][0]["read"]["estimated_rows"], 1);
        assert_eq!(stack.watermark().await.unwrap(), before);
        assert_eq!(stack.target_orders().await?, target_before);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn usage_errors_exit_2_and_a_failed_table_exits_1() {
    let tables = tables::yaml(&[
        orders_table(),
        Table::new("missing").cursor_column("updated_at"),
    ]);
    with_stack(&tables, async |stack| {
        let table = stack.table.as_str();
        let both = stack.run(&["sync", "-t", table, "--backup-only", "--redshift-only"]);
        assert_eq!(both.status.code(), Some(2), "{}", text(&both.stderr));
        assert!(text(&both.stderr).contains("cannot be used with"));

        for stranger in ["nowhere.orders", "shop.orders"] {
            let unknown = stack.run(&["sync", "-t", stranger]);
            assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
            assert!(text(&unknown.stderr).contains("in no pipeline"));
            let json = stack.run(&["--json", "sync", "-t", stranger]);
            assert_eq!(one_document(&json)["exit_code"], 2);
        }

        let output = stack.run(&["--json", "sync"]);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        let document = one_document(&output);
        assert_eq!(document["status"], "failed", "{document:#}");
        let tables = document["summary"]["tables"].as_array().unwrap();
        let missing = tables
            .iter()
            .find(|t| t["table"].as_str().unwrap().ends_with(".missing"))
            .unwrap();
        assert_eq!(missing["status"], "failed");
        assert!(!missing["error"].is_null());
        let orders = tables.iter().find(|t| t["table"] == table).unwrap();
        assert_eq!(orders["status"], "succeeded", "the other table still syncs");
        assert_eq!(stack.target_orders().await?, stack.source_orders().await?);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn progress_is_a_line_per_stage_off_a_terminal_and_bars_on_one() {
    with_stack(&orders_table().yaml(), async |stack| {
        let table = stack.table.as_str();
        let output = stack.run(&["sync", "-t", table, "--backup-only"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let progress = text(&output.stderr);
        for stage in [
            format!("sync: {table}: run "),
            "begun: hybrid from the start of the table up to ".to_owned(),
            format!("sync: {table}: extracted 20 rows into 1 file(s) (chunk 0 done)"),
            format!("sync: {table}: committed run "),
        ] {
            assert!(progress.contains(&stage), "`{stage}` in {progress}");
        }
        assert!(
            !progress.contains('\u{1b}'),
            "escape codes off a terminal: {progress}"
        );

        // On a terminal (a pseudo-terminal from `script`): bars with the same news, drawn with
        // escape codes; `-q` shows nothing.
        let command = format!(
            "{} --config {} sync -t {table} --redshift-only",
            env!("CARGO_BIN_EXE_tidemark"),
            stack.config.path().display()
        );
        let terminal = std::process::Command::new("script")
            .args(["-q", "-e", "-c", &command, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()?;
        let drawn = text(&terminal.stdout);
        assert!(terminal.status.success(), "{drawn}");
        assert!(
            drawn.contains('\u{1b}'),
            "no escape codes on a terminal: {drawn}"
        );
        assert!(drawn.contains("loaded 20 rows from 1 run(s)"), "{drawn}");
        assert!(!drawn.contains(&format!("sync: {table}:")), "{drawn}");
        assert_eq!(stack.target_orders().await?, stack.source_orders().await?);

        let quiet = stack.run(&["-q", "sync", "-t", table]);
        assert!(quiet.status.success());
        assert!(text(&quiet.stderr).is_empty(), "{}", text(&quiet.stderr));
        Ok(())
    })
    .await;
}

/// `--config s3://bucket/key` reads the configuration from S3, as the Lambda functions do with
/// `TIDEMARK_CONFIG` (DESIGN §7); it used to read only local files.
#[tokio::test]
async fn the_config_can_live_in_s3() {
    with_stack(&orders_table().yaml(), async |stack| {
        let text = std::fs::read(stack.config.path())?;
        stack
            .bucket
            .bucket()
            .put("config/tidemark.yaml", text.into())
            .await?;
        let location = format!("s3://{}/config/tidemark.yaml", stack.bucket.bucket().name());
        let out = crate::support::tidemark(
            std::path::Path::new(&location),
            &["sync", "-t", &stack.table],
            &[],
        );
        assert!(out.status.success(), "{}", text_of(&out));
        assert_eq!(stack.target_orders().await?, stack.source_orders().await?);
        let missing = crate::support::tidemark(
            std::path::Path::new(&format!(
                "s3://{}/config/nope.yaml",
                stack.bucket.bucket().name()
            )),
            &["config", "check"],
            &[],
        );
        assert_eq!(missing.status.code(), Some(2), "{}", text_of(&missing));
        Ok(())
    })
    .await;
}

fn text_of(out: &std::process::Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// The old tool's habit: `-t orders` without its database names the one configured table of that
/// name, for `sync` and the watermark commands alike; when two databases hold an `orders`, the
/// error lists both and nothing runs.
#[tokio::test]
async fn a_bare_table_name_works_when_it_names_one_table() {
    with_stack(&orders_table().yaml(), async |stack| {
        stack.json(&["sync", "-t", "orders"]);
        assert_eq!(stack.target_orders().await?, stack.source_orders().await?);
        let watermark = stack.json(&["watermark", "get", "-t", "orders"]);
        assert_eq!(watermark["watermark"]["table"], stack.table.as_str(), "{watermark:#}");

        let text = std::fs::read_to_string(stack.config.path())?;
        let two = text.replace(
            "    tables:\n",
            "    tables:\n      elsewhere.orders: { cursor_column: updated_at, target_name: orders_elsewhere }\n",
        );
        assert_ne!(two, text, "the config has a `tables:` block");
        let config = tempfile::NamedTempFile::new()?;
        std::fs::write(config.path(), two)?;
        let ambiguous = crate::support::tidemark(config.path(), &["sync", "-t", "orders"], &[]);
        let said = text_of(&ambiguous);
        assert_eq!(ambiguous.status.code(), Some(2), "{said}");
        assert!(
            said.contains(&format!("`elsewhere.orders`, `{}`", stack.table))
                || said.contains(&format!("`{}`, `elsewhere.orders`", stack.table)),
            "{said}"
        );
        Ok(())
    })
    .await;
}

//! The real `tidemark` binary's watermark commands against the local stack: the effect is read
//! back from S3 through the library, and exit codes follow the documented contract.

use std::process::{Command, Output};

use mysql_async::prelude::Queryable;
use tidemark::naming::{StorageLayout, TableId};
use tidemark::watermark::WatermarkStore;
use tidemark_tests::s3::TestBucket;
use tidemark_tests::tables::Table;
use tidemark_tests::TestMysql;

struct Cli {
    config: tempfile::NamedTempFile,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg("--config")
            .arg(self.config.path())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the tidemark binary runs")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document: {e}"))
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn watermark_commands_edit_the_stored_record() {
    TestMysql::run(async |mysql| {
        let mut conn = mysql.conn().await?;
        conn.query_drop(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, updated_at DATETIME(6) NOT NULL)",
        )
        .await?;
        let bucket = TestBucket::fresh().await?;
        let mut config = tempfile::NamedTempFile::new()?;
        std::io::Write::write_all(
            &mut config,
            mysql
                .config_yaml(
                    bucket.bucket().name(),
                    &Table::new("orders").cursor_column("updated_at").yaml(),
                )?
                .as_bytes(),
        )?;
        let cli = Cli { config };
        let table = mysql.table("orders").to_string();
        let store = WatermarkStore::new(bucket.bucket().clone(), StorageLayout::new("tm"), 50);
        let stored = || async {
            store
                .read("p", &TableId::parse(&table).unwrap())
                .await
                .unwrap()
                .map(|v| v.record)
        };

        let never = cli.json(&["watermark", "get", "-t", &table]);
        assert!(never["watermark"].is_null());

        cli.json(&[
            "watermark",
            "set",
            "-t",
            &table,
            "--timestamp",
            "2026-11-01 00:00:00",
            "--id",
            "42",
        ]);
        cli.json(&["watermark", "set", "-t", &table, "--id", "43"]);
        let record = stored().await.unwrap();
        assert_eq!(
            record.extract.cursor.timestamp.as_deref(),
            Some("2026-11-01 00:00:00.000000")
        );
        assert_eq!(record.extract.cursor.key, vec!["43".to_owned()]);

        let refused = cli.run(&["watermark", "reset", "-t", &table]);
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(stderr(&refused).contains("--yes"));
        assert!(
            stored().await.unwrap().extract.cursor.timestamp.is_some(),
            "a refused reset changes nothing"
        );

        cli.json(&["watermark", "reset", "-t", &table, "--yes"]);
        assert!(stored().await.unwrap().extract.cursor.is_start());

        let counted = cli.json(&[
            "watermark-count",
            "set-count",
            "-t",
            &table,
            "--count",
            "12",
            "--mode",
            "absolute",
        ]);
        assert_eq!(counted["watermark"]["totals"]["rows_loaded"], 12);
        cli.json(&[
            "watermark-count",
            "set-count",
            "-t",
            &table,
            "--count",
            "-2",
            "--mode",
            "additive",
        ]);
        assert_eq!(stored().await.unwrap().totals.rows_loaded, 10);

        let listed = cli.json(&["watermark", "list"]);
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let history = cli.json(&["watermark", "history", "-t", &table]);
        let first = history[0]["version"].as_str().unwrap().to_owned();
        cli.json(&[
            "watermark",
            "restore",
            "-t",
            &table,
            "--version",
            &first,
            "--reason",
            "INC-7: undo the reset",
        ]);
        assert_eq!(
            stored().await.unwrap().extract.cursor.timestamp.as_deref(),
            Some("2026-11-01 00:00:00.000000")
        );
        let unlocked = cli.json(&["watermark", "unlock", "-t", &table, "--yes"]);
        assert!(unlocked["message"].as_str().unwrap().contains("no lease"));

        // Every edit is in the audit record under the caller's AWS identity (STS), not `$USER`.
        let audit = cli.json(&["watermark", "audit", "-t", &table]);
        let entries = audit.as_array().unwrap();
        let applied: Vec<&str> = entries
            .iter()
            .filter(|e| e["phase"] == "applied")
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            applied,
            [
                "set",
                "set",
                "reset",
                "set_count",
                "set_count",
                "restore",
                "unlock"
            ]
        );
        for entry in entries {
            let by = entry["requester"]["requested_by"].as_str().unwrap();
            assert!(by.starts_with("arn:aws:"), "{entry}");
            assert_eq!(entry["requester"]["via"], "cli");
        }
        let restored = entries.iter().find(|e| e["action"] == "restore").unwrap();
        assert_eq!(restored["requester"]["reason"], "INC-7: undo the reset");
        let human = cli.run(&["watermark", "get", "-t", &table]);
        assert!(String::from_utf8_lossy(&human.stdout).contains("last edit    unlock by arn:aws:"));

        let human = cli.run(&["watermark", "get", "-t", &table]);
        assert!(String::from_utf8_lossy(&human.stdout)
            .contains("cursor       timestamp 2026-11-01 00:00:00.000000"));

        let bad = cli.run(&["watermark", "set", "-t", &table, "--timestamp", "yesterday"]);
        assert_eq!(bad.status.code(), Some(2));
        assert!(
            stderr(&bad).contains("YYYY-MM-DD HH:MM:SS"),
            "{}",
            stderr(&bad)
        );
        let unknown = cli.run(&["watermark", "get", "-t", "nowhere.orders"]);
        assert_eq!(unknown.status.code(), Some(2));
        assert!(
            stderr(&unknown).contains("in no pipeline"),
            "{}",
            stderr(&unknown)
        );
        let usage = cli.run(&["watermark", "get"]);
        assert_eq!(usage.status.code(), Some(2));

        let unreachable = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg("--config")
            .arg(cli.config.path())
            .args(["watermark", "get", "-t", &table])
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_MAX_ATTEMPTS", "1")
            .output()?;
        assert_eq!(
            unreachable.status.code(),
            Some(3),
            "{}",
            stderr(&unreachable)
        );
        bucket.remove().await?;
        Ok(())
    })
    .await
    .unwrap();
}

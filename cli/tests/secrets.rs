//! Secrets never reach any output: commands run with debug logging against configs holding known
//! passwords (given as `${ENV}`), and every byte of stdout and stderr is searched for them.

use crate::support::{orders_table, text, tidemark, with_stack};

/// Accepted by the local PostgreSQL (trust authentication ignores it), so syncs succeed.
const TARGET_PASSWORD: &str = "tgt-S3cret-4f9a1c";
/// Refused by the local MariaDB: the connection test must fail without showing it.
const WRONG_SOURCE_PASSWORD: &str = "src-Wr0ng-7d2e88";

fn assert_no_secret(what: &str, output: &std::process::Output) {
    for stream in [&output.stdout, &output.stderr] {
        let all = text(stream);
        for secret in [TARGET_PASSWORD, WRONG_SOURCE_PASSWORD] {
            assert!(!all.contains(secret), "{what} printed a secret:\n{all}");
        }
    }
}

#[tokio::test]
async fn no_command_prints_a_secret_even_with_debug_logs() {
    with_stack(&orders_table().yaml(), async |stack| {
        let table = stack.table.as_str();
        let base = std::fs::read_to_string(stack.config.path())?;
        assert!(
            base.contains("password: \"\""),
            "the source password line: {base}"
        );
        let good = base.replacen(
            "    schema: ",
            "    password: \"${TM_TARGET_PASSWORD}\"\n    schema: ",
            1,
        );
        let bad = good.replacen("password: \"\"", "password: \"${TM_SOURCE_PASSWORD}\"", 1);
        let dir = tempfile::tempdir()?;
        let (good_path, bad_path) = (dir.path().join("good.yaml"), dir.path().join("bad.yaml"));
        std::fs::write(&good_path, good)?;
        std::fs::write(&bad_path, bad)?;
        let env = [
            ("TM_TARGET_PASSWORD", TARGET_PASSWORD),
            ("TM_SOURCE_PASSWORD", WRONG_SOURCE_PASSWORD),
        ];

        for args in [
            &["-vv", "config", "show"][..],
            &["--json", "config", "show"],
            &["-vv", "config", "check"],
            &["-vv", "--log-format", "json", "sync", "-t", table],
            &["-vv", "--json", "sync", "-t", table, "--dry-run"],
            &["-vv", "connections", "test"],
            &["-vv", "watermark-count", "validate-counts", "-t", table],
        ] {
            let output = tidemark(&good_path, args, &env);
            assert!(
                output.status.success(),
                "{args:?}: {}",
                text(&output.stderr)
            );
            assert_no_secret(&format!("{args:?}"), &output);
        }
        let shown = tidemark(&good_path, &["config", "show"], &env);
        assert!(
            text(&shown.stdout).contains("********"),
            "the password is shown masked"
        );
        assert_eq!(stack.target_orders().await?, stack.source_orders().await?);

        for args in [
            &["-vv", "connections", "test"][..],
            &["-vv", "--json", "connections", "test", "src"],
            &["-vv", "sync", "-t", table],
            &[
                "-vv",
                "--log-format",
                "json",
                "watermark-count",
                "validate-counts",
                "-t",
                table,
            ],
        ] {
            let output = tidemark(&bad_path, args, &env);
            assert!(
                !output.status.success(),
                "{args:?} succeeded with a wrong password"
            );
            assert_no_secret(&format!("{args:?} (wrong password)"), &output);
        }
        let refused = tidemark(&bad_path, &["connections", "test", "src"], &env);
        assert_eq!(refused.status.code(), Some(3));
        assert!(
            text(&refused.stdout).contains("Access denied"),
            "{}",
            text(&refused.stdout)
        );
        Ok(())
    })
    .await;
}

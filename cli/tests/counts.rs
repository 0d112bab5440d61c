//! `tidemark watermark-count validate-counts` against the local stack: after a real sync every
//! count agrees; a wrong total injected with `set-count` is reported as a mismatch (exit 1) with
//! the exact command that corrects it, and running that command makes the counts agree again.

use crate::support::{one_document, orders_table, text, with_stack};

#[tokio::test]
async fn an_injected_count_mismatch_is_detected_and_fixed_by_the_printed_command() {
    with_stack(&orders_table().yaml(), async |stack| {
        let table = stack.table.as_str();
        let synced = stack.json(&["sync", "-t", table]);
        assert_eq!(synced["status"], "succeeded", "{synced}");

        let report = stack.json(&["watermark-count", "validate-counts", "-t", table]);
        assert_eq!(report["verdict"], "consistent", "{report:#}");
        assert_eq!(report["source_rows"], 20);
        assert_eq!(report["target_counts"]["rows"], 20);
        assert_eq!(report["target_counts"]["ledger"]["rows_inserted"], 20);
        assert_eq!(report["watermark"]["rows_loaded"], 20);

        stack.json(&[
            "watermark-count",
            "set-count",
            "-t",
            table,
            "--count",
            "7",
            "--mode",
            "absolute",
        ]);
        let human = stack.run(&["watermark-count", "validate-counts", "-t", table]);
        assert_eq!(human.status.code(), Some(1), "{}", text(&human.stderr));
        let printed = text(&human.stdout);
        assert!(printed.contains("verdict      mismatch"), "{printed}");
        let expected_fix =
            format!("tidemark watermark-count set-count -t {table} --count 20 --mode absolute");
        assert!(printed.contains(&expected_fix), "{printed}");

        let json = stack.run(&["--json", "watermark-count", "validate-counts", "-t", table]);
        assert_eq!(json.status.code(), Some(1));
        let report = one_document(&json);
        assert_eq!(report["verdict"], "mismatch");
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["outcome"] == "mismatch")
            .unwrap()
            .clone();
        assert_eq!(check["name"], "watermark_loaded_vs_ledger", "{report:#}");
        let fix = check["fix"].as_str().unwrap();
        assert_eq!(fix, expected_fix);

        let args: Vec<&str> = fix.split_whitespace().skip(1).collect();
        let fixed = stack.run(&args);
        assert!(fixed.status.success(), "{}", text(&fixed.stderr));
        assert_eq!(stack.watermark().await.unwrap().totals.rows_loaded, 20);
        let report = stack.json(&["watermark-count", "validate-counts", "-t", table]);
        assert_eq!(report["verdict"], "consistent", "{report:#}");
        Ok(())
    })
    .await;
}

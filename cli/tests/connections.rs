//! `tidemark connections test` against the local stack: every referenced service answers with
//! its version; a source on a port nobody listens on is reported with its address and exit 3.

mod support;

use support::{one_document, text, tidemark, with_stack, ORDERS_TABLE};

/// The stack's config with the source's port (the first `port:` line) replaced.
fn with_source_port(config: &str, port: u16) -> String {
    let mut replaced = false;
    config
        .lines()
        .map(|line| {
            if !replaced && line.trim_start().starts_with("port:") {
                replaced = true;
                format!("    port: {port}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn every_referenced_service_answers_and_an_unreachable_one_exits_3() {
    with_stack(ORDERS_TABLE, async |stack| {
        let report = stack.json(&["connections", "test"]);
        assert_eq!(report["reachable"], true, "{report:#}");
        let checks = report["checks"].as_array().unwrap();
        let find = |kind: &str| {
            checks
                .iter()
                .find(|c| c["kind"] == kind)
                .unwrap_or_else(|| panic!("no {kind} check in {report:#}"))
        };
        assert!(
            find("mysql")["version"]
                .as_str()
                .unwrap()
                .contains("MariaDB")
                || find("mysql")["version"].as_str().unwrap().starts_with('8'),
            "{report:#}"
        );
        assert!(find("postgres")["version"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL"));
        assert_eq!(find("bucket")["ok"], true);
        assert!(find("bucket")["latency_ms"].is_u64());

        let human = stack.run(&["connections", "test", "wh"]);
        assert!(human.status.success(), "{}", text(&human.stderr));
        let lines = text(&human.stdout);
        assert!(lines.starts_with("ok   postgres"), "{lines}");
        assert_eq!(
            lines.lines().count(),
            1,
            "only the named connection: {lines}"
        );

        let unknown = stack.run(&["connections", "test", "nowhere"]);
        assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
        assert!(text(&unknown.stderr).contains("neither a connection nor a bucket"));

        let broken = tempfile::NamedTempFile::new()?;
        std::fs::write(
            broken.path(),
            with_source_port(&std::fs::read_to_string(stack.config.path())?, 9),
        )?;
        let down = tidemark(broken.path(), &["connections", "test"], &[]);
        assert_eq!(down.status.code(), Some(3), "{}", text(&down.stderr));
        let stdout = text(&down.stdout);
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("FAIL mysql") && l.contains(":9")),
            "{stdout}"
        );
        assert!(
            text(&down.stderr).contains("could not reach mysql `src`"),
            "{}",
            text(&down.stderr)
        );
        let json = tidemark(broken.path(), &["--json", "connections", "test"], &[]);
        assert_eq!(json.status.code(), Some(3));
        let document = one_document(&json);
        assert_eq!(document["reachable"], false);
        let mysql = &document["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "mysql")
            .unwrap()
            .clone();
        assert!(
            mysql["error"]
                .as_str()
                .unwrap()
                .contains("connecting to 127.0.0.1:9"),
            "{mysql}"
        );
        Ok(())
    })
    .await;
}

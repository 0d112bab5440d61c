//! `tidemark sync --aws` against Step Functions on the local endpoint (moto): the CLI starts an
//! execution, follows it, and reports every table's outcome — from the output when it succeeds,
//! from the `Summarize` state in the execution history when it fails. These tests pin the CLI's
//! reporting with chosen summaries: the execution runs the real definition's last states with
//! `Summarize` answered by a Pass state holding a summary the library's `summarize_outcomes`
//! produced. The whole deployed path (every state, the real Lambda binaries) runs in
//! `tests/tests/rehearsal.rs`.

use std::io::{Read, Write};

use crate::support::{one_document, orders_table, text, tidemark, with_stack};
use serde_json::{json, Value};
use tidemark::steps::local_sync::DEFINITION;
use tidemark::steps::sync::{summarize_outcomes, TableOutcome};
use tidemark::watermark::LoadedRun;

/// Asks moto to run state machine definitions (it only records executions by default).
fn let_moto_execute_state_machines() -> anyhow::Result<()> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")?;
    let address = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let body = r#"{"stepfunctions": {"execute_state_machine": true}}"#;
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(
        stream,
        "POST /moto-api/config HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    anyhow::ensure!(answer.starts_with("HTTP/1.1 2"), "moto config: {answer}");
    Ok(())
}

/// The deployed definition from `Summarize` on, `Summarize` answering `summary`.
fn tail_of_the_sync_machine(summary: &Value) -> anyhow::Result<String> {
    let definition: Value = serde_json::from_str(DEFINITION)?;
    let states = &definition["States"];
    let summarize_state = &states["Summarize"];
    let choice = summarize_state["Next"].as_str().unwrap_or_default();
    let mut tail = json!({
        "StartAt": "Summarize",
        "States": {
            "Summarize": {"Type": "Pass", "Result": summary, "Next": choice},
            choice: states[choice].clone(),
        }
    });
    for branch in states[choice]["Choices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| &c["Next"])
        .chain([&states[choice]["Default"]])
    {
        let name = branch.as_str().unwrap_or_default();
        tail["States"][name] = states[name].clone();
    }
    Ok(tail.to_string())
}

async fn state_machine(summary: &Value) -> anyhow::Result<String> {
    let_moto_execute_state_machines()?;
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_sfn::Client::new(&shared);
    let created = client
        .create_state_machine()
        .name(format!("tidemark-test-{}", uuid::Uuid::new_v4().simple()))
        .definition(tail_of_the_sync_machine(summary)?)
        .role_arn("arn:aws:iam::123456789012:role/tidemark-test")
        .send()
        .await?;
    Ok(created.state_machine_arn().to_owned())
}

fn outcome(table: &str, failed: bool) -> TableOutcome {
    TableOutcome {
        table: table.to_owned(),
        status: if failed { "failed" } else { "succeeded" }.to_owned(),
        run_id: None,
        rows_extracted: if failed { 0 } else { 20 },
        files: u64::from(!failed),
        bytes: if failed { 0 } else { 1234 },
        loaded: Vec::<LoadedRun>::new(),
        error: failed.then(|| {
            json!({"Error": "SchemaDrift", "Cause": "{\"errorType\":\"SchemaDrift\",\"errorMessage\":\"column `status` changed type\"}"})
        }),
        verify: None,
        verify_error: None,
    }
}

fn summary_of(outcomes: Vec<TableOutcome>) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(summarize_outcomes("p", outcomes))?)
}

#[tokio::test]
async fn a_failed_execution_reports_each_table_and_exits_1() {
    with_stack(&orders_table().yaml(), async |stack| {
        let table = stack.table.as_str();
        let arn = state_machine(&summary_of(vec![
            outcome(table, true),
            outcome("other.table", false),
        ])?)
        .await?;
        let env = [("TIDEMARK_STATE_MACHINE_ARN", arn.as_str())];

        let output = tidemark(
            stack.config.path(),
            &["--json", "sync", "--aws", "-t", table],
            &env,
        );
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        let document = one_document(&output);
        assert_eq!(document["status"], "failed");
        assert_eq!(document["summary"]["error"], "TablesFailed");
        assert!(document["execution"]
            .as_str()
            .is_some_and(|arn| arn.starts_with("arn:aws:states:")));
        let tables = document["summary"]["tables"].as_array().unwrap();
        assert_eq!(tables.len(), 2, "{document:#}");
        assert_eq!(tables[0]["table"], table);
        assert_eq!(tables[0]["status"], "failed");
        assert_eq!(tables[0]["error"]["Error"], "SchemaDrift");
        assert_eq!(tables[1]["status"], "succeeded");
        assert_eq!(tables[1]["rows_extracted"], 20);

        let human = tidemark(stack.config.path(), &["sync", "--aws", "-t", table], &env);
        assert_eq!(human.status.code(), Some(1));
        let printed = text(&human.stdout);
        assert!(
            printed.contains(&format!("{table:<40} failed")),
            "{printed}"
        );
        assert!(
            printed.contains("column `status` changed type"),
            "{printed}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_succeeded_execution_reports_its_tables_and_exits_0() {
    with_stack(&orders_table().yaml(), async |stack| {
        let table = stack.table.as_str();
        let arn = state_machine(&summary_of(vec![outcome(table, false)])?).await?;
        let output = tidemark(
            stack.config.path(),
            &["--json", "sync", "--aws", "-t", table],
            &[("TIDEMARK_STATE_MACHINE_ARN", arn.as_str())],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let document = one_document(&output);
        assert_eq!(document["status"], "succeeded");
        assert_eq!(document["summary"]["tables"][0]["table"], table);
        assert_eq!(document["summary"]["tables"][0]["rows_extracted"], 20);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn without_a_state_machine_arn_aws_is_a_usage_error() {
    with_stack(&orders_table().yaml(), async |stack| {
        let output = tidemark(
            stack.config.path(),
            &["sync", "--aws", "-t", stack.table.as_str()],
            &[("TIDEMARK_STATE_MACHINE_ARN", "")],
        );
        assert_eq!(output.status.code(), Some(2));
        assert!(text(&output.stderr).contains("TIDEMARK_STATE_MACHINE_ARN"));
        Ok(())
    })
    .await;
}

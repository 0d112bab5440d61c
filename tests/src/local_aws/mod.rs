//! A local deployment of infra/template.yaml, to rehearse what AWS will run: the state machine of
//! `statemachine/sync.asl.json` (with the template's `DefinitionSubstitutions`) in moto's Step
//! Functions engine, an independent implementation of the States Language, whose Lambda tasks
//! reach the real function binaries through [`lambda::LambdaService`]. S3 and Secrets Manager are
//! the local stack's endpoint (`AWS_ENDPOINT_URL`), as for every other test.
//!
//! Each deployment owns a moto process for Step Functions alone: moto's engine calls Lambda on
//! `localhost:$MOTO_PORT` (moto/stepfunctions/parser/asl/utils/boto_client.py), which is set to
//! this deployment's Lambda service, so deployments run side by side.

pub mod lambda;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use lambda::LambdaService;
use template::{Template, ACCOUNT, REGION};

/// The state machine's logical id in the template.
const STATE_MACHINE: &str = "SyncStateMachine";
/// How long moto may take to start.
const MOTO_START: Duration = Duration::from_secs(30);

/// What to deploy: template parameters over their defaults (`ConfigUri` at least), variables
/// added to every function's environment (the local endpoints), and instances per function.
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    pub parameters: BTreeMap<String, String>,
    pub function_environment: BTreeMap<String, String>,
    pub instances: usize,
}

/// One function invocation's result, as the Invoke API returned it.
#[derive(Debug)]
pub struct Invoked {
    pub payload: Value,
    /// `X-Amz-Function-Error` (`Unhandled`) when the function failed.
    pub function_error: Option<String>,
}

/// A running local deployment; its processes stop when it is dropped.
pub struct LocalAws {
    template: Template,
    /// Function names by logical id.
    function_names: BTreeMap<String, String>,
    lambda: LambdaService,
    moto: tokio::process::Child,
    sfn_url: String,
    state_machine_arn: String,
    sfn: aws_sdk_sfn::Client,
    logs: tempfile::TempDir,
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        let _ = self.moto.start_kill();
    }
}

/// The workspace root (the checkout).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Where cargo put this build's binaries: the directory of the running executable (`deps/`'s
/// parent for a test).
pub fn binaries_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the executable has a directory")?;
    Ok(match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    })
}

impl LocalAws {
    /// Deploys: the functions' processes (with `TIDEMARK_CONFIG` = `ConfigUri`, which must
    /// already hold the configuration), moto's Step Functions engine, and the state machine.
    pub async fn deploy(deployment: Deployment) -> anyhow::Result<Self> {
        let root = workspace_root();
        let template = Template::load(&root, &deployment.parameters)?;
        let logs = tempfile::Builder::new()
            .prefix("tidemark-local-aws-")
            .tempdir()?;
        let mut base_environment: BTreeMap<String, String> = [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_EC2_METADATA_DISABLED",
            "PATH",
        ]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), std::env::var(name).ok()?)))
        .collect();
        // What Lambda itself sets for every function (reserved variables, "Defined runtime
        // environment variables" in the Lambda developer guide).
        for (name, value) in [
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("TZ", ":UTC"),
            ("LANG", "en_US.UTF-8"),
        ] {
            base_environment.insert(name.to_owned(), value.to_owned());
        }
        base_environment.extend(deployment.function_environment);
        let functions = template.functions()?;
        let function_names = functions
            .iter()
            .map(|f| (f.logical_id.clone(), f.name.clone()))
            .collect();
        let lambda = LambdaService::start(
            functions,
            deployment.instances.max(1),
            &binaries_dir()?,
            logs.path(),
            base_environment,
        )
        .await?;
        let lambda_port = lambda
            .address()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let (moto, sfn_url) = start_moto(&lambda_port, logs.path()).await?;
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sfn = aws_sdk_sfn::Client::from_conf(
            aws_sdk_sfn::config::Builder::from(&shared)
                .endpoint_url(&sfn_url)
                .build(),
        );
        let (name, definition) = template.state_machine(STATE_MACHINE)?;
        let created = sfn
            .create_state_machine()
            .name(&name)
            .definition(definition)
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{name}-role"))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_sfn::error::DisplayErrorContext(e).to_string()))
            .context("creating the state machine in moto")?;
        Ok(LocalAws {
            template,
            function_names,
            lambda,
            moto,
            sfn_url,
            state_machine_arn: created.state_machine_arn().to_owned(),
            sfn,
            logs,
        })
    }

    pub fn template(&self) -> &Template {
        &self.template
    }

    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    pub fn sfn(&self) -> &aws_sdk_sfn::Client {
        &self.sfn
    }

    /// `127.0.0.1:<port>`: the Lambda Invoke endpoint.
    pub fn lambda_address(&self) -> &str {
        self.lambda.address()
    }

    /// What `tidemark sync --aws` needs to reach this deployment.
    pub fn cli_environment(&self) -> Vec<(String, String)> {
        vec![
            (
                "TIDEMARK_STATE_MACHINE_ARN".to_owned(),
                self.state_machine_arn.clone(),
            ),
            ("AWS_ENDPOINT_URL_SFN".to_owned(), self.sfn_url.clone()),
            (
                "AWS_ENDPOINT_URL_LAMBDA".to_owned(),
                format!("http://{}", self.lambda_address()),
            ),
        ]
    }

    /// Invocations so far, by function name.
    pub fn invocations(&self) -> BTreeMap<String, u64> {
        self.lambda.invocations()
    }

    /// Lambda GB-seconds so far (debug binaries on this machine), by function name.
    pub fn gigabyte_seconds(&self) -> BTreeMap<String, f64> {
        self.lambda.gigabyte_seconds()
    }

    /// Where the functions' and moto's output goes (`<function>.log`).
    pub fn logs_dir(&self) -> &Path {
        self.logs.path()
    }

    /// Every function's output so far (JSON log lines), for a failing test's message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        let mut files: Vec<_> = std::fs::read_dir(self.logs.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        files.sort();
        for file in files {
            let content = std::fs::read_to_string(&file).unwrap_or_default();
            text.push_str(&format!("==> {}\n{content}\n", file.display()));
        }
        text
    }

    /// Invokes the function of logical id `function` (e.g. `OperatorFunction`) through the Invoke
    /// API, synchronously, with `payload`, as the console or `aws lambda invoke` would.
    pub async fn invoke(&self, function: &str, payload: &Value) -> anyhow::Result<Invoked> {
        let name = self
            .function_names
            .get(function)
            .with_context(|| format!("the template has no function `{function}`"))?;
        let (status, headers, body) = http(
            self.lambda.address(),
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            &payload.to_string(),
        )
        .await?;
        if status != 200 {
            bail!(
                "Invoke {name}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(Invoked {
            payload: serde_json::from_slice(&body).unwrap_or(Value::Null),
            function_error: headers
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("X-Amz-Function-Error"))
                .map(|(_, v)| v),
        })
    }

    /// Starts an execution named `name` with `input` and waits for it to end (at most `limit`);
    /// returns its description.
    pub async fn execute(
        &self,
        name: &str,
        input: &str,
        limit: Duration,
    ) -> anyhow::Result<aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput> {
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_sfn::error::DisplayErrorContext(e).to_string()))?;
        self.wait(started.execution_arn(), limit).await
    }

    /// Waits for execution `arn` to end (at most `limit`) and returns its description.
    pub async fn wait(
        &self,
        arn: &str,
        limit: Duration,
    ) -> anyhow::Result<aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput> {
        let began = Instant::now();
        loop {
            let described = self
                .sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(aws_sdk_sfn::error::DisplayErrorContext(e).to_string())
                })?;
            if described.status() != &aws_sdk_sfn::types::ExecutionStatus::Running {
                return Ok(described);
            }
            if began.elapsed() > limit {
                bail!(
                    "execution {arn} still running after {limit:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every event of execution `arn`'s history, in order.
    pub async fn history(
        &self,
        arn: &str,
    ) -> anyhow::Result<Vec<aws_sdk_sfn::types::HistoryEvent>> {
        let mut events = Vec::new();
        let mut pages = self
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                anyhow::anyhow!(aws_sdk_sfn::error::DisplayErrorContext(e).to_string())
            })?;
            events.extend(page.events().iter().cloned());
        }
        Ok(events)
    }
}

/// Starts `python3 -m moto.server` on a free port with `MOTO_PORT` = `lambda_port`, waits until
/// it answers, and lets it execute state machines. Returns the process and its URL.
async fn start_moto(
    lambda_port: &str,
    logs: &Path,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(logs.join("moto-stepfunctions.log"))?;
    let mut moto = tokio::process::Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_PORT", lambda_port)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting moto (python3 -m moto.server; `scripts/stack up` installs it, and `eval \"$(scripts/stack env)\"` puts it on PATH)")?;
    let began = Instant::now();
    while !matches!(
        http(&address, "GET", "/moto-api/", "").await,
        Ok((200, _, _))
    ) {
        if let Some(status) = moto.try_wait()? {
            bail!(
                "moto exited ({status}): {}",
                std::fs::read_to_string(logs.join("moto-stepfunctions.log")).unwrap_or_default()
            );
        }
        if began.elapsed() > MOTO_START {
            bail!("moto did not answer on {address} within {MOTO_START:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, body) = http(
        &address,
        "POST",
        "/moto-api/config",
        r#"{"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker": false}}"#,
    )
    .await?;
    if status != 200 && status != 201 {
        bail!(
            "moto config: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok((moto, format!("http://{address}")))
}

/// One HTTP/1.1 request with `Connection: close`: status, headers and body. Asynchronous, since
/// the server may be this very process (the Lambda service).
pub async fn http(
    address: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("an HTTP answer without a header end")?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .context("an HTTP answer without a status")?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = answer[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunked(&body);
    }
    Ok((status, headers, body))
}

fn dechunked(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

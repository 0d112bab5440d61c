//! A local AWS Lambda for the template's functions: the Invoke API that Step Functions and people
//! call, and the Runtime API that the real function binaries poll, each instance a process with
//! the environment the template gives it.
//!
//! What it follows, from the Lambda developer guide and API reference:
//! - Invoke (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html):
//!   `POST /2015-03-31/functions/<name or ARN>/invocations`. A function error is still HTTP 200,
//!   with `X-Amz-Function-Error: Unhandled` and the error document as the payload; that is what
//!   Step Functions matches `ErrorEquals` against. `X-Amz-Invocation-Type: Event` answers 202 and
//!   runs later, `DryRun` answers 204. A request payload over 6 MB is
//!   `RequestTooLargeException` (413); an unknown function is `ResourceNotFoundException` (404).
//! - Runtime API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): `GET
//!   …/runtime/invocation/next` hands an instance one event with `Lambda-Runtime-Deadline-Ms`, the
//!   deadline in milliseconds since the epoch (now + the function's `Timeout`); `…/response`,
//!   `…/error` and `…/runtime/init/error` answer 202.
//! - An invocation still running at its `Timeout` ends in the error `Sandbox.Timedout`, and the
//!   instance's process is killed and replaced, as Lambda discards a timed-out environment.
//!
//! cargo lambda watch was tried first and is not used: its runtime emulator sends
//! `Lambda-Runtime-Deadline-Ms: 600000` (a duration, not an epoch time: cargo-lambda-watch
//! src/runtime/functions_router.rs), so every invocation starts past its deadline, and it answers
//! a function error with HTTP 500 instead of Invoke's 200 + `X-Amz-Function-Error`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::{oneshot, Notify};

use super::template::DeployedFunction;

/// Invoke's synchronous payload limit, request and response: 6 MB
/// (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
const PAYLOAD_LIMIT_BYTES: usize = 6 * 1024 * 1024;

/// How a function answered one invocation.
enum Answer {
    Response(Bytes),
    /// The error document (`{"errorType": …, "errorMessage": …}`).
    Error(Bytes),
}

struct Queued {
    request_id: String,
    payload: Bytes,
    reply: oneshot::Sender<Answer>,
}

struct Running {
    instance: usize,
    reply: oneshot::Sender<Answer>,
    since: std::time::Instant,
}

/// One function: its deployment, the invocations waiting for an instance, those running, and
/// its instances' processes.
struct Function {
    deployed: DeployedFunction,
    queue: Mutex<VecDeque<Queued>>,
    queued: Notify,
    running: Mutex<HashMap<String, Running>>,
    /// Per instance: notified to kill its process (a timed-out invocation), which then restarts.
    kill_switches: Vec<Notify>,
    init_error: Mutex<Option<Bytes>>,
    invocations: Mutex<u64>,
    /// Time instances spent on invocations (from handing one over to its answer): what Lambda
    /// bills, with the memory setting, as GB-seconds.
    busy: Mutex<Duration>,
}

struct Shared {
    /// The Invoke API's `host:port`.
    address: String,
    binaries: PathBuf,
    logs: PathBuf,
    base_environment: BTreeMap<String, String>,
    functions: HashMap<String, Arc<Function>>,
}

/// The running service; its processes and server stop when it is dropped.
pub struct LambdaService {
    shared: Arc<Shared>,
    /// The Invoke server, each instance's Runtime API server and its process keeper.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for LambdaService {
    fn drop(&mut self) {
        // A keeper's process is `kill_on_drop`: aborting the keeper stops it.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl LambdaService {
    /// Serves on 127.0.0.1 (a free port) and starts `instances` processes of each function:
    /// `binaries/<binary>` with `base_environment`, the function's template environment and the
    /// variables Lambda sets (`AWS_LAMBDA_FUNCTION_NAME`, `…_MEMORY_SIZE`, `…_VERSION`,
    /// `AWS_LAMBDA_RUNTIME_API`). Their output goes to `logs/<function>.log`.
    pub async fn start(
        functions: Vec<DeployedFunction>,
        instances: usize,
        binaries: &Path,
        logs: &Path,
        base_environment: BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        for function in &functions {
            let binary = binaries.join(&function.binary);
            anyhow::ensure!(
                binary.is_file(),
                "{} is missing: build the function binaries first (cargo build --workspace --bins)",
                binary.display()
            );
        }
        let shared = Arc::new(Shared {
            address,
            binaries: binaries.to_path_buf(),
            logs: logs.to_path_buf(),
            base_environment,
            functions: functions
                .into_iter()
                .map(|deployed| {
                    (
                        deployed.name.clone(),
                        Arc::new(Function {
                            deployed,
                            queue: Mutex::new(VecDeque::new()),
                            queued: Notify::new(),
                            running: Mutex::new(HashMap::new()),
                            kill_switches: (0..instances).map(|_| Notify::new()).collect(),
                            init_error: Mutex::new(None),
                            invocations: Mutex::new(0),
                            busy: Mutex::new(Duration::ZERO),
                        }),
                    )
                })
                .collect(),
        });
        let mut tasks = vec![serve_on(listener, shared.clone(), None)];
        for function in shared.functions.values() {
            for instance in 0..instances {
                // Each instance has its own Runtime API address, as each Lambda environment has.
                let runtime = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let runtime_address = runtime.local_addr()?.to_string();
                tasks.push(serve_on(
                    runtime,
                    shared.clone(),
                    Some((function.clone(), instance)),
                ));
                tasks.push(tokio::spawn(keep_instance(
                    shared.clone(),
                    function.clone(),
                    instance,
                    runtime_address,
                )));
            }
        }
        Ok(LambdaService { shared, tasks })
    }

    /// `127.0.0.1:<port>`: the Invoke API's endpoint.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// GB-seconds so far (time on invocations × the memory setting), by function name.
    pub fn gigabyte_seconds(&self) -> BTreeMap<String, f64> {
        self.shared
            .functions
            .iter()
            .map(|(name, function)| {
                let seconds = lock(&function.busy).as_secs_f64();
                (
                    name.clone(),
                    seconds * function.deployed.memory_mb as f64 / 1024.0,
                )
            })
            .collect()
    }

    /// Invocations so far, by function name.
    pub fn invocations(&self) -> BTreeMap<String, u64> {
        self.shared
            .functions
            .iter()
            .map(|(name, function)| (name.clone(), *lock(&function.invocations)))
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The instance an address serves the Runtime API for (`None`: the Invoke API).
type RuntimeOf = Option<(Arc<Function>, usize)>;

/// Serves HTTP/1.1 on `listener` until aborted.
fn serve_on(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    runtime_of: RuntimeOf,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (shared, runtime_of) = (shared.clone(), runtime_of.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let (shared, runtime_of) = (shared.clone(), runtime_of.clone());
                    async move { Ok::<_, Infallible>(serve(&shared, runtime_of, request).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Keeps instance `instance` of `function` running: starts its process, restarts it when its
/// kill switch fires (a timeout) or it exits after serving, and fails the invocation it held
/// with `Runtime.ExitError` when it dies. A process that dies before taking any invocation is
/// an init failure: every invocation of the function fails with it from then on.
async fn keep_instance(
    shared: Arc<Shared>,
    function: Arc<Function>,
    instance: usize,
    runtime_address: String,
) {
    loop {
        let mut child = match start_process(&shared, &function, &runtime_address) {
            Ok(child) => child,
            Err(e) => {
                record_init_error(
                    &function,
                    error_json("Runtime.InvalidEntrypoint", &format!("{e:#}")),
                );
                return;
            }
        };
        let served_before = *lock(&function.invocations);
        tokio::select! {
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let message = format!("Runtime exited with error: {status}");
                let held = lock(&function.running)
                    .iter()
                    .find(|(_, running)| running.instance == instance)
                    .map(|(id, _)| id.clone());
                match held {
                    Some(request_id) => {
                        if let Some(running) = lock(&function.running).remove(&request_id) {
                            let _ = running.reply.send(Answer::Error(error_json("Runtime.ExitError", &format!("RequestId: {request_id} Error: {message}"))));
                        }
                    }
                    None if *lock(&function.invocations) == served_before => {
                        record_init_error(&function, error_json("Runtime.ExitError", &message));
                        return;
                    }
                    None => {}
                }
            }
            () = function.kill_switches[instance].notified() => {
                let _ = child.kill().await;
            }
        }
    }
}

/// Makes `document` the function's init error and fails the invocations waiting for it.
fn record_init_error(function: &Function, document: Bytes) {
    *lock(&function.init_error) = Some(document.clone());
    for queued in lock(&function.queue).drain(..) {
        let _ = queued.reply.send(Answer::Error(document.clone()));
    }
}

fn error_json(kind: &str, message: &str) -> Bytes {
    Bytes::from(json!({"errorType": kind, "errorMessage": message}).to_string())
}

/// Starts one process of `function` polling the Runtime API at `runtime_address`.
fn start_process(
    shared: &Shared,
    function: &Function,
    runtime_address: &str,
) -> anyhow::Result<tokio::process::Child> {
    let deployed = &function.deployed;
    let log_path = shared.logs.join(format!("{}.log", deployed.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| log_path.display().to_string())?;
    tokio::process::Command::new(shared.binaries.join(&deployed.binary))
        .env_clear()
        .envs(&shared.base_environment)
        .envs(&deployed.environment)
        .env("AWS_LAMBDA_FUNCTION_NAME", &deployed.name)
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            deployed.memory_mb.to_string(),
        )
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_RUNTIME_API", runtime_address)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", deployed.binary))
}

fn respond(status: StatusCode, headers: &[(&str, &str)], body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A Lambda service error as the API reports one: the type in `x-amzn-ErrorType` and the body.
fn service_error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"Type": "User", "message": message}).to_string();
    respond(
        status,
        &[
            ("x-amzn-ErrorType", kind),
            ("Content-Type", "application/json"),
        ],
        Bytes::from(body),
    )
}

async fn serve(
    shared: &Arc<Shared>,
    runtime_of: RuntimeOf,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let invocation_type =
        header("X-Amz-Invocation-Type").unwrap_or_else(|| "RequestResponse".to_owned());
    let error_type = header("Lambda-Runtime-Function-Error-Type");
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return service_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                &e.to_string(),
            )
        }
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (runtime_of, method, segments.as_slice()) {
        (None, Method::POST, ["2015-03-31", "functions", name, "invocations"]) => {
            invoke(shared, &percent_decoded(name), &invocation_type, body).await
        }
        (
            Some((function, instance)),
            Method::GET,
            ["2018-06-01", "runtime", "invocation", "next"],
        ) => next_event(&function, instance).await,
        (
            Some((function, _)),
            Method::POST,
            ["2018-06-01", "runtime", "invocation", request_id, outcome],
        ) => {
            let answer = match *outcome {
                "response" => Answer::Response(body),
                _ => Answer::Error(error_document(body, error_type.as_deref())),
            };
            finish(&function, request_id, answer)
        }
        (Some((function, _)), Method::POST, ["2018-06-01", "runtime", "init", "error"]) => {
            record_init_error(&function, error_document(body, error_type.as_deref()));
            respond(StatusCode::ACCEPTED, &[], Bytes::from_static(b"{}"))
        }
        (_, method, _) => service_error(
            StatusCode::NOT_IMPLEMENTED,
            "UnsupportedOperation",
            &format!(
                "the local Lambda serves Invoke and the Runtime API only, not {method} {path}"
            ),
        ),
    }
}

/// The error a function reported; a body that is not an error document becomes one, typed by
/// the `Lambda-Runtime-Function-Error-Type` header as Lambda does.
fn error_document(body: Bytes, error_type: Option<&str>) -> Bytes {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    match parsed {
        Some(document) if document.get("errorType").is_some() => body,
        _ => Bytes::from(
            json!({
                "errorType": error_type.unwrap_or("Runtime.Unknown"),
                "errorMessage": String::from_utf8_lossy(&body),
            })
            .to_string(),
        ),
    }
}

/// The function a name or ARN (with or without a qualifier) names.
fn resolve<'a>(shared: &'a Shared, name_or_arn: &str) -> Option<&'a Arc<Function>> {
    let name = match name_or_arn.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => name_or_arn.split(':').next().unwrap_or(name_or_arn),
    };
    shared.functions.get(name)
}

async fn invoke(
    shared: &Arc<Shared>,
    name_or_arn: &str,
    invocation_type: &str,
    payload: Bytes,
) -> Response<Full<Bytes>> {
    let Some(function) = resolve(shared, name_or_arn) else {
        return service_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name_or_arn}"),
        );
    };
    if payload.len() > PAYLOAD_LIMIT_BYTES {
        return service_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!("Request must be smaller than {PAYLOAD_LIMIT_BYTES} bytes for the InvokeFunction operation"),
        );
    }
    if invocation_type == "DryRun" {
        return respond(StatusCode::NO_CONTENT, &[], Bytes::new());
    }
    *lock(&function.invocations) += 1;
    let (reply, answer) = oneshot::channel();
    let init_error = lock(&function.init_error).clone();
    if let Some(document) = init_error {
        return invocation_result(Answer::Error(document));
    }
    lock(&function.queue).push_back(Queued {
        request_id: uuid::Uuid::new_v4().to_string(),
        payload,
        reply,
    });
    function.queued.notify_one();
    if invocation_type == "Event" {
        return respond(StatusCode::ACCEPTED, &[], Bytes::new());
    }
    match answer.await {
        Ok(answer) => invocation_result(answer),
        Err(_) => service_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "the function's instance went away without an answer",
        ),
    }
}

fn invocation_result(answer: Answer) -> Response<Full<Bytes>> {
    let version = ("X-Amz-Executed-Version", "$LATEST");
    match answer {
        Answer::Response(body) if body.len() > PAYLOAD_LIMIT_BYTES => {
            let document = json!({
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": format!("Response payload size ({} bytes) exceeded maximum allowed payload size ({PAYLOAD_LIMIT_BYTES} bytes).", body.len()),
            });
            respond(
                StatusCode::OK,
                &[version, ("X-Amz-Function-Error", "Unhandled")],
                Bytes::from(document.to_string()),
            )
        }
        Answer::Response(body) => respond(StatusCode::OK, &[version], body),
        Answer::Error(body) => respond(
            StatusCode::OK,
            &[version, ("X-Amz-Function-Error", "Unhandled")],
            body,
        ),
    }
}

/// An instance asks for its next event: waits until one is queued, then hands it over with its
/// deadline, and arms the function's timeout.
async fn next_event(function: &Arc<Function>, instance: usize) -> Response<Full<Bytes>> {
    let queued = loop {
        let notified = function.queued.notified();
        if let Some(queued) = lock(&function.queue).pop_front() {
            break queued;
        }
        notified.await;
    };
    let timeout = Duration::from_secs(function.deployed.timeout_seconds);
    let deadline_ms = (SystemTime::now() + timeout)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    let Queued {
        request_id,
        payload,
        reply,
    } = queued;
    lock(&function.running).insert(
        request_id.clone(),
        Running {
            instance,
            reply,
            since: std::time::Instant::now(),
        },
    );
    let watched = (function.clone(), request_id.clone());
    tokio::spawn(async move {
        let (function, request_id) = watched;
        tokio::time::sleep(timeout).await;
        let Some(running) = lock(&function.running).remove(&request_id) else {
            return;
        };
        let message = format!(
            "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
            timeout.as_secs_f64()
        );
        let _ = running
            .reply
            .send(Answer::Error(error_json("Sandbox.Timedout", &message)));
        function.kill_switches[running.instance].notify_one();
    });
    respond(
        StatusCode::OK,
        &[
            ("Lambda-Runtime-Aws-Request-Id", &request_id),
            ("Lambda-Runtime-Deadline-Ms", &deadline_ms),
            (
                "Lambda-Runtime-Invoked-Function-Arn",
                &function.deployed.arn,
            ),
            (
                "Lambda-Runtime-Trace-Id",
                "Root=1-00000000-000000000000000000000000;Sampled=0",
            ),
            ("Content-Type", "application/json"),
        ],
        payload,
    )
}

fn finish(function: &Function, request_id: &str, answer: Answer) -> Response<Full<Bytes>> {
    let running = lock(&function.running).remove(request_id);
    match running {
        Some(Running { reply, since, .. }) => {
            *lock(&function.busy) += since.elapsed();
            let _ = reply.send(answer);
            respond(
                StatusCode::ACCEPTED,
                &[],
                Bytes::from_static(b"{\"status\":\"OK\"}"),
            )
        }
        None => service_error(
            StatusCode::BAD_REQUEST,
            "InvalidStateTransition",
            &format!(
                "no running invocation {request_id} of {}",
                function.deployed.name
            ),
        ),
    }
}

/// `%XX` escapes decoded (a function ARN in the Invoke path).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

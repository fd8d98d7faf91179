//! [`FakeBatchService`]: a fake of OpenAI's Batch and Files APIs on loopback, for the tests of
//! `enrich batch`: `POST /v1/files` (multipart, `purpose=batch`), `POST /v1/batches`,
//! `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`, `GET /v1/files/{id}/content`.
//!
//! Each batch goes through the state machine one step per `GET` (so a test drives time by
//! polling, never by sleeping): `validating` → `in_progress` (for as many polls as the
//! [`BatchScript`] says: a slow batch) → `finalizing` → `completed`, or `failed` (an input file
//! with a bad line, or a script that fails it), or `expired` (only the first requests
//! answered, the rest in the error file as `batch_expired`); a cancel makes it `cancelling`,
//! then `cancelled` with the rest as `batch_cancelled`. Answers are the testkit's
//! deterministic enrichment for the lines each prompt cites, in reverse order (lines come in
//! any order), with partial failures (a 500 in the error file) and answers the quality gate
//! rejects where the script says.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::answer::{cited_lines, enrichment_json, fingerprint, nonsense_json};
use crate::error::TestkitError;

/// How the fake runs every batch it is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchScript {
    /// Polls answered `validating`.
    pub validating_polls: u32,
    /// Polls answered `in_progress` before the batch finalizes.
    pub in_progress_polls: u32,
    /// Polls answered 429 with a `Retry-After` before any other answer.
    pub busy_polls: u32,
    /// How the batch ends.
    pub end: BatchEnd,
    /// Requests (0-based, in input order) the service fails with a 500 (error file).
    pub failing: Vec<usize>,
    /// Requests answered with valid enrichment.v1 that says nothing (the quality gate rejects
    /// it).
    pub nonsense: Vec<usize>,
    /// Requests answered before a cancel took effect.
    pub answered_before_cancel: usize,
}

/// How a batch ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BatchEnd {
    /// Every request runs.
    #[default]
    Complete,
    /// The batch fails during validation; no request runs.
    Fail,
    /// The window ends with only the first `answered` requests run.
    Expire {
        /// Requests answered before the window ended.
        answered: usize,
    },
}

/// One batch's state at the fake.
#[derive(Debug, Clone)]
struct Batch {
    id: String,
    input_file_id: String,
    status: &'static str,
    polls: u32,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    total: usize,
    completed: usize,
    failed: usize,
    errors: Vec<Value>,
    cancel_asked: bool,
    metadata: Value,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<String, Vec<u8>>,
    batches: BTreeMap<String, Batch>,
    next_id: u64,
    busy_left: u32,
    requests: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    script: BatchScript,
    authorization: Option<String>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not make the server unusable for the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The fake Batch and Files APIs on `127.0.0.1`; stops when dropped.
#[derive(Debug)]
pub struct FakeBatchService {
    url: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for FakeBatchService {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeBatchService {
    /// Starts the service on a free port of `127.0.0.1`, on the current tokio runtime, running
    /// every batch by `script`; with `api_key`, every request must carry it as a bearer token.
    ///
    /// # Errors
    ///
    /// [`TestkitError::Bind`] when no port can be listened on.
    pub async fn start(script: BatchScript, api_key: Option<&str>) -> Result<Self, TestkitError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TestkitError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| TestkitError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                busy_left: script.busy_polls,
                ..State::default()
            }),
            script,
            authorization: api_key.map(|key| format!("Bearer {key}")),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            url: format!("http://{addr}"),
            shared,
            accept,
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`; the API is under `/v1`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every file uploaded with purpose `batch`, in upload order.
    pub fn uploads(&self) -> Vec<Vec<u8>> {
        let state = self.shared.state();
        state
            .batches
            .values()
            .filter_map(|b| state.files.get(&b.input_file_id).cloned())
            .collect()
    }

    /// Every batch as `GET /v1/batches/{id}` last described it.
    pub fn batches(&self) -> Vec<Value> {
        self.shared.state().batches.values().map(describe).collect()
    }

    /// Every request received, as `METHOD /path`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.state().requests.clone()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let shared = Arc::clone(&shared);
                            async move { Ok::<_, Infallible>(handle(&shared, request).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

fn json_reply(status: StatusCode, value: &Value) -> Reply {
    let mut response = reply(status, value.to_string());
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error_reply(status: StatusCode, message: &str) -> Reply {
    json_reply(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error", "code": null}}),
    )
}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    shared.state().requests.push(format!("{method} {path}"));
    if let Some(expected) = &shared.authorization {
        let sent = request.headers().get(hyper::header::AUTHORIZATION);
        if sent.is_none_or(|sent| sent.as_bytes() != expected.as_bytes()) {
            return error_reply(StatusCode::UNAUTHORIZED, "Incorrect API key provided");
        }
    }
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        return error_reply(StatusCode::BAD_REQUEST, "the body could not be read");
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::POST, ["v1", "files"]) => upload(shared, &content_type, &body),
        (&Method::POST, ["v1", "batches"]) => create(shared, &body),
        (&Method::GET, ["v1", "batches", id]) => poll(shared, id),
        (&Method::POST, ["v1", "batches", id, "cancel"]) => cancel(shared, id),
        (&Method::GET, ["v1", "files", id, "content"]) => match shared.state().files.get(*id) {
            Some(bytes) => reply(StatusCode::OK, bytes.clone()),
            None => error_reply(StatusCode::NOT_FOUND, "No such File object"),
        },
        _ => error_reply(StatusCode::NOT_FOUND, "Invalid URL"),
    }
}

/// The parts of a `multipart/form-data` body: (name, content).
fn multipart(content_type: &str, body: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let start = find(rest, delimiter.as_bytes())?;
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let content_start = head_end + 4;
        let end = find(
            &rest[content_start..],
            format!("\r\n{delimiter}").as_bytes(),
        )?;
        let name = head
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| {
                n.split(['\r', '\n'])
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned()
            })?;
        parts.push((name, rest[content_start..content_start + end].to_vec()));
        rest = &rest[content_start + end + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn upload(shared: &Shared, content_type: &str, body: &[u8]) -> Reply {
    let Some(parts) = multipart(content_type, body) else {
        return error_reply(StatusCode::BAD_REQUEST, "expected multipart/form-data");
    };
    let field = |name: &str| parts.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if field("purpose").map(Vec::as_slice) != Some(b"batch".as_slice()) {
        return error_reply(StatusCode::BAD_REQUEST, "purpose must be 'batch'");
    }
    let Some(file) = field("file") else {
        return error_reply(StatusCode::BAD_REQUEST, "no file");
    };
    let mut state = shared.state();
    state.next_id += 1;
    let id = format!("file-{}", state.next_id);
    let bytes = file.len();
    state.files.insert(id.clone(), file.clone());
    json_reply(
        StatusCode::OK,
        &json!({"id": id, "object": "file", "bytes": bytes, "purpose": "batch"}),
    )
}

fn create(shared: &Shared, body: &[u8]) -> Reply {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error_reply(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    if request["endpoint"] != "/v1/chat/completions" || request["completion_window"] != "24h" {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "endpoint must be /v1/chat/completions and completion_window 24h",
        );
    }
    let input = request["input_file_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut state = shared.state();
    let Some(file) = state.files.get(&input) else {
        return error_reply(StatusCode::BAD_REQUEST, "No such File object");
    };
    let lines = String::from_utf8_lossy(file).lines().count();
    state.next_id += 1;
    let id = format!("batch_{}", state.next_id);
    let batch = Batch {
        id: id.clone(),
        input_file_id: input,
        status: "validating",
        polls: 0,
        output_file_id: None,
        error_file_id: None,
        total: lines,
        completed: 0,
        failed: 0,
        errors: Vec::new(),
        cancel_asked: false,
        metadata: request["metadata"].clone(),
    };
    let described = describe(&batch);
    state.batches.insert(id, batch);
    json_reply(StatusCode::OK, &described)
}

fn describe(batch: &Batch) -> Value {
    json!({
        "id": batch.id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": batch.input_file_id,
        "completion_window": "24h",
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": 1_700_000_000,
        "expires_at": 1_700_086_400,
        "request_counts": {"total": batch.total, "completed": batch.completed, "failed": batch.failed},
        "errors": if batch.errors.is_empty() { Value::Null } else { json!({"object": "list", "data": batch.errors}) },
        "metadata": batch.metadata,
    })
}

fn poll(shared: &Shared, id: &str) -> Reply {
    let mut state = shared.state();
    if state.busy_left > 0 {
        state.busy_left -= 1;
        let mut busy = error_reply(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached");
        busy.headers_mut().insert(
            "retry-after-ms",
            hyper::header::HeaderValue::from_static("20"),
        );
        return busy;
    }
    let State {
        batches,
        files,
        next_id,
        ..
    } = &mut *state;
    let Some(batch) = batches.get_mut(id) else {
        return error_reply(StatusCode::NOT_FOUND, "No such Batch object");
    };
    step(&shared.script, batch, files, next_id);
    json_reply(StatusCode::OK, &describe(batch))
}

fn cancel(shared: &Shared, id: &str) -> Reply {
    let mut state = shared.state();
    let Some(batch) = state.batches.get_mut(id) else {
        return error_reply(StatusCode::NOT_FOUND, "No such Batch object");
    };
    if matches!(batch.status, "validating" | "in_progress" | "finalizing") {
        batch.status = "cancelling";
        batch.cancel_asked = true;
    }
    json_reply(StatusCode::OK, &describe(batch))
}

/// Moves a batch one step on, as one poll sees it.
fn step(
    script: &BatchScript,
    batch: &mut Batch,
    files: &mut BTreeMap<String, Vec<u8>>,
    next_id: &mut u64,
) {
    batch.polls += 1;
    match batch.status {
        "validating" if batch.polls > script.validating_polls => {
            let input = files.get(&batch.input_file_id).cloned().unwrap_or_default();
            let bad = bad_line(&input);
            if script.end == BatchEnd::Fail || bad.is_some() {
                batch.status = "failed";
                batch.errors.push(json!({
                    "code": "invalid_request",
                    "message": bad.as_ref().map_or("the batch failed validation", |(_, m)| m.as_str()),
                    "line": bad.as_ref().map(|(l, _)| *l),
                }));
            } else {
                batch.status = "in_progress";
            }
        }
        "in_progress" if batch.polls > script.validating_polls + script.in_progress_polls => {
            batch.status = "finalizing";
        }
        "finalizing" => {
            let answered = match script.end {
                BatchEnd::Expire { answered } => answered,
                _ => usize::MAX,
            };
            let code = if matches!(script.end, BatchEnd::Expire { .. }) {
                "batch_expired"
            } else {
                "batch_cancelled"
            };
            finish(script, batch, files, next_id, answered, code);
            batch.status = match script.end {
                BatchEnd::Expire { .. } => "expired",
                _ => "completed",
            };
        }
        "cancelling" => {
            finish(
                script,
                batch,
                files,
                next_id,
                script.answered_before_cancel,
                "batch_cancelled",
            );
            batch.status = "cancelled";
        }
        _ => {}
    }
}

/// The first input line that is not a valid request line: (1-based line, why).
fn bad_line(input: &[u8]) -> Option<(usize, String)> {
    for (i, line) in String::from_utf8_lossy(input).lines().enumerate() {
        let ok = serde_json::from_str::<Value>(line).ok().is_some_and(|v| {
            v["custom_id"].is_string()
                && v["method"] == "POST"
                && v["url"] == "/v1/chat/completions"
                && v["body"]["model"].is_string()
                && v["body"]["messages"].is_array()
        });
        if !ok {
            return Some((i + 1, "not a valid request line".to_owned()));
        }
    }
    None
}

/// Writes the output and error files: the first `answered` requests run (by the script's
/// failures and nonsense), the rest are `code` in the error file.
fn finish(
    script: &BatchScript,
    batch: &mut Batch,
    files: &mut BTreeMap<String, Vec<u8>>,
    next_id: &mut u64,
    answered: usize,
    code: &str,
) {
    let input = files.get(&batch.input_file_id).cloned().unwrap_or_default();
    let mut output = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in String::from_utf8_lossy(&input).lines().enumerate() {
        let request: Value = serde_json::from_str(line).unwrap_or_default();
        let custom_id = request["custom_id"].clone();
        let line_id = format!("batch_req_{i}");
        if i >= answered {
            errors.push(json!({
                "id": line_id, "custom_id": custom_id, "response": null,
                "error": {"code": code, "message": "This request did not run before the batch ended."},
            }));
        } else if script.failing.contains(&i) {
            errors.push(json!({
                "id": line_id, "custom_id": custom_id,
                "response": {"status_code": 500, "request_id": format!("req_{i}"), "body": {
                    "error": {"message": "The server had an error while processing your request.",
                              "type": "server_error", "code": null}}},
                "error": null,
            }));
        } else {
            let body = &request["body"];
            let prompt = body["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default();
            let (start, end) = cited_lines(prompt).unwrap_or((1, 1));
            let text = if script.nonsense.contains(&i) {
                nonsense_json(start, end)
            } else {
                enrichment_json(start, end, fingerprint(prompt))
            };
            let completion = json!({
                "id": format!("chatcmpl-{i}"), "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt.len().div_ceil(4), "completion_tokens": text.len().div_ceil(4),
                          "total_tokens": (prompt.len() + text.len()).div_ceil(4)},
            });
            output.push(json!({
                "id": line_id, "custom_id": custom_id,
                "response": {"status_code": 200, "request_id": format!("req_{i}"), "body": completion},
                "error": null,
            }));
        }
    }
    // Lines come in any order: the output file is written backwards.
    output.reverse();
    batch.completed = output.len();
    batch.failed = errors.len();
    let mut store = |lines: Vec<Value>| -> Option<String> {
        if lines.is_empty() {
            return None;
        }
        *next_id += 1;
        let id = format!("file-{}", *next_id);
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend_from_slice(line.to_string().as_bytes());
            bytes.push(b'\n');
        }
        files.insert(id.clone(), bytes);
        Some(id)
    };
    batch.output_file_id = store(output);
    batch.error_file_id = store(errors);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, prompt: &str) -> String {
        json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "m", "messages": [{"role": "user", "content": prompt}]}})
        .to_string()
    }

    async fn upload_and_create(client: &reqwest::Client, url: &str, jsonl: &str) -> Value {
        let boundary = "b0undary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
             Content-Type: application/jsonl\r\n\r\n{jsonl}\r\n--{boundary}--\r\n"
        );
        let file: Value = client
            .post(format!("{url}/v1/files"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        client
            .post(format!("{url}/v1/batches"))
            .json(
                &json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
                          "completion_window": "24h"}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The content of the file `id` names.
    async fn content(client: &reqwest::Client, url: &str, id: &Value) -> String {
        let id = id.as_str().expect("a file id");
        client
            .get(format!("{url}/v1/files/{id}/content"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn get(client: &reqwest::Client, url: &str) -> Value {
        client.get(url).send().await.unwrap().json().await.unwrap()
    }

    #[tokio::test]
    async fn a_batch_goes_through_its_states_and_answers_by_custom_id() {
        let script = BatchScript {
            in_progress_polls: 2,
            failing: vec![1],
            ..BatchScript::default()
        };
        let service = FakeBatchService::start(script, None).await.unwrap();
        let client = crate::http_client();
        let jsonl = [
            line("a", "lines 1-2"),
            line("b", "lines 3-4"),
            line("c", "lines 5-9"),
        ]
        .join("\n");
        let created = upload_and_create(&client, service.url(), &jsonl).await;
        assert_eq!(created["status"], "validating");
        let url = format!(
            "{}/v1/batches/{}",
            service.url(),
            created["id"].as_str().unwrap()
        );
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(
                get(&client, &url).await["status"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(
            seen,
            [
                "in_progress",
                "in_progress",
                "finalizing",
                "completed",
                "completed",
                "completed"
            ]
        );
        let done = get(&client, &url).await;
        assert_eq!(
            done["request_counts"],
            json!({"total": 3, "completed": 2, "failed": 1})
        );
        let output = content(&client, service.url(), &done["output_file_id"]).await;
        let ids: Vec<String> = output
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["custom_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, ["c", "a"], "backwards, the failed one left out");
        let errors = content(&client, service.url(), &done["error_file_id"]).await;
        let error: Value = serde_json::from_str(errors.trim()).unwrap();
        assert_eq!(error["custom_id"], "b");
        assert_eq!(error["response"]["status_code"], 500);
    }

    #[tokio::test]
    async fn expiry_cancel_and_bad_input_end_batches_as_the_service_does() {
        let expiring = FakeBatchService::start(
            BatchScript {
                end: BatchEnd::Expire { answered: 1 },
                ..BatchScript::default()
            },
            None,
        )
        .await
        .unwrap();
        let client = crate::http_client();
        let jsonl = [line("a", "lines 1-2"), line("b", "lines 3-4")].join("\n");
        let created = upload_and_create(&client, expiring.url(), &jsonl).await;
        let url = format!(
            "{}/v1/batches/{}",
            expiring.url(),
            created["id"].as_str().unwrap()
        );
        let mut last = Value::Null;
        for _ in 0..4 {
            last = get(&client, &url).await;
        }
        assert_eq!(last["status"], "expired");
        let errors = content(&client, expiring.url(), &last["error_file_id"]).await;
        assert!(
            errors.contains("batch_expired") && errors.contains("\"b\""),
            "{errors}"
        );

        let cancelled = FakeBatchService::start(BatchScript::default(), Some("sk-1"))
            .await
            .unwrap();
        let refused = client
            .get(format!("{}/v1/batches/x", cancelled.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);

        let bad = FakeBatchService::start(BatchScript::default(), None)
            .await
            .unwrap();
        let created = upload_and_create(&client, bad.url(), "{\"custom_id\": 1}").await;
        let url = format!(
            "{}/v1/batches/{}",
            bad.url(),
            created["id"].as_str().unwrap()
        );
        let failed = get(&client, &url).await;
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["errors"]["data"][0]["line"], 1);
        let cancel = client.post(format!("{url}/cancel")).send().await.unwrap();
        let cancel: Value = cancel.json().await.unwrap();
        assert_eq!(
            cancel["status"], "failed",
            "an ended batch is not cancelled"
        );
    }
}

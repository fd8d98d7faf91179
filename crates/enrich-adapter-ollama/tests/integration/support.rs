//! Shared helpers: specs, requests, Ollama's answers, and a raw HTTP/1.1 server that counts
//! connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use enrich_adapter_ollama::OllamaAdapter;
use enrich_backends::{BackendError, FailureKind, GenerateRequest, SpanIdentity};
use enrich_config::BackendSpec;
use serde_json::{Value, json};
use wiremock::MockServer;

/// The model every test backend names.
pub(crate) const MODEL: &str = "qwen2.5:7b-instruct";

/// A backend entry for an Ollama at `url` with these `options` (a JSON object).
pub(crate) fn spec(url: &str, options: Value) -> BackendSpec {
    let Value::Object(options) = options else {
        panic!("options must be a JSON object, got {options}");
    };
    BackendSpec {
        url: Some(url.to_owned()),
        options,
        ..BackendSpec::new("local", "default", "ollama", MODEL)
    }
}

/// An adapter for `spec(url, options)`.
pub(crate) fn adapter(url: &str, options: Value) -> OllamaAdapter {
    OllamaAdapter::new(spec(url, options)).expect("the test spec is valid")
}

/// A request for a small span, without schema or limits.
pub(crate) fn request() -> GenerateRequest {
    GenerateRequest::new(
        "Describe this code.",
        SpanIdentity::new("sha256:00", "src/lib.rs", 1, 3),
    )
}

/// Ollama's final answer with `text` and a full set of metrics.
pub(crate) fn done(text: &str) -> Value {
    json!({
        "model": MODEL,
        "created_at": "2025-01-01T00:00:00Z",
        "response": text,
        "done": true,
        "done_reason": "stop",
        "total_duration": 5_000_000_000_u64,
        "load_duration": 100_000_000_u64,
        "prompt_eval_count": 140,
        "prompt_eval_duration": 800_000_000_u64,
        "eval_count": 60,
        "eval_duration": 4_000_000_000_u64,
    })
}

/// `done(text)` with its fields changed by `patch` (a JSON object).
pub(crate) fn done_with(text: &str, patch: Value) -> Value {
    let mut body = done(text);
    for (key, value) in patch.as_object().expect("patch is an object") {
        body[key] = value.clone();
    }
    body
}

/// The JSON bodies of every request the server received, in order.
pub(crate) async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .iter()
        .map(|r| r.body_json().expect("the adapter sends JSON"))
        .collect()
}

/// A port on loopback where nothing listens.
pub(crate) fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Asserts that `result` (of the case `what`) failed with `kind` and a message holding every
/// `needle`.
pub(crate) fn assert_failure<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, BackendError>,
    kind: FailureKind,
    needles: &[&str],
) -> BackendError {
    let err = result.unwrap_err();
    assert_eq!(err.kind, kind, "{what}: {err}");
    for needle in needles {
        assert!(
            err.message.contains(needle),
            "{what}: {needle:?} not in {:?}",
            err.message
        );
    }
    err
}

/// A raw HTTP/1.1 server on loopback that answers every request with `answer` (one response
/// written as the given pieces, flushed one by one) and counts the connections it accepted.
pub(crate) struct RawServer {
    pub(crate) url: String,
    connections: Arc<AtomicUsize>,
}

impl RawServer {
    pub(crate) fn start(head: String, pieces: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                let (head, pieces) = (head.clone(), pieces.clone());
                std::thread::spawn(move || serve(stream, &head, &pieces));
            }
        });
        Self { url, connections }
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Answers requests on one connection until the client closes it.
fn serve(stream: TcpStream, head: &str, pieces: &[String]) {
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut content_length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).unwrap();
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        for piece in pieces {
            writer.write_all(piece.as_bytes()).unwrap();
            writer.flush().unwrap();
        }
    }
}

/// `parts` as the pieces of a chunked HTTP body, the terminating chunk included.
pub(crate) fn chunked(parts: &[&str]) -> Vec<String> {
    parts
        .iter()
        .map(|part| format!("{:x}\r\n{part}\r\n", part.len()))
        .chain(["0\r\n\r\n".to_owned()])
        .collect()
}

/// A raw HTTP/1.1 server on loopback that answers every request with `head`, then `prefix` as
/// a first chunk, then chunks of `filler` without end, until the client stops reading: a body
/// no whole-body read ever finishes.
pub(crate) fn endless_server(head: &'static str, prefix: &'static str, filler: u8) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let mut writer = stream;
                let chunk = |data: &[u8]| {
                    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
                    chunk.extend_from_slice(data);
                    chunk.extend_from_slice(b"\r\n");
                    chunk
                };
                let filler = chunk(&[filler; 64 * 1024]);
                if writer.write_all(head.as_bytes()).is_err()
                    || writer.write_all(&chunk(prefix.as_bytes())).is_err()
                {
                    return;
                }
                while writer.write_all(&filler).is_ok() {}
            });
        }
    });
    url
}

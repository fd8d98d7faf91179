//! `ollama-load`: a bare HTTP client that drives an Ollama-compatible server with recorded
//! request bodies, to measure what the server can do by itself.
//!
//! ```text
//! ollama-load --url http://HOST:PORT --bodies FILE --requests N [--connections N] [--path PATH]
//!             [--client hyper|reqwest]
//! ```
//!
//! `FILE` holds one JSON request body per line (JSON Lines), as `GET /_fake/requests` of a
//! `fake-ollama --record` lists them. `--connections` keep-alive connections (default 4) each
//! send one request at a time, taking the bodies in turn, until `N` requests were answered. The
//! default client is as cheap as an HTTP client gets: hyper's HTTP/1.1 connection with no pool,
//! no URL parsing, no timeouts, on a one-thread runtime; it reads each answer whole and checks
//! only its status. What it measures is the server's own request rate, the reference that
//! `cargo xtask bench` holds `enrich run` against.
//!
//! `--client reqwest` sends the same requests through one `reqwest::Client` (its pool holds the
//! connections), the HTTP client enrich's adapters use, with nothing else around it: what the
//! server and that client do together, without enrich's pipeline.
//!
//! Prints one JSON line on stdout: `requests`, `ok`, `failed` (non-200 answers),
//! `first_failure` (status and the start of the body, or `null`), `seconds`,
//! `requests_per_sec`, `connections`, `client`. Exits 1 when a request failed or a connection
//! broke, 2 on bad arguments (clap's message; `--help` describes every flag) or a bodies file
//! that cannot be read or holds a line that is not JSON.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// A bare HTTP client that drives an Ollama-compatible server with recorded request bodies, to
/// measure what the server can do by itself.
///
/// Prints one JSON line: requests, ok, failed, first_failure, seconds, requests_per_sec,
/// connections, client. Exits 1 when a request failed or a connection broke, 2 on bad arguments
/// or a bodies file that cannot be read or holds a line that is not JSON.
#[derive(Debug, Parser)]
#[command(name = "ollama-load", version, max_term_width = 100)]
struct Cli {
    /// The server: plain http, an IP address and port (http://127.0.0.1:11434).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    url: SocketAddr,

    /// JSON request bodies, one per line, sent in turn.
    #[arg(long, value_name = "FILE")]
    bodies: String,

    /// Requests to send in all.
    #[arg(long, value_name = "N")]
    requests: u64,

    /// Keep-alive connections, one request in flight on each.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,

    /// The route to POST to.
    #[arg(long, value_name = "PATH", default_value = "/api/generate", value_parser = parse_path)]
    path: String,

    /// hyper: a bare HTTP/1.1 connection each; reqwest: one reqwest::Client, the client
    /// enrich's adapters use.
    #[arg(long, value_name = "NAME", value_enum, default_value_t = Client::Hyper)]
    client: Client,
}

/// `http://IP:PORT` as the address to connect to.
fn parse_url(url: &str) -> Result<SocketAddr, String> {
    url.strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .and_then(|hostport| hostport.parse::<SocketAddr>().ok())
        .ok_or_else(|| "not http://IP:PORT (for example http://127.0.0.1:11434)".to_owned())
}

/// A route, which starts with `/`.
fn parse_path(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        Ok(path.to_owned())
    } else {
        Err("a route starts with /".to_owned())
    }
}

/// What the command line asks for, with the bodies read.
struct Args {
    addr: SocketAddr,
    bodies: Vec<Bytes>,
    requests: u64,
    connections: u64,
    path: String,
    client: Client,
}

/// Which HTTP client sends the requests.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Client {
    /// One bare hyper HTTP/1.1 connection per `--connections`.
    Hyper,
    /// One `reqwest::Client` shared by `--connections` senders.
    Reqwest,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Hyper => "hyper",
            Client::Reqwest => "reqwest",
        }
    }
}

impl Cli {
    /// Reads the bodies file: every non-empty line must be JSON.
    fn read_bodies(self) -> Result<Args, String> {
        let path = &self.bodies;
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("could not read the bodies file {path}: {err}"))?;
        let mut bodies = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            serde_json::from_str::<Value>(line)
                .map_err(|err| format!("{path} line {}: not a JSON request body ({err})", i + 1))?;
            bodies.push(Bytes::from(line.to_owned()));
        }
        if bodies.is_empty() {
            return Err(format!(
                "{path} holds no request body: write one JSON object per line"
            ));
        }
        Ok(Args {
            addr: self.url,
            bodies,
            requests: self.requests,
            connections: self.connections,
            path: self.path,
            client: self.client,
        })
    }
}

impl Args {
    /// The next request to send, shared by all senders: its number and body (body `n` mod the
    /// number of bodies), or `None` once `--requests` were taken.
    fn take(&self, next: &AtomicU64) -> Option<(u64, &Bytes)> {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= self.requests {
            return None;
        }
        let index = usize::try_from(n % self.bodies.len() as u64).unwrap_or(0);
        Some((n, &self.bodies[index]))
    }
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    first_failure: Option<String>,
}

impl Tally {
    /// Counts one answer: 200 is ok, anything else failed (the first one kept, shortened).
    fn count(&mut self, status: StatusCode, body: &[u8]) {
        if status == StatusCode::OK {
            self.ok += 1;
        } else {
            self.failed += 1;
            if self.first_failure.is_none() {
                let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                self.first_failure = Some(format!("{status}: {start}"));
            }
        }
    }
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with code 2 (help and version with 0).
    let args = match Cli::parse().read_bodies() {
        Ok(args) => args,
        Err(message) => {
            say(&mut std::io::stderr(), &format!("ollama-load: {message}\n"));
            return ExitCode::from(2);
        }
    };
    // Time for reqwest's pool, which expires idle connections.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            say(
                &mut std::io::stderr(),
                &format!("ollama-load: could not start the tokio runtime: {err}\n"),
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(drive(args)) {
        Ok((report, clean)) => {
            say(&mut std::io::stdout(), &format!("{report}\n"));
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            say(&mut std::io::stderr(), &format!("ollama-load: {message}\n"));
            ExitCode::FAILURE
        }
    }
}

/// Writes to stdout or stderr; a closed stream leaves nobody to tell.
fn say(out: &mut impl Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Sends every request; returns the report and whether every request was answered with 200.
async fn drive(args: Args) -> Result<(Value, bool), String> {
    let args = Arc::new(args);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut connections = tokio::task::JoinSet::new();
    let reqwest = match args.client {
        Client::Hyper => None,
        Client::Reqwest => Some(
            enrich_testkit::http_client_builder()
                .build()
                .map_err(|err| format!("could not build the reqwest client: {err}"))?,
        ),
    };
    for _ in 0..args.connections {
        let (args, next) = (Arc::clone(&args), Arc::clone(&next));
        match &reqwest {
            None => connections.spawn(connection(args, next)),
            Some(client) => connections.spawn(reqwest_sender(client.clone(), args, next)),
        };
    }
    let mut total = Tally::default();
    let mut broken = None;
    while let Some(joined) = connections.join_next().await {
        match joined {
            Ok(Ok(tally)) => {
                total.ok += tally.ok;
                total.failed += tally.failed;
                total.first_failure = total.first_failure.or(tally.first_failure);
            }
            Ok(Err(message)) => broken = broken.or(Some(message)),
            Err(err) => broken = broken.or(Some(format!("a connection task failed: {err}"))),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(message) = broken {
        return Err(message);
    }
    let answered = total.ok + total.failed;
    let report = json!({
        "requests": answered,
        "ok": total.ok,
        "failed": total.failed,
        "first_failure": total.first_failure,
        "seconds": seconds,
        "requests_per_sec": if seconds > 0.0 { answered as f64 / seconds } else { 0.0 },
        "connections": args.connections,
        "client": args.client.name(),
    });
    Ok((report, total.failed == 0))
}

/// One keep-alive connection sending requests one after another while any are left.
async fn connection(args: Arc<Args>, next: Arc<AtomicU64>) -> Result<Tally, String> {
    let addr = args.addr;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|err| format!("could not connect to {addr}: {err}"))?;
    // Small requests must not wait for Nagle's algorithm.
    stream
        .set_nodelay(true)
        .map_err(|err| format!("could not set TCP_NODELAY on the connection to {addr}: {err}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| format!("HTTP handshake with {addr} failed: {err}"))?;
    let conn = tokio::spawn(conn);
    let host = addr.to_string();
    let mut tally = Tally::default();
    while let Some((n, body)) = args.take(&next) {
        let request = Request::post(args.path.as_str())
            .header(HOST, host.as_str())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .map_err(|err| format!("could not build a request for {}: {err}", args.path))?;
        sender
            .ready()
            .await
            .map_err(|err| format!("the connection to {addr} closed: {err}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| format!("request {n} to {addr} failed: {err}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|err| format!("could not read the answer to request {n} from {addr}: {err}"))?
            .to_bytes();
        tally.count(status, &body);
    }
    drop(sender);
    // The connection ends once its sender is gone; an error on the way out changes nothing.
    let _ = conn.await;
    Ok(tally)
}

/// One sender on a shared `reqwest::Client`, one request at a time while any are left.
async fn reqwest_sender(
    client: reqwest::Client,
    args: Arc<Args>,
    next: Arc<AtomicU64>,
) -> Result<Tally, String> {
    let url = format!("http://{}{}", args.addr, args.path);
    let url = reqwest::Url::parse(&url).map_err(|err| format!("bad URL {url}: {err}"))?;
    let mut tally = Tally::default();
    while let Some((n, body)) = args.take(&next) {
        let failed = |err: reqwest::Error| {
            let mut message = format!("request {n} to {url} failed: {err}");
            let mut cause = std::error::Error::source(&err);
            while let Some(source) = cause {
                message.push_str(&format!(": {source}"));
                cause = source.source();
            }
            message
        };
        let response = client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        let body = response.bytes().await.map_err(failed)?;
        tally.count(status, &body);
    }
    Ok(tally)
}

//! `fake-ollama`: the testkit's fake Ollama server as a process, for CLI tests and benchmarks.
//!
//! ```text
//! fake-ollama [--port N] [--latency-ms MS] [--slots N] [--change-slots MS=N]... [--queue N]
//!             [--model NAME]...
//!             [--fault-rate KIND=P]... [--seed N] [--context-length TOKENS]
//!             [--oversized-bytes N] [--record] [--exit-on-stdin-close]
//! ```
//!
//! `fake-ollama --help` describes each flag with its default (the library's). Bad arguments
//! exit with code 2 and clap's message. Once listening it prints one line to stdout, `{"listening":"http://127.0.0.1:PORT"}`, and
//! serves until killed (or until its stdin closes, with `--exit-on-stdin-close`). Its counters
//! are at `GET /_fake/stats`. Request bodies are not kept unless `--record` is given, so long
//! benchmarks run in flat memory; with it, `GET /_fake/requests` lists them. It knows nothing
//! beyond the testkit's `FakeOllama`.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::builder::RangedU64ValueParser;
use enrich_testkit::{FakeOllama, FakeOllamaConfig, Fault, TestkitError};

/// The testkit's fake Ollama server, for CLI tests and benchmarks.
///
/// Once listening it prints {"listening":"http://127.0.0.1:PORT"} on stdout and serves until
/// killed (or until its stdin closes, with --exit-on-stdin-close). Counters at GET
/// /_fake/stats; with --record, request bodies at GET /_fake/requests.
#[derive(Debug, Parser)]
#[command(name = "fake-ollama", version, max_term_width = 100)]
struct Args {
    /// Port on 127.0.0.1 (0: a free one).
    #[arg(long, value_name = "N", default_value_t = defaults().port)]
    port: u16,

    /// Time each generation holds its slot, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = default_latency_ms())]
    latency_ms: u64,

    /// Generations running at once, as OLLAMA_NUM_PARALLEL.
    #[arg(long, value_name = "N", default_value_t = defaults().slots,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    slots: usize,

    /// After MS milliseconds, run N generations at once (a server losing or gaining capacity);
    /// repeatable.
    #[arg(long = "change-slots", value_name = "MS=N", value_parser = parse_slot_change)]
    slot_changes: Vec<(Duration, usize)>,

    /// Generations waiting beyond the slots before a 503.
    #[arg(long, value_name = "N", default_value_t = defaults().max_queue)]
    queue: usize,

    /// A served model; repeatable.
    #[arg(long = "model", value_name = "NAME", default_values_t = defaults().models)]
    models: Vec<String>,

    /// Inject fault KIND with probability P; repeatable (the kinds are listed by `--help`).
    #[arg(long = "fault-rate", value_name = "KIND=P", value_parser = parse_fault_rate,
          help = format!("Inject fault KIND with probability P; repeatable. Kinds: {}", fault_names()))]
    fault_rates: Vec<(Fault, f64)>,

    /// Seed of the fault draws.
    #[arg(long, value_name = "N", default_value_t = defaults().seed)]
    seed: u64,

    /// Context length reported and enforced, in tokens.
    #[arg(long, value_name = "TOKENS", default_value_t = defaults().context_length)]
    context_length: u64,

    /// Body size of an `oversized` answer, in bytes.
    #[arg(long, value_name = "N", default_value_t = defaults().oversized_bytes)]
    oversized_bytes: u64,

    /// Keep request bodies, listed at GET /_fake/requests (memory grows with every request).
    #[arg(long)]
    record: bool,

    /// Exit when stdin reaches end of file (the parent went away).
    #[arg(long)]
    exit_on_stdin_close: bool,
}

/// The library's defaults, which the flags' defaults show.
fn defaults() -> FakeOllamaConfig {
    FakeOllamaConfig::default()
}

/// The library's latency, in milliseconds.
fn default_latency_ms() -> u64 {
    u64::try_from(defaults().latency.as_millis()).unwrap_or(u64::MAX)
}

/// Every fault's name, for `--help`.
fn fault_names() -> String {
    Fault::ALL.map(Fault::name).join(", ")
}

/// `KIND=P`, as [`Fault::parse_rate`] reads it.
fn parse_fault_rate(spec: &str) -> Result<(Fault, f64), TestkitError> {
    Fault::parse_rate(spec)
}

/// `MS=N`: after MS milliseconds, N slots.
fn parse_slot_change(spec: &str) -> Result<(Duration, usize), String> {
    let parsed = spec.split_once('=').and_then(|(ms, n)| {
        let ms: u64 = ms.trim().parse().ok()?;
        let n: usize = n.trim().parse().ok().filter(|&n| n > 0)?;
        Some((Duration::from_millis(ms), n))
    });
    parsed.ok_or_else(|| format!("`{spec}` is not MS=N (milliseconds, then slots ≥ 1)"))
}

impl Args {
    /// The server's configuration. Request bodies are kept only with `--record`: a benchmark
    /// sends tens of thousands.
    fn config(self) -> FakeOllamaConfig {
        let mut config = defaults();
        config.port = self.port;
        config.models = self.models;
        config.latency = Duration::from_millis(self.latency_ms);
        config.slots = self.slots;
        config.max_queue = self.queue;
        config.slot_changes = self.slot_changes;
        config.fault_rates = self.fault_rates;
        config.seed = self.seed;
        config.context_length = self.context_length;
        config.record_requests = self.record;
        config.oversized_bytes = self.oversized_bytes;
        config
    }
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with code 2 (help and version with 0).
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            say(
                &mut std::io::stderr(),
                &format!("fake-ollama: could not start the tokio runtime: {err}\n"),
            );
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let exit_on_stdin_close = args.exit_on_stdin_close;
    let server = match FakeOllama::start(args.config()).await {
        Ok(server) => server,
        Err(err) => {
            say(&mut std::io::stderr(), &format!("fake-ollama: {err}\n"));
            return ExitCode::FAILURE;
        }
    };
    let listening = serde_json::json!({ "listening": server.url() });
    say(&mut std::io::stdout(), &format!("{listening}\n"));
    if exit_on_stdin_close {
        // A blocking read on its own thread: stdin has no portable async form.
        let closed = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let mut stdin = std::io::stdin().lock();
            while stdin.read_until(b'\n', &mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        // Whether the reader ended or panicked, the parent is gone or unreachable.
        let _ = closed.await;
        ExitCode::SUCCESS
    } else {
        std::future::pending().await
    }
}

/// Writes to stdout or stderr; a closed stream leaves nobody to tell.
fn say(out: &mut impl Write, text: &str) {
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

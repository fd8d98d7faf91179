//! `fake-ollama`: the testkit's fake Ollama server as a process, for CLI tests and benchmarks.
//!
//! ```text
//! fake-ollama [--port N] [--latency-ms MS] [--slots N] [--queue N] [--model NAME]...
//!             [--fault-rate KIND=P]... [--seed N] [--context-length TOKENS]
//!             [--oversized-bytes N] [--record] [--exit-on-stdin-close]
//! ```
//!
//! Once listening it prints one line to stdout, `{"listening":"http://127.0.0.1:PORT"}`, and
//! serves until killed (or until its stdin closes, with `--exit-on-stdin-close`). Its counters
//! are at `GET /_fake/stats`. Request bodies are not kept unless `--record` is given, so long
//! benchmarks run in flat memory; with it, `GET /_fake/requests` lists them. It knows nothing
//! beyond the testkit's `FakeOllama`.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use enrich_testkit::{FakeOllama, FakeOllamaConfig, Fault};

const USAGE: &str = "\
usage: fake-ollama [--port N] [--latency-ms MS] [--slots N] [--queue N] [--model NAME]...
                   [--fault-rate KIND=P]... [--seed N] [--context-length TOKENS]
                   [--oversized-bytes N] [--record] [--exit-on-stdin-close]

  --port N               port on 127.0.0.1 (default 0: a free one)
  --latency-ms MS        time each generation holds its slot (default 0)
  --slots N              generations running at once (default 1, as OLLAMA_NUM_PARALLEL)
  --queue N              generations waiting beyond the slots before 503 (default 512)
  --model NAME           a served model; repeatable (default qwen2.5:7b-instruct)
  --fault-rate KIND=P    inject fault KIND with probability P; repeatable. Kinds: server_error,
                         garbage, truncated, hang, busy, rate_limited, context_exceeded,
                         bad_request, unauthorized, stream_error, thinking_only, oversized
  --seed N               seed of the fault draws (default 0)
  --context-length N     context length reported and enforced (default 32768)
  --oversized-bytes N    body size of an `oversized` answer (default 8388608)
  --record               keep request bodies, listed at GET /_fake/requests (memory grows
                         with every request)
  --exit-on-stdin-close  exit when stdin reaches end of file (the parent went away)

Prints {\"listening\":\"http://127.0.0.1:PORT\"} on stdout once listening; counters at GET /_fake/stats.
";

/// What the command line asks for.
struct Args {
    config: FakeOllamaConfig,
    exit_on_stdin_close: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        say(&mut std::io::stdout(), USAGE);
        return ExitCode::SUCCESS;
    }
    let args = match parse(&args) {
        Ok(args) => args,
        Err(message) => {
            say(
                &mut std::io::stderr(),
                &format!("fake-ollama: {message}\n{USAGE}"),
            );
            return ExitCode::from(2);
        }
    };
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
    let server = match FakeOllama::start(args.config).await {
        Ok(server) => server,
        Err(err) => {
            say(&mut std::io::stderr(), &format!("fake-ollama: {err}\n"));
            return ExitCode::FAILURE;
        }
    };
    let listening = serde_json::json!({ "listening": server.url() });
    say(&mut std::io::stdout(), &format!("{listening}\n"));
    if args.exit_on_stdin_close {
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

fn parse(args: &[String]) -> Result<Args, String> {
    // Bodies are kept only on request: a benchmark sends tens of thousands.
    let mut config = FakeOllamaConfig::default().with_recording(false);
    let mut models = Vec::new();
    let mut exit_on_stdin_close = false;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => config.port = number(flag, value()?)?,
            "--latency-ms" => config.latency = Duration::from_millis(number(flag, value()?)?),
            "--slots" => config.slots = number(flag, value()?)?,
            "--queue" => config.max_queue = number(flag, value()?)?,
            "--model" => models.push(value()?.to_owned()),
            "--fault-rate" => {
                let (fault, p) = Fault::parse_rate(value()?).map_err(|err| err.to_string())?;
                config.fault_rates.push((fault, p));
            }
            "--seed" => config.seed = number(flag, value()?)?,
            "--context-length" => config.context_length = number(flag, value()?)?,
            "--oversized-bytes" => config.oversized_bytes = number(flag, value()?)?,
            "--record" => config.record_requests = true,
            "--exit-on-stdin-close" => exit_on_stdin_close = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if config.slots == 0 {
        return Err("--slots must be at least 1".to_owned());
    }
    if !models.is_empty() {
        config.models = models;
    }
    Ok(Args {
        config,
        exit_on_stdin_close,
    })
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} wants a whole number, got `{value}`"))
}

//! `enrich`: the command line, and the composition root of the workspace.
//!
//! This binary is the one place that knows every crate: it loads the configuration
//! (`enrich-config`), opens the index (`enrich-db`), registers every provider crate's adapter
//! factory (`enrich-adapter-ollama`; see `adapters.rs`), and hands them to the pipeline
//! (`enrich-pipeline`), which routes, runs the cascade and writes. Below it no crate knows a
//! provider by name or how settings are loaded.
//!
//! Conventions every command follows: results go to stdout (one JSON document with `--json`),
//! logs and progress to stderr; errors print as `error: …` followed by `caused by: …` lines; the
//! exit code says what happened (0 done, 1 some spans failed, 2 usage or configuration error,
//! 3 a backend is unusable, 128 + the signal's number when Ctrl-C or SIGTERM stopped a run).
//!
//! The runtime is tokio's multi-thread scheduler with one worker thread unless
//! `TOKIO_WORKER_THREADS` says otherwise (`enrich_pipeline::run_worker_threads`), built only by
//! the commands that talk to backends (`run`, `watch`, `doctor`) and by `mcp` (its stdio
//! transport); the others are plain synchronous SQLite reads.

mod adapters;
mod cli;
mod commands;
mod context;
mod exit;
mod health;
mod logging;
mod output;
mod progress;
mod signals;
mod time;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::exit::{Exit, classify, report};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with code 2 (help and version with 0).
    let cli = Cli::parse();
    // Adapters of other crates may build a plain reqwest client, which needs a process-wide
    // rustls provider (reqwest is built without one of its own): ring, as every adapter uses.
    enrich_backends::tls::install_default_provider();
    // `watch` is a service: its log is its output, so it logs at info by default, with times.
    let service = matches!(cli.command, cli::Command::Watch(_));
    let verbose = cli.global.verbose.saturating_add(u8::from(service));
    logging::init(verbose, cli.global.quiet, service);
    match commands::dispatch(cli) {
        Ok(exit) => exit.into(),
        Err(err) if output::is_broken_pipe(&err) => Exit::Success.into(),
        Err(err) => {
            let _ = report(&err, &mut std::io::stderr().lock());
            classify(&err).into()
        }
    }
}

//! `enrich-bench`: the in-process half of `cargo xtask bench`.
//!
//! ```text
//! enrich-bench gen-db --spans N --out DIR [--spans-per-file N]
//! enrich-bench overhead --repo DIR [--db PATH] [--concurrency N] [--batch-size N] [--commit-every N]
//!                        [--events PATH]
//! enrich-bench select-batch --repo DIR [--db PATH] [--batch-size N] [--iterations N]
//! enrich-bench search --repo DIR [--db PATH] [--iterations N]
//! enrich-bench span-prompts --repo DIR [--db PATH] [--limit N]
//! ```
//!
//! - `gen-db` writes a synthetic repository: large Rust files of many small functions under
//!   `DIR/src`, and an LLMC index (`DIR/.llmc/rag/index_v2.db`, created by `enrich-db` so the
//!   schema is the real one) whose spans are those functions, with LLMC's span hashes. Rows go in
//!   with prepared statements in one transaction: a million spans take seconds.
//! - `overhead` runs the full pipeline — routing, prompt building, the cascade, output
//!   validation, the batched writer, a JSONL event log — over every pending span with an
//!   *instant* in-process backend that answers a valid enrichment.v1 object for the requested
//!   lines at once. What is left is the pipeline's own cost per span.
//! - `select-batch` times [`Db::pending_spans`](enrich_db::Db::pending_spans) for the first page
//!   and for a page deep into the keyset (90% of the way through `spans.id`), median of many.
//! - `search` stores a synthetic enrichment for every span without one, lets enrich add them to
//!   its search table, and times [`Db::search`](enrich_db::Db::search) for a few kinds of query.
//! - `span-prompts` prints each pending span's own part of its prompt (what follows the shared
//!   part every prompt starts with), built by the pipeline's prompt builder; the real-model
//!   bench tokenizes them to judge what the model server evaluated per span.
//!
//! Each command prints one JSON object on one line of stdout; progress and errors go to stderr.
//! `enrich-bench help COMMAND` describes each flag; bad arguments exit with code 2 and clap's
//! message, a failed measurement with code 1.
//!
//! It is a composition root like the CLI: it knows the pipeline, the database, the backends'
//! trait and the config types, and deliberately nothing of HTTP or any real provider (the
//! HTTP-bound scenarios run the `enrich` binary against `fake-ollama`, driven by xtask).

// A command-line tool talks on stdout and stderr by design.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod gen_db;
mod instant;
mod overhead;
mod search;
mod select;
mod span_prompts;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with code 2 (help and version with 0).
    let cli = Cli::parse();
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("enrich-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: &Command) -> Result<()> {
    let result = match command {
        Command::GenDb(args) => gen_db::run(args)?,
        Command::Overhead(args) => overhead::run(args)?,
        Command::SelectBatch(args) => select::run(args)?,
        Command::Search(args) => search::run(args)?,
        Command::SpanPrompts(args) => span_prompts::run(args)?,
    };
    println!("{result}");
    Ok(())
}

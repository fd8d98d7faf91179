//! `enrich-bench`: the in-process half of `cargo xtask bench`.
//!
//! ```text
//! enrich-bench gen-db --spans N --out DIR [--spans-per-file N]
//! enrich-bench overhead --repo DIR [--db PATH] [--concurrency N] [--batch-size N] [--commit-every N]
//!                        [--events PATH]
//! enrich-bench select-batch --repo DIR [--db PATH] [--batch-size N] [--iterations N]
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
//!
//! Each command prints one JSON object on one line of stdout; progress and errors go to stderr.
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
mod select;

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::args::Args;

const USAGE: &str = "\
usage: enrich-bench <command> [options]

commands:
  gen-db        --spans N --out DIR [--spans-per-file N]
                write a synthetic repository and its LLMC index (DIR/.llmc/rag/index_v2.db)
  overhead      --repo DIR [--db PATH] [--concurrency N] [--batch-size N] [--commit-every N]
                [--events PATH]
                the full pipeline over every pending span with an instant in-process backend
  select-batch  --repo DIR [--db PATH] [--batch-size N] [--iterations N]
                time the first page of pending spans and one deep into the keyset

Each command prints one JSON line of results on stdout.
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("enrich-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        bail!("no command given");
    };
    let mut args = Args::parse(rest)?;
    let result = match command.as_str() {
        "gen-db" => gen_db::run(&mut args)?,
        "overhead" => overhead::run(&mut args)?,
        "select-batch" => select::run(&mut args)?,
        "help" | "--help" | "-h" => {
            eprint!("{USAGE}");
            return Ok(());
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command `{other}`");
        }
    };
    println!("{result}");
    Ok(())
}

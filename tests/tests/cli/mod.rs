//! The `enrich` binary, run as a user runs it: a real process per command, against a real SQLite
//! index in a temporary repository (files and spans inserted the way LLMC's indexer writes them,
//! over real source files) and the testkit's fake Ollama server on loopback (in this process, so
//! its counters and scripted faults are at hand).
//!
//! Finding the binary: Cargo gives `CARGO_BIN_EXE_<name>` only to the integration tests of the
//! package that owns the binary, and `enrich` belongs to `enrich-cli`. So [`support::enrich_bin`]
//! takes `CARGO_BIN_EXE_enrich` from the environment when a runner sets it, else the binary next
//! to this test's directory (`target/<profile>/enrich`). Workspace test runs (`cargo xtask test`,
//! `cargo nextest run --workspace`) build it, because `enrich-cli` has an integration test of
//! its own and Cargo builds a package's binaries for those. When it is missing or older than a
//! crate's sources (`cargo test -p enrich-tests` alone), the test builds it with the same Cargo
//! and profile first.
//!
//! Every invocation has a deadline and a clean environment (no `ENRICH_*`, `OLLAMA_HOST` or
//! proxy variables from the machine running the tests).

mod adaptive;
mod bad_input;
mod batch;
mod commands;
mod concurrent;
mod config_keys;
mod crash;
mod damaged;
mod eval;
mod export;
mod faults;
mod file_descriptions;
mod indexing;
mod limits;
mod locks;
mod mcp;
mod openai_chain;
mod outages;
mod pools;
mod prompts;
mod provenance;
mod quality;
mod quality_report;
mod real_model;
mod refresh;
mod reliability;
mod runs;
mod search;
mod secrets;
mod support;
mod upgrades;
mod watch;
mod work_order;

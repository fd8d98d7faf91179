//! Settings for enrich: the types and their layered loading.
//!
//! Layers, lowest first: built-in defaults, then the config file (`--config PATH`, else
//! `enrich.toml`, else LLMC's `llmc.toml` in the repo root; both read the `[enrichment]` table),
//! then the environment (`ENRICH_*`, `OLLAMA_HOST`, `LLMC_ENRICH_DISABLE_ROUTING`) exactly as LLMC
//! reads it, so an LLMC user's files and env keep working.
//!
//! This crate deliberately knows nothing about HTTP, SQLite or any provider's wire format: a
//! backend's `provider` is just a string that the adapter registry resolves later, and its
//! `options` are opaque JSON handed to the adapter.

mod types;

pub use types::{
    BackendSpec, DEFAULT_CHAIN, DEFAULT_MODEL, DEFAULT_OLLAMA_URL, DEFAULT_PROVIDER,
    DEFAULT_TIER, DEFAULT_TIMEOUT_SECONDS, EnrichmentConfig, OnFailure, Options, PromptConfig,
    Secret, is_secret_key, redacted_options,
};

//! Secret detection for enrich: what must never reach a model.
//!
//! Two lists, both data with the source each entry comes from:
//!
//! - [`SECRET_FILES`]: globs of files that hold secrets by their nature (private keys and
//!   certificates, key stores, `.env` files, credential stores of package managers and cloud
//!   tools). The indexer does not index them unless `[enrichment.index] include` says so.
//! - [`RULES`]: content patterns of high confidence (private-key blocks, cloud keys, tokens of
//!   well-known services, a `password = "..."` style assignment of a high-entropy value). The
//!   pipeline scans every span with a [`Scanner`] before its prompt is built and either sends
//!   the span with each match replaced by `[REDACTED:<rule id>]` ([`Scanner::redact`]) or does
//!   not send it at all; the indexer and `enrich plan` use the same scanner to report which
//!   spans carry secrets.
//!
//! The patterns are few and precise on purpose: a false positive costs a redacted word in one
//! prompt, but a broad pattern that fires on ordinary code would blank out what the model is
//! asked to describe. Findings carry the rule id and the line, never the secret itself.
//!
//! Deliberately NOT known here: files, the index, configuration, HTTP. The crate is pure
//! computation over text and depends on `regex` alone.

mod files;
mod rules;
mod scan;

pub use files::{SECRET_FILES, SecretFile};
pub use rules::{RULES, Rule};
pub use scan::{Finding, Redacted, Scanner, shannon_entropy};

#[cfg(test)]
mod tests;

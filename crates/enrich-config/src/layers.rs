//! The figment providers of the three layers, and the translation of figment's errors and
//! metadata into [`Source`]s and [`ConfigError`]s.
//!
//! Each layer is its own provider with its own metadata, so figment can tell for every merged
//! value which layer supplied it: the defaults are named, the file carries its path, and every
//! environment variable is a provider of its own whose metadata carries the variable's name
//! (figment's `Env` provider would only report the mapped key, not the variable).

use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use crate::{ConfigError, DEFAULT_CONFIG_TOML, Source};

/// The built-in defaults: [`DEFAULT_CONFIG_TOML`].
pub(crate) struct Defaults;

impl Provider for Defaults {
    fn metadata(&self) -> Metadata {
        Metadata::named("built-in defaults")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Toml::string(DEFAULT_CONFIG_TOML).data()
    }
}

/// A config file, already read (so an I/O error can name its path).
pub(crate) struct FileLayer<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Provider for FileLayer<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::from("config file", self.path)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Toml::string(self.text).data()
    }
}

/// One environment variable overriding one key of `[enrichment]`. The value stays text; the
/// lenient deserializers parse it.
pub(crate) struct EnvLayer {
    pub(crate) var: &'static str,
    pub(crate) key: &'static str,
    pub(crate) value: String,
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("env {}", self.var))
            .source(figment::Source::Custom(self.var.to_owned()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut table = Dict::new();
        table.insert(self.key.to_owned(), Value::from(self.value.clone()));
        let mut root = Dict::new();
        root.insert("enrichment".to_owned(), Value::from(table));
        Ok(Profile::Default.collect(root))
    }
}

/// The layer a figment value came from.
pub(crate) fn source_of(metadata: Option<&Metadata>) -> Source {
    match metadata.and_then(|m| m.source.as_ref()) {
        Some(figment::Source::File(path)) => Source::File(path.clone()),
        Some(figment::Source::Custom(var)) => Source::Env(var.clone()),
        _ => Source::Default,
    }
}

/// Where backend entries sit in a figment document, to name them `<label> entry <n>`.
pub(crate) struct Entries<'a> {
    /// The key path of the entry list (`["enrichment", "chain"]`).
    pub(crate) at: &'a [&'a str],
    /// How entries are named in messages (`enrichment.chain`, `chains.fast`, or empty).
    pub(crate) label: &'a str,
}

/// The name of entry `index` (counting from 0) in messages, counting from 1.
pub(crate) fn entry_label(label: &str, index: usize) -> String {
    if label.is_empty() {
        format!("entry {}", index + 1)
    } else {
        format!("{label} entry {}", index + 1)
    }
}

/// Translates a figment error into a [`ConfigError`] naming the key and the layer.
/// `origin` overrides the layer when the caller knows it (the `ENRICH_CHAIN_JSON` figment).
pub(crate) fn from_figment(
    error: figment::Error,
    entries: &Entries<'_>,
    origin: Option<Source>,
) -> ConfigError {
    let origin = origin.unwrap_or_else(|| source_of(error.metadata.as_ref()));
    let reason = reason(&error.kind);
    if let (true, Source::File(path)) = (error.path.is_empty(), &origin) {
        return ConfigError::Syntax {
            path: path.clone(),
            reason,
        };
    }
    ConfigError::Invalid {
        key: key_name(&error.path, entries),
        origin,
        line: None,
        reason,
    }
}

/// `["enrichment", "chain", "1", "model"]` → `model of enrichment.chain entry 2`.
fn key_name(path: &[String], entries: &Entries<'_>) -> String {
    let depth = entries.at.len();
    let in_entries = path.len() > depth && path.iter().zip(entries.at).all(|(a, b)| a == b);
    if in_entries && let Ok(index) = path[depth].parse::<usize>() {
        let entry = entry_label(entries.label, index);
        let rest = &path[depth + 1..];
        return if rest.is_empty() {
            entry
        } else {
            format!("{} of {entry}", rest.join("."))
        };
    }
    if path.is_empty() {
        "enrichment".to_owned()
    } else {
        path.join(".")
    }
}

/// The value and the expectation, in the form `"retry" (expected ...)`.
fn reason(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("{actual} (expected {expected})")
        }
        other => other.to_string(),
    }
}

//! Where each resolved setting came from, for `enrich config` and for error messages.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// The layer that supplied a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The built-in defaults ([`crate::DEFAULT_CONFIG_TOML`]).
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// The environment variable of this name.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in defaults"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
        }
    }
}

/// One resolved setting and the layer it came from.
///
/// Keys are dotted paths of the `[enrichment]` table (`enrichment.batch_size`,
/// `enrichment.routes.code`); a backend entry is `enrichment.chain.<chain>.<name>` with the
/// whole entry as its value, followed by `enrichment.chain.<chain>.<name>.url` when the entry set
/// no URL and one was filled in from another layer (`OLLAMA_HOST`, or the default URL). Secret-
/// looking option values are redacted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// The dotted key.
    pub key: String,
    /// The resolved value.
    pub value: serde_json::Value,
    /// Where the value came from.
    pub source: Source,
}

//! The one error type of the crate.

use std::path::PathBuf;

use crate::Source;

/// Why the configuration could not be loaded or a chain could not be selected.
///
/// Every message names where the bad value came from (the file, or the environment variable),
/// the key or entry, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `--config` names a file that does not exist.
    #[error("config file {} does not exist: check the --config path", path.display())]
    FileNotFound {
        /// The path given.
        path: PathBuf,
    },

    /// The config file exists but could not be read.
    #[error("cannot read config file {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The config file is not valid TOML.
    #[error("config file {} is not valid TOML: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },

    /// enrich's own config file has a key enrich does not read (a misspelling, most likely).
    #[error(
        "unknown key {key} in {}{}: {}",
        path.display(),
        line.map(|l| format!(", line {l}")).unwrap_or_default(),
        unknown_key_fix(suggestion.as_deref())
    )]
    UnknownKey {
        /// The key as messages name it (`enrichment.modle`, `modle of enrichment.chain entry 2`).
        key: String,
        /// The file.
        path: PathBuf,
        /// Its line, counting from 1.
        line: Option<usize>,
        /// The key enrich reads that it most resembles.
        suggestion: Option<String>,
    },

    /// Several mistakes, all reported at once (each on its own line).
    #[error("{} problems in the configuration:{}", errors.len(), each_on_a_line(errors))]
    Several {
        /// The mistakes, in the order they were found.
        errors: Vec<ConfigError>,
    },

    /// A value has the wrong type or is out of range.
    #[error(
        "invalid value for {key} in {origin}{}: {reason}",
        line.map(|l| format!(", line {l}")).unwrap_or_default()
    )]
    Invalid {
        /// The key (`enrichment.batch_size`, `timeout_seconds of enrichment.chain entry 2`).
        key: String,
        /// Where the value came from.
        origin: Source,
        /// The key's line in the config file, counting from 1, when the value came from the file.
        line: Option<usize>,
        /// The value and what was expected instead.
        reason: String,
    },

    /// A backend entry has no `name`.
    #[error(
        "{entry} in {origin}{} has no name: add {}",
        line.map(|l| format!(", line {l}")).unwrap_or_default(),
        name_hint(origin)
    )]
    UnnamedEntry {
        /// Which entry (`enrichment.chain entry 2`, counting from 1).
        entry: String,
        /// Where the entry came from.
        origin: Source,
        /// The entry's line in the config file, counting from 1, when it came from the file.
        line: Option<usize>,
    },

    /// Two entries of one chain share a name.
    #[error(
        "chain {chain:?} in {origin} has more than one entry named {name:?}: give each entry of a chain its own name"
    )]
    DuplicateName {
        /// The chain.
        chain: String,
        /// The repeated name.
        name: String,
        /// Where the second entry came from.
        origin: Source,
    },

    /// A glob of [`PathWeights`](crate::PathWeights) does not compile or has a weight outside
    /// 1–10 (the loader reports these as [`ConfigError::Invalid`], naming the file).
    #[error("path weight {glob:?}: {reason}")]
    InvalidPathWeight {
        /// The glob.
        glob: String,
        /// What is wrong and what is expected.
        reason: String,
    },

    /// `ENRICH_CHAIN_JSON` is not JSON at all.
    #[error(
        "ENRICH_CHAIN_JSON is not valid JSON: {reason} (expected a list of backend entries or {{\"chains\": {{...}}}})"
    )]
    ChainJsonSyntax {
        /// The JSON parser's message.
        reason: String,
    },

    /// `ENRICH_CHAIN_JSON` is JSON of the wrong shape.
    #[error(
        "ENRICH_CHAIN_JSON has the wrong shape: found {found} (expected a list of backend entries or {{\"chains\": {{\"<chain>\": [entries]}}}})"
    )]
    ChainJsonShape {
        /// What was found instead (`a number`, `chains.fast: a string`).
        found: String,
    },

    /// An environment variable enrich reads holds bytes that are not UTF-8.
    #[error("env {var} is not valid UTF-8: set it to plain text or unset it")]
    EnvNotUnicode {
        /// The variable.
        var: String,
    },

    /// No backend entry belongs to the default chain.
    #[error(
        "default chain {chain:?} has no backend in {origin}: add a [[enrichment.chain]] entry with chain = {chain:?}, or set enrichment.default_chain to one of: {}",
        chain_list(available)
    )]
    DefaultChainMissing {
        /// The default chain's name.
        chain: String,
        /// The config file, or the layer the chains came from.
        origin: Source,
        /// The chains that do exist.
        available: Vec<String>,
    },

    /// Every entry of the default chain is disabled.
    #[error(
        "default chain {chain:?} in {origin} has no enabled backend: set enabled = true on one of its entries ({})",
        entries.join(", ")
    )]
    DefaultChainDisabled {
        /// The default chain's name.
        chain: String,
        /// Where its entries came from.
        origin: Source,
        /// The names of its (disabled) entries.
        entries: Vec<String>,
    },

    /// [`crate::select_chain`] was asked for a chain that has no entry.
    #[error("chain {name:?} does not exist: use one of: {}", chain_list(available))]
    UnknownChain {
        /// The chain asked for.
        name: String,
        /// The chains that have an enabled backend.
        available: Vec<String>,
    },

    /// [`crate::select_chain`] was asked for a chain whose entries are all disabled.
    #[error(
        "chain {name:?} has no enabled backend: set enabled = true on one of its entries ({}), or use one of: {}",
        entries.join(", "),
        chain_list(available)
    )]
    ChainDisabled {
        /// The chain asked for.
        name: String,
        /// The names of its (disabled) entries.
        entries: Vec<String>,
        /// The chains that have an enabled backend.
        available: Vec<String>,
    },
}

impl ConfigError {
    /// One error for `errors`: the error itself when there is one, [`ConfigError::Several`]
    /// when there are more. `None` when there are none.
    pub(crate) fn combine(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Several { errors }),
        }
    }
}

fn unknown_key_fix(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(known) => format!(
            "did you mean `{known}`? (enrich stops at keys it does not read; `enrich init` prints every key)"
        ),
        None => "enrich does not read it; remove it, or fix its spelling (`enrich init` prints every key)".to_owned(),
    }
}

fn each_on_a_line(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("\n  - {e}")).collect()
}

/// How to write a name in the syntax of the entry's origin.
fn name_hint(origin: &Source) -> &'static str {
    match origin {
        Source::Env(_) => "\"name\": \"...\"",
        Source::Default | Source::File(_) => "name = \"...\"",
    }
}

fn chain_list(chains: &[String]) -> String {
    if chains.is_empty() {
        "(no chain has an enabled backend)".to_owned()
    } else {
        chains.join(", ")
    }
}

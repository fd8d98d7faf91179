//! `enrich config`: the resolved configuration and where each value came from; with
//! `--schema`, the JSON Schema of `enrich.toml`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use enrich_config::{IgnoredKey, Setting};
use serde::Serialize;

use crate::context::Repo;
use crate::exit::Exit;
use crate::output;

/// The `--json` document.
#[derive(Serialize)]
struct ConfigReport<'a> {
    /// The config file read, if any.
    file: Option<&'a PathBuf>,
    /// Every resolved setting with its source; secret-looking options are redacted.
    settings: &'a [Setting],
    /// Keys enrich does not read, each with where it is and what it may have meant.
    ignored_keys: &'a [IgnoredKey],
}

/// Prints the resolved configuration.
pub(crate) fn config(repo: &Repo, json: bool) -> Result<Exit> {
    let loaded = repo.load_config_quietly()?;
    if json {
        output::json(&ConfigReport {
            file: loaded.file.as_ref(),
            settings: loaded.provenance(),
            ignored_keys: loaded.ignored_keys(),
        })?;
    } else {
        let mut text = String::new();
        match &loaded.file {
            Some(file) => writeln!(text, "# config file: {}", file.display())?,
            None => writeln!(
                text,
                "# config file: none (built-in defaults and environment only; `enrich init` writes one)"
            )?,
        }
        let width = loaded
            .provenance()
            .iter()
            .map(|s| s.key.len())
            .max()
            .unwrap_or(0);
        for setting in loaded.provenance() {
            writeln!(
                text,
                "{:width$} = {}    # {}",
                setting.key, setting.value, setting.source
            )?;
        }
        output::text(&text)?;
        let mut warnings = String::new();
        for key in loaded.ignored_keys() {
            writeln!(warnings, "warning: {key}")?;
        }
        output::note(&warnings);
    }
    Ok(Exit::Success)
}

/// Prints the JSON Schema of `enrich.toml` (JSON with or without `--json`).
pub(crate) fn schema() -> Result<Exit> {
    output::json(&enrich_config::config_file_schema())?;
    Ok(Exit::Success)
}

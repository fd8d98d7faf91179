//! `enrich init`: write the commented default configuration.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use enrich_config::{CONFIG_FILE_NAMES, DEFAULT_CONFIG_TOML};
use serde::Serialize;

use crate::context::Repo;
use crate::exit::{Exit, usage};
use crate::output;

#[derive(Serialize)]
struct Written {
    written: PathBuf,
}

/// Writes [`DEFAULT_CONFIG_TOML`] to `--config PATH`, else `<repo>/enrich.toml`; never overwrites.
pub(crate) fn init(repo: &Repo, json: bool) -> Result<Exit> {
    let target = repo
        .config_path
        .clone()
        .unwrap_or_else(|| repo.root.join(CONFIG_FILE_NAMES[0]));
    // `create_new` refuses an existing file atomically: no check-then-write race.
    let mut file = match std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&target)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(usage(format!(
                "{} already exists, so it was left as it is; edit it, or move it away and run `enrich init` again",
                target.display()
            )));
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create {}", target.display()));
        }
    };
    file.write_all(DEFAULT_CONFIG_TOML.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", target.display()))?;

    if json {
        output::json(&Written { written: target })?;
    } else {
        let mut text = format!("wrote {}\n", target.display());
        let llmc = repo.root.join(CONFIG_FILE_NAMES[1]);
        if repo.config_path.is_none() && llmc.is_file() {
            text.push_str(&format!(
                "note: {} is read no more: enrich.toml takes its place (copy your [enrichment] settings over)\n",
                llmc.display()
            ));
        }
        text.push_str(
            "next: set your backends under [[enrichment.chain]], then run `enrich doctor`\n",
        );
        output::text(&text)?;
    }
    Ok(Exit::Success)
}

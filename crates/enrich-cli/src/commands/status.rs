//! `enrich status`: counts of the index, read-only.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use enrich_db::{GroupCount, Run, Stats};
use serde::Serialize;

use crate::context::Repo;
use crate::exit::Exit;
use crate::output;
use crate::time::format_ms;

/// The `--json` document: the database's [`Stats`] and which file they are of.
#[derive(Serialize)]
struct StatusReport<'a> {
    db: &'a Path,
    #[serde(flatten)]
    stats: &'a Stats,
}

/// Prints the index's counts. Opens the database read-only: safe next to a running `enrich run`.
pub(crate) fn status(repo: &Repo, json: bool) -> Result<Exit> {
    let db = repo.open_read_only()?;
    let stats = db.stats()?;
    if json {
        output::json(&StatusReport {
            db: &repo.db_path,
            stats: &stats,
        })?;
    } else {
        output::text(&render(&repo.db_path, &stats)?)?;
    }
    Ok(Exit::Success)
}

fn render(db: &Path, stats: &Stats) -> Result<String> {
    let mut text = String::new();
    writeln!(text, "index          {}", db.display())?;
    writeln!(text, "files          {}", stats.files)?;
    writeln!(text, "spans          {}", stats.spans)?;
    writeln!(text, "enriched       {}", stats.enriched)?;
    writeln!(text, "pending        {}", stats.pending)?;
    writeln!(text, "  failing      {}", stats.failing)?;
    writeln!(text, "dead-lettered  {}", stats.dead_lettered)?;
    write_groups(&mut text, "by model", &stats.by_model)?;
    write_groups(&mut text, "by backend host", &stats.by_backend_host)?;
    match &stats.last_run {
        Some(run) => write_run(&mut text, run)?,
        None => writeln!(text, "last run       none")?,
    }
    if stats.dead_lettered > 0 {
        writeln!(
            text,
            "\n{} span(s) are dead-lettered: `enrich failures` lists them, `enrich failures --requeue-all` retries them",
            stats.dead_lettered
        )?;
    }
    Ok(text)
}

fn write_groups(text: &mut String, title: &str, groups: &[GroupCount]) -> std::fmt::Result {
    if groups.is_empty() {
        return Ok(());
    }
    writeln!(text, "{title}")?;
    for group in groups {
        let key = group.key.as_deref().unwrap_or("(unknown)");
        writeln!(text, "  {key:<40} {}", group.count)?;
    }
    Ok(())
}

fn write_run(text: &mut String, run: &Run) -> std::fmt::Result {
    let ended = match run.finished_at_ms {
        Some(ms) => format!(", ended {}", format_ms(ms)),
        None => String::new(),
    };
    writeln!(
        text,
        "last run       #{} {}, started {}{ended}",
        run.id,
        run.status.as_str(),
        format_ms(run.started_at_ms)
    )?;
    let c = &run.counts;
    writeln!(
        text,
        "               {} attempted, {} succeeded, {} failed, {} skipped",
        c.attempted, c.succeeded, c.failed, c.skipped
    )
}

//! `enrich failures`: list dead-lettered spans, or put them back in the queue.

use std::fmt::Write as _;

use anyhow::Result;
use enrich_db::FailureEntry;
use serde::Serialize;

use crate::cli::FailuresArgs;
use crate::context::Repo;
use crate::exit::{Exit, usage};
use crate::output;
use crate::time::format_ms;

/// The `--json` document of a requeue.
#[derive(Serialize)]
struct Requeued {
    requeued: usize,
}

/// Lists dead letters (read-only), or requeues one or all of them.
pub(crate) fn failures(repo: &Repo, args: &FailuresArgs, json: bool) -> Result<Exit> {
    if let Some(hash) = &args.requeue {
        let mut db = repo.open_existing()?;
        let requeued = db.requeue(hash)?;
        if requeued == 0 {
            return Err(usage(format!(
                "span {hash} has no recorded failure, so there is nothing to requeue; `enrich failures` lists the dead-lettered spans"
            )));
        }
        return report_requeued(requeued, json);
    }
    if args.requeue_all {
        let mut db = repo.open_existing()?;
        let requeued = db.requeue_all_dead_letters()?;
        return report_requeued(requeued, json);
    }
    let dead = repo.open_read_only()?.dead_letters()?;
    if json {
        output::json(&dead)?;
    } else {
        output::text(&render(&dead)?)?;
    }
    Ok(Exit::Success)
}

fn report_requeued(requeued: usize, json: bool) -> Result<Exit> {
    if json {
        output::json(&Requeued { requeued })?;
    } else {
        output::text(&format!(
            "requeued {requeued} span(s): the next `enrich run` retries them\n"
        ))?;
    }
    Ok(Exit::Success)
}

fn render(dead: &[FailureEntry]) -> Result<String> {
    let mut text = String::new();
    if dead.is_empty() {
        writeln!(text, "no dead-lettered spans")?;
        return Ok(text);
    }
    for entry in dead {
        let place = match (&entry.file_path, &entry.symbol) {
            (Some(path), Some(symbol)) => format!("{path} {symbol}"),
            (Some(path), None) => path.clone(),
            _ => "(span no longer in the index)".to_owned(),
        };
        let when = entry
            .dead_lettered_at_ms
            .map(|ms| format!(", since {}", format_ms(ms)))
            .unwrap_or_default();
        writeln!(text, "{}  {place}", entry.span_hash)?;
        writeln!(
            text,
            "    failed {} run(s) in a row{when}; last: {}: {}",
            entry.consecutive_failures, entry.last_failure_kind, entry.last_message
        )?;
    }
    writeln!(
        text,
        "\n{} dead-lettered span(s); `enrich show SPAN_HASH` shows the attempts, `enrich failures --requeue SPAN_HASH` or `--requeue-all` retries them",
        dead.len()
    )?;
    Ok(text)
}

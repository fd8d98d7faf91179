//! `select-batch`: how long selecting the next page of pending spans takes.
//!
//! The first page as a run reads it: from the span-id lane's pending frontier when the index
//! has a valid one (a run records it when it ends), reading the frontier included. For
//! reference, the first page from cursor `0` (what every run paid before frontiers: every
//! enriched span at the front of the table), and a page 90% of the way through `spans.id` (a
//! page deep into a long run). Each is timed `--iterations` times on one read-only connection;
//! the median and the 95th percentile are reported, and the time of one exact pending count (what
//! a run does once when it starts).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use enrich_db::{Db, FrontierLane};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Value, json};

use crate::args::SelectArgs;

/// The `spans.id` 90% of the way through the table (0 for an empty table).
const DEEP_CURSOR_SQL: &str = "SELECT id FROM spans ORDER BY id \
     LIMIT 1 OFFSET (SELECT COUNT(*) FROM spans) * 9 / 10";

/// The median and the 95th percentile of `samples`, in milliseconds.
pub(crate) fn summarize(samples: &mut [Duration]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() - 1) as f64 * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.95))
}

/// `enrich-bench select-batch`.
pub(crate) fn run(args: &SelectArgs) -> Result<Value> {
    let db_path = args
        .db
        .clone()
        .unwrap_or_else(|| enrich_db::default_db_path(&args.repo));
    let (batch_size, iterations) = (args.batch_size, args.iterations);
    if !db_path.is_file() {
        bail!(
            "{} does not exist: write a synthetic index with `enrich-bench gen-db` first",
            db_path.display()
        );
    }

    let deep_cursor: i64 = Connection::open_with_flags(&db_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|conn| {
            conn.query_row(DEEP_CURSOR_SQL, [], |row| row.get(0))
                .optional()
        })
        .with_context(|| format!("could not read the span ids of {}", db_path.display()))?
        .unwrap_or(0);
    let db = Db::open_read_only(&db_path)?;
    let counted = Instant::now();
    let pending = db.pending_count()?;
    let pending_count_ms = counted.elapsed().as_secs_f64() * 1000.0;
    let frontier = db.frontier(&FrontierLane::SpanId)?.map(|key| key.span_id);
    // `None`: from the frontier, read each time as a run does.
    let time_page = |cursor: Option<i64>| -> Result<(f64, f64, usize)> {
        let mut samples = Vec::with_capacity(usize::try_from(iterations).unwrap_or(0));
        let mut rows = 0;
        for _ in 0..iterations {
            let started = Instant::now();
            let from = match cursor {
                Some(cursor) => cursor,
                None => db
                    .frontier(&FrontierLane::SpanId)?
                    .map_or(0, |key| key.span_id),
            };
            rows = db.pending_spans(from, batch_size)?.len();
            samples.push(started.elapsed());
        }
        let (median, p95) = summarize(&mut samples);
        Ok((median, p95, rows))
    };
    let (first_ms, first_p95_ms, first_rows) = time_page(None)?;
    let (zero_ms, zero_p95_ms, _) = time_page(Some(0))?;
    let (deep_ms, deep_p95_ms, deep_rows) = time_page(Some(deep_cursor))?;
    Ok(json!({
        "command": "select-batch",
        "batch_size": batch_size,
        "iterations": iterations,
        "pending": pending,
        "pending_count_ms": pending_count_ms,
        "frontier": frontier,
        "first_page_ms": first_ms,
        "first_page_p95_ms": first_p95_ms,
        "first_page_rows": first_rows,
        "from_zero_page_ms": zero_ms,
        "from_zero_page_p95_ms": zero_p95_ms,
        "deep_cursor": deep_cursor,
        "deep_page_ms": deep_ms,
        "deep_page_p95_ms": deep_p95_ms,
        "deep_page_rows": deep_rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95_of_samples() {
        let mut samples: Vec<Duration> = [5, 1, 4, 2, 3]
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect();
        assert_eq!(summarize(&mut samples), (3.0, 5.0));
        assert_eq!(summarize(&mut []), (0.0, 0.0));
    }
}

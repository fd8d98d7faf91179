//! `search`: how long `enrich search` takes on a large index.
//!
//! On an index `gen-db` wrote, stores a synthetic enrichment for every span that has none (in
//! bulk, on a plain connection, so enrich's triggers do not see them), then opens the index
//! read-write as enrich does, which adds them to the search table (the cost of building it for
//! enrichments another program stored, also what migration 12 costs on such an index). Then
//! times [`Db::search`] on a read-only connection for a few kinds of query, `--iterations`
//! times each: the median and the 95th percentile.
//!
//! The summaries are 20 words drawn from a vocabulary of [`VOCABULARY`] words with a skewed
//! distribution (the product of two uniform draws: the first words are very common, the last
//! rare, as in real text), so the queries below meet short and long posting lists.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use enrich_db::{Db, QuerySyntax, SearchQuery};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::args::SearchArgs;
use crate::select::summarize;

/// Distinct words the summaries are drawn from.
const VOCABULARY: u64 = 5_000;
/// Words per summary.
const SUMMARY_WORDS: u64 = 20;

/// Word number `n` of the vocabulary: a pronounceable token (`bakodi`, …), unique per number.
fn word(n: u64) -> String {
    const SYLLABLES: [&str; 16] = [
        "ba", "ko", "di", "ru", "me", "sa", "ti", "lo", "ne", "pu", "ga", "fe", "zo", "hi", "va",
        "ju",
    ];
    let mut n = n;
    let mut text = String::new();
    loop {
        text.push_str(SYLLABLES[(n % 16) as usize]);
        n /= 16;
        if n == 0 {
            break;
        }
    }
    text
}

/// A small deterministic generator (SplitMix64): the same index every time.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A word number, skewed toward 0.
    fn skewed(&mut self) -> u64 {
        (self.next() % VOCABULARY) * (self.next() % VOCABULARY) / VOCABULARY
    }
}

/// Stores an enrichment for every span without one; returns how many.
fn fill(db_path: &std::path::Path) -> Result<u64> {
    let mut conn = Connection::open(db_path)
        .with_context(|| format!("could not open {}", db_path.display()))?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")
        .context("could not set up the index for loading")?;
    let tx = conn.transaction().context("could not start writing")?;
    let mut added = 0u64;
    {
        let mut spans = tx.prepare(
            "SELECT s.span_hash FROM spans AS s WHERE NOT EXISTS \
             (SELECT 1 FROM enrichments AS e WHERE e.span_hash = s.span_hash) ORDER BY s.id",
        )?;
        let mut insert = tx.prepare(
            "INSERT INTO enrichments (span_hash, summary, inputs, outputs, side_effects, \
             pitfalls, model, schema_ver, created_at) \
             VALUES (?1, ?2, ?3, ?4, '[]', ?5, 'bench', 'enrichment.v1', 0)",
        )?;
        let hashes: Vec<String> = spans
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut draws = Draws(7);
        for hash in hashes {
            let mut words =
                |n: u64| -> Vec<String> { (0..n).map(|_| word(draws.skewed())).collect() };
            let summary = format!("{}.", words(SUMMARY_WORDS).join(" "));
            let list = |items: Vec<String>| serde_json::to_string(&items).unwrap_or_default();
            insert.execute(params![
                hash,
                summary,
                list(words(2)),
                list(words(2)),
                list(words(1)),
            ])?;
            added += 1;
        }
    }
    tx.commit().context("could not commit the enrichments")?;
    Ok(added)
}

/// `enrich-bench search`.
pub(crate) fn run(args: &SearchArgs) -> Result<Value> {
    let db_path = args
        .db
        .clone()
        .unwrap_or_else(|| enrich_db::default_db_path(&args.repo));
    if !db_path.is_file() {
        bail!(
            "{} does not exist: write a synthetic index with `enrich-bench gen-db` first",
            db_path.display()
        );
    }
    let filled = Instant::now();
    let added = fill(&db_path)?;
    let fill_seconds = filled.elapsed().as_secs_f64();
    let built = Instant::now();
    drop(Db::open(&db_path)?);
    let build_seconds = built.elapsed().as_secs_f64();

    let db = Db::open_read_only(&db_path)?;
    let spans: u64 = Connection::open(&db_path)
        .and_then(|c| c.query_row("SELECT count(*) FROM spans", [], |row| row.get(0)))
        .context("could not count the spans")?;
    let symbol = format!("span_{}", spans / 2);
    let queries: Vec<(&str, SearchQuery)> = vec![
        ("uncommon word", SearchQuery::words(word(VOCABULARY / 2))),
        ("common word", SearchQuery::words(word(0))),
        (
            "three words",
            SearchQuery::words(format!("{} {} {}", word(40), word(400), word(4000))),
        ),
        ("symbol", SearchQuery::words(symbol.clone())),
        (
            "a word of every span and an uncommon one",
            SearchQuery::words(format!("span {}", word(VOCABULARY / 2))),
        ),
        (
            "common word, path and language filters",
            SearchQuery {
                path: Some("src/file_000*".to_owned()),
                language: Some("rust".to_owned()),
                ..SearchQuery::words(word(1))
            },
        ),
        (
            "fts5 prefix",
            SearchQuery {
                syntax: QuerySyntax::Fts5,
                ..SearchQuery::words(format!("{}*", word(16)))
            },
        ),
    ];
    let mut results = Vec::new();
    let mut worst = 0.0f64;
    for (name, query) in &queries {
        let mut samples = Vec::with_capacity(usize::try_from(args.iterations).unwrap_or(0));
        let mut hits = 0;
        for _ in 0..args.iterations {
            let started = Instant::now();
            hits = db.search(query)?.len();
            samples.push(started.elapsed());
        }
        let first = samples.first().copied().unwrap_or(Duration::ZERO);
        let (median, p95) = summarize(&mut samples);
        worst = worst.max(median);
        results.push(json!({
            "query": name,
            "text": query.text,
            "hits": hits,
            "first_ms": first.as_secs_f64() * 1000.0,
            "median_ms": median,
            "p95_ms": p95,
        }));
    }
    Ok(json!({
        "command": "search",
        "spans": spans,
        "enrichments_added": added,
        "fill_seconds": fill_seconds,
        "search_table_seconds": build_seconds,
        "iterations": args.iterations,
        "worst_median_ms": worst,
        "queries": results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_draws_lean_to_the_first_words() {
        let words: std::collections::HashSet<String> = (0..VOCABULARY).map(word).collect();
        assert_eq!(words.len() as u64, VOCABULARY);
        let mut draws = Draws(1);
        let low = (0..10_000)
            .filter(|_| draws.skewed() < VOCABULARY / 10)
            .count();
        assert!(low > 2_000, "{low}");
    }
}

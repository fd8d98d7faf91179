//! Scenario 7, search: `enrich search`'s query on a large index of enriched spans
//! (`enrich-bench search`), the median time per kind of query.
//!
//! The index (generated spans, a synthetic enrichment each, the search table built) takes
//! minutes at a million spans, so it is kept between bench runs in
//! `target/bench/search-cache/spans-N/` and made again only when [`CACHE_VERSION`] changes or a
//! build of it did not finish. Searching only reads it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use super::report::{Row, median};
use super::{Bench, path_str, say};

/// What the cached index was made by: change it when `gen-db`'s or `search`'s generated
/// content changes, so an old cache is made again.
const CACHE_VERSION: &str = "search-cache v1";

/// The file whose content says the cached index is complete (and of which version).
const MARKER: &str = "complete";

/// Runs of each query per sample.
const ITERATIONS: u32 = 20;

impl Bench {
    pub(super) fn search(&self) -> Result<Row> {
        let spans = self.sizes.search;
        say(&format!("7 search: {spans}-span enriched index"));
        let (repo, built) = self.search_index(spans)?;
        let mut worst = Vec::new();
        let mut per_query: Vec<Vec<f64>> = Vec::new();
        let mut last = Value::Null;
        for _ in 0..self.runs {
            let report = self.tool_json(&[
                "search",
                "--repo",
                path_str(&repo)?,
                "--iterations",
                &ITERATIONS.to_string(),
            ])?;
            let queries = report["queries"]
                .as_array()
                .context("no queries reported")?;
            for (i, query) in queries.iter().enumerate() {
                ensure!(
                    query["hits"].as_u64().unwrap_or(0) > 0,
                    "the query {} found nothing",
                    query["text"]
                );
                if per_query.len() <= i {
                    per_query.push(Vec::new());
                }
                per_query[i].push(query["median_ms"].as_f64().unwrap_or(f64::NAN));
            }
            worst.push(report["worst_median_ms"].as_f64().unwrap_or(f64::NAN));
            last = report;
        }
        let value = median(&worst);
        let names: Vec<String> = last["queries"]
            .as_array()
            .map(|qs| {
                qs.iter()
                    .zip(&per_query)
                    .map(|(q, samples)| {
                        format!(
                            "{} {:.1}",
                            q["query"].as_str().unwrap_or("?"),
                            median(samples)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        say(&format!(
            "  worst median {value:.1} ms ({})",
            names.join(", ")
        ));
        let mut row = Row::new(
            "search",
            format!("7 search, {spans}-span enriched index (slowest kind of query)"),
            "ms",
        );
        row.measured = format!("{value:.1} ms median ({})", names.join(", "));
        row.target = "< 100 ms".to_owned();
        row.met = Some(value < 100.0);
        row.value = Some(value);
        row.samples = worst;
        row.detail = json!({ "index": built, "last_run": last });
        Ok(row)
    }

    /// The cached enriched index of `spans` spans, made first when missing or stale; and how it
    /// was made (its report, with the seconds each step took).
    fn search_index(&self, spans: u64) -> Result<(PathBuf, Value)> {
        let cache = self
            .work
            .with_file_name("search-cache")
            .join(format!("spans-{spans}"));
        let marker = cache.join(MARKER);
        if let Some(built) = read_marker(&marker) {
            say(&format!("  cached index {}", cache.display()));
            return Ok((cache, built));
        }
        if cache.exists() {
            fs::remove_dir_all(&cache)
                .with_context(|| format!("could not clear {}", cache.display()))?;
        }
        say(&format!(
            "  building {} (kept for later runs)",
            cache.display()
        ));
        let generated = self.tool_json(&[
            "gen-db",
            "--spans",
            &spans.to_string(),
            "--out",
            path_str(&cache)?,
        ])?;
        // Searching reads the index only; the generated source is not needed.
        let src = cache.join("src");
        fs::remove_dir_all(&src).with_context(|| format!("could not remove {}", src.display()))?;
        let first =
            self.tool_json(&["search", "--repo", path_str(&cache)?, "--iterations", "1"])?;
        let built = json!({
            "version": CACHE_VERSION,
            "gen_db_seconds": generated["seconds"],
            "fill_seconds": first["fill_seconds"],
            "search_table_seconds": first["search_table_seconds"],
        });
        say(&format!(
            "  enrichments stored in {:.1} s, search table built in {:.1} s",
            first["fill_seconds"].as_f64().unwrap_or(0.0),
            first["search_table_seconds"].as_f64().unwrap_or(0.0)
        ));
        fs::write(&marker, built.to_string())
            .with_context(|| format!("could not write {}", marker.display()))?;
        Ok((cache, built))
    }
}

/// The report of a complete cached index of this [`CACHE_VERSION`], if `marker` holds one.
fn read_marker(marker: &Path) -> Option<Value> {
    let text = fs::read_to_string(marker).ok()?;
    let built: Value = serde_json::from_str(&text).ok()?;
    (built["version"] == CACHE_VERSION).then_some(built)
}

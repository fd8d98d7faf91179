//! Scenario 3, latency-bound: one `fake-ollama` at [`LATENCY_MS`] with [`SLOTS`] slots (3a),
//! then two as one backend's host pool (3b), as a share of what the slots allow.

use anyhow::{Result, ensure};
use serde_json::json;

use super::process::{FakeServer, generations};
use super::repo::{Entry, Repo};
use super::report::{Row, median};
use super::{Bench, CONCURRENCY_PER_HOST, LATENCY_MS, SLOTS, say};

impl Bench {
    /// Runs `limit` spans against `servers` at [`LATENCY_MS`], one backend host per server;
    /// returns spans/s per run and the requests each server got in the last run.
    pub(super) fn latency_runs(
        &self,
        repo: &Repo,
        name: &str,
        entries: &[Entry<'_>],
        servers: &[&FakeServer],
        hosts: u32,
        limit: u64,
    ) -> Result<(Vec<f64>, Vec<u64>)> {
        let config = self.write_config(name, entries, CONCURRENCY_PER_HOST * hosts)?;
        let mut rates = Vec::new();
        let mut per_server = Vec::new();
        for run in 0..self.runs {
            let db = self.fresh_db(repo)?;
            let before: Vec<u64> = servers
                .iter()
                .map(|s| s.stats().map(|v| generations(&v)))
                .collect::<Result<_>>()?;
            let outcome = self.enrich_run(repo, &db, &config, Some(limit), name)?;
            per_server = servers
                .iter()
                .zip(&before)
                .map(|(s, b)| s.stats().map(|v| generations(&v) - b))
                .collect::<Result<_>>()?;
            let succeeded = outcome.report["succeeded"].as_u64().unwrap_or(0);
            ensure!(
                succeeded == limit,
                "{name} run {run}: {succeeded} of {limit} spans enriched (exit {})",
                outcome.status
            );
            rates.push(outcome.report["spans_per_sec"].as_f64().unwrap_or(0.0));
        }
        Ok((rates, per_server))
    }

    pub(super) fn latency(&self, repo: &Repo) -> Result<Row> {
        let spans = self.sizes.latency;
        let limit = f64::from(SLOTS) * 1000.0 / f64::from(LATENCY_MS);
        say(&format!(
            "3 latency: fake-ollama at {LATENCY_MS} ms, {SLOTS} slots, {spans} spans (limit {limit:.0} spans/s)"
        ));
        let server = FakeServer::start(&self.fake, LATENCY_MS)?;
        let entries = [Entry::fake(&server)];
        let (rates, _) = self.latency_runs(repo, "latency", &entries, &[&server], 1, spans)?;
        let fractions: Vec<f64> = rates.iter().map(|r| r / limit).collect();
        let value = median(&fractions);
        say(&format!(
            "  {:.2} spans/s = {:.1}% of {limit:.0}",
            median(&rates),
            value * 100.0
        ));
        let mut row = Row::new(
            "latency",
            format!(
                "3a latency: {LATENCY_MS} ms, {SLOTS} slots, max_in_flight {SLOTS}, {spans} spans"
            ),
            "fraction",
        );
        row.measured = format!(
            "{:.2} spans/s = {:.1}% of {limit:.0}",
            median(&rates),
            value * 100.0
        );
        row.target = "≥ 95%".to_owned();
        row.met = Some(value >= 0.95);
        row.value = Some(value);
        row.samples = fractions;
        row.detail = json!({ "spans_per_sec": rates, "limit": limit });
        Ok(row)
    }

    pub(super) fn pool(&self, repo: &Repo) -> Result<Row> {
        let spans = self.sizes.pool;
        let limit = 2.0 * f64::from(SLOTS) * 1000.0 / f64::from(LATENCY_MS);
        say(&format!(
            "3b host pool: two fake-ollama servers as one backend's urls, {spans} spans (limit {limit:.0} spans/s)"
        ));
        let a = FakeServer::start(&self.fake, LATENCY_MS)?;
        let b = FakeServer::start(&self.fake, LATENCY_MS)?;
        let entries = [Entry {
            name: "pool",
            urls: vec![a.url.clone(), b.url.clone()],
        }];
        let mut row = Row::new(
            "pool",
            format!("3b host pool: 2 × ({LATENCY_MS} ms, {SLOTS} slots), {spans} spans"),
            "fraction",
        );
        row.target = "≥ 95%".to_owned();
        let (rates, per_server) =
            match self.latency_runs(repo, "pool", &entries, &[&a, &b], 2, spans) {
                Ok(result) => result,
                Err(error) => {
                    row.measured = "n/a: host pools not available".to_owned();
                    row.detail = json!({ "error": format!("{error:#}") });
                    say(&format!("  n/a: the run failed: {error:#}"));
                    return Ok(row);
                }
            };
        if per_server.contains(&0) {
            row.measured = "n/a: host pools not available".to_owned();
            row.detail = json!({ "requests_per_server": per_server, "spans_per_sec": rates });
            say(&format!(
                "  n/a: requests per server {per_server:?} (one server got none: `urls` is not a host pool yet)"
            ));
            return Ok(row);
        }
        let fractions: Vec<f64> = rates.iter().map(|r| r / limit).collect();
        let value = median(&fractions);
        say(&format!(
            "  {:.2} spans/s = {:.1}% of {limit:.0}; requests per server {per_server:?}",
            median(&rates),
            value * 100.0
        ));
        row.measured = format!(
            "{:.2} spans/s = {:.1}% of {limit:.0}",
            median(&rates),
            value * 100.0
        );
        row.met = Some(value >= 0.95);
        row.value = Some(value);
        row.samples = fractions;
        row.detail =
            json!({ "spans_per_sec": rates, "requests_per_server": per_server, "limit": limit });
        Ok(row)
    }
}

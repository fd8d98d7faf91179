//! Scenario 1, overhead: the full pipeline with an instant in-process backend
//! (`enrich-bench overhead`), spans/s.

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use super::repo::Repo;
use super::report::{Row, median};
use super::{Bench, CONCURRENCY_PER_HOST, path_str, say};

impl Bench {
    pub(super) fn overhead(&self, repo: &Repo) -> Result<Row> {
        let spans = self.sizes.overhead;
        say(&format!(
            "1 overhead: full pipeline, instant backend, {spans} spans"
        ));
        let mut samples = Vec::new();
        let mut cpu = Vec::new();
        let mut last = Value::Null;
        for _ in 0..self.runs {
            let db = self.fresh_db(repo)?;
            let events = self.events_path();
            let report = self.tool_json(&[
                "overhead",
                "--repo",
                path_str(&repo.root)?,
                "--db",
                path_str(&db)?,
                "--concurrency",
                &CONCURRENCY_PER_HOST.to_string(),
                "--events",
                path_str(&events)?,
            ])?;
            ensure!(
                report["succeeded"].as_u64() == Some(repo.spans),
                "the overhead run enriched {} of {} spans",
                report["succeeded"],
                repo.spans
            );
            samples.push(report["spans_per_sec"].as_f64().unwrap_or(0.0));
            cpu.push(report["cpu_us_per_span"].as_f64().unwrap_or(f64::NAN));
            last = report;
        }
        let value = median(&samples);
        let cpu_us = median(&cpu);
        say(&format!(
            "  {value:.0} spans/s, {cpu_us:.0} µs of CPU per span"
        ));
        let mut row = Row::new(
            "overhead",
            format!("1 overhead: instant backend, {spans} spans"),
            "spans/s",
        );
        row.measured = format!("{value:.0} spans/s ({cpu_us:.0} µs CPU/span)");
        row.target = "≥ 20000 spans/s".to_owned();
        row.met = Some(value >= 20_000.0);
        row.value = Some(value);
        row.samples = samples;
        row.detail = json!({ "cpu_us_per_span": cpu, "last_run": last });
        Ok(row)
    }
}

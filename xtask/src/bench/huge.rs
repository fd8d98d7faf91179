//! Scenario 6, huge answers: a first backend answering every span with 100 MB, at
//! concurrency 4: the peak RSS of `enrich run`.

use anyhow::{Result, ensure};

use super::process::FakeServer;
use super::repo::{Entry, Repo};
use super::report::{Row, median};
use super::{Bench, say};

/// The size of every answer of the huge-answers scenario's first backend.
pub(super) const HUGE_ANSWER_BYTES: u64 = 100_000_000;
/// Spans in flight in the huge-answers scenario.
pub(super) const HUGE_CONCURRENCY: u32 = 4;

impl Bench {
    pub(super) fn huge_answers(&self, repo: &Repo) -> Result<Row> {
        let spans = self.sizes.huge;
        say(&format!(
            "6 huge answers: the first backend answers {} MB each, concurrency {HUGE_CONCURRENCY}, \
             {spans} spans",
            HUGE_ANSWER_BYTES / 1_000_000
        ));
        let huge = FakeServer::spawn(
            &self.fake,
            0,
            &[
                "--fault-rate",
                "oversized=1",
                "--oversized-bytes",
                &HUGE_ANSWER_BYTES.to_string(),
            ],
        )?;
        let solid = FakeServer::start(&self.fake, 0)?;
        let entries = [
            Entry {
                name: "huge",
                urls: vec![huge.url.clone()],
            },
            Entry::fake(&solid),
        ];
        let config = self.write_config("huge", &entries, HUGE_CONCURRENCY)?;
        let mut rss = Vec::new();
        for run in 0..self.runs {
            let db = self.fresh_db(repo)?;
            let before = huge.stats()?["outcomes"]["oversized"].as_u64().unwrap_or(0);
            let outcome = self.enrich_run(repo, &db, &config, Some(spans), "huge")?;
            let succeeded = outcome.report["succeeded"].as_u64().unwrap_or(0);
            ensure!(
                succeeded == spans,
                "huge answers run {run}: {succeeded} of {spans} spans enriched (exit {})",
                outcome.status
            );
            let oversized = huge.stats()?["outcomes"]["oversized"].as_u64().unwrap_or(0) - before;
            ensure!(
                oversized == spans,
                "huge answers run {run}: {oversized} oversized answers for {spans} spans"
            );
            rss.push(outcome.peak_rss_kb as f64 / 1024.0);
        }
        let peak = median(&rss);
        say(&format!("  peak RSS {peak:.1} MB"));
        let mut row = Row::new(
            "huge_answers",
            format!(
                "6 peak RSS, {} MB answers at concurrency {HUGE_CONCURRENCY}, {spans} spans",
                HUGE_ANSWER_BYTES / 1_000_000
            ),
            "MB",
        );
        row.measured = format!("{peak:.1} MB");
        row.target = "< 150 MB".to_owned();
        row.met = Some(peak < 150.0);
        row.value = Some(peak);
        row.samples = rss;
        Ok(row)
    }
}

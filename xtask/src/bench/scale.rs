//! Scenario 5, scale: a large index: selecting the next batch (fresh and after a run),
//! `enrich status`, and the peak RSS of `enrich run`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use super::process::FakeServer;
use super::repo::{Entry, Repo};
use super::report::{Row, median};
use super::{Bench, CONCURRENCY_PER_HOST, path_str, say};

impl Bench {
    pub(super) fn scale(&self) -> Result<Vec<Row>> {
        let spans = self.sizes.scale;
        let run_spans = self.sizes.scale_run;
        say(&format!(
            "5 scale: {spans}-span index, {run_spans}-span run"
        ));
        let gen_started = Instant::now();
        let repo = self.gen_db("scale", spans)?;
        let gen_seconds = gen_started.elapsed().as_secs_f64();
        let server = FakeServer::start(&self.fake, 0)?;
        let config = self.write_config("scale", &[Entry::fake(&server)], CONCURRENCY_PER_HOST)?;
        let mut samples = ScaleSamples::default();
        for run in 0..self.runs {
            self.scale_sample(&repo, &config, run, &mut samples)?;
        }
        let fresh = median(&samples.select_fresh).max(median(&samples.select_deep));
        let after = median(&samples.select_after);
        let status = median(&samples.status);
        let peak = median(&samples.rss);
        say(&format!(
            "  next batch {fresh:.3} ms fresh, {after:.3} ms after the run; status {status:.3} s; peak RSS {peak:.1} MB"
        ));
        let mut select_row = Row::new(
            "select_batch",
            format!("5 select next batch, {spans}-span index (first and deep page)"),
            "ms",
        );
        select_row.measured = format!(
            "{:.3} ms first, {:.3} ms deep",
            median(&samples.select_fresh),
            median(&samples.select_deep)
        );
        select_row.target = "< 10 ms".to_owned();
        select_row.met = Some(fresh < 10.0);
        select_row.value = Some(fresh);
        select_row.samples = samples
            .select_fresh
            .iter()
            .chain(&samples.select_deep)
            .copied()
            .collect();
        select_row.detail = json!({ "gen_db_seconds": gen_seconds });
        Ok(vec![
            select_row,
            samples.after_row(run_spans),
            samples.status_row(spans, run_spans),
            samples.rss_row(run_spans),
        ])
    }

    /// One run of the scale scenario: select a batch on a fresh index, enrich `scale_run`
    /// spans, then select again and time `enrich status`.
    fn scale_sample(
        &self,
        repo: &Repo,
        config: &Path,
        run: usize,
        samples: &mut ScaleSamples,
    ) -> Result<()> {
        let run_spans = self.sizes.scale_run;
        let db = self.fresh_db(repo)?;
        let fresh = self.select_batch(repo, &db)?;
        let ms = |report: &Value, key: &str| report[key].as_f64().unwrap_or(f64::NAN);
        samples.select_fresh.push(ms(&fresh, "first_page_ms"));
        samples.select_deep.push(ms(&fresh, "deep_page_ms"));
        let outcome = self.enrich_run(repo, &db, config, Some(run_spans), "scale")?;
        let succeeded = outcome.report["succeeded"].as_u64().unwrap_or(0);
        ensure!(
            succeeded == run_spans,
            "scale run {run}: {succeeded} of {run_spans} spans enriched"
        );
        samples.rss.push(outcome.peak_rss_kb as f64 / 1024.0);
        samples
            .run_rates
            .push(outcome.report["spans_per_sec"].as_f64().unwrap_or(0.0));
        let after = self.select_batch(repo, &db)?;
        samples.select_after.push(ms(&after, "first_page_ms"));
        samples
            .select_after_zero
            .push(ms(&after, "from_zero_page_ms"));
        samples.count_after.push(ms(&after, "pending_count_ms"));
        samples.status.push(self.time_status(repo, &db)?);
        Ok(())
    }

    pub(super) fn select_batch(&self, repo: &Repo, db: &Path) -> Result<Value> {
        self.tool_json(&[
            "select-batch",
            "--repo",
            path_str(&repo.root)?,
            "--db",
            path_str(db)?,
        ])
    }

    /// The wall time of one `enrich status` (the process, start to exit), in seconds.
    pub(super) fn time_status(&self, repo: &Repo, db: &Path) -> Result<f64> {
        let started = Instant::now();
        let status = Command::new(&self.enrich)
            .arg("--repo")
            .arg(&repo.root)
            .arg("--db")
            .arg(db)
            .args(["--json", "status"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .context("could not start enrich status")?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(status.success(), "enrich status exited with {status}");
        Ok(seconds)
    }
}

/// What the runs of the scale scenario measured, one sample per run each.
#[derive(Default)]
struct ScaleSamples {
    /// Selecting the first page of a fresh index, ms.
    select_fresh: Vec<f64>,
    /// Selecting a deep page of a fresh index, ms.
    select_deep: Vec<f64>,
    /// Selecting the next page after the run, from the frontier, ms.
    select_after: Vec<f64>,
    /// The same from span 0, ms.
    select_after_zero: Vec<f64>,
    /// Counting the pending spans after the run, ms.
    count_after: Vec<f64>,
    /// `enrich status`, s.
    status: Vec<f64>,
    /// Peak RSS of `enrich run`, MB.
    rss: Vec<f64>,
    /// `enrich run`'s spans/s.
    run_rates: Vec<f64>,
}

impl ScaleSamples {
    fn after_row(&self, run_spans: u64) -> Row {
        let after = median(&self.select_after);
        let mut row = Row::new(
            "select_batch_after_run",
            format!("5 select next batch after {run_spans} enriched (first page)"),
            "ms",
        );
        row.measured = format!(
            "{after:.3} ms from the frontier ({:.1} ms from span 0; pending count {:.1} ms)",
            median(&self.select_after_zero),
            median(&self.count_after)
        );
        row.detail = json!({
            "from_zero_page_ms": self.select_after_zero,
            "pending_count_ms": self.count_after,
        });
        row.target = "< 10 ms".to_owned();
        row.met = Some(after < 10.0);
        row.value = Some(after);
        row.samples = self.select_after.clone();
        row
    }

    fn status_row(&self, spans: u64, run_spans: u64) -> Row {
        let status = median(&self.status);
        let mut row = Row::new(
            "status",
            format!("5 enrich status, {spans} spans ({run_spans} enriched)"),
            "s",
        );
        row.measured = format!("{status:.3} s");
        row.target = "< 1 s".to_owned();
        row.met = Some(status < 1.0);
        row.value = Some(status);
        row.samples = self.status.clone();
        row
    }

    fn rss_row(&self, run_spans: u64) -> Row {
        let peak = median(&self.rss);
        let mut row = Row::new(
            "peak_rss",
            format!("5 peak RSS of enrich run over {run_spans} spans"),
            "MB",
        );
        row.measured = format!("{peak:.1} MB ({:.0} spans/s)", median(&self.run_rates));
        row.target = "< 150 MB".to_owned();
        row.met = Some(peak < 150.0);
        row.value = Some(peak);
        row.samples = self.rss.clone();
        row.detail = json!({ "spans_per_sec": self.run_rates });
        row
    }
}

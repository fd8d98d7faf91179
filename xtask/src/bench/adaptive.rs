//! Scenario 7, adaptive in-flight limit: `enrich run` with no `max_in_flight` against
//! `fake-ollama` servers whose capacity it must find: 4 slots (8a) and 16 slots (8b) at
//! [`LATENCY_MS`], a single slot whose generations take 2 s under a 5 s timeout, before (a fixed
//! limit of 4) and after (8c), and a server that drops from 8 slots to 2 mid-run (8d). Each run
//! reads `enrich run --json`'s `limits` and the run's `limit_changed` events.

use std::fs;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use super::process::FakeServer;
use super::repo::Repo;
use super::report::{Row, median};
use super::{Bench, LATENCY_MS, MODEL, say};

/// One server and how `enrich run` is set up against it.
struct Case {
    name: &'static str,
    slots: u32,
    latency_ms: u32,
    /// `(after_ms, slots)`: the server's capacity change.
    change: Option<(u64, u32)>,
    spans: u64,
    concurrency: u32,
    timeout_seconds: f64,
    /// Extra lines of the backend entry (`adaptive = false`, `options = …`).
    entry: &'static str,
}

/// What one run showed.
struct Sample {
    rate: f64,
    report: Value,
    events: Vec<Value>,
    /// When the server started, in milliseconds since the Unix epoch.
    server_started_ms: u64,
}

impl Sample {
    fn limit(&self, key: &str) -> u64 {
        self.report["limits"][0][key].as_u64().unwrap_or(0)
    }

    fn timeouts(&self) -> u64 {
        self.report["backends"]["fake"]["failures"]["timeout"]
            .as_u64()
            .unwrap_or(0)
    }

    fn failed(&self) -> u64 {
        self.report["failed"].as_u64().unwrap_or(0)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Bench {
    fn adaptive_config(&self, case: &Case, url: &str) -> Result<PathBuf> {
        let path = self.work.join(format!("{}.toml", case.name));
        let text = format!(
            "# Written by `cargo xtask bench`.\n[enrichment]\ndefault_chain = \"bench\"\n\
             concurrency = {}\ncooldown_seconds = 0\n\n[[enrichment.chain]]\nname = \"fake\"\n\
             chain = \"bench\"\nprovider = \"ollama\"\nmodel = \"{MODEL}\"\nurl = \"{url}\"\n\
             timeout_seconds = {}\n{}\n",
            case.concurrency, case.timeout_seconds, case.entry
        );
        fs::write(&path, text).with_context(|| format!("could not write {}", path.display()))?;
        Ok(path)
    }

    /// One `enrich run` of `case` against a fresh server.
    fn adaptive_run(&self, repo: &Repo, case: &Case) -> Result<Sample> {
        let mut extra = vec!["--queue".to_owned(), "512".to_owned()];
        if let Some((after_ms, slots)) = case.change {
            extra.push("--change-slots".to_owned());
            extra.push(format!("{after_ms}={slots}"));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let server_started_ms = unix_ms();
        let server = FakeServer::spawn_with(&self.fake, case.latency_ms, case.slots, &extra)?;
        let config = self.adaptive_config(case, &server.url)?;
        let db = self.fresh_db(repo)?;
        let outcome = self.enrich_run(repo, &db, &config, Some(case.spans), case.name)?;
        let events_path = self.work.join("events.jsonl");
        let events = fs::read_to_string(&events_path)
            .with_context(|| format!("could not read {}", events_path.display()))?
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["type"] == "limit_changed")
            .collect();
        let rate = outcome.report["spans_per_sec"].as_f64().unwrap_or(0.0);
        Ok(Sample {
            rate,
            report: outcome.report,
            events,
            server_started_ms,
        })
    }

    /// 8a and 8b: the share of what the slots allow, and the peak in flight.
    fn adaptive_throughput(
        &self,
        repo: &Repo,
        (id, label): (&'static str, &str),
        slots: u32,
        spans: u64,
        target: f64,
    ) -> Result<Row> {
        let ideal = f64::from(slots) * 1000.0 / f64::from(LATENCY_MS);
        let case = Case {
            name: id,
            slots,
            latency_ms: LATENCY_MS,
            change: None,
            spans,
            concurrency: 4 * slots,
            timeout_seconds: 30.0,
            entry: "",
        };
        say(&format!(
            "{label} adaptive: fake-ollama at {LATENCY_MS} ms, {slots} slots, no max_in_flight, {spans} spans (ideal {ideal:.0} spans/s)"
        ));
        let samples = (0..self.runs)
            .map(|_| self.adaptive_run(repo, &case))
            .collect::<Result<Vec<_>>>()?;
        for sample in &samples {
            ensure!(
                sample.report["succeeded"].as_u64() == Some(spans),
                "{id}: {} of {spans} spans enriched",
                sample.report["succeeded"]
            );
        }
        let fractions: Vec<f64> = samples.iter().map(|s| s.rate / ideal).collect();
        let peaks: Vec<u64> = samples.iter().map(|s| s.limit("peak_in_flight")).collect();
        let peak = peaks.iter().copied().max().unwrap_or(0);
        let value = median(&fractions);
        let last = samples.last().context("no run")?;
        let measured = format!(
            "{:.2} spans/s = {:.1}% of {ideal:.0}; at most {peak} in flight; limit {} (peak {})",
            median(&samples.iter().map(|s| s.rate).collect::<Vec<_>>()),
            value * 100.0,
            last.limit("limit"),
            last.limit("peak_limit"),
        );
        say(&format!("  {measured}"));
        let mut row = Row::new(
            id,
            format!(
                "{label} adaptive: {LATENCY_MS} ms, {slots} slots, no max_in_flight, {spans} spans"
            ),
            "fraction",
        );
        row.measured = measured;
        row.target = format!("≥ {:.0}%, at most {} in flight", target * 100.0, 2 * slots);
        row.met = Some(value >= target && peak <= u64::from(2 * slots));
        row.value = Some(value);
        row.samples = fractions;
        row.detail = json!({
            "ideal": ideal,
            "peak_in_flight": peaks,
            "limits": last.report["limits"],
            "limit_changes": last.events.len(),
        });
        Ok(row)
    }

    /// 8c: one slot, long generations, a short timeout: a fixed limit of 4 before, the adaptive
    /// limit after; timeouts recorded by each.
    fn adaptive_timeouts(&self, repo: &Repo, smoke: bool) -> Result<Row> {
        // The smoke run keeps the ratios (a second generation still fits, a third would not) at a
        // tenth of the time.
        let (latency_ms, timeout, spans) = if smoke {
            (200, 0.5, 4)
        } else {
            (2000, 5.0, self.sizes.adaptive_slow)
        };
        let case = |name, entry| Case {
            name,
            slots: 1,
            latency_ms,
            change: None,
            spans,
            concurrency: 4,
            timeout_seconds: timeout,
            entry,
        };
        say(&format!(
            "8c timeouts: 1 slot, {latency_ms} ms per generation, timeout_seconds = {timeout}, {spans} spans; before: max_in_flight 4 fixed"
        ));
        let before = self.adaptive_run(
            repo,
            &case(
                "8c-before",
                "adaptive = false\noptions = { max_in_flight = 4 }",
            ),
        )?;
        let after = self.adaptive_run(repo, &case("8c-after", ""))?;
        let measured = format!(
            "before (fixed 4): {} timeouts, {} spans failed, {:.2} spans/s; after: {} timeouts, {} failed, {:.2} spans/s, limit {}",
            before.timeouts(),
            before.failed(),
            before.rate,
            after.timeouts(),
            after.failed(),
            after.rate,
            after.limit("limit")
        );
        say(&format!("  {measured}"));
        let mut row = Row::new(
            "adaptive_timeouts",
            format!("8c adaptive: 1 slot, {latency_ms} ms, timeout {timeout} s, {spans} spans"),
            "timeouts",
        );
        row.measured = measured;
        row.target = "no timeout".to_owned();
        row.met = Some(after.timeouts() == 0);
        row.value = Some(after.timeouts() as f64);
        row.samples = vec![after.timeouts() as f64];
        row.detail = json!({
            "before": { "timeouts": before.timeouts(), "failed": before.failed(), "spans_per_sec": before.rate, "backends": before.report["backends"] },
            "after": { "timeouts": after.timeouts(), "failed": after.failed(), "spans_per_sec": after.rate, "limits": after.report["limits"] },
        });
        Ok(row)
    }

    /// 8d: 8 slots, then 2: how long after the change the limit is at most twice the new
    /// slots, and no timeout.
    fn adaptive_capacity_change(&self, repo: &Repo, smoke: bool) -> Result<Row> {
        let (latency_ms, after_ms, spans) = if smoke {
            (50, 1_000, 200)
        } else {
            (LATENCY_MS, 10_000, self.sizes.adaptive_change)
        };
        let case = Case {
            name: "8d",
            slots: 8,
            latency_ms,
            change: Some((after_ms, 2)),
            spans,
            concurrency: 32,
            timeout_seconds: 30.0,
            entry: "",
        };
        say(&format!(
            "8d capacity change: 8 slots, then 2 after {} s, {latency_ms} ms, {spans} spans",
            after_ms / 1000
        ));
        let mut follows = Vec::new();
        let mut timeouts = 0;
        let mut last = None;
        for _ in 0..self.runs {
            let sample = self.adaptive_run(repo, &case)?;
            let changed_at = sample.server_started_ms + after_ms;
            // The first change after the capacity fell that brings the limit to at most twice
            // the two slots left.
            let followed = sample.events.iter().find_map(|event| {
                let at = event["at_ms"].as_u64()?;
                let to = event["change"]["to"].as_u64()?;
                (at >= changed_at && to <= 4).then(|| (at - changed_at) as f64 / 1000.0)
            });
            follows.push(followed.unwrap_or(f64::INFINITY));
            timeouts += sample.timeouts();
            last = Some(sample);
        }
        let last = last.context("no run")?;
        let value = median(&follows);
        let measured = format!(
            "limit at most 4 {value:.1} s after the change; {timeouts} timeouts; final limit {} (peak {})",
            last.limit("limit"),
            last.limit("peak_limit")
        );
        say(&format!("  {measured}"));
        let mut row = Row::new(
            "adaptive_change",
            format!("8d adaptive: 8 slots, then 2, {latency_ms} ms, {spans} spans"),
            "seconds",
        );
        row.measured = measured;
        row.target = "≤ 10 s, no timeout".to_owned();
        row.met = Some(value <= 10.0 && timeouts == 0);
        row.value = Some(value);
        row.samples = follows;
        row.detail = json!({
            "limits": last.report["limits"],
            "limit_changes": last.events,
            "timeouts": timeouts,
        });
        Ok(row)
    }

    /// Rows 8a–8d; a scenario that fails is a row saying so.
    pub(super) fn adaptive(&self, repo: &Repo, smoke: bool) -> Vec<Row> {
        let spans = self.sizes.adaptive;
        vec![
            self.adaptive_throughput(repo, ("adaptive_4", "8a"), 4, spans, 0.95)
                .unwrap_or_else(|e| Row::failed("adaptive_4", "8a adaptive, 4 slots", &e)),
            self.adaptive_throughput(repo, ("adaptive_16", "8b"), 16, 4 * spans, 0.90)
                .unwrap_or_else(|e| Row::failed("adaptive_16", "8b adaptive, 16 slots", &e)),
            self.adaptive_timeouts(repo, smoke)
                .unwrap_or_else(|e| Row::failed("adaptive_timeouts", "8c adaptive, timeouts", &e)),
            self.adaptive_capacity_change(repo, smoke)
                .unwrap_or_else(|e| {
                    Row::failed("adaptive_change", "8d adaptive, capacity change", &e)
                }),
        ]
    }
}

//! Scenario 4, failure path: a chain whose first backend refuses connections, against the
//! healthy rate of scenario 3a.

use anyhow::Result;
use serde_json::json;

use super::process::{FakeServer, refused_url};
use super::repo::{Entry, Repo};
use super::report::{Row, median};
use super::{Bench, LATENCY_MS, SLOTS, say};

impl Bench {
    pub(super) fn failure(&self, repo: &Repo, healthy: Option<f64>) -> Result<Row> {
        let spans = self.sizes.failure;
        say(&format!(
            "4 failure path: first backend refuses connections, {spans} spans"
        ));
        let server = FakeServer::start(&self.fake, LATENCY_MS)?;
        let refused = refused_url()?;
        let entries = [
            Entry {
                name: "down",
                urls: vec![refused],
            },
            Entry::fake(&server),
        ];
        let (rates, _) = self.latency_runs(repo, "failure", &entries, &[&server], 1, spans)?;
        let rate = median(&rates);
        let mut row = Row::new(
            "failure",
            format!(
                "4 failure: first backend refused, then {LATENCY_MS} ms × {SLOTS}, {spans} spans"
            ),
            "fraction",
        );
        row.target = "≥ 90% of 3a".to_owned();
        row.detail = json!({ "spans_per_sec": rates, "healthy_spans_per_sec": healthy });
        match healthy.filter(|&h| h > 0.0) {
            Some(healthy) => {
                let fraction = rate / healthy;
                row.measured = format!(
                    "{rate:.2} spans/s = {:.1}% of {healthy:.2}",
                    fraction * 100.0
                );
                row.met = Some(fraction >= 0.90);
                row.value = Some(fraction);
                row.samples = rates.iter().map(|r| r / healthy).collect();
            }
            None => {
                row.measured = format!("{rate:.2} spans/s (no healthy case to compare with)");
                row.value = Some(rate);
                row.samples = rates;
            }
        }
        say(&format!("  {}", row.measured));
        Ok(row)
    }
}

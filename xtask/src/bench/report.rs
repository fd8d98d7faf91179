//! The result: one [`Row`] per measurement, the table printed at the end, and the machine it
//! ran on.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// One line of the result table.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    pub(super) id: &'static str,
    pub(super) scenario: String,
    pub(super) measured: String,
    pub(super) target: String,
    /// `None`: not applicable (no target, or the feature is missing).
    pub(super) met: Option<bool>,
    /// The median the `measured` text shows, in `unit`.
    pub(super) value: Option<f64>,
    pub(super) unit: &'static str,
    pub(super) samples: Vec<f64>,
    pub(super) detail: Value,
}

impl Row {
    pub(super) fn new(id: &'static str, scenario: impl Into<String>, unit: &'static str) -> Self {
        Self {
            id,
            scenario: scenario.into(),
            measured: String::new(),
            target: String::new(),
            met: None,
            value: None,
            unit,
            samples: Vec::new(),
            detail: Value::Null,
        }
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "scenario": self.scenario,
            "measured": self.measured,
            "target": self.target,
            "met": self.met,
            "value": self.value,
            "unit": self.unit,
            "samples": self.samples,
            "detail": self.detail,
        })
    }

    pub(super) fn failed(
        id: &'static str,
        scenario: impl Into<String>,
        error: &anyhow::Error,
    ) -> Self {
        let mut row = Self::new(id, scenario, "");
        row.measured = format!("error: {error:#}");
        row.met = Some(false);
        row
    }
}

/// The median of `samples` (the mean of the middle two for an even count); NaN for none.
pub(super) fn median(samples: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The machine: cores and CPU model.
pub(super) fn machine_info() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| cpu_model(&text));
    json!({
        "cores": cores,
        "cpu": cpu,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "load_average_1m": load_average(),
    })
}

/// The 1-minute load average: other processes competing for the cores make every number worse.
fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The first `model name` of a `/proc/cpuinfo` text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// Seconds since the Unix epoch, naming a result file.
pub(super) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The table printed at the end: scenario, measured, target, met?
pub(super) fn render_table(machine: &Value, runs: usize, build: &str, rows: &[Row]) -> String {
    let headers = ["scenario", "measured", "target", "met?"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "n/a",
            };
            [
                r.scenario.clone(),
                r.measured.clone(),
                r.target.clone(),
                met.to_owned(),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let load = machine["load_average_1m"]
        .as_f64()
        .map(|l| format!("; load {l:.2} at start"))
        .unwrap_or_default();
    let mut text = format!(
        "enrich bench: {} core(s), {}; median of {runs} run(s); {build}{load}\n\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("unknown CPU")
    );
    let mut line = |cols: [&str; 4]| {
        let padded: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(text, "{}", padded.join("  ").trim_end());
    };
    line(headers);
    let rules = widths.map(|w| "-".repeat(w));
    line([&rules[0], &rules[1], &rules[2], &rules[3]]);
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
    let met = rows.iter().filter(|r| r.met == Some(true)).count();
    let judged = rows.iter().filter(|r| r.met.is_some()).count();
    if judged > 0 {
        let _ = write!(text, "\n{met} of {judged} targets met");
    } else {
        let _ = write!(text, "\nno target judged");
    }
    text
}

/// Writes `report` to `out_dir`: `smoke.json` for a smoke run, else `<ts>.json` and
/// `latest.json`. Returns the first path written.
pub(super) fn save(out_dir: &Path, report: &Value, smoke: bool, ts: u64) -> Result<PathBuf> {
    let names = if smoke {
        vec!["smoke.json".to_owned()]
    } else {
        vec![format!("{ts}.json"), "latest.json".to_owned()]
    };
    let text = serde_json::to_string_pretty(report)?;
    for name in &names {
        let path = out_dir.join(name);
        fs::write(&path, &text).with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(out_dir.join(&names[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_no_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
    }

    #[test]
    fn the_table_lines_up_and_says_what_is_met() {
        let mut fast = Row::new("overhead", "1 overhead", "spans/s");
        fast.measured = "25000 spans/s".to_owned();
        fast.target = "≥ 20000 spans/s".to_owned();
        fast.met = Some(true);
        let mut slow = Row::new("status", "5 enrich status", "s");
        slow.measured = "1.500 s".to_owned();
        slow.target = "< 1 s".to_owned();
        slow.met = Some(false);
        let mut pool = Row::new("pool", "3b host pool", "fraction");
        pool.measured = "n/a: host pools not available".to_owned();
        pool.target = "≥ 95%".to_owned();
        let machine = json!({ "cores": 2, "cpu": "AMD EPYC" });
        let table = render_table(&machine, 3, "release build", &[fast, slow, pool]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "enrich bench: 2 core(s), AMD EPYC; median of 3 run(s); release build"
        );
        assert_eq!(
            lines[2],
            "scenario         measured                       target           met?"
        );
        assert_eq!(
            lines[4],
            "1 overhead       25000 spans/s                  ≥ 20000 spans/s  yes"
        );
        assert_eq!(
            lines[5],
            "5 enrich status  1.500 s                        < 1 s            NO"
        );
        assert_eq!(
            lines[6],
            "3b host pool     n/a: host pools not available  ≥ 95%            n/a"
        );
        assert_eq!(lines.last(), Some(&"1 of 2 targets met"));
    }
}

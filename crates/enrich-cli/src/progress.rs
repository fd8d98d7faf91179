//! Showing a run as it goes: a progress bar on a terminal, plain lines elsewhere (a log file, a
//! service's journal), nothing with `-q`. Failed spans are not shown here: the pipeline's
//! tracing sink logs each one as a warning, above the bar. Both are [`EventSink`]s fed by the pipeline; the
//! per-backend [`Tally`] of the run summary is one too.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use enrich_backends::AttemptOutcome;
use enrich_pipeline::{Event, EventSink, SpanStatus, waiting_message};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::logging;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressMode {
    /// A progress bar with rate and ETA on stderr.
    Bar,
    /// A line on stderr per batch and per failed span.
    Lines,
    /// Nothing (`-q`).
    Off,
}

impl ProgressMode {
    /// A bar when stderr is a terminal, lines otherwise; nothing when quiet.
    pub(crate) fn detect(quiet: bool) -> Self {
        if quiet {
            ProgressMode::Off
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

/// Counts kept across a run's events.
#[derive(Debug)]
struct Counts {
    /// Spans the run will take on at most (pending, capped by the limit).
    total: u64,
    done: u64,
    enriched: u64,
    failed: u64,
    started: Instant,
}

impl Counts {
    fn new() -> Self {
        Self {
            total: 0,
            done: 0,
            enriched: 0,
            failed: 0,
            started: Instant::now(),
        }
    }

    /// Finished spans per second since the run started.
    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }

    /// The time left at the current rate, when it can be told.
    fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        let left = self.total.saturating_sub(self.done);
        (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate))
    }
}

/// The progress display of one run: an [`EventSink`].
pub(crate) struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    counts: Mutex<Counts>,
    /// Each backend host's last limit change, as `backend @ host: 3 in flight, limit 4`, by
    /// backend and host.
    limits: Mutex<BTreeMap<(String, String), String>>,
}

impl Progress {
    /// A display in `mode`; a bar is created hidden and shown when the run starts.
    pub(crate) fn new(mode: ProgressMode) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let style = bar_style(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} spans  {rate}  ETA {eta}  {msg}",
            );
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(style);
            bar
        });
        Self {
            mode,
            bar,
            counts: Mutex::new(Counts::new()),
            limits: Mutex::new(BTreeMap::new()),
        }
    }

    /// The hosts' limits as last changed, `; `-separated (empty when none changed yet).
    fn limits(&self) -> String {
        let limits = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        limits.values().cloned().collect::<Vec<_>>().join("; ")
    }

    /// `12 ok, 0 failed`, then the hosts' limits.
    fn message(&self, counts: &Counts) -> String {
        let mut message = format!("{} ok, {} failed", counts.enriched, counts.failed);
        let limits = self.limits();
        if !limits.is_empty() {
            message.push_str("  ");
            message.push_str(&limits);
        }
        message
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            logging::set_active_bar(None);
        }
    }
}

impl EventSink for Progress {
    fn on_event(&self, event: &Event) {
        if self.mode == ProgressMode::Off {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::RunStarted {
                run_id,
                total_pending,
                refresh_selected,
                limit,
                concurrency,
                ..
            } => {
                *counts = Counts::new();
                let to_do = total_pending + refresh_selected.unwrap_or(0);
                counts.total = limit.map_or(to_do, |l| l.min(to_do));
                match &self.bar {
                    Some(bar) => {
                        bar.set_length(counts.total);
                        bar.set_position(0);
                        bar.reset_elapsed();
                        bar.enable_steady_tick(Duration::from_millis(200));
                        logging::set_active_bar(Some(bar.clone()));
                    }
                    None if counts.total > 0 => self.line(&format!(
                        "run {run_id}: {} of {total_pending} pending span(s){} to do, {concurrency} at a time",
                        counts.total,
                        refresh_selected
                            .map(|n| format!(" and {n} to renew"))
                            .unwrap_or_default()
                    )),
                    None => {}
                }
            }
            // A deferred span (by-tier schedule) is not done: a later pass of the run ends it; nor
            // is a span whose backends were unavailable: it waits for one.
            Event::SpanFinished {
                status: SpanStatus::Deferred | SpanStatus::Unavailable,
                ..
            } => {}
            Event::SpanFinished { status, .. } => {
                // A failed span is logged (a warning) by the pipeline's tracing sink.
                counts.done += 1;
                match status {
                    SpanStatus::Enriched => counts.enriched += 1,
                    SpanStatus::Failed | SpanStatus::FellBack => counts.failed += 1,
                    SpanStatus::Skipped
                    | SpanStatus::Cancelled
                    | SpanStatus::Deferred
                    | SpanStatus::Unavailable => {}
                }
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    bar.set_message(self.message(&counts));
                }
            }
            Event::BatchFinished { .. } if self.bar.is_none() => {
                let eta = counts
                    .eta()
                    .map_or_else(|| "unknown".to_owned(), format_duration);
                let mut line = format!(
                    "{}/{} spans ({} enriched, {} failed), {} spans/s, ETA {eta}",
                    counts.done,
                    counts.total,
                    counts.enriched,
                    counts.failed,
                    format_rate(counts.rate())
                );
                let limits = self.limits();
                if !limits.is_empty() {
                    line.push_str("; ");
                    line.push_str(&limits);
                }
                self.line(&line);
            }
            Event::LimitChanged { change, .. } => {
                self.limits
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        (change.backend.clone(), change.host.clone()),
                        change.to_string(),
                    );
                match &self.bar {
                    Some(bar) => bar.set_message(self.message(&counts)),
                    // A backoff is news of its own; growth shows in the next batch's line.
                    None if change.reason.is_backoff() => {
                        self.line(&format!("{change} ({})", change.why()));
                    }
                    None => {}
                }
            }
            Event::BackendWaiting {
                backend,
                retry_in_ms,
                ..
            } => {
                let waiting = waiting_message(backend, *retry_in_ms);
                match &self.bar {
                    Some(bar) => bar.set_message(waiting),
                    None => self.line(&waiting),
                }
            }
            Event::RunFinished { .. } => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                    logging::set_active_bar(None);
                }
            }
            _ => {}
        }
    }
}

/// A progress bar style from `template`, which may use `{rate}`: steps per second with three
/// significant digits (`18.9/s`; indicatif's own `{per_sec}` shows `18.8749/s`).
pub(crate) fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |state: &ProgressState, out: &mut dyn fmt::Write| {
            let _ = write!(out, "{}/s", format_rate(state.per_sec()));
        })
}

/// A rate with three significant digits, whole numbers from 100 on: `0.0123`, `1.50`, `18.9`,
/// `245`, `1234`; `0` for nothing (or no time) yet.
pub(crate) fn format_rate(rate: f64) -> String {
    if !rate.is_finite() || rate <= 0.0 {
        return "0".to_owned();
    }
    // Digits after the point for three significant ones: 2 for 1.xx, 1 for 18.9, 0 from 100.
    let magnitude = rate.log10().floor() as i32;
    let mut decimals = usize::try_from(2 - magnitude).unwrap_or(0);
    // Rounding may carry into a new digit (99.96 is `100.0`): one decimal fewer then.
    let rounded: f64 = format!("{rate:.decimals$}").parse().unwrap_or(rate);
    if decimals > 0 && rounded.log10().floor() as i32 > magnitude {
        decimals -= 1;
    }
    format!("{rate:.decimals$}")
}

/// `1h02m03s`, `4m05s`, `6s`.
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// What one backend did during a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct BackendCounts {
    /// Requests sent.
    pub(crate) attempts: u64,
    /// Attempts that produced a valid enrichment.
    pub(crate) succeeded: u64,
    /// Attempts that failed.
    pub(crate) failed: u64,
    /// Failed attempts by failure kind.
    pub(crate) failures: BTreeMap<String, u64>,
}

/// Per-backend attempt counts of a run, for its summary: an [`EventSink`].
#[derive(Debug, Default)]
pub(crate) struct Tally {
    backends: Mutex<BTreeMap<String, BackendCounts>>,
}

impl Tally {
    /// The counts so far, by backend name.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, BackendCounts> {
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl EventSink for Tally {
    fn on_event(&self, event: &Event) {
        let Event::AttemptFinished { attempt, .. } = event else {
            return;
        };
        let mut backends = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = backends.entry(attempt.backend.clone()).or_default();
        counts.attempts += 1;
        match attempt.outcome {
            AttemptOutcome::Success => counts.succeeded += 1,
            AttemptOutcome::Failure => {
                counts.failed += 1;
                let kind = attempt
                    .failure_kind
                    .map_or("unknown", |kind| kind.as_str())
                    .to_owned();
                *counts.failures.entry(kind).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_show_three_significant_digits() {
        let cases = [
            (18.874_9, "18.9"),
            (1.5, "1.50"),
            (0.012_345, "0.0123"),
            (9.999_9, "10.0"),
            (99.96, "100"),
            (245.4, "245"),
            (1_234.5, "1234"),
            (0.0, "0"),
            (f64::NAN, "0"),
            (f64::INFINITY, "0"),
        ];
        for (rate, expected) in cases {
            assert_eq!(format_rate(rate), expected, "{rate}");
        }
    }

    /// A terminal that keeps what is drawn on it.
    #[derive(Debug, Clone, Default)]
    struct Screen(std::sync::Arc<Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }

        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }

        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }

        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }

        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }

        fn write_line(&self, line: &str) -> std::io::Result<()> {
            self.write_str(&format!("{line}\n"))
        }

        fn write_str(&self, text: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(text);
            Ok(())
        }

        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }

        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_draws_its_rate_with_three_significant_digits() {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let bar = ProgressBar::with_draw_target(Some(1000), target);
        bar.set_style(bar_style("{pos}/{len} spans  {rate}"));
        bar.inc(500);
        bar.abandon();
        let drawn = screen.0.lock().unwrap().clone();
        let words: Vec<&str> = drawn.split_whitespace().collect();
        let rate = match words.as_slice() {
            [.., "500/1000", "spans", rate] => rate.strip_suffix("/s"),
            _ => None,
        }
        .unwrap_or_else(|| panic!("{drawn:?}"));
        // Whatever the rate: plain digits, at most three significant ones after a point.
        assert!(
            rate.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
            "{rate}"
        );
        if let Some((_, fraction)) = rate.split_once('.') {
            let significant = rate.trim_start_matches(['0', '.']).replace('.', "");
            assert!(significant.len() <= 3 && !fraction.is_empty(), "{rate}");
        }
    }

    #[test]
    fn durations_read_compactly() {
        let cases = [(0, "0s"), (59, "59s"), (61, "1m01s"), (3_723, "1h02m03s")];
        for (secs, expected) in cases {
            assert_eq!(format_duration(Duration::from_secs(secs)), expected);
        }
    }
}

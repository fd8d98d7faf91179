//! Logging to stderr with tracing, kept out of the way of the progress bar.
//!
//! The level comes from `-v`/`-q`, or from `ENRICH_LOG` (`target=level` directives, the syntax of
//! `RUST_LOG` without span filters, e.g. `ENRICH_LOG=debug` or `ENRICH_LOG=warn,enrich_db=debug`).
//! A `Targets` filter is used instead of tracing-subscriber's `env-filter` feature, which would
//! bring a regex engine into the binary for nothing `enrich` needs.

use std::io::{IsTerminal, Write};
use std::str::FromStr;
use std::sync::Mutex;

use indicatif::ProgressBar;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The variable that overrides `-v`/`-q`.
pub(crate) const LOG_ENV: &str = "ENRICH_LOG";

/// The progress bar on screen, if any: log lines are written while it is hidden.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// The default level for a `-v` count and a `-q` count.
pub(crate) fn level(verbose: u8, quiet: u8) -> LevelFilter {
    match (verbose, quiet) {
        (0, 0) => LevelFilter::WARN,
        (_, 1) => LevelFilter::ERROR,
        (_, q) if q >= 2 => LevelFilter::OFF,
        (1, _) => LevelFilter::INFO,
        (2, _) => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Installs the global subscriber. A malformed `ENRICH_LOG` is reported and the flags are used.
/// Lines carry a timestamp only when asked (`watch`, a service whose log is read later, or
/// `-vv`): a person at a terminal knows when things happen.
pub(crate) fn init(verbose: u8, quiet: u8, timestamps: bool) {
    let default = level(verbose, quiet);
    let mut bad_env = None;
    let filter = match std::env::var(LOG_ENV) {
        Ok(spec) if !spec.trim().is_empty() => Targets::from_str(&spec).unwrap_or_else(|e| {
            bad_env = Some(format!(
                "ignoring {LOG_ENV}={spec:?} ({e}); use directives like `debug` or `warn,enrich_db=debug`"
            ));
            Targets::new().with_default(default)
        }),
        _ => Targets::new().with_default(default),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2);
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init` fails only when a subscriber is already set, which `main` never does twice.
    let _ = if timestamps || verbose >= 2 {
        registry.with(layer).try_init()
    } else {
        registry.with(layer.without_time()).try_init()
    };
    if let Some(message) = bad_env {
        tracing::warn!("{message}");
    }
}

/// Makes log lines hide the progress bar while they are written.
pub(crate) fn set_active_bar(bar: Option<ProgressBar>) {
    *ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// Stderr, writing each log line while the active progress bar (if any) is hidden.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let bar = ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().lock().write_all(buf)),
            None => std::io::stderr().lock().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_flags_map_to_levels() {
        let cases = [
            ((0, 0), LevelFilter::WARN),
            ((1, 0), LevelFilter::INFO),
            ((2, 0), LevelFilter::DEBUG),
            ((3, 0), LevelFilter::TRACE),
            ((9, 0), LevelFilter::TRACE),
            ((0, 1), LevelFilter::ERROR),
            ((0, 2), LevelFilter::OFF),
        ];
        for ((v, q), expected) in cases {
            assert_eq!(level(v, q), expected, "-v x{v} -q x{q}");
        }
    }
}

//! Exit codes, the two error markers that choose them, and printing an error chain.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use enrich_backends::BackendsError;
use enrich_config::ConfigError;
use enrich_db::DbError;
use enrich_pipeline::PipelineError;

/// How the process ends. The numbers are part of the interface: scripts and service managers
/// read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Everything asked for was done.
    Success,
    /// Some spans failed, or the work stopped on an error that is not the user's.
    Failed,
    /// The command line, the configuration or a path given is wrong.
    Usage,
    /// A backend the default chain needs cannot be used.
    BackendUnusable,
    /// `enrich run` was stopped by this signal (SIGINT 2, SIGTERM 15) before it was done:
    /// 128 + the signal's number, as shells report it, so a script sees the work is unfinished.
    Interrupted(u8),
}

impl Exit {
    /// The process exit status.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::BackendUnusable => 3,
            Exit::Interrupted(signal) => 128u8.saturating_add(signal),
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// A mistake of the person running `enrich` (an unknown chain, a file that exists, a span that
/// is not in the index): exit code 2. The message says what to do instead.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Builds an `anyhow::Error` that exits with code 2.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// A backend that the work needs cannot be used (`enrich doctor` found it dead, or a run could
/// not reach any backend of its chain): exit code 3.
#[derive(Debug)]
pub(crate) struct BackendUnusable(pub(crate) String);

impl fmt::Display for BackendUnusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackendUnusable {}

/// The exit code an error ends the process with, decided from the errors in its chain.
pub(crate) fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if cause.is::<UsageError>() || cause.is::<ConfigError>() || cause.is::<clap::Error>() {
            return Exit::Usage;
        }
        if cause.is::<BackendUnusable>() {
            return Exit::BackendUnusable;
        }
        if let Some(err) = cause.downcast_ref::<BackendsError>() {
            // A provider nobody serves, or an entry its factory refuses (a bad URL), is a
            // mistake in the configuration.
            return match err {
                BackendsError::UnknownProvider { .. } | BackendsError::Build { .. } => Exit::Usage,
                BackendsError::NoRootCertificates { .. } => Exit::BackendUnusable,
            };
        }
        if let Some(err) = cause.downcast_ref::<PipelineError>()
            && let Some(exit) = pipeline_exit(err)
        {
            return exit;
        }
        // Errors that box a `DbError` name the box as their source, which a downcast to
        // `DbError` does not see through.
        if let Some(err) = cause
            .downcast_ref::<DbError>()
            .or_else(|| cause.downcast_ref::<Box<DbError>>().map(|b| &**b))
        {
            return db_exit(err);
        }
    }
    Exit::Failed
}

/// The pipeline refuses settings it cannot work with (an in-flight limit of 0, a template with
/// an unknown placeholder, a default chain with no enabled backend): mistakes in the
/// configuration. Its database errors are judged like any other; the rest (a failed write, a
/// panic) are failures of the work, decided by the chain's other causes.
fn pipeline_exit(err: &PipelineError) -> Option<Exit> {
    match err {
        PipelineError::InvalidSetting { .. }
        | PipelineError::PromptTemplate { .. }
        | PipelineError::Route(_) => Some(Exit::Usage),
        PipelineError::Db { source, .. } => Some(db_exit(source)),
        _ => None,
    }
}

/// A database that is missing, is not an index, is damaged, or that this user may not read or
/// write (the file, or its directory) is bad input (a wrong `--db`, a file to restore,
/// permissions to fix); anything else (locked, an I/O error) is a failure of the work.
fn db_exit(err: &DbError) -> Exit {
    match err {
        DbError::NotFound { .. }
        | DbError::NotADatabase { .. }
        | DbError::Damaged { .. }
        | DbError::Corrupt { .. }
        | DbError::ReadOnlyDirectory { .. }
        | DbError::PermissionDenied { .. }
        | DbError::NotAnIndex { .. }
        | DbError::LlmcSchemaTooOld { .. }
        | DbError::LlmcSchemaTooNew { .. }
        | DbError::EnrichSchemaTooNew { .. }
        | DbError::RefreshSelector { .. }
        | DbError::BadSearchQuery { .. }
        | DbError::SearchQueryTooLong { .. }
        | DbError::BadPathGlob { .. } => Exit::Usage,
        _ => Exit::Failed,
    }
}

/// Writes `error: …` and one `  caused by: …` line per underlying error to `out`.
///
/// Many errors already quote their source in their own message; a cause whose text the line
/// above already contains is not repeated.
pub(crate) fn report(err: &anyhow::Error, out: &mut impl Write) -> std::io::Result<()> {
    let mut previous = err.to_string();
    writeln!(out, "error: {previous}")?;
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            writeln!(out, "  caused by: {text}")?;
        }
        previous = text;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use anyhow::Context;

    use super::*;

    fn check_report(err: anyhow::Error, expected: &str) {
        let mut out = Vec::new();
        report(&err, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn report_prints_the_chain_without_repeating_a_quoted_cause() {
        let io = std::io::Error::other("disk full");
        check_report(
            anyhow::Error::new(io).context("cannot write /r/enrich.toml"),
            "error: cannot write /r/enrich.toml\n  caused by: disk full\n",
        );
        let quoted = anyhow::Error::new(std::io::Error::other("refused"))
            .context("connect: refused")
            .context("doctor failed");
        check_report(
            quoted,
            "error: doctor failed\n  caused by: connect: refused\n",
        );
    }

    fn check_exit(err: anyhow::Error, expected: Exit) {
        assert_eq!(classify(&err), expected, "{err:#}");
    }

    #[test]
    fn errors_choose_their_exit_code_through_context() {
        check_exit(usage("enrich.toml exists").context("init"), Exit::Usage);
        check_exit(
            anyhow::Error::new(ConfigError::FileNotFound {
                path: PathBuf::from("x.toml"),
            })
            .context("cannot load the configuration"),
            Exit::Usage,
        );
        check_exit(
            anyhow::Error::new(DbError::NotFound {
                path: PathBuf::from("i.db"),
            }),
            Exit::Usage,
        );
        check_exit(
            anyhow::Error::new(BackendUnusable("gpu down".into())),
            Exit::BackendUnusable,
        );
        check_exit(
            anyhow::Error::new(PipelineError::PromptTemplate {
                problem: "unknown placeholder {lang} at byte 0".into(),
            })
            .context("cannot set up the enrichment pipeline"),
            Exit::Usage,
        );
        let not_a_database = || DbError::NotADatabase {
            path: PathBuf::from("README.md"),
            detail: "its first bytes are not SQLite's header".into(),
        };
        // The pipeline boxes the database's error: it still decides the code.
        check_exit(
            anyhow::Error::new(PipelineError::Db {
                action: "open the index database for reading",
                source: Box::new(not_a_database()),
            })
            .context("cannot plan the run"),
            Exit::Usage,
        );
        // A write that fails during the run is a failure of the work.
        check_exit(
            anyhow::Error::new(PipelineError::Write {
                source: Box::new(DbError::Busy {
                    path: PathBuf::from("index_v2.db"),
                    action: "commit a batch",
                    timeout: std::time::Duration::from_secs(30),
                }),
            }),
            Exit::Failed,
        );
        check_exit(
            anyhow::Error::new(PipelineError::WriterPanicked {
                message: "boom".into(),
            }),
            Exit::Failed,
        );
        check_exit(
            Err::<(), _>(std::io::Error::other("x"))
                .context("write")
                .unwrap_err(),
            Exit::Failed,
        );
    }
}

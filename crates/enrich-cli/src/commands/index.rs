//! `enrich index [DIR]`: builds or refreshes the repository's index (LLMC's `files` and `spans`)
//! with enrich's own indexer, so `enrich run` also works on a repository LLMC never indexed.
//! Creates the index when there is none; an unchanged repository is read but not written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use enrich_db::Db;
use enrich_index::{
    DEFAULT_MAX_FILE_BYTES, IndexError, IndexEvent, IndexOptions, IndexReport, index_repo,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::cli::Global;
use crate::context::Repo;
use crate::exit::{Exit, usage};
use crate::progress::ProgressMode;
use crate::{logging, output};

/// Arguments of `enrich index`.
#[derive(Debug, Args)]
pub(crate) struct IndexArgs {
    /// The repository to index [default: --repo].
    #[arg(value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,

    /// Skip files larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FILE_BYTES)]
    pub(crate) max_file_size: u64,

    /// Threads that read and parse files [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,

    /// Index hidden files and directories too (never `.git/` nor `.llmc/`).
    #[arg(long)]
    pub(crate) include_hidden: bool,

    /// Keep the enrichments of spans that are gone instead of deleting them; they come back if
    /// the same code does.
    #[arg(long)]
    pub(crate) keep_orphans: bool,
}

/// The `--json` document.
#[derive(Serialize)]
struct IndexJson<'a> {
    repo: &'a Path,
    db: &'a Path,
    #[serde(flatten)]
    report: &'a IndexReport,
}

/// Indexes `DIR` (else `--repo`) into `--db` (else the repository's LLMC index).
pub(crate) fn index(global: &Global, args: &IndexArgs) -> Result<Exit> {
    let root = args.dir.as_deref().unwrap_or(&global.repo);
    let repo = Repo::new(root, global.db.as_deref(), global.config.as_deref())?;
    let report = run(&repo, args, ProgressMode::detect(global.quiet > 0))?;
    for problem in &report.problems {
        tracing::warn!("{}: {}", problem.path, problem.message);
    }
    if global.json {
        output::json(&IndexJson {
            repo: &repo.root,
            db: &repo.db_path,
            report: &report,
        })?;
    } else {
        output::text(&render(&repo, &report)?)?;
    }
    Ok(Exit::Success)
}

fn run(repo: &Repo, args: &IndexArgs, mode: ProgressMode) -> Result<IndexReport> {
    let mut db = Db::open_or_create(&repo.db_path)
        .with_context(|| format!("cannot open the index {}", repo.db_path.display()))?;
    let options = IndexOptions {
        max_file_bytes: args.max_file_size,
        threads: args.threads.map_or(0, usize::from),
        include_hidden: args.include_hidden,
        keep_orphans: args.keep_orphans,
        ..IndexOptions::default()
    };
    let bar = (mode == ProgressMode::Bar).then(|| {
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(style);
        logging::set_active_bar(Some(bar.clone()));
        bar
    });
    let result = index_repo(&mut db, &repo.root, &options, |event| match (event, &bar) {
        (IndexEvent::Walked { files }, Some(bar)) => bar.set_length(*files),
        (IndexEvent::Walked { files }, None) if mode == ProgressMode::Lines => {
            output::note(&format!("indexing {files} files\n"));
        }
        (IndexEvent::File { done, .. }, Some(bar)) => bar.set_position(*done),
        _ => {}
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
        logging::set_active_bar(None);
    }
    result.map_err(index_error)
}

/// The run's error, marked so that the exit code tells a wrong path from a failure.
pub(crate) fn index_error(err: IndexError) -> anyhow::Error {
    match err {
        IndexError::Db(err) => anyhow::Error::new(err),
        err @ (IndexError::Root { .. }
        | IndexError::NotADirectory { .. }
        | IndexError::InvalidOption { .. }) => usage(err.to_string()),
        err => anyhow::Error::new(err),
    }
}

fn render(repo: &Repo, report: &IndexReport) -> Result<String> {
    let (f, s, o) = (&report.files, &report.spans, &report.orphans);
    let mut text = String::new();
    writeln!(
        text,
        "indexed {} in {:.1} s into {}",
        repo.root.display(),
        report.elapsed_ms as f64 / 1000.0,
        repo.db_path.display()
    )?;
    writeln!(
        text,
        "files   {} seen: {} added, {} changed, {} removed, {} unchanged; skipped {} binary, {} too large",
        f.seen, f.added, f.changed, f.removed, f.unchanged, f.binary, f.too_large
    )?;
    writeln!(
        text,
        "spans   {} added, {} kept, {} moved, {} removed, {} duplicate, {} shared with a file earlier in path order",
        s.added, s.kept, s.moved, s.removed, s.duplicate, s.shared
    )?;
    if o.enrichments_removed + o.embeddings_removed > 0 {
        writeln!(
            text,
            "removed {} enrichment(s) and {} embedding(s) of spans that are gone",
            o.enrichments_removed, o.embeddings_removed
        )?;
    }
    if o.enrichments_kept + o.embeddings_kept > 0 {
        writeln!(
            text,
            "kept    {} enrichment(s) and {} embedding(s) of spans that are gone (--keep-orphans)",
            o.enrichments_kept, o.embeddings_kept
        )?;
    }
    if !report.problems.is_empty() {
        writeln!(
            text,
            "{} file(s) could not be indexed and keep their previous rows (see the warnings above)",
            report.problems.len()
        )?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> IndexArgs {
        IndexArgs {
            dir: None,
            max_file_size: DEFAULT_MAX_FILE_BYTES,
            threads: Some(1),
            include_hidden: false,
            keep_orphans: false,
        }
    }

    #[test]
    fn a_repository_without_an_index_gets_one_and_a_summary() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("lib.py"), "def f():\n    return 1\n").expect("write");
        let repo = Repo::new(dir.path(), None, None).expect("repo");
        let report = run(&repo, &args(), ProgressMode::Off).expect("index");
        assert_eq!((report.files.added, report.spans.added), (1, 1));
        let text = render(&repo, &report).expect("render");
        assert!(
            text.contains("files   1 seen: 1 added, 0 changed, 0 removed, 0 unchanged"),
            "{text}"
        );
        assert!(text.contains("spans   1 added, 0 kept"), "{text}");
        let again = run(&repo, &args(), ProgressMode::Off).expect("index again");
        assert_eq!(again.files.unchanged, 1);
    }

    #[test]
    fn a_wrong_path_or_option_exits_2_and_a_failing_database_exits_1() {
        let path = PathBuf::from("x");
        let cases = [
            (
                IndexError::NotADirectory { path: path.clone() },
                Exit::Usage,
            ),
            (
                IndexError::InvalidOption {
                    option: "window_lines",
                    reason: "at least 1",
                },
                Exit::Usage,
            ),
            (
                IndexError::Db(enrich_db::DbError::NotADatabase {
                    path: path.clone(),
                    detail: "text".to_owned(),
                }),
                Exit::Usage,
            ),
            (
                IndexError::Db(enrich_db::DbError::Busy {
                    path: path.clone(),
                    action: "write",
                    timeout: std::time::Duration::from_secs(1),
                }),
                Exit::Failed,
            ),
        ];
        for (err, expected) in cases {
            let shown = err.to_string();
            assert_eq!(
                crate::exit::classify(&index_error(err)),
                expected,
                "{shown}"
            );
        }
    }
}

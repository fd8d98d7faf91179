//! `enrich index [DIR]`: builds or refreshes the repository's index (LLMC's `files` and `spans`)
//! with enrich's own indexer, so `enrich run` also works on a repository LLMC never indexed.
//! Creates the index when there is none; an unchanged repository is read but not written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use enrich_config::{IndexConfig, SecretsAction};
use enrich_index::{
    DEFAULT_MAX_FILE_BYTES, IndexError, IndexEvent, IndexOptions, IndexReport, SkipReason,
    index_repo,
};
use indicatif::{ProgressBar, ProgressDrawTarget};
use serde::Serialize;

use crate::cli::Global;
use crate::context::Repo;
use crate::exit::{Exit, usage};
use crate::progress::{self, ProgressMode};
use crate::{logging, output};

/// Arguments of `enrich index`.
#[derive(Debug, Args)]
pub(crate) struct IndexArgs {
    /// The repository to index [default: --repo].
    #[arg(value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
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
    let config = repo.load_config()?.config;
    let report = run(
        &repo,
        args,
        &config.index,
        ProgressMode::detect(global.quiet > 0),
    )?;
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
        let action = config.secrets.action;
        output::text(&render(&repo, &report, action, global.verbose > 0)?)?;
    }
    Ok(Exit::Success)
}

fn run(
    repo: &Repo,
    args: &IndexArgs,
    config: &IndexConfig,
    mode: ProgressMode,
) -> Result<IndexReport> {
    let mut db = repo.open_for_index()?;
    let options = IndexOptions {
        max_file_bytes: args.max_file_size,
        threads: args.threads.map_or(0, usize::from),
        include_hidden: args.include_hidden,
        keep_orphans: args.keep_orphans,
        ..rule_options(repo, config)
    };
    let bar = (mode == ProgressMode::Bar).then(|| {
        let style = progress::bar_style(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {rate}  ETA {eta}",
        );
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

/// The default options with the rules that leave files out: `[enrichment.index]` and the index
/// database's own files.
pub(crate) fn rule_options(repo: &Repo, config: &IndexConfig) -> IndexOptions {
    IndexOptions {
        exclude: config.exclude.clone(),
        include: config.include.clone(),
        own_files: own_files(&repo.db_path),
        ..IndexOptions::default()
    }
}

/// The files the index database is made of, wherever `--db` puts it: never indexed.
fn own_files(db: &Path) -> Vec<PathBuf> {
    let mut files = vec![db.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

/// The run's error, marked so that the exit code tells a wrong path from a failure.
pub(crate) fn index_error(err: IndexError) -> anyhow::Error {
    match err {
        IndexError::Db(err) => anyhow::Error::new(err),
        err @ (IndexError::Root { .. }
        | IndexError::NotADirectory { .. }
        | IndexError::InvalidOption { .. }
        | IndexError::InvalidGlob { .. }) => usage(err.to_string()),
        err => anyhow::Error::new(err),
    }
}

/// The reasons a file is skipped, in the order the summary lists them.
const SKIP_REASONS: [SkipReason; 6] = [
    SkipReason::Secret,
    SkipReason::Binary,
    SkipReason::TooLarge,
    SkipReason::Excluded,
    SkipReason::Generated,
    SkipReason::Own,
];

/// The summary; `verbose` also names every skipped file and every span with a secret.
fn render(
    repo: &Repo,
    report: &IndexReport,
    action: SecretsAction,
    verbose: bool,
) -> Result<String> {
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
        "files   {} seen: {} added, {} changed, {} removed, {} unchanged",
        f.seen, f.added, f.changed, f.removed, f.unchanged
    )?;
    let skipped: Vec<String> = SKIP_REASONS
        .iter()
        .map(|&reason| {
            let count = match reason {
                SkipReason::Secret => f.secret,
                SkipReason::Binary => f.binary,
                SkipReason::TooLarge => f.too_large,
                SkipReason::Excluded => f.excluded,
                SkipReason::Generated => f.generated,
                _ => f.own,
            };
            (count, reason)
        })
        .filter(|&(count, _)| count > 0)
        .map(|(count, reason)| format!("{count} {}", reason.as_str()))
        .collect();
    if !skipped.is_empty() {
        let hint = if verbose {
            ""
        } else {
            " (--verbose names them)"
        };
        writeln!(text, "skipped {}{hint}", skipped.join(", "))?;
        if verbose {
            for file in &report.skipped {
                writeln!(text, "  {:<13} {}", file.reason.as_str(), file.path)?;
            }
        }
    }
    writeln!(
        text,
        "spans   {} added, {} kept, {} moved, {} removed, {} duplicate, {} shared with a file earlier in path order",
        s.added, s.kept, s.moved, s.removed, s.duplicate, s.shared
    )?;
    if s.with_secrets > 0 {
        writeln!(
            text,
            "secrets {} span(s) hold secrets: a run {} ([enrichment.secrets] action = \"{}\"){}",
            s.with_secrets,
            match action {
                SecretsAction::Redact => "redacts them from its prompts",
                SecretsAction::Skip => "sends none of these spans",
            },
            action.as_str(),
            if verbose {
                ""
            } else {
                " (--verbose names them)"
            }
        )?;
        if verbose {
            for span in &report.secret_spans {
                writeln!(
                    text,
                    "  {}:{}-{} {}",
                    span.path,
                    span.start_line,
                    span.end_line,
                    span.rules.join(", ")
                )?;
            }
        }
    }
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
        let config = IndexConfig::default();
        let report = run(&repo, &args(), &config, ProgressMode::Off).expect("index");
        assert_eq!((report.files.added, report.spans.added), (1, 1));
        let text = render(&repo, &report, SecretsAction::Redact, false).expect("render");
        assert!(
            text.contains("files   1 seen: 1 added, 0 changed, 0 removed, 0 unchanged"),
            "{text}"
        );
        assert!(text.contains("spans   1 added, 0 kept"), "{text}");
        let again = run(&repo, &args(), &config, ProgressMode::Off).expect("index again");
        assert_eq!(again.files.unchanged, 1);
    }

    #[test]
    fn skipped_files_are_counted_by_reason_and_named_with_verbose() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("lib.py", "def f():\n    return 1\n");
        write("certs/server.key", "key\n");
        write("enrich.toml", "[enrichment]\n");
        write("yarn.lock", "x\n");
        write("vendor/big.js", "var x = 1;\n");
        write(
            "settings.py",
            &format!("PASSWORD = \"{}\"\n", "q8Zr2LmX9vTp4WkB7sYc1NdF"),
        );
        let repo = Repo::new(dir.path(), None, None).expect("repo");
        let config = IndexConfig {
            exclude: vec!["vendor/**".to_owned()],
            include: Vec::new(),
        };
        let report = run(&repo, &args(), &config, ProgressMode::Off).expect("index");
        let text = render(&repo, &report, SecretsAction::Redact, false).expect("render");
        assert!(
            text.contains(
                "skipped 1 secret, 1 excluded, 1 generated, 1 enrich's own (--verbose names them)"
            ),
            "{text}"
        );
        assert!(
            text.contains("secrets 1 span(s) hold secrets: a run redacts them from its prompts"),
            "{text}"
        );
        assert!(!text.contains("certs/server.key"), "{text}");
        let text = render(&repo, &report, SecretsAction::Skip, true).expect("render");
        for line in [
            "  secret        certs/server.key",
            "  enrich's own  enrich.toml",
            "  excluded      vendor/big.js",
            "  generated     yarn.lock",
            "  settings.py:1-1 generic-secret",
            "a run sends none of these spans",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(!text.contains("q8Zr2LmX9vTp4WkB7sYc1NdF"), "{text}");
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

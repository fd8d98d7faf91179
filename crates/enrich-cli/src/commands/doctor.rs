//! `enrich doctor`: is the configuration valid, and can every enabled backend be used?

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use enrich_config::IgnoredKey;
use enrich_pipeline::PromptBuilder;
use serde::Serialize;

use crate::context::Repo;
use crate::exit::{Exit, classify};
use crate::health::{BackendCheck, Verdict, check_all};
use crate::output;

/// One backend's line, and its `--json` object.
#[derive(Debug, Serialize)]
struct DoctorBackend {
    #[serde(flatten)]
    check: BackendCheck,
    in_default_chain: bool,
}

/// The index's line.
#[derive(Debug, Serialize)]
struct IndexCheck {
    path: PathBuf,
    spans: Option<u64>,
    pending: Option<u64>,
    error: Option<String>,
    /// How `enrich run` would end on this index's error: the exit code doctor ends with.
    #[serde(skip)]
    exit: Option<Exit>,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct DoctorReport {
    config_file: Option<PathBuf>,
    default_chain: String,
    ignored_keys: Vec<IgnoredKey>,
    backends: Vec<DoctorBackend>,
    index: IndexCheck,
    /// False when a backend of the default chain is unusable (exit code 3) or the index cannot
    /// be opened (exit code 2 for a wrong or missing `--db`, as `enrich run` would end).
    ok: bool,
}

/// Validates the configuration (an invalid one is exit code 2), checks every enabled backend
/// concurrently, and opens the index and checks every page of it (SQLite's `quick_check`).
/// Exit code 3 when a backend of the default chain is unusable; else, when the index cannot be
/// used, the code `enrich run` would end with (2 for a file that is missing, damaged or not an
/// LLMC index).
pub(crate) async fn doctor(repo: &Repo, json: bool) -> Result<Exit> {
    let loaded = repo.load_config_quietly()?;
    let config = &loaded.config;
    // The prompt template is checked where it is parsed, as a run would.
    PromptBuilder::new(&config.prompt).context("the configuration cannot be used")?;
    let backends: Vec<DoctorBackend> = check_all(config.backends.iter().filter(|b| b.enabled))
        .await
        .into_iter()
        .map(|check| DoctorBackend {
            in_default_chain: check.chain == config.default_chain,
            check,
        })
        .collect();

    let backends_ok = !backends
        .iter()
        .any(|b| b.in_default_chain && b.check.verdict == Verdict::Unusable);
    let index = check_index(repo);
    let report = DoctorReport {
        config_file: loaded.file.clone(),
        default_chain: config.default_chain.clone(),
        ignored_keys: loaded.ignored_keys().to_vec(),
        backends,
        ok: backends_ok && index.error.is_none(),
        index,
    };
    if json {
        output::json(&report)?;
    } else {
        output::text(&render(&report)?)?;
    }
    if let (true, Some(error)) = (backends_ok, &report.index.error) {
        output::note(&format!("error: {error}\n"));
        return Ok(report.index.exit.unwrap_or(Exit::Failed));
    }
    if backends_ok {
        Ok(Exit::Success)
    } else {
        let dead: Vec<String> = report
            .backends
            .iter()
            .filter(|b| b.in_default_chain && b.check.verdict == Verdict::Unusable)
            .map(|b| {
                format!(
                    "{} at {}",
                    b.check.name,
                    b.check.host.as_deref().unwrap_or("?")
                )
            })
            .collect();
        output::note(&format!(
            "error: the default chain {:?} has unusable backends: {}; apply the fixes above, or set enabled = false on them\n",
            report.default_chain,
            dead.join(", ")
        ));
        Ok(Exit::BackendUnusable)
    }
}

fn check_index(repo: &Repo) -> IndexCheck {
    let stats = repo.open_checked().and_then(|db| Ok(db.stats()?));
    match stats {
        Ok(stats) => IndexCheck {
            path: repo.db_path.clone(),
            spans: Some(stats.spans),
            pending: Some(stats.pending),
            error: None,
            exit: None,
        },
        Err(err) => IndexCheck {
            path: repo.db_path.clone(),
            spans: None,
            pending: None,
            error: Some(format!("{:#}", err.root_cause())),
            exit: Some(classify(&err)),
        },
    }
}

fn render(report: &DoctorReport) -> Result<String> {
    let mut text = String::new();
    match &report.config_file {
        Some(file) => writeln!(text, "ok    config {}", file.display())?,
        None => writeln!(
            text,
            "ok    config: built-in defaults and environment (no config file)"
        )?,
    }
    for key in &report.ignored_keys {
        writeln!(text, "warn  config key {key}")?;
    }
    for DoctorBackend {
        check: b,
        in_default_chain,
    } in &report.backends
    {
        let label = match b.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Unknown => "??  ",
            Verdict::Unusable => "FAIL",
        };
        let default = if *in_default_chain {
            ", default chain"
        } else {
            ""
        };
        write!(
            text,
            "{label}  backend {}/{} ({} {} at {}{default})",
            b.chain,
            b.name,
            b.provider,
            b.model,
            b.host.as_deref().unwrap_or("the provider's default URL")
        )?;
        if let Some(health) = &b.health {
            // The adapter's own messages say what it found; without any, the bare facts.
            let mut facts = health.messages.clone();
            if facts.is_empty() {
                facts.extend(health.version.as_ref().map(|v| format!("version {v}")));
                facts.extend(health.context_length.map(|c| format!("context {c} tokens")));
            }
            if !facts.is_empty() {
                write!(text, ": {}", facts.join("; "))?;
            }
        }
        if let Some(error) = &b.error {
            write!(text, ": {error}")?;
        }
        writeln!(text)?;
        for fix in &b.fixes {
            writeln!(text, "      fix: {fix}")?;
        }
    }
    let index = &report.index;
    match (&index.error, index.spans, index.pending) {
        (None, Some(spans), Some(pending)) => writeln!(
            text,
            "ok    index {}: {spans} spans, {pending} pending",
            index.path.display()
        )?,
        (error, _, _) => writeln!(
            text,
            "FAIL  index {}: {}",
            index.path.display(),
            error.as_deref().unwrap_or("unreadable")
        )?,
    }
    Ok(text)
}

//! `cargo xtask bench --real-model`: enrichment quality and cost on the real local model.
//!
//! Not part of `cargo xtask ci` (a few minutes). It provisions the model server
//! ([`crate::model_server`]: SmolLM2-135M-Instruct behind Ollama's API, or another of its
//! models with `--model`), downloads a real
//! third-party code base from PyPI with `pip download` (the source distribution of
//! [`SDIST_REQUIREMENT`], checked against its size and sha256, cached under
//! `target/bench/real-model-cache/`), copies [`SAMPLE_FILES`] of it into a fresh repository,
//! `enrich index`es it and runs `enrich run --limit` [`SAMPLE_SPANS`] in span order against the
//! server at temperature 0. The sample is the same every time: the files are fixed, the indexer
//! numbers their spans in path order and `--no-code-first` takes them in that order.
//!
//! Every figure comes from the run's database (the attempt log and the enrichments), never from
//! `enrich`'s output; see [`Figures`]. The prompt tokens evaluated per span are judged against
//! each span's own part of the prompt ([`span_part`](super::span_part)). It prints a table and
//! writes it with the machine and every figure to `target/bench/real-model-<unix-ts>.json` and
//! `real-model-latest.json`.
//!
//! With two models (`--model smollm2 --model gemma3-270m`) both enrich the same sample in one
//! index, one after the other: before the second runs, the first's enrichments, their quality
//! rows and the failure ledger are deleted (as LLMC may delete rows; the attempt log keeps every
//! attempt), so the second model meets the same pending spans. Each model's figures are read
//! right after its run, with `enrich quality --model`; then `enrich compare --model A --model
//! B` puts the two side by side from the attempt log (the index keeps the second model's
//! enrichments, so compare reports the first's scores and summaries as not kept).
//!
//! Then it measures what the last model's enrichments are worth to retrieval: the rest of the package's
//! modules join the repository (`enrich index` keeps the sample's spans and enrichments, their
//! content being unchanged), and `enrich eval search --json` ranks the questions of
//! [`QUESTIONS`] over all of the package's spans, code only and enriched; see [`Retrieval`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use super::process::http_json;
use super::report::{Row, machine_info, render_table, unix_seconds};
use super::span_part::SpanPartCheck;
use super::{path_str, say};
use crate::model_server::{
    self, ModelSpec, pip_download, remove_dir_if_exists, run_loudly, verify_file,
};

/// The PyPI requirement whose source distribution is the code base.
const SDIST_REQUIREMENT: &str = "requests==2.32.3";
/// Its file name on PyPI.
const SDIST_FILE: &str = "requests-2.32.3.tar.gz";
/// Its size in bytes.
const SDIST_SIZE: u64 = 131_218;
/// Its sha256, lowercase hex (as PyPI lists it).
const SDIST_SHA256: &str = "55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760";
/// The files of the sample, inside the unpacked distribution; the repository gets them under
/// `requests/`, in this (path) order.
const SAMPLE_FILES: [&str; 3] = [
    "requests-2.32.3/src/requests/auth.py",
    "requests-2.32.3/src/requests/hooks.py",
    "requests-2.32.3/src/requests/structures.py",
];
/// Spans enriched: the first this many of the sample files' spans, in span order.
const SAMPLE_SPANS: u64 = 30;
/// The questions of the retrieval evaluation, relative to the workspace root: about forty
/// questions over the package's code, each with the symbol(s) that answer it, written by
/// reading the code and its docstrings.
pub(crate) const QUESTIONS: &str = "xtask/data/requests-2.32.3-questions.jsonl";
/// The package's modules inside the unpacked distribution, all of which the retrieval
/// evaluation indexes (under `requests/`, like the sample).
const PACKAGE_DIR: &str = "requests-2.32.3/src/requests";
/// The model server's context, and the `num_ctx` every request asks for.
const NUM_CTX: u32 = 4096;

/// Runs the real-model benchmark once for each of `models` (at least one), on one index.
pub(crate) fn run(root: &Path, models: &[&'static ModelSpec]) -> Result<()> {
    ensure!(!models.is_empty(), "the real-model bench needs a model");
    say("building the release `enrich` and `enrich-bench`");
    let mut build = crate::cargo(root);
    build.args([
        "build",
        "--release",
        "--locked",
        "--package",
        "enrich-cli",
        "--bin",
        "enrich",
        "--package",
        "enrich-bench",
        "--bin",
        "enrich-bench",
    ]);
    crate::run_cmd(build)?;
    let target = crate::target_dir(root);
    let enrich = target.join("release/enrich");
    let out_dir = target.join("bench");
    let work = out_dir.join("real-model-work");
    remove_dir_if_exists(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("could not create {}", work.display()))?;

    let sdist = fetch_sdist(&out_dir.join("real-model-cache"))?;
    let repo = sample_repo(&sdist, &work)?;

    let enrich_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&enrich);
        cmd.arg("--repo").arg(&repo).args(args);
        cmd
    };
    let mut index = enrich_cmd(&["-q", "index"]);
    index.stdout(Stdio::null());
    run_loudly(index, "enrich could not index the sample")?;
    let span_parts = span_parts(&target.join("release/enrich-bench"), &repo)?;
    let db = repo.join(".llmc/rag/index_v2.db");
    let machine = machine_info();
    let mut reports = Vec::with_capacity(models.len());
    for (i, spec) in models.iter().enumerate() {
        if i > 0 {
            set_aside_enrichments(&db)?;
        }
        reports.push(run_model(
            root,
            spec,
            &repo,
            &work,
            &span_parts,
            &machine,
            &enrich_cmd,
        )?);
    }
    let compare = match models {
        [a, b] => {
            let compare = |json: bool| -> Result<String> {
                let mut args = vec!["compare", "--model", a.name, "--model", b.name];
                if json {
                    args.insert(0, "--json");
                }
                let out = enrich_cmd(&args)
                    .output()
                    .context("could not run enrich compare")?;
                ensure!(
                    out.status.success(),
                    "enrich compare failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            };
            let text = compare(false)?;
            println!("{text}");
            Some(json!({"text": text, "json": serde_json::from_str::<Value>(&compare(true)?)?}))
        }
        _ => None,
    };

    // After every model's run: adding the package's other modules makes more spans pending.
    let retrieval = evaluate_retrieval(root, &work, &repo, &enrich_cmd)?;
    let last = models[models.len() - 1].name;
    let build = format!("release build, {last}'s enrichments, {SDIST_REQUIREMENT}");
    println!("{}", render_table(&machine, 1, &build, &retrieval.rows()));

    let ts = unix_seconds();
    let report = json!({
        "timestamp": ts,
        "machine": machine,
        "code_base": {"requirement": SDIST_REQUIREMENT, "sha256": SDIST_SHA256, "files": SAMPLE_FILES},
        "sample_spans": SAMPLE_SPANS,
        "options": {"temperature": 0, "seed": 42, "num_ctx": NUM_CTX},
        "models": reports,
        "compare": compare,
        "retrieval": retrieval.report,
    });
    let text = serde_json::to_string_pretty(&report)?;
    for name in [
        format!("real-model-{ts}.json"),
        "real-model-latest.json".to_owned(),
    ] {
        let path = out_dir.join(name);
        fs::write(&path, &text).with_context(|| format!("could not write {}", path.display()))?;
    }
    say(&format!(
        "results in {}",
        out_dir.join(format!("real-model-{ts}.json")).display()
    ));
    Ok(())
}

/// Enriches the sample with the model `spec` and reports its figures.
fn run_model(
    root: &Path,
    spec: &ModelSpec,
    repo: &Path,
    work: &Path,
    span_parts: &HashMap<String, String>,
    machine: &Value,
    enrich_cmd: &dyn Fn(&[&str]) -> Command,
) -> Result<Value> {
    let server = model_server::provision(root, spec)
        .context("could not provision the real local model server")?;
    let running = server.start(
        &["--ctx", &NUM_CTX.to_string()],
        &work.join(format!("model-server-{}.log", spec.id)),
    )?;
    let own_parts = own_part_tokens(&running.url, span_parts)?;
    fs::write(repo.join("enrich.toml"), enrich_toml(spec, &running.url))
        .context("could not write the sample's enrich.toml")?;
    say(&format!(
        "enriching {SAMPLE_SPANS} spans of {SDIST_REQUIREMENT} with {} (one slot, temperature 0)",
        spec.name
    ));
    let stdout_path = work.join(format!("run-{}.out.json", spec.id));
    let stderr_path = work.join(format!("run-{}.err.log", spec.id));
    let mut run = enrich_cmd(&[
        "--json",
        "run",
        "--limit",
        &SAMPLE_SPANS.to_string(),
        "--no-code-first",
        "--concurrency",
        "1",
    ]);
    run.stdin(Stdio::null())
        .stdout(File::create(&stdout_path).context("could not create the run's stdout file")?)
        .stderr(File::create(&stderr_path).context("could not create the run's stderr file")?);
    let started = Instant::now();
    let status = run.status().context("could not start enrich run")?;
    let seconds = started.elapsed().as_secs_f64();
    drop(running);
    ensure!(
        matches!(status.code(), Some(0 | 1)),
        "enrich run exited with {status}; see {}",
        stderr_path.display()
    );

    let records = read_records(&repo.join(".llmc/rag/index_v2.db"), spec.name)?;
    let figures = Figures::of(&records, seconds);
    let span_part = SpanPartCheck::of(&records.attempts, &own_parts);
    let mut rows = figures.rows();
    rows.push(span_part.row());
    let build = format!("release build, {}, {SDIST_REQUIREMENT}", spec.name);
    println!("{}", render_table(machine, 1, &build, &rows));
    let quality = enrich_cmd(&["quality", "--model", spec.name])
        .output()
        .context("could not run enrich quality")?;
    let quality = String::from_utf8_lossy(&quality.stdout).into_owned();
    println!("{quality}");
    ensure!(
        figures.spans == SAMPLE_SPANS,
        "the run attempted {} spans, not {SAMPLE_SPANS}: see {}",
        figures.spans,
        stderr_path.display()
    );
    say(&format!("{} done in {seconds:.0} s", spec.name));
    Ok(json!({
        "model": spec.name,
        "figures": figures.to_json(),
        "span_part": span_part.to_json(),
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "quality": quality,
    }))
}

/// Each pending span's own part of its prompt, by span hash (`enrich-bench span-prompts`).
fn span_parts(enrich_bench: &Path, repo: &Path) -> Result<HashMap<String, String>> {
    let out = Command::new(enrich_bench)
        .args(["span-prompts", "--repo", path_str(repo)?, "--limit"])
        .arg(SAMPLE_SPANS.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("could not run enrich-bench span-prompts")?;
    ensure!(out.status.success(), "enrich-bench span-prompts failed");
    let report: Value =
        serde_json::from_slice(&out.stdout).context("enrich-bench span-prompts printed no JSON")?;
    report["spans"]
        .as_array()
        .context("span-prompts printed no spans")?
        .iter()
        .map(|span| {
            Ok((
                span["span_hash"].as_str().context("span_hash")?.to_owned(),
                span["text"].as_str().context("text")?.to_owned(),
            ))
        })
        .collect()
}

/// Each span's own part in the served model's tokens, from the model server's `/tokenize`.
fn own_part_tokens(url: &str, parts: &HashMap<String, String>) -> Result<HashMap<String, u64>> {
    parts
        .iter()
        .map(|(span, text)| {
            let answer = http_json(url, "POST", "/tokenize", Some(&json!({"content": text})))?;
            let tokens = answer["tokens"]
                .as_array()
                .with_context(|| format!("{url}/tokenize answered {answer}"))?;
            Ok((span.clone(), tokens.len() as u64))
        })
        .collect()
}

/// Deletes the sample's enrichments, their quality rows and the failure ledger, so the next
/// model meets the same pending spans; the attempt log stays. python3's sqlite3, as
/// [`read_records`].
fn set_aside_enrichments(db: &Path) -> Result<()> {
    const CLEAR: &str = "import sqlite3, sys\n\
        c = sqlite3.connect(sys.argv[1])\n\
        with c:\n\
        \x20   for table in ('enrich_quality', 'enrichments', 'enrich_failures'):\n\
        \x20       c.execute('DELETE FROM ' + table)\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", CLEAR, path_str(db)?]);
    run_loudly(cmd, "python3 could not clear the first model's enrichments")
}

/// The verified source distribution in `cache`, downloaded with pip when it is missing or bad.
fn fetch_sdist(cache: &Path) -> Result<PathBuf> {
    let file = cache.join(SDIST_FILE);
    if verify_file(&file, SDIST_SIZE, SDIST_SHA256).is_ok() {
        return Ok(file);
    }
    remove_dir_if_exists(cache)?;
    fs::create_dir_all(cache).with_context(|| format!("could not create {}", cache.display()))?;
    say(&format!(
        "downloading the source distribution of {SDIST_REQUIREMENT} from PyPI"
    ));
    pip_download(SDIST_REQUIREMENT, "--no-binary=:all:", cache)?;
    verify_file(&file, SDIST_SIZE, SDIST_SHA256)
        .with_context(|| format!("PyPI's {SDIST_FILE} is not the file this bench pins"))?;
    Ok(file)
}

/// A fresh repository in `work/repo` holding [`SAMPLE_FILES`] under `requests/`.
fn sample_repo(sdist: &Path, work: &Path) -> Result<PathBuf> {
    let unpacked = work.join("sdist");
    fs::create_dir_all(&unpacked)
        .with_context(|| format!("could not create {}", unpacked.display()))?;
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(sdist).arg("-C").arg(&unpacked);
    run_loudly(tar, "`tar` with gzip support is needed")?;
    let repo = work.join("repo");
    let package = repo.join("requests");
    fs::create_dir_all(&package)
        .with_context(|| format!("could not create {}", package.display()))?;
    for member in SAMPLE_FILES {
        let from = unpacked.join(member);
        let name = from.file_name().context("a sample file has a name")?;
        fs::copy(&from, package.join(name))
            .with_context(|| format!("could not copy {}", from.display()))?;
    }
    Ok(repo)
}

/// Adds the package's other modules to the sample repository, indexes them, and runs `enrich
/// eval search --json` with [`QUESTIONS`] over the whole package.
fn evaluate_retrieval(
    root: &Path,
    work: &Path,
    repo: &Path,
    enrich_cmd: &dyn Fn(&[&str]) -> Command,
) -> Result<Retrieval> {
    let package = work.join("sdist").join(PACKAGE_DIR);
    let entries =
        fs::read_dir(&package).with_context(|| format!("could not list {}", package.display()))?;
    for entry in entries {
        let from = entry
            .with_context(|| format!("could not list {}", package.display()))?
            .path();
        let to = repo
            .join("requests")
            .join(from.file_name().context("a module has a name")?);
        if from.extension().is_some_and(|e| e == "py") && !to.exists() {
            fs::copy(&from, &to).with_context(|| format!("could not copy {}", from.display()))?;
        }
    }
    let mut index = enrich_cmd(&["-q", "index"]);
    index.stdout(Stdio::null());
    run_loudly(index, "enrich could not index the whole package")?;
    let questions = root.join(QUESTIONS);
    say("ranking the retrieval questions, code only and enriched");
    let out = enrich_cmd(&["--json", "eval", "search", path_str(&questions)?])
        .stderr(Stdio::inherit())
        .output()
        .context("could not run enrich eval search")?;
    ensure!(
        out.status.success(),
        "enrich eval search exited with {}",
        out.status
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .context("enrich eval search --json did not print JSON")?;
    Retrieval::of(report)
}

/// The retrieval evaluation's report (`enrich eval search --json`), as the table shows it.
#[derive(Debug, Clone, PartialEq)]
struct Retrieval {
    report: Value,
}

impl Retrieval {
    fn of(report: Value) -> Result<Self> {
        for ranking in ["code_only", "enriched", "lift"] {
            ensure!(
                report[ranking]["mrr_at_10"].is_number(),
                "the evaluation's report has no {ranking} figures: {report}"
            );
        }
        Ok(Self { report })
    }

    /// One row per figure: code only, enriched and the lift in the measured text; the value is
    /// the lift.
    fn rows(&self) -> Vec<Row> {
        let r = &self.report;
        let scope = format!(
            "{} questions over {} spans, {} enriched",
            r["evaluated"], r["spans"], r["enriched_spans"]
        );
        [
            ("recall_at_1", "retrieval recall@1"),
            ("recall_at_5", "retrieval recall@5"),
            ("recall_at_10", "retrieval recall@10"),
            ("mrr_at_10", "retrieval MRR@10"),
        ]
        .into_iter()
        .map(|(id, name)| {
            let figure = |ranking: &str| r[ranking][id].as_f64().unwrap_or(f64::NAN);
            let mut row = Row::new(id, name.to_owned(), "lift");
            row.value = Some(figure("lift"));
            row.measured = format!(
                "code only {:.3}, enriched {:.3}, lift {:+.3} ({scope})",
                figure("code_only"),
                figure("enriched"),
                figure("lift")
            );
            row
        })
        .collect()
    }
}

/// The sample's `enrich.toml`: one backend, the model server, deterministic sampling.
fn enrich_toml(spec: &ModelSpec, url: &str) -> String {
    let (id, model) = (spec.id, spec.name);
    format!(
        "# Written by `cargo xtask bench --real-model`.\n\
         [enrichment]\n\
         default_chain = \"real\"\n\n\
         [[enrichment.chain]]\n\
         name = \"{id}\"\n\
         chain = \"real\"\n\
         provider = \"ollama\"\n\
         model = \"{model}\"\n\
         url = \"{url}\"\n\
         timeout_seconds = 300\n\
         options = {{ temperature = 0, seed = 42, num_ctx = {NUM_CTX} }}\n"
    )
}

/// One row of `enrich_attempts`, as the figures need it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Attempt {
    pub(super) span_hash: String,
    pub(super) model: String,
    pub(super) attempt: u64,
    pub(super) success: bool,
    pub(super) failure_kind: Option<String>,
    pub(super) prompt_eval_count: Option<u64>,
    pub(super) eval_count: Option<u64>,
}

/// What the run left in its database.
#[derive(Debug, Clone, PartialEq)]
struct Records {
    /// Every attempt, in the order they were written.
    attempts: Vec<Attempt>,
    /// Rows of `enrichments`.
    stored: u64,
}

/// Reads the attempts of `model` and counts the enrichments, with python3's sqlite3 module (pip
/// needs python3 already, and xtask links no SQLite).
fn read_records(db: &Path, model: &str) -> Result<Records> {
    const DUMP: &str = "import json, sqlite3, sys\n\
        c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n\
        rows = c.execute('SELECT span_hash, attempt, outcome, failure_kind, prompt_eval_count, \
        eval_count, model FROM enrich_attempts ORDER BY id').fetchall()\n\
        stored = c.execute('SELECT count(*) FROM enrichments').fetchone()[0]\n\
        print(json.dumps({'attempts': rows, 'stored': stored}))\n";
    let out = Command::new("python3")
        .args(["-c", DUMP, path_str(db)?])
        .stderr(Stdio::inherit())
        .output()
        .context("could not run python3 to read the run's database")?;
    ensure!(
        out.status.success(),
        "python3 could not read {}",
        db.display()
    );
    let dump: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the dump of {} is not JSON", db.display()))?;
    parse_records(&dump, model)
}

/// The dump's attempts of `model` (the models of a multi-model bench run one after another on
/// one index) and its stored rows.
fn parse_records(dump: &Value, model: &str) -> Result<Records> {
    let rows = dump["attempts"]
        .as_array()
        .context("the dump has no attempts")?;
    let attempts = rows
        .iter()
        .filter(|row| row[6].as_str() == Some(model))
        .map(|row| {
            Ok(Attempt {
                span_hash: row[0].as_str().context("span_hash")?.to_owned(),
                model: model.to_owned(),
                attempt: row[1].as_u64().context("attempt")?,
                success: row[2].as_str() == Some("success"),
                failure_kind: row[3].as_str().map(str::to_owned),
                prompt_eval_count: row[4].as_u64(),
                eval_count: row[5].as_u64(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Records {
        attempts,
        stored: dump["stored"].as_u64().context("stored")?,
    })
}

/// The benchmark's figures, all from the database.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    /// Spans with at least one attempt.
    spans: u64,
    /// Attempts in all.
    attempts: u64,
    /// Spans whose first attempt succeeded.
    first_try_valid: u64,
    /// Spans whose first attempt was not rejected by the quality gate (see `gate_passed`).
    first_try_gate_passed: u64,
    /// Attempts not rejected by the quality gate: every attempt whose failure kind does not
    /// contain `quality` (the gate's kind, whatever its exact name).
    gate_passed: u64,
    /// Rows of `enrichments`.
    stored: u64,
    /// Mean `prompt_eval_count` over the attempts that report it.
    prompt_eval_mean: Option<f64>,
    /// The same without the run's first attempt (the one that evaluates the shared prefix).
    prompt_eval_mean_after_first: Option<f64>,
    /// `eval_count` summed over every attempt.
    output_tokens: u64,
    /// Wall-clock seconds of `enrich run`.
    seconds: f64,
}

impl Figures {
    fn of(records: &Records, seconds: f64) -> Self {
        let attempts = &records.attempts;
        let mut spans: Vec<&str> = attempts.iter().map(|a| a.span_hash.as_str()).collect();
        spans.sort_unstable();
        spans.dedup();
        let first_attempts: Vec<&Attempt> = spans
            .iter()
            .filter_map(|&span| {
                attempts
                    .iter()
                    .filter(|a| a.span_hash == span)
                    .min_by_key(|a| a.attempt)
            })
            .collect();
        let gate_rejected = |a: &Attempt| {
            a.failure_kind
                .as_deref()
                .is_some_and(|k| k.contains("quality"))
        };
        let first_try_valid = first_attempts.iter().filter(|a| a.success).count();
        let first_try_gate_passed = first_attempts.iter().filter(|a| !gate_rejected(a)).count();
        let gate_passed = attempts.iter().filter(|a| !gate_rejected(a)).count();
        let counts: Vec<u64> = attempts
            .iter()
            .filter_map(|a| a.prompt_eval_count)
            .collect();
        let mean = |values: &[u64]| {
            (!values.is_empty()).then(|| values.iter().sum::<u64>() as f64 / values.len() as f64)
        };
        Self {
            spans: spans.len() as u64,
            attempts: attempts.len() as u64,
            first_try_valid: first_try_valid as u64,
            first_try_gate_passed: first_try_gate_passed as u64,
            gate_passed: gate_passed as u64,
            stored: records.stored,
            prompt_eval_mean: mean(&counts),
            prompt_eval_mean_after_first: counts.get(1..).and_then(mean),
            output_tokens: attempts.iter().filter_map(|a| a.eval_count).sum(),
            seconds,
        }
    }

    fn per_stored(&self, value: f64) -> Option<f64> {
        (self.stored > 0).then(|| value / self.stored as f64)
    }

    fn to_json(&self) -> Value {
        json!({
            "spans": self.spans,
            "attempts": self.attempts,
            "first_try_valid": self.first_try_valid,
            "first_try_gate_passed": self.first_try_gate_passed,
            "gate_passed": self.gate_passed,
            "stored": self.stored,
            "prompt_eval_mean": self.prompt_eval_mean,
            "prompt_eval_mean_after_first": self.prompt_eval_mean_after_first,
            "output_tokens": self.output_tokens,
            "output_tokens_per_stored": self.per_stored(self.output_tokens as f64),
            "seconds": self.seconds,
            "seconds_per_stored": self.per_stored(self.seconds),
        })
    }

    /// The table's rows; no target is judged (the issue sets none on these figures here).
    fn rows(&self) -> Vec<Row> {
        let rate = |id: &'static str, name: &str, part: u64, whole: u64, of: &str| {
            let mut row = Row::new(id, name.to_owned(), "fraction");
            let fraction = (whole > 0).then(|| part as f64 / whole as f64);
            row.value = fraction;
            row.measured = match fraction {
                Some(f) => format!("{part} of {whole} {of} = {:.0}%", f * 100.0),
                None => format!("no {of}"),
            };
            row
        };
        let number =
            |id: &'static str, name: &str, unit: &'static str, value: Option<f64>, text: String| {
                let mut row = Row::new(id, name.to_owned(), unit);
                row.value = value;
                row.measured = text;
                row
            };
        let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"));
        vec![
            rate(
                "first_try_valid",
                "first-try valid",
                self.first_try_valid,
                self.spans,
                "spans",
            ),
            rate(
                "first_try_gate_pass",
                "first-try gate pass",
                self.first_try_gate_passed,
                self.spans,
                "spans",
            ),
            rate(
                "gate_pass",
                "gate pass",
                self.gate_passed,
                self.attempts,
                "attempts",
            ),
            rate("stored", "stored", self.stored, self.spans, "spans"),
            number(
                "prompt_eval",
                "prompt tokens evaluated per attempt",
                "tokens",
                self.prompt_eval_mean_after_first,
                format!(
                    "{} after the first ({} with it)",
                    show(self.prompt_eval_mean_after_first),
                    show(self.prompt_eval_mean)
                ),
            ),
            number(
                "output_tokens_per_stored",
                "output tokens per stored enrichment",
                "tokens",
                self.per_stored(self.output_tokens as f64),
                format!(
                    "{} ({} tokens over {} attempts)",
                    show(self.per_stored(self.output_tokens as f64)),
                    self.output_tokens,
                    self.attempts
                ),
            ),
            number(
                "seconds_per_stored",
                "seconds per stored enrichment",
                "s",
                self.per_stored(self.seconds),
                format!(
                    "{} ({:.0} s for the run)",
                    show(self.per_stored(self.seconds)),
                    self.seconds
                ),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(span: &str, n: u64, kind: Option<&str>, prompt: u64, out: u64) -> Value {
        json!([
            span,
            n,
            if kind.is_none() { "success" } else { "failure" },
            kind,
            prompt,
            out,
            "m:1b"
        ])
    }

    #[test]
    fn figures_come_from_the_attempt_log_and_the_stored_rows() {
        let dump = json!({
            "attempts": [
                attempt("a", 1, None, 700, 200),
                attempt("b", 1, Some("schema_invalid"), 40, 300),
                attempt("b", 2, None, 60, 250),
                attempt("c", 1, Some("quality_rejected"), 50, 100),
                attempt("c", 2, Some("quality_rejected"), 50, 150),
                [ "d", 1, "failure", "connection", null, null, "m:1b" ],
                // Another model's attempt on the same index is not this model's.
                [ "a", 1, "success", null, 5, 5, "other:2b" ],
            ],
            "stored": 2,
        });
        let records = parse_records(&dump, "m:1b").unwrap();
        assert!(records.attempts.iter().all(|a| a.model == "m:1b"));
        let figures = Figures::of(&records, 20.0);
        assert_eq!(figures.spans, 4);
        assert_eq!(figures.attempts, 6);
        assert_eq!(
            figures.first_try_valid, 1,
            "only a's first attempt succeeded"
        );
        assert_eq!(figures.gate_passed, 4, "c's two attempts failed the gate");
        assert_eq!(
            figures.first_try_gate_passed, 3,
            "all but c's first attempt"
        );
        assert_eq!(figures.stored, 2);
        assert_eq!(figures.prompt_eval_mean, Some(180.0));
        assert_eq!(figures.prompt_eval_mean_after_first, Some(50.0));
        assert_eq!(figures.output_tokens, 1000);
        let json = figures.to_json();
        assert_eq!(json["output_tokens_per_stored"], 500.0);
        assert_eq!(json["seconds_per_stored"], 10.0);
        let rows = figures.rows();
        assert_eq!(rows[0].measured, "1 of 4 spans = 25%");
        assert_eq!(rows[4].measured, "50.0 after the first (180.0 with it)");
    }

    #[test]
    fn nothing_stored_gives_no_per_stored_figure() {
        let dump = json!({"attempts": [attempt("a", 1, Some("truncated"), 10, 900)], "stored": 0});
        let figures = Figures::of(&parse_records(&dump, "m:1b").unwrap(), 5.0);
        assert_eq!(figures.to_json()["seconds_per_stored"], Value::Null);
        assert_eq!(figures.prompt_eval_mean_after_first, None);
        assert_eq!(figures.rows()[6].measured, "n/a (5 s for the run)");
    }

    #[test]
    fn retrieval_rows_show_both_rankings_and_the_lift() {
        let figures = |r1: f64, mrr: f64| json!({"recall_at_1": r1, "recall_at_5": 0.5, "recall_at_10": 0.75, "mrr_at_10": mrr});
        let retrieval = Retrieval::of(json!({
            "evaluated": 40, "spans": 276, "enriched_spans": 15,
            "code_only": figures(0.25, 0.4), "enriched": figures(0.3, 0.45),
            "lift": figures(0.05, 0.05),
        }))
        .unwrap();
        let rows = retrieval.rows();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[0].measured,
            "code only 0.250, enriched 0.300, lift +0.050 (40 questions over 276 spans, 15 enriched)"
        );
        assert_eq!(rows[3].value, Some(0.05));
        assert!(Retrieval::of(json!({"code_only": {}})).is_err());
    }

    /// The shipped questions: about forty, each a JSON object with a non-empty `query`, an
    /// `expect` that is a name or a non-empty list of names, and an `id` of its own.
    #[test]
    fn the_question_set_is_well_formed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = fs::read_to_string(root.join(QUESTIONS)).unwrap();
        let mut ids = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let question: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
            assert!(
                question["query"].as_str().is_some_and(|q| q.len() > 10),
                "line {}",
                i + 1
            );
            let expect = match &question["expect"] {
                Value::String(one) => vec![one.as_str()],
                Value::Array(any) => any.iter().filter_map(Value::as_str).collect(),
                other => panic!("line {}: expect {other}", i + 1),
            };
            assert!(
                !expect.is_empty() && expect.iter().all(|e| !e.trim().is_empty()),
                "line {}",
                i + 1
            );
            ids.push(question["id"].as_str().unwrap().to_owned());
        }
        assert!((35..=50).contains(&ids.len()), "{} questions", ids.len());
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "ids are unique");
    }

    #[test]
    fn the_config_names_the_server_and_fixes_the_sampling() {
        let spec = crate::model_server::model_spec("gemma3-270m").unwrap();
        let toml = enrich_toml(spec, "http://127.0.0.1:9");
        assert!(toml.contains("url = \"http://127.0.0.1:9\""), "{toml}");
        assert!(toml.contains("name = \"gemma3-270m\""), "{toml}");
        assert!(toml.contains("model = \"gemma3:270m\""), "{toml}");
        assert!(toml.contains("temperature = 0, seed = 42"), "{toml}");
    }
}

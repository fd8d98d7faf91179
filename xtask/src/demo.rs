//! `cargo xtask demo`: the main job, end to end, on a fresh machine.
//!
//! Builds the release `enrich` binary, provisions and starts the real local model server
//! (SmolLM2-135M behind Ollama's API, see [`crate::model_server`]), indexes a small real
//! repository (by default a copy of this project's `enrich-router` sources), enriches its
//! spans with `enrich run` against the real model, and prints `enrich status` and one stored
//! enrichment. `--repo DIR` enriches another repository in place instead; `--limit N` bounds
//! the spans enriched (the model writes about 60 tokens/s on one core, so a span takes ~5 s).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::model_server;

/// Where the demo keeps its copy of the sample repository and its event log.
const DEMO_DIR: &str = "target/demo";
/// The sample repository copied into [`DEMO_DIR`] when no `--repo` is given.
const SAMPLE_SOURCES: &str = "crates/enrich-router";
/// The model name the model server announces.
const MODEL_NAME: &str = model_server::DEFAULT_MODEL.name;

struct Args {
    repo: Option<PathBuf>,
    limit: u32,
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut parsed = Args {
        repo: None,
        limit: 6,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--repo" => {
                let dir = it.next().context("--repo needs a directory")?;
                parsed.repo = Some(PathBuf::from(dir));
            }
            "--limit" => {
                let n = it.next().context("--limit needs a number")?;
                parsed.limit = n
                    .parse()
                    .with_context(|| format!("--limit takes a whole number, not `{n}`"))?;
            }
            other => bail!(
                "unknown argument `{other}`: usage: cargo xtask demo [--repo DIR] [--limit N]"
            ),
        }
    }
    Ok(parsed)
}

/// Runs the demo.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    say("building the release binary");
    let mut build = crate::cargo(root);
    build.args(["build", "--release", "--locked", "--package", "enrich-cli"]);
    crate::run_cmd(build)?;
    let enrich = root.join("target/release/enrich");

    say("provisioning the real local model server");
    let server = model_server::provision(root, model_server::DEFAULT_MODEL)?;
    let mut child = ServerProcess::start(&server)?;
    say(&format!(
        "model server {MODEL_NAME} listening at {}",
        child.url
    ));

    let demo_dir = root.join(DEMO_DIR);
    let repo = match &args.repo {
        Some(repo) => repo.clone(),
        None => {
            let repo = demo_dir.join("repo");
            if repo.exists() {
                fs::remove_dir_all(&repo)
                    .with_context(|| format!("could not clear {}", repo.display()))?;
            }
            copy_tree(&root.join(SAMPLE_SOURCES), &repo)?;
            repo
        }
    };
    fs::create_dir_all(&demo_dir)
        .with_context(|| format!("could not create {}", demo_dir.display()))?;
    let config = demo_dir.join("enrich.toml");
    fs::write(&config, demo_config(&child.url))
        .with_context(|| format!("could not write {}", config.display()))?;
    let events = demo_dir.join("events.jsonl");
    let _ = fs::remove_file(&events);

    let enrich_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&enrich);
        cmd.arg("--repo").arg(&repo).arg("--config").arg(&config);
        cmd.args(args);
        cmd
    };
    say(&format!("indexing {}", repo.display()));
    crate::run_cmd(enrich_cmd(&["index"]))?;
    say(&format!(
        "enriching up to {} spans with the real model",
        args.limit
    ));
    let limit = args.limit.to_string();
    let mut run = enrich_cmd(&["run", "--limit", &limit, "--events"]);
    run.arg(&events);
    let status = run.status().context("could not start enrich run")?;
    // Exit code 1 means some spans failed (a 135M model is not always right); the rest is shown.
    ensure!(
        matches!(status.code(), Some(0 | 1)),
        "enrich run failed with {status}"
    );
    say("enrich status");
    crate::run_cmd(enrich_cmd(&["status"]))?;
    match first_enriched_span(&events)? {
        Some(hash) => {
            say(&format!("one stored enrichment: enrich show {hash}"));
            crate::run_cmd(enrich_cmd(&["show", &hash]))?;
        }
        None => {
            say("no span was enriched in this run; see the attempt history with `enrich failures`")
        }
    }
    child.stop();
    Ok(())
}

fn demo_config(url: &str) -> String {
    format!(
        r#"# Written by `cargo xtask demo`: one chain, the real local model server.
[enrichment]
default_chain = "demo"
concurrency = 1

[[enrichment.chain]]
name = "smollm2"
chain = "demo"
provider = "ollama"
model = "{MODEL_NAME}"
url = "{url}"
timeout_seconds = 120
options = {{ temperature = 0, seed = 42, num_ctx = 4096 }}
"#
    )
}

/// The span hash of a successful span in the run's event log: the first of a source file if
/// any (they make the better example), else the first.
fn first_enriched_span(events: &Path) -> Result<Option<String>> {
    let Ok(text) = fs::read_to_string(events) else {
        return Ok(None);
    };
    let mut first = None;
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} holds a line that is not JSON", events.display()))?;
        if event["type"] != "span_finished" || event["status"] != "enriched" {
            continue;
        }
        let Some(hash) = event["span_hash"].as_str() else {
            continue;
        };
        if event["path"].as_str().is_some_and(|p| p.ends_with(".rs")) {
            return Ok(Some(hash.to_owned()));
        }
        first.get_or_insert_with(|| hash.to_owned());
    }
    Ok(first)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("could not create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("could not read {}", from.display()))? {
        let entry = entry.with_context(|| format!("could not read {}", from.display()))?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "could not copy {} to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
    }
    Ok(())
}

fn say(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "demo: {message}");
}

/// The model server as a child process, stopped on drop.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn start(server: &model_server::ModelServer) -> Result<Self> {
        let mut child = Command::new(&server.node)
            .current_dir(&server.dir)
            .arg(&server.script)
            .arg("--model")
            .arg(&server.model)
            .args([
                "--name",
                server.name,
                "--port",
                "0",
                "--exit-on-stdin-close",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("could not start {}", server.script.display()))?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("could not read the model server's listening line")?;
        let announced: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("the model server did not announce its address: {line:?}"))?;
        let url = announced["listening"]
            .as_str()
            .with_context(|| format!("the model server announced no address: {line:?}"))?
            .to_owned();
        Ok(Self { child, url })
    }

    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

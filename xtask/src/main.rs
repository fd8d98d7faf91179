//! enrich's developer workflow, run as `cargo xtask <command>`.
//!
//! `cargo xtask ci` is the one gate that `.ci/run` calls: fmt check, clippy with `-D warnings`,
//! every test, doc tests, a smoke run of the benchmark (every scenario once, debug build, tiny
//! sizes), `cargo doc` with `-D warnings`, and the tidy checks. Each step is also
//! a command of its own. xtask knows cargo and the filesystem; it deliberately knows nothing of
//! the product crates (it never links them), so a broken product crate cannot break the tool
//! that reports it.

// A command-line tool talks on stderr by design.
#![allow(clippy::print_stderr, clippy::print_stdout)]

mod bench;
mod demo;
mod man;
mod model_server;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci            the full gate: fmt check, clippy, tests, doc tests, bench smoke run, docs, tidy
  fmt           format every crate (fmt --check with --check)
  lint          clippy on every target with -D warnings
  test          every test (cargo-nextest when installed) and the doc tests
  docs          cargo doc --no-deps with -D warnings
  tidy          layering (direct and transitive), lints opt-in, crate docs, one test binary
                per crate, no development-process words in docs, code or manifests
  demo          the main job end to end: index a small repo, enrich it with the real local model
  model-server  provision (and serve) the real local model server: model-server [provision | serve [--port N]]
                [--model smollm2 | gemma3-270m]
  bench         release-build benchmark of the pipeline against its targets:
                bench [--runs N] [--quick | --smoke]; bench --real-model [--model ID [--model ID]]:
                enrichment quality and cost on the real local model over a pinned PyPI code
                base (a few minutes), two models compared on one index
  man           the manual pages of `enrich` (enrich.1, enrich-COMMAND.1): man [--out DIR]
                (default target/man)
";

fn main() {
    if let Err(err) = run() {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        bail!("no command given");
    };
    match command.as_str() {
        "ci" => ci(&root),
        "fmt" => fmt(&root, rest.iter().any(|a| a == "--check")),
        "lint" => lint(&root),
        "test" => test(&root),
        "docs" => docs(&root),
        "tidy" => tidy_cmd(&root),
        "model-server" => model_server::run(&root, rest),
        "demo" => demo::run(&root, rest),
        "bench" => bench::run(&root, rest),
        "man" => man::run(&root, rest),
        "help" | "--help" | "-h" => {
            eprint!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command `{other}`")
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn ci(root: &Path) -> Result<()> {
    let started = Instant::now();
    step("fmt --check", || fmt(root, true))?;
    step("clippy", || lint(root))?;
    step("tests", || test(root))?;
    step("bench smoke", || bench::run(root, &["--smoke".to_owned()]))?;
    step("docs", || docs(root))?;
    step("tidy", || tidy_cmd(root))?;
    eprintln!(
        "xtask: ci passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("xtask: == {name} ==");
    let started = Instant::now();
    f().with_context(|| format!("step `{name}` failed"))?;
    eprintln!(
        "xtask: {name} ok ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where cargo puts build outputs: `CARGO_TARGET_DIR` when set (relative to the workspace root,
/// as cargo reads it), else `target/`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"))
}

fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root);
    cmd
}

fn run_cmd(mut cmd: Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} exited with {status}");
    }
    Ok(())
}

fn fmt(root: &Path, check: bool) -> Result<()> {
    let mut cmd = cargo(root);
    cmd.args(["fmt", "--all"]);
    if check {
        cmd.args(["--", "--check"]);
    }
    run_cmd(cmd).context("formatting differs: run `cargo xtask fmt` and commit the result")
}

fn lint(root: &Path) -> Result<()> {
    let mut cmd = cargo(root);
    cmd.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run_cmd(cmd)
}

fn test(root: &Path) -> Result<()> {
    // The end-to-end tests run against the real local model server; they fail (never skip)
    // without it, so provision it first and tell them where it is.
    let server = model_server::provision(root, model_server::DEFAULT_MODEL)
        .context("could not provision the real local model server the end-to-end tests need")?;
    let server_env = model_server::env_for_tests(&server);
    let nextest = cargo(root)
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = cargo(root);
    if nextest {
        cmd.args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--locked",
            "--no-fail-fast",
        ]);
    } else {
        eprintln!("xtask: cargo-nextest not found, using cargo test");
        cmd.args([
            "test",
            "--workspace",
            "--all-features",
            "--locked",
            "--no-fail-fast",
            "--lib",
            "--bins",
            "--tests",
        ]);
    }
    cmd.envs(server_env.iter().map(|(k, v)| (k, v)));
    run_cmd(cmd)?;
    let mut doc = cargo(root);
    doc.args(["test", "--workspace", "--all-features", "--locked", "--doc"]);
    run_cmd(doc)
}

fn docs(root: &Path) -> Result<()> {
    let mut cmd = cargo(root);
    cmd.args([
        "doc",
        "--workspace",
        "--all-features",
        "--locked",
        "--no-deps",
    ])
    .env("RUSTDOCFLAGS", "-D warnings");
    run_cmd(cmd)
}

fn tidy_cmd(root: &Path) -> Result<()> {
    let problems = tidy::check(root)?;
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        eprintln!("tidy: {p}");
    }
    bail!("{} tidy problem(s)", problems.len())
}

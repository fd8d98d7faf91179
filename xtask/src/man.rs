//! `cargo xtask man [--out DIR]`: the manual pages of `enrich` (`enrich.1` and one
//! `enrich-COMMAND.1` per command) into DIR, by default `target/man`.
//!
//! The pages are written from the `enrich` binary's own command line (clap_mangen), so only the
//! binary can write them; xtask links no product crate, so it runs `cargo run --package
//! enrich-cli -- __man --out DIR` (a hidden command) instead, and prints where they are.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Runs `cargo xtask man`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let out = match args {
        [] => crate::target_dir(root).join("man"),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => bail!("usage: cargo xtask man [--out DIR]"),
    };
    // The binary runs in the workspace root: a relative DIR is taken from where xtask runs.
    let out = std::path::absolute(&out)
        .with_context(|| format!("cannot make {} an absolute path", out.display()))?;
    let mut cmd = crate::cargo(root);
    cmd.args([
        "run",
        "--quiet",
        "--locked",
        "--package",
        "enrich-cli",
        "--bin",
        "enrich",
        "--",
        "__man",
        "--out",
    ])
    .arg(&out);
    crate::run_cmd(cmd).context("could not write the manual pages")?;
    eprintln!(
        "xtask: manual pages in {} (read one with `man -l {}`)",
        out.display(),
        out.join("enrich.1").display()
    );
    Ok(())
}

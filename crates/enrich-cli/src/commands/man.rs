//! `enrich __man --out DIR` (hidden; `cargo xtask man` runs it): the manual pages, `enrich.1`
//! and one `enrich-COMMAND.1` per command, written by clap_mangen from the same command line as
//! `--help`.
//!
//! The binary writes them because only it knows its command line: xtask links no product crate,
//! so it builds and runs `enrich` instead. Each page has clap_mangen's sections (name, synopsis,
//! description, options, commands, version); the examples that end `--help` become an EXAMPLES
//! section, one example a paragraph with its command line unfilled; `enrich.1` also has EXIT
//! STATUS, and every command's page a SEE ALSO that points back to it. The version is in every page's
//! title, and in a VERSION section of `enrich.1`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use crate::cli::{Cli, examples_in};
use crate::exit::Exit;
use crate::output;

/// The exit codes, as `enrich.1` lists them.
const EXIT_STATUS: &[(Exit, &str)] = &[
    (
        Exit::Success,
        "Done, including a run a budget stopped (the rest stays pending); for watch: stopped by a signal.",
    ),
    (
        Exit::Failed,
        "Some spans failed (they stay pending), or the work stopped on an error.",
    ),
    (
        Exit::Usage,
        "A usage or configuration mistake, or bad input: an unknown command or chain, a bad value or unknown key, a missing or damaged index.",
    ),
    (
        Exit::BackendUnusable,
        "A backend is unusable: unreachable, refusing its key, or without its model.",
    ),
    (
        Exit::Interrupted(2),
        "run was stopped by SIGINT before it was done (finished spans are written).",
    ),
    (
        Exit::Interrupted(15),
        "run was stopped by SIGTERM before it was done (finished spans are written).",
    ),
];

/// Writes every page into `out` and lists the files written on stdout.
pub(crate) fn man(out: &Path) -> Result<Exit> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the directory {}", out.display()))?;
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut written = vec![write_page(out, &root, true)?];
    for command in root.get_subcommands().filter(|c| !c.is_hide_set()) {
        written.push(write_page(out, command, false)?);
    }
    let mut list = String::new();
    for path in written {
        list.push_str(&format!("{}\n", path.display()));
    }
    output::text(&list)?;
    Ok(Exit::Success)
}

/// Writes the page of `command` (the top one when `top`) into `out`; returns its path.
fn write_page(out: &Path, command: &clap::Command, top: bool) -> Result<PathBuf> {
    let man = Man::new(command.clone()).source(format!("enrich {}", env!("CARGO_PKG_VERSION")));
    let path = out.join(man.get_filename());
    let mut page = Vec::new();
    render(&man, command, top, &mut page).context("cannot render a manual page")?;
    std::fs::write(&path, page)
        .with_context(|| format!("cannot write the manual page {}", path.display()))?;
    Ok(path)
}

/// One page: clap_mangen's sections with the examples, exit codes and cross-references added.
fn render(man: &Man, command: &clap::Command, top: bool, w: &mut dyn Write) -> std::io::Result<()> {
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if command.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if command.get_subcommands().any(|sub| !sub.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::new();
    let help = command.get_after_help().map(ToString::to_string);
    if let Some(examples) = help.as_deref().and_then(examples_in) {
        roff.control("SH", ["EXAMPLES"]);
        for (what, line) in examples {
            roff.control("PP", []);
            roff.text([roman(format!("{what}:"))]);
            roff.control("RS", ["4"]);
            roff.control("nf", []);
            roff.text([bold(line)]);
            roff.control("fi", []);
            roff.control("RE", []);
        }
    }
    if top {
        roff.control("SH", ["EXIT STATUS"]);
        for (exit, meaning) in EXIT_STATUS {
            roff.control("TP", []);
            roff.text([bold(exit.code().to_string())]);
            roff.text([roman(*meaning)]);
        }
    } else {
        roff.control("SH", ["SEE ALSO"]);
        roff.text([bold("enrich"), roman("(1)")]);
    }
    roff.to_writer(w)?;
    if top {
        man.render_version_section(w)?;
    }
    Ok(())
}

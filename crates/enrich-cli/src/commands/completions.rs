//! `enrich completions SHELL`: the shell's completion script, written by clap_complete from the
//! same command line as `--help`, so it knows every command, flag and value.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output;

/// Prints the completion script of `shell` on stdout.
pub(crate) fn completions(shell: Shell) -> Result<Exit> {
    // Into memory first: clap_complete panics on a failed write, and a closed stdout
    // (`enrich completions bash | head`) is no error here.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut visible_command_line(), "enrich", &mut script);
    output::text(&String::from_utf8_lossy(&script))?;
    Ok(Exit::Success)
}

/// The command line without its hidden commands, which clap_complete's bash and zsh scripts
/// would otherwise offer.
fn visible_command_line() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("enrich")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|c| !c.is_hide_set()).cloned())
}

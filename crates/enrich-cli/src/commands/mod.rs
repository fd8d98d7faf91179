//! One module per command; [`dispatch`] runs the one the command line names.

mod batch;
mod compare;
mod completions;
mod config;
mod doctor;
mod eval;
mod export;
mod failures;
mod index;
mod init;
mod man;
mod mcp;
mod plan;
mod quality;
mod run;
mod search;
mod show;
mod status;
mod watch;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command};
use crate::context::Repo;
use crate::exit::Exit;
pub(crate) use batch::BatchArgs;
pub(crate) use index::IndexArgs;

/// Runs the command of `cli`.
pub(crate) fn dispatch(cli: Cli) -> Result<Exit> {
    let Cli {
        mut global,
        command,
    } = cli;
    global
        .resolve_repo()
        .context("cannot find the repository: the current directory is unreadable")?;
    let json = global.json;
    // `watch` serves its own list of repositories; every other command one `--repo`.
    let repo = || Repo::from_flags(&global);
    match command {
        Command::Init => init::init(&repo()?, json),
        Command::Config(args) if args.schema => config::schema(),
        Command::Config(_) => config::config(&repo()?, json),
        Command::Status => status::status(&repo()?, json),
        Command::Show(args) => show::show(&repo()?, &args.span, json),
        Command::Search(args) => search::search(&repo()?, &args, json),
        Command::Export(args) => export::export(&repo()?, &args, json),
        Command::Failures(args) => failures::failures(&repo()?, &args, json),
        Command::Quality(args) => quality::quality(&repo()?, &args, json),
        Command::Compare(args) => compare::compare(&repo()?, &args, json),
        Command::Eval(args) => match args.command {
            crate::cli::EvalCommand::Search(search) => eval::search(&repo()?, &search, json),
        },
        Command::Plan(args) => plan::plan(&repo()?, &args, json, global.verbose > 0),
        Command::Doctor => runtime()?.block_on(doctor::doctor(&repo()?, json)),
        Command::Run(args) => {
            let quiet = global.quiet > 0;
            runtime()?.block_on(run::run(&repo()?, &args, json, quiet))
        }
        Command::Batch(args) => batch::batch(&repo()?, &args, json),
        Command::Watch(args) => runtime()?.block_on(watch::watch(&global, &args)),
        Command::Mcp => runtime()?.block_on(mcp::mcp(repo()?)),
        Command::Index(args) => index::index(&global, &args),
        Command::Completions(args) => completions::completions(args.shell),
        Command::Man(args) => man::man(&args.out),
    }
}

/// tokio's multi-thread runtime, for the commands that talk to backends, with the worker threads
/// runs want (`enrich_pipeline::run_worker_threads`: one, unless `TOKIO_WORKER_THREADS` says).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(enrich_pipeline::run_worker_threads())
        .enable_all()
        .thread_name("enrich-worker")
        .build()
        .context("cannot start the async runtime")
}

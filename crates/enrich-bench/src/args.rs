//! The command line: one subcommand per measurement, each with its flags (clap).

use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};
use enrich_config::EnrichmentConfig;

/// The in-process half of `cargo xtask bench`: synthetic LLMC indexes, the pipeline's own
/// overhead with an instant backend, pending-batch selection timings.
///
/// Each command prints one JSON object on one line of stdout; progress and errors go to stderr.
#[derive(Debug, Parser)]
#[command(name = "enrich-bench", version, max_term_width = 100)]
pub(crate) struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Write a synthetic repository and its LLMC index (DIR/.llmc/rag/index_v2.db).
    GenDb(GenDbArgs),
    /// Run the full pipeline over every pending span with an instant in-process backend.
    Overhead(OverheadArgs),
    /// Time the first page of pending spans and one deep into the keyset.
    SelectBatch(SelectArgs),
    /// Enrich every span with a synthetic enrichment (in bulk) and time `enrich search`'s query.
    Search(SearchArgs),
    /// Print each pending span's own part of its prompt, in span id order.
    SpanPrompts(SpanPromptsArgs),
}

/// A whole number of at least 1.
fn at_least_one() -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::new().range(1..)
}

/// Flags of `gen-db`.
#[derive(Debug, Args)]
pub(crate) struct GenDbArgs {
    /// Spans (small Rust functions) to generate.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one())]
    pub(crate) spans: u64,

    /// Spans per generated file.
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = at_least_one())]
    pub(crate) spans_per_file: u64,

    /// The repository to write (its index must not exist yet).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

/// Flags of `overhead`.
#[derive(Debug, Args)]
pub(crate) struct OverheadArgs {
    /// The repository `gen-db` wrote.
    #[arg(long, value_name = "DIR")]
    pub(crate) repo: PathBuf,

    /// The index [default: DIR/.llmc/rag/index_v2.db].
    #[arg(long, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,

    /// Spans in flight at once (and the instant backend's in-flight cap).
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub(crate) concurrency: usize,

    /// Spans taken from the index per batch [default: the configuration's].
    #[arg(long, value_name = "N")]
    pub(crate) batch_size: Option<usize>,

    /// Outcomes per write transaction [default: the pipeline's].
    #[arg(long, value_name = "N")]
    pub(crate) commit_every: Option<usize>,

    /// Append the run's events as JSON lines here, as `enrich run` does.
    #[arg(long, value_name = "PATH")]
    pub(crate) events: Option<PathBuf>,
}

/// Flags of `select-batch`.
#[derive(Debug, Args)]
pub(crate) struct SelectArgs {
    /// The repository `gen-db` wrote.
    #[arg(long, value_name = "DIR")]
    pub(crate) repo: PathBuf,

    /// The index [default: DIR/.llmc/rag/index_v2.db].
    #[arg(long, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,

    /// Spans per page.
    #[arg(long, value_name = "N", default_value_t = EnrichmentConfig::default().batch_size,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub(crate) batch_size: usize,

    /// Times each page is selected (the median and the 95th percentile are reported).
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = at_least_one())]
    pub(crate) iterations: u64,
}

/// Flags of `search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The repository `gen-db` wrote.
    #[arg(long, value_name = "DIR")]
    pub(crate) repo: PathBuf,

    /// The index [default: DIR/.llmc/rag/index_v2.db].
    #[arg(long, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,

    /// Times each query runs (the median and the 95th percentile are reported).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = at_least_one())]
    pub(crate) iterations: u64,
}

/// Flags of `span-prompts`.
#[derive(Debug, Args)]
pub(crate) struct SpanPromptsArgs {
    /// The indexed repository (its `enrich.toml` gives the prompt settings).
    #[arg(long, value_name = "DIR")]
    pub(crate) repo: PathBuf,

    /// The index [default: DIR/.llmc/rag/index_v2.db].
    #[arg(long, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,

    /// The first this many pending spans.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub(crate) limit: usize,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        Cli::try_parse_from(std::iter::once("enrich-bench").chain(args.iter().copied()))
            .map(|cli| cli.command)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_take_their_defaults_and_refuse_mistakes() {
        let Ok(Command::GenDb(args)) = parse(&["gen-db", "--spans", "20", "--out", "/tmp/x"])
        else {
            panic!("gen-db parses");
        };
        assert_eq!((args.spans, args.spans_per_file), (20, 2000));
        assert_eq!(args.out, PathBuf::from("/tmp/x"));
        let Ok(Command::SelectBatch(args)) = parse(&["select-batch", "--repo", "r"]) else {
            panic!("select-batch parses");
        };
        assert_eq!(args.batch_size, EnrichmentConfig::default().batch_size);
        assert_eq!((args.iterations, args.db), (200, None));

        for (argv, message) in [
            (
                &["gen-db", "--bogus", "1"][..],
                "unexpected argument '--bogus'",
            ),
            (
                &["gen-db", "--spans", "0", "--out", "o"][..],
                "invalid value '0' for '--spans <N>'",
            ),
            (
                &["gen-db", "--spans"][..],
                "a value is required for '--spans <N>'",
            ),
            (&["gen-db", "--spans", "1"][..], "--out <DIR>"),
            (
                &["overhead", "--repo", "a", "--repo", "b"][..],
                "the argument '--repo <DIR>' cannot be used multiple times",
            ),
            (
                &["overhead", "--repo", "a", "--concurrency", "x"][..],
                "invalid value 'x'",
            ),
            (&["measure"][..], "unrecognized subcommand 'measure'"),
        ] {
            let err = parse(argv).unwrap_err();
            assert!(err.contains(message), "{argv:?}: {err}");
        }
    }
}

//! The command line as clap sees it: global flags and one struct per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueHint};
use enrich_config::Schedule;
use enrich_db::RefreshClause;

/// Adds LLM-written metadata (summary, inputs, outputs, side effects, pitfalls, usage) to the
/// code spans of an LLMC index.
#[derive(Debug, Parser)]
#[command(name = "enrich", version, max_term_width = 100, after_help = examples(&[
    ("Build or refresh the index of the repository around the current directory", "enrich index"),
    ("What a run would do with the first 5 pending spans; calls no model", "enrich plan --limit 5"),
    ("Enrich every pending span", "enrich run"),
]))]
pub(crate) struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub(crate) global: Global,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes, before or after the command name.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// The repository root: where the config file is looked for and span paths are relative to
    /// [default: the nearest directory, from the current one up, holding `.llmc/`,
    /// `enrich.toml`, `llmc.toml` or `.git`; else the current directory].
    #[arg(long = "repo", id = "repo", global = true, value_name = "REPO", value_hint = ValueHint::DirPath)]
    pub(crate) repo_flag: Option<PathBuf>,

    /// The repository root in use: `--repo`, else the one found from the current directory
    /// (set by [`Global::resolve_repo`] before a command runs).
    #[arg(skip)]
    pub(crate) repo: PathBuf,

    /// The index database [default: REPO/.llmc/rag/index_v2.db].
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub(crate) db: Option<PathBuf>,

    /// The config file [default: REPO/enrich.toml, else REPO/llmc.toml].
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub(crate) config: Option<PathBuf>,

    /// Print machine-readable JSON on stdout (logs stay on stderr).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Log more on stderr (-v info, -vv debug, -vvv trace); ENRICH_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Log less on stderr (-q errors only, -qq nothing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) quiet: u8,
}

impl Global {
    /// Sets [`Global::repo`]: `--repo` when given, else the repository around the current
    /// directory ([`crate::context::find_repo_root`]).
    pub(crate) fn resolve_repo(&mut self) -> std::io::Result<()> {
        self.repo = match &self.repo_flag {
            Some(repo) => repo.clone(),
            None => crate::context::find_repo_root(&std::env::current_dir()?),
        };
        Ok(())
    }
}

/// The commands, in the order of a first use of enrich: build the index, check the setup,
/// look before spending, run, read the results; then the service, the configuration and the
/// shell's completions. `--help` lists them in this order.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Build or refresh the index of DIR (files and spans, as LLMC's indexer writes them).
    ///
    /// Every file under DIR is indexed except what the ignore files and the default exclusions
    /// leave out.
    ///
    /// Ignore files: `.gitignore`, `.ignore`, git's own excludes, and `.ragignore` (LLMC's:
    /// `.gitignore` syntax, in any directory, inside a git repository or not).
    ///
    /// Default exclusions: enrich's and LLMC's own files (`.git/`, the index directory
    /// `.llmc/`, their configuration and enrich's event log); files that hold secrets (keys,
    /// certificates, credentials, `.env` files; `[enrichment.index] include` and `exclude`
    /// change the list); hidden files and directories (unless --include-hidden);
    /// symbolic links; binary files; generated files (dependency lock files, minified bundles);
    /// files over --max-file-size.
    ///
    /// The user guide (docs/user-guide.md, "Index a repository") lists every exclusion.
    #[command(after_help = examples(&[
        ("Index the repository around the current directory (unchanged files are skipped)", "enrich index"),
        ("Index another checkout, hidden files too, files up to 4 MiB", "enrich index ../other --include-hidden --max-file-size 4194304"),
        ("Name every file left out, and why", "enrich index -v"),
    ]))]
    Index(crate::commands::IndexArgs),
    /// Check the configuration and the health of every enabled backend.
    #[command(after_help = examples(&[
        ("Check the configuration, every enabled backend and the index", "enrich doctor"),
        ("Check a config file before putting it in place", "enrich doctor --config /tmp/enrich.toml"),
        ("The same checks as one JSON document, for a script or a monitor", "enrich doctor --json"),
    ]))]
    Doctor,
    /// Show what `run` would do, calling no backend: each pending span's route and prompt size.
    #[command(after_help = examples(&[
        ("What a run would do with the first 5 pending spans", "enrich plan --limit 5"),
        ("Every pending span on the chain `big`, in span id order", "enrich plan --chain big --no-code-first"),
        ("What renewing one model's enrichments would take and cost, as JSON", "enrich plan --refresh model=qwen2.5:0.5b --json"),
    ]))]
    Plan(PlanArgs),
    /// Enrich the pending spans of the index.
    #[command(after_help = examples(&[
        ("Enrich every pending span (Ctrl-C once: finish the spans in flight and stop)", "enrich run"),
        ("One model at a time, taking no new span after an hour", "enrich run --schedule by-tier --max-wall-seconds 3600"),
        ("Also renew what one model wrote more than 30 days ago, before the pending spans", "enrich run --refresh model=qwen2.5:0.5b,older-than=30d --refresh-first"),
    ]))]
    Run(RunArgs),
    /// Enrich pending spans through a batch engine: a Batch API, or a file for `vllm run-batch`.
    #[command(after_help = examples(&[
        ("Send every pending span to the chain's Batch API at half the price", "enrich batch submit"),
        ("Store the answers once the batches end, polling until they do", "enrich batch collect --wait"),
        ("Write the requests of 1000 spans for an offline engine such as vllm run-batch", "enrich batch export requests.jsonl --limit 1000"),
    ]))]
    Batch(crate::commands::BatchArgs),
    /// Counts of the index: files, spans, enriched, pending, failing, dead-lettered, last run.
    #[command(after_help = examples(&[
        ("How much is enriched, pending and failing, by model and backend", "enrich status"),
        ("The same counts as JSON", "enrich status --json"),
        ("The counts of another repository's index", "enrich status --repo ../other"),
    ]))]
    Status,
    /// Show a span's enrichment and attempt history.
    #[command(after_help = examples(&[
        ("The span around line 42 of src/lib.rs: its enrichment and every attempt", "enrich show src/lib.rs:42"),
        ("A span by its hash (as `enrich plan` and `enrich failures` print it)", "enrich show sha256:3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"),
        ("The same as JSON", "enrich show src/lib.rs:42 --json"),
    ]))]
    Show(ShowArgs),
    /// Search the stored enrichments: symbol, summary, inputs, outputs, side effects,
    /// pitfalls and path, ranked by BM25 with symbol and summary weighing most.
    #[command(after_help = examples(&[
        ("The spans whose enrichment speaks of retries or backoff, best first", "enrich search retry backoff"),
        ("The 5 best Python spans under src/, as JSON", "enrich search --limit 5 --path 'src/*' --lang python --json token refresh"),
        ("An FTS5 query: both words, within 5 tokens of each other", "enrich search --fts 'NEAR(cache evict, 5)'"),
    ]))]
    Search(SearchArgs),
    /// Write every enriched span as one record (JSON lines or CSV): path, lines, symbol, kind,
    /// language, span hash, every enrichment field and its provenance.
    ///
    /// The records' schema (`export_version` 1) is in the user guide (docs/user-guide.md,
    /// "Export the enrichments"). Records stream as they are read, so memory stays flat on any
    /// index; with --out the file appears whole or not at all.
    #[command(after_help = examples(&[
        ("Every enriched span as JSON lines, into a file", "enrich export --out enrichments.jsonl"),
        ("What was enriched in the last 7 days under src/, as CSV", "enrich export --format csv --since 7d --path 'src/**'"),
        ("Everything stored since a time, with each span's source text", "enrich export --since 2026-11-24T00:00:00Z --include-source --out new.jsonl"),
    ]))]
    Export(ExportArgs),
    /// List dead-lettered spans, or put them back in the queue.
    #[command(after_help = examples(&[
        ("The dead-lettered spans with their last error", "enrich failures"),
        ("Put one span back in the queue", "enrich failures --requeue sha256:3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"),
        ("Put every dead-lettered span back (after fixing the cause)", "enrich failures --requeue-all"),
    ]))]
    Failures(FailuresArgs),
    /// How well enrichment went, per model, chain, backend and prompt fingerprint: spans enriched,
    /// first-try valid rate, quality gate rejections by check, the quality score's mean and
    /// spread, summary words, and tokens per enrichment (every attempt counted).
    #[command(after_help = examples(&[
        ("The quality of everything the attempt log records", "enrich quality"),
        ("One model's figures and its 10 lowest-scoring spans, each with its `enrich show` command", "enrich quality --model qwen2.5:0.5b --worst 10"),
        ("The runs of the last 7 days as JSON", "enrich quality --since 7d --json"),
    ]))]
    Quality(QualityArgs),
    /// Two models, or two runs, side by side on the spans both enriched, with example spans.
    #[command(after_help = examples(&[
        ("Two models on the spans both enriched", "enrich compare --model qwen2.5:0.5b --model gemma3:270m"),
        ("Two runs (as `enrich status` and `enrich show` number them), with 5 example spans", "enrich compare --run 3 --run 5 --examples 5"),
        ("The comparison as JSON", "enrich compare --run 3 --run 5 --json"),
    ]))]
    Compare(CompareArgs),
    /// Measure what enrichment is worth to retrieval: rank questions with and without the
    /// enrichments and compare.
    #[command(after_help = examples(&[
        ("Recall@1/5/10 and MRR@10 of the questions in queries.jsonl, code only and enriched", "enrich eval search queries.jsonl"),
        ("The same with each question's ranks, as JSON", "enrich eval search queries.jsonl --json"),
    ]))]
    Eval(EvalArgs),
    /// Keep the index and its enrichments current: index, enrich, then re-index and enrich each
    /// file as it is saved, until Ctrl-C or SIGTERM.
    #[command(after_help = examples(&[
        ("Keep the repository around the current directory enriched until Ctrl-C", "enrich watch"),
        ("Serve two repositories, with a periodic pass every 2 minutes", "enrich watch --interval 120 /srv/repos/app /srv/repos/lib"),
        ("On a network mount, which reports no file events: re-index every 5 minutes", "enrich watch --poll --interval 300"),
    ]))]
    Watch(WatchArgs),
    /// Serve the index's enrichments to coding agents over the Model Context Protocol (stdio):
    /// tools to search them, show one span with its source lines, and report the index's
    /// status. Read-only: it never starts a run. Ends when the client closes stdin.
    #[command(after_help = examples(&[
        ("Serve the repository around the current directory (an MCP client starts this)", "enrich mcp"),
        ("Serve another repository's index, as an MCP client's configuration names it", "enrich mcp --repo /srv/repos/app"),
    ]))]
    Mcp,
    /// Print the resolved configuration and where each value came from.
    #[command(after_help = examples(&[
        ("Every resolved setting and where it came from", "enrich config"),
        ("The settings as JSON, with the keys enrich does not read", "enrich config --json"),
        ("The JSON Schema of enrich.toml, for an editor to complete and check the file", "enrich config --schema > enrich.schema.json"),
    ]))]
    Config(ConfigArgs),
    /// Write the commented default configuration to REPO/enrich.toml.
    #[command(after_help = examples(&[
        ("Write ./enrich.toml (at the repository root), every key commented", "enrich init"),
        ("Write another repository's enrich.toml", "enrich init --repo ../other"),
    ]))]
    Init,
    /// Print the completion script of SHELL (bash, zsh, fish, powershell or elvish) on stdout.
    #[command(after_help = examples(&[
        ("bash: completions for your user (bash-completion loads them on demand)", "enrich completions bash > ~/.local/share/bash-completion/completions/enrich"),
        ("zsh: into a directory of your $fpath", "enrich completions zsh > ~/.zfunc/_enrich"),
        ("fish: into its completions directory", "enrich completions fish > ~/.config/fish/completions/enrich.fish"),
    ]))]
    Completions(CompletionsArgs),
    /// Write the manual pages into DIR: enrich.1 and one enrich-COMMAND.1 per command (`cargo
    /// xtask man` runs it).
    #[command(name = "__man", hide = true)]
    Man(ManArgs),
}

/// The heading of the section that ends every command's help.
const EXAMPLES_HEADING: &str = "Examples:";

/// The `Examples:` section that ends a command's help: each example a comment saying what it
/// does, then the command line ([`examples_in`] reads it back).
fn examples(list: &[(&str, &str)]) -> String {
    let mut text = String::from(EXAMPLES_HEADING);
    for (what, command) in list {
        text.push_str(&format!("\n  # {what}\n  {command}"));
    }
    text
}

/// The examples (what each does, its command line) of an `Examples:` section that [`examples`]
/// wrote, at the end of a help text; `None` when it has none or another shape.
pub(crate) fn examples_in(help: &str) -> Option<Vec<(&str, &str)>> {
    let section = match help.split_once(&format!("\n{EXAMPLES_HEADING}\n")) {
        Some((_, section)) => section,
        None => help.strip_prefix(&format!("{EXAMPLES_HEADING}\n"))?,
    };
    let mut lines = section
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let mut found = Vec::new();
    while let Some(comment) = lines.next() {
        let what = comment.strip_prefix("# ")?;
        let command = lines.next().filter(|line| line.starts_with("enrich"))?;
        found.push((what, command));
    }
    (!found.is_empty()).then_some(found)
}

/// Flags of `enrich config`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Print the JSON Schema of enrich.toml instead (every key, its type and the comment the
    /// built-in defaults give it), for editors to complete and check the file; reads no
    /// configuration.
    #[arg(long)]
    pub(crate) schema: bool,
}

/// Arguments of `enrich completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete `enrich` in.
    #[arg(value_name = "SHELL", value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// Arguments of the hidden `enrich __man`.
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// The directory to write the pages into (created if missing; pages there are replaced).
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub(crate) out: PathBuf,
}

/// Flags of `enrich run` (and of each pass of `enrich watch`).
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Enrich at most this many spans.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,

    /// Send every span to this chain instead of routing it.
    #[arg(long, value_name = "NAME")]
    pub(crate) chain: Option<String>,

    /// Spans in flight at once [default: enrichment.concurrency].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) concurrency: Option<u16>,

    /// Spans taken from the index per batch [default: enrichment.batch_size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) batch_size: Option<u16>,

    /// Append the run's events as JSON lines here [default: REPO/logs/enrichment_events.jsonl].
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub(crate) events: Option<PathBuf>,

    /// Take spans in span id order instead of code first (overrides enrichment.code_first).
    #[arg(long)]
    pub(crate) no_code_first: bool,

    /// Stop taking spans once the run used this many tokens [default:
    /// enrichment.budget.max_tokens_per_run].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_tokens: Option<u64>,

    /// Stop taking spans once the run cost this much, by the backends' prices [default:
    /// enrichment.budget.max_cost_per_run].
    #[arg(long, value_name = "COST", value_parser = positive_number)]
    pub(crate) max_cost: Option<f64>,

    /// Stop taking spans after this many seconds; spans in flight finish [default:
    /// enrichment.budget.max_wall_seconds].
    #[arg(long, value_name = "SECONDS", value_parser = positive_number)]
    pub(crate) max_wall_seconds: Option<f64>,

    /// `per-span` (each span runs its whole chain) or `by-tier` (every span on its chain's
    /// first backend, then the failures on the second, …: one model at a time) [default:
    /// enrichment.schedule].
    #[arg(long, value_name = "ORDER", value_parser = parse_schedule)]
    pub(crate) schedule: Option<Schedule>,

    /// Stored enrichments to renew.
    #[command(flatten)]
    pub(crate) refresh: RefreshArgs,
}

/// The refresh flags of `enrich run` and `enrich plan`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RefreshArgs {
    /// Also renew the stored enrichments this selects: `stale` (as `enrich status` counts
    /// them), `stale=REASON` (prompt, model, digest, schema, options, quality, unknown),
    /// `model=NAME`, `older-than=30d` (units s, m, h, d, w), `path=GLOB`, `quality<0.5`; selectors
    /// joined by commas must all match, and a span matching any of several --refresh is
    /// renewed. The old enrichment stays until a new one passes the gate.
    #[arg(long, value_name = "SELECTORS", value_parser = parse_refresh)]
    pub(crate) refresh: Vec<RefreshClause>,

    /// Renew the selected enrichments before the pending spans (by default pending spans come
    /// first).
    #[arg(long, requires = "refresh")]
    pub(crate) refresh_first: bool,
}

/// One `--refresh` value: selectors joined by commas.
fn parse_refresh(text: &str) -> Result<RefreshClause, String> {
    text.parse()
        .map_err(|error: enrich_db::DbError| error.to_string())
}

/// `per-span` or `by-tier`.
fn parse_schedule(text: &str) -> Result<Schedule, String> {
    Schedule::parse(text).ok_or_else(|| format!("{text:?} is not per-span or by-tier"))
}

/// An age such as `90m`, `24h` or `7d`: a whole number and a unit (s, m, h, d, w).
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    enrich_db::parse_age(text)
        .map(std::time::Duration::from_secs)
        .map_err(|reason| format!("{text:?} is not an age such as 90m, 24h or 7d: {reason}"))
}

/// A time for `--since`: RFC 3339 (`2026-11-24T09:00:00Z`, with an offset, or a bare date in
/// UTC), or an age before now (`90m`, `24h`, `7d`); as Unix seconds.
fn parse_since(text: &str) -> Result<i64, String> {
    if let Some(secs) = crate::time::parse_rfc3339(text) {
        return Ok(secs);
    }
    let age = parse_age(text).map_err(|_| {
        format!(
            "{text:?} is neither an RFC 3339 time (2026-11-24T09:00:00Z, 2026-11-24) nor an age such as 90m, 24h or 7d"
        )
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let since = now.saturating_sub(age.as_secs());
    Ok(i64::try_from(since).unwrap_or(i64::MAX))
}

/// A glob for `--path`.
fn parse_path_glob(text: &str) -> Result<enrich_db::PathGlob, String> {
    enrich_db::PathGlob::new(text)
}

/// A number above zero, for budget flags.
fn positive_number(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
        _ => Err(format!("{text:?} is not a number above 0")),
    }
}

/// Flags of `enrich plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// Plan at most this many spans.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,

    /// Plan every span on this chain instead of routing it.
    #[arg(long, value_name = "NAME")]
    pub(crate) chain: Option<String>,

    /// Plan spans in span id order instead of code first (overrides enrichment.code_first).
    #[arg(long)]
    pub(crate) no_code_first: bool,

    /// Stored enrichments a run would renew.
    #[command(flatten)]
    pub(crate) refresh: RefreshArgs,
}

/// Arguments of `enrich show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// A span hash (`sha256:…`), or PATH:LINE for the innermost span of that file around that line.
    #[arg(value_name = "SPAN_HASH|PATH:LINE")]
    pub(crate) span: String,
}

/// Arguments of `enrich search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The words to search for (a span matching any of them is a hit); with --fts, an FTS5 query.
    #[arg(value_name = "QUERY", required = true, num_args = 1..)]
    pub(crate) query: Vec<String>,

    /// The most hits to show.
    #[arg(long, value_name = "N", default_value_t = enrich_db::DEFAULT_SEARCH_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) limit: u32,

    /// Only spans whose path (relative to the repository root) matches this glob (`*` matches
    /// `/` too).
    #[arg(long, value_name = "GLOB")]
    pub(crate) path: Option<String>,

    /// Only spans of files in this language (as the index names it: python, rust, …).
    #[arg(long, value_name = "LANG")]
    pub(crate) lang: Option<String>,

    /// Read QUERY as FTS5 query syntax (AND, OR, NOT, NEAR, "phrases", prefix*, column:word)
    /// instead of plain words.
    #[arg(long)]
    pub(crate) fts: bool,
}

/// The record formats of `enrich export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// One JSON object a line.
    Jsonl,
    /// RFC 4180 CSV with a header row; list fields as JSON arrays.
    Csv,
}

/// Flags of `enrich export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The record format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub(crate) format: ExportFormat,

    /// Write to FILE instead of stdout: written beside it and renamed into place once
    /// complete, so a failed export leaves FILE as it was.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub(crate) out: Option<PathBuf>,

    /// Only enrichments stored at or after TIME: RFC 3339 (`2026-11-24T09:00:00Z`, a bare date
    /// meaning its midnight UTC) or an age before now (`90m`, `24h`, `7d`). Records then come
    /// oldest first.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub(crate) since: Option<i64>,

    /// Only spans of files matching GLOB (relative to the repository root; `*` stays in a
    /// directory, `**` crosses them, a glob without `/` matches file names at any depth).
    #[arg(long, value_name = "GLOB", value_parser = parse_path_glob)]
    pub(crate) path: Option<enrich_db::PathGlob>,

    /// Add each span's source text (`source`), read from the repository.
    #[arg(long)]
    pub(crate) include_source: bool,
}

/// `enrich eval`: what to measure.
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// The evaluation.
    #[command(subcommand)]
    pub(crate) command: EvalCommand,
}

/// The evaluations of `enrich eval`.
#[derive(Debug, Subcommand)]
pub(crate) enum EvalCommand {
    /// Rank each question of QUERIES with BM25 over the code only (symbols, paths, source) and
    /// over the code and its enrichments; print recall@1/5/10 and MRR@10 of both and the lift.
    ///
    /// QUERIES is a JSON-lines file, one question a line: `{"query": "how are redirects
    /// followed?", "expect": "SessionRedirectMixin.resolve_redirects"}`. `expect` (a string or
    /// a list of them, any one counting) is a symbol as the index names it, a file `path`, a
    /// `path:line` (the spans around that line), or a path glob (`src/**/auth.py`). A question
    /// whose answer is not in the index is listed and left out of the figures.
    #[command(after_help = examples(&[
        ("The figures of queries.jsonl against this repository's index", "enrich eval search queries.jsonl"),
        ("Every question's rank in both rankings, as JSON", "enrich eval search queries.jsonl --json"),
    ]))]
    Search(EvalSearchArgs),
}

/// Arguments of `enrich eval search`.
#[derive(Debug, Args)]
pub(crate) struct EvalSearchArgs {
    /// The questions, one JSON object a line: `query` and `expect`.
    #[arg(value_name = "QUERIES", value_hint = ValueHint::FilePath)]
    pub(crate) queries: PathBuf,
}

/// Flags of `enrich failures`.
#[derive(Debug, Args)]
pub(crate) struct FailuresArgs {
    /// Put this span back in the queue (forgets its failures).
    #[arg(long, value_name = "SPAN_HASH", conflicts_with = "requeue_all")]
    pub(crate) requeue: Option<String>,

    /// Put every dead-lettered span back in the queue.
    #[arg(long)]
    pub(crate) requeue_all: bool,
}

/// Flags of `enrich quality`.
#[derive(Debug, Args)]
pub(crate) struct QualityArgs {
    /// Only attempts of this model, as the attempt log names it (repeatable).
    #[arg(long = "model", value_name = "MODEL")]
    pub(crate) models: Vec<String>,

    /// Only attempts of this run (repeatable).
    #[arg(long = "run", value_name = "RUN_ID")]
    pub(crate) runs: Vec<i64>,

    /// Only attempts of runs started within AGE before now: a number and a unit, s, m, h, d or
    /// w (`90m`, `24h`, `7d`).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub(crate) since: Option<std::time::Duration>,

    /// Also list the N lowest-scoring stored enrichments, each with its `enrich show` command.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) worst: Option<u32>,
}

/// Flags of `enrich compare`: two `--model`s or two `--run`s.
#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// A model to compare, as the attempt log names it (give two).
    #[arg(long = "model", value_name = "MODEL", conflicts_with = "runs")]
    pub(crate) models: Vec<String>,

    /// A run to compare (give two).
    #[arg(long = "run", value_name = "RUN_ID")]
    pub(crate) runs: Vec<i64>,

    /// How many example spans to show.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(crate) examples: usize,
}

/// Flags of `enrich watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Seconds between periodic passes, which enrich what is still pending (failed spans, spans
    /// indexed by another tool); idle ones back off, doubling up to 16 times this (at most an
    /// hour). File changes do not wait for them.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) interval: u64,

    /// Milliseconds a file must be quiet before its change is taken (an editor's save is
    /// several events).
    #[arg(long, value_name = "MS", default_value_t = 400, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub(crate) debounce_ms: u64,

    /// Do not follow file system events: re-index the whole repository at every periodic pass,
    /// every --interval (for file systems that report no events, such as network mounts).
    #[arg(long)]
    pub(crate) poll: bool,

    /// Repositories to serve [default: --repo]. Each uses its own config file and index.
    #[arg(value_name = "REPO", value_hint = ValueHint::DirPath)]
    pub(crate) repos: Vec<PathBuf>,

    /// Options of each pass.
    #[command(flatten)]
    pub(crate) run: WatchRunArgs,
}

/// The `run` flags that make sense for every pass of `watch`.
#[derive(Debug, Clone, Args)]
pub(crate) struct WatchRunArgs {
    /// Send every span to this chain instead of routing it.
    #[arg(long, value_name = "NAME")]
    pub(crate) chain: Option<String>,

    /// Spans in flight at once [default: enrichment.concurrency].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) concurrency: Option<u16>,

    /// Spans taken from the index per batch [default: enrichment.batch_size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) batch_size: Option<u16>,

    /// `per-span` (each span runs its whole chain) or `by-tier` (every span on its chain's
    /// first backend, then the failures on the second, …: one model at a time) [default:
    /// enrichment.schedule].
    #[arg(long, value_name = "ORDER", value_parser = parse_schedule)]
    pub(crate) schedule: Option<Schedule>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The commands as `enrich --help` lists them: the order of a first use of enrich.
    const WORKFLOW: &[&str] = &[
        "index",
        "doctor",
        "plan",
        "run",
        "batch",
        "status",
        "show",
        "search",
        "export",
        "failures",
        "quality",
        "compare",
        "eval",
        "watch",
        "mcp",
        "config",
        "init",
        "completions",
    ];

    #[test]
    fn commands_are_listed_in_workflow_order() {
        let help = Cli::command().render_long_help().to_string();
        let (_, commands) = help
            .split_once("\nCommands:\n")
            .expect("a Commands section");
        let listed: Vec<&str> = commands
            .lines()
            .take_while(|line| !line.is_empty())
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        let mut expected = WORKFLOW.to_vec();
        expected.push("help");
        assert_eq!(listed, expected, "{help}");
    }

    /// The example command lines of a help text's `Examples:` section, which must end it.
    fn examples_of(help: &str) -> Vec<&str> {
        let examples =
            examples_in(help).unwrap_or_else(|| panic!("no Examples section ends:\n{help}"));
        examples.into_iter().map(|(_, command)| command).collect()
    }

    #[test]
    fn every_commands_help_ends_with_examples_that_parse() {
        let mut cli = Cli::command();
        cli.build();
        let mut helps = vec![(
            None,
            cli.render_long_help().to_string(),
            cli.render_help().to_string(),
        )];
        for command in cli.get_subcommands_mut() {
            if command.is_hide_set() || command.get_name() == "help" {
                continue;
            }
            let name = command.get_name().to_owned();
            let long = command.render_long_help().to_string();
            helps.push((Some(name), long, command.render_help().to_string()));
        }
        assert_eq!(helps.len(), WORKFLOW.len() + 1);
        for (name, long, short) in helps {
            let examples = examples_of(&long);
            assert_eq!(examples, examples_of(&short), "-h and --help show the same");
            assert!(
                (2..=3).contains(&examples.len()),
                "{name:?} has {} examples",
                examples.len()
            );
            for example in examples {
                // A shell redirection ends the command's own arguments.
                let argv: Vec<&str> = example
                    .split_whitespace()
                    .take_while(|word| !matches!(*word, ">" | "|"))
                    .collect();
                let matches = Cli::command()
                    .try_get_matches_from(&argv)
                    .unwrap_or_else(|err| panic!("{example:?} does not parse: {err}"));
                if let Some(name) = &name {
                    assert_eq!(matches.subcommand_name(), Some(name.as_str()), "{example}");
                }
                Cli::try_parse_from(&argv).unwrap();
            }
        }
    }

    #[test]
    fn ages_are_a_whole_number_and_a_unit() {
        let secs = |text| parse_age(text).map(|d| d.as_secs());
        assert_eq!(secs("90m"), Ok(5400));
        assert_eq!(secs("24h"), Ok(86_400));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("15s"), Ok(15));
        assert_eq!(secs("2w"), Ok(1_209_600));
        for wrong in [
            "",
            "7",
            "d",
            "1.5h",
            "-1d",
            "7y",
            "0d",
            "99999999999999999999d",
        ] {
            assert!(parse_age(wrong).is_err(), "{wrong:?}");
        }
    }

    #[test]
    fn global_flags_are_accepted_after_the_command() {
        let cli =
            Cli::try_parse_from(["enrich", "status", "--json", "--repo", "r", "-vv"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.repo_flag, Some(PathBuf::from("r")));
        assert_eq!(cli.global.verbose, 2);
        assert!(matches!(cli.command, Command::Status));
    }
}

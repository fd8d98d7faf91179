//! `enrich mcp`: the index's enrichments as Model Context Protocol tools for coding agents, served
//! over stdio with the official SDK (rmcp).
//!
//! The tools are what the reading commands show, built by the same code: `search` answers the
//! document of `enrich search --json` ([`super::search::find`], [`enrich_db::Db::search`]'s
//! ranking); `show` renders [`super::show::report`] as `enrich show` does, with the span's source
//! lines; `status` is [`super::status::report`], the document of `enrich status --json`. Every call opens the index
//! as the reading commands do (read-only, migrating enrich's tables first only when the file can
//! be written), so a running `enrich run` or `watch` is never disturbed and a new index is seen
//! without a restart; no tool starts a run.
//!
//! Results are sized for a model's context: at most [`MAX_HITS`] hits, each with the search's short
//! excerpt, at most [`MAX_SOURCE_LINES`] source lines (fewer when asked), [`SHOWN_ATTEMPTS`]
//! attempts, [`MAX_SOURCE_BYTES`] of a span read. The handler is written
//! by hand rather than with rmcp's `#[tool]` macros so that arguments are read here: a wrong
//! argument, an unknown span or a broken index is a tool error (`isError: true`, with a message
//! the model can act on), never a protocol error or a crash. Only an unknown tool name is a
//! protocol error (invalid params), as the protocol says.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use enrich_db::{DEFAULT_SEARCH_LIMIT, SourceReader, SpanSource};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{search, show, status};
use crate::context::Repo;
use crate::exit::Exit;

/// The most hits `search` returns (its `limit` argument may ask for fewer).
const MAX_HITS: u32 = 50;
/// The most source lines `show` returns (its `max_source_lines` argument may ask for fewer).
const MAX_SOURCE_LINES: u32 = 400;
/// The source lines `show` returns when the call does not say.
const DEFAULT_SOURCE_LINES: u32 = 80;
/// The most bytes of a span's source read: the source of a span bigger than this is cut, even
/// when fewer lines were asked for than it holds.
const MAX_SOURCE_BYTES: u64 = 64 * 1024;
/// The attempts `show` lists, the latest ones; the text says how many earlier ones it left out.
const SHOWN_ATTEMPTS: usize = 5;

/// Serves the MCP tools on stdin and stdout until the client closes stdin.
pub(crate) async fn mcp(repo: Repo) -> Result<Exit> {
    let server = Server {
        repo: Arc::new(repo),
    };
    let running = match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => running,
        // A client that goes away before it initialises has asked for nothing.
        Err(rmcp::service::ServerInitializeError::ConnectionClosed(_)) => {
            return Ok(Exit::Success);
        }
        Err(err) => return Err(err).context("the MCP client's initialization failed"),
    };
    running
        .waiting()
        .await
        .context("the MCP server stopped on an internal error")?;
    Ok(Exit::Success)
}

/// The MCP server: the repository whose index the tools read.
#[derive(Clone)]
struct Server {
    repo: Arc<Repo>,
}

/// The arguments of the `search` tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// The words the enrichment should mention: a span matching any of them is a hit, the
    /// best first (BM25; symbol and summary weigh most). With `fts`, an FTS5 query.
    query: String,
    /// Only spans whose path (relative to the repository root) matches this glob: `*` stays
    /// inside a directory, `**` crosses them (`src/**/*.py`), a glob without `/` matches the
    /// file name at any depth (`*.py`).
    #[serde(default)]
    path: Option<String>,
    /// Only spans of files in this language, as the index names it (python, rust, …).
    #[serde(default)]
    language: Option<String>,
    /// The most hits to return (at most 50; default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 50))]
    limit: Option<u32>,
    /// Read `query` as FTS5 query syntax (AND, OR, NOT, NEAR, "phrases", prefix*, column:word)
    /// instead of plain words.
    #[serde(default)]
    fts: bool,
}

/// The arguments of the `show` tool.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ShowArgs {
    /// A span hash (`sha256:…`, as the search tool returns it), or PATH:LINE for the innermost
    /// span of that file around that line (the path relative to the repository root).
    span: String,
    /// How many of the span's source lines to return, from its first (at most 400; default 80).
    #[serde(default)]
    #[schemars(range(min = 0, max = 400))]
    max_source_lines: Option<u32>,
}

/// The arguments of the `status` tool: none.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StatusArgs {}

/// A tool's name, description and arguments; the one list `tools/list` answers from and
/// `tools/call` dispatches on.
#[derive(Debug, Clone, Copy)]
enum ToolName {
    Search,
    Show,
    Status,
}

impl ToolName {
    const ALL: [ToolName; 3] = [ToolName::Search, ToolName::Show, ToolName::Status];

    fn name(&self) -> &'static str {
        match self {
            ToolName::Search => "search",
            ToolName::Show => "show",
            ToolName::Status => "status",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.name() == name)
    }

    fn tool(&self) -> Tool {
        let (description, tool) = match self {
            ToolName::Search => (
                "Search the stored enrichments (symbol, summary, inputs, outputs, side effects, \
                 pitfalls, path) for words, ranked as `enrich search` ranks them. Each hit gives \
                 its rank, path and lines, symbol, kind, language, span hash (for the show tool), \
                 score and a short excerpt with the matched words in **bold**.",
                Tool::new(self.name(), "", JsonObject::new()).with_input_schema::<SearchArgs>(),
            ),
            ToolName::Show => (
                "One span of the index: where it is (path, lines, symbol, kind), its stored \
                 enrichment (summary, inputs, outputs, side effects, pitfalls, usage, evidence, \
                 tags), how it was made (backend, model and digest, prompt and options \
                 fingerprints), its quality score, its latest attempts, and its source lines as the \
                 file holds them now. Name the span by its hash or by PATH:LINE.",
                Tool::new(self.name(), "", JsonObject::new()).with_input_schema::<ShowArgs>(),
            ),
            ToolName::Status => (
                "The index's counts: files, spans, enriched, pending, failing, dead-lettered, by \
                 model and backend host, stale enrichments by reason, the last run and its \
                 circuit breakers (the JSON document of `enrich status --json`).",
                Tool::new(self.name(), "", JsonObject::new()).with_input_schema::<StatusArgs>(),
            ),
        };
        let mut tool =
            tool.with_annotations(ToolAnnotations::new().read_only(true).open_world(false));
        tool.description = Some(Cow::Borrowed(description));
        tool
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("enrich", env!("CARGO_PKG_VERSION"))
                    .with_title("enrich: LLM enrichments of an LLMC code index"),
            )
            .with_instructions(format!(
                "Read-only access to the enrichments of the code index of {}: `search` them for \
                 what code does, `show` one span (by span hash or PATH:LINE) with its enrichment \
                 and source lines, `status` for the index's counts.",
                self.repo.root.display()
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            ToolName::ALL.iter().map(ToolName::tool).collect(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        ToolName::parse(name).map(|tool| tool.tool())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = ToolName::parse(&request.name) else {
            let known: Vec<&str> = ToolName::ALL.iter().map(ToolName::name).collect();
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool {:?}; the tools are {}",
                    request.name,
                    known.join(", ")
                ),
                None,
            ));
        };
        let arguments = request.arguments.unwrap_or_default();
        let repo = Arc::clone(&self.repo);
        // SQLite and file reads block: off the runtime's worker.
        let outcome = tokio::task::spawn_blocking(move || match tool {
            ToolName::Search => search_tool(&repo, parse_args(tool.name(), arguments)?),
            ToolName::Show => show_tool(&repo, parse_args(tool.name(), arguments)?),
            ToolName::Status => {
                let StatusArgs {} = parse_args(tool.name(), arguments)?;
                status_tool(&repo)
            }
        })
        .await;
        let result = match outcome {
            Ok(Ok(text)) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Ok(Err(err)) => CallToolResult::error(vec![ContentBlock::text(format!("{err:#}"))]),
            Err(join) => CallToolResult::error(vec![ContentBlock::text(format!(
                "the {} tool failed: {join}",
                tool.name()
            ))]),
        };
        Ok(result.into())
    }
}

/// A tool's arguments read from the call, or an error saying what is wrong with them.
fn parse_args<T: DeserializeOwned>(tool: &str, arguments: JsonObject) -> Result<T> {
    serde_json::from_value(serde_json::Value::Object(arguments))
        .with_context(|| format!("bad arguments for the {tool} tool; see its input schema"))
}

/// The `search` tool: `enrich search --json`'s document.
fn search_tool(repo: &Repo, args: SearchArgs) -> Result<String> {
    let limit = args.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
    if !(1..=MAX_HITS).contains(&limit) {
        anyhow::bail!("limit is {limit}; give 1 to {MAX_HITS} hits");
    }
    let query = search::query(args.query, args.fts, limit, args.path, args.language);
    let hits = search::find(repo, &query)?;
    let report = search::SearchReport {
        query: &query,
        hits,
    };
    serde_json::to_string_pretty(&report).context("cannot write the hits as JSON")
}

/// The `status` tool: `enrich status --json`'s document.
fn status_tool(repo: &Repo) -> Result<String> {
    let report = status::report(repo)?;
    serde_json::to_string_pretty(&report).context("cannot write the status as JSON")
}

/// The `show` tool: `enrich show`'s text (its latest attempts only), then the source lines.
fn show_tool(repo: &Repo, args: ShowArgs) -> Result<String> {
    let max_lines = args.max_source_lines.unwrap_or(DEFAULT_SOURCE_LINES);
    if max_lines > MAX_SOURCE_LINES {
        anyhow::bail!(
            "max_source_lines is {max_lines}; at most {MAX_SOURCE_LINES} lines are shown"
        );
    }
    let db = repo.open_read_only()?;
    let mut report = show::report(repo, &db, args.span.trim())?;
    let earlier = report.attempts.len().saturating_sub(SHOWN_ATTEMPTS);
    report.attempts.drain(..earlier);
    let mut text = show::render(&report)?;
    if earlier > 0 {
        writeln!(
            text,
            "  ({earlier} earlier attempt(s) not shown; `enrich show` lists them all)"
        )?;
    }
    let span = &report.span;
    writeln!(
        text,
        "\nsource    {}:{}-{} (as the file is now)",
        span.file_path, span.start_line, span.end_line
    )?;
    let source = SourceReader::new(&repo.root).and_then(|r| r.read_prefix(span, MAX_SOURCE_BYTES));
    match source {
        Ok(source) => write_source(&mut text, &source, span.start_line, max_lines)?,
        Err(err) => writeln!(text, "  unavailable: {err}")?,
    }
    Ok(text)
}

/// The first `max_lines` lines of `source`, numbered from `first_line`, and what was left out.
fn write_source(
    text: &mut String,
    source: &SpanSource,
    first_line: u32,
    max_lines: u32,
) -> std::fmt::Result {
    let lines: Vec<&str> = source.text.lines().collect();
    let shown = lines.len().min(max_lines as usize);
    let width = (u64::from(first_line) + shown as u64).to_string().len();
    for (n, line) in (u64::from(first_line)..).zip(&lines[..shown]) {
        writeln!(text, "{n:>width$}  {line}")?;
    }
    if shown < lines.len() || !source.is_whole() {
        let more = if source.is_whole() {
            format!("{} more line(s)", lines.len() - shown)
        } else {
            format!(
                "the span is {} bytes; {} were read",
                source.span_bytes, source.read_bytes
            )
        };
        writeln!(
            text,
            "  … cut: {more} (max_source_lines asks for up to {MAX_SOURCE_LINES})"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str, span_bytes: u64) -> SpanSource {
        SpanSource {
            text: text.to_owned(),
            span_bytes,
            read_bytes: text.len() as u64,
        }
    }

    #[test]
    fn source_lines_are_numbered_from_the_span_and_cut_at_the_limit() {
        let whole = "a\nb\nc\n";
        let mut text = String::new();
        write_source(&mut text, &source(whole, whole.len() as u64), 9, 2).unwrap();
        assert_eq!(
            text,
            " 9  a\n10  b\n  … cut: 1 more line(s) (max_source_lines asks for up to 400)\n"
        );

        let mut text = String::new();
        write_source(&mut text, &source(whole, whole.len() as u64), 1, 80).unwrap();
        assert_eq!(text, "1  a\n2  b\n3  c\n");

        let mut text = String::new();
        write_source(&mut text, &source("x\n", 100_000), 1, 80).unwrap();
        assert!(
            text.ends_with(
                "the span is 100000 bytes; 2 were read (max_source_lines asks for up to 400)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn every_tool_is_listed_under_its_own_name() {
        for tool in ToolName::ALL {
            let listed = tool.tool();
            assert_eq!(listed.name, tool.name());
            assert!(ToolName::parse(tool.name()).is_some());
            assert_eq!(listed.input_schema.get("type"), Some(&"object".into()));
        }
        assert!(ToolName::parse("run").is_none());
    }
}

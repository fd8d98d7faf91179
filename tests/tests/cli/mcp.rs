//! `enrich mcp` driven as an MCP client drives it: the real binary, JSON-RPC messages one per
//! line on its stdin and stdout. Initialize, list the tools, call each, get tool errors for bad
//! arguments and unknown spans, a protocol error for an unknown tool, and a clean exit when stdin
//! closes.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc;

use serde_json::{Value, json};

use super::support::{DEADLINE, Ran, Server, TestRepo, config, finish};

/// An `enrich mcp` process and the messages it has written.
struct Client {
    stdin: Option<ChildStdin>,
    child: Option<std::process::Child>,
    messages: mpsc::Receiver<String>,
    next_id: u64,
}

impl Client {
    /// Starts `enrich --repo <root> mcp` and initialises the session.
    fn start(repo: &TestRepo) -> (Self, Value) {
        let mut child = repo
            .command(&["mcp"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("start enrich mcp");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut client = Self {
            stdin: child.stdin.take(),
            child: Some(child),
            messages,
            next_id: 0,
        };
        let initialized = client.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "enrich-tests", "version": "1"},
            }),
        );
        client.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        (client, initialized)
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{message}").expect("write to enrich mcp");
        stdin.flush().expect("flush");
    }

    /// Sends a request and returns the whole response (`result` or `error`) with its id.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self.messages.recv_timeout(DEADLINE).unwrap_or_else(|_| {
                panic!("enrich mcp did not answer {method} within {DEADLINE:?}")
            });
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout holds a line that is not JSON ({e}): {line}"));
            if message["id"] == id {
                return message;
            }
        }
    }

    /// Calls a tool and returns its result (a tool error is a result too).
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let response = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        assert!(response["error"].is_null(), "{response}");
        response["result"].clone()
    }

    /// Closes stdin, as a client that goes away does, and waits for the process to end.
    fn close(mut self) -> Ran {
        drop(self.stdin.take());
        finish(self.child.take().expect("the process"))
    }
}

/// A repository whose spans a run against the fake server enriched, and the server.
fn enriched() -> (Server, TestRepo) {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    repo.enrich(&["run"]).expect_code(0);
    (server, repo)
}

/// The text of a tool result's one text content.
fn text_of(result: &Value) -> &str {
    let content = result["content"].as_array().expect("content");
    assert_eq!(content.len(), 1, "{result}");
    assert_eq!(content[0]["type"], "text", "{result}");
    content[0]["text"].as_str().expect("text")
}

/// A tool result that is a tool error (`isError: true`); its text.
fn tool_error(result: &Value) -> &str {
    assert_eq!(result["isError"], true, "{result}");
    text_of(result)
}

/// A tool result that is no error; its text.
fn tool_success(result: &Value) -> &str {
    assert_ne!(result["isError"], true, "{result}");
    text_of(result)
}

#[test]
fn an_mcp_client_initializes_lists_the_tools_with_their_schemas_and_ends_it_by_closing_stdin() {
    let repo = TestRepo::new();
    let (mut client, initialized) = Client::start(&repo);
    let result = &initialized["result"];
    assert_eq!(result["serverInfo"]["name"], "enrich", "{initialized}");
    assert!(result["capabilities"]["tools"].is_object(), "{initialized}");

    let listed = client.request("tools/list", json!({}));
    let tools = listed["result"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["search", "show", "status"], "{listed}");
    let search = &tools[0];
    let schema = &search["inputSchema"];
    assert_eq!(schema["type"], "object", "{search}");
    assert_eq!(schema["required"], json!(["query"]), "{search}");
    for property in ["query", "path", "language", "limit", "fts"] {
        assert!(
            schema["properties"][property].is_object(),
            "{property}: {search}"
        );
    }
    assert_eq!(schema["properties"]["limit"]["maximum"], 50, "{search}");
    let show = &tools[1];
    let schema = &show["inputSchema"];
    assert_eq!(schema["type"], "object", "{show}");
    assert_eq!(schema["required"], json!(["span"]), "{show}");
    assert_eq!(schema["properties"]["span"]["type"], "string", "{show}");
    assert_eq!(
        schema["properties"]["max_source_lines"]["maximum"], 400,
        "{show}"
    );
    assert_eq!(show["annotations"]["readOnlyHint"], true, "{show}");
    let status = &tools[2];
    assert_eq!(status["inputSchema"]["type"], "object", "{status}");
    assert!(
        status["inputSchema"]["properties"]
            .as_object()
            .is_none_or(|p| p.is_empty()),
        "{status}"
    );

    client.close().expect_code(0);
}

#[test]
fn the_show_tool_gives_a_spans_enrichment_provenance_quality_and_source_lines() {
    let (_server, repo) = enriched();
    let area = repo.span("Rect.area").hash.clone();

    let (mut client, _) = Client::start(&repo);
    let by_hash = client.call("show", json!({"span": area}));
    let text = tool_success(&by_hash);
    assert!(text.contains(&format!("span      {area}")), "{text}");
    assert!(
        text.contains("location  src/geometry.py:6-7  function Rect.area"),
        "{text}"
    );
    assert!(text.contains("status    enriched"), "{text}");
    assert!(text.contains("quality   "), "{text}");
    assert!(
        text.contains("made      by backend fake (ollama), model qwen2.5:7b-instruct"),
        "{text}"
    );
    assert!(text.contains("\nsummary\n  "), "{text}");
    assert!(
        text.contains(
            "source    src/geometry.py:6-7 (as the file is now)\n6      def area(self):\n7          return self.w * self.h\n"
        ),
        "{text}"
    );

    // PATH:LINE names the innermost span, as `enrich show` reads it.
    let by_line = client.call("show", json!({"span": "src/geometry.py:7"}));
    assert_eq!(tool_success(&by_line), text);

    // The source is cut at the lines asked for, and says so.
    let class = client.call(
        "show",
        json!({"span": "src/geometry.py:1", "max_source_lines": 2}),
    );
    let text = tool_success(&class);
    assert!(
        text.contains("location  src/geometry.py:1-7  class Rect"),
        "{text}"
    );
    assert!(
        text.contains("1  class Rect:\n2      def __init__(self, w, h):\n  … cut: 5 more line(s)"),
        "{text}"
    );
    client.close().expect_code(0);
}

#[test]
fn the_search_tool_ranks_as_enrich_search_does_with_its_filters_and_limit() {
    let (_server, repo) = enriched();
    let (mut client, _) = Client::start(&repo);
    let cases = [
        (
            json!({"query": "deterministic area"}),
            vec!["search", "deterministic", "area"],
        ),
        (
            json!({"query": "deterministic", "language": "python", "limit": 2}),
            vec![
                "search",
                "deterministic",
                "--lang",
                "python",
                "--limit",
                "2",
            ],
        ),
        (
            json!({"query": "deterministic", "path": "src/*.rs"}),
            vec!["search", "deterministic", "--path", "src/*.rs"],
        ),
        (
            json!({"query": "symbol:add OR symbol:mul", "fts": true}),
            vec!["search", "--fts", "symbol:add OR symbol:mul"],
        ),
    ];
    for (arguments, command) in cases {
        let answered: Value =
            serde_json::from_str(tool_success(&client.call("search", arguments.clone())))
                .expect("JSON");
        let mut args = vec!["--json"];
        args.extend(command);
        let printed = repo.enrich(&args).expect_code(0).json();
        assert_eq!(answered, printed, "{arguments}");
        assert!(
            !answered["hits"].as_array().expect("hits").is_empty(),
            "{arguments}: {answered}"
        );
    }
    let first = client.call("search", json!({"query": "deterministic area"}));
    let first: Value = serde_json::from_str(tool_success(&first)).expect("JSON");
    assert_eq!(first["hits"][0]["symbol"], "Rect.area", "{first}");
    let two = client.call(
        "search",
        json!({"query": "deterministic", "language": "python", "limit": 2}),
    );
    let two: Value = serde_json::from_str(tool_success(&two)).expect("JSON");
    let hits = two["hits"].as_array().expect("hits");
    assert_eq!(hits.len(), 2, "{two}");
    assert!(hits.iter().all(|h| h["language"] == "python"), "{two}");
    client.close().expect_code(0);
}

#[test]
fn the_status_tool_answers_what_status_json_prints_and_no_tool_starts_a_run() {
    let repo = TestRepo::new();
    let expected = repo.enrich(&["--json", "status"]).expect_code(0).json();
    let (mut client, _) = Client::start(&repo);
    let status = client.call("status", json!({}));
    let answered: Value = serde_json::from_str(tool_success(&status)).expect("JSON");
    assert_eq!(answered, expected);
    assert_eq!(answered["spans"], 7, "{answered}");
    assert_eq!(answered["pending"], 7, "{answered}");
    tool_success(&client.call("show", json!({"span": "src/lib.rs:2"})));
    client.close().expect_code(0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_runs"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_attempts"), 0);
}

#[test]
fn bad_arguments_and_unknown_spans_are_tool_errors_and_an_unknown_tool_a_protocol_error() {
    let repo = TestRepo::new();
    let (mut client, _) = Client::start(&repo);
    let cases = [
        ("show", json!({}), "missing field `span`"),
        ("show", json!({"span": 42}), "invalid type"),
        (
            "show",
            json!({"span": "src/lib.rs:2", "lines": 3}),
            "unknown field `lines`",
        ),
        (
            "show",
            json!({"span": "src/lib.rs:2", "max_source_lines": 401}),
            "at most 400 lines",
        ),
        (
            "show",
            json!({"span": "sha256:nothing"}),
            "no span has the hash",
        ),
        (
            "show",
            json!({"span": "src/nowhere.rs:3"}),
            "is not in the index",
        ),
        (
            "show",
            json!({"span": "src/lib.rs:4"}),
            "no span of src/lib.rs contains line 4",
        ),
        (
            "status",
            json!({"verbose": true}),
            "unknown field `verbose`",
        ),
        ("search", json!({}), "missing field `query`"),
        (
            "search",
            json!({"query": "add", "limit": 51}),
            "give 1 to 50 hits",
        ),
        (
            "search",
            json!({"query": "add", "limit": 0}),
            "give 1 to 50 hits",
        ),
        (
            "search",
            json!({"query": "--- ..."}),
            "has no word to search for",
        ),
        ("search", json!({"query": "add AND (", "fts": true}), "FTS5"),
    ];
    for (tool, arguments, expected) in cases {
        let result = client.call(tool, arguments.clone());
        let text = tool_error(&result);
        assert!(text.contains(expected), "{tool} {arguments}: {text}");
    }

    let unknown = client.request("tools/call", json!({"name": "run", "arguments": {}}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    let message = unknown["error"]["message"].as_str().expect("a message");
    assert!(message.contains("unknown tool \"run\""), "{message}");

    // The server is still there after every error.
    tool_success(&client.call("status", json!({})));
    client.close().expect_code(0);
}

#[test]
fn a_missing_index_is_a_tool_error_and_the_server_keeps_serving() {
    let repo = TestRepo::new();
    std::fs::remove_file(&repo.db).expect("remove the index");
    let (mut client, _) = Client::start(&repo);
    let text = tool_error(&client.call("status", json!({}))).to_owned();
    assert!(text.contains("cannot open the index"), "{text}");
    let text = tool_error(&client.call("show", json!({"span": "src/lib.rs:2"}))).to_owned();
    assert!(text.contains("cannot open the index"), "{text}");
    client.close().expect_code(0);
    assert!(!repo.db.exists(), "a reading tool creates no index");
}

#[test]
fn a_client_that_closes_stdin_before_initializing_ends_the_server_cleanly() {
    let repo = TestRepo::new();
    let mut child = repo
        .command(&["mcp"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start enrich mcp");
    drop(child.stdin.take());
    let ran = finish(child);
    ran.expect_code(0);
    assert!(ran.stdout.is_empty(), "{}", ran.stdout);
}

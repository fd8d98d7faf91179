//! Fixtures of the CLI tests: the `enrich` binary, a repository indexed the way LLMC indexes it,
//! a fake Ollama server on its own runtime, and running the binary with a deadline.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use enrich_db::{Db, default_db_path};
use enrich_testkit::{FakeOllama, FakeOllamaConfig, FakeOllamaStats};
use enrich_types::span_hash;
use rusqlite::Connection;
use serde_json::Value;
use tempfile::TempDir;

/// How long one `enrich` invocation may take before the test fails (and kills it).
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// The `enrich` binary.
///
/// Cargo only tells a package's own integration tests where its binaries are
/// (`CARGO_BIN_EXE_<name>` at compile time), and `enrich` belongs to `enrich-cli`, not to this
/// package. So: `CARGO_BIN_EXE_enrich` from the environment when a runner sets it; else the
/// binary Cargo puts next to this test's own directory (`target/<profile>/enrich`, this test
/// being `target/<profile>/deps/integration-<hash>`). Workspace test runs build it because
/// `enrich-cli` has an integration test of its own (Cargo builds a package's binaries for its
/// integration tests). When it is missing, or older than a source file of the workspace's
/// crates (`cargo test -p enrich-tests` alone), it is built here with the same Cargo and
/// profile, so a test never runs a stale binary.
pub(crate) fn enrich_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("CARGO_BIN_EXE_enrich") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps");
        let bin = profile_dir.join(format!("enrich{}", std::env::consts::EXE_SUFFIX));
        if is_stale(&bin) {
            build_enrich(profile_dir);
        }
        assert!(
            bin.is_file(),
            "{} was not built; run `cargo build -p enrich-cli`",
            bin.display()
        );
        bin
    })
}

/// Whether `bin` is missing or older than a source file of the workspace's crates.
fn is_stale(bin: &Path) -> bool {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return true;
    };
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    newest_mtime(&crates).is_some_and(|newest| newest > built)
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let time = if path.is_dir() {
            // Only sources and manifests matter; skip the JavaScript model server's packages.
            if name == "node_modules" || name == "target" {
                continue;
            }
            newest_mtime(&path)
        } else if path.extension().is_some_and(|e| e == "rs" || e == "toml") {
            entry.metadata().and_then(|m| m.modified()).ok()
        } else {
            None
        };
        newest = newest.max(time);
    }
    newest
}

fn build_enrich(profile_dir: &Path) {
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "-p", "enrich-cli", "--bin", "enrich"]);
    cargo
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(profile) => {
            cargo.args(["--profile", profile]);
        }
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "`cargo build -p enrich-cli` failed");
}

/// One span of the fixture repository.
#[derive(Debug, Clone)]
pub(crate) struct SpanRow {
    pub(crate) hash: String,
    pub(crate) symbol: &'static str,
}

/// A source file and its spans: (symbol, kind, first line, last line, slice type).
struct SourceFile {
    path: &'static str,
    lang: &'static str,
    text: &'static str,
    spans: &'static [(&'static str, &'static str, u32, u32, &'static str)],
}

const SOURCES: &[SourceFile] = &[
    SourceFile {
        path: "src/geometry.py",
        lang: "python",
        text: "class Rect:\n    def __init__(self, w, h):\n        self.w = w\n        self.h = h\n\n    def area(self):\n        return self.w * self.h\n\n\ndef square(side):\n    return Rect(side, side)\n",
        spans: &[
            ("Rect", "class", 1, 7, "code"),
            ("Rect.__init__", "function", 2, 4, "code"),
            ("Rect.area", "function", 6, 7, "code"),
            ("square", "function", 10, 11, "code"),
        ],
    },
    SourceFile {
        path: "src/lib.rs",
        lang: "rust",
        text: "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\npub fn mul(a: i32, b: i32) -> i32 {\n    a * b\n}\n",
        spans: &[
            ("add", "function", 1, 3, "code"),
            ("mul", "function", 5, 7, "code"),
        ],
    },
    SourceFile {
        path: "docs/guide.md",
        lang: "markdown",
        text: "# Guide\n\nRun `enrich run` to enrich the spans of an index.\n",
        spans: &[("Guide", "section", 1, 3, "docs")],
    },
];

/// LLMC's schema at version 8, as LLMC's `database.py` creates it (written out here, not taken
/// from enrich-db, so "an LLMC-created database" really is one).
const LLMC_DDL: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, lang TEXT NOT NULL,
    file_hash TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL, sidecar_path TEXT);
CREATE TABLE spans (id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    symbol TEXT NOT NULL, kind TEXT NOT NULL, start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL, byte_start INTEGER NOT NULL, byte_end INTEGER NOT NULL,
    span_hash TEXT NOT NULL UNIQUE, doc_hint TEXT NULL,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP, slice_type TEXT, slice_language TEXT,
    classifier_confidence REAL, classifier_version TEXT, imports TEXT);
CREATE TABLE embeddings_meta (profile TEXT NOT NULL DEFAULT 'default', model TEXT NOT NULL,
    dim INTEGER NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (profile, model));
CREATE TABLE embeddings (span_hash TEXT PRIMARY KEY, vec BLOB NOT NULL, route_name TEXT,
    profile_name TEXT, FOREIGN KEY (span_hash) REFERENCES spans(span_hash) ON DELETE CASCADE);
CREATE TABLE emb_code (span_hash TEXT PRIMARY KEY, vec BLOB NOT NULL, route_name TEXT,
    profile_name TEXT, FOREIGN KEY (span_hash) REFERENCES spans(span_hash) ON DELETE CASCADE);
CREATE TABLE enrichments (span_hash TEXT PRIMARY KEY, summary TEXT, tags TEXT, evidence TEXT,
    model TEXT, created_at DATETIME, schema_ver TEXT, inputs TEXT, outputs TEXT,
    side_effects TEXT, pitfalls TEXT, usage_snippet TEXT, content_type TEXT,
    content_language TEXT, content_type_confidence REAL, content_type_source TEXT,
    tokens_per_second REAL, eval_count INTEGER, eval_duration_ns INTEGER,
    prompt_eval_count INTEGER, total_duration_ns INTEGER, backend_host TEXT,
    FOREIGN KEY (span_hash) REFERENCES spans(span_hash) ON DELETE CASCADE);
CREATE INDEX idx_files_path ON files(path);
CREATE INDEX idx_spans_file_id ON spans(file_id);
CREATE INDEX idx_spans_span_hash ON spans(span_hash);
CREATE TABLE file_descriptions (id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    file_path TEXT UNIQUE NOT NULL, description TEXT, source TEXT, updated_at DATETIME,
    content_hash TEXT, input_hash TEXT);
CREATE TABLE llmc_meta (key TEXT PRIMARY KEY, value TEXT);
PRAGMA user_version = 8;
";

/// What one `enrich` invocation did.
#[derive(Debug)]
pub(crate) struct Ran {
    /// The exit code (`None`: killed by a signal).
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    pub(crate) fn from_output(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// stdout as JSON; fails the test, showing both streams, when it is not.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e})\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Fails the test unless the exit code is `code`.
    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A temporary repository: real source files, and an index with their files and spans as
/// LLMC's indexer writes them (LLMC's span hashes, paths relative to the root).
pub(crate) struct TestRepo {
    _dir: TempDir,
    pub(crate) root: PathBuf,
    pub(crate) db: PathBuf,
    pub(crate) spans: Vec<SpanRow>,
}

impl TestRepo {
    /// A repository whose index enrich-db created (LLMC's schema plus enrich's tables).
    pub(crate) fn new() -> Self {
        Self::build(|db| {
            Db::open_or_create(db).expect("create the index");
        })
    }

    /// A repository whose index LLMC created: LLMC's tables only, nothing of enrich's.
    pub(crate) fn llmc() -> Self {
        Self::build(|db| {
            Connection::open(db)
                .and_then(|c| c.execute_batch(LLMC_DDL))
                .expect("LLMC's schema");
        })
    }

    fn build(create: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("repo");
        let db = default_db_path(&root);
        std::fs::create_dir_all(db.parent().expect("db dir")).expect("create .llmc/rag");
        create(&db);
        let conn = Connection::open(&db).expect("open the index");
        let mut spans = Vec::new();
        for source in SOURCES {
            let full = root.join(source.path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(&full, source.text).expect("write source");
            conn.execute(
                "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, ?2, ?3, ?4, 1700000000.0)",
                (source.path, source.lang, "h", source.text.len()),
            )
            .expect("insert file");
            let file_id = conn.last_insert_rowid();
            let line_starts = line_starts(source.text);
            for &(symbol, kind, start, end, slice) in source.spans {
                let byte_start = line_starts[start as usize - 1];
                let byte_end = line_starts[end as usize];
                let hash = span_hash(source.lang, &source.text.as_bytes()[byte_start..byte_end]);
                conn.execute(
                    "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start,
                        byte_end, span_hash, slice_type, slice_language, classifier_confidence)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0.9)",
                    (
                        file_id,
                        symbol,
                        kind,
                        start,
                        end,
                        byte_start,
                        byte_end,
                        &hash,
                        slice,
                        source.lang,
                    ),
                )
                .expect("insert span");
                spans.push(SpanRow { hash, symbol });
            }
        }
        Self {
            _dir: dir,
            root,
            db,
            spans,
        }
    }

    /// Writes `<repo>/enrich.toml`.
    pub(crate) fn write_config(&self, toml: &str) {
        std::fs::write(self.root.join("enrich.toml"), toml).expect("write enrich.toml");
    }

    /// The span of `symbol`.
    pub(crate) fn span(&self, symbol: &str) -> &SpanRow {
        self.spans
            .iter()
            .find(|s| s.symbol == symbol)
            .unwrap_or_else(|| panic!("no span {symbol}"))
    }

    /// A plain connection to the index, as LLMC has.
    pub(crate) fn raw(&self) -> Connection {
        Connection::open(&self.db).expect("open the index")
    }

    /// A count query's answer.
    pub(crate) fn count(&self, sql: &str) -> i64 {
        self.raw()
            .query_row(sql, [], |row| row.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The `enrich` command for this repository, with a clean environment (no `ENRICH_*`,
    /// `OLLAMA_HOST` or proxy variable of the machine running the tests).
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(enrich_bin());
        cmd.env_clear()
            .arg("--repo")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `enrich --repo <root> ARGS` to the end.
    pub(crate) fn enrich(&self, args: &[&str]) -> Ran {
        finish(self.command(args).spawn().expect("start enrich"))
    }

    /// Starts `enrich --repo <root> ARGS` and returns while it runs.
    pub(crate) fn start(&self, args: &[&str]) -> Running {
        let mut child = self.command(args).spawn().expect("start enrich");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }
}

/// An `enrich` process still running, its stderr read line by line.
pub(crate) struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// Sends it a signal (`INT`, `TERM`).
    pub(crate) fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Waits until it writes a line containing `needle` to stderr.
    pub(crate) fn wait_for_stderr(&mut self, needle: &str) {
        loop {
            match self.lines.recv_timeout(DEADLINE) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "enrich wrote no line containing {needle:?} to stderr; it wrote:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for it to exit.
    pub(crate) fn finish(self) -> Ran {
        let Running {
            child,
            lines,
            mut seen,
        } = self;
        let mut ran = finish(child);
        // The reader thread ends with the process's stderr.
        seen.extend(lines.iter());
        ran.stderr = seen.join("\n");
        ran
    }
}

/// Waits for `child` to exit and collects its output; kills it and fails the test after
/// [`DEADLINE`].
pub(crate) fn finish(child: Child) -> Ran {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(output) => Ran::from_output(output.expect("wait for enrich")),
        Err(_) => {
            signal(pid, "KILL");
            panic!("enrich did not exit within {DEADLINE:?}");
        }
    }
}

/// Sends a signal to a process with `kill -<name> <pid>`.
pub(crate) fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Byte offsets where each line starts, plus the text's length.
fn line_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    if *starts.last().expect("not empty") != text.len() {
        starts.push(text.len());
    }
    starts
}

/// A fake Ollama server on a runtime of its own, so tests stay synchronous while the server
/// answers the `enrich` child process.
pub(crate) struct Server {
    // Dropped first: the server stops before its runtime.
    fake: FakeOllama,
    runtime: tokio::runtime::Runtime,
}

impl Server {
    /// A server with `config`.
    pub(crate) fn start(config: FakeOllamaConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake server");
        let fake = runtime
            .block_on(FakeOllama::start(config))
            .expect("start the fake Ollama");
        Self { fake, runtime }
    }

    /// A server answering every request well, at once.
    pub(crate) fn healthy() -> Self {
        Self::start(FakeOllamaConfig::default())
    }

    /// Its base URL.
    pub(crate) fn url(&self) -> &str {
        self.fake.url()
    }

    /// Its counters now.
    pub(crate) fn stats(&self) -> FakeOllamaStats {
        self.fake.stats()
    }

    /// Runs `slots` generations at once from now on.
    pub(crate) fn set_slots(&self, slots: usize) {
        let _entered = self.runtime.enter();
        self.fake.set_slots(slots);
    }

    /// Takes the server down: connections are refused until [`Server::come_back`].
    pub(crate) fn go_down(&self) {
        self.runtime.block_on(self.fake.go_down());
    }

    /// Listens again at the same address.
    pub(crate) fn come_back(&self) {
        self.runtime
            .block_on(self.fake.come_back())
            .expect("the fake server listens again");
    }

    /// Waits (without sleeping) until `condition` holds for the counters; fails the test after
    /// [`DEADLINE`].
    pub(crate) fn wait_until(&self, condition: impl FnMut(&FakeOllamaStats) -> bool) {
        self.runtime
            .block_on(async {
                tokio::time::timeout(DEADLINE, self.fake.wait_until(condition)).await
            })
            .expect("the fake server reached the expected state in time");
    }
}

/// A URL nothing listens on: a port that was free a moment ago (connection refused).
pub(crate) fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A config with one chain `local` of the given `(name, url)` backends, in order, serving
/// enrich's default model, plus `extra` lines in `[enrichment]`.
pub(crate) fn config(backends: &[(&str, &str)], extra: &str) -> String {
    let mut toml = format!("[enrichment]\ndefault_chain = \"local\"\n{extra}\n");
    for (name, url) in backends {
        toml.push_str(&format!(
            "\n[[enrichment.chain]]\nname = \"{name}\"\nchain = \"local\"\nprovider = \"ollama\"\nmodel = \"qwen2.5:7b-instruct\"\nurl = \"{url}\"\ntimeout_seconds = 20\n"
        ));
    }
    toml
}

/// A span to index with [`TestRepo::index_file`]: symbol, kind, first and last line (1-based,
/// inclusive).
pub(crate) type NewSpan = (&'static str, &'static str, u32, u32);

impl TestRepo {
    /// Writes `bytes` to `<root>/path` (creating its directories) and indexes it with `spans`;
    /// returns the new spans' hashes.
    pub(crate) fn add_file(
        &mut self,
        path: &str,
        lang: &str,
        bytes: &[u8],
        spans: &[NewSpan],
    ) -> Vec<String> {
        let full = self.root.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(&full, bytes).expect("write source");
        self.index_file(path, lang, bytes, spans)
    }

    /// Indexes `path` as LLMC's indexer would after reading `bytes` from it (its files row, and
    /// `spans` with their byte ranges and LLMC's hashes), without writing the file: a test then
    /// puts there what it wants (nothing, a directory, a symlink). Returns the spans' hashes.
    pub(crate) fn index_file(
        &mut self,
        path: &str,
        lang: &str,
        bytes: &[u8],
        spans: &[NewSpan],
    ) -> Vec<String> {
        let mut conn = self.raw();
        let tx = conn.transaction().expect("begin");
        tx.execute(
            "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, ?2, 'h', ?3, 1700000000.0)",
            (path, lang, bytes.len()),
        )
        .expect("insert file");
        let file_id = tx.last_insert_rowid();
        let mut starts = vec![0];
        starts.extend(
            bytes
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        if *starts.last().expect("not empty") != bytes.len() {
            starts.push(bytes.len());
        }
        let mut hashes = Vec::new();
        for &(symbol, kind, start, end) in spans {
            let byte_start = starts[start as usize - 1];
            let byte_end = starts[end as usize];
            let hash = span_hash(lang, &bytes[byte_start..byte_end]);
            tx.execute(
                "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start,
                    byte_end, span_hash, slice_type, slice_language, classifier_confidence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'code', ?9, 0.9)",
                (
                    file_id, symbol, kind, start, end, byte_start, byte_end, &hash, lang,
                ),
            )
            .expect("insert span");
            self.spans.push(SpanRow {
                hash: hash.clone(),
                symbol,
            });
            hashes.push(hash);
        }
        tx.commit().expect("commit");
        hashes
    }
}

impl Server {
    /// Every request body received so far (POST routes), as JSON text, in arrival order.
    pub(crate) fn request_bodies(&self) -> Vec<String> {
        self.fake
            .requests()
            .into_iter()
            .map(|r| r.body.to_string())
            .collect()
    }

    /// The prompts of every generation request received so far (`prompt` of
    /// `/api/generate`, the message contents of the chat routes), in arrival order.
    pub(crate) fn prompts(&self) -> Vec<String> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.endpoint.is_generation())
            .map(|r| match r.body.get("prompt").and_then(Value::as_str) {
                Some(prompt) => prompt.to_owned(),
                None => r.body["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["content"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            })
            .collect()
    }
}

//! [`ModelServerProcess`]: the real local model server (`model-server/server.mjs`) as a child
//! process of a test.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use enrich_config::{BackendSpec, DEFAULT_CHAIN};

use crate::error::TestkitError;

/// The variable naming the `node` executable.
pub const NODE_VAR: &str = "ENRICH_MODEL_SERVER_NODE";
/// The variable naming the server script (`target/model-server/server.mjs`).
pub const SCRIPT_VAR: &str = "ENRICH_MODEL_SERVER_SCRIPT";
/// The variable naming the GGUF model file.
pub const MODEL_VAR: &str = "ENRICH_MODEL_SERVER_MODEL";
/// The name the server gives its model.
pub const MODEL_SERVER_MODEL_NAME: &str = "smollm2:135m";

/// Stderr lines kept for error messages.
const STDERR_TAIL: usize = 20;

/// Where the real model server is and how long it may take to start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelServerConfig {
    /// The `node` executable.
    pub node: PathBuf,
    /// `server.mjs`, next to its `node_modules/`.
    pub script: PathBuf,
    /// The GGUF model file.
    pub model: PathBuf,
    /// How long to wait for the listening line. Default: 60 s (the model loads in about 2 s
    /// on an idle machine, much longer next to a parallel build).
    pub startup_timeout: Duration,
    /// More arguments for the server (`--ctx 4096`, `--max-queue 1`, …).
    pub extra_args: Vec<String>,
}

impl ModelServerConfig {
    /// The paths from `ENRICH_MODEL_SERVER_NODE`, `ENRICH_MODEL_SERVER_SCRIPT` and
    /// `ENRICH_MODEL_SERVER_MODEL`, which `cargo xtask model-server provision` prints and
    /// `cargo xtask test` sets.
    ///
    /// # Errors
    ///
    /// [`TestkitError::ModelServerNotProvisioned`] naming the first missing variable and how to
    /// set it. Tests must fail with it, never skip.
    pub fn from_env() -> Result<Self, TestkitError> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// Like [`ModelServerConfig::from_env`], reading variables through `var` (an empty value
    /// counts as missing).
    ///
    /// # Errors
    ///
    /// [`TestkitError::ModelServerNotProvisioned`] naming the first missing variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Self, TestkitError> {
        let path = |name: &'static str| {
            var(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
                .ok_or(TestkitError::ModelServerNotProvisioned { var: name })
        };
        Ok(Self {
            node: path(NODE_VAR)?,
            script: path(SCRIPT_VAR)?,
            model: path(MODEL_VAR)?,
            startup_timeout: Duration::from_secs(60),
            extra_args: Vec::new(),
        })
    }

    /// Sets how long to wait for the listening line.
    #[must_use]
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Adds arguments for the server.
    #[must_use]
    pub fn with_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// The real local model server (SmolLM2-135M behind Ollama's API), running as a child process
/// for end-to-end tests.
///
/// [`start`](ModelServerProcess::start) runs `node SCRIPT --model MODEL --port 0
/// --exit-on-stdin-close` with a piped stdin, and waits for its one stdout line
/// `{"listening":"http://127.0.0.1:PORT"}`. Dropping the value kills the server; should the
/// test process die instead, the server sees its stdin close and exits by itself.
///
/// Starting blocks the calling thread until the server listens (about 2 s; see
/// [`ModelServerConfig::startup_timeout`]): call it at the start of a test, before other work.
///
/// ```no_run
/// use enrich_testkit::ModelServerProcess;
///
/// // Fails (never skips) with "… run `cargo xtask model-server provision` …" when unprovisioned.
/// let server = ModelServerProcess::start().unwrap();
/// let spec = server.backend_spec("smollm2");
/// assert_eq!(spec.model, "smollm2:135m");
/// ```
#[derive(Debug)]
pub struct ModelServerProcess {
    child: Child,
    /// Held open: closing it tells the server to exit.
    _stdin: Option<ChildStdin>,
    url: String,
}

impl ModelServerProcess {
    /// Starts the server from the environment ([`ModelServerConfig::from_env`]).
    ///
    /// # Errors
    ///
    /// [`TestkitError::ModelServerNotProvisioned`] when a variable is missing, else as
    /// [`ModelServerProcess::start_with`].
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(ModelServerConfig::from_env()?)
    }

    /// Starts the server described by `config`.
    ///
    /// # Errors
    ///
    /// [`TestkitError::ModelServerSpawn`] when `node` cannot be run,
    /// [`TestkitError::ModelServerExited`] when the server stops before listening,
    /// [`TestkitError::ModelServerStartTimeout`] when it is too slow, and
    /// [`TestkitError::ModelServerBadLine`] when its first line is not the listening line.
    /// Each carries the command line and the end of the server's stderr where useful.
    pub fn start_with(config: ModelServerConfig) -> Result<Self, TestkitError> {
        let mut command = Command::new(&config.node);
        command
            .arg(&config.script)
            .arg("--model")
            .arg(&config.model)
            .args(["--port", "0", "--exit-on-stdin-close"])
            .args(&config.extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = config.script.parent().filter(|d| !d.as_os_str().is_empty()) {
            command.current_dir(dir);
        }
        let shown = format!("{command:?}");
        let mut child = command
            .spawn()
            .map_err(|source| TestkitError::ModelServerSpawn {
                command: shown.clone(),
                source,
            })?;

        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let stderr_reader = child.stderr.take().map(|pipe| {
            let tail = Arc::clone(&stderr);
            thread::spawn(move || keep_tail(pipe, &tail))
        });
        let (lines, first_line) = mpsc::channel();
        if let Some(pipe) = child.stdout.take() {
            thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = String::new();
                let first = match reader.read_line(&mut line) {
                    Ok(n) if n > 0 => Some(line.trim().to_owned()),
                    _ => None,
                };
                // The receiver may be gone after a timeout; nothing to do then.
                let _ = lines.send(first);
                // The server prints nothing more, but a full pipe must never block it.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            });
        }
        let stdin = child.stdin.take();
        let mut server = Self {
            child,
            _stdin: stdin,
            url: String::new(),
        };

        let failure = match first_line.recv_timeout(config.startup_timeout) {
            Ok(Some(line)) => match listening_url(&line) {
                Some(url) => {
                    server.url = url;
                    return Ok(server);
                }
                None => Failure::BadLine(line),
            },
            // Stdout closed: the server is exiting.
            Ok(None) | Err(RecvTimeoutError::Disconnected) => Failure::Exited,
            Err(RecvTimeoutError::Timeout) => Failure::Timeout,
        };
        let status = match failure {
            Failure::Exited => server.wait_briefly(),
            Failure::BadLine(_) | Failure::Timeout => None,
        };
        // Stop it, so its stderr ends and the whole tail can be shown.
        drop(server);
        if let Some(reader) = stderr_reader {
            // A panic in the reader only loses the tail.
            let _ = reader.join();
        }
        let tail = stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        Err(match failure {
            Failure::BadLine(line) => TestkitError::ModelServerBadLine {
                command: shown,
                line,
            },
            Failure::Exited => TestkitError::exited(shown, status, tail),
            Failure::Timeout => TestkitError::ModelServerStartTimeout {
                command: shown,
                seconds: config.startup_timeout.as_secs(),
                stderr: tail,
            },
        })
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The model name to request: `smollm2:135m`.
    pub fn model_name(&self) -> &'static str {
        MODEL_SERVER_MODEL_NAME
    }

    /// An `ollama` backend spec named `name` for this server's model and URL, with a generous
    /// 120 s timeout (generation on one CPU thread takes seconds).
    pub fn backend_spec(&self, name: &str) -> BackendSpec {
        let mut spec = BackendSpec::new(name, DEFAULT_CHAIN, "ollama", MODEL_SERVER_MODEL_NAME);
        spec.url = Some(self.url.clone());
        spec.timeout_seconds = Some(120.0);
        spec
    }

    /// The exit status if the child ends within a second.
    fn wait_briefly(&mut self) -> Option<std::process::ExitStatus> {
        for _ in 0..50 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ModelServerProcess {
    fn drop(&mut self) {
        // Already gone is fine; there is nothing else to do about a failed kill.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a start failed, before the error is built.
enum Failure {
    BadLine(String),
    Exited,
    Timeout,
}

/// The URL in `{"listening":"http://…"}`.
fn listening_url(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let url = value.get("listening")?.as_str()?;
    url.starts_with("http://").then(|| url.to_owned())
}

/// Reads `pipe` to its end, keeping the last [`STDERR_TAIL`] lines.
fn keep_tail(pipe: impl Read, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

//! The crate's error type.

use std::io;
use std::net::SocketAddr;
use std::process::ExitStatus;

/// Setting up a test double failed.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The fake server could not listen on its address.
    #[error("fake ollama could not listen on {addr}: {source}; pick another port or use port 0")]
    Bind {
        /// The address it tried.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A fault name that [`Fault::from_name`](crate::Fault::from_name) does not know.
    #[error("unknown fault `{name}`; known faults: {known}")]
    UnknownFault {
        /// The name given.
        name: String,
        /// Every known name, comma-separated.
        known: String,
    },
    /// A fault rate that is not `kind=p` with `0 <= p <= 1`.
    #[error("fault rate `{spec}` is not `kind=p` with p between 0 and 1 (e.g. `garbage=0.05`)")]
    InvalidFaultRate {
        /// The text given.
        spec: String,
    },
    /// An environment variable the real model server needs is not set.
    #[error(
        "environment variable {var} is not set, so the real model server cannot be started: run \
         `cargo xtask model-server provision` and export the ENRICH_MODEL_SERVER_* variables it \
         prints (`cargo xtask test` sets them itself)"
    )]
    ModelServerNotProvisioned {
        /// The missing variable.
        var: &'static str,
    },
    /// The model server process could not be spawned.
    #[error(
        "could not start the model server `{command}`: {source}; check ENRICH_MODEL_SERVER_NODE \
         and ENRICH_MODEL_SERVER_SCRIPT (re-run `cargo xtask model-server provision`)"
    )]
    ModelServerSpawn {
        /// The command line.
        command: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The model server exited (or closed its stdout) before saying where it listens.
    #[error(
        "the model server `{command}` stopped before it listened ({status}); its last stderr \
         lines:\n{stderr}"
    )]
    ModelServerExited {
        /// The command line.
        command: String,
        /// How it ended, or "stdout closed" when it is still running.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The model server did not say where it listens in time.
    #[error(
        "the model server `{command}` printed no listening line within {seconds} s (the model \
         may be loading slowly on a busy machine: raise the startup timeout); its last stderr \
         lines:\n{stderr}"
    )]
    ModelServerStartTimeout {
        /// The command line.
        command: String,
        /// How long it waited.
        seconds: u64,
        /// The end of its stderr.
        stderr: String,
    },
    /// The model server's first stdout line was not `{"listening":"http://…"}`.
    #[error(
        "the model server `{command}` printed `{line}` where `{{\"listening\":\"http://…\"}}` was \
         expected; is ENRICH_MODEL_SERVER_SCRIPT the enrich model server?"
    )]
    ModelServerBadLine {
        /// The command line.
        command: String,
        /// The line it printed.
        line: String,
    },
}

impl TestkitError {
    pub(crate) fn exited(command: String, status: Option<ExitStatus>, stderr: String) -> Self {
        TestkitError::ModelServerExited {
            command,
            status: status.map_or_else(|| "stdout closed".to_owned(), |s| s.to_string()),
            stderr,
        }
    }
}

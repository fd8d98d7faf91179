//! Ctrl-C and SIGTERM: the first stops taking new spans and lets those in flight finish and be
//! written; the second aborts the spans in flight (nothing half-written: each commit is one
//! SQLite transaction); a third exits at once.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use enrich_pipeline::{RunControl, StopLevel};
use tokio_util::sync::CancellationToken;

/// SIGINT's number.
const SIGINT: u8 = 2;
/// SIGTERM's number.
#[cfg(unix)]
const SIGTERM: u8 = 15;

/// What the signal handler controls, and what it saw.
#[derive(Clone)]
pub(crate) struct Shutdown {
    /// The runs to stop, then abort.
    pub(crate) control: RunControl,
    /// Cancelled by the first signal, for waits outside a run (`watch` between passes).
    pub(crate) requested: CancellationToken,
    /// The number of the first signal received; 0 for none.
    signal: Arc<AtomicU8>,
}

impl Shutdown {
    /// Installs the handlers. Call inside the runtime.
    pub(crate) fn install() -> std::io::Result<Self> {
        let shutdown = Self {
            control: RunControl::new(),
            requested: CancellationToken::new(),
            signal: Arc::new(AtomicU8::new(0)),
        };
        let mut signals = Signals::new()?;
        let handler = shutdown.clone();
        tokio::spawn(async move {
            let mut received = 0u32;
            while let Some(signal) = signals.recv().await {
                received += 1;
                handler.on_signal(signal, received);
            }
        });
        Ok(shutdown)
    }

    /// The first signal received, if any.
    pub(crate) fn signal(&self) -> Option<u8> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    fn on_signal(&self, signal: u8, received: u32) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        self.requested.cancel();
        let message = if received >= 3 {
            note(
                "enrich: exiting now; what was committed is kept, the spans in flight stay pending",
            );
            std::process::exit(128 + i32::from(signal));
        } else {
            match self.control.escalate() {
                StopLevel::Abort => {
                    "enrich: aborting the spans in flight (they stay pending); press Ctrl-C again to exit at once"
                }
                StopLevel::Stop | StopLevel::Running => {
                    "enrich: stopping: finishing and writing the spans in flight; press Ctrl-C again to abort them"
                }
            }
        };
        note(message);
    }
}

fn note(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// The signals that stop enrich, as one stream.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The number of the next signal received.
    async fn recv(&mut self) -> Option<u8> {
        #[cfg(unix)]
        {
            tokio::select! {
                got = self.interrupt.recv() => got.map(|()| SIGINT),
                got = self.terminate.recv() => got.map(|()| SIGTERM),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| SIGINT)
        }
    }
}

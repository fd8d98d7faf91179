//! The spans in flight: one task each, with what the scheduler knows of it until it is joined.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::{Id, JoinSet};

use super::span::process_span;
use super::{Processed, Resume, RunCtx, ToSend};
use crate::writer::panic_message;

/// What the scheduler knows of a span in flight.
pub(super) struct InFlight {
    pub(super) batch: u64,
    pub(super) span_id: i64,
    pub(super) resume: Resume,
}

/// A span's task that panicked: nothing was written for it, and it stays pending.
pub(super) struct Panicked {
    pub(super) span_hash: String,
    /// Its batch (0 when the task was unknown).
    pub(super) batch: u64,
    pub(super) message: String,
}

/// A span's task that ended.
pub(super) type Joined = Result<(InFlight, Processed), Panicked>;

/// The run's span tasks.
pub(super) struct Flights {
    tasks: JoinSet<Processed>,
    spans: HashMap<Id, (String, InFlight)>,
}

impl Flights {
    pub(super) fn new() -> Self {
        Self {
            tasks: JoinSet::new(),
            spans: HashMap::new(),
        }
    }

    /// How many spans are in flight.
    pub(super) fn len(&self) -> usize {
        self.tasks.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts the task that processes `send`'s span.
    pub(super) fn spawn(&mut self, ctx: &Arc<RunCtx>, send: ToSend) {
        let ToSend {
            span,
            batch,
            resume,
        } = send;
        let entry = InFlight {
            batch,
            span_id: span.id,
            resume,
        };
        let span_hash = span.span_hash.clone();
        let ctx = Arc::clone(ctx);
        let task = self
            .tasks
            .spawn(async move { process_span(&ctx, span, batch, resume).await });
        self.spans.insert(task.id(), (span_hash, entry));
    }

    /// The next task to end; `None` when none is in flight. Cancel-safe.
    pub(super) async fn join_next(&mut self) -> Option<Joined> {
        let joined = self.tasks.join_next_with_id().await?;
        Some(match joined {
            Ok((id, processed)) => {
                let (_, flight) = self
                    .spans
                    .remove(&id)
                    .expect("every task's span is in flight until it is joined");
                Ok((flight, processed))
            }
            Err(join_error) => {
                let (span_hash, batch) = self.spans.remove(&join_error.id()).map_or_else(
                    || (String::from("(unknown)"), 0),
                    |(span_hash, flight)| (span_hash, flight.batch),
                );
                let message = match join_error.try_into_panic() {
                    Ok(panic) => panic_message(&*panic),
                    Err(join_error) => join_error.to_string(),
                };
                Err(Panicked {
                    span_hash,
                    batch,
                    message,
                })
            }
        })
    }
}

//! Admission of a generation: the next fault (scripted, else drawn), Ollama's scheduler (a
//! queue of bounded length in front of the slots, 503 beyond it), and the counting of every
//! request's outcome exactly once, also when its client leaves.

use std::sync::atomic::{AtomicBool, Ordering};

use hyper::StatusCode;
use tokio::sync::SemaphorePermit;

use super::config::Fault;
use super::generation::CONTEXT_MESSAGE;
use super::routes::Refusal;
use super::server::{Shared, lock};
use super::stats::{Endpoint, Outcome};
use super::wire::ApiError;

/// Ollama's answer when its queue is full.
pub(crate) const BUSY_MESSAGE: &str =
    "server busy, please try again.  maximum pending requests exceeded";

impl Shared {
    /// The next scripted fault, else a drawn one.
    pub(super) fn next_fault(&self) -> Option<Fault> {
        if let Some(fault) = lock(&self.faults).pop_front() {
            return Some(fault);
        }
        if self.fault_rates.is_empty() {
            return None;
        }
        let x = lock(&self.rng).f64();
        let mut sum = 0.0;
        self.fault_rates.iter().find_map(|&(fault, p)| {
            sum += p;
            (x < sum).then_some(fault)
        })
    }

    fn admit(&self) -> Option<Admitted<'_>> {
        let before = self.counters.admitted.fetch_add(1, Ordering::SeqCst);
        if before >= self.capacity {
            self.counters.admitted.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        self.changed.notify_waiters();
        Some(Admitted(self))
    }
}

/// What a generation holds while it runs: its place among the admitted, its slot, and its
/// count as running. Dropped in that order reversed (running, slot, place), as the fields are.
pub(super) struct Held<'a> {
    _running: Running<'a>,
    _slot: SemaphorePermit<'a>,
    _admitted: Admitted<'a>,
}

/// Admits a generation that drew `fault`: a status fault is its answer at once; else it takes
/// a place in the queue (503 when the queue is full) and waits for a slot.
pub(super) async fn enter(shared: &Shared, fault: Option<Fault>) -> Result<Held<'_>, Refusal> {
    if let Some(fault) = fault.filter(|f| f.is_status()) {
        return Err(status_fault(fault));
    }
    let Some(admitted) = shared.admit() else {
        return Err((
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE),
            Outcome::QueueFull,
        ));
    };
    // The semaphore is never closed.
    let Ok(slot) = shared.slots.acquire().await else {
        return Err((
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE),
            Outcome::QueueFull,
        ));
    };
    Ok(Held {
        _running: Running::start(shared),
        _slot: slot,
        _admitted: admitted,
    })
}

/// Counts a request's outcome exactly once: when it is answered, when it starts to hang, or,
/// when the client goes away first (the handler is dropped unanswered), as
/// [`Outcome::Abandoned`].
pub(super) struct Tally<'a> {
    shared: &'a Shared,
    endpoint: Endpoint,
    counted: AtomicBool,
}

impl<'a> Tally<'a> {
    pub(super) fn new(shared: &'a Shared, endpoint: Endpoint) -> Self {
        Self {
            shared,
            endpoint,
            counted: AtomicBool::new(false),
        }
    }

    pub(super) fn count(&self, outcome: Outcome) {
        if !self.counted.swap(true, Ordering::SeqCst) {
            self.shared.counters.answered(self.endpoint, outcome);
            self.shared.changed.notify_waiters();
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.count(Outcome::Abandoned);
    }
}

/// A generation admitted to the queue or a slot; leaves on drop (also when the client goes).
struct Admitted<'a>(&'a Shared);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.counters.admitted.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// A generation holding a slot.
struct Running<'a>(&'a Shared);

impl<'a> Running<'a> {
    fn start(shared: &'a Shared) -> Self {
        shared.counters.start_running();
        shared.changed.notify_waiters();
        Self(shared)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.counters.running.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// The answer of a status fault.
fn status_fault(fault: Fault) -> Refusal {
    match fault {
        Fault::Busy => (
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE),
            Outcome::Busy,
        ),
        Fault::RateLimited { retry_after_secs } => {
            let mut err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests, please retry later",
            )
            .with_code("rate_limit_exceeded");
            err.retry_after = Some(retry_after_secs);
            (err, Outcome::RateLimited)
        }
        Fault::ContextExceeded => (
            ApiError::new(StatusCode::BAD_REQUEST, CONTEXT_MESSAGE)
                .with_code("context_length_exceeded"),
            Outcome::ContextExceeded,
        ),
        Fault::BadRequest => (
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid options: json: cannot unmarshal string into Go struct field \
                 Options.num_predict of type int",
            ),
            Outcome::BadRequest,
        ),
        Fault::Unauthorized => (
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized").with_code("invalid_api_key"),
            Outcome::Unauthorized,
        ),
        _ => (
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "llama runner process has terminated: exit status 2",
            ),
            Outcome::ServerError,
        ),
    }
}

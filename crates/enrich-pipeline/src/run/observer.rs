//! What the run hears from the cascade, the host pools and the in-flight limits: every attempt,
//! circuit change and limit change becomes an event, tokens count against the budgets, and changed circuits are published to
//! `llmc_meta` for `enrich status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use enrich_backends::{
    AttemptObserver, AttemptRecord, Cascade, CircuitSnapshot, CircuitTransition, Decision,
    LimitChange, SpanIdentity,
};
use enrich_db::{self as db, RunId};

use super::Scheduler;
use crate::budget::BudgetTracker;
use crate::events::{Event, EventSink, now_ms};

/// Hears every attempt and circuit change of the run (the cascade's and the host pools'):
/// emits `attempt_finished` and `circuit_changed`, counts tokens against the budgets, and marks
/// the circuits for publishing.
pub(super) struct AttemptEvents {
    sink: Arc<dyn EventSink>,
    run_id: RunId,
    pub(super) budget: Arc<BudgetTracker>,
    circuits_changed: AtomicBool,
}

impl AttemptEvents {
    pub(super) fn new(sink: Arc<dyn EventSink>, run_id: RunId, budget: Arc<BudgetTracker>) -> Self {
        Self {
            sink,
            run_id,
            budget,
            circuits_changed: AtomicBool::new(false),
        }
    }
}

impl AttemptObserver for AttemptEvents {
    fn on_attempt(&self, span: &SpanIdentity, record: &AttemptRecord, next: Option<Decision>) {
        self.budget.record(record);
        self.sink.on_event(&Event::AttemptFinished {
            at_ms: now_ms(),
            run_id: self.run_id,
            span_hash: span.span_hash.to_string(),
            attempt: record.clone(),
            next: next.map(Into::into),
        });
    }

    fn on_circuit(&self, transition: &CircuitTransition) {
        self.circuits_changed.store(true, Ordering::Release);
        self.sink.on_event(&Event::CircuitChanged {
            at_ms: now_ms(),
            run_id: self.run_id,
            transition: transition.clone(),
        });
    }

    fn on_limit(&self, change: &LimitChange) {
        self.sink.on_event(&Event::LimitChanged {
            at_ms: now_ms(),
            run_id: self.run_id,
            change: change.clone(),
        });
    }
}

/// The circuits of a run as `enrich status` reads them from `llmc_meta`
/// ([`db::CIRCUITS_META_KEY`]).
#[derive(serde::Serialize)]
struct PublishedCircuits<'a> {
    run_id: RunId,
    updated_at_ms: u64,
    circuits: &'a [CircuitSnapshot],
}

impl Scheduler<'_> {
    /// Whether a budget forbids taking another span; says so once, in an event.
    pub(super) fn over_budget(&mut self) -> bool {
        if self.budget_stop.is_some() {
            return true;
        }
        let Some(stop) = self.observer.budget.reached() else {
            return false;
        };
        tracing::warn!(run = self.run_id.0, "{stop}; taking no more spans");
        self.inner.events.on_event(&Event::BudgetReached {
            at_ms: now_ms(),
            run_id: self.run_id,
            budget: stop,
        });
        self.budget_stop = Some(stop);
        true
    }

    /// Writes the circuits of the cascade and the host pools to `llmc_meta` for `enrich
    /// status`, when they changed since the last time. Best effort: a failure is logged.
    pub(super) async fn publish_circuits(&mut self, cascade: &Cascade) {
        if !self.observer.circuits_changed.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut circuits = cascade.circuits();
        for pool in &self.inner.pools {
            circuits.extend(pool.circuits());
        }
        let published = PublishedCircuits {
            run_id: self.run_id,
            updated_at_ms: now_ms(),
            circuits: &circuits,
        };
        let written = match serde_json::to_string(&published) {
            Ok(json) => {
                self.claimer
                    .call(move |claimer| {
                        claimer
                            .set_meta(db::CIRCUITS_META_KEY, &json)
                            .map_err(|e| e.to_string())
                    })
                    .await
            }
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = written {
            tracing::warn!(
                run = self.run_id.0,
                "cannot publish the circuits' state: {error}"
            );
        }
    }
}

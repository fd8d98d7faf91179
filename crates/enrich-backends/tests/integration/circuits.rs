//! The cascade's circuit breaker per backend, across spans, on tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrich_backends::{
    AttemptObserver, AttemptRecord, BackendAdapter, Cascade, CascadePolicy, CascadeSuccess,
    CircuitPolicy, CircuitSnapshot, CircuitState, CircuitTransition, Decision, FailureKind,
    SpanIdentity,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{Scripted, Step, chain, request, valid_reply, validation};

async fn run(cascade: &Cascade, backends: &[Arc<dyn BackendAdapter>]) -> CascadeSuccess {
    cascade
        .run(
            backends,
            0,
            &request(),
            &validation(),
            &CancellationToken::new(),
        )
        .await
        .expect("the second backend answers")
}

fn ok() -> Step {
    Step::Reply(valid_reply())
}

fn policy(circuit: CircuitPolicy) -> CascadePolicy {
    CascadePolicy::default().with_circuit(Some(circuit))
}

/// Circuit transitions as `(from phase, to phase)` names.
#[derive(Default)]
struct Transitions(Mutex<Vec<CircuitTransition>>);

impl AttemptObserver for Transitions {
    fn on_attempt(&self, _: &SpanIdentity, _: &AttemptRecord, _: Option<Decision>) {}

    fn on_circuit(&self, transition: &CircuitTransition) {
        self.0.lock().unwrap().push(transition.clone());
    }
}

impl Transitions {
    fn phases(&self) -> Vec<(&'static str, &'static str)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|t| (phase(t.from), phase(t.to)))
            .collect()
    }
}

fn phase(state: CircuitState) -> &'static str {
    match state {
        CircuitState::Closed => "closed",
        CircuitState::Open { .. } => "open",
        CircuitState::HalfOpen { .. } => "half_open",
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_first_backend_costs_a_hundred_spans_only_the_opening_failures() {
    for kind in [
        FailureKind::Connect,
        FailureKind::Timeout,
        FailureKind::ServerError,
    ] {
        let dead = Scripted::always("dead", Step::Fail(kind));
        let b = Scripted::always("b", ok());
        let backends = chain(&[&dead, &b]);
        let cascade = Arc::new(Cascade::new(CascadePolicy::default()));
        let started = Instant::now();
        let mut spans = JoinSet::new();
        for _ in 0..100 {
            let (cascade, backends) = (Arc::clone(&cascade), backends.clone());
            spans.spawn(async move { run(&cascade, &backends).await.backend_index });
        }
        let answered_by: Vec<usize> = spans.join_all().await;
        assert_eq!(answered_by, [1; 100], "{kind}");
        // No probe is due within the test, so the dead backend saw exactly the failures that
        // opened its circuit; the spans that meant to retry it after a backoff passed over it.
        assert_eq!(
            dead.calls(),
            CircuitPolicy::default().failures_to_open,
            "{kind}"
        );
        assert_eq!(b.calls(), 100, "{kind}");
        assert!(started.elapsed() <= Duration::from_secs(1), "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn sequential_spans_pass_over_an_open_circuit_without_attempt_or_delay() {
    let dead = Scripted::always("dead", Step::Fail(FailureKind::Connect));
    let b = Scripted::always("b", ok());
    let backends = chain(&[&dead, &b]);
    let cascade = Cascade::new(CascadePolicy::default());
    let mut attempts = Vec::new();
    for _ in 0..100 {
        attempts.push(run(&cascade, &backends).await.attempts.len());
    }
    assert_eq!(dead.calls(), 3);
    assert_eq!(&attempts[..4], [2, 2, 2, 1]);
    assert!(attempts[3..].iter().all(|&n| n == 1));
    assert_eq!(
        cascade.circuits(),
        [
            CircuitSnapshot {
                backend: "b".into(),
                host: "scripted://b".into(),
                state: CircuitState::Closed,
                consecutive_failures: 0,
                trips: 0,
            },
            CircuitSnapshot {
                backend: "dead".into(),
                host: "scripted://dead".into(),
                state: CircuitState::Open {
                    remaining_ms: 30_000
                },
                consecutive_failures: 3,
                trips: 1,
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn probes_come_after_growing_cooldowns_and_only_they_reach_a_dead_backend() {
    let dead = Scripted::always("dead", Step::Fail(FailureKind::Connect));
    let b = Scripted::always("b", ok());
    let backends = chain(&[&dead, &b]);
    let cascade = Cascade::new(policy(CircuitPolicy {
        failures_to_open: 2,
        cooldown: Duration::from_secs(10),
        max_cooldown: Duration::from_secs(60),
        growth: 2.0,
    }));
    let started = Instant::now();
    // One span a second for five minutes.
    for _ in 0..300 {
        run(&cascade, &backends).await;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let at: Vec<u64> = dead
        .call_times()
        .iter()
        .map(|t| (*t - started).as_secs())
        .collect();
    // Opens after calls at 0 s and 1 s; probes after 10, 20, 40, 60, 60, … seconds.
    assert_eq!(at, [0, 1, 11, 31, 71, 131, 191, 251]);
    let [_, circuit] = &cascade.circuits()[..] else {
        panic!()
    };
    assert_eq!(circuit.backend, "dead");
    assert_eq!(circuit.trips, 7);
}

#[tokio::test(start_paused = true)]
async fn exactly_one_probe_goes_through_while_concurrent_spans_keep_passing_over() {
    let flaky = Scripted::new(
        "flaky",
        vec![
            Step::Fail(FailureKind::Connect),
            Step::Fail(FailureKind::Connect),
            Step::Fail(FailureKind::Connect),
            // The probe: slow, then an answer.
            Step::After(Duration::from_secs(20), Box::new(ok())),
            ok(),
        ],
    );
    let b = Scripted::always("b", ok());
    let backends = chain(&[&flaky, &b]);
    let transitions = Arc::new(Transitions::default());
    let cascade = Arc::new(
        Cascade::new(CascadePolicy::default())
            .with_observer(Arc::clone(&transitions) as Arc<dyn AttemptObserver>),
    );
    for _ in 0..3 {
        run(&cascade, &backends).await;
    }
    tokio::time::advance(Duration::from_secs(30)).await;

    let probe = {
        let (cascade, backends) = (Arc::clone(&cascade), backends.clone());
        tokio::spawn(async move { run(&cascade, &backends).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        cascade.circuits()[1].state,
        CircuitState::HalfOpen {
            probe_in_flight: true
        }
    );
    let started = Instant::now();
    for _ in 0..10 {
        let passed_over = run(&cascade, &backends).await;
        assert_eq!(passed_over.backend_index, 1);
        assert_eq!(passed_over.attempts.len(), 1);
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(flaky.calls(), 4);

    let probed = probe.await.unwrap();
    assert_eq!(probed.backend_index, 0);
    assert_eq!(run(&cascade, &backends).await.backend_index, 0);
    assert_eq!(
        transitions.phases(),
        [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed")
        ]
    );
    let opened = &transitions.0.lock().unwrap()[0];
    assert_eq!(
        (opened.backend.as_str(), opened.host.as_str()),
        ("flaky", "scripted://flaky")
    );
    assert_eq!(
        opened.to,
        CircuitState::Open {
            remaining_ms: 30_000
        }
    );
    assert_eq!((opened.consecutive_failures, opened.trips), (3, 1));
    assert_eq!(
        opened.reason.as_deref(),
        Some("connect: flaky failed with connect")
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_dropped_mid_request_gives_its_place_back() {
    let flaky = Scripted::new(
        "flaky",
        vec![
            Step::Fail(FailureKind::Connect),
            Step::Fail(FailureKind::Connect),
            Step::Fail(FailureKind::Connect),
            Step::Hang,
            ok(),
        ],
    );
    let b = Scripted::always("b", ok());
    let backends = chain(&[&flaky, &b]);
    let cascade = Cascade::new(CascadePolicy::default());
    for _ in 0..3 {
        run(&cascade, &backends).await;
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    // The span holding the probe is dropped (its task aborted, say) while the probe hangs.
    let dropped = tokio::time::timeout(Duration::from_secs(1), run(&cascade, &backends)).await;
    assert!(dropped.is_err());
    assert_eq!(flaky.calls(), 4);
    assert_eq!(run(&cascade, &backends).await.backend_index, 0);
    assert_eq!(cascade.circuits()[1].state, CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn kinds_that_do_not_trip_count_as_answers() {
    // overloaded, context_exceeded and invalid output between connect failures: the backend is
    // reachable, so the circuit never opens.
    let answering = Scripted::new(
        "answering",
        vec![
            Step::Fail(FailureKind::Connect),
            Step::Fail(FailureKind::Connect),
            Step::Fail(FailureKind::ContextExceeded),
            Step::Fail(FailureKind::Connect),
            Step::Fail(FailureKind::Connect),
            Step::Reply("no json".into()),
            Step::Fail(FailureKind::Connect),
            ok(),
        ],
    );
    let b = Scripted::always("b", ok());
    let backends = chain(&[&answering, &b]);
    let cascade = Cascade::new(CascadePolicy::default().with_corrective_reasks(0));
    for _ in 0..8 {
        run(&cascade, &backends).await;
    }
    assert_eq!(answering.calls(), 8);
    assert_eq!(cascade.circuits()[0].trips, 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_circuit_policy_nothing_is_tracked_or_skipped() {
    let dead = Scripted::always("dead", Step::Fail(FailureKind::Connect));
    let b = Scripted::always("b", ok());
    let backends = chain(&[&dead, &b]);
    let cascade = Cascade::new(CascadePolicy::default().with_circuit(None));
    for _ in 0..10 {
        run(&cascade, &backends).await;
    }
    assert_eq!(dead.calls(), 10);
    assert!(cascade.circuits().is_empty());
}

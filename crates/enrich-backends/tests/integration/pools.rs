//! Host pools: one backend on several machines, on tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrich_backends::{
    AdapterRegistry, AttemptObserver, AttemptRecord, BackendAdapter, BackendError, BackendsError,
    Cascade, CascadePolicy, CircuitState, CircuitTransition, Deadline, Decision, FailureKind,
    HostPool, HostPoolPolicy, SpanIdentity,
};
use enrich_config::BackendSpec;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{FakeHost, Scripted, Step, request, validation};

const GPU1: &str = "http://gpu1:11434";
const GPU2: &str = "http://gpu2:11434";

fn spec() -> BackendSpec {
    BackendSpec {
        url: Some(GPU1.into()),
        urls: vec![GPU1.into(), GPU2.into()],
        timeout_seconds: Some(10.0),
        ..BackendSpec::new("gpus", "default", "fake", "qwen")
    }
}

fn hosts(latency: Duration) -> (Arc<FakeHost>, Arc<FakeHost>) {
    (
        FakeHost::new(&spec(), GPU1, latency),
        FakeHost::new(&spec(), GPU2, latency),
    )
}

fn pool_of(hosts: Vec<Arc<dyn BackendAdapter>>, cap: usize) -> Arc<HostPool> {
    let policy = HostPoolPolicy {
        max_in_flight_per_host: cap,
        ..HostPoolPolicy::default()
    };
    Arc::new(HostPool::new(spec(), hosts, policy).expect("hosts are given"))
}

fn pool(a: &Arc<FakeHost>, b: &Arc<FakeHost>, cap: usize) -> Arc<HostPool> {
    pool_of(vec![Arc::clone(a) as _, Arc::clone(b) as _], cap)
}

/// Sends `n` requests to the pool at once; returns how each ended.
async fn burst(pool: &Arc<HostPool>, n: usize) -> Vec<Result<String, BackendError>> {
    let mut calls = JoinSet::new();
    for _ in 0..n {
        let pool = Arc::clone(pool);
        calls.spawn(async move {
            pool.generate(&request())
                .await
                .map(|generation| generation.metrics.host)
        });
    }
    calls.join_all().await
}

/// Runs `n` spans at once through a cascade whose only backend is the pool; returns the
/// failures' messages.
async fn spans(cascade: &Arc<Cascade>, pool: &Arc<HostPool>, n: usize) -> Vec<String> {
    let backends: Vec<Arc<dyn BackendAdapter>> = vec![Arc::clone(pool) as _];
    let mut spans = JoinSet::new();
    for _ in 0..n {
        let (cascade, backends) = (Arc::clone(cascade), backends.clone());
        spans.spawn(async move {
            cascade
                .run(
                    &backends,
                    0,
                    &request(),
                    &validation(),
                    &CancellationToken::new(),
                )
                .await
                .err()
                .map(|failure| failure.to_string())
        });
    }
    spans.join_all().await.into_iter().flatten().collect()
}

#[tokio::test(start_paused = true)]
async fn load_spreads_over_every_host_within_its_cap() {
    let (a, b) = hosts(Duration::from_secs(1));
    let pool = pool(&a, &b, 2);
    let started = Instant::now();
    let served = burst(&pool, 12).await;
    assert!(served.iter().all(Result::is_ok), "{served:?}");
    assert_eq!((a.answered(), b.answered()), (6, 6));
    assert_eq!((a.max_in_flight(), b.max_in_flight()), (2, 2));
    // Four slots, one second per request: three rounds, queueing without busy waiting.
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(pool.in_flight(), [0, 0]);

    // One at a time, equally idle hosts take turns.
    for _ in 0..4 {
        pool.generate(&request()).await.unwrap();
    }
    assert_eq!((a.answered(), b.answered()), (8, 8));
}

#[tokio::test(start_paused = true)]
async fn caps_hold_under_a_crowd() {
    for cap in [1, 3] {
        let (a, b) = hosts(Duration::from_millis(700));
        let pool = pool(&a, &b, cap);
        let served = burst(&pool, 25).await;
        assert!(served.iter().all(Result::is_ok), "cap {cap}");
        assert_eq!((a.max_in_flight(), b.max_in_flight()), (cap, cap));
        assert_eq!(a.answered() + b.answered(), 25);
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_host_moves_its_load_to_the_other_without_failing_spans() {
    let (a, b) = hosts(Duration::from_secs(1));
    a.kill();
    let pool = pool(&a, &b, 2);
    let cascade = Arc::new(Cascade::new(CascadePolicy::default()));
    assert_eq!(spans(&cascade, &pool, 40).await, Vec::<String>::new());
    assert_eq!(b.answered(), 40);
    // The dead host's circuit opened after its third refusal: no more requests reach it.
    assert_eq!(a.calls(), 3);
    let circuits = pool.circuits();
    assert_eq!((circuits[0].host.as_str(), circuits[0].trips), (GPU1, 1));
    assert!(matches!(circuits[0].state, CircuitState::Open { .. }));
    assert_eq!(circuits[1].state, CircuitState::Closed);
    // The cascade never saw a failure: the pool's backend is healthy.
    assert_eq!(cascade.circuits()[0].consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_host_dying_mid_run_costs_no_span() {
    let (a, b) = hosts(Duration::from_secs(1));
    let pool = pool(&a, &b, 2);
    let cascade = Arc::new(Cascade::new(CascadePolicy::default()));
    let killer = {
        let a = Arc::clone(&a);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            a.kill();
        })
    };
    assert_eq!(spans(&cascade, &pool, 30).await, Vec::<String>::new());
    killer.await.unwrap();
    assert_eq!(a.answered() + b.answered(), 30);
    // Before the kill both hosts served; the requests under way on `a` were reset and served
    // by `b`; then `a` got at most the refusals that opened its circuit.
    assert_eq!(a.answered(), 4);
    assert!(a.calls() <= a.answered() + 2 + 3, "{} calls", a.calls());
}

#[tokio::test(start_paused = true)]
async fn with_every_host_down_the_pool_fails_at_once_naming_each_host() {
    let (a, b) = hosts(Duration::from_secs(1));
    a.kill();
    b.kill();
    let pool = pool(&a, &b, 1);
    let started = Instant::now();
    let err = pool.generate(&request()).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Connect);
    assert_eq!(
        err.message,
        "no host of backend 'gpus' could serve the request: http://gpu1:11434 (connect: \
         connection refused by http://gpu1:11434); http://gpu2:11434 (connect: connection \
         refused by http://gpu2:11434); start the hosts or remove the dead ones from its `urls`"
    );
    for _ in 0..2 {
        pool.generate(&request()).await.unwrap_err();
    }
    let err = pool.generate(&request()).await.unwrap_err();
    assert_eq!(
        err.message,
        "no host of backend 'gpus' could serve the request: http://gpu1:11434 (circuit open for \
         30.0s more after: connect: connection refused by http://gpu1:11434); http://gpu2:11434 \
         (circuit open for 30.0s more after: connect: connection refused by \
         http://gpu2:11434); start the hosts or remove the dead ones from its `urls`"
    );
    assert_eq!((a.calls(), b.calls()), (3, 3));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_starts_when_a_host_slot_is_taken() {
    // One host, one slot, 4 s per request, a 10 s timeout: the third span waits 8 s for the
    // slot and still gets its full 10 s.
    let (a, _) = hosts(Duration::from_secs(4));
    let pool = pool_of(vec![Arc::clone(&a) as _], 1);
    assert_eq!(
        pool.deadline(),
        Deadline::Adapter(Duration::from_secs(10)),
        "one host's timeout, applied by the pool once a slot is taken"
    );
    let cascade = Arc::new(Cascade::new(CascadePolicy::default()));
    let started = Instant::now();
    assert_eq!(spans(&cascade, &pool, 3).await, Vec::<String>::new());
    assert_eq!(started.elapsed(), Duration::from_secs(12));
    assert_eq!(a.answered(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_host_times_out_after_the_timeout_and_the_request_moves_on() {
    let hung = FakeHost::new(&spec(), GPU1, Duration::from_secs(3600));
    let fast = FakeHost::new(&spec(), GPU2, Duration::from_secs(1));
    let pool = pool(&hung, &fast, 1);
    let started = Instant::now();
    let host = pool.generate(&request()).await.unwrap().metrics.host;
    assert_eq!(host, GPU2);
    assert_eq!(started.elapsed(), Duration::from_secs(11));
    let circuits = pool.circuits();
    assert_eq!(circuits[0].consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_recovered_host_gets_its_load_back_after_one_probe() {
    #[derive(Default)]
    struct Seen(Mutex<Vec<CircuitTransition>>);
    impl AttemptObserver for Seen {
        fn on_attempt(&self, _: &SpanIdentity, _: &AttemptRecord, _: Option<Decision>) {}
        fn on_circuit(&self, transition: &CircuitTransition) {
            self.0.lock().unwrap().push(transition.clone());
        }
    }
    let (a, b) = hosts(Duration::from_secs(1));
    a.kill();
    let pool = pool(&a, &b, 4);
    let seen = Arc::new(Seen::default());
    pool.set_observer(Some(Arc::clone(&seen) as _));
    burst(&pool, 8).await;
    assert_eq!(a.calls(), 3);

    a.revive();
    tokio::time::advance(Duration::from_secs(30)).await;
    let served = burst(&pool, 8).await;
    assert!(served.iter().all(Result::is_ok));
    assert_eq!(pool.circuits()[0].state, CircuitState::Closed);
    assert!(
        a.answered() >= 2,
        "load came back after the probe: {}",
        a.answered()
    );
    let transitions: Vec<_> = seen
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.host.clone(), t.from, t.to, t.reason.clone()))
        .collect();
    assert_eq!(
        transitions,
        [
            (
                GPU1.to_owned(),
                CircuitState::Closed,
                CircuitState::Open {
                    remaining_ms: 30_000
                },
                Some("connect: connection refused by http://gpu1:11434".to_owned())
            ),
            (
                GPU1.to_owned(),
                CircuitState::Open { remaining_ms: 0 },
                CircuitState::HalfOpen {
                    probe_in_flight: true
                },
                None
            ),
            (
                GPU1.to_owned(),
                CircuitState::HalfOpen {
                    probe_in_flight: true
                },
                CircuitState::Closed,
                None
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn other_failures_are_the_cascades_to_decide() {
    let missing = Scripted::always("gpu1", Step::Fail(FailureKind::ModelNotFound));
    let (_, b) = hosts(Duration::from_secs(1));
    let pool = pool_of(vec![Arc::clone(&missing) as _, Arc::clone(&b) as _], 1);
    let err = pool.generate(&request()).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::ModelNotFound);
    assert_eq!(b.calls(), 0);
    // The host answered: its circuit counts nothing.
    assert_eq!(pool.circuits()[0].consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn health_merges_the_hosts_reports() {
    let (a, b) = hosts(Duration::from_secs(1));
    let pool = pool(&a, &b, 1);
    a.kill();
    let report = pool.health().await;
    assert_eq!(report.reachable, Some(true));
    assert_eq!(report.context_length, Some(4096));
    assert!(report.is_healthy());
    assert_eq!(
        report.messages,
        [
            "http://gpu1:11434: connection refused",
            "http://gpu2:11434: ollama 0.12.0 serves the model"
        ]
    );
    assert_eq!(report.fixes, ["http://gpu1:11434: start ollama there"]);
    b.kill();
    assert_eq!(pool.health().await.reachable, Some(false));
}

/// A pool's model digest is the one its answering hosts agree on; hosts serving different
/// weights under one name make it unknown, and so does no host reporting one.
#[tokio::test(start_paused = true)]
async fn the_pools_digest_is_the_one_its_hosts_agree_on() {
    let (a, b) = hosts(Duration::from_secs(1));
    let pool = pool(&a, &b, 1);
    assert_eq!(pool.model_digest().await, None);
    a.set_digest(Some("d1"));
    assert_eq!(pool.model_digest().await.as_deref(), Some("d1"));
    b.set_digest(Some("d1"));
    assert_eq!(pool.model_digest().await.as_deref(), Some("d1"));
    b.set_digest(Some("d2"));
    assert_eq!(pool.model_digest().await, None, "the hosts disagree");
    a.kill();
    assert_eq!(pool.model_digest().await.as_deref(), Some("d2"));
}

#[test]
fn the_registry_builds_one_adapter_per_host() {
    let built: Arc<Mutex<Vec<BackendSpec>>> = Arc::default();
    let sink = Arc::clone(&built);
    let mut registry = AdapterRegistry::new();
    registry.register(
        "fake",
        move |spec: &BackendSpec| -> Result<Arc<dyn BackendAdapter>, BackendError> {
            sink.lock().unwrap().push(spec.clone());
            let url = spec.url.clone().unwrap_or_else(|| "http://default".into());
            Ok(FakeHost::new(spec, &url, Duration::ZERO))
        },
    );
    let pool = registry
        .build_pool(&spec(), HostPoolPolicy::default())
        .unwrap();
    assert_eq!(pool.hosts(), [GPU1, GPU2]);
    assert_eq!(pool.describe_host(), "http://gpu1:11434, http://gpu2:11434");
    assert_eq!(pool.spec().urls, [GPU1, GPU2]);
    assert_eq!(
        *built.lock().unwrap(),
        [spec().for_host(GPU1), spec().for_host(GPU2)]
    );

    let single = BackendSpec::new("one", "default", "fake", "qwen");
    let pool = registry
        .build_pool(&single, HostPoolPolicy::default())
        .unwrap();
    assert_eq!(pool.hosts(), ["http://default"]);

    let unknown = BackendSpec {
        provider: "acme".into(),
        ..spec()
    };
    let err = registry
        .build_pool(&unknown, HostPoolPolicy::default())
        .unwrap_err();
    assert!(matches!(err, BackendsError::UnknownProvider { .. }));

    let empty = HostPool::new(spec(), Vec::new(), HostPoolPolicy::default()).unwrap_err();
    assert_eq!(
        empty.to_string(),
        "cannot set up backend 'gpus' in chain 'default' (provider 'fake'): invalid_request: a \
         host pool needs at least one host; list them in `urls`"
    );
}

#[test]
fn the_pool_policy_follows_the_cascades_tripping_kinds() {
    let policy = CascadePolicy::default().with_kind(
        FailureKind::Overloaded,
        enrich_backends::KindPolicy::new(2, enrich_backends::FailureAction::Next)
            .tripping_circuit(true),
    );
    let pool_policy = HostPoolPolicy::from_cascade(&policy, 3);
    assert_eq!(pool_policy.max_in_flight_per_host, 3);
    assert_eq!(pool_policy.circuit, policy.circuit);
    assert_eq!(
        pool_policy.failover_kinds,
        [
            FailureKind::Connect,
            FailureKind::Timeout,
            FailureKind::Overloaded,
            FailureKind::ServerError
        ]
    );
    assert_eq!(
        HostPoolPolicy::from_cascade(&CascadePolicy::default(), 1),
        HostPoolPolicy::default()
    );
}

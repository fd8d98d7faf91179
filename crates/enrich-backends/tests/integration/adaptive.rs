//! The adaptive in-flight limit around an adapter, on tokio's paused clock: a single host
//! ([`InFlightLimit::adaptive`]) and each host of a [`HostPool`], against an in-process server
//! with slots and a bounded queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enrich_backends::{
    AdaptivePolicy, AttemptObserver, AttemptRecord, BackendAdapter, BackendError, Decision,
    FailureKind, GenerateRequest, Generation, HostPool, HostPoolPolicy, InFlightLimit, LimitChange,
    LimitReason, SpanIdentity, UsageMetrics,
};
use enrich_config::BackendSpec;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::support::{Leave, request, valid_reply};

const SERVICE: Duration = Duration::from_millis(200);

/// A server as Ollama is one: `slots` generations at once, each taking [`SERVICE`], up to
/// `queue` more waiting, a 503 beyond that; optionally a 429 with `Retry-After` first.
struct SlotServer {
    spec: BackendSpec,
    url: String,
    slots: Semaphore,
    capacity: usize,
    admitted: AtomicUsize,
    max_admitted: AtomicUsize,
    rate_limited_first: Mutex<Option<Duration>>,
    sent_at: Mutex<Vec<Instant>>,
}

impl SlotServer {
    fn new(url: &str, slots: usize, queue: usize) -> Arc<Self> {
        Arc::new(Self {
            spec: BackendSpec::new("gpu", "default", "fake", "m").for_host(url),
            url: url.to_owned(),
            slots: Semaphore::new(slots),
            capacity: slots + queue,
            admitted: AtomicUsize::new(0),
            max_admitted: AtomicUsize::new(0),
            rate_limited_first: Mutex::new(None),
            sent_at: Mutex::new(Vec::new()),
        })
    }

    fn max_admitted(&self) -> usize {
        self.max_admitted.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl BackendAdapter for SlotServer {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        self.url.clone()
    }

    async fn generate(&self, _request: &GenerateRequest) -> Result<Generation, BackendError> {
        self.sent_at.lock().unwrap().push(Instant::now());
        if let Some(wait) = self.rate_limited_first.lock().unwrap().take() {
            return Err(BackendError::new(FailureKind::Overloaded, "429").with_retry_after(wait));
        }
        let now = self.admitted.fetch_add(1, Ordering::SeqCst) + 1;
        let _leave = Leave(&self.admitted);
        if now > self.capacity {
            return Err(BackendError::new(
                FailureKind::Overloaded,
                "503 server busy",
            ));
        }
        self.max_admitted.fetch_max(now, Ordering::SeqCst);
        let _slot = self.slots.acquire().await.expect("open");
        tokio::time::sleep(SERVICE).await;
        Ok(Generation {
            text: valid_reply(),
            metrics: UsageMetrics::new("m", self.url.clone()),
        })
    }
}

/// Keeps every limit change.
#[derive(Default)]
struct Changes(Mutex<Vec<LimitChange>>);

impl AttemptObserver for Changes {
    fn on_attempt(&self, _: &SpanIdentity, _: &AttemptRecord, _: Option<Decision>) {}

    fn on_limit(&self, change: &LimitChange) {
        self.0.lock().unwrap().push(change.clone());
    }
}

fn policy(ceiling: Option<usize>) -> AdaptivePolicy {
    AdaptivePolicy::new(ceiling, Duration::from_secs(120))
}

/// `workers` tasks sending requests through `adapter` until `total` are answered; returns the
/// failures.
async fn drive(
    adapter: Arc<dyn BackendAdapter>,
    workers: usize,
    total: usize,
) -> Vec<BackendError> {
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (adapter, done) = (Arc::clone(&adapter), Arc::clone(&done));
        tasks.spawn(async move {
            let mut failures = Vec::new();
            while done.fetch_add(1, Ordering::SeqCst) < total {
                if let Err(error) = adapter.generate(&request()).await {
                    failures.push(error);
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        failures.extend(joined.expect("a worker"));
    }
    failures
}

#[tokio::test(start_paused = true)]
async fn the_limit_finds_a_queueing_servers_slots_and_keeps_its_queue_short() {
    let server = SlotServer::new("http://gpu:11434", 4, 64);
    let limit = Arc::new(InFlightLimit::adaptive(server.clone(), policy(None)));
    let changes = Arc::new(Changes::default());
    limit.set_observer(Some(changes.clone()));
    let started = Instant::now();

    let failures = drive(limit.clone(), 12, 400).await;

    assert!(failures.is_empty(), "{failures:?}");
    let snapshot = limit.snapshot();
    assert!((4..=6).contains(&snapshot.limit), "{snapshot:?}");
    assert!(snapshot.peak_in_flight <= 8, "{snapshot:?}");
    assert!(
        server.max_admitted() <= 8,
        "the server's queue stayed short"
    );
    assert_eq!(snapshot.backoffs, 0);
    // 400 requests at 4 × 5 per second take 20 s; the ramp costs well under a second.
    assert!(
        started.elapsed() <= Duration::from_secs(21),
        "{:?}",
        started.elapsed()
    );
    let changes = changes.0.lock().unwrap();
    assert_eq!(changes[0].from, 1);
    assert_eq!(changes[0].reason, LimitReason::LatencyFlat);
    assert_eq!(changes[0].host, "http://gpu:11434");
    assert_eq!(changes.last().map(|c| c.to), Some(snapshot.limit));
}

#[tokio::test(start_paused = true)]
async fn max_in_flight_is_a_ceiling_the_limit_never_passes() {
    let server = SlotServer::new("http://gpu:11434", 32, 64);
    let limit = Arc::new(InFlightLimit::adaptive(server.clone(), policy(Some(3))));

    let failures = drive(limit.clone(), 16, 300).await;

    assert!(failures.is_empty(), "{failures:?}");
    let snapshot = limit.snapshot();
    assert_eq!(
        (snapshot.limit, snapshot.peak_limit, snapshot.ceiling),
        (3, 3, 3)
    );
    assert_eq!(snapshot.peak_in_flight, 3);
    assert_eq!(server.max_admitted(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_halves_the_limit_and_a_retry_after_holds_new_requests_back() {
    let server = SlotServer::new("http://gpu:11434", 2, 0);
    *server.rate_limited_first.lock().unwrap() = Some(Duration::from_secs(2));
    let limit = Arc::new(InFlightLimit::adaptive(server.clone(), policy(None)));
    let changes = Arc::new(Changes::default());
    limit.set_observer(Some(changes.clone()));
    let started = Instant::now();

    let failures = drive(limit.clone(), 8, 200).await;

    // The 429, and one 503 each time the limit tried a third request on the two slots.
    assert_eq!(failures[0].kind, FailureKind::Overloaded);
    let sent = server.sent_at.lock().unwrap().clone();
    assert_eq!(sent[0], started);
    assert!(
        sent[1] >= started + Duration::from_secs(2),
        "nothing was sent before the Retry-After passed: {:?}",
        sent[1] - started
    );
    let changes = changes.0.lock().unwrap();
    let first = &changes[0];
    assert_eq!(
        (first.reason, first.retry_after_ms),
        (LimitReason::Overloaded, Some(2000))
    );
    let snapshot = limit.snapshot();
    assert!(
        snapshot.backoffs >= 1 && snapshot.peak_in_flight <= 3,
        "{snapshot:?}"
    );
    assert!(server.max_admitted() <= 2);
}

#[tokio::test(start_paused = true)]
async fn each_host_of_a_pool_finds_its_own_limit() {
    let small = SlotServer::new("http://small:11434", 1, 64);
    let large = SlotServer::new("http://large:11434", 6, 64);
    let spec = BackendSpec {
        urls: vec!["http://small:11434".into(), "http://large:11434".into()],
        ..BackendSpec::new("gpu", "default", "fake", "m")
    };
    let pool = Arc::new(
        HostPool::new(
            spec,
            vec![small.clone() as Arc<dyn BackendAdapter>, large.clone()],
            HostPoolPolicy {
                adaptive: Some(policy(None)),
                ..HostPoolPolicy::default()
            },
        )
        .expect("a pool"),
    );
    let changes = Arc::new(Changes::default());
    pool.set_observer(Some(changes.clone()));

    let failures = drive(pool.clone(), 16, 600).await;

    assert!(failures.is_empty(), "{failures:?}");
    let limits = pool.limits();
    assert_eq!(limits[0].host, "http://small:11434");
    assert!(
        limits[0].limit <= 2,
        "one slot, at most one waiting: {limits:?}"
    );
    assert!((6..=8).contains(&limits[1].limit), "{limits:?}");
    // One running and one waiting, one more while a probe tries for room.
    assert!(small.max_admitted() <= 3 && large.max_admitted() <= 12);
    assert!(
        changes
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.host == "http://large:11434" && c.to >= 6)
    );
}

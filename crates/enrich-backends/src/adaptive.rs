//! [`AdaptiveLimit`]: how many requests one host takes at once, found from the answers' latency
//! and status rather than configured. A pure state machine: each finished request is a
//! [`Sample`] (when it was sent, how many were in flight, how long it took, how it ended) fed to
//! [`AdaptiveLimit::record`] with the current time, which returns the [`LimitStep`] it made, if
//! any. The gate (`gate.rs`) applies it to real requests.
//!
//! The algorithm, and where it comes from, is described on [`AdaptiveLimit`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The most requests in flight to one host when the backend sets no `max_in_flight`.
pub const DEFAULT_ADAPTIVE_CEILING: usize = 64;

/// The limit an adaptive host starts at.
pub const INITIAL_ADAPTIVE_LIMIT: usize = 1;

/// The longest `Retry-After` the limiter pauses a host for; a longer one is cut to this.
pub const MAX_RETRY_AFTER_PAUSE: Duration = Duration::from_secs(30);

/// The growth rule: a round whose queue estimate is below this grows the limit.
const GROW_BELOW_QUEUE: f64 = 0.5;
/// The least queue estimate that shrinks the limit (also `limit / 4`, whichever is larger).
const SHRINK_ABOVE_QUEUE: f64 = 1.5;
/// Rounds without a change after which the limit tries one more.
const PROBE_AFTER_ROUNDS: u32 = 32;

/// How an adaptive limit behaves: where it starts, its ceiling, and the timeout it keeps clear
/// of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptivePolicy {
    /// The limit before any answer ([`INITIAL_ADAPTIVE_LIMIT`], at most the ceiling).
    pub initial: usize,
    /// The limit never exceeds this: the backend's `max_in_flight` when set, else
    /// [`DEFAULT_ADAPTIVE_CEILING`].
    pub ceiling: usize,
    /// The backend's per-request timeout.
    pub timeout: Duration,
}

impl AdaptivePolicy {
    /// The policy of a backend with `max_in_flight` (`None`: unset) and `timeout`.
    pub fn new(max_in_flight: Option<usize>, timeout: Duration) -> Self {
        let ceiling = max_in_flight.unwrap_or(DEFAULT_ADAPTIVE_CEILING).max(1);
        Self {
            initial: INITIAL_ADAPTIVE_LIMIT.min(ceiling),
            ceiling,
            timeout,
        }
    }
}

/// How a request to the host ended, as the limiter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleOutcome {
    /// The server answered (whatever the answer's content): a latency sample.
    Answered,
    /// 429, 503 or a full queue (`FailureKind::Overloaded`), with the server's `Retry-After`.
    Overloaded {
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// No answer within the timeout.
    TimedOut,
}

/// One finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// [`AdaptiveLimit::epoch`] when the request was sent.
    pub epoch: u64,
    /// Requests in flight to the host when it was sent, itself included.
    pub in_flight: usize,
    /// From sending to the answer.
    pub latency: Duration,
    /// How it ended.
    pub outcome: SampleOutcome,
}

/// Why a limit changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitReason {
    /// A round used the whole limit and its latency stayed at the baseline.
    LatencyFlat,
    /// The round's latency rose above the baseline: requests were waiting in the server.
    LatencyInflated,
    /// The round's latency came within a quarter of the timeout.
    NearTimeout,
    /// Many rounds without a change: one more request tries whether the server has room (the
    /// latency then tells whether it had).
    Probe,
    /// The server answered 429, 503 or queue full.
    Overloaded,
    /// A request got no answer within the timeout.
    TimedOut,
}

impl LimitReason {
    /// Whether the change is a decrease forced by a failure (counted as a backoff).
    pub fn is_backoff(self) -> bool {
        matches!(self, LimitReason::Overloaded | LimitReason::TimedOut)
    }

    /// A few words for people.
    pub fn describe(self) -> &'static str {
        match self {
            LimitReason::LatencyFlat => "latency flat",
            LimitReason::LatencyInflated => "latency inflated",
            LimitReason::NearTimeout => "latency near the timeout",
            LimitReason::Probe => "probing for room",
            LimitReason::Overloaded => "server overloaded",
            LimitReason::TimedOut => "request timed out",
        }
    }
}

/// A change the limiter made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStep {
    /// The limit before.
    pub from: usize,
    /// The limit after (equal to `from` only for a `Retry-After` pause at the floor).
    pub to: usize,
    /// Why.
    pub reason: LimitReason,
    /// The round's mean latency, or the failed request's.
    pub latency: Duration,
    /// The no-load latency it was compared with, once known.
    pub baseline: Option<Duration>,
    /// The pause a `Retry-After` imposed.
    pub retry_after: Option<Duration>,
}

/// The answers of the current round.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    samples: usize,
    latency_sum: Duration,
    /// The most requests in flight any of them saw when sent.
    max_in_flight: usize,
    /// The fewest (`None` before the first answer).
    min_in_flight: Option<usize>,
}

/// The no-load latency: a moving average of the mean latency of rounds in which no request
/// waited in the server (queue estimate below [`GROW_BELOW_QUEUE`], or one request in flight),
/// so it follows a model that becomes slower or faster for good without ever taking in a
/// round of queueing, which would make queueing look normal.
#[derive(Debug, Clone, Copy, Default)]
struct Baseline(Option<Duration>);

impl Baseline {
    /// The weight of a new round in the average.
    const WEIGHT: f64 = 0.25;

    fn add(&mut self, rtt: Duration) {
        self.0 = Some(match self.0 {
            None => rtt,
            Some(old) => old.mul_f64(1.0 - Self::WEIGHT) + rtt.mul_f64(Self::WEIGHT),
        });
    }
}

/// The adaptive in-flight limit of one host.
///
/// # Algorithm
///
/// A delay-based limiter in the manner of TCP Vegas (Brakmo and Peterson, *TCP Vegas: End to
/// End Congestion Avoidance on a Global Internet*, IEEE JSAC 1995) and of Netflix's
/// concurrency-limits (`VegasLimit`, `Gradient2Limit` and `AIMDLimit` in
/// `concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/`), adapted to
/// LLM servers, whose requests take seconds and whose timeout is the danger:
///
/// - **Rounds.** The limit is judged once per round, a round being `limit` answers to requests
///   sent at the current limit (TCP adjusts its window once per round trip, not per packet);
///   answers to requests sent before the last change are not judged.
/// - **Queue estimate** (Vegas): with `rtt` the round's mean latency and `baseline` the no-load
///   latency (a moving average of the means of rounds in which nothing waited, where Vegas
///   takes the least round trip: an LLM's latency varies with the answer's length, so a
///   minimum would make every longer answer look queued), `queue = limit × (1 − baseline /
///   rtt)` is the number of requests waiting inside the server. On a server with `S` slots at
///   limit `L ≥ S` it is `L − S`.
/// - **Grow** while `queue < 0.5` (no request waits), the round used the whole limit (an
///   application-limited round says nothing about the server, as in both of Netflix's
///   limiters) and one more request could wait behind a full round and still finish within
///   half the timeout (`rtt × (L + 1) / L ≤ timeout / 2`): by half the limit while no
///   decrease has happened yet (TCP's slow start, gentler than doubling so the server's queue
///   stays under `1.5 × slots`), then by one per round (additive increase).
/// - **Shrink on latency** (Gradient2's `limit × baseline / rtt`) when `queue > max(1.5,
///   limit / 4)`: to `limit × baseline / rtt + 1`, what the server serves at once plus one
///   waiting, in one step, so a server that lost capacity is followed within a round or two;
///   and when `rtt > ¾ timeout`, to the limit that keeps the latency at half the timeout.
/// - **Probe** after 32 rounds without a change: one more request; if the latency rises by less
///   than a quarter of what a saturated server would show, the latency was not queueing and becomes the
///   new no-load latency (a model that became slower for good, longer spans), else the next
///   round takes the limit back down. Probing is how TCP and BBR find capacity that latency
///   alone cannot tell from queueing.
/// - **Back off** (multiplicative decrease, AIMD) on a 429, a 503 or a queue-full answer and on
///   a timeout: half the limit, at most once per round (only a request sent after the last
///   decrease can cause another), and a `Retry-After` pauses new requests to the host until
///   it has passed ([`AdaptiveLimit::admits`]).
///
/// Why not Vegas or Gradient2 as they are: both adjust on every sample, which on a server whose
/// answers take seconds moves the limit many times on stale information; Vegas's thresholds
/// (`3·log10 L`, `6·log10 L`) let several requests wait in the server, and each waiting request
/// costs a whole generation of latency, where a web service's costs milliseconds. Neither knows
/// the request's timeout, which for enrich is the one latency that must never be reached.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    policy: AdaptivePolicy,
    limit: usize,
    /// Changes so far; a request carries the epoch it was sent in.
    epoch: u64,
    /// The epoch the last decrease began: failures of requests sent before it are not counted
    /// again.
    decreased_at: u64,
    /// Growing by half the limit per round, until the first decrease.
    slow_start: bool,
    round: Round,
    baseline: Baseline,
    /// The limit and mean latency of the last round judged.
    previous: Option<(usize, Duration)>,
    /// Rounds judged since the last change.
    holds: u32,
    paused_until: Option<Instant>,
}

impl AdaptiveLimit {
    /// A limit at `policy.initial`.
    pub fn new(policy: AdaptivePolicy) -> Self {
        let ceiling = policy.ceiling.max(1);
        Self {
            policy: AdaptivePolicy { ceiling, ..policy },
            limit: policy.initial.clamp(1, ceiling),
            epoch: 0,
            decreased_at: 0,
            slow_start: true,
            round: Round::default(),
            baseline: Baseline::default(),
            previous: None,
            holds: 0,
            paused_until: None,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The policy.
    pub fn policy(&self) -> AdaptivePolicy {
        self.policy
    }

    /// Incremented at every change; a [`Sample`] names the epoch its request was sent in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The no-load latency as known now.
    pub fn baseline(&self) -> Option<Duration> {
        self.baseline.0
    }

    /// Whether a request may be sent at `now` (a `Retry-After` pause is over); `Err` with the
    /// moment it may.
    pub fn admits(&self, now: Instant) -> Result<(), Instant> {
        match self.paused_until {
            Some(until) if until > now => Err(until),
            _ => Ok(()),
        }
    }

    /// Learns from one finished request at `now`; returns the change made, if any.
    pub fn record(&mut self, sample: Sample, now: Instant) -> Option<LimitStep> {
        match sample.outcome {
            SampleOutcome::Answered => self.answered(sample),
            SampleOutcome::Overloaded { retry_after } => {
                let pause = retry_after.map(|wait| wait.min(MAX_RETRY_AFTER_PAUSE));
                if let Some(pause) = pause {
                    let until = now + pause;
                    self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
                }
                self.back_off(sample, LimitReason::Overloaded, pause)
            }
            SampleOutcome::TimedOut => self.back_off(sample, LimitReason::TimedOut, None),
        }
    }

    fn answered(&mut self, sample: Sample) -> Option<LimitStep> {
        if sample.epoch != self.epoch {
            return None;
        }
        self.round.samples += 1;
        self.round.latency_sum += sample.latency;
        self.round.max_in_flight = self.round.max_in_flight.max(sample.in_flight);
        self.round.min_in_flight = Some(
            self.round
                .min_in_flight
                .map_or(sample.in_flight, |min| min.min(sample.in_flight)),
        );
        if self.round.samples < self.limit {
            return None;
        }
        let round = std::mem::take(&mut self.round);
        let rtt = round.latency_sum / u32::try_from(round.samples).unwrap_or(u32::MAX);
        self.judge(round, rtt)
    }

    /// The decision at the end of a round whose mean latency was `rtt`.
    fn judge(&mut self, round: Round, rtt: Duration) -> Option<LimitStep> {
        let limit = self.limit;
        // One request more in flight than the round before, every request of the round sent
        // with the whole limit in flight, and the latency rose by less than a quarter of what a
        // saturated server would show (`limit / previous limit`): what latency there is, is not
        // queueing. The model may have become slower for good (longer spans), which a baseline
        // taken only from rounds without queueing would never learn. (Only a step of one
        // tells: a bigger one may cross the server's slots half way.)
        if let Some((before, before_rtt)) = self.previous
            && limit == before + 1
            && round.min_in_flight.is_some_and(|min| min >= limit)
            && !before_rtt.is_zero()
        {
            let saturated = limit as f64 / before as f64;
            if rtt.as_secs_f64() / before_rtt.as_secs_f64() < 1.0 + 0.25 * (saturated - 1.0) {
                self.baseline.0 = Some(rtt);
            }
        }
        self.previous = Some((limit, rtt));
        let baseline = self.baseline.0.unwrap_or(rtt);
        let half_timeout = self.policy.timeout / 2;
        let secs = rtt.as_secs_f64();
        // ratio = baseline / rtt, 1 when nothing can be told (an instant answer).
        let ratio = if secs > 0.0 {
            (baseline.as_secs_f64() / secs).min(1.0)
        } else {
            1.0
        };
        let queue = limit as f64 * (1.0 - ratio);
        if queue < GROW_BELOW_QUEUE || round.max_in_flight <= 1 {
            self.baseline.add(rtt);
        }
        let step = |to: usize, reason| LimitStep {
            from: limit,
            to,
            reason,
            latency: rtt,
            baseline: Some(baseline),
            retry_after: None,
        };
        if rtt > self.policy.timeout.mul_f64(0.75) && limit > 1 {
            let keep = (limit as f64 * half_timeout.as_secs_f64() / secs).floor() as usize;
            let to = keep.clamp(1, limit - 1);
            return Some(self.decrease(step(to, LimitReason::NearTimeout)));
        }
        if queue > SHRINK_ABOVE_QUEUE.max(limit as f64 / 4.0) {
            // The small epsilon keeps 6 × (200 / 300) at 4, not 3.999….
            let serving = (limit as f64 * ratio + 1e-9).floor() as usize;
            let to = (serving + 1).clamp(1, limit - 1);
            return Some(self.decrease(step(to, LimitReason::LatencyInflated)));
        }
        let used = round.max_in_flight >= limit;
        let room = rtt.mul_f64((limit + 1) as f64 / limit as f64) <= half_timeout;
        if used && room && limit < self.policy.ceiling {
            if queue < GROW_BELOW_QUEUE {
                let by = if self.slow_start {
                    (limit / 2).max(1)
                } else {
                    1
                };
                let to = (limit + by).min(self.policy.ceiling);
                return Some(self.change(step(to, LimitReason::LatencyFlat)));
            }
            if self.holds + 1 >= PROBE_AFTER_ROUNDS {
                return Some(self.change(step(limit + 1, LimitReason::Probe)));
            }
        }
        self.holds += 1;
        None
    }

    /// Halves the limit after an overload or a timeout, once per round of requests.
    fn back_off(
        &mut self,
        sample: Sample,
        reason: LimitReason,
        retry_after: Option<Duration>,
    ) -> Option<LimitStep> {
        if sample.epoch < self.decreased_at {
            // Sent at a limit already lowered: this failure is no news.
            return None;
        }
        let limit = self.limit;
        let step = LimitStep {
            from: limit,
            to: (limit / 2).max(1),
            reason,
            latency: sample.latency,
            baseline: self.baseline.0,
            retry_after,
        };
        if limit == 1 && retry_after.is_none() {
            self.slow_start = false;
            return None;
        }
        Some(self.decrease(step))
    }

    fn decrease(&mut self, step: LimitStep) -> LimitStep {
        self.slow_start = false;
        let step = self.change(step);
        self.decreased_at = self.epoch;
        step
    }

    fn change(&mut self, step: LimitStep) -> LimitStep {
        self.limit = step.to;
        self.epoch += 1;
        self.round = Round::default();
        self.holds = 0;
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy(ceiling: Option<usize>, timeout_secs: u64) -> AdaptivePolicy {
        AdaptivePolicy::new(ceiling, Duration::from_secs(timeout_secs))
    }

    /// One round against a server with `slots` slots and a fixed service time, driven at the
    /// limit: in the steady state every request waits its turn, `service × limit / slots`
    /// (Little's law), or just `service` while the limit is below the slots.
    fn saturated_round(
        limiter: &mut AdaptiveLimit,
        slots: usize,
        service: Duration,
    ) -> Vec<LimitStep> {
        let limit = limiter.limit();
        let epoch = limiter.epoch();
        let latency = service.mul_f64((limit as f64 / slots as f64).max(1.0));
        let sample = Sample {
            epoch,
            in_flight: limit,
            latency,
            outcome: SampleOutcome::Answered,
        };
        (0..limit)
            .filter_map(|_| limiter.record(sample, Instant::now()))
            .collect()
    }

    fn limits_over(
        rounds: usize,
        limiter: &mut AdaptiveLimit,
        slots: usize,
        service: Duration,
    ) -> Vec<usize> {
        (0..rounds)
            .map(|_| {
                saturated_round(limiter, slots, service);
                limiter.limit()
            })
            .collect()
    }

    #[test]
    fn starts_small_and_grows_to_the_slots_plus_one_waiting() {
        let mut limiter = AdaptiveLimit::new(policy(None, 120));
        assert_eq!(limiter.limit(), 1);
        let limits = limits_over(8, &mut limiter, 4, 200 * MS);
        // 1 → 2 → 3 → 4 → 6 (two waiting: cut to 5) → 5 holds.
        assert_eq!(limits, [2, 3, 4, 6, 5, 5, 5, 5]);
    }

    #[test]
    fn sixteen_slots_are_found_in_a_few_rounds_and_the_queue_stays_short() {
        let mut limiter = AdaptiveLimit::new(policy(None, 120));
        let limits = limits_over(12, &mut limiter, 16, 200 * MS);
        let peak = *limits.iter().max().unwrap();
        assert!(peak <= 24, "{limits:?}");
        assert!(
            limits[6..].iter().all(|&l| (16..=20).contains(&l)),
            "{limits:?}"
        );
    }

    #[test]
    fn follows_a_server_that_loses_capacity_in_one_round() {
        let mut limiter = AdaptiveLimit::new(policy(None, 120));
        limits_over(10, &mut limiter, 8, 200 * MS);
        let before = limiter.limit();
        assert!((8..=10).contains(&before), "{before}");
        let steps = saturated_round(&mut limiter, 2, 200 * MS);
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0].reason, LimitReason::LatencyInflated);
        assert!(limiter.limit() <= 3, "{}", limiter.limit());
        // And settles at the two slots plus one waiting.
        let after = limits_over(6, &mut limiter, 2, 200 * MS);
        assert!(after.iter().all(|&l| l == 3), "{after:?}");
    }

    #[test]
    fn a_probe_on_a_saturated_server_is_taken_back_at_once() {
        let mut limiter = AdaptiveLimit::new(policy(None, 120));
        let limits = limits_over(100, &mut limiter, 4, 200 * MS);
        // Settled at 5 after five rounds; every 32 rounds one probe at 6, undone the next round.
        assert_eq!(&limits[..5], [2, 3, 4, 6, 5]);
        assert!(limits[5..].iter().all(|&l| l == 5 || l == 6), "{limits:?}");
        let probes = limits.iter().filter(|&&l| l == 6).count();
        assert_eq!(probes, 1 + 2, "{limits:?}");
    }

    #[test]
    fn a_model_that_becomes_slower_for_good_is_not_taken_for_queueing() {
        let mut limiter = AdaptiveLimit::new(policy(None, 120));
        limits_over(10, &mut limiter, 4, 200 * MS);
        assert_eq!(limiter.limit(), 5);
        // Every answer now takes twice as long (longer spans): the limit first reads it as
        // queueing and drops, then a probe finds the latency does not rise with one more.
        let limits = limits_over(40, &mut limiter, 4, 400 * MS);
        assert_eq!(limits[0], 3, "{limits:?}");
        assert_eq!(limiter.limit(), 5, "{limits:?}");
        assert_eq!(limiter.baseline(), Some(400 * MS));
    }

    #[test]
    fn never_grows_when_one_more_waiting_request_would_come_near_the_timeout() {
        // One slot, 2 s per generation, a 5 s timeout: a second request would take 4 s.
        let mut limiter = AdaptiveLimit::new(policy(None, 5));
        let limits = limits_over(30, &mut limiter, 1, 2000 * MS);
        assert!(limits.iter().all(|&l| l == 1), "{limits:?}");
    }

    #[test]
    fn latency_near_the_timeout_shrinks_the_limit() {
        let mut limiter = AdaptiveLimit::new(AdaptivePolicy {
            initial: 4,
            ..policy(None, 10)
        });
        // Four requests of 8 s each, all served at once: no queue, but 8 s > ¾ of 10 s.
        let steps: Vec<LimitStep> = (0..4)
            .filter_map(|_| {
                limiter.record(
                    Sample {
                        epoch: 0,
                        in_flight: 4,
                        latency: 8000 * MS,
                        outcome: SampleOutcome::Answered,
                    },
                    Instant::now(),
                )
            })
            .collect();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].reason, LimitReason::NearTimeout);
        assert_eq!((steps[0].from, steps[0].to), (4, 2));
    }

    #[test]
    fn an_application_limited_round_does_not_grow_the_limit() {
        let mut limiter = AdaptiveLimit::new(AdaptivePolicy {
            initial: 8,
            ..policy(None, 120)
        });
        for _ in 0..40 {
            let sample = Sample {
                epoch: limiter.epoch(),
                in_flight: 2,
                latency: 200 * MS,
                outcome: SampleOutcome::Answered,
            };
            assert_eq!(limiter.record(sample, Instant::now()), None);
        }
        assert_eq!(limiter.limit(), 8);
    }

    #[test]
    fn the_ceiling_is_never_passed() {
        let mut limiter = AdaptiveLimit::new(policy(Some(3), 120));
        let limits = limits_over(20, &mut limiter, 64, 200 * MS);
        assert_eq!(*limits.iter().max().unwrap(), 3, "{limits:?}");
        assert_eq!(limiter.limit(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn overload_halves_the_limit_once_per_round_and_retry_after_pauses_the_host() {
        let mut limiter = AdaptiveLimit::new(AdaptivePolicy {
            initial: 8,
            ..policy(None, 120)
        });
        let epoch = limiter.epoch();
        let busy = |retry_after| Sample {
            epoch,
            in_flight: 8,
            latency: 5 * MS,
            outcome: SampleOutcome::Overloaded { retry_after },
        };
        let now = Instant::now();
        let step = limiter
            .record(busy(Some(Duration::from_secs(2))), now)
            .unwrap();
        assert_eq!(
            (step.from, step.to, step.reason),
            (8, 4, LimitReason::Overloaded)
        );
        assert_eq!(step.retry_after, Some(Duration::from_secs(2)));
        // Seven more 503s to requests sent at the old limit: no further decrease.
        for _ in 0..7 {
            assert_eq!(limiter.record(busy(None), now), None);
        }
        assert_eq!(limiter.limit(), 4);
        assert_eq!(limiter.admits(now), Err(now + Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(limiter.admits(Instant::now()), Ok(()));
        // A request sent at the new limit that fails again halves it again.
        let again = Sample {
            epoch: limiter.epoch(),
            ..busy(None)
        };
        assert_eq!(limiter.record(again, Instant::now()).map(|s| s.to), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_cap_pauses_for_the_cap() {
        let mut limiter = AdaptiveLimit::new(policy(None, 120));
        let now = Instant::now();
        let sample = Sample {
            epoch: 0,
            in_flight: 1,
            latency: MS,
            outcome: SampleOutcome::Overloaded {
                retry_after: Some(Duration::from_secs(3600)),
            },
        };
        let step = limiter.record(sample, now).unwrap();
        assert_eq!((step.from, step.to), (1, 1));
        assert_eq!(limiter.admits(now), Err(now + MAX_RETRY_AFTER_PAUSE));
    }

    #[test]
    fn a_timeout_halves_the_limit_and_ends_slow_start() {
        let mut limiter = AdaptiveLimit::new(policy(None, 120));
        limits_over(4, &mut limiter, 16, 200 * MS);
        let before = limiter.limit();
        let step = limiter
            .record(
                Sample {
                    epoch: limiter.epoch(),
                    in_flight: before,
                    latency: Duration::from_secs(120),
                    outcome: SampleOutcome::TimedOut,
                },
                Instant::now(),
            )
            .unwrap();
        assert_eq!((step.to, step.reason), (before / 2, LimitReason::TimedOut));
        // Additive increase from here: one per round.
        let limits = limits_over(3, &mut limiter, 16, 200 * MS);
        assert_eq!(limits, [before / 2 + 1, before / 2 + 2, before / 2 + 3]);
    }

    #[test]
    fn answers_to_requests_sent_before_a_change_do_not_count_toward_the_round() {
        let mut limiter = AdaptiveLimit::new(AdaptivePolicy {
            initial: 2,
            ..policy(None, 120)
        });
        let old = Sample {
            epoch: 7,
            in_flight: 2,
            latency: 200 * MS,
            outcome: SampleOutcome::Answered,
        };
        for _ in 0..10 {
            assert_eq!(limiter.record(old, Instant::now()), None);
        }
        assert_eq!(limiter.baseline(), None);
        assert_eq!(limiter.limit(), 2);
    }
}

//! The work queue: pending spans in the order a run takes them, read page by page.
//!
//! Without code-first, one lane in `spans.id` order. With code-first, two lanes read in work
//! order (weight, then span id) from the database's `enrich_span_order`: the first holds the
//! high and medium weights (1–6), the second the low ones (7–10). The queue takes
//! `starvation_ratio_high` spans from the first lane, then `starvation_ratio_low` from the
//! second, and so on; when one lane runs dry the other goes on alone.
//!
//! A run reads its pages by claiming them ([`Lease`]): only spans no other run holds, leased to
//! this run in the same transaction, so runs in several processes never take the same span. A
//! plan reads without claiming.
//!
//! **Pages and batches are not the same.** A batch is `batch_size` spans handed out one after
//! the other from one lane (the run numbers it, and its number goes with each of its spans, for
//! the batch events). A page
//! is what one claim reads, and its size follows how fast the run takes spans
//! ([`next_page_size`]): it starts at `batch_size` and grows while pages are used up in less
//! than [`PAGE_TARGET`], up to [`MAX_PAGE`]. A run against a slow model claims a batch at a
//! time, so concurrent runs share the work finely; a fast run claims up to 2048 spans per
//! write transaction instead of one transaction per five spans, which would make the claims
//! contend with the run's own writer for the database's write lock.
//!
//! A run claims a lane's next page ahead, once half of its page is handed out, when the write
//! gate is free at that moment (the writer is gathering outcomes, not committing): a claim
//! that had to wait for a commit of 1024 outcomes left the backends without spans meanwhile.
//! Only a page used up entirely waits for the gate.
//!
//! A run that slows down after a fast phase (spans skipped for their cooldown, then a model's
//! pace) gives back the tail of a page it would hold for minutes: its leases are released and
//! the cursor moves back before it, so runs beside it can take those spans (`rebalance`).
//!
//! **Renewals.** With a refresh ([`WorkQueue::with_refresh`]), the queue has a second group of
//! lanes of the same shape that reads the stored enrichments the refresh selects
//! ([`Db::refresh_spans`], [`Db::refresh_by_weight`]), claimed under the same lease. The
//! pending group is read to its end before the refresh group is touched, or after it with
//! `refresh_first`. Each refresh lane's cursor only moves forward, and a claim leaves out the
//! spans the run already attempted, so a span is renewed at most once per run.

use std::collections::VecDeque;
use std::ops::{Range, RangeInclusive};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use enrich_config::{FIRST_QUEUE_WEIGHTS, LOW_QUEUE_WEIGHTS, WorkOrder};
use enrich_db::{Db, DbError, FrontierLane, Lease, PendingSpan, RefreshFilter, WorkOrderKey};

use crate::error::PipelineError;
use crate::writer::WriteGate;

/// Brings the database's work order up to date with the index and the path weights, when the
/// run goes in code-first order.
pub(crate) fn refresh_work_order(order: &WorkOrder, db: &mut Db) -> Result<(), PipelineError> {
    if !order.code_first {
        return Ok(());
    }
    let weights = &order.path_weights;
    let report = db
        .refresh_work_order(&weights.fingerprint(), |path| weights.weigh(path).weight)
        .map_err(PipelineError::db("refresh the work order"))?;
    tracing::debug!(
        rules_changed = report.rules_changed,
        files_weighed = report.files_weighed,
        files_changed = report.files_changed,
        spans_placed = report.spans_placed,
        spans_removed = report.spans_removed,
        "work order refreshed"
    );
    Ok(())
}

/// Where a lane reads from.
#[derive(Debug, Clone)]
enum Source {
    /// `spans.id` order, after this id.
    SpanId(i64),
    /// Work order within these weights, after this key.
    Weights(RangeInclusive<u8>, WorkOrderKey),
}

impl Source {
    /// The lane of pending spans this source reads, for its frontier.
    fn lane(&self) -> FrontierLane {
        match self {
            Source::SpanId(_) => FrontierLane::SpanId,
            Source::Weights(weights, _) => FrontierLane::Weights(weights.clone()),
        }
    }

    /// Starts the cursor at `frontier` (no span at or before it is pending).
    fn start_at(&mut self, frontier: WorkOrderKey) {
        match self {
            Source::SpanId(after) => *after = (*after).max(frontier.span_id),
            Source::Weights(_, after) => *after = (*after).max(frontier),
        }
    }

    /// Moves the cursor past the span `span_id` of weight `weight` (`None` in span id order).
    fn advance(&mut self, weight: Option<u8>, span_id: i64) {
        match self {
            Source::SpanId(after) => *after = span_id,
            Source::Weights(_, after) => {
                *after = WorkOrderKey {
                    weight: weight.unwrap_or(after.weight),
                    span_id,
                }
            }
        }
    }
}

/// A page is meant to last about this long: pages used up faster grow.
pub(crate) const PAGE_TARGET: Duration = Duration::from_millis(500);

/// A page this old that still holds far more than the run's pace needs gives back the rest
/// (see `WorkQueue::rebalance`).
pub(crate) const GIVE_BACK_AFTER: Duration = Duration::from_secs(2);

/// The most spans one page claims (unless `batch_size` is larger).
pub(crate) const MAX_PAGE: usize = 2048;

/// The size of a lane's next page, after a page of `size` spans was used up in `used_up_in`:
/// the spans the run takes in [`PAGE_TARGET`] at that pace, at most twice `size`, within
/// `min..=max(min, MAX_PAGE)`.
pub(crate) fn next_page_size(size: usize, used_up_in: Duration, min: usize) -> usize {
    let max = MAX_PAGE.max(min);
    let elapsed = used_up_in.as_secs_f64().max(1e-6);
    let at_pace = size as f64 * PAGE_TARGET.as_secs_f64() / elapsed;
    // Float to integer casts saturate; the clamp keeps the result in range.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let at_pace = at_pace as usize;
    at_pace.min(size.saturating_mul(2)).clamp(min, max)
}

/// One lane: its cursor, the spans of its last page not handed out yet, and its open batch.
#[derive(Debug)]
struct Lane {
    source: Source,
    /// What the lane reads: pending spans (`None`), or the stored enrichments this refresh
    /// selects.
    refresh: Option<Arc<RefreshFilter>>,
    /// Spans taken from this lane in a row before the other lane's turn.
    quota: u32,
    page: VecDeque<(Option<u8>, PendingSpan)>,
    /// Spans the next page asks for.
    page_size: usize,
    /// When the current page was read.
    read_at: Option<Instant>,
    /// Spans handed out since then.
    handed: usize,
    /// How many spans of the lane's current batch are still to hand out.
    batch_left: usize,
    exhausted: bool,
}

impl Lane {
    fn new(source: Source, quota: u32, page_size: usize) -> Self {
        Self {
            source,
            refresh: None,
            quota: quota.max(1),
            page: VecDeque::new(),
            page_size,
            read_at: None,
            handed: 0,
            batch_left: 0,
            exhausted: false,
        }
    }

    /// Reads the page after the cursor (claims it, with a lease) and appends it to what is left
    /// of the current one, moving the cursor past it; sized by how fast the last page went
    /// ([`next_page_size`], at least `min`), at most `cap`. An empty read exhausts the lane.
    fn read_next(
        &mut self,
        db: &mut Db,
        lease: Option<&Lease>,
        min: usize,
        cap: usize,
    ) -> Result<(), DbError> {
        let now = Instant::now();
        if let Some(read_at) = self.read_at {
            self.page_size = next_page_size(self.page_size, now - read_at, min);
        }
        let page = self.read(db, lease, self.page_size.min(cap))?;
        let Some((last_weight, last)) = page.last() else {
            self.exhausted = true;
            return Ok(());
        };
        self.source.advance(*last_weight, last.id);
        self.read_at = Some(now);
        self.handed = 0;
        self.page.extend(page);
        Ok(())
    }

    /// How many spans of its page the lane should keep when the page is [`GIVE_BACK_AFTER`] old
    /// at `now` and holds more than twice what the run takes in [`PAGE_TARGET`] at its pace since
    /// it was read (at least `min`); `None` while the page is as it should be.
    fn keep_at_pace(&self, now: Instant, min: usize) -> Option<usize> {
        let age = now - self.read_at?;
        if age < GIVE_BACK_AFTER {
            return None;
        }
        let keep = next_page_size(self.handed.max(1), age, min);
        (self.page.len() > keep.saturating_mul(2)).then_some(keep)
    }

    /// Keeps the first `keep` spans of the page and gives the rest back: their leases are
    /// released and the cursor moves back before them.
    fn give_back(
        &mut self,
        db: &mut Db,
        lease: &Lease,
        keep: usize,
        now: Instant,
    ) -> Result<(), DbError> {
        let tail: Vec<String> = self
            .page
            .drain(keep..)
            .map(|(_, span)| span.span_hash)
            .collect();
        db.release_span_leases(lease.run_id, &tail)?;
        if let Some((weight, last)) = self.page.back() {
            self.source.advance(*weight, last.id);
        }
        self.exhausted = false;
        self.page_size = keep;
        self.read_at = Some(now);
        self.handed = 0;
        Ok(())
    }

    /// Reads up to `limit` spans after the cursor, without moving it, each with its weight in
    /// work order; with a lease, claims them (spans other runs hold are passed over).
    fn read(
        &self,
        db: &mut Db,
        lease: Option<&Lease>,
        limit: usize,
    ) -> Result<Vec<(Option<u8>, PendingSpan)>, DbError> {
        if let Some(filter) = &self.refresh {
            return Ok(match &self.source {
                Source::SpanId(after) => db
                    .refresh_spans(filter, lease, *after, limit)?
                    .into_iter()
                    .map(|span| (None, span))
                    .collect(),
                Source::Weights(weights, after) => db
                    .refresh_by_weight(filter, lease, weights.clone(), *after, limit)?
                    .into_iter()
                    .map(|weighted| (Some(weighted.weight), weighted.span))
                    .collect(),
            });
        }
        Ok(match (&self.source, lease) {
            (Source::SpanId(after), None) => db
                .pending_spans(*after, limit)?
                .into_iter()
                .map(|span| (None, span))
                .collect(),
            (Source::SpanId(after), Some(lease)) => db
                .claim_pending_spans(lease, *after, limit)?
                .into_iter()
                .map(|span| (None, span))
                .collect(),
            (Source::Weights(weights, after), None) => db
                .pending_by_weight(weights.clone(), *after, limit)?
                .into_iter()
                .map(|weighted| (Some(weighted.weight), weighted.span))
                .collect(),
            (Source::Weights(weights, after), Some(lease)) => db
                .claim_pending_by_weight(lease, weights.clone(), *after, limit)?
                .into_iter()
                .map(|weighted| (Some(weighted.weight), weighted.span))
                .collect(),
        })
    }
}

/// A span the queue handed out, with where it stands in its lane's batch (the run numbers the
/// batches).
#[derive(Debug)]
pub(crate) struct Taken {
    /// The span.
    pub(crate) span: PendingSpan,
    /// The lane it came from.
    pub(crate) lane: usize,
    /// True when its batch starts with it.
    pub(crate) opened: bool,
    /// True when its batch has no span left to hand out after it.
    pub(crate) used_up: bool,
}

/// What [`WorkQueue::drop_pages`] dropped.
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    /// The lanes whose batch was left open, to close.
    pub(crate) lanes: Vec<usize>,
    /// Spans read and never handed out.
    pub(crate) spans: usize,
}

/// Pending spans in the order a run takes them; see the module documentation.
#[derive(Debug)]
pub(crate) struct WorkQueue {
    lanes: Vec<Lane>,
    /// The groups of lanes, by index into `lanes`, in the order they are read: a group is
    /// read only once the groups before it have nothing left.
    groups: Vec<Group>,
    batch_size: usize,
    /// No page reads more spans than this (the run's limit).
    page_cap: usize,
}

/// A group of lanes that take turns: the pending lanes, or the refresh lanes.
#[derive(Debug)]
struct Group {
    lanes: Range<usize>,
    /// The lane whose turn it is.
    turn: usize,
    taken_in_turn: u32,
}

impl Group {
    fn new(lanes: Range<usize>) -> Self {
        Self {
            turn: lanes.start,
            lanes,
            taken_in_turn: 0,
        }
    }

    fn next_turn(&mut self) {
        self.turn = if self.turn + 1 >= self.lanes.end {
            self.lanes.start
        } else {
            self.turn + 1
        };
        self.taken_in_turn = 0;
    }
}

/// The lanes for `order`, reading from the start.
fn lanes_for(order: &WorkOrder, batch_size: usize) -> Vec<Lane> {
    if order.code_first {
        vec![
            Lane::new(
                Source::Weights(FIRST_QUEUE_WEIGHTS, WorkOrderKey::START),
                order.starvation_ratio_high,
                batch_size,
            ),
            Lane::new(
                Source::Weights(LOW_QUEUE_WEIGHTS, WorkOrderKey::START),
                order.starvation_ratio_low,
                batch_size,
            ),
        ]
    } else {
        vec![Lane::new(Source::SpanId(0), 1, batch_size)]
    }
}

impl WorkQueue {
    /// The queue for `order`, handing spans out in batches of `batch_size`; with a `limit`, no
    /// page reads more spans than that (the caller stops taking at its limit).
    pub(crate) fn new(order: &WorkOrder, batch_size: usize, limit: Option<u64>) -> Self {
        let batch_size = batch_size.max(1);
        let lanes = lanes_for(order, batch_size);
        Self {
            groups: vec![Group::new(0..lanes.len())],
            lanes,
            batch_size,
            page_cap: limit.map_or(usize::MAX, |limit| {
                usize::try_from(limit).unwrap_or(usize::MAX).max(1)
            }),
        }
    }

    /// Adds the lanes that renew the stored enrichments `filter` selects, in the same work
    /// order: read after the pending lanes, or before them when `first`.
    pub(crate) fn with_refresh(
        mut self,
        order: &WorkOrder,
        filter: RefreshFilter,
        first: bool,
    ) -> Self {
        let filter = Arc::new(filter);
        let start = self.lanes.len();
        self.lanes.extend(
            lanes_for(order, self.batch_size)
                .into_iter()
                .map(|lane| Lane {
                    refresh: Some(Arc::clone(&filter)),
                    ..lane
                }),
        );
        let group = Group::new(start..self.lanes.len());
        if first {
            self.groups.insert(0, group);
        } else {
            self.groups.push(group);
        }
        self
    }

    /// Starts each lane after its frontier, when the database has a valid one: the enriched
    /// spans in front of it are not walked again (see [`Db::frontier`]).
    pub(crate) fn start_at_frontiers(&mut self, db: &Db) -> Result<(), DbError> {
        for lane in self.lanes.iter_mut().filter(|lane| lane.refresh.is_none()) {
            if let Some(frontier) = db.frontier(&lane.source.lane())? {
                lane.source.start_at(frontier);
            }
        }
        Ok(())
    }

    /// The lanes this queue reads, and the span-id lane in any case, to record their frontiers
    /// after a run (see [`Db::advance_frontier`]).
    pub(crate) fn frontier_lanes(&self) -> Vec<FrontierLane> {
        let mut lanes: Vec<FrontierLane> = self
            .lanes
            .iter()
            .filter(|lane| lane.refresh.is_none())
            .map(|lane| lane.source.lane())
            .collect();
        if !lanes.contains(&FrontierLane::SpanId) {
            lanes.push(FrontierLane::SpanId);
        }
        lanes
    }

    /// The next span, reading (with a lease: claiming, inside `gate`) a page when its lane's
    /// page is used up; `None` when every lane is exhausted. The first group with a span left
    /// gives it.
    pub(crate) fn next(
        &mut self,
        db: &mut Db,
        lease: Option<(&Lease, &WriteGate)>,
    ) -> Result<Option<Taken>, DbError> {
        for group in 0..self.groups.len() {
            if let Some(taken) = self.next_in(group, db, lease)? {
                return Ok(Some(taken));
            }
        }
        Ok(None)
    }

    /// The next span of the lanes of `group`, taking turns.
    fn next_in(
        &mut self,
        group: usize,
        db: &mut Db,
        lease: Option<(&Lease, &WriteGate)>,
    ) -> Result<Option<Taken>, DbError> {
        for _ in 0..=self.groups[group].lanes.len() {
            let index = self.groups[group].turn;
            self.fill(index, db, lease)?;
            let lane = &mut self.lanes[index];
            if let Some((_, span)) = lane.page.pop_front() {
                lane.handed += 1;
                self.rebalance(index, db, lease)?;
                let lane = &mut self.lanes[index];
                let opened = lane.batch_left == 0;
                if opened {
                    lane.batch_left = self.batch_size.min(lane.page.len() + 1);
                }
                lane.batch_left -= 1;
                let used_up = lane.batch_left == 0;
                let group = &mut self.groups[group];
                group.taken_in_turn += 1;
                if group.taken_in_turn >= lane.quota {
                    group.next_turn();
                }
                return Ok(Some(Taken {
                    span,
                    lane: index,
                    opened,
                    used_up,
                }));
            }
            self.groups[group].next_turn();
        }
        Ok(None)
    }

    /// Reads the lane's next page when its page is empty.
    fn fill(
        &mut self,
        index: usize,
        db: &mut Db,
        lease: Option<(&Lease, &WriteGate)>,
    ) -> Result<(), DbError> {
        let (min, cap) = (self.batch_size, self.page_cap);
        let lane = &mut self.lanes[index];
        if !lane.page.is_empty() || lane.exhausted {
            return Ok(());
        }
        match lease {
            Some((lease, gate)) => {
                let _turn = gate.enter();
                lane.read_next(db, Some(lease), min, cap)
            }
            None => lane.read_next(db, None, min, cap),
        }
    }

    /// After a span of lane `index` is handed out, with a lease and only if no one holds the
    /// write gate at this moment (the writer is gathering outcomes, not committing), so neither
    /// ever waits for a commit:
    ///
    /// - **gives back** the tail of a page the run has slowed down for: a fast phase (spans
    ///   skipped for their cooldown, say) grows pages that a model's pace then holds for minutes,
    ///   out of reach of the runs beside this one. Once a page is [`GIVE_BACK_AFTER`] old and
    ///   holds more than twice what the run takes in [`PAGE_TARGET`] at its pace since the page
    ///   was read, it keeps that much (at least a batch); the rest have their leases released
    ///   and the cursor moves back before them, so another run may take them meanwhile, and this
    ///   run takes later those no one did;
    /// - or **claims the next page ahead** once half of the page is handed out, so the lane does
    ///   not run dry while a commit goes on. Not under a run's limit, which the first page
    ///   covers.
    fn rebalance(
        &mut self,
        index: usize,
        db: &mut Db,
        lease: Option<(&Lease, &WriteGate)>,
    ) -> Result<(), DbError> {
        let Some((lease, gate)) = lease else {
            return Ok(());
        };
        let (min, cap) = (self.batch_size, self.page_cap);
        let lane = &mut self.lanes[index];
        let now = Instant::now();
        let give_back = lane.keep_at_pace(now, min);
        let read_ahead =
            !lane.exhausted && cap == usize::MAX && lane.page.len() * 2 <= lane.page_size;
        if give_back.is_none() && !read_ahead {
            return Ok(());
        }
        let Some(_turn) = gate.try_enter() else {
            return Ok(());
        };
        match give_back {
            Some(keep) => lane.give_back(db, lease, keep, now),
            None => lane.read_next(db, Some(lease), min, cap),
        }
    }

    /// Drops every span read and not handed out (the run stops taking spans).
    pub(crate) fn drop_pages(&mut self) -> Dropped {
        let mut dropped = Dropped::default();
        for (index, lane) in self.lanes.iter_mut().enumerate() {
            dropped.spans += lane.page.len();
            lane.page.clear();
            if lane.batch_left > 0 {
                lane.batch_left = 0;
                dropped.lanes.push(index);
            }
        }
        dropped
    }

    /// True once every lane has been read to its end and handed out.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.lanes
            .iter()
            .all(|lane| lane.exhausted && lane.page.is_empty())
    }

    /// Whether spans remain that the queue has not handed out: a page not used up, or a lane
    /// with spans after its cursor (one row read to know, leases not considered).
    pub(crate) fn more_pending(&self, db: &mut Db) -> Result<bool, DbError> {
        for lane in &self.lanes {
            if !lane.page.is_empty() {
                return Ok(true);
            }
            if !lane.exhausted && !lane.read(db, None, 1)?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pages_used_up_fast_double_up_to_the_most_a_page_claims() {
        let mut size = 5;
        let mut sizes = Vec::new();
        for _ in 0..8 {
            size = next_page_size(size, MS, 5);
            sizes.push(size);
        }
        assert_eq!(sizes, [10, 20, 40, 80, 160, 320, 640, 1280]);
        assert_eq!(next_page_size(1280, MS, 5), MAX_PAGE);
        assert_eq!(next_page_size(MAX_PAGE, MS, 5), MAX_PAGE);
    }

    #[test]
    fn a_page_holds_about_the_target_time_of_work_at_the_run_s_pace() {
        // 100 spans in 1 s: 50 spans in PAGE_TARGET.
        assert_eq!(next_page_size(100, 1000 * MS, 5), 50);
        // Right on target: unchanged.
        assert_eq!(next_page_size(64, PAGE_TARGET, 5), 64);
        // A slow model: back to one batch per claim, never less.
        assert_eq!(next_page_size(40, 60_000 * MS, 5), 5);
        assert_eq!(next_page_size(5, 60_000 * MS, 5), 5);
        // A batch larger than the most a page claims is still claimed whole.
        assert_eq!(next_page_size(5000, MS, 5000), 5000);
        assert_eq!(next_page_size(1, Duration::ZERO, 1), 2);
    }

    /// An index of `spans` one-line spans in `repo/a.py`, and a run's lease on it.
    fn index(dir: &std::path::Path, spans: usize) -> (Db, Lease) {
        let path = dir.join("index.db");
        let mut db = Db::open_or_create(&path).expect("create index");
        let raw = rusqlite::Connection::open(&path).expect("raw connection");
        raw.execute(
            "INSERT INTO files (id, path, lang, file_hash, size, mtime) \
             VALUES (1, 'a.py', 'python', 'h', 0, 0)",
            [],
        )
        .expect("file");
        for n in 0..spans {
            raw.execute(
                "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start, \
                 byte_end, span_hash) VALUES (1, 'f', 'function', ?1, ?1, 0, 0, ?2)",
                rusqlite::params![n + 1, format!("sha256:{n}")],
            )
            .expect("span");
        }
        let run_id = db.start_run("test").expect("run");
        let lease = Lease {
            run_id,
            holder: enrich_db::LeaseHolder::current(),
            ttl: Duration::from_secs(600),
        };
        (db, lease)
    }

    /// The work order in span id order: one lane.
    fn by_span_id() -> WorkOrder {
        WorkOrder {
            code_first: false,
            ..enrich_config::EnrichmentConfig::default().work_order
        }
    }

    fn leased(db: &Db) -> u64 {
        db.leased_elsewhere(enrich_db::RunId(0))
            .expect("count leases")
    }

    #[test]
    fn a_lane_claims_its_next_page_ahead_only_while_no_one_holds_the_write_gate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut db, lease) = index(dir.path(), 100);
        let gate = WriteGate::default();
        let mut queue = WorkQueue::new(&by_span_id(), 4, None);
        let mut take = |db: &mut Db| {
            queue
                .next(db, Some((&lease, &gate)))
                .expect("next")
                .expect("a span")
        };

        // The first page: one batch. Half of it handed out, the next page (grown, since the
        // first went fast) is claimed ahead.
        take(&mut db);
        assert_eq!(leased(&db), 4);
        take(&mut db);
        assert_eq!(leased(&db), 4 + 8, "claimed ahead at half the page");

        // While the writer holds the gate, the lane goes on with what it has.
        let held = gate.enter();
        for _ in 0..6 {
            take(&mut db);
        }
        assert_eq!(leased(&db), 12, "no claim waits for the writer");
        drop(held);
        take(&mut db);
        assert_eq!(leased(&db), 12 + 16, "claimed as soon as the gate is free");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_slows_down_gives_back_what_its_page_holds_beyond_its_pace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut db, lease) = index(dir.path(), 200);
        let gate = WriteGate::default();
        let mut queue = WorkQueue::new(&by_span_id(), 4, None);
        let mut handed = Vec::new();
        // A fast phase: pages grow while they are used up at once.
        for _ in 0..40 {
            let taken = queue.next(&mut db, Some((&lease, &gate))).expect("next");
            handed.push(taken.expect("a span").span.id);
        }
        let held = queue.lanes[0].page.len();
        assert!(held > 8, "a grown page: {held}");
        assert_eq!(leased(&db), (40 + held) as u64);

        // Then a span every 10 s: the page is given back down to one batch.
        tokio::time::advance(Duration::from_secs(10)).await;
        let taken = queue.next(&mut db, Some((&lease, &gate))).expect("next");
        handed.push(taken.expect("a span").span.id);
        assert_eq!(queue.lanes[0].page.len(), 4);
        assert_eq!(leased(&db), 41 + 4, "the rest was released");

        // A run beside it takes what was given back; this run never hands out those.
        let mut other = Db::open(dir.path().join("index.db")).expect("open");
        let other_run = other.start_run("other").expect("run");
        let other_lease = Lease {
            run_id: other_run,
            ..lease.clone()
        };
        let theirs: Vec<i64> = other
            .claim_pending_spans(&other_lease, 0, 20)
            .expect("claim")
            .iter()
            .map(|span| span.id)
            .collect();
        assert_eq!(theirs.len(), 20);
        assert!(
            theirs[0] > *handed.last().expect("handed") + 4,
            "{theirs:?}"
        );
        while let Some(taken) = queue.next(&mut db, Some((&lease, &gate))).expect("next") {
            handed.push(taken.span.id);
        }
        assert!(handed.iter().all(|id| !theirs.contains(id)));
        let mut all: Vec<i64> = handed.iter().chain(&theirs).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=200).collect::<Vec<i64>>(), "every span once");
    }

    #[test]
    fn under_a_limit_nothing_is_claimed_ahead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut db, lease) = index(dir.path(), 100);
        let gate = WriteGate::default();
        let mut queue = WorkQueue::new(&by_span_id(), 4, Some(10));
        for _ in 0..4 {
            queue
                .next(&mut db, Some((&lease, &gate)))
                .expect("next")
                .expect("a span");
        }
        assert_eq!(leased(&db), 4);
    }

    #[test]
    fn a_lane_hands_out_batches_of_batch_size_and_drops_the_one_it_was_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut db, _) = index(dir.path(), 10);
        let mut queue = WorkQueue::new(&by_span_id(), 3, None);
        let marks: Vec<(usize, bool, bool)> = (0..5)
            .map(|_| {
                let taken = queue.next(&mut db, None).expect("next").expect("a span");
                (taken.lane, taken.opened, taken.used_up)
            })
            .collect();
        assert_eq!(
            marks,
            [
                (0, true, false),
                (0, false, false),
                (0, false, true),
                (0, true, false),
                (0, false, false),
            ]
        );
        let dropped = queue.drop_pages();
        assert_eq!(dropped.lanes, [0], "the second batch was left open");
        let taken = queue.next(&mut db, None).expect("next").expect("a span");
        assert!(taken.opened, "after a drop the lane starts a new batch");
    }
}

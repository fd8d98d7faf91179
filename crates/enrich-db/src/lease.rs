//! Span leases: how runs in several processes share one index's pending spans.
//!
//! A run takes its pages by claiming them: one `IMMEDIATE` transaction selects pending spans no
//! other run holds a lease on and leases them (`enrich_leases`: span, run, holder, expiry). The
//! writer deletes a span's lease in the transaction that stores its outcome, and the end of a
//! run releases what is left. A lease is dead, and its span free again, when it has expired,
//! when its run has ended, or when its holder is a process on this host that no longer exists
//! (Linux: `/proc/<pid>/stat` is gone, or belongs to a later process with the same id, or to a
//! zombie). So a run restarted after a SIGKILL reclaims the dead run's spans at once; only a
//! holder on another host (or on a system without `/proc`) has to wait for the expiry.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rusqlite::Transaction;

use crate::error::DbError;
use crate::open::Db;
use crate::pending::{pending_page, span_from_row, with_limit};
use enrich_types::RunId;

use crate::types::PendingSpan;
use crate::work_order::{WeightedSpan, WorkOrderKey, for_weight, weight_page};
use crate::write::now_ms;

/// Pending spans after a span id that no other run holds, in span id order; as
/// [`PENDING_PAGE_SQL`](crate::pending::PENDING_PAGE_SQL) with one more primary-key probe.
pub(crate) const CLAIM_PAGE_SQL: &str = pending_page!(
    "
  AND NOT EXISTS (SELECT 1 FROM enrich_leases AS l
                  WHERE l.span_hash = s.span_hash AND l.run_id != ?2)"
);

/// Pending spans of one weight after a span id that no other run holds; as
/// [`WEIGHT_PAGE_SQL`](crate::work_order::WEIGHT_PAGE_SQL) with one more primary-key probe.
pub(crate) const CLAIM_WEIGHT_PAGE_SQL: &str = weight_page!(
    "
  AND NOT EXISTS (SELECT 1 FROM enrich_leases AS l
                  WHERE l.span_hash = s.span_hash AND l.run_id != ?3)"
);

/// How often a claiming connection looks for dead leases.
const REAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

const INSERT_LEASE_SQL: &str = "INSERT INTO enrich_leases \
     (span_hash, run_id, host, pid, process_start, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (span_hash) DO UPDATE SET run_id = excluded.run_id, host = excluded.host, \
     pid = excluded.pid, process_start = excluded.process_start, \
     expires_at_ms = excluded.expires_at_ms";
const DELETE_EXPIRED_SQL: &str = "DELETE FROM enrich_leases WHERE expires_at_ms <= ?1";
const DELETE_ENDED_RUNS_SQL: &str = "DELETE FROM enrich_leases WHERE run_id IN \
     (SELECT id FROM enrich_runs WHERE status != 'running')";
/// Processes of this host with runs still `running`.
const RUNNING_HOLDERS_SQL: &str = "SELECT DISTINCT holder_pid, holder_start FROM enrich_runs \
     WHERE status = 'running' AND holder_host = ?1 AND holder_pid IS NOT NULL";
/// Those runs of a process that is gone, ended as interrupted (it was killed).
const END_DEAD_RUNS_SQL: &str = "UPDATE enrich_runs SET status = 'interrupted', finished_at_ms = ?4 \
     WHERE status = 'running' AND holder_host = ?1 AND holder_pid = ?2 AND holder_start = ?3";
const LOCAL_HOLDERS_SQL: &str =
    "SELECT DISTINCT pid, process_start FROM enrich_leases WHERE host = ?1";
const DELETE_HOLDER_SQL: &str =
    "DELETE FROM enrich_leases WHERE host = ?1 AND pid = ?2 AND process_start = ?3";
/// The runs of a holder that is gone, still `running` in the runs table (it was killed): they
/// are marked interrupted, ending now, so `enrich status` does not show them as running.
const END_HOLDER_RUNS_SQL: &str = "UPDATE enrich_runs SET status = 'interrupted', finished_at_ms = ?4 \
     WHERE status = 'running' AND id IN (SELECT DISTINCT run_id FROM enrich_leases \
     WHERE host = ?1 AND pid = ?2 AND process_start = ?3)";
const RENEW_SQL: &str = "UPDATE enrich_leases SET expires_at_ms = ?2 WHERE run_id = ?1";
pub(crate) const RELEASE_RUN_SQL: &str = "DELETE FROM enrich_leases WHERE run_id = ?1";
pub(crate) const RELEASE_LEASE_SQL: &str =
    "DELETE FROM enrich_leases WHERE span_hash = ?1 AND run_id = ?2";
/// Leases of other runs on spans that are still pending. It reads the whole leases table, which
/// holds only the spans runs have in hand (pages and spans in flight).
const HELD_ELSEWHERE_SQL: &str = "SELECT COUNT(*) FROM enrich_leases AS l \
     WHERE l.run_id != ?1 \
       AND EXISTS (SELECT 1 FROM spans AS s WHERE s.span_hash = l.span_hash) \
       AND NOT EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = l.span_hash)";

/// [`HELD_ELSEWHERE_SQL`] by holder.
const HELD_ELSEWHERE_BY_RUN_SQL: &str = "SELECT l.run_id, l.host, l.pid, COUNT(*), \
     MAX(l.expires_at_ms) FROM enrich_leases AS l \
     WHERE l.run_id != ?1 \
       AND EXISTS (SELECT 1 FROM spans AS s WHERE s.span_hash = l.span_hash) \
       AND NOT EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = l.span_hash) \
     GROUP BY l.run_id, l.host, l.pid ORDER BY l.run_id";

/// The process that holds a lease: its host, its process id and when that process started, so
/// that a later process given the same id is not taken for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseHolder {
    /// The host name (Linux: `/proc/sys/kernel/hostname`).
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The process's start time in clock ticks since boot (Linux: field 22 of
    /// `/proc/<pid>/stat`); 0 where it cannot be read.
    pub process_start: u64,
}

impl LeaseHolder {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            host: host_name(),
            pid,
            process_start: proc_stat(pid).map_or(0, |stat| stat.start),
        }
    }

    /// Whether this holder's process still runs, as far as this process can tell: `Some` for a
    /// holder on this host when `/proc` is there, `None` otherwise (only the expiry tells then).
    pub fn is_alive(&self) -> Option<bool> {
        if self.host != host_name() || !Path::new("/proc/self/stat").exists() {
            return None;
        }
        Some(proc_stat(self.pid).is_some_and(|stat| {
            stat.start == self.process_start && !matches!(stat.state, 'Z' | 'X' | 'x')
        }))
    }
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.pid)
    }
}

/// The leases a run takes: for which run, held by which process, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The run.
    pub run_id: RunId,
    /// The process running it.
    pub holder: LeaseHolder,
    /// How long a lease lives unless renewed ([`Db::renew_leases`]): long enough for a span to
    /// wait for a slot and go through its whole cascade.
    pub ttl: Duration,
}

/// Pending spans another run holds leases on, by run and process
/// ([`Db::leases_elsewhere`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldLeases {
    /// The run holding them.
    pub run_id: RunId,
    /// The host of its process.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// How many pending spans it holds.
    pub spans: u64,
    /// When the last of those leases expires unless renewed, in milliseconds since the Unix
    /// epoch.
    pub until_ms: u64,
}

impl Lease {
    fn expires_at_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX))
    }
}

/// What `/proc/<pid>/stat` says about a process.
struct ProcStat {
    state: char,
    start: u64,
}

/// Reads the state and start time of `pid` from `/proc`; `None` when there is no such process
/// (or no `/proc`).
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: the command may hold spaces and parentheses, so the fields
    // are counted after the last `)`. The state is field 3, the start time field 22.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// This host's name, or `unknown-host`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Deletes dead leases: expired ones, those of ended runs, and those of processes of this host
/// that are gone. Returns how many went.
fn reap(tx: &Transaction<'_>, me: &LeaseHolder, now_ms: u64) -> rusqlite::Result<usize> {
    let mut removed = tx.execute(DELETE_EXPIRED_SQL, [now_ms])?;
    removed += tx.execute(DELETE_ENDED_RUNS_SQL, [])?;
    let holders: Vec<(u32, u64)> = tx
        .prepare_cached(LOCAL_HOLDERS_SQL)?
        .query_map([&me.host], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let running: Vec<(u32, u64)> = tx
        .prepare_cached(RUNNING_HOLDERS_SQL)?
        .query_map([&me.host], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (pid, process_start) in running {
        let holder = LeaseHolder {
            host: me.host.clone(),
            pid,
            process_start,
        };
        if holder != *me && holder.is_alive() == Some(false) {
            tx.prepare_cached(END_DEAD_RUNS_SQL)?.execute((
                &me.host,
                pid,
                process_start,
                now_ms,
            ))?;
        }
    }
    for (pid, process_start) in holders {
        let holder = LeaseHolder {
            host: me.host.clone(),
            pid,
            process_start,
        };
        if holder != *me && holder.is_alive() == Some(false) {
            tx.prepare_cached(END_HOLDER_RUNS_SQL)?.execute((
                &me.host,
                pid,
                process_start,
                now_ms,
            ))?;
            removed += tx.execute(DELETE_HOLDER_SQL, (&me.host, pid, process_start))?;
        }
    }
    Ok(removed)
}

impl Db {
    /// Claims up to `limit` pending spans with `spans.id > after_id` that no other run holds, in
    /// `spans.id` order, and leases them to `lease`'s run, in one `IMMEDIATE` transaction
    /// (after deleting dead leases). The keyset page of [`pending_spans`](Self::pending_spans)
    /// for runs that share the index.
    pub fn claim_pending_spans(
        &mut self,
        lease: &Lease,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PendingSpan>, DbError> {
        self.claim(
            lease,
            |tx| {
                tx.prepare_cached(&with_limit(CLAIM_PAGE_SQL, limit))?
                    .query_map((after_id, lease.run_id.0), span_from_row)?
                    .collect()
            },
            |span| &span.span_hash,
        )
    }

    /// Claims up to `limit` pending spans weighing within `weights` after `after` in work order
    /// that no other run holds, and leases them; see
    /// [`pending_by_weight`](Self::pending_by_weight) and
    /// [`claim_pending_spans`](Self::claim_pending_spans).
    pub fn claim_pending_by_weight(
        &mut self,
        lease: &Lease,
        weights: std::ops::RangeInclusive<u8>,
        after: WorkOrderKey,
        limit: usize,
    ) -> Result<Vec<WeightedSpan>, DbError> {
        self.claim(
            lease,
            |tx| {
                let mut page = Vec::new();
                for weight in after.weight.max(*weights.start())..=*weights.end() {
                    let wanted = limit - page.len();
                    if wanted == 0 {
                        break;
                    }
                    // The weight and the whole page's limit in the text (see `for_weight`); a
                    // weight after the first stops reading once the page is full.
                    let mut stmt =
                        tx.prepare_cached(&for_weight(CLAIM_WEIGHT_PAGE_SQL, weight, limit))?;
                    let after_id = if weight == after.weight {
                        after.span_id
                    } else {
                        i64::MIN
                    };
                    let rows = stmt.query_map((weight, after_id, lease.run_id.0), |row| {
                        Ok(WeightedSpan {
                            span: span_from_row(row)?,
                            weight,
                        })
                    })?;
                    for row in rows.take(wanted) {
                        page.push(row?);
                    }
                }
                Ok(page)
            },
            |weighted| &weighted.span.span_hash,
        )
    }

    /// Runs `select` and leases what it returns, in one `IMMEDIATE` transaction that first
    /// deletes dead leases.
    pub(crate) fn claim<T>(
        &mut self,
        lease: &Lease,
        select: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<Vec<T>>,
        span_hash: impl Fn(&T) -> &String,
    ) -> Result<Vec<T>, DbError> {
        self.ensure_writable("claim pending spans")?;
        // Dead leases are looked for at most every REAP_INTERVAL: a page is claimed every few
        // spans, and a killed peer's spans can wait a few seconds.
        let reaped = self
            .last_reap
            .is_none_or(|last| last.elapsed() >= REAP_INTERVAL);
        let (tx, errors) = self.immediate("lock the database to claim pending spans")?;
        let err = |action| errors.on(action);
        let now = now_ms();
        if reaped {
            reap(&tx, &lease.holder, now).map_err(err("delete dead span leases"))?;
        }
        let rows = select(&tx).map_err(err("select pending spans to claim"))?;
        {
            let mut insert = tx
                .prepare_cached(INSERT_LEASE_SQL)
                .map_err(err("lease pending spans"))?;
            let expires = lease.expires_at_ms(now);
            let holder = &lease.holder;
            for row in &rows {
                insert
                    .execute((
                        span_hash(row),
                        lease.run_id.0,
                        &holder.host,
                        holder.pid,
                        holder.process_start,
                        expires,
                    ))
                    .map_err(err("lease a pending span"))?;
            }
        }
        tx.commit()
            .map_err(err("commit a claim of pending spans"))?;
        if reaped {
            self.last_reap = Some(std::time::Instant::now());
        }
        Ok(rows)
    }

    /// Deletes dead leases (expired, of ended runs, of processes of this host that are gone),
    /// so their spans can be counted and claimed at once, and records the runs of processes
    /// that are gone as interrupted (they were killed). Returns how many leases went.
    pub fn reap_dead_leases(&mut self, me: &LeaseHolder) -> Result<usize, DbError> {
        self.ensure_writable("delete dead span leases")?;
        let (tx, errors) = self.immediate("delete dead span leases")?;
        let err = errors.on("delete dead span leases");
        let removed = reap(&tx, me, now_ms()).map_err(err)?;
        tx.commit().map_err(err)?;
        self.last_reap = Some(std::time::Instant::now());
        Ok(removed)
    }

    /// Extends every lease of `lease`'s run to `ttl` from now. Returns how many there were.
    pub fn renew_leases(&mut self, lease: &Lease) -> Result<usize, DbError> {
        self.ensure_writable("renew span leases")?;
        self.conn
            .prepare_cached(RENEW_SQL)
            .and_then(|mut stmt| stmt.execute((lease.run_id.0, lease.expires_at_ms(now_ms()))))
            .map_err(self.err("renew span leases"))
    }

    /// Releases every lease of `run` (its spans go back to the other runs). Returns how many.
    /// [`finish_run`](Self::finish_run) does this too.
    pub fn release_leases(&mut self, run: RunId) -> Result<usize, DbError> {
        self.ensure_writable("release span leases")?;
        self.conn
            .prepare_cached(RELEASE_RUN_SQL)
            .and_then(|mut stmt| stmt.execute([run.0]))
            .map_err(self.err("release span leases"))
    }

    /// Releases `run`'s leases on these spans, in one transaction, so other runs may claim them
    /// (a run gives back spans it claimed and no longer means to take soon). Spans it holds no
    /// lease on are passed over. Returns how many leases ended.
    pub fn release_span_leases<S: AsRef<str>>(
        &mut self,
        run: RunId,
        span_hashes: &[S],
    ) -> Result<usize, DbError> {
        self.ensure_writable("release span leases")?;
        let (tx, errors) = self.immediate("release span leases")?;
        let err = errors.on("release span leases");
        let mut released = 0;
        {
            let mut stmt = tx.prepare_cached(RELEASE_LEASE_SQL).map_err(err)?;
            for hash in span_hashes {
                released += stmt.execute((hash.as_ref(), run.0)).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(released)
    }

    /// Pending spans that runs other than `run` hold leases on, by run and process, with when
    /// their leases expire (dead leases count until they are reaped).
    pub fn leases_elsewhere(&self, run: RunId) -> Result<Vec<HeldLeases>, DbError> {
        self.conn
            .prepare_cached(HELD_ELSEWHERE_BY_RUN_SQL)
            .and_then(|mut stmt| {
                stmt.query_map([run.0], |row| {
                    Ok(HeldLeases {
                        run_id: RunId(row.get(0)?),
                        host: row.get(1)?,
                        pid: row.get(2)?,
                        spans: row.get(3)?,
                        until_ms: row.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(self.err("list the leases other runs hold"))
    }

    /// Pending spans that runs other than `run` hold leases on (dead leases count until they
    /// are reaped).
    pub fn leased_elsewhere(&self, run: RunId) -> Result<u64, DbError> {
        self.conn
            .prepare_cached(HELD_ELSEWHERE_SQL)
            .and_then(|mut stmt| stmt.query_row([run.0], |row| row.get(0)))
            .map_err(self.err("count leased spans"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::tests::check_uses_indexes;

    #[test]
    fn claims_probe_the_lease_by_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_or_create(dir.path().join("index_v2.db")).expect("create");
        for sql in [CLAIM_PAGE_SQL, CLAIM_WEIGHT_PAGE_SQL] {
            check_uses_indexes(
                &db,
                sql,
                &["SEARCH l USING INDEX sqlite_autoindex_enrich_leases_1 (span_hash=?)"],
            );
        }
    }

    #[test]
    fn this_process_is_alive_and_an_exited_one_is_not() {
        let me = LeaseHolder::current();
        if !Path::new("/proc/self/stat").exists() {
            assert_eq!(me.is_alive(), None);
            return;
        }
        assert_eq!(me.is_alive(), Some(true));
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        let gone = LeaseHolder { pid, ..me.clone() };
        assert_eq!(gone.is_alive(), Some(false));
        let reborn = LeaseHolder {
            process_start: me.process_start + 1,
            ..me.clone()
        };
        assert_eq!(
            reborn.is_alive(),
            Some(false),
            "a reused pid is another process"
        );
        let elsewhere = LeaseHolder {
            host: format!("{}-elsewhere", me.host),
            ..me
        };
        assert_eq!(elsewhere.is_alive(), None);
    }
}

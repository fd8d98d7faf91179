//! Span leases: runs sharing an index claim disjoint pages; outcomes and run ends release their
//! leases; dead leases (expired, of an exited process) are reclaimed at once.

use std::time::Duration;

use enrich_db::{Db, Lease, LeaseHolder, RunStatus, WeightedSpan, WorkOrderKey};

use crate::support::{Fixture, enriched};

/// `count` lines of Python named after `tag`.
fn code(tag: &str, count: usize) -> String {
    (1..=count)
        .map(|i| format!("def {tag}_{i}(): return {i}\n"))
        .collect()
}

/// A run on its own connection, as another `enrich run` process has.
struct Runner {
    db: Db,
    lease: Lease,
    cursor: i64,
}

impl Runner {
    fn new(fixture: &Fixture, holder: LeaseHolder, ttl: Duration) -> Self {
        let mut db = fixture.db();
        let run_id = db.start_run("fp").expect("start a run");
        Self {
            db,
            lease: Lease {
                run_id,
                holder,
                ttl,
            },
            cursor: 0,
        }
    }

    /// Claims the next page; returns its hashes.
    fn claim(&mut self, limit: usize) -> Vec<String> {
        let page = self
            .db
            .claim_pending_spans(&self.lease, self.cursor, limit)
            .expect("claim");
        if let Some(last) = page.last() {
            self.cursor = last.id;
        }
        page.into_iter().map(|s| s.span_hash).collect()
    }
}

fn me() -> LeaseHolder {
    LeaseHolder::current()
}

const HOUR: Duration = Duration::from_secs(3600);

/// Leases in the table now.
fn leases(fixture: &Fixture) -> i64 {
    fixture
        .raw()
        .query_row("SELECT COUNT(*) FROM enrich_leases", [], |row| row.get(0))
        .expect("count leases")
}

#[test]
fn two_runs_claim_disjoint_pages_that_together_cover_every_span() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("src/a.py", "python", &code("a", 10));
    let mut a = Runner::new(&fixture, me(), HOUR);
    let mut b = Runner::new(&fixture, me(), HOUR);
    let pages = [
        a.claim(3),
        b.claim(3),
        a.claim(3),
        b.claim(3),
        a.claim(3),
        b.claim(3),
    ];
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 3, 1, 0, 0],
        "B starts behind A's page, A behind B's: {pages:?}"
    );
    let mut claimed: Vec<String> = pages.concat();
    claimed.sort();
    let mut all = hashes.clone();
    all.sort();
    assert_eq!(claimed, all, "every span exactly once");
    assert_eq!(leases(&fixture), 10);
    assert_eq!(a.db.leased_elsewhere(a.lease.run_id).expect("count"), 4);
    assert_eq!(b.db.leased_elsewhere(b.lease.run_id).expect("count"), 6);

    // In work order too.
    let fixture = Fixture::llmc();
    fixture.index_file("docs/d.py", "python", &code("d", 2));
    fixture.index_file("src/s.py", "python", &code("s", 2));
    let weigh = |path: &str| if path.starts_with("src/") { 1 } else { 8 };
    let mut a = Runner::new(&fixture, me(), HOUR);
    let mut b = Runner::new(&fixture, me(), HOUR);
    a.db.refresh_work_order("v1", weigh).expect("refresh");
    let first =
        a.db.claim_pending_by_weight(&a.lease, 1..=10, WorkOrderKey::START, 3)
            .expect("claim");
    let second =
        b.db.claim_pending_by_weight(&b.lease, 1..=10, WorkOrderKey::START, 3)
            .expect("claim");
    let weights = |page: &[WeightedSpan]| page.iter().map(|s| s.weight).collect::<Vec<_>>();
    assert_eq!(weights(&first), [1, 1, 8]);
    assert_eq!(weights(&second), [8], "the spans A holds are skipped");
}

#[test]
fn spans_a_run_gives_back_go_to_the_next_run_that_claims() {
    let fixture = Fixture::llmc();
    fixture.index_file("src/a.py", "python", &code("a", 6));
    let mut a = Runner::new(&fixture, me(), HOUR);
    let mut b = Runner::new(&fixture, me(), HOUR);
    let page = a.claim(6);
    assert!(b.claim(6).is_empty(), "A holds every span");

    let released =
        a.db.release_span_leases(a.lease.run_id, &page[3..])
            .expect("release");
    assert_eq!(released, 3);
    assert_eq!(
        leases(&fixture),
        3,
        "A keeps the spans it did not give back"
    );
    b.cursor = 0;
    assert_eq!(
        b.claim(6),
        page[3..],
        "B gets what A gave back, and only that"
    );
    assert_eq!(
        a.db.release_span_leases(a.lease.run_id, &page[3..])
            .expect("release"),
        0,
        "B's leases are not A's to release"
    );
    assert_eq!(leases(&fixture), 6);
}

#[test]
fn outcomes_and_the_end_of_a_run_release_its_leases() {
    let fixture = Fixture::llmc();
    fixture.index_file("src/a.py", "python", &code("a", 5));
    let mut a = Runner::new(&fixture, me(), HOUR);
    let mut b = Runner::new(&fixture, me(), HOUR);
    let page = a.claim(3);
    let run = a.lease.run_id;
    a.db.write_batch(&[enriched(&page[0], run, "done")])
        .expect("write");
    assert_eq!(leases(&fixture), 2, "the stored span's lease went with it");
    assert_eq!(b.db.leased_elsewhere(b.lease.run_id).expect("count"), 2);
    assert_eq!(b.claim(10).len(), 2, "B gets the spans A does not hold");

    a.db.finish_run(run, 0, RunStatus::Interrupted)
        .expect("finish");
    assert_eq!(leases(&fixture), 2, "only B's leases remain");
    let mut c = Runner::new(&fixture, me(), HOUR);
    assert_eq!(c.claim(10), page[1..], "A's unfinished page is free again");
    assert_eq!(b.db.release_leases(b.lease.run_id).expect("release"), 2);
}

#[test]
fn leases_of_an_exited_process_are_reclaimed_at_once_and_expired_ones_too() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("src/a.py", "python", &code("a", 4));
    let current = me();

    // A process of this host that has exited: Linux tells at once; elsewhere only the expiry
    // can, so the lease is given none there.
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    let exited = LeaseHolder {
        pid,
        ..current.clone()
    };
    let exited_is_known_dead = exited.is_alive() == Some(false);
    let ttl = match exited.is_alive() {
        Some(_) => HOUR,
        None => Duration::ZERO,
    };
    let mut dead = Runner::new(&fixture, exited, ttl);
    assert_eq!(dead.claim(2), hashes[..2]);

    // A holder on another host whose lease still runs: its span stays out of reach.
    let elsewhere = LeaseHolder {
        host: format!("{}-elsewhere", current.host),
        ..current.clone()
    };
    let mut alive = Runner::new(&fixture, elsewhere.clone(), HOUR);
    assert_eq!(alive.claim(1), hashes[2..3]);
    // And one whose lease has run out.
    let mut expired = Runner::new(&fixture, elsewhere, Duration::ZERO);
    assert_eq!(expired.claim(1), hashes[3..]);

    let mut rerun = Runner::new(&fixture, current.clone(), HOUR);
    assert_eq!(rerun.db.reap_dead_leases(&current).expect("reap"), 3);
    assert_eq!(
        rerun
            .db
            .leased_elsewhere(rerun.lease.run_id)
            .expect("count"),
        1
    );
    assert_eq!(rerun.claim(10), [&hashes[..2], &hashes[3..]].concat());
    assert_eq!(alive.db.renew_leases(&alive.lease).expect("renew"), 1);

    // The exited process's run was killed: it is recorded as interrupted, not running forever.
    let killed = rerun.db.run(dead.lease.run_id).expect("read").expect("run");
    if exited_is_known_dead {
        assert_eq!(killed.status, RunStatus::Interrupted);
        assert!(killed.finished_at_ms.is_some());
    }
    let live = rerun
        .db
        .run(alive.lease.run_id)
        .expect("read")
        .expect("run");
    assert_eq!(
        live.status,
        RunStatus::Running,
        "a live holder's run is left alone"
    );
}

#[test]
fn a_run_whose_process_is_gone_is_recorded_as_interrupted_even_without_leases() {
    let fixture = Fixture::llmc();
    fixture.index_file("src/a.py", "python", &code("a", 1));
    let current = me();
    let mut db = fixture.db();
    let killed = db.start_run("fp").expect("start a run");
    let live = db.start_run("fp").expect("start a run");
    // The first run's process exited before it claimed anything (killed while starting up).
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    fixture
        .raw()
        .execute(
            "UPDATE enrich_runs SET holder_pid = ?1 WHERE id = ?2",
            (pid, killed.0),
        )
        .expect("the exited process ran it");

    db.reap_dead_leases(&current).expect("reap");

    let status = |run| db.run(run).expect("read").expect("run").status;
    let exited = LeaseHolder { pid, ..current };
    if exited.is_alive() == Some(false) {
        assert_eq!(status(killed), RunStatus::Interrupted);
    }
    assert_eq!(
        status(live),
        RunStatus::Running,
        "this process still runs it"
    );
}

//! A second process waits for the lock (busy timeout) instead of failing at once.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use enrich_db::{Db, DbError, OpenMode, OpenOptions};

use crate::support::{Fixture, enriched, python_lines};

/// Holds a write transaction on `fixture`'s file in another thread (as LLMC's indexer would),
/// reports once it holds it, and commits when `release` says so.
fn hold_write_lock(
    fixture: &Fixture,
    release: mpsc::Receiver<()>,
) -> (mpsc::Receiver<()>, thread::JoinHandle<()>) {
    let (held_tx, held_rx) = mpsc::channel();
    let conn = fixture.raw();
    let handle = thread::spawn(move || {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT INTO llmc_meta (key, value) VALUES ('index_generation', '2');",
        )
        .expect("lock");
        held_tx.send(()).expect("report");
        release.recv().expect("release signal");
        conn.execute_batch("COMMIT").expect("commit");
    });
    (held_rx, handle)
}

#[test]
fn a_writer_waits_for_another_process_lock_and_then_succeeds() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");

    let (release_tx, release_rx) = mpsc::channel();
    let (held, holder) = hold_write_lock(&fixture, release_rx);
    held.recv().expect("lock held");
    let releaser = thread::spawn(move || {
        // The one unavoidable wait: the lock is held a moment while the writer below is blocked.
        thread::sleep(Duration::from_millis(200));
        release_tx.send(()).expect("release");
    });
    let report = db
        .write_batch(&[enriched(&hashes[0], run, "after the wait")])
        .expect("waits, then writes");
    assert_eq!(report.enriched, 1);
    releaser.join().expect("releaser");
    holder.join().expect("holder");

    let generation: String = fixture
        .raw()
        .query_row(
            "SELECT value FROM llmc_meta WHERE key = 'index_generation'",
            [],
            |r| r.get(0),
        )
        .expect("the other process's write");
    assert_eq!(generation, "2");
}

#[test]
fn a_lock_held_past_the_busy_timeout_is_a_clear_busy_error() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    let options = OpenOptions {
        mode: OpenMode::Existing,
        busy_timeout: Duration::from_millis(50),
        ..OpenOptions::default()
    };
    let mut db = Db::open_with(&fixture.db_path, &options).expect("open");
    let run = db.start_run("fp").expect("run");

    let (release_tx, release_rx) = mpsc::channel();
    let (held, holder) = hold_write_lock(&fixture, release_rx);
    held.recv().expect("lock held");
    let err = db
        .write_batch(&[enriched(&hashes[0], run, "never")])
        .expect_err("busy");
    release_tx.send(()).expect("release");
    holder.join().expect("holder");

    assert!(matches!(err, DbError::Busy { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("index_v2.db") && message.contains("busy timeout"),
        "{message}"
    );
    // Nothing was half-written; the span is still pending and can be written now.
    assert_eq!(db.pending_count().expect("count"), 1);
    db.write_batch(&[enriched(&hashes[0], run, "now")])
        .expect("write after release");
}

#[test]
fn the_connection_can_move_to_a_writer_thread() {
    fn assert_send<T: Send>(value: T) -> T {
        value
    }
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("m.py", "python", &python_lines(1));
    let mut db = assert_send(fixture.db());
    let run = db.start_run("fp").expect("run");
    let writer = thread::spawn(move || {
        db.write_batch(&[enriched(&hashes[0], run, "from a thread")])
            .expect("write")
    });
    assert_eq!(writer.join().expect("writer").enriched, 1);
}

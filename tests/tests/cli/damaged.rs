//! A damaged index, and one whose directory enrich cannot write: `doctor` reports the damage
//! with the fix, `run` and every other command refuse with exit code 2 before writing anything,
//! and no message claims that a file was not modified when it was.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::bad_input::{check_mentions, commands_opening_the_index, running_as_root};
use super::support::{Ran, Server, TestRepo, config, finish};

/// The names and sizes of the files in `dir`, sorted, but for what SQLite may leave next to a
/// WAL-mode file it could not read: its shared-memory index and an empty WAL.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let len = e.metadata().expect("metadata").len();
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .filter(|(name, len)| {
            let companion = name.ends_with("-shm") || (name.ends_with("-wal") && *len == 0);
            !companion
        })
        .collect();
    files.sort();
    files
}

/// The index's bytes and the listing of its directory, to compare after a command.
pub(super) struct Snapshot {
    bytes: Vec<u8>,
    files: Vec<(String, u64)>,
}

impl Snapshot {
    pub(super) fn of(repo: &TestRepo) -> Self {
        Self {
            bytes: std::fs::read(&repo.db).expect("read the index"),
            files: listing(repo.db.parent().expect("db dir")),
        }
    }

    /// Fails unless the index and its directory are as they were.
    #[track_caller]
    pub(super) fn check_unchanged(&self, repo: &TestRepo, what: &str) {
        let now = Self::of(repo);
        assert!(now.bytes == self.bytes, "{what}: the index changed");
        assert_eq!(now.files, self.files, "{what}: files changed");
    }
}

/// What every refusal of a damaged index says to do.
const DAMAGE_FIX: [&str; 3] = [
    "restore it from a backup",
    "enrich index",
    "LLMC's own re-index",
];

/// Moves the WAL into the index file, so that its bytes are the whole database.
fn checkpoint(repo: &TestRepo) {
    repo.raw()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
}

/// Overwrites the root page of `index` (a b-tree the schema does not need) with garbage.
fn damage_page_of(repo: &TestRepo, index: &str) {
    checkpoint(repo);
    let (root, page_size): (u64, u64) = repo
        .raw()
        .query_row(
            "SELECT (SELECT rootpage FROM sqlite_master WHERE name = ?1),
                    (SELECT page_size FROM pragma_page_size())",
            [index],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("root page");
    let mut bytes = std::fs::read(&repo.db).expect("read the index");
    let start = usize::try_from((root - 1) * page_size).expect("offset");
    let end = start + usize::try_from(page_size).expect("page size");
    bytes[start..end].fill(0xA5);
    std::fs::write(&repo.db, bytes).expect("write the damaged index");
}

#[test]
fn a_damaged_index_is_reported_by_doctor_and_refused_by_run_before_anything_is_written() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    // The index of `spans.span_hash`: every enrichment written goes through it (its foreign
    // key), so a run that does not check first writes its run row, then fails.
    damage_page_of(&repo, "sqlite_autoindex_spans_1");
    let before = Snapshot::of(&repo);
    let shown = repo.db.display().to_string();

    let doctor = repo.enrich(&["doctor"]);
    doctor.expect_code(2);
    check_mentions("doctor", &doctor.stdout, &["FAIL  index", &shown]);
    check_mentions(
        "doctor",
        &doctor.stdout,
        &[&["is a damaged SQLite database"][..], &DAMAGE_FIX].concat(),
    );

    for args in [
        &["run"][..],
        &["--json", "run"],
        &["failures", "--requeue-all"],
    ] {
        refused_before_writing(&repo, &before, args);
    }
    assert_eq!(server.stats().generations(), 0, "no span is sent");
}

/// Runs `enrich ARGS` on the damaged index of `repo`: exit code 2 naming the file, the damage
/// and the fix, and the index and its directory as they were (`before`).
#[track_caller]
fn refused_before_writing(repo: &TestRepo, before: &Snapshot, args: &[&str]) {
    let ran = repo.enrich(args);
    let what = format!("`{}`", args.join(" "));
    ran.expect_code(2);
    let shown = repo.db.display().to_string();
    check_mentions(
        &what,
        &ran.stderr,
        &[&shown, "is a damaged SQLite database"],
    );
    check_mentions(&what, &ran.stderr, &DAMAGE_FIX);
    check_mentions(&what, &ran.stderr, &["(the file was not modified)"]);
    before.check_unchanged(repo, &what);
}

#[test]
fn a_damaged_index_is_refused_by_index_and_watch_before_the_indexer_writes() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    // A file the index does not have yet: an indexer that does not check first writes it.
    std::fs::write(repo.root.join("new.py"), "def added():\n    return 1\n").expect("write");
    damage_page_of(&repo, "sqlite_autoindex_spans_1");
    let before = Snapshot::of(&repo);
    for args in [&["index"][..], &["--json", "index"], &["watch", "--poll"]] {
        refused_before_writing(&repo, &before, args);
    }
    assert_eq!(server.stats().generations(), 0, "no span is sent");
}

#[test]
fn a_truncated_index_is_refused_by_every_command_with_exit_2_and_left_as_it_was() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    let hash = repo.spans[0].hash.clone();
    checkpoint(&repo);
    let whole = std::fs::read(&repo.db).expect("read the index");
    // Cut after the schema's first pages: what a full disk or an interrupted copy leaves.
    std::fs::write(&repo.db, &whole[..whole.len() / 2]).expect("truncate");
    let before = Snapshot::of(&repo);
    let shown = repo.db.display().to_string();
    for args in commands_opening_the_index(&hash) {
        let ran = repo.enrich(&args);
        let what = format!("`{}`", args.join(" "));
        ran.expect_code(2);
        let said = format!("{}{}", ran.stdout, ran.stderr);
        check_mentions(&what, &said, &[&shown, "is a damaged SQLite database"]);
        check_mentions(&what, &said, &["restore it from a backup"]);
        before.check_unchanged(&repo, &what);
    }
    assert_eq!(server.stats().generations(), 0, "no span is sent");
}

/// Runs `enrich --repo <root> ARGS` as a user whom permissions bind: this user, or `nobody`
/// (through util-linux's `setpriv`) when the tests run as root.
pub(super) fn enrich_unprivileged(repo: &TestRepo, args: &[&str]) -> Ran {
    if !running_as_root() {
        return repo.enrich(args);
    }
    let plain = repo.command(args);
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(plain.get_program())
        .args(plain.get_args())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    finish(command.spawn().expect("start enrich"))
}

pub(super) fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A repository whose directories and index every user may read and write, for
/// [`enrich_unprivileged`]; its index checkpointed. Returns the index's directory.
pub(super) fn open_to_every_user(repo: &TestRepo) -> &Path {
    checkpoint(repo);
    let rag = repo.db.parent().expect(".llmc/rag");
    let temp = repo.root.parent().expect("temp dir");
    for dir in [temp, &repo.root, rag.parent().expect(".llmc"), rag] {
        chmod(dir, 0o777);
    }
    chmod(&repo.db, 0o666);
    rag
}

#[test]
fn an_index_in_a_read_only_directory_is_refused_by_run_naming_the_directory_and_read_by_status() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    // Everything readable and writable for the other user but the index's directory.
    let rag = open_to_every_user(&repo);
    chmod(rag, 0o555);
    let before = Snapshot::of(&repo);
    let shown = rag.display().to_string();
    let ran = enrich_unprivileged(&repo, &["run"]);
    ran.expect_code(2);
    check_mentions(
        "`run`",
        &ran.stderr,
        &[
            &format!("the directory {shown} of the index"),
            "is not writable",
            "WAL journal",
            "make the directory writable",
            "pass --db",
        ],
    );
    before.check_unchanged(&repo, "`run`");
    // With no WAL beside it, the file on disk is the whole index: a reading command reads it.
    let status = enrich_unprivileged(&repo, &["--json", "status"]);
    status.expect_code(0);
    assert_eq!(
        status.json()["spans"],
        repo.spans.len(),
        "{}",
        status.stdout
    );
    before.check_unchanged(&repo, "`status`");
    chmod(rag, 0o755);
    assert_eq!(server.stats().generations(), 0, "no span is sent");
}

#[test]
fn an_index_this_user_may_not_read_or_write_is_refused_naming_the_file_and_the_fix() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    open_to_every_user(&repo);
    let shown = repo.db.display().to_string();
    // (mode, command, exit code, what the error says)
    let cases: [(u32, &[&str], i32, &str); 4] = [
        (0o444, &["run"], 2, "cannot be written by this user"),
        (
            0o444,
            &["failures", "--requeue-all"],
            2,
            "cannot be written by this user",
        ),
        (0o000, &["status"], 2, "cannot be read by this user"),
        (0o000, &["run"], 2, "cannot be read by this user"),
    ];
    let before = Snapshot::of(&repo);
    for (mode, args, code, says) in cases {
        chmod(&repo.db, mode);
        let ran = enrich_unprivileged(&repo, args);
        let what = format!("`{}` on a {mode:o} index", args.join(" "));
        ran.expect_code(code);
        check_mentions(
            &what,
            &ran.stderr,
            &[
                &shown,
                says,
                "give the user running enrich read and write permission",
            ],
        );
        chmod(&repo.db, 0o666);
        before.check_unchanged(&repo, &what);
    }
    // Reading a file it may not write is fine.
    chmod(&repo.db, 0o444);
    enrich_unprivileged(&repo, &["status"]).expect_code(0);
    chmod(&repo.db, 0o666);
    assert_eq!(server.stats().generations(), 0, "no span is sent");
}

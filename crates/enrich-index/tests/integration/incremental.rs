//! Re-indexing: what stays, what changes, what goes, and what happens to enrichments.

use std::path::Path;

use enrich_db::{Db, DbError, OpenMode, OpenOptions};
use enrich_index::{FileOutcome, IndexError, IndexEvent, IndexOptions, index_repo};

use enrich_types::{file_hash, span_hash};

use crate::support::{Repo, SpanRow, options, summary_of};

const CALC: &str = "\
def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def mul(a, b):
    return a * b
";

const SHAPES: &str = "\
class Square:
    def area(self):
        return self.side ** 2

    def name(self):
        return \"square\"
";

/// `(id, symbol, hash)` of every span, in id order.
fn identities(repo: &Repo) -> Vec<(i64, String, String)> {
    repo.spans(None)
        .into_iter()
        .map(|s| (s.id, s.symbol, s.span_hash))
        .collect()
}

/// A repository with two Python files, indexed, every span enriched.
fn enriched_repo() -> Repo {
    let repo = Repo::with(&[("calc.py", CALC), ("shapes.py", SHAPES)]);
    repo.index();
    let spans = repo.spans(None);
    let hashes: Vec<&str> = spans.iter().map(|s| s.span_hash.as_str()).collect();
    repo.enrich(&hashes);
    repo
}

#[test]
fn an_unchanged_repository_is_read_but_nothing_is_written() {
    let repo = enriched_repo();
    let before = identities(&repo);
    let files_before: Vec<(String, String, f64)> = repo
        .db()
        .indexed_files()
        .expect("files")
        .into_iter()
        .map(|f| (f.file.path, f.file.file_hash, f.file.mtime))
        .collect();
    let report = repo.index();
    assert_eq!(report.files.unchanged, 2, "{report:?}");
    assert_eq!(
        (
            report.files.added,
            report.files.changed,
            report.files.removed
        ),
        (0, 0, 0)
    );
    assert_eq!(report.spans, Default::default());
    assert_eq!(report.orphans, Default::default());
    assert_eq!(identities(&repo), before);
    let files_after: Vec<(String, String, f64)> = repo
        .db()
        .indexed_files()
        .expect("files")
        .into_iter()
        .map(|f| (f.file.path, f.file.file_hash, f.file.mtime))
        .collect();
    assert_eq!(files_after, files_before);
}

#[test]
fn editing_one_function_changes_only_its_span() {
    let repo = enriched_repo();
    let before = repo.spans(Some("calc.py"));
    // `sub` gets one more line, so `mul` moves down a line but keeps its bytes.
    repo.write(
        "calc.py",
        CALC.replace("    return a - b\n", "    diff = a - b\n    return diff\n"),
    );
    let report = repo.index();
    let after = repo.spans(Some("calc.py"));

    assert_eq!(report.files.changed, 1, "{report:?}");
    assert_eq!(report.files.unchanged, 1, "{report:?}");
    assert_eq!(
        (report.spans.added, report.spans.kept, report.spans.removed),
        (1, 2, 1)
    );
    assert_eq!(report.orphans.enrichments_removed, 1);

    let by_symbol = |rows: &[SpanRow], symbol: &str| -> SpanRow {
        rows.iter()
            .find(|s| s.symbol == symbol)
            .cloned()
            .expect("span")
    };
    let (add0, add1) = (by_symbol(&before, "add"), by_symbol(&after, "add"));
    assert_eq!((add1.id, &add1.span_hash), (add0.id, &add0.span_hash));
    let (mul0, mul1) = (by_symbol(&before, "mul"), by_symbol(&after, "mul"));
    assert_eq!((mul1.id, &mul1.span_hash), (mul0.id, &mul0.span_hash));
    assert_eq!(
        (mul1.start_line, mul1.end_line),
        (mul0.start_line + 1, mul0.end_line + 1)
    );
    assert_eq!(mul1.byte_start, mul0.byte_start + 16);
    let (sub0, sub1) = (by_symbol(&before, "sub"), by_symbol(&after, "sub"));
    assert_ne!(sub1.span_hash, sub0.span_hash);

    // The unchanged spans keep their enrichment; the edited one lost it and is pending again.
    for span in [&add1, &mul1] {
        assert_eq!(
            repo.summary(&span.span_hash),
            Some(summary_of(&span.span_hash))
        );
    }
    assert_eq!(repo.summary(&sub0.span_hash), None);
    assert_eq!(repo.summary(&sub1.span_hash), None);
    let pending = repo.db().pending_spans(0, 100).expect("pending");
    let pending: Vec<&str> = pending.iter().map(|p| p.symbol.as_str()).collect();
    assert_eq!(pending, ["sub"]);
    // Every other file's spans are untouched.
    assert_eq!(repo.spans(Some("shapes.py")).len(), 3);
}

#[test]
fn a_deleted_file_goes_with_its_spans_and_their_enrichments() {
    let repo = enriched_repo();
    repo.remove("shapes.py");
    let report = repo.index();
    assert_eq!(
        (report.files.removed, report.spans.removed),
        (1, 3),
        "{report:?}"
    );
    assert_eq!(report.orphans.enrichments_removed, 3);
    assert_eq!(repo.files(), [("calc.py".to_owned(), "python".to_owned())]);
    assert_eq!(repo.count("spans"), 3);
    assert_eq!(repo.count("enrichments"), 3);
}

#[test]
fn a_function_moved_to_another_file_keeps_its_enrichment() {
    // Whether the new file is written before the old one or after it.
    for target in ["aaa.py", "zzz.py"] {
        let repo = enriched_repo();
        let mul = repo.span("calc.py", "mul");
        let (rest, moved) = CALC.split_at(CALC.find("def mul").expect("mul"));
        repo.write("calc.py", rest.trim_end().to_owned() + "\n");
        repo.write(target, moved);
        let report = repo.index();

        let now = repo.span(target, "mul");
        assert_eq!(now.span_hash, mul.span_hash, "{target}");
        assert_eq!(
            repo.summary(&now.span_hash),
            Some(summary_of(&mul.span_hash)),
            "{target}"
        );
        assert_eq!(
            report.orphans.enrichments_removed, 0,
            "{target}: {report:?}"
        );
        assert_eq!(repo.spans(Some("calc.py")).len(), 2, "{target}");
    }
}

#[test]
fn orphans_can_be_kept_and_come_back_with_their_content() {
    let repo = enriched_repo();
    let keep = IndexOptions {
        keep_orphans: true,
        ..options()
    };
    repo.remove("shapes.py");
    let report = repo.index_with(&keep);
    assert_eq!(
        (
            report.orphans.enrichments_kept,
            report.orphans.enrichments_removed
        ),
        (3, 0)
    );
    assert_eq!(repo.count("enrichments"), 6);
    assert_eq!(repo.db().pending_count().expect("pending"), 0);

    repo.write("shapes.py", SHAPES);
    let report = repo.index_with(&keep);
    assert_eq!(
        (report.spans.added, report.orphans.enrichments_kept),
        (3, 0)
    );
    for span in repo.spans(Some("shapes.py")) {
        assert_eq!(
            repo.summary(&span.span_hash),
            Some(summary_of(&span.span_hash))
        );
    }
}

#[test]
fn spans_llmc_indexed_keep_their_rows_and_enrichments() {
    // An index LLMC built: the file with an old file hash (so enrich re-splits it), the span of
    // `add` with LLMC's hash and an enrichment.
    let repo = Repo::with(&[("calc.py", CALC)]);
    drop(repo.db());
    let add = "def add(a, b):\n    return a + b";
    let hash = span_hash("python", add.as_bytes());
    let conn = repo.raw();
    conn.execute(
        "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES ('calc.py', 'python', 'old', 1, 1.0)",
        [],
    )
    .expect("file row");
    conn.execute(
        "INSERT INTO spans (id, file_id, symbol, kind, start_line, end_line, byte_start, byte_end, span_hash)
         VALUES (42, 1, 'add', 'function', 1, 2, 0, ?1, ?2)",
        (add.len(), &hash),
    )
    .expect("span row");
    conn.execute(
        "INSERT INTO enrichments (span_hash, summary) VALUES (?1, 'adds')",
        [&hash],
    )
    .expect("enrichment row");
    drop(conn);

    let report = repo.index();
    assert_eq!(
        (report.files.changed, report.spans.kept, report.spans.added),
        (1, 1, 2)
    );
    let span = repo.span("calc.py", "add");
    assert_eq!((span.id, span.span_hash.as_str()), (42, hash.as_str()));
    assert_eq!(repo.summary(&hash).as_deref(), Some("adds"));
}

#[test]
fn files_llmc_left_unsplit_are_split_and_files_it_split_are_kept() {
    // LLMC stores Rust files without spans (it has no Rust extractor) and splits Python its own
    // way; both with the file hash enrich computes.
    let rust = "fn main() {}\n";
    let repo = Repo::with(&[("main.rs", rust), ("calc.py", CALC)]);
    drop(repo.db());
    let conn = repo.raw();
    for (path, lang, content) in [("main.rs", "rust", rust), ("calc.py", "python", CALC)] {
        conn.execute(
            "INSERT INTO files (path, lang, file_hash, size, mtime) VALUES (?1, ?2, ?3, ?4, 1.0)",
            (path, lang, file_hash(content.as_bytes()), content.len()),
        )
        .expect("file row");
    }
    let llmc_hash = span_hash("python", CALC.as_bytes());
    conn.execute(
        "INSERT INTO spans (file_id, symbol, kind, start_line, end_line, byte_start, byte_end, span_hash)
         VALUES (2, 'calc', 'module', 1, 11, 0, ?1, ?2)",
        (CALC.len(), &llmc_hash),
    )
    .expect("span row");
    drop(conn);

    let report = repo.index();
    assert_eq!(
        (report.files.changed, report.files.unchanged),
        (1, 1),
        "{report:?}"
    );
    let symbols = |path| -> Vec<String> {
        repo.spans(Some(path))
            .into_iter()
            .map(|s| s.symbol)
            .collect()
    };
    assert_eq!(symbols("main.rs"), ["main"]);
    assert_eq!(symbols("calc.py"), ["calc"]);
}

#[test]
fn identical_spans_in_one_file_are_stored_once() {
    let method = "    def name(self):\n        return \"x\"\n";
    let source = format!("class A:\n{method}\n\nclass B:\n{method}");
    let repo = Repo::with(&[("twins.py", source.as_str())]);
    let report = repo.index();
    let symbols: Vec<String> = repo
        .spans(Some("twins.py"))
        .into_iter()
        .map(|s| s.symbol)
        .collect();
    assert_eq!(symbols, ["A", "A.name", "B"]);
    assert_eq!(report.spans.duplicate, 1);
}

#[test]
fn progress_events_come_in_path_order() {
    let repo = Repo::with(&[("b.py", "def b(): pass\n"), ("a.py", "def a(): pass\n")]);
    repo.index();
    repo.write("c.md", "# C\n");
    repo.write("b.py", "def b(): return 1\n");
    let mut events = Vec::new();
    index_repo(&mut repo.db(), repo.root(), &options(), |e| {
        events.push(match *e {
            IndexEvent::Walked { files } => format!("walked {files}"),
            IndexEvent::File {
                path,
                outcome,
                done,
                total,
            } => format!("{done}/{total} {path} {outcome:?}"),
            _ => "other".to_owned(),
        })
    })
    .expect("index");
    let expected = [
        "walked 3".to_owned(),
        format!("1/3 a.py {:?}", FileOutcome::Unchanged),
        format!("2/3 b.py {:?}", FileOutcome::Changed),
        format!("3/3 c.md {:?}", FileOutcome::Added),
    ];
    assert_eq!(events, expected);
}

#[test]
fn threads_and_batch_sizes_do_not_change_the_rows() {
    let files: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("m{i:02}/f.py"),
                format!("def f{i}():\n    return {i}\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let rows = |options: &IndexOptions| {
        let repo = Repo::with(&files);
        repo.index_with(options);
        identities(&repo)
    };
    let one = rows(&IndexOptions {
        threads: 1,
        ..options()
    });
    let many = rows(&IndexOptions {
        threads: 4,
        batch_files: 3,
        ..options()
    });
    assert_eq!(one.len(), 40);
    assert_eq!(one, many);
}

#[test]
fn runs_that_cannot_start_say_why() {
    let repo = Repo::with(&[("a.py", "def a(): pass\n")]);
    let check = |root: &Path, db: &mut Db, options: &IndexOptions| -> IndexError {
        index_repo(db, root, options, |_| {}).expect_err("refused")
    };
    let mut db = repo.db();
    let missing = repo.root().join("missing");
    let err = check(&missing, &mut db, &options());
    assert!(matches!(err, IndexError::Root { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");

    let err = check(&repo.root().join("a.py"), &mut db, &options());
    assert!(matches!(err, IndexError::NotADirectory { .. }), "{err}");

    let zero = IndexOptions {
        window_lines: 0,
        ..options()
    };
    let err = check(repo.root(), &mut db, &zero);
    assert!(
        matches!(
            err,
            IndexError::InvalidOption {
                option: "window_lines",
                ..
            }
        ),
        "{err}"
    );
    drop(db);

    let read_only = OpenOptions {
        mode: OpenMode::ReadOnly,
        ..OpenOptions::default()
    };
    let mut db = Db::open_with(&repo.db_path, &read_only).expect("read-only index");
    let err = check(repo.root(), &mut db, &options());
    assert!(
        matches!(err, IndexError::Db(DbError::ReadOnly { .. })),
        "{err}"
    );
    assert_eq!(repo.count("files"), 0);
}

#[test]
fn the_report_serialises_for_json_output() {
    let repo = Repo::with(&[("a.py", "def a(): pass\n")]);
    let report = repo.index();
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["files"]["added"], 1);
    assert_eq!(json["spans"]["added"], 1);
    assert_eq!(json["orphans"]["enrichments_removed"], 0);
    assert!(json["problems"].as_array().is_some_and(Vec::is_empty));
    assert!(json["elapsed_ms"].is_u64());
}

const LICENSE: &str = "\
Permission is hereby granted, free of charge, to any person obtaining a copy
of this software, to deal in the software without restriction.

The above copyright notice shall be included in all copies.
";

/// The path owning each span hash of the index, in hash order.
fn owners(repo: &Repo) -> Vec<(String, String)> {
    let mut owners: Vec<(String, String)> = repo
        .spans(None)
        .into_iter()
        .map(|s| (s.span_hash, s.path))
        .collect();
    owners.sort();
    owners
}

#[test]
fn identical_files_share_their_spans_with_the_first_path_and_reindexing_changes_nothing() {
    let copies = ["b/LICENSE", "a/LICENSE", "c/UNLICENSE", "LICENSE-MIT"];
    let files: Vec<(&str, &str)> = copies.iter().map(|p| (*p, LICENSE)).collect();
    let repo = Repo::with(&files);
    let first = repo.index();
    assert_eq!(first.files.added, 4, "{first:?}");
    // The smallest path in byte order ("L" sorts before "a") owns every span.
    let spans = repo.spans(None);
    assert!(!spans.is_empty());
    assert!(spans.iter().all(|s| s.path == "LICENSE-MIT"), "{spans:?}");
    assert_eq!(first.spans.moved, 0, "{first:?}");
    assert_eq!(first.spans.shared, 3 * spans.len() as u64, "{first:?}");
    repo.enrich(&[spans[0].span_hash.as_str()]);
    let before = (identities(&repo), owners(&repo));

    // Whatever the threads and batches, every later run changes nothing.
    for (threads, batch_files) in [(1, 1), (4, 2), (2, 256), (1, 256)] {
        let report = repo.index_with(&IndexOptions {
            threads,
            batch_files,
            ..options()
        });
        assert_eq!(
            (
                report.files.added,
                report.files.changed,
                report.files.removed
            ),
            (0, 0, 0),
            "{report:?}"
        );
        assert_eq!(report.files.unchanged, 4, "{report:?}");
        assert_eq!(
            (report.spans.added, report.spans.moved, report.spans.removed),
            (0, 0, 0),
            "{report:?}"
        );
        assert_eq!((identities(&repo), owners(&repo)), before);
    }
    assert_eq!(
        repo.summary(&spans[0].span_hash),
        Some(summary_of(&spans[0].span_hash))
    );

    // The index records what each copy shares, so an unchanged copy is not split again.
    let mut outcomes = Vec::new();
    index_repo(&mut repo.db(), repo.root(), &options(), |e| {
        if let IndexEvent::File { outcome, .. } = e {
            outcomes.push(*outcome);
        }
    })
    .expect("index");
    assert_eq!(outcomes, [FileOutcome::Unchanged; 4]);
}

#[test]
fn when_the_owner_of_shared_spans_goes_the_next_path_owns_them() {
    let repo = Repo::with(&[
        ("a/LICENSE", LICENSE),
        ("b/LICENSE", LICENSE),
        ("c/LICENSE", LICENSE),
    ]);
    repo.index();
    let ids: Vec<i64> = repo.spans(None).iter().map(|s| s.id).collect();
    let hashes: Vec<String> = repo.spans(None).into_iter().map(|s| s.span_hash).collect();
    repo.enrich(&hashes.iter().map(String::as_str).collect::<Vec<_>>());

    // Deleted: the next path takes the rows over, ids and enrichments included.
    repo.remove("a/LICENSE");
    let report = repo.index();
    assert_eq!(report.files.removed, 1, "{report:?}");
    assert_eq!(report.spans.moved, ids.len() as u64, "{report:?}");
    let spans = repo.spans(None);
    assert!(spans.iter().all(|s| s.path == "b/LICENSE"), "{spans:?}");
    assert_eq!(spans.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
    assert_eq!(report.orphans.enrichments_removed, 0, "{report:?}");

    // Edited so that it no longer holds the content: the next path takes the rows over, ids and
    // enrichments included, without being split again itself.
    repo.write("b/LICENSE", "Another licence altogether.\n");
    let report = repo.index();
    assert_eq!(
        (
            report.files.changed,
            report.files.unchanged,
            report.spans.moved
        ),
        (1, 1, ids.len() as u64),
        "{report:?}"
    );
    let taken: Vec<i64> = repo.spans(Some("c/LICENSE")).iter().map(|s| s.id).collect();
    assert_eq!(taken, ids);
    for hash in &hashes {
        assert_eq!(repo.summary(hash), Some(summary_of(hash)));
    }

    // A new copy with a smaller path takes them over once; then nothing moves.
    repo.write("0/LICENSE", LICENSE);
    let report = repo.index();
    assert_eq!(report.spans.moved, ids.len() as u64, "{report:?}");
    assert_eq!(repo.spans(Some("0/LICENSE")).len(), ids.len());
    let report = repo.index();
    assert_eq!(
        (report.files.changed, report.spans.moved),
        (0, 0),
        "{report:?}"
    );
}

const SHARED_FN: &str = "def shared(x):\n    return x * 2\n";

/// `a.py`, `b.py` and `c.py`, each with `shared` and a function of its own (`c.py` with its own
/// first, so its `shared` sits lower), indexed, every span enriched.
fn copies_repo() -> Repo {
    let a = format!("{SHARED_FN}\n\ndef only_a():\n    return 1\n");
    let b = format!("{SHARED_FN}\n\ndef only_b():\n    return 2\n");
    let c = format!("def only_c():\n    return 3\n\n\n{SHARED_FN}");
    let repo = Repo::with(&[("a.py", &a), ("b.py", &b), ("c.py", &c)]);
    repo.index();
    let hashes: Vec<String> = repo.spans(None).into_iter().map(|s| s.span_hash).collect();
    repo.enrich(&hashes.iter().map(String::as_str).collect::<Vec<_>>());
    repo
}

/// How the owner of a shared span lets go of it, and which run notices.
#[derive(Debug, Clone, Copy)]
enum LetGo {
    Deleted,
    Edited,
}

/// The owner `a.py` lets go of `shared` as `how` says, then the run `index` (all, or the paths
/// given) runs: the unchanged `b.py` takes the row over (same id, same enrichment, its own
/// position), and so does `c.py` when `b.py` goes in turn; nothing else is written.
fn check_takeover(how: LetGo, index: impl Fn(&Repo, &str) -> enrich_index::IndexReport) {
    let repo = copies_repo();
    let before = repo.span("a.py", "shared");
    let only_b = repo.span("b.py", "only_b");
    match how {
        LetGo::Deleted => repo.remove("a.py"),
        LetGo::Edited => repo.write("a.py", "def only_a():\n    return 1\n"),
    }
    let report = index(&repo, "a.py");
    let after = repo.span("b.py", "shared");
    assert_eq!(after.id, before.id, "{how:?}: the row is taken over");
    assert_eq!((after.start_line, after.byte_start), (1, 0), "{how:?}");
    assert_eq!(
        repo.summary(&before.span_hash),
        Some(summary_of(&before.span_hash)),
        "{how:?}: the enrichment stays"
    );
    assert_eq!(repo.span("b.py", "only_b"), only_b, "{how:?}");
    // Deleted, `a.py` takes the enrichment of `only_a` with it.
    let (changed, removed) = match how {
        LetGo::Deleted => (0, 1),
        LetGo::Edited => (1, 0),
    };
    assert_eq!(
        (
            report.files.changed,
            report.files.removed,
            report.spans.moved,
            report.orphans.enrichments_removed
        ),
        (changed, removed, 1, removed),
        "{how:?}: {report:?}"
    );

    // Indexing again changes nothing.
    let again = repo.index();
    assert_eq!(
        (
            again.files.added,
            again.files.changed,
            again.spans.moved,
            again.spans.added
        ),
        (0, 0, 0, 0),
        "{how:?}: {again:?}"
    );

    // The next owner goes: the next path takes it over in turn, at its own line.
    repo.remove("b.py");
    index(&repo, "b.py");
    let last = repo.span("c.py", "shared");
    assert_eq!((last.id, last.start_line), (before.id, 5), "{how:?}");
    assert_eq!(
        repo.summary(&before.span_hash),
        Some(summary_of(&before.span_hash))
    );
}

#[test]
fn an_unchanged_file_takes_over_shared_spans_its_owner_lets_go_of() {
    for how in [LetGo::Deleted, LetGo::Edited] {
        check_takeover(how, |repo, _| repo.index());
    }
}

#[test]
fn an_unchanged_file_takes_over_shared_spans_when_only_the_owner_s_path_is_reindexed() {
    for how in [LetGo::Deleted, LetGo::Edited] {
        check_takeover(how, |repo, path| repo.index_paths(&[path]));
    }
}

#[test]
fn a_copy_takes_over_when_the_owner_is_deleted_and_only_its_path_is_reindexed() {
    let repo = Repo::with(&[("a/LICENSE", LICENSE), ("b/LICENSE", LICENSE)]);
    repo.index();
    let before = repo.spans(None);
    let hashes: Vec<&str> = before.iter().map(|s| s.span_hash.as_str()).collect();
    repo.enrich(&hashes);

    repo.remove("a/LICENSE");
    let report = repo.index_paths(&["a/LICENSE"]);
    assert_eq!(
        (
            report.files.removed,
            report.spans.moved,
            report.spans.removed
        ),
        (1, before.len() as u64, 0),
        "{report:?}"
    );
    let after = repo.spans(None);
    assert!(after.iter().all(|s| s.path == "b/LICENSE"), "{after:?}");
    let ids = |spans: &[SpanRow]| spans.iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before));
    for hash in hashes {
        assert_eq!(repo.summary(hash), Some(summary_of(hash)));
    }
}

#[test]
fn the_announced_file_count_is_the_summary_s() {
    let repo = Repo::with(&[("a.py", "def a(): pass\n"), ("c.py", "def c(): pass\n")]);
    repo.write("b.txt", "x".repeat(200));
    let small = IndexOptions {
        max_file_bytes: 100,
        ..options()
    };
    let mut announced = None;
    let mut files = Vec::new();
    let report = index_repo(&mut repo.db(), repo.root(), &small, |e| match *e {
        IndexEvent::Walked { files } => announced = Some(files),
        IndexEvent::File {
            path,
            outcome,
            done,
            total,
        } => files.push((path.to_owned(), outcome, done, total)),
        _ => {}
    })
    .expect("index");
    assert_eq!(announced, Some(report.files.seen), "{report:?}");
    assert_eq!((report.files.seen, report.files.too_large), (3, 1));
    assert_eq!(
        files,
        [
            ("a.py".to_owned(), FileOutcome::Added, 1, 3),
            ("b.txt".to_owned(), FileOutcome::TooLarge, 2, 3),
            ("c.py".to_owned(), FileOutcome::Added, 3, 3),
        ]
    );
}

/// Every indexed path, in order.
fn paths(repo: &Repo) -> Vec<String> {
    repo.files().into_iter().map(|(path, _)| path).collect()
}

#[test]
fn indexing_paths_updates_adds_and_removes_exactly_those_files() {
    let repo = enriched_repo();
    repo.write("notes.txt", "kept out: not named\n");
    repo.write("calc.py", CALC.replace("a * b", "b * a"));
    repo.write("shapes.py", SHAPES.replace("square", "squared"));
    repo.write("new.py", "def fresh():\n    return 1\n");
    let mul = repo.span("calc.py", "mul");
    let add = repo.span("calc.py", "add");

    let report = repo.index_paths(&["calc.py", "new.py", "gone.py"]);
    assert_eq!(
        (report.files.seen, report.files.added, report.files.changed),
        (2, 1, 1),
        "{report:?}"
    );
    assert_eq!(
        (report.spans.added, report.spans.removed),
        (2, 1),
        "{report:?}"
    );
    assert_eq!(paths(&repo), ["calc.py", "new.py", "shapes.py"]);
    assert_ne!(repo.span("calc.py", "mul").span_hash, mul.span_hash);
    assert_eq!(
        repo.span("calc.py", "add"),
        add,
        "an unchanged span keeps its row"
    );
    assert_eq!(
        repo.summary(&mul.span_hash),
        None,
        "the old span's enrichment went"
    );
    assert!(
        !repo
            .spans(Some("shapes.py"))
            .iter()
            .any(|s| s.span_hash
                != span_hash("python", &SHAPES.as_bytes()[s.byte_start..s.byte_end])),
        "shapes.py changed on disk but was not named: its rows are as before"
    );

    repo.remove("new.py");
    let report = repo.index_paths(&["new.py"]);
    assert_eq!(
        (report.files.removed, report.spans.removed),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(paths(&repo), ["calc.py", "shapes.py"]);
}

#[test]
fn indexing_paths_honours_the_walks_rules() {
    let repo = Repo::with(&[
        (".gitignore", "build/\n*.log\n"),
        ("src/app.py", "def run():\n    return 1\n"),
    ]);
    repo.index();
    assert_eq!(paths(&repo), ["src/app.py"]);
    for (path, content) in [
        ("build/out.py", "def built():\n    return 2\n"),
        ("debug.log", "a log line\n"),
        (".hidden.py", "def hidden():\n    return 3\n"),
        (".llmc/rag/notes.md", "# Not indexed\n"),
        (".git/config.py", "def git():\n    return 4\n"),
        ("package-lock.json", "{}\n"),
    ] {
        repo.write(path, content);
        let report = repo.index_paths(&[path]);
        assert_eq!(report.files.seen, 0, "{path}: {report:?}");
    }
    // Named by their absolute path, the outside and the root's parent are not the repository.
    let outside = repo.root().parent().expect("parent").join("elsewhere.py");
    std::fs::write(&outside, "def outside():\n    return 5\n").expect("write");
    let report = index_paths_abs(&repo, &[outside]);
    assert_eq!(report.files.seen, 0, "{report:?}");
    assert_eq!(paths(&repo), ["src/app.py"]);

    // An absolute path inside the repository is taken; a binary file is skipped.
    repo.write("src/blob.py", b"\0\0binary".as_slice());
    let report = index_paths_abs(
        &repo,
        &[
            repo.root().join("src/blob.py"),
            repo.root().join("src/app.py"),
        ],
    );
    assert_eq!(
        (report.files.binary, report.files.unchanged),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(paths(&repo), ["src/app.py"]);
}

/// [`index_paths`] with absolute paths.
fn index_paths_abs(repo: &Repo, paths: &[std::path::PathBuf]) -> enrich_index::IndexReport {
    enrich_index::index_paths(&mut repo.db(), repo.root(), paths, &options(), |_| {})
        .expect("index paths")
}

#[test]
fn a_directory_or_an_ignore_file_stands_for_what_is_under_it() {
    let repo = Repo::with(&[
        ("old/a.py", "def a():\n    return 1\n"),
        ("old/deep/b.py", "def b():\n    return 2\n"),
        ("lib/c.py", "def c():\n    return 3\n"),
    ]);
    repo.index();
    // `mv old new`: the watcher reports both directories.
    std::fs::rename(repo.root().join("old"), repo.root().join("new")).expect("rename");
    let report = repo.index_paths(&["old", "new"]);
    assert_eq!(
        (report.files.added, report.files.removed),
        (2, 2),
        "{report:?}"
    );
    assert_eq!(paths(&repo), ["lib/c.py", "new/a.py", "new/deep/b.py"]);
    assert_eq!(
        report.spans.moved, 2,
        "the spans moved with their files: {report:?}"
    );

    // A new ignore rule takes the files it hides out; dropping it brings them back.
    repo.write("new/.ragignore", "deep/\n");
    let report = repo.index_paths(&["new/.ragignore"]);
    assert_eq!(report.files.removed, 1, "{report:?}");
    assert_eq!(paths(&repo), ["lib/c.py", "new/a.py"]);
    repo.remove("new/.ragignore");
    repo.index_paths(&["new/.ragignore"]);
    assert_eq!(paths(&repo), ["lib/c.py", "new/a.py", "new/deep/b.py"]);

    // The root is the whole repository.
    repo.remove("lib/c.py");
    let report = index_paths_abs(&repo, &[repo.root().to_path_buf()]);
    assert_eq!(report.files.removed, 1, "{report:?}");
    assert_eq!(paths(&repo), ["new/a.py", "new/deep/b.py"]);
}

#[test]
fn indexing_paths_that_changed_nothing_leaves_orphans_alone() {
    let repo = enriched_repo();
    repo.remove("calc.py");
    let kept = repo.index_with(&IndexOptions {
        keep_orphans: true,
        ..options()
    });
    assert_eq!(kept.orphans.enrichments_kept, 3, "{kept:?}");
    let enrichments = repo.count("enrichments");

    let report = repo.index_paths(&["shapes.py", ".git/index"]);
    assert_eq!(report.files.unchanged, 1, "{report:?}");
    assert_eq!(report.orphans, Default::default(), "not even counted");
    assert_eq!(repo.count("enrichments"), enrichments);

    // A run that writes cleans up as `index_repo` does: calc.py's 3, and the 2 spans of
    // shapes.py whose text changed.
    repo.write("shapes.py", SHAPES.replace("square", "squared"));
    let report = repo.index_paths(&["shapes.py"]);
    assert_eq!(report.orphans.enrichments_removed, 5, "{report:?}");
    assert_eq!(repo.count("enrichments"), enrichments - 5);
}

//! Reading span source from the repository, and refusing paths that leave it.

use std::fs;

use enrich_db::{DbError, PendingSpan, SourceReader};

use crate::support::Fixture;

fn span(path: &str, byte_start: u64, byte_end: u64) -> PendingSpan {
    PendingSpan {
        id: 1,
        span_hash: "sha256:x".to_owned(),
        file_path: path.to_owned(),
        lang: "python".to_owned(),
        symbol: "f".to_owned(),
        kind: "function".to_owned(),
        start_line: 1,
        end_line: 1,
        byte_start,
        byte_end,
        slice_type: None,
        slice_language: None,
        classifier_confidence: None,
        file_mtime: 0.0,
        renewal: false,
    }
}

#[test]
fn the_source_is_the_span_byte_range_decoded_lossily() {
    let fixture = Fixture::llmc();
    let source = "def a(): pass\ndef b(): return 'é'\n";
    let hashes = fixture.index_file("pkg/m.py", "python", source);
    let db = fixture.db();
    let second = db.span_by_hash(&hashes[1]).expect("read").expect("span");
    assert_eq!(
        second.read_source(&fixture.repo).expect("source"),
        "def b(): return 'é'\n"
    );
    // Cutting a multi-byte character in half yields U+FFFD, not an error.
    let end = u64::try_from(source.find('é').expect("é") + 1).expect("offset");
    let cut = span("pkg/m.py", 14, end);
    assert_eq!(
        cut.read_source(&fixture.repo).expect("source"),
        "def b(): return '\u{FFFD}"
    );
}

#[test]
fn paths_that_leave_the_repo_are_refused() {
    let fixture = Fixture::llmc();
    fixture.index_file("inside.py", "python", "x = 1\n");
    let outside = fixture.repo.parent().expect("parent").join("secret.txt");
    fs::write(&outside, "password = hunter2\n").expect("outside file");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, fixture.repo.join("link.txt")).expect("symlink");

    let check = |path: &str, expected: fn(&DbError) -> bool| {
        let err = span(path, 0, 4).read_source(&fixture.repo).expect_err(path);
        assert!(expected(&err), "{path}: {err}");
        assert!(!err.to_string().contains("hunter2"));
    };
    let escapes = |e: &DbError| matches!(e, DbError::SpanPathEscapes { .. });
    check("../secret.txt", escapes);
    check("sub/../../secret.txt", escapes);
    check(&outside.display().to_string(), |e| {
        matches!(e, DbError::AbsoluteSpanPath { .. })
    });
    #[cfg(unix)]
    check("link.txt", escapes);
}

#[test]
fn a_missing_file_or_a_range_past_its_end_names_the_file() {
    let fixture = Fixture::llmc();
    fixture.index_file("short.py", "python", "x = 1\n");
    let err = span("gone.py", 0, 1)
        .read_source(&fixture.repo)
        .expect_err("missing");
    assert!(matches!(err, DbError::SourceIo { .. }), "{err}");
    assert!(err.to_string().contains("gone.py"), "{err}");

    for (start, end) in [(0, 7), (5, 3)] {
        let err = span("short.py", start, end)
            .read_source(&fixture.repo)
            .expect_err("out of range");
        assert!(
            matches!(err, DbError::SpanOutOfRange { len: 6, .. }),
            "{start}..{end}: {err}"
        );
        assert!(err.to_string().contains("short.py"), "{err}");
    }
}

#[test]
fn a_source_reader_reads_what_read_source_reads_and_applies_the_same_refusals() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("pkg/m.py", "python", "def a(): pass\ndef b(): pass\n");
    let reader = SourceReader::new(&fixture.repo).expect("reader");
    assert_eq!(
        reader.root(),
        fixture.repo.canonicalize().expect("canonical")
    );
    let db = fixture.db();
    for hash in &hashes {
        let span = db.span_by_hash(hash).expect("read").expect("span");
        // Twice: resolved, then remembered.
        for _ in 0..2 {
            assert_eq!(
                reader.read(&span).expect("source"),
                span.read_source(&fixture.repo).expect("source")
            );
        }
    }
    let outside = fixture.repo.parent().expect("parent").join("secret.txt");
    fs::write(&outside, "password = hunter2\n").expect("outside file");
    for path in ["../secret.txt", outside.to_str().expect("utf-8")] {
        let err = reader.read(&span(path, 0, 4)).expect_err(path);
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    let err = reader.read(&span("gone.py", 0, 1)).expect_err("missing");
    assert!(err.to_string().contains("gone.py"), "{err}");
    assert!(SourceReader::new(&fixture.repo.join("no-such-dir")).is_err());
}

/// A file the reader resolved before, then replaced by a symlink out of the repository (the
/// file itself, or a directory above it), is resolved again and refused.
#[cfg(unix)]
#[test]
fn a_source_reader_notices_a_remembered_path_now_leading_out_of_the_repo() {
    use std::os::unix::fs::symlink;

    let fixture = Fixture::llmc();
    let outside = fixture.repo.parent().expect("parent").join("elsewhere");
    fs::create_dir_all(outside.join("pkg")).expect("outside dir");
    fs::write(outside.join("pkg/m.py"), "password = hunter2\n").expect("outside file");
    fs::write(outside.join("m.py"), "password = hunter2\n").expect("outside file");
    fs::create_dir_all(fixture.repo.join("pkg")).expect("pkg");
    let reader = SourceReader::new(&fixture.repo).expect("reader");
    let refused = |path: &str| {
        let err = reader.read(&span(path, 0, 8)).expect_err(path);
        assert!(matches!(err, DbError::SpanPathEscapes { .. }), "{err}");
    };

    // The file becomes a symlink.
    fs::write(fixture.repo.join("pkg/m.py"), "x = 1\n# pad\n").expect("file");
    assert_eq!(reader.read(&span("pkg/m.py", 0, 5)).expect("read"), "x = 1");
    fs::remove_file(fixture.repo.join("pkg/m.py")).expect("remove");
    symlink(outside.join("m.py"), fixture.repo.join("pkg/m.py")).expect("symlink");
    refused("pkg/m.py");

    // A directory above it becomes a symlink.
    fs::write(fixture.repo.join("sub.py"), "y = 2\n# pad\n").expect("file");
    fs::create_dir_all(fixture.repo.join("lib/pkg")).expect("lib");
    fs::write(fixture.repo.join("lib/pkg/m.py"), "z = 3\n# pad\n").expect("file");
    assert_eq!(
        reader.read(&span("lib/pkg/m.py", 0, 5)).expect("read"),
        "z = 3"
    );
    fs::remove_dir_all(fixture.repo.join("lib")).expect("remove");
    symlink(&outside, fixture.repo.join("lib")).expect("symlink");
    refused("lib/pkg/m.py");
}

/// The reader keeps recent files open; a file saved again meanwhile is read as it is now,
/// whether the editor rewrote it in place or put a new file in its place.
#[test]
fn a_source_reader_reads_a_file_saved_again_meanwhile() {
    let fixture = Fixture::llmc();
    let reader = SourceReader::new(&fixture.repo).expect("reader");
    let file = fixture.repo.join("m.py");
    fs::write(&file, "a = 1\n").expect("file");
    assert_eq!(reader.read(&span("m.py", 0, 5)).expect("read"), "a = 1");

    fs::write(&file, "b = 2\n").expect("rewrite in place");
    assert_eq!(reader.read(&span("m.py", 0, 5)).expect("read"), "b = 2");

    let saved = fixture.repo.join("m.py.tmp");
    fs::write(&saved, "c = 3\n# longer\n").expect("new file");
    fs::rename(&saved, &file).expect("replace");
    assert_eq!(reader.read(&span("m.py", 6, 14)).expect("read"), "# longer");

    fs::write(&file, "d\n").expect("shrink");
    let err = reader
        .read(&span("m.py", 0, 5))
        .expect_err("beyond the end");
    assert!(
        matches!(err, DbError::SpanOutOfRange { len: 2, .. }),
        "{err}"
    );
}

/// Files the reader keeps open are closed on request: nothing stays open between runs.
#[cfg(target_os = "linux")]
#[test]
fn a_source_reader_closes_the_files_it_keeps_open() {
    let fixture = Fixture::llmc();
    let reader = SourceReader::new(&fixture.repo).expect("reader");
    fs::write(fixture.repo.join("m.py"), "a = 1\n").expect("file");
    let file = fixture.repo.join("m.py").canonicalize().expect("canonical");
    let open_here = || {
        fs::read_dir("/proc/self/fd")
            .expect("fds")
            .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
            .filter(|target| *target == file)
            .count()
    };

    assert_eq!(reader.read(&span("m.py", 0, 5)).expect("read"), "a = 1");
    assert_eq!(open_here(), 1, "kept open for the next span");
    reader.close_files();
    assert_eq!(open_here(), 0);
    assert_eq!(reader.read(&span("m.py", 0, 5)).expect("read"), "a = 1");
}

/// A span far longer than its caller can use is read only up to the limit: a 50 MB span costs
/// the limit's bytes, not 50 MB.
#[test]
fn a_prefix_of_a_huge_span_reads_only_the_limit() {
    const SPAN: u64 = 50 * 1024 * 1024;
    const LIMIT: u64 = 24 * 1024 + 4;
    let fixture = Fixture::llmc();
    let file = fs::File::create(fixture.repo.join("huge.txt")).expect("file");
    // Sparse: 50 MB of zero bytes without writing them.
    file.set_len(SPAN).expect("length");
    let reader = SourceReader::new(&fixture.repo).expect("reader");
    let source = reader
        .read_prefix(&span("huge.txt", 0, SPAN), LIMIT)
        .expect("read");
    assert_eq!(source.read_bytes, LIMIT);
    assert_eq!(source.span_bytes, SPAN);
    assert_eq!(source.text.len() as u64, LIMIT);
    assert!(!source.is_whole());

    // A short span is read whole; a character the limit cuts is replaced, not split.
    fs::write(fixture.repo.join("m.py"), "é = 1\n").expect("file");
    let whole = reader.read_prefix(&span("m.py", 0, 7), 100).expect("read");
    assert_eq!((whole.text.as_str(), whole.is_whole()), ("é = 1\n", true));
    let cut = reader.read_prefix(&span("m.py", 0, 7), 1).expect("read");
    assert_eq!((cut.text.as_str(), cut.read_bytes), ("\u{fffd}", 1));
    // The range is still checked against the file, whatever the limit.
    assert!(reader.read_prefix(&span("m.py", 0, 70), 1).is_err());
}

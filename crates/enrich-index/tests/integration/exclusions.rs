//! What the index leaves out by rule, and says so: files that hold secrets, enrich's and LLMC's
//! own files, `[enrichment.index] exclude` and `include`; and the spans it keeps that carry a
//! secret, which a run redacts.

use enrich_index::{IndexOptions, SkipReason};

use crate::support::{Repo, options};

/// A fake private key: a PEM block with a body no test writes twice.
fn fake_key() -> String {
    let body: Vec<String> = (0..6)
        .map(|i| {
            format!(
                "{:0>64}",
                format!("{:x}", 0x5eed_u64.wrapping_mul(i + 7919))
            )
        })
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body.join("\n")
    )
}

/// The (path, reason) pairs of a report's skipped files.
fn skipped(report: &enrich_index::IndexReport) -> Vec<(&str, SkipReason)> {
    report
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason))
        .collect()
}

#[test]
fn files_that_hold_secrets_are_not_indexed_and_are_named() {
    let key = fake_key();
    let repo = Repo::with(&[
        ("src/app.py", "def run():\n    return 1\n"),
        ("tests/certs/server.key", &key),
        ("tests/certs/ca-private.key", &key),
        ("tests/certs/client.pem", &key),
        ("deploy/keystore.P12", "binaryish"),
        ("home/.ssh/id_rsa", &key),
        (".env", "TOKEN=abc\n"),
        ("config/.env.production", "TOKEN=abc\n"),
        (".npmrc", "//registry.npmjs.org/:_authToken=abc\n"),
        ("ci/.pypirc", "[pypi]\n"),
        (".netrc", "machine x login y password z\n"),
        ("gcp/credentials-prod.json", "{}\n"),
        (".aws/credentials", "[default]\n"),
        ("kubeconfig", "apiVersion: v1\n"),
        // Hidden and not a secret: skipped silently, as before.
        (".editorconfig", "root = true\n"),
    ]);
    let report = repo.index();
    assert_eq!(
        repo.files(),
        [("src/app.py".to_owned(), "python".to_owned())]
    );
    let mut secret: Vec<&str> = skipped(&report)
        .into_iter()
        .filter(|(_, reason)| *reason == SkipReason::Secret)
        .map(|(path, _)| path)
        .collect();
    secret.sort_unstable();
    assert_eq!(
        secret,
        [
            ".env",
            ".netrc",
            ".npmrc",
            "ci/.pypirc",
            "config/.env.production",
            "deploy/keystore.P12",
            "gcp/credentials-prod.json",
            "kubeconfig",
            "tests/certs/ca-private.key",
            "tests/certs/client.pem",
            "tests/certs/server.key",
        ],
        "hidden directories (.aws, home/.ssh) are not walked at all"
    );
    assert_eq!(report.files.secret, 11);
    assert_eq!(repo.count("spans"), 1);
}

#[test]
fn include_and_exclude_change_the_defaults_and_a_newly_excluded_file_goes() {
    let key = fake_key();
    let repo = Repo::with(&[
        ("tests/fixtures/server.pem", &key),
        ("tests/certs/other.pem", &key),
        ("gen/schema.py", "def schema():\n    return {}\n"),
        ("src/lib.py", "def lib():\n    return 2\n"),
    ]);
    let first = IndexOptions {
        include: vec!["tests/fixtures/*.pem".to_owned()],
        ..options()
    };
    let report = repo.index_with(&first);
    let paths: Vec<String> = repo.files().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        ["gen/schema.py", "src/lib.py", "tests/fixtures/server.pem"]
    );
    assert_eq!(
        skipped(&report),
        [("tests/certs/other.pem", SkipReason::Secret)]
    );
    // An included secret file is indexed, and its key is still found in its span.
    assert_eq!(report.spans.with_secrets, 1);
    assert_eq!(report.secret_spans[0].path, "tests/fixtures/server.pem");
    assert_eq!(report.secret_spans[0].rules, ["private-key"]);

    let second = IndexOptions {
        exclude: vec!["gen/**".to_owned(), "*.PEM".to_owned()],
        ..options()
    };
    let report = repo.index_with(&second);
    let paths: Vec<String> = repo.files().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["src/lib.py"]);
    assert_eq!(report.files.removed, 2);
    assert_eq!(
        skipped(&report),
        [
            ("gen/schema.py", SkipReason::Excluded),
            ("tests/certs/other.pem", SkipReason::Secret),
            ("tests/fixtures/server.pem", SkipReason::Secret),
        ]
    );
    assert_eq!((report.files.secret, report.files.excluded), (2, 1));

    let bad = IndexOptions {
        exclude: vec!["a/[b".to_owned()],
        ..options()
    };
    let err = enrich_index::index_repo(&mut repo.db(), repo.root(), &bad, |_| {})
        .expect_err("a bad glob");
    assert!(err.to_string().contains("invalid glob \"a/[b\""), "{err}");
}

#[test]
fn enrich_s_and_llmc_s_own_files_are_never_indexed() {
    let events = "{\"type\":\"run_started\",\"at_ms\":1,\"run_id\":1,\"total_pending\":3}\n\
                  {\"type\":\"span_started\",\"at_ms\":2,\"run_id\":1}\n";
    let repo = Repo::with(&[
        ("src/app.py", "def run():\n    return 1\n"),
        ("enrich.toml", "[enrichment]\nbatch_size = 5\n"),
        ("llmc.toml", "[enrichment]\nbatch_size = 5\n"),
        ("logs/enrichment_events.jsonl", events),
        ("logs/enrichment_events.jsonl.1", events),
        ("logs/enrichment_events.2.jsonl", events),
        // An event log at a path of its own (`enrich run --events`) is known by its content.
        ("out/my-run.log", events),
        (".rag/index.json", "{}\n"),
        ("data/index.db", "not indexed: named in own_files\n"),
        ("data/index.db-wal", "not indexed: named in own_files\n"),
        ("Cargo.lock", "version = 3\n"),
        // JSON lines of someone else's are data to describe.
        ("data/rows.jsonl", "{\"type\":\"row\",\"id\":1}\n"),
    ]);
    let opts = IndexOptions {
        own_files: vec![
            repo.root().join("data/index.db"),
            repo.root().join("data/index.db-wal"),
            repo.root().join("data/index.db-shm"),
        ],
        ..options()
    };
    let report = repo.index_with(&opts);
    let paths: Vec<String> = repo.files().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["data/rows.jsonl", "src/app.py"]);
    assert_eq!(
        skipped(&report),
        [
            ("Cargo.lock", SkipReason::Generated),
            ("data/index.db", SkipReason::Own),
            ("data/index.db-wal", SkipReason::Own),
            ("enrich.toml", SkipReason::Own),
            ("llmc.toml", SkipReason::Own),
            ("logs/enrichment_events.2.jsonl", SkipReason::Own),
            ("logs/enrichment_events.jsonl", SkipReason::Own),
            ("logs/enrichment_events.jsonl.1", SkipReason::Own),
            ("out/my-run.log", SkipReason::Own),
        ]
    );
    assert_eq!((report.files.own, report.files.generated), (8, 1));
    // The log keeps growing: still never indexed, and nothing changes.
    repo.write("logs/enrichment_events.jsonl", format!("{events}{events}"));
    let again = repo.index_with(&opts);
    assert_eq!((again.files.added, again.files.unchanged), (0, 2));
}

#[test]
fn spans_with_secrets_are_reported_by_rule_and_line_and_doc_hints_are_redacted() {
    let aws = format!("AKIA{}", "QX7Z2KD5MW3RT6YB");
    let github = format!("ghp_{}", "x9K2mQ7vL4pR8tZ1wB6nD3fH5jY0cA2sE4gU");
    let source = format!(
        "def connect():\n    \"\"\"Uses key {aws}.\"\"\"\n    return 1\n\n\ndef token():\n    return \"{github}\"\n\n\ndef clean():\n    return 3\n"
    );
    let repo = Repo::with(&[("src/client.py", &source)]);
    let report = repo.index();
    let found: Vec<(String, u32, u32, Vec<&str>)> = report
        .secret_spans
        .iter()
        .map(|s| (s.path.clone(), s.start_line, s.end_line, s.rules.clone()))
        .collect();
    assert_eq!(
        found,
        [
            ("src/client.py".to_owned(), 1, 3, vec!["aws-access-key"]),
            ("src/client.py".to_owned(), 6, 7, vec!["github-pat"]),
        ]
    );
    assert_eq!(report.spans.with_secrets, 2);
    let connect = repo.span("src/client.py", "connect");
    let hint = connect.doc_hint.expect("a doc hint");
    assert!(!hint.contains(&aws), "{hint}");
    assert!(hint.contains("[REDACTED:aws-access-key]"), "{hint}");
    // Unchanged files are not split again, so not reported again.
    assert!(repo.index().secret_spans.is_empty());
}

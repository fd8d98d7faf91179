//! What the reliability tests (crash, faults, bad input, secrets) share: a bigger repository,
//! a seeded random source, and the invariants an index must keep whatever happened to the runs
//! that wrote it.

use std::collections::BTreeMap;

use enrich_backends::{SpanIdentity, ValidationContext, parse_and_validate};
use serde_json::{Value, json};

use std::time::Duration;

use enrich_testkit::FakeOllamaConfig;

use super::support::{Server, TestRepo, config};

/// A repository of 307 spans (30 Python files of 10 functions, and the fixture's 7) and a fake
/// with four slots at 20 ms (about 200 spans a second, so a run lasts about 1.5 s: long enough
/// to be killed, locked out or joined in the middle), as backend `fake` with
/// `max_in_flight = 4` and `timeout_seconds`, `concurrency = 4`, `batch_size = 8`, plus `extra`
/// lines in `[enrichment]`.
pub(crate) fn busy_repo(timeout_seconds: u32, extra: &str) -> (TestRepo, Server) {
    let server = Server::start(
        FakeOllamaConfig::default()
            .with_latency(Duration::from_millis(20))
            .with_capacity(4, 64)
            .with_recording(false),
    );
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 30, 10);
    let mut toml = config(
        &[("fake", server.url())],
        &format!("concurrency = 4\nbatch_size = 8\n{extra}"),
    )
    .replace(
        "timeout_seconds = 20",
        &format!("timeout_seconds = {timeout_seconds}"),
    );
    toml.push_str("options = { max_in_flight = 4 }\n");
    repo.write_config(&toml);
    (repo, server)
}

/// Adds `files` Python files of `per_file` three-line functions each to the repository and
/// its index (every function a span with its own content, so its own hash).
pub(crate) fn add_python_files(repo: &mut TestRepo, files: usize, per_file: usize) {
    for file in 0..files {
        let mut text = String::new();
        let mut spans = Vec::new();
        for function in 0..per_file {
            let start = u32::try_from(4 * function + 1).expect("small");
            text.push_str(&format!(
                "def f_{file}_{function}(x):\n    \"\"\"Scales x for case {function} of file {file}.\"\"\"\n    return x * {function} + {file}\n\n"
            ));
            spans.push(("generated", "function", start, start + 2));
        }
        repo.add_file(
            &format!("pkg/mod_{file:03}.py"),
            "python",
            text.as_bytes(),
            &spans,
        );
    }
}

/// SplitMix64: a few lines of well-known generator for the seeded random choices of the crash
/// test, so the tests package needs no random-number crate for them.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator whose choices `seed` fixes.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `PRAGMA integrity_check`'s verdict on the index: `["ok"]` when it is sound.
pub(crate) fn integrity(repo: &TestRepo) -> Vec<String> {
    let conn = repo.raw();
    let mut stmt = conn.prepare("PRAGMA integrity_check").expect("prepare");
    stmt.query_map([], |row| row.get::<_, String>(0))
        .expect("integrity_check")
        .map(|row| row.expect("row"))
        .collect()
}

/// Every stored enrichment passes enrich-backends' enrichment.v1 validation for its span's
/// lines (the validator the pipeline itself runs on a model's reply, here run on the row as
/// LLMC reads it back), and is a fixed point of it: validating the stored fields changes none of
/// them, so what is stored is exactly a validated enrichment. Also `schema_ver`, a model and a
/// Unix-seconds `created_at`. Returns the number of rows.
pub(crate) fn check_stored_enrichments_are_valid(repo: &TestRepo) -> usize {
    let conn = repo.raw();
    let mut stmt = conn
        .prepare(
            "SELECT e.span_hash, s.start_line, s.end_line, e.summary, e.inputs, e.outputs,
                    e.side_effects, e.pitfalls, e.usage_snippet, e.evidence, e.schema_ver,
                    e.model, e.created_at
             FROM enrichments AS e JOIN spans AS s ON s.span_hash = e.span_hash",
        )
        .expect("prepare");
    let mut rows = stmt.query([]).expect("query");
    let mut checked = 0;
    while let Some(row) = rows.next().expect("row") {
        let hash: String = row.get(0).expect("span_hash");
        let (start, end): (u32, u32) = (row.get(1).expect("start"), row.get(2).expect("end"));
        let text = |i: usize| row.get::<_, Option<String>>(i).expect("text column");
        let list = |i: usize| -> Value {
            let raw = text(i).unwrap_or_else(|| "null".to_owned());
            serde_json::from_str(&raw)
                .unwrap_or_else(|e| panic!("{hash}: column {i} is not JSON ({e}): {raw}"))
        };
        let stored = json!({
            "summary_120w": text(3),
            "inputs": list(4),
            "outputs": list(5),
            "side_effects": list(6),
            "pitfalls": list(7),
            "usage_snippet": text(8),
            "evidence": list(9),
        });
        let span = SpanIdentity::new(hash.as_str(), "", start, end);
        let context = ValidationContext::for_span(&span, false);
        let valid = parse_and_validate(&stored.to_string(), &context)
            .unwrap_or_else(|e| panic!("{hash}: the stored row fails enrichment.v1: {e}"));
        let revalidated = serde_json::to_value(&valid).expect("an enrichment serialises");
        // An enrichment serialises as it is stored: `summary_120w` is the `summary` column.
        let mut stored = stored;
        let summary = stored["summary_120w"].take();
        stored
            .as_object_mut()
            .expect("an object")
            .remove("summary_120w");
        stored["summary"] = summary;
        assert_eq!(
            revalidated, stored,
            "{hash}: validation changes the stored row"
        );
        assert_eq!(text(10).as_deref(), Some("enrichment.v1"), "{hash}");
        assert!(text(11).is_some_and(|m| !m.is_empty()), "{hash}: no model");
        let created_at: i64 = row.get(12).expect("created_at is an integer");
        assert!(
            created_at > 1_700_000_000,
            "{hash}: created_at {created_at}"
        );
        checked += 1;
    }
    checked
}

/// The attempt log agrees with the rows it explains:
/// - every attempt row belongs to a recorded run;
/// - every enriched span has exactly one succeeded attempt, whose model is the enrichment's;
/// - no succeeded attempt lacks its enrichment;
/// - a failed attempt has a failure kind and a message, a succeeded one neither kind nor
///   message of failure;
/// - within a span's run, attempts are numbered 1, 2, … without gaps;
/// - every ledger row has a kind and a message and belongs to a span that is not enriched.
pub(crate) fn check_attempt_log(repo: &TestRepo) {
    let sql_checks = [
        (
            "attempt rows of a run that is not recorded",
            "SELECT COUNT(*) FROM enrich_attempts AS a
             WHERE NOT EXISTS (SELECT 1 FROM enrich_runs AS r WHERE r.id = a.run_id)",
        ),
        (
            "enriched spans without exactly one succeeded attempt",
            "SELECT COUNT(*) FROM enrichments AS e
             WHERE (SELECT COUNT(*) FROM enrich_attempts AS a
                    WHERE a.span_hash = e.span_hash AND a.outcome = 'success') != 1",
        ),
        (
            "enrichments whose succeeded attempt names another model",
            "SELECT COUNT(*) FROM enrichments AS e JOIN enrich_attempts AS a
               ON a.span_hash = e.span_hash AND a.outcome = 'success'
             WHERE a.model != e.model",
        ),
        (
            "succeeded attempts without an enrichment",
            "SELECT COUNT(*) FROM enrich_attempts AS a
             WHERE a.outcome = 'success'
               AND NOT EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = a.span_hash)",
        ),
        (
            "failed attempts without a kind and a message",
            "SELECT COUNT(*) FROM enrich_attempts
             WHERE outcome = 'failure'
               AND (failure_kind IS NULL OR failure_kind = '' OR message IS NULL OR message = '')",
        ),
        (
            "succeeded attempts with a failure kind",
            "SELECT COUNT(*) FROM enrich_attempts WHERE outcome = 'success' AND failure_kind IS NOT NULL",
        ),
        (
            "spans whose attempts in a run are not numbered 1..n",
            "SELECT COUNT(*) FROM (SELECT span_hash, run_id FROM enrich_attempts
               GROUP BY span_hash, run_id HAVING MIN(attempt) != 1 OR MAX(attempt) != COUNT(*))",
        ),
        (
            "ledger rows without a kind and a message",
            "SELECT COUNT(*) FROM enrich_failures
             WHERE last_failure_kind = '' OR last_message = ''",
        ),
        (
            "spans both enriched and in the ledger",
            "SELECT COUNT(*) FROM enrich_failures AS f
             WHERE EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = f.span_hash)",
        ),
    ];
    let broken: BTreeMap<&str, i64> = sql_checks
        .iter()
        .map(|&(what, sql)| (what, repo.count(sql)))
        .filter(|&(_, n)| n != 0)
        .collect();
    assert!(
        broken.is_empty(),
        "the attempt log is inconsistent: {broken:?}"
    );
}

/// Every span of the index is enriched, once, or in the failure ledger: `(enriched, ledgered)`.
pub(crate) fn check_every_span_accounted_for(repo: &TestRepo) -> (i64, i64) {
    let lost = repo.count(
        "SELECT COUNT(*) FROM spans AS s
         WHERE NOT EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = s.span_hash)
           AND NOT EXISTS (SELECT 1 FROM enrich_failures AS f WHERE f.span_hash = s.span_hash)",
    );
    assert_eq!(lost, 0, "spans neither enriched nor in the ledger");
    let enriched = repo.count(
        "SELECT COUNT(DISTINCT e.span_hash) FROM enrichments AS e
         JOIN spans AS s ON s.span_hash = e.span_hash",
    );
    let ledgered = repo.count("SELECT COUNT(*) FROM enrich_failures");
    (enriched, ledgered)
}

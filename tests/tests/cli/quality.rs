//! The quality gate end to end: a backend answering valid enrichment.v1 that says nothing is
//! rejected as `quality_rejected`, asked again with the gate's reasons, then the next backend
//! serves; `[enrichment.quality] level` decides; every stored enrichment has its score in
//! enrich's own table, shown by `enrich show`.

use enrich_testkit::{FakeOllamaConfig, Fault};

use super::support::{Server, TestRepo, config};

/// `(backend, failure kind or "success")` of a span's attempts, in order.
fn attempts(repo: &TestRepo, span_hash: &str) -> Vec<(String, String)> {
    let raw = repo.raw();
    let mut stmt = raw
        .prepare(
            "SELECT backend, COALESCE(failure_kind, outcome) FROM enrich_attempts \
             WHERE span_hash = ?1 ORDER BY run_id, attempt",
        )
        .unwrap();
    stmt.query_map([span_hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A fake server answering every generation with `fault` (or well).
fn always(fault: Option<Fault>) -> FakeOllamaConfig {
    let config = FakeOllamaConfig::default();
    match fault {
        Some(fault) => config.with_fault_rate(fault, 1.0),
        None => config,
    }
}

fn pair(backend: &str, kind: &str) -> (String, String) {
    (backend.to_owned(), kind.to_owned())
}

#[test]
fn a_nonsense_answer_is_rejected_reasked_with_the_gates_reasons_then_the_next_backend_serves() {
    let nonsense = Server::start(always(Some(Fault::Nonsense)));
    let healthy = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(
        &[("small", nonsense.url()), ("big", healthy.url())],
        "",
    ));
    let ran = repo.enrich(&["--json", "run"]);
    ran.expect_code(0);
    let summary = ran.json();
    assert_eq!(summary["succeeded"], repo.spans.len(), "{summary}");
    assert_eq!(
        summary["backends"]["small"]["failures"]["quality_rejected"],
        2 * repo.spans.len(),
        "{summary}"
    );

    for span in &repo.spans {
        assert_eq!(
            attempts(&repo, &span.hash),
            [
                pair("small", "quality_rejected"),
                pair("small", "quality_rejected"),
                pair("big", "success"),
            ],
            "{}",
            span.symbol
        );
    }
    let message: String = repo
        .raw()
        .query_row(
            "SELECT message FROM enrich_attempts WHERE failure_kind = 'quality_rejected' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        message.contains("quality check `list_item_placeholder` failed"),
        "{message}"
    );
    // The re-ask quotes the gate's reasons to the same backend.
    let prompts = nonsense.prompts();
    assert_eq!(prompts.len(), 2 * repo.spans.len());
    let reasks: Vec<&String> = prompts
        .iter()
        .filter(|p| p.contains("Your previous answer was rejected"))
        .collect();
    assert_eq!(reasks.len(), repo.spans.len());
    for reask in reasks {
        assert!(
            reask.contains("quality check `summary_short` failed")
                && reask.contains("`inputs` item \"field\" is a word of the prompt"),
            "{reask}"
        );
    }

    // What was stored has its score in enrich's table, and `enrich show` prints it.
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_quality WHERE score = 1.0 AND level = 'basic'"),
        repo.spans.len() as i64
    );
    let shown = repo.enrich(&["show", &repo.spans[0].hash]);
    shown.expect_code(0);
    assert!(
        shown.stdout.contains("quality   1.00 (basic gate)\n"),
        "{}",
        shown.stdout
    );
    // And the attempt chain: each attempt's backend, model and chain, what it ended in and,
    // for a rejection, the gate's failed checks.
    let lines: Vec<&str> = shown.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "attempts")
        .expect("an attempts block");
    let attempt_lines: Vec<&&str> = lines[at + 1..]
        .iter()
        .filter(|l| l.starts_with("  run "))
        .collect();
    assert_eq!(attempt_lines.len(), 3, "{}", shown.stdout);
    for (line, (backend, outcome)) in attempt_lines.iter().zip([
        ("small", "quality_rejected"),
        ("small", "quality_rejected"),
        ("big", "success"),
    ]) {
        assert!(
            line.contains(&format!("  {backend} (ollama qwen2.5:7b-instruct at "))
                && line.contains(", chain local)")
                && line.contains(&format!(")  {outcome}  ")),
            "{line}"
        );
    }
    let gate_lines: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("      gate failed: "))
        .collect();
    assert_eq!(gate_lines.len(), 2, "{}", shown.stdout);
    for line in gate_lines {
        assert!(
            line.contains("summary_short") && line.contains("list_item_placeholder"),
            "{line}"
        );
    }
    let json = repo.enrich(&["--json", "show", &repo.spans[0].hash]).json();
    assert_eq!(json["attempts"][2]["chain"], "local", "{json}");
}

#[test]
fn the_level_decides_what_is_stored_and_the_score_tells_what_failed() {
    // (level, what the only backend answers, spans stored, the line `enrich show` prints)
    let table = [
        (
            "off",
            Some(Fault::Nonsense),
            true,
            "quality   0.62 (off gate); failed summary_short, summary_bare_value, list_item_placeholder, identifier_not_in_source; repaired evidence_range_swapped\n",
        ),
        ("basic", Some(Fault::Nonsense), false, ""),
        ("strict", None, true, "quality   1.00 (strict gate)\n"),
    ];
    for (level, fault, stored, line) in table {
        let server = Server::start(always(fault));
        let repo = TestRepo::new();
        repo.write_config(&config(
            &[("only", server.url())],
            &format!("\n[enrichment.quality]\nlevel = \"{level}\"\n"),
        ));
        let ran = repo.enrich(&["--json", "run"]);
        let summary = ran.json();
        let expected = if stored { repo.spans.len() } else { 0 };
        assert_eq!(summary["succeeded"], expected, "{level}: {summary}");
        assert_eq!(
            repo.count("SELECT COUNT(*) FROM enrich_quality") as usize,
            expected,
            "{level}"
        );
        if stored {
            let shown = repo.enrich(&["show", &repo.spans[0].hash]);
            assert!(shown.stdout.contains(line), "{level}: {}", shown.stdout);
        } else {
            ran.expect_code(1);
            assert_eq!(
                repo.count(
                    "SELECT COUNT(*) FROM enrich_failures WHERE last_failure_kind = 'quality_rejected'"
                ) as usize,
                repo.spans.len(),
                "{level}"
            );
        }
    }
}

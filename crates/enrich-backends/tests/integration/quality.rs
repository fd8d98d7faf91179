//! The quality gate: each check with an answer that passes and one that fails, the levels, the
//! repairs and the score.

use enrich_backends::{
    CHECKS, FailureKind, QualityReport, REPAIR_EVIDENCE_SWAPPED, REPAIR_SUMMARY_CUT,
    SUMMARY_MAX_WORDS, SpanIdentity, Validated, ValidationContext, judge_reply, rejected_checks,
};
use enrich_config::QualityLevel;
use serde_json::{Value, json};

/// The span's source (lines 10 to 20) the prompt showed.
const SOURCE: &str = "def request(self, method, url, timeout=None):\n    \
                      session = self.session\n    return session.send(method, url)\n";
const SYMBOL: &str = "Session.request";

/// An honest answer about [`SOURCE`]: passes every check.
fn honest() -> Value {
    json!({
        "summary_120w": "Sends an HTTP request through the session and returns its response.",
        "inputs": ["method", "url", "timeout", "self.session"],
        "outputs": ["the response of session.send"],
        "side_effects": ["network I/O"],
        "pitfalls": ["timeout defaults to None, which waits forever"],
        "usage_snippet": "session.request(\"GET\", \"https://example.org\")",
        "evidence": [{"field": "inputs", "lines": [10, 11]}],
    })
}

fn ctx(level: QualityLevel) -> ValidationContext<'static> {
    ValidationContext::for_span(
        &SpanIdentity::new("sha256:10", "requests.py", 10, 20),
        false,
    )
    .with_quality(level)
    .with_source(SOURCE, SYMBOL)
}

fn answer(patch: &Value) -> String {
    let mut object = honest();
    for (key, value) in patch.as_object().unwrap() {
        object[key] = value.clone();
    }
    object.to_string()
}

fn judge(patch: &Value, ctx: &ValidationContext<'_>) -> Result<Validated, (FailureKind, String)> {
    judge_reply(&answer(patch), ctx).map_err(|e| (e.kind, e.message))
}

/// `patch` over the honest answer passes the check `name` when `passes`, else fails it with a
/// reason containing `reason` (at the strict level, which rejects on every check).
#[track_caller]
fn check(name: &str, patch: Value, passes: bool, reason: &str) {
    assert!(CHECKS.iter().any(|c| c.name == name), "no check {name}");
    let marker = format!("quality check `{name}` failed: ");
    match (judge(&patch, &ctx(QualityLevel::Strict)), passes) {
        (Ok(validated), true) => assert!(
            !validated.quality.failed_checks.contains(&name),
            "{name}: {patch}"
        ),
        (Err((kind, message)), true) => {
            assert!(
                !message.contains(&marker),
                "{name} failed {patch}: {message}"
            );
            assert_eq!(kind, FailureKind::QualityRejected, "{message}");
        }
        (Ok(validated), false) => panic!("{name} let {patch} through: {validated:?}"),
        (Err((kind, message)), false) => {
            assert_eq!(kind, FailureKind::QualityRejected, "{message}");
            let at = message
                .find(&marker)
                .unwrap_or_else(|| panic!("{name} did not fail {patch}: {message}"));
            assert!(
                message[at..].contains(reason),
                "{name}: {reason:?} not in {message:?}"
            );
        }
    }
}

#[test]
fn each_check_passes_an_honest_answer_and_fails_a_bad_one() {
    let cases: Vec<(&str, Value, bool, &str)> = vec![
        // LLMC's floor.
        ("summary_empty", json!({}), true, ""),
        (
            "summary_empty",
            json!({"summary_120w": "... !!"}),
            false,
            "has no words",
        ),
        (
            "summary_placeholder",
            json!({"summary_120w": "Handles the to-do list of the session."}),
            true,
            "",
        ),
        (
            "summary_placeholder",
            json!({"summary_120w": "Todo: describe the request method here."}),
            false,
            "placeholder word \"todo\"",
        ),
        (
            "summary_placeholder",
            json!({"summary_120w": "Auto-summary generated offline for this span."}),
            false,
            "is a placeholder",
        ),
        // A summary that only says there is nothing to say, as a real small model wrote.
        (
            "summary_disclaims",
            json!({"summary_120w": "The code does not have a summary"}),
            false,
            "only says there is nothing to say",
        ),
        (
            "summary_disclaims",
            json!({"summary_120w": "The code does not have a line number."}),
            false,
            "\"The code does not have a line number.\"",
        ),
        (
            "summary_disclaims",
            json!({"summary_120w": "This is a summary of the code."}),
            false,
            "nothing to say",
        ),
        (
            "summary_disclaims",
            json!({"summary_120w": "No summary available"}),
            false,
            "nothing to say",
        ),
        (
            "summary_disclaims",
            json!({"summary_120w": "Cannot determine what this code does."}),
            false,
            "nothing to say",
        ),
        (
            "summary_disclaims",
            json!({"summary_120w": "I can't tell what the code does. No description provided."}),
            false,
            "nothing to say",
        ),
        (
            "summary_disclaims",
            json!({"summary_120w": "Returns None when the key does not exist."}),
            true,
            "",
        ),
        (
            "summary_disclaims",
            json!({"summary_120w": "Cannot be called twice: closes the session. The code has no retries."}),
            true,
            "",
        ),
        (
            "summary_disclaims",
            json!({"summary_120w": "This is a summary of the code. It sends the request and returns the response."}),
            true,
            "",
        ),
        (
            "summary_short",
            json!({"summary_120w": "Sends it."}),
            false,
            "too short",
        ),
        (
            "summary_short",
            json!({"summary_120w": "发送请求并返回响应。"}),
            true,
            "",
        ),
        (
            "summary_short",
            json!({"summary_120w": "发送请求"}),
            false,
            "too short",
        ),
        (
            "summary_short",
            json!({"summary_120w": "Sends a request, returns it."}),
            true,
            "",
        ),
        // Not a sentence.
        (
            "summary_bare_value",
            json!({"summary_120w": "requests.py:34"}),
            false,
            "bare number, path or name",
        ),
        (
            "summary_bare_value",
            json!({"summary_120w": "Session.request."}),
            false,
            "\"Session.request.\"",
        ),
        (
            "summary_bare_value",
            json!({"summary_120w": "60"}),
            false,
            "bare number",
        ),
        (
            "summary_bare_value",
            json!({"summary_120w": "Wraps Session.request for callers."}),
            true,
            "",
        ),
        // Text in CJK script has no spaces between words.
        (
            "summary_bare_value",
            json!({"summary_120w": "通过会话发送请求并返回响应。"}),
            true,
            "",
        ),
        // The prompt's own words.
        (
            "summary_prompt_echo",
            json!({"summary_120w": "The summary of the input is: {input} The output is: {output}"}),
            false,
            "\"{input}\"",
        ),
        (
            "summary_prompt_echo",
            json!({"summary_120w": "A summary_120w of at most 120 words about this code."}),
            false,
            "\"summary_120w\"",
        ),
        (
            "summary_prompt_echo",
            json!({"summary_120w": "Summarises 120w of text {snippet} in the answer."}),
            false,
            "\"{snippet}\"",
        ),
        // The built-in prompt's shared instructions and span line, copied back.
        (
            "summary_prompt_echo",
            json!({"summary_120w": "You describe source code: one span of a source file."}),
            false,
            "\"you describe source code\"",
        ),
        (
            "summary_prompt_echo",
            json!({"summary_120w": "Span: lines 12-40 of models.py, the function prepare."}),
            false,
            "\"span: lines\"",
        ),
        (
            "summary_prompt_echo",
            json!({"summary_120w": "Validates its inputs and outputs before sending them."}),
            true,
            "",
        ),
        // List items.
        (
            "list_item_placeholder",
            json!({"inputs": ["field", "lines", "side_effectz", "60,61", "2"]}),
            false,
            "`inputs` item \"field\" is a word of the prompt",
        ),
        (
            "list_item_placeholder",
            json!({"side_effects": ["side_effects"]}),
            false,
            "`side_effects` item \"side_effects\"",
        ),
        (
            "list_item_placeholder",
            json!({"pitfalls": ["60,61"]}),
            false,
            "\"60,61\" is a bare number",
        ),
        (
            "list_item_placeholder",
            json!({"outputs": ["{output}"]}),
            false,
            "a template marker",
        ),
        (
            "list_item_placeholder",
            json!({"pitfalls": ["TBD"]}),
            false,
            "\"TBD\"",
        ),
        (
            "list_item_placeholder",
            json!({"inputs": ["url", "the lines of the body"]}),
            true,
            "",
        ),
        // Links the source does not hold.
        (
            "url_not_in_source",
            json!({"inputs": ["https://github.com/Severus-Raven/RouteDecision#[0x2f4b]"]}),
            false,
            "\"https://github.com/Severus-Raven/RouteDecision#\"",
        ),
        (
            "url_not_in_source",
            json!({"summary_120w": "Fetches the page at http://api.invented.io/v2/items for the caller."}),
            false,
            "\"http://api.invented.io/v2/items\"",
        ),
        (
            "url_not_in_source",
            json!({"pitfalls": ["a URL such as https://www.example.org/x must be absolute"]}),
            true,
            "",
        ),
        // Evidence must cite the span's lines (10-20); a swapped range is repaired first.
        (
            "evidence_outside_span",
            json!({"evidence": [{"field": "inputs", "lines": [9, 12]}]}),
            false,
            "evidence for `inputs` cites lines [9, 12], outside the span (lines 10-20)",
        ),
        (
            "evidence_outside_span",
            json!({"evidence": [{"field": "outputs", "lines": [18, 21]}, {"field": "inputs", "lines": [10, 10]}]}),
            false,
            "evidence for `outputs` cites lines [18, 21], outside the span",
        ),
        (
            "evidence_outside_span",
            json!({"evidence": [{"field": "pitfalls", "lines": [21, 12]}]}),
            false,
            "cites lines [12, 21], outside the span",
        ),
        (
            "evidence_outside_span",
            json!({"evidence": [{"field": "inputs", "lines": [10, 20]}, {"field": "outputs", "lines": [20, 10]}]}),
            true,
            "",
        ),
        // Identifier grounding: single tokens only, natural-language phrases pass.
        (
            "identifier_not_in_source",
            json!({"inputs": ["side_effectz"]}),
            false,
            "`inputs` names \"side_effectz\", which does not occur in the span's source",
        ),
        (
            "identifier_not_in_source",
            json!({"outputs": ["self.response"]}),
            false,
            "\"self.response\"",
        ),
        (
            "identifier_not_in_source",
            json!({"inputs": ["`timeout`", "self.session", "*method", "url()"]}),
            true,
            "",
        ),
        (
            "identifier_not_in_source",
            json!({"inputs": ["a retry policy for failed requests"], "outputs": ["bool"]}),
            true,
            "",
        ),
        // The usage snippet shows the span's symbol.
        (
            "usage_without_symbol",
            json!({"usage_snippet": "print(42)"}),
            false,
            "never mentions `request`",
        ),
        (
            "usage_without_symbol",
            json!({"usage_snippet": null}),
            true,
            "",
        ),
    ];
    // Every check has an answer that fails it here.
    let mut failing: Vec<&str> = cases.iter().filter(|c| !c.2).map(|c| c.0).collect();
    failing.dedup();
    assert_eq!(failing, CHECKS.map(|c| c.name));
    for (name, patch, passes, reason) in cases {
        check(name, patch, passes, reason);
    }
}

#[test]
fn grounding_and_usage_need_the_source_and_the_symbol() {
    // Without the span's source and symbol (a context built for the span alone), the strict
    // checks that need them do not apply.
    let bare = ValidationContext::for_span(&SpanIdentity::new("sha256:10", "x.py", 10, 20), false)
        .with_quality(QualityLevel::Strict);
    let patch = json!({"inputs": ["side_effectz"], "usage_snippet": "print(42)"});
    let validated = judge(&patch, &bare).unwrap();
    assert!(validated.quality.failed_checks.is_empty());
    assert!((validated.quality.score - 1.0).abs() < 1e-9);
}

#[test]
fn the_level_decides_which_failures_reject() {
    let ungrounded = json!({"inputs": ["side_effectz"]});
    let placeholder = json!({"summary_120w": "todo"});
    // (level, answer, rejected)
    let table = [
        (QualityLevel::Off, &placeholder, false),
        (QualityLevel::Basic, &placeholder, true),
        (QualityLevel::Strict, &placeholder, true),
        (QualityLevel::Off, &ungrounded, false),
        (QualityLevel::Basic, &ungrounded, false),
        (QualityLevel::Strict, &ungrounded, true),
    ];
    for (level, patch, rejected) in table {
        let result = judge(patch, &ctx(level));
        assert_eq!(result.is_err(), rejected, "{level:?} {patch}: {result:?}");
        if let Ok(validated) = result {
            // Let through, the failures still show in the report and the score.
            assert_eq!(validated.quality.level, level);
            assert!(
                !validated.quality.failed_checks.is_empty(),
                "{level:?} {patch}"
            );
            assert!(validated.quality.score < 1.0);
        }
    }
}

#[test]
fn the_score_weighs_the_checks_that_passed() {
    let report =
        |patch: &Value| -> QualityReport { judge(patch, &ctx(QualityLevel::Off)).unwrap().quality };
    // Every check applies to the honest answer and passes, and nothing was repaired.
    let perfect = report(&json!({}));
    assert_eq!(perfect.score, 1.0);
    assert!(perfect.failed_checks.is_empty() && perfect.repairs.is_empty());
    // Weights 3+3+3+2+2+3+2+2+2+1 for the checks that apply (no link to judge) and 1 per
    // possible repair: 25 in all. An ungrounded input fails `identifier_not_in_source` (2):
    // 23/25.
    let ungrounded = report(&json!({"inputs": ["side_effectz"]}));
    assert_eq!(ungrounded.failed_checks, ["identifier_not_in_source"]);
    assert!((ungrounded.score - 0.92).abs() < 1e-9, "{ungrounded:?}");
    // "60" fails `summary_short` and `summary_bare_value` (2+2), and a swapped range was
    // repaired (1): 20/25.
    let nonsense = report(&json!({
        "summary_120w": "60",
        "evidence": [{"field": "inputs", "lines": [11, 10]}],
    }));
    assert_eq!(
        nonsense.failed_checks,
        ["summary_short", "summary_bare_value"]
    );
    assert_eq!(nonsense.repairs, [REPAIR_EVIDENCE_SWAPPED]);
    assert!((nonsense.score - 0.8).abs() < 1e-9, "{nonsense:?}");
    // Without a usage snippet its check does not apply: 24/24.
    let no_usage = report(&json!({"usage_snippet": null}));
    assert_eq!(no_usage.score, 1.0);
}

#[test]
fn a_swapped_evidence_range_is_swapped_back_and_recorded() {
    let validated = judge(
        &json!({"evidence": [{"field": "inputs", "lines": [18, 12]}, {"field": "outputs", "lines": [13, 11]}]}),
        &ctx(QualityLevel::Basic),
    )
    .unwrap();
    assert_eq!(validated.enrichment.evidence[0].lines, [12, 18]);
    assert_eq!(validated.enrichment.evidence[1].lines, [11, 13]);
    assert_eq!(validated.quality.repairs, [REPAIR_EVIDENCE_SWAPPED]);
    // Swapped back, a range must still lie inside the span: the gate's check, not the schema.
    let (kind, message) = judge(
        &json!({"evidence": [{"field": "inputs", "lines": [108, 107]}]}),
        &ctx(QualityLevel::Basic),
    )
    .unwrap_err();
    assert_eq!(kind, FailureKind::QualityRejected);
    assert!(
        message.contains(
            "quality check `evidence_outside_span` failed: evidence for `inputs` cites lines \
             [107, 108], outside the span (lines 10-20)"
        ),
        "{message}"
    );
    assert_eq!(rejected_checks(&message), ["evidence_outside_span"]);
}

#[test]
fn evidence_outside_the_span_let_through_is_never_stored() {
    // With the gate off the answer passes, scored down, and the range outside the span is
    // replaced by the whole span for its field.
    let validated = judge(
        &json!({"evidence": [{"field": "inputs", "lines": [1, 2]}, {"field": "outputs", "lines": [11, 12]}]}),
        &ctx(QualityLevel::Off),
    )
    .unwrap();
    assert_eq!(validated.quality.failed_checks, ["evidence_outside_span"]);
    assert!(validated.quality.score < 1.0);
    let cited: Vec<(&str, [u32; 2])> = validated
        .enrichment
        .evidence
        .iter()
        .map(|e| (e.field.as_str(), e.lines))
        .collect();
    assert!(cited.contains(&("inputs", [10, 20])), "{cited:?}");
    assert!(cited.contains(&("outputs", [11, 12])), "{cited:?}");
    assert!(
        validated
            .enrichment
            .evidence
            .iter()
            .all(|e| e.lines[0] >= 10 && e.lines[1] <= 20),
        "{cited:?}"
    );
}

#[test]
fn a_summary_over_the_word_limit_is_cut_at_a_sentence_end() {
    let sentence = "Sends the request through the session and returns what the server said.";
    let per_sentence = sentence.split_whitespace().count();
    let count = SUMMARY_MAX_WORDS / per_sentence + 2;
    let long = vec![sentence; count].join(" ");
    let validated = judge(&json!({"summary_120w": long}), &ctx(QualityLevel::Basic)).unwrap();
    let summary = &validated.enrichment.summary;
    let kept = SUMMARY_MAX_WORDS / per_sentence;
    assert_eq!(summary, &vec![sentence; kept].join(" "));
    assert!(summary.ends_with('.'));
    assert_eq!(validated.quality.repairs, [REPAIR_SUMMARY_CUT]);

    // With no sentence end within the limit, the cut falls after the limit's last word.
    let run_on = format!("Sends {}", vec!["data"; SUMMARY_MAX_WORDS + 10].join(", "));
    let validated = judge(&json!({"summary_120w": run_on}), &ctx(QualityLevel::Basic)).unwrap();
    let summary = &validated.enrichment.summary;
    assert_eq!(summary.split_whitespace().count(), SUMMARY_MAX_WORDS);
    assert!(summary.ends_with("data"), "{summary}");
    assert_eq!(validated.quality.repairs, [REPAIR_SUMMARY_CUT]);

    // At the limit exactly, nothing is cut.
    let exact = vec!["word"; SUMMARY_MAX_WORDS].join(" ") + " sends requests.";
    let exact: Vec<&str> = exact.split_whitespace().skip(2).collect();
    let validated = judge(
        &json!({"summary_120w": exact.join(" ")}),
        &ctx(QualityLevel::Off),
    )
    .unwrap();
    assert!(validated.quality.repairs.is_empty());
}

/// The report reads a rejection's checks back from its message: every check the gate named,
/// once, and no name a quoted answer merely mentions.
#[test]
fn a_rejection_message_names_its_checks_for_the_report() {
    let patch = json!({
        "summary_120w": "60",
        "inputs": ["field", "summary_empty"],
        "usage_snippet": "print(1)",
    });
    let (kind, message) = judge(&patch, &ctx(QualityLevel::Strict)).unwrap_err();
    assert_eq!(kind, FailureKind::QualityRejected);
    assert_eq!(
        rejected_checks(&message),
        [
            "summary_short",
            "summary_bare_value",
            "list_item_placeholder",
            "identifier_not_in_source",
            "usage_without_symbol"
        ],
        "{message}"
    );
    assert!(rejected_checks("connection refused").is_empty());
    assert!(rejected_checks("quality check `no_such_check` failed: x").is_empty());
}

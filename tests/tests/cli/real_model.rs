//! The `enrich` binary against the real local model (SmolLM2-135M behind the Ollama-compatible
//! server that `cargo xtask model-server provision` installs): a few spans, end to end.
//!
//! The test fails, never skips, when the server is not provisioned: `cargo xtask ci` provisions
//! it and passes its paths in `ENRICH_MODEL_SERVER_*`.

use enrich_backends::{SpanIdentity, ValidationContext, parse_and_validate};
use enrich_testkit::ModelServerProcess;

use super::support::{Ran, TestRepo};

/// Spans to enrich: the model writes about 60 tokens/s on one core, ~8 s a span.
const LIMIT: i64 = 2;

#[test]
fn a_real_model_enriches_spans_and_every_stored_row_is_valid() {
    let server = ModelServerProcess::start().unwrap_or_else(|e| panic!("{e}"));
    let repo = TestRepo::new();
    repo.write_config(&format!(
        r#"[enrichment]
default_chain = "real"

[[enrichment.chain]]
name = "smollm2"
chain = "real"
provider = "ollama"
model = "{model}"
url = "{url}"
timeout_seconds = 120
options = {{ temperature = 0, seed = 42, num_ctx = 4096 }}
"#,
        model = server.model_name(),
        url = server.url(),
    ));

    // No 60 s deadline here: a real generation is slow when the other tests load both cores;
    // the backend's own timeout bounds the run.
    let ran = Ran::from_output(
        repo.command(&["--json", "run", "--limit", &LIMIT.to_string()])
            .output()
            .expect("run enrich"),
    );
    assert!(
        matches!(ran.code, Some(0 | 1)),
        "enrich run ends with success or 'some spans failed': {:?}\n{}",
        ran.code,
        ran.stderr
    );
    let summary = ran.json();
    assert_eq!(summary["attempted"], LIMIT, "{summary}");
    let succeeded = summary["succeeded"].as_i64().expect("succeeded");
    assert!(
        succeeded >= 1,
        "the real model enriched no span: {summary}\n{}",
        ran.stderr
    );
    assert_eq!(
        succeeded + summary["failed"].as_i64().expect("failed"),
        LIMIT,
        "{summary}"
    );

    // Every stored row is a valid enrichment.v1 of its span, written from the real model.
    let conn = repo.raw();
    let mut rows = conn
        .prepare(
            "SELECT s.start_line, s.end_line, e.summary, e.inputs, e.outputs, e.side_effects,
                    e.pitfalls, e.usage_snippet, e.evidence, e.model, e.schema_ver, e.eval_count
             FROM enrichments e JOIN spans s ON s.span_hash = e.span_hash",
        )
        .expect("prepare");
    let stored: Vec<(u32, u32, serde_json::Value, String, String, Option<i64>)> = rows
        .query_map([], |r| {
            let list = |i: usize| -> rusqlite::Result<serde_json::Value> {
                let text: String = r.get(i)?;
                Ok(serde_json::from_str(&text).expect("list columns hold JSON arrays"))
            };
            let reply = serde_json::json!({
                "summary_120w": r.get::<_, String>(2)?,
                "inputs": list(3)?,
                "outputs": list(4)?,
                "side_effects": list(5)?,
                "pitfalls": list(6)?,
                "usage_snippet": r.get::<_, Option<String>>(7)?,
                "evidence": list(8)?,
            });
            Ok((
                r.get(0)?,
                r.get(1)?,
                reply,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(stored.len() as i64, succeeded);
    for (start, end, reply, model, schema_ver, eval_count) in &stored {
        let ctx = ValidationContext::for_span(&SpanIdentity::new("", "", *start, *end), false);
        parse_and_validate(&reply.to_string(), &ctx)
            .unwrap_or_else(|e| panic!("stored row fails enrichment.v1: {e}\n{reply}"));
        assert_eq!(model, server.model_name());
        assert_eq!(schema_ver, "enrichment.v1");
        assert!(eval_count.is_some_and(|n| n > 0), "real metrics are stored");
    }

    // Every attempt is logged, and every failed span is in the ledger with a reason.
    assert_eq!(
        repo.count("SELECT count(DISTINCT span_hash) FROM enrich_attempts"),
        LIMIT
    );
    assert_eq!(
        repo.count(
            "SELECT count(*) FROM enrich_failures
             WHERE last_failure_kind IS NOT NULL AND last_message <> ''"
        ),
        LIMIT - succeeded
    );
}

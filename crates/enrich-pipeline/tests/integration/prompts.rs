//! Prompts as the backends receive them, and the dry-run plan.

use std::sync::Arc;

use enrich_backends::{
    GenerateRequest, SpanIdentity, enrichment_v1_output_tokens, enrichment_v1_schema_for_span,
};
use enrich_config::EnrichmentConfig;
use enrich_pipeline::{PipelineError, RunControl, estimate_tokens};

use crate::support::{Fixture, Scripted, config, pipeline, python_lines};

/// Runs one pipeline over `fixture` with `prompt` settings and returns the requests the backend
/// received.
async fn requests(
    fixture: &Fixture,
    adjust: impl FnOnce(&mut EnrichmentConfig),
) -> Vec<GenerateRequest> {
    let model = Arc::new(Scripted::new("model"));
    let mut config = config(&[&model]);
    adjust(&mut config);
    let (pipeline, _) = pipeline(fixture, &config, &[&model], |_| {});
    let summary = pipeline.run(&RunControl::new()).await.expect("run");
    assert_eq!(
        summary.failed, 0,
        "the span is enriched whatever the prompt"
    );
    model.requests()
}

/// The first `lines N-M` range a prompt cites (the convention the fake servers read).
fn first_range(prompt: &str) -> Option<(u32, u32)> {
    let at = prompt.find("lines ")? + "lines ".len();
    let rest = &prompt[at..];
    let (start, rest) = rest.split_once('-')?;
    let end: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((start.parse().ok()?, end.parse().ok()?))
}

#[tokio::test(start_paused = true)]
async fn a_template_is_filled_with_python_format_rules_and_sent_with_the_schema() {
    let fixture = Fixture::new();
    let source = "def two():\n    return 2\n";
    fixture.index_single_span("pkg/two.py", source);

    let sent = requests(&fixture, |c| {
        c.prompt.template = Some(
            "Summarise {path} lines {line_start}-{line_end}:\n{snippet}\nAnswer as {{json}}."
                .into(),
        );
    })
    .await;

    assert_eq!(sent.len(), 1);
    assert_eq!(
        &*sent[0].prompt,
        "Summarise pkg/two.py lines 1-2:\ndef two():\n    return 2\n\nAnswer as {json}."
    );
    assert_eq!(
        sent[0].system, None,
        "a template is sent whole, as LLMC sends it"
    );
    assert_eq!(
        sent[0].schema.as_ref(),
        Some(&enrichment_v1_schema_for_span(&SpanIdentity::new(
            "", "", 1, 2
        ))),
        "the schema bounds evidence lines to the span"
    );
    assert_eq!((sent[0].span.line_start, sent[0].span.line_end), (1, 2));
    assert_eq!(&*sent[0].span.path, "pkg/two.py");
}

#[tokio::test(start_paused = true)]
async fn the_built_in_prompt_cites_the_span_and_describes_every_field() {
    let fixture = Fixture::new();
    let hashes = fixture.index_lines("src/pipeline.py", 3);
    let sent = requests(&fixture, |_| {}).await;

    assert_eq!(sent.len(), 3);
    let shared = sent[0].system.as_deref().expect("a shared part");
    for (i, request) in sent.iter().enumerate() {
        let line = i as u32 + 1;
        let prompt = &*request.prompt;
        assert_eq!(&*request.span.span_hash, hashes[i]);
        assert_eq!(first_range(prompt), Some((line, line)), "{prompt}");
        assert!(
            prompt.contains(&format!(
                "\n{line} | def f{line}_srcpipelinepy(): return {line}\n"
            )),
            "{prompt}"
        );
        assert!(
            prompt.starts_with(&format!(
                "Span: lines {line}-{line} of src/pipeline.py, the function `f{line}`.\n"
            )),
            "{prompt}"
        );
        assert!(prompt.contains("```python\n"), "{prompt}");
        // Every span's request carries the same shared part, byte for byte.
        let system = request.system.as_deref().expect("a shared part");
        assert_eq!(system.as_bytes(), shared.as_bytes());
        assert!(!system.contains("pipeline.py"), "{system}");
        assert_eq!(
            request.max_output_tokens,
            Some(enrichment_v1_output_tokens())
        );
        for needle in [
            "ONE JSON object",
            "\"summary_120w\"",
            "at most 120 words",
            "\"inputs\"",
            "\"outputs\"",
            "\"side_effects\"",
            "\"pitfalls\"",
            "\"usage_snippet\"",
            "at most 12 lines",
            "\"evidence\"",
            "inside the span's line range",
        ] {
            assert!(system.contains(needle), "{needle:?} not in {system}");
        }
        assert!(!prompt.contains("source cut"));
        assert_eq!(
            request.schema.as_ref(),
            Some(&enrichment_v1_schema_for_span(&SpanIdentity::new(
                "", "", line, line
            )))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_span_is_cut_at_a_line_boundary_and_the_prompt_says_so() {
    let fixture = Fixture::new();
    let source = python_lines("long.py", 20);
    let line_len = source.lines().next().expect("line").len() + 1;
    fixture.index_single_span("long.py", &source);
    let max = line_len * 2 + line_len / 2;

    for template in [
        None,
        Some("{path} lines {line_start}-{line_end}\n{snippet}"),
    ] {
        let sent = requests(&fixture_copy(&fixture, &source), |c| {
            c.prompt.max_snippet_bytes = max;
            c.prompt.template = template.map(str::to_owned);
        })
        .await;
        let prompt = &*sent[0].prompt;
        assert_eq!(first_range(prompt), Some((1, 20)), "{prompt}");
        assert!(prompt.contains("def f2_longpy"), "{prompt}");
        assert!(!prompt.contains("def f3_longpy"), "{prompt}");
        let note = format!(
            "[source cut: lines 1-2 of the span's 1-20 are shown ({} of {} bytes)]",
            line_len * 2,
            source.len()
        );
        assert!(prompt.contains(&note), "{template:?}: {prompt}");
    }
}

/// A fresh fixture with the same single-span file (each run enriches the span once).
fn fixture_copy(_: &Fixture, source: &str) -> Fixture {
    let fresh = Fixture::new();
    fresh.index_single_span("long.py", source);
    fresh
}

#[tokio::test(start_paused = true)]
async fn a_template_with_an_unknown_placeholder_or_without_the_snippet_is_refused_when_building() {
    let fixture = Fixture::new();
    let model = Arc::new(Scripted::new("model"));
    for (template, problem) in [
        (
            "Describe {symbol} in {path}:\n{snippet}",
            "unknown placeholder {symbol} at byte 9",
        ),
        // `{{snippet}}` is the literal text "{snippet}", not the placeholder.
        (
            "Describe {path} lines {line_start}-{line_end}: {{snippet}}",
            "it has no {snippet} placeholder, so the model would never see the span's source",
        ),
    ] {
        let mut config = config(&[&model]);
        config.prompt.template = Some(template.into());
        let err = enrich_pipeline::Pipeline::builder(&config, &fixture.repo)
            .build(&crate::support::registry(&[&model]))
            .expect_err("refused");
        assert!(
            matches!(err, PipelineError::PromptTemplate { .. }),
            "{template}: {err:?}"
        );
        assert!(err.to_string().contains(problem), "{template}: {err}");
    }
    assert_eq!(model.calls(), 0, "no span is sent");
}

#[tokio::test(start_paused = true)]
async fn plan_routes_and_sizes_spans_without_calling_a_backend_or_writing() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 4);
    fixture.index_rows(
        "gone.py",
        &python_lines("gone.py", 1),
        crate::support::OLD_MTIME,
    );
    let model = Arc::new(Scripted::new("model"));
    let other = Arc::new(Scripted::new("big").chain("docs"));
    let config = config(&[&model, &other]);

    let (pipeline, events) = pipeline(&fixture, &config, &[&model, &other], |s| s.batch_size = 2);
    let plan = pipeline.plan(10).expect("plan");

    assert_eq!(plan.total_pending, 5);
    assert_eq!(plan.spans.len(), 5);
    for span in &plan.spans[..4] {
        assert_eq!(&*span.route.chain_name, "default");
        let backends: Vec<&str> = span
            .route
            .backends
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(backends, ["model"]);
        let source = format!(
            "def f{}_apy(): return {}\n",
            span.span.line_start, span.span.line_start
        );
        let tokens = span.estimated_tokens.expect("tokens");
        assert!(
            tokens > estimate_tokens(&source) && tokens < 1000,
            "{tokens}"
        );
        assert_eq!(
            (span.cut, span.in_cooldown, span.source_error.as_deref()),
            (None, false, None)
        );
    }
    let gone = &plan.spans[4];
    assert_eq!(gone.estimated_tokens, None);
    assert!(
        gone.source_error
            .as_deref()
            .unwrap_or_default()
            .contains("gone.py")
    );
    assert_eq!(
        plan.estimated_tokens(),
        plan.spans[..4]
            .iter()
            .map(|s| u64::from(s.estimated_tokens.unwrap_or(0)))
            .sum::<u64>()
    );

    let limited = pipeline.plan(3).expect("plan of 3");
    assert_eq!(limited.spans.len(), 3);

    let (overridden, _) = pipeline_with_override(&fixture, &config, &model, &other);
    let plan = overridden.plan(1).expect("plan");
    assert_eq!(&*plan.spans[0].route.chain_name, "docs");
    assert!(plan.spans[0].route.reasons[0].contains("override"));

    assert_eq!((model.calls(), other.calls()), (0, 0));
    assert!(events.events().is_empty());
    assert!(
        fixture.db().last_run().unwrap().is_none(),
        "a plan records no run"
    );
    assert_eq!(fixture.pending(), 5);
}

fn pipeline_with_override(
    fixture: &Fixture,
    config: &EnrichmentConfig,
    model: &Arc<Scripted>,
    other: &Arc<Scripted>,
) -> (
    Arc<enrich_pipeline::Pipeline>,
    Arc<crate::support::Collector>,
) {
    pipeline(fixture, config, &[model, other], |s| {
        s.chain_override = Some("docs".into())
    })
}

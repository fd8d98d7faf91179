//! The work order: a code-first run takes spans by weight with the starvation ratio, the plan
//! shows that order, and `code_first = false` keeps span id order.

use std::sync::Arc;

use enrich_config::{PathWeights, PriorityClass};
use enrich_pipeline::{Plan, RunControl};

use crate::support::{Fixture, Scripted, config, pipeline};

/// The fixture's files, in indexing order (so span ids mix every weight), with their span
/// counts and their weights under LLMC's default path weights.
const FILES: &[(&str, usize, u8)] = &[
    ("docs/guide.py", 2, 8),
    ("src/core.py", 3, 1),
    ("vendor/dep.py", 2, 10),
    ("tests/test_core.py", 2, 6),
    ("setup.py", 1, 5),
    ("lib/util.py", 1, 1),
];

/// A span of the fixture: its file and its position there (from 1).
type Label = (&'static str, usize);

/// Indexes [`FILES`]; returns each span's hash with its label, in span id order.
fn index(fixture: &Fixture) -> Vec<(String, Label)> {
    let mut spans = Vec::new();
    for &(path, count, _) in FILES {
        for (i, hash) in fixture.index_lines(path, count).into_iter().enumerate() {
            spans.push((hash, (path, i + 1)));
        }
    }
    spans
}

/// The labels of `hashes`.
fn labels(spans: &[(String, Label)], hashes: &[String]) -> Vec<Label> {
    hashes
        .iter()
        .map(|hash| {
            spans
                .iter()
                .find(|(h, _)| h == hash)
                .map(|(_, label)| *label)
                .unwrap_or_else(|| panic!("unknown span {hash}"))
        })
        .collect()
}

fn planned(spans: &[(String, Label)], plan: &Plan) -> Vec<Label> {
    let hashes: Vec<String> = plan
        .spans
        .iter()
        .map(|s| s.span.span_hash.to_string())
        .collect();
    labels(spans, &hashes)
}

/// Runs everything with one span in flight; returns the labels in the order the backend saw
/// them.
async fn run_order(
    fixture: &Fixture,
    spans: &[(String, Label)],
    tweak: impl FnOnce(&mut enrich_pipeline::PipelineSettings),
) -> Vec<Label> {
    let model = Arc::new(Scripted::new("model"));
    let (pipeline, _) = pipeline(fixture, &config(&[&model]), &[&model], tweak);
    let summary = pipeline.run(&RunControl::new()).await.expect("run");
    assert_eq!(summary.succeeded, spans.len() as u64);
    let hashes: Vec<String> = model
        .requests()
        .iter()
        .map(|r| r.span.span_hash.to_string())
        .collect();
    labels(spans, &hashes)
}

#[tokio::test(start_paused = true)]
async fn code_first_takes_weights_in_order_letting_in_low_spans_by_the_ratio() {
    let fixture = Fixture::new();
    let spans = index(&fixture);
    let two_to_one = |s: &mut enrich_pipeline::PipelineSettings| {
        s.work_order.starvation_ratio_high = 2;
        s.work_order.starvation_ratio_low = 1;
        s.batch_size = 2;
    };
    // First queue (weights 1-6) by weight then span id: src 1-3, lib 1, setup 1, tests 1-2.
    // Low queue (7-10): docs 1-2 (8), vendor 1-2 (10). Two of the first, one of the low, ...
    let expected: Vec<Label> = vec![
        ("src/core.py", 1),
        ("src/core.py", 2),
        ("docs/guide.py", 1),
        ("src/core.py", 3),
        ("lib/util.py", 1),
        ("docs/guide.py", 2),
        ("setup.py", 1),
        ("tests/test_core.py", 1),
        ("vendor/dep.py", 1),
        ("tests/test_core.py", 2),
        ("vendor/dep.py", 2),
    ];

    let model = Arc::new(Scripted::new("model"));
    let (planner, _) = pipeline(&fixture, &config(&[&model]), &[&model], two_to_one);
    let plan = planner.plan(usize::MAX).expect("plan");
    assert!(plan.code_first);
    assert_eq!(planned(&spans, &plan), expected);
    for (position, span) in plan.spans.iter().enumerate() {
        let weight = FILES
            .iter()
            .find(|(path, _, _)| *path == &*span.span.path)
            .map(|(_, _, weight)| *weight)
            .expect("a fixture file");
        assert_eq!(span.order, position as u64 + 1);
        assert_eq!(
            (span.weight, span.priority),
            (weight, PriorityClass::of(weight))
        );
    }
    assert_eq!(plan.spans[0].weight_glob.as_deref(), Some("src/**"));
    assert_eq!(plan.spans[6].weight_glob, None, "setup.py matches no glob");
    assert_eq!(model.calls(), 0, "a plan calls no backend");

    assert_eq!(run_order(&fixture, &spans, two_to_one).await, expected);
}

#[tokio::test(start_paused = true)]
async fn when_the_first_queue_runs_dry_low_spans_go_on_alone() {
    let fixture = Fixture::new();
    let spans = index(&fixture);
    // LLMC's ratio, 5 to 1: the first queue's 7 spans are done after one low span.
    let order = run_order(&fixture, &spans, |_| {}).await;
    let expected: Vec<Label> = vec![
        ("src/core.py", 1),
        ("src/core.py", 2),
        ("src/core.py", 3),
        ("lib/util.py", 1),
        ("setup.py", 1),
        ("docs/guide.py", 1),
        ("tests/test_core.py", 1),
        ("tests/test_core.py", 2),
        ("docs/guide.py", 2),
        ("vendor/dep.py", 1),
        ("vendor/dep.py", 2),
    ];
    assert_eq!(order, expected);
}

#[tokio::test(start_paused = true)]
async fn without_code_first_spans_go_in_span_id_order() {
    let fixture = Fixture::new();
    let spans = index(&fixture);
    let off = |s: &mut enrich_pipeline::PipelineSettings| s.work_order.code_first = false;
    let in_id_order: Vec<Label> = spans.iter().map(|(_, label)| *label).collect();

    let model = Arc::new(Scripted::new("model"));
    let (planner, _) = pipeline(&fixture, &config(&[&model]), &[&model], off);
    let plan = planner.plan(usize::MAX).expect("plan");
    assert!(!plan.code_first);
    assert_eq!(planned(&spans, &plan), in_id_order);
    // The weights are still shown.
    assert_eq!(
        (plan.spans[0].weight, plan.spans[0].priority),
        (8, PriorityClass::Low)
    );

    assert_eq!(run_order(&fixture, &spans, off).await, in_id_order);
}

#[tokio::test(start_paused = true)]
async fn changing_a_weight_changes_the_order_without_reindexing() {
    let fixture = Fixture::new();
    let spans = index(&fixture);
    let model = Arc::new(Scripted::new("model"));
    let plan_with = |weights: Option<PathWeights>, limit: usize| {
        let (planner, _) = pipeline(&fixture, &config(&[&model]), &[&model], |s| {
            if let Some(weights) = weights {
                s.work_order.path_weights = weights;
            }
        });
        planned(&spans, &planner.plan(limit).expect("plan"))
    };
    assert_eq!(plan_with(None, 2), [("src/core.py", 1), ("src/core.py", 2)]);
    let docs_first = PathWeights::new([("docs/**", 1), ("src/**", 3)]).expect("weights");
    assert_eq!(
        plan_with(Some(docs_first), 3),
        [
            ("docs/guide.py", 1),
            ("docs/guide.py", 2),
            ("src/core.py", 1)
        ],
        "docs weigh 1 now, src/ 3"
    );
    assert_eq!(
        plan_with(None, 1),
        [("src/core.py", 1)],
        "back to the configured weights"
    );
}

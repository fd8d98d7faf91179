//! The event stream: JSONL log lines that parse back, in a consistent order.

use std::collections::HashMap;
use std::sync::Arc;

use enrich_backends::FailureKind;
use enrich_config::EventLogLimit;
use enrich_pipeline::{Event, EventSink, JsonlSink, NextStep, PipelineError, RunControl};

use crate::support::{Fixture, Reply, Scripted, config, pipeline};

/// Reads a JSONL log: every line is one JSON object with a `type`, `at_ms` and `run_id`.
fn read_log(path: &std::path::Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).expect("read log");
    assert!(text.ends_with('\n'), "every line is complete");
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            for key in ["type", "at_ms", "run_id"] {
                assert!(value.get(key).is_some(), "{key} missing in {line}");
            }
            serde_json::from_value(value).expect("an Event")
        })
        .collect()
}

/// The position of the first event matching `pred`.
fn position(events: &[Event], pred: impl Fn(&Event) -> bool) -> usize {
    events.iter().position(pred).expect("event present")
}

#[tokio::test(start_paused = true)]
async fn the_jsonl_log_parses_back_and_comes_in_order() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 5);
    // The first backend fails every other span, so some spans have two attempts.
    let flaky = Arc::new(Scripted::new("flaky").replies(|_, call| {
        if call % 2 == 1 {
            Reply::Fail(FailureKind::ContextExceeded)
        } else {
            Reply::Valid
        }
    }));
    let solid = Arc::new(Scripted::new("solid"));
    let log_path = fixture.repo.join(".llmc/logs/enrich-events.jsonl");
    let log = Arc::new(JsonlSink::create(&log_path).expect("create log"));
    let config = config(&[&flaky, &solid]);
    let collected = Arc::new(crate::support::Collector::default());
    let pipeline = enrich_pipeline::Pipeline::builder(&config, &fixture.repo)
        .configure(|s| {
            s.batch_size = 2;
            s.concurrency = 2;
        })
        .router(enrich_router::Router::new(&config))
        .event_sink(Arc::clone(&log) as Arc<dyn EventSink>)
        .event_sink(Arc::clone(&collected) as Arc<dyn EventSink>)
        .build(&crate::support::registry(&[&flaky, &solid]))
        .expect("build");

    let summary = pipeline.run(&RunControl::new()).await.expect("run");
    log.check().expect("log written");

    let events = read_log(&log_path);
    assert_eq!(
        events,
        collected.events(),
        "the log holds exactly the events, in order"
    );
    assert!(events.iter().all(|e| e.run_id() == summary.run_id));
    assert!(matches!(
        events.first(),
        Some(Event::RunStarted {
            total_pending: 5,
            ..
        })
    ));
    assert!(matches!(
        events.last(),
        Some(Event::RunFinished { succeeded: 5, .. })
    ));

    // Per span: started, its attempts, finished.
    let mut batch_of: HashMap<String, u64> = HashMap::new();
    for event in &events {
        let Event::SpanStarted {
            span_hash, batch, ..
        } = event
        else {
            continue;
        };
        batch_of.insert(span_hash.clone(), *batch);
        let started = position(
            &events,
            |e| matches!(e, Event::SpanStarted { span_hash: h, .. } if h == span_hash),
        );
        let finished = position(
            &events,
            |e| matches!(e, Event::SpanFinished { span_hash: h, .. } if h == span_hash),
        );
        let attempts: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(
                |(_, e)| matches!(e, Event::AttemptFinished { span_hash: h, .. } if h == span_hash),
            )
            .map(|(i, _)| i)
            .collect();
        assert!(!attempts.is_empty());
        assert!(
            attempts.iter().all(|&i| started < i && i < finished),
            "{span_hash}"
        );
    }
    assert_eq!(batch_of.len(), 5);
    // A batch is reported after the last of its spans.
    let batches: Vec<(usize, u64, u64)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::BatchFinished { batch, spans, .. } => Some((i, *batch, *spans)),
            _ => None,
        })
        .collect();
    assert_eq!(
        batches.iter().map(|b| (b.1, b.2)).collect::<Vec<_>>(),
        [(1, 2), (2, 2), (3, 1)]
    );
    for (at, batch, _) in batches {
        let last_span = events
            .iter()
            .rposition(|e| matches!(e, Event::SpanFinished { batch: b, .. } if *b == batch))
            .expect("spans of the batch");
        assert!(last_span < at, "batch {batch}");
    }

    // A failed attempt says what comes next; a successful one does not.
    let nexts: Vec<(String, Option<NextStep>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::AttemptFinished { attempt, next, .. } => Some((attempt.backend.clone(), *next)),
            _ => None,
        })
        .collect();
    assert!(nexts.contains(&(
        "flaky".to_owned(),
        Some(NextStep::NextBackend {
            skip_backend_for_run: false
        })
    )));
    assert!(
        nexts
            .iter()
            .filter(|(b, _)| b == "solid")
            .all(|(_, next)| next.is_none())
    );

    // A second run appends to the same log.
    fixture.index_lines("b.py", 1);
    pipeline.run(&RunControl::new()).await.expect("second run");
    log.check().expect("log written");
    let both = read_log(&log_path);
    assert_eq!(&both[..events.len()], &events[..]);
    assert!(matches!(
        both[events.len()],
        Event::RunStarted {
            total_pending: 1,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn span_events_serialise_with_a_type_tag() {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", 1);
    let gpu = Arc::new(Scripted::new("gpu"));
    let (pipeline, events) = pipeline(&fixture, &config(&[&gpu]), &[&gpu], |_| {});
    pipeline.run(&RunControl::new()).await.expect("run");

    let names: Vec<&str> = events.events().iter().map(Event::name).collect();
    // The answer filled the backend's adaptive limit of 1 at once, so the limit grows to 2
    // before the cascade records the attempt.
    assert_eq!(
        names,
        [
            "run_started",
            "span_started",
            "limit_changed",
            "attempt_finished",
            "span_finished",
            "batch_finished",
            "run_finished"
        ]
    );
    let json: Vec<serde_json::Value> = events
        .events()
        .iter()
        .map(|e| serde_json::to_value(e).expect("json"))
        .collect();
    let limit = &json[2]["change"];
    assert_eq!(
        (
            &limit["backend"],
            &limit["from"],
            &limit["to"],
            &limit["reason"]
        ),
        (
            &serde_json::json!("gpu"),
            &serde_json::json!(1),
            &serde_json::json!(2),
            &serde_json::json!("latency_flat")
        )
    );
    let finished = &json[4];
    assert_eq!(finished["type"], "span_finished");
    assert_eq!(finished["status"], "enriched");
    assert_eq!(finished["backend"], "gpu");
    assert_eq!(finished["model"], "gpu-model:1b");
    assert_eq!(finished["path"], "a.py");
    assert_eq!(json[6]["status"], "completed");
    assert_eq!(json[6]["end"], "exhausted");
}

#[test]
fn a_log_that_cannot_be_opened_is_reported_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    let path = file.join("events.jsonl");
    let err = JsonlSink::create(&path).expect_err("a file is not a directory");
    assert!(matches!(err, PipelineError::EventLog { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("cannot open the event log "),
        "{message}"
    );
    assert!(message.contains("not-a-dir"), "{message}");
}

/// Runs a pipeline over `spans` one-line spans with `log` as its event log; returns every event
/// of the run, as a second sink saw them.
async fn run_logged(spans: usize, log: &Arc<JsonlSink>) -> Vec<Event> {
    let fixture = Fixture::new();
    fixture.index_lines("a.py", spans);
    let backend = Arc::new(Scripted::new("solid"));
    let config = config(&[&backend]);
    let collected = Arc::new(crate::support::Collector::default());
    let pipeline = enrich_pipeline::Pipeline::builder(&config, &fixture.repo)
        .router(enrich_router::Router::new(&config))
        .event_sink(Arc::clone(log) as Arc<dyn EventSink>)
        .event_sink(Arc::clone(&collected) as Arc<dyn EventSink>)
        .build(&crate::support::registry(&[&backend]))
        .expect("build");
    pipeline.run(&RunControl::new()).await.expect("run");
    log.check().expect("log written");
    collected.events()
}

/// The log's files, oldest first (`PATH.n` … `PATH.1`, `PATH`), each checked against the
/// bound: whole lines, at most `max_bytes`.
fn rotated_files(path: &std::path::Path, limit: EventLogLimit) -> Vec<Vec<Event>> {
    let mut files = Vec::new();
    for n in (1..=limit.keep).rev() {
        let rotated = JsonlSink::rotated_path(path, n);
        if rotated.exists() {
            files.push(rotated);
        }
    }
    assert!(
        !JsonlSink::rotated_path(path, limit.keep + 1).exists(),
        "no more than `keep` rotated files"
    );
    files.push(path.to_path_buf());
    files
        .iter()
        .map(|file| {
            let size = std::fs::metadata(file).expect("size").len();
            assert!(
                size <= limit.max_bytes,
                "{} holds {size} bytes",
                file.display()
            );
            read_log(file)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_bounded_log_rotates_between_whole_lines_and_keeps_the_newest_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logs/enrichment_events.jsonl");

    // Room for every rotated file: nothing is lost, the files in order are the whole run.
    let roomy = EventLogLimit {
        max_bytes: 4096,
        keep: 100,
    };
    let log = Arc::new(JsonlSink::with_limit(&path, roomy).expect("create log"));
    let events = run_logged(40, &log).await;
    drop(log);
    let files = rotated_files(&path, roomy);
    assert!(files.len() > 5, "the run wrote several times the bound");
    assert_eq!(files.concat(), events);
    assert!(matches!(
        files.last().and_then(|f| f.last()),
        Some(Event::RunFinished { .. })
    ));

    // Three rotated files kept: the log is bounded, and what is kept is the newest events.
    std::fs::remove_dir_all(dir.path().join("logs")).expect("clean");
    let tight = EventLogLimit {
        max_bytes: 4096,
        keep: 3,
    };
    let log = Arc::new(JsonlSink::with_limit(&path, tight).expect("create log"));
    let events = run_logged(40, &log).await;
    drop(log);
    let kept = rotated_files(&path, tight);
    assert_eq!(kept.len(), 4, "three rotated files and the current one");
    let kept = kept.concat();
    assert!(kept.len() < events.len());
    assert_eq!(kept[..], events[events.len() - kept.len()..]);
}

#[test]
fn a_log_shared_by_two_writers_follows_the_other_s_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let limit = EventLogLimit {
        max_bytes: 1024,
        keep: 100,
    };
    let first = JsonlSink::with_limit(&path, limit).expect("first");
    let second = JsonlSink::with_limit(&path, limit).expect("second");
    let event = |run: i64| Event::BudgetReached {
        at_ms: 1,
        run_id: enrich_db::RunId(run),
        budget: enrich_pipeline::BudgetStop {
            kind: enrich_pipeline::BudgetKind::TokensPerRun,
            limit: 1.0,
            used: 2.0,
        },
    };
    for n in 0..60 {
        let sink = if n % 2 == 0 { &first } else { &second };
        sink.on_event(&event(n));
        sink.check().expect("written");
    }
    let files = rotated_files(&path, limit);
    let runs: Vec<i64> = files.concat().iter().map(|e| e.run_id().0).collect();
    assert_eq!(runs, (0..60).collect::<Vec<_>>(), "in order, none lost");
}

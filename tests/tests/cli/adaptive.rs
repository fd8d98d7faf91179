//! The adaptive in-flight limit end to end: `enrich run` against the fake server's slots and
//! queue, with no `max_in_flight`, with one as its ceiling, against a server that is full, and
//! against one that loses capacity mid-run. Each checks what the run reports (`--json`'s
//! `limits`, the `limit_changed` events) against what the server saw.

use std::time::Duration;

use enrich_testkit::{FakeOllamaConfig, Outcome};
use serde_json::Value;

use super::reliability::add_python_files;
use super::support::{Server, TestRepo};

/// One backend `fake` at `url`, `concurrency` spans in flight, and `options` on the entry.
fn adaptive_config(url: &str, concurrency: usize, entry: &str) -> String {
    format!(
        "[enrichment]\ndefault_chain = \"local\"\nconcurrency = {concurrency}\nbatch_size = 16\n\n\
         [[enrichment.chain]]\nname = \"fake\"\nchain = \"local\"\nprovider = \"ollama\"\n\
         model = \"qwen2.5:7b-instruct\"\nurl = \"{url}\"\ntimeout_seconds = 20\n{entry}\n"
    )
}

/// A fake server: each generation takes `latency_ms`, `slots` at once, `queue` more waiting.
fn fake(latency_ms: u64, slots: usize, queue: usize) -> Server {
    Server::start(
        FakeOllamaConfig::default()
            .with_latency(Duration::from_millis(latency_ms))
            .with_capacity(slots, queue)
            .with_recording(false),
    )
}

/// The run's one host limit from `--json`.
fn only_limit(summary: &Value) -> &Value {
    let limits = summary["limits"].as_array().expect("limits in the summary");
    assert_eq!(limits.len(), 1, "{summary}");
    &limits[0]
}

/// The `limit_changed` events of the run's event log.
fn limit_events(repo: &TestRepo) -> Vec<Value> {
    let log = std::fs::read_to_string(repo.root.join("logs/enrichment_events.jsonl"))
        .expect("the event log");
    log.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON event"))
        .filter(|event| event["type"] == "limit_changed")
        .collect()
}

fn usize_of(value: &Value) -> usize {
    usize::try_from(value.as_u64().expect("a count")).expect("small")
}

#[test]
fn without_max_in_flight_the_limit_finds_the_slots_and_keeps_the_queue_short() {
    let server = fake(100, 2, 64);
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 8, 5);
    let total = repo.spans.len() as u64;
    repo.write_config(&adaptive_config(server.url(), 8, ""));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();

    assert_eq!(summary["succeeded"], total, "{summary}");
    let limit = only_limit(&summary);
    assert_eq!(limit["adaptive"], true, "{limit}");
    assert_eq!(limit["ceiling"], 64, "{limit}");
    assert!(
        usize_of(&limit["peak_limit"]) >= 2,
        "it grew to the slots: {limit}"
    );
    assert!(
        usize_of(&limit["peak_in_flight"]) <= 4,
        "the server's queue stays short (at most 2 × slots in flight): {limit}"
    );
    assert_eq!(server.stats().max_running, 2, "both slots were used");
    let events = limit_events(&repo);
    let first = events.first().expect("a limit_changed event");
    assert_eq!(
        (
            &first["change"]["backend"],
            &first["change"]["from"],
            &first["change"]["reason"]
        ),
        (
            &Value::from("fake"),
            &Value::from(1),
            &Value::from("latency_flat")
        ),
        "{first}"
    );
    assert_eq!(first["change"]["host"], server.url(), "{first}");
}

#[test]
fn a_users_max_in_flight_is_never_exceeded() {
    let server = fake(20, 16, 64);
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 8, 5);
    let total = repo.spans.len() as u64;
    repo.write_config(&adaptive_config(
        server.url(),
        12,
        "options = { max_in_flight = 3 }",
    ));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();

    assert_eq!(summary["succeeded"], total, "{summary}");
    let limit = only_limit(&summary);
    assert_eq!(
        (&limit["adaptive"], &limit["ceiling"]),
        (&Value::from(true), &Value::from(3))
    );
    assert!(usize_of(&limit["peak_limit"]) <= 3, "{limit}");
    assert!(usize_of(&limit["peak_in_flight"]) <= 3, "{limit}");
    assert!(server.stats().max_running <= 3, "{:?}", server.stats());
    assert!(
        limit_events(&repo)
            .iter()
            .all(|event| usize_of(&event["change"]["to"]) <= 3),
        "no event names a limit above the ceiling"
    );
}

#[test]
fn adaptive_false_keeps_the_fixed_limit() {
    let server = fake(20, 8, 64);
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 4, 5);
    repo.write_config(&adaptive_config(
        server.url(),
        8,
        "adaptive = false\noptions = { max_in_flight = 4 }",
    ));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();

    let limit = only_limit(&summary);
    assert_eq!(
        (&limit["adaptive"], &limit["limit"], &limit["peak_limit"]),
        (&Value::from(false), &Value::from(4), &Value::from(4)),
        "{limit}"
    );
    assert_eq!(server.stats().max_running, 4, "four at once from the start");
    assert!(limit_events(&repo).is_empty());
}

#[test]
fn a_full_queue_makes_the_limit_back_off() {
    // One slot and no queue: a second request at once is refused with 503 "server busy".
    let server = fake(30, 1, 0);
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 2, 4);
    let total = repo.spans.len() as u64;
    repo.write_config(&adaptive_config(server.url(), 4, ""));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();

    assert_eq!(summary["succeeded"], total, "{summary}");
    assert!(
        server.stats().outcome(Outcome::QueueFull) >= 1,
        "the server was full at least once"
    );
    let limit = only_limit(&summary);
    assert!(usize_of(&limit["backoffs"]) >= 1, "{limit}");
    let backoff = limit_events(&repo)
        .into_iter()
        .find(|event| event["change"]["reason"] == "overloaded")
        .expect("an overloaded limit_changed event");
    assert!(
        usize_of(&backoff["change"]["to"]) < usize_of(&backoff["change"]["from"]),
        "{backoff}"
    );
}

#[test]
fn the_limit_follows_a_server_that_loses_capacity() {
    // Four slots until 100 generations are done, then one.
    let server = fake(100, 4, 64);
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 13, 10);
    let total = repo.spans.len() as u64;
    repo.write_config(&adaptive_config(server.url(), 12, ""));

    let run = repo.start(&["--json", "run"]);
    server.wait_until(|stats| stats.generations() >= 100);
    server.set_slots(1);
    let ran = run.finish();
    let summary = ran.expect_code(0).json();

    assert_eq!(summary["succeeded"], total, "{summary}");
    assert_eq!(
        summary["backends"]["fake"]["failed"], 0,
        "no timeout: {summary}"
    );
    let limit = only_limit(&summary);
    assert!(
        usize_of(&limit["peak_limit"]) >= 4,
        "it found the four slots: {limit}"
    );
    assert!(
        usize_of(&limit["limit"]) <= 3,
        "it ends at the one slot plus one waiting (and one more while a probe tries): {limit}"
    );
    assert!(
        limit_events(&repo)
            .iter()
            .any(|event| event["change"]["reason"] == "latency_inflated"),
        "the inflated latency lowered it"
    );
    // The progress lines (stderr is not a terminal) name the host's limit.
    let progress = format!("fake @ {}: ", server.url());
    assert!(
        ran.stderr
            .lines()
            .any(|line| line.contains(&progress) && line.contains(" in flight, limit ")),
        "{}",
        ran.stderr
    );
}

#[test]
fn the_text_summary_names_each_adaptive_hosts_limit() {
    let server = fake(20, 2, 64);
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 2, 4);
    repo.write_config(&adaptive_config(server.url(), 4, ""));

    let ran = repo.enrich(&["run"]);
    ran.expect_code(0);

    let line = format!("  fake @ {}: limit ", server.url());
    let summary = ran
        .stdout
        .lines()
        .find(|l| l.starts_with(&line))
        .unwrap_or_else(|| panic!("no limit line in:\n{}", ran.stdout));
    assert!(
        summary.contains("(peak ")
            && summary.contains("ceiling 64")
            && summary.contains("backoff(s)"),
        "{summary}"
    );
}

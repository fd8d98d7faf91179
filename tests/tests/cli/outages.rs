//! Outages are the backends' state, not the spans': against one faulty backend a run enriches
//! almost everything and ledgers only spans the backend really answered badly; a backend that
//! refuses its key ledgers nothing and exits 3; an Ollama that is down for a moment costs no
//! span; and `doctor` fails a URL where something other than Ollama answers.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use enrich_testkit::{FakeOllamaConfig, Fault};

use super::faults::fault_mix;
use super::reliability::{add_python_files, check_attempt_log, check_stored_enrichments_are_valid};
use super::support::{Server, TestRepo, config};

/// One backend `local` at `url`, with a short timeout and a short circuit cooldown (so a run
/// waiting for the circuit stays quick), and `extra` lines in `[enrichment]`.
fn one_backend(url: &str, extra: &str) -> String {
    config(&[("local", url)], extra)
        .replace("timeout_seconds = 20", "timeout_seconds = 2")
        .replace(
            "\n[[enrichment.chain]]",
            "\n[enrichment.circuit_breaker]\ncooldown_seconds = 1\n\n[[enrichment.chain]]",
        )
}

/// Ledger rows whose span has no attempt in the attempt log.
fn ledger_rows_without_attempts(repo: &TestRepo) -> i64 {
    repo.count(
        "SELECT COUNT(*) FROM enrich_failures AS f
         WHERE NOT EXISTS (SELECT 1 FROM enrich_attempts AS a
                           WHERE a.span_hash = f.span_hash AND a.run_id = f.last_run_id)",
    )
}

#[test]
fn under_the_fault_mix_one_backend_enriches_95_percent_and_ledgers_only_answered_spans() {
    const SEED: u64 = 11;
    let server = Server::start(
        fault_mix(SEED)
            .with_latency(Duration::from_millis(5))
            .with_capacity(8, 512)
            .with_recording(false),
    );
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 30, 10);
    let total = repo.spans.len() as i64;
    repo.write_config(&one_backend(
        server.url(),
        "concurrency = 8\nbatch_size = 16",
    ));

    let ran = repo.enrich(&["--json", "run"]);
    let summary = ran.json();
    let context = format!("seed {SEED}\n{summary}\n{}", server.stats().to_json());

    let enriched = repo.count("SELECT COUNT(*) FROM enrichments");
    let ledgered = repo.count("SELECT COUNT(*) FROM enrich_failures");
    assert!(
        enriched * 100 >= total * 95,
        "{enriched} of {total}: {context}"
    );
    assert_eq!(
        enriched + ledgered,
        total,
        "every span ends one way: {context}"
    );
    assert_eq!(ledger_rows_without_attempts(&repo), 0, "{context}");
    // Only the span's own failures are ledgered: never an outage.
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM enrich_failures
             WHERE last_failure_kind IN ('connect', 'server_error', 'overloaded', 'auth',
                                         'model_not_found')"
        ),
        0,
        "{context}"
    );
    assert_eq!(summary["end"], "exhausted", "{context}");
    assert_eq!(summary["succeeded"], enriched, "{context}");
    assert_eq!(summary["failed"], ledgered, "{context}");
    assert_eq!(summary["unsent"], 0, "{context}");
    ran.expect_code(if ledgered > 0 { 1 } else { 0 });
    assert_eq!(check_stored_enrichments_are_valid(&repo) as i64, enriched);
    check_attempt_log(&repo);
    // The outages really happened: 500s (some spans met two in a row and waited).
    let stats = server.stats();
    assert!(
        stats.generation_outcome(enrich_testkit::Outcome::ServerError) > 0,
        "{context}"
    );
}

#[test]
fn a_backend_refusing_its_key_ledgers_nothing_and_exits_3_naming_it() {
    // The server itself answers (the health check passes); every generation gets a 401, as
    // behind a proxy that checks keys on the generation route only.
    let server =
        Server::start(FakeOllamaConfig::default().with_fault_rate(Fault::Unauthorized, 1.0));
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 4, 10);
    let total = repo.spans.len() as i64;
    repo.write_config(&one_backend(server.url(), "concurrency = 4"));

    // Three runs, as many as dead-letter a span that fails in each (max_failures_per_span = 3).
    for run in 1..=3 {
        let before = server.stats().generations();
        let ran = repo.enrich(&["--json", "run"]);
        ran.expect_code(3);
        let summary = ran.json();
        assert_eq!(
            summary["end"], "backends_unavailable",
            "run {run}: {summary}"
        );
        assert_eq!(summary["failed"], 0, "run {run}: {summary}");
        assert!(summary["unsent"].as_u64() > Some(0), "run {run}: {summary}");
        let outage = &summary["backends_unavailable"][0];
        assert_eq!(outage["backend"], "local", "{summary}");
        assert!(
            outage["last_error"]
                .as_str()
                .unwrap_or("")
                .starts_with("auth: "),
            "{summary}"
        );
        assert!(
            ran.stderr.contains("backend 'local'") && ran.stderr.contains("auth"),
            "{}",
            ran.stderr
        );
        // At most the spans in flight when the first 401 came back were sent.
        assert!(server.stats().generations() - before <= 4, "run {run}");
        assert_eq!(
            repo.count("SELECT COUNT(*) FROM enrich_failures"),
            0,
            "run {run}"
        );
    }
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM spans AS s
             WHERE NOT EXISTS (SELECT 1 FROM enrichments AS e WHERE e.span_hash = s.span_hash)"
        ),
        total,
        "every span is still pending"
    );
}

#[test]
fn an_ollama_down_for_a_moment_costs_no_span() {
    let server = Server::start(
        FakeOllamaConfig::default()
            .with_latency(Duration::from_millis(10))
            .with_capacity(2, 512)
            .with_recording(false),
    );
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 20, 10);
    let total = repo.spans.len() as i64;
    repo.write_config(&one_backend(server.url(), "concurrency = 2"));

    let mut run = repo.start(&["run"]);
    server.wait_until(|s| s.generations() >= 20);
    server.go_down();
    // Down until the run has noticed (every request refused, the circuit open, the run waiting
    // for it), then back.
    run.wait_for_stderr("waiting for backend local");
    server.come_back();
    let ran = run.finish();

    ran.expect_code(0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
    check_attempt_log(&repo);
    assert!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE failure_kind = 'connect'") > 0,
        "the outage was met"
    );
}

/// A web server that answers every request with a plain `404 page not found`, as many servers
/// that are not Ollama do; its URL.
fn not_ollama() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            // The request head, up to its blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = "404 page not found";
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn doctor_fails_a_url_that_answers_but_is_not_ollama_and_says_how_to_fix_it() {
    let repo = TestRepo::new();
    repo.write_config(&config(&[("local", &not_ollama())], ""));

    let ran = repo.enrich(&["doctor"]);
    ran.expect_code(3);
    assert!(ran.stdout.contains("FAIL"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("this is not an Ollama server"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains(r#"provider = "openai""#) && ran.stdout.contains("11434"),
        "{}",
        ran.stdout
    );
    // The run checks the same way and takes no span.
    repo.enrich(&["run"]).expect_code(3);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_attempts"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
    // `--json` still prints the report, saying why nothing ran.
    let ran = repo.enrich(&["--json", "run"]);
    ran.expect_code(3);
    let report = ran.json();
    assert_eq!(report["end"], "backends_unavailable", "{report}");
    assert_eq!(report["run_id"], serde_json::Value::Null, "{report}");
    assert!(report["total_pending"].as_u64() > Some(0), "{report}");
    let outage = &report["backends_unavailable"][0];
    assert_eq!(outage["backend"], "local", "{report}");
    assert!(
        outage["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("this is not an Ollama server")),
        "{report}"
    );
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("so no span was taken")),
        "{report}"
    );
}

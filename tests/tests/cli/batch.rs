//! `enrich batch`: spans enriched through a batch engine. Against the testkit's fake Batch API
//! (files and batches over loopback, its state machine driven by the polls) and, for the
//! offline path, a file of requests answered line by line by the fake OpenAI-compatible server
//! as `vllm run-batch` answers it; real SQLite indexes throughout.

use enrich_testkit::{BatchEnd, BatchScript, FakeBatchService, FakeOllamaConfig};
use serde_json::{Value, json};

use super::support::{Server, TestRepo};

/// The model the batch backend names.
const MODEL: &str = "gpt-4o-mini";

/// The fake Batch API on a runtime of its own, so tests stay synchronous.
struct BatchServer {
    fake: FakeBatchService,
    _runtime: tokio::runtime::Runtime,
}

impl BatchServer {
    fn start(script: BatchScript) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake Batch API");
        let fake = runtime
            .block_on(FakeBatchService::start(script, None))
            .expect("start the fake Batch API");
        Self {
            fake,
            _runtime: runtime,
        }
    }

    /// The request lines of every uploaded file.
    fn uploaded_lines(&self) -> Vec<Vec<Value>> {
        self.fake
            .uploads()
            .iter()
            .map(|file| {
                String::from_utf8_lossy(file)
                    .lines()
                    .map(|l| serde_json::from_str(l).expect("a JSON line"))
                    .collect()
            })
            .collect()
    }
}

/// A config whose default chain `batch` has one OpenAI-compatible backend at `url` (`/v1`
/// appended), and, with `live`, a chain `live` of one Ollama backend at `live`.
fn config(url: &str, live: Option<&str>) -> String {
    let mut toml = format!(
        "[enrichment]\ndefault_chain = \"batch\"\n\n\
         [[enrichment.chain]]\nname = \"hosted\"\nchain = \"batch\"\nprovider = \"openai\"\n\
         model = \"{MODEL}\"\nurl = \"{url}/v1\"\ntimeout_seconds = 20\n\
         options = {{ temperature = 0, seed = 7 }}\n"
    );
    if let Some(live) = live {
        toml.push_str(&format!(
            "\n[[enrichment.chain]]\nname = \"local\"\nchain = \"live\"\nprovider = \"ollama\"\n\
             model = \"qwen2.5:7b-instruct\"\nurl = \"{live}\"\ntimeout_seconds = 20\n"
        ));
    }
    toml
}

fn repo_for(server: &BatchServer) -> TestRepo {
    let repo = TestRepo::new();
    repo.write_config(&config(server.fake.url(), None));
    repo
}

fn json_of(repo: &TestRepo, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    repo.enrich(&all).expect_code(0).json()
}

/// Polls until every open batch has ended and stores their answers.
fn collect_all(repo: &TestRepo) -> Value {
    json_of(
        repo,
        &["batch", "collect", "--wait", "--poll-seconds", "0.001"],
    )
}

#[test]
fn submit_then_collect_stores_every_answer_once_as_a_run_would() {
    let server = BatchServer::start(BatchScript {
        in_progress_polls: 2,
        ..BatchScript::default()
    });
    let repo = repo_for(&server);
    let total = repo.spans.len();
    let submitted = json_of(&repo, &["batch", "submit"]);
    assert_eq!(
        submitted["submitted"].as_array().map(Vec::len),
        Some(1),
        "{submitted}"
    );
    let files = server.uploaded_lines();
    assert_eq!(files.len(), 1);
    let lines = &files[0];
    assert_eq!(lines.len(), total);
    let prompt_fingerprint: String = repo
        .raw()
        .query_row("SELECT prompt_fingerprint FROM enrich_batches", [], |r| {
            r.get(0)
        })
        .expect("a batch row");
    for line in lines {
        assert_eq!(line["method"], "POST");
        assert_eq!(line["url"], "/v1/chat/completions");
        let body = &line["body"];
        assert_eq!(body["model"], MODEL);
        assert_eq!(body["stream"], false);
        assert_eq!(body["temperature"], 0);
        assert_eq!(body["seed"], 7);
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["messages"][0]["role"], "system");
        assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0), "{body}");
        let id = line["custom_id"].as_str().expect("custom_id");
        assert!(
            id.starts_with(&format!("enrich-{prompt_fingerprint}-")),
            "{id}"
        );
    }
    // The spans are held: pending, but no live run may take them.
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_leases"),
        total as i64
    );
    let status = json_of(&repo, &["batch", "status"]);
    assert_eq!(status["batches"][0]["status"], "in_progress", "{status}");
    assert_eq!(status["batches"][0]["request_counts"]["total"], total);

    let collected = collect_all(&repo);
    let batch = &collected["collected"][0];
    assert_eq!(batch["status"], "completed", "{collected}");
    assert_eq!(batch["ingested"]["enriched"], total);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total as i64);
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM enrich_attempts WHERE outcome = 'success' AND chain = 'batch' \
             AND backend = 'hosted' AND model = 'gpt-4o-mini'"
        ),
        total as i64
    );
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_quality"),
        total as i64
    );
    // Every enrichment records where it came from: the batch's run, backend and chain.
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM enrich_provenance p JOIN enrich_batches b ON b.run_id = p.run_id \
             WHERE p.backend = 'hosted' AND p.chain = 'batch' AND p.model_digest IS NULL \
             AND p.prompt_fingerprint = b.prompt_fingerprint"
        ),
        total as i64
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_leases"), 0);
    let run_counts: (i64, String) = repo
        .raw()
        .query_row(
            "SELECT r.succeeded, r.status FROM enrich_runs r JOIN enrich_batches b ON b.run_id = r.id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the batch's run");
    assert_eq!(run_counts, (total as i64, "completed".to_owned()));

    // Collecting again stores nothing twice.
    let again = json_of(&repo, &["batch", "collect"]);
    assert_eq!(again["collected"], json!([]), "{again}");
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts"),
        total as i64
    );
    let status = json_of(&repo, &["batch", "status"]);
    assert_eq!(status["batches"][0]["status"], "completed");
    assert_eq!(status["batches"][0]["ingested"], total);
}

#[test]
fn partial_failures_are_logged_and_ledgered_as_a_live_run_would() {
    let server = BatchServer::start(BatchScript {
        failing: vec![0],
        nonsense: vec![1],
        ..BatchScript::default()
    });
    let repo = repo_for(&server);
    let total = repo.spans.len() as i64;
    json_of(&repo, &["batch", "submit"]);
    let collected = collect_all(&repo);
    let ingested = &collected["collected"][0]["ingested"];
    assert_eq!(ingested["enriched"], total - 2, "{collected}");
    // A 500 is the service's failure: the attempt is logged, the span is pending again.
    assert_eq!(ingested["unavailable"], 1);
    // An answer the quality gate rejects is the span's: a failed run in the ledger.
    assert_eq!(ingested["failed"], 1);
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM enrich_failures WHERE last_failure_kind = 'quality_rejected'"
        ),
        1
    );
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE failure_kind = 'server_error'"),
        1
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_attempts"), total);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_leases"), 0);
    let status = json_of(&repo, &["status"]);
    assert_eq!(status["pending"], 2, "{status}");
}

#[test]
fn an_expired_batch_stores_what_ran_and_returns_the_rest_to_pending() {
    let server = BatchServer::start(BatchScript {
        end: BatchEnd::Expire { answered: 2 },
        ..BatchScript::default()
    });
    let repo = repo_for(&server);
    let total = repo.spans.len() as i64;
    json_of(&repo, &["batch", "submit"]);
    let collected = collect_all(&repo);
    let batch = &collected["collected"][0];
    assert_eq!(batch["status"], "expired", "{collected}");
    assert_eq!(batch["ingested"]["enriched"], 2);
    assert_eq!(batch["ingested"]["returned"], total - 2);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_attempts"), 2);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_leases"), 0);
    assert_eq!(json_of(&repo, &["status"])["pending"], total - 2);
    // The returned spans go into the next batch.
    json_of(&repo, &["batch", "submit"]);
    let lines = server.uploaded_lines();
    assert_eq!(lines[1].len() as i64, total - 2);
}

#[test]
fn a_failed_batch_returns_every_span_to_pending() {
    let server = BatchServer::start(BatchScript {
        end: BatchEnd::Fail,
        ..BatchScript::default()
    });
    let repo = repo_for(&server);
    let total = repo.spans.len() as i64;
    json_of(&repo, &["batch", "submit"]);
    let collected = collect_all(&repo);
    assert_eq!(collected["collected"][0]["status"], "failed", "{collected}");
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_leases"), 0);
    assert_eq!(json_of(&repo, &["status"])["pending"], total);
}

#[test]
fn a_cancelled_batch_keeps_what_ran_and_frees_the_rest() {
    let server = BatchServer::start(BatchScript {
        in_progress_polls: 100,
        answered_before_cancel: 3,
        ..BatchScript::default()
    });
    let repo = repo_for(&server);
    let total = repo.spans.len() as i64;
    json_of(&repo, &["batch", "submit"]);
    let open = json_of(&repo, &["batch", "collect"]);
    assert_eq!(open["open"][0]["status"], "in_progress", "{open}");
    let cancelled = json_of(&repo, &["batch", "cancel", "1"]);
    assert_eq!(cancelled["status"], "cancelling", "{cancelled}");
    // Still held until the service says the batch has ended.
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_leases"), total);
    let collected = collect_all(&repo);
    let batch = &collected["collected"][0];
    assert_eq!(batch["status"], "cancelled", "{collected}");
    assert_eq!(batch["ingested"]["enriched"], 3);
    assert_eq!(batch["ingested"]["returned"], total - 3);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_leases"), 0);
    let ended = repo.enrich(&["batch", "cancel", "1"]);
    ended.expect_code(2);
}

#[test]
fn a_submit_is_cut_into_batches_at_the_file_limits() {
    let server = BatchServer::start(BatchScript::default());
    let repo = repo_for(&server);
    let total = repo.spans.len();
    let submitted = json_of(&repo, &["batch", "submit", "--max-requests-per-file", "3"]);
    assert_eq!(
        submitted["submitted"].as_array().map(Vec::len),
        Some(3),
        "{submitted}"
    );
    let sizes: Vec<usize> = server.uploaded_lines().iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, total - 6]);
    // And at the byte limit: one request per file when two do not fit.
    let other = BatchServer::start(BatchScript::default());
    let small = repo_for(&other);
    let one_line = server.uploaded_lines()[0][0].to_string().len() + 1;
    json_of(
        &small,
        &[
            "batch",
            "submit",
            "--limit",
            "2",
            "--max-bytes-per-file",
            &(one_line + 100).to_string(),
        ],
    );
    assert_eq!(other.uploaded_lines().len(), 2);
    let collected = collect_all(&repo);
    assert_eq!(collected["collected"].as_array().map(Vec::len), Some(3));
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total as i64);
}

#[test]
fn a_live_run_leaves_the_spans_a_batch_holds() {
    let server = BatchServer::start(BatchScript {
        in_progress_polls: 1,
        ..BatchScript::default()
    });
    let live = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(server.fake.url(), Some(live.url())));
    let total = repo.spans.len() as i64;
    json_of(&repo, &["batch", "submit", "--limit", "3"]);
    let held: Vec<String> = server.uploaded_lines()[0]
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(held.len(), 3);
    let run = json_of(&repo, &["run", "--chain", "live"]);
    assert_eq!(run["succeeded"], total - 3, "{run}");
    assert_eq!(live.stats().generations() as i64, total - 3);
    collect_all(&repo);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total);
    // Every span answered once: by the batch or by the run, never both.
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_attempts"), total);
}

#[test]
fn collect_waits_for_a_slow_batch_and_a_busy_service() {
    let server = BatchServer::start(BatchScript {
        validating_polls: 1,
        in_progress_polls: 4,
        busy_polls: 2,
        ..BatchScript::default()
    });
    let repo = repo_for(&server);
    json_of(&repo, &["batch", "submit"]);
    let collected = collect_all(&repo);
    assert_eq!(
        collected["collected"][0]["status"], "completed",
        "{collected}"
    );
    let polls = server
        .fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v1/batches/"))
        .count();
    // Two refused (429 with a Retry-After), then validating once, in progress four times,
    // finalizing, completed.
    assert_eq!(polls, 2 + 1 + 4 + 1 + 1, "{:?}", server.fake.requests());
}

/// Answers an exported file as an offline engine does: each line's body sent to the fake
/// OpenAI-compatible server, its answer written as an output line.
fn run_offline(input: &std::path::Path, output: &std::path::Path, engine: &Server) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the engine's client");
    let client = enrich_testkit::http_client();
    let text = std::fs::read_to_string(input).expect("the exported file");
    let mut out = String::new();
    let mut lines = 0;
    for line in text.lines() {
        let request: Value = serde_json::from_str(line).expect("a JSON line");
        let (status, body) = runtime.block_on(async {
            let reply = client
                .post(format!("{}/v1/chat/completions", engine.url()))
                .json(&request["body"])
                .send()
                .await
                .expect("the engine answers");
            let status = reply.status().as_u16();
            let body: Value = reply.json().await.expect("a JSON answer");
            (status, body)
        });
        out.push_str(
            &json!({"id": format!("vllm-{lines}"), "custom_id": request["custom_id"],
                    "response": {"status_code": status, "request_id": "r", "body": body},
                    "error": null})
            .to_string(),
        );
        out.push('\n');
        lines += 1;
    }
    std::fs::write(output, out).expect("write the output file");
    lines
}

#[test]
fn export_and_import_round_trip_through_an_offline_engine() {
    let engine = Server::start(FakeOllamaConfig::default().with_models([MODEL]));
    let repo = TestRepo::new();
    repo.write_config(&config(engine.url(), None));
    let total = repo.spans.len();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("requests.jsonl");
    let exported = json_of(&repo, &["batch", "export", input.to_str().expect("utf-8")]);
    assert_eq!(exported["files"][0]["requests"], total, "{exported}");
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_leases"),
        total as i64
    );
    let output = dir.path().join("results.jsonl");
    assert_eq!(run_offline(&input, &output, &engine), total);

    // A collect that died half-way: only the first lines were stored.
    let text = std::fs::read_to_string(&output).expect("read");
    let half: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    let partial = dir.path().join("partial.jsonl");
    std::fs::write(&partial, half).expect("write");
    let first = json_of(
        &repo,
        &["batch", "import", partial.to_str().expect("utf-8")],
    );
    assert_eq!(first["ingested"]["enriched"], 3, "{first}");
    assert_eq!(first["closed_batches"], json!([]));

    let rest = json_of(&repo, &["batch", "import", output.to_str().expect("utf-8")]);
    assert_eq!(rest["ingested"]["enriched"], total - 3, "{rest}");
    assert_eq!(rest["ingested"]["passed_over"], 3);
    assert_eq!(rest["closed_batches"], json!([1]));
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total as i64);
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts"),
        total as i64
    );
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_leases"), 0);

    // Importing again stores nothing twice.
    let again = json_of(&repo, &["batch", "import", output.to_str().expect("utf-8")]);
    assert_eq!(again["ingested"]["passed_over"], total, "{again}");
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts"),
        total as i64
    );

    // The offline request is the request a live run sends to the same backend.
    let live = TestRepo::new();
    live.write_config(&config(engine.url(), None));
    let before = engine.stats().generations();
    json_of(&live, &["run", "--limit", "1"]);
    assert_eq!(engine.stats().generations(), before + 1);
    let bodies = engine.request_bodies();
    let sent: Value =
        serde_json::from_str(bodies.last().expect("a live request body")).expect("JSON");
    let exported_line = std::fs::read_to_string(&input)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .find(|l| l["body"]["messages"] == sent["messages"])
        .expect("the live span's line");
    assert_eq!(exported_line["body"], sent);
}

#[test]
fn a_bad_output_file_is_refused_as_bad_input() {
    let repo = TestRepo::new();
    repo.write_config(&config("http://127.0.0.1:9", None));
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "not json\n").expect("write");
    let ran = repo.enrich(&["batch", "import", bad.to_str().expect("utf-8")]);
    ran.expect_code(2);
    assert!(ran.stderr.contains("line 1"), "{}", ran.stderr);
    let missing = repo.enrich(&["batch", "import", "/nonexistent/out.jsonl"]);
    missing.expect_code(2);
    // A line no answer could fill is refused before it is held whole.
    let huge = dir.path().join("huge.jsonl");
    std::fs::write(&huge, vec![b'x'; 17 * 1024 * 1024]).expect("write");
    let ran = repo.enrich(&["batch", "import", huge.to_str().expect("utf-8")]);
    ran.expect_code(2);
    assert!(
        ran.stderr.contains("longer than 16777216 bytes"),
        "{}",
        ran.stderr
    );
}

/// [`config`] with a price on the batch backend and `budget` lines in `[enrichment.budget]`.
fn priced_config(url: &str, live: Option<&str>, budget: &str) -> String {
    config(url, live).replace(
        "options = { temperature = 0, seed = 7 }\n",
        "options = { temperature = 0, seed = 7 }\nprice_input_per_1m = 1000.0\nprice_output_per_1m = 1000.0\n",
    ) + &format!("\n[enrichment.budget]\n{budget}\n")
}

#[test]
fn the_plan_shows_the_batch_price_by_the_configured_discount() {
    let repo = TestRepo::new();
    let check = |budget: &str, share: f64| {
        repo.write_config(&priced_config("http://127.0.0.1:9", None, budget));
        let plan = json_of(&repo, &["plan"]);
        let estimate = &plan["estimate"];
        let cost = estimate["cost"].as_f64().expect("a cost");
        let batch = estimate["batch_cost"].as_f64().expect("a batch cost");
        assert!((batch - cost * share).abs() < 1e-9, "{estimate}");
        let all = estimate["all_pending_cost"].as_f64().expect("a cost");
        let all_batch = estimate["all_pending_batch_cost"].as_f64().expect("a cost");
        assert!((all_batch - all * share).abs() < 1e-9, "{estimate}");
    };
    check("", 0.5);
    check("batch_discount = 0.2", 0.8);
    repo.write_config(&priced_config(
        "http://127.0.0.1:9",
        None,
        "batch_discount = 1.5",
    ));
    repo.enrich(&["plan"]).expect_code(2);
}

#[test]
fn a_submit_stops_at_the_run_budget_by_its_estimate_at_the_batch_price() {
    let server = BatchServer::start(BatchScript::default());
    let repo = TestRepo::new();
    // One span's estimate (prompt, and 350 tokens of answer at 0.001 a token, half off) is
    // about 0.3: two or three fit under 1.0, not all seven.
    repo.write_config(&priced_config(
        server.fake.url(),
        None,
        "max_cost_per_run = 1.0",
    ));
    let submitted = json_of(&repo, &["batch", "submit"]);
    assert_eq!(submitted["budget_reached"], true, "{submitted}");
    let requests = submitted["files"][0]["requests"]
        .as_u64()
        .expect("requests");
    assert!(
        requests > 0 && requests < repo.spans.len() as u64,
        "{submitted}"
    );
    let cost: f64 = repo
        .raw()
        .query_row("SELECT estimated_cost FROM enrich_batches", [], |r| {
            r.get(0)
        })
        .expect("an estimate");
    assert!(cost > 0.0 && cost <= 1.0, "{cost}");
    // Only the batch's spans are held.
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_leases"),
        requests as i64
    );
}

#[test]
fn a_day_budget_counts_an_open_batch_by_its_estimate() {
    let server = BatchServer::start(BatchScript {
        in_progress_polls: 100,
        ..BatchScript::default()
    });
    let live = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(server.fake.url(), Some(live.url())));
    json_of(&repo, &["batch", "submit", "--limit", "3"]);
    let estimate: i64 = repo
        .raw()
        .query_row("SELECT estimated_tokens FROM enrich_batches", [], |r| {
            r.get(0)
        })
        .expect("an estimate");
    assert!(estimate > 3 * 350, "{estimate}");
    // The open batch's estimate fills today's token budget: a live run takes no span.
    repo.write_config(&priced_config(
        server.fake.url(),
        Some(live.url()),
        &format!("max_tokens_per_day = {estimate}"),
    ));
    let run = repo.enrich(&["--json", "run", "--chain", "live"]).json();
    assert_eq!(run["end"], "budget_reached", "{run}");
    assert_eq!(run["budget_stop"]["kind"], "tokens_per_day", "{run}");
    assert_eq!(live.stats().generations(), 0);
}

#[test]
fn a_batch_the_service_refuses_to_describe_stays_open_and_the_collect_fails() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let key = "sk-batch-7f3a-planted";
    let fake = runtime
        .block_on(FakeBatchService::start(BatchScript::default(), Some(key)))
        .expect("start");
    let repo = TestRepo::new();
    repo.write_config(&config(fake.url(), None));
    let total = repo.spans.len() as i64;
    let mut submit = repo.command(&["--json", "batch", "submit"]);
    submit.env("OPENAI_API_KEY", key);
    let submitted = super::support::finish(submit.spawn().expect("start enrich"));
    submitted.expect_code(0);
    // Without the key the service answers 401: not retried, the batch is left as it is.
    let ran = repo.enrich(&["--json", "batch", "collect"]);
    ran.expect_code(1);
    assert!(
        ran.json()["errors"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("401")),
        "{}",
        ran.stdout
    );
    assert!(ran.stderr.contains("batch 1 stays open"), "{}", ran.stderr);
    assert!(!ran.stdout.contains(key) && !ran.stderr.contains(key));
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_leases"), total);
    let mut collect = repo.command(&[
        "--json",
        "batch",
        "collect",
        "--wait",
        "--poll-seconds",
        "0.001",
    ]);
    collect.env("OPENAI_API_KEY", key);
    let collected = super::support::finish(collect.spawn().expect("start enrich"));
    assert_eq!(
        collected.expect_code(0).json()["collected"][0]["ingested"]["enriched"],
        total
    );
}

#[test]
fn a_chain_without_an_openai_backend_is_refused_as_bad_input() {
    let live = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config("http://127.0.0.1:9", Some(live.url())));
    let ran = repo.enrich(&["batch", "submit", "--chain", "live"]);
    ran.expect_code(2);
    assert!(
        ran.stderr
            .contains("chain 'live' has no backend with provider = \"openai\""),
        "{}",
        ran.stderr
    );
    // Nothing is held, nothing is recorded.
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_leases"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_batches"), 0);
}

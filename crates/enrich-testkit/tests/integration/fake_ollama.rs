//! FakeOllama over real loopback HTTP: routes, answers, capacity, faults, counters, recording.

use std::time::Duration;

use enrich_backends::{
    FailureKind, REPAIR_EVIDENCE_SWAPPED, SpanIdentity, ValidationContext, judge_reply,
    parse_and_validate,
};
use enrich_config::QualityLevel;
use enrich_testkit::{Endpoint, FakeOllama, FakeOllamaConfig, Fault, Outcome, TestkitError};
use serde_json::{Value, json};

use crate::support::{MODEL, Reply, get, post, server, start};

const PROMPT: &str = "Summarise src/lib.rs lines 12-30 as JSON.";

fn validates_for(text: &str, start: u32, end: u32) {
    let span = SpanIdentity::new("sha256:t", "src/lib.rs", start, end);
    if let Err(err) = parse_and_validate(text, &ValidationContext::for_span(&span, true)) {
        panic!("{err}: {text}");
    }
}

fn generate_body(stream: bool) -> Value {
    json!({ "model": MODEL, "prompt": PROMPT, "stream": stream, "format": { "type": "object" } })
}

fn chat_body(stream: bool) -> Value {
    json!({
        "model": MODEL,
        "stream": stream,
        "messages": [
            { "role": "system", "content": "An example: lines 1-2." },
            { "role": "user", "content": PROMPT },
        ],
    })
}

fn openai_body() -> Value {
    json!({
        "model": MODEL,
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": PROMPT }] }],
        "response_format": { "type": "json_schema", "json_schema": { "name": "e", "schema": { "type": "object" } } },
        "temperature": 0,
    })
}

/// Sends a generation to `path` with `body`.
async fn generation(server: &FakeOllama, path: &str, body: &Value) -> Reply {
    post(
        &enrich_testkit::http_client(),
        format!("{}{path}", server.url()),
        body,
    )
    .await
}

#[tokio::test]
async fn generate_answers_a_valid_enrichment_with_ollama_metrics() {
    let server = server().await;
    let reply = generation(&server, "/api/generate", &generate_body(false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "application/json; charset=utf-8");
    let body = reply.json();
    validates_for(body["response"].as_str().unwrap(), 12, 30);
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["done"], true);
    assert_eq!(body["done_reason"], "stop");
    let prompt_tokens = PROMPT.len().div_ceil(4) as u64;
    let answer_tokens = body["response"].as_str().unwrap().len().div_ceil(4) as u64;
    assert_eq!(body["prompt_eval_count"], prompt_tokens);
    assert_eq!(body["eval_count"], answer_tokens);
    assert_eq!(body["load_duration"], 2_000_000);
    assert_eq!(body["prompt_eval_duration"], prompt_tokens * 1_000_000);
    assert_eq!(body["eval_duration"], answer_tokens * 10_000_000);
    assert_eq!(
        body["total_duration"],
        2_000_000 + prompt_tokens * 1_000_000 + answer_tokens * 10_000_000
    );
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn streaming_sends_ndjson_chunks_that_add_up_to_the_plain_answer() {
    let server = server().await;
    let plain = generation(&server, "/api/generate", &generate_body(false))
        .await
        .json();
    // `stream` defaults to true, as in Ollama.
    let mut body = generate_body(true);
    body.as_object_mut().unwrap().remove("stream");
    let reply = generation(&server, "/api/generate", &body).await;
    assert_eq!(reply.content_type, "application/x-ndjson");
    let lines = reply.lines();
    assert!(lines.len() >= 3, "{lines:?}");
    let (last, chunks) = lines.split_last().unwrap();
    assert!(chunks.iter().all(|c| c["done"] == false));
    let text: String = chunks
        .iter()
        .map(|c| c["response"].as_str().unwrap())
        .collect();
    assert_eq!(text, plain["response"].as_str().unwrap());
    assert_eq!(last["done"], true);
    assert_eq!(last["response"], "");
    assert_eq!(last["eval_count"], plain["eval_count"]);

    let chat = generation(&server, "/api/chat", &chat_body(true))
        .await
        .lines();
    let (last, chunks) = chat.split_last().unwrap();
    let text: String = chunks
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap())
        .collect();
    validates_for(&text, 12, 30);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["message"]["role"], "assistant");
}

#[tokio::test]
async fn chat_cites_the_last_user_message_first() {
    let server = server().await;
    let body = generation(&server, "/api/chat", &chat_body(false))
        .await
        .json();
    assert_eq!(body["message"]["role"], "assistant");
    validates_for(body["message"]["content"].as_str().unwrap(), 12, 30);
    assert!(body["eval_duration"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn answers_are_deterministic_and_follow_the_cited_lines() {
    let server = server().await;
    let ask = |prompt: &str| {
        let body = json!({ "model": MODEL, "prompt": prompt, "stream": false });
        let server = &server;
        async move {
            let body = generation(server, "/api/generate", &body).await.json();
            body["response"].as_str().unwrap().to_owned()
        }
    };
    let first = ask(PROMPT).await;
    assert_eq!(first, ask(PROMPT).await);
    validates_for(&ask("\"line_start\": 40, \"line_end\": 41").await, 40, 41);
    let uncited = ask("describe this").await;
    validates_for(&uncited, 1, 1);
    assert_ne!(
        uncited,
        ask("describe that").await,
        "different prompts, different answers"
    );
}

#[tokio::test]
async fn openai_chat_completions_answers_in_openai_shape() {
    let server = server().await;
    let reply = generation(&server, "/v1/chat/completions", &openai_body()).await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap();
    validates_for(content, 12, 30);
    let usage = &body["usage"];
    assert_eq!(usage["completion_tokens"], content.len().div_ceil(4) as u64);
    assert_eq!(usage["prompt_tokens"], PROMPT.len().div_ceil(4) as u64);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );

    let mut json_object = openai_body();
    json_object["response_format"] = json!({ "type": "json_object" });
    assert_eq!(
        generation(&server, "/v1/chat/completions", &json_object)
            .await
            .status,
        200
    );
}

/// Requests the server refuses before any fault, with the exact error body.
#[tokio::test]
async fn malformed_requests_are_refused_in_each_dialect() {
    let server = server().await;
    let check = |path: &'static str, body: Value, status: u16, error: Value| {
        let server = &server;
        async move {
            let reply = generation(server, path, &body).await;
            assert_eq!(
                (reply.status, reply.json()),
                (status, error),
                "{path} {body}"
            );
        }
    };
    check(
        "/api/generate",
        json!({ "model": "llama3", "prompt": "x" }),
        404,
        json!({ "error": "model 'llama3' not found, try pulling it first" }),
    )
    .await;
    check(
        "/api/chat",
        json!({ "messages": [] }),
        400,
        json!({ "error": "model is required" }),
    )
    .await;
    check(
        "/api/generate",
        json!({ "model": MODEL, "prompt": "x", "format": "yaml" }),
        400,
        json!({ "error": "invalid format: \"yaml\": expected \"json\" or a JSON schema" }),
    )
    .await;
    check(
        "/v1/chat/completions",
        json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": "x" }] }),
        404,
        json!({ "error": {
            "message": "model 'gpt-4o' not found, try pulling it first",
            "type": "not_found_error",
            "code": "model_not_found",
        } }),
    )
    .await;
    check(
        "/v1/chat/completions",
        json!({ "model": MODEL, "stream": true, "messages": [{ "role": "user", "content": "x" }] }),
        400,
        json!({ "error": {
            "message": "fake ollama does not stream /v1/chat/completions; send \"stream\": false",
            "type": "invalid_request_error",
            "code": null,
        } }),
    )
    .await;
    assert_eq!(server.stats().outcome(Outcome::ModelNotFound), 2);
    assert_eq!(server.stats().outcome(Outcome::InvalidRequest), 3);

    let raw = enrich_testkit::http_client()
        .post(format!("{}/api/generate", server.url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(
        raw.text()
            .await
            .unwrap()
            .starts_with("{\"error\":\"invalid JSON in the request body")
    );
}

#[tokio::test]
async fn model_names_match_like_ollama_and_empty_prompts_load() {
    let server = start(FakeOllamaConfig::default().with_models(["llama3", MODEL])).await;
    for name in ["LLAMA3", "llama3:latest", "Qwen2.5:7B-Instruct"] {
        let body = json!({ "model": name, "prompt": "", "stream": false });
        let reply = generation(&server, "/api/generate", &body).await.json();
        assert_eq!(reply["done_reason"], "load", "{name}");
        assert_eq!(reply["response"], "");
    }
}

#[tokio::test]
async fn information_routes_describe_the_served_models() {
    let server = start(FakeOllamaConfig::default().with_context_length(4096)).await;
    let client = enrich_testkit::http_client();
    let url = |path: &str| format!("{}{path}", server.url());

    let root = get(&client, url("/")).await;
    assert_eq!(
        (root.status, root.text.as_str()),
        (200, "Ollama is running")
    );
    assert_eq!(
        get(&client, url("/api/version")).await.json(),
        json!({ "version": "0.12.0" })
    );
    let tags = get(&client, url("/api/tags")).await.json();
    assert_eq!(tags["models"][0]["name"], MODEL);
    assert_eq!(tags["models"][0]["digest"].as_str().unwrap().len(), 64);
    assert_eq!(
        get(&client, url("/api/ps")).await.json(),
        json!({ "models": [] })
    );

    let show = post(&client, url("/api/show"), &json!({ "model": MODEL }))
        .await
        .json();
    assert_eq!(show["model_info"]["llama.context_length"], 4096);
    assert_eq!(show["capabilities"], json!(["completion"]));
    let missing = post(&client, url("/api/show"), &json!({ "name": "nope" })).await;
    assert_eq!(missing.status, 404);

    let models = get(&client, url("/v1/models")).await.json();
    assert_eq!(models["data"][0]["id"], MODEL);

    generation(&server, "/api/generate", &generate_body(false)).await;
    let ps = get(&client, url("/api/ps")).await.json();
    assert_eq!(ps["models"][0]["name"], MODEL);
    assert_eq!(ps["models"][0]["context_length"], 4096);

    let unknown = get(&client, url("/api/pull")).await;
    assert_eq!(
        (unknown.status, unknown.text.as_str()),
        (404, "404 page not found")
    );
    let wrong_method = get(&client, url("/api/generate")).await;
    assert_eq!(wrong_method.status, 405);
}

#[tokio::test]
async fn prompts_beyond_the_context_are_refused() {
    let server = start(FakeOllamaConfig::default().with_context_length(100)).await;
    let long = "x".repeat(404);
    let too_long = json!({ "model": MODEL, "prompt": long, "stream": false });
    let reply = generation(&server, "/api/generate", &too_long).await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            400,
            json!({ "error": "the input length exceeds the context length" })
        )
    );
    // num_ctx lowers the limit; it cannot raise it past the model's context.
    let fits = json!({ "model": MODEL, "prompt": "x".repeat(200), "stream": false });
    assert_eq!(
        generation(&server, "/api/generate", &fits).await.status,
        200
    );
    let mut small_ctx = fits.clone();
    small_ctx["options"] = json!({ "num_ctx": 40 });
    assert_eq!(
        generation(&server, "/api/generate", &small_ctx)
            .await
            .status,
        400
    );
    let mut big_ctx = too_long.clone();
    big_ctx["options"] = json!({ "num_ctx": 100_000 });
    assert_eq!(
        generation(&server, "/api/generate", &big_ctx).await.status,
        400
    );
    assert_eq!(server.stats().outcome(Outcome::ContextExceeded), 3);
}

/// One fault on one route: the status, what the body must satisfy, the outcome counted.
async fn check_fault(
    fault: Fault,
    path: &str,
    body: Value,
    status: u16,
    expect: impl Fn(&Reply),
    outcome: Outcome,
) {
    let server = start(FakeOllamaConfig::default().with_faults([fault])).await;
    let reply = generation(&server, path, &body).await;
    assert_eq!(reply.status, status, "{fault:?} on {path}: {}", reply.text);
    expect(&reply);
    let stats = server.stats();
    assert_eq!(stats.outcome(outcome), 1, "{fault:?} on {path}");
    // The fault was used once: the next request is answered normally.
    assert_eq!(
        generation(&server, path, &body).await.status,
        200,
        "{fault:?} on {path}"
    );
}

fn error_is(expected: &'static str) -> impl Fn(&Reply) {
    move |reply| assert_eq!(reply.json(), json!({ "error": expected }))
}

#[tokio::test]
async fn every_fault_answers_as_documented_on_ollama_routes() {
    let generate = || generate_body(false);
    check_fault(
        Fault::ServerError,
        "/api/generate",
        generate(),
        500,
        error_is("llama runner process has terminated: exit status 2"),
        Outcome::ServerError,
    )
    .await;
    check_fault(
        Fault::Busy,
        "/api/generate",
        generate(),
        503,
        error_is("server busy, please try again.  maximum pending requests exceeded"),
        Outcome::Busy,
    )
    .await;
    check_fault(
        Fault::RateLimited {
            retry_after_secs: 9,
        },
        "/api/chat",
        chat_body(false),
        429,
        |reply| assert_eq!(reply.retry_after.as_deref(), Some("9")),
        Outcome::RateLimited,
    )
    .await;
    check_fault(
        Fault::ContextExceeded,
        "/api/generate",
        generate(),
        400,
        error_is("the input length exceeds the context length"),
        Outcome::ContextExceeded,
    )
    .await;
    check_fault(
        Fault::BadRequest,
        "/api/generate",
        generate(),
        400,
        |reply| {
            assert!(
                reply.json()["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("invalid options")
            )
        },
        Outcome::BadRequest,
    )
    .await;
    check_fault(
        Fault::Unauthorized,
        "/api/generate",
        generate(),
        401,
        error_is("unauthorized"),
        Outcome::Unauthorized,
    )
    .await;
    check_fault(
        Fault::Garbage,
        "/api/generate",
        generate(),
        200,
        |reply| {
            let text = reply.json()["response"].as_str().unwrap().to_owned();
            assert!(!text.contains('{') && !text.is_empty(), "{text}");
        },
        Outcome::Garbage,
    )
    .await;
    check_fault(
        Fault::Nonsense,
        "/api/generate",
        generate(),
        200,
        |reply| {
            // Valid enrichment.v1 for the cited lines, which the quality gate rejects.
            let text = reply.json()["response"].as_str().unwrap().to_owned();
            let span = SpanIdentity::new("sha256:t", "src/lib.rs", 12, 30);
            let err =
                parse_and_validate(&text, &ValidationContext::for_span(&span, true)).unwrap_err();
            assert_eq!(err.kind, FailureKind::QualityRejected, "{err}: {text}");
            let schema_only =
                ValidationContext::for_span(&span, true).with_quality(QualityLevel::Off);
            let validated = judge_reply(&text, &schema_only).unwrap();
            assert_eq!(validated.quality.repairs, [REPAIR_EVIDENCE_SWAPPED]);
        },
        Outcome::Nonsense,
    )
    .await;
    check_fault(
        Fault::Truncated,
        "/api/chat",
        chat_body(false),
        200,
        |reply| {
            let body = reply.json();
            assert_eq!(body["done_reason"], "length");
            let text = body["message"]["content"].as_str().unwrap();
            assert!(text.starts_with('{') && serde_json::from_str::<Value>(text).is_err());
        },
        Outcome::Truncated,
    )
    .await;
    check_fault(
        Fault::ThinkingOnly,
        "/api/generate",
        generate(),
        200,
        |reply| {
            let body = reply.json();
            assert_eq!(body["response"], "");
            validates_for(body["thinking"].as_str().unwrap(), 12, 30);
        },
        Outcome::ThinkingOnly,
    )
    .await;
    check_fault(
        Fault::StreamError,
        "/api/generate",
        generate_body(true),
        200,
        |reply| {
            let lines = reply.lines();
            assert_eq!(lines[0]["done"], false);
            assert_eq!(
                lines.last().unwrap(),
                &json!({ "error": "an error was encountered while running the model: unexpected EOF" })
            );
            assert!(lines.iter().all(|l| l["done"] != true));
        },
        Outcome::StreamError,
    )
    .await;
    check_fault(
        Fault::StreamError,
        "/api/generate",
        generate(),
        500,
        error_is("an error was encountered while running the model: unexpected EOF"),
        Outcome::StreamError,
    )
    .await;
}

#[tokio::test]
async fn every_fault_answers_as_documented_on_the_openai_route() {
    let path = "/v1/chat/completions";
    let openai_error = |kind: &'static str, code: Option<&'static str>| {
        move |reply: &Reply| {
            let error = &reply.json()["error"];
            assert_eq!(error["type"], kind);
            assert_eq!(error["code"].as_str(), code);
            assert!(!error["message"].as_str().unwrap().is_empty());
        }
    };
    let cases = [
        (
            Fault::ServerError,
            500,
            "api_error",
            None,
            Outcome::ServerError,
        ),
        (Fault::Busy, 503, "api_error", None, Outcome::Busy),
        (
            Fault::RateLimited {
                retry_after_secs: 2,
            },
            429,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            Outcome::RateLimited,
        ),
        (
            Fault::ContextExceeded,
            400,
            "invalid_request_error",
            Some("context_length_exceeded"),
            Outcome::ContextExceeded,
        ),
        (
            Fault::BadRequest,
            400,
            "invalid_request_error",
            None,
            Outcome::BadRequest,
        ),
        (
            Fault::Unauthorized,
            401,
            "authentication_error",
            Some("invalid_api_key"),
            Outcome::Unauthorized,
        ),
        (
            Fault::StreamError,
            500,
            "api_error",
            None,
            Outcome::StreamError,
        ),
    ];
    for (fault, status, kind, code, outcome) in cases {
        check_fault(
            fault,
            path,
            openai_body(),
            status,
            openai_error(kind, code),
            outcome,
        )
        .await;
    }
    check_fault(
        Fault::Truncated,
        path,
        openai_body(),
        200,
        |reply| assert_eq!(reply.json()["choices"][0]["finish_reason"], "length"),
        Outcome::Truncated,
    )
    .await;
    check_fault(
        Fault::ThinkingOnly,
        path,
        openai_body(),
        200,
        |reply| {
            let message = &reply.json()["choices"][0]["message"];
            assert_eq!(message["content"], "");
            validates_for(message["reasoning"].as_str().unwrap(), 12, 30);
        },
        Outcome::ThinkingOnly,
    )
    .await;
}

#[tokio::test]
async fn a_hang_holds_its_slot_until_the_client_gives_up() {
    let server = start(FakeOllamaConfig::default().with_faults([Fault::Hang])).await;
    let client = enrich_testkit::http_client_builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = client
        .post(format!("{}/api/generate", server.url()))
        .json(&generate_body(false))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(server.stats().outcome(Outcome::Hang), 1);
    tokio::time::timeout(
        Duration::from_secs(5),
        server.wait_until(|s| s.running == 0),
    )
    .await
    .expect("the slot is released once the client disconnects");
}

#[tokio::test]
async fn slots_run_in_parallel_and_a_full_queue_answers_503() {
    let server = start(
        FakeOllamaConfig::default()
            .with_capacity(2, 1)
            .with_faults([Fault::Hang, Fault::Hang, Fault::Hang]),
    )
    .await;
    let url = format!("{}/api/generate", server.url());
    let client = enrich_testkit::http_client();
    let mut held = Vec::new();
    for _ in 0..3 {
        let (client, url) = (client.clone(), url.clone());
        held.push(tokio::spawn(async move {
            client.post(url).json(&generate_body(false)).send().await
        }));
    }
    server
        .wait_until(|s| s.running == 2 && s.waiting == 1)
        .await;
    let refused = post(&client, url.clone(), &generate_body(false)).await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.json(),
        json!({ "error": "server busy, please try again.  maximum pending requests exceeded" })
    );
    let stats = server.stats();
    assert_eq!(
        (stats.max_running, stats.outcome(Outcome::QueueFull)),
        (2, 1)
    );
    assert_eq!(
        stats.outcome(Outcome::Busy),
        0,
        "a real queue-full is not the injected fault"
    );

    // One hung client leaves: the queued request gets its slot.
    held.remove(0).abort();
    server
        .wait_until(|s| s.running == 2 && s.waiting == 0)
        .await;
    for call in held {
        call.abort();
    }
    server.wait_until(|s| s.running == 0).await;
    assert_eq!(post(&client, url, &generate_body(false)).await.status, 200);
    assert_eq!(server.stats().max_running, 2);
}

#[tokio::test]
async fn slots_change_while_the_server_runs() {
    let server = start(
        FakeOllamaConfig::default()
            .with_capacity(1, 8)
            .with_faults([Fault::Hang; 4]),
    )
    .await;
    let url = format!("{}/api/generate", server.url());
    let client = enrich_testkit::http_client();
    let send = || {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.post(url).json(&generate_body(false)).send().await })
    };
    // More slots: three run at once.
    server.set_slots(3);
    let mut held: Vec<_> = (0..3).map(|_| send()).collect();
    server.wait_until(|s| s.running == 3).await;

    // Fewer slots: a slot that frees is taken out, not handed to the next request.
    server.set_slots(1);
    held.remove(0).abort();
    server.wait_until(|s| s.running == 2).await;
    held.push(send());
    server
        .wait_until(|s| s.running == 2 && s.waiting == 1)
        .await;
    held.remove(0).abort();
    server.wait_until(|s| s.running == 1).await;
    let stats = server.stats();
    assert_eq!(
        (stats.running, stats.waiting),
        (1, 1),
        "one slot left, held"
    );
    assert_eq!(stats.max_running, 3);
    for call in held {
        call.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn latency_runs_on_tokio_clock() {
    let server = start(FakeOllamaConfig::default().with_latency(Duration::from_secs(30))).await;
    let started = tokio::time::Instant::now();
    let reply = generation(&server, "/api/generate", &generate_body(false)).await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_secs(30));
}

#[tokio::test]
async fn random_faults_follow_their_seed_and_rate() {
    let draw = |seed| async move {
        let server = start(
            FakeOllamaConfig::default()
                .with_fault_rate(Fault::Garbage, 0.25)
                .with_fault_rate(Fault::ServerError, 0.25)
                .with_seed(seed),
        )
        .await;
        let client = enrich_testkit::http_client();
        let url = format!("{}/api/generate", server.url());
        let mut statuses = Vec::new();
        for _ in 0..120 {
            let reply = post(&client, url.clone(), &generate_body(false)).await;
            let garbage =
                reply.status == 200 && !reply.json()["response"].as_str().unwrap().contains('{');
            statuses.push((reply.status, garbage));
        }
        (statuses, server.stats())
    };
    let (first, stats) = draw(7).await;
    let (again, _) = draw(7).await;
    let (other, _) = draw(8).await;
    assert_eq!(first, again, "the same seed replays the same faults");
    assert_ne!(first, other);
    let garbage = stats.outcome(Outcome::Garbage);
    let errors = stats.outcome(Outcome::ServerError);
    assert_eq!(first.iter().filter(|(_, g)| *g).count() as u64, garbage);
    assert!(
        (15..=45).contains(&garbage) && (15..=45).contains(&errors),
        "{garbage} {errors}"
    );
    assert_eq!(garbage + errors + stats.outcome(Outcome::Ok), 120);
}

#[tokio::test]
async fn invalid_fault_rates_are_refused_at_start() {
    let over = FakeOllamaConfig::default()
        .with_fault_rate(Fault::Garbage, 0.7)
        .with_fault_rate(Fault::Hang, 0.7);
    let err = FakeOllama::start(over).await.unwrap_err();
    assert!(
        matches!(err, TestkitError::InvalidFaultRate { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "fault rate `hang=0.7` is not `kind=p` with p between 0 and 1 (e.g. `garbage=0.05`)"
    );
    assert_eq!(
        Fault::parse_rate("rate_limited=0.5").unwrap(),
        (
            Fault::RateLimited {
                retry_after_secs: 1
            },
            0.5
        )
    );
    assert_eq!(
        Fault::parse_rate("slow=0.1").unwrap_err().to_string(),
        "unknown fault `slow`; known faults: server_error, garbage, truncated, hang, busy, \
         rate_limited, context_exceeded, bad_request, unauthorized, stream_error, thinking_only, \
         oversized, nonsense"
    );
    assert!(Fault::parse_rate("garbage=2").is_err());
}

#[tokio::test]
async fn counters_and_recorded_bodies_say_what_was_sent() {
    let server = server().await;
    let client = enrich_testkit::http_client();
    let url = |path: &str| format!("{}{path}", server.url());
    post(&client, url("/api/generate"), &generate_body(false)).await;
    post(&client, url("/api/chat"), &chat_body(false)).await;
    post(
        &client,
        url("/api/generate"),
        &json!({ "model": "absent", "prompt": "x" }),
    )
    .await;
    get(&client, url("/api/tags")).await;

    let stats = server.stats();
    assert_eq!(stats.total, 4);
    assert_eq!(stats.generations(), 3);
    assert_eq!(stats.endpoint(Endpoint::Generate), 2);
    assert_eq!(stats.endpoint(Endpoint::Chat), 1);
    assert_eq!(stats.endpoint(Endpoint::Tags), 1);
    assert_eq!(stats.outcome(Outcome::Ok), 3);
    assert_eq!(stats.outcome(Outcome::ModelNotFound), 1);
    assert_eq!(stats.connections, 1, "reqwest keeps the connection alive");

    let served = get(&client, url("/_fake/stats")).await.json();
    assert_eq!(served["endpoints"]["POST /api/generate"], 2);
    assert_eq!(served["outcomes"]["model_not_found"], 1);
    assert_eq!(served["total"], 5, "the stats request itself counts");

    let recorded = server.requests();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0].endpoint, Endpoint::Generate);
    assert_eq!(recorded[0].body, generate_body(false));
    assert_eq!(server.last_body(Endpoint::Chat), Some(chat_body(false)));
    assert_eq!(
        server.last_body(Endpoint::Generate).unwrap()["model"],
        "absent"
    );

    let listed = get(&client, url("/_fake/requests")).await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "POST bodies only, oldest first");
    assert_eq!(listed[0]["endpoint"], "POST /api/generate");
    assert_eq!(listed[0]["body"], generate_body(false));
    assert_eq!(listed[1]["endpoint"], "POST /api/chat");
    assert_eq!(listed[2]["body"]["model"], "absent");

    let quiet = start(FakeOllamaConfig::default().with_recording(false)).await;
    generation(&quiet, "/api/generate", &generate_body(false)).await;
    assert!(quiet.requests().is_empty());
    assert_eq!(quiet.stats().generations(), 1);
    let refused = get(&client, format!("{}/_fake/requests", quiet.url())).await;
    assert_eq!(refused.status, 409);
    assert_eq!(
        refused.text,
        "request bodies are not recorded: start the fake server with --record"
    );
}

#[tokio::test]
async fn the_fakes_own_routes_need_no_key() {
    let server = start(FakeOllamaConfig::default().with_api_key("sk-test")).await;
    let client = enrich_testkit::http_client();
    let denied = post(
        &client,
        format!("{}/api/generate", server.url()),
        &generate_body(false),
    )
    .await;
    assert_eq!(denied.status, 401);
    for route in ["/_fake/stats", "/_fake/requests"] {
        let reply = get(&client, format!("{}{route}", server.url())).await;
        assert_eq!(reply.status, 200, "{route}: {}", reply.text);
    }
    let listed = get(&client, format!("{}/_fake/requests", server.url()))
        .await
        .json();
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "a refused request is not recorded"
    );
}

#[tokio::test]
async fn faults_can_be_pushed_while_running_and_the_server_stops_on_drop() {
    let server = server().await;
    server.push_fault(Fault::Unauthorized);
    assert_eq!(
        generation(&server, "/api/generate", &generate_body(false))
            .await
            .status,
        401
    );
    assert_eq!(
        generation(&server, "/api/generate", &generate_body(false))
            .await
            .status,
        200
    );

    let url = server.url().to_owned();
    drop(server);
    // Dropping aborts the accept loop; let the runtime process the abort.
    tokio::task::yield_now().await;
    let err = enrich_testkit::http_client()
        .get(url)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
}

#[tokio::test]
async fn an_oversized_answer_is_a_valid_answer_padded_to_its_size_without_a_length() {
    const SIZE: u64 = 1024 * 1024;
    let cases = [
        ("/api/generate", generate_body(false), "/response"),
        ("/api/generate", generate_body(true), "/response"),
        ("/api/chat", chat_body(false), "/message/content"),
        (
            "/v1/chat/completions",
            openai_body(),
            "/choices/0/message/content",
        ),
    ];
    for (path, body, text_at) in cases {
        let config = FakeOllamaConfig::default()
            .with_faults([Fault::Oversized])
            .with_oversized_bytes(SIZE);
        let server = start(config).await;
        let response = enrich_testkit::http_client()
            .post(format!("{}{path}", server.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.content_length(),
            None,
            "{path}: sent without a length"
        );
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, SIZE, "{path}");
        assert_eq!(bytes.last(), Some(&b'\n'), "{path}: one (NDJSON) line");
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        if !path.starts_with("/v1") {
            assert_eq!(answer["done"], true, "{path}");
        }
        let text = answer.pointer(text_at).and_then(Value::as_str).unwrap();
        assert!(
            text.len() as u64 > SIZE / 2,
            "{path}: the padding is in the text"
        );
        validates_for(text, 12, 30);
        assert_eq!(server.stats().outcome(Outcome::Oversized), 1, "{path}");
    }
}

#[tokio::test]
async fn a_server_taken_down_refuses_connections_and_comes_back_at_the_same_address() {
    let server = server().await;
    let client = enrich_testkit::http_client();
    let version = format!("{}/api/version", server.url());
    assert_eq!(get(&client, version.clone()).await.status, 200);

    server.go_down().await;
    // The kept-alive connection is gone too: the next request finds nothing listening.
    let refused = client
        .get(&version)
        .send()
        .await
        .expect_err("nothing listens while the server is down");
    assert!(refused.is_connect(), "{refused:?}");

    server.come_back().await.expect("the address is free again");
    assert_eq!(get(&client, version).await.status, 200);
    // Its counters carried on across the outage.
    assert_eq!(server.stats().endpoint(Endpoint::Version), 2);
    // Coming back while up changes nothing.
    server.come_back().await.expect("already up");
}

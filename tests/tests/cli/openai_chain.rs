//! A mixed chain: a local Ollama backend first, an OpenAI-compatible one second. When the local
//! one refuses, every span is enriched through the OpenAI-compatible API (the fake server's
//! `/v1`), with the key from the environment, and the attempt log says what happened.

use enrich_testkit::{Endpoint, FakeOllamaConfig, Outcome};
use serde_json::Value;

use super::support::{Server, TestRepo, refused_url};

/// The model the OpenAI-compatible backend names (and its fake server serves).
const HOSTED_MODEL: &str = "gpt-4o-mini";

/// A key no output could contain by chance, in the variable the adapter reads by default.
const KEY: &str = "sk-openai-chain-4f1d2c-planted";

/// A chain `mixed`: an Ollama backend `local` at `local_url` serving `local_model`, then an
/// OpenAI-compatible backend `hosted` at `hosted_url` (its `/v1`), without `api_key_env`.
fn mixed_config(local_url: &str, local_model: &str, hosted_url: &str) -> String {
    format!(
        "[enrichment]\ndefault_chain = \"mixed\"\nconcurrency = 1\n\n\
         [[enrichment.chain]]\nname = \"local\"\nchain = \"mixed\"\nprovider = \"ollama\"\n\
         model = \"{local_model}\"\nurl = \"{local_url}\"\ntimeout_seconds = 20\n\n\
         [[enrichment.chain]]\nname = \"hosted\"\nchain = \"mixed\"\nprovider = \"openai\"\n\
         model = \"{HOSTED_MODEL}\"\nurl = \"{hosted_url}/v1\"\ntimeout_seconds = 20\n\
         options = {{ temperature = 0, seed = 42 }}\n"
    )
}

/// The OpenAI-compatible fake: it serves [`HOSTED_MODEL`] and refuses requests without [`KEY`].
fn hosted_server() -> Server {
    Server::start(
        FakeOllamaConfig::default()
            .with_models([HOSTED_MODEL])
            .with_api_key(KEY),
    )
}

/// Runs `enrich --json run` with the key in `OPENAI_API_KEY`; checks it enriched every span
/// through `hosted` and returns the summary.
fn run_mixed(repo: &TestRepo, hosted: &Server) -> Value {
    let mut command = repo.command(&["--json", "run"]);
    command.env("OPENAI_API_KEY", KEY);
    let ran = super::support::finish(command.spawn().expect("start enrich"));
    let summary = ran.expect_code(0).json();
    assert!(
        !ran.stdout.contains(KEY) && !ran.stderr.contains(KEY),
        "the key is never printed"
    );

    let total = repo.spans.len() as u64;
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(summary["succeeded"], total, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["backends"]["local"]["succeeded"], 0, "{summary}");
    assert_eq!(
        summary["backends"]["hosted"]["succeeded"], total,
        "{summary}"
    );

    // Every row is the hosted model's, from the fake's /v1.
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrichments"), total as i64);
    let conn = repo.raw();
    let mut stmt = conn
        .prepare("SELECT DISTINCT model, backend_host, schema_ver FROM enrichments")
        .expect("prepare");
    let rows: Vec<(String, String, String)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query")
        .map(|row| row.expect("row"))
        .collect();
    assert_eq!(
        rows,
        [(
            HOSTED_MODEL.to_owned(),
            format!("{}/v1", hosted.url()),
            "enrichment.v1".to_owned()
        )]
    );

    // The OpenAI-compatible server got one request per span, each with the key from
    // OPENAI_API_KEY (none was refused).
    let stats = hosted.stats();
    assert_eq!(
        stats.endpoint(Endpoint::ChatCompletions),
        total,
        "{stats:?}"
    );
    assert_eq!(stats.outcome(Outcome::Unauthorized), 0, "{stats:?}");
    summary
}

/// The attempts logged for the first span (spans are taken in index order): (backend, outcome,
/// failure kind).
fn first_span_attempts(repo: &TestRepo) -> Vec<(String, String, Option<String>)> {
    let shown = repo
        .enrich(&["--json", "show", &repo.spans[0].hash])
        .expect_code(0)
        .json();
    shown["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            let a = &a["attempt"];
            (
                a["backend"].as_str().unwrap_or_default().to_owned(),
                a["outcome"].as_str().unwrap_or_default().to_owned(),
                a["failure_kind"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn a_refused_local_ollama_falls_through_to_the_openai_compatible_backend() {
    let hosted = hosted_server();
    let repo = TestRepo::new();
    let dead = refused_url();
    repo.write_config(&mixed_config(&dead, "qwen2.5:7b-instruct", hosted.url()));

    let summary = run_mixed(&repo, &hosted);
    assert!(
        summary["backends"]["local"]["failures"]["connect"].as_u64() >= Some(1),
        "{summary}"
    );
    assert_eq!(
        first_span_attempts(&repo),
        [
            (
                "local".to_owned(),
                "failure".to_owned(),
                Some("connect".to_owned())
            ),
            ("hosted".to_owned(), "success".to_owned(), None),
        ]
    );
}

#[test]
fn a_local_ollama_without_the_model_is_skipped_for_the_run_and_the_openai_backend_serves() {
    // Two fake servers: the local Ollama lacks the model (404), the hosted one serves it.
    let local = Server::healthy();
    let hosted = hosted_server();
    let repo = TestRepo::new();
    repo.write_config(&mixed_config(local.url(), "llama3.2:1b", hosted.url()));

    let summary = run_mixed(&repo, &hosted);
    assert_eq!(
        summary["backends"]["local"]["failures"]["model_not_found"], 1,
        "{summary}"
    );
    assert_eq!(
        local.stats().outcome(Outcome::ModelNotFound),
        1,
        "after its 404 the local backend is skipped for the rest of the run"
    );
    assert_eq!(
        first_span_attempts(&repo),
        [
            (
                "local".to_owned(),
                "failure".to_owned(),
                Some("model_not_found".to_owned())
            ),
            ("hosted".to_owned(), "success".to_owned(), None),
        ]
    );
}

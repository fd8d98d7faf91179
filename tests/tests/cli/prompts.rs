//! The built-in prompt as the servers receive it: the part shared by every span is one
//! byte-identical system prompt (Ollama's `system`, the OpenAI API's first message, role
//! `system`), the span's own part follows it, and every request carries the output budget that
//! fits the schema's longest answer.

use enrich_backends::enrichment_v1_output_tokens;
use serde_json::Value;

use super::support::{Server, TestRepo};

/// One chain of one backend of `provider` at `url`.
fn one_backend(provider: &str, url: &str) -> String {
    format!(
        "[enrichment]\ndefault_chain = \"c\"\nconcurrency = 1\n\n[[enrichment.chain]]\n\
         name = \"b\"\nchain = \"c\"\nprovider = \"{provider}\"\nmodel = \"qwen2.5:7b-instruct\"\n\
         url = \"{url}\"\ntimeout_seconds = 20\n"
    )
}

/// Enriches the test repository through `provider` (its API under `path` of the fake server)
/// and returns the generation request bodies the server received.
fn generation_bodies(provider: &str, path: &str) -> (TestRepo, Vec<Value>) {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&one_backend(provider, &format!("{}{path}", server.url())));
    repo.enrich(&["--json", "run"]).expect_code(0);
    let bodies = server
        .request_bodies()
        .iter()
        .map(|body| serde_json::from_str::<Value>(body).expect("a JSON body"))
        .filter(|body| body.get("prompt").is_some() || body.get("messages").is_some())
        .collect();
    (repo, bodies)
}

/// Checks the shared and span parts of every request: the same shared part, a span part that
/// names its span first and shares nothing with it.
fn check_parts(parts: &[(&str, &str)], spans: usize) {
    assert_eq!(parts.len(), spans, "one request per span");
    assert!(spans >= 2, "the repository has several spans");
    let shared = parts[0].0;
    assert!(shared.contains("ONE JSON object"), "{shared}");
    let mut span_parts: Vec<&str> = Vec::new();
    for (system, prompt) in parts {
        assert_eq!(system.as_bytes(), shared.as_bytes(), "byte-identical");
        assert!(prompt.starts_with("Span: lines "), "{prompt}");
        assert!(!prompt.contains("ONE JSON object"), "{prompt}");
        span_parts.push(prompt);
    }
    span_parts.dedup();
    assert_eq!(span_parts.len(), spans, "each span has its own part");
}

#[test]
fn ollama_gets_the_shared_part_as_its_system_prompt_and_the_output_budget() {
    let (repo, bodies) = generation_bodies("ollama", "");
    let parts: Vec<(&str, &str)> = bodies
        .iter()
        .map(|body| {
            assert_eq!(
                body["options"]["num_predict"],
                enrichment_v1_output_tokens(),
                "{body}"
            );
            (
                body["system"].as_str().expect("a system prompt"),
                body["prompt"].as_str().expect("a prompt"),
            )
        })
        .collect();
    check_parts(&parts, repo.spans.len());
}

#[test]
fn the_openai_api_gets_the_shared_part_as_its_first_message_and_the_output_budget() {
    let (repo, bodies) = generation_bodies("openai", "/v1");
    let parts: Vec<(&str, &str)> = bodies
        .iter()
        .map(|body| {
            assert_eq!(body["max_tokens"], enrichment_v1_output_tokens(), "{body}");
            let messages = body["messages"].as_array().expect("messages");
            let roles: Vec<&str> = messages
                .iter()
                .map(|m| m["role"].as_str().unwrap())
                .collect();
            assert_eq!(roles, ["system", "user"], "{body}");
            (
                messages[0]["content"].as_str().expect("text"),
                messages[1]["content"].as_str().expect("text"),
            )
        })
        .collect();
    check_parts(&parts, repo.spans.len());
}

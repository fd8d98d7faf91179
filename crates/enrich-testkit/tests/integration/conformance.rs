//! The conformance suite passes correct adapters and names exactly what a wrong one breaks.

use std::collections::BTreeSet;

use enrich_testkit::{Api, Verdict, run_conformance};

use crate::reference::{Quirk, factory};

/// Runs the suite on the reference adapter for `api` with `quirk` and checks which checks fail.
async fn check(api: Api, quirk: Quirk, expected_failures: &[&str]) {
    let report = run_conformance(api, factory(api, quirk)).await;
    let failed: BTreeSet<&str> = report.failures().map(|c| c.name).collect();
    let expected: BTreeSet<&str> = expected_failures.iter().copied().collect();
    assert_eq!(failed, expected, "{api} with {quirk:?}:\n{report}");
    assert_eq!(report.is_conformant(), expected.is_empty());
    assert_eq!(report.api, api);
}

#[tokio::test]
async fn a_correct_ollama_adapter_passes_every_check() {
    check(Api::Ollama, Quirk::None, &[]).await;
}

#[tokio::test]
async fn a_correct_openai_compatible_adapter_passes_every_check() {
    check(Api::OpenAiCompatible, Quirk::None, &[]).await;
}

#[tokio::test]
async fn leaving_timeouts_to_the_cascade_is_allowed() {
    check(Api::Ollama, Quirk::NoClientTimeout, &[]).await;
}

#[tokio::test]
async fn a_wrong_classification_fails_exactly_its_checks() {
    // A non-streaming adapter sees the stream error as a 500.
    check(
        Api::Ollama,
        Quirk::ServerErrorAsOverloaded,
        &[
            "server_error_500_is_server_error",
            "stream_error_is_server_error",
        ],
    )
    .await;
    check(
        Api::OpenAiCompatible,
        Quirk::ServerErrorAsOverloaded,
        &["server_error_500_is_server_error"],
    )
    .await;
}

#[tokio::test]
async fn reading_whole_answers_is_named() {
    for api in [Api::Ollama, Api::OpenAiCompatible] {
        check(
            api,
            Quirk::ReadsWholeAnswers,
            &["oversized_answer_is_response_too_large"],
        )
        .await;
    }
}

#[tokio::test]
async fn showing_the_urls_password_is_named() {
    for api in [Api::Ollama, Api::OpenAiCompatible] {
        check(
            api,
            Quirk::ShowsCredentials,
            &["credentials_in_the_url_are_never_shown"],
        )
        .await;
    }
}

#[tokio::test]
async fn a_missing_schema_is_named() {
    check(Api::Ollama, Quirk::NoSchema, &["request_carries_schema"]).await;
    check(
        Api::OpenAiCompatible,
        Quirk::NoSchema,
        &["request_carries_schema"],
    )
    .await;
}

#[tokio::test]
async fn a_system_prompt_sent_after_the_prompt_is_named() {
    // The Ollama quirk also drops num_predict: its body is built apart.
    check(
        Api::Ollama,
        Quirk::SystemLast,
        &[
            "request_carries_prompt_and_system",
            "request_carries_max_output_tokens",
        ],
    )
    .await;
    check(
        Api::OpenAiCompatible,
        Quirk::SystemLast,
        &["request_carries_prompt_and_system"],
    )
    .await;
}

#[tokio::test]
async fn a_client_per_call_is_named() {
    check(
        Api::Ollama,
        Quirk::ClientPerCall,
        &["connections_are_reused"],
    )
    .await;
}

#[tokio::test]
async fn an_ignored_retry_after_is_named() {
    check(
        Api::Ollama,
        Quirk::IgnoresRetryAfter,
        &["rate_limit_429_is_overloaded_with_retry_after"],
    )
    .await;
}

#[tokio::test]
async fn hidden_truncation_is_named() {
    check(
        Api::OpenAiCompatible,
        Quirk::HidesTruncation,
        &["truncation_is_flagged"],
    )
    .await;
}

#[tokio::test]
async fn the_report_explains_each_failure_and_what_does_not_apply() {
    let report = run_conformance(
        Api::OpenAiCompatible,
        factory(Api::OpenAiCompatible, Quirk::ServerErrorAsOverloaded),
    )
    .await;
    let failed = report.check("server_error_500_is_server_error").unwrap();
    let Verdict::Failed(why) = &failed.verdict else {
        panic!("expected a failure, got {:?}", failed.verdict);
    };
    assert!(
        why.starts_with("expected Err(server_error), got Err(overloaded): http://127.0.0.1:"),
        "{why}"
    );
    assert!(
        why.ends_with(
            "/v1 answered 500 Internal Server Error: llama runner process has terminated: exit \
             status 2"
        ),
        "{why}"
    );
    assert!(matches!(
        report.check("thinking_only_is_read").unwrap().verdict,
        Verdict::NotApplicable(_)
    ));
    let text = report.to_string();
    assert!(
        text.starts_with(
            "adapter conformance (openai-compatible): 23 passed, 1 failed, 2 not applicable\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\n  FAIL  server_error_500_is_server_error: expected Err(server_error)")
    );

    let panic = std::panic::catch_unwind(|| report.assert_conformant()).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("FAIL  server_error_500_is_server_error"),
        "{message}"
    );
}

#[tokio::test]
async fn an_adapter_the_factory_refuses_fails_every_check_with_the_reason() {
    let report = run_conformance(Api::Ollama, |_: &enrich_config::BackendSpec| {
        Err(enrich_backends::BackendError::new(
            enrich_backends::FailureKind::InvalidRequest,
            "unsupported url scheme",
        ))
    })
    .await;
    let applicable: Vec<_> = report
        .checks
        .iter()
        .filter(|c| !matches!(c.verdict, Verdict::NotApplicable(_)))
        .collect();
    assert!(applicable.len() >= 20);
    for check in applicable {
        let Verdict::Failed(why) = &check.verdict else {
            panic!("{} passed without an adapter", check.name);
        };
        assert!(
            why.contains("unsupported url scheme"),
            "{}: {why}",
            check.name
        );
    }
}

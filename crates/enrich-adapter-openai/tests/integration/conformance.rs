//! The testkit's adapter conformance suite, run against the OpenAI-compatible adapter.

use std::sync::Arc;

use enrich_adapter_openai::OpenAiAdapter;
use enrich_backends::{BackendAdapter, BackendError, FailureKind};
use enrich_testkit::{Api, Verdict, run_conformance};

#[tokio::test]
async fn the_adapter_passes_every_conformance_check() {
    let report = run_conformance(Api::OpenAiCompatible, |spec| {
        let adapter = OpenAiAdapter::new(spec.clone()).map_err(|err| {
            BackendError::new(FailureKind::InvalidRequest, err.to_string()).with_source(err)
        })?;
        Ok(Arc::new(adapter) as Arc<dyn BackendAdapter>)
    })
    .await;
    report.assert_conformant();
    // Only the Ollama-only checks (thinking replies, streamed errors) do not apply.
    let not_applicable: Vec<&str> = report
        .checks
        .iter()
        .filter(|check| matches!(check.verdict, Verdict::NotApplicable(_)))
        .map(|check| check.name)
        .collect();
    assert_eq!(
        not_applicable,
        ["thinking_only_is_read", "stream_error_is_server_error"],
        "{report}"
    );
}

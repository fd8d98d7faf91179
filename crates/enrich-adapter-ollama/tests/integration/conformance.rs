//! The testkit's adapter conformance suite, run against the Ollama adapter.

use std::sync::Arc;

use enrich_adapter_ollama::OllamaAdapter;
use enrich_backends::{BackendAdapter, BackendError, FailureKind};
use enrich_testkit::{Api, Verdict, run_conformance};

#[tokio::test]
async fn the_adapter_passes_every_conformance_check() {
    let report = run_conformance(Api::Ollama, |spec| {
        let adapter = OllamaAdapter::new(spec.clone()).map_err(|err| {
            BackendError::new(FailureKind::InvalidRequest, err.to_string()).with_source(err)
        })?;
        Ok(Arc::new(adapter) as Arc<dyn BackendAdapter>)
    })
    .await;
    report.assert_conformant();
    // Every check applies to an Ollama adapter that claims all capabilities.
    assert!(
        report
            .checks
            .iter()
            .all(|check| check.verdict == Verdict::Passed),
        "{report}"
    );
}

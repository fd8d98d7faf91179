//! The adapter against enrich's conformance suite: the fake Ollama server, every failure it can
//! inject, the health check.

use enrich_adapter_ollama_chat::{PROVIDER, register};
use enrich_backends::AdapterRegistry;
use enrich_testkit::{Api, run_conformance};

/// The one test an adapter crate needs. The suite builds the adapter through the same factory
/// the binary registers, for each of its checks.
#[tokio::test]
async fn the_adapter_passes_the_conformance_suite() {
    let mut registry = AdapterRegistry::new();
    register(&mut registry);
    assert_eq!(registry.providers(), [PROVIDER]);

    let report = run_conformance(Api::Ollama, |spec| {
        // The suite names the provider `ollama`; our entries say `ollama-chat`.
        let spec = enrich_config::BackendSpec {
            provider: PROVIDER.to_owned(),
            ..spec.clone()
        };
        registry.build(&spec).map_err(|err| {
            enrich_backends::BackendError::new(
                enrich_backends::FailureKind::InvalidRequest,
                err.to_string(),
            )
        })
    })
    .await;
    // Panics with the list of failed checks, each saying what was expected.
    report.assert_conformant();
}

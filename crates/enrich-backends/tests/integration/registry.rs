//! The adapter registry as the CLI and the pipeline use it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use enrich_backends::{AdapterRegistry, BackendAdapter, BackendError, BackendsError, FailureKind};
use enrich_config::BackendSpec;

use crate::support::{Scripted, Step};

fn scripted_factory(
    builds: Arc<AtomicU32>,
) -> impl Fn(&BackendSpec) -> Result<Arc<dyn BackendAdapter>, BackendError> + Send + Sync {
    move |spec: &BackendSpec| {
        builds.fetch_add(1, Ordering::SeqCst);
        if spec.url.as_deref() == Some("not a url") {
            return Err(BackendError::new(
                FailureKind::InvalidRequest,
                "url 'not a url' is not absolute",
            ));
        }
        Ok(
            Scripted::with_spec(spec.clone(), vec![Step::Fail(FailureKind::Connect)])
                as Arc<dyn BackendAdapter>,
        )
    }
}

fn registry() -> (AdapterRegistry, Arc<AtomicU32>) {
    let builds = Arc::new(AtomicU32::new(0));
    let mut registry = AdapterRegistry::new();
    registry
        .register("scripted", scripted_factory(Arc::clone(&builds)))
        .register("Ollama", scripted_factory(Arc::clone(&builds)));
    (registry, builds)
}

#[test]
fn build_hands_the_spec_to_the_providers_factory() {
    let (registry, builds) = registry();
    assert_eq!(registry.providers(), ["ollama", "scripted"]);
    let spec = BackendSpec::new("local", "default", " OLLAMA ", "qwen");
    let adapter = registry.build(&spec).unwrap();
    assert_eq!(adapter.spec(), &spec);
    assert_eq!(builds.load(Ordering::SeqCst), 1);
}

#[test]
fn an_unknown_provider_names_the_backend_and_lists_the_known_ones() {
    let (registry, _) = registry();
    let spec = BackendSpec::new("cloud", "docs", "openai", "gpt");
    let err = registry.build(&spec).err().unwrap();
    assert!(matches!(err, BackendsError::UnknownProvider { .. }));
    assert_eq!(
        err.to_string(),
        "backend 'cloud' in chain 'docs' uses provider 'openai', which no adapter provides; \
         known providers: ollama, scripted; fix its `provider` key"
    );
    let empty = AdapterRegistry::new().build(&spec).err().unwrap();
    assert!(
        empty
            .to_string()
            .contains("known providers: none are registered"),
        "{empty}"
    );
}

#[test]
fn a_factory_error_says_which_backend_it_was() {
    let (registry, _) = registry();
    let spec = BackendSpec {
        url: Some("not a url".into()),
        ..BackendSpec::new("bad", "default", "ollama", "m")
    };
    let err = registry.build(&spec).err().unwrap();
    assert_eq!(
        err.to_string(),
        "cannot set up backend 'bad' in chain 'default' (provider 'ollama'): \
         invalid_request: url 'not a url' is not absolute"
    );
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(
        source.to_string(),
        "invalid_request: url 'not a url' is not absolute"
    );
}

#[test]
fn build_all_builds_each_distinct_backend_once() {
    let (registry, builds) = registry();
    let local = BackendSpec::new("local", "default", "ollama", "qwen");
    let same_in_docs = BackendSpec {
        chain: "docs".into(),
        routing_tier: Some("14b".into()),
        ..local.clone()
    };
    let other_model = BackendSpec::new("local", "code", "ollama", "llama");
    let pooled = BackendSpec {
        urls: vec!["http://a:11434".into(), "http://b:11434".into()],
        ..local.clone()
    };
    let limited = BackendSpec {
        requests_per_minute: Some(60),
        ..local.clone()
    };
    let specs = [local.clone(), same_in_docs, other_model, pooled, limited];
    let adapters = registry.build_all(&specs).unwrap();
    assert_eq!(adapters.len(), 5);
    assert!(Arc::ptr_eq(&adapters[0], &adapters[1]));
    for different in &adapters[2..] {
        assert!(!Arc::ptr_eq(&adapters[0], different));
    }
    assert_eq!(adapters[1].spec(), &local);
    assert_eq!(adapters[2].spec().model, "llama");
    assert_eq!(builds.load(Ordering::SeqCst), 4);

    let with_unknown = [local, BackendSpec::new("x", "default", "acme", "m")];
    let err = registry.build_all(&with_unknown).err().unwrap();
    assert!(
        err.to_string()
            .starts_with("backend 'x' in chain 'default' uses provider 'acme'"),
        "{err}"
    );
}

#[test]
fn registering_again_replaces_the_factory() {
    let (mut registry, builds) = registry();
    let replaced = Arc::new(AtomicU32::new(0));
    registry.register("scripted", scripted_factory(Arc::clone(&replaced)));
    registry
        .build(&BackendSpec::new("a", "default", "scripted", "m"))
        .unwrap();
    assert_eq!(
        (
            builds.load(Ordering::SeqCst),
            replaced.load(Ordering::SeqCst)
        ),
        (0, 1)
    );
    assert_eq!(registry.providers(), ["ollama", "scripted"]);
}

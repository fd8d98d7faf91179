//! The adapter registry: every provider crate linked into the binary registers here. A new
//! provider is one more line.

use enrich_backends::AdapterRegistry;

/// A registry with every provider this binary serves.
pub(crate) fn registry() -> AdapterRegistry {
    let mut registry = AdapterRegistry::new();
    enrich_adapter_ollama::register(&mut registry);
    enrich_adapter_openai::register(&mut registry);
    registry
}

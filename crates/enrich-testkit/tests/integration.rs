//! Integration tests of enrich-testkit: each double used as an adapter crate or a pipeline test
//! would use it, over real loopback HTTP and real child processes.

#[path = "integration/support.rs"]
mod support;

#[path = "integration/reference.rs"]
mod reference;

#[path = "integration/conformance.rs"]
mod conformance;
#[path = "integration/fake_adapter.rs"]
mod fake_adapter;
#[path = "integration/fake_ollama.rs"]
mod fake_ollama;
#[path = "integration/processes.rs"]
mod processes;

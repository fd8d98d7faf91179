//! Integration tests of enrich-adapter-ollama: real HTTP on loopback against wiremock, a raw
//! HTTP/1.1 server, and closed ports.

#[path = "integration/support.rs"]
mod support;

#[path = "integration/conformance.rs"]
mod conformance;
#[path = "integration/failures.rs"]
mod failures;
#[path = "integration/generate.rs"]
mod generate;
#[path = "integration/health.rs"]
mod health;
#[path = "integration/limits.rs"]
mod limits;
#[path = "integration/real_model.rs"]
mod real_model;
#[path = "integration/setup.rs"]
mod setup;

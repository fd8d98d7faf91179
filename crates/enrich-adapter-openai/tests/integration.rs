//! Integration tests of enrich-adapter-openai: real HTTP on loopback against wiremock, the
//! testkit's fake server (its OpenAI-compatible `/v1`), closed ports, and the real local model
//! server.

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
#[path = "integration/real_model.rs"]
mod real_model;
#[path = "integration/setup.rs"]
mod setup;

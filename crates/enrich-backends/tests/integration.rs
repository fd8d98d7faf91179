//! Integration tests of enrich-backends: the contract as the pipeline and provider crates use it.

#[path = "integration/support.rs"]
mod support;

#[path = "integration/adaptive.rs"]
mod adaptive;
#[path = "integration/cascade.rs"]
mod cascade;
#[path = "integration/circuits.rs"]
mod circuits;
#[path = "integration/output.rs"]
mod output;
#[path = "integration/pools.rs"]
mod pools;
#[path = "integration/quality.rs"]
mod quality;
#[path = "integration/rate_limits.rs"]
mod rate_limits;
#[path = "integration/reask.rs"]
mod reask;
#[path = "integration/registry.rs"]
mod registry;

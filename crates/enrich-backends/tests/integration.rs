//! Integration tests of enrich-backends: the contract as the pipeline and provider crates use it.

#[path = "integration/support.rs"]
mod support;

#[path = "integration/cascade.rs"]
mod cascade;
#[path = "integration/contract.rs"]
mod contract;
#[path = "integration/output.rs"]
mod output;
#[path = "integration/registry.rs"]
mod registry;

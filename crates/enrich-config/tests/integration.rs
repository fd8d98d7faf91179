//! Integration tests of enrich-config.
//!
//! Tests that read the environment or the current directory run inside `figment::Jail`, which
//! serialises them, clears the environment first and restores it afterwards.

#[path = "integration/chains.rs"]
mod chains;
#[path = "integration/env.rs"]
mod env;
#[path = "integration/files.rs"]
mod files;
#[path = "integration/keys.rs"]
mod keys;
#[path = "integration/ollama_host.rs"]
mod ollama_host;
#[path = "integration/provenance.rs"]
mod provenance;
#[path = "integration/quality.rs"]
mod quality;
#[path = "integration/reliability.rs"]
mod reliability;
#[path = "integration/schema.rs"]
mod schema;
#[path = "integration/secrets.rs"]
mod secrets;
#[path = "integration/support.rs"]
mod support;
#[path = "integration/validation.rs"]
mod validation;
#[path = "integration/work_order.rs"]
mod work_order;

use enrich_config::{BackendSpec, Secret};

#[test]
fn secrets_never_show_in_debug() {
    let secret = Secret::new("sk-planted-123");
    assert_eq!(format!("{secret:?}"), "[redacted]");
    let mut spec = BackendSpec::new("a", "default", "openai", "gpt");
    spec.options
        .insert("api_key".into(), serde_json::json!("sk-planted-123"));
    assert!(!format!("{spec:?}").contains("sk-planted-123"));
}

//! Integration tests of enrich-config.

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

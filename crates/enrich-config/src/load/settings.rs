//! The provenance list of a loaded configuration: every resolved setting with the layer it came
//! from, in a stable order (what `enrich config` shows).

use serde_json::json;

use super::chains::Entry;
use crate::{BackendSpec, EnrichmentConfig, Setting, Source, redact_url, redacted_options};

/// The settings of `[enrichment]` outside the backend entries and the work order: the
/// scalars, the routes, the prompt, the reliability settings, then the index and secrets
/// tables. `routing_origin` is the layer that decided `enable_routing`.
pub(super) fn of_config(
    config: &EnrichmentConfig,
    origin: &dyn Fn(&str) -> Source,
    routing_origin: Source,
) -> Vec<Setting> {
    let mut settings = Vec::new();
    let mut put = |key: &str, value: serde_json::Value, source: Source| {
        settings.push(Setting {
            key: key.to_owned(),
            value,
            source,
        });
    };
    for (key, value) in scalars(config) {
        let source = match key {
            "enrichment.enable_routing" => routing_origin.clone(),
            _ => origin(key),
        };
        put(key, value, source);
    }
    for (slice, chain) in &config.routes {
        put(
            &format!("enrichment.routes.{slice}"),
            json!(chain),
            origin("enrichment.routes"),
        );
    }
    put(
        "enrichment.prompt.template",
        json!(config.prompt.template),
        origin("enrichment.prompt.template"),
    );
    put(
        "enrichment.prompt.max_snippet_bytes",
        json!(config.prompt.max_snippet_bytes),
        origin("enrichment.prompt.max_snippet_bytes"),
    );
    for (key, value) in reliability(config).into_iter().chain([
        ("enrichment.index.exclude", json!(config.index.exclude)),
        ("enrichment.index.include", json!(config.index.include)),
        (
            "enrichment.secrets.action",
            json!(config.secrets.action.as_str()),
        ),
        (
            "enrichment.quality.level",
            json!(config.quality.level.as_str()),
        ),
        (
            "enrichment.quality.min_score",
            json!(config.quality.min_score),
        ),
    ]) {
        put(key, value, origin(key));
    }
    settings
}

/// The scalars of `[enrichment]`, each under its key.
fn scalars(config: &EnrichmentConfig) -> [(&'static str, serde_json::Value); 13] {
    [
        ("enrichment.default_chain", json!(config.default_chain)),
        ("enrichment.batch_size", json!(config.batch_size)),
        ("enrichment.concurrency", json!(config.concurrency)),
        (
            "enrichment.cooldown_seconds",
            json!(config.cooldown_seconds),
        ),
        (
            "enrichment.max_retries_per_span",
            json!(config.max_retries_per_span),
        ),
        (
            "enrichment.max_failures_per_span",
            json!(config.max_failures_per_span),
        ),
        (
            "enrichment.outage_grace_seconds",
            json!(config.outage_grace_seconds),
        ),
        (
            "enrichment.enforce_latin1_enrichment",
            json!(config.enforce_latin1_enrichment),
        ),
        ("enrichment.enable_routing", json!(config.enable_routing)),
        ("enrichment.max_tier", json!(config.max_tier)),
        ("enrichment.on_failure", json!(config.on_failure.as_str())),
        (
            "enrichment.event_log_max_bytes",
            json!(config.event_log.max_bytes),
        ),
        ("enrichment.event_log_keep", json!(config.event_log.keep)),
    ]
}

/// The reliability settings, each under its key.
fn reliability(config: &EnrichmentConfig) -> [(&'static str, serde_json::Value); 12] {
    let breaker = &config.circuit_breaker;
    let budget = &config.budget;
    [
        (
            "enrichment.corrective_reasks",
            json!(config.corrective_reasks),
        ),
        ("enrichment.schedule", json!(config.schedule.as_str())),
        (
            "enrichment.busy_timeout_seconds",
            json!(config.busy_timeout_seconds),
        ),
        (
            "enrichment.circuit_breaker.failures_to_open",
            json!(breaker.failures_to_open),
        ),
        (
            "enrichment.circuit_breaker.cooldown_seconds",
            json!(breaker.cooldown_seconds),
        ),
        (
            "enrichment.circuit_breaker.max_cooldown_seconds",
            json!(breaker.max_cooldown_seconds),
        ),
        (
            "enrichment.budget.max_tokens_per_run",
            json!(budget.max_tokens_per_run),
        ),
        (
            "enrichment.budget.max_cost_per_run",
            json!(budget.max_cost_per_run),
        ),
        (
            "enrichment.budget.max_wall_seconds",
            json!(budget.max_wall_seconds),
        ),
        (
            "enrichment.budget.max_tokens_per_day",
            json!(budget.max_tokens_per_day),
        ),
        (
            "enrichment.budget.max_cost_per_day",
            json!(budget.max_cost_per_day),
        ),
        (
            "enrichment.budget.batch_discount",
            json!(budget.batch_discount),
        ),
    ]
}

/// The backend entries, each as one setting (`enrichment.chain.<chain>.<name>`), followed by
/// its URL's own setting when the URL came from another layer than the entry.
pub(super) fn of_entries(entries: &[Entry]) -> Vec<Setting> {
    let mut settings = Vec::new();
    for entry in entries {
        let spec = &entry.spec;
        let key = format!("enrichment.chain.{}.{}", spec.chain, spec.name);
        settings.push(Setting {
            key: key.clone(),
            value: entry_json(spec),
            source: entry.origin.clone(),
        });
        if let Some(url_origin) = &entry.url_origin {
            let url = spec.url.as_deref().map(redact_url);
            settings.push(Setting {
                key: format!("{key}.url"),
                value: json!(url),
                source: url_origin.clone(),
            });
        }
    }
    settings
}

/// A backend entry as shown by `enrich config`, secrets redacted.
///
/// The reliability keys (host pool, rate limits, price) are shown only when set.
fn entry_json(spec: &BackendSpec) -> serde_json::Value {
    let mut entry = json!({
        "provider": spec.provider,
        "model": spec.model,
        "url": spec.url.as_deref().map(redact_url),
        "routing_tier": spec.routing_tier,
        "timeout_seconds": spec.timeout_seconds,
        "api_key_env": spec.api_key_env,
        "options": redacted_options(&spec.options),
        "enabled": spec.enabled,
    });
    let optional = [
        (
            "urls",
            (!spec.urls.is_empty()).then(|| {
                json!(
                    spec.urls
                        .iter()
                        .map(|url| redact_url(url))
                        .collect::<Vec<_>>()
                )
            }),
        ),
        (
            "max_response_bytes",
            spec.max_response_bytes.map(|v| json!(v)),
        ),
        (
            "requests_per_minute",
            spec.requests_per_minute.map(|v| json!(v)),
        ),
        (
            "tokens_per_minute",
            spec.tokens_per_minute.map(|v| json!(v)),
        ),
        ("price", spec.price.map(|v| json!(v))),
        (
            "adaptive",
            (!spec.adaptive).then_some(serde_json::Value::Bool(false)),
        ),
    ];
    if let Some(map) = entry.as_object_mut() {
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        }
    }
    entry
}

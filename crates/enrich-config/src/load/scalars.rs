//! The scalars of `[enrichment]` that are checked here rather than by their lenient type: the
//! default chain's name, `on_failure`, and the limits that must be at least 1.

use super::keep;
use crate::raw::RawEnrichment;
use crate::{ConfigError, DEFAULT_CHAIN, OnFailure, Source};

/// The checked scalars. After a mistake (recorded in `errors`) a field holds a stand-in.
pub(super) struct Scalars {
    pub(super) default_chain: String,
    /// Whether `default_chain` is the configured name rather than a stand-in.
    pub(super) default_chain_valid: bool,
    pub(super) on_failure: OnFailure,
    pub(super) batch_size: usize,
    pub(super) concurrency: usize,
    pub(super) max_snippet_bytes: usize,
}

/// Checks the scalars, recording every mistake in `errors`.
pub(super) fn resolve(
    raw: &RawEnrichment,
    origin: &dyn Fn(&str) -> Source,
    errors: &mut Vec<ConfigError>,
) -> Scalars {
    let default_chain = raw
        .default_chain
        .non_blank()
        .ok_or_else(|| ConfigError::Invalid {
            key: "enrichment.default_chain".to_owned(),
            origin: origin("enrichment.default_chain"),
            line: None,
            reason: "an empty name (expected the name of a chain)".to_owned(),
        });
    let default_chain_valid = default_chain.is_ok();
    let default_chain = keep(errors, default_chain, DEFAULT_CHAIN.to_owned());
    let on_failure = keep(errors, on_failure(raw, origin), OnFailure::Error);
    let at_least_one = |value: usize, key: &str| {
        if value >= 1 {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                origin: origin(key),
                line: None,
                reason: format!("{value} (expected at least 1)"),
            })
        }
    };
    let batch_size = at_least_one(raw.batch_size.0, "enrichment.batch_size");
    let batch_size = keep(errors, batch_size, 1);
    let concurrency = at_least_one(raw.concurrency.0, "enrichment.concurrency");
    let concurrency = keep(errors, concurrency, 1);
    let max_snippet_bytes = at_least_one(
        raw.prompt.max_snippet_bytes.0,
        "enrichment.prompt.max_snippet_bytes",
    );
    let max_snippet_bytes = keep(errors, max_snippet_bytes, 1);
    if raw.max_retries_per_span.0 == 0 {
        let key = "enrichment.max_retries_per_span";
        errors.push(ConfigError::Invalid {
            key: key.to_owned(),
            origin: origin(key),
            line: None,
            reason: "0 (expected at least 1: it counts every backend attempt of a span in one \
                     run, the first one included, so 1 is a single attempt with no retry, \
                     re-ask or fallback)"
                .to_owned(),
        });
    }
    Scalars {
        default_chain,
        default_chain_valid,
        on_failure,
        batch_size,
        concurrency,
        max_snippet_bytes,
    }
}

fn on_failure(
    raw: &RawEnrichment,
    origin: &dyn Fn(&str) -> Source,
) -> Result<OnFailure, ConfigError> {
    match raw.on_failure.0.trim() {
        "error" => Ok(OnFailure::Error),
        "fallback_to_empty" => Ok(OnFailure::FallbackToEmpty),
        other => Err(ConfigError::Invalid {
            key: "enrichment.on_failure".to_owned(),
            origin: origin("enrichment.on_failure"),
            line: None,
            reason: format!("{other:?} (expected \"error\" or \"fallback_to_empty\")"),
        }),
    }
}

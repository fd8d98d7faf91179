//! Provenance, both ways: what a run records about how each enrichment was made
//! ([`RunProvenance`]), and what the current configuration would record
//! ([`stale_expectations`]), against which enrich-db judges stored enrichments stale. The one
//! place that turns a configuration into enrich-db's [`Expectations`]: `enrich status` and the
//! refresh selectors both call [`stale_expectations`].

use std::collections::HashMap;
use std::sync::Arc;

use enrich_backends::BackendAdapter;
use enrich_config::{BackendSpec, EnrichmentConfig};
use enrich_db::{Expectations, ExpectedBackend, Provenance, RunId, SliceRoute};
use enrich_router::{Router, SliceView};
use enrich_types::ENRICHMENT_SCHEMA_VERSION;

use crate::error::PipelineError;
use crate::prompt::PromptBuilder;

/// The version of enrich stored with each enrichment (the workspace's version).
pub const ENRICH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Asks each distinct backend for its model's digest, all at once: once per run, never per
/// span. A backend that does not answer, or has none, is `None` (unknown), never an error.
/// Keyed by backend name.
pub async fn model_digests<'a>(
    adapters: impl IntoIterator<Item = &'a Arc<dyn BackendAdapter>>,
) -> HashMap<String, Option<String>> {
    let mut asked = tokio::task::JoinSet::new();
    let mut seen = std::collections::HashSet::new();
    for adapter in adapters {
        if seen.insert(adapter.spec().name.clone()) {
            let adapter = Arc::clone(adapter);
            asked.spawn(async move { (adapter.spec().name.clone(), adapter.model_digest().await) });
        }
    }
    let mut digests = HashMap::new();
    while let Some(answer) = asked.join_next().await {
        // A task that panicked leaves its backend's digest unknown.
        if let Ok((name, digest)) = answer {
            digests.insert(name, digest);
        }
    }
    digests
}

/// What one run records with each enrichment, besides what the answer itself says: its id,
/// the prompt fingerprint, and each backend's model digest as asked at the run's start.
#[derive(Debug)]
pub(crate) struct RunProvenance {
    pub(crate) run_id: RunId,
    pub(crate) prompt_fingerprint: String,
    pub(crate) digests: HashMap<String, Option<String>>,
}

impl RunProvenance {
    /// The provenance of an answer `spec`'s backend gave for a span routed to `chain`, with the
    /// tokens the server reported.
    pub(crate) fn of(
        &self,
        spec: &BackendSpec,
        chain: &str,
        prompt_tokens: Option<u64>,
        output_tokens: Option<u64>,
    ) -> Provenance {
        Provenance {
            run_id: self.run_id,
            backend: spec.name.clone(),
            provider: spec.provider.clone(),
            model: spec.model.clone(),
            model_digest: self.digests.get(&spec.name).cloned().flatten(),
            chain: chain.to_owned(),
            prompt_fingerprint: self.prompt_fingerprint.clone(),
            schema_version: ENRICHMENT_SCHEMA_VERSION.to_owned(),
            options_fingerprint: spec.options_fingerprint(),
            enrich_version: ENRICH_VERSION.to_owned(),
            created_at_ms: crate::events::now_ms(),
            prompt_tokens,
            output_tokens,
        }
    }
}

/// What the configuration would record now, for enrich-db's stale query ([`Db::stale_counts`],
/// [`Db::stale_spans`]): the prompt fingerprint of `[enrichment.prompt]`, this build's schema
/// version, `[enrichment.quality] min_score`, the chain each of `slice_types` routes to (read
/// them with [`Db::slice_types`]; `chain_override` routes every span to one chain, as `enrich
/// run --chain` does), and each chain's backends after the tier filter with their model,
/// options fingerprint and the digest `digest_of` gives (a run's [`model_digests`], or the
/// newest recorded, [`Db::latest_digests`]; `None` is unknown and never counts as a change).
///
/// [`Db::stale_counts`]: enrich_db::Db::stale_counts
/// [`Db::stale_spans`]: enrich_db::Db::stale_spans
/// [`Db::slice_types`]: enrich_db::Db::slice_types
/// [`Db::latest_digests`]: enrich_db::Db::latest_digests
///
/// # Errors
///
/// [`PipelineError::PromptTemplate`] for a bad template, [`PipelineError::Route`] when the
/// default chain (or the override) cannot serve.
pub fn stale_expectations(
    config: &EnrichmentConfig,
    chain_override: Option<&str>,
    slice_types: &[Option<String>],
    digest_of: impl Fn(&BackendSpec) -> Option<String>,
) -> Result<Expectations, PipelineError> {
    let prompts = PromptBuilder::new(&config.prompt)?;
    let router = Router::new(config);
    let route = |slice_type: Option<&str>| {
        let view = SliceView {
            slice_type,
            ..SliceView::default()
        };
        router
            .choose_chain(&view, chain_override)
            .map_err(PipelineError::Route)
    };
    let default = route(None)?;
    let mut expected = Expectations {
        prompt_fingerprint: prompts.fingerprint(),
        schema_version: ENRICHMENT_SCHEMA_VERSION.to_owned(),
        min_quality: config.quality.min_score,
        default_chain: default.chain_name.to_string(),
        routes: Vec::with_capacity(slice_types.len()),
        backends: Vec::new(),
    };
    let mut chains = vec![default];
    for slice_type in slice_types {
        let decision = route(slice_type.as_deref())?;
        expected.routes.push(SliceRoute {
            slice_type: slice_type.clone(),
            chain: decision.chain_name.to_string(),
        });
        if chains.iter().all(|c| c.chain_name != decision.chain_name) {
            chains.push(decision);
        }
    }
    for decision in &chains {
        for spec in decision.backends.iter() {
            expected.backends.push(ExpectedBackend {
                chain: decision.chain_name.to_string(),
                backend: spec.name.clone(),
                model: spec.model.clone(),
                digest: digest_of(spec),
                options_fingerprint: spec.options_fingerprint(),
            });
        }
    }
    Ok(expected)
}

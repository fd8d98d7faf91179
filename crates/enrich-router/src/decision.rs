//! The router's answer for one span.

use std::sync::Arc;

use enrich_config::BackendSpec;
use serde::{Serialize, Serializer};

/// Which chain serves a span, with which backends, and why.
///
/// The chain name, backends and tier are shared with the [`Router`](crate::Router) (cloning a
/// decision or one of these fields copies no backend). In JSON (`enrich plan --json`) each
/// backend is shown as `{name, provider, model, url, tier}`: its `options` are left out, so a
/// secret-looking option can never leak into a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteDecision {
    /// The span's normalised slice type (see [`normalize_slice_type`](crate::normalize_slice_type)).
    pub slice_type: String,
    /// The chain that serves the span.
    pub chain_name: Arc<str>,
    /// The chain's enabled backends in config order, after the `max_tier` filter; never empty.
    /// The pipeline tries them in this order and looks their adapters up by name.
    #[serde(serialize_with = "serialize_backends")]
    pub backends: Arc<[BackendSpec]>,
    /// The tier the backends were filtered to; `None` when `max_tier` is unset or no backend of
    /// the chain has that tier.
    pub routing_tier: Option<Arc<str>>,
    /// How the chain was chosen, in order, for people (`enrich plan`, logs).
    pub reasons: Vec<String>,
}

/// The JSON view of one backend: what a plan needs, nothing that could hold a secret.
#[derive(Serialize)]
struct BackendSummary<'a> {
    name: &'a str,
    provider: &'a str,
    model: &'a str,
    url: Option<&'a str>,
    tier: &'a str,
}

fn serialize_backends<S: Serializer>(
    backends: &Arc<[BackendSpec]>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(backends.iter().map(|b| BackendSummary {
        name: &b.name,
        provider: &b.provider,
        model: &b.model,
        url: b.url.as_deref(),
        tier: b.tier(),
    }))
}

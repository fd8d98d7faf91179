//! The router: config in, one [`RouteDecision`] per span out.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use enrich_config::{BackendSpec, EnrichmentConfig};

use crate::decision::RouteDecision;
use crate::error::RouterError;
use crate::slice::{SliceView, normalize_slice_type};

/// Chooses the chain for each span; see the [crate docs](crate) for the rules.
///
/// Built once per run from the configuration, then shared (it is `Send + Sync`): every lookup
/// table and most reasons are prepared up front, so [`choose_chain`](Self::choose_chain) is a
/// couple of hash lookups and a few small allocations.
#[derive(Debug)]
pub struct Router {
    /// Every chain named by a backend entry.
    chains: HashMap<Box<str>, ChainState>,
    /// The default chain's name, as configured.
    default_name: Arc<str>,
    /// The default chain's plan; `None` when it is missing or has no enabled backend.
    default: Option<Arc<ChainPlan>>,
    /// Normalised slice type → where its route leads. Empty when routing is off.
    routes: HashMap<Box<str>, RouteTarget>,
    /// The reason given for every span when routing is off; `None` when routing is on.
    routing_off: Option<String>,
}

/// A chain's enabled backends after the `max_tier` filter, ready to hand out.
#[derive(Debug)]
struct ChainPlan {
    name: Arc<str>,
    backends: Arc<[BackendSpec]>,
    tier: Option<Arc<str>>,
    /// What the `max_tier` filter did; `None` when `max_tier` is unset.
    tier_note: Option<String>,
}

#[derive(Debug)]
enum ChainState {
    Usable(Arc<ChainPlan>),
    /// The chain exists but every entry is disabled.
    AllDisabled,
}

#[derive(Debug)]
struct RouteTarget {
    /// The route's chain; `None` when it cannot serve and the default chain is used instead.
    plan: Option<Arc<ChainPlan>>,
    reason: String,
}

impl Router {
    /// Builds the router for `config`. Routing is on when `config.enable_routing` is; the
    /// router reads no environment (`LLMC_ENRICH_DISABLE_ROUTING` is resolved into
    /// `enable_routing` when the configuration is loaded).
    pub fn new(config: &EnrichmentConfig) -> Self {
        let chains = build_chains(config);
        let default_name: Arc<str> = Arc::from(config.default_chain.as_str());
        let default = match chains.get(&*default_name) {
            Some(ChainState::Usable(plan)) => Some(Arc::clone(plan)),
            _ => None,
        };
        let routing_off = (!config.enable_routing).then(|| {
            format!(
                "routing disabled (enable_routing = false); using default chain {default_name:?}"
            )
        });
        let routes = if routing_off.is_some() {
            HashMap::new()
        } else {
            build_routes(config, &chains, &default_name)
        };
        Self {
            chains,
            default_name,
            default,
            routes,
            routing_off,
        }
    }

    /// Chooses the chain for `slice`: `override_chain` if given, else the route for its slice
    /// type when routing is on, else the default chain. A chain that does not exist or has no
    /// enabled backend falls back to the default chain, and the reasons say so.
    ///
    /// Errors only when the default chain is needed and has no enabled backend.
    pub fn choose_chain(
        &self,
        slice: &SliceView<'_>,
        override_chain: Option<&str>,
    ) -> Result<RouteDecision, RouterError> {
        let slice_type = normalize_slice_type(slice.slice_type);
        let (plan, reason) = match (override_chain, &self.routing_off) {
            (Some(name), _) => match self.chains.get(name) {
                Some(ChainState::Usable(plan)) => (plan, format!("override -> {name:?}")),
                state => (
                    self.default_plan()?,
                    format!(
                        "override -> {name:?} {}; using default chain {:?}",
                        unusable(state.is_some()),
                        self.default_name
                    ),
                ),
            },
            (None, Some(off)) => (self.default_plan()?, off.clone()),
            (None, None) => match self.routes.get(&*slice_type) {
                Some(RouteTarget {
                    plan: Some(plan),
                    reason,
                }) => (plan, reason.clone()),
                Some(RouteTarget { plan: None, reason }) => (self.default_plan()?, reason.clone()),
                None => (
                    self.default_plan()?,
                    format!(
                        "no route for {slice_type}; using default chain {:?}",
                        self.default_name
                    ),
                ),
            },
        };
        let mut reasons = Vec::with_capacity(2);
        reasons.push(reason);
        reasons.extend(plan.tier_note.iter().cloned());
        Ok(RouteDecision {
            slice_type: slice_type.into_owned(),
            chain_name: Arc::clone(&plan.name),
            backends: Arc::clone(&plan.backends),
            routing_tier: plan.tier.clone(),
            reasons,
        })
    }

    fn default_plan(&self) -> Result<&Arc<ChainPlan>, RouterError> {
        self.default.as_ref().ok_or_else(|| {
            let chain = self.default_name.to_string();
            match self.chains.get(&*self.default_name) {
                Some(_) => RouterError::DefaultChainDisabled { chain },
                None => RouterError::DefaultChainMissing { chain },
            }
        })
    }
}

/// Why a chain cannot serve, for reasons: `exists` tells a disabled-only chain from a missing one.
fn unusable(exists: bool) -> &'static str {
    if exists {
        "has no enabled backend"
    } else {
        "does not exist"
    }
}

/// Groups the backend entries by chain, keeping config order and only enabled entries.
fn build_chains(config: &EnrichmentConfig) -> HashMap<Box<str>, ChainState> {
    let mut groups: HashMap<&str, Vec<&BackendSpec>> = HashMap::new();
    for spec in &config.backends {
        let group = groups.entry(spec.chain.as_str()).or_default();
        if spec.enabled {
            group.push(spec);
        }
    }
    let max_tier = config.max_tier.as_deref();
    groups
        .into_iter()
        .map(|(name, enabled)| {
            let state = if enabled.is_empty() {
                ChainState::AllDisabled
            } else {
                ChainState::Usable(Arc::new(plan(name, &enabled, max_tier)))
            };
            (Box::from(name), state)
        })
        .collect()
}

/// Applies `max_tier` to a chain's enabled backends (untiered ones count as `7b`); keeps them all
/// when none has the tier.
fn plan(name: &str, enabled: &[&BackendSpec], max_tier: Option<&str>) -> ChainPlan {
    let all = || enabled.iter().map(|b| (*b).clone()).collect();
    let total = enabled.len();
    let (backends, tier, tier_note) = match max_tier {
        None => (all(), None, None),
        Some(tier) => {
            let kept: Vec<BackendSpec> = enabled
                .iter()
                .filter(|b| b.tier() == tier)
                .map(|b| (*b).clone())
                .collect();
            if kept.is_empty() {
                let note = format!(
                    "max_tier {tier}: no enabled backend of chain {name:?} has tier {tier}; \
                     keeping all {total}"
                );
                (all(), None, Some(note))
            } else {
                let note = format!(
                    "max_tier {tier}: kept {} of {total} enabled backends of chain {name:?}",
                    kept.len()
                );
                (kept, Some(Arc::from(tier)), Some(note))
            }
        }
    };
    ChainPlan {
        name: Arc::from(name),
        backends: Arc::from(backends),
        tier,
        tier_note,
    }
}

/// Keys the routes by normalised slice type, so `Python = "…"` routes `code` spans. When two keys
/// normalise alike, a key spelt in normalised form (`code`) wins over an alias (`python`) or a
/// blank key, and among those the first in key order wins.
fn build_routes(
    config: &EnrichmentConfig,
    chains: &HashMap<Box<str>, ChainState>,
    default_name: &str,
) -> HashMap<Box<str>, RouteTarget> {
    let (canonical, aliased): (Vec<_>, Vec<_>) = config
        .routes
        .iter()
        .partition(|(key, _)| normalize_slice_type(Some(key)) == key.trim().to_lowercase());
    let mut routes = HashMap::new();
    for (key, chain) in canonical.into_iter().chain(aliased) {
        let slice_type = normalize_slice_type(Some(key));
        let Entry::Vacant(entry) = routes.entry(Box::from(&*slice_type)) else {
            continue;
        };
        let target = match chains.get(chain.as_str()) {
            Some(ChainState::Usable(plan)) => RouteTarget {
                plan: Some(Arc::clone(plan)),
                reason: format!("route {slice_type} -> {chain:?}"),
            },
            state => RouteTarget {
                plan: None,
                reason: format!(
                    "route {slice_type} -> {chain:?} {}; using default chain {default_name:?}",
                    unusable(state.is_some())
                ),
            },
        };
        entry.insert(target);
    }
    routes
}

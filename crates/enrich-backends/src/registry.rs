//! The adapter registry: provider name → factory.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use enrich_config::BackendSpec;

use crate::adapter::BackendAdapter;
use crate::error::BackendsError;
use crate::failure::BackendError;
use crate::pool::{HostPool, HostPoolPolicy};

/// Builds an adapter for a backend entry. Closures
/// `Fn(&BackendSpec) -> Result<Arc<dyn BackendAdapter>, BackendError>` implement it.
pub trait AdapterFactory: Send + Sync {
    /// An adapter serving `spec`, ready for the run (its HTTP client built, its URL checked).
    ///
    /// # Errors
    ///
    /// A [`BackendError`] saying what is wrong with the entry; the registry adds which entry.
    fn build(&self, spec: &BackendSpec) -> Result<Arc<dyn BackendAdapter>, BackendError>;
}

impl<F> AdapterFactory for F
where
    F: Fn(&BackendSpec) -> Result<Arc<dyn BackendAdapter>, BackendError> + Send + Sync,
{
    fn build(&self, spec: &BackendSpec) -> Result<Arc<dyn BackendAdapter>, BackendError> {
        self(spec)
    }
}

/// Which adapter serves which provider. The composition root (the CLI) registers every provider
/// crate's factory; the pipeline only ever calls [`AdapterRegistry::build_all`].
///
/// Provider names are matched without regard to ASCII case or surrounding spaces.
#[derive(Clone, Default)]
pub struct AdapterRegistry {
    factories: BTreeMap<String, Arc<dyn AdapterFactory>>,
}

impl fmt::Debug for AdapterRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterRegistry")
            .field("providers", &self.providers())
            .finish()
    }
}

impl AdapterRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `factory` serve `provider`. Registering a provider again replaces its factory
    /// (a test can swap in a fake).
    pub fn register(
        &mut self,
        provider: impl AsRef<str>,
        factory: impl AdapterFactory + 'static,
    ) -> &mut Self {
        self.factories
            .insert(normalise(provider.as_ref()), Arc::new(factory));
        self
    }

    /// The registered provider names, sorted.
    pub fn providers(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// An adapter for one backend entry.
    ///
    /// # Errors
    ///
    /// [`BackendsError::UnknownProvider`] (listing the known providers) or
    /// [`BackendsError::Build`] when the factory refuses the entry.
    pub fn build(&self, spec: &BackendSpec) -> Result<Arc<dyn BackendAdapter>, BackendsError> {
        let Some(factory) = self.factories.get(&normalise(&spec.provider)) else {
            let providers = self.providers();
            let known = if providers.is_empty() {
                "none are registered".to_owned()
            } else {
                providers.join(", ")
            };
            return Err(BackendsError::UnknownProvider {
                backend: spec.name.clone(),
                chain: spec.chain.clone(),
                provider: spec.provider.clone(),
                known,
            });
        };
        factory.build(spec).map_err(|source| BackendsError::Build {
            backend: spec.name.clone(),
            chain: spec.chain.clone(),
            provider: spec.provider.clone(),
            source: Box::new(source),
        })
    }

    /// A [`HostPool`] for one backend entry: one adapter per host of
    /// [`BackendSpec::hosts`], each built by the provider's factory from
    /// [`BackendSpec::for_host`]. An entry with one host, or none (the adapter's default URL),
    /// makes a pool of one. Keep the returned `Arc` to read the hosts' circuits
    /// ([`HostPool::circuits`]); it coerces to `Arc<dyn BackendAdapter>` for the cascade.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), for the first host the factory refuses.
    pub fn build_pool(
        &self,
        spec: &BackendSpec,
        policy: HostPoolPolicy,
    ) -> Result<Arc<HostPool>, BackendsError> {
        let hosts = spec.hosts();
        let adapters = if hosts.len() <= 1 {
            vec![self.build(spec)?]
        } else {
            hosts
                .into_iter()
                .map(|host| self.build(&spec.for_host(host)))
                .collect::<Result<Vec<_>, _>>()?
        };
        HostPool::new(spec.clone(), adapters, policy).map(Arc::new)
    }

    /// Adapters for `specs`, one per spec in order, building each distinct backend once: specs
    /// that differ only in `chain`, `routing_tier`, `price` or `enabled` share one adapter (and
    /// so its HTTP client and run state), whose [`spec`](BackendAdapter::spec) is the first of
    /// them.
    ///
    /// # Errors
    ///
    /// The first spec that [`build`](Self::build) refuses.
    pub fn build_all<'a>(
        &self,
        specs: impl IntoIterator<Item = &'a BackendSpec>,
    ) -> Result<Vec<Arc<dyn BackendAdapter>>, BackendsError> {
        let mut built: Vec<(&'a BackendSpec, Arc<dyn BackendAdapter>)> = Vec::new();
        let mut adapters = Vec::new();
        for spec in specs {
            let adapter = match built.iter().find(|(seen, _)| same_backend(seen, spec)) {
                Some((_, adapter)) => Arc::clone(adapter),
                None => {
                    let adapter = self.build(spec)?;
                    built.push((spec, Arc::clone(&adapter)));
                    adapter
                }
            };
            adapters.push(adapter);
        }
        Ok(adapters)
    }
}

fn normalise(provider: &str) -> String {
    provider.trim().to_ascii_lowercase()
}

/// Whether two entries describe the same backend (everything an adapter or its pool and rate
/// limit use is equal).
fn same_backend(a: &BackendSpec, b: &BackendSpec) -> bool {
    a.name == b.name
        && normalise(&a.provider) == normalise(&b.provider)
        && a.model == b.model
        && a.url == b.url
        && a.urls == b.urls
        && a.requests_per_minute == b.requests_per_minute
        && a.tokens_per_minute == b.tokens_per_minute
        && a.timeout_seconds == b.timeout_seconds
        && a.api_key_env == b.api_key_env
        && a.max_response_bytes == b.max_response_bytes
        && a.options == b.options
}

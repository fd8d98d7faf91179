//! Backend health checks, for `enrich doctor` and for the check `run` and `watch` make before
//! they take spans.

use std::sync::Arc;
use std::time::Duration;

use enrich_backends::{BackendAdapter, BackendOutage, HealthReport, HostPoolPolicy};
use enrich_config::BackendSpec;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::adapters::registry;

/// How long one backend's health check may take before it counts as unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// What a health check concluded about one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    /// Reachable, and the model is there (or not known to be missing).
    Ok,
    /// Its provider offers no health check: nothing is known.
    Unknown,
    /// It cannot serve: not set up, unreachable, or the model is missing.
    Unusable,
}

/// One backend's check.
#[derive(Debug, Serialize)]
pub(crate) struct BackendCheck {
    pub(crate) chain: String,
    pub(crate) name: String,
    pub(crate) provider: String,
    pub(crate) model: String,
    /// Where requests go (the adapter's description, else the configured URL).
    pub(crate) host: Option<String>,
    pub(crate) verdict: Verdict,
    /// The health report, when the adapter could be set up.
    pub(crate) health: Option<HealthReport>,
    /// Why the adapter could not be set up, or the check did not answer.
    pub(crate) error: Option<String>,
    /// How to fix what was found.
    pub(crate) fixes: Vec<String>,
}

impl BackendCheck {
    /// `name at host: what was found`, for one line of a log or an error.
    pub(crate) fn describe(&self) -> String {
        format!("{} at {}: {}", self.name, self.host(), self.found())
    }

    /// The check as a [`BackendOutage`], for a run that took no span because of it.
    pub(crate) fn outage(&self) -> BackendOutage {
        BackendOutage {
            backend: self.name.clone(),
            host: self.host().to_owned(),
            state: "failed its health check before the run".to_owned(),
            last_error: self.found(),
        }
    }

    /// Where requests go, for people.
    fn host(&self) -> &str {
        self.host.as_deref().unwrap_or("the provider's default URL")
    }

    /// What the check found.
    fn found(&self) -> String {
        match (&self.error, &self.health) {
            (Some(error), _) => error.clone(),
            (None, Some(health)) => health.messages.join("; "),
            (None, None) => String::new(),
        }
    }
}

/// Checks `specs` concurrently, each bounded by [`HEALTH_TIMEOUT`]; results in `specs` order.
pub(crate) async fn check_all<'a>(
    specs: impl IntoIterator<Item = &'a BackendSpec>,
) -> Vec<BackendCheck> {
    let registry = registry();
    let mut checks = JoinSet::new();
    for (index, spec) in specs.into_iter().enumerate() {
        // A host pool is healthy when one of its hosts is: check it as the run will use it.
        let built = if spec.hosts().len() > 1 {
            registry
                .build_pool(spec, HostPoolPolicy::default())
                .map(|pool| -> Arc<dyn BackendAdapter> { pool })
        } else {
            registry.build(spec)
        };
        match built {
            Ok(adapter) => {
                checks.spawn(async move { (index, check(adapter).await) });
            }
            Err(err) => {
                let failed = unbuilt(spec, format!("{err:#}"));
                checks.spawn(async move { (index, failed) });
            }
        }
    }
    let mut done = checks.join_all().await;
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, check)| check).collect()
}

/// Runs one adapter's health check.
async fn check(adapter: Arc<dyn BackendAdapter>) -> BackendCheck {
    let spec = adapter.spec().clone();
    let host = Some(adapter.describe_host());
    let (verdict, health, error, fixes) =
        match tokio::time::timeout(HEALTH_TIMEOUT, adapter.health()).await {
            Ok(health) => {
                let fixes = health.fixes.clone();
                (verdict(&health), Some(health), None, fixes)
            }
            Err(_) => (
                Verdict::Unusable,
                None,
                Some(format!(
                    "the health check got no answer within {} s",
                    HEALTH_TIMEOUT.as_secs()
                )),
                vec![
                    "check that the server is up and not overloaded, and that `url` is right"
                        .to_owned(),
                ],
            ),
        };
    BackendCheck {
        chain: spec.chain,
        name: spec.name,
        provider: spec.provider,
        model: spec.model,
        host,
        verdict,
        health,
        error,
        fixes,
    }
}

/// Unusable when known to be unreachable or known to lack the model; unknown when nothing is
/// known.
fn verdict(health: &HealthReport) -> Verdict {
    if health.credentials_accepted == Some(false) || health.api_recognised == Some(false) {
        return Verdict::Unusable;
    }
    match (health.reachable, health.model_present) {
        (Some(false), _) | (_, Some(false)) => Verdict::Unusable,
        (Some(true), _) => Verdict::Ok,
        (None, _) => Verdict::Unknown,
    }
}

/// The check of a backend whose adapter could not be set up.
fn unbuilt(spec: &BackendSpec, error: String) -> BackendCheck {
    BackendCheck {
        chain: spec.chain.clone(),
        name: spec.name.clone(),
        provider: spec.provider.clone(),
        model: spec.model.clone(),
        host: spec.url.as_deref().map(enrich_config::redact_url),
        verdict: Verdict::Unusable,
        health: None,
        error: Some(error),
        fixes: vec![
            "fix this [[enrichment.chain]] entry (see the error), or set enabled = false"
                .to_owned(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_problems_make_a_backend_unusable() {
        let report = |reachable, model_present| HealthReport {
            reachable,
            model_present,
            ..HealthReport::default()
        };
        let cases = [
            (report(Some(true), Some(true)), Verdict::Ok),
            (report(Some(true), None), Verdict::Ok),
            (report(Some(true), Some(false)), Verdict::Unusable),
            (report(Some(false), None), Verdict::Unusable),
            (report(None, None), Verdict::Unknown),
            (
                HealthReport {
                    credentials_accepted: Some(false),
                    ..report(Some(true), None)
                },
                Verdict::Unusable,
            ),
            // Something answers, but not the provider's API.
            (
                HealthReport {
                    api_recognised: Some(false),
                    ..report(Some(true), None)
                },
                Verdict::Unusable,
            ),
        ];
        for (health, expected) in cases {
            assert_eq!(verdict(&health), expected, "{health:?}");
        }
    }
}

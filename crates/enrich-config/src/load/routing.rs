//! Routing: `[enrichment.routes]`, `max_tier`, and whether routing is on, where
//! `LLMC_ENRICH_DISABLE_ROUTING` is read. This is the one place that reads that variable: the
//! router takes `enable_routing` from the resolved config and never reads the environment.

use std::collections::BTreeMap;

use super::EnvLookup;
use crate::lenient::{Text, parse_flag};
use crate::raw::RawEnrichment;
use crate::{ConfigError, Source};

/// LLMC's switch that turns routing off whatever the file says.
const DISABLE_ROUTING: &str = "LLMC_ENRICH_DISABLE_ROUTING";

/// The resolved routing settings.
pub(super) struct Routing {
    pub(super) enable_routing: bool,
    /// The layer that decided `enable_routing`.
    pub(super) origin: Source,
    /// Normalised slice type → chain; blank keys and chains are dropped.
    pub(super) routes: BTreeMap<String, String>,
    pub(super) max_tier: Option<String>,
}

/// Resolves routing. `LLMC_ENRICH_DISABLE_ROUTING` set to `1`, `true`, `yes` or `on` (any case)
/// turns routing off; `0`, `false`, `no` or `off` leaves the file's setting; any other value is
/// recorded in `errors` (and leaves the file's setting).
pub(super) fn resolve(
    raw: &RawEnrichment,
    origin: &dyn Fn(&str) -> Source,
    env: EnvLookup<'_>,
    errors: &mut Vec<ConfigError>,
) -> Result<Routing, ConfigError> {
    let routes = raw
        .routes
        .iter()
        .filter_map(|(slice, chain)| {
            let slice = slice.trim().to_ascii_lowercase();
            Some((slice, chain.non_blank()?)).filter(|(slice, _)| !slice.is_empty())
        })
        .collect();
    let mut routing = Routing {
        enable_routing: raw.enable_routing.0,
        origin: origin("enrichment.enable_routing"),
        routes,
        max_tier: raw.max_tier.as_ref().and_then(Text::non_blank),
    };
    if let Some(value) = env(DISABLE_ROUTING)? {
        match parse_flag(&value) {
            Some(true) => {
                routing.enable_routing = false;
                routing.origin = Source::Env(DISABLE_ROUTING.to_owned());
            }
            Some(false) => {}
            None => {
                errors.push(ConfigError::Invalid {
                    key: "enrichment.enable_routing".to_owned(),
                    origin: Source::Env(DISABLE_ROUTING.to_owned()),
                    line: None,
                    reason: format!(
                        "{value:?} (expected 1, true, yes or on to turn routing off; 0, false, no or off to leave it)"
                    ),
                });
            }
        }
    }
    Ok(routing)
}

//! The shapes read from the layers, before defaults are applied and values validated.
//!
//! Every scalar goes through a lenient type (see [`crate::lenient`]). Unknown keys pass serde
//! (LLMC's tables carry keys enrich does not use); [`ENRICHMENT_KEYS`] and friends list the
//! known ones so that [`crate::keys`] can report the others.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::Options;
use crate::lenient::{Flag, Number, Seconds, Text, TextList, Whole};

/// The whole document; only `[enrichment]` is read.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, transform = crate::schema::every_key_optional)]
pub(crate) struct RawFile {
    pub(crate) enrichment: RawEnrichment,
}

/// The `[enrichment]` table. Keys the built-in defaults always set are required here, so a
/// missing one is a bug in `default.toml` (caught by the tests), never a user error.
#[derive(Deserialize, JsonSchema)]
#[serde(expecting = "the [enrichment] table")]
#[schemars(deny_unknown_fields, transform = crate::schema::enrichment_table)]
#[schemars(description = "enrich's settings (LLMC's [enrichment] table)")]
pub(crate) struct RawEnrichment {
    pub(crate) default_chain: Text,
    pub(crate) batch_size: Whole<usize>,
    pub(crate) concurrency: Whole<usize>,
    pub(crate) cooldown_seconds: Whole<u64>,
    pub(crate) max_retries_per_span: Whole<u32>,
    pub(crate) max_failures_per_span: Whole<u32>,
    pub(crate) outage_grace_seconds: Whole<u64>,
    pub(crate) enforce_latin1_enrichment: Flag,
    pub(crate) enable_routing: Flag,
    #[serde(default)]
    pub(crate) routes: BTreeMap<String, Text>,
    pub(crate) max_tier: Option<Text>,
    #[schemars(schema_with = "crate::schema::on_failure")]
    pub(crate) on_failure: Text,
    pub(crate) prompt: RawPrompt,
    pub(crate) corrective_reasks: Whole<u32>,
    pub(crate) busy_timeout_seconds: Seconds,
    #[schemars(schema_with = "crate::schema::schedule")]
    pub(crate) schedule: Text,
    pub(crate) circuit_breaker: RawCircuitBreaker,
    pub(crate) budget: Option<RawBudget>,
    pub(crate) code_first: Flag,
    pub(crate) starvation_ratio_high: Whole<u32>,
    pub(crate) starvation_ratio_low: Whole<u32>,
    #[serde(default)]
    pub(crate) path_weights: BTreeMap<String, Whole<u8>>,
    pub(crate) runner: Option<crate::work_order::RawRunner>,
    pub(crate) index: Option<crate::secrets::RawIndex>,
    pub(crate) secrets: Option<crate::secrets::RawSecrets>,
    pub(crate) quality: Option<crate::load::RawQuality>,
    pub(crate) event_log_max_bytes: Whole<u64>,
    pub(crate) event_log_keep: Whole<u32>,
    #[serde(deserialize_with = "one_or_many")]
    #[schemars(schema_with = "crate::schema::backend_entries")]
    pub(crate) chain: Vec<RawBackend>,
}

/// The keys of `[enrichment]` that enrich reads.
pub(crate) const ENRICHMENT_KEYS: &[&str] = &[
    "default_chain",
    "batch_size",
    "concurrency",
    "cooldown_seconds",
    "max_retries_per_span",
    "max_failures_per_span",
    "outage_grace_seconds",
    "enforce_latin1_enrichment",
    "enable_routing",
    "routes",
    "max_tier",
    "on_failure",
    "prompt",
    "corrective_reasks",
    "busy_timeout_seconds",
    "schedule",
    "circuit_breaker",
    "budget",
    "code_first",
    "starvation_ratio_high",
    "starvation_ratio_low",
    "path_weights",
    "runner",
    "index",
    "secrets",
    "quality",
    "event_log_max_bytes",
    "event_log_keep",
    "chain",
];

/// Keys of LLMC's `[enrichment]` table that enrich does not read (LLMC's cost estimate, its
/// on/off switch and tier defaults): accepted in silence in either file, since both use LLMC's
/// table.
pub(crate) const LLMC_ENRICHMENT_KEYS: &[&str] = &[
    "enabled",
    "est_tokens_per_span",
    "default_provider",
    "default_tier",
    "fallback_tier",
];

/// Keys of LLMC's backend entries that enrich does not read, accepted in silence.
pub(crate) const LLMC_ENTRY_KEYS: &[&str] = &["max_retries"];

/// Keys of LLMC's `[enrichment.runner]` that enrich does not read (its own concurrency caps),
/// accepted in silence.
pub(crate) const LLMC_RUNNER_KEYS: &[&str] = &["max_concurrent", "max_concurrent_high_priority"];

/// The `[enrichment.circuit_breaker]` table.
#[derive(Deserialize, JsonSchema)]
#[serde(expecting = "the [enrichment.circuit_breaker] table")]
#[schemars(deny_unknown_fields, transform = crate::schema::every_key_optional)]
pub(crate) struct RawCircuitBreaker {
    pub(crate) failures_to_open: Whole<u32>,
    pub(crate) cooldown_seconds: Seconds,
    pub(crate) max_cooldown_seconds: Seconds,
}

/// The keys of `[enrichment.circuit_breaker]` that enrich reads.
pub(crate) const CIRCUIT_BREAKER_KEYS: &[&str] = &[
    "failures_to_open",
    "cooldown_seconds",
    "max_cooldown_seconds",
];

/// The `[enrichment.budget]` table.
#[derive(Deserialize, JsonSchema)]
#[serde(expecting = "the [enrichment.budget] table")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub(crate) max_tokens_per_run: Option<Whole<u64>>,
    pub(crate) max_cost_per_run: Option<Number>,
    pub(crate) max_wall_seconds: Option<Seconds>,
    pub(crate) max_tokens_per_day: Option<Whole<u64>>,
    pub(crate) max_cost_per_day: Option<Number>,
    pub(crate) batch_discount: Option<Number>,
}

/// The keys of `[enrichment.budget]` that enrich reads.
pub(crate) const BUDGET_KEYS: &[&str] = &[
    "max_tokens_per_run",
    "max_cost_per_run",
    "max_wall_seconds",
    "max_tokens_per_day",
    "max_cost_per_day",
    "batch_discount",
];

/// The `[enrichment.prompt]` table.
#[derive(Deserialize, JsonSchema)]
#[serde(expecting = "the [enrichment.prompt] table")]
#[schemars(deny_unknown_fields, transform = crate::schema::every_key_optional)]
pub(crate) struct RawPrompt {
    pub(crate) template: Option<Text>,
    pub(crate) max_snippet_bytes: Whole<usize>,
}

/// The keys of `[enrichment.prompt]` that enrich reads.
pub(crate) const PROMPT_KEYS: &[&str] = &["template", "max_snippet_bytes"];

/// One `[[enrichment.chain]]` entry, or one entry of `ENRICH_CHAIN_JSON`.
#[derive(Deserialize, JsonSchema)]
#[serde(expecting = "a backend entry (a table with at least a name)")]
#[schemars(deny_unknown_fields, transform = crate::schema::backend_entry)]
pub(crate) struct RawBackend {
    #[schemars(required)]
    pub(crate) name: Option<Text>,
    pub(crate) chain: Option<Text>,
    pub(crate) provider: Option<Text>,
    pub(crate) model: Option<Text>,
    pub(crate) url: Option<Text>,
    pub(crate) urls: Option<TextList>,
    pub(crate) routing_tier: Option<Text>,
    pub(crate) timeout_seconds: Option<Seconds>,
    pub(crate) api_key_env: Option<Text>,
    pub(crate) max_response_bytes: Option<Whole<u64>>,
    pub(crate) requests_per_minute: Option<Whole<u32>>,
    pub(crate) tokens_per_minute: Option<Whole<u32>>,
    pub(crate) price_input_per_1m: Option<Number>,
    pub(crate) price_output_per_1m: Option<Number>,
    pub(crate) options: Option<Options>,
    pub(crate) adaptive: Option<Flag>,
    pub(crate) enabled: Option<Flag>,
}

/// The keys of a backend entry that enrich reads.
pub(crate) const ENTRY_KEYS: &[&str] = &[
    "name",
    "chain",
    "provider",
    "model",
    "url",
    "urls",
    "routing_tier",
    "timeout_seconds",
    "api_key_env",
    "max_response_bytes",
    "requests_per_minute",
    "tokens_per_minute",
    "price_input_per_1m",
    "price_output_per_1m",
    "options",
    "adaptive",
    "enabled",
];

/// `[[enrichment.chain]]` (a list of tables) or, as LLMC also accepts, a single
/// `[enrichment.chain]` table.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<RawBackend>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<RawBackend>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of backend entries ([[enrichment.chain]] tables)")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            RawBackend::deserialize(de::value::MapAccessDeserializer::new(map)).map(|b| vec![b])
        }
    }

    deserializer.deserialize_any(OneOrMany)
}

/// `ENRICH_CHAIN_JSON` entries, wrapped so figment reports errors as `entries.<index>.<key>`.
#[derive(Deserialize)]
pub(crate) struct RawEntries {
    pub(crate) entries: Vec<RawBackend>,
}

//! Settings for enrich: the types and their layered loading.
//!
//! Layers, lowest first: built-in defaults ([`DEFAULT_CONFIG_TOML`], a commented TOML file that
//! `enrich init` prints), then the config file (`--config PATH`, else `enrich.toml`, else LLMC's
//! `llmc.toml` in the repo root; only the `[enrichment]` table is read; a key enrich does not
//! read is an error in enrich's own file and a warning in LLMC's, see [`IgnoredKey`]), then the
//! environment (`ENRICH_*`, `ENRICH_CHAIN_JSON`, `OLLAMA_HOST`, `LLMC_ENRICH_DISABLE_ROUTING`)
//! exactly as LLMC reads it, so an LLMC user's files and env keep working. Every mistake of a
//! file is reported at once ([`ConfigError::Several`]). [`load`] resolves them into an [`EnrichmentConfig`], validates it, and remembers
//! where each value came from ([`LoadedConfig::provenance`]); every [`ConfigError`] names the
//! file or variable and the key, and a bad value of the file its line.
//!
//! The work order ([`WorkOrder`]: `code_first`, `[enrichment.path_weights]`, the starvation
//! ratios, also in LLMC's `[enrichment.runner]` spelling) includes the glob matcher that weighs a
//! path ([`PathWeights::weigh`]; the most specific glob wins), so every layer orders spans the
//! same way.
//!
//! Scalars are read leniently because LLMC's Python loader is: `model = 7` is the tag `"7"`,
//! `batch_size = "50"` is 50, `enabled = "yes"` is true.
//!
//! This crate deliberately knows nothing about HTTP, SQLite or any provider's wire format: a
//! backend's `provider` is just a string that the adapter registry resolves later (and
//! validates), and its `options` are opaque JSON handed to the adapter. Routes may name chains
//! that do not exist: the router falls back and says why. Secrets are not configuration: a
//! backend names the variable holding its key (`api_key_env`), credential-named options are
//! refused ([`credential_option`]), `Debug` output redacts secret-looking options, and every
//! URL is shown through [`redact_url`].

mod error;
mod in_flight;
mod keys;
mod layers;
mod lenient;
mod load;
mod ollama_host;
mod provenance;
mod raw;
mod redact;
mod reliability;
mod schema;
mod secrets;
mod types;
mod work_order;

pub use error::ConfigError;
pub use in_flight::{MAX_IN_FLIGHT_OPTION, PARALLEL_OPTION};
pub use keys::IgnoredKey;
pub use load::{CONFIG_FILE_NAMES, DEFAULT_CONFIG_TOML, LoadedConfig, load, select_chain};
pub use ollama_host::normalize_ollama_host;
pub use provenance::{Setting, Source};
pub use redact::{credential_option, redact_url};
pub use reliability::{BudgetConfig, CircuitBreakerConfig, Schedule};
pub use schema::config_file_schema;
pub use secrets::{IndexConfig, SecretsAction, SecretsConfig};
pub use types::{
    BackendSpec, DEFAULT_CHAIN, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MODEL, DEFAULT_OLLAMA_URL,
    DEFAULT_PROVIDER, DEFAULT_TIER, DEFAULT_TIMEOUT_SECONDS, EnrichmentConfig, EventLogLimit,
    OnFailure, Options, Price, PromptConfig, QualityConfig, QualityLevel, Secret, is_secret_key,
    redacted_options,
};
pub use work_order::{
    DEFAULT_PATH_WEIGHT, FIRST_QUEUE_WEIGHTS, LOW_QUEUE_WEIGHTS, MAX_PATH_WEIGHT, MIN_PATH_WEIGHT,
    PathWeights, PriorityClass, WeightDecision, WorkOrder,
};

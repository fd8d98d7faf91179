//! Loading: choosing the file, layering defaults < file < env with figment, applying
//! `ENRICH_CHAIN_JSON`, `OLLAMA_HOST` and `LLMC_ENRICH_DISABLE_ROUTING`, validating, and
//! recording where each value came from.

use std::collections::{BTreeMap, HashSet};
use std::env::VarError;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::Serialized;
use figment::value::Value;
use serde_json::json;

use crate::keys::{IgnoredKey, KeyTree, is_llmc_file, suggest};
use crate::layers::{Defaults, Entries, EnvLayer, FileLayer, entry_label, from_figment, source_of};
use crate::lenient::{Text, parse_flag};
use crate::raw::{ENTRY_KEYS, LLMC_ENTRY_KEYS, RawBackend, RawEntries, RawFile};
use crate::{
    BackendSpec, ConfigError, DEFAULT_CHAIN, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MODEL,
    DEFAULT_OLLAMA_URL, DEFAULT_PROVIDER, EnrichmentConfig, EventLogLimit, OnFailure, Price,
    PromptConfig, Setting, Source, credential_option, normalize_ollama_host, redact_url,
    redacted_options,
};

/// The built-in defaults: a commented TOML file that is both the lowest configuration layer and
/// the template `enrich init` prints. It is a valid `enrich.toml`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

/// The config files looked for in the repository root, in order of preference.
pub const CONFIG_FILE_NAMES: [&str; 2] = ["enrich.toml", "llmc.toml"];

/// LLMC's scalar overrides: variable → key of `[enrichment]`.
const ENV_OVERRIDES: [(&str, &str); 6] = [
    ("ENRICH_BATCH_SIZE", "batch_size"),
    ("ENRICH_CONCURRENCY", "concurrency"),
    ("ENRICH_COOLDOWN_SECONDS", "cooldown_seconds"),
    ("ENRICH_MAX_RETRIES_PER_SPAN", "max_retries_per_span"),
    ("ENRICH_OUTAGE_GRACE_SECONDS", "outage_grace_seconds"),
    ("ENRICH_ENFORCE_LATIN1", "enforce_latin1_enrichment"),
];
const CHAIN_JSON: &str = "ENRICH_CHAIN_JSON";
const OLLAMA_HOST: &str = "OLLAMA_HOST";
const DISABLE_ROUTING: &str = "LLMC_ENRICH_DISABLE_ROUTING";
/// The smallest `max_response_bytes` accepted: no enrichment fits in less.
const MIN_RESPONSE_BYTES: u64 = 1024;

/// Where `[[enrichment.chain]]` entries sit in the file figment.
const FILE_ENTRIES: Entries<'static> = Entries {
    at: &["enrichment", "chain"],
    label: "enrichment.chain",
};

/// A resolved configuration and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The resolved settings.
    pub config: EnrichmentConfig,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    settings: Vec<Setting>,
    ignored: Vec<IgnoredKey>,
}

impl LoadedConfig {
    /// Every resolved setting with the layer it came from, in a stable order: the scalars of
    /// `[enrichment]`, the routes, the prompt settings, then the backend entries in chain order.
    /// This describes the configuration as loaded, before any change to [`Self::config`].
    pub fn provenance(&self) -> &[Setting] {
        &self.settings
    }

    /// Keys of LLMC's `llmc.toml` (in enrich's tables) and of `ENRICH_CHAIN_JSON` entries that
    /// enrich does not read, a misspelt key most likely, each with its line and the key it most
    /// resembles. Loading goes on without them; commands warn. (In enrich's own file such a key
    /// is an error, [`ConfigError::UnknownKey`]; LLMC's own keys, such as
    /// `est_tokens_per_span`, are never listed.)
    pub fn ignored_keys(&self) -> &[IgnoredKey] {
        &self.ignored
    }
}

impl Default for EnrichmentConfig {
    /// The built-in defaults ([`DEFAULT_CONFIG_TOML`]) with no file and no environment: one
    /// `default` chain with one Ollama backend at [`DEFAULT_OLLAMA_URL`].
    fn default() -> Self {
        resolve(None, &|_| Ok(None))
            .expect("the built-in defaults are a valid configuration (tested)")
            .config
    }
}

/// Loads the configuration of the repository at `repo_root`.
///
/// The file is `explicit` when given (`--config PATH`, relative to the current directory; a
/// missing file is an error), else `<repo_root>/enrich.toml`, else `<repo_root>/llmc.toml`, else
/// none. Only its `[enrichment]` table is read. The environment is read from the process:
/// `ENRICH_BATCH_SIZE`, `ENRICH_CONCURRENCY`, `ENRICH_COOLDOWN_SECONDS`,
/// `ENRICH_MAX_RETRIES_PER_SPAN`, `ENRICH_OUTAGE_GRACE_SECONDS`, `ENRICH_ENFORCE_LATIN1`,
/// `ENRICH_CHAIN_JSON`, `OLLAMA_HOST` and `LLMC_ENRICH_DISABLE_ROUTING`; a blank variable
/// counts as unset and other `ENRICH_*` variables are not read.
pub fn load(repo_root: &Path, explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    let file = find_file(repo_root, explicit)?;
    resolve(file, &process_env)
}

/// The enabled entries of chain `name`, in order.
///
/// Fails, naming the chain and the chains that can be used instead, when the chain has no entry
/// or none of its entries is enabled.
pub fn select_chain<'a>(
    config: &'a EnrichmentConfig,
    name: &str,
) -> Result<Vec<&'a BackendSpec>, ConfigError> {
    if let Some(enabled) = config.enabled_chain(name) {
        return Ok(enabled);
    }
    let available = usable_chains(config.backends.iter());
    let entries: Vec<String> = config.chain(name).map(|b| b.name.clone()).collect();
    if entries.is_empty() {
        Err(ConfigError::UnknownChain {
            name: name.to_owned(),
            available,
        })
    } else {
        Err(ConfigError::ChainDisabled {
            name: name.to_owned(),
            entries,
            available,
        })
    }
}

/// The chains that have an enabled entry, in order of first appearance.
fn usable_chains<'a>(backends: impl Iterator<Item = &'a BackendSpec>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for b in backends.filter(|b| b.enabled) {
        if !names.contains(&b.chain) {
            names.push(b.chain.clone());
        }
    }
    names
}

/// A config file and its text.
struct ConfigFile {
    path: PathBuf,
    text: String,
}

fn find_file(repo_root: &Path, explicit: Option<&Path>) -> Result<Option<ConfigFile>, ConfigError> {
    if let Some(path) = explicit {
        return match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(ConfigFile {
                path: path.to_owned(),
                text,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(ConfigError::FileNotFound {
                path: path.to_owned(),
            }),
            Err(source) => Err(ConfigError::ReadFile {
                path: path.to_owned(),
                source,
            }),
        };
    }
    for name in CONFIG_FILE_NAMES {
        let path = repo_root.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(Some(ConfigFile { path, text })),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => return Err(ConfigError::ReadFile { path, source }),
        }
    }
    Ok(None)
}

/// Reads one environment variable; blank counts as unset.
type EnvLookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, ConfigError>;

fn process_env(var: &str) -> Result<Option<String>, ConfigError> {
    match std::env::var(var) {
        Ok(value) => Ok((!value.trim().is_empty()).then_some(value)),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => Err(ConfigError::EnvNotUnicode {
            var: var.to_owned(),
        }),
    }
}

/// A backend entry with the layers it came from.
struct Entry {
    spec: BackendSpec,
    origin: Source,
    /// Where the URL came from when the entry set none and that is not the entry's own layer
    /// (`OLLAMA_HOST`, or the default URL for a file entry).
    url_origin: Option<Source>,
}

/// Entries grouped by chain, chains in order of first appearance.
type Chains = Vec<(String, Vec<Entry>)>;

fn push_grouped(chains: &mut Chains, entry: Entry) {
    match chains
        .iter_mut()
        .find(|(name, _)| *name == entry.spec.chain)
    {
        Some((_, entries)) => entries.push(entry),
        None => chains.push((entry.spec.chain.clone(), vec![entry])),
    }
}

/// Resolves the layers, reporting every mistake found in one error: the file's unknown keys
/// (errors in enrich's own file, warnings in `llmc.toml`), then the values that are wrong, each
/// value from the file with its line.
fn resolve(file: Option<ConfigFile>, env: EnvLookup<'_>) -> Result<LoadedConfig, ConfigError> {
    let mut errors = Vec::new();
    let mut ignored = Vec::new();
    let keys = file.as_ref().map(|file| KeyTree::parse(&file.text));
    if let (Some(file), Some(keys)) = (&file, &keys) {
        let llmc = is_llmc_file(&file.path);
        for unknown in keys.unknown_keys(llmc) {
            if llmc {
                ignored.push(IgnoredKey {
                    key: unknown.key,
                    origin: Source::File(file.path.clone()),
                    line: unknown.line,
                    suggestion: unknown.suggestion,
                });
            } else {
                errors.push(ConfigError::UnknownKey {
                    key: unknown.key,
                    path: file.path.clone(),
                    line: unknown.line,
                    suggestion: unknown.suggestion,
                });
            }
        }
    }
    // A file that is not TOML has no unknown keys: its syntax error comes alone.
    let result = resolve_values(file.as_ref(), env, ignored, &mut errors);
    let at_line = |error| match (&file, &keys) {
        (Some(file), Some(keys)) => with_line(error, &file.path, keys),
        _ => error,
    };
    let mut errors: Vec<ConfigError> = errors.into_iter().map(at_line).collect();
    match result {
        Ok(loaded) => ConfigError::combine(errors).map_or(Ok(loaded), Err),
        Err(error) if errors.is_empty() => Err(at_line(error)),
        Err(error) => {
            errors.push(at_line(error));
            Err(ConfigError::Several { errors })
        }
    }
}

/// `error` with the line of its key when it is about a value of the config file at `path`.
fn with_line(error: ConfigError, path: &Path, keys: &KeyTree<'_>) -> ConfigError {
    match error {
        ConfigError::Invalid {
            key,
            origin: Source::File(from),
            line: None,
            reason,
        } if from == path => ConfigError::Invalid {
            line: keys.line(&key),
            key,
            origin: Source::File(from),
            reason,
        },
        ConfigError::UnnamedEntry {
            entry,
            origin: Source::File(from),
            line: None,
        } if from == path => ConfigError::UnnamedEntry {
            line: keys.line(&entry),
            entry,
            origin: Source::File(from),
        },
        other => other,
    }
}

/// Keeps the value of `result`, or records its error and goes on with `fallback`, so that
/// every independent mistake is reported at once.
fn keep<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>, fallback: T) -> T {
    result.unwrap_or_else(|error| {
        errors.push(error);
        fallback
    })
}

/// The layers' values, checked. Mistakes that leave the rest checkable go to `errors` (the
/// result is then only a stand-in); the others end the check as the `Err`.
fn resolve_values(
    file: Option<&ConfigFile>,
    env: EnvLookup<'_>,
    mut ignored: Vec<IgnoredKey>,
    errors: &mut Vec<ConfigError>,
) -> Result<LoadedConfig, ConfigError> {
    let mut figment = Figment::from(Defaults);
    if let Some(file) = file {
        figment = figment.merge(FileLayer {
            path: &file.path,
            text: &file.text,
        });
    }
    for (var, key) in ENV_OVERRIDES {
        if let Some(value) = env(var)? {
            figment = figment.merge(EnvLayer { var, key, value });
        }
    }
    let raw = figment
        .extract::<RawFile>()
        .map_err(|e| from_figment(e, &FILE_ENTRIES, None))?
        .enrichment;
    let origin = |key: &str| source_of(figment.find_metadata(key));

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
    let on_failure = match raw.on_failure.0.trim() {
        "error" => Ok(OnFailure::Error),
        "fallback_to_empty" => Ok(OnFailure::FallbackToEmpty),
        other => Err(ConfigError::Invalid {
            key: "enrichment.on_failure".to_owned(),
            origin: origin("enrichment.on_failure"),
            line: None,
            reason: format!("{other:?} (expected \"error\" or \"fallback_to_empty\")"),
        }),
    };
    let on_failure = keep(errors, on_failure, OnFailure::Error);
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
    let reliability = crate::reliability::resolve(&raw, &origin)?;
    let file_globs = file.and_then(file_path_weights);
    let work_order = crate::work_order::resolve(&raw, &origin, file_globs.as_deref())?;
    let (index, secrets) =
        crate::secrets::resolve(raw.index.as_ref(), raw.secrets.as_ref(), &origin)?;
    let routes: BTreeMap<String, String> = raw
        .routes
        .iter()
        .filter_map(|(slice, chain)| {
            let slice = slice.trim().to_ascii_lowercase();
            Some((slice, chain.non_blank()?)).filter(|(slice, _)| !slice.is_empty())
        })
        .collect();
    let max_tier = raw.max_tier.as_ref().and_then(Text::non_blank);
    let template = raw
        .prompt
        .template
        .map(|t| t.0)
        .filter(|t| !t.trim().is_empty());

    let mut enable_routing = raw.enable_routing.0;
    let mut routing_origin = origin("enrichment.enable_routing");
    if let Some(value) = env(DISABLE_ROUTING)? {
        match parse_flag(&value) {
            Some(true) => {
                enable_routing = false;
                routing_origin = Source::Env(DISABLE_ROUTING.to_owned());
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

    // Backends: the file's (or the built-in one), grouped by chain, then ENRICH_CHAIN_JSON
    // replacing the chains it names.
    let chain_origin = origin("enrichment.chain");
    let mut chains: Chains = Vec::new();
    for (index, raw_entry) in raw.chain.into_iter().enumerate() {
        let label = entry_label(FILE_ENTRIES.label, index);
        match resolve_entry(raw_entry, &default_chain, label, &chain_origin) {
            Ok(entry) => push_grouped(&mut chains, entry),
            Err(error) => errors.push(error),
        }
    }
    let mut json_named = HashSet::new();
    if let Some(text) = env(CHAIN_JSON)? {
        for (name, replacement) in chains_from_json(&text, &default_chain, &mut ignored)? {
            json_named.insert(name.clone());
            match chains.iter_mut().find(|(existing, _)| *existing == name) {
                Some((_, entries)) => *entries = replacement,
                None => chains.push((name, replacement)),
            }
        }
    }

    for (chain, entries) in &chains {
        let mut seen = HashSet::new();
        for entry in entries {
            if !seen.insert(entry.spec.name.as_str()) {
                errors.push(ConfigError::DuplicateName {
                    chain: chain.clone(),
                    name: entry.spec.name.clone(),
                    origin: entry.origin.clone(),
                });
            }
        }
    }

    let ollama_host = env(OLLAMA_HOST)?.map(|host| normalize_ollama_host(&host));
    for (_, entries) in &mut chains {
        for entry in entries.iter_mut() {
            if entry.spec.url.is_some() || entry.spec.provider != DEFAULT_PROVIDER {
                continue;
            }
            let (url, source) = match &ollama_host {
                Some(host) => (host.clone(), Source::Env(OLLAMA_HOST.to_owned())),
                None => (DEFAULT_OLLAMA_URL.to_owned(), Source::Default),
            };
            entry.spec.url = Some(url);
            entry.url_origin = (source != entry.origin).then_some(source);
        }
    }

    // Name the layer that decided the default chain's entries. Only when the chains and their
    // default are all known: a refused entry or name would make this a second, false report.
    if default_chain_valid && errors.is_empty() {
        check_default_chain(&chains, &default_chain, || match file {
            _ if json_named.contains(&default_chain) => Source::Env(CHAIN_JSON.to_owned()),
            Some(file) => Source::File(file.path.clone()),
            None => Source::Default,
        })?;
    }

    let entries: Vec<Entry> = chains
        .into_iter()
        .flat_map(|(_, entries)| entries)
        .collect();
    let mut settings = Vec::new();
    let mut put = |key: &str, value: serde_json::Value, source: Source| {
        settings.push(Setting {
            key: key.to_owned(),
            value,
            source,
        });
    };
    let scalar = |key: &'static str| (key, origin(key));
    for (value, (key, source)) in [
        (json!(default_chain), scalar("enrichment.default_chain")),
        (json!(batch_size), scalar("enrichment.batch_size")),
        (json!(concurrency), scalar("enrichment.concurrency")),
        (
            json!(raw.cooldown_seconds.0),
            scalar("enrichment.cooldown_seconds"),
        ),
        (
            json!(raw.max_retries_per_span.0),
            scalar("enrichment.max_retries_per_span"),
        ),
        (
            json!(raw.max_failures_per_span.0),
            scalar("enrichment.max_failures_per_span"),
        ),
        (
            json!(raw.outage_grace_seconds.0),
            scalar("enrichment.outage_grace_seconds"),
        ),
        (
            json!(raw.enforce_latin1_enrichment.0),
            scalar("enrichment.enforce_latin1_enrichment"),
        ),
        (
            json!(enable_routing),
            ("enrichment.enable_routing", routing_origin),
        ),
        (json!(max_tier), scalar("enrichment.max_tier")),
        (json!(on_failure.as_str()), scalar("enrichment.on_failure")),
        (
            json!(raw.event_log_max_bytes.0),
            scalar("enrichment.event_log_max_bytes"),
        ),
        (
            json!(raw.event_log_keep.0),
            scalar("enrichment.event_log_keep"),
        ),
    ] {
        put(key, value, source);
    }
    for (slice, chain) in &routes {
        put(
            &format!("enrichment.routes.{slice}"),
            json!(chain),
            origin("enrichment.routes"),
        );
    }
    put(
        "enrichment.prompt.template",
        json!(template),
        origin("enrichment.prompt.template"),
    );
    put(
        "enrichment.prompt.max_snippet_bytes",
        json!(max_snippet_bytes),
        origin("enrichment.prompt.max_snippet_bytes"),
    );
    for (key, value) in [
        (
            "enrichment.corrective_reasks",
            json!(reliability.corrective_reasks),
        ),
        ("enrichment.schedule", json!(reliability.schedule.as_str())),
        (
            "enrichment.busy_timeout_seconds",
            json!(reliability.busy_timeout_seconds),
        ),
        (
            "enrichment.circuit_breaker.failures_to_open",
            json!(reliability.circuit_breaker.failures_to_open),
        ),
        (
            "enrichment.circuit_breaker.cooldown_seconds",
            json!(reliability.circuit_breaker.cooldown_seconds),
        ),
        (
            "enrichment.circuit_breaker.max_cooldown_seconds",
            json!(reliability.circuit_breaker.max_cooldown_seconds),
        ),
        (
            "enrichment.budget.max_tokens_per_run",
            json!(reliability.budget.max_tokens_per_run),
        ),
        (
            "enrichment.budget.max_cost_per_run",
            json!(reliability.budget.max_cost_per_run),
        ),
        (
            "enrichment.budget.max_wall_seconds",
            json!(reliability.budget.max_wall_seconds),
        ),
        (
            "enrichment.budget.max_tokens_per_day",
            json!(reliability.budget.max_tokens_per_day),
        ),
        (
            "enrichment.budget.max_cost_per_day",
            json!(reliability.budget.max_cost_per_day),
        ),
    ] {
        put(key, value, origin(key));
    }
    for (key, value) in [
        ("enrichment.index.exclude", json!(index.exclude)),
        ("enrichment.index.include", json!(index.include)),
        ("enrichment.secrets.action", json!(secrets.action.as_str())),
    ] {
        put(key, value, origin(key));
    }
    for setting in work_order.settings {
        put(&setting.key, setting.value, setting.source);
    }
    for entry in &entries {
        let spec = &entry.spec;
        let key = format!("enrichment.chain.{}.{}", spec.chain, spec.name);
        put(&key, entry_json(spec), entry.origin.clone());
        if let Some(url_origin) = &entry.url_origin {
            let url = spec.url.as_deref().map(redact_url);
            put(&format!("{key}.url"), json!(url), url_origin.clone());
        }
    }

    let config = EnrichmentConfig {
        default_chain,
        batch_size,
        concurrency,
        cooldown_seconds: raw.cooldown_seconds.0,
        max_retries_per_span: raw.max_retries_per_span.0,
        max_failures_per_span: raw.max_failures_per_span.0,
        outage_grace_seconds: raw.outage_grace_seconds.0,
        enforce_latin1_enrichment: raw.enforce_latin1_enrichment.0,
        enable_routing,
        routes,
        max_tier,
        on_failure,
        prompt: PromptConfig {
            template,
            max_snippet_bytes,
        },
        corrective_reasks: reliability.corrective_reasks,
        busy_timeout_seconds: reliability.busy_timeout_seconds,
        schedule: reliability.schedule,
        circuit_breaker: reliability.circuit_breaker,
        budget: reliability.budget,
        work_order: work_order.work_order,
        index,
        secrets,
        event_log: EventLogLimit {
            max_bytes: raw.event_log_max_bytes.0,
            keep: raw.event_log_keep.0,
        },
        backends: entries.into_iter().map(|e| e.spec).collect(),
    };
    Ok(LoadedConfig {
        config,
        file: file.map(|f| f.path.clone()),
        settings,
        ignored,
    })
}

/// Applies an entry's defaults and checks it.
fn resolve_entry(
    raw: RawBackend,
    default_chain: &str,
    label: String,
    origin: &Source,
) -> Result<Entry, ConfigError> {
    let Some(name) = raw.name.as_ref().and_then(Text::non_blank) else {
        return Err(ConfigError::UnnamedEntry {
            entry: label,
            origin: origin.clone(),
            line: None,
        });
    };
    let timeout_seconds = raw.timeout_seconds.map(|t| t.0);
    if let Some(seconds) = timeout_seconds
        && (seconds <= 0.0 || Duration::try_from_secs_f64(seconds).is_err())
    {
        return Err(ConfigError::Invalid {
            key: format!("timeout_seconds of {label} ({name:?})"),
            origin: origin.clone(),
            line: None,
            reason: format!("{seconds} (expected a positive number of seconds)"),
        });
    }
    let text = |value: &Option<Text>| value.as_ref().and_then(Text::non_blank);
    let invalid = |key: &str, reason: String| ConfigError::Invalid {
        key: format!("{key} of {label} ({name:?})"),
        origin: origin.clone(),
        line: None,
        reason,
    };
    let mut hosts: Vec<String> = text(&raw.url).into_iter().collect();
    for url in raw.urls.iter().flat_map(|list| &list.0) {
        if let Some(url) = url.non_blank().filter(|url| !hosts.contains(url)) {
            hosts.push(url);
        }
    }
    let url = hosts.first().cloned();
    let urls = if hosts.len() > 1 { hosts } else { Vec::new() };
    let per_minute = |value: Option<crate::lenient::Whole<u32>>, key: &str| {
        value
            .map(|v| match v.0 {
                0 => Err(invalid(
                    key,
                    "0 (expected at least 1; remove the key for no limit)".to_owned(),
                )),
                n => Ok(n),
            })
            .transpose()
    };
    let requests_per_minute = per_minute(raw.requests_per_minute, "requests_per_minute")?;
    let tokens_per_minute = per_minute(raw.tokens_per_minute, "tokens_per_minute")?;
    let price_of = |value: Option<crate::lenient::Number>, key: &str| {
        value
            .map(|v| {
                if v.0 >= 0.0 && v.0.is_finite() {
                    Ok(v.0)
                } else {
                    Err(invalid(
                        key,
                        format!("{} (expected a price of 0 or more per million tokens)", v.0),
                    ))
                }
            })
            .transpose()
    };
    let input_price = price_of(raw.price_input_per_1m, "price_input_per_1m")?;
    let output_price = price_of(raw.price_output_per_1m, "price_output_per_1m")?;
    let price = (input_price.is_some() || output_price.is_some()).then(|| Price {
        input_per_1m: input_price.unwrap_or(0.0),
        output_per_1m: output_price.unwrap_or(0.0),
    });
    let max_response_bytes = raw.max_response_bytes.map(|v| v.0);
    if let Some(bytes) = max_response_bytes.filter(|&bytes| bytes < MIN_RESPONSE_BYTES) {
        return Err(invalid(
            "max_response_bytes",
            format!(
                "{bytes} (expected at least {MIN_RESPONSE_BYTES} bytes; remove the key for the default of {DEFAULT_MAX_RESPONSE_BYTES})"
            ),
        ));
    }
    let mut options = raw.options.unwrap_or_default();
    let max_in_flight = crate::in_flight::take_max_in_flight(&mut options)
        .map_err(|(key, reason)| invalid(&format!("options.{key}"), reason))?;
    if let Some(path) = credential_option(&options) {
        return Err(invalid(
            &format!("options.{path}"),
            "a credential in `options` would be sent to the model server in the request body; \
             put it in an environment variable and name that variable with \
             `api_key_env = \"VAR\"` (sent as an Authorization header), or write it into `url` \
             as user:password@"
                .to_owned(),
        ));
    }
    let spec = BackendSpec {
        chain: text(&raw.chain).unwrap_or_else(|| default_chain.to_owned()),
        provider: text(&raw.provider).unwrap_or_else(|| DEFAULT_PROVIDER.to_owned()),
        model: text(&raw.model).unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
        url,
        urls,
        routing_tier: text(&raw.routing_tier),
        timeout_seconds,
        api_key_env: text(&raw.api_key_env),
        max_response_bytes,
        requests_per_minute,
        tokens_per_minute,
        price,
        max_in_flight,
        options,
        enabled: raw.enabled.is_none_or(|flag| flag.0),
        name,
    };
    Ok(Entry {
        spec,
        origin: origin.clone(),
        url_origin: None,
    })
}

/// Parses `ENRICH_CHAIN_JSON`: a list of entries (grouped by their `chain`, default chain when
/// they name none) or `{"chains": {name: [entries]}}`. Returns the chains it names, each with
/// its entries (possibly none: an empty list removes the chain).
fn chains_from_json(
    text: &str,
    default_chain: &str,
    ignored: &mut Vec<IgnoredKey>,
) -> Result<Chains, ConfigError> {
    let payload: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ConfigError::ChainJsonSyntax {
            reason: e.to_string(),
        })?;
    let mut chains: Chains = Vec::new();
    match payload {
        serde_json::Value::Array(items) => {
            for entry in json_entries(items, "", default_chain, None, ignored)? {
                push_grouped(&mut chains, entry);
            }
        }
        serde_json::Value::Object(mut object) if object.contains_key("chains") => {
            let named = match object.remove("chains") {
                Some(serde_json::Value::Object(named)) => named,
                other => {
                    return Err(ConfigError::ChainJsonShape {
                        found: format!("\"chains\": {}", json_kind(other.as_ref())),
                    });
                }
            };
            for (name, list) in named {
                let serde_json::Value::Array(items) = list else {
                    return Err(ConfigError::ChainJsonShape {
                        found: format!("chains.{name}: {}", json_kind(Some(&list))),
                    });
                };
                let chain = name.trim().to_owned();
                if chain.is_empty() {
                    return Err(ConfigError::ChainJsonShape {
                        found: "a chain with an empty name".to_owned(),
                    });
                }
                let label = format!("chains.{chain}");
                let entries = json_entries(items, &label, default_chain, Some(&chain), ignored)?;
                chains.push((chain, entries));
            }
        }
        serde_json::Value::Object(_) => {
            return Err(ConfigError::ChainJsonShape {
                found: "an object without \"chains\"".to_owned(),
            });
        }
        other => {
            return Err(ConfigError::ChainJsonShape {
                found: json_kind(Some(&other)),
            });
        }
    }
    Ok(chains)
}

/// Reads `ENRICH_CHAIN_JSON` entries through figment, so they get the same lenient types and
/// the same error messages as file entries.
fn json_entries(
    items: Vec<serde_json::Value>,
    label: &str,
    default_chain: &str,
    listed_under: Option<&str>,
    ignored: &mut Vec<IgnoredKey>,
) -> Result<Vec<Entry>, ConfigError> {
    let origin = Source::Env(CHAIN_JSON.to_owned());
    for (index, item) in items.iter().enumerate() {
        if let serde_json::Value::Object(entry) = item {
            for key in entry.keys().filter(|k| {
                !ENTRY_KEYS.contains(&k.as_str()) && !LLMC_ENTRY_KEYS.contains(&k.as_str())
            }) {
                ignored.push(IgnoredKey {
                    key: format!("{key} of {}", entry_label(label, index)),
                    origin: origin.clone(),
                    line: None,
                    suggestion: suggest(key, ENTRY_KEYS),
                });
            }
        }
    }
    let entries = Entries {
        at: &["entries"],
        label,
    };
    let raw: RawEntries = Figment::from(Serialized::default("entries", &items))
        .extract()
        .map_err(|e| from_figment(e, &entries, Some(origin.clone())))?;
    raw.entries
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let label = entry_label(label, index);
            if let Some(under) = listed_under
                && let Some(chain) = raw.chain.as_ref().and_then(Text::non_blank)
                && chain != under
            {
                return Err(ConfigError::Invalid {
                    key: format!("chain of {label}"),
                    origin: origin.clone(),
                    line: None,
                    reason: format!(
                        "{chain:?} (expected {under:?}, the chain it is listed under, or no chain)"
                    ),
                });
            }
            resolve_entry(raw, listed_under.unwrap_or(default_chain), label, &origin)
        })
        .collect()
}

fn json_kind(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "null".to_owned(),
        Some(serde_json::Value::Bool(b)) => format!("the boolean {b}"),
        Some(serde_json::Value::Number(n)) => format!("the number {n}"),
        Some(serde_json::Value::String(s)) => format!("the string {s:?}"),
        Some(serde_json::Value::Array(_)) => "a list".to_owned(),
        Some(serde_json::Value::Object(_)) => "an object".to_owned(),
    }
}

/// The default chain must exist and have an enabled entry.
fn check_default_chain(
    chains: &Chains,
    default_chain: &str,
    chains_origin: impl FnOnce() -> Source,
) -> Result<(), ConfigError> {
    let entries = chains
        .iter()
        .find(|(name, _)| name == default_chain)
        .map(|(_, entries)| entries.as_slice())
        .unwrap_or_default();
    if entries.iter().any(|e| e.spec.enabled) {
        return Ok(());
    }
    match entries.first() {
        None => Err(ConfigError::DefaultChainMissing {
            chain: default_chain.to_owned(),
            origin: chains_origin(),
            available: usable_chains(chains.iter().flat_map(|(_, es)| es.iter().map(|e| &e.spec))),
        }),
        Some(first) => Err(ConfigError::DefaultChainDisabled {
            chain: default_chain.to_owned(),
            origin: first.origin.clone(),
            entries: entries.iter().map(|e| e.spec.name.clone()).collect(),
        }),
    }
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

/// The globs of the config file's own `[enrichment.path_weights]` table, `None` when the file
/// has none (the built-in table applies then; a file's table replaces it whole).
fn file_path_weights(file: &ConfigFile) -> Option<Vec<String>> {
    let layer = FileLayer {
        path: &file.path,
        text: &file.text,
    };
    match Figment::from(layer).find_value("enrichment.path_weights") {
        Ok(Value::Dict(_, table)) => Some(table.into_keys().collect()),
        _ => None,
    }
}

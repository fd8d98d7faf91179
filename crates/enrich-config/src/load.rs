//! Loading: choosing the file, layering defaults < file < env with figment, applying
//! `ENRICH_CHAIN_JSON`, `OLLAMA_HOST` and `LLMC_ENRICH_DISABLE_ROUTING`, validating, and
//! recording where each value came from.
//!
//! [`resolve_values`] reads the steps in order, each in a module of its own: [`scalars`] (the
//! default chain, `on_failure`, the limits), the reliability, work-order and secrets tables
//! (their own crate modules), [`routing`] (routes, `max_tier`, `LLMC_ENRICH_DISABLE_ROUTING`),
//! [`chains`] (the backend entries, each resolved by [`entry`], `ENRICH_CHAIN_JSON` read by
//! [`chain_json`], `OLLAMA_HOST`, the default chain's check), then [`settings`] (the provenance
//! list). Every mistake that leaves the rest checkable is collected, so one error reports them
//! all.

mod chain_json;
mod chains;
mod entry;
mod quality;
mod routing;
mod scalars;
mod settings;

pub(crate) use quality::{QUALITY_KEYS, RawQuality};

use std::env::VarError;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::value::Value;

use crate::keys::{IgnoredKey, KeyTree, is_llmc_file};
use crate::layers::{Defaults, Entries, EnvLayer, FileLayer, from_figment, source_of};
use crate::raw::RawFile;
use crate::{
    BackendSpec, ConfigError, EnrichmentConfig, EventLogLimit, PromptConfig, Setting, Source,
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
    /// `default` chain with one Ollama backend at [`DEFAULT_OLLAMA_URL`](crate::DEFAULT_OLLAMA_URL).
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
    let figment = layered(file, env)?;
    let raw = figment
        .extract::<RawFile>()
        .map_err(|e| from_figment(e, &FILE_ENTRIES, None))?
        .enrichment;
    let origin = |key: &str| source_of(figment.find_metadata(key));

    let scalars = scalars::resolve(&raw, &origin, errors);
    let reliability = crate::reliability::resolve(&raw, &origin)?;
    let file_globs = file.and_then(file_path_weights);
    let work_order = crate::work_order::resolve(&raw, &origin, file_globs.as_deref())?;
    let (index, secrets) =
        crate::secrets::resolve(raw.index.as_ref(), raw.secrets.as_ref(), &origin)?;
    let quality = quality::resolve(raw.quality.as_ref(), &origin)?;
    let routing = routing::resolve(&raw, &origin, env, errors)?;
    let chains = chains::Context {
        file,
        env,
        default_chain: &scalars.default_chain,
        default_chain_valid: scalars.default_chain_valid,
        chain_origin: origin("enrichment.chain"),
    };
    let entries = chains::resolve(raw.chain, &chains, &mut ignored, errors)?;
    let entry_settings = settings::of_entries(&entries);
    let template = raw.prompt.template.map(|t| t.0);

    let config = EnrichmentConfig {
        default_chain: scalars.default_chain,
        batch_size: scalars.batch_size,
        concurrency: scalars.concurrency,
        cooldown_seconds: raw.cooldown_seconds.0,
        max_retries_per_span: raw.max_retries_per_span.0,
        max_failures_per_span: raw.max_failures_per_span.0,
        outage_grace_seconds: raw.outage_grace_seconds.0,
        enforce_latin1_enrichment: raw.enforce_latin1_enrichment.0,
        enable_routing: routing.enable_routing,
        routes: routing.routes,
        max_tier: routing.max_tier,
        on_failure: scalars.on_failure,
        prompt: PromptConfig {
            template: template.filter(|t| !t.trim().is_empty()),
            max_snippet_bytes: scalars.max_snippet_bytes,
        },
        corrective_reasks: reliability.corrective_reasks,
        busy_timeout_seconds: reliability.busy_timeout_seconds,
        schedule: reliability.schedule,
        circuit_breaker: reliability.circuit_breaker,
        budget: reliability.budget,
        work_order: work_order.work_order,
        index,
        secrets,
        quality,
        event_log: EventLogLimit {
            max_bytes: raw.event_log_max_bytes.0,
            keep: raw.event_log_keep.0,
        },
        backends: entries.into_iter().map(|e| e.spec).collect(),
    };
    let mut settings = settings::of_config(&config, &origin, routing.origin);
    settings.extend(work_order.settings);
    settings.extend(entry_settings);
    Ok(LoadedConfig {
        config,
        file: file.map(|f| f.path.clone()),
        settings,
        ignored,
    })
}

/// The figment of the layers: the built-in defaults, the file, then LLMC's scalar overrides
/// from the environment.
fn layered(file: Option<&ConfigFile>, env: EnvLookup<'_>) -> Result<Figment, ConfigError> {
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
    Ok(figment)
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

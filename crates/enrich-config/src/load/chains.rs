//! The backend entries, grouped by chain: the file's (or the built-in one), then
//! `ENRICH_CHAIN_JSON` replacing the chains it names, names checked unique per chain, Ollama
//! entries without a URL given `OLLAMA_HOST` (or the default URL), and the default chain checked.

use std::collections::HashSet;

use super::chain_json::{CHAIN_JSON, chains_from_json};
use super::entry::resolve_entry;
use super::{ConfigFile, EnvLookup, FILE_ENTRIES, usable_chains};
use crate::keys::IgnoredKey;
use crate::layers::entry_label;
use crate::raw::RawBackend;
use crate::{
    BackendSpec, ConfigError, DEFAULT_OLLAMA_URL, DEFAULT_PROVIDER, Source, normalize_ollama_host,
};

const OLLAMA_HOST: &str = "OLLAMA_HOST";

/// A backend entry with the layers it came from.
pub(super) struct Entry {
    pub(super) spec: BackendSpec,
    pub(super) origin: Source,
    /// Where the URL came from when the entry set none and that is not the entry's own layer
    /// (`OLLAMA_HOST`, or the default URL for a file entry).
    pub(super) url_origin: Option<Source>,
}

/// Entries grouped by chain, chains in order of first appearance.
pub(super) type Chains = Vec<(String, Vec<Entry>)>;

/// What the entries are resolved against.
pub(super) struct Context<'a> {
    pub(super) file: Option<&'a ConfigFile>,
    pub(super) env: EnvLookup<'a>,
    pub(super) default_chain: &'a str,
    /// Whether `default_chain` is the configured name rather than a stand-in.
    pub(super) default_chain_valid: bool,
    /// Where `[[enrichment.chain]]` came from.
    pub(super) chain_origin: Source,
}

/// Every backend entry in chain order. Mistakes that leave the rest checkable go to `errors`.
pub(super) fn resolve(
    file_entries: Vec<RawBackend>,
    cx: &Context<'_>,
    ignored: &mut Vec<IgnoredKey>,
    errors: &mut Vec<ConfigError>,
) -> Result<Vec<Entry>, ConfigError> {
    let mut chains = file_chains(file_entries, cx, errors);
    let mut json_named = HashSet::new();
    if let Some(text) = (cx.env)(CHAIN_JSON)? {
        for (name, replacement) in chains_from_json(&text, cx.default_chain, ignored)? {
            json_named.insert(name.clone());
            match chains.iter_mut().find(|(existing, _)| *existing == name) {
                Some((_, entries)) => *entries = replacement,
                None => chains.push((name, replacement)),
            }
        }
    }
    check_unique_names(&chains, errors);
    fill_ollama_urls(&mut chains, (cx.env)(OLLAMA_HOST)?);
    // Name the layer that decided the default chain's entries. Only when the chains and their
    // default are all known: a refused entry or name would make this a second, false report.
    if cx.default_chain_valid && errors.is_empty() {
        check_default_chain(&chains, cx.default_chain, || match cx.file {
            _ if json_named.contains(cx.default_chain) => Source::Env(CHAIN_JSON.to_owned()),
            Some(file) => Source::File(file.path.clone()),
            None => Source::Default,
        })?;
    }
    Ok(chains
        .into_iter()
        .flat_map(|(_, entries)| entries)
        .collect())
}

/// Adds `entry` to its chain, or starts the chain.
pub(super) fn push_grouped(chains: &mut Chains, entry: Entry) {
    match chains
        .iter_mut()
        .find(|(name, _)| *name == entry.spec.chain)
    {
        Some((_, entries)) => entries.push(entry),
        None => chains.push((entry.spec.chain.clone(), vec![entry])),
    }
}

/// The file's entries (or the built-in one), grouped by chain; a refused entry is left out.
fn file_chains(
    file_entries: Vec<RawBackend>,
    cx: &Context<'_>,
    errors: &mut Vec<ConfigError>,
) -> Chains {
    let mut chains: Chains = Vec::new();
    for (index, raw_entry) in file_entries.into_iter().enumerate() {
        let label = entry_label(FILE_ENTRIES.label, index);
        match resolve_entry(raw_entry, cx.default_chain, label, &cx.chain_origin) {
            Ok(entry) => push_grouped(&mut chains, entry),
            Err(error) => errors.push(error),
        }
    }
    chains
}

/// Two entries of one chain must not share a name.
fn check_unique_names(chains: &Chains, errors: &mut Vec<ConfigError>) {
    for (chain, entries) in chains {
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
}

/// Gives every Ollama entry without a URL the `OLLAMA_HOST` value when set, else the default
/// URL, and records where it came from.
fn fill_ollama_urls(chains: &mut Chains, ollama_host: Option<String>) {
    let ollama_host = ollama_host.map(|host| normalize_ollama_host(&host));
    for (_, entries) in chains {
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

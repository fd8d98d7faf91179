//! `ENRICH_CHAIN_JSON`: a list of backend entries, or `{"chains": {name: [entries]}}`, read
//! through figment so its entries get the same lenient types and error messages as the file's.

use figment::Figment;
use figment::providers::Serialized;

use super::chains::{Chains, Entry, push_grouped};
use super::entry::resolve_entry;
use crate::keys::{IgnoredKey, suggest};
use crate::layers::{Entries, entry_label, from_figment};
use crate::lenient::Text;
use crate::raw::{ENTRY_KEYS, LLMC_ENTRY_KEYS, RawEntries};
use crate::{ConfigError, Source};

/// The variable holding the chains that replace the file's.
pub(super) const CHAIN_JSON: &str = "ENRICH_CHAIN_JSON";

/// Parses `ENRICH_CHAIN_JSON`: a list of entries (grouped by their `chain`, default chain when
/// they name none) or `{"chains": {name: [entries]}}`. Returns the chains it names, each with
/// its entries (possibly none: an empty list removes the chain).
pub(super) fn chains_from_json(
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

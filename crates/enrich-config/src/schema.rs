//! The JSON Schema of `enrich.toml` ([`config_file_schema`], printed by `enrich config
//! --schema`), so that editors complete and check the file.
//!
//! It is derived from the types that read the file ([`crate::raw`]): the lenient scalars'
//! schemas below accept exactly what they accept (`batch_size = "50"` as well as `50`), and every
//! key is optional, as the built-in defaults fill what a file leaves out. The keys are those of
//! enrich's own file: any other key is refused (as loading refuses it in `enrich.toml`), except
//! LLMC's own `[enrichment]`, entry and `[enrichment.runner]` keys, which pass in either file.
//! Each key's description is the comment above it in the built-in defaults
//! ([`crate::DEFAULT_CONFIG_TOML`], which `enrich init` writes), so the two never disagree.
//! Spellings beyond the canonical ones that loading also takes (`schedule = "By_Tier"`) are not
//! offered.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::lenient::{FALSE_SPELLINGS, Flag, Real, TRUE_SPELLINGS, Text, TextList, Unit, Whole};
use crate::raw::{LLMC_ENRICHMENT_KEYS, LLMC_ENTRY_KEYS, LLMC_RUNNER_KEYS, RawFile};
use crate::{DEFAULT_CONFIG_TOML, OnFailure, Schedule, SecretsAction};

/// The JSON Schema (draft 2020-12) of enrich's config file, `enrich.toml`.
pub fn config_file_schema() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<RawFile>().to_value();
    without_null(&mut schema);
    describe(&mut schema, "", &default_file_comments());
    if let Some(root) = schema.as_object_mut() {
        root.insert("title".to_owned(), json!("enrich.toml"));
        root.insert(
            "description".to_owned(),
            json!(
                "enrich's configuration file: the [enrichment] table of LLMC's llmc.toml. Every \
                 key is optional: the built-in defaults (`enrich init` writes them, commented) \
                 fill the rest, and ENRICH_* variables override the file."
            ),
        );
    }
    schema
}

impl JsonSchema for Text {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // A number is taken as its text (`model = 7` is the tag "7").
        json_schema!({ "type": ["string", "number"] })
    }
}

impl JsonSchema for Flag {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Flag".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // Any case, surrounding blanks allowed: one character class per letter.
        let spellings: Vec<String> = TRUE_SPELLINGS
            .iter()
            .chain(FALSE_SPELLINGS)
            .map(|word| {
                word.chars()
                    .map(|c| match c {
                        'a'..='z' => format!("[{c}{}]", c.to_ascii_uppercase()),
                        _ => c.to_string(),
                    })
                    .collect()
            })
            .collect();
        let pattern = format!("^\\s*({})\\s*$", spellings.join("|"));
        json_schema!({
            "anyOf": [
                { "type": "boolean" },
                { "enum": [0, 1] },
                { "type": "string", "pattern": pattern },
            ]
        })
    }
}

impl<T: JsonSchema> JsonSchema for Whole<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("Whole_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                generator.subschema_for::<T>(),
                { "type": "string", "pattern": "^\\s*[0-9]+\\s*$" },
            ]
        })
    }
}

impl<U: Unit> JsonSchema for Real<U> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Real".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "number" },
                {
                    "type": "string",
                    "pattern": "^\\s*[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?\\s*$",
                },
            ]
        })
    }
}

impl JsonSchema for TextList {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "TextList".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let text = generator.subschema_for::<Text>();
        json_schema!({ "anyOf": [{ "type": "string" }, { "type": "array", "items": text }] })
    }
}

/// `[[enrichment.chain]]`: a list of backend entries, or (as LLMC also accepts) one table.
pub(crate) fn backend_entries(generator: &mut SchemaGenerator) -> Schema {
    let entry = generator.subschema_for::<crate::raw::RawBackend>();
    json_schema!({ "anyOf": [{ "type": "array", "items": entry.clone() }, entry] })
}

/// The `[enrichment]` table: every key optional, LLMC's own keys accepted.
pub(crate) fn enrichment_table(schema: &mut Schema) {
    every_key_optional(schema);
    accept_llmc_keys(schema, LLMC_ENRICHMENT_KEYS);
}

/// A backend entry: LLMC's own keys accepted.
pub(crate) fn backend_entry(schema: &mut Schema) {
    accept_llmc_keys(schema, LLMC_ENTRY_KEYS);
}

/// `[enrichment.runner]`: LLMC's own keys accepted.
pub(crate) fn runner_table(schema: &mut Schema) {
    accept_llmc_keys(schema, LLMC_RUNNER_KEYS);
}

/// A table whose keys the built-in defaults always set: none is required in a file.
pub(crate) fn every_key_optional(schema: &mut Schema) {
    schema.remove("required");
}

/// `on_failure`'s values.
pub(crate) fn on_failure(_: &mut SchemaGenerator) -> Schema {
    let values = [OnFailure::Error, OnFailure::FallbackToEmpty].map(OnFailure::as_str);
    json_schema!({ "type": "string", "enum": values })
}

/// `schedule`'s values.
pub(crate) fn schedule(_: &mut SchemaGenerator) -> Schema {
    let values = [Schedule::PerSpan, Schedule::ByTier].map(Schedule::as_str);
    json_schema!({ "type": "string", "enum": values })
}

/// `[enrichment.secrets] action`'s values.
pub(crate) fn secrets_action(_: &mut SchemaGenerator) -> Schema {
    let values = [SecretsAction::Redact, SecretsAction::Skip].map(SecretsAction::as_str);
    json_schema!({ "type": "string", "enum": values })
}

/// `[enrichment.quality] level`'s values.
pub(crate) fn quality_level(_: &mut SchemaGenerator) -> Schema {
    let values = crate::QualityLevel::ALL.map(crate::QualityLevel::as_str);
    json_schema!({ "type": "string", "enum": values })
}

/// Lets LLMC's own keys of a table through (loading passes them in silence).
fn accept_llmc_keys(schema: &mut Schema, keys: &[&str]) {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        for key in keys {
            properties.insert(
                (*key).to_owned(),
                json!({ "description": "LLMC's key: enrich does not read it" }),
            );
        }
    }
}

/// Drops the `null` that schemars allows for an `Option`: TOML has no null, a key is absent.
fn without_null(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(types)) = object.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    object.insert("type".to_owned(), only);
                }
            }
            if let Some(Value::Array(any_of)) = object.get_mut("anyOf") {
                any_of.retain(|schema| schema != &json!({ "type": "null" }));
                if let [Value::Object(only)] = any_of.as_slice() {
                    let only = only.clone();
                    object.remove("anyOf");
                    for (key, value) in only {
                        object.entry(key).or_insert(value);
                    }
                }
            }
            object.values_mut().for_each(without_null);
        }
        Value::Array(items) => items.iter_mut().for_each(without_null),
        _ => {}
    }
}

/// Gives each key of `schema` (a table at `path`, `""` for the file) the description in `docs`
/// and goes down into its tables, lists of tables and alternatives.
fn describe(schema: &mut Value, path: &str, docs: &BTreeMap<String, String>) {
    let Value::Object(object) = schema else {
        return;
    };
    for nested in ["anyOf", "items"] {
        match object.get_mut(nested) {
            Some(Value::Array(alternatives)) => {
                for alternative in alternatives {
                    describe(alternative, path, docs);
                }
            }
            Some(item @ Value::Object(_)) => describe(item, path, docs),
            _ => {}
        }
    }
    let Some(Value::Object(properties)) = object.get_mut("properties") else {
        return;
    };
    for (key, property) in properties.iter_mut() {
        let key_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let (Some(text), Value::Object(property)) = (docs.get(&key_path), &mut *property) {
            property.insert("description".to_owned(), json!(text));
        }
        describe(property, &key_path, docs);
    }
}

/// The comment above each key and table of the built-in defaults, by dotted path
/// (`enrichment.batch_size`, `enrichment.chain.model`): the comment lines right above it, or
/// right above its commented-out example (`# max_tier = "14b"`), blanks folded, an empty comment
/// line a paragraph break. A key right below another gets none.
fn default_file_comments() -> BTreeMap<String, String> {
    /// Gives `key` the comment gathered so far, and starts a new one.
    fn take(key: String, comment: &mut Vec<&str>, docs: &mut BTreeMap<String, String>) {
        let mut text = String::new();
        for line in comment.drain(..) {
            if line.is_empty() {
                text.push_str("\n\n");
            } else {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push(' ');
                }
                text.push_str(&line.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
        if !text.is_empty() {
            docs.insert(key, text);
        }
    }

    let mut docs = BTreeMap::new();
    let mut table = String::new();
    let mut comment: Vec<&str> = Vec::new();
    for line in DEFAULT_CONFIG_TOML.lines().map(str::trim) {
        if line.is_empty() {
            comment.clear();
        } else if let Some(header) = line.strip_prefix('[') {
            table = header.trim_matches(['[', ']']).to_owned();
            take(table.clone(), &mut comment, &mut docs);
        } else if let Some(text) = line.strip_prefix('#') {
            let text = text.trim();
            match bare_key(text) {
                Some(key) => take(format!("{table}.{key}"), &mut comment, &mut docs),
                None => comment.push(text),
            }
        } else if let Some(key) = bare_key(line) {
            take(format!("{table}.{key}"), &mut comment, &mut docs);
        } else {
            comment.clear();
        }
    }
    docs
}

/// The key of a `key = value` line whose key is bare (`batch_size = 5`); `None` for prose and
/// quoted keys (`"src/**" = 1`, entries of a map rather than keys of the schema).
fn bare_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(" = ")?;
    let key = key.trim();
    (!key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    .then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::QUALITY_KEYS;
    use crate::raw::{BUDGET_KEYS, CIRCUIT_BREAKER_KEYS, ENRICHMENT_KEYS, ENTRY_KEYS, PROMPT_KEYS};
    use crate::secrets::{INDEX_KEYS, SECRETS_KEYS};
    use crate::work_order::RUNNER_KEYS;

    /// The keys of the table at `pointer` in the schema, sorted.
    fn keys(schema: &Value, pointer: &str) -> Vec<String> {
        let properties = schema
            .pointer(&format!("{pointer}/properties"))
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("no table at {pointer}"));
        properties.keys().cloned().collect()
    }

    fn sorted(lists: &[&[&str]]) -> Vec<String> {
        let mut keys: Vec<String> = lists.concat().iter().map(|k| (*k).to_owned()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn every_table_has_the_keys_loading_reads_and_llmcs_own() {
        let schema = config_file_schema();
        let e = "/properties/enrichment";
        let tables: [(String, &[&[&str]]); 10] = [
            (String::new(), &[&["enrichment"]]),
            (e.to_owned(), &[ENRICHMENT_KEYS, LLMC_ENRICHMENT_KEYS]),
            (
                format!("{e}/properties/chain/anyOf/1"),
                &[ENTRY_KEYS, LLMC_ENTRY_KEYS],
            ),
            (
                format!("{e}/properties/circuit_breaker"),
                &[CIRCUIT_BREAKER_KEYS],
            ),
            (format!("{e}/properties/budget"), &[BUDGET_KEYS]),
            (format!("{e}/properties/prompt"), &[PROMPT_KEYS]),
            (
                format!("{e}/properties/runner"),
                &[RUNNER_KEYS, LLMC_RUNNER_KEYS],
            ),
            (format!("{e}/properties/index"), &[INDEX_KEYS]),
            (format!("{e}/properties/secrets"), &[SECRETS_KEYS]),
            (format!("{e}/properties/quality"), &[QUALITY_KEYS]),
        ];
        for (pointer, lists) in tables {
            assert_eq!(keys(&schema, &pointer), sorted(lists), "{pointer}");
            let table = schema.pointer(&pointer).unwrap_or(&schema);
            assert_eq!(table["additionalProperties"], json!(false), "{pointer}");
        }
        // A list of entries or one table, each entry naming itself.
        let entries = schema
            .pointer(&format!("{e}/properties/chain/anyOf/0/items"))
            .unwrap();
        assert_eq!(entries["required"], json!(["name"]));
        assert_eq!(
            schema
                .pointer(&format!("{e}/properties/chain/anyOf/1"))
                .unwrap(),
            entries
        );
        // Nothing else is required: the built-in defaults fill what a file leaves out.
        let text = schema.to_string();
        assert_eq!(
            text.matches("\"required\"").count(),
            2,
            "two backend entries only"
        );
    }

    #[test]
    fn each_key_is_described_by_its_comment_in_the_built_in_defaults() {
        let schema = config_file_schema();
        let e = "/properties/enrichment/properties";
        for (pointer, start) in [
            (
                format!("{e}/batch_size"),
                "Spans taken from the index per batch (env ENRICH_BATCH_SIZE).",
            ),
            (
                format!("{e}/max_tier"),
                "Keep only backends of this routing tier",
            ),
            (
                format!("{e}/circuit_breaker"),
                "When a backend (or one host of a host pool) keeps",
            ),
            (
                format!("{e}/circuit_breaker/properties/failures_to_open"),
                "Consecutive failures",
            ),
            (
                format!("{e}/chain/anyOf/0/items/properties/name"),
                "Unique within its chain",
            ),
            (
                format!("{e}/chain/anyOf/1/properties/timeout_seconds"),
                "Per-request timeout",
            ),
            (
                format!("{e}/secrets/properties/action"),
                "\"redact\": send the span",
            ),
        ] {
            let description = schema
                .pointer(&format!("{pointer}/description"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{pointer} has no description"));
            assert!(description.starts_with(start), "{pointer}: {description}");
        }
    }

    #[test]
    fn the_lenient_scalars_accept_llmcs_spellings_in_their_schema() {
        let schema = config_file_schema();
        let flag = &schema["properties"]["enrichment"]["properties"]["enable_routing"];
        let pattern = flag["anyOf"][2]["pattern"].as_str().unwrap();
        assert_eq!(
            pattern,
            "^\\s*(1|[tT][rR][uU][eE]|[yY][eE][sS]|[oO][nN]|0|[fF][aA][lL][sS][eE]|[nN][oO]|[oO][fF][fF])\\s*$"
        );
        let model = &schema["properties"]["enrichment"]["properties"]["default_chain"];
        assert_eq!(model["type"], json!(["string", "number"]));
        // An `Option` allows no null: TOML has none.
        assert!(!schema.to_string().contains("null"), "{schema}");
    }
}

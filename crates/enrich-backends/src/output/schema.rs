//! The enrichment.v1 JSON Schema sent to providers with structured output.

use std::sync::{Arc, OnceLock};

use enrich_types::SpanIdentity;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};

use super::raw::Field;

/// Characters allowed in `summary_120w`: room for [`SUMMARY_MAX_WORDS`](super::SUMMARY_MAX_WORDS)
/// words of six letters and a space.
pub const SUMMARY_MAX_CHARS: u64 = 840;
/// Items allowed in each of the four list fields (`inputs`, `outputs`, `side_effects`,
/// `pitfalls`).
pub const LIST_MAX_ITEMS: u64 = 4;
/// Characters allowed in one list item: a short phrase.
pub const ITEM_MAX_CHARS: u64 = 80;
/// Characters allowed in `usage_snippet`: [`USAGE_SNIPPET_MAX_LINES`](super::USAGE_SNIPPET_MAX_LINES)
/// lines of 40 characters and their line breaks.
pub const SNIPPET_MAX_CHARS: u64 = 492;
/// Entries allowed in `evidence`: one for each citable field.
pub const EVIDENCE_MAX_ITEMS: u64 = 6;

/// How many characters of a model's JSON answer one token is assumed to hold at least, for
/// [`worst_case_output_tokens`]. Tokenizers of current models average 3.5 to 4.5 characters per
/// token on English and code; 3 leaves room for the identifiers, numbers and punctuation that
/// tokenize worse.
pub const CHARS_PER_TOKEN: u64 = 3;

/// Characters an integer without `minimum`/`maximum` may take: the digits of `u64::MAX`.
const UNBOUNDED_INTEGER_CHARS: u64 = 20;

/// The most tokens an answer following `schema` can take, or `None` when the schema leaves
/// something unbounded (a string without `maxLength` or `enum`, an array without `maxItems`).
///
/// The answer's longest compact JSON form, counted in characters (every string at its
/// `maxLength` plus its quotes, every array at its `maxItems`, every key, bracket, colon and
/// comma, an integer at the digits of its `minimum`/`maximum`, `anyOf` at its longest branch),
/// divided by [`CHARS_PER_TOKEN`] and rounded up, plus one token per JSON value for the
/// whitespace a grammar lets the model write around it. Escapes (`\n`, `\"`) are assumed to be
/// covered by the characters-per-token slack.
///
/// ```
/// use enrich_backends::{CHARS_PER_TOKEN, worst_case_output_tokens};
/// use serde_json::json;
///
/// let schema = json!({
///     "type": "object",
///     "properties": { "tags": { "type": "array", "maxItems": 2,
///                               "items": { "type": "string", "maxLength": 10 } } },
/// });
/// // {"tags":["0123456789","0123456789"]}: 36 characters, 4 values.
/// assert_eq!(worst_case_output_tokens(&schema), Some(36_u32.div_ceil(CHARS_PER_TOKEN as u32) + 4));
/// assert_eq!(worst_case_output_tokens(&json!({ "type": "string" })), None);
/// ```
pub fn worst_case_output_tokens(schema: &Value) -> Option<u32> {
    let Worst { chars, values } = worst_case(schema)?;
    let tokens = chars.div_ceil(CHARS_PER_TOKEN).checked_add(values)?;
    u32::try_from(tokens).ok()
}

/// The output token budget a backend is given for an enrichment.v1 answer by default:
/// [`worst_case_output_tokens`] of [`enrichment_v1_schema`], so an answer the schema allows is
/// never cut at the token limit. The pipeline sends it as every request's
/// [`max_output_tokens`](crate::GenerateRequest::max_output_tokens) (Ollama's `num_predict`,
/// OpenAI's `max_tokens`); a backend's own `num_predict`/`max_tokens` option overrides it.
pub fn enrichment_v1_output_tokens() -> u32 {
    static TOKENS: OnceLock<u32> = OnceLock::new();
    *TOKENS.get_or_init(|| {
        // Every string and array of the schema is bounded (a test checks it).
        worst_case_output_tokens(enrichment_v1_schema()).unwrap_or(u32::MAX)
    })
}

/// The longest compact JSON a (sub)schema allows: its characters and how many JSON values it
/// holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Worst {
    chars: u64,
    values: u64,
}

impl Worst {
    const fn scalar(chars: u64) -> Self {
        Self { chars, values: 1 }
    }
}

fn worst_case(schema: &Value) -> Option<Worst> {
    let number = |key: &str| schema.get(key).and_then(Value::as_u64);
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        return branches
            .iter()
            .map(worst_case)
            .try_fold(None::<Worst>, |longest, branch| {
                let branch = branch?;
                Some(Some(match longest {
                    Some(longest) if longest.chars >= branch.chars => longest,
                    _ => branch,
                }))
            })?;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let longest = options.iter().map(|v| v.to_string().len()).max()?;
        return Some(Worst::scalar(u64::try_from(longest).ok()?));
    }
    match schema.get("type").and_then(Value::as_str)? {
        "string" => Some(Worst::scalar(number("maxLength")?.checked_add(2)?)),
        "null" => Some(Worst::scalar(4)),
        "boolean" => Some(Worst::scalar(5)),
        "integer" => {
            let digits = |key: &str| schema.get(key).map(|v| v.to_string().len() as u64);
            let chars = match (digits("minimum"), digits("maximum")) {
                (Some(low), Some(high)) => low.max(high),
                _ => UNBOUNDED_INTEGER_CHARS,
            };
            Some(Worst::scalar(chars))
        }
        "array" => {
            let items = number("maxItems")?;
            let item = worst_case(schema.get("items")?)?;
            Some(Worst {
                // Brackets, the items and the commas between them.
                chars: 2 + items * item.chars + items.saturating_sub(1),
                values: 1 + items * item.values,
            })
        }
        "object" => {
            let properties = schema.get("properties")?.as_object()?;
            let mut worst = Worst::scalar(2 + properties.len().saturating_sub(1) as u64);
            for (key, value) in properties {
                let value = worst_case(value)?;
                // The quoted key and its colon.
                worst.chars += key.len() as u64 + 3 + value.chars;
                worst.values += value.values;
            }
            Some(worst)
        }
        _ => None,
    }
}

/// The enrichment.v1 output schema, built once and shared.
///
/// Adapters send it as the provider's structured-output format (Ollama's `format`). It is
/// bounded on purpose: every string has a `maxLength` and every array a `maxItems`, so a
/// grammar-constrained small model cannot ramble until it hits the token limit. Every key is
/// `required` and `additionalProperties` is false. [`parse_and_validate`](crate::parse_and_validate)
/// is the authority on what is accepted; the schema only steers generation.
pub fn enrichment_v1_schema() -> &'static Arc<Value> {
    static SCHEMA: OnceLock<Arc<Value>> = OnceLock::new();
    SCHEMA.get_or_init(|| Arc::new(build()))
}

/// Where enrichment.v1 keeps the schema of one evidence line number.
const EVIDENCE_LINE_PATH: &[&str] = &[
    "properties",
    "evidence",
    "items",
    "properties",
    "lines",
    "items",
];

/// The enrichment.v1 schema for one span: as [`enrichment_v1_schema`], with every evidence line
/// bounded to the span's `line_start..=line_end` (`minimum`/`maximum`).
///
/// Structured output then keeps a model from citing lines outside the span, which
/// [`parse_and_validate`](crate::parse_and_validate) would reject as `SchemaInvalid`. Ollama
/// (llama.cpp's schema-to-grammar converter) and OpenAI's structured outputs both honour integer
/// bounds; a provider that ignores them still gets a valid schema. The shared schema is not
/// copied: the bounds are written in as the request is serialized (see [`OutputSchema`]).
pub fn enrichment_v1_schema_for_span(span: &SpanIdentity) -> OutputSchema {
    let (start, end) = (span.line_start, span.line_end);
    let (low, high) = (start.min(end), start.max(end));
    OutputSchema::new(Arc::clone(enrichment_v1_schema())).with_replaced(
        EVIDENCE_LINE_PATH,
        json!({ "type": "integer", "minimum": low, "maximum": high }),
    )
}

/// The JSON Schema a request's output must follow, as adapters send it: a schema shared by many
/// requests, and optionally one of its subschemas replaced for this request (the span's line
/// bounds), written in when the schema is serialized so no request copies the whole schema.
///
/// Adapters serialize it where their provider takes a schema (it implements [`Serialize`]), or
/// take [`to_value`](Self::to_value) where they build JSON by hand.
///
/// ```
/// use std::sync::Arc;
/// use enrich_backends::OutputSchema;
/// use serde_json::json;
///
/// let shared = Arc::new(json!({ "type": "object", "properties": { "n": { "type": "integer" } } }));
/// let schema = OutputSchema::new(shared)
///     .with_replaced(&["properties", "n"], json!({ "type": "integer", "maximum": 9 }));
/// assert_eq!(
///     serde_json::to_value(&schema).unwrap(),
///     json!({ "type": "object", "properties": { "n": { "type": "integer", "maximum": 9 } } })
/// );
/// assert_eq!(serde_json::to_value(&schema).unwrap(), schema.to_value());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSchema {
    shared: Arc<Value>,
    replaced: Option<(&'static [&'static str], Value)>,
}

impl OutputSchema {
    /// `schema` as it is.
    pub fn new(schema: Arc<Value>) -> Self {
        Self {
            shared: schema,
            replaced: None,
        }
    }

    /// The schema with the subschema at `path` (object keys from the root) replaced by
    /// `subschema`. A path the schema does not have changes nothing.
    #[must_use]
    pub fn with_replaced(mut self, path: &'static [&'static str], subschema: Value) -> Self {
        self.replaced = Some((path, subschema));
        self
    }

    /// The shared schema, without this request's replacement (its `title` and the like).
    pub fn shared(&self) -> &Arc<Value> {
        &self.shared
    }

    /// The schema as one JSON value, replacement included (a copy of the whole schema).
    pub fn to_value(&self) -> Value {
        let mut value = Value::clone(&self.shared);
        if let Some((path, subschema)) = &self.replaced {
            let mut at = Some(&mut value);
            for key in *path {
                at = at.and_then(|v| v.get_mut(*key));
            }
            if let Some(slot) = at {
                slot.clone_from(subschema);
            }
        }
        value
    }
}

impl From<Arc<Value>> for OutputSchema {
    fn from(schema: Arc<Value>) -> Self {
        Self::new(schema)
    }
}

impl From<Value> for OutputSchema {
    fn from(schema: Value) -> Self {
        Self::new(Arc::new(schema))
    }
}

impl Serialize for OutputSchema {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.replaced {
            None => self.shared.serialize(serializer),
            Some((path, subschema)) => Replaced {
                value: &self.shared,
                path,
                subschema,
            }
            .serialize(serializer),
        }
    }
}

/// `value` serialized with the subschema at `path` replaced.
struct Replaced<'a> {
    value: &'a Value,
    path: &'a [&'static str],
    subschema: &'a Value,
}

impl Serialize for Replaced<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some((key, rest)) = self.path.split_first() else {
            return self.subschema.serialize(serializer);
        };
        let Value::Object(map) = self.value else {
            return self.value.serialize(serializer);
        };
        let mut out = serializer.serialize_map(Some(map.len()))?;
        for (name, value) in map {
            if name == key {
                out.serialize_entry(
                    name,
                    &Replaced {
                        value,
                        path: rest,
                        subschema: self.subschema,
                    },
                )?;
            } else {
                out.serialize_entry(name, value)?;
            }
        }
        out.end()
    }
}

fn build() -> Value {
    let list = |description: &str| {
        json!({
            "type": "array",
            "description": description,
            "items": { "type": "string", "maxLength": ITEM_MAX_CHARS },
            "maxItems": LIST_MAX_ITEMS,
        })
    };
    let citable: Vec<&str> = Field::CITABLE.iter().map(|f| f.name()).collect();
    json!({
        "title": "enrichment.v1",
        "type": "object",
        "properties": {
            "summary_120w": {
                "type": "string",
                "description": "what the code does, at most 120 words",
                "minLength": 1,
                "maxLength": SUMMARY_MAX_CHARS,
            },
            "inputs": list("parameters, arguments and data the code reads"),
            "outputs": list("return values and data the code produces"),
            "side_effects": list("I/O, mutation of shared state, network, logging"),
            "pitfalls": list("edge cases, error conditions and misuse to watch for"),
            "usage_snippet": {
                "description": "a short example call, at most 12 lines, or null",
                "anyOf": [
                    { "type": "string", "maxLength": SNIPPET_MAX_CHARS },
                    { "type": "null" },
                ],
            },
            "evidence": {
                "type": "array",
                "description": "the source lines that support each field",
                "maxItems": EVIDENCE_MAX_ITEMS,
                "items": {
                    "type": "object",
                    "properties": {
                        "field": { "type": "string", "enum": citable },
                        "lines": {
                            "type": "array",
                            "items": { "type": "integer" },
                            "minItems": 2,
                            "maxItems": 2,
                        },
                    },
                    "required": ["field", "lines"],
                    "additionalProperties": false,
                },
            },
        },
        "required": [
            "summary_120w", "inputs", "outputs", "side_effects", "pitfalls", "usage_snippet",
            "evidence",
        ],
        "additionalProperties": false,
    })
}

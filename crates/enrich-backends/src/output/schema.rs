//! The enrichment.v1 JSON Schema sent to providers with structured output.

use std::sync::{Arc, OnceLock};

use enrich_types::SpanIdentity;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};

use super::raw::Field;

/// Characters allowed in `summary_120w` (120 words of about six characters, with slack).
const SUMMARY_MAX_CHARS: u64 = 900;
/// Characters allowed in one list item.
const ITEM_MAX_CHARS: u64 = 200;
/// Items allowed in each list field.
const LIST_MAX_ITEMS: u64 = 6;
/// Characters allowed in `usage_snippet` (12 lines of code).
const SNIPPET_MAX_CHARS: u64 = 800;
/// Entries allowed in `evidence`.
const EVIDENCE_MAX_ITEMS: u64 = 6;

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

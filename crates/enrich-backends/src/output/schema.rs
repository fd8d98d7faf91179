//! The enrichment.v1 JSON Schema sent to providers with structured output.

use std::sync::{Arc, OnceLock};

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

/// The enrichment.v1 schema for one span: as [`enrichment_v1_schema`], with every evidence line
/// bounded to `line_start..=line_end` (`minimum`/`maximum`).
///
/// Structured output then keeps a model from citing lines outside the span, which
/// [`parse_and_validate`](crate::parse_and_validate) would reject as `SchemaInvalid`. Ollama
/// (llama.cpp's schema-to-grammar converter) and OpenAI's structured outputs both honour integer
/// bounds; a provider that ignores them still gets a valid schema. Costs one clone of the shared
/// schema per span.
pub fn enrichment_v1_schema_for_lines(line_start: u32, line_end: u32) -> Arc<Value> {
    let (low, high) = (line_start.min(line_end), line_start.max(line_end));
    let mut schema = Value::clone(enrichment_v1_schema());
    if let Some(lines) = schema.pointer_mut("/properties/evidence/items/properties/lines/items") {
        *lines = json!({ "type": "integer", "minimum": low, "maximum": high });
    }
    Arc::new(schema)
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

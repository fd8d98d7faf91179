//! enrichment.v1: extraction, normalisation, validation and the schema.

use enrich_backends::{
    CHARS_PER_TOKEN, EVIDENCE_MAX_ITEMS, Enrichment, Evidence, FailureKind, ITEM_MAX_CHARS,
    LIST_MAX_ITEMS, SNIPPET_MAX_CHARS, SUMMARY_MAX_CHARS, SUMMARY_MAX_WORDS, SpanIdentity,
    USAGE_SNIPPET_MAX_LINES, ValidationContext, enrichment_v1_output_tokens, enrichment_v1_schema,
    enrichment_v1_schema_for_span, parse_and_validate, worst_case_output_tokens,
};
use enrich_config::QualityLevel;
use serde_json::{Value, json};

use crate::support::valid_reply;

/// Lines 10 to 20, no Latin-1 rule, the quality gate off (its checks are tested in
/// `quality.rs`; these tests give short summaries to show extraction and the schema's rules).
fn ctx() -> ValidationContext<'static> {
    ValidationContext::for_span(&SpanIdentity::new("sha256:10", "src/x.rs", 10, 20), false)
        .with_quality(QualityLevel::Off)
}

fn parse(text: &str) -> Result<Enrichment, (FailureKind, String)> {
    parse_and_validate(text, &ctx()).map_err(|e| (e.kind, e.message))
}

/// A complete object with `patch` merged over valid defaults.
fn reply_with(patch: Value) -> String {
    let mut object: Value = serde_json::from_str(&valid_reply()).unwrap();
    for (key, value) in patch.as_object().unwrap() {
        object[key] = value.clone();
    }
    object.to_string()
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn check_extracts(text: &str, summary: &str) {
    match parse(text) {
        Ok(enrichment) => assert_eq!(enrichment.summary, summary, "in {text:?}"),
        Err(err) => panic!("{text:?} was rejected: {err:?}"),
    }
}

#[track_caller]
fn check_rejects(text: &str, kind: FailureKind, message_part: &str) {
    match parse(text) {
        Ok(enrichment) => panic!("{text:?} was accepted as {enrichment:?}"),
        Err((got, message)) => {
            assert_eq!(got, kind, "{text:?}: {message}");
            assert!(
                message.contains(message_part),
                "{text:?}: {message:?} lacks {message_part:?}"
            );
        }
    }
}

#[test]
fn extraction_finds_the_object_in_chatty_replies() {
    let plain = r#"{"summary_120w": "Plain."}"#;
    check_extracts(plain, "Plain.");
    check_extracts(&format!("```json\n{plain}\n```"), "Plain.");
    check_extracts(
        &format!("Sure! Here is the JSON:\n{plain}\nHope this helps."),
        "Plain.",
    );
    check_extracts(
        r#"{"summary_120w": "Maps {a} to {b} }}"}"#,
        "Maps {a} to {b} }}",
    );
    check_extracts(r#"{"summary_120w": "Says \"hi\" {"}"#, "Says \"hi\" {");
    check_extracts(
        r#"{"summary_120w": "Ends in a backslash \\"}"#,
        "Ends in a backslash \\",
    );
    check_extracts(
        r#"{"summary_120w": "First."} and also {"summary_120w": "Second."}"#,
        "First.",
    );
    check_extracts(
        r#"I use {braces} in prose. {"summary_120w": "After chatter."}"#,
        "After chatter.",
    );
    check_extracts(
        r#"{"note": "not it"} {"summary_120w": "The real one."}"#,
        "The real one.",
    );
}

#[test]
fn extraction_failures_are_classified() {
    check_rejects(
        "I cannot help with that.",
        FailureKind::MalformedOutput,
        "no JSON object",
    );
    check_rejects("", FailureKind::MalformedOutput, "no JSON object");
    check_rejects(
        r#"{"summary_120w": "Cut off here, "inputs": ["#,
        FailureKind::MalformedOutput,
        "truncated",
    );
    check_rejects(
        r#"{"summary_120w": "x", "evidence": [{"field": "inputs", "lines": [10, 11]}, {"fi"#,
        FailureKind::MalformedOutput,
        "truncated",
    );
    check_rejects(
        r#"{"summary_120w": "x",}"#,
        FailureKind::MalformedOutput,
        "no valid JSON object",
    );
    check_rejects(
        r#"{"answer": 42}"#,
        FailureKind::SchemaInvalid,
        "none of the enrichment.v1 keys",
    );
}

// ---------------------------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------------------------

#[test]
fn normalisation_accepts_the_shapes_small_models_produce() {
    let text = json!({
        "summary_120w": "  Adds numbers.  ",
        "inputs": "a single input",
        "outputs": null,
        "side_effects": "",
        "pitfalls": ["  overflow ", "", "   ", null],
        "usage_snippet": "",
        "evidence": [
            {"field": "inputs", "lines": 12},
            {"field": "pitfalls", "lines": [13]},
            {"field": "summary_120w", "lines": "14-15", "note": "ignored"},
        ],
        "tags": ["extra keys are ignored"],
    })
    .to_string();
    let enrichment = parse(&text).unwrap();
    assert_eq!(enrichment.summary, "Adds numbers.");
    assert_eq!(enrichment.inputs, ["a single input"]);
    assert!(enrichment.outputs.is_empty());
    assert!(enrichment.side_effects.is_empty());
    assert_eq!(enrichment.pitfalls, ["overflow"]);
    assert_eq!(enrichment.usage_snippet, None);
    assert_eq!(
        enrichment.evidence,
        [
            Evidence {
                field: "inputs".into(),
                lines: [12, 12]
            },
            Evidence {
                field: "pitfalls".into(),
                lines: [13, 13]
            },
            Evidence {
                field: "summary_120w".into(),
                lines: [14, 15]
            },
        ]
    );
}

#[test]
fn missing_lists_are_empty_and_filled_fields_get_whole_span_evidence() {
    let enrichment = parse(
        r#"{"summary_120w": "Reads a file.", "side_effects": ["reads disk"],
            "usage_snippet": ["let s = read(p);", "    use(s);"]}"#,
    )
    .unwrap();
    assert!(enrichment.inputs.is_empty() && enrichment.outputs.is_empty());
    assert_eq!(
        enrichment.usage_snippet.as_deref(),
        Some("let s = read(p);\n    use(s);")
    );
    let fields: Vec<(&str, [u32; 2])> = enrichment
        .evidence
        .iter()
        .map(|e| (e.field.as_str(), e.lines))
        .collect();
    assert_eq!(
        fields,
        [
            ("summary_120w", [10, 20]),
            ("side_effects", [10, 20]),
            ("usage_snippet", [10, 20])
        ]
    );
}

#[test]
fn given_evidence_is_kept_and_only_missing_fields_are_added() {
    let enrichment = parse(&valid_reply()).unwrap();
    let fields: Vec<&str> = enrichment
        .evidence
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "inputs",
            "summary_120w",
            "outputs",
            "pitfalls",
            "usage_snippet"
        ]
    );
    assert_eq!(enrichment.evidence[0].lines, [10, 11]);
}

#[test]
fn snippets_keep_their_indentation() {
    let enrichment = parse(&reply_with(
        json!({"usage_snippet": "\n\n    let x = f();\n    g(x);\n\n"}),
    ))
    .unwrap();
    assert_eq!(
        enrichment.usage_snippet.as_deref(),
        Some("    let x = f();\n    g(x);")
    );
}

#[test]
fn an_enrichment_round_trips_through_serde_with_the_schema_keys() {
    let enrichment = parse(&valid_reply()).unwrap();
    let value = serde_json::to_value(&enrichment).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // The serde form is the stored one: `summary_120w` is the `enrichments.summary` column.
    let schema_keys: Vec<&str> = enrichment_v1_schema()["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(|key| {
            if key == "summary_120w" {
                "summary"
            } else {
                key
            }
        })
        .collect();
    assert_eq!(keys, schema_keys);
    assert_eq!(
        serde_json::from_value::<Enrichment>(value).unwrap(),
        enrichment
    );
}

// ---------------------------------------------------------------------------------------------
// Validation rules
// ---------------------------------------------------------------------------------------------

fn words(n: usize) -> String {
    vec!["word"; n].join(" ")
}

#[test]
fn each_validation_rule_names_the_field_and_the_limit() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"summary_120w": ""}),
            "`summary_120w` is missing or empty",
        ),
        (
            json!({"summary_120w": null}),
            "`summary_120w` is missing or empty",
        ),
        (
            json!({"usage_snippet": vec!["x();"; USAGE_SNIPPET_MAX_LINES + 1].join("\n")}),
            "`usage_snippet` has 13 lines; keep it to at most 12 lines",
        ),
        (
            json!({"evidence": [{"field": "tags", "lines": [12, 12]}]}),
            "evidence names field `tags`, which is not one of",
        ),
        (
            json!({"inputs": 5}),
            "expected a list of strings for `inputs`",
        ),
        (
            json!({"pitfalls": [{"a": 1}]}),
            "expected a string for each item of `pitfalls`",
        ),
        (
            json!({"summary_120w": ["a", "b"]}),
            "expected a string for `summary_120w`",
        ),
        (
            json!({"evidence": [{"field": "inputs", "lines": [-1, 2]}]}),
            "evidence `lines`",
        ),
        (
            json!({"evidence": [{"field": "inputs", "lines": [1, 2, 3]}]}),
            "evidence `lines`",
        ),
        (
            json!({"evidence": [{"lines": [11, 12]}]}),
            "an evidence entry has no `field`",
        ),
        (
            json!({"evidence": [{"field": "inputs"}]}),
            "the evidence entry for `inputs` has no `lines`",
        ),
    ];
    for (patch, message_part) in cases {
        check_rejects(&reply_with(patch), FailureKind::SchemaInvalid, message_part);
    }
}

#[test]
fn a_120_word_summary_is_accepted() {
    let enrichment = parse(&reply_with(
        json!({"summary_120w": words(SUMMARY_MAX_WORDS)}),
    ))
    .unwrap();
    assert_eq!(
        enrichment.summary.split_whitespace().count(),
        SUMMARY_MAX_WORDS
    );
}

#[test]
fn every_problem_is_reported_in_one_message() {
    let text = reply_with(json!({
        "summary_120w": "",
        "evidence": [{"field": "tags", "lines": [1, 2]}],
    }));
    let (_, message) = parse(&text).unwrap_err();
    assert!(message.contains("`summary_120w` is missing"), "{message}");
    assert!(message.contains("evidence names field `tags`"), "{message}");
}

#[test]
fn latin1_is_enforced_only_when_asked() {
    let strict = ValidationContext {
        enforce_latin1: true,
        ..ctx()
    };
    let check = |patch: Value, message_part: &str| {
        let text = reply_with(patch);
        assert!(
            parse_and_validate(&text, &ctx()).is_ok(),
            "lenient mode rejected {text}"
        );
        let err = parse_and_validate(&text, &strict).unwrap_err();
        assert_eq!(err.kind, FailureKind::SchemaInvalid);
        assert!(
            err.message.contains(message_part),
            "{:?} lacks {message_part:?}",
            err.message
        );
    };
    check(
        json!({"summary_120w": "Maps a → b."}),
        "`summary_120w` contains '→' (U+2192)",
    );
    check(
        json!({"pitfalls": ["fine", "emoji 🎉"]}),
        "`pitfalls` item 2 contains '🎉' (U+1F389)",
    );
    check(
        json!({"usage_snippet": "f(“x”)"}),
        "`usage_snippet` contains '“' (U+201C)",
    );

    let latin1 = reply_with(json!({"summary_120w": "Café, naïve, £5, ±1, ÿ."}));
    assert!(parse_and_validate(&latin1, &strict).is_ok());
}

// ---------------------------------------------------------------------------------------------
// The schema
// ---------------------------------------------------------------------------------------------

/// Every object requires all its properties and allows no others; every string has a
/// `maxLength` and every array a `maxItems`.
fn assert_bounded(schema: &Value, path: &str) {
    if let Some(alternatives) = schema.get("anyOf") {
        for (i, alt) in alternatives.as_array().unwrap().iter().enumerate() {
            assert_bounded(alt, &format!("{path}/anyOf/{i}"));
        }
        return;
    }
    match schema["type"]
        .as_str()
        .unwrap_or_else(|| panic!("{path} has no type"))
    {
        "object" => {
            let properties = schema["properties"].as_object().unwrap();
            let mut required: Vec<&str> = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
            required.sort_unstable();
            names.sort_unstable();
            assert_eq!(required, names, "{path}: required != properties");
            assert_eq!(schema["additionalProperties"], json!(false), "{path}");
            for (name, property) in properties {
                assert_bounded(property, &format!("{path}/{name}"));
            }
        }
        "array" => {
            assert!(
                schema["maxItems"].as_u64().is_some_and(|n| n > 0),
                "{path} is unbounded"
            );
            assert_bounded(&schema["items"], &format!("{path}/items"));
        }
        "string" if schema.get("enum").is_none() => {
            assert!(
                schema["maxLength"].as_u64().is_some_and(|n| n > 0),
                "{path} is unbounded"
            );
        }
        _ => {}
    }
}

#[test]
fn the_schema_is_bounded_and_requires_every_key() {
    let schema = enrichment_v1_schema();
    assert_bounded(schema, "#");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        [
            "summary_120w",
            "inputs",
            "outputs",
            "side_effects",
            "pitfalls",
            "usage_snippet",
            "evidence"
        ]
    );
    // Built once, shared.
    assert!(std::sync::Arc::ptr_eq(schema, enrichment_v1_schema()));
}

#[test]
fn the_schema_leaves_room_for_what_validation_accepts() {
    let schema = enrichment_v1_schema();
    let summary_max = schema["properties"]["summary_120w"]["maxLength"]
        .as_u64()
        .unwrap();
    // 120 words of six letters and a space.
    assert!(
        summary_max >= 7 * SUMMARY_MAX_WORDS as u64,
        "summary maxLength {summary_max}"
    );
    let evidence_fields = &schema["properties"]["evidence"]["items"]["properties"]["field"]["enum"];
    let citable: Vec<&str> = evidence_fields
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in &citable {
        let text = reply_with(json!({"evidence": [{"field": field, "lines": [12, 13]}]}));
        assert!(parse(&text).is_ok(), "evidence for {field} rejected");
    }
    assert!(!citable.contains(&"evidence"));
}

/// The longest answer enrichment.v1 allows, compact: every string at its bound, every list full,
/// evidence lines of the most digits.
fn longest_answer() -> String {
    let text = |chars: u64| "x".repeat(usize::try_from(chars).unwrap());
    let list = || vec![text(ITEM_MAX_CHARS); usize::try_from(LIST_MAX_ITEMS).unwrap()];
    let evidence = json!({"field": "usage_snippet", "lines": [u64::MAX, u64::MAX]});
    json!({
        "summary_120w": text(SUMMARY_MAX_CHARS),
        "inputs": list(),
        "outputs": list(),
        "side_effects": list(),
        "pitfalls": list(),
        "usage_snippet": text(SNIPPET_MAX_CHARS),
        "evidence": vec![evidence; usize::try_from(EVIDENCE_MAX_ITEMS).unwrap()],
    })
    .to_string()
}

#[test]
fn the_output_budget_fits_the_schemas_longest_answer() {
    let schema = enrichment_v1_schema();
    let properties = &schema["properties"];
    assert_eq!(properties["summary_120w"]["maxLength"], SUMMARY_MAX_CHARS);
    assert_eq!(
        properties["usage_snippet"]["anyOf"][0]["maxLength"],
        SNIPPET_MAX_CHARS
    );
    assert_eq!(properties["evidence"]["maxItems"], EVIDENCE_MAX_ITEMS);
    for list in ["inputs", "outputs", "side_effects", "pitfalls"] {
        assert_eq!(properties[list]["maxItems"], LIST_MAX_ITEMS, "{list}");
        assert_eq!(
            properties[list]["items"]["maxLength"], ITEM_MAX_CHARS,
            "{list}"
        );
    }
    // A 12-line snippet of 40-character lines fits.
    assert!(SNIPPET_MAX_CHARS >= 41 * USAGE_SNIPPET_MAX_LINES as u64);

    let budget = enrichment_v1_output_tokens();
    assert_eq!(worst_case_output_tokens(schema), Some(budget));
    let longest = longest_answer();
    let chars = u64::try_from(longest.len()).unwrap();
    assert!(
        chars.div_ceil(CHARS_PER_TOKEN) < u64::from(budget),
        "{chars} characters do not fit {budget} tokens"
    );
    // The budget is the longest answer's characters over CHARS_PER_TOKEN plus a token of
    // whitespace per value (the object, its 7 values, the lists' items, and each evidence
    // entry's object, field, lines array and 2 numbers); no more, so the bounds size it.
    let values = 1 + 7 + 4 * LIST_MAX_ITEMS + EVIDENCE_MAX_ITEMS * 5;
    assert_eq!(u64::from(budget), chars.div_ceil(CHARS_PER_TOKEN) + values);
    assert!(
        budget <= 1200,
        "a budget of {budget} tokens is more than a span is worth"
    );
}

#[test]
fn the_worst_case_is_none_for_an_unbounded_schema() {
    for unbounded in [
        json!({"type": "string"}),
        json!({"type": "array", "items": {"type": "null"}}),
        json!({"type": "object", "properties": {"a": {"type": "string"}}}),
        json!({"anyOf": [{"type": "null"}, {"type": "string"}]}),
        json!({"type": "number"}),
    ] {
        assert_eq!(worst_case_output_tokens(&unbounded), None, "{unbounded}");
    }
    // Integer bounds count their digits and sign; anyOf takes its longest branch.
    let bounded = json!({"type": "array", "maxItems": 3, "items": {"anyOf": [
        {"type": "integer", "minimum": -5, "maximum": 120},
        {"type": "null"},
    ]}});
    // [null,null,null]: 16 characters, 4 values.
    assert_eq!(
        worst_case_output_tokens(&bounded),
        Some(16_u32.div_ceil(3) + 4)
    );
}

#[test]
fn a_span_schema_bounds_evidence_lines_to_the_span_and_changes_nothing_else() {
    let schema = enrichment_v1_schema_for_span(&SpanIdentity::new("sha256:a", "a.rs", 15, 29));
    // What an adapter sends: the schema serialized.
    let sent = serde_json::to_value(&schema).expect("serializes");
    assert_eq!(sent, schema.to_value(), "serialized as written out in full");
    let lines = &sent["properties"]["evidence"]["items"]["properties"]["lines"];
    assert_eq!(
        lines["items"],
        json!({"type": "integer", "minimum": 15, "maximum": 29})
    );
    assert_eq!(lines["minItems"], 2);
    assert_eq!(lines["maxItems"], 2);
    let mut general = Value::clone(enrich_backends::enrichment_v1_schema());
    general["properties"]["evidence"]["items"]["properties"]["lines"]["items"] =
        lines["items"].clone();
    assert_eq!(
        sent, general,
        "only the line bounds differ from the shared schema"
    );
    let reversed = enrichment_v1_schema_for_span(&SpanIdentity::new("sha256:a", "a.rs", 29, 15));
    assert_eq!(reversed, schema, "bounds are ordered");
}

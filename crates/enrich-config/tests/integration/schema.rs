//! The JSON Schema of `enrich.toml` against the configurations enrich ships (the built-in
//! defaults, also with every commented-out example taken in; the examples of the docs) and against
//! files loading refuses: the schema accepts what loading accepts and refuses a value of the
//! wrong type, a misspelt key or an unknown value.
//!
//! The schema is checked by [`violations`], a validator of the JSON Schema keywords the schema
//! uses, which fails on any other keyword so none is skipped unnoticed (the `jsonschema` crate
//! would add some thirty crates to every test build for these few keywords).

use std::path::Path;

use enrich_config::{DEFAULT_CONFIG_TOML, config_file_schema};
use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::Value;

use crate::support::{jail, load_error, load_repo, write};

/// Where `value` breaks `schema`, one line per problem, each with the path of the value.
fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check(schema, value, "", &mut found);
    found
}

fn check(schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    let schema = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return found.push(format!("{at}: nothing is allowed here")),
        Value::Object(schema) => schema,
        other => panic!("{at}: {other} is not a schema"),
    };
    for (keyword, rule) in schema {
        match keyword.as_str() {
            "$schema" | "title" | "description" | "format" => {}
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(one) => vec![one],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    other => panic!("{at}: type {other}"),
                };
                if !types.iter().any(|t| is_type(value, t)) {
                    found.push(format!("{at}: {value} is not of type {types:?}"));
                }
            }
            "enum" => {
                let values = rule.as_array().expect("enum lists values");
                if !values.iter().any(|v| same_value(v, value)) {
                    found.push(format!("{at}: {value} is not one of {rule}"));
                }
            }
            "pattern" => {
                if let Value::String(text) = value {
                    let pattern = regex::Regex::new(rule.as_str().expect("a pattern"))
                        .unwrap_or_else(|err| panic!("{at}: bad pattern {rule}: {err}"));
                    if !pattern.is_match(text) {
                        found.push(format!("{at}: {text:?} does not match {rule}"));
                    }
                }
            }
            "minimum" | "maximum" => {
                if let (Some(n), Some(bound)) = (value.as_f64(), rule.as_f64()) {
                    let ok = if keyword == "minimum" {
                        n >= bound
                    } else {
                        n <= bound
                    };
                    if !ok {
                        found.push(format!("{at}: {n} is beyond the {keyword} {bound}"));
                    }
                }
            }
            "anyOf" => {
                let alternatives = rule.as_array().expect("anyOf lists schemas");
                if !alternatives.iter().any(|s| violations(s, value).is_empty()) {
                    found.push(format!("{at}: {value} matches no alternative"));
                }
            }
            "items" => {
                if let Value::Array(items) = value {
                    for (i, item) in items.iter().enumerate() {
                        check(rule, item, &format!("{at}[{i}]"), found);
                    }
                }
            }
            "required" => {
                if let Value::Object(object) = value {
                    for key in rule.as_array().expect("required lists keys") {
                        let key = key.as_str().expect("a key");
                        if !object.contains_key(key) {
                            found.push(format!("{at}: {key} is required"));
                        }
                    }
                }
            }
            "properties" | "additionalProperties" => {
                let Value::Object(object) = value else {
                    continue;
                };
                let properties = schema.get("properties").and_then(Value::as_object);
                for (key, item) in object {
                    let path = format!("{at}.{key}");
                    match properties.and_then(|p| p.get(key)) {
                        Some(sub) if keyword == "properties" => check(sub, item, &path, found),
                        None if keyword == "additionalProperties" => {
                            check(rule, item, &path, found);
                        }
                        _ => {}
                    }
                }
            }
            other => panic!("{at}: the test's validator does not know the keyword {other}"),
        }
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// JSON Schema's equality: numbers by value (1 and 1.0 are the same).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// A TOML document as the JSON value the schema describes.
fn toml_to_json(toml: &str) -> Value {
    Figment::from(Toml::string(toml))
        .extract()
        .unwrap_or_else(|err| panic!("not TOML: {err}\n{toml}"))
}

/// The built-in defaults with every commented-out example key (`# max_tier = "14b"`) taken in.
fn defaults_with_every_example() -> String {
    DEFAULT_CONFIG_TOML
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(key, _)| {
                    key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                }) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ```toml blocks of the docs, each with where it is.
fn doc_examples() -> Vec<(String, String)> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut examples = Vec::new();
    for entry in std::fs::read_dir(&docs).expect("the docs directory") {
        let path = entry.expect("a docs entry").path();
        if path.extension().is_none_or(|ext| ext != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a docs page");
        for (i, block) in text.split("```toml\n").skip(1).enumerate() {
            let block = block.split("```").next().expect("a closed block");
            let name = path.file_name().expect("a file name").to_string_lossy();
            examples.push((format!("{name}, toml block {}", i + 1), block.to_owned()));
        }
    }
    examples
}

#[test]
fn the_shipped_configs_follow_the_schema() {
    let schema = config_file_schema();
    // The built-in defaults, as they are and with every example: they load, too.
    for toml in [
        DEFAULT_CONFIG_TOML.to_owned(),
        defaults_with_every_example(),
    ] {
        let problems = violations(&schema, &toml_to_json(&toml));
        assert!(
            problems.is_empty(),
            "breaks the schema: {problems:#?}\n{toml}"
        );
        jail(|jail| {
            write(jail, "enrich.toml", &toml)?;
            load_repo(jail).map(drop)
        });
    }
    // The examples really were taken in: every key of a backend entry is set.
    let every = toml_to_json(&defaults_with_every_example());
    let entry = &every["enrichment"]["chain"][0];
    for key in [
        "url",
        "urls",
        "routing_tier",
        "api_key_env",
        "options",
        "enabled",
    ] {
        assert!(entry.get(key).is_some(), "{key} not uncommented: {entry}");
    }
    // The docs' examples (some are parts of a file, continuing an example before them).
    let docs = doc_examples();
    assert!(
        docs.len() >= 5,
        "the docs' examples were not found: {docs:?}"
    );
    for (name, toml) in docs {
        let problems = violations(&schema, &toml_to_json(&toml));
        assert!(
            problems.is_empty(),
            "{name} breaks the schema: {problems:#?}\n{toml}"
        );
    }
}

#[test]
fn a_file_loading_refuses_breaks_the_schema_where_it_is_wrong() {
    let schema = config_file_schema();
    let cases = [
        (
            "[enrichment]\nbatch_size = true\n",
            ".enrichment.batch_size",
        ),
        ("[enrichment]\nbatch_size = -3\n", ".enrichment.batch_size"),
        (
            "[enrichment]\nconcurrency = \"four\"\n",
            ".enrichment.concurrency",
        ),
        (
            "[enrichment]\nenable_routing = \"maybe\"\n",
            ".enrichment.enable_routing",
        ),
        (
            "[enrichment]\nschedule = \"sometimes\"\n",
            ".enrichment.schedule",
        ),
        (
            "[enrichment]\non_failure = \"ignore\"\n",
            ".enrichment.on_failure",
        ),
        ("[enrichment]\nconcurency = 4\n", ".enrichment.concurency"),
        ("[enrichmnet]\nconcurrency = 4\n", ".enrichmnet"),
        (
            "[enrichment.budget]\nmax_cost_per_run = \"lots\"\n",
            ".enrichment.budget.max_cost_per_run",
        ),
        (
            "[enrichment.secrets]\naction = \"shred\"\n",
            ".enrichment.secrets.action",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\nmodel = [\"x\"]\n",
            ".enrichment.chain",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\nmodle = \"x\"\n",
            ".enrichment.chain",
        ),
        ("[[enrichment.chain]]\nmodel = \"x\"\n", ".enrichment.chain"),
        (
            "[enrichment.index]\nexclude = [1, [2]]\n",
            ".enrichment.index.exclude",
        ),
    ];
    for (toml, at) in cases {
        let problems = violations(&schema, &toml_to_json(toml));
        assert!(
            problems.iter().any(|p| p.starts_with(at)),
            "{toml:?} should break the schema at {at}: {problems:?}"
        );
        jail(|jail| {
            write(jail, "enrich.toml", toml)?;
            load_error(jail).map(drop)
        });
    }
    // LLMC's spellings, which loading takes, pass.
    let lenient = "[enrichment]\nbatch_size = \"50\"\nenable_routing = \"Yes\"\nenabled = true\n\
                   [enrichment.budget]\nmax_wall_seconds = \"90.5\"\n\
                   [enrichment.chain]\nname = \"one\"\nmodel = 7\nurls = \"http://a:1\"\nmax_retries = 2\n";
    assert_eq!(
        violations(&schema, &toml_to_json(lenient)),
        Vec::<String>::new()
    );
    jail(|jail| {
        write(jail, "enrich.toml", lenient)?;
        load_repo(jail).map(drop)
    });
}

//! The environment layer: LLMC's variables, `ENRICH_CHAIN_JSON`, `OLLAMA_HOST`,
//! `LLMC_ENRICH_DISABLE_ROUTING`.

use enrich_config::{DEFAULT_OLLAMA_URL, EnrichmentConfig};
use figment::Jail;

use crate::support::{entries, jail, load_error, load_repo, pairs, same, write};

/// A file that sets every overridable key to something no env value below uses.
const FILE: &str = r#"
[enrichment]
batch_size = 9
concurrency = 9
cooldown_seconds = 9
max_retries_per_span = 9
outage_grace_seconds = 9
enforce_latin1_enrichment = false
enable_routing = true

[[enrichment.chain]]
name = "file-default"

[[enrichment.chain]]
name = "file-other"
chain = "other"
"#;

fn with_env(vars: &[(&str, &str)], check: impl FnOnce(&mut Jail) -> Result<(), String>) {
    jail(|jail| {
        write(jail, "llmc.toml", FILE)?;
        for (var, value) in vars {
            jail.set_env(var, value);
        }
        check(jail)
    });
}

#[test]
fn each_scalar_variable_overrides_the_file() {
    type Read = fn(&EnrichmentConfig) -> u64;
    let cases: [(&str, &str, Read, u64); 6] = [
        ("ENRICH_BATCH_SIZE", "3", |c| c.batch_size as u64, 3),
        ("ENRICH_CONCURRENCY", " 4 ", |c| c.concurrency as u64, 4),
        (
            "ENRICH_COOLDOWN_SECONDS",
            "600",
            |c| c.cooldown_seconds,
            600,
        ),
        (
            "ENRICH_MAX_RETRIES_PER_SPAN",
            "2",
            |c| u64::from(c.max_retries_per_span),
            2,
        ),
        (
            "ENRICH_OUTAGE_GRACE_SECONDS",
            "0",
            |c| c.outage_grace_seconds,
            0,
        ),
        (
            "ENRICH_ENFORCE_LATIN1",
            "yes",
            |c| u64::from(c.enforce_latin1_enrichment),
            1,
        ),
    ];
    for (var, value, read, want) in cases {
        with_env(&[(var, value)], |jail| {
            let config = load_repo(jail)?.config;
            same(var, read(&config), want)
        });
    }
}

#[test]
fn enforce_latin1_accepts_every_llmc_spelling() {
    for (value, want) in [
        ("1", true),
        ("true", true),
        ("YES", true),
        ("on", true),
        ("0", false),
        ("false", false),
        ("no", false),
        ("Off", false),
    ] {
        jail(|jail| {
            write(
                jail,
                "llmc.toml",
                "[enrichment]\nenforce_latin1_enrichment = true\n",
            )?;
            jail.set_env("ENRICH_ENFORCE_LATIN1", value);
            let config = load_repo(jail)?.config;
            same(value, config.enforce_latin1_enrichment, want)
        });
    }
}

#[test]
fn bad_variable_values_name_the_variable_and_the_key() {
    let cases = [
        (
            "ENRICH_BATCH_SIZE",
            "ten",
            "invalid value for enrichment.batch_size in env ENRICH_BATCH_SIZE: \"ten\" (expected a whole number)",
        ),
        (
            "ENRICH_CONCURRENCY",
            "0",
            "invalid value for enrichment.concurrency in env ENRICH_CONCURRENCY: 0 (expected at least 1)",
        ),
        (
            "ENRICH_COOLDOWN_SECONDS",
            "-5",
            "invalid value for enrichment.cooldown_seconds in env ENRICH_COOLDOWN_SECONDS: \"-5\" (expected a whole number)",
        ),
        (
            "ENRICH_ENFORCE_LATIN1",
            "maybe",
            "invalid value for enrichment.enforce_latin1_enrichment in env ENRICH_ENFORCE_LATIN1: \"maybe\" (expected true/false, 1/0, yes/no or on/off)",
        ),
        (
            "LLMC_ENRICH_DISABLE_ROUTING",
            "sometimes",
            "invalid value for enrichment.enable_routing in env LLMC_ENRICH_DISABLE_ROUTING: \"sometimes\" (expected 1, true, yes or on to turn routing off; 0, false, no or off to leave it)",
        ),
    ];
    for (var, value, want) in cases {
        with_env(&[(var, value)], |jail| {
            same(var, load_error(jail)?.as_str(), want)
        });
    }
}

#[test]
fn blank_variables_count_as_unset() {
    with_env(
        &[("ENRICH_BATCH_SIZE", ""), ("OLLAMA_HOST", "  ")],
        |jail| {
            let config = load_repo(jail)?.config;
            same("batch_size", config.batch_size, 9)?;
            same(
                "url",
                config.backends[0].url.as_deref(),
                Some(DEFAULT_OLLAMA_URL),
            )
        },
    );
}

#[test]
fn other_enrich_variables_do_not_break_loading() {
    let vars = [
        ("ENRICH_DB", "/tmp/index.db"),
        ("ENRICH_MODEL", "{not json"),
        ("ENRICH_CHAIN", "nonsense"),
        ("ENRICH_PROMPT__TEMPLATE", "x"),
        ("ENRICH_ENRICHMENT__BATCH_SIZE", "oops"),
        ("ENRICH_MAX_FAILURES_PER_SPAN", "not a number"),
    ];
    with_env(&vars, |jail| {
        let config = load_repo(jail)?.config;
        same("batch_size", config.batch_size, 9)?;
        same("max_failures", config.max_failures_per_span, 3)
    });
}

#[test]
fn disable_routing_values() {
    // The file enables routing; the switch turns it off, or leaves it. This is the one place the
    // variable is read: the router takes `enable_routing` as loaded.
    for (value, want) in [
        ("1", false),
        ("true", false),
        ("TRUE", false),
        ("YES", false),
        ("Yes", false),
        ("on", false),
        (" on\n", false),
        ("0", true),
        ("false", true),
        ("no", true),
        ("off", true),
        ("", true),
    ] {
        with_env(&[("LLMC_ENRICH_DISABLE_ROUTING", value)], |jail| {
            same(value, load_repo(jail)?.config.enable_routing, want)
        });
    }
    // Any other value is refused rather than read as either.
    for value in ["2", "enabled"] {
        with_env(&[("LLMC_ENRICH_DISABLE_ROUTING", value)], |jail| {
            let want = format!(
                "invalid value for enrichment.enable_routing in env LLMC_ENRICH_DISABLE_ROUTING: \
                 {value:?} (expected 1, true, yes or on to turn routing off; 0, false, no or off \
                 to leave it)"
            );
            same(value, load_error(jail)?, want)
        });
    }
}

#[test]
fn chain_json_list_replaces_the_default_chain_only() {
    let json = r#"[
        {"name": "json-1", "model": "llama3:8b", "max_retries": 2},
        {"name": "json-2", "provider": "openai", "model": 123, "api_key_env": "OPENAI_API_KEY"},
        {"name": "json-new", "chain": "extra", "timeout_seconds": "45"}
    ]"#;
    with_env(&[("ENRICH_CHAIN_JSON", json)], |jail| {
        let loaded = load_repo(jail)?;
        same(
            "entries",
            entries(&loaded),
            pairs(&[
                ("default", "json-1"),
                ("default", "json-2"),
                ("other", "file-other"),
                ("extra", "json-new"),
            ]),
        )?;
        let backends = &loaded.config.backends;
        same("numeric model", backends[1].model.as_str(), "123")?;
        same("provider", backends[1].provider.as_str(), "openai")?;
        same("no url for openai", backends[1].url.as_deref(), None)?;
        same("timeout", backends[3].timeout_seconds, Some(45.0))?;
        // `max_retries` is a key of LLMC's entries: not enrich's, and not a mistake either.
        same("ignored", loaded.ignored_keys().to_vec(), vec![])
    });
}

#[test]
fn chain_json_object_replaces_only_the_named_chains() {
    let json = r#"{"chains": {
        "other": [{"name": "o1"}, {"name": "o2", "enabled": false}],
        "brand-new": [{"name": "n1", "chain": "brand-new"}]
    }}"#;
    with_env(&[("ENRICH_CHAIN_JSON", json)], |jail| {
        let loaded = load_repo(jail)?;
        same(
            "entries",
            entries(&loaded),
            pairs(&[
                ("default", "file-default"),
                ("other", "o1"),
                ("other", "o2"),
                ("brand-new", "n1"),
            ]),
        )
    });
}

#[test]
fn chain_json_without_a_file_keeps_the_builtin_default_chain() {
    jail(|jail| {
        jail.set_env(
            "ENRICH_CHAIN_JSON",
            r#"{"chains": {"code": [{"name": "coder"}]}}"#,
        );
        let loaded = load_repo(jail)?;
        same(
            "entries",
            entries(&loaded),
            pairs(&[("default", "ollama"), ("code", "coder")]),
        )
    });
}

#[test]
fn chain_json_errors() {
    let cases = [
        (
            "[{\"name\": \"a\",}]",
            "ENRICH_CHAIN_JSON is not valid JSON: trailing comma at line 1 column 15 (expected a list of backend entries or {\"chains\": {...}})",
        ),
        (
            "42",
            "ENRICH_CHAIN_JSON has the wrong shape: found the number 42 (expected a list of backend entries or {\"chains\": {\"<chain>\": [entries]}})",
        ),
        (
            "{\"default\": []}",
            "ENRICH_CHAIN_JSON has the wrong shape: found an object without \"chains\" (expected a list of backend entries or {\"chains\": {\"<chain>\": [entries]}})",
        ),
        (
            "{\"chains\": {\"fast\": {\"name\": \"a\"}}}",
            "ENRICH_CHAIN_JSON has the wrong shape: found chains.fast: an object (expected a list of backend entries or {\"chains\": {\"<chain>\": [entries]}})",
        ),
        (
            "[{\"name\": \"a\"}, {\"model\": \"m\"}]",
            "entry 2 in env ENRICH_CHAIN_JSON has no name: add \"name\": \"...\"",
        ),
        (
            "{\"chains\": {\"fast\": [{\"name\": \"a\", \"chain\": \"slow\"}]}}",
            "invalid value for chain of chains.fast entry 1 in env ENRICH_CHAIN_JSON: \"slow\" (expected \"fast\", the chain it is listed under, or no chain)",
        ),
        (
            "[{\"name\": \"a\", \"options\": 3}]",
            "invalid value for options of entry 1 in env ENRICH_CHAIN_JSON: unsigned int `3` (expected a map)",
        ),
        (
            "[\"just-a-name\"]",
            "invalid value for entry 1 in env ENRICH_CHAIN_JSON: string \"just-a-name\" (expected a backend entry (a table with at least a name))",
        ),
        (
            "[{\"name\": \"a\"}, {\"name\": \"a\"}]",
            "chain \"default\" in env ENRICH_CHAIN_JSON has more than one entry named \"a\": give each entry of a chain its own name",
        ),
        (
            "{\"chains\": {\"default\": []}}",
            "default chain \"default\" has no backend in env ENRICH_CHAIN_JSON: add a [[enrichment.chain]] entry with chain = \"default\", or set enrichment.default_chain to one of: other",
        ),
    ];
    for (json, want) in cases {
        with_env(&[("ENRICH_CHAIN_JSON", json)], |jail| {
            let path = jail.directory().join("llmc.toml");
            let want = want.replace("PATH", &path.display().to_string());
            same(json, load_error(jail)?, want)
        });
    }
}

#[test]
fn ollama_host_fills_ollama_entries_without_url() {
    let file = r#"
[[enrichment.chain]]
name = "no-url"

[[enrichment.chain]]
name = "own-url"
url = "http://gpu-box:11434"

[[enrichment.chain]]
name = "not-ollama"
provider = "openai"
"#;
    jail(|jail| {
        write(jail, "enrich.toml", file)?;
        jail.set_env("OLLAMA_HOST", "0.0.0.0:4242");
        jail.set_env(
            "ENRICH_CHAIN_JSON",
            r#"{"chains": {"json": [{"name": "j"}]}}"#,
        );
        let config = load_repo(jail)?.config;
        let urls: Vec<Option<&str>> = config.backends.iter().map(|b| b.url.as_deref()).collect();
        same(
            "urls",
            urls,
            vec![
                Some("http://127.0.0.1:4242"),
                Some("http://gpu-box:11434"),
                None,
                Some("http://127.0.0.1:4242"),
            ],
        )
    });
}

#[test]
fn ollama_host_forms_reach_the_builtin_backend() {
    for (value, want) in [
        ("localhost", "http://localhost:11434"),
        ("gpu-box:8080", "http://gpu-box:8080"),
        (":9999", "http://127.0.0.1:9999"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        (
            "https://ollama.example.com:8443/",
            "https://ollama.example.com:8443",
        ),
    ] {
        jail(|jail| {
            jail.set_env("OLLAMA_HOST", value);
            let config = load_repo(jail)?.config;
            same(value, config.backends[0].url.as_deref(), Some(want))
        });
    }
}

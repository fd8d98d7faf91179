//! Chains: entry defaults, grouping and order, and `select_chain`.

use enrich_config::{
    BackendSpec, DEFAULT_MODEL, DEFAULT_OLLAMA_URL, EnrichmentConfig, select_chain,
};

use crate::support::{entries, jail, load_error, load_repo, message, pairs, same, write};

const GROUPED: &str = r#"
[enrichment]
default_chain = "fast"

[[enrichment.chain]]
name = "a"
chain = "fast"

[[enrichment.chain]]
name = "b"
chain = "slow"
provider = "openai"
model = "gpt-4o-mini"
url = "https://api.example.com/v1"
api_key_env = "EXAMPLE_API_KEY"
routing_tier = "14b"
timeout_seconds = 30.5

[[enrichment.chain]]
name = "c"

[[enrichment.chain]]
name = "d"
chain = "fast"
enabled = false

[[enrichment.chain]]
name = "e"
chain = "fast"
"#;

#[test]
fn entries_are_grouped_by_chain_in_file_order() {
    jail(|jail| {
        write(jail, "enrich.toml", GROUPED)?;
        let loaded = load_repo(jail)?;
        // "c" names no chain, so it joins default_chain ("fast").
        same(
            "entries",
            entries(&loaded),
            pairs(&[
                ("fast", "a"),
                ("fast", "c"),
                ("fast", "d"),
                ("fast", "e"),
                ("slow", "b"),
            ]),
        )?;
        same("chains", loaded.config.chain_names(), vec!["fast", "slow"])
    });
}

#[test]
fn entries_get_llmc_defaults_and_keep_what_they_set() {
    jail(|jail| {
        write(jail, "enrich.toml", GROUPED)?;
        let config = load_repo(jail)?.config;
        let by_name = |name: &str| config.backends.iter().find(|b| b.name == name).cloned();
        let mut a = BackendSpec::new("a", "fast", "ollama", DEFAULT_MODEL);
        a.url = Some(DEFAULT_OLLAMA_URL.to_owned());
        same("a", by_name("a"), Some(a))?;
        let mut b = BackendSpec::new("b", "slow", "openai", "gpt-4o-mini");
        b.url = Some("https://api.example.com/v1".to_owned());
        b.api_key_env = Some("EXAMPLE_API_KEY".to_owned());
        b.routing_tier = Some("14b".to_owned());
        b.timeout_seconds = Some(30.5);
        same("b", by_name("b"), Some(b))
    });
}

#[test]
fn the_in_flight_limit_adapts_unless_an_entry_says_adaptive_false() {
    jail(|jail| {
        write(
            jail,
            "enrich.toml",
            "[[enrichment.chain]]\nname = \"gpu\"\n\
             [[enrichment.chain]]\nname = \"fixed\"\nadaptive = false\n\
             [[enrichment.chain]]\nname = \"lenient\"\nadaptive = \"no\"\n",
        )?;
        let config = load_repo(jail)?.config;
        let adaptive = |name: &str| {
            config
                .backends
                .iter()
                .find(|b| b.name == name)
                .map(|b| b.adaptive)
        };
        same("gpu", adaptive("gpu"), Some(true))?;
        same("fixed", adaptive("fixed"), Some(false))?;
        same("lenient", adaptive("lenient"), Some(false))?;

        write(
            jail,
            "enrich.toml",
            "[[enrichment.chain]]\nname = \"gpu\"\nadaptive = \"sometimes\"\n",
        )?;
        let err = load_error(jail)?;
        if !err.contains("adaptive") {
            return Err(format!("the error does not name the key: {err}"));
        }
        Ok(())
    });
}

#[test]
fn max_in_flight_in_the_options_becomes_the_specs_own_field() {
    jail(|jail| {
        write(
            jail,
            "enrich.toml",
            "[[enrichment.chain]]\nname = \"gpu\"\noptions = { max_in_flight = 2, num_ctx = 8192 }\n\
             [[enrichment.chain]]\nname = \"cpu\"\nchain = \"other\"\noptions = { parallel = \"3\" }\n",
        )?;
        let config = load_repo(jail)?.config;
        let by_name = |name: &str| config.backends.iter().find(|b| b.name == name).unwrap();
        let gpu = by_name("gpu");
        same("gpu", gpu.max_in_flight(), 2)?;
        same(
            "gpu options",
            serde_json::Value::Object(gpu.options.clone()),
            serde_json::json!({"num_ctx": 8192}),
        )?;
        same("cpu", by_name("cpu").max_in_flight(), 3)?;
        same("cpu options", by_name("cpu").options.is_empty(), true)?;

        jail.set_env(
            "ENRICH_CHAIN_JSON",
            r#"[{"name": "json", "options": {"max_in_flight": 4}}]"#,
        );
        let config = load_repo(jail)?.config;
        let json = config.backends.iter().find(|b| b.name == "json").unwrap();
        same("json", json.max_in_flight(), 4)?;
        same("json options", json.options.is_empty(), true)?;
        jail.clear_env();

        write(
            jail,
            "enrich.toml",
            "[[enrichment.chain]]\nname = \"gpu\"\noptions = { max_in_flight = 0 }\n",
        )?;
        let err = load_error(jail)?;
        for needle in [
            "invalid value for options.max_in_flight of enrichment.chain entry 1 (\"gpu\")",
            "0 (expected a positive integer",
            "fix it in the backend's `options`",
        ] {
            if !err.contains(needle) {
                return Err(format!("{needle:?} not in {err}"));
            }
        }
        Ok(())
    });
}

#[test]
fn disabled_entries_are_kept_but_never_selected() {
    jail(|jail| {
        write(jail, "enrich.toml", GROUPED)?;
        let config = load_repo(jail)?.config;
        same(
            "d kept",
            config.backends.iter().any(|b| b.name == "d" && !b.enabled),
            true,
        )?;
        let selected = select_chain(&config, "fast").map_err(|e| e.to_string())?;
        let names: Vec<&str> = selected.iter().map(|b| b.name.as_str()).collect();
        same("selected", names, vec!["a", "c", "e"])
    });
}

fn config_with(entries: &[(&str, &str, bool)]) -> EnrichmentConfig {
    EnrichmentConfig {
        backends: entries
            .iter()
            .map(|(chain, name, enabled)| {
                let mut spec = BackendSpec::new(*name, *chain, "ollama", "m");
                spec.enabled = *enabled;
                spec
            })
            .collect(),
        ..EnrichmentConfig::default()
    }
}

#[test]
fn select_chain_errors_name_the_chain_and_the_usable_ones() {
    let config = config_with(&[
        ("default", "a", true),
        ("off", "x", false),
        ("off", "y", false),
        ("fast", "f", true),
    ]);
    let cases = [
        (
            "missing",
            "chain \"missing\" does not exist: use one of: default, fast",
        ),
        (
            "off",
            "chain \"off\" has no enabled backend: set enabled = true on one of its entries (x, y), or use one of: default, fast",
        ),
    ];
    for (name, want) in cases {
        match select_chain(&config, name) {
            Ok(selected) => panic!("{name}: selected {selected:?}"),
            Err(e) => assert_eq!(message(&e), want),
        }
    }
}

#[test]
fn select_chain_when_nothing_is_usable_says_so() {
    let config = config_with(&[("off", "x", false)]);
    let error = select_chain(&config, "default")
        .map(|_| ())
        .map_err(|e| message(&e));
    assert_eq!(
        error,
        Err(
            "chain \"default\" does not exist: use one of: (no chain has an enabled backend)"
                .to_owned()
        )
    );
}

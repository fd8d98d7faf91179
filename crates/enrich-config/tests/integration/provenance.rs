//! `LoadedConfig::provenance` and secrets.

use enrich_config::{LoadedConfig, Setting, Source};
use serde_json::json;

use crate::support::{jail, load_repo, same, write};

fn setting<'a>(loaded: &'a LoadedConfig, key: &str) -> Result<&'a Setting, String> {
    loaded
        .provenance()
        .iter()
        .find(|s| s.key == key)
        .ok_or_else(|| format!("no setting {key}"))
}

const FILE: &str = r#"
[enrichment]
default_chain = "main"
concurrency = 2

[enrichment.routes]
code = "coder"

[[enrichment.chain]]
name = "local"
chain = "main"

[[enrichment.chain]]
name = "hosted"
chain = "main"
provider = "openai"
model = "gpt-4o-mini"
url = "https://me:sk-planted-in-file@api.example/v1?api_key=sk-planted-in-query"
api_key_env = "HOSTED_API_KEY"
max_response_bytes = 65536
options = { temperature = 0.1, secret_sauce = "sk-planted-in-options" }

[[enrichment.chain]]
name = "coder"
chain = "coder"
url = "http://gpu-box:11434"
"#;

#[test]
fn provenance_names_default_file_and_env() {
    jail(|jail| {
        write(jail, "enrich.toml", FILE)?;
        jail.set_env("ENRICH_BATCH_SIZE", "8");
        jail.set_env("LLMC_ENRICH_DISABLE_ROUTING", "1");
        jail.set_env("OLLAMA_HOST", "gpu-box");
        jail.set_env(
            "ENRICH_CHAIN_JSON",
            r#"{"chains": {"extra": [{"name": "x"}]}}"#,
        );
        let loaded = load_repo(jail)?;
        let file = Source::File(jail.directory().join("enrich.toml"));
        let env = |var: &str| Source::Env(var.to_owned());
        let cases = [
            ("enrichment.default_chain", json!("main"), file.clone()),
            ("enrichment.concurrency", json!(2), file.clone()),
            ("enrichment.batch_size", json!(8), env("ENRICH_BATCH_SIZE")),
            ("enrichment.cooldown_seconds", json!(0), Source::Default),
            (
                "enrichment.enable_routing",
                json!(false),
                env("LLMC_ENRICH_DISABLE_ROUTING"),
            ),
            ("enrichment.on_failure", json!("error"), Source::Default),
            ("enrichment.max_tier", json!(null), Source::Default),
            ("enrichment.routes.code", json!("coder"), file.clone()),
            (
                "enrichment.prompt.max_snippet_bytes",
                json!(24576),
                Source::Default,
            ),
            (
                "enrichment.chain.main.local.url",
                json!("http://gpu-box:11434"),
                env("OLLAMA_HOST"),
            ),
            (
                "enrichment.chain.extra.x.url",
                json!("http://gpu-box:11434"),
                env("OLLAMA_HOST"),
            ),
        ];
        for (key, value, source) in cases {
            let got = setting(&loaded, key)?;
            same(key, (&got.value, &got.source), (&value, &source))?;
        }
        same(
            "hosted",
            setting(&loaded, "enrichment.chain.main.hosted")?.clone(),
            Setting {
                key: "enrichment.chain.main.hosted".to_owned(),
                value: json!({
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "url": "https://[redacted]@api.example/v1?api_key=[redacted]",
                    "routing_tier": null,
                    "timeout_seconds": null,
                    "api_key_env": "HOSTED_API_KEY",
                    "max_response_bytes": 65536,
                    "options": {"secret_sauce": "[redacted]", "temperature": 0.1},
                    "enabled": true,
                }),
                source: file.clone(),
            },
        )?;
        same(
            "json entry source",
            &setting(&loaded, "enrichment.chain.extra.x")?.source,
            &env("ENRICH_CHAIN_JSON"),
        )?;
        // An entry's own URL has no separate line.
        same(
            "own url",
            setting(&loaded, "enrichment.chain.coder.coder.url").is_err(),
            true,
        )?;
        same(
            "file entry's default url",
            setting(&loaded, "enrichment.chain.main.local.url")?
                .source
                .clone(),
            env("OLLAMA_HOST"),
        )
    });
}

#[test]
fn provenance_without_file_or_env_is_all_default() {
    jail(|jail| {
        let loaded = load_repo(jail)?;
        let not_default: Vec<&str> = loaded
            .provenance()
            .iter()
            .filter(|s| s.source != Source::Default)
            .map(|s| s.key.as_str())
            .collect();
        same("non-default settings", not_default, vec![])?;
        same(
            "builtin backend",
            setting(&loaded, "enrichment.chain.default.ollama")?.value["url"].clone(),
            json!("http://localhost:11434"),
        )
    });
}

#[test]
fn a_file_entry_without_url_shows_the_default_url_as_default() {
    jail(|jail| {
        write(
            jail,
            "enrich.toml",
            "[[enrichment.chain]]\nname = \"local\"\n",
        )?;
        let loaded = load_repo(jail)?;
        same(
            "url source",
            setting(&loaded, "enrichment.chain.default.local.url")?
                .source
                .clone(),
            Source::Default,
        )
    });
}

#[test]
fn sources_display_as_users_write_them() {
    assert_eq!(Source::Default.to_string(), "built-in defaults");
    assert_eq!(
        Source::File("/repo/llmc.toml".into()).to_string(),
        "/repo/llmc.toml"
    );
    assert_eq!(
        Source::Env("ENRICH_BATCH_SIZE".into()).to_string(),
        "env ENRICH_BATCH_SIZE"
    );
}

#[test]
fn secrets_never_show_in_debug_of_a_loaded_config() {
    jail(|jail| {
        write(jail, "enrich.toml", FILE)?;
        jail.set_env("HOSTED_API_KEY", "sk-planted-in-env");
        jail.set_env(
            "ENRICH_CHAIN_JSON",
            r#"{"chains": {"j": [{"name": "j", "url": "http://j:sk-planted-in-json@h"}]}}"#,
        );
        jail.set_env("OLLAMA_HOST", "http://u:sk-planted-in-host@gpu:11434");
        let loaded = load_repo(jail)?;
        let shown = format!(
            "{loaded:?} {:#?} {}",
            loaded.provenance(),
            serde_json::to_string(loaded.provenance()).map_err(|e| e.to_string())?
        );
        for secret in [
            "sk-planted-in-file",
            "sk-planted-in-query",
            "sk-planted-in-options",
            "sk-planted-in-env",
            "sk-planted-in-json",
            "sk-planted-in-host",
        ] {
            if shown.contains(secret) {
                return Err(format!("{secret} leaked into Debug output or provenance"));
            }
        }
        same(
            "OLLAMA_HOST shown",
            setting(&loaded, "enrichment.chain.main.local.url")?
                .value
                .clone(),
            json!("http://[redacted]@gpu:11434"),
        )?;
        // The key is still there for the adapter that needs it.
        let hosted = loaded
            .config
            .backends
            .iter()
            .find(|b| b.name == "hosted")
            .ok_or("no hosted backend")?;
        same(
            "api key",
            hosted.api_key().map(|k| k.expose().to_owned()),
            Some("sk-planted-in-env".to_owned()),
        )
    });
}

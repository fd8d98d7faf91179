//! Which file is read, and what is read from it.

use std::path::Path;

use enrich_config::{
    BackendSpec, BudgetConfig, CircuitBreakerConfig, DEFAULT_CHAIN, DEFAULT_CONFIG_TOML,
    DEFAULT_MODEL, DEFAULT_OLLAMA_URL, EnrichmentConfig, EventLogLimit, IndexConfig, OnFailure,
    PromptConfig, QualityConfig, QualityLevel, Schedule, SecretsAction, SecretsConfig, load,
    select_chain,
};

use crate::support::{entries, jail, load_error, load_error_with, load_repo, pairs, same, write};

/// What a repository with no config file and no environment gets.
fn builtin() -> EnrichmentConfig {
    let mut backend = BackendSpec::new("ollama", DEFAULT_CHAIN, "ollama", DEFAULT_MODEL);
    backend.url = Some(DEFAULT_OLLAMA_URL.to_owned());
    EnrichmentConfig {
        default_chain: DEFAULT_CHAIN.to_owned(),
        batch_size: 5,
        concurrency: 16,
        cooldown_seconds: 0,
        max_retries_per_span: 3,
        max_failures_per_span: 3,
        outage_grace_seconds: 300,
        enforce_latin1_enrichment: false,
        enable_routing: false,
        routes: Default::default(),
        max_tier: None,
        on_failure: OnFailure::Error,
        prompt: PromptConfig::default(),
        corrective_reasks: 1,
        busy_timeout_seconds: 30.0,
        schedule: Schedule::PerSpan,
        circuit_breaker: CircuitBreakerConfig::default(),
        budget: BudgetConfig::default(),
        work_order: crate::work_order::builtin_work_order(),
        index: IndexConfig::default(),
        secrets: SecretsConfig {
            action: SecretsAction::Redact,
        },
        quality: QualityConfig {
            level: QualityLevel::Basic,
            min_score: None,
        },
        event_log: EventLogLimit {
            max_bytes: 16 * 1024 * 1024,
            keep: 3,
        },
        backends: vec![backend],
    }
}

#[test]
fn no_file_gives_llmc_defaults_and_one_ollama_backend() {
    jail(|jail| {
        let loaded = load_repo(jail)?;
        same("file", loaded.file, None)?;
        same("config", loaded.config, builtin())
    });
}

#[test]
fn default_impl_is_the_builtin_configuration() {
    assert_eq!(EnrichmentConfig::default(), builtin());
}

#[test]
fn the_default_toml_is_itself_a_config_file_meaning_the_defaults() {
    // `enrich init` prints DEFAULT_CONFIG_TOML; saved as enrich.toml it must change nothing.
    jail(|jail| {
        write(jail, "enrich.toml", DEFAULT_CONFIG_TOML)?;
        let loaded = load_repo(jail)?;
        same("ignored keys", loaded.ignored_keys().len(), 0)?;
        same(
            "file",
            loaded.file,
            Some(jail.directory().join("enrich.toml")),
        )?;
        same("config", loaded.config, builtin())
    });
}

const ENRICH_TOML: &str = "[enrichment]\nbatch_size = 11\n";
const LLMC_TOML: &str = "[enrichment]\nbatch_size = 22\n";
const OTHER_TOML: &str = "[enrichment]\nbatch_size = 33\n";

#[test]
fn file_resolution_prefers_explicit_then_enrich_toml_then_llmc_toml() {
    // (files present, explicit path, expected file, expected batch_size)
    type Case = (
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
        Option<&'static str>,
        usize,
    );
    let cases: [Case; 5] = [
        (&[], None, None, 5),
        (&[("llmc.toml", LLMC_TOML)], None, Some("llmc.toml"), 22),
        (
            &[("enrich.toml", ENRICH_TOML)],
            None,
            Some("enrich.toml"),
            11,
        ),
        (
            &[("enrich.toml", ENRICH_TOML), ("llmc.toml", LLMC_TOML)],
            None,
            Some("enrich.toml"),
            11,
        ),
        (
            &[
                ("enrich.toml", ENRICH_TOML),
                ("conf/other.toml", OTHER_TOML),
            ],
            Some("conf/other.toml"),
            Some("conf/other.toml"),
            33,
        ),
    ];
    for (files, explicit, want_file, want_batch) in cases {
        jail(|jail| {
            jail.create_dir("conf").map_err(|e| e.to_string())?;
            for (name, text) in files {
                write(jail, name, text)?;
            }
            // An explicit relative path is relative to the current directory (the jail's).
            let loaded = load(jail.directory(), explicit.map(Path::new))
                .map_err(|e| format!("{files:?}: {e}"))?;
            let want_file = want_file.map(|name| match explicit {
                Some(_) => Path::new(name).to_path_buf(),
                None => jail.directory().join(name),
            });
            same("file", loaded.file, want_file)?;
            same("batch_size", loaded.config.batch_size, want_batch)
        });
    }
}

#[test]
fn a_missing_explicit_file_is_an_error_naming_it() {
    jail(|jail| {
        write(jail, "enrich.toml", ENRICH_TOML)?;
        let error = load_error_with(jail.directory(), Some(Path::new("nope/enrich.toml")))?;
        same(
            "message",
            error.as_str(),
            "config file nope/enrich.toml does not exist: check the --config path",
        )
    });
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    jail(|jail| {
        jail.create_dir("enrich.toml").map_err(|e| e.to_string())?;
        let path = jail.directory().join("enrich.toml");
        let error = load(jail.directory(), None).map_err(|e| e.to_string());
        let Err(message) = error else {
            return Err("a directory named enrich.toml must not load".into());
        };
        same(
            "message",
            message,
            format!("cannot read config file {}", path.display()),
        )?;
        let source = load(jail.directory(), None)
            .err()
            .and_then(|e| std::error::Error::source(&e).map(|s| s.to_string()));
        if source.is_none() {
            return Err("the I/O error must be the source".into());
        }
        Ok(())
    });
}

#[test]
fn invalid_toml_names_the_file_and_the_line() {
    jail(|jail| {
        write(jail, "llmc.toml", "[enrichment]\nbatch_size = = 3\n")?;
        let error = load_error(jail)?;
        let prefix = format!(
            "config file {} is not valid TOML: ",
            jail.directory().join("llmc.toml").display()
        );
        if !error.starts_with(&prefix) || !error.contains("line 2") {
            return Err(format!("unexpected message: {error}"));
        }
        Ok(())
    });
}

/// An llmc.toml in the shape LLMC users have: many tables enrich does not read, and keys inside
/// [enrichment] enrich does not know.
const LLMC_REPO_TOML: &str = r#"
[embeddings]
default_profile = "docs"

[embeddings.profiles.docs]
provider = "ollama"
model = "nomic-embed-text"
dimension = 768

[embeddings.profiles.docs.ollama]
api_base = "http://10.0.0.5:11434"
timeout = 60

[routing.slice_type_to_route]
code = "code"
docs = "docs"

[storage]
# index_path = ".rag/index_v2.db"

[daemon]
pycache_cleanup_days = 7
started_at = 1979-05-27T07:32:00Z

[enrichment]
default_chain = "workstation"
batch_size = 50
est_tokens_per_span = 350
enforce_latin1_enrichment = true
max_failures_per_span = 4
default_provider = "ollama"

[[enrichment.chain]]
name = "local-7b"
chain = "workstation"
provider = "ollama"
model = "qwen2.5:7b-instruct"
url = "http://10.0.0.5:11434"
routing_tier = "7b"
timeout_seconds = 120
enabled = true
options = { num_ctx = 8192, temperature = 0.2 }
max_retries = 2

[[enrichment.chain]]
name = "local-14b"
chain = "workstation"
provider = "ollama"
model = "qwen2.5:14b-instruct-q4_K_M"
url = "http://10.0.0.5:11434"
routing_tier = "14b"
timeout_seconds = 180
options = { num_ctx = 12288, temperature = 0.2 }

[indexing]
exclude_dirs = [".git", "node_modules"]

[tool_envelope.agent_budgets]
default = 16000
"#;

#[test]
fn a_real_llmc_toml_loads_reading_only_enrichment() {
    jail(|jail| {
        write(jail, "llmc.toml", LLMC_REPO_TOML)?;
        let loaded = load_repo(jail)?;
        let config = &loaded.config;
        same(
            "default_chain",
            config.default_chain.as_str(),
            "workstation",
        )?;
        same("batch_size", config.batch_size, 50)?;
        same("latin1", config.enforce_latin1_enrichment, true)?;
        same("max_failures", config.max_failures_per_span, 4)?;
        same("concurrency (default)", config.concurrency, 16)?;
        same(
            "entries",
            entries(&loaded),
            pairs(&[("workstation", "local-7b"), ("workstation", "local-14b")]),
        )?;
        let big = &config.backends[1];
        same("model", big.model.as_str(), "qwen2.5:14b-instruct-q4_K_M")?;
        same("tier", big.tier(), "14b")?;
        same("timeout", big.timeout_seconds, Some(180.0))?;
        same("url", big.url.as_deref(), Some("http://10.0.0.5:11434"))?;
        same(
            "num_ctx",
            big.options.get("num_ctx"),
            Some(&serde_json::json!(12288)),
        )?;
        // LLMC's own keys and tables pass in silence.
        same("ignored keys", loaded.ignored_keys().len(), 0)?;
        let selected = select_chain(config, "workstation").map_err(|e| e.to_string())?;
        same("selected", selected.len(), 2)
    });
}

#[test]
fn a_file_without_chains_keeps_the_builtin_backend_in_its_default_chain() {
    // LLMC builds its default backend whenever no chain is configured.
    jail(|jail| {
        write(
            jail,
            "llmc.toml",
            "[enrichment]\ndefault_chain = \"athena\"\n",
        )?;
        let loaded = load_repo(jail)?;
        same("entries", entries(&loaded), pairs(&[("athena", "ollama")]))?;
        same(
            "url",
            loaded.config.backends[0].url.as_deref(),
            Some(DEFAULT_OLLAMA_URL),
        )
    });
}

#[test]
fn a_file_without_enrichment_table_means_defaults() {
    jail(|jail| {
        write(jail, "llmc.toml", "[daemon]\nx = 1\n")?;
        let loaded = load_repo(jail)?;
        same("config", loaded.config, builtin())
    });
}

#[test]
fn a_single_chain_table_is_one_entry() {
    // LLMC also accepts `[enrichment.chain]` (one table) for `[[enrichment.chain]]`.
    jail(|jail| {
        write(
            jail,
            "enrich.toml",
            "[enrichment.chain]\nname = \"solo\"\nmodel = \"llama3\"\n",
        )?;
        let loaded = load_repo(jail)?;
        same("entries", entries(&loaded), pairs(&[("default", "solo")]))
    });
}

#[test]
fn prompt_routes_and_tier_are_read() {
    jail(|jail| {
        write(
            jail,
            "enrich.toml",
            r#"
[enrichment]
enable_routing = true
max_tier = "14b"
on_failure = "fallback_to_empty"
event_log_max_bytes = "4096"
event_log_keep = 0

[enrichment.routes]
Code = "code"
docs = "no-such-chain"
empty = ""

[enrichment.prompt]
template = "Summarise {path} lines {line_start}-{line_end}:\n{snippet}"
max_snippet_bytes = 4096
"#,
        )?;
        let config = load_repo(jail)?.config;
        same("routing", config.enable_routing, true)?;
        same("max_tier", config.max_tier.as_deref(), Some("14b"))?;
        same("on_failure", config.on_failure, OnFailure::FallbackToEmpty)?;
        // Slice types are matched lowercase; routes to unknown chains are the router's business.
        same(
            "routes",
            config.routes.into_iter().collect::<Vec<_>>(),
            vec![
                ("code".to_owned(), "code".to_owned()),
                ("docs".to_owned(), "no-such-chain".to_owned()),
            ],
        )?;
        same("snippet bytes", config.prompt.max_snippet_bytes, 4096)?;
        same(
            "event log",
            config.event_log,
            EventLogLimit {
                max_bytes: 4096,
                keep: 0,
            },
        )?;
        same(
            "template",
            config.prompt.template.as_deref(),
            Some("Summarise {path} lines {line_start}-{line_end}:\n{snippet}"),
        )
    });
}

#[test]
fn lenient_values_from_llmc_files_are_accepted() {
    jail(|jail| {
        write(
            jail,
            "llmc.toml",
            r#"
[enrichment]
batch_size = "50"
concurrency = 2.0
enforce_latin1_enrichment = "yes"
enable_routing = 1

[[enrichment.chain]]
name = 7
model = 7
timeout_seconds = "90"
enabled = "on"
"#,
        )?;
        let config = load_repo(jail)?.config;
        same("batch_size", config.batch_size, 50)?;
        same("concurrency", config.concurrency, 2)?;
        same("latin1", config.enforce_latin1_enrichment, true)?;
        same("routing", config.enable_routing, true)?;
        let entry = &config.backends[0];
        same("name", entry.name.as_str(), "7")?;
        same("model", entry.model.as_str(), "7")?;
        same("timeout", entry.timeout_seconds, Some(90.0))?;
        same("enabled", entry.enabled, true)
    });
}

//! Validation after merging: every message names the file, the key, and the fix.

use crate::support::{jail, load_error, load_repo, same, write};

/// Loads `toml` as `llmc.toml` and compares the error with `want`, where `FILE` stands for the
/// file's path.
fn check(toml: &str, want: &str) {
    jail(|jail| {
        write(jail, "llmc.toml", toml)?;
        let path = jail.directory().join("llmc.toml");
        let want = want.replace("FILE", &path.display().to_string());
        same(toml, load_error(jail)?, want)
    });
}

#[test]
fn bad_scalars_name_file_key_value_and_expectation() {
    let cases = [
        (
            "[enrichment]\non_failure = \"retry\"\n",
            "invalid value for enrichment.on_failure in FILE, line 2: \"retry\" (expected \"error\" or \"fallback_to_empty\")",
        ),
        (
            "[enrichment]\nbatch_size = 0\n",
            "invalid value for enrichment.batch_size in FILE, line 2: 0 (expected at least 1)",
        ),
        (
            "[enrichment]\nconcurrency = 0\n",
            "invalid value for enrichment.concurrency in FILE, line 2: 0 (expected at least 1)",
        ),
        (
            "[enrichment]\nbatch_size = \"ten\"\n",
            "invalid value for enrichment.batch_size in FILE, line 2: \"ten\" (expected a whole number)",
        ),
        (
            "[enrichment]\nmax_retries_per_span = 0\n",
            "invalid value for enrichment.max_retries_per_span in FILE, line 2: 0 (expected at least 1: it counts every backend attempt of a span in one run, the first one included, so 1 is a single attempt with no retry, re-ask or fallback)",
        ),
        (
            "[enrichment]\nmax_retries_per_span = -1\n",
            "invalid value for enrichment.max_retries_per_span in FILE, line 2: -1 (expected a whole number, not negative)",
        ),
        (
            "[enrichment]\nenable_routing = \"maybe\"\n",
            "invalid value for enrichment.enable_routing in FILE, line 2: \"maybe\" (expected true/false, 1/0, yes/no or on/off)",
        ),
        (
            "[enrichment]\ndefault_chain = \"  \"\n",
            "invalid value for enrichment.default_chain in FILE, line 2: an empty name (expected the name of a chain)",
        ),
        (
            "[enrichment]\nroutes = [\"code\"]\n",
            "invalid value for enrichment.routes in FILE, line 2: sequence (expected a map)",
        ),
        (
            "[enrichment.prompt]\nmax_snippet_bytes = 0\n",
            "invalid value for enrichment.prompt.max_snippet_bytes in FILE, line 2: 0 (expected at least 1)",
        ),
        (
            "enrichment = 5\n",
            "invalid value for enrichment in FILE, line 1: signed int `5` (expected the [enrichment] table)",
        ),
    ];
    for (toml, want) in cases {
        check(toml, want);
    }
}

#[test]
fn bad_entries_name_the_entry_and_the_fix() {
    let cases = [
        (
            "[[enrichment.chain]]\nname = \"a\"\n[[enrichment.chain]]\nmodel = \"m\"\n",
            "enrichment.chain entry 2 in FILE, line 3 has no name: add name = \"...\"",
        ),
        (
            "[[enrichment.chain]]\nname = \"\"\n",
            "enrichment.chain entry 1 in FILE, line 1 has no name: add name = \"...\"",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\ntimeout_seconds = 0\n",
            "invalid value for timeout_seconds of enrichment.chain entry 1 (\"a\") in FILE, line 3: 0 (expected a positive number of seconds)",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\ntimeout_seconds = -3.5\n",
            "invalid value for timeout_seconds of enrichment.chain entry 1 (\"a\") in FILE, line 3: -3.5 (expected a positive number of seconds)",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\ntimeout_seconds = 1e20\n",
            "invalid value for timeout_seconds of enrichment.chain entry 1 (\"a\") in FILE, line 3: 100000000000000000000 (expected a positive number of seconds)",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\n[[enrichment.chain]]\nname = \"b\"\ntimeout_seconds = \"soon\"\n",
            "invalid value for timeout_seconds of enrichment.chain entry 2 in FILE, line 5: \"soon\" (expected a number of seconds)",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\nmodel = { tag = \"x\" }\n",
            "invalid value for model of enrichment.chain entry 1 in FILE, line 3: map (expected a string)",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\nenabled = 2\n",
            "invalid value for enabled of enrichment.chain entry 1 in FILE, line 3: 2 (expected true/false, 1/0, yes/no or on/off)",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\n[[enrichment.chain]]\nname = \"b\"\n[[enrichment.chain]]\nname = \"a\"\n",
            "chain \"default\" in FILE has more than one entry named \"a\": give each entry of a chain its own name",
        ),
    ];
    for (toml, want) in cases {
        check(toml, want);
    }
}

#[test]
fn credentials_in_options_are_refused_naming_the_backend_the_key_and_api_key_env() {
    let fix = "a credential in `options` would be sent to the model server in the request body; \
               put it in an environment variable and name that variable with \
               `api_key_env = \"VAR\"` (sent as an Authorization header), or write it into \
               `url` as user:password@";
    let cases = [
        ("api_key = \"sk-1\"", "options.api_key"),
        ("APIKEY = \"sk-1\"", "options.APIKEY"),
        ("Authorization = \"Bearer sk-1\"", "options.Authorization"),
        ("access-token = \"sk-1\"", "options.access-token"),
        ("token = \"sk-1\"", "options.token"),
        ("password = \"sk-1\"", "options.password"),
        ("secret = \"sk-1\"", "options.secret"),
        (
            "headers = { authorization = \"sk-1\" }",
            "options.headers.authorization",
        ),
    ];
    for (option, key) in cases {
        let toml = format!(
            "[[enrichment.chain]]\nname = \"a\"\n[[enrichment.chain]]\nname = \"hosted\"\noptions = {{ temperature = 0, {option} }}\n"
        );
        let want = format!(
            "invalid value for {key} of enrichment.chain entry 2 (\"hosted\") in FILE, line 5: {fix}"
        );
        check(&toml, &want);
    }
}

#[test]
fn options_that_only_contain_a_credential_word_are_kept() {
    jail(|jail| {
        write(
            jail,
            "llmc.toml",
            "[[enrichment.chain]]\nname = \"a\"\noptions = { max_tokens = 10, num_keep = 4, stop = [\"token\"] }\n",
        )?;
        let config = load_repo(jail)?.config;
        same("options kept", config.backends[0].options.len(), 3)
    });
}

#[test]
fn max_response_bytes_is_read_per_backend_with_a_default_and_a_floor() {
    check(
        "[[enrichment.chain]]\nname = \"a\"\nmax_response_bytes = 10\n",
        "invalid value for max_response_bytes of enrichment.chain entry 1 (\"a\") in FILE, line 3: 10 (expected at least 1024 bytes; remove the key for the default of 4194304)",
    );
    jail(|jail| {
        write(
            jail,
            "llmc.toml",
            "[[enrichment.chain]]\nname = \"a\"\nmax_response_bytes = 65536\n[[enrichment.chain]]\nname = \"b\"\n",
        )?;
        let config = load_repo(jail)?.config;
        same("set", config.backends[0].max_response_bytes(), 65536)?;
        same(
            "default",
            config.backends[1].max_response_bytes(),
            enrich_config::DEFAULT_MAX_RESPONSE_BYTES,
        )
    });
}

#[test]
fn the_default_chain_must_exist_and_have_an_enabled_entry() {
    let cases = [
        (
            "[enrichment]\ndefault_chain = \"athena\"\n[[enrichment.chain]]\nname = \"a\"\nchain = \"fast\"\n",
            "default chain \"athena\" has no backend in FILE: add a [[enrichment.chain]] entry with chain = \"athena\", or set enrichment.default_chain to one of: fast",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\nenabled = false\n[[enrichment.chain]]\nname = \"b\"\nenabled = false\n",
            "default chain \"default\" in FILE has no enabled backend: set enabled = true on one of its entries (a, b)",
        ),
        (
            "[enrichment]\nchain = []\n",
            "default chain \"default\" has no backend in FILE: add a [[enrichment.chain]] entry with chain = \"default\", or set enrichment.default_chain to one of: (no chain has an enabled backend)",
        ),
    ];
    for (toml, want) in cases {
        check(toml, want);
    }
}

#[test]
fn what_is_not_validated_here_loads() {
    // Routes to missing chains: the router falls back. Unknown providers: the adapter registry
    // rejects them. Same names in different chains are fine.
    jail(|jail| {
        write(
            jail,
            "llmc.toml",
            r#"
[enrichment]
enable_routing = true
[enrichment.routes]
code = "does-not-exist"

[[enrichment.chain]]
name = "a"
provider = "carrier-pigeon"

[[enrichment.chain]]
name = "a"
chain = "other"
"#,
        )?;
        let config = load_repo(jail)?.config;
        same(
            "provider",
            config.backends[0].provider.as_str(),
            "carrier-pigeon",
        )?;
        same(
            "route",
            config.routes.get("code").map(String::as_str),
            Some("does-not-exist"),
        )
    });
}

//! Keys enrich does not read: an error in enrich's own file, with the line and the key it most
//! resembles; a warning in LLMC's `llmc.toml`, whose own keys pass in silence; and every mistake
//! of a file reported at once.

use std::path::Path;

use enrich_config::{ConfigError, IgnoredKey, Source, load};

use crate::support::{jail, load_error, load_repo, message, same, write};

/// The error of loading `toml` written as `name`, with `FILE` in `want` standing for its path.
fn check_error(name: &str, toml: &str, want: &str) {
    jail(|jail| {
        write(jail, name, toml)?;
        let path = jail.directory().join(name);
        let want = want.replace("FILE", &path.display().to_string());
        same(toml, load_error(jail)?, want)
    });
}

const FIX: &str = "(enrich stops at keys it does not read; `enrich init` prints every key)";

#[test]
fn a_misspelt_key_in_enrich_toml_is_an_error_with_its_line_and_the_key_it_resembles() {
    let cases = [
        (
            "[enrichment]\ndefault_chain = \"local\"\n\n[[enrichment.chain]]\nname = \"gpu\"\nchain = \"local\"\nmodle = \"qwen2.5:7b\"\n",
            "unknown key modle of enrichment.chain entry 1 in FILE, line 7: did you mean `model`? FIX",
        ),
        (
            "[enrichment]\nconcurency = 4\n",
            "unknown key enrichment.concurency in FILE, line 2: did you mean `concurrency`? FIX",
        ),
        (
            "[enrichment.prompt]\ntemplat = \"{snippet}\"\n",
            "unknown key enrichment.prompt.templat in FILE, line 2: did you mean `template`? FIX",
        ),
        (
            "[enrichment.budget]\nmax_tokens_per_rnu = 5\n",
            "unknown key enrichment.budget.max_tokens_per_rnu in FILE, line 2: did you mean `max_tokens_per_run`? FIX",
        ),
        // A misspelt table would leave every setting in it unread.
        (
            "[enrichmnet]\nbatch_size = 9\n",
            "unknown key enrichmnet in FILE, line 1: did you mean `enrichment`? FIX",
        ),
        (
            "[enrichment]\ncolour = \"blue\"\n",
            "unknown key enrichment.colour in FILE, line 2: enrich does not read it; remove it, or fix its spelling (`enrich init` prints every key)",
        ),
    ];
    for (toml, want) in cases {
        check_error("enrich.toml", toml, &want.replace("FIX", FIX));
    }
}

#[test]
fn every_mistake_of_a_file_is_reported_at_once() {
    let toml = "\
[enrichment]
concurency = 2
batch_size = 0
on_failure = \"explode\"

[[enrichment.chain]]
name = \"gpu\"
modle = \"qwen2.5:7b\"
timeout_seconds = -1

[[enrichment.chain]]
chain = \"default\"
";
    jail(|jail| {
        write(jail, "enrich.toml", toml)?;
        let file = jail.directory().join("enrich.toml").display().to_string();
        let err = load(jail.directory(), None).expect_err("refused");
        let ConfigError::Several { errors } = &err else {
            return Err(format!("expected several errors, got {err:?}"));
        };
        let lines: Vec<String> = errors.iter().map(message).collect();
        same(
            "errors",
            lines,
            vec![
                format!(
                    "unknown key enrichment.concurency in {file}, line 2: did you mean `concurrency`? {FIX}"
                ),
                format!(
                    "unknown key modle of enrichment.chain entry 1 in {file}, line 8: did you mean `model`? {FIX}"
                ),
                format!(
                    "invalid value for enrichment.on_failure in {file}, line 4: \"explode\" (expected \"error\" or \"fallback_to_empty\")"
                ),
                format!(
                    "invalid value for enrichment.batch_size in {file}, line 3: 0 (expected at least 1)"
                ),
                format!(
                    "invalid value for timeout_seconds of enrichment.chain entry 1 (\"gpu\") in {file}, line 9: -1 (expected a positive number of seconds)"
                ),
                format!(
                    "enrichment.chain entry 2 in {file}, line 11 has no name: add name = \"...\""
                ),
            ],
        )?;
        // One message, one mistake per line.
        let text = message(&err);
        same(
            "first line",
            text.lines().next(),
            Some("6 problems in the configuration:"),
        )?;
        same("lines", text.lines().count(), 7)
    });
}

#[test]
fn value_errors_from_the_file_carry_their_lines_and_those_from_the_environment_none() {
    let toml = "\
[enrichment]
# the values below are wrong on purpose
max_retries_per_span = 0

[enrichment.index]
exclude = [\"ok/**\", \"a/[b\"]

[[enrichment.chain]]
name = \"gpu\"

[enrichment.chain.options]
temperature = 0
api_key = \"sk-1\"
";
    jail(|jail| {
        write(jail, "enrich.toml", toml)?;
        jail.set_env("ENRICH_BATCH_SIZE", "0");
        let file = jail.directory().join("enrich.toml").display().to_string();
        let err = load(jail.directory(), None).expect_err("refused");
        let ConfigError::Several { errors } = &err else {
            return Err(format!("expected several errors, got {err:?}"));
        };
        let lines: Vec<String> = errors.iter().map(message).collect();
        let starts: Vec<&str> = lines
            .iter()
            .map(|line| {
                line.split_once(": ")
                    .map_or(line.as_str(), |(head, _)| head)
            })
            .collect();
        same(
            "errors",
            starts,
            vec![
                "invalid value for enrichment.batch_size in env ENRICH_BATCH_SIZE",
                &format!("invalid value for enrichment.max_retries_per_span in {file}, line 3"),
                &format!("invalid value for enrichment.index.exclude in {file}, line 6"),
            ],
        )
    });
    jail(|jail| {
        // A credential in a nested `options` table: the line of its own key.
        let toml = toml.replace("\"a/[b\"", "\"b/**\"");
        write(jail, "enrich.toml", &toml)?;
        let file = jail.directory().join("enrich.toml").display().to_string();
        let text = load_error(jail)?;
        let head = text
            .lines()
            .find(|line| line.contains("options.api_key"))
            .and_then(|line| line.split_once(": "))
            .map(|(head, _)| head.trim_start_matches("  - ").to_owned());
        same(
            "a nested option",
            head,
            Some(format!(
                "invalid value for options.api_key of enrichment.chain entry 1 (\"gpu\") in {file}, line 13"
            )),
        )
    });
}

#[test]
fn a_syntax_error_is_reported_alone_with_its_line() {
    jail(|jail| {
        write(
            jail,
            "enrich.toml",
            "[enrichment]\nmodle = 1\nbatch_size = = 2\n",
        )?;
        let err = load(jail.directory(), None).expect_err("refused");
        let text = message(&err);
        same(
            "a syntax error",
            matches!(err, ConfigError::Syntax { .. }),
            true,
        )?;
        same("its line", text.contains("line 3"), true)?;
        same("alone", text.contains("modle"), false)
    });
}

#[test]
fn llmc_toml_keeps_llmc_keys_silent_and_warns_about_unknown_keys_in_enrich_tables() {
    let toml = "\
[enrichment]
est_tokens_per_span = 350
enabled = true
concurency = 2

[enrichment.runner]
max_concurrent = 4

[[enrichment.chain]]
name = \"gpu\"
modle = \"qwen2.5:7b\"
max_retries = 2

[daemon]
started_at = 1979-05-27T07:32:00Z
";
    jail(|jail| {
        write(jail, "llmc.toml", toml)?;
        let loaded = load_repo(jail)?;
        let origin = Source::File(jail.directory().join("llmc.toml"));
        let ignored = |key: &str, line, suggestion: &str| IgnoredKey {
            key: key.to_owned(),
            origin: origin.clone(),
            line: Some(line),
            suggestion: Some(suggestion.to_owned()),
        };
        same(
            "ignored",
            loaded.ignored_keys().to_vec(),
            vec![
                ignored("enrichment.concurency", 4, "concurrency"),
                ignored("modle of enrichment.chain entry 1", 11, "model"),
            ],
        )?;
        same(
            "warning",
            loaded.ignored_keys()[1].to_string(),
            format!(
                "modle of enrichment.chain entry 1 in {origin}, line 11 is ignored: enrich does not read it (did you mean `model`?)"
            ),
        )?;
        // The rest of the file is read.
        same(
            "model",
            loaded.config.backends[0].model.as_str(),
            enrich_config::DEFAULT_MODEL,
        )
    });
}

#[test]
fn a_config_file_is_judged_by_its_name() {
    jail(|jail| {
        jail.create_dir("conf").map_err(|e| e.to_string())?;
        let toml = "[enrichment]\nconcurency = 2\n";
        write(jail, "conf/other.toml", toml)?;
        write(jail, "conf/llmc.toml", toml)?;
        let other = load(jail.directory(), Some(Path::new("conf/other.toml")));
        same(
            "--config other.toml is enrich's",
            other
                .map(drop)
                .map_err(|e| matches!(e, ConfigError::UnknownKey { .. })),
            Err(true),
        )?;
        let llmc = load(jail.directory(), Some(Path::new("conf/llmc.toml")))
            .map_err(|e| format!("--config llmc.toml is LLMC's: {e}"))?;
        same("warned", llmc.ignored_keys().len(), 1)
    });
}

#[test]
fn unknown_keys_of_chain_json_entries_warn_with_a_suggestion() {
    jail(|jail| {
        jail.set_env(
            "ENRICH_CHAIN_JSON",
            r#"[{"name": "a", "modle": "x", "max_retries": 1}]"#,
        );
        let loaded = load_repo(jail)?;
        same(
            "ignored",
            loaded.ignored_keys().to_vec(),
            vec![IgnoredKey {
                key: "modle of entry 1".to_owned(),
                origin: Source::Env("ENRICH_CHAIN_JSON".to_owned()),
                line: None,
                suggestion: Some("model".to_owned()),
            }],
        )
    });
}

#[test]
fn the_waiting_keys_of_enrich_toml_are_read_not_refused() {
    // `outage_grace_seconds` (how long a run waits for a backend) and `busy_timeout_seconds`
    // (how long it waits for the index's write lock) are enrich's own keys of [enrichment].
    let toml = "[enrichment]\noutage_grace_seconds = 45\nbusy_timeout_seconds = 7\n";
    for name in ["enrich.toml", "llmc.toml"] {
        jail(|jail| {
            write(jail, name, toml)?;
            let loaded = load_repo(jail).map_err(|e| format!("{name}: {e}"))?;
            same("ignored", loaded.ignored_keys().to_vec(), Vec::new())?;
            same("grace", loaded.config.outage_grace_seconds, 45)?;
            same("busy timeout", loaded.config.busy_timeout_seconds, 7.0)
        });
    }
}

//! `[enrichment.index]` and `[enrichment.secrets]`: read, checked, and shown with their origin.

use enrich_config::{IndexConfig, SecretsAction};

use crate::support::{jail, load_error, load_repo, same, write};

#[test]
fn index_globs_and_the_secrets_action_are_read_from_the_file() {
    jail(|jail| {
        write(
            jail,
            "enrich.toml",
            "[enrichment.index]\nexclude = [\"fixtures/**\", \" \"]\ninclude = \"tests/certs/*.pem\"\n\n[enrichment.secrets]\naction = \"Skip\"\n",
        )?;
        let loaded = load_repo(jail)?;
        same(
            "index",
            loaded.config.index.clone(),
            IndexConfig {
                exclude: vec!["fixtures/**".to_owned()],
                include: vec!["tests/certs/*.pem".to_owned()],
            },
        )?;
        same("action", loaded.config.secrets.action, SecretsAction::Skip)?;
        let shown: Vec<(String, String)> = loaded
            .provenance()
            .iter()
            .filter(|s| {
                s.key.starts_with("enrichment.index") || s.key.starts_with("enrichment.secrets")
            })
            .map(|s| (s.key.clone(), s.value.to_string()))
            .collect();
        same(
            "provenance",
            shown,
            vec![
                (
                    "enrichment.index.exclude".to_owned(),
                    "[\"fixtures/**\"]".to_owned(),
                ),
                (
                    "enrichment.index.include".to_owned(),
                    "[\"tests/certs/*.pem\"]".to_owned(),
                ),
                (
                    "enrichment.secrets.action".to_owned(),
                    "\"skip\"".to_owned(),
                ),
            ],
        )?;
        // Unknown keys of both tables are mistakes in enrich's own file, reported together.
        write(
            jail,
            "enrich.toml",
            "[enrichment.index]\nexclude_secrets = false\n[enrichment.secrets]\nmode = \"off\"\n",
        )?;
        let error = load_error(jail)?;
        for needle in [
            "2 problems in the configuration:",
            "unknown key enrichment.index.exclude_secrets in ",
            "enrich.toml, line 2: did you mean `exclude`?",
            "unknown key enrichment.secrets.mode in ",
            "enrich.toml, line 4: enrich does not read it",
        ] {
            if !error.contains(needle) {
                return Err(format!("{needle:?} missing from: {error}"));
            }
        }
        Ok(())
    });
}

#[test]
fn a_bad_glob_or_action_names_the_key_and_the_fix() {
    for (toml, want) in [
        (
            "[enrichment.secrets]\naction = \"send\"\n",
            "invalid value for enrichment.secrets.action in FILE, line 2: \"send\" (expected \"redact\" or \"skip\")",
        ),
        (
            "[enrichment.index]\nexclude = [\"a/[b\"]\n",
            "invalid value for enrichment.index.exclude in FILE, line 2: \"a/[b\" is not a valid glob: unclosed character class; missing ']'",
        ),
    ] {
        jail(|jail| {
            write(jail, "llmc.toml", toml)?;
            let path = jail.directory().join("llmc.toml");
            let want = want.replace("FILE", &path.display().to_string());
            same(toml, load_error(jail)?, want)
        });
    }
}

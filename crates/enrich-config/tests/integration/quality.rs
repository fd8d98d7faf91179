//! `[enrichment.quality]`: the gate's level, read, checked, and shown with its origin.

use enrich_config::{EnrichmentConfig, QualityLevel};

use crate::support::{jail, load_error, load_repo, same, write};

#[test]
fn the_level_defaults_to_basic_and_is_read_from_the_file() {
    assert_eq!(
        EnrichmentConfig::default().quality.level,
        QualityLevel::Basic
    );
    for (written, level) in [
        ("off", QualityLevel::Off),
        ("Basic", QualityLevel::Basic),
        (" strict ", QualityLevel::Strict),
    ] {
        jail(|jail| {
            write(
                jail,
                "enrich.toml",
                &format!("[enrichment.quality]\nlevel = \"{written}\"\n"),
            )?;
            let loaded = load_repo(jail)?;
            same(written, loaded.config.quality.level, level)?;
            let shown: Vec<(String, String)> = loaded
                .provenance()
                .iter()
                .filter(|s| s.key.starts_with("enrichment.quality"))
                .map(|s| (s.key.clone(), s.value.to_string()))
                .collect();
            same(
                "provenance",
                shown,
                vec![
                    (
                        "enrichment.quality.level".to_owned(),
                        format!("\"{}\"", level.as_str()),
                    ),
                    ("enrichment.quality.min_score".to_owned(), "null".to_owned()),
                ],
            )
        });
    }
}

#[test]
fn a_bad_level_or_key_names_the_key_and_the_fix() {
    jail(|jail| {
        write(
            jail,
            "llmc.toml",
            "[enrichment.quality]\nlevel = \"high\"\n",
        )?;
        let path = jail.directory().join("llmc.toml");
        same(
            "bad level",
            load_error(jail)?,
            format!(
                "invalid value for enrichment.quality.level in {}, line 2: \"high\" (expected \"off\", \"basic\" or \"strict\")",
                path.display()
            ),
        )?;
        write(
            jail,
            "enrich.toml",
            "[enrichment.quality]\nlevle = \"off\"\n",
        )?;
        let error = load_error(jail)?;
        if !error.contains("unknown key enrichment.quality.levle") {
            return Err(format!("the unknown key is not named: {error}"));
        }
        Ok(())
    });
}

/// `min_score` has no default (no minimum), is read as a number or numeric text, and a value
/// outside 0..=1 is refused with its key.
#[test]
fn the_minimum_score_is_unset_by_default_and_checked() {
    assert_eq!(EnrichmentConfig::default().quality.min_score, None);
    jail(|jail| {
        write(
            jail,
            "enrich.toml",
            "[enrichment.quality]\nmin_score = 0.5\n",
        )?;
        same(
            "number",
            load_repo(jail)?.config.quality.min_score,
            Some(0.5),
        )?;
        write(
            jail,
            "enrich.toml",
            "[enrichment.quality]\nmin_score = \"1\"\n",
        )?;
        same("text", load_repo(jail)?.config.quality.min_score, Some(1.0))?;
        write(
            jail,
            "enrich.toml",
            "[enrichment.quality]\nmin_score = 1.5\n",
        )?;
        let error = load_error(jail)?;
        if !error.contains("enrichment.quality.min_score") || !error.contains("from 0 to 1") {
            return Err(format!("the bad score is not explained: {error}"));
        }
        Ok(())
    });
}

/// The options fingerprint follows the options' content, not the order they were written in,
/// and never depends on a secret-looking value.
#[test]
fn the_options_fingerprint_follows_the_options_content() {
    let spec = |options: serde_json::Value| {
        let mut spec = enrich_config::BackendSpec::new("b", "default", "ollama", "m");
        spec.options = options.as_object().cloned().unwrap_or_default();
        spec.options_fingerprint()
    };
    let base = spec(serde_json::json!({"temperature": 0.1, "num_ctx": 8192}));
    assert_eq!(base.len(), 12);
    assert_eq!(
        base,
        spec(serde_json::json!({"num_ctx": 8192, "temperature": 0.1}))
    );
    assert_ne!(
        base,
        spec(serde_json::json!({"temperature": 0.2, "num_ctx": 8192}))
    );
    assert_ne!(base, spec(serde_json::json!({})));
    assert_eq!(
        spec(serde_json::json!({"x_token": "one"})),
        spec(serde_json::json!({"x_token": "two"}))
    );
}

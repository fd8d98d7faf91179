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
                vec![(
                    "enrichment.quality.level".to_owned(),
                    format!("\"{}\"", level.as_str()),
                )],
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

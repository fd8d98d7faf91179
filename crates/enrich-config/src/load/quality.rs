//! `[enrichment.quality]`: how strictly the quality gate judges an answer that passed the
//! enrichment.v1 schema.

use serde::Deserialize;

use crate::lenient::{Number, Text};
use crate::types::{QualityConfig, QualityLevel};
use crate::{ConfigError, Source};

/// The raw `[enrichment.quality]` table.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(expecting = "the [enrichment.quality] table")]
#[schemars(deny_unknown_fields, transform = crate::schema::every_key_optional)]
pub(crate) struct RawQuality {
    #[schemars(schema_with = "crate::schema::quality_level")]
    pub(crate) level: Option<Text>,
    pub(crate) min_score: Option<Number>,
}

/// The keys of `[enrichment.quality]` that enrich reads.
pub(crate) const QUALITY_KEYS: &[&str] = &["level", "min_score"];

/// Checks and converts the table; `origin` names the layer a key came from.
pub(crate) fn resolve(
    quality: Option<&RawQuality>,
    origin: &dyn Fn(&str) -> Source,
) -> Result<QualityConfig, ConfigError> {
    let min_score = match quality.and_then(|q| q.min_score) {
        Some(score) if !(0.0..=1.0).contains(&score.0) => {
            let key = "enrichment.quality.min_score";
            return Err(ConfigError::Invalid {
                key: key.to_owned(),
                origin: origin(key),
                line: None,
                reason: format!("{} (expected a score from 0 to 1)", score.0),
            });
        }
        score => score.map(|score| score.0),
    };
    let Some(text) = quality.and_then(|q| q.level.as_ref()) else {
        return Ok(QualityConfig {
            min_score,
            ..QualityConfig::default()
        });
    };
    let level = QualityLevel::from_name(&text.0.trim().to_ascii_lowercase());
    let key = "enrichment.quality.level";
    level
        .map(|level| QualityConfig { level, min_score })
        .ok_or_else(|| ConfigError::Invalid {
            key: key.to_owned(),
            origin: origin(key),
            line: None,
            reason: format!("{:?} (expected \"off\", \"basic\" or \"strict\")", text.0),
        })
}

//! What enrich keeps away from models: `[enrichment.index]` (which files `enrich index` leaves
//! out, beyond the ignore files) and `[enrichment.secrets]` (what a run does with a span in
//! which a secret is found). The lists and the patterns themselves live in `enrich-secrets`.

use globset::GlobBuilder;
use serde::{Deserialize, Serialize};

use crate::lenient::{Text, TextList};
use crate::{ConfigError, Source};

/// The `[enrichment.index]` table: globs over repo-relative paths (`/`-separated; a glob
/// without `/` matches the file name in any directory, as in `.gitignore`; case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexConfig {
    /// Files `enrich index` leaves out, besides the built-in secret files.
    pub exclude: Vec<String>,
    /// Files indexed although the built-in secret-file list or `exclude` names them (a test
    /// fixture key, say). enrich's own files and the ignore files' verdicts stay as they are.
    pub include: Vec<String>,
}

/// What a run does with a span in which a secret is found (`[enrichment.secrets] action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretsAction {
    /// Send the span with each secret replaced by `[REDACTED:<rule id>]`.
    #[default]
    Redact,
    /// Do not send the span: record it in the failure ledger as `secret_detected`.
    Skip,
}

impl SecretsAction {
    /// The spelling used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretsAction::Redact => "redact",
            SecretsAction::Skip => "skip",
        }
    }
}

/// The `[enrichment.secrets]` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsConfig {
    /// What a run does with a span holding a secret.
    pub action: SecretsAction,
}

/// The raw `[enrichment.index]` table.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(expecting = "the [enrichment.index] table")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawIndex {
    pub(crate) exclude: Option<TextList>,
    pub(crate) include: Option<TextList>,
}

/// The keys of `[enrichment.index]` that enrich reads.
pub(crate) const INDEX_KEYS: &[&str] = &["exclude", "include"];

/// The raw `[enrichment.secrets]` table.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(expecting = "the [enrichment.secrets] table")]
#[schemars(deny_unknown_fields, transform = crate::schema::every_key_optional)]
pub(crate) struct RawSecrets {
    #[schemars(schema_with = "crate::schema::secrets_action")]
    pub(crate) action: Option<Text>,
}

/// The keys of `[enrichment.secrets]` that enrich reads.
pub(crate) const SECRETS_KEYS: &[&str] = &["action"];

/// Checks and converts both tables; `origin` names the layer a key came from.
pub(crate) fn resolve(
    index: Option<&RawIndex>,
    secrets: Option<&RawSecrets>,
    origin: &dyn Fn(&str) -> Source,
) -> Result<(IndexConfig, SecretsConfig), ConfigError> {
    let globs = |list: Option<&TextList>, key: &str| -> Result<Vec<String>, ConfigError> {
        let mut globs = Vec::new();
        for glob in list.iter().flat_map(|l| &l.0).filter_map(Text::non_blank) {
            GlobBuilder::new(&glob)
                .build()
                .map_err(|e| ConfigError::Invalid {
                    key: key.to_owned(),
                    origin: origin(key),
                    line: None,
                    reason: format!("{glob:?} is not a valid glob: {}", e.kind()),
                })?;
            globs.push(glob);
        }
        Ok(globs)
    };
    let index = IndexConfig {
        exclude: globs(
            index.and_then(|i| i.exclude.as_ref()),
            "enrichment.index.exclude",
        )?,
        include: globs(
            index.and_then(|i| i.include.as_ref()),
            "enrichment.index.include",
        )?,
    };
    let action = match secrets
        .and_then(|s| s.action.as_ref())
        .map(|a| a.0.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("redact") => SecretsAction::Redact,
        Some("skip") => SecretsAction::Skip,
        Some(other) => {
            let key = "enrichment.secrets.action";
            return Err(ConfigError::Invalid {
                key: key.to_owned(),
                origin: origin(key),
                line: None,
                reason: format!("{other:?} (expected \"redact\" or \"skip\")"),
            });
        }
    };
    Ok((index, SecretsConfig { action }))
}

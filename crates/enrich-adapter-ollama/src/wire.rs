//! Ollama's JSON, as far as the adapter reads and writes it. Private to the crate.

use std::borrow::Cow;

use enrich_backends::OutputSchema;
use enrich_config::Options;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of `POST /api/generate`.
#[derive(Debug, Serialize)]
pub(crate) struct GenerateBody<'a> {
    pub(crate) model: &'a str,
    pub(crate) prompt: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system: Option<&'a str>,
    pub(crate) stream: bool,
    /// A JSON Schema object, or the string `"json"`.
    pub(crate) format: Format<'a>,
    #[serde(skip_serializing_if = "is_empty")]
    pub(crate) options: Cow<'a, Options>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) keep_alive: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) think: Option<&'a Value>,
}

/// Ollama's `format`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Format<'a> {
    /// The output must follow this JSON Schema.
    Schema(&'a OutputSchema),
    /// `"json"`: any JSON object.
    Json(&'static str),
}

fn is_empty(options: &Options) -> bool {
    options.is_empty()
}

/// An answer of `POST /api/generate`: the whole answer (`stream: false`), or one NDJSON line of
/// a streamed one. Every field is optional so that an error line parses too.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GenerateReply {
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) response: String,
    #[serde(default)]
    pub(crate) thinking: Option<String>,
    pub(crate) done: Option<bool>,
    pub(crate) done_reason: Option<String>,
    pub(crate) total_duration: Option<u64>,
    pub(crate) load_duration: Option<u64>,
    /// The prompt's tokens, those read from the prompt cache included when
    /// `prompt_eval_cached_count` is reported.
    pub(crate) prompt_eval_count: Option<u64>,
    /// The prompt tokens read from the prompt cache (recent Ollama versions).
    pub(crate) prompt_eval_cached_count: Option<u64>,
    pub(crate) prompt_eval_duration: Option<u64>,
    pub(crate) eval_count: Option<u64>,
    pub(crate) eval_duration: Option<u64>,
    /// Set instead of everything else when the request failed.
    pub(crate) error: Option<String>,
}

/// Ollama's error body, `{"error": "…"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: String,
}

/// `GET /api/version`.
#[derive(Debug, Deserialize)]
pub(crate) struct VersionReply {
    pub(crate) version: String,
}

/// `GET /api/tags`: the pulled models.
#[derive(Debug, Deserialize)]
pub(crate) struct TagsReply {
    #[serde(default)]
    pub(crate) models: Vec<TagEntry>,
}

/// One pulled model.
#[derive(Debug, Deserialize)]
pub(crate) struct TagEntry {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) model: String,
    /// The SHA-256 of the model's manifest: which weights the name stands for now.
    #[serde(default)]
    pub(crate) digest: Option<String>,
}

/// The body of `POST /api/show`.
#[derive(Debug, Serialize)]
pub(crate) struct ShowBody<'a> {
    pub(crate) model: &'a str,
}

/// `POST /api/show`, as far as the health check reads it.
#[derive(Debug, Deserialize)]
pub(crate) struct ShowReply {
    #[serde(default)]
    pub(crate) model_info: serde_json::Map<String, Value>,
}

impl ShowReply {
    /// The model's context length: `model_info["<arch>.context_length"]`, where `<arch>` is
    /// `model_info["general.architecture"]`.
    pub(crate) fn context_length(&self) -> Option<u64> {
        let arch = self.model_info.get("general.architecture")?.as_str()?;
        self.model_info
            .get(&format!("{arch}.context_length"))?
            .as_u64()
    }
}

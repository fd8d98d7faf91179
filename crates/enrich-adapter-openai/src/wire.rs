//! OpenAI's chat completions JSON, as far as the adapter reads and writes it. Private to the
//! crate.

use enrich_backends::OutputSchema;
use enrich_config::Options;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of `POST /chat/completions`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatBody<'a> {
    pub(crate) model: &'a str,
    pub(crate) messages: Vec<Message<'a>>,
    pub(crate) stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_tokens: Option<u32>,
    /// The backend's options, as top-level fields (`temperature`, `seed`, …).
    #[serde(flatten)]
    pub(crate) fields: &'a Options,
}

/// One chat message.
#[derive(Debug, Serialize)]
pub(crate) struct Message<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: &'a str,
}

/// `response_format`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ResponseFormat<'a> {
    /// Any JSON object.
    JsonObject,
    /// JSON following a schema (structured outputs).
    JsonSchema { json_schema: JsonSchema<'a> },
}

/// `response_format.json_schema`.
#[derive(Debug, Serialize)]
pub(crate) struct JsonSchema<'a> {
    /// Required by OpenAI: `[a-zA-Z0-9_-]`, at most 64 characters.
    pub(crate) name: String,
    pub(crate) schema: &'a OutputSchema,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) strict: Option<bool>,
}

/// An answer of `POST /chat/completions`. Every field is optional so that anything JSON parses,
/// and what is missing is judged by the adapter.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChatReply {
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) choices: Vec<Choice>,
    pub(crate) usage: Option<Usage>,
    /// llama.cpp's server adds its timings.
    pub(crate) timings: Option<Timings>,
    /// Some proxies answer a failure with a 200 and an error object.
    pub(crate) error: Option<Value>,
}

/// One choice (the adapter asks for one).
#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub(crate) message: ReplyMessage,
    pub(crate) finish_reason: Option<String>,
}

/// The assistant's message.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReplyMessage {
    pub(crate) content: Option<String>,
    /// OpenAI's structured outputs: the model declined, and says why.
    pub(crate) refusal: Option<String>,
    /// vLLM's, llama.cpp's and DeepSeek's reasoning text.
    pub(crate) reasoning_content: Option<String>,
    /// Ollama's and OpenRouter's reasoning text.
    pub(crate) reasoning: Option<String>,
}

impl ReplyMessage {
    /// The reasoning text, under whichever name the server uses.
    pub(crate) fn reasoning(&self) -> Option<&str> {
        [&self.reasoning_content, &self.reasoning]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .find(|text| !text.trim().is_empty())
    }
}

/// `usage`.
#[derive(Debug, Deserialize)]
pub(crate) struct Usage {
    /// The prompt's tokens, those read from the prompt cache included.
    pub(crate) prompt_tokens: Option<u64>,
    pub(crate) completion_tokens: Option<u64>,
    pub(crate) prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Deserialize)]
pub(crate) struct PromptTokensDetails {
    /// The prompt tokens read from the prompt cache.
    pub(crate) cached_tokens: Option<u64>,
}

/// llama.cpp's `timings`: durations in milliseconds, `prompt_n` the prompt tokens it evaluated
/// for this request (not those it reused from its cache, `cache_n`).
#[derive(Debug, Deserialize)]
pub(crate) struct Timings {
    pub(crate) prompt_n: Option<u64>,
    pub(crate) prompt_ms: Option<f64>,
    pub(crate) predicted_ms: Option<f64>,
}

/// What an error body says, read leniently: OpenAI's `{"error": {"message", "type", "code"}}`,
/// or `{"error": "…"}`, `{"detail": "…"}`, `{"message": "…"}`, or plain text.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorInfo {
    pub(crate) message: String,
    /// `error.type` (`insufficient_quota`, `invalid_request_error`, …).
    pub(crate) kind: Option<String>,
    /// `error.code`, a string or a number (`context_length_exceeded`, `insufficient_quota`, …).
    pub(crate) code: Option<String>,
}

impl ErrorInfo {
    /// Reads an error body.
    pub(crate) fn from_body(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) if value.is_object() => Self::from_value(&value),
            _ => Self {
                message: String::from_utf8_lossy(body).into_owned(),
                ..Self::default()
            },
        }
    }

    /// Reads an error object: the whole body, or a 200's `error` field.
    pub(crate) fn from_value(value: &Value) -> Self {
        let text = |v: Option<&Value>| match v? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let error = value.get("error").unwrap_or(value);
        let message = text(error.get("message"))
            .or_else(|| text(Some(error)))
            .or_else(|| text(value.get("detail")))
            .or_else(|| text(value.get("message")))
            .unwrap_or_else(|| value.to_string());
        Self {
            message,
            kind: text(error.get("type")),
            code: text(error.get("code")),
        }
    }
}

/// `GET /models`.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelsReply {
    pub(crate) data: Vec<ModelEntry>,
}

/// One listed model.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelEntry {
    pub(crate) id: String,
    /// vLLM's context length.
    pub(crate) max_model_len: Option<u64>,
    /// The context length as OpenRouter and others call it.
    pub(crate) context_length: Option<u64>,
    /// The weights' digest, from servers that list one (not part of OpenAI's own listing).
    #[serde(default)]
    pub(crate) digest: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_bodies_are_read_in_every_shape_servers_use() {
        let check = |body: &str, message: &str, kind: Option<&str>, code: Option<&str>| {
            let info = ErrorInfo::from_body(body.as_bytes());
            assert_eq!(
                info,
                ErrorInfo {
                    message: message.to_owned(),
                    kind: kind.map(str::to_owned),
                    code: code.map(str::to_owned),
                },
                "{body}"
            );
        };
        check(
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            "You exceeded your current quota",
            Some("insufficient_quota"),
            Some("insufficient_quota"),
        );
        // vLLM: a numeric code.
        check(
            r#"{"error":{"message":"maximum context length is 2048","type":"BadRequestError","code":400}}"#,
            "maximum context length is 2048",
            Some("BadRequestError"),
            Some("400"),
        );
        check(
            r#"{"error":"model not found"}"#,
            "model not found",
            None,
            None,
        );
        check(r#"{"detail":"Not Found"}"#, "Not Found", None, None);
        check(r#"{"message":"busy"}"#, "busy", None, None);
        check(
            "<html>bad gateway</html>",
            "<html>bad gateway</html>",
            None,
            None,
        );
        check(r#"{"odd":1}"#, r#"{"odd":1}"#, None, None);
    }

    #[test]
    fn the_response_format_has_openais_shape() {
        let schema = OutputSchema::from(json!({"type": "object"}));
        let strict = ResponseFormat::JsonSchema {
            json_schema: JsonSchema {
                name: "enrichment_v1".to_owned(),
                schema: &schema,
                strict: Some(true),
            },
        };
        assert_eq!(
            serde_json::to_value(strict).unwrap(),
            json!({"type": "json_schema", "json_schema": {
                "name": "enrichment_v1", "schema": {"type": "object"}, "strict": true,
            }})
        );
        assert_eq!(
            serde_json::to_value(ResponseFormat::JsonObject).unwrap(),
            json!({"type": "json_object"})
        );
    }
}

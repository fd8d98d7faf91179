//! A backend entry read into what the adapter needs for every request, checked once.

use std::fmt;
use std::time::Duration;

use enrich_backends::http::{connect_timeout, request_timeout, shown_base_url};
use enrich_config::{BackendSpec, Options, Secret, redact_url, redacted_options};
use reqwest::Url;
use serde_json::Value;

use crate::error::OpenAiConfigError;

/// The base URL of a backend without `url`: OpenAI's own API.
pub const DEFAULT_URL: &str = "https://api.openai.com/v1";

/// The variable holding the API key of a backend without `api_key_env`.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Option keys that are enrich's own and never become request fields: `response_format` and
/// `strict` shape the request's `response_format`, `stream` must stay off. (`max_in_flight` is
/// the backend spec's own field: the config layer takes it out of `options`.)
const OWN_OPTION_KEYS: [&str; 3] = ["response_format", "strict", "stream"];

/// Request fields the adapter fills in from the request itself.
const RESERVED_KEYS: [&str; 2] = ["model", "messages"];

/// What to send as `response_format` (option `response_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormatMode {
    /// `{"type": "json_schema", …}` with the request's schema; `json_object` without one.
    JsonSchema,
    /// `{"type": "json_object"}`: any JSON object, for servers that refuse schemas.
    JsonObject,
    /// No `response_format` at all, for servers that refuse the field.
    None,
}

/// What one OpenAI-compatible backend entry means, checked when the adapter is built. Its
/// `Debug` output shows the URLs through [`redact_url`] and the key as `[redacted]`.
pub(crate) struct Settings {
    /// `POST {url}/chat/completions` (may carry the URL's credentials, which are sent as basic
    /// auth).
    pub(crate) chat_url: Url,
    /// The base URL, as configured (credentials and query kept): what [`Settings::endpoint`]
    /// appends paths to.
    pub(crate) base_url: Url,
    /// `GET {url}/models`.
    pub(crate) models_url: Url,
    /// The base URL without credentials, query or trailing slash, for messages and metrics.
    pub(crate) host: String,
    /// The total time one request may take, body included.
    pub(crate) timeout: Duration,
    /// The time a connection may take: the total timeout, at most 10 s.
    pub(crate) connect_timeout: Duration,
    /// The `response_format` mode.
    pub(crate) format: FormatMode,
    /// `json_schema.strict`, only when configured.
    pub(crate) strict: Option<bool>,
    /// Everything else from the options table, sent as top-level request fields.
    pub(crate) fields: Options,
    /// The variable the API key is read from (`api_key_env`, else `OPENAI_API_KEY`).
    pub(crate) api_key_var: String,
    /// The key sent as a bearer token, if the variable is set.
    pub(crate) api_key: Option<Secret>,
    /// The largest answer body read (`max_response_bytes`).
    pub(crate) max_response_bytes: u64,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = |url: &Url| redact_url(url.as_str());
        f.debug_struct("Settings")
            .field("chat_url", &url(&self.chat_url))
            .field("models_url", &url(&self.models_url))
            .field("host", &self.host)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("format", &self.format)
            .field("strict", &self.strict)
            .field("fields", &redacted_options(&self.fields))
            .field("api_key_var", &self.api_key_var)
            .field("api_key", &self.api_key)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl Settings {
    /// Reads and checks `spec`, reading the API key from the environment.
    pub(crate) fn from_spec(spec: &BackendSpec) -> Result<Self, OpenAiConfigError> {
        Self::from_spec_with(spec, |var| std::env::var(var).ok())
    }

    /// Reads and checks `spec`, reading variables through `env`.
    pub(crate) fn from_spec_with(
        spec: &BackendSpec,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, OpenAiConfigError> {
        let base = parse_base_url(spec.url.as_deref().unwrap_or(DEFAULT_URL))?;
        let timeout = request_timeout(spec)
            .map_err(|seconds| OpenAiConfigError::InvalidTimeout { seconds })?;

        let mut fields = spec.options.clone();
        let format = match fields.get("response_format") {
            None | Some(Value::Null) => FormatMode::JsonSchema,
            Some(Value::String(mode)) if mode == "json_schema" => FormatMode::JsonSchema,
            Some(Value::String(mode)) if mode == "json_object" => FormatMode::JsonObject,
            Some(Value::String(mode)) if mode == "none" => FormatMode::None,
            Some(other) => {
                return Err(invalid_option(
                    "response_format",
                    "\"json_schema\", \"json_object\" or \"none\"",
                    other,
                ));
            }
        };
        let strict = match fields.get("strict") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(strict)) => Some(*strict),
            Some(other) => return Err(invalid_option("strict", "true or false", other)),
        };
        match fields.get("stream") {
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(other) => {
                return Err(invalid_option(
                    "stream",
                    "false (this adapter reads whole answers, never streams)",
                    other,
                ));
            }
        }
        if let Some(key) = RESERVED_KEYS.iter().find(|key| fields.contains_key(**key)) {
            return Err(OpenAiConfigError::ReservedOption {
                key: (*key).to_owned(),
            });
        }
        fields.retain(|key, _| !OWN_OPTION_KEYS.contains(&key.as_str()));

        let (api_key_var, api_key) = match &spec.api_key_env {
            Some(var) => {
                let key = env(var)
                    .filter(|key| !key.is_empty())
                    .ok_or_else(|| OpenAiConfigError::MissingApiKey { var: var.clone() })?;
                (var.clone(), Some(Secret::new(key)))
            }
            // The default variable is optional: local servers need no key.
            None => (
                DEFAULT_API_KEY_ENV.to_owned(),
                env(DEFAULT_API_KEY_ENV)
                    .filter(|key| !key.is_empty())
                    .map(Secret::new),
            ),
        };

        let endpoint = |path: &str| join(&base, path);
        Ok(Self {
            chat_url: endpoint("chat/completions"),
            models_url: endpoint("models"),
            base_url: base.clone(),
            host: shown_base_url(base.as_str()),
            timeout,
            connect_timeout: connect_timeout(timeout),
            format,
            strict,
            fields,
            api_key_var,
            api_key,
            max_response_bytes: spec.max_response_bytes(),
        })
    }
}

/// Parses the base URL: an absolute `http` or `https` URL with a host.
fn parse_base_url(raw: &str) -> Result<Url, OpenAiConfigError> {
    let raw = raw.trim();
    let invalid = |reason: String| OpenAiConfigError::InvalidUrl {
        url: redact_url(raw),
        reason,
    };
    if !raw.contains("://") {
        return Err(invalid("it has no scheme".to_owned()));
    }
    let url = Url::parse(raw).map_err(|err| invalid(err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OpenAiConfigError::UnsupportedScheme {
            url: redact_url(raw),
            scheme: url.scheme().to_owned(),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host".to_owned()));
    }
    Ok(url)
}

fn invalid_option(key: &'static str, expected: &'static str, found: &Value) -> OpenAiConfigError {
    OpenAiConfigError::InvalidOption {
        key,
        expected,
        found: found.to_string(),
    }
}

impl Settings {
    /// `{url}/{path}`: the base URL with `path` appended (its query and credentials kept).
    pub(crate) fn endpoint(&self, path: &str) -> Url {
        join(&self.base_url, path)
    }
}

/// `base` with `path` appended to its path.
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(url: Option<&str>, options: Value) -> BackendSpec {
        let Value::Object(options) = options else {
            panic!("options must be an object")
        };
        BackendSpec {
            url: url.map(str::to_owned),
            options,
            ..BackendSpec::new("cloud", "default", "openai", "gpt-4o-mini")
        }
    }

    #[test]
    fn debug_output_never_shows_the_url_credentials() {
        let spec = spec(
            Some("http://u:PASS@127.0.0.1:1/v1?api_key=QUERYKEY"),
            json!({}),
        );
        let settings = Settings::from_spec_with(&spec, |_| Some("sk-KEY".to_owned())).unwrap();
        let shown = format!("{settings:?}");
        for secret in ["PASS", "QUERYKEY", "sk-KEY"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("http://[redacted]@127.0.0.1:1/v1/chat/completions?api_key=[redacted]"),
            "{shown}"
        );
        let adapter = crate::OpenAiAdapter::new(spec).unwrap();
        let shown = format!("{adapter:?}");
        for secret in ["PASS", "QUERYKEY"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn endpoints_keep_the_path_and_query_and_the_host_drops_credentials() {
        let check = |url: Option<&str>, chat: &str, models: &str, host: &str| {
            let settings = Settings::from_spec_with(&spec(url, json!({})), |_| None).unwrap();
            assert_eq!(settings.chat_url.as_str(), chat, "{url:?}");
            assert_eq!(settings.models_url.as_str(), models, "{url:?}");
            assert_eq!(settings.host, host, "{url:?}");
        };
        check(
            None,
            "https://api.openai.com/v1/chat/completions",
            "https://api.openai.com/v1/models",
            "https://api.openai.com/v1",
        );
        check(
            Some("http://localhost:8000/v1/"),
            "http://localhost:8000/v1/chat/completions",
            "http://localhost:8000/v1/models",
            "http://localhost:8000/v1",
        );
        check(
            Some("https://api.groq.com/openai/v1"),
            "https://api.groq.com/openai/v1/chat/completions",
            "https://api.groq.com/openai/v1/models",
            "https://api.groq.com/openai/v1",
        );
        check(
            Some("https://me:s3cret@proxy.example/v1?api-version=2024-10-21"),
            "https://me:s3cret@proxy.example/v1/chat/completions?api-version=2024-10-21",
            "https://me:s3cret@proxy.example/v1/models?api-version=2024-10-21",
            "https://proxy.example/v1",
        );
    }

    #[test]
    fn options_split_into_enrichs_own_keys_and_request_fields() {
        let settings = Settings::from_spec_with(
            &spec(
                None,
                json!({
                    "response_format": "json_object", "strict": true, "stream": false,
                    "temperature": 0, "seed": 7, "top_p": 0.9,
                }),
            ),
            |_| None,
        )
        .unwrap();
        assert_eq!(settings.format, FormatMode::JsonObject);
        assert_eq!(settings.strict, Some(true));
        assert_eq!(
            Value::Object(settings.fields),
            json!({"temperature": 0, "seed": 7, "top_p": 0.9})
        );
        let defaults = Settings::from_spec_with(&spec(None, json!({})), |_| None).unwrap();
        assert_eq!(
            (defaults.format, defaults.strict),
            (FormatMode::JsonSchema, None)
        );
        let none =
            Settings::from_spec_with(&spec(None, json!({"response_format": "none"})), |_| None)
                .unwrap();
        assert_eq!(none.format, FormatMode::None);
    }

    #[test]
    fn the_key_comes_from_api_key_env_else_openai_api_key_which_may_be_unset() {
        let env = |var: &str| match var {
            "OPENAI_API_KEY" => Some("sk-default".to_owned()),
            "GROQ_API_KEY" => Some("gsk-groq".to_owned()),
            "EMPTY_KEY" => Some(String::new()),
            _ => None,
        };
        let check = |api_key_env: Option<&str>, env: &dyn Fn(&str) -> Option<String>| {
            let entry = BackendSpec {
                api_key_env: api_key_env.map(str::to_owned),
                ..spec(None, json!({}))
            };
            Settings::from_spec_with(&entry, env)
                .map(|s| (s.api_key_var, s.api_key.map(|k| k.expose().to_owned())))
                .map_err(|err| err.to_string())
        };
        assert_eq!(
            check(None, &env),
            Ok(("OPENAI_API_KEY".to_owned(), Some("sk-default".to_owned())))
        );
        assert_eq!(
            check(Some("GROQ_API_KEY"), &env),
            Ok(("GROQ_API_KEY".to_owned(), Some("gsk-groq".to_owned())))
        );
        assert_eq!(
            check(None, &|_| None),
            Ok(("OPENAI_API_KEY".to_owned(), None))
        );
        for var in ["UNSET_KEY", "EMPTY_KEY"] {
            let err = check(Some(var), &env).unwrap_err();
            assert!(
                err.starts_with(&format!("`api_key_env` names the variable {var}")),
                "{err}"
            );
        }
    }

    #[test]
    fn broken_urls_are_shown_without_credentials() {
        let err = parse_base_url("https://me:pw@bad host/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://[redacted]@bad host/x"), "{err}");
        assert!(!err.contains("pw"), "{err}");
    }
}

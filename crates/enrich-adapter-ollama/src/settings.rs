//! A backend entry read into what the adapter needs for every request, checked once.

use std::fmt;
use std::time::Duration;

use enrich_backends::http::{connect_timeout, request_timeout, shown_base_url};
use enrich_config::{
    BackendSpec, DEFAULT_OLLAMA_URL, Options, Secret, normalize_ollama_host, redact_url,
    redacted_options,
};
use reqwest::Url;
use serde_json::Value;

use crate::error::OllamaConfigError;

/// Option keys that are enrich's own and never go into Ollama's `options` object: `stream`,
/// `keep_alive` and `think` become top-level request fields. (`max_in_flight` is the backend
/// spec's own field: the config layer takes it out of `options`.)
pub(crate) const OWN_OPTION_KEYS: [&str; 3] = ["stream", "keep_alive", "think"];

/// What one Ollama backend entry means, checked when the adapter is built. Its `Debug` output
/// shows the URLs through [`redact_url`] and the key as `[redacted]`.
pub(crate) struct Settings {
    /// `POST /api/generate` (may carry the URL's credentials; reqwest sends them as basic auth).
    pub(crate) generate_url: Url,
    /// `GET /api/version`.
    pub(crate) version_url: Url,
    /// `GET /api/tags`.
    pub(crate) tags_url: Url,
    /// `POST /api/show`.
    pub(crate) show_url: Url,
    /// The base URL without credentials or trailing slash, for messages and metrics.
    pub(crate) host: String,
    /// The total time one request may take, body included.
    pub(crate) timeout: Duration,
    /// The time a connection (TCP, and TLS for `https://`) may take: the total timeout, at most
    /// 10 s.
    pub(crate) connect_timeout: Duration,
    /// Stream the answer as NDJSON (`options.stream = true`).
    pub(crate) stream: bool,
    /// Ollama's `keep_alive`, only when configured.
    pub(crate) keep_alive: Option<Value>,
    /// Ollama's `think`, only when configured.
    pub(crate) think: Option<Value>,
    /// Everything else from the options table, sent as Ollama's `options`.
    pub(crate) options: Options,
    /// The key sent as a bearer token (`api_key_env`).
    pub(crate) api_key: Option<Secret>,
    /// The largest answer body read (`max_response_bytes`).
    pub(crate) max_response_bytes: u64,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = |url: &Url| redact_url(url.as_str());
        f.debug_struct("Settings")
            .field("generate_url", &url(&self.generate_url))
            .field("version_url", &url(&self.version_url))
            .field("tags_url", &url(&self.tags_url))
            .field("show_url", &url(&self.show_url))
            .field("host", &self.host)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("stream", &self.stream)
            .field("keep_alive", &self.keep_alive)
            .field("think", &self.think)
            .field("options", &redacted_options(&self.options))
            .field("api_key", &self.api_key)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl Settings {
    /// Reads and checks `spec`.
    pub(crate) fn from_spec(spec: &BackendSpec) -> Result<Self, OllamaConfigError> {
        let base = parse_base_url(spec.url.as_deref().unwrap_or(DEFAULT_OLLAMA_URL))?;
        let timeout = request_timeout(spec)
            .map_err(|seconds| OllamaConfigError::InvalidTimeout { seconds })?;

        let mut options = spec.options.clone();
        let stream = match options.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => *stream,
            Some(other) => return Err(invalid_option("stream", "true or false", other)),
        };
        let keep_alive = match options.get("keep_alive") {
            None | Some(Value::Null) => None,
            Some(value @ (Value::String(_) | Value::Number(_))) => Some(value.clone()),
            Some(other) => {
                return Err(invalid_option(
                    "keep_alive",
                    "a duration such as \"10m\" or \"-1\", or a number of seconds",
                    other,
                ));
            }
        };
        let think = match options.get("think") {
            None | Some(Value::Null) => None,
            Some(value @ (Value::Bool(_) | Value::String(_))) => Some(value.clone()),
            Some(other) => {
                return Err(invalid_option(
                    "think",
                    "true, false, or a level such as \"low\"",
                    other,
                ));
            }
        };
        options.retain(|key, _| !OWN_OPTION_KEYS.contains(&key.as_str()));

        let api_key = match &spec.api_key_env {
            None => None,
            Some(var) => Some(
                spec.api_key()
                    .ok_or_else(|| OllamaConfigError::MissingApiKey { var: var.clone() })?,
            ),
        };

        let endpoint = |path: &str| {
            let mut url = base.clone();
            let joined = format!("{}/{path}", base.path().trim_end_matches('/'));
            url.set_path(&joined);
            url
        };
        Ok(Self {
            generate_url: endpoint("api/generate"),
            version_url: endpoint("api/version"),
            tags_url: endpoint("api/tags"),
            show_url: endpoint("api/show"),
            host: shown_base_url(base.as_str()),
            timeout,
            connect_timeout: connect_timeout(timeout),
            stream,
            keep_alive,
            think,
            options,
            api_key,
            max_response_bytes: spec.max_response_bytes(),
        })
    }
}

/// Parses the base URL. A full URL (`scheme://…`) is taken as it is; a bare host is read the
/// way Ollama's own clients read `OLLAMA_HOST` (`gpu-box`, `gpu-box:8080` and `:8080` get
/// `http://` and, without a port, 11434).
fn parse_base_url(raw: &str) -> Result<Url, OllamaConfigError> {
    let raw = raw.trim();
    let full = if raw.contains("://") {
        raw.to_owned()
    } else {
        normalize_ollama_host(raw)
    };
    let url = Url::parse(&full).map_err(|err| OllamaConfigError::InvalidUrl {
        url: redact_url(raw),
        reason: err.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OllamaConfigError::UnsupportedScheme {
            url: redact_url(raw),
            scheme: url.scheme().to_owned(),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(OllamaConfigError::InvalidUrl {
            url: redact_url(raw),
            reason: "it names no host".to_owned(),
        });
    }
    Ok(url)
}

fn invalid_option(key: &'static str, expected: &'static str, found: &Value) -> OllamaConfigError {
    OllamaConfigError::InvalidOption {
        key,
        expected,
        found: found.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_url(url: &str) -> BackendSpec {
        BackendSpec {
            url: Some(url.to_owned()),
            ..BackendSpec::new("local", "default", "ollama", "qwen2.5")
        }
    }

    #[test]
    fn debug_output_never_shows_the_url_credentials() {
        let spec = spec_with_url("http://u:PASS@127.0.0.1:1/prefix");
        let settings = Settings::from_spec(&spec).unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("PASS"), "{shown}");
        assert!(
            shown.contains("http://[redacted]@127.0.0.1:1/prefix/api/generate"),
            "{shown}"
        );
        let adapter = crate::OllamaAdapter::new(spec).unwrap();
        let shown = format!("{adapter:?}");
        assert!(!shown.contains("PASS"), "{shown}");
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_the_host_drops_credentials() {
        let check = |url: &str, generate: &str, host: &str| {
            let settings = Settings::from_spec(&spec_with_url(url)).unwrap();
            assert_eq!(settings.generate_url.as_str(), generate, "{url}");
            assert_eq!(settings.host, host, "{url}");
        };
        check(
            "http://localhost:11434",
            "http://localhost:11434/api/generate",
            "http://localhost:11434",
        );
        check(
            "http://gpu:8080/ollama/",
            "http://gpu:8080/ollama/api/generate",
            "http://gpu:8080/ollama",
        );
        check(
            "gpu-box",
            "http://gpu-box:11434/api/generate",
            "http://gpu-box:11434",
        );
        check(
            ":8080",
            "http://127.0.0.1:8080/api/generate",
            "http://127.0.0.1:8080",
        );
        check(
            "https://ollama.example:443/",
            "https://ollama.example/api/generate",
            "https://ollama.example",
        );
        check(
            "http://me:s3cret@gpu:8080",
            "http://me:s3cret@gpu:8080/api/generate",
            "http://gpu:8080",
        );
    }

    #[test]
    fn only_http_and_https_are_spoken() {
        let err = parse_base_url("ftp://me:pw@gpu:21")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("`url` 'ftp://[redacted]@gpu:21' uses the scheme 'ftp'"),
            "{err}"
        );
        assert!(parse_base_url("https://gpu:11434").is_ok());
    }

    #[test]
    fn broken_urls_are_shown_without_credentials() {
        let err = parse_base_url("http://me:pw@bad host/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://[redacted]@bad host/x"), "{err}");
        assert!(!err.contains("pw"), "{err}");
    }
}

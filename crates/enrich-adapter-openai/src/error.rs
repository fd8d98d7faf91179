//! The crate's error: a backend entry this adapter cannot serve.

/// An OpenAI-compatible backend entry that cannot be set up. Per-request failures are
/// [`BackendError`](enrich_backends::BackendError)s instead.
///
/// Messages name the offending key of the backend entry (`url`, `timeout_seconds`, an option,
/// `api_key_env`) and how to fix it; the [`AdapterRegistry`](enrich_backends::AdapterRegistry)
/// adds which entry it was. Neither a URL's credentials nor an API key is ever shown.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiConfigError {
    /// `url` does not parse as an absolute URL.
    #[error(
        "`url` '{url}' is not a valid URL ({reason}); write it like https://api.openai.com/v1 \
         or http://localhost:8000/v1"
    )]
    InvalidUrl {
        /// The URL as configured, credentials removed.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// `url` uses a scheme other than `http` or `https`.
    #[error("`url` '{url}' uses the scheme '{scheme}'; use an https:// or http:// URL")]
    UnsupportedScheme {
        /// The URL as configured, credentials removed.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// `timeout_seconds` is zero, negative or not a finite number.
    #[error("`timeout_seconds` is {seconds}; it must be a positive number of seconds, e.g. 120")]
    InvalidTimeout {
        /// The configured value.
        seconds: f64,
    },
    /// An option has a value this adapter cannot use.
    #[error("option `{key}` must be {expected}, not {found}; fix it in the backend's `options`")]
    InvalidOption {
        /// The option's key (`response_format`, `strict`, `stream`).
        key: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What was configured.
        found: String,
    },
    /// An option names a request field that enrich fills in itself.
    #[error(
        "option `{key}` cannot be set: enrich sends `{key}` itself; remove it from the backend's \
         `options`"
    )]
    ReservedOption {
        /// The option's key (`model`, `messages`).
        key: String,
    },
    /// `api_key_env` names a variable that is unset or empty.
    #[error(
        "`api_key_env` names the variable {var}, which is not set or empty; export {var} with \
         the API key, or remove `api_key_env` for a server that needs no key"
    )]
    MissingApiKey {
        /// The variable's name.
        var: String,
    },
    /// The API key cannot be sent in an HTTP header.
    #[error(
        "the API key in {var} contains characters an HTTP header cannot carry (a newline?); \
         fix the value of {var}"
    )]
    InvalidApiKey {
        /// The variable's name.
        var: String,
    },
    /// `url` is an `https://` URL and the system's store gave no usable root certificate.
    #[error("`url` '{url}' cannot be reached over TLS: {source}")]
    NoRootCertificates {
        /// The URL as configured, credentials removed.
        url: String,
        /// What went wrong.
        #[source]
        source: enrich_backends::BackendsError,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {source}")]
    Client {
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
}

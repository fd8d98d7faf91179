//! Keeping credentials out of what enrich shows: [`redact_url`] for URLs with credentials in
//! them, [`credential_option`] for credentials put where they would be sent in a request body.

use crate::{Options, Secret, is_secret_key};

/// `raw` as it may be shown or stored: the userinfo of its authority (`user:password@`, or a
/// lone token before `@`) replaced by `[redacted]`, and the value of every query parameter
/// whose name looks like a credential ([`is_secret_key`]: `key`, `token`, …) too. Works on
/// text, so it also redacts a URL too broken to parse, and a bare `user:pw@host:port` as
/// `OLLAMA_HOST` may hold. This is the one definition every layer uses to show a backend's URL
/// (`enrich config`, `doctor`, logs, events, errors, the attempt log); the request itself
/// still uses the credentials.
///
/// ```
/// use enrich_config::redact_url;
/// assert_eq!(redact_url("http://u:PASS@gpu:11434/v1"), "http://[redacted]@gpu:11434/v1");
/// assert_eq!(redact_url("u:PASS@gpu:11434"), "[redacted]@gpu:11434");
/// assert_eq!(redact_url("https://h/v1?api_key=K&x=1"), "https://h/v1?api_key=[redacted]&x=1");
/// assert_eq!(redact_url("http://localhost:11434"), "http://localhost:11434");
/// ```
pub fn redact_url(raw: &str) -> String {
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, raw),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(raw.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(Secret::REDACTED);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (path, fragment) = match tail.find('#') {
        Some(hash) => tail.split_at(hash),
        None => (tail, ""),
    };
    match path.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if is_secret_key(name) => {
                        format!("{name}={}", Secret::REDACTED)
                    }
                    _ => param.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(path),
    }
    out.push_str(fragment);
    out
}

/// Option names refused in a backend's `options`, compared lowercased and without `_` or `-`
/// (`api_key`, `API-Key` and `apikey` are one name). Adapters send `options` to the model server
/// in the request body; a credential belongs in an environment variable named by
/// `api_key_env`, which adapters send as a header.
const CREDENTIAL_OPTIONS: [&str; 12] = [
    "apikey",
    "apitoken",
    "accesstoken",
    "authtoken",
    "bearertoken",
    "token",
    "authorization",
    "password",
    "passwd",
    "secret",
    "clientsecret",
    "secretkey",
];

/// The dotted path (`api_key`, `headers.Authorization`) of the first option, at any depth of
/// `options` (tables inside tables, tables inside lists), whose name is a credential's:
/// `api_key`, `apikey`, `api_token`, `access_token`, `auth_token`, `bearer_token`, `token`,
/// `authorization`, `password`, `passwd`, `secret`, `client_secret`, `secret_key`, in any case
/// and with `-` or `_` or neither. Names that merely contain such a word (`max_tokens`,
/// `num_keep`) are not credentials.
pub fn credential_option(options: &Options) -> Option<String> {
    fn find(options: &Options) -> Option<String> {
        for (name, value) in options {
            let normalised: String = name
                .chars()
                .filter(|c| !matches!(c, '_' | '-'))
                .flat_map(char::to_lowercase)
                .collect();
            if CREDENTIAL_OPTIONS.contains(&normalised.as_str()) {
                return Some(name.clone());
            }
            if let Some(inner) = nested(value) {
                return Some(format!("{name}.{inner}"));
            }
        }
        None
    }
    fn nested(value: &serde_json::Value) -> Option<String> {
        match value {
            serde_json::Value::Object(table) => find(table),
            serde_json::Value::Array(items) => items.iter().find_map(nested),
            _ => None,
        }
    }
    find(options)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn userinfo_and_secret_query_values_are_redacted_and_nothing_else() {
        let cases = [
            ("http://u:PASS@host/v1", "http://[redacted]@host/v1"),
            ("http://TOKEN@host", "http://[redacted]@host"),
            (
                "https://u:p@ss@host:8443/x",
                "https://[redacted]@host:8443/x",
            ),
            ("http://me:pw@bad host/x", "http://[redacted]@bad host/x"),
            ("u:PASS@gpu-box:8080", "[redacted]@gpu-box:8080"),
            ("http://host/a@b", "http://host/a@b"),
            (
                "http://host?token=T#frag",
                "http://host?token=[redacted]#frag",
            ),
            (
                "http://host/v1?model=x&key=K",
                "http://host/v1?model=x&key=[redacted]",
            ),
            ("http://localhost:11434", "http://localhost:11434"),
            ("gpu-box", "gpu-box"),
            ("", ""),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact_url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn credential_options_are_found_at_any_depth_by_their_exact_names() {
        let options = |value: serde_json::Value| value.as_object().unwrap().clone();
        let cases = [
            (json!({"api_key": "k"}), Some("api_key")),
            (json!({"API-Key": "k"}), Some("API-Key")),
            (
                json!({"temperature": 0, "Authorization": "Bearer k"}),
                Some("Authorization"),
            ),
            (json!({"access_token": "k"}), Some("access_token")),
            (json!({"password": "k"}), Some("password")),
            (
                json!({"headers": {"x": 1, "authorization": "k"}}),
                Some("headers.authorization"),
            ),
            (json!({"extra": [{"secret": "k"}]}), Some("extra.secret")),
            (
                json!({"max_tokens": 10, "num_keep": 4, "stop": ["token"]}),
                None,
            ),
            (json!({"keep_alive": "5m", "api_key_env": "X"}), None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                credential_option(&options(value.clone())).as_deref(),
                expected,
                "{value}"
            );
        }
    }
}

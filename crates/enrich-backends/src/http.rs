//! What every HTTP adapter decides the same way, over plain values: a status code as a `u16`, a
//! header's value as `&str`, an error chain as `&dyn Error`. No HTTP library here, so any
//! client's types fit, and the cascade's crate stays free of one.
//!
//! An adapter reads its client's answer and calls these for what is not particular to its
//! provider:
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use enrich_backends::FailureKind;
//! use enrich_backends::http::{excerpt, retry_after, says_context_exceeded, status_kind};
//!
//! let said = "the input length exceeds the context length";
//! assert_eq!(status_kind(400, says_context_exceeded(said)), FailureKind::ContextExceeded);
//! assert_eq!(status_kind(503, false), FailureKind::Overloaded);
//! assert_eq!(retry_after(" 7 ", SystemTime::now()), Some(Duration::from_secs(7)));
//! assert_eq!(excerpt("model\n  'x'  not found"), "model 'x' not found");
//! ```
//!
//! URLs are shown through [`enrich_config::redact_url`] (or [`shown_base_url`] for the base URL
//! that names a backend in messages and metrics); answers are read through
//! [`ResponseLimit`](crate::ResponseLimit), and an error answer's body only up to
//! [`ERROR_BODY_BYTES`](crate::ERROR_BODY_BYTES).

use std::error::Error as StdError;
use std::io;
use std::time::{Duration, SystemTime};

use enrich_config::BackendSpec;

use enrich_types::FailureKind;

/// The most characters of a server's error text [`excerpt`] keeps.
pub const EXCERPT_CHARS: usize = 300;

/// The longest wait for a connection (TCP, and TLS for `https://`), whatever the backend's total
/// timeout: a server that does not accept within it is down, not slow.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The kind of a non-success HTTP status, as every provider means it: 401/403 `auth`, 404
/// `model_not_found`, 408 `timeout`, 429/503 `overloaded`, 400 `context_exceeded` when the
/// server's words say so (`context_exceeded`, see [`says_context_exceeded`]), any other 4xx
/// `invalid_request`, the rest `server_error`. An adapter checks what its provider means
/// differently (a quota code, a provider's own status) before calling this.
pub fn status_kind(status: u16, context_exceeded: bool) -> FailureKind {
    match status {
        401 | 403 => FailureKind::Auth,
        404 => FailureKind::ModelNotFound,
        408 => FailureKind::Timeout,
        429 | 503 => FailureKind::Overloaded,
        400 if context_exceeded => FailureKind::ContextExceeded,
        400..=499 => FailureKind::InvalidRequest,
        _ => FailureKind::ServerError,
    }
}

/// Whether a server's error text says the prompt is longer than the model's context, in the
/// words Ollama, OpenAI, vLLM and llama.cpp use (case ignored).
pub fn says_context_exceeded(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "context length",
        "context window",
        "context size",
        "exceeds the context",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// The wait a `Retry-After` value asks for: delay-seconds, or an HTTP date (RFC 9110's three
/// formats; a date before `now` means no wait). `None` for anything else.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `text` on one line, cut to [`EXCERPT_CHARS`] characters (and `…`): how a server's words are
/// quoted in a message.
pub fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// The [`excerpt`] of a body that is not the provider's JSON (an HTML error page, a proxy's
/// text), read as UTF-8 with replacement characters.
pub fn body_excerpt(body: &[u8]) -> String {
    excerpt(&String::from_utf8_lossy(body))
}

/// An error and its sources, `a: b: c`, skipping a source whose text its parent already holds.
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

/// Whether a transport error is the connection breaking (reset, aborted, a broken pipe, closed
/// before the answer ended): an I/O error of those kinds anywhere in its chain.
pub fn is_connection_lost(err: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        source = inner.source();
    }
    false
}

/// A backend's total request timeout (`timeout_seconds`, else the default).
///
/// # Errors
///
/// The configured number when it is zero, negative or not finite: the adapter refuses the
/// backend entry, naming it.
pub fn request_timeout(spec: &BackendSpec) -> Result<Duration, f64> {
    match spec.timeout_seconds {
        Some(seconds) if !(seconds.is_finite() && seconds > 0.0) => Err(seconds),
        _ => Ok(spec.timeout()),
    }
}

/// The time a connection may take under a total `timeout`: the timeout, at most
/// [`MAX_CONNECT_TIMEOUT`]. Health checks take as long at most.
pub fn connect_timeout(timeout: Duration) -> Duration {
    timeout.min(MAX_CONNECT_TIMEOUT)
}

/// A base URL as it names a backend in messages and metrics: without credentials, query,
/// fragment or trailing slash (`http://me:pw@gpu:8080/v1/?k=1` is `http://gpu:8080/v1`).
pub fn shown_base_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let shown = match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    };
    shown.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let check = |status: u16, context: bool, kind: FailureKind| {
            assert_eq!(status_kind(status, context), kind, "{status} {context}");
        };
        check(400, true, FailureKind::ContextExceeded);
        check(400, false, FailureKind::InvalidRequest);
        check(401, false, FailureKind::Auth);
        check(403, false, FailureKind::Auth);
        check(404, false, FailureKind::ModelNotFound);
        check(408, false, FailureKind::Timeout);
        check(413, false, FailureKind::InvalidRequest);
        check(422, false, FailureKind::InvalidRequest);
        check(429, false, FailureKind::Overloaded);
        check(500, true, FailureKind::ServerError);
        check(502, false, FailureKind::ServerError);
        check(503, false, FailureKind::Overloaded);
        check(302, false, FailureKind::ServerError);
    }

    #[test]
    fn context_overflows_are_read_from_every_servers_words() {
        for said in [
            "the input length exceeds the Context Length",
            "This model's maximum context length is 8192 tokens",
            "the request exceeds the available context size, try increasing it",
            "prompt too long for the context window",
        ] {
            assert!(says_context_exceeded(said), "{said}");
        }
        assert!(!says_context_exceeded("invalid options"));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let in_90s = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&in_90s, now), Some(Duration::from_secs(90)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-3", now), None);
    }

    #[test]
    fn excerpts_are_one_line_and_bounded() {
        assert_eq!(excerpt("model\n  'x'  not found"), "model 'x' not found");
        let long = "é".repeat(400);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(
            body_excerpt(b"<html>bad\xffgateway</html>"),
            "<html>bad\u{fffd}gateway</html>"
        );
    }

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error sending request")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chains_join_their_sources_and_find_a_lost_connection() {
        let reset = Wrapper(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(
            error_chain(&reset),
            "error sending request: connection reset"
        );
        assert!(is_connection_lost(&reset));
        let refused = Wrapper(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(!is_connection_lost(&refused));
        // A source whose text the parent repeats is said once.
        let repeated = Wrapper(io::Error::other("error sending request"));
        assert_eq!(error_chain(&repeated), "error sending request");
    }

    #[test]
    fn timeouts_are_positive_and_connecting_takes_at_most_ten_seconds() {
        let spec = |seconds: Option<f64>| BackendSpec {
            timeout_seconds: seconds,
            ..BackendSpec::new("b", "default", "ollama", "m")
        };
        assert_eq!(
            request_timeout(&spec(Some(2.5))),
            Ok(Duration::from_millis(2500))
        );
        assert_eq!(request_timeout(&spec(None)), Ok(spec(None).timeout()));
        for bad in [0.0, -1.0, f64::INFINITY] {
            assert_eq!(request_timeout(&spec(Some(bad))), Err(bad));
        }
        assert!(request_timeout(&spec(Some(f64::NAN))).is_err());
        assert_eq!(
            connect_timeout(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            connect_timeout(Duration::from_secs(120)),
            MAX_CONNECT_TIMEOUT
        );
    }

    #[test]
    fn base_urls_are_shown_without_credentials_query_or_trailing_slash() {
        let check = |url: &str, shown: &str| assert_eq!(shown_base_url(url), shown, "{url}");
        check("http://localhost:11434/", "http://localhost:11434");
        check(
            "http://me:s3cret@gpu:8080/ollama/",
            "http://gpu:8080/ollama",
        );
        check(
            "https://h.example/openai/v1?api-version=2024-06-01#x",
            "https://h.example/openai/v1",
        );
        check("https://[::1]:8000/v1", "https://[::1]:8000/v1");
    }
}

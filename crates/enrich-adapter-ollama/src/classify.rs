//! Pure pieces of failure classification: HTTP status and error text to [`FailureKind`],
//! `Retry-After`, and readable excerpts of what the server said.

use std::error::Error as StdError;
use std::io;
use std::time::{Duration, SystemTime};

use enrich_backends::FailureKind;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::wire::ErrorBody;

/// The most characters of a server's error text quoted in a message.
const EXCERPT_CHARS: usize = 300;

/// The kind of a non-success HTTP answer, given Ollama's error text.
pub(crate) fn status_kind(status: StatusCode, error: &str) -> FailureKind {
    match status.as_u16() {
        401 | 403 => FailureKind::Auth,
        404 => FailureKind::ModelNotFound,
        408 => FailureKind::Timeout,
        429 | 503 => FailureKind::Overloaded,
        400 if mentions_context_length(error) => FailureKind::ContextExceeded,
        // Ollama's "client closed the request": we did not cancel, so the server failed.
        499 => FailureKind::ServerError,
        400..=498 => FailureKind::InvalidRequest,
        _ => FailureKind::ServerError,
    }
}

/// The kind of an `{"error": …}` that arrived with a 200 (a streamed error line, or an error
/// body): the text is all there is to go on.
pub(crate) fn text_kind(error: &str) -> FailureKind {
    let lower = error.to_ascii_lowercase();
    if mentions_context_length(&lower) {
        FailureKind::ContextExceeded
    } else if lower.contains("server busy") {
        FailureKind::Overloaded
    } else if lower.contains("model") && lower.contains("not found") {
        FailureKind::ModelNotFound
    } else {
        FailureKind::ServerError
    }
}

fn mentions_context_length(error: &str) -> bool {
    let lower = error.to_ascii_lowercase();
    ["context length", "context window", "exceeds the context"]
        .iter()
        .any(|needle| lower.contains(needle))
}

/// The wait asked for by `Retry-After`: delay-seconds, or an HTTP date (a date in the past
/// means no wait).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What the server said in an error body: Ollama's `error` field, else the body's text.
pub(crate) fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => excerpt(&error),
        Err(_) => excerpt(&String::from_utf8_lossy(body)),
    }
}

/// `text` on one line, cut to a readable length.
pub(crate) fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// An error and its sources, `a: b: c`, skipping a source that repeats its parent.
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
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

/// Whether a transport error is the connection breaking (reset, aborted, closed early).
pub(crate) fn is_connection_lost(err: &(dyn StdError + 'static)) -> bool {
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

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let check = |status: u16, error: &str, kind: FailureKind| {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(status_kind(status, error), kind, "{status} {error:?}");
        };
        check(
            400,
            "the input length exceeds the context length",
            FailureKind::ContextExceeded,
        );
        check(400, "invalid options", FailureKind::InvalidRequest);
        check(401, "", FailureKind::Auth);
        check(403, "", FailureKind::Auth);
        check(404, "model 'x' not found", FailureKind::ModelNotFound);
        check(408, "", FailureKind::Timeout);
        check(413, "", FailureKind::InvalidRequest);
        check(429, "", FailureKind::Overloaded);
        check(499, "", FailureKind::ServerError);
        check(500, "context length", FailureKind::ServerError);
        check(502, "", FailureKind::ServerError);
        check(503, "server busy", FailureKind::Overloaded);
    }

    #[test]
    fn error_text_after_a_200_is_classified_by_its_words() {
        let check = |error: &str, kind: FailureKind| assert_eq!(text_kind(error), kind, "{error}");
        check(
            "the input length exceeds the Context Length",
            FailureKind::ContextExceeded,
        );
        check("server busy, please try again", FailureKind::Overloaded);
        check(
            "model 'x' not found, try pulling it first",
            FailureKind::ModelNotFound,
        );
        check(
            "an error was encountered while running the model",
            FailureKind::ServerError,
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let check = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers)
        };
        assert_eq!(check(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(check("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));
        let wait = check(&soon).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        assert_eq!(check("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn excerpts_are_one_line_and_bounded() {
        assert_eq!(
            error_text(br#"{"error":"model\n'x' not found"}"#),
            "model 'x' not found"
        );
        assert_eq!(
            error_text(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        let long = "é".repeat(400);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}

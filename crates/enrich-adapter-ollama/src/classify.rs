//! What Ollama means beyond [`enrich_backends::http`]: its 499, the words of an error that
//! arrives with a 200, and its `{"error": …}` body.

use std::time::SystemTime;

use enrich_backends::FailureKind;
use enrich_backends::http::{self, body_excerpt, excerpt, says_context_exceeded};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::wire::ErrorBody;

/// The kind of a non-success HTTP answer, given Ollama's error text.
pub(crate) fn status_kind(status: u16, error: &str) -> FailureKind {
    match status {
        // Ollama's "client closed the request": we did not cancel, so the server failed.
        499 => FailureKind::ServerError,
        _ => http::status_kind(status, says_context_exceeded(error)),
    }
}

/// The kind of an `{"error": …}` that arrived with a 200 (a streamed error line, or an error
/// body): the text is all there is to go on.
pub(crate) fn text_kind(error: &str) -> FailureKind {
    let lower = error.to_ascii_lowercase();
    if says_context_exceeded(&lower) {
        FailureKind::ContextExceeded
    } else if lower.contains("server busy") {
        FailureKind::Overloaded
    } else if lower.contains("model") && lower.contains("not found") {
        FailureKind::ModelNotFound
    } else {
        FailureKind::ServerError
    }
}

/// The wait asked for by `Retry-After`: delay-seconds, or an HTTP date (a date in the past
/// means no wait).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<std::time::Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    http::retry_after(value, SystemTime::now())
}

/// What the server said in an error body: Ollama's `error` field, else the body's text.
pub(crate) fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => excerpt(&error),
        Err(_) => body_excerpt(body),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let check = |status: u16, error: &str, kind: FailureKind| {
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
    fn retry_after_is_read_from_its_header() {
        let check = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers)
        };
        assert_eq!(check(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(check("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(check("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn error_bodies_are_quoted_on_one_line() {
        assert_eq!(
            error_text(br#"{"error":"model\n'x' not found"}"#),
            "model 'x' not found"
        );
        assert_eq!(
            error_text(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }
}

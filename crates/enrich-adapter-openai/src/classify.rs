//! What OpenAI-compatible servers mean beyond [`enrich_backends::http`]: the error object's
//! codes (quota, context length), and the wait a rate-limited server asks for in OpenAI's own
//! headers.

use std::time::{Duration, SystemTime};

use enrich_backends::FailureKind;
use enrich_backends::http::{retry_after, says_context_exceeded};
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::wire::ErrorInfo;

/// The rate limits OpenAI reports: (remaining header, reset header).
const RATE_LIMITS: [(&str, &str); 2] = [
    (
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
];

/// The kind of a non-success HTTP answer, given what its body says.
pub(crate) fn status_kind(status: u16, error: &ErrorInfo) -> FailureKind {
    match status {
        // No credit left: retrying cannot help, and neither can the rest of the run.
        429 if is_quota_exhausted(error) => FailureKind::Auth,
        // A redirect is not followed: the configured `url` is wrong.
        300..=399 => FailureKind::InvalidRequest,
        _ => enrich_backends::http::status_kind(status, is_context_exceeded(error)),
    }
}

/// The kind of an error object that came with a 200 (some proxies answer so): its words are all
/// there is to go on.
pub(crate) fn error_kind(error: &ErrorInfo) -> FailureKind {
    if is_quota_exhausted(error) {
        FailureKind::Auth
    } else if is_context_exceeded(error) {
        FailureKind::ContextExceeded
    } else if error.code.as_deref() == Some("model_not_found") {
        FailureKind::ModelNotFound
    } else if error.code.as_deref() == Some("rate_limit_exceeded") {
        FailureKind::Overloaded
    } else {
        FailureKind::ServerError
    }
}

/// OpenAI's `insufficient_quota` (as `code` or `type`): the account has no credit left.
pub(crate) fn is_quota_exhausted(error: &ErrorInfo) -> bool {
    [&error.code, &error.kind]
        .into_iter()
        .flatten()
        .any(|tag| tag == "insufficient_quota")
        || error
            .message
            .to_ascii_lowercase()
            .contains("exceeded your current quota")
}

/// A prompt longer than the model's context, as OpenAI (`context_length_exceeded`), llama.cpp
/// (`exceed_context_size_error`), vLLM and Ollama say it.
fn is_context_exceeded(error: &ErrorInfo) -> bool {
    let tagged = [&error.code, &error.kind].into_iter().flatten().any(|tag| {
        matches!(
            tag.as_str(),
            "context_length_exceeded" | "exceed_context_size_error"
        )
    });
    tagged || says_context_exceeded(&error.message)
}

/// The wait a server asks for before the next request: the longest of `retry-after-ms`
/// (OpenAI's, in milliseconds), `Retry-After` (seconds or an HTTP date; a date in the past means
/// no wait) and, for each of OpenAI's request and token limits whose `x-ratelimit-remaining-*`
/// is 0, its `x-ratelimit-reset-*`. `None` when no header asks for anything.
pub(crate) fn retry_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let retry_after_ms = header("retry-after-ms")
        .and_then(|ms| ms.parse::<f64>().ok())
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok());
    let retry_after = header(RETRY_AFTER.as_str()).and_then(|value| retry_after(value, now));
    let exhausted = RATE_LIMITS.iter().filter_map(|(remaining, reset)| {
        let remaining: u64 = header(remaining)?.parse().ok()?;
        if remaining == 0 {
            parse_reset(header(reset)?)
        } else {
            None
        }
    });
    [retry_after_ms, retry_after]
        .into_iter()
        .flatten()
        .chain(exhausted)
        .max()
}

/// Reads a rate-limit reset: a Go-style duration as OpenAI sends it (`1s`, `6m0s`, `20ms`,
/// `1h2m3.5s`; units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`), or a bare number of seconds.
pub(crate) fn parse_reset(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut rest = text;
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !is_number(c))?;
        let value: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(is_number).unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        seconds += value * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderName, HeaderValue};

    use super::*;

    fn info(message: &str, kind: Option<&str>, code: Option<&str>) -> ErrorInfo {
        ErrorInfo {
            message: message.to_owned(),
            kind: kind.map(str::to_owned),
            code: code.map(str::to_owned),
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        let check = |status: u16, error: ErrorInfo, kind: FailureKind| {
            assert_eq!(status_kind(status, &error), kind, "{status} {error:?}");
        };
        let plain = |message: &str| info(message, None, None);
        check(401, plain("Incorrect API key provided"), FailureKind::Auth);
        check(403, plain("forbidden"), FailureKind::Auth);
        check(
            404,
            info(
                "The model `gpt-5` does not exist",
                Some("invalid_request_error"),
                Some("model_not_found"),
            ),
            FailureKind::ModelNotFound,
        );
        check(404, plain("404 page not found"), FailureKind::ModelNotFound);
        check(408, plain(""), FailureKind::Timeout);
        check(
            429,
            info(
                "Rate limit reached for requests",
                Some("requests"),
                Some("rate_limit_exceeded"),
            ),
            FailureKind::Overloaded,
        );
        check(
            429,
            info(
                "You exceeded your current quota",
                Some("insufficient_quota"),
                Some("insufficient_quota"),
            ),
            FailureKind::Auth,
        );
        check(
            429,
            plain("You exceeded your current quota, please check your plan"),
            FailureKind::Auth,
        );
        check(503, plain("server busy"), FailureKind::Overloaded);
        check(
            400,
            info(
                "This model's maximum context length is 8192 tokens",
                Some("invalid_request_error"),
                Some("context_length_exceeded"),
            ),
            FailureKind::ContextExceeded,
        );
        check(
            400,
            info(
                "the request exceeds the available context size, try increasing it",
                Some("exceed_context_size_error"),
                None,
            ),
            FailureKind::ContextExceeded,
        );
        check(
            400,
            plain(
                "This model's maximum context length is 2048 tokens. However, you requested 3000",
            ),
            FailureKind::ContextExceeded,
        );
        check(
            400,
            plain("the input length exceeds the context length"),
            FailureKind::ContextExceeded,
        );
        check(
            400,
            plain("Invalid schema for response_format 'enrichment_v1'"),
            FailureKind::InvalidRequest,
        );
        check(422, plain("field required"), FailureKind::InvalidRequest);
        check(302, plain(""), FailureKind::InvalidRequest);
        check(500, plain("context length"), FailureKind::ServerError);
        check(502, plain("bad gateway"), FailureKind::ServerError);
    }

    #[test]
    fn error_objects_after_a_200_are_classified_by_their_words() {
        let check = |error: ErrorInfo, kind: FailureKind| {
            assert_eq!(error_kind(&error), kind, "{error:?}");
        };
        check(
            info("quota", None, Some("insufficient_quota")),
            FailureKind::Auth,
        );
        check(
            info("too long", None, Some("context_length_exceeded")),
            FailureKind::ContextExceeded,
        );
        check(
            info("no such model", None, Some("model_not_found")),
            FailureKind::ModelNotFound,
        );
        check(
            info("slow down", None, Some("rate_limit_exceeded")),
            FailureKind::Overloaded,
        );
        check(
            info("upstream failed", None, None),
            FailureKind::ServerError,
        );
    }

    #[test]
    fn resets_read_go_durations_and_seconds() {
        let check = |text: &str, expected: Option<Duration>| {
            assert_eq!(parse_reset(text), expected, "{text:?}");
        };
        let ms = Duration::from_millis;
        check("1s", Some(ms(1000)));
        check("6m0s", Some(ms(360_000)));
        check("20ms", Some(ms(20)));
        check("1h2m3.5s", Some(ms(3_723_500)));
        check("0.5s", Some(ms(500)));
        check("2m59.56s", Some(ms(179_560)));
        check("250us", Some(Duration::from_micros(250)));
        check("3µs", Some(Duration::from_micros(3)));
        check("7", Some(ms(7000)));
        check(" 1.5 ", Some(ms(1500)));
        for bad in ["", "s", "5x", "1s5", "-1s", "-3", "1..2s", "soon"] {
            check(bad, None);
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_wait_is_the_longest_the_server_asks_for() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let check = |pairs: &[(&str, &str)], expected: Option<Duration>| {
            assert_eq!(retry_wait(&headers(pairs), now), expected, "{pairs:?}");
        };
        let secs = Duration::from_secs;
        check(&[], None);
        check(&[("retry-after", " 7 ")], Some(secs(7)));
        check(
            &[("retry-after-ms", "1500")],
            Some(Duration::from_millis(1500)),
        );
        check(
            &[("retry-after", "Tue, 14 Nov 2023 22:14:50 GMT")],
            Some(secs(90)),
        );
        check(
            &[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")],
            Some(Duration::ZERO),
        );
        check(&[("retry-after", "soon")], None);
        // Only an exhausted limit counts; the longer reset of the exhausted ones wins.
        check(
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "6m0s"),
                ("x-ratelimit-remaining-tokens", "1200"),
                ("x-ratelimit-reset-tokens", "20m"),
            ],
            Some(secs(360)),
        );
        check(
            &[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "20ms"),
            ],
            Some(secs(1)),
        );
        check(
            &[
                ("x-ratelimit-remaining-tokens", "5"),
                ("x-ratelimit-reset-tokens", "20s"),
            ],
            None,
        );
        check(
            &[
                ("retry-after", "2"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "12s"),
            ],
            Some(secs(12)),
        );
        check(
            &[
                ("retry-after", "30"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "12s"),
            ],
            Some(secs(30)),
        );
    }
}

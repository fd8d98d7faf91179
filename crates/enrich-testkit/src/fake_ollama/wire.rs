//! The fake server's wire formats: response bodies, Ollama's and OpenAI's JSON shapes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::answer::FakeMetrics;

/// A response body: one buffer, NDJSON lines sent as chunks, or a padded answer.
#[derive(Debug)]
pub(crate) enum ReplyBody {
    Full(Option<Bytes>),
    Lines(VecDeque<Bytes>),
    /// `head`, then `remaining` spaces in chunks of [`PADDING`], then `tail`: sent without a
    /// length and never held whole.
    Padded {
        head: Option<Bytes>,
        remaining: u64,
        tail: Option<Bytes>,
    },
}

/// Where [`padded`] puts its spaces: the answer text of an `oversized` reply ends with it.
pub(crate) const PADDING_MARK: &str = "<<enrich-testkit-padding>>";

/// One chunk of padding.
static PADDING: [u8; 64 * 1024] = [b' '; 64 * 1024];

/// `reply` (a whole JSON body whose text ends with [`PADDING_MARK`]) with the mark replaced by
/// spaces and a final newline, so the body is `total` bytes long (or the answer's own length,
/// when that is longer). A streaming client reads it as one NDJSON line.
pub(crate) fn padded(reply: Reply, total: u64) -> Reply {
    let (parts, body) = reply.into_parts();
    let ReplyBody::Full(Some(bytes)) = body else {
        return Response::from_parts(parts, body);
    };
    let mark = PADDING_MARK.as_bytes();
    let Some(at) = bytes.windows(mark.len()).position(|window| window == mark) else {
        return Response::from_parts(parts, ReplyBody::Full(Some(bytes)));
    };
    let head = bytes.slice(..at);
    let mut tail = bytes[at + mark.len()..].to_vec();
    tail.push(b'\n');
    let own = (head.len() + tail.len()) as u64;
    let body = ReplyBody::Padded {
        head: Some(head),
        remaining: total.saturating_sub(own),
        tail: Some(Bytes::from(tail)),
    };
    Response::from_parts(parts, body)
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match self.get_mut() {
            ReplyBody::Full(bytes) => bytes.take(),
            ReplyBody::Lines(lines) => lines.pop_front(),
            ReplyBody::Padded {
                head,
                remaining,
                tail,
            } => head.take().or_else(|| {
                if *remaining > 0 {
                    let n = (*remaining).min(PADDING.len() as u64);
                    *remaining -= n;
                    Some(Bytes::from_static(&PADDING[..n as usize]))
                } else {
                    tail.take()
                }
            }),
        };
        Poll::Ready(next.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplyBody::Full(bytes) => bytes.is_none(),
            ReplyBody::Lines(lines) => lines.is_empty(),
            ReplyBody::Padded {
                head,
                remaining,
                tail,
            } => head.is_none() && *remaining == 0 && tail.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ReplyBody::Lines(_) | ReplyBody::Padded { .. } => SizeHint::default(),
        }
    }
}

pub(crate) type Reply = Response<ReplyBody>;

const JSON: &str = "application/json; charset=utf-8";
const NDJSON: &str = "application/x-ndjson";
const TEXT: &str = "text/plain; charset=utf-8";

fn reply(status: StatusCode, content_type: &'static str, body: ReplyBody) -> Reply {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON reply of an already serialised body.
pub(crate) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Reply {
    reply(status, JSON, ReplyBody::Full(Some(Bytes::from(body))))
}

/// A JSON reply of a serialisable value.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    json_bytes(status, to_vec(value))
}

/// A plain-text reply.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Reply {
    reply(
        status,
        TEXT,
        ReplyBody::Full(Some(Bytes::from_static(body.as_bytes()))),
    )
}

/// An NDJSON streaming reply (status 200).
pub(crate) fn ndjson(lines: VecDeque<Bytes>) -> Reply {
    reply(StatusCode::OK, NDJSON, ReplyBody::Lines(lines))
}

/// Serialises a value the fake built itself (plain strings and numbers: cannot fail).
pub(crate) fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// One NDJSON line: the value and a newline.
pub(crate) fn line<T: Serialize>(value: &T) -> Bytes {
    let mut bytes = to_vec(value);
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Which API an error is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Ollama,
    OpenAi,
}

/// An error answer, in either dialect.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// OpenAI's `error.code`.
    pub(crate) code: Option<&'static str>,
    /// Seconds for a `Retry-After` header.
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
            retry_after: None,
        }
    }

    pub(crate) fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub(crate) fn into_reply(self, dialect: Dialect) -> Reply {
        let mut response = match dialect {
            Dialect::Ollama => json(
                self.status,
                &OllamaError {
                    error: &self.message,
                },
            ),
            Dialect::OpenAi => json(
                self.status,
                &OpenAiError {
                    error: OpenAiErrorBody {
                        message: &self.message,
                        kind: openai_type(self.status),
                        code: self.code,
                    },
                },
            ),
        };
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// OpenAI's `error.type` for a status, as Ollama's compatibility layer picks it.
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

#[derive(Serialize)]
pub(crate) struct OllamaError<'a> {
    pub(crate) error: &'a str,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorBody<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    code: Option<&'static str>,
}

/// One line of an Ollama generate or chat answer (a stream chunk or the final object).
#[derive(Serialize)]
pub(crate) struct OllamaLine<'a> {
    pub(crate) model: &'a str,
    pub(crate) created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thinking: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<ChatMessage<'a>>,
    pub(crate) done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) total_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) load_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_eval_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_eval_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) eval_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) eval_duration: Option<u64>,
}

impl<'a> OllamaLine<'a> {
    /// A line carrying `content` (and `thinking`) as `/api/generate` (`chat == false`) or
    /// `/api/chat` shapes it, without metrics.
    pub(crate) fn new(
        chat: bool,
        model: &'a str,
        created_at: &'a str,
        content: &'a str,
        thinking: Option<&'a str>,
    ) -> Self {
        let (response, thinking, message) = if chat {
            let message = ChatMessage {
                role: "assistant",
                content,
                thinking,
                reasoning: None,
            };
            (None, None, Some(message))
        } else {
            (Some(content), thinking, None)
        };
        Self {
            model,
            created_at,
            response,
            thinking,
            message,
            done: false,
            done_reason: None,
            total_duration: None,
            load_duration: None,
            prompt_eval_count: None,
            prompt_eval_duration: None,
            eval_count: None,
            eval_duration: None,
        }
    }

    /// Makes this the final line: `done`, the reason and the metrics.
    pub(crate) fn done(mut self, done_reason: &'a str, metrics: Option<&FakeMetrics>) -> Self {
        self.done = true;
        self.done_reason = Some(done_reason);
        if let Some(m) = metrics {
            self.total_duration = Some(m.total_duration);
            self.load_duration = Some(m.load_duration);
            self.prompt_eval_count = Some(m.prompt_eval_count);
            self.prompt_eval_duration = Some(m.prompt_eval_duration);
            self.eval_count = Some(m.eval_count);
            self.eval_duration = Some(m.eval_duration);
        }
        self
    }
}

#[derive(Serialize)]
pub(crate) struct ChatMessage<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thinking: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reasoning: Option<&'a str>,
}

/// An OpenAI `chat.completion` object.
#[derive(Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub(crate) id: String,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) system_fingerprint: &'static str,
    pub(crate) choices: [Choice<'a>; 1],
    pub(crate) usage: Usage,
}

#[derive(Serialize)]
pub(crate) struct Choice<'a> {
    pub(crate) index: u32,
    pub(crate) message: ChatMessage<'a>,
    pub(crate) finish_reason: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now as RFC 3339 UTC with nanoseconds, as Ollama writes `created_at`.
pub(crate) fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_nanos())
}

fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) date: Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_767_225_599, 0), "2025-12-31T23:59:59.000000000Z");
    }
}

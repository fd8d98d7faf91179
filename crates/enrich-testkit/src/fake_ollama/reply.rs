//! A generation's answer put on the wire: Ollama's JSON object or NDJSON stream (with the
//! faults that change it), or OpenAI's chat completion.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use hyper::StatusCode;

use super::config::Fault;
use super::generation::Prompt;
use super::server::Shared;
use super::stats::Outcome;
use super::wire::{
    self, ChatCompletion, ChatMessage, Choice, OllamaError, OllamaLine, Reply, Usage,
};
use crate::answer::{FakeMetrics, GARBAGE_TEXT};

/// Stream chunks an answer is split into.
const STREAM_CHUNKS: usize = 4;

/// A generation's reply before it is put on the wire.
pub(super) struct Answer {
    content: String,
    thinking: Option<String>,
    done_reason: &'static str,
    /// Stream a first chunk, then an error line.
    pub(super) stream_error: bool,
    metrics: FakeMetrics,
    pub(super) outcome: Outcome,
}

impl Answer {
    pub(super) fn new(prompt: &Prompt<'_>, fault: Option<Fault>) -> Self {
        let mut full = prompt.enrichment();
        let mut thinking = None;
        let mut done_reason = "stop";
        let mut stream_error = false;
        let outcome = match fault {
            Some(Fault::Garbage) => {
                full = GARBAGE_TEXT.to_owned();
                Outcome::Garbage
            }
            Some(Fault::Truncated) => {
                full.truncate(full.len() / 2);
                done_reason = "length";
                Outcome::Truncated
            }
            Some(Fault::ThinkingOnly) => {
                thinking = Some(std::mem::take(&mut full));
                Outcome::ThinkingOnly
            }
            Some(Fault::StreamError) => {
                full.truncate(full.len() / 2);
                stream_error = true;
                Outcome::StreamError
            }
            Some(Fault::Nonsense) => {
                full = prompt.nonsense();
                Outcome::Nonsense
            }
            Some(Fault::Oversized) => {
                full.push_str(wire::PADDING_MARK);
                Outcome::Oversized
            }
            _ => Outcome::Ok,
        };
        let answer_bytes = full.len() + thinking.as_ref().map_or(0, String::len);
        Self {
            metrics: FakeMetrics::for_sizes(prompt.bytes, answer_bytes),
            content: full,
            thinking,
            done_reason,
            stream_error,
            outcome,
        }
    }

    pub(super) fn ollama(&self, chat: bool, model: &str, stream: bool) -> Reply {
        let created_at = wire::rfc3339_now();
        let thinking = self.thinking.as_deref();
        if !stream {
            let line = OllamaLine::new(chat, model, &created_at, &self.content, thinking)
                .done(self.done_reason, Some(&self.metrics));
            return wire::json(StatusCode::OK, &line);
        }
        let mut lines = VecDeque::with_capacity(STREAM_CHUNKS + 2);
        if let Some(thinking) = thinking {
            lines.push_back(wire::line(&OllamaLine::new(
                chat,
                model,
                &created_at,
                "",
                Some(thinking),
            )));
        }
        for piece in pieces(&self.content, STREAM_CHUNKS) {
            lines.push_back(wire::line(&OllamaLine::new(
                chat,
                model,
                &created_at,
                piece,
                None,
            )));
        }
        if self.stream_error {
            lines.push_back(wire::line(&OllamaError {
                error: "an error was encountered while running the model: unexpected EOF",
            }));
        } else {
            let last = OllamaLine::new(chat, model, &created_at, "", None)
                .done(self.done_reason, Some(&self.metrics));
            lines.push_back(wire::line(&last));
        }
        wire::ndjson(lines)
    }

    pub(super) fn openai(&self, shared: &Shared, model: &str) -> Reply {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let completion = ChatCompletion {
            id: format!("chatcmpl-{id}"),
            object: "chat.completion",
            created: wire::unix_seconds(),
            model,
            system_fingerprint: "fp_ollama",
            choices: [Choice {
                index: 0,
                message: ChatMessage {
                    role: "assistant",
                    content: &self.content,
                    thinking: None,
                    reasoning: self.thinking.as_deref(),
                },
                finish_reason: self.done_reason,
            }],
            usage: Usage {
                prompt_tokens: self.metrics.prompt_eval_count,
                completion_tokens: self.metrics.eval_count,
                total_tokens: self.metrics.prompt_eval_count + self.metrics.eval_count,
            },
        };
        wire::json(StatusCode::OK, &completion)
    }
}

/// `text` in at most `n` pieces cut at character boundaries (none for an empty text).
fn pieces(text: &str, n: usize) -> impl Iterator<Item = &str> {
    let step = text.len().div_ceil(n).max(1);
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = step.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_text_at_char_boundaries() {
        let text = "ab\u{e9}cd\u{2013}ef";
        let parts: Vec<&str> = pieces(text, 4).collect();
        assert!(parts.len() <= 4);
        assert_eq!(parts.concat(), text);
        assert_eq!(pieces("", 4).count(), 0);
    }
}

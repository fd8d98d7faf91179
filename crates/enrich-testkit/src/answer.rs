//! Deterministic model answers shared by [`FakeAdapter`](crate::FakeAdapter) and
//! [`FakeOllama`](crate::FakeOllama): an enrichment.v1 object for a line range, the line range a
//! prompt cites, token estimates and the usage metrics the fakes report.

use enrich_backends::SpanIdentity;

/// Nanoseconds the fakes report for loading the model (`load_duration`).
pub(crate) const LOAD_DURATION_NS: u64 = 2_000_000;
/// Nanoseconds per prompt token the fakes report (`prompt_eval_duration`): 1,000 tokens/s.
pub(crate) const PROMPT_EVAL_NS_PER_TOKEN: u64 = 1_000_000;
/// Nanoseconds per generated token the fakes report (`eval_duration`): 100 tokens/s.
pub(crate) const EVAL_NS_PER_TOKEN: u64 = 10_000_000;

/// What the fakes say instead of JSON when told to answer garbage.
pub(crate) const GARBAGE_TEXT: &str =
    "I'm sorry, but I cannot describe this code as requested. Maybe try again later?";

/// A JSON object that passes enrichment.v1 validation
/// ([`parse_and_validate`](enrich_backends::parse_and_validate)) for `span`, and the quality
/// gate at every level: its summary is a sentence, its list items are phrases (so identifier
/// grounding has nothing to judge) and it has no usage snippet.
///
/// Deterministic: the same span gives the same text. Its evidence cites the span's own lines,
/// and its summary names the span hash, so two spans never share an answer.
///
/// ```
/// use enrich_backends::{SpanIdentity, ValidationContext, parse_and_validate};
/// use enrich_testkit::valid_enrichment_json;
///
/// let span = SpanIdentity::new("sha256:ab", "src/lib.rs", 10, 24);
/// let json = valid_enrichment_json(&span);
/// let enrichment = parse_and_validate(&json, &ValidationContext::for_span(&span, true)).unwrap();
/// assert_eq!(enrichment.evidence[0].lines, [10, 24]);
///
/// // The strictest quality gate lets it through, whatever the span's source and symbol.
/// let strict = ValidationContext::for_span(&span, true)
///     .with_quality(enrich_config::QualityLevel::Strict)
///     .with_source("fn parse(input: &str) {}", "parse");
/// assert!(parse_and_validate(&json, &strict).is_ok());
/// ```
pub fn valid_enrichment_json(span: &SpanIdentity) -> String {
    enrichment_json(span.line_start, span.line_end, fingerprint(&span.span_hash))
}

/// The enrichment.v1 object the fakes answer for lines `start..=end`, told apart from others by
/// `fingerprint`. Plain ASCII without quotes or backslashes inside its strings, so it is built
/// with one `format!`.
pub(crate) fn enrichment_json(start: u32, end: u32, fingerprint: u64) -> String {
    format!(
        concat!(
            r#"{{"summary_120w":"Deterministic test enrichment of lines {s}-{e} (fingerprint {fp:016x}).","#,
            r#""inputs":["the source text of lines {s}-{e}"],"#,
            r#""outputs":["a deterministic description"],"#,
            r#""side_effects":[],"#,
            r#""pitfalls":["written by a test model, not by reading the code"],"#,
            r#""usage_snippet":null,"#,
            r#""evidence":[{{"field":"summary_120w","lines":[{s},{e}]}},{{"field":"inputs","lines":[{s},{e}]}}]}}"#,
        ),
        s = start,
        e = end,
        fp = fingerprint,
    )
}

/// An enrichment.v1 object for lines `start..=end` that passes the schema but says nothing:
/// the answers a small model gives when it copies the prompt (a bare number as the summary,
/// field names and line numbers as inputs, an evidence range given end first).
pub(crate) fn nonsense_json(start: u32, end: u32) -> String {
    format!(
        concat!(
            r#"{{"summary_120w":"{s}","inputs":["field","lines","side_effectz","{s},{e}","2"],"#,
            r#""outputs":["120w"],"side_effects":[],"pitfalls":[],"usage_snippet":null,"#,
            r#""evidence":[{{"field":"inputs","lines":[{e},{s}]}}]}}"#,
        ),
        s = start,
        e = end,
    )
}

/// 64-bit FNV-1a: a stable fingerprint of a text (never changes between runs or platforms).
pub(crate) fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The token count the fakes report for a text: one token per four bytes, at least one.
pub(crate) fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4).max(1)
}

/// The usage metrics the fakes report for a generation, all derived from the two token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FakeMetrics {
    pub(crate) prompt_eval_count: u64,
    pub(crate) eval_count: u64,
    pub(crate) load_duration: u64,
    pub(crate) prompt_eval_duration: u64,
    pub(crate) eval_duration: u64,
    pub(crate) total_duration: u64,
}

impl FakeMetrics {
    /// Metrics for a prompt of `prompt_bytes` answered with `answer_bytes`.
    pub(crate) fn for_sizes(prompt_bytes: usize, answer_bytes: usize) -> Self {
        let prompt_eval_count = estimate_tokens(prompt_bytes);
        let eval_count = estimate_tokens(answer_bytes);
        let prompt_eval_duration = prompt_eval_count * PROMPT_EVAL_NS_PER_TOKEN;
        let eval_duration = eval_count * EVAL_NS_PER_TOKEN;
        Self {
            prompt_eval_count,
            eval_count,
            load_duration: LOAD_DURATION_NS,
            prompt_eval_duration,
            eval_duration,
            total_duration: LOAD_DURATION_NS + prompt_eval_duration + eval_duration,
        }
    }
}

/// The line range a prompt cites, `(start, end)` with `1 <= start <= end`.
///
/// The fakes answer for this range, so a prompt built from a span gets an answer whose evidence
/// lies inside that span. Recognised, case-insensitively, first match wins:
///
/// 1. `line` or `lines`, an optional `:` or `=`, then `N-M`, `N–M` (en dash), `N..M` or
///    `N to M` — e.g. `src/lib.rs lines 10-24`, `Lines: 3 to 9`;
/// 2. otherwise `line_start` and `line_end`, each followed within a few characters of `"`, `'`,
///    `:`, `=` or spaces by a number — e.g. `"line_start": 10, "line_end": 24` or
///    `line_start=10 line_end=24`.
///
/// A single `line N` does not count: the range must have both ends.
///
/// ```
/// use enrich_testkit::cited_lines;
///
/// assert_eq!(cited_lines("Describe src/lib.rs lines 10-24:"), Some((10, 24)));
/// assert_eq!(cited_lines(r#"{"line_start": 3, "line_end": 9}"#), Some((3, 9)));
/// assert_eq!(cited_lines("no range here"), None);
/// ```
pub fn cited_lines(text: &str) -> Option<(u32, u32)> {
    range_after_word(text).or_else(|| named_bounds(text))
}

/// Pattern 1: `line[s] [:=] N <sep> M`.
fn range_after_word(text: &str) -> Option<(u32, u32)> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = find_ascii_ci(bytes, b"line", from) {
        from = at + 4;
        // Not the tail of a longer word (`pipeline`, `inline`).
        if at > 0 && bytes[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        let mut i = from;
        if bytes.get(i).is_some_and(|b| b.eq_ignore_ascii_case(&b's')) {
            i += 1;
        }
        i = skip(bytes, i, |b| b == b' ' || b == b':' || b == b'=');
        let Some((start, after)) = number(bytes, i) else {
            continue;
        };
        let Some(after_sep) = separator(bytes, after) else {
            continue;
        };
        let Some((end, _)) = number(bytes, after_sep) else {
            continue;
        };
        if 1 <= start && start <= end {
            return Some((start, end));
        }
    }
    None
}

/// Pattern 2: `line_start … N` and `line_end … M`.
fn named_bounds(text: &str) -> Option<(u32, u32)> {
    let bytes = text.as_bytes();
    let start = value_after_key(bytes, b"line_start")?;
    let end = value_after_key(bytes, b"line_end")?;
    (1 <= start && start <= end).then_some((start, end))
}

fn value_after_key(bytes: &[u8], key: &[u8]) -> Option<u32> {
    let mut from = 0;
    while let Some(at) = find_ascii_ci(bytes, key, from) {
        from = at + key.len();
        let i = skip(bytes, from, |b| {
            matches!(b, b'"' | b'\'' | b':' | b'=' | b' ')
        });
        if i - from <= 4
            && let Some((value, _)) = number(bytes, i)
        {
            return Some(value);
        }
    }
    None
}

/// The separator of a range, returning the index after it (and after surrounding spaces).
fn separator(bytes: &[u8], i: usize) -> Option<usize> {
    let i = skip(bytes, i, |b| b == b' ');
    let rest = &bytes[i..];
    let len = if rest.starts_with(b"-") {
        1
    } else if rest.starts_with("\u{2013}".as_bytes()) {
        3
    } else if rest.starts_with(b"..")
        || rest
            .get(..3)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"to "))
    {
        2
    } else {
        return None;
    };
    Some(skip(bytes, i + len, |b| b == b' '))
}

/// A decimal number starting at `i` (at most 9 digits) and the index after it.
fn number(bytes: &[u8], i: usize) -> Option<(u32, usize)> {
    let digits = bytes[i.min(bytes.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let value = bytes[i..i + digits]
        .iter()
        .fold(0u32, |n, &b| n * 10 + u32::from(b - b'0'));
    Some((value, i + digits))
}

fn skip(bytes: &[u8], mut i: usize, what: impl Fn(u8) -> bool) -> usize {
    while bytes.get(i).is_some_and(|&b| what(b)) {
        i += 1;
    }
    i
}

/// The first ASCII-case-insensitive occurrence of `needle` in `haystack` at or after `from`.
fn find_ascii_ci(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from >= haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
        .map(|pos| pos + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cited_lines_reads_each_documented_form() {
        let cases: &[(&str, Option<(u32, u32)>)] = &[
            ("src/a.rs lines 10-24", Some((10, 24))),
            ("LINES: 3 to 9", Some((3, 9))),
            ("line 5..7", Some((5, 7))),
            ("lines=2 \u{2013} 4", Some((2, 4))),
            ("the pipeline 4-5 then lines 6-8", Some((6, 8))),
            ("lines 9-3 but line_start: 2, line_end: 4", Some((2, 4))),
            ("line_start='7' and line_end=\"7\"", Some((7, 7))),
            ("line 12 only", None),
            ("lines 0-4", None),
            ("line_start: 3", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(cited_lines(text), *expected, "for {text:?}");
        }
    }

    #[test]
    fn metrics_follow_the_documented_rates() {
        let m = FakeMetrics::for_sizes(4000, 40);
        assert_eq!(m.prompt_eval_count, 1000);
        assert_eq!(m.eval_count, 10);
        assert_eq!(m.prompt_eval_duration, 1_000_000_000);
        assert_eq!(m.eval_duration, 100_000_000);
        assert_eq!(m.total_duration, 1_102_000_000);
        assert_eq!(estimate_tokens(0), 1);
    }
}

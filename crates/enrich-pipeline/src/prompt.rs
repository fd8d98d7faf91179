//! Prompts: the `[enrichment.prompt]` template or the built-in enrichment.v1 prompt, with the
//! span's source cut to `max_snippet_bytes`.

use std::fmt::Write as _;
use std::sync::Arc;

use enrich_backends::{ITEM_MAX_CHARS, LIST_MAX_ITEMS, SUMMARY_MAX_WORDS, USAGE_SNIPPET_MAX_LINES};
use enrich_config::PromptConfig;
use enrich_db::PendingSpan;
use enrich_types::SpanIdentity;

use crate::error::PipelineError;

/// Roughly how many tokens `text` is: its length in bytes divided by 4, rounded up.
///
/// A deliberately simple estimate (tokenizers average 3.5 to 4.5 bytes per token on code and
/// English), good enough to size a plan or spot a span that will not fit a context window.
pub fn estimate_tokens(text: &str) -> u32 {
    estimate_bytes(text.len())
}

/// [`estimate_tokens`] of a text of `bytes` bytes.
fn estimate_bytes(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX)
}

/// What a prompt says about the span it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptSpan<'a> {
    /// The span: its file (relative to the repo root) and lines.
    pub span: &'a SpanIdentity,
    /// The file's language (`python`, `rust`, …), used to label the code.
    pub lang: &'a str,
    /// The symbol the span defines; may be empty.
    pub symbol: &'a str,
    /// The kind of span (`function`, `class`, …); may be empty.
    pub kind: &'a str,
}

impl<'a> PromptSpan<'a> {
    /// The prompt's view of a pending span (`row`) whose identity is `span`.
    pub fn of(span: &'a SpanIdentity, row: &'a PendingSpan) -> Self {
        Self {
            span,
            lang: &row.lang,
            symbol: &row.symbol,
            kind: &row.kind,
        }
    }
}

/// The bytes read past `max_snippet_bytes` (see [`PromptBuilder::source_limit`]): more than any
/// secret the scanner knows (a private key block included) and than a UTF-8 character, so what
/// the snippet shows is scanned in full context.
const SCAN_MARGIN: u64 = 64 * 1024;

/// How a span's source was shortened to fit `max_snippet_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SnippetCut {
    /// Bytes of source in the prompt.
    pub shown_bytes: usize,
    /// Bytes of the whole span.
    pub total_bytes: usize,
    /// The last line (fully or partly) in the prompt.
    pub last_line: u32,
    /// True when even the first line was longer than the limit, so the cut falls inside a line
    /// (at a UTF-8 character boundary).
    pub inside_line: bool,
}

/// A prompt ready to send: the part shared by every span (sent as the system prompt) and the
/// span's own part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The part of the prompt that is byte-identical for every span, to be sent ahead of
    /// [`text`](Self::text) (as [`GenerateRequest::system`](enrich_backends::GenerateRequest)):
    /// the built-in prompt's instructions, shared by every prompt of a builder. `None` with a
    /// template, whose rendering is all in `text`.
    pub system: Option<Arc<str>>,
    /// The span's part of the prompt: the built-in prompt's span, path, symbol and numbered
    /// source, or the whole rendered template.
    pub text: String,
    /// [`estimate_tokens`] of the system part and the text together.
    pub estimated_tokens: u32,
    /// Set when the span's source was cut to fit `max_snippet_bytes`.
    pub cut: Option<SnippetCut>,
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Path,
    LineStart,
    LineEnd,
    Snippet,
}

/// Builds each span's prompt: the configured template, or the built-in one.
///
/// A template uses `{path}`, `{line_start}`, `{line_end}` and `{snippet}`; `{{` and `}}` are
/// literal braces. These are the rules of Python's `str.format`, which LLMC applies to the same
/// template, so an LLMC template works unchanged (and a JSON example in it needs its braces
/// doubled, as it does for LLMC). The template is parsed once, when the builder is made.
///
/// The built-in prompt comes in two parts, so that a server with prefix caching (llama.cpp,
/// Ollama, vLLM, OpenAI's prompt caching) evaluates only what differs between spans:
///
/// - the shared part ([`Prompt::system`]), byte-identical for every span: it asks for one
///   enrichment.v1 JSON object and describes every field with its limits (summary at most 120
///   words, lists of at most [`LIST_MAX_ITEMS`] short items, usage snippet at most 12 lines,
///   evidence line ranges inside the span);
/// - the span's part ([`Prompt::text`]): ``Span: lines N-M of <path>, the <kind> `<symbol>`.``
///   (the span's range before anything else that looks like a line range), then the source in
///   a fence labelled with the language, each line prefixed with its number, right-aligned to
///   the width of the span's last line: `  42 | code`.
///
/// A template gets no shared part: the whole rendered template is [`Prompt::text`], as LLMC
/// sends it.
///
/// A span longer than `max_snippet_bytes` is cut at the last line break that fits (inside the
/// first line only when that line alone is too long, and then at a character boundary), and a
/// note right after the snippet says what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptBuilder {
    template: Option<Vec<Segment>>,
    /// The built-in prompt's shared part; `None` with a template.
    shared: Option<Arc<str>>,
    max_snippet_bytes: usize,
}

impl PromptBuilder {
    /// A builder for `[enrichment.prompt]`.
    ///
    /// # Errors
    ///
    /// [`PipelineError::PromptTemplate`] for a template with an unknown placeholder, an
    /// unmatched brace or no `{snippet}`; [`PipelineError::InvalidSetting`] for
    /// `max_snippet_bytes = 0`.
    pub fn new(config: &PromptConfig) -> Result<Self, PipelineError> {
        if config.max_snippet_bytes == 0 {
            return Err(PipelineError::InvalidSetting {
                key: "prompt.max_snippet_bytes",
                value: "0".to_owned(),
                fix: "it must be at least 1 (the default is 24576)",
            });
        }
        let template = config.template.as_deref().map(parse_template).transpose()?;
        if let Some(segments) = &template
            && !segments.contains(&Segment::Snippet)
        {
            // Every span would be sent without its source, answered with a made-up summary or
            // failed and ledgered: refuse before any span is taken.
            return Err(PipelineError::PromptTemplate {
                problem: "it has no {snippet} placeholder, so the model would never see the \
                          span's source; put {snippet} where the source goes"
                    .to_owned(),
            });
        }
        let shared = template.is_none().then(|| Arc::from(shared_instructions()));
        Ok(Self {
            template,
            shared,
            max_snippet_bytes: config.max_snippet_bytes,
        })
    }

    /// Whether a template is configured (else the built-in prompt is used).
    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// How many bytes of a span's source a prompt can use: `max_snippet_bytes`, plus 64 KiB so
    /// that a secret starting inside the snippet is read whole and the
    /// secrets scanner sees all of it (and the character at the cut is whole). Read no more
    /// than this of a span ([`SourceReader::read_prefix`](enrich_db::SourceReader::read_prefix)),
    /// however long it is.
    pub fn source_limit(&self) -> u64 {
        u64::try_from(self.max_snippet_bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(SCAN_MARGIN)
    }

    /// The prompt for `span` whose source is `source`.
    pub fn build(&self, span: &PromptSpan<'_>, source: &str) -> Prompt {
        self.build_from_prefix(span, source, source.len())
    }

    /// The prompt for `span` from the first bytes of its source (`source`: at least
    /// [`source_limit`](Self::source_limit) bytes of it, or all of it), the whole span being
    /// `span_bytes` long. The prompt is the one [`build`](Self::build) makes from the whole
    /// source.
    pub fn build_from_prefix(
        &self,
        span: &PromptSpan<'_>,
        source: &str,
        span_bytes: usize,
    ) -> Prompt {
        let (snippet, cut) = cut_snippet(source, self.max_snippet_bytes, span.span.line_start);
        let cut = cut.map(|cut| SnippetCut {
            total_bytes: span_bytes.max(cut.total_bytes),
            ..cut
        });
        // Room for the line numbers and the span's header.
        let mut text = String::with_capacity(snippet.len() + snippet.len() / 4 + 256);
        match &self.template {
            Some(segments) => {
                for segment in segments {
                    match segment {
                        Segment::Text(t) => text.push_str(t),
                        Segment::Path => text.push_str(&span.span.path),
                        Segment::LineStart => push_display(&mut text, span.span.line_start),
                        Segment::LineEnd => push_display(&mut text, span.span.line_end),
                        Segment::Snippet => {
                            text.push_str(snippet);
                            if let Some(cut) = &cut {
                                push_cut_note(&mut text, span, cut);
                            }
                        }
                    }
                }
            }
            None => built_in(&mut text, span, snippet, cut.as_ref()),
        }
        let system_bytes = self.shared.as_deref().map_or(0, str::len);
        Prompt {
            estimated_tokens: estimate_bytes(system_bytes + text.len()),
            system: self.shared.clone(),
            text,
            cut,
        }
    }

    /// The prompt fingerprint a run records: the first 12 hex digits of the SHA-256 of what
    /// every span's prompt shares. For a template, that is the template's text (as written in
    /// `[enrichment.prompt] template`, so `printf %s "$TEMPLATE" | sha256sum` gives the same
    /// digits); for the built-in prompt, its shared part ([`Prompt::system`]) followed by its
    /// span part for a span with no path, lines, symbol or source, which holds every fixed word
    /// of it. It changes whenever the shared text does.
    pub fn fingerprint(&self) -> String {
        let shared = match &self.template {
            Some(segments) => segments
                .iter()
                .map(|segment| match segment {
                    Segment::Text(t) => t.replace('{', "{{").replace('}', "}}"),
                    Segment::Path => "{path}".to_owned(),
                    Segment::LineStart => "{line_start}".to_owned(),
                    Segment::LineEnd => "{line_end}".to_owned(),
                    Segment::Snippet => "{snippet}".to_owned(),
                })
                .collect(),
            None => {
                let span = SpanIdentity::new("", "", 0, 0);
                let mut text = self.shared.as_deref().unwrap_or_default().to_owned();
                let blank = PromptSpan {
                    span: &span,
                    lang: "",
                    symbol: "",
                    kind: "",
                };
                built_in(&mut text, &blank, "", None);
                text
            }
        };
        // enrich-types' file hash is hex(sha256(bytes)), the digest wanted here.
        let mut digest = enrich_types::file_hash(shared.as_bytes());
        digest.truncate(12);
        digest
    }
}

fn push_display(text: &mut String, value: impl std::fmt::Display) {
    // Writing to a String cannot fail.
    let _ = write!(text, "{value}");
}

/// Parses a template with Python `str.format` rules restricted to our four names.
fn parse_template(template: &str) -> Result<Vec<Segment>, PipelineError> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = template.char_indices().peekable();
    while let Some((at, c)) = rest.next() {
        match c {
            '{' if rest.peek().is_some_and(|&(_, n)| n == '{') => {
                rest.next();
                literal.push('{');
            }
            '}' if rest.peek().is_some_and(|&(_, n)| n == '}') => {
                rest.next();
                literal.push('}');
            }
            '{' => {
                let Some(close) = template[at..].find('}').map(|i| at + i) else {
                    return Err(PipelineError::PromptTemplate {
                        problem: format!("the '{{' at byte {at} is never closed"),
                    });
                };
                let segment = match &template[at + 1..close] {
                    "path" => Segment::Path,
                    "line_start" => Segment::LineStart,
                    "line_end" => Segment::LineEnd,
                    "snippet" => Segment::Snippet,
                    other => {
                        return Err(PipelineError::PromptTemplate {
                            problem: format!("unknown placeholder {{{other}}} at byte {at}"),
                        });
                    }
                };
                if !literal.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut literal)));
                }
                segments.push(segment);
                // Skip the name and its closing brace.
                while rest.next_if(|&(i, _)| i <= close).is_some() {}
            }
            '}' => {
                return Err(PipelineError::PromptTemplate {
                    problem: format!("single '}}' at byte {at}"),
                });
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        segments.push(Segment::Text(literal));
    }
    Ok(segments)
}

/// The source cut to at most `max` bytes, at a line boundary when one fits.
fn cut_snippet(source: &str, max: usize, line_start: u32) -> (&str, Option<SnippetCut>) {
    if source.len() <= max {
        return (source, None);
    }
    let mut end = max;
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let (shown, inside_line) = match source[..end].rfind('\n') {
        Some(newline) => (&source[..=newline], false),
        None => (&source[..end], true),
    };
    let breaks = shown.bytes().filter(|&b| b == b'\n').count();
    let breaks = u32::try_from(breaks).unwrap_or(u32::MAX);
    // Ending on a line break, the last line shown is the one before it.
    let last_line = if inside_line {
        line_start
    } else {
        line_start.saturating_add(breaks.saturating_sub(1))
    };
    let cut = SnippetCut {
        shown_bytes: shown.len(),
        total_bytes: source.len(),
        last_line,
        inside_line,
    };
    (shown, Some(cut))
}

fn push_cut_note(text: &mut String, span: &PromptSpan<'_>, cut: &SnippetCut) {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let (start, end) = (span.span.line_start, span.span.line_end);
    let (shown, total) = (cut.shown_bytes, cut.total_bytes);
    if cut.inside_line {
        push_display(
            text,
            format_args!(
                "[source cut: only the first {shown} of {total} bytes are shown, ending inside \
                 line {start}; the span continues to line {end}]"
            ),
        );
    } else {
        push_display(
            text,
            format_args!(
                "[source cut: lines {start}-{} of the span's {start}-{end} are shown ({shown} of \
                 {total} bytes)]",
                cut.last_line
            ),
        );
    }
}

/// The part of the built-in prompt that is the same for every span: who answers, the answer's
/// keys and limits, how to cite lines. Written once per builder.
fn shared_instructions() -> String {
    format!(
        "You describe source code for a code search index. The user gives you one span of a \
         source file: its path, its line range (`lines N-M`), the symbol it defines (if any) and its \
         source with each line prefixed by its line number and ` | `.\n\
         \n\
         Reply with ONE JSON object (schema enrichment.v1) and nothing else: no markdown \
         fence, no text before or after it. It has exactly these keys:\n\
         - \"summary_120w\": string, what the code does and why, at most {SUMMARY_MAX_WORDS} \
         words.\n\
         - \"inputs\": array of strings, the parameters, arguments and data it reads.\n\
         - \"outputs\": array of strings, the return values and data it produces.\n\
         - \"side_effects\": array of strings, its I/O, changes to shared state, network \
         calls and logging.\n\
         - \"pitfalls\": array of strings, edge cases, error conditions and misuse to watch \
         for.\n\
         - \"usage_snippet\": string, a short example call of at most \
         {USAGE_SNIPPET_MAX_LINES} lines, or null when there is none.\n\
         - \"evidence\": array of {{\"field\": one of the keys above, \"lines\": [first, \
         last]}}, citing the line numbers that support each filled field; every line number \
         must be inside the span's line range.\n\
         Use [] for an array with nothing to say. Each array has at most {LIST_MAX_ITEMS} \
         items, each a short phrase of at most {ITEM_MAX_CHARS} characters. Write in English, \
         about the code itself.\n"
    )
}

/// The built-in prompt's span part, after [`shared_instructions`]: the span's range first (the
/// first `lines N-M` in the text), its path, symbol and numbered source.
fn built_in(text: &mut String, span: &PromptSpan<'_>, snippet: &str, cut: Option<&SnippetCut>) {
    let (path, start, end) = (&span.span.path, span.span.line_start, span.span.line_end);
    push_display(text, format_args!("Span: lines {start}-{end} of {path}"));
    if !span.symbol.is_empty() {
        let kind = if span.kind.is_empty() {
            "span"
        } else {
            span.kind
        };
        push_display(text, format_args!(", the {kind} `{}`", span.symbol));
    }
    text.push_str(".\n\n");
    // Every line starts with its number, so no line of the source can close the fence.
    push_display(text, format_args!("```{}\n", span.lang));
    push_numbered(text, snippet, start, end);
    text.push_str("```\n");
    if let Some(cut) = cut {
        push_cut_note(text, span, cut);
        text.push('\n');
    }
}

/// `snippet`'s lines, each prefixed by its number (the first being `first`), right-aligned to
/// the width of `last`, and ` | `: `  42 | code`. An empty line gets its number and `|` only.
fn push_numbered(text: &mut String, snippet: &str, first: u32, last: u32) {
    let width = last.max(first).to_string().len();
    for (number, line) in (first..).zip(snippet.split_inclusive('\n')) {
        let (code, newline) = match line.strip_suffix('\n') {
            Some(code) => (code, "\n"),
            None => (line, ""),
        };
        if code.trim_end_matches('\r').is_empty() {
            push_display(text, format_args!("{number:>width$} |{newline}"));
        } else {
            push_display(text, format_args!("{number:>width$} | {code}{newline}"));
        }
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_with_python_format_rules() {
        let parsed = parse_template("{{x}} {path}:{line_start}-{line_end}\n{snippet}}}").unwrap();
        assert_eq!(
            parsed,
            [
                Segment::Text("{x} ".into()),
                Segment::Path,
                Segment::Text(":".into()),
                Segment::LineStart,
                Segment::Text("-".into()),
                Segment::LineEnd,
                Segment::Text("\n".into()),
                Segment::Snippet,
                Segment::Text("}".into()),
            ]
        );
        for (template, problem) in [
            ("a {lang} b", "unknown placeholder {lang} at byte 2"),
            (
                "{\"summary_120w\": 1}",
                "unknown placeholder {\"summary_120w\": 1} at byte 0",
            ),
            ("a { b", "the '{' at byte 2 is never closed"),
            ("a } b", "single '}' at byte 2"),
        ] {
            let err = parse_template(template).unwrap_err().to_string();
            assert!(err.contains(problem), "{template}: {err}");
        }
    }

    #[test]
    fn snippets_are_cut_at_line_boundaries_or_char_boundaries() {
        let source = "ab\ncd\nef\n";
        assert_eq!(cut_snippet(source, 9, 10), (source, None));
        let (shown, cut) = cut_snippet(source, 7, 10);
        assert_eq!(shown, "ab\ncd\n");
        let cut = cut.unwrap();
        assert_eq!(
            (cut.last_line, cut.inside_line, cut.shown_bytes),
            (11, false, 6)
        );
        // One long line of two-byte characters: cut inside it, never inside a character.
        let (shown, cut) = cut_snippet("ééééé\n", 5, 3);
        assert_eq!(shown, "éé");
        assert_eq!(cut.map(|c| (c.last_line, c.inside_line)), Some((3, true)));
    }

    #[test]
    fn a_prefix_of_source_limit_bytes_makes_the_prompt_of_the_whole_source() {
        let builder = PromptBuilder::new(&PromptConfig {
            template: None,
            max_snippet_bytes: 40,
        })
        .unwrap();
        let identity = SpanIdentity::new("sha256:big", "src/big.rs", 1, 400);
        let span = PromptSpan {
            span: &identity,
            lang: "rust",
            symbol: "big",
            kind: "function",
        };
        // Multi-byte characters around the limit, so the prefix may end inside one.
        let whole = "fn big() {\n    let é = \"ééé\";\n    call(é);\n}\n".repeat(3000);
        let limit = usize::try_from(builder.source_limit()).unwrap();
        assert_eq!(limit as u64, 40 + SCAN_MARGIN);
        // One character past the snippet, a character's worth, the limit.
        for cut_at in [41, 44, limit] {
            let prefix = String::from_utf8_lossy(&whole.as_bytes()[..cut_at]);
            assert_eq!(
                builder.build_from_prefix(&span, &prefix, whole.len()),
                builder.build(&span, &whole),
                "prefix of {cut_at} bytes"
            );
        }
    }

    /// A Python span's view for the prompt.
    fn python<'a>(span: &'a SpanIdentity, symbol: &'a str, kind: &'a str) -> PromptSpan<'a> {
        PromptSpan {
            span,
            lang: "python",
            symbol,
            kind,
        }
    }

    fn built_in_builder(max_snippet_bytes: usize) -> PromptBuilder {
        PromptBuilder::new(&PromptConfig {
            template: None,
            max_snippet_bytes,
        })
        .unwrap()
    }

    #[test]
    fn the_shared_part_is_byte_identical_for_every_span_and_names_nothing_of_one() {
        let builder = built_in_builder(24_576);
        let (first, second) = (
            SpanIdentity::new("sha256:1", "src/models.py", 7, 12),
            SpanIdentity::new("sha256:2", "lib/other/hooks.rs", 1200, 1310),
        );
        let a = builder.build(
            &python(&first, "prepare_body", "function"),
            "def prepare_body(self, data):\n    return data\n",
        );
        let b = builder.build(
            &PromptSpan {
                span: &second,
                lang: "rust",
                symbol: "",
                kind: "",
            },
            "fn dispatch() {}\n",
        );
        let (shared_a, shared_b) = (a.system.unwrap(), b.system.unwrap());
        assert_eq!(shared_a.as_bytes(), shared_b.as_bytes());
        assert!(Arc::ptr_eq(&shared_a, &shared_b), "built once per builder");
        // The whole prompt as a server sees it: the shared part, then the span's part.
        assert_eq!(
            format!("{shared_a}{}", a.text).find(&a.text),
            Some(shared_a.len())
        );
        for span_word in [
            "models.py",
            "prepare_body",
            "python",
            "hooks",
            "rust",
            "1200",
            "7-12",
        ] {
            assert!(!shared_a.contains(span_word), "{span_word:?} in {shared_a}");
        }
        for needle in [
            "ONE JSON object",
            "\"summary_120w\"",
            "at most 120 words",
            "\"pitfalls\"",
            "at most 12 lines",
            "inside the span's line range",
            "at most 4 items",
        ] {
            assert!(shared_a.contains(needle), "{needle:?} not in {shared_a}");
        }
        assert!(
            a.text
                .starts_with("Span: lines 7-12 of src/models.py, the function `prepare_body`.\n"),
            "{}",
            a.text
        );
        assert!(
            b.text
                .starts_with("Span: lines 1200-1310 of lib/other/hooks.rs.\n")
        );
        assert_eq!(
            a.estimated_tokens,
            estimate_bytes(shared_a.len() + a.text.len())
        );
    }

    #[test]
    fn source_lines_are_numbered_to_the_width_of_the_spans_last_line() {
        let builder = built_in_builder(24_576);
        let identity = SpanIdentity::new("sha256:n", "a.py", 8, 11);
        let span = python(&identity, "f", "function");
        let prompt = builder.build(&span, "def f():\n\n    x = 1\n    return x");
        assert!(
            prompt.text.ends_with(
                "```python\n 8 | def f():\n 9 |\n10 |     x = 1\n11 |     return x\n```\n"
            ),
            "{}",
            prompt.text
        );
        // A line of backticks in the source cannot close the fence: it is numbered.
        let prompt = builder.build(&span, "s = \"\"\"\n```\n\"\"\"\n");
        assert!(prompt.text.contains("\n 9 | ```\n"), "{}", prompt.text);
    }

    #[test]
    fn a_cut_source_is_numbered_up_to_the_cut_and_noted() {
        let builder = built_in_builder(12);
        let identity = SpanIdentity::new("sha256:c", "a.py", 98, 101);
        let span = python(&identity, "", "");
        let prompt = builder.build(&span, "a = 1\nb = 2\nc = 3\nd = 4\n");
        assert!(
            prompt.text.ends_with(
                " 98 | a = 1\n 99 | b = 2\n```\n[source cut: lines 98-99 of the span's 98-101 \
                 are shown (12 of 24 bytes)]\n"
            ),
            "{}",
            prompt.text
        );
    }

    #[test]
    fn a_template_has_no_shared_part_and_no_line_numbers() {
        let builder = PromptBuilder::new(&PromptConfig {
            template: Some("{path}:{line_start}\n{snippet}".to_owned()),
            max_snippet_bytes: 100,
        })
        .unwrap();
        let identity = SpanIdentity::new("sha256:t", "a.py", 3, 4);
        let span = python(&identity, "", "");
        let prompt = builder.build(&span, "x = 1\ny = 2\n");
        assert_eq!(prompt.system, None);
        assert_eq!(prompt.text, "a.py:3\nx = 1\ny = 2\n");
        assert_eq!(prompt.estimated_tokens, estimate_tokens(&prompt.text));
    }

    #[test]
    fn token_estimate_rounds_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
    }
}

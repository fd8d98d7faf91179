//! Splitting one file's bytes into spans: definitions for code (tree-sitter), heading sections
//! for Markdown, windows of lines for everything else.

mod code;
mod lines;
mod markdown;

use crate::lang::{Lang, Splitter};

/// One span as a splitter finds it, before hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSpan {
    /// The qualified name (`Type::method`, `Class.method`, `Intro > Install`, `README:1-58`).
    pub(crate) symbol: String,
    /// `function`, `method`, `class`, `section`, `window`, …
    pub(crate) kind: &'static str,
    /// First byte.
    pub(crate) byte_start: usize,
    /// End byte (exclusive).
    pub(crate) byte_end: usize,
    /// First line, 1-based.
    pub(crate) start_line: u32,
    /// Last line, 1-based, inclusive.
    pub(crate) end_line: u32,
    /// The first paragraph of the definition's doc comment or docstring, or of the section.
    pub(crate) doc_hint: Option<String>,
}

/// The longest doc hint kept, in characters.
const DOC_HINT_MAX_CHARS: usize = 400;

/// The longest symbol kept, in characters (LLMC's limit for section paths).
const SYMBOL_MAX_CHARS: usize = 100;

/// Splits files; one per worker thread, since it owns a tree-sitter parser.
pub(crate) struct FileSplitter {
    parser: tree_sitter::Parser,
    window_lines: usize,
}

impl FileSplitter {
    /// A splitter cutting text into windows of about `window_lines` lines.
    pub(crate) fn new(window_lines: usize) -> Self {
        Self {
            parser: tree_sitter::Parser::new(),
            window_lines,
        }
    }

    /// The spans of `source`, in file order. `path` names the file in window and preamble
    /// symbols. Code in which the grammar finds no definition, and Markdown that is not UTF-8,
    /// is cut into windows instead, so a file that is not blank always has a span.
    pub(crate) fn split(&mut self, lang: Lang, path: &str, source: &[u8]) -> Vec<RawSpan> {
        let index = lines::LineIndex::new(source);
        let spans = match lang.splitter {
            Splitter::Lines => Vec::new(),
            Splitter::Markdown => match std::str::from_utf8(source) {
                Ok(text) => markdown::sections(text, &index, file_stem(path), self.window_lines),
                Err(_) => Vec::new(),
            },
            code => code::definitions(&mut self.parser, code, source, &index),
        };
        if spans.is_empty() {
            lines::windows(source, &index, 0..source.len(), self.window_lines)
                .into_iter()
                .map(|w| RawSpan {
                    symbol: format!("{}:{}-{}", file_name(path), w.start_line, w.end_line),
                    kind: "window",
                    byte_start: w.bytes.start,
                    byte_end: w.bytes.end,
                    start_line: w.start_line,
                    end_line: w.end_line,
                    doc_hint: None,
                })
                .collect()
        } else {
            spans
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn file_stem(path: &str) -> &str {
    let name = file_name(path);
    match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

/// `text` cut to at most `max` characters, with `...` when cut (as LLMC cuts long symbols).
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}...")
}

/// The first paragraph of cleaned-up comment or prose lines: the lines up to the first blank one
/// after some text, joined by spaces, at most [`DOC_HINT_MAX_CHARS`]; `None` when empty.
fn first_paragraph<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut words: Vec<&str> = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() {
            if words.is_empty() {
                continue;
            }
            break;
        }
        words.push(line);
    }
    let joined = words.join(" ");
    (!joined.is_empty()).then(|| truncate(&joined, DOC_HINT_MAX_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_paragraph_skips_leading_blanks_and_stops_at_the_next_blank() {
        assert_eq!(
            first_paragraph(["", "  Adds two", "numbers.", "", "More."]).as_deref(),
            Some("Adds two numbers.")
        );
        assert_eq!(first_paragraph(["", "  "]), None);
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abc...");
    }
}

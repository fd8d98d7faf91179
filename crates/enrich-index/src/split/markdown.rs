//! Markdown by heading sections, with a CommonMark parser so that a `#` inside a code block or
//! an HTML block is not taken for a heading.
//!
//! Every top-level heading (ATX or setext, any level) starts a section that runs to the next
//! one; the text before the first heading is a section named after the file. A section's symbol
//! is its heading path as LLMC writes it (`Install > From source`). A section longer than twice
//! the window size is cut into windows, `section_part` spans named `… (part N)`, as LLMC cuts
//! its oversized sections.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::lines::{LineIndex, line_number, windows};
use super::{RawSpan, SYMBOL_MAX_CHARS, first_paragraph, truncate};

/// A top-level heading: where its line starts, where it ends, its level, its text.
struct Heading {
    line_start: usize,
    end: usize,
    level: u8,
    title: String,
}

/// The sections of `text` (see the module doc).
pub(super) fn sections(
    text: &str,
    index: &LineIndex,
    file_stem: &str,
    window_lines: usize,
) -> Vec<RawSpan> {
    let headings = headings(text, index);
    let mut out = Vec::new();
    let first_heading = headings.first().map_or(text.len(), |h| h.line_start);
    section(
        text,
        index,
        0..first_heading,
        file_stem,
        None,
        window_lines,
        &mut out,
    );
    let mut path: Vec<(u8, &str)> = Vec::new();
    for (i, heading) in headings.iter().enumerate() {
        while path
            .last()
            .is_some_and(|&(level, _)| level >= heading.level)
        {
            path.pop();
        }
        path.push((heading.level, heading.title.as_str()));
        let symbol = path
            .iter()
            .map(|&(_, title)| title)
            .collect::<Vec<_>>()
            .join(" > ");
        let end = headings.get(i + 1).map_or(text.len(), |h| h.line_start);
        section(
            text,
            index,
            heading.line_start..end,
            &symbol,
            Some(heading),
            window_lines,
            &mut out,
        );
    }
    out
}

/// Adds the span (or the parts) of one section spanning `range`, unless it is blank.
fn section(
    text: &str,
    index: &LineIndex,
    range: std::ops::Range<usize>,
    symbol: &str,
    heading: Option<&Heading>,
    window_lines: usize,
    out: &mut Vec<RawSpan>,
) {
    let body = &text[range.clone()];
    let Some(first) = body.find(|c: char| !c.is_whitespace()) else {
        return;
    };
    let start = index.line_start(index.line_of(range.start + first));
    let end = range.start + body.trim_end().len();
    let (first_line, last_line) = (index.line_of(start), index.line_of(end - 1));
    // The hint is the first paragraph under the heading.
    let hint_from = heading.map_or(start, |h| h.end.min(end));
    let doc_hint = first_paragraph(text[hint_from..end].lines());
    let symbol = truncate(symbol, SYMBOL_MAX_CHARS);
    if last_line - first_line < window_lines.saturating_mul(2) {
        out.push(RawSpan {
            symbol,
            kind: "section",
            byte_start: start,
            byte_end: end,
            start_line: line_number(first_line),
            end_line: line_number(last_line),
            doc_hint,
        });
        return;
    }
    for (n, part) in windows(text.as_bytes(), index, start..end, window_lines)
        .into_iter()
        .enumerate()
    {
        out.push(RawSpan {
            symbol: truncate(&format!("{symbol} (part {})", n + 1), SYMBOL_MAX_CHARS),
            kind: "section_part",
            byte_start: part.bytes.start,
            byte_end: part.bytes.end,
            start_line: part.start_line,
            end_line: part.end_line,
            doc_hint: if n == 0 { doc_hint.clone() } else { None },
        });
    }
}

/// The headings outside any container (list, block quote, …), in order.
fn headings(text: &str, index: &LineIndex) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<Heading> = None;
    for (event, range) in Parser::new_ext(text, Options::empty()).into_offset_iter() {
        match event {
            Event::Start(tag) => {
                if let (0, Tag::Heading { level, .. }) = (depth, &tag) {
                    current = Some(Heading {
                        line_start: index.line_start(index.line_of(range.start)),
                        end: range.end,
                        level: *level as u8,
                        title: String::new(),
                    });
                }
                depth += 1;
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                if let (0, TagEnd::Heading(_)) = (depth, end)
                    && let Some(mut heading) = current.take()
                {
                    heading.title = heading.title.trim().to_owned();
                    out.push(heading);
                }
            }
            Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) => {
                if let Some(heading) = current.as_mut() {
                    heading.title.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(heading) = current.as_mut() {
                    heading.title.push(' ');
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, window_lines: usize, expected: &[(&str, &str, u32, u32)]) {
        let index = LineIndex::new(text.as_bytes());
        let got: Vec<(String, &str, u32, u32)> = sections(text, &index, "doc", window_lines)
            .into_iter()
            .map(|s| (s.symbol, s.kind, s.start_line, s.end_line))
            .collect();
        let expected: Vec<(String, &str, u32, u32)> = expected
            .iter()
            .map(|&(symbol, kind, a, b)| (symbol.to_owned(), kind, a, b))
            .collect();
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn headings_nest_into_paths_and_code_blocks_hold_no_headings() {
        check(
            "Intro text.\n\n# Guide\n\nSee below.\n\n## Install\n\n```sh\n# not a heading\n```\n\n\
             Setext\n------\n\nbody\n\n# Other `code`\n",
            60,
            &[
                ("doc", "section", 1, 1),
                ("Guide", "section", 3, 5),
                ("Guide > Install", "section", 7, 11),
                ("Guide > Setext", "section", 13, 16),
                ("Other code", "section", 18, 18),
            ],
        );
    }

    #[test]
    fn headings_inside_lists_and_quotes_do_not_start_sections() {
        check(
            "# Top\n\n> # quoted\n\n- # listed\n",
            60,
            &[("Top", "section", 1, 5)],
        );
    }

    #[test]
    fn a_long_section_is_cut_into_parts() {
        let body: String = (1..=9).map(|i| format!("line {i}\n")).collect();
        check(
            &format!("# Big\n{body}"),
            2,
            &[
                ("Big (part 1)", "section_part", 1, 4),
                ("Big (part 2)", "section_part", 5, 8),
                ("Big (part 3)", "section_part", 9, 10),
            ],
        );
    }
}

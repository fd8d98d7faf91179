//! Lines of a file, and windows of lines cut at blank lines.
//!
//! A window starts at a line that is not blank, takes lines until it holds at least the target
//! count and then ends before the next blank line; a stretch with no blank line is cut hard at
//! twice the target. Windows leave out the blank lines between them and the trailing whitespace
//! of their last line. Because cuts fall on blank lines, an edit near the top of a file moves
//! the boundaries of the windows that follow only until two cuts meet the same blank line
//! again, so most windows of an edited file keep their hash.

use std::ops::Range;

/// Where each line starts.
pub(crate) struct LineIndex {
    /// Byte offset of each line's first byte; one entry per line (a final line without `\n`
    /// counts, an empty file has one empty line).
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub(crate) fn new(source: &[u8]) -> Self {
        let mut starts = vec![0];
        starts.extend(
            source
                .iter()
                .enumerate()
                .filter(|&(i, &b)| b == b'\n' && i + 1 < source.len())
                .map(|(i, _)| i + 1),
        );
        Self {
            starts,
            len: source.len(),
        }
    }

    /// The 0-based line holding byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    /// The byte range of line `line` (0-based), its `\n` excluded.
    pub(crate) fn line_range(&self, source: &[u8], line: usize) -> Range<usize> {
        let start = self.starts[line];
        let mut end = self.starts.get(line + 1).copied().unwrap_or(self.len);
        if end > start && source[end - 1] == b'\n' {
            end -= 1;
        }
        start..end
    }

    /// The first byte of line `line` (0-based).
    pub(crate) fn line_start(&self, line: usize) -> usize {
        self.starts[line]
    }
}

/// One window: its bytes and its 1-based inclusive lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) bytes: Range<usize>,
    pub(crate) start_line: u32,
    pub(crate) end_line: u32,
}

/// Cuts the lines that `bytes` covers into windows of about `target` lines (see the module doc).
pub(crate) fn windows(
    source: &[u8],
    index: &LineIndex,
    bytes: Range<usize>,
    target: usize,
) -> Vec<Window> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let target = target.max(1);
    let hard_max = target.saturating_mul(2);
    let first = index.line_of(bytes.start);
    let last = index.line_of(bytes.end - 1);
    let blank = |line: usize| {
        source[index.line_range(source, line)]
            .trim_ascii()
            .is_empty()
    };
    let mut out = Vec::new();
    let mut line = first;
    while line <= last {
        if blank(line) {
            line += 1;
            continue;
        }
        let start = line;
        let mut end = line;
        line += 1;
        while line <= last {
            if blank(line) {
                if line - start >= target {
                    break;
                }
            } else {
                end = line;
                if line + 1 - start >= hard_max {
                    line += 1;
                    break;
                }
            }
            line += 1;
        }
        out.push(window(source, index, start, end));
    }
    out
}

/// The window over lines `start..=end` (0-based), trailing whitespace left out.
fn window(source: &[u8], index: &LineIndex, start: usize, end: usize) -> Window {
    let last = index.line_range(source, end);
    let content_end = last.start + source[last].trim_ascii_end().len();
    Window {
        bytes: index.line_start(start)..content_end,
        start_line: line_number(start),
        end_line: line_number(end),
    }
}

/// A 0-based line index as a 1-based line number.
pub(crate) fn line_number(line: usize) -> u32 {
    u32::try_from(line + 1).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines `1..=n` of text, with blank lines at the given 1-based line numbers.
    fn text(n: usize, blanks: &[usize]) -> String {
        (1..=n)
            .map(|i| {
                if blanks.contains(&i) {
                    "\n".to_owned()
                } else {
                    format!("line {i}\n")
                }
            })
            .collect()
    }

    fn check(source: &str, target: usize, expected: &[(u32, u32)]) {
        let index = LineIndex::new(source.as_bytes());
        let got: Vec<(u32, u32)> = windows(source.as_bytes(), &index, 0..source.len(), target)
            .iter()
            .map(|w| {
                let body = &source[w.bytes.clone()];
                assert!(body.starts_with("line") && body.ends_with(|c: char| c.is_ascii_digit()));
                (w.start_line, w.end_line)
            })
            .collect();
        assert_eq!(got, expected, "target {target} over {source:?}");
    }

    #[test]
    fn windows_end_at_the_first_blank_line_after_the_target() {
        check(&text(10, &[3, 7]), 4, &[(1, 6), (8, 10)]);
        check(&text(10, &[3, 7]), 2, &[(1, 2), (4, 6), (8, 10)]);
    }

    #[test]
    fn a_stretch_without_blank_lines_is_cut_at_twice_the_target() {
        check(&text(9, &[]), 2, &[(1, 4), (5, 8), (9, 9)]);
    }

    #[test]
    fn blank_lines_at_the_edges_are_left_out() {
        check(&format!("\n\n{}\n\n", text(3, &[])), 60, &[(3, 5)]);
        check("\n  \n", 60, &[]);
    }

    #[test]
    fn a_last_line_without_newline_counts() {
        let index = LineIndex::new(b"a\nb");
        assert_eq!(index.line_of(2), 1);
        assert_eq!(index.line_range(b"a\nb", 1), 2..3);
        assert_eq!(LineIndex::new(b"a\n").line_of(1), 0);
    }
}

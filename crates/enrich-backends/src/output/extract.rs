//! Finding the JSON object in a model's reply: brace matching that respects strings.

/// The byte offset just past the `}` that closes the object opening at `start` (which must hold
/// a `{`), or `None` when the text ends first. Braces inside JSON strings, including escaped
/// quotes, do not count.
pub(super) fn object_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &byte) in bytes[start..].iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(start + offset + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The offset of the next `{` at or after `from`.
pub(super) fn next_open(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b == b'{')
        .map(|offset| from + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, start: usize, expected: Option<&str>) {
        let end = object_end(text.as_bytes(), start);
        assert_eq!(end.map(|end| &text[start..end]), expected, "in {text:?}");
    }

    #[test]
    fn matching_respects_strings_escapes_and_nesting() {
        check("{}", 0, Some("{}"));
        check(r#"x {"a": {"b": 1}} y"#, 2, Some(r#"{"a": {"b": 1}}"#));
        check(r#"{"a": "}"} tail}"#, 0, Some(r#"{"a": "}"}"#));
        check(r#"{"a": "\"}"} tail}"#, 0, Some(r#"{"a": "\"}"}"#));
        check(r#"{"a": "\\"} tail}"#, 0, Some(r#"{"a": "\\"}"#));
        check(r#"{"a": "é{"} }"#, 0, Some(r#"{"a": "é{"}"#));
        check(r#"{"a": [1, {"b": 2}"#, 0, None);
        check(r#"{"a": "}"#, 0, None);
    }

    #[test]
    fn next_open_finds_braces_from_an_offset() {
        assert_eq!(next_open(b"ab{c{", 0), Some(2));
        assert_eq!(next_open(b"ab{c{", 3), Some(4));
        assert_eq!(next_open(b"ab{c{", 5), None);
        assert_eq!(next_open(b"ab", 9), None);
    }
}

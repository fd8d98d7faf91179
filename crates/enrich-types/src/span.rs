//! Which span a piece of work is about, and LLMC's content hashes that identify spans and files.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A span's identity as every layer passes it: its content hash, its file and its lines.
///
/// The router's view of a span, a prompt's, a backend request's, output validation and the
/// output schema's line bounds all hold this one value (or borrow it) instead of repeating its
/// fields. Cloning copies no text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpanIdentity {
    /// The span's content hash ([`span_hash`], `sha256:…`), its identity in the index.
    pub span_hash: Arc<str>,
    /// The file, relative to the repository root.
    pub path: Arc<str>,
    /// The first line of the span (1-based, inclusive).
    pub line_start: u32,
    /// The last line of the span (inclusive).
    pub line_end: u32,
}

impl SpanIdentity {
    /// A span identity from its parts.
    pub fn new(
        span_hash: impl Into<Arc<str>>,
        path: impl Into<Arc<str>>,
        line_start: u32,
        line_end: u32,
    ) -> Self {
        Self {
            span_hash: span_hash.into(),
            path: path.into(),
            line_start,
            line_end,
        }
    }
}

/// A span's content hash, LLMC's `populate_span_hashes`: `"sha256:" + hex(sha256(lang + "\0" +
/// span bytes))`. `lang` is the file's language name as stored in `files.lang`.
///
pub fn span_hash(lang: &str, span_bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(lang.as_bytes());
    hasher.update([0u8]);
    hasher.update(span_bytes);
    format!("sha256:{}", hex(&hasher.finalize()))
}

/// A file's content hash, LLMC's `compute_hash`: `hex(sha256(file bytes))`, without a prefix.
pub fn file_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_the_sha256_test_vectors() {
        // sha256("") and sha256("abc") from FIPS 180-2; the span hash of "" under "ab" is
        // sha256("ab\0"), known from `printf 'ab\0' | sha256sum`.
        assert_eq!(
            file_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            file_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            span_hash("ab", b""),
            "sha256:969caaeb3626c0d5695eefa6aea53305b312b33d505272adc6cb24450650c243"
        );
        // `printf 'rust\0fn a() {}' | sha256sum`
        assert_eq!(
            span_hash("rust", b"fn a() {}"),
            "sha256:b4db3b9ef0476abadd830379970e7657bb76da6a4c84febd009dc0f2575bddac"
        );
    }

    #[test]
    fn the_identity_serializes_as_plain_fields() {
        let span = SpanIdentity::new("sha256:ab", "src/lib.rs", 3, 9);
        let json = serde_json::to_string(&span).unwrap();
        assert_eq!(
            json,
            r#"{"span_hash":"sha256:ab","path":"src/lib.rs","line_start":3,"line_end":9}"#
        );
        assert_eq!(serde_json::from_str::<SpanIdentity>(&json).unwrap(), span);
    }
}

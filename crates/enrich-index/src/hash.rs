//! The two content hashes of the index, computed exactly as LLMC's indexer computes them, so an
//! index enrich built and one LLMC built agree on every unchanged span and file.

use sha2::{Digest, Sha256};

/// A span's identity: `"sha256:" + hex(sha256(lang + "\0" + span bytes))`, LLMC's
/// `populate_span_hashes`. `lang` is the file's language name as stored in `files.lang`.
pub fn span_hash(lang: &str, span_bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(lang.as_bytes());
    hasher.update([0u8]);
    hasher.update(span_bytes);
    format!("sha256:{}", hex(&hasher.finalize()))
}

/// A file's content hash: `hex(sha256(file bytes))` without a prefix, LLMC's `compute_hash`.
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
            format!("sha256:{}", file_hash(b"ab\0"))
        );
    }
}

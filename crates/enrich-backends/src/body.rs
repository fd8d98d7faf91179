//! [`ResponseLimit`]: reading an answer's body up to the backend's `max_response_bytes`.

use enrich_types::FailureKind;

use crate::failure::BackendError;

/// The most bytes of an error answer's body (a non-2xx status) an adapter reads to quote its
/// message; the rest is not read. Error bodies are only ever quoted, in a few hundred characters.
pub const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Counts the bytes of one answer against a cap.
///
/// An adapter that reads a whole body before parsing it holds all of it in memory: a server
/// answering 100 MB would cost 100 MB per request in flight. Every adapter, first-party or not,
/// reads its answers through one `ResponseLimit` per request instead: a declared
/// `Content-Length` over the cap fails before a byte of the body is read, and a body without one
/// (chunked, or a stream) fails as soon as the bytes read pass the cap. Either way the failure
/// is a [`FailureKind::ResponseTooLarge`] naming the host and the cap, and the rest of the body
/// is never read. The limit works on byte chunks, so it knows no HTTP client: an adapter feeds
/// it whatever its client yields.
///
/// ```
/// use enrich_backends::{FailureKind, ResponseLimit};
///
/// let mut limit = ResponseLimit::new("http://gpu:11434", 8);
/// limit.check_declared(Some(6)).unwrap();
/// let mut body = Vec::new();
/// limit.append(&mut body, b"{\"a\":").unwrap();
/// let err = limit.append(&mut body, b"\"too long\"}").unwrap_err();
/// assert_eq!(err.kind, FailureKind::ResponseTooLarge);
/// assert_eq!(body, b"{\"a\":");
/// ```
#[derive(Debug, Clone)]
pub struct ResponseLimit {
    host: String,
    max_bytes: u64,
    read: u64,
}

impl ResponseLimit {
    /// A limit of `max_bytes` for one answer from `host` (the host as shown to people, without
    /// credentials: the adapter's `describe_host()`).
    pub fn new(host: impl Into<String>, max_bytes: u64) -> Self {
        Self {
            host: host.into(),
            max_bytes,
            read: 0,
        }
    }

    /// The cap in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The bytes counted so far.
    pub fn read(&self) -> u64 {
        self.read
    }

    /// Fails when the answer declares (`Content-Length`) more bytes than the cap, before any
    /// of its body is read. `None` (no declared length) always passes.
    ///
    /// # Errors
    ///
    /// A [`FailureKind::ResponseTooLarge`] error naming the host, the declared length and the
    /// cap.
    pub fn check_declared(&self, content_length: Option<u64>) -> Result<(), BackendError> {
        match content_length {
            Some(declared) if declared > self.max_bytes => {
                Err(self.too_large(&format!("it declares {declared} bytes")))
            }
            _ => Ok(()),
        }
    }

    /// Counts `len` more bytes of the answer (a chunk read from the body, streamed or not).
    ///
    /// # Errors
    ///
    /// A [`FailureKind::ResponseTooLarge`] error once the bytes counted pass the cap: stop
    /// reading the body then.
    pub fn count(&mut self, len: usize) -> Result<(), BackendError> {
        self.read = self
            .read
            .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
        if self.read > self.max_bytes {
            return Err(self.too_large(&format!("more than {} bytes arrived", self.max_bytes)));
        }
        Ok(())
    }

    /// Counts `chunk` and appends it to `body`; a chunk that passes the cap is not appended.
    ///
    /// # Errors
    ///
    /// As [`count`](Self::count).
    pub fn append(&mut self, body: &mut Vec<u8>, chunk: &[u8]) -> Result<(), BackendError> {
        self.count(chunk.len())?;
        body.extend_from_slice(chunk);
        Ok(())
    }

    /// The capacity to reserve for a body that declares `content_length` bytes: never more than
    /// the cap, so a lying header cannot make the adapter allocate.
    pub fn initial_capacity(&self, content_length: Option<u64>) -> usize {
        let declared = content_length.unwrap_or(0).min(self.max_bytes);
        usize::try_from(declared).unwrap_or(0)
    }

    fn too_large(&self, what: &str) -> BackendError {
        BackendError::new(
            FailureKind::ResponseTooLarge,
            format!(
                "the answer from {} is larger than the backend's `max_response_bytes` of {} \
                 bytes ({what}), so it was not read further; raise `max_response_bytes` in the \
                 backend's entry if its answers are meant to be that large, or check that \
                 `url` points at the model server",
                self.host, self.max_bytes
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_over_the_cap_fails_before_reading() {
        let limit = ResponseLimit::new("http://h", 100);
        assert!(limit.check_declared(None).is_ok());
        assert!(limit.check_declared(Some(100)).is_ok());
        let err = limit.check_declared(Some(101)).unwrap_err();
        assert_eq!(err.kind, FailureKind::ResponseTooLarge);
        assert!(err.message.contains("http://h"), "{}", err.message);
        assert!(
            err.message.contains("declares 101 bytes"),
            "{}",
            err.message
        );
        assert!(err.message.contains("100 bytes"), "{}", err.message);
        assert_eq!(limit.read(), 0);
    }

    #[test]
    fn chunks_are_counted_up_to_the_cap_and_the_chunk_passing_it_is_refused() {
        let mut limit = ResponseLimit::new("http://h", 10);
        let mut body = Vec::new();
        limit.append(&mut body, b"12345").unwrap();
        limit.append(&mut body, b"67890").unwrap();
        assert_eq!(limit.read(), 10);
        let err = limit.append(&mut body, b"x").unwrap_err();
        assert_eq!(err.kind, FailureKind::ResponseTooLarge);
        assert!(
            err.message.contains("more than 10 bytes"),
            "{}",
            err.message
        );
        assert_eq!(body, b"1234567890");
        assert!(limit.count(0).is_err(), "past the cap stays past it");
    }

    #[test]
    fn the_reserved_capacity_never_exceeds_the_cap() {
        let limit = ResponseLimit::new("http://h", 4096);
        assert_eq!(limit.initial_capacity(None), 0);
        assert_eq!(limit.initial_capacity(Some(100)), 100);
        assert_eq!(limit.initial_capacity(Some(u64::MAX)), 4096);
    }
}

//! The Batch-API JSONL line formats (OpenAI's, which vLLM's `run-batch` reads and writes too),
//! the stable `custom_id` of a span's request, and the cutting of a batch into files at the
//! service's limits.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// A file's limits: OpenAI's Batch API takes at most 50,000 requests and 200 MB per input
/// file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Requests per file.
    pub(crate) requests: usize,
    /// Bytes per file.
    pub(crate) bytes: u64,
}

impl Limits {
    /// The Batch API's documented limits.
    pub(crate) const BATCH_API: Self = Self {
        requests: 50_000,
        bytes: 200 * 1024 * 1024,
    };
}

/// The `custom_id` of a span's request: the prompt fingerprint and the span hash, so the same
/// span under the same prompt always has the same id, and an answer can only be matched to the
/// request it answers.
pub(crate) fn custom_id(prompt_fingerprint: &str, span_hash: &str) -> String {
    let hash = span_hash.strip_prefix("sha256:").unwrap_or(span_hash);
    format!("enrich-{prompt_fingerprint}-{hash}")
}

/// One input line: `{"custom_id", "method": "POST", "url", "body"}`, ending in a newline.
pub(crate) fn request_line(custom_id: &str, body: &Value) -> Vec<u8> {
    let line = serde_json::json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": enrich_adapter_openai::BATCH_ENDPOINT,
        "body": body,
    });
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// One line of an output or error file.
#[derive(Debug, Deserialize)]
pub(crate) struct OutputLine {
    /// The request it answers.
    pub(crate) custom_id: String,
    /// The answer, when the request was sent.
    #[serde(default)]
    pub(crate) response: Option<Response>,
    /// Why the request was not answered.
    #[serde(default)]
    pub(crate) error: Option<LineError>,
}

/// `response`: the HTTP answer to the request, `{status_code, request_id, body}`. An engine
/// that writes the chat completion itself as `response` is read as a 200 with that body.
#[derive(Debug)]
pub(crate) struct Response {
    /// Its status.
    pub(crate) status_code: u16,
    /// Its body (a chat completion, or an error object).
    pub(crate) body: Value,
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = Value::deserialize(deserializer)?;
        match value.get("status_code").and_then(Value::as_u64) {
            Some(status) => Ok(Self {
                status_code: u16::try_from(status).map_err(serde::de::Error::custom)?,
                body: value.get_mut("body").map(Value::take).unwrap_or_default(),
            }),
            None if value.get("choices").is_some() => Ok(Self {
                status_code: 200,
                body: value,
            }),
            None => Err(serde::de::Error::custom(
                "`response` has no `status_code` and is no chat completion",
            )),
        }
    }
}

/// `error`: `{code, message}`.
#[derive(Debug, Deserialize)]
pub(crate) struct LineError {
    /// `batch_expired`, `batch_cancelled`, `request_timeout`, …
    #[serde(default)]
    pub(crate) code: Option<String>,
    /// What happened.
    #[serde(default)]
    pub(crate) message: Option<String>,
}

impl LineError {
    /// True when the request never ran: the window ended or the batch was cancelled first.
    /// Such a request goes back to pending, with no attempt and no ledger entry.
    pub(crate) fn never_ran(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("batch_expired" | "batch_cancelled")
        )
    }
}

/// A file of request lines being written, cut into parts at [`Limits`].
pub(crate) struct FileSplitter<'a> {
    limits: Limits,
    /// The path of part `n` (from 1).
    path_of: Box<dyn Fn(usize) -> PathBuf + 'a>,
    current: Option<Part>,
    done: Vec<Part>,
}

/// One part: its file and what it holds.
pub(crate) struct Part {
    /// Where it is.
    pub(crate) path: PathBuf,
    writer: Option<BufWriter<File>>,
    /// Requests in it.
    pub(crate) requests: usize,
    /// Its size.
    pub(crate) bytes: u64,
    /// `(custom_id, span_hash)` of each request.
    pub(crate) ids: Vec<(String, String)>,
}

impl<'a> FileSplitter<'a> {
    /// Parts at the paths `path_of` gives, each within `limits`.
    pub(crate) fn new(limits: Limits, path_of: impl Fn(usize) -> PathBuf + 'a) -> Self {
        Self {
            limits,
            path_of: Box::new(path_of),
            current: None,
            done: Vec::new(),
        }
    }

    /// Appends a line; a line that would take the part past a limit starts the next part. A
    /// single line over the byte limit is refused.
    pub(crate) fn push(&mut self, line: &[u8], custom_id: &str, span_hash: &str) -> Result<()> {
        let len = line.len() as u64;
        anyhow::ensure!(
            len <= self.limits.bytes,
            "the request for span {span_hash} alone is {len} bytes, over the {} bytes a batch \
             file may hold; lower `max_snippet_bytes`",
            self.limits.bytes
        );
        let full = self.current.as_ref().is_some_and(|part| {
            part.requests >= self.limits.requests || part.bytes + len > self.limits.bytes
        });
        if full {
            self.finish_part()?;
        }
        if self.current.is_none() {
            let path = (self.path_of)(self.done.len() + 1);
            let file = File::create(&path)
                .with_context(|| format!("cannot create the batch file {}", path.display()))?;
            self.current = Some(Part {
                path,
                writer: Some(BufWriter::new(file)),
                requests: 0,
                bytes: 0,
                ids: Vec::new(),
            });
        }
        let part = self.current.as_mut().expect("a part is open");
        let writer = part.writer.as_mut().expect("an open part has its writer");
        writer
            .write_all(line)
            .with_context(|| format!("cannot write the batch file {}", part.path.display()))?;
        part.requests += 1;
        part.bytes += len;
        part.ids.push((custom_id.to_owned(), span_hash.to_owned()));
        Ok(())
    }

    fn finish_part(&mut self) -> Result<()> {
        if let Some(mut part) = self.current.take() {
            if let Some(mut writer) = part.writer.take() {
                writer.flush().with_context(|| {
                    format!("cannot write the batch file {}", part.path.display())
                })?;
            }
            self.done.push(part);
        }
        Ok(())
    }

    /// The parts written, each complete on disk.
    pub(crate) fn finish(mut self) -> Result<Vec<Part>> {
        self.finish_part()?;
        Ok(self.done)
    }
}

/// The path of part `n` of a file at `path`: the path itself for the first, `stem-n.ext`
/// after it.
pub(crate) fn part_path(path: &Path, n: usize) -> PathBuf {
    if n == 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map_or_else(|| "batch".into(), |s| s.to_string_lossy());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_are_stable_and_tell_prompts_apart() {
        let hash = "sha256:00ff";
        assert_eq!(custom_id("abc123", hash), "enrich-abc123-00ff");
        assert_eq!(custom_id("abc123", hash), custom_id("abc123", hash));
        assert_ne!(custom_id("abc123", hash), custom_id("abc124", hash));
    }

    #[test]
    fn request_lines_have_the_batch_apis_shape() {
        let line = request_line("enrich-x-1", &serde_json::json!({"model": "m"}));
        assert_eq!(line.last(), Some(&b'\n'));
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"custom_id": "enrich-x-1", "method": "POST",
                "url": "/v1/chat/completions", "body": {"model": "m"}})
        );
    }

    #[test]
    fn output_lines_read_answers_and_errors() {
        let ok: OutputLine = serde_json::from_str(
            r#"{"id":"r1","custom_id":"c1","response":{"status_code":200,"request_id":"q","body":{"choices":[]}},"error":null}"#,
        )
        .unwrap();
        assert_eq!(ok.custom_id, "c1");
        assert_eq!(ok.response.as_ref().map(|r| r.status_code), Some(200));
        assert!(ok.error.is_none());
        let bare: OutputLine = serde_json::from_str(
            r#"{"custom_id":"c3","response":{"id":"cmpl-1","object":"chat.completion","choices":[]}}"#,
        )
        .unwrap();
        let bare = bare.response.unwrap();
        assert_eq!(bare.status_code, 200);
        assert_eq!(bare.body["id"], "cmpl-1");
        assert!(
            serde_json::from_str::<OutputLine>(r#"{"custom_id":"c","response":{"x":1}}"#).is_err()
        );
        let expired: OutputLine = serde_json::from_str(
            r#"{"id":"r2","custom_id":"c2","response":null,"error":{"code":"batch_expired","message":"late"}}"#,
        )
        .unwrap();
        assert!(expired.error.as_ref().unwrap().never_ran());
        let timeout = LineError {
            code: Some("request_timeout".into()),
            message: None,
        };
        assert!(!timeout.never_ran());
    }

    /// Splits `n` lines of `len` bytes under `limits`; returns the requests per part.
    fn split(limits: Limits, n: usize, len: usize) -> Vec<usize> {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("in.jsonl");
        let mut splitter = FileSplitter::new(limits, move |k| part_path(&base, k));
        let mut line = vec![b'x'; len - 1];
        line.push(b'\n');
        for i in 0..n {
            splitter.push(&line, &format!("c{i}"), "h").unwrap();
        }
        let parts = splitter.finish().unwrap();
        for part in &parts {
            let on_disk = std::fs::metadata(&part.path).unwrap().len();
            assert_eq!(on_disk, part.bytes);
            assert!(part.requests <= limits.requests && part.bytes <= limits.bytes);
        }
        parts.iter().map(|p| p.requests).collect()
    }

    #[test]
    fn files_are_cut_at_the_request_and_byte_limits() {
        let by_count = Limits {
            requests: 3,
            bytes: 1_000,
        };
        assert_eq!(split(by_count, 7, 10), [3, 3, 1]);
        assert_eq!(split(by_count, 6, 10), [3, 3]);
        let by_size = Limits {
            requests: 100,
            bytes: 25,
        };
        assert_eq!(split(by_size, 5, 10), [2, 2, 1]);
        assert_eq!(split(Limits::BATCH_API, 4, 10), [4]);
        assert_eq!(Limits::BATCH_API.requests, 50_000);
        assert_eq!(Limits::BATCH_API.bytes, 209_715_200);
    }

    #[test]
    fn a_line_over_the_byte_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("in.jsonl");
        let limits = Limits {
            requests: 10,
            bytes: 5,
        };
        let mut splitter = FileSplitter::new(limits, move |k| part_path(&base, k));
        let err = splitter.push(b"0123456789\n", "c", "sha256:1").unwrap_err();
        assert!(err.to_string().contains("over the 5 bytes"), "{err}");
    }

    #[test]
    fn parts_after_the_first_are_numbered() {
        let path = Path::new("/tmp/out.jsonl");
        assert_eq!(part_path(path, 1), path);
        assert_eq!(part_path(path, 2), Path::new("/tmp/out-2.jsonl"));
        assert_eq!(part_path(Path::new("x"), 3), Path::new("x-3"));
    }
}

//! [`BatchApi`]: OpenAI's Batch and Files APIs for one backend, and the request and answer of
//! each batch line, which are the adapter's own (`POST /chat/completions` body; a chat
//! completion read as a live answer is read).
//!
//! The endpoints: `POST {url}/files` (multipart, `purpose=batch`), `POST {url}/batches`
//! (`completion_window: "24h"`), `GET {url}/batches/{id}`, `POST {url}/batches/{id}/cancel`,
//! `GET {url}/files/{id}/content`. Every request goes through the backend's own client (its
//! key, TLS, proxies, no redirects); a failure is a [`BackendError`] classified as a live
//! call's, with the wait a `Retry-After` asks for.

use std::io::Write as _;
use std::time::Duration;

use enrich_backends::{BackendError, FailureKind};
use enrich_config::BackendSpec;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::adapter::OpenAiAdapter;
use crate::error::OpenAiConfigError;

/// The endpoint every batch line names (`url`) and every batch is created for.
pub const BATCH_ENDPOINT: &str = "/v1/chat/completions";

/// The completion window every batch is created with (the only one OpenAI offers).
pub const COMPLETION_WINDOW: &str = "24h";

/// The shortest time one Batch or Files API call may take: uploads and downloads carry up to
/// 200 MB, so the backend's own request timeout is stretched to at least this.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);

/// The multipart boundary of an upload: no JSONL line (JSON with its newlines escaped) can hold
/// a line equal to it.
const BOUNDARY: &str = "enrich-batch-boundary-7c2f0e5a9d41";

/// A batch's state, as the service reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// The input file is being checked.
    Validating,
    /// The input file was refused; no request ran.
    Failed,
    /// Requests are running.
    InProgress,
    /// The output and error files are being written.
    Finalizing,
    /// Done: the output and error files are ready.
    Completed,
    /// The completion window passed; what finished is in the files, the rest in the error file.
    Expired,
    /// Being cancelled.
    Cancelling,
    /// Cancelled; what finished is in the files.
    Cancelled,
}

impl BatchStatus {
    /// Every state, in the order a batch goes through them.
    pub const ALL: [Self; 8] = [
        Self::Validating,
        Self::InProgress,
        Self::Finalizing,
        Self::Completed,
        Self::Failed,
        Self::Expired,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// The service's name of the state.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True once the batch will change no more: its files (if any) are final.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Expired | Self::Cancelled
        )
    }
}

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct RequestCounts {
    /// Requests in the batch.
    #[serde(default)]
    pub total: u64,
    /// Requests that got an answer (whatever its status code).
    #[serde(default)]
    pub completed: u64,
    /// Requests that failed.
    #[serde(default)]
    pub failed: u64,
}

/// A batch as the service describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    /// The service's id of the batch.
    pub id: String,
    /// Its state.
    pub status: BatchStatus,
    /// The uploaded input file.
    pub input_file_id: String,
    /// The answers, once there are any.
    pub output_file_id: Option<String>,
    /// The failed requests' lines, once there are any.
    pub error_file_id: Option<String>,
    /// How many requests it holds, answered and failed.
    pub request_counts: RequestCounts,
    /// When the completion window ends, in seconds since the Unix epoch.
    pub expires_at: Option<u64>,
    /// Why the batch failed (the input file's problems), as the service says it.
    pub errors: Vec<String>,
}

/// The batch object on the wire (private: [`BatchInfo`] is what crosses).
#[derive(Debug, Deserialize)]
struct WireBatch {
    id: String,
    status: String,
    #[serde(default)]
    input_file_id: String,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    #[serde(default)]
    request_counts: Option<RequestCounts>,
    expires_at: Option<u64>,
    errors: Option<WireErrors>,
}

#[derive(Debug, Deserialize)]
struct WireErrors {
    #[serde(default)]
    data: Vec<WireError>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    line: Option<u64>,
}

/// `POST /files`'s answer.
#[derive(Debug, Deserialize)]
struct WireFile {
    id: String,
}

/// One backend's Batch and Files APIs, with its adapter's request body and answer reading.
///
/// Built from the same [`BackendSpec`] as the backend's [`OpenAiAdapter`]: the same base URL,
/// key, options and client.
#[derive(Debug)]
pub struct BatchApi {
    adapter: OpenAiAdapter,
}

impl BatchApi {
    /// The Batch API of the backend `spec` describes.
    ///
    /// # Errors
    ///
    /// As [`OpenAiAdapter::new`].
    pub fn new(spec: BackendSpec) -> Result<Self, OpenAiConfigError> {
        Ok(Self {
            adapter: OpenAiAdapter::new(spec)?,
        })
    }

    /// The adapter whose requests the batch lines carry
    /// ([`OpenAiAdapter::request_body`]) and which reads the answers
    /// ([`OpenAiAdapter::read_answer`]).
    pub fn adapter(&self) -> &OpenAiAdapter {
        &self.adapter
    }

    /// Uploads a JSONL file of batch lines (`POST /files`, `purpose=batch`) under `name`;
    /// returns its id.
    ///
    /// # Errors
    ///
    /// The [`BackendError`] of a failed call (connection, status, a body that is no file).
    pub async fn upload(&self, name: &str, jsonl: &[u8]) -> Result<String, BackendError> {
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        let mut body = Vec::with_capacity(jsonl.len() + 512);
        let _ = write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/jsonl\r\n\r\n"
        );
        body.extend_from_slice(jsonl);
        let _ = write!(body, "\r\n--{BOUNDARY}--\r\n");
        let request = self
            .client()
            .post(self.settings_endpoint("files"))
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body);
        let bytes = self.call(request).await?;
        let file: WireFile = self.parse(&bytes, "a file object")?;
        Ok(file.id)
    }

    /// Creates a batch of the uploaded `input_file_id` (`POST /batches`,
    /// [`BATCH_ENDPOINT`], [`COMPLETION_WINDOW`]) with `metadata`.
    ///
    /// # Errors
    ///
    /// The [`BackendError`] of a failed call.
    pub async fn create(
        &self,
        input_file_id: &str,
        metadata: &[(&str, &str)],
    ) -> Result<BatchInfo, BackendError> {
        let metadata: serde_json::Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        let body = json!({
            "input_file_id": input_file_id,
            "endpoint": BATCH_ENDPOINT,
            "completion_window": COMPLETION_WINDOW,
            "metadata": metadata,
        });
        let request = self
            .client()
            .post(self.settings_endpoint("batches"))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.batch(request).await
    }

    /// The batch `id` now (`GET /batches/{id}`).
    ///
    /// # Errors
    ///
    /// The [`BackendError`] of a failed call.
    pub async fn get(&self, id: &str) -> Result<BatchInfo, BackendError> {
        let url = self.settings_endpoint(&format!("batches/{}", path_segment(id)));
        self.batch(self.client().get(url)).await
    }

    /// Asks the service to cancel the batch `id` (`POST /batches/{id}/cancel`).
    ///
    /// # Errors
    ///
    /// The [`BackendError`] of a failed call.
    pub async fn cancel(&self, id: &str) -> Result<BatchInfo, BackendError> {
        let url = self.settings_endpoint(&format!("batches/{}/cancel", path_segment(id)));
        self.batch(self.client().post(url)).await
    }

    /// Starts downloading the file `file_id` (`GET /files/{id}/content`): its body is read
    /// chunk by chunk ([`Download::chunk`]), so a file of any size passes through a fixed amount
    /// of memory.
    ///
    /// # Errors
    ///
    /// The [`BackendError`] of a failed call.
    pub async fn download(&self, file_id: &str) -> Result<Download<'_>, BackendError> {
        let url = self.settings_endpoint(&format!("files/{}/content", path_segment(file_id)));
        let started = tokio::time::Instant::now();
        let send = self.client().get(url).send();
        let reply = tokio::time::timeout(self.timeout(), send)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|err| self.adapter.transport_error(err))?;
        if !reply.status().is_success() {
            return Err(self
                .adapter
                .status_error(crate::transport::Reply::from(reply))
                .await);
        }
        Ok(Download {
            api: self,
            reply,
            deadline: started + self.timeout(),
        })
    }

    fn client(&self) -> &reqwest::Client {
        self.adapter.transport().client()
    }

    fn settings_endpoint(&self, path: &str) -> reqwest::Url {
        self.adapter.settings().endpoint(path)
    }

    fn timeout(&self) -> Duration {
        self.adapter.settings().timeout.max(TRANSFER_TIMEOUT)
    }

    fn timed_out(&self) -> BackendError {
        BackendError::new(
            FailureKind::Timeout,
            format!(
                "no complete answer from the Batch API at {} within {} s",
                self.adapter.settings().host,
                self.timeout().as_secs()
            ),
        )
    }

    /// Sends `request` and reads the whole answer of a successful call (under the backend's
    /// `max_response_bytes`).
    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, BackendError> {
        let exchange = async {
            let reply = request
                .send()
                .await
                .map_err(|err| self.adapter.transport_error(err))?;
            let reply = crate::transport::Reply::from(reply);
            if !reply.status().is_success() {
                return Err(self.adapter.status_error(reply).await);
            }
            reply
                .bytes(self.adapter.limit())
                .await
                .map_err(|err| match err {
                    crate::transport::BodyError::TooLarge(err) => err,
                    crate::transport::BodyError::Transport(err) => {
                        self.adapter.transport_error(err)
                    }
                })
        };
        tokio::time::timeout(self.timeout(), exchange)
            .await
            .map_err(|_| self.timed_out())?
    }

    async fn batch(&self, request: reqwest::RequestBuilder) -> Result<BatchInfo, BackendError> {
        let bytes = self.call(request).await?;
        let wire: WireBatch = self.parse(&bytes, "a batch object")?;
        let status = BatchStatus::from_name(&wire.status).ok_or_else(|| {
            BackendError::new(
                FailureKind::ServerError,
                format!(
                    "the Batch API at {} reports the unknown state '{}' for batch {}",
                    self.adapter.settings().host,
                    enrich_backends::http::excerpt(&wire.status),
                    wire.id
                ),
            )
        })?;
        let errors = wire
            .errors
            .map(|e| e.data)
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let line = e.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                format!(
                    "{}: {}{line}",
                    e.code.unwrap_or_else(|| "error".to_owned()),
                    e.message.unwrap_or_default()
                )
            })
            .collect();
        Ok(BatchInfo {
            id: wire.id,
            status,
            input_file_id: wire.input_file_id,
            output_file_id: wire.output_file_id.filter(|id| !id.is_empty()),
            error_file_id: wire.error_file_id.filter(|id| !id.is_empty()),
            request_counts: wire.request_counts.unwrap_or_default(),
            expires_at: wire.expires_at,
            errors,
        })
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
        what: &str,
    ) -> Result<T, BackendError> {
        serde_json::from_slice(bytes).map_err(|err| {
            BackendError::new(
                FailureKind::ServerError,
                format!(
                    "the answer from {} is not {what} ({err}): \"{}\"; check that the backend's \
                     `url` is the API's base URL (usually ending in /v1) and that the server \
                     offers the Batch API",
                    self.adapter.settings().host,
                    enrich_backends::http::body_excerpt(bytes)
                ),
            )
        })
    }
}

/// A file being downloaded ([`BatchApi::download`]).
#[derive(Debug)]
pub struct Download<'a> {
    api: &'a BatchApi,
    reply: reqwest::Response,
    deadline: tokio::time::Instant,
}

impl Download<'_> {
    /// The next bytes of the file; `None` at its end.
    ///
    /// # Errors
    ///
    /// The [`BackendError`] of a broken connection, or of a download that outlived the time
    /// a transfer may take.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, BackendError> {
        let next = tokio::time::timeout_at(self.deadline, self.reply.chunk())
            .await
            .map_err(|_| self.api.timed_out())?;
        next.map(|chunk| chunk.map(|bytes| bytes.to_vec()))
            .map_err(|err| self.api.adapter.transport_error(err))
    }
}

/// An id as one path segment: characters outside `[A-Za-z0-9._-]` are percent-encoded, so an id
/// cannot reach another path.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(path_segment("batch_abc-1.2"), "batch_abc-1.2");
        assert_eq!(path_segment("../files/x"), "..%2Ffiles%2Fx");
        assert_eq!(path_segment("a b?c"), "a%20b%3Fc");
    }

    #[test]
    fn states_have_the_services_names() {
        for status in BatchStatus::ALL {
            assert_eq!(BatchStatus::from_name(status.as_str()), Some(status));
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, status.as_str());
        }
        assert!(BatchStatus::Expired.is_final());
        assert!(!BatchStatus::Finalizing.is_final());
        assert_eq!(BatchStatus::from_name("paused"), None);
    }
}

//! Helpers shared by the test modules: a plain HTTP client for the fake server.

use enrich_testkit::{FakeOllama, FakeOllamaConfig};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

/// The model the test servers serve.
pub(crate) const MODEL: &str = "qwen2.5:7b-instruct";

/// A test server with the default configuration.
pub(crate) async fn server() -> FakeOllama {
    start(FakeOllamaConfig::default()).await
}

pub(crate) async fn start(config: FakeOllamaConfig) -> FakeOllama {
    FakeOllama::start(config)
        .await
        .expect("the fake server starts")
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) retry_after: Option<String>,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text))
    }

    /// Each NDJSON line, parsed.
    pub(crate) fn lines(&self) -> Vec<Value> {
        self.text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
            .collect()
    }
}

async fn read(response: reqwest::Response) -> Reply {
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let content_type = header(CONTENT_TYPE).unwrap_or_default();
    let retry_after = header(RETRY_AFTER);
    Reply {
        status: response.status().as_u16(),
        content_type,
        retry_after,
        text: response.text().await.expect("the body is readable"),
    }
}

pub(crate) async fn post(client: &reqwest::Client, url: String, body: &Value) -> Reply {
    read(
        client
            .post(url)
            .json(body)
            .send()
            .await
            .expect("the server answers"),
    )
    .await
}

pub(crate) async fn get(client: &reqwest::Client, url: String) -> Reply {
    read(client.get(url).send().await.expect("the server answers")).await
}

//! Provenance and stale enrichments end to end: a run records how each enrichment was made
//! (with the model digest the fake Ollama server lists), `enrich show` prints it, and `enrich
//! status` counts stale enrichments by reason against the configuration as it is now.

use std::io::{Read, Write};

use serde_json::Value;

use super::support::{Server, TestRepo, config};

/// The digest the fake server's `GET /api/tags` lists for enrich's default model, read over
/// plain HTTP/1.1.
fn listed_digest(url: &str) -> String {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the fake");
    write!(
        stream,
        "GET /api/tags HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let body = answer.split_once("\r\n\r\n").expect("a body").1;
    let tags: Value = serde_json::from_str(body).expect("JSON");
    tags["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["name"] == "qwen2.5:7b-instruct")
        .and_then(|m| m["digest"].as_str())
        .expect("a digest")
        .to_owned()
}

#[test]
fn a_run_records_how_each_enrichment_was_made_and_show_prints_it() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    repo.enrich(&["run"]).expect_code(0);
    let digest = listed_digest(server.url());

    let shown = repo
        .enrich(&["--json", "show", &repo.spans[0].hash])
        .expect_code(0)
        .json();
    let made = &shown["enrichment"]["enrichment"]["provenance"];
    assert_eq!(made["backend"], "fake", "{shown}");
    assert_eq!(made["provider"], "ollama");
    assert_eq!(made["model"], "qwen2.5:7b-instruct");
    assert_eq!(made["model_digest"], digest.as_str());
    assert_eq!(made["chain"], "local");
    assert_eq!(made["schema_version"], "enrichment.v1");
    assert!(
        made["prompt_fingerprint"]
            .as_str()
            .is_some_and(|f| f.len() == 12)
    );
    assert!(
        made["options_fingerprint"]
            .as_str()
            .is_some_and(|f| f.len() == 12)
    );
    assert!(
        made["output_tokens"].as_u64().is_some_and(|n| n > 0),
        "{made}"
    );
    assert_eq!(
        repo.count("SELECT COUNT(DISTINCT model_digest) FROM enrich_provenance"),
        1,
        "one digest, asked once for the run"
    );

    let text = repo.enrich(&["show", &repo.spans[0].hash]);
    let text = &text.expect_code(0).stdout;
    assert!(
        text.contains(&format!(
            "made      by backend fake (ollama), model qwen2.5:7b-instruct, digest {digest}, chain local"
        )),
        "{text}"
    );

    // LLMC writes over one enrichment: its provenance is unknown from then on.
    repo.raw()
        .execute(
            "UPDATE enrichments SET created_at = created_at - 100 WHERE span_hash = ?1",
            [&repo.spans[1].hash],
        )
        .expect("LLMC writes");
    let text = repo.enrich(&["show", &repo.spans[1].hash]);
    assert!(
        text.expect_code(0).stdout.contains("made      unknown"),
        "{}",
        text.stdout
    );
}

#[test]
fn status_counts_stale_enrichments_by_reason() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    repo.enrich(&["run"]).expect_code(0);
    let enriched = repo.count("SELECT COUNT(*) FROM enrichments");
    assert!(enriched > 1);

    let stale = |repo: &TestRepo| {
        let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
        status["stale"].clone()
    };
    let now = stale(&repo);
    assert_eq!(
        (&now["enriched"], &now["stale"], &now["unknown"]),
        (&Value::from(enriched), &Value::from(0), &Value::from(0)),
        "{now}"
    );

    // Other options and a prompt template: every enrichment is stale for both reasons.
    let changed = config(&[("fake", server.url())], "")
        + "options = { temperature = 0.2 }\n\n[enrichment.prompt]\ntemplate = \"Explain {path}:\\n{snippet}\"\n";
    repo.write_config(&changed);
    let now = stale(&repo);
    assert_eq!(now["options"], enriched, "{now}");
    assert_eq!(now["prompt"], enriched, "{now}");
    assert_eq!(now["stale"], enriched);
    let text = repo.enrich(&["status"]);
    let text = &text.expect_code(0).stdout;
    assert!(
        text.contains(&format!(
            "stale          {enriched} of {enriched} enrichment(s)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("  prompt       {enriched}")),
        "{text}"
    );

    // Another model in the chain: stale for the model.
    repo.write_config(
        &config(&[("fake", server.url())], "")
            .replace("model = \"qwen2.5:7b-instruct\"", "model = \"qwen3:8b\""),
    );
    assert_eq!(stale(&repo)["model"], enriched);

    // An enrichment that LLMC wrote is counted as unknown provenance, apart from stale.
    repo.write_config(&config(&[("fake", server.url())], ""));
    repo.raw()
        .execute(
            "DELETE FROM enrich_provenance WHERE span_hash = ?1",
            [&repo.spans[0].hash],
        )
        .expect("delete");
    let now = stale(&repo);
    assert_eq!(
        (&now["unknown"], &now["stale"]),
        (&Value::from(1), &Value::from(0))
    );
}

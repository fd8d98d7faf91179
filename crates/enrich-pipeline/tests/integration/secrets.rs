//! Secrets in span source never reach a backend: redacted from the prompt by default, or the
//! span not sent at all (`[enrichment.secrets] action = "skip"`), and the plan says which.

use std::sync::Arc;

use enrich_config::SecretsAction;
use enrich_pipeline::RunControl;
use enrich_types::LedgerKind;

use crate::support::{Fixture, Scripted, config, pipeline};

/// A span holding an AWS key id and a GitHub token, built when the test runs.
fn leaky_source() -> (String, [String; 2]) {
    let aws = format!("AKIA{}", "QX7Z2KD5MW3RT6YB");
    let github = format!("ghp_{}", "x9K2mQ7vL4pR8tZ1wB6nD3fH5jY0cA2sE4gU");
    let source = format!("def connect():\n    return Client(\"{aws}\", \"{github}\")\n");
    (source, [aws, github])
}

#[tokio::test(start_paused = true)]
async fn a_secret_is_redacted_from_the_prompt_and_the_span_is_enriched() {
    let fixture = Fixture::new();
    let (source, secrets) = leaky_source();
    fixture.index_single_span("src/client.py", &source);
    fixture.index_single_span("src/clean.py", "def clean():\n    return 1\n");
    let model = Arc::new(Scripted::new("model"));
    let config = config(&[&model]);
    let (pipeline, _) = pipeline(&fixture, &config, &[&model], |_| {});

    let plan = pipeline.plan(10).expect("plan");
    let planned: Vec<(&str, &[&str], bool)> = plan
        .spans
        .iter()
        .map(|s| (&*s.span.path, s.secrets.as_slice(), s.withheld))
        .collect();
    assert_eq!(
        planned,
        [
            (
                "src/client.py",
                &["aws-access-key", "github-pat"][..],
                false
            ),
            ("src/clean.py", &[][..], false),
        ]
    );

    let summary = pipeline.run(&RunControl::new()).await.expect("run");
    assert_eq!((summary.succeeded, summary.failed), (2, 0));
    let prompts: Vec<String> = model
        .requests()
        .iter()
        .map(|r| r.prompt.to_string())
        .collect();
    let leaky = prompts
        .iter()
        .find(|p| p.contains("src/client.py"))
        .expect("the span was sent");
    assert!(
        leaky.contains("return Client(\"[REDACTED:aws-access-key]\", \"[REDACTED:github-pat]\")"),
        "{leaky}"
    );
    for prompt in &prompts {
        for secret in &secrets {
            assert!(!prompt.contains(secret.as_str()), "{prompt}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn with_action_skip_a_span_holding_a_secret_is_ledgered_and_never_sent() {
    let fixture = Fixture::new();
    let (source, secrets) = leaky_source();
    let leaky = fixture.index_single_span("src/client.py", &source);
    fixture.index_single_span("src/clean.py", "def clean():\n    return 1\n");
    let model = Arc::new(Scripted::new("model"));
    let mut config = config(&[&model]);
    config.secrets.action = SecretsAction::Skip;
    let (pipeline, _) = pipeline(&fixture, &config, &[&model], |_| {});

    let plan = pipeline.plan(10).expect("plan");
    let withheld: Vec<&str> = plan
        .spans
        .iter()
        .filter(|s| s.withheld)
        .map(|s| &*s.span.path)
        .collect();
    assert_eq!(withheld, ["src/client.py"]);

    let summary = pipeline.run(&RunControl::new()).await.expect("run");
    assert_eq!((summary.succeeded, summary.failed), (1, 1));
    let sent: Vec<String> = model
        .requests()
        .iter()
        .map(|r| r.span.path.to_string())
        .collect();
    assert_eq!(sent, ["src/clean.py"], "the span with secrets was not sent");
    let (kind, message): (String, String) = fixture
        .raw()
        .query_row(
            "SELECT last_failure_kind, last_message FROM enrich_failures WHERE span_hash = ?1",
            [&leaky],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("a ledger row");
    assert_eq!(kind, LedgerKind::SecretDetected.as_str());
    assert!(
        message.contains("holds secrets (aws-access-key, github-pat)"),
        "{message}"
    );
    for secret in &secrets {
        assert!(!message.contains(secret.as_str()), "{message}");
    }
}

//! Host pools end to end: one backend entry listing several Ollama servers (`urls`).

use std::time::Duration;

use enrich_testkit::FakeOllamaConfig;

use super::reliability::add_python_files;
use super::support::{Server, TestRepo, refused_url};

/// A config whose one backend `pool` is served by every URL of `hosts`, two requests in flight
/// per host.
fn pool_config(hosts: &[&str]) -> String {
    let urls: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "[enrichment]\ndefault_chain = \"local\"\nconcurrency = 4\nbatch_size = 8\n\n\
         [[enrichment.chain]]\nname = \"pool\"\nchain = \"local\"\nprovider = \"ollama\"\n\
         model = \"qwen2.5:7b-instruct\"\nurls = [{}]\ntimeout_seconds = 20\n\
         options = {{ max_in_flight = 2 }}\n",
        urls.join(", ")
    )
}

fn slow_server() -> Server {
    Server::start(
        FakeOllamaConfig::default()
            .with_latency(Duration::from_millis(20))
            .with_capacity(2, 64)
            .with_recording(false),
    )
}

#[test]
fn a_pool_spreads_the_spans_over_its_hosts() {
    let (a, b) = (slow_server(), slow_server());
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 8, 5);
    let total = repo.spans.len() as u64;
    repo.write_config(&pool_config(&[a.url(), b.url()]));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();

    assert_eq!(summary["succeeded"], total, "{summary}");
    let (on_a, on_b) = (a.stats().generations(), b.stats().generations());
    assert_eq!(on_a + on_b, total, "one request per span");
    assert!(
        on_a > 0 && on_b > 0,
        "both hosts served: {on_a} and {on_b} of {total}"
    );
    assert_eq!(
        repo.count("SELECT COUNT(DISTINCT backend_host) FROM enrichments"),
        2,
        "each enrichment names the host that wrote it"
    );
}

#[test]
fn a_dead_host_moves_its_load_to_the_others_without_failing_a_span() {
    let live = slow_server();
    let dead = refused_url();
    let mut repo = TestRepo::new();
    add_python_files(&mut repo, 6, 5);
    let total = repo.spans.len() as u64;
    repo.write_config(&pool_config(&[&dead, live.url()]));

    let summary = repo.enrich(&["--json", "run"]).expect_code(0).json();

    assert_eq!(
        (summary["succeeded"].clone(), summary["failed"].clone()),
        (total.into(), 0.into()),
        "{summary}"
    );
    assert_eq!(live.stats().generations(), total);
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE outcome = 'failure'"),
        0,
        "the pool fails over inside one attempt"
    );
}

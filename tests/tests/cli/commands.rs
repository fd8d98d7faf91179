//! The commands that look rather than enrich: plan, status, show, config, doctor, init, and
//! how configuration mistakes are reported.

use serde_json::Value;

use super::support::{Server, TestRepo, config, refused_url};

/// A config with routing: docs spans go to the `writer` chain, the rest to `local`.
fn routed_config(url: &str) -> String {
    format!(
        r#"[enrichment]
default_chain = "local"
enable_routing = true

[enrichment.routes]
docs = "writer"

[[enrichment.chain]]
name = "fake"
chain = "local"
url = "{url}"

[[enrichment.chain]]
name = "backup"
chain = "local"
url = "{url}"
routing_tier = "14b"

[[enrichment.chain]]
name = "prose"
chain = "writer"
url = "{url}"
"#
    )
}

#[test]
fn plan_shows_each_route_and_calls_no_backend() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&routed_config(server.url()));

    let plan = repo.enrich(&["--json", "plan"]).expect_code(0).json();
    let total = repo.spans.len();
    assert_eq!(plan["total_pending"], total as u64, "{plan}");
    assert_eq!(plan["planned"], total as u64);
    assert_eq!(
        plan["by_chain"],
        serde_json::json!({"local": total - 1, "writer": 1})
    );
    let spans = plan["spans"].as_array().expect("spans");
    let route_of = |symbol: &str| -> &Value {
        let span = spans
            .iter()
            .find(|s| s["symbol"] == symbol)
            .unwrap_or_else(|| panic!("{symbol} is planned"));
        assert!(span["estimated_tokens"].as_u64() > Some(0), "{span}");
        &span["route"]
    };
    let code = route_of("square");
    assert_eq!(code["chain_name"], "local");
    let backends: Vec<&str> = code["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        backends,
        ["fake", "backup"],
        "backends in the order they are tried"
    );
    let docs = route_of("Guide");
    assert_eq!(docs["chain_name"], "writer");
    assert_eq!(docs["slice_type"], "docs");
    assert!(docs["reasons"].to_string().contains("writer"), "{docs}");

    // `--limit` and `--chain` shape the plan; the human form ends with the totals.
    let limited = repo
        .enrich(&["--json", "plan", "--limit", "2", "--chain", "writer"])
        .expect_code(0)
        .json();
    assert_eq!(limited["planned"], 2);
    assert_eq!(limited["by_chain"], serde_json::json!({"writer": 2}));
    let ran = repo.enrich(&["plan"]);
    let text = &ran.expect_code(0).stdout;
    assert!(
        text.contains(&format!("{total} pending; planned {total}")),
        "{text}"
    );

    assert_eq!(server.stats().total, 0, "plan sent no request at all");
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_runs"),
        0,
        "plan wrote nothing"
    );
}

#[test]
fn every_json_output_parses_and_describes_the_index() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&config(&[("fake", server.url())], ""));
    repo.enrich(&["--json", "run", "--limit", "3"])
        .expect_code(0)
        .json();

    let status = repo.enrich(&["--json", "status"]).expect_code(0).json();
    let total = repo.spans.len() as u64;
    assert_eq!(
        [
            &status["files"],
            &status["spans"],
            &status["enriched"],
            &status["pending"]
        ],
        [
            &Value::from(3),
            &Value::from(total),
            &Value::from(3),
            &Value::from(total - 3)
        ],
        "{status}"
    );
    assert_eq!(status["by_model"][0]["key"], "qwen2.5:7b-instruct");
    assert_eq!(
        status["last_run"]["status"], "interrupted",
        "a limited run is interrupted"
    );

    let shown = repo
        .enrich(&["--json", "show", &repo.spans[0].hash])
        .expect_code(0)
        .json();
    assert!(
        shown["enrichment"]["enrichment"]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(shown["span"]["file_path"], "src/geometry.py");

    let config = repo.enrich(&["--json", "config"]).expect_code(0).json();
    assert_eq!(
        config["file"],
        repo.root.join("enrich.toml").to_str().expect("utf-8 path")
    );
    let setting = config["settings"]
        .as_array()
        .expect("settings")
        .iter()
        .find(|s| s["key"] == "enrichment.default_chain")
        .expect("default_chain is listed")
        .clone();
    assert_eq!(setting["value"], "local");
    assert!(setting["source"]["file"].is_string(), "{setting}");

    let doctor = repo.enrich(&["--json", "doctor"]).expect_code(0).json();
    assert_eq!(doctor["ok"], true, "{doctor}");
    assert_eq!(doctor["backends"][0]["verdict"], "ok");
    assert_eq!(doctor["index"]["spans"], total);

    let failures = repo.enrich(&["--json", "failures"]).expect_code(0).json();
    assert_eq!(failures, Value::Array(Vec::new()));

    let plan = repo.enrich(&["--json", "plan"]).expect_code(0).json();
    assert_eq!(plan["planned"], total - 3);
}

#[test]
fn show_finds_the_innermost_span_of_a_path_and_line() {
    let repo = TestRepo::new();
    let cases = [
        ("src/geometry.py:3", Some("Rect.__init__")),
        ("./src/geometry.py:1", Some("Rect")),
        ("src/geometry.py:7", Some("Rect.area")),
        ("src/lib.rs:6", Some("mul")),
        ("src/geometry.py:9", None),
        ("src/missing.py:1", None),
        ("sha256:0000", None),
    ];
    for (target, symbol) in cases {
        let ran = repo.enrich(&["--json", "show", target]);
        match symbol {
            Some(symbol) => {
                let shown = ran.expect_code(0).json();
                assert_eq!(shown["span"]["symbol"], symbol, "{target}");
                assert_eq!(shown["enrichment"], Value::Null, "not enriched yet");
            }
            None => {
                ran.expect_code(2);
                assert!(
                    ran.stderr.starts_with("error: "),
                    "{target}: {}",
                    ran.stderr
                );
            }
        }
    }
    let absolute = format!("{}:10", repo.root.join("src/geometry.py").display());
    let shown = repo
        .enrich(&["--json", "show", &absolute])
        .expect_code(0)
        .json();
    assert_eq!(shown["span"]["symbol"], "square");
    let text = repo.enrich(&["show", "src/geometry.py:9"]).stderr;
    assert!(
        text.contains("lines 1 to 11"),
        "says which lines have spans: {text}"
    );
}

#[test]
fn init_writes_the_default_config_once_and_never_overwrites() {
    let repo = TestRepo::new();
    let written = repo.enrich(&["--json", "init"]).expect_code(0).json();
    let path = repo.root.join("enrich.toml");
    assert_eq!(written["written"], path.to_str().expect("utf-8 path"));
    let first = std::fs::read_to_string(&path).expect("enrich.toml");
    assert!(first.contains("[[enrichment.chain]]"));
    // What init writes is a valid configuration.
    let config = repo.enrich(&["--json", "config"]).expect_code(0).json();
    assert_eq!(config["ignored_keys"], Value::Array(Vec::new()));

    std::fs::write(&path, "# mine\n").expect("edit enrich.toml");
    let again = repo.enrich(&["init"]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains("enrich.toml"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&path).expect("enrich.toml"),
        "# mine\n"
    );
}

#[test]
fn a_bad_config_is_exit_code_2_naming_the_file_and_the_key() {
    let repo = TestRepo::new();
    repo.write_config("[enrichment]\nbatch_size = \"lots\"\n");
    for command in ["run", "plan", "doctor", "config"] {
        let ran = repo.enrich(&[command]);
        ran.expect_code(2);
        assert!(
            ran.stderr.contains("enrich.toml") && ran.stderr.contains("batch_size"),
            "{command}: {}",
            ran.stderr
        );
    }
    let missing = repo.enrich(&["--config", "nowhere.toml", "status"]);
    // `status` reads only the index: the config file does not matter to it.
    missing.expect_code(0);
    let missing = repo.enrich(&["--config", "nowhere.toml", "run"]);
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("nowhere.toml"),
        "{}",
        missing.stderr
    );
}

#[test]
fn doctor_exits_3_naming_the_url_of_a_dead_backend_in_the_default_chain() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    let dead = refused_url();
    repo.write_config(&config(&[("fake", server.url()), ("dead", &dead)], ""));

    let ran = repo.enrich(&["doctor"]);
    ran.expect_code(3);
    let dead_line = ran
        .stdout
        .lines()
        .find(|line| line.contains("local/dead"))
        .unwrap_or_else(|| panic!("a line for the dead backend:\n{}", ran.stdout));
    assert!(
        dead_line.starts_with("FAIL") && dead_line.contains(&dead),
        "{dead_line}"
    );
    assert!(ran.stdout.contains("fix: "), "{}", ran.stdout);
    assert!(ran.stderr.contains(&dead), "{}", ran.stderr);

    let report = repo.enrich(&["--json", "doctor"]).expect_code(3).json();
    assert_eq!(report["ok"], false);
    let verdicts: Vec<(&str, &str)> = report["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or_default(),
                b["verdict"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(verdicts, [("fake", "ok"), ("dead", "unusable")]);
    assert_eq!(report["backends"][0]["health"]["context_length"], 32_768);
}

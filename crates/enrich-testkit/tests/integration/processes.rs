//! Child processes: the `fake-ollama` and `ollama-load` binaries, and the launcher of the real
//! model server (run here against stand-in scripts; the real end-to-end run belongs to the
//! Ollama adapter).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use enrich_testkit::{
    Endpoint, FakeOllamaConfig, FakeOllamaStats, MODEL_SERVER_MODEL_NAME, MODEL_VAR,
    ModelServerConfig, ModelServerProcess, NODE_VAR, SCRIPT_VAR, TestkitError,
};
use serde_json::{Value, json};

use crate::support::{MODEL, get, server, start};

#[tokio::test]
async fn the_binary_prints_its_url_and_serves_until_stdin_closes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-ollama"))
        .args([
            "--port", "0", "--slots", "2", "--model", "m1", "--model", "m2:7b",
        ])
        .args(["--fault-rate", "garbage=0", "--exit-on-stdin-close"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let listening: Value = serde_json::from_str(&line).unwrap();
    let url = listening["listening"].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let client = enrich_testkit::http_client();
    let tags = get(&client, format!("{url}/api/tags")).await.json();
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m1", "m2:7b"]);
    let stats = get(&client, format!("{url}/_fake/stats")).await.json();
    assert_eq!(stats["endpoints"]["GET /api/tags"], 1);

    drop(child.stdin.take());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Runs the binary `exe` with `args`; returns the exit code, stdout and stderr.
fn run(exe: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(exe).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn the_binary_explains_bad_arguments() {
    let fake = env!("CARGO_BIN_EXE_fake-ollama");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--fault-rate", "lag=0.1"],
            "error: invalid value 'lag=0.1' for '--fault-rate <KIND=P>': unknown fault `lag`; \
             known faults: server_error",
        ),
        (
            &["--slots", "0"],
            "error: invalid value '0' for '--slots <N>'",
        ),
        (
            &["--port", "http"],
            "error: invalid value 'http' for '--port <N>'",
        ),
        (
            &["--latency"],
            "error: unexpected argument '--latency' found",
        ),
    ];
    for (args, start) in cases {
        let (code, stdout, stderr) = run(fake, args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(start), "{args:?}: {stderr}");
        assert!(stderr.contains("--help"), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

#[test]
fn the_binaries_describe_every_flag_in_their_help() {
    let binaries: [(&str, &[&str]); 2] = [
        (
            env!("CARGO_BIN_EXE_fake-ollama"),
            &[
                "--port",
                "--latency-ms",
                "--slots",
                "--queue",
                "--model",
                "--fault-rate",
                "--seed",
                "--context-length",
                "--oversized-bytes",
                "--record",
                "--exit-on-stdin-close",
                "thinking_only",
                "[default: 512]",
            ],
        ),
        (
            env!("CARGO_BIN_EXE_ollama-load"),
            &[
                "--url",
                "--bodies",
                "--requests",
                "--connections",
                "--path",
                "--client",
                "[default: /api/generate]",
                "reqwest",
            ],
        ),
    ];
    for (exe, flags) in binaries {
        let (code, help, stderr) = run(exe, &["--help"]);
        assert_eq!(code, Some(0), "{exe}: {stderr}");
        for flag in flags {
            assert!(help.contains(flag), "{exe} --help lacks {flag}:\n{help}");
        }
    }
}

/// Runs `ollama-load` with `args` off the runtime; returns the exit code, stdout and stderr.
async fn ollama_load(args: Vec<String>) -> (Option<i32>, String, String) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ollama-load"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// A bodies file of `bodies`, one JSON line each.
fn bodies_file(dir: &tempfile::TempDir, bodies: &[Value]) -> String {
    let path = dir.path().join("bodies.jsonl");
    let text: String = bodies.iter().map(|b| format!("{b}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn load_args(url: &str, bodies: &str, requests: u32, connections: u32) -> Vec<String> {
    [
        "--url",
        url,
        "--bodies",
        bodies,
        "--requests",
        &requests.to_string(),
        "--connections",
        &connections.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `args` with `--client client`.
fn with_client(mut args: Vec<String>, client: &str) -> Vec<String> {
    args.extend(["--client".to_owned(), client.to_owned()]);
    args
}

/// Runs `ollama-load --client client` with 10 requests of 3 bodies over 2 connections; checks
/// the report and that the server got body n mod 3 for request n; returns the server's stats.
async fn load_in_turn(client: &str) -> FakeOllamaStats {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Value> = (1..=3)
        .map(|i| json!({ "model": MODEL, "prompt": format!("src/a.rs lines {i}-9"), "stream": false }))
        .collect();
    let file = bodies_file(&dir, &bodies);

    let args = with_client(load_args(server.url(), &file, 10, 2), client);
    let (code, stdout, stderr) = ollama_load(args).await;
    assert_eq!(code, Some(0), "{client}: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["client"], client);
    assert_eq!(report["requests"], 10);
    assert_eq!(report["ok"], 10);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["first_failure"], Value::Null);
    assert_eq!(report["connections"], 2);
    assert!(
        report["requests_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );

    let stats = server.stats();
    assert_eq!(stats.endpoint(Endpoint::Generate), 10, "{client}");
    // Request n carries body n mod 3: four of the first, three of each other.
    let sent = server.requests();
    let count = |body: &Value| sent.iter().filter(|r| &r.body == body).count();
    assert_eq!(
        bodies.iter().map(count).collect::<Vec<_>>(),
        [4, 3, 3],
        "{client}: {sent:?}"
    );
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_client_sends_the_bodies_in_turn_over_kept_alive_connections() {
    let stats = load_in_turn("hyper").await;
    assert_eq!(stats.connections, 2, "one kept-alive connection each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reqwest_client_sends_the_same_requests_through_its_pool() {
    let stats = load_in_turn("reqwest").await;
    // Its pool opens a connection when none is idle; two senders never need ten.
    assert!(
        (1..10).contains(&stats.connections),
        "connections reused: {}",
        stats.connections
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_client_counts_refused_requests_and_fails() {
    let server = start(FakeOllamaConfig::default().with_recording(false)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = bodies_file(&dir, &[json!({ "model": "absent", "prompt": "x" })]);
    let (code, stdout, _) = ollama_load(load_args(server.url(), &file, 3, 1)).await;
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (report["ok"].as_u64(), report["failed"].as_u64()),
        (Some(0), Some(3))
    );
    let first = report["first_failure"].as_str().unwrap();
    assert!(
        first.starts_with("404 Not Found: {\"error\":\"model 'absent' not found"),
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_client_explains_bad_input_and_a_dead_server() {
    let dir = tempfile::tempdir().unwrap();
    let good = bodies_file(&dir, &[json!({ "model": MODEL, "prompt": "x" })]);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (code, stdout, stderr) = ollama_load(load_args(&dead, &good, 1, 1)).await;
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    let addr = dead.trim_start_matches("http://");
    assert!(
        stderr.starts_with(&format!("ollama-load: could not connect to {addr}: ")),
        "{stderr}"
    );

    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"model\": \"m\"}\n\n{not json\n").unwrap();
    let broken = broken.to_str().unwrap().to_owned();
    let (code, _, stderr) = ollama_load(load_args(&dead, &broken, 1, 1)).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with(&format!(
            "ollama-load: {broken} line 3: not a JSON request body ("
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Usage:"),
        "the flags were right; the file is not: {stderr}"
    );

    let (code, _, stderr) = ollama_load(load_args("localhost:11434", &good, 1, 1)).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with(
            "error: invalid value 'localhost:11434' for '--url <URL>': not http://IP:PORT"
        ),
        "{stderr}"
    );

    let (code, _, stderr) = ollama_load(with_client(load_args(&dead, &good, 1, 1), "curl")).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: invalid value 'curl' for '--client <NAME>'")
            && stderr.contains("[possible values: hyper, reqwest]"),
        "{stderr}"
    );

    let (code, _, stderr) = ollama_load(load_args(&dead, &good, 1, 0)).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: invalid value '0' for '--connections <N>'"),
        "{stderr}"
    );

    let mut args = load_args(&dead, &good, 1, 1);
    args.extend(["--path".to_owned(), "api/generate".to_owned()]);
    let (code, _, stderr) = ollama_load(args).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("'--path <PATH>': a route starts with /"),
        "{stderr}"
    );

    let (code, _, stderr) = ollama_load(vec!["--url".to_owned(), dead.clone()]).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("the following required arguments were not provided")
            && stderr.contains("--bodies <FILE>"),
        "{stderr}"
    );

    let args = with_client(load_args(&dead, &good, 1, 1), "reqwest");
    let (code, stdout, stderr) = ollama_load(args).await;
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with(&format!(
            "ollama-load: request 0 to {dead}/api/generate failed: "
        )) && stderr.contains("Connection refused"),
        "{stderr}"
    );
}

#[test]
fn a_missing_variable_says_how_to_provision_the_model_server() {
    let all = [
        (NODE_VAR, "/usr/bin/node"),
        (SCRIPT_VAR, "/c/server.mjs"),
        (MODEL_VAR, "/c/m.gguf"),
    ];
    for (missing, _) in all {
        let lookup = |name: &str| {
            all.iter()
                .find(|(var, _)| *var == name && *var != missing)
                .map(|(_, value)| OsString::from(value))
        };
        let err = ModelServerConfig::from_vars(lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "environment variable {missing} is not set, so the real model server cannot be \
                 started: run `cargo xtask model-server provision` and export the \
                 ENRICH_MODEL_SERVER_* variables it prints (`cargo xtask test` sets them itself)"
            )
        );
    }
    let config = ModelServerConfig::from_vars(|name| {
        all.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, v)| OsString::from(v))
    })
    .unwrap();
    assert_eq!(config.node, Path::new("/usr/bin/node"));
    assert_eq!(config.startup_timeout, Duration::from_secs(60));
}

/// A config that runs `sh SCRIPT` as the "server", with a script holding `body`.
fn stand_in(dir: &tempfile::TempDir, body: &str) -> ModelServerConfig {
    let script = dir.path().join("server.sh");
    std::fs::write(&script, body).unwrap();
    let vars = [
        (NODE_VAR, OsString::from("/bin/sh")),
        (SCRIPT_VAR, script.into_os_string()),
        (MODEL_VAR, OsString::from("model.gguf")),
    ];
    ModelServerConfig::from_vars(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
}

#[test]
fn the_launcher_reads_the_listening_line_and_kills_the_server_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    // The stand-in checks its arguments, prints the line, then waits for stdin to close.
    let config = stand_in(
        &dir,
        &format!(
            "[ \"$*\" = '--model model.gguf --port 0 --exit-on-stdin-close' ] || exit 3\n\
             echo $$ > {}\n\
             echo '{{\"listening\":\"http://127.0.0.1:4321\"}}'\n\
             exec cat > /dev/null\n",
            pid_file.display()
        ),
    );
    let server = ModelServerProcess::start_with(config).unwrap();
    assert_eq!(server.url(), "http://127.0.0.1:4321");
    assert_eq!(server.model_name(), MODEL_SERVER_MODEL_NAME);
    let spec = server.backend_spec("e2e");
    assert_eq!(spec.url.as_deref(), Some("http://127.0.0.1:4321"));
    assert_eq!(
        (spec.provider.as_str(), spec.model.as_str()),
        ("ollama", "smollm2:135m")
    );

    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = Path::new("/proc").join(pid.trim());
    assert!(proc_dir.exists());
    drop(server);
    assert!(
        !proc_dir.exists(),
        "the server process is gone (killed and reaped)"
    );
}

#[test]
fn the_launcher_reports_an_early_exit_with_stderr_and_a_wrong_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let exits = stand_in(&dir, "echo 'model file is corrupt' >&2\nexit 4\n");
    let err = ModelServerProcess::start_with(exits).unwrap_err();
    assert!(
        matches!(err, TestkitError::ModelServerExited { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("stopped before it listened (exit status: 4)"),
        "{message}"
    );
    assert!(
        message.ends_with("its last stderr lines:\nmodel file is corrupt"),
        "{message}"
    );

    let dir = tempfile::tempdir().unwrap();
    let chatty = stand_in(&dir, "echo 'loading model...'\nexec cat > /dev/null\n");
    let err = ModelServerProcess::start_with(chatty).unwrap_err();
    assert!(
        err.to_string().contains(
            "printed `loading model...` where `{\"listening\":\"http://…\"}` was expected"
        ),
        "{err}"
    );
}

#[test]
fn the_launcher_names_a_node_that_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = stand_in(&dir, "");
    config.node = dir.path().join("no-such-node");
    let err = ModelServerProcess::start_with(config).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("could not start the model server `"),
        "{message}"
    );
    assert!(message.contains("no-such-node"), "{message}");
    assert!(
        message.contains("check ENRICH_MODEL_SERVER_NODE"),
        "{message}"
    );
}

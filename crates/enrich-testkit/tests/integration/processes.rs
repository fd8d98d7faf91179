//! Child processes: the `fake-ollama` binary, and the launcher of the real model server (run
//! here against stand-in scripts; the real end-to-end run belongs to the Ollama adapter).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use enrich_testkit::{
    MODEL_SERVER_MODEL_NAME, MODEL_VAR, ModelServerConfig, ModelServerProcess, NODE_VAR,
    SCRIPT_VAR, TestkitError,
};
use serde_json::Value;

use crate::support::get;

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

    let client = reqwest::Client::new();
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

#[test]
fn the_binary_explains_bad_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-ollama"))
        .args(["--fault-rate", "lag=0.1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("fake-ollama: unknown fault `lag`; known faults: server_error"),
        "{stderr}"
    );
    assert!(stderr.contains("usage: fake-ollama"), "{stderr}");
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

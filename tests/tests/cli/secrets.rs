//! Secrets: an API key, named in the config by its variable (`api_key_env`) and given in the
//! environment, reaches the backend and nothing else: not stdout or stderr of any command (at
//! trace level), not the event log, not any file under `.llmc/` (the database, its WAL),
//! neither when everything works nor on the error paths (a key the server refuses).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use enrich_testkit::{FakeOllamaConfig, Fault, Outcome};

use super::support::{Ran, Server, TestRepo, finish};

/// The variable the config names; the key itself is only ever in the environment.
const KEY_VAR: &str = "ENRICH_H6_PLANTED_API_KEY";

/// Providers whose backend entries take `api_key_env`, each with the path under the fake
/// server's URL where it is served. The fake server answers Ollama's API and the
/// OpenAI-compatible `/v1`; a provider whose adapter sends the key as a bearer token is one
/// more line here.
const PROVIDERS: &[(&str, &str)] = &[("ollama", ""), ("openai", "/v1")];

/// A key no output could contain by chance.
fn planted_key() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("sk-h6-{nanos:x}-planted")
}

/// One chain with a backend per provider, each taking its key from [`KEY_VAR`].
fn keyed_config(url: &str) -> String {
    let mut toml = String::from("[enrichment]\ndefault_chain = \"hosted\"\nconcurrency = 2\n");
    for (provider, path) in PROVIDERS {
        toml.push_str(&format!(
            "\n[[enrichment.chain]]\nname = \"{provider}-hosted\"\nchain = \"hosted\"\nprovider = \"{provider}\"\nmodel = \"qwen2.5:7b-instruct\"\nurl = \"{url}{path}\"\napi_key_env = \"{KEY_VAR}\"\ntimeout_seconds = 20\n"
        ));
    }
    toml
}

/// Everything the tests look through for the key: what each command printed, and files.
#[derive(Default)]
struct Outputs(Vec<(String, Vec<u8>)>);

impl Outputs {
    /// Runs `enrich ARGS` with the key in the environment, keeps both streams, and returns
    /// what it did.
    fn enrich(&mut self, repo: &TestRepo, key: &str, args: &[&str]) -> Ran {
        let mut command = repo.command(args);
        command.env(KEY_VAR, key);
        let ran = finish(command.spawn().expect("start enrich"));
        let label = args.join(" ");
        self.0.push((
            format!("stdout of `{label}`"),
            ran.stdout.clone().into_bytes(),
        ));
        self.0.push((
            format!("stderr of `{label}`"),
            ran.stderr.clone().into_bytes(),
        ));
        ran
    }

    /// Adds every file under `dir`, recursively.
    fn files(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.map(|e| e.expect("dir entry")) {
            let path = entry.path();
            if path.is_dir() {
                self.files(&path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                self.0.push((path.display().to_string(), bytes));
            }
        }
    }

    /// The names of the outputs holding `needle`.
    fn holding(&self, needle: &str) -> Vec<&str> {
        let needle = needle.as_bytes();
        self.0
            .iter()
            .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Fails when any output holds the key, or the distinctive part of it (a truncated key is a
/// leaked key).
#[track_caller]
fn check_no_leak(outputs: &Outputs, key: &str) {
    let distinctive = key
        .trim_start_matches("sk-h6-")
        .trim_end_matches("-planted");
    for needle in [key, distinctive] {
        let leaks = outputs.holding(needle);
        assert!(leaks.is_empty(), "the API key leaked into {leaks:?}");
    }
}

/// Files written under the repository: the index and its WAL and shared memory, and logs.
fn repo_files(root: &Path) -> [PathBuf; 2] {
    [root.join(".llmc"), root.join("logs")]
}

#[test]
fn an_api_key_reaches_the_backend_and_no_output_log_or_file() {
    let key = planted_key();
    let server = Server::start(FakeOllamaConfig::default().with_api_key(key.clone()));
    let repo = TestRepo::new();
    repo.write_config(&keyed_config(server.url()));
    let mut outputs = Outputs::default();

    outputs.enrich(&repo, &key, &["config"]).expect_code(0);
    let config = outputs
        .enrich(&repo, &key, &["--json", "config"])
        .expect_code(0)
        .json();
    assert!(
        config.to_string().contains(KEY_VAR),
        "`enrich config` names the variable: {config}"
    );
    outputs
        .enrich(&repo, &key, &["-vvv", "doctor"])
        .expect_code(0);
    outputs
        .enrich(&repo, &key, &["--json", "doctor"])
        .expect_code(0);
    outputs
        .enrich(&repo, &key, &["-vvv", "plan"])
        .expect_code(0);
    outputs
        .enrich(&repo, &key, &["-vvv", "--json", "run", "--limit", "3"])
        .expect_code(0);
    outputs.enrich(&repo, &key, &["-vvv", "run"]).expect_code(0);
    for args in [
        &["status"][..],
        &["--json", "status"],
        &["show", &repo.spans[0].hash],
        &["--json", "show", &repo.spans[0].hash],
        &["failures"],
        &["--json", "failures"],
    ] {
        outputs.enrich(&repo, &key, args).expect_code(0);
    }
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrichments"),
        repo.spans.len() as i64
    );
    // The key was read and sent: the server, which refuses requests without it, answered.
    let stats = server.stats();
    assert_eq!(
        stats.outcome(Outcome::Unauthorized),
        0,
        "{:?}",
        stats.to_json()
    );
    assert!(stats.generations() >= repo.spans.len() as u64);

    for dir in repo_files(&repo.root) {
        outputs.files(&dir);
    }
    assert!(
        outputs.holding("enrichment.v1").len() >= 2,
        "the database and the event log were searched"
    );
    check_no_leak(&outputs, &key);
}

#[test]
fn a_refused_api_key_is_reported_without_the_key() {
    let key = planted_key();
    let repo = TestRepo::new();
    let mut outputs = Outputs::default();

    // A server that wants another key refuses every request, health checks included. (How
    // doctor and the run judge that is `a_backend_refusing_the_key_is_unusable_before_any_span`;
    // here only what they print matters.)
    let other = Server::start(FakeOllamaConfig::default().with_api_key("sk-the-right-one"));
    repo.write_config(&keyed_config(other.url()));
    outputs.enrich(&repo, &key, &["-vvv", "doctor"]);
    outputs.enrich(&repo, &key, &["--json", "doctor"]);
    outputs.enrich(&repo, &key, &["-vvv", "run"]).expect_code(3);
    assert!(other.stats().outcome(Outcome::Unauthorized) > 0);

    // A server that takes the health checks but answers every generation with 401: the
    // failures are logged and evented with the server's message; an outage is never ledgered.
    let refusing =
        Server::start(FakeOllamaConfig::default().with_fault_rate(Fault::Unauthorized, 1.0));
    repo.write_config(&keyed_config(refusing.url()));
    let run = outputs.enrich(&repo, &key, &["-vvv", "--json", "run"]);
    run.expect_code(3);
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
    assert!(repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE failure_kind = 'auth'") > 0);
    for args in [
        &["status"][..],
        &["--json", "failures"],
        &["--json", "show", &repo.spans[0].hash],
    ] {
        outputs.enrich(&repo, &key, args).expect_code(0);
    }

    for dir in repo_files(&repo.root) {
        outputs.files(&dir);
    }
    assert!(
        !outputs.holding("401").is_empty(),
        "the refusals were searched"
    );
    check_no_leak(&outputs, &key);
}

#[test]
fn a_backend_refusing_the_key_is_unusable_before_any_span() {
    let key = planted_key();
    let server = Server::start(FakeOllamaConfig::default().with_api_key("sk-the-right-one"));
    let repo = TestRepo::new();
    repo.write_config(&keyed_config(server.url()));
    let mut outputs = Outputs::default();

    // Doctor says the backend cannot serve, and that the key is the problem.
    let doctor = outputs.enrich(&repo, &key, &["doctor"]);
    let refused = doctor
        .stdout
        .lines()
        .find(|line| line.contains("backend hosted/"))
        .unwrap_or_else(|| panic!("a line for the backend:\n{}", doctor.stdout));
    assert!(refused.starts_with("FAIL"), "{}", doctor.stdout);
    assert!(
        doctor
            .stdout
            .contains(&format!("check the key in {KEY_VAR}")),
        "the fix names the key's variable:\n{}",
        doctor.stdout
    );
    doctor.expect_code(3);

    // The run checks the same before taking spans: refused credentials are an outage, not the
    // spans' fault, so nothing counts toward their dead-lettering.
    let run = outputs.enrich(&repo, &key, &["run"]);
    run.expect_code(3);
    assert!(run.stderr.contains("enrich doctor"), "{}", run.stderr);
    assert_eq!(server.stats().generations(), 0, "no span was sent");
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_failures"), 0);
    assert_eq!(repo.count("SELECT COUNT(*) FROM enrich_attempts"), 0);
    check_no_leak(&outputs, &key);
}

//! Secrets: an API key, named in the config by its variable (`api_key_env`) and given in the
//! environment, reaches the backend and nothing else: not stdout or stderr of any command (at
//! trace level), not the event log, not any file under `.llmc/` (the database, its WAL),
//! neither when everything works nor on the error paths (a key the server refuses). And the
//! secrets of the repository itself (a private-key file, a `.env`, tokens inline in code) reach
//! no model: the files are not indexed, inline tokens are redacted from every prompt (or the
//! span is not sent), and none of them lands in a request, an output, the event log or a row.

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
    format!("sk-enrich-test-{nanos:x}-planted")
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

    /// Runs every command that shows what a run stored (`status`, `show`, `failures`, each as
    /// text and JSON); each must succeed.
    fn read_back(&mut self, repo: &TestRepo, key: &str) {
        for args in [
            &["status"][..],
            &["--json", "status"],
            &["show", &repo.spans[0].hash],
            &["--json", "show", &repo.spans[0].hash],
            &["failures"],
            &["--json", "failures"],
        ] {
            self.enrich(repo, key, args).expect_code(0);
        }
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
        .trim_start_matches("sk-enrich-test-")
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
    outputs.read_back(&repo, &key);
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

/// [`keyed_config`]'s chain, with `user:password@` in each backend's URL instead of a key.
fn userinfo_config(url: &str, password: &str) -> String {
    let with_password = url.replacen("http://", &format!("http://enrich:{password}@"), 1);
    keyed_config(&with_password).replace(&format!("api_key_env = \"{KEY_VAR}\"\n"), "")
}

#[test]
fn a_password_in_a_url_reaches_the_backend_and_no_output_log_or_file() {
    let password = planted_key();
    // Some failures, so errors are logged, evented and ledgered with the host in them.
    let server = Server::start(FakeOllamaConfig::default().with_faults([
        Fault::ServerError,
        Fault::ContextExceeded,
        Fault::Garbage,
    ]));
    let repo = TestRepo::new();
    repo.write_config(&userinfo_config(server.url(), &password));
    let mut outputs = Outputs::default();

    let shown = outputs.enrich(&repo, "", &["config"]);
    shown.expect_code(0);
    assert!(
        shown.stdout.contains("http://[redacted]@127.0.0.1:"),
        "`enrich config` shows the URL, redacted:\n{}",
        shown.stdout
    );
    let json = outputs
        .enrich(&repo, "", &["--json", "config"])
        .expect_code(0)
        .json();
    assert!(json.to_string().contains("[redacted]@127.0.0.1:"), "{json}");
    outputs
        .enrich(&repo, "", &["-vvv", "doctor"])
        .expect_code(0);
    outputs
        .enrich(&repo, "", &["--json", "doctor"])
        .expect_code(0);
    outputs.enrich(&repo, "", &["-vvv", "plan"]).expect_code(0);
    outputs.enrich(&repo, "", &["-vvv", "--json", "run", "--limit", "3"]);
    outputs.enrich(&repo, "", &["-vvv", "run"]);
    outputs.read_back(&repo, "");
    assert!(repo.count("SELECT COUNT(*) FROM enrichments") > 0);
    assert!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts WHERE outcome = 'failure'") > 0,
        "failures were recorded, with their messages"
    );

    // A backend that cannot even be set up is shown by doctor with its URL, redacted too.
    let broken = format!(
        "{}\n[[enrichment.chain]]\nname = \"broken\"\nchain = \"spare\"\nprovider = \"openai\"\nurl = \"ftp://enrich:{password}@files.example/v1\"\n",
        userinfo_config(server.url(), &password)
    );
    repo.write_config(&broken);
    let doctor = outputs.enrich(&repo, "", &["doctor"]);
    assert!(
        doctor.stdout.contains("ftp://[redacted]@files.example/v1"),
        "{}",
        doctor.stdout
    );
    outputs.enrich(&repo, "", &["--json", "doctor"]);

    for dir in repo_files(&repo.root) {
        outputs.files(&dir);
    }
    assert!(
        outputs.holding("[redacted]@127.0.0.1").len() >= 2,
        "the redacted URL was searched for in what was shown"
    );
    check_no_leak(&outputs, &password);
}

#[test]
fn a_credential_in_options_is_refused_before_anything_runs() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    let planted = planted_key();
    repo.write_config(&format!(
        "[[enrichment.chain]]\nname = \"hosted\"\nprovider = \"openai\"\nurl = \"{}/v1\"\noptions = {{ temperature = 0, api_key = \"{planted}\" }}\n",
        server.url()
    ));
    let mut outputs = Outputs::default();
    for args in [&["config"][..], &["run"], &["doctor"]] {
        let ran = outputs.enrich(&repo, "", args);
        ran.expect_code(2);
        assert!(
            ran.stderr.contains("options.api_key")
                && ran.stderr.contains("\"hosted\"")
                && ran.stderr.contains("api_key_env"),
            "names the backend, the key and the fix:\n{}",
            ran.stderr
        );
    }
    assert_eq!(server.stats().generations(), 0, "no request was sent");
    check_no_leak(&outputs, &planted);
}

/// Secrets planted in a repository: a private-key file, a `.env` file and a source file with
/// an AWS access key id and a GitHub token inline, each made when the test runs.
struct Planted {
    key_body: String,
    env_secret: String,
    aws: String,
    github: String,
}

impl Planted {
    /// Writes the secrets into `repo`'s files.
    fn plant(repo: &TestRepo) -> Self {
        let mut rng = fastrand::Rng::new();
        let mut random = |alphabet: &str, n: usize| -> String {
            let chars: Vec<char> = alphabet.chars().collect();
            (0..n).map(|_| chars[rng.usize(..chars.len())]).collect()
        };
        let base64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let planted = Self {
            key_body: random(base64, 64),
            env_secret: random(alnum, 32),
            aws: format!("AKIA{}", random("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
            github: format!("ghp_{}", random(alnum, 36)),
        };
        let lines: Vec<String> = (0..5).map(|_| random(base64, 64)).collect();
        let write = |path: &str, text: &str| {
            let full = repo.root.join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, text).expect("write a planted file");
        };
        write(
            "certs/server.key",
            &format!(
                "-----BEGIN RSA PRIVATE KEY-----\n{}\n{}\n-----END RSA PRIVATE KEY-----\n",
                planted.key_body,
                lines.join("\n")
            ),
        );
        write(
            ".env",
            &format!("SERVICE_PASSWORD={}\n", planted.env_secret),
        );
        write(
            "src/cloud.py",
            &format!(
                "def upload(bucket, data):\n    client = Client(key_id=\"{}\")\n    return client.put(bucket, data)\n\n\ndef releases(repo):\n    token = \"{}\"\n    return fetch(repo, token)\n",
                planted.aws, planted.github
            ),
        );
        planted
    }

    /// Every planted secret.
    fn all(&self) -> [&str; 4] {
        [&self.key_body, &self.env_secret, &self.aws, &self.github]
    }
}

/// Adds every text (and blob) value of every table of the index, one output per table.
fn rows(outputs: &mut Outputs, repo: &TestRepo) {
    let conn = repo.raw();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut s| {
            s.query_map([], |row| row.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .expect("list the tables");
    assert!(tables.len() > 5, "{tables:?}");
    for table in tables {
        let mut statement = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select a table");
        let columns = statement.column_count();
        let mut text = Vec::new();
        let mut query = statement.query([]).expect("read a table");
        while let Some(row) = query.next().expect("a row") {
            for i in 0..columns {
                match row.get_ref(i).expect("a value") {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        text.extend_from_slice(t);
                        text.push(b'\n');
                    }
                    _ => {}
                }
            }
        }
        outputs.0.push((format!("table {table}"), text));
    }
}

/// Adds every request body the server received, every file under `.llmc/` and `logs/`, and
/// every text value of every table.
fn everything_written(outputs: &mut Outputs, server: &Server, repo: &TestRepo) {
    outputs.0.extend(
        server
            .request_bodies()
            .into_iter()
            .enumerate()
            .map(|(i, body)| (format!("request {i}"), body.into_bytes())),
    );
    for dir in repo_files(&repo.root) {
        outputs.files(&dir);
    }
    rows(outputs, repo);
}

/// Fails when any output holds any planted secret.
#[track_caller]
fn check_no_planted_leak(outputs: &Outputs, planted: &Planted) {
    for secret in planted.all() {
        let leaks = outputs.holding(secret);
        assert!(leaks.is_empty(), "a planted secret leaked into {leaks:?}");
    }
}

#[test]
fn planted_secrets_reach_no_request_log_event_or_row() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    let planted = Planted::plant(&repo);
    repo.write_config(&super::support::config(&[("fake", server.url())], ""));
    let mut outputs = Outputs::default();

    // The index leaves the key and the .env out, says so, and names the spans with secrets.
    let index = outputs
        .enrich(&repo, "", &["--json", "index"])
        .expect_code(0)
        .json();
    assert_eq!(index["files"]["secret"], 2, "{index}");
    let skipped: Vec<(String, String)> = index["skipped"]
        .as_array()
        .expect("skipped files")
        .iter()
        .map(|f| (f["path"].to_string(), f["reason"].to_string()))
        .collect();
    for (path, reason) in [
        ("\".env\"", "\"secret\""),
        ("\"certs/server.key\"", "\"secret\""),
        ("\"enrich.toml\"", "\"own\""),
    ] {
        assert!(
            skipped.contains(&(path.to_owned(), reason.to_owned())),
            "{path} {reason} in {skipped:?}"
        );
    }
    let secret_spans = index["secret_spans"].to_string();
    assert!(
        secret_spans.contains("src/cloud.py")
            && secret_spans.contains("aws-access-key")
            && secret_spans.contains("github-pat"),
        "{secret_spans}"
    );
    assert_eq!(
        repo.count(
            "SELECT COUNT(*) FROM files WHERE path IN ('certs/server.key', '.env', 'enrich.toml')"
        ),
        0
    );
    let verbose = outputs.enrich(&repo, "", &["-v", "index"]);
    verbose.expect_code(0);
    assert!(
        verbose.stdout.contains("skipped 2 secret")
            && verbose.stdout.contains("  secret        certs/server.key"),
        "{}",
        verbose.stdout
    );

    // The plan counts the same, and lists them in --json.
    let plan = outputs
        .enrich(&repo, "", &["--json", "plan"])
        .expect_code(0)
        .json();
    let secrets = &plan["secrets"];
    assert_eq!(secrets["files_excluded"], 2, "{plan}");
    assert_eq!(secrets["action"], "redact", "{plan}");
    assert_eq!(secrets["spans_with_secrets"], 2, "{secrets}");

    // The run sends the spans redacted.
    outputs
        .enrich(&repo, "", &["-vvv", "--json", "run"])
        .expect_code(0);
    let prompts = server.prompts();
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("key_id=\"[REDACTED:aws-access-key]\"")),
        "{prompts:?}"
    );
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("token = \"[REDACTED:github-pat]\"")),
        "{prompts:?}"
    );
    outputs.enrich(&repo, "", &["-v", "plan"]).expect_code(0);
    everything_written(&mut outputs, &server, &repo);
    // The searched outputs hold what the secrets became, and the event log is among them.
    assert!(!outputs.holding("[REDACTED:github-pat]").is_empty());
    assert!(
        outputs
            .holding("\"span_finished\"")
            .iter()
            .any(|name| name.ends_with("enrichment_events.jsonl")),
        "the event log was searched"
    );
    check_no_planted_leak(&outputs, &planted);
}

#[test]
fn with_action_skip_a_span_holding_a_secret_is_ledgered_and_never_sent() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    let planted = Planted::plant(&repo);
    repo.write_config(&super::support::config(
        &[("fake", server.url())],
        "[enrichment.secrets]\naction = \"skip\"",
    ));
    let mut outputs = Outputs::default();
    outputs.enrich(&repo, "", &["index"]).expect_code(0);
    let plan = outputs
        .enrich(&repo, "", &["plan"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(
        plan.contains("holds secrets (aws-access-key): a run does not send it"),
        "{plan}"
    );
    // The spans with secrets fail (exit 1); the others are enriched.
    outputs.enrich(&repo, "", &["-vvv", "run"]).expect_code(1);
    let ledgered = repo.count(
        "SELECT COUNT(*) FROM enrich_failures d JOIN spans s ON s.span_hash = d.span_hash \
         JOIN files f ON f.id = s.file_id \
         WHERE f.path = 'src/cloud.py' AND d.last_failure_kind = 'secret_detected'",
    );
    assert_eq!(ledgered, 2);
    assert_eq!(
        repo.count("SELECT COUNT(*) FROM enrich_attempts a JOIN spans s ON s.span_hash = a.span_hash JOIN files f ON f.id = s.file_id WHERE f.path = 'src/cloud.py'"),
        0,
        "no attempt was made"
    );
    let prompts = server.prompts();
    assert!(!prompts.is_empty());
    assert!(
        prompts.iter().all(|p| !p.contains("src/cloud.py")),
        "a span with secrets was sent"
    );
    everything_written(&mut outputs, &server, &repo);
    check_no_planted_leak(&outputs, &planted);
}

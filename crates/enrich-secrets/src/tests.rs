//! One positive and one near-miss negative per rule, the redaction, and the entropy gate.
//!
//! Test secrets are built when the tests run (from a fixed pseudo-random sequence), so this
//! file holds no string a secret scanner would flag.

use crate::{RULES, SECRET_FILES, Scanner, shannon_entropy};

/// `n` pseudo-random characters of `alphabet`, different for each `seed`.
fn random(alphabet: &str, n: usize, seed: u64) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|_| chars[rng.usize(..chars.len())]).collect()
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER_ALNUM: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
const WORD: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
const WORD_DASH: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const BASE64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const AWS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A PEM block of `kind` with `lines` lines of 64 base64 characters.
fn pem(kind: &str, lines: usize) -> String {
    let body: Vec<String> = (0..lines)
        .map(|i| random(BASE64, 64, 90 + i as u64))
        .collect();
    format!(
        "-----BEGIN {kind}-----\n{}\n-----END {kind}-----",
        body.join("\n")
    )
}

/// Per rule: a text it must find (the secret to be gone after redaction), and a near miss it
/// must not.
fn cases() -> Vec<(&'static str, String, String, String)> {
    let key = pem("RSA PRIVATE KEY", 6);
    let digits = |n, seed| random("0123456789", n, seed);
    let mut cases =
        vec![
        (
            "private-key",
            format!("KEY = \"\"\"\n{key}\n\"\"\"\n"),
            key.clone(),
            "if line.startswith(\"-----BEGIN RSA PRIVATE KEY-----\"):\n    return parse(line)\n"
                .to_owned(),
        ),
        {
            let id = format!("AKIA{}", random(AWS, 16, 1));
            (
                "aws-access-key",
                format!("aws_access_key_id = \"{id}\"\n"),
                id,
                format!("ref = \"AKIA{}\"\n", random(AWS, 15, 1)),
            )
        },
        {
            let token = format!("ghp_{}", random(ALNUM, 36, 2));
            (
                "github-pat",
                format!("headers = {{\"Authorization\": \"token {token}\"}}\n"),
                token,
                format!("branch = \"ghp_{}\"\n", random(ALNUM, 35, 2)),
            )
        },
        {
            let token = format!("github_pat_{}", random(WORD, 82, 3));
            (
                "github-fine-grained-pat",
                format!("GH = '{token}'\n"),
                token,
                format!("GH = 'github_pat_{}'\n", random(WORD, 81, 3)),
            )
        },
        {
            let token = format!("gho_{}", random(ALNUM, 36, 4));
            (
                "github-oauth",
                format!("t = {token}\n"),
                token,
                format!("t = gho_{}\n", random(ALNUM, 30, 4)),
            )
        },
        {
            let token = format!("ghs_{}", random(ALNUM, 36, 5));
            (
                "github-app-token",
                format!("t = {token}\n"),
                token,
                format!("t = ghx_{}\n", random(ALNUM, 36, 5)),
            )
        },
        {
            let token = format!("ghr_{}", random(ALNUM, 36, 6));
            (
                "github-refresh-token",
                format!("t = {token}\n"),
                token,
                format!("t = ghr_{}\n", random(ALNUM, 20, 6)),
            )
        },
        {
            let token = format!("glpat-{}", random(WORD_DASH, 20, 7));
            (
                "gitlab-pat",
                format!("GITLAB = \"{token}\"\n"),
                token,
                format!("GITLAB = \"glpat-{}\"\n", random(WORD_DASH, 19, 7)),
            )
        },
        {
            let token = format!(
                "xoxb-{}-{}-{}",
                digits(11, 8),
                digits(12, 9),
                random(ALNUM, 24, 10)
            );
            (
                "slack-bot-token",
                format!("slack = \"{token}\"\n"),
                token,
                "slack = \"xoxb-123-456\"\n".to_owned(),
            )
        },
        {
            let token = format!(
                "xoxp-{}-{}-{}-{}",
                digits(10, 11),
                digits(11, 12),
                digits(12, 13),
                random(ALNUM, 32, 14)
            );
            (
                "slack-user-token",
                format!("slack = \"{token}\"\n"),
                token,
                format!(
                    "slack = \"xoxp-{}-{}-{}\"\n",
                    digits(10, 11),
                    digits(11, 12),
                    random(ALNUM, 32, 14)
                ),
            )
        },
        {
            let token = format!(
                "xapp-1-A{}-{}-{}",
                random(AWS, 10, 15),
                digits(13, 16),
                random(LOWER_ALNUM, 64, 17)
            );
            (
                "slack-app-token",
                format!("slack = \"{token}\"\n"),
                token,
                "slack = \"xapp-one-two\"\n".to_owned(),
            )
        },
        {
            let token = format!(
                "xoxs-{}-{}-{}-{}",
                digits(10, 18),
                digits(10, 19),
                digits(12, 20),
                random("0123456789abcdef", 64, 21)
            );
            (
                "slack-legacy-token",
                format!("slack = \"{token}\"\n"),
                token,
                "slack = \"xoxs-1234-abc\"\n".to_owned(),
            )
        },
        {
            let url = format!(
                "https://hooks.slack.com/services/{}",
                random(ALNUM, 44, 22)
            );
            (
                "slack-webhook-url",
                format!("WEBHOOK = \"{url}\"\n"),
                url,
                "see https://hooks.slack.com/services/ for the docs\n".to_owned(),
            )
        },
        {
            let key = format!("sk_live_{}", random(ALNUM, 24, 23));
            (
                "stripe-access-token",
                format!("stripe.api_key = \"{key}\"\n"),
                key,
                "mode = \"sk_live_short\"\n".to_owned(),
            )
        },
        {
            let key = format!("AIza{}", random(WORD_DASH, 35, 24));
            (
                "gcp-api-key",
                format!("GOOGLE = \"{key}\"\n"),
                key,
                format!("GOOGLE = \"AIza{}\"\n", random(WORD_DASH, 34, 24)),
            )
        },
        {
            let key = format!(
                "sk-proj-{}T3BlbkFJ{}",
                random(WORD_DASH, 74, 25),
                random(WORD_DASH, 74, 26)
            );
            (
                "openai-api-key",
                format!("OPENAI_API_KEY = \"{key}\"\n"),
                key,
                format!("model = \"sk-{}\"\n", random(ALNUM, 48, 25)),
            )
        },
        {
            let key = format!("sk-ant-api03-{}AA", random(WORD_DASH, 93, 27));
            (
                "anthropic-api-key",
                format!("ANTHROPIC = \"{key}\"\n"),
                key,
                format!("ANTHROPIC = \"sk-ant-api03-{}AB\"\n", random(WORD_DASH, 93, 27)),
            )
        },
        {
            let key = format!("sk-ant-admin01-{}AA", random(WORD_DASH, 93, 28));
            (
                "anthropic-admin-api-key",
                format!("ADMIN = \"{key}\"\n"),
                key,
                format!("ADMIN = \"sk-ant-admin01-{}AA\"\n", random(WORD_DASH, 92, 28)),
            )
        },
        {
            let token = format!("npm_{}", random(LOWER_ALNUM, 36, 29));
            (
                "npm-access-token",
                format!("//registry.npmjs.org/:_authToken={token}\n"),
                token,
                "run = \"npm_install_all_the_packages_now\"\n".to_owned(),
            )
        },
        {
            let token = format!("pypi-AgEIcHlwaS5vcmc{}", random(WORD_DASH, 60, 30));
            (
                "pypi-upload-token",
                format!("TWINE_PASSWORD = \"{token}\"\n"),
                token,
                format!("prefix = \"pypi-AgEIcHlwaS5vcmc{}\"\n", random(WORD, 10, 30)),
            )
        },
        {
            let token = format!("hf_{}", random(LETTERS, 34, 31));
            (
                "huggingface-access-token",
                format!("HF_TOKEN = \"{token}\"\n"),
                token,
                format!("name = \"hf_{}\"\n", random(LETTERS, 20, 31)),
            )
        },
        {
            let jwt = format!(
                "eyJ{}.eyJ{}.{}",
                random(ALNUM, 30, 32),
                random(ALNUM, 40, 33),
                random(WORD_DASH, 43, 34)
            );
            (
                "jwt",
                format!("auth = \"Bearer {jwt}\"\n"),
                jwt,
                "path = \"eyJabc.eyJdef.ghi\"\n".to_owned(),
            )
        },
    ];
    let value = random(ALNUM, 24, 35);
    cases.push((
        "generic-secret",
        format!("DATABASE = {{\"password\": \"{value}\"}}\n"),
        value,
        "password = \"changeme\"\n".to_owned(),
    ));
    cases
}

/// Checks that `positive` yields a finding of `id` and redacts `secret`, and that `negative`
/// yields none.
#[track_caller]
fn check(scanner: &Scanner, id: &str, positive: &str, secret: &str, negative: &str) {
    let redacted = scanner.redact(positive);
    assert_eq!(redacted.rules(), [id], "{id}: findings in {positive:?}");
    assert!(
        !redacted.text.contains(secret),
        "{id}: the secret is left in {:?}",
        redacted.text
    );
    assert!(
        redacted.text.contains(&format!("[REDACTED:{id}]")),
        "{id}: {:?}",
        redacted.text
    );
    let missed = scanner.scan(negative);
    assert!(
        missed.is_empty(),
        "{id}: near miss {negative:?} found {missed:?}"
    );
}

#[test]
fn every_rule_finds_its_secret_and_not_its_near_miss() {
    let scanner = Scanner::new();
    let cases = cases();
    for rule in RULES {
        assert!(
            cases.iter().any(|(id, ..)| id == &rule.id),
            "rule {} has no test case",
            rule.id
        );
        assert!(!rule.source.is_empty(), "rule {} names no source", rule.id);
    }
    for (id, positive, secret, negative) in &cases {
        check(&scanner, id, positive, secret, negative);
    }
}

#[test]
fn a_redacted_text_keeps_everything_but_the_secrets() {
    let scanner = Scanner::new();
    let aws = format!("AKIA{}", random(AWS, 16, 40));
    let github = format!("ghp_{}", random(ALNUM, 36, 41));
    let text =
        format!("def client():\n    key = \"{aws}\"\n    return Client(key, \"{github}\")\n");
    let redacted = scanner.redact(&text);
    assert_eq!(
        redacted.text,
        "def client():\n    key = \"[REDACTED:aws-access-key]\"\n    return Client(key, \
         \"[REDACTED:github-pat]\")\n"
    );
    let lines: Vec<(&str, u32)> = redacted.findings.iter().map(|f| (f.rule, f.line)).collect();
    assert_eq!(lines, [("aws-access-key", 2), ("github-pat", 3)]);
    // Nothing found: the text is borrowed, unchanged.
    let clean = scanner.redact("fn main() {}\n");
    assert!(matches!(clean.text, std::borrow::Cow::Borrowed(_)));
}

#[test]
fn a_private_key_is_redacted_whole_even_when_a_span_cuts_it() {
    let scanner = Scanner::new();
    let key = pem("OPENSSH PRIVATE KEY", 8);
    let (begin_part, end_part) = key.split_at(key.len() / 2);
    for (text, kept) in [
        (format!("before\n{key}\nafter\n"), ["before\n", "\nafter\n"]),
        // A span ending inside the key: from BEGIN to the end of the key's characters.
        (format!("x = 1\n{begin_part}"), ["x = 1\n", ""]),
        // A span starting inside the key's body: from its start through END.
        (
            format!(
                "{}\nafter\n",
                end_part.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
            ),
            ["", "\nafter\n"],
        ),
    ] {
        let redacted = scanner.redact(&text);
        assert_eq!(redacted.rules(), ["private-key"], "{text:?}");
        assert_eq!(
            redacted.text,
            format!("{}[REDACTED:private-key]{}", kept[0], kept[1]),
            "{text:?}"
        );
    }
    // A public key is no secret.
    assert!(scanner.scan(&pem("PUBLIC KEY", 6)).is_empty());
}

#[test]
fn the_generic_rule_takes_high_entropy_values_only() {
    let scanner = Scanner::new();
    let random24 = random(ALNUM, 24, 50);
    assert!(shannon_entropy(&random24) > 3.5, "{random24}");
    assert!(shannon_entropy("changeme") < 3.5);
    for (text, found) in [
        (format!("password = \"{random24}\""), true),
        (format!("DB_PASSWORD={random24}\n"), true),
        (format!("api_key: '{random24}'"), true),
        (format!("self.client_secret => \"{random24}\";"), true),
        ("password = \"changeme\"".to_owned(), false),
        ("password = \"changeme123\"".to_owned(), false),
        ("password = \"Password1\"".to_owned(), false),
        ("token = get_token_from_the_environment()".to_owned(), false),
        ("secret = some_module.secret_value_here\n".to_owned(), false),
        ("api_key = \"${API_KEY}\"".to_owned(), false),
        ("password = \"%(password)s\"".to_owned(), false),
        ("token = \"{{ secrets.TOKEN }}\"".to_owned(), false),
        (format!("description = \"{random24}\""), false),
    ] {
        let rules = scanner.rules_in(&text);
        assert_eq!(!rules.is_empty(), found, "{text:?}: {rules:?}");
    }
}

#[test]
fn entropy_is_bits_per_character() {
    assert_eq!(shannon_entropy(""), 0.0);
    assert_eq!(shannon_entropy("aaaa"), 0.0);
    assert!((shannon_entropy("abcdefgh") - 3.0).abs() < 1e-9);
}

#[test]
fn the_secret_file_list_is_unique_and_sourced() {
    let mut globs: Vec<&str> = SECRET_FILES.iter().map(|f| f.glob).collect();
    globs.sort_unstable();
    let total = globs.len();
    globs.dedup();
    assert_eq!(globs.len(), total, "a glob is listed twice");
    assert!(
        SECRET_FILES
            .iter()
            .all(|f| !f.source.is_empty() && !f.holds.is_empty())
    );
}

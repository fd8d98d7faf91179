//! The content patterns: each a rule id, a regular expression and where it comes from.
//!
//! Most rules are those of gitleaks' default configuration (`config/gitleaks.toml` of
//! github.com/gitleaks/gitleaks, MIT licence), with its rule id, regex and entropy threshold;
//! where a rule differs, its `source` says how and why. The secret is the first capture group
//! that took part in the match (the whole match when the pattern has none): only it is
//! redacted, so `key = "AKIA…"` becomes `key = "[REDACTED:aws-access-key]"`.
//!
//! Word boundaries are ASCII (`(?-u:\b)`): every token these rules find is ASCII, and a Unicode
//! boundary makes the regex engine fall back to its slow path on any non-ASCII text (scanning
//! went from about 60 MB/s to 1 MB/s on source with a single em dash).

/// One content pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// The id shown in `[REDACTED:<id>]`, reports and the failure ledger.
    pub id: &'static str,
    /// What the rule finds.
    pub description: &'static str,
    /// The regular expression (Rust `regex` syntax).
    pub pattern: &'static str,
    /// The least Shannon entropy, in bits per character, of a secret this rule accepts
    /// ([`shannon_entropy`](crate::shannon_entropy)); `None` accepts any.
    pub min_entropy: Option<f64>,
    /// Whether the secret must hold both an ASCII letter and an ASCII digit (for the generic
    /// assignment rule, where identifiers and words are the usual false positives).
    pub letter_and_digit: bool,
    /// Where the rule comes from.
    pub source: &'static str,
}

/// Every content rule, in the order their findings are reported.
pub const RULES: &[Rule] = &[
    Rule {
        id: "private-key",
        description: "a PEM or PGP private-key block, from its BEGIN line through its END line",
        // Three forms: a whole block; a block whose END line is not in the text (a span that
        // ends inside the key: redacted through the last key-like character); and a text that
        // starts inside the key body and holds its END line (the next span of a cut key). The
        // body must hold at least 64 characters, as in gitleaks, so code that only names the
        // BEGIN line (`line.startswith("-----BEGIN RSA PRIVATE KEY-----")`) is no match.
        pattern: r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s:,.\\-]{64,}?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----|-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s:,.\\-]{64,}|\A[A-Za-z0-9+/=\s]{64,}?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
        min_entropy: None,
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule private-key (the block through its END line; \
                 the cut forms are enrich's, for spans that split a key)",
    },
    Rule {
        id: "aws-access-key",
        description: "an AWS access key id",
        pattern: r"(?-u:\b)((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?-u:\b)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule aws-access-token",
    },
    Rule {
        id: "github-pat",
        description: "a GitHub personal access token (classic)",
        pattern: r"(?-u:\b)(ghp_[0-9a-zA-Z]{36})(?-u:\b)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule github-pat",
    },
    Rule {
        id: "github-fine-grained-pat",
        description: "a GitHub fine-grained personal access token",
        pattern: r"(?-u:\b)(github_pat_[A-Za-z0-9_]{82})(?-u:\b)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule github-fine-grained-pat",
    },
    Rule {
        id: "github-oauth",
        description: "a GitHub OAuth access token",
        pattern: r"(?-u:\b)(gho_[0-9a-zA-Z]{36})(?-u:\b)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule github-oauth",
    },
    Rule {
        id: "github-app-token",
        description: "a GitHub App user-to-server or server-to-server token",
        pattern: r"(?-u:\b)((?:ghu|ghs)_[0-9a-zA-Z]{36})(?-u:\b)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule github-app-token",
    },
    Rule {
        id: "github-refresh-token",
        description: "a GitHub refresh token",
        pattern: r"(?-u:\b)(ghr_[0-9a-zA-Z]{36})(?-u:\b)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule github-refresh-token",
    },
    Rule {
        id: "gitlab-pat",
        description: "a GitLab personal access token",
        pattern: r"(?-u:\b)(glpat-[A-Za-z0-9_-]{20})(?:[\x60'\x22\s;]|\\[nr]|$)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule gitlab-pat (ended like its other tokens, \
                 so a longer routable token is left to no rule rather than cut)",
    },
    Rule {
        id: "slack-bot-token",
        description: "a Slack bot token",
        pattern: r"(?-u:\b)(xoxb-[0-9]{10,13}-[0-9]{10,13}[a-zA-Z0-9-]*)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule slack-bot-token",
    },
    Rule {
        id: "slack-user-token",
        description: "a Slack user or enterprise token",
        pattern: r"(?-u:\b)(xox[pe](?:-[0-9]{10,13}){3}-[a-zA-Z0-9-]{28,34})",
        min_entropy: Some(2.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule slack-user-token",
    },
    Rule {
        id: "slack-app-token",
        description: "a Slack app-level token",
        pattern: r"(?i)(?-u:\b)(xapp-[0-9]-[A-Z0-9]+-[0-9]+-[a-z0-9]+)",
        min_entropy: Some(2.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule slack-app-token",
    },
    Rule {
        id: "slack-legacy-token",
        description: "a Slack legacy workspace or bot token",
        pattern: r"(?-u:\b)(xox[aors]-[0-9]+-[0-9]+-[0-9]+-[a-fA-F0-9]+)",
        min_entropy: Some(2.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rules slack-legacy-token and \
                 slack-legacy-workspace-token (xoxa, xoxr)",
    },
    Rule {
        id: "slack-webhook-url",
        description: "a Slack incoming webhook URL",
        pattern: r"((?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56})",
        min_entropy: None,
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule slack-webhook-url",
    },
    Rule {
        id: "stripe-access-token",
        description: "a Stripe secret or restricted key",
        pattern: r"(?-u:\b)((?:sk|rk)_(?:test|live|prod)_[a-zA-Z0-9]{10,99})(?:[\x60'\x22\s;]|\\[nr]|$)",
        min_entropy: Some(2.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule stripe-access-token",
    },
    Rule {
        id: "gcp-api-key",
        description: "a Google Cloud API key",
        pattern: r"(?-u:\b)(AIza[A-Za-z0-9_-]{35})(?:[\x60'\x22\s;]|\\[nr]|$)",
        min_entropy: Some(4.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule gcp-api-key",
    },
    Rule {
        id: "openai-api-key",
        description: "an OpenAI API key (user, project, service account or admin)",
        pattern: r"(?-u:\b)(sk-(?:proj|svcacct|admin)-(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})T3BlbkFJ(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})(?-u:\b)|sk-[a-zA-Z0-9]{20}T3BlbkFJ[a-zA-Z0-9]{20})(?:[\x60'\x22\s;]|\\[nr]|$)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule openai-api-key",
    },
    Rule {
        id: "anthropic-api-key",
        description: "an Anthropic API key",
        pattern: r"(?-u:\b)(sk-ant-api03-[a-zA-Z0-9_\-]{93}AA)(?:[\x60'\x22\s;]|\\[nr]|$)",
        min_entropy: None,
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule anthropic-api-key",
    },
    Rule {
        id: "anthropic-admin-api-key",
        description: "an Anthropic admin API key",
        pattern: r"(?-u:\b)(sk-ant-admin01-[a-zA-Z0-9_\-]{93}AA)(?:[\x60'\x22\s;]|\\[nr]|$)",
        min_entropy: None,
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule anthropic-admin-api-key",
    },
    Rule {
        id: "npm-access-token",
        description: "an npm access token",
        pattern: r"(?i)(?-u:\b)(npm_[a-z0-9]{36})(?:[\x60'\x22\s;]|\\[nr]|$)",
        min_entropy: Some(2.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule npm-access-token",
    },
    Rule {
        id: "pypi-upload-token",
        description: "a PyPI upload token",
        pattern: r"(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule pypi-upload-token",
    },
    Rule {
        id: "huggingface-access-token",
        description: "a Hugging Face access token",
        pattern: r"(?-u:\b)(hf_(?i:[a-z]{34}))(?:[\x60'\x22\s;]|\\[nr]|$)",
        min_entropy: Some(2.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule huggingface-access-token",
    },
    Rule {
        id: "jwt",
        description: "a JSON Web Token",
        pattern: r"(?-u:\b)(ey[a-zA-Z0-9]{17,}\.ey[a-zA-Z0-9/\\_-]{17,}\.(?:[a-zA-Z0-9/\\_-]{10,}={0,2})?)(?:[\x60'\x22\s;]|\\[nr]|$)",
        min_entropy: Some(3.0),
        letter_and_digit: false,
        source: "gitleaks config/gitleaks.toml, rule jwt",
    },
    Rule {
        id: "generic-secret",
        description: "a password, secret, token or API key assigned a high-entropy value \
                      (`password = \"…\"`, `\"api_key\": \"…\"`, `TOKEN=…`)",
        // The key words and the assignment operators of gitleaks' generic-api-key; the value
        // is either quoted (8 characters or more, no whitespace, not starting like a
        // placeholder: `$`, `{`, `<`, `%`) or bare (12 or more token characters). gitleaks'
        // threshold of 3.5 bits per character, plus a letter and a digit in the value, keep
        // words and identifiers out: `changeme` (2.75 bits) and `secret_value_here` (no digit)
        // are not secrets, a random 24-character value (about 4.2 bits) is.
        pattern: r#"(?i)(?-u:\b)[a-z0-9_.-]{0,30}?(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|auth[_-]?key|private[_-]?key|client[_-]?secret|credentials?)[a-z0-9_.-]{0,20}["']?\s*(?::=|=>|=|:)\s*(?:["'\x60]([^"'\x60\s$<{%][^"'\x60\s]{7,199})["'\x60]|([A-Za-z0-9+/=_.~!@#%^&*-]{12,200})(?:[\s;,]|$))"#,
        min_entropy: Some(3.5),
        letter_and_digit: true,
        source: "gitleaks config/gitleaks.toml, rule generic-api-key (its key words, operators \
                 and entropy threshold; the value forms and the letter-and-digit check are \
                 enrich's)",
    },
];

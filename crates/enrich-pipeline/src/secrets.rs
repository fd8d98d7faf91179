//! The secret guard: every span's source is scanned before its prompt is built, and a secret
//! never reaches a backend. With `[enrichment.secrets] action = "redact"` (the default) the
//! prompt is built from the source with each secret replaced by `[REDACTED:<rule id>]`; with
//! `"skip"` the span is not sent at all and goes to the failure ledger as
//! `LedgerKind::SecretDetected` (`secret_detected`). The patterns are `enrich_secrets::RULES`.

use std::borrow::Cow;

use enrich_config::SecretsAction;
use enrich_secrets::Scanner;

/// What may be sent of a span's source.
#[derive(Debug)]
pub(crate) enum Guarded<'a> {
    /// Build the prompt from `source`: the span's own, or redacted when it held secrets.
    Send {
        source: Cow<'a, str>,
        /// The rules whose secrets were redacted (empty: nothing was).
        redacted: Vec<&'static str>,
    },
    /// Send nothing: the span holds secrets of these rules and the action is `skip`.
    Withheld { rules: Vec<&'static str> },
}

/// The scanner and what to do with what it finds; built once per pipeline.
#[derive(Debug)]
pub(crate) struct SecretGuard {
    scanner: Scanner,
    action: SecretsAction,
}

impl SecretGuard {
    pub(crate) fn new(action: SecretsAction) -> Self {
        Self {
            scanner: Scanner::new(),
            action,
        }
    }

    /// What may be sent of `source`.
    pub(crate) fn guard<'a>(&self, source: &'a str) -> Guarded<'a> {
        let redacted = self.scanner.redact(source);
        if redacted.findings.is_empty() {
            return Guarded::Send {
                source: redacted.text,
                redacted: Vec::new(),
            };
        }
        let rules = redacted.rules();
        match self.action {
            SecretsAction::Redact => Guarded::Send {
                source: redacted.text,
                redacted: rules,
            },
            SecretsAction::Skip => Guarded::Withheld { rules },
        }
    }
}

/// The ledger message of a span withheld for its secrets; names the rules, never the secret.
pub(crate) fn withheld_message(rules: &[&str]) -> String {
    format!(
        "not sent: it holds secrets ({}) and [enrichment.secrets] action = \"skip\"; remove them \
         from the source, or set action = \"redact\" to send the span with them redacted",
        rules.join(", ")
    )
}

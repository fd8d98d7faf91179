//! The scanner: finds [`RULES`] in a text and redacts what it finds.

use std::borrow::Cow;

use regex::{Regex, RegexSet};
use serde::Serialize;

use crate::rules::{RULES, Rule};

/// One secret found in a text. It holds where the secret is, never the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The id of the rule that found it.
    pub rule: &'static str,
    /// Its first byte in the text.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
    /// The line it starts on, 1-based within the text.
    pub line: u32,
}

/// A text with its secrets replaced by `[REDACTED:<rule id>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted<'a> {
    /// The redacted text; borrowed when nothing was found.
    pub text: Cow<'a, str>,
    /// What was replaced, in text order.
    pub findings: Vec<Finding>,
}

impl Redacted<'_> {
    /// The ids of the rules that fired, each once, in rule order.
    pub fn rules(&self) -> Vec<&'static str> {
        rule_ids(&self.findings)
    }
}

/// The ids of the rules of `findings`, each once, in rule order.
fn rule_ids(findings: &[Finding]) -> Vec<&'static str> {
    RULES
        .iter()
        .map(|r| r.id)
        .filter(|id| findings.iter().any(|f| f.rule == *id))
        .collect()
}

/// Finds the secrets of [`RULES`] in texts. Build it once and share it: compiling the rules
/// takes milliseconds, scanning a span microseconds. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Which rules match anywhere in a text, in one pass.
    any: RegexSet,
    /// Each rule's own regex, run only when the set says it matches.
    each: Vec<Regex>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// The scanner of every rule in [`RULES`].
    pub fn new() -> Self {
        let patterns = RULES.iter().map(|r| r.pattern);
        Self {
            any: RegexSet::new(patterns).expect("the built-in rules compile (tested)"),
            each: RULES
                .iter()
                .map(|r| Regex::new(r.pattern).expect("the built-in rules compile (tested)"))
                .collect(),
        }
    }

    /// Every secret in `text`, in text order; of overlapping findings the one starting first
    /// (then the longer one) is kept.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        for index in self.any.matches(text).iter() {
            let (rule, regex) = (&RULES[index], &self.each[index]);
            for captures in regex.captures_iter(text) {
                let secret = captures
                    .iter()
                    .skip(1)
                    .flatten()
                    .next()
                    .or_else(|| captures.get(0));
                let Some(secret) = secret else { continue };
                if accepts(rule, secret.as_str()) {
                    found.push((secret.start(), secret.end(), rule.id));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut findings: Vec<Finding> = Vec::with_capacity(found.len());
        let mut line = 1u32;
        let mut counted_to = 0;
        for (start, end, rule) in found {
            if findings.last().is_some_and(|last| start < last.end) {
                continue;
            }
            let newlines = text.as_bytes()[counted_to..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            line = line.saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
            counted_to = start;
            findings.push(Finding {
                rule,
                start,
                end,
                line,
            });
        }
        findings
    }

    /// `text` with every secret replaced by `[REDACTED:<rule id>]`.
    pub fn redact<'a>(&self, text: &'a str) -> Redacted<'a> {
        let findings = self.scan(text);
        if findings.is_empty() {
            return Redacted {
                text: Cow::Borrowed(text),
                findings,
            };
        }
        let mut redacted = String::with_capacity(text.len());
        let mut from = 0;
        for finding in &findings {
            redacted.push_str(&text[from..finding.start]);
            redacted.push_str("[REDACTED:");
            redacted.push_str(finding.rule);
            redacted.push(']');
            from = finding.end;
        }
        redacted.push_str(&text[from..]);
        Redacted {
            text: Cow::Owned(redacted),
            findings,
        }
    }

    /// The ids of the rules that fire in `text`, each once, in rule order (empty: no secret).
    pub fn rules_in(&self, text: &str) -> Vec<&'static str> {
        rule_ids(&self.scan(text))
    }
}

/// Whether `secret`, matched by `rule`, passes the rule's checks.
fn accepts(rule: &Rule, secret: &str) -> bool {
    let entropy_ok = rule
        .min_entropy
        .is_none_or(|min| shannon_entropy(secret) >= min);
    let mixed_ok = !rule.letter_and_digit
        || (secret.bytes().any(|b| b.is_ascii_alphabetic())
            && secret.bytes().any(|b| b.is_ascii_digit()));
    entropy_ok && mixed_ok
}

/// The Shannon entropy of `text` in bits per character: 0 for one repeated character, 3 for
/// eight characters used equally, about 4.2 for a random 24-character alphanumeric string.
pub fn shannon_entropy(text: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    let mut total = 0u32;
    for c in text.chars() {
        *counts.entry(c).or_insert(0u32) += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    let total = f64::from(total);
    counts
        .values()
        .map(|&n| {
            let p = f64::from(n) / total;
            -p * p.log2()
        })
        .sum()
}

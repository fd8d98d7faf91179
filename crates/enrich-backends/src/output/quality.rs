//! The quality gate: named checks run on an enrichment that passed the enrichment.v1 schema,
//! the repairs made while validating it, and the quality score kept for every stored one.
//!
//! Each check has a stable snake_case name (stored in `enrich_quality.failed_checks` and quoted
//! in the attempt's message) and a level: at [`QualityLevel::Basic`] the basic checks reject an
//! answer, at [`QualityLevel::Strict`] every check does, at [`QualityLevel::Off`] none does. A
//! check that needs something the context lacks (the span's source, its symbol, a usage
//! snippet) does not apply. The score is computed from every applicable check whatever the
//! level, so it also ranks answers the level let through:
//!
//! `score = Σ weight(passed) / Σ weight(applicable)`, over the [`CHECKS`] and one entry of
//! weight 1 per possible repair ([`REPAIRS`]), which counts as failed when the repair was made.
//!
//! Decision: the summary's floor is LLMC's own classifier (rule version `v1-cjk-aware`), so
//! nothing enrich stores is what LLMC would class as EMPTY, PLACEHOLDER or SHORT.

use std::fmt::Write as _;

use enrich_config::QualityLevel;
use enrich_types::Enrichment;

use super::ValidationContext;

/// The version of the gate's rules, stored with each score (`enrich_quality.gate_version`).
pub const GATE_VERSION: &str = "gate-3";

/// Repair: an evidence range given end first (`[108, 107]`) was swapped back.
pub const REPAIR_EVIDENCE_SWAPPED: &str = "evidence_range_swapped";
/// Repair: a summary over [`SUMMARY_MAX_WORDS`](super::SUMMARY_MAX_WORDS) words was cut at the
/// last sentence end within the limit (at the limit's last word when no sentence ends there).
pub const REPAIR_SUMMARY_CUT: &str = "summary_cut_to_word_limit";
/// Every repair validation makes, in the order they are recorded.
pub const REPAIRS: [&str; 2] = [REPAIR_EVIDENCE_SWAPPED, REPAIR_SUMMARY_CUT];

/// One named check of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// The stable snake_case name.
    pub name: &'static str,
    /// The lowest level at which a failure rejects the answer ([`QualityLevel::Basic`] or
    /// [`QualityLevel::Strict`]).
    pub level: QualityLevel,
    /// The check's weight in the score.
    pub weight: u32,
}

const fn check(name: &'static str, level: QualityLevel, weight: u32) -> Check {
    Check {
        name,
        level,
        weight,
    }
}

/// Every check, in the order they run.
pub const CHECKS: [Check; 11] = [
    check("summary_empty", QualityLevel::Basic, 3),
    check("summary_placeholder", QualityLevel::Basic, 3),
    check("summary_disclaims", QualityLevel::Basic, 3),
    check("summary_short", QualityLevel::Basic, 2),
    check("summary_bare_value", QualityLevel::Basic, 2),
    check("summary_prompt_echo", QualityLevel::Basic, 3),
    check("list_item_placeholder", QualityLevel::Basic, 2),
    check("url_not_in_source", QualityLevel::Basic, 2),
    check("evidence_outside_span", QualityLevel::Basic, 2),
    check("identifier_not_in_source", QualityLevel::Strict, 2),
    check("usage_without_symbol", QualityLevel::Strict, 1),
];

/// What the gate made of an answer it let through: stored with the enrichment.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    /// The level the answer was judged at.
    pub level: QualityLevel,
    /// `0.0..=1.0`, see the module docs.
    pub score: f64,
    /// The checks that failed without rejecting the answer (above the level), by name.
    pub failed_checks: Vec<&'static str>,
    /// The repairs validation made, by name ([`REPAIRS`]).
    pub repairs: Vec<&'static str>,
}

/// A validated enrichment with its quality report.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The enrichment, normalised and repaired.
    pub enrichment: Enrichment,
    /// What the gate made of it.
    pub quality: QualityReport,
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Fail(String),
    /// The check needs what the context lacks.
    NotApplicable,
}

/// Runs every check. `Err` carries the message for the model (and the attempt log) when a
/// check at or below the context's level failed.
pub(crate) fn judge(
    enrichment: &Enrichment,
    repairs: Vec<&'static str>,
    ctx: &ValidationContext<'_>,
) -> Result<QualityReport, String> {
    let verdicts = CHECKS.map(|check| (check, run(check.name, enrichment, ctx)));
    let rejects = |check: &Check| ctx.quality != QualityLevel::Off && check.level <= ctx.quality;
    let mut message = String::new();
    for (check, verdict) in &verdicts {
        if let Verdict::Fail(reason) = verdict
            && rejects(check)
        {
            if !message.is_empty() {
                message.push_str("; ");
            }
            let _ = write!(message, "quality check `{}` failed: {reason}", check.name);
        }
    }
    if !message.is_empty() {
        return Err(message);
    }
    let (mut passed, mut applicable) = (0u32, 0u32);
    for (check, verdict) in &verdicts {
        match verdict {
            Verdict::Pass => {
                passed += check.weight;
                applicable += check.weight;
            }
            Verdict::Fail(_) => applicable += check.weight,
            Verdict::NotApplicable => {}
        }
    }
    for repair in REPAIRS {
        applicable += 1;
        if !repairs.contains(&repair) {
            passed += 1;
        }
    }
    Ok(QualityReport {
        level: ctx.quality,
        score: f64::from(passed) / f64::from(applicable.max(1)),
        failed_checks: verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Fail(_)))
            .map(|(c, _)| c.name)
            .collect(),
        repairs,
    })
}

/// Runs the check named `name`.
pub(crate) fn run(name: &str, e: &Enrichment, ctx: &ValidationContext<'_>) -> Verdict {
    match name {
        "summary_empty" => summary_empty(&e.summary),
        "summary_placeholder" => summary_placeholder(&e.summary),
        "summary_disclaims" => summary_disclaims(&e.summary),
        "summary_short" => summary_short(&e.summary),
        "summary_bare_value" => summary_bare_value(&e.summary),
        "summary_prompt_echo" => summary_prompt_echo(&e.summary),
        "list_item_placeholder" => list_item_placeholder(e, ctx.source),
        "url_not_in_source" => url_not_in_source(e, ctx.source),
        "evidence_outside_span" => evidence_outside_span(e, ctx),
        "identifier_not_in_source" => identifier_not_in_source(e, ctx.source),
        "usage_without_symbol" => usage_without_symbol(e.usage_snippet.as_deref(), ctx.symbol),
        _ => Verdict::NotApplicable,
    }
}

fn fail(reason: impl Into<String>) -> Verdict {
    Verdict::Fail(reason.into())
}

/// A short quotation of a value for a message (at most 60 characters).
fn quoted(text: &str) -> String {
    let mut cut: String = text.chars().take(60).collect();
    if cut.len() < text.len() {
        cut.push_str("...");
    }
    format!("{cut:?}")
}

/// LLMC's EMPTY: nothing left after stripping whitespace and punctuation.
fn summary_empty(summary: &str) -> Verdict {
    if summary
        .chars()
        .all(|c| c.is_whitespace() || c.is_ascii_punctuation() || is_unicode_punctuation(c))
    {
        fail(format!(
            "the summary {} has no words; write one or two sentences on what the code does",
            quoted(summary)
        ))
    } else {
        Verdict::Pass
    }
}

fn is_unicode_punctuation(c: char) -> bool {
    matches!(
        c,
        '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205e}' | '\u{3000}'..='\u{303f}' | '\u{ff01}'..='\u{ff0f}'
    )
}

/// LLMC's PLACEHOLDER words, matched as whole words.
const PLACEHOLDER_WORDS: [&str; 5] = ["placeholder", "lorem", "todo", "tbd", "fake"];
/// LLMC's PLACEHOLDER texts, matched as the whole (trimmed) text.
const PLACEHOLDER_TEXTS: [&str; 4] = ["-", "\u{2014}", "...", "***"];
/// LLMC's PLACEHOLDER phrase, matched anywhere.
const PLACEHOLDER_PHRASE: &str = "auto-summary generated offline";

/// LLMC's PLACEHOLDER.
fn summary_placeholder(summary: &str) -> Verdict {
    let lower = summary.trim().to_lowercase();
    let word = words(&lower).find(|w| PLACEHOLDER_WORDS.contains(w));
    if let Some(word) = word {
        return fail(format!(
            "the summary contains the placeholder word {word:?}; describe what the code does"
        ));
    }
    if PLACEHOLDER_TEXTS.contains(&lower.as_str()) || lower.contains(PLACEHOLDER_PHRASE) {
        return fail(format!(
            "the summary {} is a placeholder; describe what the code does",
            quoted(summary)
        ));
    }
    Verdict::Pass
}

/// The words a summary uses when it talks about itself or the prompt instead of the code.
const META_NOUNS: [&str; 12] = [
    "summary",
    "description",
    "line",
    "lines",
    "number",
    "docstring",
    "documentation",
    "comment",
    "comments",
    "information",
    "details",
    "explanation",
];
/// What a disclaiming sentence says the code is: `the code`, `this function`, ...
const CODE_NOUNS: [&str; 9] = [
    "code", "function", "method", "class", "span", "snippet", "input", "file", "program",
];
/// How a disclaiming sentence says it cannot tell (`cannot determine`, `unable to say`), as
/// word sequences after contractions are spelled out.
const INABILITY: [&[&str]; 7] = [
    &["can", "not"],
    &["could", "not"],
    &["unable", "to"],
    &["am", "unable", "to"],
    &["it", "is", "not", "possible", "to"],
    &["it", "is", "unclear"],
    &["not", "sure"],
];
/// The verbs of a disclaimer's inability.
const INABILITY_VERBS: [&str; 9] = [
    "determine",
    "tell",
    "understand",
    "infer",
    "know",
    "say",
    "summarize",
    "summarise",
    "describe",
];

/// The lowercase words of one sentence with contractions spelled out (`doesn't` → `does not`,
/// `cannot` → `can not`).
fn sentence_words(sentence: &str) -> Vec<String> {
    let lower = sentence
        .to_lowercase()
        .replace(['\u{2019}', '`'], "'")
        .replace("cannot", "can not")
        .replace("can't", "can not")
        .replace("n't", " not");
    words(&lower).map(str::to_owned).collect()
}

/// Whether one sentence only says there is nothing to say: that the code lacks a summary or a
/// line number, that no summary is available, that it is a summary of the code, or that the
/// writer cannot tell what the code does.
fn disclaims(words: &[&str]) -> bool {
    let rest_is_meta = |rest: &[&str]| {
        let rest = match rest {
            ["a" | "an" | "any", rest @ ..] => rest,
            rest => rest,
        };
        !rest.is_empty() && rest.len() <= 3 && rest.iter().all(|w| META_NOUNS.contains(w))
    };
    // "The code does not have a summary", "This function has no docstring".
    if let ["the" | "this", noun, rest @ ..] = words
        && CODE_NOUNS.contains(noun)
    {
        let lacks = match rest {
            ["does", "not", "have" | "contain" | "include", rest @ ..]
            | ["has" | "contains", "no", rest @ ..]
            | ["lacks", rest @ ..] => Some(rest),
            _ => None,
        };
        if lacks.is_some_and(rest_is_meta) {
            return true;
        }
    }
    // "No summary available", "There is no description provided".
    let after_no = match words {
        ["no", rest @ ..] | ["there", "is", "no", rest @ ..] => Some(rest),
        _ => None,
    };
    if let Some(rest) = after_no {
        let rest = match rest {
            [rest @ .., "available" | "provided" | "given"] => rest,
            rest => rest,
        };
        if rest_is_meta(rest) {
            return true;
        }
    }
    // "This is a summary of the code."
    if let [
        "this" | "it" | "here",
        "is",
        "a" | "the",
        "summary" | "description",
        "of",
        rest @ ..,
    ] = words
        && matches!(rest, ["the" | "this", noun] if CODE_NOUNS.contains(noun))
    {
        return true;
    }
    // "Cannot determine what this code does", "I am unable to tell its purpose".
    let words = match words {
        ["i", rest @ ..] => rest,
        rest => rest,
    };
    INABILITY.iter().any(|prefix| {
        words.starts_with(prefix)
            && matches!(
                &words[prefix.len()..],
                [verb, object, ..]
                    if INABILITY_VERBS.contains(verb)
                        && matches!(*object, "what" | "the" | "this" | "its" | "it" | "anything")
            )
    })
}

/// A summary whose every sentence only says there is nothing to say (see [`disclaims`]).
/// Precise by design: a sentence must be such a statement as a whole, so a real summary that
/// says `does not` ("Returns None when the key does not exist") passes.
fn summary_disclaims(summary: &str) -> Verdict {
    let sentences: Vec<Vec<String>> = summary
        .split(['.', '!', '?', ';'])
        .map(sentence_words)
        .filter(|w| !w.is_empty())
        .collect();
    let all_disclaim = !sentences.is_empty()
        && sentences.iter().all(|sentence| {
            let words: Vec<&str> = sentence.iter().map(String::as_str).collect();
            disclaims(&words)
        });
    if all_disclaim {
        fail(format!(
            "the summary {} only says there is nothing to say; describe what the code does",
            quoted(summary)
        ))
    } else {
        Verdict::Pass
    }
}

/// An evidence range (already swapped into order) outside the span's lines.
fn evidence_outside_span(e: &Enrichment, ctx: &ValidationContext<'_>) -> Verdict {
    let outside: Vec<String> = e
        .evidence
        .iter()
        .filter(|evidence| !super::inside_span(evidence, &ctx.span))
        .map(|evidence| {
            format!(
                "evidence for `{}` cites lines [{}, {}], outside the span",
                evidence.field, evidence.lines[0], evidence.lines[1]
            )
        })
        .collect();
    if e.evidence.is_empty() {
        Verdict::NotApplicable
    } else if outside.is_empty() {
        Verdict::Pass
    } else {
        fail(format!(
            "{} (lines {}-{}); cite only lines {} to {}",
            outside.join(", "),
            ctx.span.line_start,
            ctx.span.line_end,
            ctx.span.line_start,
            ctx.span.line_end
        ))
    }
}

/// LLMC's SHORT: text with CJK characters needs 10 characters; other text is short with fewer
/// than 5 word tokens and fewer than 10 characters.
fn summary_short(summary: &str) -> Verdict {
    let text = summary.trim();
    let chars = text.chars().count();
    let short = if text.chars().any(is_cjk) {
        chars < 10
    } else {
        words(text).count() < 5 && chars < 10
    };
    if short {
        fail(format!(
            "the summary {} is too short to describe anything; write one or two sentences on \
             what the code does and why",
            quoted(summary)
        ))
    } else {
        Verdict::Pass
    }
}

fn is_cjk(c: char) -> bool {
    matches!(
        c,
        '\u{3040}'..='\u{30ff}' | '\u{3400}'..='\u{4dbf}' | '\u{4e00}'..='\u{9fff}' | '\u{ac00}'..='\u{d7af}' | '\u{f900}'..='\u{faff}'
    )
}

/// The word tokens of a text: runs of letters, digits and `_` (LLMC's `\w+`).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// A summary that is one token: a number, a path, a line reference or a name, not a sentence.
/// Text in CJK script, written without spaces, is not judged.
fn summary_bare_value(summary: &str) -> Verdict {
    let text = summary.trim().trim_end_matches(['.', '!', '?']);
    if !text.is_empty() && !text.contains(char::is_whitespace) && !text.chars().any(is_cjk) {
        fail(format!(
            "the summary {} is a bare number, path or name, not a description; write one or two \
             sentences on what the code does",
            quoted(summary)
        ))
    } else {
        Verdict::Pass
    }
}

/// Words of the prompt itself that never belong in a summary: the field names, the template
/// markers and phrases small models copy from the instructions.
const PROMPT_ECHOES: [&str; 19] = [
    "summary_120w",
    "120w",
    "side_effects",
    "usage_snippet",
    "enrichment.v1",
    "the summary of the input is",
    "the output is:",
    "the input is:",
    "for a code search index",
    "reply with one json object",
    "array of strings",
    "what the code does and why",
    "at most 120 words",
    "citing the source lines",
    "you describe source code",
    "the user gives you one span",
    "span: lines",
    "prefixed by its line number",
    "citing the line numbers",
];

/// A template marker such as `{input}` or `{snippet}`: braces around one lowercase word.
fn template_marker(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        if let Some(close) = after.find('}') {
            let inner = &after[..close];
            if !inner.is_empty()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            {
                return Some(&rest[open..open + close + 2]);
            }
        }
        rest = after;
    }
    None
}

/// The prompt's own words or a template marker in `text` (lowercased), if any.
fn prompt_echo(text: &str) -> Option<String> {
    if let Some(marker) = template_marker(text) {
        return Some(marker.to_owned());
    }
    let lower = text.to_lowercase();
    PROMPT_ECHOES
        .iter()
        .find(|echo| {
            if echo.contains(' ') || echo.contains('.') {
                lower.contains(*echo)
            } else {
                words(&lower).any(|w| w == **echo)
            }
        })
        .map(|echo| (*echo).to_owned())
}

fn summary_prompt_echo(summary: &str) -> Verdict {
    match prompt_echo(summary) {
        Some(echo) => fail(format!(
            "the summary repeats the prompt's own words ({echo:?}) instead of describing the \
             code; describe what this code does"
        )),
        None => Verdict::Pass,
    }
}

/// Single words that say nothing as a list item: field names and words of the prompt, and
/// placeholders.
const ITEM_FRAGMENTS: [&str; 26] = [
    "field",
    "fields",
    "line",
    "lines",
    "evidence",
    "summary",
    "summary_120w",
    "120w",
    "input",
    "inputs",
    "output",
    "outputs",
    "side_effect",
    "side_effects",
    "pitfall",
    "pitfalls",
    "usage_snippet",
    "string",
    "strings",
    "array",
    "placeholder",
    "lorem",
    "todo",
    "tbd",
    "fake",
    "n/a",
];

/// Why a list item is a placeholder or a fragment of the prompt, if it is one.
fn item_problem(item: &str, source: &str) -> Option<&'static str> {
    let bare = item
        .trim()
        .trim_matches(['`', '"', '\''])
        .trim_end_matches(['.', ','])
        .to_lowercase();
    if bare.is_empty()
        || bare
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ',' | '-' | ':' | ' ' | '[' | ']'))
    {
        return Some("a bare number");
    }
    if template_marker(&bare).is_some() {
        return Some("a template marker");
    }
    if PLACEHOLDER_TEXTS.contains(&bare.as_str()) {
        return Some("a placeholder");
    }
    // A word of the prompt is honest when the code itself uses it (a parameter named `field`).
    if ITEM_FRAGMENTS.contains(&bare.as_str()) && !occurs_as_word(source, item.trim()) {
        return Some("a word of the prompt or a placeholder, not something the code has");
    }
    None
}

fn list_item_placeholder(e: &Enrichment, source: &str) -> Verdict {
    let lists = [
        ("inputs", &e.inputs),
        ("outputs", &e.outputs),
        ("side_effects", &e.side_effects),
        ("pitfalls", &e.pitfalls),
    ];
    let mut found = Vec::new();
    for (field, list) in lists {
        for item in list {
            if let Some(problem) = item_problem(item, source) {
                found.push(format!("`{field}` item {} is {problem}", quoted(item)));
            }
        }
    }
    if found.is_empty() {
        Verdict::Pass
    } else {
        fail(format!(
            "{}; list what the code really takes, returns, changes and risks, or leave the list \
             empty",
            found.join(", ")
        ))
    }
}

/// Type and value words an answer may name although the source does not spell them (an
/// untyped function still returns a `bool`).
const COMMON_NAMES: [&str; 22] = [
    "none", "null", "nil", "void", "true", "false", "bool", "boolean", "int", "integer", "float",
    "double", "str", "string", "bytes", "list", "dict", "tuple", "set", "object", "self", "this",
];

/// The identifier an item names, when the item is one: a single token of identifier
/// characters, maybe dotted (`self.session`) or a path (`crate::x`), maybe with `()` or a
/// leading `*`/`&`. Natural-language phrases are not judged.
fn identifier_of(item: &str) -> Option<&str> {
    let token = item
        .trim()
        .trim_matches(['`', '"', '\''])
        .trim_start_matches(['*', '&', '$', '@'])
        .trim_end_matches("()")
        .trim_end_matches(['.', ',', ';', ':']);
    let mut chars = token.chars();
    let first = chars.next()?;
    if !(first.is_alphabetic() || first == '_') {
        return None;
    }
    let valid = token
        .split(['.', ':'])
        .filter(|s| !s.is_empty())
        .all(|segment| segment.chars().all(|c| c.is_alphanumeric() || c == '_'));
    (valid && !token.ends_with('.')).then_some(token)
}

/// Whether `word` occurs in `text` with no identifier character on either side.
fn occurs_as_word(text: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Whether the name `ident` is grounded in `source`: it occurs there whole, or its last
/// segment does (`self.session` for a source that assigns `self.session`, `Session.send` for a
/// method `send`).
fn grounded(ident: &str, source: &str) -> bool {
    if occurs_as_word(source, ident) || COMMON_NAMES.contains(&ident.to_lowercase().as_str()) {
        return true;
    }
    ident
        .rsplit(['.', ':'])
        .find(|s| !s.is_empty())
        .is_some_and(|last| occurs_as_word(source, last))
}

/// The URLs (`http://…`, `https://…`) in `text`, each up to the first whitespace, quote,
/// bracket or closing parenthesis.
fn urls(text: &str) -> impl Iterator<Item = &str> {
    ["http://", "https://"].into_iter().flat_map(move |scheme| {
        text.match_indices(scheme).map(move |(at, _)| {
            let rest = &text[at..];
            let end = rest
                .find(|c: char| c.is_whitespace() || "\"'`<>[](){}".contains(c))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches(['.', ',', ';', ':'])
        })
    })
}

/// Hosts a description may name without the source holding them (RFC 2606's examples).
const EXAMPLE_HOSTS: [&str; 4] = ["example.com", "example.org", "example.net", "localhost"];

/// Whether `url`'s host is one of the [`EXAMPLE_HOSTS`] or a subdomain of one.
fn is_example(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', ':', '?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    EXAMPLE_HOSTS
        .iter()
        .any(|example| host == *example || host.ends_with(&format!(".{example}")))
}

/// A URL the summary or a list item cites that the span's source does not contain: small
/// models invent links (a repository, an API host) where they have nothing to say. The usage
/// snippet is left out, as an example call may pass any URL, and so are example hosts.
fn url_not_in_source(e: &Enrichment, source: &str) -> Verdict {
    if source.trim().is_empty() {
        return Verdict::NotApplicable;
    }
    let texts = std::iter::once(e.summary.as_str()).chain(
        [&e.inputs, &e.outputs, &e.side_effects, &e.pitfalls]
            .into_iter()
            .flatten()
            .map(String::as_str),
    );
    let mut judged = false;
    let mut invented = Vec::new();
    for url in texts.flat_map(urls) {
        judged = true;
        if !source.contains(url) && !is_example(url) && !invented.contains(&url) {
            invented.push(url);
        }
    }
    match (judged, invented.first()) {
        (false, _) => Verdict::NotApplicable,
        (true, None) => Verdict::Pass,
        (true, Some(_)) => fail(format!(
            "it cites {} which the span's source does not contain; cite no link the code does \
             not hold",
            invented
                .iter()
                .map(|url| quoted(url))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn identifier_not_in_source(e: &Enrichment, source: &str) -> Verdict {
    if source.trim().is_empty() {
        return Verdict::NotApplicable;
    }
    let mut judged = false;
    let mut missing = Vec::new();
    for (field, list) in [("inputs", &e.inputs), ("outputs", &e.outputs)] {
        for item in list {
            if let Some(ident) = identifier_of(item) {
                judged = true;
                if !grounded(ident, source) {
                    missing.push(format!("`{field}` names {ident:?}"));
                }
            }
        }
    }
    if !judged {
        Verdict::NotApplicable
    } else if missing.is_empty() {
        Verdict::Pass
    } else {
        fail(format!(
            "{}, which does not occur in the span's source; name only parameters, fields and \
             values the code really uses",
            missing.join(", ")
        ))
    }
}

/// The name a usage snippet should mention for `symbol`: its last segment, or for a
/// constructor the type's name.
fn usage_names(symbol: &str) -> Vec<&str> {
    let segments: Vec<&str> = symbol
        .split(['.', ':', '#', '/'])
        .filter(|s| !s.is_empty())
        .collect();
    let mut names: Vec<&str> = segments.last().copied().into_iter().collect();
    if let [.., owner, last] = segments[..]
        && matches!(
            last,
            "__init__" | "new" | "constructor" | "__new__" | "__call__"
        )
    {
        names.push(owner);
    }
    names
}

fn usage_without_symbol(snippet: Option<&str>, symbol: &str) -> Verdict {
    let (Some(snippet), false) = (snippet, symbol.trim().is_empty()) else {
        return Verdict::NotApplicable;
    };
    let names = usage_names(symbol.trim());
    if names.iter().any(|name| snippet.contains(name)) {
        Verdict::Pass
    } else {
        fail(format!(
            "the usage snippet never mentions `{}`; show a call of this code, or give null",
            names.first().copied().unwrap_or(symbol)
        ))
    }
}

/// Cuts `summary` to at most `max_words` words: at the last sentence end (`.`, `!` or `?`
/// followed by whitespace) within the limit, else after the limit's last word. `None` when it
/// is within the limit.
pub(crate) fn cut_summary(summary: &str, max_words: usize) -> Option<String> {
    let mut ends = summary
        .split_whitespace()
        .map(|w| w.as_ptr() as usize - summary.as_ptr() as usize + w.len());
    let limit_end = ends.nth(max_words.checked_sub(1)?)?;
    ends.next()?;
    let within = &summary[..limit_end];
    let sentence_end = within
        .char_indices()
        .rev()
        .find(|&(i, c)| {
            matches!(c, '.' | '!' | '?')
                && (i + 1 == within.len() || within[i + 1..].starts_with(char::is_whitespace))
        })
        .map(|(i, _)| i + 1);
    let cut = match sentence_end {
        Some(end) => &within[..end],
        None => within.trim_end_matches([',', ';', ':']),
    };
    Some(cut.to_owned())
}

/// The checks a rejection message of the gate names, each once, in the order of [`CHECKS`].
/// The gate writes one part per failed check, ``quality check `NAME` failed: REASON``, joined
/// by `; `; only the gate's own check names count, and only at the start of a part.
pub fn rejected_checks(message: &str) -> Vec<&'static str> {
    CHECKS
        .iter()
        .map(|check| check.name)
        .filter(|name| {
            let part = format!("quality check `{name}` failed: ");
            message.starts_with(&part) || message.contains(&format!("; {part}"))
        })
        .collect()
}

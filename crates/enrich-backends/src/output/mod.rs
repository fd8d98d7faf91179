//! The enrichment.v1 output: its types, its JSON Schema, and turning a model's reply into a
//! validated [`Enrichment`].

mod extract;
mod quality;
mod raw;
mod schema;

use std::fmt::Write as _;

use enrich_config::QualityLevel;
use enrich_types::{Enrichment, Evidence, FailureKind, SpanIdentity};

use crate::failure::BackendError;

use self::raw::{Field, RawEnrichment, RawEvidence};

pub use self::quality::{
    CHECKS, Check, GATE_VERSION, QualityReport, REPAIR_EVIDENCE_SWAPPED, REPAIR_SUMMARY_CUT,
    REPAIRS, Validated, rejected_checks,
};
pub use self::schema::{
    CHARS_PER_TOKEN, EVIDENCE_MAX_ITEMS, ITEM_MAX_CHARS, LIST_MAX_ITEMS, OutputSchema,
    SNIPPET_MAX_CHARS, SUMMARY_MAX_CHARS, enrichment_v1_output_tokens, enrichment_v1_schema,
    enrichment_v1_schema_for_span, worst_case_output_tokens,
};

/// The most words `summary_120w` may have.
pub const SUMMARY_MAX_WORDS: usize = 120;
/// The most lines `usage_snippet` may have.
pub const USAGE_SNIPPET_MAX_LINES: usize = 12;

/// What [`parse_and_validate`] checks a reply against: the span (evidence may cite only its
/// lines), the character rule, and what the quality gate judges by (its level, the span's
/// source and symbol, borrowed from where the prompt was built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationContext<'a> {
    /// The span the reply is about.
    pub span: SpanIdentity,
    /// Reject any character above U+00FF (`enforce_latin1_enrichment`).
    pub enforce_latin1: bool,
    /// Which of the gate's checks reject an answer ([`CHECKS`]).
    pub quality: QualityLevel,
    /// The span's source as the prompt showed it; empty when unknown (the checks that need it
    /// then do not apply).
    pub source: &'a str,
    /// The span's symbol (`Session.request`); empty when it has none.
    pub symbol: &'a str,
}

impl ValidationContext<'static> {
    /// The context for a span, judged at [`QualityLevel::Basic`] with no source or symbol.
    pub fn for_span(span: &SpanIdentity, enforce_latin1: bool) -> Self {
        Self {
            span: span.clone(),
            enforce_latin1,
            quality: QualityLevel::Basic,
            source: "",
            symbol: "",
        }
    }
}

impl ValidationContext<'_> {
    /// The same context with the gate at `level`.
    #[must_use]
    pub fn with_quality(mut self, level: QualityLevel) -> Self {
        self.quality = level;
        self
    }

    /// The same context with the span's source and symbol, for the checks that need them.
    pub fn with_source<'b>(self, source: &'b str, symbol: &'b str) -> ValidationContext<'b> {
        ValidationContext {
            span: self.span,
            enforce_latin1: self.enforce_latin1,
            quality: self.quality,
            source,
            symbol,
        }
    }
}

/// Reads an enrichment.v1 object out of a model's reply, normalises it, validates it and passes
/// it through the quality gate; [`judge_reply`] also returns the gate's report.
///
/// Extraction tolerates a ```` ```json ```` fence and chatter around the object: it takes the
/// first balanced `{…}` (brace matching that respects strings and escapes) that parses as JSON
/// and has at least one enrichment.v1 key. Normalisation: a string where a list belongs becomes
/// a one-item list, `null` lists become empty, strings are trimmed, empty items dropped, an
/// empty `usage_snippet` becomes `None`, evidence lines given as `n`, `[n]` or `"a-b"` are
/// widened to `[start, end]`, and each filled field without evidence gets one entry covering
/// the whole span. Repairs: an evidence range given end first is swapped back, and a summary
/// over [`SUMMARY_MAX_WORDS`] words is cut at the last sentence end within the limit.
///
/// # Errors
///
/// [`FailureKind::MalformedOutput`] when the reply holds no JSON object (or only the start of
/// one); [`FailureKind::SchemaInvalid`] when the object breaks a rule: a wrong type, a missing
/// or too long summary, too long a snippet, evidence for an unknown field, non-Latin-1 text
/// under `enforce_latin1`; [`FailureKind::QualityRejected`] when a check of the gate at the
/// context's level fails ([`CHECKS`]), evidence outside the span among them. The message lists every problem found,
/// naming the field or the check, in words fit to send back to the model.
pub fn parse_and_validate(
    text: &str,
    ctx: &ValidationContext<'_>,
) -> Result<Enrichment, BackendError> {
    judge_reply(text, ctx).map(|validated| validated.enrichment)
}

/// [`parse_and_validate`], returning the quality gate's report (score, checks failed above the
/// level, repairs made) with the enrichment.
///
/// # Errors
///
/// As [`parse_and_validate`].
pub fn judge_reply(text: &str, ctx: &ValidationContext<'_>) -> Result<Validated, BackendError> {
    let raw = extract(text)?;
    let (enrichment, repairs) = normalise_and_validate(raw, ctx)?;
    match quality::judge(&enrichment, repairs, ctx) {
        Ok(quality) => {
            // Let through (the gate is off), a range outside the span is still never stored:
            // its field then gets the whole span.
            let mut enrichment = enrichment;
            enrichment.evidence.retain(|e| inside_span(e, &ctx.span));
            add_missing_evidence(&mut enrichment, ctx);
            Ok(Validated {
                enrichment,
                quality,
            })
        }
        Err(message) => Err(BackendError::new(FailureKind::QualityRejected, message)),
    }
}

/// Finds and reads the enrichment object in `text`.
fn extract(text: &str) -> Result<RawEnrichment, BackendError> {
    let bytes = text.as_bytes();
    let mut from = 0;
    let mut unbalanced = false;
    let mut keyless = false;
    let mut syntax_error = None;
    while let Some(start) = extract::next_open(bytes, from) {
        let Some(end) = extract::object_end(bytes, start) else {
            unbalanced = true;
            from = start + 1;
            continue;
        };
        match serde_json::from_str::<RawEnrichment>(&text[start..end]) {
            Ok(raw) if raw.has_known_key => return Ok(raw),
            Ok(_) => keyless = true,
            Err(err) if err.is_data() => {
                return Err(BackendError::new(
                    FailureKind::SchemaInvalid,
                    format!("the JSON object does not fit enrichment.v1: {err}"),
                )
                .with_source(err));
            }
            Err(err) => {
                syntax_error.get_or_insert(err);
            }
        }
        from = end;
    }
    Err(if unbalanced {
        BackendError::new(
            FailureKind::MalformedOutput,
            "the reply starts a JSON object but never closes it (the output looks truncated); \
             reply with one complete JSON object",
        )
    } else if keyless {
        BackendError::new(
            FailureKind::SchemaInvalid,
            "the reply's JSON object has none of the enrichment.v1 keys (summary_120w, inputs, \
             outputs, side_effects, pitfalls, usage_snippet, evidence)",
        )
    } else if let Some(err) = syntax_error {
        BackendError::new(
            FailureKind::MalformedOutput,
            format!("the reply holds no valid JSON object: {err}; reply with one JSON object"),
        )
        .with_source(err)
    } else {
        BackendError::new(
            FailureKind::MalformedOutput,
            "the reply holds no JSON object; reply with one JSON object and nothing else",
        )
    })
}

/// Applies the normalisation rules, then every validation rule, collecting all problems.
/// Returns the enrichment and the repairs made ([`REPAIRS`]).
fn normalise_and_validate(
    raw: RawEnrichment,
    ctx: &ValidationContext<'_>,
) -> Result<(Enrichment, Vec<&'static str>), BackendError> {
    let mut problems = Problems::default();
    let mut repairs = Vec::new();

    let mut summary = raw.summary.map(trimmed).unwrap_or_default();
    if summary.split_whitespace().next().is_none() {
        problems.push(format_args!(
            "`summary_120w` is missing or empty; write a summary of at most {SUMMARY_MAX_WORDS} words"
        ));
    } else if let Some(cut) = quality::cut_summary(&summary, SUMMARY_MAX_WORDS) {
        summary = cut;
        repairs.push(REPAIR_SUMMARY_CUT);
    }

    let usage_snippet = raw.usage_snippet.and_then(snippet);
    if let Some(snippet) = &usage_snippet {
        let lines = snippet.lines().count();
        if lines > USAGE_SNIPPET_MAX_LINES {
            problems.push(format_args!(
                "`usage_snippet` has {lines} lines; keep it to at most {USAGE_SNIPPET_MAX_LINES} lines"
            ));
        }
    }

    let mut enrichment = Enrichment {
        summary,
        inputs: items(raw.inputs),
        outputs: items(raw.outputs),
        side_effects: items(raw.side_effects),
        pitfalls: items(raw.pitfalls),
        usage_snippet,
        evidence: Vec::with_capacity(raw.evidence.len() + Field::CITABLE.len()),
    };

    let mut swapped = false;
    for entry in raw.evidence {
        if let Some(evidence) = check_evidence(entry, &mut problems, &mut swapped) {
            enrichment.evidence.push(evidence);
        }
    }
    if swapped {
        repairs.insert(0, REPAIR_EVIDENCE_SWAPPED);
    }

    if ctx.enforce_latin1 {
        check_latin1(&enrichment, &mut problems);
    }

    if let Some(message) = problems.finish() {
        return Err(BackendError::new(FailureKind::SchemaInvalid, message));
    }
    add_missing_evidence(&mut enrichment, ctx);
    Ok((enrichment, repairs))
}

/// Checks one evidence entry names a known field. A range given end first is swapped back (a
/// repair, noted in `swapped`); whether it lies inside the span is the gate's check.
fn check_evidence(
    entry: RawEvidence,
    problems: &mut Problems,
    swapped: &mut bool,
) -> Option<Evidence> {
    let RawEvidence { field, lines } = entry;
    let field = trimmed(field);
    if !Field::CITABLE.iter().any(|f| f.name() == field) {
        problems.push(format_args!(
            "evidence names field `{field}`, which is not one of summary_120w, inputs, outputs, \
             side_effects, pitfalls, usage_snippet"
        ));
        return None;
    }
    let [mut start, mut end] = lines;
    if start > end {
        std::mem::swap(&mut start, &mut end);
        *swapped = true;
    }
    // A range outside the span is kept for the gate's `evidence_outside_span`; a line past
    // u32 is outside every span, and stays outside at u32::MAX.
    let lines = [start, end].map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Some(Evidence { field, lines })
}

/// Whether an evidence entry cites only lines of the span.
pub(crate) fn inside_span(evidence: &Evidence, span: &SpanIdentity) -> bool {
    span.line_start <= evidence.lines[0] && evidence.lines[1] <= span.line_end
}

/// Reports the first non-Latin-1 character of each field.
fn check_latin1(enrichment: &Enrichment, problems: &mut Problems) {
    let mut check = |field: &str, item: Option<usize>, text: &str| {
        if text.is_ascii() {
            return;
        }
        if let Some(c) = text.chars().find(|&c| c > '\u{ff}') {
            let place = match item {
                Some(i) => format!("`{field}` item {}", i + 1),
                None => format!("`{field}`"),
            };
            problems.push(format_args!(
                "{place} contains {c:?} (U+{:04X}), which is outside Latin-1; use only Latin-1 \
                 characters",
                u32::from(c)
            ));
        }
    };
    check(Field::Summary.name(), None, &enrichment.summary);
    let lists = [
        (Field::Inputs, &enrichment.inputs),
        (Field::Outputs, &enrichment.outputs),
        (Field::SideEffects, &enrichment.side_effects),
        (Field::Pitfalls, &enrichment.pitfalls),
    ];
    for (field, list) in lists {
        // Only the first offending item of a list is reported.
        if let Some((i, item)) = list.iter().enumerate().find(|(_, s)| !is_latin1(s)) {
            check(field.name(), Some(i), item);
        }
    }
    if let Some(snippet) = &enrichment.usage_snippet {
        check(Field::UsageSnippet.name(), None, snippet);
    }
}

fn is_latin1(text: &str) -> bool {
    text.is_ascii() || text.chars().all(|c| c <= '\u{ff}')
}

/// Adds an entry covering the whole span for every filled field that has none.
fn add_missing_evidence(enrichment: &mut Enrichment, ctx: &ValidationContext<'_>) {
    for field in Field::CITABLE {
        let filled = match field {
            Field::Summary => !enrichment.summary.is_empty(),
            Field::Inputs => !enrichment.inputs.is_empty(),
            Field::Outputs => !enrichment.outputs.is_empty(),
            Field::SideEffects => !enrichment.side_effects.is_empty(),
            Field::Pitfalls => !enrichment.pitfalls.is_empty(),
            Field::UsageSnippet => enrichment.usage_snippet.is_some(),
            Field::Evidence => false,
        };
        if filled && !enrichment.evidence.iter().any(|e| e.field == field.name()) {
            enrichment.evidence.push(Evidence {
                field: field.name().to_owned(),
                lines: [ctx.span.line_start, ctx.span.line_end],
            });
        }
    }
}

/// Trims in place, reusing the allocation.
fn trimmed(mut s: String) -> String {
    let end = s.trim_end().len();
    s.truncate(end);
    let start = s.len() - s.trim_start().len();
    s.drain(..start);
    s
}

/// Trims every item and drops the empty ones.
fn items(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(trimmed)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A snippet without trailing whitespace or leading blank lines (indentation is kept); `None`
/// when nothing is left.
fn snippet(mut s: String) -> Option<String> {
    let end = s.trim_end().len();
    s.truncate(end);
    let first_text = s.len() - s.trim_start().len();
    let line_start = s[..first_text].rfind('\n').map_or(0, |nl| nl + 1);
    s.drain(..line_start);
    (!s.is_empty()).then_some(s)
}

/// Validation problems, joined into one message.
#[derive(Default)]
struct Problems(String);

impl Problems {
    fn push(&mut self, problem: std::fmt::Arguments<'_>) {
        if !self.0.is_empty() {
            self.0.push_str("; ");
        }
        // Writing to a String cannot fail.
        let _ = self.0.write_fmt(problem);
    }

    fn finish(self) -> Option<String> {
        (!self.0.is_empty()).then_some(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_helpers_keep_inner_text_and_indentation() {
        assert_eq!(trimmed("  a b \n".to_owned()), "a b");
        assert_eq!(
            items(vec![" x ".into(), "  ".into(), String::new(), "y".into()]),
            ["x", "y"]
        );
        assert_eq!(
            snippet("\n\n    call(1)\n  \n".to_owned()).as_deref(),
            Some("    call(1)")
        );
        assert_eq!(snippet(" \n\t\n".to_owned()), None);
    }
}

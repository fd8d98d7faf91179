//! `enrich quality`: per model, chain, backend and prompt fingerprint, how well enrichment went, from
//! the attempt log and the quality gate's scores; `--worst N` lists the lowest-scoring spans.

use std::fmt::Write as _;

use anyhow::Result;
use enrich_db::{CheckCount, QualityGroup, ReportFilter, RunId, ScoredSpan};
use serde::Serialize;

use crate::cli::QualityArgs;
use crate::context::Repo;
use crate::exit::Exit;
use crate::output;

/// The `--json` document of `enrich quality`.
#[derive(Serialize)]
struct QualityDocument {
    /// One entry per model, chain, backend and prompt fingerprint.
    groups: Vec<Figures>,
    /// The lowest-scoring stored enrichments, lowest first (empty without `--worst`).
    worst: Vec<Worst>,
}

/// The spread of the quality scores of a group's stored enrichments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Spread {
    /// Enrichments with a score.
    pub(super) scored: u64,
    pub(super) mean: f64,
    /// Population standard deviation.
    pub(super) stddev: f64,
    pub(super) min: f64,
    /// Nearest-rank percentiles.
    pub(super) p10: f64,
    pub(super) p50: f64,
    pub(super) p90: f64,
    pub(super) max: f64,
}

impl Spread {
    /// The spread of `sorted` (lowest first); `None` when empty.
    fn of(sorted: &[f64]) -> Option<Self> {
        let n = sorted.len();
        let (first, last) = (*sorted.first()?, *sorted.last()?);
        let count = n as f64;
        let mean = sorted.iter().sum::<f64>() / count;
        let variance = sorted.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / count;
        // Nearest rank: the smallest score with at least q of the scores at or below it.
        let rank = |q: f64| sorted[((q * count).ceil() as usize).clamp(1, n) - 1];
        Some(Self {
            scored: u64::try_from(n).unwrap_or(u64::MAX),
            mean,
            stddev: variance.sqrt(),
            min: first,
            p10: rank(0.1),
            p50: rank(0.5),
            p90: rank(0.9),
            max: last,
        })
    }
}

/// A group's figures, derived from its records: the `--json` shape of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Figures {
    pub(super) model: String,
    /// The chain the spans were routed to; `unknown` for attempts logged without one.
    pub(super) chain: String,
    pub(super) backend: String,
    pub(super) prompt_fingerprint: String,
    /// Distinct span and run pairs with an attempt of the group.
    pub(super) spans_tried: u64,
    /// Attempts, failed ones included.
    pub(super) attempts: u64,
    /// Successful attempts: enrichments produced.
    pub(super) spans_enriched: u64,
    /// Attempts that were their span's first in a run, and how many of them succeeded.
    pub(super) first_attempts: u64,
    pub(super) first_try_valid: u64,
    /// `first_try_valid / first_attempts`; `None` without first attempts.
    pub(super) first_try_valid_rate: Option<f64>,
    /// Attempts the gate rejected, and the checks their messages name.
    pub(super) gate_rejections: u64,
    pub(super) rejections_by_check: Vec<CheckCount>,
    /// Checks failed by stored enrichments without rejecting them.
    pub(super) failed_checks_let_through: Vec<CheckCount>,
    /// Enrichments of the group the index still holds.
    pub(super) stored: u64,
    pub(super) quality_score: Option<Spread>,
    /// Mean words of the stored summaries.
    pub(super) mean_summary_words: Option<f64>,
    /// Tokens of every attempt (failed ones too), in total and per enrichment produced.
    pub(super) prompt_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) prompt_tokens_per_enrichment: Option<f64>,
    pub(super) output_tokens_per_enrichment: Option<f64>,
}

/// `part / whole`, `None` when `whole` is 0.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Figures {
    /// The figures of one group.
    pub(super) fn of(group: &QualityGroup) -> Self {
        Self {
            model: group.key.model.clone(),
            chain: group.key.chain.clone(),
            backend: group.key.backend.clone(),
            prompt_fingerprint: group.key.prompt_fingerprint.clone(),
            spans_tried: group.spans_tried,
            attempts: group.attempts,
            spans_enriched: group.enriched,
            first_attempts: group.first_attempts,
            first_try_valid: group.first_try_valid,
            first_try_valid_rate: ratio(group.first_try_valid, group.first_attempts),
            gate_rejections: group.rejected,
            rejections_by_check: group.rejections.clone(),
            failed_checks_let_through: group.let_through.clone(),
            stored: group.stored,
            quality_score: Spread::of(&group.scores),
            mean_summary_words: ratio(group.summary_words, group.stored),
            prompt_tokens: group.prompt_tokens,
            output_tokens: group.output_tokens,
            prompt_tokens_per_enrichment: ratio(group.prompt_tokens, group.enriched),
            output_tokens_per_enrichment: ratio(group.output_tokens, group.enriched),
        }
    }

    /// The rows of the text report: a label and its value.
    pub(super) fn rows(&self) -> Vec<(&'static str, String)> {
        let percent =
            |rate: Option<f64>| rate.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0));
        let per = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        vec![
            (
                "spans enriched",
                format!(
                    "{} of {} tried ({} attempts)",
                    self.spans_enriched, self.spans_tried, self.attempts
                ),
            ),
            (
                "first-try valid",
                format!(
                    "{} ({} of {})",
                    percent(self.first_try_valid_rate),
                    self.first_try_valid,
                    self.first_attempts
                ),
            ),
            (
                "gate rejections",
                with_checks(self.gate_rejections.to_string(), &self.rejections_by_check),
            ),
            (
                "let through",
                with_checks(String::new(), &self.failed_checks_let_through),
            ),
            (
                "quality score",
                self.quality_score.as_ref().map_or("-".to_owned(), |s| {
                    format!(
                        "mean {:.2}, stddev {:.2}, p10 {:.2}, p50 {:.2}, p90 {:.2} ({} scored of {} stored)",
                        s.mean, s.stddev, s.p10, s.p50, s.p90, s.scored, self.stored
                    )
                }),
            ),
            ("summary words", format!("mean {}", per(self.mean_summary_words))),
            (
                "tokens/enrichment",
                format!(
                    "prompt {}, output {} (every attempt counted)",
                    per(self.prompt_tokens_per_enrichment),
                    per(self.output_tokens_per_enrichment)
                ),
            ),
        ]
    }
}

/// `lead` followed by the checks and their counts (`-` when both are empty).
fn with_checks(lead: String, checks: &[CheckCount]) -> String {
    let listed: Vec<String> = checks
        .iter()
        .map(|c| format!("{} {}", c.check, c.count))
        .collect();
    match (lead.is_empty(), listed.is_empty()) {
        (true, true) => "-".to_owned(),
        (true, false) => listed.join(", "),
        (false, true) => lead,
        (false, false) => format!("{lead}: {}", listed.join(", ")),
    }
}

/// The figures of several groups taken as one (the side of a comparison).
pub(super) fn merged(groups: &[QualityGroup]) -> Option<QualityGroup> {
    let mut all = groups.first()?.clone();
    for group in &groups[1..] {
        all.attempts += group.attempts;
        all.spans_tried += group.spans_tried;
        all.first_attempts += group.first_attempts;
        all.first_try_valid += group.first_try_valid;
        all.enriched += group.enriched;
        all.rejected += group.rejected;
        all.prompt_tokens += group.prompt_tokens;
        all.output_tokens += group.output_tokens;
        all.stored += group.stored;
        all.summary_words += group.summary_words;
        all.scores.extend(&group.scores);
        all.rejections = merged_counts(&all.rejections, &group.rejections);
        all.let_through = merged_counts(&all.let_through, &group.let_through);
        for (mine, theirs) in [
            (&mut all.key.model, &group.key.model),
            (&mut all.key.chain, &group.key.chain),
            (&mut all.key.backend, &group.key.backend),
            (
                &mut all.key.prompt_fingerprint,
                &group.key.prompt_fingerprint,
            ),
        ] {
            if !mine.split(", ").any(|m| m == theirs) {
                mine.push_str(", ");
                mine.push_str(theirs);
            }
        }
    }
    all.scores.sort_by(f64::total_cmp);
    Some(all)
}

fn merged_counts(a: &[CheckCount], b: &[CheckCount]) -> Vec<CheckCount> {
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    for c in a.iter().chain(b) {
        *counts.entry(&c.check).or_default() += c.count;
    }
    let mut ranked: Vec<CheckCount> = counts
        .into_iter()
        .map(|(check, count)| CheckCount {
            check: check.to_owned(),
            count,
        })
        .collect();
    ranked.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.check.cmp(&b.check)));
    ranked
}

/// A low-scoring stored enrichment, with the command that shows it.
#[derive(Serialize)]
struct Worst {
    span_hash: String,
    score: Option<f64>,
    model: String,
    chain: String,
    backend: String,
    prompt_fingerprint: String,
    run_id: RunId,
    file_path: Option<String>,
    start_line: Option<u32>,
    end_line: Option<u32>,
    symbol: Option<String>,
    failed_checks: Vec<String>,
    repairs: Vec<String>,
    summary: String,
    /// `enrich show SPAN_HASH`.
    show: String,
}

impl From<ScoredSpan> for Worst {
    fn from(s: ScoredSpan) -> Self {
        Self {
            show: format!("enrich show {}", s.span_hash),
            span_hash: s.span_hash,
            score: s.score,
            model: s.key.model,
            chain: s.key.chain,
            backend: s.key.backend,
            prompt_fingerprint: s.key.prompt_fingerprint,
            run_id: s.run_id,
            file_path: s.file_path,
            start_line: s.start_line,
            end_line: s.end_line,
            symbol: s.symbol,
            failed_checks: s.failed_checks,
            repairs: s.repairs,
            summary: s.summary,
        }
    }
}

/// The filter of `--model` and `--run`.
pub(super) fn filter(models: &[String], runs: &[i64]) -> ReportFilter {
    ReportFilter {
        models: models.to_vec(),
        runs: runs.iter().copied().map(RunId).collect(),
        ..ReportFilter::default()
    }
}

/// The checks a gate rejection's message names, as the report counts them.
pub(super) fn rejected_checks(message: &str) -> Vec<String> {
    enrich_backends::rejected_checks(message)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Reports the quality of what the attempts `args` select produced.
pub(crate) fn quality(repo: &Repo, args: &QualityArgs, json: bool) -> Result<Exit> {
    let db = repo.open_read_only()?;
    let since_ms = args.since.map(|age| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(now.saturating_sub(age).as_millis()).unwrap_or(u64::MAX)
    });
    let filter = ReportFilter {
        since_ms,
        ..filter(&args.models, &args.runs)
    };
    let groups = db.quality_groups(&filter, rejected_checks)?;
    let worst = match args.worst {
        Some(n) => db.scored_spans(&filter, usize::try_from(n).unwrap_or(usize::MAX))?,
        None => Vec::new(),
    };
    let document = QualityDocument {
        groups: groups.iter().map(Figures::of).collect(),
        worst: worst.into_iter().map(Worst::from).collect(),
    };
    if json {
        output::json(&document)?;
    } else {
        output::text(&render(&document, args.worst.is_some())?)?;
    }
    Ok(Exit::Success)
}

/// `label` padded to the report's first column.
pub(super) fn row(text: &mut String, label: &str, value: &str) -> std::fmt::Result {
    writeln!(text, "  {label:<19}{value}")
}

fn render(document: &QualityDocument, worst_asked: bool) -> Result<String> {
    let mut text = String::new();
    if document.groups.is_empty() {
        writeln!(
            text,
            "no attempts recorded for this selection; `enrich run` records them"
        )?;
    }
    for figures in &document.groups {
        writeln!(
            text,
            "model {}  chain {}  backend {}  prompt {}",
            figures.model, figures.chain, figures.backend, figures.prompt_fingerprint
        )?;
        for (label, value) in figures.rows() {
            row(&mut text, label, &value)?;
        }
        writeln!(text)?;
    }
    if worst_asked {
        if document.worst.is_empty() {
            writeln!(text, "no stored enrichment of this selection")?;
        } else {
            writeln!(text, "lowest scores")?;
        }
        for w in &document.worst {
            let score = w.score.map_or("-   ".to_owned(), |s| format!("{s:.2}"));
            let place = match (&w.file_path, w.start_line, w.end_line) {
                (Some(path), Some(start), Some(end)) => format!("{path}:{start}-{end}"),
                _ => "(span no longer in the index)".to_owned(),
            };
            let symbol = w.symbol.as_deref().unwrap_or_default();
            writeln!(
                text,
                "  {score}  {place} {symbol}  ({}, chain {}, run {})",
                w.model, w.chain, w.run_id.0
            )?;
            if !w.failed_checks.is_empty() {
                writeln!(text, "        failed {}", w.failed_checks.join(", "))?;
            }
            writeln!(text, "        {}", w.show)?;
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_uses_nearest_rank_percentiles() {
        let scores: Vec<f64> = (1..=10).map(|i| f64::from(i) / 10.0).collect();
        let spread = Spread::of(&scores).expect("scores");
        assert_eq!((spread.p10, spread.p50, spread.p90), (0.1, 0.5, 0.9));
        assert_eq!((spread.min, spread.max, spread.scored), (0.1, 1.0, 10));
        assert!((spread.mean - 0.55).abs() < 1e-9);
        assert!((spread.stddev - 0.287_228_132).abs() < 1e-6);
        let one = Spread::of(&[0.4]).expect("one score");
        assert_eq!((one.p10, one.p90, one.stddev), (0.4, 0.4, 0.0));
        assert_eq!(Spread::of(&[]), None);
    }
}

//! `enrich compare`: two models, or two runs, side by side on the spans both enriched, from
//! the attempt log and the quality gate's scores, with a few example spans.
//!
//! What the records allow: the attempt log keeps every attempt's outcome, tokens and rejection
//! message, but the index keeps one enrichment per span (the latest), so a span's summary and
//! score are shown for the side that wrote the enrichment the index holds, and the other side's
//! are reported as not kept.

use std::fmt::Write as _;

use anyhow::Result;
use enrich_db::{Db, ReportFilter, ScoredSpan};
use serde::Serialize;

use super::quality::{Figures, filter, merged, rejected_checks, row};
use crate::cli::CompareArgs;
use crate::context::Repo;
use crate::exit::{Exit, usage};
use crate::output;

/// The `--json` document of `enrich compare`.
#[derive(Serialize)]
struct Comparison {
    /// Spans an attempt of each side enriched.
    spans_both_enriched: u64,
    /// The two sides, in the order given.
    sides: Vec<Side>,
    /// A few of the spans both enriched.
    examples: Vec<Example>,
}

/// One side: what it is and its figures on the spans both enriched.
#[derive(Serialize)]
struct Side {
    /// `model NAME` or `run N`.
    label: String,
    /// `None` when the side has no attempt on those spans.
    figures: Option<Figures>,
}

/// One span both sides enriched.
#[derive(Serialize)]
struct Example {
    span_hash: String,
    file_path: Option<String>,
    start_line: Option<u32>,
    end_line: Option<u32>,
    symbol: Option<String>,
    /// Per side, in the order of `sides`.
    sides: Vec<ExampleSide>,
}

/// What one side did with an example span.
#[derive(Serialize)]
struct ExampleSide {
    attempts: u64,
    first_try_valid: bool,
    prompt_tokens: u64,
    output_tokens: u64,
    /// The gate's rejections of its attempts, by check.
    rejected_checks: Vec<String>,
    /// The enrichment the index holds when this side wrote it (`None`: not kept, a later
    /// enrichment of the other side replaced it).
    stored: Option<StoredText>,
}

/// A stored enrichment's score and summary.
#[derive(Serialize)]
struct StoredText {
    score: Option<f64>,
    failed_checks: Vec<String>,
    summary: String,
}

/// Compares the two sides `args` names.
pub(crate) fn compare(repo: &Repo, args: &CompareArgs, json: bool) -> Result<Exit> {
    let sides: Vec<(String, ReportFilter)> = match (args.models.len(), args.runs.len()) {
        (2, 0) => args
            .models
            .iter()
            .map(|m| (format!("model {m}"), filter(std::slice::from_ref(m), &[])))
            .collect(),
        (0, 2) => args
            .runs
            .iter()
            .map(|r| (format!("run {r}"), filter(&[], &[*r])))
            .collect(),
        _ => {
            return Err(usage(
                "give two models (`--model A --model B`) or two runs (`--run 3 --run 5`) to compare",
            ));
        }
    };
    let db = repo.open_read_only()?;
    let (a, b) = (&sides[0].1, &sides[1].1);
    let common = |mine: &ReportFilter, other: &ReportFilter| ReportFilter {
        also_enriched_by: Some(Box::new(other.clone())),
        ..mine.clone()
    };
    let both = db.spans_enriched_by_both(a, b, usize::MAX)?;
    let mut document = Comparison {
        spans_both_enriched: u64::try_from(both.len()).unwrap_or(u64::MAX),
        sides: Vec::new(),
        examples: Vec::new(),
    };
    for (i, (label, side)) in sides.iter().enumerate() {
        let other = &sides[1 - i].1;
        let groups = db.quality_groups(&common(side, other), rejected_checks)?;
        document.sides.push(Side {
            label: label.clone(),
            figures: merged(&groups).as_ref().map(Figures::of),
        });
    }
    for span_hash in both.iter().take(args.examples) {
        document.examples.push(example(&db, span_hash, [a, b])?);
    }
    if json {
        output::json(&document)?;
    } else {
        output::text(&render(&document)?)?;
    }
    Ok(Exit::Success)
}

/// What each side did with `span_hash`.
fn example(db: &Db, span_hash: &str, sides: [&ReportFilter; 2]) -> Result<Example> {
    let mut example = Example {
        span_hash: span_hash.to_owned(),
        file_path: None,
        start_line: None,
        end_line: None,
        symbol: None,
        sides: Vec::new(),
    };
    for side in sides {
        let on_span = ReportFilter {
            span_hash: Some(span_hash.to_owned()),
            ..side.clone()
        };
        let all = merged(&db.quality_groups(&on_span, rejected_checks)?);
        let stored: Option<ScoredSpan> = db.scored_spans(&on_span, 1)?.pop();
        if let Some(s) = &stored {
            example.file_path.clone_from(&s.file_path);
            example.start_line = s.start_line;
            example.end_line = s.end_line;
            example.symbol.clone_from(&s.symbol);
        }
        example.sides.push(ExampleSide {
            attempts: all.as_ref().map_or(0, |g| g.attempts),
            first_try_valid: all.as_ref().is_some_and(|g| g.first_try_valid > 0),
            prompt_tokens: all.as_ref().map_or(0, |g| g.prompt_tokens),
            output_tokens: all.as_ref().map_or(0, |g| g.output_tokens),
            rejected_checks: all.map_or_else(Vec::new, |g| {
                g.rejections.into_iter().map(|c| c.check).collect()
            }),
            stored: stored.map(|s| StoredText {
                score: s.score,
                failed_checks: s.failed_checks,
                summary: s.summary,
            }),
        });
    }
    if example.file_path.is_none()
        && let Some(span) = db.span_by_hash(span_hash)?
    {
        example.file_path = Some(span.file_path);
        example.start_line = Some(span.start_line);
        example.end_line = Some(span.end_line);
        example.symbol = Some(span.symbol);
    }
    Ok(example)
}

fn render(c: &Comparison) -> Result<String> {
    let mut text = String::new();
    let [a, b] = [&c.sides[0], &c.sides[1]];
    writeln!(
        text,
        "{} vs {}: {} span(s) both enriched; the figures below count only those",
        a.label, b.label, c.spans_both_enriched
    )?;
    for side in &c.sides {
        writeln!(text, "\n{}", side.label)?;
        match &side.figures {
            Some(figures) => {
                row(&mut text, "model", &figures.model)?;
                row(&mut text, "chain", &figures.chain)?;
                row(&mut text, "backend", &figures.backend)?;
                row(&mut text, "prompt", &figures.prompt_fingerprint)?;
                for (label, value) in figures.rows() {
                    row(&mut text, label, &value)?;
                }
            }
            None => row(&mut text, "attempts", "none on the spans both enriched")?,
        }
    }
    for example in &c.examples {
        let place = match (&example.file_path, example.start_line, example.end_line) {
            (Some(path), Some(start), Some(end)) => format!("{path}:{start}-{end}"),
            _ => "(span no longer in the index)".to_owned(),
        };
        let symbol = example.symbol.as_deref().unwrap_or_default();
        writeln!(text, "\nexample {place} {symbol}\n  {}", example.span_hash)?;
        for (side, done) in c.sides.iter().zip(&example.sides) {
            let first = if done.first_try_valid {
                "valid at the first try"
            } else {
                "not valid at the first try"
            };
            write!(
                text,
                "  {}: {} attempt(s), {first}, {} prompt + {} output tokens",
                side.label, done.attempts, done.prompt_tokens, done.output_tokens
            )?;
            if !done.rejected_checks.is_empty() {
                write!(text, "; rejected for {}", done.rejected_checks.join(", "))?;
            }
            writeln!(text)?;
            match &done.stored {
                Some(stored) => {
                    let score = stored.score.map_or("-".to_owned(), |s| format!("{s:.2}"));
                    writeln!(text, "    score {score}: {}", stored.summary)?;
                }
                None => writeln!(
                    text,
                    "    summary not kept: the index holds one enrichment per span, the other side's"
                )?,
            }
        }
    }
    Ok(text)
}

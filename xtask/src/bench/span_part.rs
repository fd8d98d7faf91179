//! The real-model bench's prefix-cache target: where the server reports the prompt tokens it
//! really evaluated, each span after the run's first costs no more than its own part of the
//! prompt plus [`MARGIN`] tokens, the shared part having been evaluated once.
//!
//! A span's own part is the text `enrich-bench span-prompts` prints for it (what the pipeline's
//! prompt builder puts after the shared part), sized in the served model's tokens by the model
//! server's `POST /tokenize`. What was evaluated is the attempt log's `prompt_eval_count`, as
//! llama.cpp reported it: nothing here computes an evaluated figure. Each span is judged by its
//! first attempt; corrective re-asks, whose prompt also carries the rejected answer, are counted
//! apart and judged by the same rule only for the record.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::real_model::Attempt;
use super::report::Row;

/// Tokens allowed on top of the span's own part: the chat template's turn markers around it and
/// a tokenizer's different cut at the part's edges.
pub(super) const MARGIN: u64 = 60;

/// How a group of attempts fared against their spans' own parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Tally {
    /// Attempts judged: with a `prompt_eval_count` and a known own part.
    pub(super) judged: u64,
    /// Of those, attempts that evaluated no more than their own part plus [`MARGIN`].
    pub(super) within: u64,
    /// Attempts that could not be judged (no `prompt_eval_count`, or no own part).
    pub(super) unjudged: u64,
    /// Sum of `prompt_eval_count` over the judged attempts.
    pub(super) evaluated: u64,
    /// Sum of the own parts' tokens over the judged attempts.
    pub(super) own: u64,
    /// The judged attempt that went furthest over its own part: span hash, evaluated, own part.
    pub(super) worst: Option<(String, u64, u64)>,
}

impl Tally {
    fn add(&mut self, attempt: &Attempt, own: Option<u64>) {
        let (Some(evaluated), Some(own)) = (attempt.prompt_eval_count, own) else {
            self.unjudged += 1;
            return;
        };
        self.judged += 1;
        self.within += u64::from(evaluated <= own + MARGIN);
        self.evaluated += evaluated;
        self.own += own;
        let excess = |e: u64, o: u64| i128::from(e) - i128::from(o);
        if self
            .worst
            .as_ref()
            .is_none_or(|(_, e, o)| excess(evaluated, own) > excess(*e, *o))
        {
            self.worst = Some((attempt.span_hash.clone(), evaluated, own));
        }
    }

    fn mean(&self, sum: u64) -> Option<f64> {
        (self.judged > 0).then(|| sum as f64 / self.judged as f64)
    }

    fn to_json(&self) -> Value {
        json!({
            "judged": self.judged,
            "within": self.within,
            "unjudged": self.unjudged,
            "mean_evaluated": self.mean(self.evaluated),
            "mean_own_part": self.mean(self.own),
            "worst": self.worst.as_ref().map(|(span, evaluated, own)| {
                json!({"span_hash": span, "evaluated": evaluated, "own_part": own})
            }),
        })
    }
}

/// The judgement of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct SpanPartCheck {
    /// The first attempts of every span but the run's first.
    pub(super) first_attempts: Tally,
    /// Every later attempt (corrective re-asks and the next backends), the run's first span's
    /// included.
    pub(super) reasks: Tally,
}

impl SpanPartCheck {
    /// Judges `attempts` (in the order they were written) against `own_parts`, each span's own
    /// part in tokens.
    pub(super) fn of(attempts: &[Attempt], own_parts: &HashMap<String, u64>) -> Self {
        let mut check = Self::default();
        let first_span = attempts.first().map(|a| a.span_hash.as_str());
        let mut first_of: HashMap<&str, u64> = HashMap::new();
        for a in attempts {
            let first = first_of.entry(&a.span_hash).or_insert(a.attempt);
            *first = (*first).min(a.attempt);
        }
        for a in attempts {
            let own = own_parts.get(&a.span_hash).copied();
            if first_of.get(a.span_hash.as_str()) != Some(&a.attempt) {
                check.reasks.add(a, own);
            } else if Some(a.span_hash.as_str()) != first_span {
                check.first_attempts.add(a, own);
            }
        }
        check
    }

    /// Whether the target holds: `None` when no attempt could be judged.
    pub(super) fn holds(&self) -> Option<bool> {
        let t = &self.first_attempts;
        (t.judged > 0).then_some(t.within == t.judged)
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "margin": MARGIN,
            "holds": self.holds(),
            "first_attempts_after_the_first_span": self.first_attempts.to_json(),
            "reasks": self.reasks.to_json(),
        })
    }

    /// The table's row: the target judged on first attempts, re-asks reported beside.
    pub(super) fn row(&self) -> Row {
        let mut row = Row::new(
            "prompt_eval_vs_span_part",
            "prompt tokens evaluated per span after the first",
            "tokens",
        );
        let t = &self.first_attempts;
        let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"));
        row.value = t.mean(t.evaluated);
        row.target = format!("≤ the span's own part + {MARGIN}");
        row.met = self.holds();
        let worst = t.worst.as_ref().map_or_else(String::new, |(_, e, o)| {
            format!("; worst {e} for a part of {o}")
        });
        let r = &self.reasks;
        row.measured = format!(
            "{} of {} spans within (mean {} evaluated, own part {}{worst}); re-asks: {} of {} \
             within (mean {} evaluated)",
            t.within,
            t.judged,
            show(t.mean(t.evaluated)),
            show(t.mean(t.own)),
            r.within,
            r.judged,
            show(r.mean(r.evaluated)),
        );
        row.detail = self.to_json();
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(span: &str, n: u64, evaluated: Option<u64>) -> Attempt {
        Attempt {
            span_hash: span.to_owned(),
            model: "m".to_owned(),
            attempt: n,
            success: true,
            failure_kind: None,
            prompt_eval_count: evaluated,
            eval_count: Some(1),
        }
    }

    fn parts(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    }

    #[test]
    fn spans_after_the_first_are_judged_by_their_first_attempt() {
        let attempts = [
            // The run's first span evaluates the shared part too: never judged.
            attempt("a", 1, Some(900)),
            attempt("b", 1, Some(160)),
            // Exactly the own part plus the margin still holds.
            attempt("c", 1, Some(260)),
            attempt("c", 2, Some(700)),
            attempt("d", 1, Some(40)),
        ];
        let own = parts(&[("a", 100), ("b", 100), ("c", 200), ("d", 50)]);
        let check = SpanPartCheck::of(&attempts, &own);
        let t = &check.first_attempts;
        assert_eq!((t.judged, t.within, t.unjudged), (3, 3, 0));
        assert_eq!((t.evaluated, t.own), (460, 350));
        assert_eq!(t.worst, Some(("b".to_owned(), 160, 100)));
        assert_eq!(check.holds(), Some(true));
        let r = &check.reasks;
        assert_eq!((r.judged, r.within), (1, 0), "the re-ask carries more");
        let row = check.row();
        assert_eq!(row.met, Some(true));
        assert_eq!(
            row.measured,
            "3 of 3 spans within (mean 153.3 evaluated, own part 116.7; worst 160 for a part \
             of 100); re-asks: 0 of 1 within (mean 700.0 evaluated)"
        );
        assert_eq!(row.detail["reasks"]["mean_evaluated"], 700.0);
    }

    #[test]
    fn one_span_over_its_part_fails_the_target() {
        let attempts = [
            attempt("a", 1, Some(900)),
            attempt("b", 1, Some(161)),
            attempt("c", 1, Some(10)),
        ];
        let check = SpanPartCheck::of(&attempts, &parts(&[("b", 100), ("c", 10)]));
        assert_eq!(check.holds(), Some(false));
        assert_eq!(check.first_attempts.within, 1);
        assert_eq!(check.first_attempts.worst, Some(("b".to_owned(), 161, 100)));
    }

    #[test]
    fn without_the_server_s_figures_nothing_is_judged() {
        let attempts = [
            attempt("a", 1, None),
            attempt("b", 1, None),
            attempt("c", 1, Some(30)),
        ];
        // c has a figure but no known own part.
        let check = SpanPartCheck::of(&attempts, &parts(&[("a", 5), ("b", 5)]));
        assert_eq!(check.holds(), None);
        assert_eq!(check.first_attempts.unjudged, 2);
        let row = check.row();
        assert_eq!(row.met, None);
        assert!(
            row.measured.starts_with("0 of 0 spans within (mean n/a"),
            "{}",
            row.measured
        );
    }

    #[test]
    fn a_span_s_first_attempt_is_its_lowest_attempt_number_wherever_it_was_written() {
        // The bench judges one model's run, whose attempts are numbered per span from 1.
        let attempts = [
            attempt("a", 1, Some(500)),
            attempt("b", 2, Some(999)),
            attempt("b", 1, Some(30)),
        ];
        let check = SpanPartCheck::of(&attempts, &parts(&[("b", 20)]));
        assert_eq!(check.first_attempts.judged, 1);
        assert_eq!(check.first_attempts.evaluated, 30);
        assert_eq!(check.reasks.evaluated, 999);
    }
}

//! `enrich eval search`: what enrichment is worth to retrieval. Each question of a JSON-lines
//! file is ranked by BM25 twice over every span of the index (enrich-db's
//! [`RetrievalCorpus`]): over the code alone (symbol, path, source) and over the code plus the
//! enrichment's text; the figures of both and their difference (the lift) are reported.
//!
//! Figures, over the questions whose answer is in the index: recall@k is the share of
//! questions with an expected span among the first k (any one of them counts: a question has
//! one answer, which may cover several spans), MRR@10 the mean of 1/rank of the first expected
//! span, 0 when none is in the first 10. The lift is enriched minus code only, in the same
//! units (a recall lift of 0.05 is five questions in a hundred).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};

use anyhow::{Context, Result};
use enrich_db::{CorpusSpan, Ranking, RetrievalCorpus, SourceReader};
use serde::{Deserialize, Serialize};

use crate::cli::EvalSearchArgs;
use crate::context::Repo;
use crate::exit::{Exit, usage};
use crate::output;
use enrich_db::PathGlob;

/// How deep each ranking is read: the k of recall@10 and MRR@10.
const DEPTH: usize = 10;

/// One line of the questions file. Other keys (a `note` on why this is the answer) are for the
/// file's reader and ignored.
#[derive(Debug, Deserialize)]
struct QueryLine {
    /// An optional name for the question, shown in the report.
    #[serde(default)]
    id: Option<String>,
    /// The question, in plain words.
    query: String,
    /// Its answer(s).
    expect: Expect,
}

/// `expect`: one answer or several, any one counting.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expect {
    One(String),
    Any(Vec<String>),
}

impl Expect {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Any(any) => any,
        }
    }
}

/// An expected answer, read against the index.
#[derive(Debug)]
enum Answer {
    /// The spans around a line of a file.
    Line(String, u32),
    /// Every span of the files a glob matches.
    Glob(PathGlob),
    /// Every span of a file of the index.
    File(String),
    /// The spans defining a symbol, named as the index names it.
    Symbol(String),
}

impl Answer {
    /// `text` read against the index's file `paths`: `path:line`, a glob, a path, else a
    /// symbol.
    fn parse(text: &str, paths: &HashSet<&str>) -> Result<Self, String> {
        let text = text.trim();
        if let Some((path, line)) = text.rsplit_once(':')
            && let Ok(line) = line.parse::<u32>()
            && !path.is_empty()
        {
            return Ok(Self::Line(path.to_owned(), line));
        }
        if PathGlob::is_glob(text) {
            return PathGlob::new(text).map(Self::Glob);
        }
        if paths.contains(text) {
            return Ok(Self::File(text.to_owned()));
        }
        Ok(Self::Symbol(text.to_owned()))
    }

    fn covers(&self, span: &CorpusSpan) -> bool {
        match self {
            Self::Line(path, line) => {
                span.path == *path && (span.start_line..=span.end_line).contains(line)
            }
            Self::Glob(glob) => glob.matches(&span.path),
            Self::File(path) => span.path == *path,
            Self::Symbol(symbol) => span.symbol == *symbol,
        }
    }
}

/// The rank (1-based) of the first span of `ranking` that `relevant` holds.
fn first_hit(ranking: &[usize], relevant: &HashSet<usize>) -> Option<usize> {
    ranking
        .iter()
        .position(|span| relevant.contains(span))
        .map(|i| i + 1)
}

/// The figures of one ranking over the evaluated questions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct Figures {
    recall_at_1: f64,
    recall_at_5: f64,
    recall_at_10: f64,
    mrr_at_10: f64,
}

impl Figures {
    /// From each question's rank of its first expected span (`None`: not in the first
    /// [`DEPTH`]); `ranks` is not empty.
    fn of(ranks: &[Option<usize>]) -> Self {
        let n = ranks.len() as f64;
        let recall =
            |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
        let reciprocal: f64 = ranks
            .iter()
            .flatten()
            .filter(|&&rank| rank <= DEPTH)
            .map(|&rank| 1.0 / rank as f64)
            .sum();
        Self {
            recall_at_1: recall(1),
            recall_at_5: recall(5),
            recall_at_10: recall(DEPTH),
            mrr_at_10: reciprocal / n,
        }
    }

    /// `self - base`, figure by figure: the lift of `self` over `base`.
    fn minus(self, base: Self) -> Self {
        Self {
            recall_at_1: self.recall_at_1 - base.recall_at_1,
            recall_at_5: self.recall_at_5 - base.recall_at_5,
            recall_at_10: self.recall_at_10 - base.recall_at_10,
            mrr_at_10: self.mrr_at_10 - base.mrr_at_10,
        }
    }

    fn rows(self) -> [(&'static str, f64); 4] {
        [
            ("recall@1", self.recall_at_1),
            ("recall@5", self.recall_at_5),
            ("recall@10", self.recall_at_10),
            ("MRR@10", self.mrr_at_10),
        ]
    }
}

/// One question's outcome.
#[derive(Debug, Serialize)]
struct QueryResult {
    /// Its line in the questions file.
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    query: String,
    expect: Vec<String>,
    /// How many spans of the index the answer covers; 0: the question is not evaluated.
    relevant_spans: usize,
    /// How many of those have an enrichment.
    relevant_enriched: usize,
    /// The rank of the first expected span in the code-only ranking, `null` beyond 10.
    code_only_rank: Option<usize>,
    /// The same in the enriched ranking.
    enriched_rank: Option<usize>,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct Report {
    questions: usize,
    /// Questions whose answer is in the index: the figures are over these.
    evaluated: usize,
    spans: usize,
    enriched_spans: usize,
    /// Spans indexed without their source text (file gone or changed since indexing).
    unreadable_sources: u64,
    code_only: Figures,
    enriched: Figures,
    lift: Figures,
    /// The same figures over the questions whose answer has at least one enriched span: where
    /// enrichment can help directly when only part of the index is enriched.
    answer_enriched: Option<Subset>,
    per_query: Vec<QueryResult>,
}

/// The figures over a subset of the evaluated questions.
#[derive(Debug, Serialize)]
struct Subset {
    questions: usize,
    code_only: Figures,
    enriched: Figures,
    lift: Figures,
}

impl Subset {
    /// The figures of `questions`; `None` when there are none.
    fn of(questions: &[&QueryResult]) -> Option<Self> {
        if questions.is_empty() {
            return None;
        }
        let ranks = |rank: fn(&QueryResult) -> Option<usize>| -> Vec<Option<usize>> {
            questions.iter().map(|q| rank(q)).collect()
        };
        let code_only = Figures::of(&ranks(|q| q.code_only_rank));
        let enriched = Figures::of(&ranks(|q| q.enriched_rank));
        Some(Self {
            questions: questions.len(),
            code_only,
            enriched,
            lift: enriched.minus(code_only),
        })
    }
}

/// Runs `enrich eval search`.
pub(crate) fn search(repo: &Repo, args: &EvalSearchArgs, json: bool) -> Result<Exit> {
    let questions = read_questions(&args.queries)?;
    let db = repo.open_read_only()?;
    let sources = SourceReader::new(&repo.root)
        .with_context(|| format!("cannot read sources under {}", repo.root.display()))?;
    let corpus = db.retrieval_corpus(&sources)?;
    let report = evaluate(&corpus, questions)
        .with_context(|| format!("cannot evaluate {}", args.queries.display()))?;
    if json {
        output::json(&report)?;
    } else {
        output::text(&render(&report))?;
    }
    Ok(Exit::Success)
}

/// The questions of `path`, with their line numbers; a line that is not a question is a usage
/// error naming it.
fn read_questions(path: &std::path::Path) -> Result<Vec<(usize, QueryLine)>> {
    let file = std::fs::File::open(path).map_err(|e| {
        usage(format!(
            "cannot read the questions file {}: {e}",
            path.display()
        ))
    })?;
    let mut questions = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line =
            line.with_context(|| format!("cannot read line {line_no} of {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let question: QueryLine = serde_json::from_str(&line).map_err(|e| {
            usage(format!(
                "{}:{line_no} is not a question: {e}; each line is a JSON object such as {{\"query\": \"how are redirects followed?\", \"expect\": \"SessionRedirectMixin.resolve_redirects\"}}",
                path.display()
            ))
        })?;
        questions.push((line_no, question));
    }
    if questions.is_empty() {
        return Err(usage(format!(
            "{} holds no question; write one JSON object a line with `query` and `expect`",
            path.display()
        )));
    }
    Ok(questions)
}

/// Ranks every question both ways and computes the figures.
fn evaluate(corpus: &RetrievalCorpus, questions: Vec<(usize, QueryLine)>) -> Result<Report> {
    let spans = corpus.spans();
    let paths: HashSet<&str> = spans.iter().map(|s| s.path.as_str()).collect();
    let mut per_query = Vec::with_capacity(questions.len());
    for (line, question) in questions {
        let expect = question.expect.into_vec();
        let answers = expect
            .iter()
            .map(|text| Answer::parse(text, &paths))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage(format!("line {line}: {e}")))?;
        let relevant: HashSet<usize> = spans
            .iter()
            .enumerate()
            .filter(|(_, span)| answers.iter().any(|a| a.covers(span)))
            .map(|(i, _)| i)
            .collect();
        let (code_only_rank, enriched_rank) = if relevant.is_empty() {
            (None, None)
        } else {
            let code = corpus.rank(Ranking::CodeOnly, &question.query, DEPTH)?;
            let enriched = corpus.rank(Ranking::Enriched, &question.query, DEPTH)?;
            (first_hit(&code, &relevant), first_hit(&enriched, &relevant))
        };
        per_query.push(QueryResult {
            line,
            id: question.id,
            query: question.query,
            expect,
            relevant_spans: relevant.len(),
            relevant_enriched: relevant.iter().filter(|&&i| spans[i].enriched).count(),
            code_only_rank,
            enriched_rank,
        });
    }
    let questions = per_query.len();
    report(corpus, per_query).ok_or_else(|| {
        usage(format!(
            "none of the {questions} questions has its answer in this index (no span has the expected symbol or path); check the file against the repository"
        ))
    })
}

/// The report of `per_query`'s outcomes; its figures are over the evaluated questions, of which
/// there is at least one.
fn report(corpus: &RetrievalCorpus, per_query: Vec<QueryResult>) -> Option<Report> {
    let evaluated: Vec<&QueryResult> = per_query.iter().filter(|q| q.relevant_spans > 0).collect();
    let all = Subset::of(&evaluated)?;
    let with_enriched_answer: Vec<&QueryResult> = evaluated
        .iter()
        .copied()
        .filter(|q| q.relevant_enriched > 0)
        .collect();
    Some(Report {
        questions: per_query.len(),
        evaluated: all.questions,
        spans: corpus.spans().len(),
        enriched_spans: corpus.spans().iter().filter(|s| s.enriched).count(),
        unreadable_sources: corpus.unreadable_sources(),
        code_only: all.code_only,
        enriched: all.enriched,
        lift: all.lift,
        answer_enriched: Subset::of(&with_enriched_answer),
        per_query,
    })
}

/// The text report: the figures, then each question's ranks.
fn render(report: &Report) -> String {
    let mut text = String::new();
    let left_out = report.questions - report.evaluated;
    let _ = writeln!(
        text,
        "{} questions, {} evaluated{}; index: {} spans, {} enriched{}",
        report.questions,
        report.evaluated,
        if left_out > 0 {
            format!(" ({left_out} whose answer is not in the index left out)")
        } else {
            String::new()
        },
        report.spans,
        report.enriched_spans,
        if report.unreadable_sources > 0 {
            format!(
                ", {} without source (unreadable files)",
                report.unreadable_sources
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        text,
        "\n{:<10} {:>9} {:>9} {:>8}",
        "", "code only", "enriched", "lift"
    );
    let rows = report
        .code_only
        .rows()
        .into_iter()
        .zip(report.enriched.rows())
        .zip(report.lift.rows());
    for (((name, code), (_, enriched)), (_, lift)) in rows {
        let _ = writeln!(text, "{name:<10} {code:>9.3} {enriched:>9.3} {lift:>+8.3}");
    }
    if let Some(subset) = &report.answer_enriched {
        let _ = writeln!(
            text,
            "\nOn the {} questions whose answer has an enrichment: recall@10 {:.3} -> {:.3} ({:+.3}), MRR@10 {:.3} -> {:.3} ({:+.3})",
            subset.questions,
            subset.code_only.recall_at_10,
            subset.enriched.recall_at_10,
            subset.lift.recall_at_10,
            subset.code_only.mrr_at_10,
            subset.enriched.mrr_at_10,
            subset.lift.mrr_at_10
        );
    }
    let _ = writeln!(
        text,
        "\nRank of the first expected span, code only -> enriched (- = not in the first {DEPTH}):"
    );
    let rank = |r: Option<usize>| r.map_or_else(|| "-".to_owned(), |r| r.to_string());
    for q in &report.per_query {
        let name =
            q.id.as_deref()
                .map(|id| format!(" {id}"))
                .unwrap_or_default();
        if q.relevant_spans == 0 {
            let _ = writeln!(
                text,
                "  line {:>3}{name}: not in the index ({})  {}",
                q.line,
                q.expect.join(", "),
                q.query
            );
        } else {
            let _ = writeln!(
                text,
                "  line {:>3}{name}: {:>2} -> {:<2}  {}",
                q.line,
                rank(q.code_only_rank),
                rank(q.enriched_rank),
                q.query
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(path: &str, symbol: &str, lines: (u32, u32)) -> CorpusSpan {
        CorpusSpan {
            span_hash: format!("sha256:{symbol}"),
            path: path.to_owned(),
            symbol: symbol.to_owned(),
            start_line: lines.0,
            end_line: lines.1,
            enriched: true,
        }
    }

    /// Four questions, ranks worked out by hand:
    /// code only 1, 3, 7, none; enriched 1, 1, 2, 12 (beyond the depth counts as none).
    #[test]
    fn figures_by_hand() {
        let code = Figures::of(&[Some(1), Some(3), Some(7), None]);
        assert_eq!(code.recall_at_1, 0.25);
        assert_eq!(code.recall_at_5, 0.5);
        assert_eq!(code.recall_at_10, 0.75);
        // (1 + 1/3 + 1/7 + 0) / 4 = 31/84
        assert!((code.mrr_at_10 - 31.0 / 84.0).abs() < 1e-12, "{code:?}");

        let enriched = Figures::of(&[Some(1), Some(1), Some(2), Some(12)]);
        assert_eq!(enriched.recall_at_1, 0.5);
        assert_eq!(enriched.recall_at_5, 0.75);
        assert_eq!(enriched.recall_at_10, 0.75);
        // (1 + 1 + 1/2 + 0) / 4 = 5/8
        assert_eq!(enriched.mrr_at_10, 0.625);

        let lift = enriched.minus(code);
        assert_eq!(lift.recall_at_1, 0.25);
        assert_eq!(lift.recall_at_5, 0.25);
        assert_eq!(lift.recall_at_10, 0.0);
        assert!((lift.mrr_at_10 - (0.625 - 31.0 / 84.0)).abs() < 1e-12);
    }

    #[test]
    fn the_first_expected_span_gives_the_rank() {
        let relevant: HashSet<usize> = [4, 9].into();
        assert_eq!(first_hit(&[7, 9, 4], &relevant), Some(2));
        assert_eq!(first_hit(&[1, 2, 3], &relevant), None);
        assert_eq!(first_hit(&[], &relevant), None);
    }

    #[test]
    fn answers_are_lines_globs_files_or_symbols() {
        let spans = [
            span("src/requests/auth.py", "HTTPDigestAuth", (100, 200)),
            span(
                "src/requests/auth.py",
                "HTTPDigestAuth.build_digest_header",
                (120, 180),
            ),
            span("src/requests/hooks.py", "dispatch_hook", (22, 33)),
            span("docs/api.rst", "Main Interface", (1, 40)),
        ];
        let paths: HashSet<&str> = spans.iter().map(|s| s.path.as_str()).collect();
        let covered = |text: &str| -> Vec<usize> {
            let answer = Answer::parse(text, &paths).unwrap();
            (0..spans.len())
                .filter(|&i| answer.covers(&spans[i]))
                .collect()
        };
        assert_eq!(
            covered("src/requests/auth.py:150"),
            [0, 1],
            "every span around the line"
        );
        assert_eq!(covered("src/requests/auth.py:110"), [0]);
        assert_eq!(covered("src/requests/hooks.py"), [2], "a whole file");
        assert_eq!(covered("hooks.py"), Vec::<usize>::new(), "a path is exact");
        assert_eq!(
            covered("*.py"),
            [0, 1, 2],
            "a glob matches file names at any depth"
        );
        assert_eq!(covered("docs/**"), [3]);
        assert_eq!(
            covered("dispatch_hook"),
            [2],
            "a symbol as the index names it"
        );
        assert_eq!(covered("build_digest_header"), Vec::<usize>::new());
        assert_eq!(covered("Main Interface"), [3]);
        assert!(Answer::parse("src/[", &paths).is_err());
    }

    #[test]
    fn questions_take_one_answer_or_several() {
        let one: QueryLine =
            serde_json::from_str(r#"{"query": "q", "expect": "a", "note": "why"}"#).unwrap();
        assert_eq!(one.expect.into_vec(), ["a"]);
        let any: QueryLine =
            serde_json::from_str(r#"{"id": "x", "query": "q", "expect": ["a", "b:3"]}"#).unwrap();
        assert_eq!(any.expect.into_vec(), ["a", "b:3"]);
        assert!(serde_json::from_str::<QueryLine>(r#"{"query": "q"}"#).is_err());
        assert!(serde_json::from_str::<QueryLine>(r#"{"query": "q", "expect": 3}"#).is_err());
    }
}

//! Renewing stored enrichments: which enriched spans a `--refresh` filter selects, counted,
//! read and claimed page by page like pending spans.
//!
//! A [`RefreshSelector`] is one condition on a stored enrichment (`stale`, `stale=REASON`,
//! `model=NAME`, `older-than=30d`, `path=GLOB`, `quality<0.5`); a [`RefreshClause`] is
//! selectors joined by
//! commas, which a span must match all of (one `--refresh` value); a [`RefreshFilter`] is
//! clauses of which a span must match at least one (`--refresh` given several times). Each
//! becomes a condition of the page queries, so a page of refresh work costs what a page of
//! pending work does plus the conditions' lookups.
//!
//! What a refresh selects, besides the filter: spans that have an enrichment and are not
//! dead-lettered (a dead letter is refreshed only after `enrich failures --requeue`); claimed,
//! also not leased by any run (a span a run has in hand, pending or not, is left to it) and
//! not attempted by the claiming run already (a span is renewed at most once per run, however
//! its new enrichment scores, and a span a run just enriched is not renewed in the same run).
//!
//! The `stale` selectors are the stale query's reasons ([`StaleReason::expression`], judged
//! against the [`Expectations`] the caller gives with [`RefreshFilter::with_expectations`],
//! loaded into the connection's `TEMP` tables before each query), so a refresh of
//! `stale=prompt` selects exactly the enrichments `enrich status` counts as stale by prompt.
//!
//! Paths are matched by a SQL function, `enrich_glob(pattern, path)`, registered on every
//! connection ([`register_functions`]), read as every `--path` glob is ([`PathGlob`]: `*`
//! stays in a directory, `**` crosses directories, a glob without `/` matches file names at any
//! depth).

use std::fmt;
use std::str::FromStr;

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value;

use crate::age::parse_age;
use crate::error::DbError;
use crate::lease::Lease;
use crate::open::Db;
use crate::path_glob::PathGlob;
use crate::pending::span_from_row;
use crate::stale::{Expectations, StaleParams, StaleReason, judging_joins, load};
use crate::types::PendingSpan;
use crate::work_order::{WeightedSpan, WorkOrderKey};
use crate::write::now_ms;

/// The selectors there are, for error messages.
pub(crate) const SELECTOR_FORMS: &str = "`stale`, `stale=REASON` (prompt, model, digest, \
     schema, options, quality, unknown), `model=NAME`, `older-than=30d` (units s, m, h, d, w), \
     `path=GLOB`, `quality<0.5`";

/// One condition on a stored enrichment.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshSelector {
    /// `stale`: stale for any reason that says it is out of date ([`StaleReason::OUTDATED`]);
    /// `stale=REASON`: stale for this reason (`stale=unknown`: of unknown provenance).
    Stale(Option<StaleReason>),
    /// `model=NAME`: the enrichment's `model` column is exactly this.
    Model(String),
    /// `older-than=30d`: the enrichment was stored more than this many seconds ago. An
    /// enrichment without a time (`created_at` is null) does not match.
    OlderThan {
        /// The age, in seconds.
        seconds: u64,
        /// The age as written (`30d`).
        written: String,
    },
    /// `path=GLOB`: the span's file path matches this glob.
    Path(String),
    /// `quality<0.5`: the quality gate scored the enrichment below this. An enrichment with no
    /// score (stored by LLMC, or before scores were kept) does not match.
    QualityBelow(f64),
}

/// What the selectors' conditions are built with: the query's parameters so far, the time, and
/// where the stale expectations are among the parameters (when a selector needs them).
struct Building<'a> {
    params: &'a mut Vec<Value>,
    now_s: i64,
    stale: Option<StaleParams>,
}

impl RefreshSelector {
    /// This selector's SQL condition, over `s` = spans, `f` = files, `e` = enrichments (and
    /// the judging joins for the stale selectors), with its value appended to the parameters
    /// (numbered `?n` by position).
    fn condition(&self, at: &mut Building<'_>) -> String {
        let (params, now_s) = (&mut *at.params, at.now_s);
        let (sql, value) = match self {
            Self::Stale(reason) => {
                // `uses_stale` made the filter load the expectations before building.
                let Some(stale) = &at.stale else {
                    return "0".to_owned();
                };
                let reasons = match reason {
                    Some(reason) => vec![*reason],
                    None => StaleReason::OUTDATED.to_vec(),
                };
                let parts: Vec<String> = reasons
                    .iter()
                    .map(|reason| format!("({})", reason.expression(stale)))
                    .collect();
                return format!("({})", parts.join(" OR "));
            }
            Self::Model(model) => ("e.model = ?", Value::Text(model.clone())),
            Self::OlderThan { seconds, .. } => {
                let age = i64::try_from(*seconds).unwrap_or(i64::MAX);
                let cutoff = now_s.saturating_sub(age);
                ("CAST(e.created_at AS INTEGER) < ?", Value::Integer(cutoff))
            }
            Self::Path(glob) => ("enrich_glob(?, f.path)", Value::Text(glob.clone())),
            Self::QualityBelow(score) => (
                "EXISTS (SELECT 1 FROM enrich_quality AS q \
                 WHERE q.span_hash = s.span_hash AND q.score < ?)",
                Value::Real(*score),
            ),
        };
        params.push(value);
        sql.replacen('?', &format!("?{}", params.len()), 1)
    }
}

/// Fails with what is wrong with `selector`.
fn bad(selector: &str, reason: impl Into<String>) -> DbError {
    DbError::RefreshSelector {
        selector: selector.to_owned(),
        reason: reason.into(),
    }
}

impl FromStr for RefreshSelector {
    type Err = DbError;

    fn from_str(text: &str) -> Result<Self, DbError> {
        let selector = text.trim();
        if let Some(score) = selector.strip_prefix("quality<") {
            let score: f64 = score.trim().parse().map_err(|_| {
                bad(
                    selector,
                    "the score must be a number from 0 to 1, as in quality<0.5",
                )
            })?;
            if !(0.0..=1.0).contains(&score) {
                return Err(bad(selector, "the score must be from 0 to 1"));
            }
            return Ok(Self::QualityBelow(score));
        }
        if selector == "stale" {
            return Ok(Self::Stale(None));
        }
        let Some((key, value)) = selector.split_once('=') else {
            return Err(bad(selector, "not a known selector"));
        };
        match key.trim() {
            "stale" => StaleReason::from_name(value.trim())
                .map(|reason| Self::Stale(Some(reason)))
                .ok_or_else(|| {
                    bad(
                        selector,
                        format!(
                            "unknown reason {value:?}; the reasons are {}",
                            StaleReason::ALL.map(StaleReason::as_str).join(", ")
                        ),
                    )
                }),
            "model" if value.is_empty() => Err(bad(selector, "the model name is empty")),
            "model" => Ok(Self::Model(value.to_owned())),
            "older-than" => Ok(Self::OlderThan {
                seconds: parse_age(value).map_err(|reason| bad(selector, reason))?,
                written: value.trim().to_owned(),
            }),
            "path" if value.is_empty() => Err(bad(selector, "the glob is empty")),
            "path" => match PathGlob::new(value) {
                Ok(_) => Ok(Self::Path(value.to_owned())),
                Err(error) => Err(bad(selector, error)),
            },
            "quality" => Err(bad(
                selector,
                "a quality selector compares with <, as in quality<0.5",
            )),
            other => Err(bad(selector, format!("unknown selector {other:?}"))),
        }
    }
}

impl fmt::Display for RefreshSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stale(None) => f.write_str("stale"),
            Self::Stale(Some(reason)) => write!(f, "stale={}", reason.as_str()),
            Self::Model(model) => write!(f, "model={model}"),
            Self::OlderThan { written, .. } => write!(f, "older-than={written}"),
            Self::Path(glob) => write!(f, "path={glob}"),
            Self::QualityBelow(score) => write!(f, "quality<{score}"),
        }
    }
}

/// Selectors a span must match all of: one `--refresh` value, its selectors joined by commas
/// (a comma inside `{…}` belongs to a glob).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshClause {
    selectors: Vec<RefreshSelector>,
}

impl RefreshClause {
    /// A clause of these selectors; `None` when there is none.
    pub fn new(selectors: Vec<RefreshSelector>) -> Option<Self> {
        (!selectors.is_empty()).then_some(Self { selectors })
    }

    /// Its selectors.
    pub fn selectors(&self) -> &[RefreshSelector] {
        &self.selectors
    }

    fn condition(&self, at: &mut Building<'_>) -> String {
        let parts: Vec<String> = self
            .selectors
            .iter()
            .map(|selector| selector.condition(at))
            .collect();
        format!("({})", parts.join(" AND "))
    }
}

/// Splits at the commas that are not inside `{…}`.
fn split_selectors(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

impl FromStr for RefreshClause {
    type Err = DbError;

    fn from_str(text: &str) -> Result<Self, DbError> {
        let selectors = split_selectors(text)
            .into_iter()
            .map(|part| {
                if part.trim().is_empty() {
                    Err(bad(
                        text,
                        "an empty selector (two commas in a row, or one at an end)",
                    ))
                } else {
                    part.parse()
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(selectors).ok_or_else(|| bad(text, "no selector"))
    }
}

impl fmt::Display for RefreshClause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.selectors.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Clauses a span must match at least one of: which stored enrichments a run renews.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshFilter {
    clauses: Vec<RefreshClause>,
    /// What the `stale` selectors judge against.
    expectations: Option<Expectations>,
}

impl RefreshFilter {
    /// A filter of these clauses; `None` when there is none. A filter with `stale` selectors
    /// also needs [`with_expectations`](Self::with_expectations).
    pub fn new(clauses: Vec<RefreshClause>) -> Option<Self> {
        (!clauses.is_empty()).then_some(Self {
            clauses,
            expectations: None,
        })
    }

    /// Its clauses.
    pub fn clauses(&self) -> &[RefreshClause] {
        &self.clauses
    }

    /// Whether a selector is a `stale` one, which needs the expectations.
    pub fn uses_stale(&self) -> bool {
        self.clauses.iter().any(|clause| {
            clause
                .selectors
                .iter()
                .any(|selector| matches!(selector, RefreshSelector::Stale(_)))
        })
    }

    /// The filter judging its `stale` selectors against `expected` (what the configuration
    /// would record now, as for [`Db::stale_counts`]).
    #[must_use]
    pub fn with_expectations(self, expected: Expectations) -> Self {
        Self {
            expectations: Some(expected),
            ..self
        }
    }

    /// Fails when a `stale` selector has no expectations to be judged against.
    fn check(&self) -> Result<(), DbError> {
        if self.uses_stale() && self.expectations.is_none() {
            return Err(bad(
                "stale",
                "the stale selectors are judged against the configuration, and none was given",
            ));
        }
        Ok(())
    }

    /// Loads the expectations into `conn`'s `TEMP` tables when a selector needs them.
    fn load_into(&self, conn: &Connection) -> rusqlite::Result<()> {
        match &self.expectations {
            Some(expected) if self.uses_stale() => load(conn, expected),
            _ => Ok(()),
        }
    }

    /// The joins the conditions read besides spans `s`, files `f` and enrichments `e`.
    fn joins(&self) -> String {
        if self.uses_stale() {
            judging_joins()
        } else {
            String::new()
        }
    }

    /// The filter's SQL condition, its values appended to `params`.
    fn condition(&self, params: &mut Vec<Value>) -> String {
        let now_s = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
        let stale = self
            .expectations
            .as_ref()
            .filter(|_| self.uses_stale())
            .map(|e| {
                let first = params.len() + 1;
                params.push(Value::Text(e.default_chain.clone()));
                params.push(Value::Text(e.prompt_fingerprint.clone()));
                params.push(Value::Text(e.schema_version.clone()));
                params.push(e.min_quality.map_or(Value::Null, Value::Real));
                StaleParams::from(first)
            });
        let mut at = Building {
            params,
            now_s,
            stale,
        };
        let parts: Vec<String> = self
            .clauses
            .iter()
            .map(|clause| clause.condition(&mut at))
            .collect();
        format!("({})", parts.join(" OR "))
    }
}

impl fmt::Display for RefreshFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.clauses.iter().map(|c| format!("'{c}'")).collect();
        f.write_str(&parts.join(" or "))
    }
}

/// What every refresh query asks of a span `s` with enrichment `e`: not dead-lettered.
const RENEWABLE: &str = "
  AND NOT EXISTS (SELECT 1 FROM enrich_failures AS d
                  WHERE d.dead_lettered = 1 AND d.span_hash = s.span_hash)";

/// What a claim asks besides: no run holds the span, and the claiming run (`?2`) made no
/// attempt for it yet.
const CLAIMABLE: &str = "
  AND NOT EXISTS (SELECT 1 FROM enrich_leases AS l WHERE l.span_hash = s.span_hash)
  AND NOT EXISTS (SELECT 1 FROM enrich_attempts AS a
                  WHERE a.span_hash = s.span_hash AND a.run_id = ?2)";

/// Where a page of refresh work is read from.
enum Walk {
    /// `spans.id` order after `?1`.
    SpanId,
    /// The work order's spans of one weight after span id `?1`.
    Weight(u8),
}

/// The page query: a span's columns and whether it is a renewal (always), after the cursor
/// `?1`, for the claiming run `?2` when `claim`, matching `filter` (values from `?3`).
fn page_sql(
    filter: &RefreshFilter,
    walk: &Walk,
    claim: bool,
    limit: usize,
) -> (String, Vec<Value>) {
    let mut params = vec![Value::Integer(0), Value::Integer(0)];
    let condition = filter.condition(&mut params);
    let joins = filter.joins();
    let from = match walk {
        Walk::SpanId => format!(
            "FROM spans AS s
JOIN files AS f ON f.id = s.file_id
JOIN enrichments AS e ON e.span_hash = s.span_hash
{joins}
WHERE s.id > ?1"
        ),
        Walk::Weight(weight) => format!(
            "FROM enrich_span_order AS o
JOIN spans AS s ON s.id = o.span_id
JOIN files AS f ON f.id = s.file_id
JOIN enrichments AS e ON e.span_hash = s.span_hash
{joins}
WHERE o.weight = {weight}
  AND o.span_id > ?1
  AND s.file_id = o.file_id"
        ),
    };
    let order = match walk {
        Walk::SpanId => "s.id",
        Walk::Weight(_) => "o.span_id",
    };
    let sql = format!(
        "SELECT {} {from}{RENEWABLE}{}\n  AND {condition}\nORDER BY {order}\nLIMIT {limit}",
        crate::pending::span_columns!(),
        if claim { CLAIMABLE } else { "" },
    );
    (sql, params)
}

/// The values of `params` that `stmt` uses: a condition may leave the last ones unused (a
/// `stale=prompt` selector reads no quality minimum), and SQLite counts a statement's
/// parameters up to the last one it names.
fn bound<'a>(
    stmt: &rusqlite::Statement<'_>,
    params: &'a [Value],
) -> rusqlite::ParamsFromIter<std::iter::Take<std::slice::Iter<'a, Value>>> {
    let used = stmt.parameter_count();
    rusqlite::params_from_iter(params.iter().take(used))
}

/// Reads a renewal: a span row of `span_columns!()`, marked as one.
fn renewal_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PendingSpan> {
    Ok(PendingSpan {
        renewal: true,
        ..span_from_row(row)?
    })
}

/// Registers enrich's SQL functions on `conn`: `enrich_glob(pattern, path)`, true when `path`
/// matches the [`PathGlob`] `pattern` (compiled once per statement); an invalid glob is an
/// error.
pub(crate) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
    conn.create_scalar_function(
        "enrich_glob",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let matcher = ctx.get_or_create_aux(0, |pattern| -> Result<_, BoxError> {
                Ok(PathGlob::new(pattern.as_str()?)?)
            })?;
            Ok(ctx
                .get_raw(1)
                .as_str()
                .is_ok_and(|path| matcher.matches(path)))
        },
    )
}

impl Db {
    /// How many stored enrichments `filter` selects (dead letters left out, leases not
    /// considered). Reads every enrichment once: call it once per run or plan.
    pub fn refresh_count(&self, filter: &RefreshFilter) -> Result<u64, DbError> {
        filter.check()?;
        let action = "count the enrichments to refresh";
        filter.load_into(&self.conn).map_err(self.err(action))?;
        let mut params = Vec::new();
        let condition = filter.condition(&mut params);
        let joins = filter.joins();
        let sql = format!(
            "SELECT COUNT(*) FROM enrichments AS e
JOIN spans AS s ON s.span_hash = e.span_hash
JOIN files AS f ON f.id = s.file_id
{joins}
WHERE 1{RENEWABLE}
  AND {condition}"
        );
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                let params = bound(&stmt, &params);
                stmt.query_row(params, |row| row.get(0))
            })
            .map_err(self.err("count the enrichments to refresh"))
    }

    /// Up to `limit` stored enrichments' spans that `filter` selects, with `spans.id >
    /// after_id`, in `spans.id` order, each marked as a [renewal](PendingSpan::renewal). With
    /// a `lease`, claims them as [`claim_pending_spans`](Self::claim_pending_spans) claims
    /// pending spans, leaving out spans any run holds and spans the lease's run attempted.
    pub fn refresh_spans(
        &mut self,
        filter: &RefreshFilter,
        lease: Option<&Lease>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<PendingSpan>, DbError> {
        filter.check()?;
        let (sql, mut params) = page_sql(filter, &Walk::SpanId, lease.is_some(), limit);
        params[0] = Value::Integer(after_id);
        let Some(lease) = lease else {
            filter
                .load_into(&self.conn)
                .map_err(self.err("select enrichments to refresh"))?;
            return self.read_refresh_page(&sql, params, renewal_from_row);
        };
        params[1] = Value::Integer(lease.run_id.0);
        self.claim(
            lease,
            |tx| {
                filter.load_into(tx)?;
                let mut stmt = tx.prepare_cached(&sql)?;
                let params = bound(&stmt, &params);
                let rows = stmt.query_map(params, renewal_from_row)?;
                rows.collect()
            },
            |span| &span.span_hash,
        )
    }

    /// Up to `limit` stored enrichments' spans that `filter` selects, weighing within
    /// `weights`, after `after` in work order; see [`refresh_spans`](Self::refresh_spans) and
    /// [`pending_by_weight`](Self::pending_by_weight).
    pub fn refresh_by_weight(
        &mut self,
        filter: &RefreshFilter,
        lease: Option<&Lease>,
        weights: std::ops::RangeInclusive<u8>,
        after: WorkOrderKey,
        limit: usize,
    ) -> Result<Vec<WeightedSpan>, DbError> {
        filter.check()?;
        let run = lease.map_or(0, |lease| lease.run_id.0);
        let pages: Vec<(u8, String, Vec<Value>)> = (after.weight.max(*weights.start())
            ..=*weights.end())
            .map(|weight| {
                let (sql, mut params) =
                    page_sql(filter, &Walk::Weight(weight), lease.is_some(), limit);
                params[0] = Value::Integer(if weight == after.weight {
                    after.span_id
                } else {
                    i64::MIN
                });
                params[1] = Value::Integer(run);
                (weight, sql, params)
            })
            .collect();
        let select = |conn: &Connection| -> rusqlite::Result<Vec<WeightedSpan>> {
            filter.load_into(conn)?;
            let mut page = Vec::new();
            for (weight, sql, params) in &pages {
                let wanted = limit - page.len();
                if wanted == 0 {
                    break;
                }
                let mut stmt = conn.prepare_cached(sql)?;
                let params = bound(&stmt, params);
                let rows = stmt.query_map(params, |row| {
                    Ok(WeightedSpan {
                        span: renewal_from_row(row)?,
                        weight: *weight,
                    })
                })?;
                for row in rows.take(wanted) {
                    page.push(row?);
                }
            }
            Ok(page)
        };
        match lease {
            None => select(&self.conn).map_err(self.err("select enrichments to refresh")),
            Some(lease) => self.claim(lease, |tx| select(tx), |w| &w.span.span_hash),
        }
    }

    fn read_refresh_page<T>(
        &self,
        sql: &str,
        params: Vec<Value>,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, DbError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| {
                {
                    let params = bound(&stmt, &params);
                    stmt.query_map(params, map)?
                }
                .collect()
            })
            .map_err(self.err("select enrichments to refresh"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::tests::check_uses_indexes;

    #[test]
    fn refresh_pages_walk_indexes_like_pending_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_or_create(dir.path().join("index_v2.db")).expect("create");
        let filter = RefreshFilter::new(vec![
            "model=a,path=src/**,older-than=3d".parse().expect("clause"),
            "quality<0.5".parse().expect("clause"),
        ])
        .expect("filter");
        for claim in [false, true] {
            let (sql, _) = page_sql(&filter, &Walk::SpanId, claim, 100);
            check_uses_indexes(
                &db,
                &sql,
                &[
                    "SEARCH s USING INTEGER PRIMARY KEY (rowid>?)",
                    "sqlite_autoindex_enrichments_1 (span_hash=?)",
                ],
            );
            let (sql, _) = page_sql(&filter, &Walk::Weight(3), claim, 100);
            check_uses_indexes(&db, &sql, &["SEARCH o USING", "(span_hash=?)"]);
        }
    }

    fn parse(text: &str) -> Result<RefreshClause, String> {
        text.parse::<RefreshClause>().map_err(|e| e.to_string())
    }

    #[test]
    fn selectors_parse_and_print_back() {
        for text in [
            "model=qwen2.5:0.5b",
            "older-than=30d",
            "older-than=12h",
            "older-than=90m",
            "older-than=2w",
            "path=src/**/*.py",
            "quality<0.5",
            "model=a,path=src/{a,b}/*.rs,quality<1",
        ] {
            assert_eq!(parse(text).expect(text).to_string(), text);
        }
        let clause = parse("older-than=2w,path={a,b}").expect("parse");
        assert_eq!(
            clause.selectors(),
            [
                RefreshSelector::OlderThan {
                    seconds: 14 * 86_400,
                    written: "2w".to_owned()
                },
                RefreshSelector::Path("{a,b}".to_owned()),
            ]
        );
    }

    #[test]
    fn a_selector_that_does_not_parse_says_what_is_wrong_and_shows_an_example() {
        for (text, wrong) in [
            ("modle=x", "unknown selector \"modle\""),
            ("model=", "the model name is empty"),
            ("older-than=30", "the age has no unit"),
            ("older-than=30y", "unknown unit \"y\""),
            ("older-than=d", "whole number"),
            ("older-than=0d", "more than 0"),
            ("quality<x", "a number from 0 to 1"),
            ("quality<1.5", "from 0 to 1"),
            ("quality=0.5", "compares with <"),
            ("path=[", "is not a valid glob"),
            ("model=a,,path=b", "an empty selector"),
            ("fresh", "not a known selector"),
        ] {
            let message = parse(text).expect_err(text);
            assert!(message.contains(wrong), "{text}: {message}");
            assert!(
                message.contains("e.g. --refresh 'model=qwen2.5:0.5b,older-than=30d'"),
                "{message}"
            );
        }
    }
}

//! LLMC's file descriptions, "cheap" tier, algorithm `v1.1`: a file's description composed from
//! the summaries of its most telling enriched spans, with no model call, kept in LLMC's
//! `file_descriptions` table after every batch the writer commits.
//!
//! The algorithm is LLMC's (`llmc/rag/enrichment/file_descriptions.py`,
//! `generate_cheap_description`, `compute_input_hash` and `update_file_description`), read
//! from its code so that LLMC finds the same `input_hash` it would compute and does not redo
//! the description:
//!
//! - the file's spans with a summary (`summary IS NOT NULL`) ordered by kind (`module`, then
//!   `class`, then a `function` whose symbol has no `.`, then the rest) and start line; the
//!   first five are the *selection*;
//! - the first sentence of each summary (a sentence ends at a period followed by whitespace and
//!   an ASCII capital, so `.py` does not end one); sentences are taken while the words stay
//!   within 50; a first sentence longer than that is cut to 50 words and `...` added;
//! - the sentences, trailing periods stripped, are joined with `. ` and end with a period (so
//!   the `...` of a cut sentence becomes the final period, as in LLMC);
//! - `input_hash`: the first 16 hex digits of SHA-256 over the file's `file_hash`, the
//!   selection's span hashes and the algorithm version, concatenated. LLMC checks freshness
//!   against the whole selection, so the selection (not only the spans whose sentence fit) is
//!   what is hashed;
//! - a file whose stored `input_hash` equals the new one is not written; otherwise the row is
//!   upserted by `file_path` with `source = 'cheap'`, `updated_at = strftime('%s','now')` and
//!   `content_hash` = the file's hash.
//!
//! "Whitespace" is Python's (`str.isspace`, `\s` of `re` on text): Unicode's White_Space plus
//! the four separators U+001C to U+001F.

use std::borrow::Cow;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use crate::read::{lenient_i64, text};
use crate::types::{SpanOutcome, Stored};

/// The version of LLMC's cheap algorithm this module implements; part of every `input_hash`.
pub(crate) const ALGORITHM_VERSION: &str = "v1.1";

/// The most spans a description is composed from.
const MAX_SPANS: usize = 5;

/// The most words of a description, before the cut of an over-long first sentence.
const MAX_WORDS: usize = 50;

/// How many hex digits of the SHA-256 an `input_hash` keeps.
const INPUT_HASH_HEX_DIGITS: usize = 16;

/// The `source` LLMC gives a description of this tier.
const SOURCE: &str = "cheap";

/// The columns of LLMC's `file_descriptions` this module writes; a table that lacks one is left
/// alone.
const COLUMNS: [&str; 7] = [
    "file_id",
    "file_path",
    "description",
    "source",
    "updated_at",
    "content_hash",
    "input_hash",
];

/// LLMC's upsert, word for word.
const UPSERT_SQL: &str = "
INSERT INTO file_descriptions
    (file_id, file_path, description, source, updated_at, content_hash, input_hash)
VALUES (?1, ?2, ?3, ?4, strftime('%s','now'), ?5, ?6)
ON CONFLICT(file_path) DO UPDATE SET
    description = excluded.description,
    source = excluded.source,
    updated_at = excluded.updated_at,
    content_hash = excluded.content_hash,
    input_hash = excluded.input_hash";

/// Whitespace as Python's `str.isspace` sees it.
fn is_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

/// The place of a span's kind in the order: module, class, top-level function, the rest.
pub(crate) fn kind_rank(kind: &str, symbol: &str) -> u8 {
    match kind {
        "module" => 1,
        "class" => 2,
        "function" if !symbol.contains('.') => 3,
        _ => 4,
    }
}

/// A span's place in the order the selection is taken in: its kind's rank, then its start line,
/// then its id (spans that tie stay in the order they were indexed).
pub(crate) fn order_key(kind: &str, symbol: &str, start_line: i64, span_id: i64) -> (u8, i64, i64) {
    (kind_rank(kind, symbol), start_line, span_id)
}

/// The first sentence of `text`, trimmed: up to and including the first period that is followed
/// by whitespace and then an ASCII capital; the whole text when there is none.
pub(crate) fn first_sentence(text: &str) -> &str {
    for (at, _) in text.match_indices('.') {
        let rest = &text[at + 1..];
        let after_space = rest.trim_start_matches(is_space);
        if after_space.len() < rest.len()
            && after_space.starts_with(|c: char| c.is_ascii_uppercase())
        {
            return text[..=at].trim_matches(is_space);
        }
    }
    text.trim_matches(is_space)
}

/// The number of words of `text` (runs of non-whitespace).
fn word_count(text: &str) -> usize {
    text.split(is_space).filter(|w| !w.is_empty()).count()
}

/// The description composed from the summaries of the selection, in order; `None` when no
/// summary has a sentence.
pub(crate) fn compose<'a>(summaries: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut sentences: Vec<String> = Vec::new();
    let mut words = 0;
    for summary in summaries {
        let sentence = first_sentence(summary);
        if sentence.is_empty() {
            continue;
        }
        let count = word_count(sentence);
        if words + count > MAX_WORDS {
            if !sentences.is_empty() {
                break;
            }
            let cut: Vec<&str> = sentence
                .split(is_space)
                .filter(|w| !w.is_empty())
                .take(MAX_WORDS)
                .collect();
            sentences.push(format!("{}...", cut.join(" ")));
        } else {
            sentences.push(sentence.to_owned());
        }
        words += count;
    }
    if sentences.is_empty() {
        return None;
    }
    let mut description = sentences
        .iter()
        .map(|s| s.trim_end_matches('.'))
        .collect::<Vec<_>>()
        .join(". ");
    if !description.ends_with('.') {
        description.push('.');
    }
    Some(description)
}

/// The staleness hash of a description: the first 16 hex digits of SHA-256 over the file's hash,
/// the first five span hashes and [`ALGORITHM_VERSION`], concatenated.
pub(crate) fn input_hash<'a>(
    file_hash: &str,
    span_hashes: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut data = file_hash.to_owned();
    for hash in span_hashes.into_iter().take(MAX_SPANS) {
        data.push_str(hash);
    }
    data.push_str(ALGORITHM_VERSION);
    // `file_hash` is the hex SHA-256 of the bytes it is given.
    let mut digest = enrich_types::file_hash(data.as_bytes());
    digest.truncate(INPUT_HASH_HEX_DIGITS);
    digest
}

/// A file the batch touched.
struct TouchedFile {
    id: i64,
    path: String,
    file_hash: String,
}

/// Refreshes the description of every file with a span enriched (or renewed) in `outcomes`, in
/// the writer's transaction. Does nothing when the index has no `file_descriptions` table of
/// LLMC's shape.
pub(crate) fn refresh_after_batch(
    conn: &Connection,
    outcomes: &[SpanOutcome],
) -> rusqlite::Result<()> {
    let enriched: Vec<&str> = outcomes
        .iter()
        .filter(|o| matches!(o.stored, Stored::Enriched(_) | Stored::Refreshed(_)))
        .map(|o| o.span_hash.as_str())
        .collect();
    if enriched.is_empty() || !table_ready(conn)? {
        return Ok(());
    }
    // One statement for the whole batch: a query per span costs several times more.
    let hashes = serde_json::to_string(&enriched)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let mut touched = conn.prepare_cached(
        "SELECT f.id, f.path, f.file_hash FROM files f
         WHERE f.id IN (SELECT s.file_id FROM json_each(?1) AS j
                        JOIN spans s ON s.span_hash = j.value)
         ORDER BY f.id",
    )?;
    let files = touched
        .query_map([hashes], |row| {
            Ok((row.get(0)?, text(row.get_ref(1)?), text(row.get_ref(2)?)))
        })?
        .filter_map(|found| match found {
            Ok((id, Some(path), Some(file_hash))) => Some(Ok(TouchedFile {
                id,
                path,
                file_hash,
            })),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for file in &files {
        refresh_file(conn, file)?;
    }
    Ok(())
}

/// Whether `file_descriptions` exists with every column this module writes.
fn table_ready(conn: &Connection) -> rusqlite::Result<bool> {
    let mut present = conn.prepare_cached(
        "SELECT COUNT(*) FROM pragma_table_info('file_descriptions')
         WHERE name IN (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let count: usize = present.query_row(COLUMNS, |row| row.get(0))?;
    Ok(count == COLUMNS.len())
}

/// Text read as leniently as enrichments are (Python may have stored anything), borrowed when
/// it is text already.
fn lenient_str(value: ValueRef<'_>) -> Cow<'_, str> {
    match value {
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes),
        other => Cow::Owned(text(other).unwrap_or_default()),
    }
}

/// The selection of `file`: its first five spans in [`order_key`] order whose enrichment has a
/// summary, as (span hash, summary). The file's spans are put in order from their own rows;
/// enrichments are looked up in that order only until five are found.
fn selection(conn: &Connection, file: &TouchedFile) -> rusqlite::Result<Vec<(String, String)>> {
    let mut spans =
        conn.prepare_cached("SELECT id, symbol, kind, start_line FROM spans WHERE file_id = ?1")?;
    let mut keys = Vec::new();
    let mut rows = spans.query([file.id])?;
    while let Some(row) = rows.next()? {
        let line = lenient_i64(row.get_ref(3)?).unwrap_or(i64::MAX);
        keys.push(order_key(
            &lenient_str(row.get_ref(2)?),
            &lenient_str(row.get_ref(1)?),
            line,
            row.get(0)?,
        ));
    }
    keys.sort_unstable();
    let mut summarised = conn.prepare_cached(
        "SELECT s.span_hash, e.summary FROM spans s JOIN enrichments e ON e.span_hash = s.span_hash
         WHERE s.id = ?1 AND e.summary IS NOT NULL",
    )?;
    let mut chosen = Vec::with_capacity(MAX_SPANS);
    for (_, _, span_id) in keys {
        if chosen.len() == MAX_SPANS {
            break;
        }
        let found = summarised
            .query_row([span_id], |row| {
                Ok((text(row.get_ref(0)?), text(row.get_ref(1)?)))
            })
            .optional()?;
        if let Some((Some(hash), summary)) = found {
            chosen.push((hash, summary.unwrap_or_default()));
        }
    }
    Ok(chosen)
}

/// Recomputes one file's description; writes nothing when its `input_hash` is unchanged or no
/// span of the file has a summary.
fn refresh_file(conn: &Connection, file: &TouchedFile) -> rusqlite::Result<()> {
    let chosen = selection(conn, file)?;
    if chosen.is_empty() {
        return Ok(());
    }
    let hash = input_hash(&file.file_hash, chosen.iter().map(|(h, _)| h.as_str()));
    let stored: Option<Option<String>> = conn
        .prepare_cached("SELECT input_hash FROM file_descriptions WHERE file_path = ?1")?
        .query_row([&file.path], |row| row.get(0))
        .optional()?;
    if stored.flatten().as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let Some(description) = compose(chosen.iter().map(|(_, summary)| summary.as_str())) else {
        return Ok(());
    };
    conn.prepare_cached(UPSERT_SQL)?.execute(params![
        file.id,
        file.path,
        description,
        SOURCE,
        file.file_hash,
        hash,
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentence_ends_at_a_period_then_whitespace_then_a_capital() {
        let check =
            |text: &str, expected: &str| assert_eq!(first_sentence(text), expected, "{text:?}");
        check(
            "Loads config.py and setup.toml files. Then validates them.",
            "Loads config.py and setup.toml files.",
        );
        // A period followed by a lower-case word, a digit or nothing ends no sentence.
        check("Reads a.b. then c. 2 more", "Reads a.b. then c. 2 more");
        check("Calls os.Path here", "Calls os.Path here");
        check("  Only one sentence.  ", "Only one sentence.");
        // Any whitespace run counts, Python's included (U+001F, a no-break space).
        check("First.\n\tSecond.", "First.");
        check("First.\u{1f}Second.", "First.");
        check("First.\u{a0}Second.", "First.");
        // A non-ASCII capital does not start a sentence (`[A-Z]`).
        check("Erst. Über alles.", "Erst. Über alles.");
        check("", "");
    }

    #[test]
    fn spans_are_ordered_module_class_top_level_function_then_the_rest_by_line() {
        // (name, kind, symbol, start line), with span ids counting up as listed.
        let spans = [
            ("method", "function", "Parser.parse", 3),
            ("late_fn", "function", "helper", 40),
            ("heading", "section", "Intro", 1),
            ("class", "class", "Parser", 2),
            ("early_fn", "function", "main", 30),
            ("module", "module", "parser", 50),
            ("other", "variable", "X", 1),
            ("twin", "function", "main2", 30),
        ];
        let mut keyed: Vec<((u8, i64, i64), &str)> = spans
            .iter()
            .zip(1..)
            .map(|(&(name, kind, symbol, line), id)| (order_key(kind, symbol, line, id), name))
            .collect();
        keyed.sort_unstable();
        let order: Vec<&str> = keyed.iter().map(|(_, name)| *name).collect();
        // `twin` ties with `early_fn` and was indexed after it.
        assert_eq!(
            order,
            [
                "module", "class", "early_fn", "twin", "late_fn", "heading", "other", "method"
            ]
        );
        assert_eq!(kind_rank("function", "a.b"), 4);
        assert_eq!(kind_rank("method", "run"), 4);
    }

    #[test]
    fn sentences_are_added_while_the_words_stay_within_fifty() {
        let ten = "w w w w w w w w w w";
        let twenty = format!("{ten} {ten}");
        let forty = format!("{twenty} {twenty}");
        // 40 + 10 = 50 fits; the next sentence (1 word) would not and ends the description,
        // even though the one after it is empty.
        let description = compose([
            format!("{forty}. Second sentence is dropped.").as_str(),
            ten,
            "Over.",
            "",
        ])
        .expect("description");
        assert_eq!(description, format!("{forty}. {ten}."));
        // A summary with nothing in it is skipped and does not stop the others.
        assert_eq!(
            compose(["   ", "Parses input.", "Writes output files. Then exits."]).as_deref(),
            Some("Parses input. Writes output files.")
        );
        assert_eq!(compose(["", " "]), None);
    }

    #[test]
    fn an_over_long_first_sentence_is_cut_to_fifty_words() {
        let words: Vec<String> = (1..=60).map(|i| format!("w{i}")).collect();
        let long = format!("{}. Second.", words.join(" "));
        // Cut to 50 words with `...` added; the join strips trailing periods and ends with one,
        // so the description is the 50 words and a period (LLMC's own bytes).
        let expected = format!("{}.", words[..50].join(" "));
        assert_eq!(compose([long.as_str(), "Never reached."]), Some(expected));
        // Exactly fifty words are not cut.
        let fifty = words[..50].join("\t");
        assert_eq!(compose([fifty.as_str()]), Some(format!("{fifty}.")));
    }

    #[test]
    fn sentences_are_joined_with_a_period_and_a_space() {
        assert_eq!(
            compose(["Reads the index...", "Writes rows.", "No period at the end"]).as_deref(),
            Some("Reads the index. Writes rows. No period at the end.")
        );
    }

    #[test]
    fn the_input_hash_is_sixteen_hex_digits_of_sha256_over_the_parts() {
        // `printf 'abcsha256:1sha256:2v1.1' | sha256sum | cut -c1-16`
        assert_eq!(
            input_hash("abc", ["sha256:1", "sha256:2"]),
            "7f70ac29253c3ce2"
        );
        // No span: `printf 'abcv1.1' | sha256sum | cut -c1-16`
        assert_eq!(input_hash("abc", []), "8209482f98bce207");
        // Only the first five spans count.
        let six = ["1", "2", "3", "4", "5", "6"];
        assert_eq!(
            input_hash("f", six),
            input_hash("f", six[..5].iter().copied())
        );
        // `printf 'f12345v1.1' | sha256sum | cut -c1-16`
        assert_eq!(input_hash("f", six), "97f3d6ada5f0d144");
    }
}

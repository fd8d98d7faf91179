//! The keys of a config file that enrich does not read, with their lines and the known key each
//! most resembles, and the line of the key that a value error names.
//!
//! In enrich's own file (`enrich.toml`, or any `--config` file not named `llmc.toml`) such a key
//! is an error: a misspelt `modle` would otherwise leave the default model running. In LLMC's
//! `llmc.toml` the other tables and LLMC's own `[enrichment]` keys are LLMC's business and pass
//! in silence, while an unknown key in one of enrich's tables is a warning. The file is walked
//! with toml_edit, the parser underneath figment, because only it keeps the keys' positions.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use toml_edit::{ImDocument, Item, TableLike};

use crate::Source;
use crate::load::QUALITY_KEYS;
use crate::raw::{
    BUDGET_KEYS, CIRCUIT_BREAKER_KEYS, ENRICHMENT_KEYS, ENTRY_KEYS, LLMC_ENRICHMENT_KEYS,
    LLMC_ENTRY_KEYS, LLMC_RUNNER_KEYS, PROMPT_KEYS,
};
use crate::secrets::{INDEX_KEYS, SECRETS_KEYS};
use crate::work_order::RUNNER_KEYS;

/// The file name whose other tables and keys belong to LLMC.
const LLMC_FILE_NAME: &str = "llmc.toml";

/// How alike (Jaro similarity, as clap's suggestions use) a key and a known key must be for the
/// known key to be suggested.
const SUGGESTION_SIMILARITY: f64 = 0.8;

/// A key that enrich does not read, in LLMC's `llmc.toml` or in `ENRICH_CHAIN_JSON`: loading
/// goes on without it, and commands warn about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredKey {
    /// The key as messages name it: `enrichment.modle`, `modle of enrichment.chain entry 2`.
    pub key: String,
    /// The file or variable it is in.
    pub origin: Source,
    /// Its line in the file, counting from 1.
    pub line: Option<usize>,
    /// The key enrich reads that it most resembles.
    pub suggestion: Option<String>,
}

impl fmt::Display for IgnoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.key, self.origin)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        match &self.suggestion {
            Some(known) => write!(
                f,
                " is ignored: enrich does not read it (did you mean `{known}`?)"
            ),
            None => f.write_str(
                " is ignored: enrich does not read it (if you meant a setting, check its spelling)",
            ),
        }
    }
}

/// Whether `path` is LLMC's file, whose other tables and LLMC-only keys are not enrich's to judge.
pub(crate) fn is_llmc_file(path: &Path) -> bool {
    path.file_name().is_some_and(|name| name == LLMC_FILE_NAME)
}

/// A key of a config file that enrich does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unknown {
    /// As messages name it.
    pub(crate) key: String,
    /// Its line, counting from 1.
    pub(crate) line: Option<usize>,
    /// The known key it most resembles.
    pub(crate) suggestion: Option<String>,
}

/// A config file's keys with their positions, parsed once for both uses: the keys enrich does
/// not read ([`Self::unknown_keys`]) and the line of a key a value error names ([`Self::line`]).
/// Text that is not TOML has no keys: figment reports the syntax error.
pub(crate) struct KeyTree<'a> {
    text: &'a str,
    document: Option<ImDocument<&'a str>>,
}

impl<'a> KeyTree<'a> {
    /// Parses `text`.
    pub(crate) fn parse(text: &'a str) -> Self {
        Self {
            text,
            document: ImDocument::parse(text).ok(),
        }
    }

    /// The keys that enrich does not read, in file order. LLMC's own keys are left out
    /// everywhere; the other top-level tables only in LLMC's file (`llmc`).
    pub(crate) fn unknown_keys(&self, llmc: bool) -> Vec<Unknown> {
        let Some(document) = &self.document else {
            return Vec::new();
        };
        let mut walk = Walk {
            text: self.text,
            found: Vec::new(),
        };
        for (name, item) in document.as_table().iter() {
            if name == "enrichment" {
                if let Some(table) = item.as_table_like() {
                    walk.enrichment(table);
                }
            } else if !llmc {
                walk.unknown(document.as_table(), name, "", &["enrichment"]);
            }
        }
        walk.found
    }

    /// The line (counting from 1) of the key that a value error names, in the forms messages
    /// use: `enrichment.batch_size`, `enrichment.path_weights.src/**` (a key may hold dots),
    /// `timeout_seconds of enrichment.chain entry 2 ("fast")`, `enrichment.chain entry 2`. When
    /// the key itself is not in the file (a nested option, a whole entry), the line of the
    /// deepest enclosing key or entry that is.
    pub(crate) fn line(&self, key: &str) -> Option<usize> {
        let root = self.document.as_ref()?.as_table() as &dyn TableLike;
        let (table, rest, line) = match key.split_once(ENTRY_MARK) {
            Some((before, entry)) if before.is_empty() || before.ends_with(" of ") => {
                let (table, line) = self.entry(root, entry)?;
                (table, before.strip_suffix(" of "), line)
            }
            _ => (root, Some(key), None),
        };
        let Some(rest) = rest else { return line };
        self.deepest(table, rest).or(line)
    }

    /// Entry `n` (counting from 1, the number that starts `entry`) of `enrichment.chain`, and
    /// the line of its `[[enrichment.chain]]` header or inline table.
    fn entry<'t>(
        &self,
        root: &'t dyn TableLike,
        entry: &str,
    ) -> Option<(&'t dyn TableLike, Option<usize>)> {
        let digits = entry.split(|c: char| !c.is_ascii_digit()).next()?;
        let index = digits.parse::<usize>().ok()?.checked_sub(1)?;
        let chain = root.get("enrichment")?.as_table_like()?.get("chain")?;
        if let Some(array) = chain.as_array_of_tables() {
            let table = array.get(index)?;
            Some((table, table.span().map(|s| line_of(self.text, s.start))))
        } else {
            let table = chain.as_array()?.get(index)?.as_inline_table()?;
            Some((table, table.span().map(|s| line_of(self.text, s.start))))
        }
    }

    /// The line of the deepest key of the dotted `rest` found under `table`. A key may hold
    /// dots (a glob), so at each level the longest key that `rest` starts with is taken.
    fn deepest(&self, mut table: &dyn TableLike, mut rest: &str) -> Option<usize> {
        let mut line = None;
        loop {
            let Some(name) = table
                .iter()
                .map(|(name, _)| name)
                .filter(|name| {
                    rest == *name
                        || rest
                            .strip_prefix(*name)
                            .is_some_and(|after| after.starts_with('.'))
                })
                .max_by_key(|name| name.len())
            else {
                return line;
            };
            let found = table
                .key(name)
                .and_then(toml_edit::Key::span)
                .map(|span| line_of(self.text, span.start));
            line = found.or(line);
            if rest == name {
                return line;
            }
            rest = &rest[name.len() + 1..];
            match table.get(name).and_then(Item::as_table_like) {
                Some(inner) => table = inner,
                None => return line,
            }
        }
    }
}

/// How a value error names a file entry, `enrichment.chain entry <n>`, or a key of one,
/// `<key> of enrichment.chain entry <n>` (see [`crate::layers::entry_label`]).
const ENTRY_MARK: &str = "enrichment.chain entry ";

/// The known key that `key` most resembles, if any is alike enough.
pub(crate) fn suggest(key: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|candidate| (strsim::jaro(key, candidate), *candidate))
        .filter(|(similarity, _)| *similarity >= SUGGESTION_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_owned())
}

struct Walk<'a> {
    text: &'a str,
    found: Vec<Unknown>,
}

impl Walk<'_> {
    fn enrichment(&mut self, table: &dyn TableLike) {
        for (name, item) in table.iter() {
            let known = match name {
                "prompt" => Some((PROMPT_KEYS, &[][..])),
                "circuit_breaker" => Some((CIRCUIT_BREAKER_KEYS, &[][..])),
                "budget" => Some((BUDGET_KEYS, &[][..])),
                "runner" => Some((RUNNER_KEYS, LLMC_RUNNER_KEYS)),
                "index" => Some((INDEX_KEYS, &[][..])),
                "secrets" => Some((SECRETS_KEYS, &[][..])),
                "quality" => Some((QUALITY_KEYS, &[][..])),
                _ => None,
            };
            match (name, known) {
                (_, Some((known, llmc))) => {
                    if let Some(inner) = item.as_table_like() {
                        self.table(inner, &format!("enrichment.{name}."), known, llmc);
                    }
                }
                ("chain", None) => self.entries(item),
                (name, None)
                    if ENRICHMENT_KEYS.contains(&name) || LLMC_ENRICHMENT_KEYS.contains(&name) => {}
                (name, None) => self.unknown(table, name, "enrichment.", ENRICHMENT_KEYS),
            }
        }
    }

    /// `[[enrichment.chain]]`, an inline list of entries, or a single `[enrichment.chain]`.
    fn entries(&mut self, item: &Item) {
        let mut tables: Vec<&dyn TableLike> = Vec::new();
        if let Some(array) = item.as_array_of_tables() {
            tables.extend(array.iter().map(|t| t as &dyn TableLike));
        } else if let Some(array) = item.as_array() {
            tables.extend(
                array
                    .iter()
                    .filter_map(|v| v.as_inline_table())
                    .map(|t| t as &dyn TableLike),
            );
        } else if let Some(table) = item.as_table_like() {
            tables.push(table);
        }
        for (index, entry) in tables.into_iter().enumerate() {
            for (name, _) in entry.iter() {
                if !ENTRY_KEYS.contains(&name) && !LLMC_ENTRY_KEYS.contains(&name) {
                    let label = crate::layers::entry_label("enrichment.chain", index);
                    self.push(entry, name, format!("{name} of {label}"), ENTRY_KEYS);
                }
            }
        }
    }

    fn table(&mut self, table: &dyn TableLike, prefix: &str, known: &[&str], llmc: &[&str]) {
        for (name, _) in table.iter() {
            if !known.contains(&name) && !llmc.contains(&name) {
                self.unknown(table, name, prefix, known);
            }
        }
    }

    fn unknown(&mut self, table: &dyn TableLike, name: &str, prefix: &str, known: &[&str]) {
        self.push(table, name, format!("{prefix}{name}"), known);
    }

    fn push(&mut self, table: &dyn TableLike, name: &str, key: String, known: &[&str]) {
        let line = table
            .key(name)
            .and_then(toml_edit::Key::span)
            .map(|span| line_of(self.text, span.start));
        self.found.push(Unknown {
            key,
            line,
            suggestion: suggest(name, known),
        });
    }
}

/// The line (counting from 1) of byte `offset` of `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_name_the_closest_known_key_or_none() {
        for (typo, known, expected) in [
            ("modle", ENTRY_KEYS, Some("model")),
            ("timeout", ENTRY_KEYS, Some("timeout_seconds")),
            ("batchsize", ENRICHMENT_KEYS, Some("batch_size")),
            ("concurency", ENRICHMENT_KEYS, Some("concurrency")),
            ("enrichmnet", &["enrichment"][..], Some("enrichment")),
            ("xyz", ENTRY_KEYS, None),
        ] {
            assert_eq!(suggest(typo, known).as_deref(), expected, "{typo}");
        }
    }

    #[test]
    fn the_line_of_a_key_is_found_in_every_form_messages_name_it() {
        let text = "\
[enrichment]
batch_size = 0
path_weights = { \"src/a.b/**\" = 11 }

[[enrichment.chain]]
name = \"a\"

[[enrichment.chain]]
name = \"b\"
options = { headers = { authorization = \"x\" } }
";
        let keys = KeyTree::parse(text);
        for (key, line) in [
            ("enrichment.batch_size", Some(2)),
            ("enrichment.path_weights.src/a.b/**", Some(3)),
            ("enrichment.chain entry 2", Some(8)),
            ("name of enrichment.chain entry 1 (\"a\")", Some(6)),
            (
                "options.headers.authorization of enrichment.chain entry 2 (\"b\")",
                Some(10),
            ),
            // Not in the file: the deepest enclosing key.
            ("enrichment.budget.max_cost_per_run", Some(1)),
            ("timeout_seconds of enrichment.chain entry 2", Some(8)),
            ("name of enrichment.chain entry 3", None),
        ] {
            assert_eq!(keys.line(key), line, "{key}");
        }
        let inline =
            KeyTree::parse("[enrichment]\nchain = [\n  { name = \"a\" },\n  { model = 1 },\n]\n");
        assert_eq!(inline.line("model of enrichment.chain entry 2"), Some(4));
        assert_eq!(KeyTree::parse("not toml =").line("enrichment"), None);
    }

    #[test]
    fn lines_count_from_one() {
        let text = "a = 1\nb = 2\n\nc = 3\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, text.find('c').unwrap()), 4);
    }
}

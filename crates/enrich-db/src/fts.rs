//! Full-text tables kept in step with `enrichments`: LLMC's `enrichments_fts` (when the index has
//! it) and enrich's own `enrich_search` (migration 12), by one mechanism.
//!
//! Each table is a projection of `enrichments` joined with its span and the span's file, keyed
//! by the enrichment's rowid: it holds exactly the rows its [`FtsTable::rows`] query gives (an
//! enrichment whose span or file is gone has none). Every read-write connection enrich opens
//! creates **TEMP triggers** on `enrichments`, `spans` and `files` that rewrite the rows an
//! insert, update or delete touches, in the statement's own transaction: the writer's upserts
//! (a replacement is an update), the indexer's span moves and deletions (foreign keys off),
//! orphan removal, a cascade from a deleted file. So whatever enrich writes, both tables agree
//! with it when the transaction commits, and no writing code has to remember them.
//!
//! Why TEMP triggers and not triggers stored in the file: a stored trigger on `enrichments` would
//! also fire inside LLMC's own connections, where LLMC fills `enrichments_fts` itself (`DELETE`
//! then `INSERT … SELECT` when it opens the index): LLMC's own writes would then meet rows
//! already there, and an LLMC built without FTS5, or an index whose `enrich_search` was dropped,
//! could not write `enrichments` at all. TEMP triggers live on enrich's connection only, cost
//! nothing to create, and leave the file exactly as LLMC knows it. What LLMC writes itself
//! (its own enrichment runs) is caught up when enrich next opens the index read-write (new
//! enrichments, found by rowid), see [`Db::sync_search_index`](crate::Db::sync_search_index).

use rusqlite::Connection;

/// A full-text table whose rows are a projection of `enrichments`, its span and its file.
#[derive(Debug)]
pub(crate) struct FtsTable {
    /// The table's name in `main`.
    pub(crate) name: &'static str,
    /// The columns an insert names, `rowid` first.
    pub(crate) columns: &'static str,
    /// The `SELECT` of its rows, from `main.enrichments AS e`, `main.spans AS s` and
    /// `main.files AS f`, without a `WHERE`.
    pub(crate) rows: &'static str,
    /// The `enrichments` columns it reads: an update that changes none of them (nor the rowid)
    /// leaves the table alone.
    pub(crate) enrichment_columns: &'static [&'static str],
    /// The `spans` columns it reads.
    pub(crate) span_columns: &'static [&'static str],
    /// The columns LLMC (or migration 12) declares, in order: a table with other columns is
    /// not this one and is left alone.
    pub(crate) declared: &'static [&'static str],
}

/// LLMC's search table, as LLMC creates it: `symbol, summary, path, start_line, end_line`,
/// rowid = the enrichment's rowid.
pub(crate) const LLMC_FTS: FtsTable = FtsTable {
    name: "enrichments_fts",
    columns: "rowid, symbol, summary, path, start_line, end_line",
    rows: "SELECT e.rowid, s.symbol, e.summary, f.path, s.start_line, s.end_line \
           FROM main.enrichments AS e \
           JOIN main.spans AS s ON s.span_hash = e.span_hash \
           JOIN main.files AS f ON f.id = s.file_id",
    enrichment_columns: &["span_hash", "summary"],
    span_columns: &["span_hash", "file_id", "symbol", "start_line", "end_line"],
    declared: &["symbol", "summary", "path", "start_line", "end_line"],
};

/// A list column (a JSON array of strings, as LLMC stores them) as text to index: its items one
/// per line. Anything that is not a JSON array is indexed as it is, so a row another program
/// wrote differently never makes a write fail.
macro_rules! list_text {
    ($column:literal) => {
        concat!(
            "CASE WHEN json_valid(",
            $column,
            ") AND json_type(",
            $column,
            ") = 'array' THEN (SELECT group_concat(value, char(10)) FROM json_each(",
            $column,
            ")) ELSE ",
            $column,
            " END"
        )
    };
}

/// The rows of enrich's search table: what `enrich search` matches.
macro_rules! search_rows {
    () => {
        concat!(
            "SELECT e.rowid, s.symbol, e.summary, ",
            list_text!("e.inputs"),
            ", ",
            list_text!("e.outputs"),
            ", ",
            list_text!("e.side_effects"),
            ", ",
            list_text!("e.pitfalls"),
            ", f.path, e.span_hash \
             FROM main.enrichments AS e \
             JOIN main.spans AS s ON s.span_hash = e.span_hash \
             JOIN main.files AS f ON f.id = s.file_id"
        )
    };
}

/// The columns of enrich's search table, in order; `span_hash` is stored, not indexed (search
/// checks that a row still belongs to the enrichment of its rowid).
macro_rules! search_columns {
    () => {
        "rowid, symbol, summary, inputs, outputs, side_effects, pitfalls, path, span_hash"
    };
}

/// enrich's own search table.
pub(crate) const SEARCH_FTS: FtsTable = FtsTable {
    name: "enrich_search",
    columns: search_columns!(),
    rows: search_rows!(),
    enrichment_columns: &[
        "span_hash",
        "summary",
        "inputs",
        "outputs",
        "side_effects",
        "pitfalls",
    ],
    span_columns: &["span_hash", "file_id", "symbol"],
    declared: &[
        "symbol",
        "summary",
        "inputs",
        "outputs",
        "side_effects",
        "pitfalls",
        "path",
        "span_hash",
    ],
};

/// Migration 12: enrich's search table, filled with every enrichment already stored. unicode61
/// like LLMC's table (the porter tokenizer's stemming hurts code words), diacritics folded.
pub(crate) const SEARCH_TABLE_SQL: &str = concat!(
    "CREATE VIRTUAL TABLE enrich_search USING fts5(\n",
    "    symbol, summary, inputs, outputs, side_effects, pitfalls, path, span_hash UNINDEXED,\n",
    "    tokenize = 'unicode61 remove_diacritics 2'\n",
    ");\n",
    "INSERT INTO enrich_search (",
    search_columns!(),
    ")\n",
    search_rows!(),
    ";\n"
);

/// Both tables, in the order their triggers are created.
pub(crate) const TABLES: [&FtsTable; 2] = [&LLMC_FTS, &SEARCH_FTS];

impl FtsTable {
    /// `OLD.c IS NOT NEW.c OR …` over `columns`.
    fn changed(columns: &[&str]) -> String {
        columns
            .iter()
            .map(|c| format!("OLD.{c} IS NOT NEW.{c}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// The statements that rewrite the rows `rowids` (a subquery or a list) selected by `filter`.
    /// The table written is named without its schema (older SQLite versions, 3.40 among them,
    /// refuse a qualified name there, even in a TEMP trigger); no TEMP table of that name
    /// exists on a read-write connection, so it is `main`'s.
    fn rewrite(&self, rowids: &str, filter: &str) -> String {
        format!(
            "DELETE FROM {name} WHERE rowid IN ({rowids}); \
             INSERT INTO {name} ({columns}) {rows} WHERE {filter};",
            name = self.name,
            columns = self.columns,
            rows = self.rows,
        )
    }

    /// The TEMP triggers that keep this table in step on one connection.
    pub(crate) fn triggers(&self) -> Vec<String> {
        let name = self.name;
        let of_span =
            |hash: &str| format!("SELECT rowid FROM main.enrichments WHERE span_hash = {hash}");
        let of_file = |id: &str| {
            format!(
                "SELECT e.rowid FROM main.enrichments AS e \
                 JOIN main.spans AS s ON s.span_hash = e.span_hash WHERE s.file_id = {id}"
            )
        };
        let trigger = |event: &str, on: &str, when: Option<String>, body: String| {
            let when = when.map_or_else(String::new, |w| format!("WHEN {w} "));
            format!(
                "CREATE TEMP TRIGGER IF NOT EXISTS enrich_fts_{name}_{event} {on} {when}BEGIN {body} END"
            )
        };
        let enrichment_changed = format!(
            "OLD.rowid IS NOT NEW.rowid OR {}",
            Self::changed(self.enrichment_columns)
        );
        vec![
            trigger(
                "enrichment_inserted",
                "AFTER INSERT ON main.enrichments",
                None,
                self.rewrite("NEW.rowid", "e.rowid = NEW.rowid"),
            ),
            trigger(
                "enrichment_updated",
                "AFTER UPDATE ON main.enrichments",
                Some(enrichment_changed),
                self.rewrite("OLD.rowid, NEW.rowid", "e.rowid = NEW.rowid"),
            ),
            trigger(
                "enrichment_deleted",
                "AFTER DELETE ON main.enrichments",
                None,
                format!("DELETE FROM {name} WHERE rowid = OLD.rowid;"),
            ),
            trigger(
                "span_inserted",
                "AFTER INSERT ON main.spans",
                None,
                self.rewrite(&of_span("NEW.span_hash"), "e.span_hash = NEW.span_hash"),
            ),
            trigger(
                "span_updated",
                "AFTER UPDATE ON main.spans",
                Some(Self::changed(self.span_columns)),
                self.rewrite(
                    "SELECT rowid FROM main.enrichments \
                     WHERE span_hash IN (OLD.span_hash, NEW.span_hash)",
                    "e.span_hash = NEW.span_hash",
                ),
            ),
            trigger(
                "span_deleted",
                "AFTER DELETE ON main.spans",
                None,
                format!(
                    "DELETE FROM {name} WHERE rowid IN ({});",
                    of_span("OLD.span_hash")
                ),
            ),
            trigger(
                "file_inserted",
                "AFTER INSERT ON main.files",
                None,
                self.rewrite(&of_file("NEW.id"), "s.file_id = NEW.id"),
            ),
            trigger(
                "file_updated",
                "AFTER UPDATE ON main.files",
                Some("OLD.id IS NOT NEW.id OR OLD.path IS NOT NEW.path".to_owned()),
                format!(
                    "DELETE FROM {name} WHERE rowid IN ({}); {}",
                    of_file("OLD.id"),
                    self.rewrite(&of_file("NEW.id"), "s.file_id = NEW.id")
                ),
            ),
            trigger(
                "file_deleted",
                "AFTER DELETE ON main.files",
                None,
                format!("DELETE FROM {name} WHERE rowid IN ({});", of_file("OLD.id")),
            ),
        ]
    }

    /// Whether `main` holds this table with the columns it should have. A table of another
    /// shape (an older LLMC's two-column `enrichments_fts`), or one this SQLite cannot read
    /// (built without FTS5), is not kept.
    pub(crate) fn present(&self, conn: &Connection) -> rusqlite::Result<bool> {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?1)",
            [self.name],
            |row| row.get(0),
        )?;
        if !exists {
            return Ok(false);
        }
        let columns = conn
            .prepare("SELECT name FROM pragma_table_info(?1, 'main')")
            .and_then(|mut stmt| {
                stmt.query_map([self.name], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            });
        Ok(columns.is_ok_and(|columns| columns == self.declared))
    }
}

/// Creates the TEMP triggers of every full-text table `main` holds on `conn`, and drops those of
/// a table it no longer holds. Run on every read-write connection after the migrations.
pub(crate) fn keep_in_step(conn: &Connection) -> rusqlite::Result<()> {
    for table in TABLES {
        if table.present(conn)? {
            for sql in table.triggers() {
                conn.execute_batch(&sql)?;
            }
        } else {
            drop_triggers(conn, table)?;
        }
    }
    Ok(())
}

/// Drops this connection's TEMP triggers of `table`.
fn drop_triggers(conn: &Connection, table: &FtsTable) -> rusqlite::Result<()> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM temp.sqlite_master WHERE type = 'trigger' AND name GLOB ?1")
        .and_then(|mut stmt| {
            stmt.query_map([format!("enrich_fts_{}_*", table.name)], |row| row.get(0))?
                .collect()
        })?;
    for name in names {
        conn.execute_batch(&format!("DROP TRIGGER temp.\"{name}\""))?;
    }
    Ok(())
}

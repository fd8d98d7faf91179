//! enrich's own keys in LLMC's `llmc_meta(key, value)` table: small facts that need no table of
//! their own (such as the circuit breakers' state of a running `enrich watch`).

use rusqlite::OptionalExtension;

use crate::error::DbError;
use crate::open::Db;

/// The `llmc_meta` key under which a running pipeline publishes its backends' circuit state (a
/// JSON document written by the pipeline, read by `enrich status`).
pub const CIRCUITS_META_KEY: &str = "enrich_circuits";

impl Db {
    /// The value of an `llmc_meta` key, if set.
    pub fn meta(&self, key: &str) -> Result<Option<String>, DbError> {
        self.conn
            .prepare_cached("SELECT value FROM llmc_meta WHERE key = ?1")
            .and_then(|mut stmt| stmt.query_row([key], |row| row.get(0)).optional())
            .map_err(self.err("read llmc_meta"))
    }

    /// Sets an `llmc_meta` key; keys LLMC uses are refused (only `enrich_*` keys are enrich's).
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), DbError> {
        self.ensure_writable("write llmc_meta")?;
        if !key.starts_with("enrich_") {
            return Err(DbError::ForeignMetaKey {
                key: key.to_owned(),
            });
        }
        self.conn
            .prepare_cached(
                "INSERT INTO llmc_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut stmt| stmt.execute((key, value)))
            .map(drop)
            .map_err(self.err("write llmc_meta"))
    }
}

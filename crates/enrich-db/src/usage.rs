//! Token usage recorded in the attempt log, for daily budgets.

use serde::{Deserialize, Serialize};

use crate::error::DbError;
use crate::open::Db;

/// Tokens one backend used, summed over attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendUsage {
    /// The backend's name, as in the attempt log.
    pub backend: String,
    /// The model it served.
    pub model: String,
    /// Attempts made.
    pub attempts: u64,
    /// Prompt (input) tokens the backend reported.
    pub prompt_tokens: u64,
    /// Output tokens the backend reported.
    pub output_tokens: u64,
    /// Whether these attempts are the answers of batches (`enrich batch`), priced at the
    /// batch price.
    #[serde(default)]
    pub batch: bool,
}

/// Attempts of runs that started at or after `?1` (Unix ms), grouped by backend, model and
/// whether the run is a batch's. The
/// run's start time selects its attempts through the `enrich_attempts(run_id)` index, so the
/// cost is the attempts of those runs, not the whole log.
const USAGE_SINCE_SQL: &str = "SELECT a.backend, a.model, COUNT(*), \
       COALESCE(SUM(a.prompt_eval_count), 0), COALESCE(SUM(a.eval_count), 0), \
       EXISTS (SELECT 1 FROM enrich_batches AS b WHERE b.run_id = r.id) AS batch \
     FROM enrich_runs AS r JOIN enrich_attempts AS a ON a.run_id = r.id \
     WHERE r.started_at_ms >= ?1 \
     GROUP BY a.backend, a.model, batch \
     ORDER BY a.backend, a.model, batch";

impl Db {
    /// Token usage of the runs started at or after `since_ms` (Unix milliseconds), per backend
    /// and model, from the attempt log (failed attempts included). A run is counted whole on
    /// the day it started.
    pub fn usage_since(&self, since_ms: i64) -> Result<Vec<BackendUsage>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(USAGE_SINCE_SQL)
            .map_err(self.err("read token usage"))?;
        let rows = stmt
            .query_map([since_ms], |row| {
                let count = |i: usize| row.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                Ok(BackendUsage {
                    backend: row.get(0)?,
                    model: row.get(1)?,
                    attempts: count(2)?,
                    prompt_tokens: count(3)?,
                    output_tokens: count(4)?,
                    batch: row.get(5)?,
                })
            })
            .map_err(self.err("read token usage"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err("read token usage"))
    }
}

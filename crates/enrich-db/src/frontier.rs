//! Frontiers: where the pending spans of a lane begin, remembered between runs.
//!
//! A run reads pending spans in key order (span id, or weight then span id) from a cursor, and
//! every enriched span in front of the first pending one costs an index probe to skip: on a
//! mostly enriched index of a million spans, a second or more before the first page. A
//! frontier is a key of a lane at or below which no span is pending (each one is enriched or
//! dead-lettered), so a run's pages start there instead. A run records its lanes' frontiers
//! when it ends ([`Db::advance_frontier`]); the next one starts from them ([`Db::frontier`]).
//!
//! **A frontier must stay true whoever writes the index** (LLMC's indexer, enrich, a user's
//! `sqlite3`). Every change that could make a span at or below a frontier pending again bumps
//! an epoch kept in `llmc_meta` under [`PENDING_EPOCH_KEY`], through triggers: an enrichment of
//! a span that still exists deleted or re-keyed; a span re-keyed, or inserted at or below the
//! span-id frontier (SQLite reuses the ids of deleted last rows); a dead letter lifted; a
//! work-order row placed at or below a weight frontier, or moved. A frontier counts only at the
//! epoch it was recorded at. What cannot make a span pending bumps nothing: new spans after the
//! frontier, spans deleted (their enrichments go with them), enrichments written.
//!
//! The triggers on LLMC's tables read and write only LLMC's tables (`spans`, `llmc_meta`), so
//! removing enrich's tables by hand can never make one of LLMC's own writes fail. Triggers that
//! went missing (a table rebuilt) are created again, and the epoch bumped, before a frontier is
//! recorded.

use std::ops::RangeInclusive;

use rusqlite::OptionalExtension;

use crate::error::DbError;
use crate::open::Db;
use crate::work_order::WorkOrderKey;

/// The `llmc_meta` key of the pending epoch the frontier triggers bump.
pub const PENDING_EPOCH_KEY: &str = "enrich_pending_epoch";

/// The `llmc_meta` key holding the span-id lane's frontier, for the trigger on `spans` (which
/// must not read enrich's tables).
pub const SPAN_ID_FRONTIER_KEY: &str = "enrich_frontier_span_id";

/// The statement every frontier trigger runs.
macro_rules! bump_epoch {
    () => {
        "BEGIN UPDATE llmc_meta SET value = CAST(value AS INTEGER) + 1 \
         WHERE key = 'enrich_pending_epoch'; END"
    };
}

/// The frontier triggers, by name. `IF NOT EXISTS`: creating them again is harmless.
pub(crate) const FRONTIER_TRIGGERS: &[(&str, &str)] = &[
    (
        "enrich_epoch_enrichment_deleted",
        concat!(
            "CREATE TRIGGER IF NOT EXISTS enrich_epoch_enrichment_deleted \
             AFTER DELETE ON enrichments \
             WHEN EXISTS (SELECT 1 FROM spans WHERE spans.span_hash = OLD.span_hash) ",
            bump_epoch!()
        ),
    ),
    (
        "enrich_epoch_enrichment_rekeyed",
        concat!(
            "CREATE TRIGGER IF NOT EXISTS enrich_epoch_enrichment_rekeyed \
             AFTER UPDATE OF span_hash ON enrichments \
             WHEN OLD.span_hash IS NOT NEW.span_hash ",
            bump_epoch!()
        ),
    ),
    (
        "enrich_epoch_span_rekeyed",
        concat!(
            "CREATE TRIGGER IF NOT EXISTS enrich_epoch_span_rekeyed \
             AFTER UPDATE OF id, span_hash ON spans \
             WHEN OLD.id IS NOT NEW.id OR OLD.span_hash IS NOT NEW.span_hash ",
            bump_epoch!()
        ),
    ),
    (
        "enrich_epoch_span_inserted",
        concat!(
            "CREATE TRIGGER IF NOT EXISTS enrich_epoch_span_inserted \
             AFTER INSERT ON spans \
             WHEN NEW.id <= (SELECT CAST(value AS INTEGER) FROM llmc_meta \
                             WHERE key = 'enrich_frontier_span_id') ",
            bump_epoch!()
        ),
    ),
    (
        "enrich_epoch_dead_letter_deleted",
        concat!(
            "CREATE TRIGGER IF NOT EXISTS enrich_epoch_dead_letter_deleted \
             AFTER DELETE ON enrich_failures \
             WHEN OLD.dead_lettered = 1 ",
            bump_epoch!()
        ),
    ),
    (
        "enrich_epoch_dead_letter_updated",
        concat!(
            "CREATE TRIGGER IF NOT EXISTS enrich_epoch_dead_letter_updated \
             AFTER UPDATE OF dead_lettered, span_hash ON enrich_failures \
             WHEN OLD.dead_lettered = 1 \
              AND (NEW.dead_lettered IS NOT 1 OR OLD.span_hash IS NOT NEW.span_hash) ",
            bump_epoch!()
        ),
    ),
    (
        "enrich_epoch_order_inserted",
        concat!(
            "CREATE TRIGGER IF NOT EXISTS enrich_epoch_order_inserted \
             AFTER INSERT ON enrich_span_order \
             WHEN EXISTS (SELECT 1 FROM enrich_frontiers AS f \
                          WHERE f.weight_hi > 0 \
                            AND NEW.weight BETWEEN f.weight_lo AND f.weight_hi \
                            AND (NEW.weight < f.weight \
                                 OR (NEW.weight = f.weight AND NEW.span_id <= f.span_id))) ",
            bump_epoch!()
        ),
    ),
    (
        "enrich_epoch_order_moved",
        concat!(
            "CREATE TRIGGER IF NOT EXISTS enrich_epoch_order_moved \
             AFTER UPDATE OF span_id, weight ON enrich_span_order \
             WHEN OLD.weight IS NOT NEW.weight OR OLD.span_id IS NOT NEW.span_id ",
            bump_epoch!()
        ),
    ),
];

/// A lane of pending spans a frontier belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontierLane {
    /// Every span, in span id order.
    SpanId,
    /// The spans weighing within these weights, in work order.
    Weights(RangeInclusive<u8>),
}

impl FrontierLane {
    /// The lane's row key in `enrich_frontiers`.
    fn key(&self) -> String {
        match self {
            Self::SpanId => "span_id".to_owned(),
            Self::Weights(weights) => format!("weights:{}-{}", weights.start(), weights.end()),
        }
    }

    /// `(weight_lo, weight_hi)`; `(0, 0)` for the span-id lane.
    fn bounds(&self) -> (u8, u8) {
        match self {
            Self::SpanId => (0, 0),
            Self::Weights(weights) => (*weights.start(), *weights.end()),
        }
    }
}

const FRONTIER_SQL: &str = "SELECT f.weight, f.span_id FROM enrich_frontiers AS f \
     WHERE f.lane = ?1 \
       AND f.epoch = (SELECT CAST(value AS INTEGER) FROM llmc_meta \
                      WHERE key = 'enrich_pending_epoch')";

const UPSERT_FRONTIER_SQL: &str = "INSERT INTO enrich_frontiers \
     (lane, weight_lo, weight_hi, weight, span_id, epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (lane) DO UPDATE SET weight_lo = excluded.weight_lo, \
       weight_hi = excluded.weight_hi, weight = excluded.weight, span_id = excluded.span_id, \
       epoch = excluded.epoch";

const LAST_SPAN_ID_SQL: &str = "SELECT MAX(id) FROM spans";

const LAST_IN_WEIGHTS_SQL: &str = "SELECT weight, span_id FROM enrich_span_order \
     WHERE weight BETWEEN ?1 AND ?2 ORDER BY weight DESC, span_id DESC LIMIT 1";

impl Db {
    /// The lane's frontier, when one was recorded and nothing since could have made a span at
    /// or below it pending: pending spans of the lane all come after it. `None` otherwise
    /// (start from the beginning), when a frontier trigger is missing, and on an index without
    /// enrich's tables or `llmc_meta`.
    ///
    /// # Errors
    ///
    /// [`DbError::Sqlite`] when the index cannot be read.
    pub fn frontier(&self, lane: &FrontierLane) -> Result<Option<WorkOrderKey>, DbError> {
        if !self.has_table("llmc_meta")? || self.frontier_triggers()? != FRONTIER_TRIGGERS.len() {
            return Ok(None);
        }
        self.conn
            .prepare_cached(FRONTIER_SQL)
            .and_then(|mut stmt| {
                stmt.query_row([lane.key()], |row| {
                    Ok(WorkOrderKey {
                        weight: row.get(0)?,
                        span_id: row.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(self.err("read a pending frontier"))
    }

    /// Records the lane's frontier as it stands now: just before its first pending span
    /// (leased or not, in cooldown or not), or at its last span when none is pending. Reads from
    /// the lane's current frontier on, so it costs the spans enriched since. Recreates missing
    /// frontier triggers first. One `IMMEDIATE` transaction: no writer slips in between the
    /// reading and the recording.
    ///
    /// # Errors
    ///
    /// [`DbError::ReadOnly`] on a read-only connection; [`DbError::Sqlite`] when the index
    /// cannot be read or written (nothing is recorded then).
    pub fn advance_frontier(&mut self, lane: &FrontierLane) -> Result<WorkOrderKey, DbError> {
        self.ensure_writable("record a pending frontier")?;
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(self.err("lock the database to record a pending frontier"))?;
        let recorded = self.advance_frontier_in_transaction(lane);
        let end = if recorded.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = self
            .conn
            .execute_batch(end)
            .map_err(self.err("commit a pending frontier"));
        let key = recorded?;
        ended?;
        Ok(key)
    }

    fn advance_frontier_in_transaction(
        &mut self,
        lane: &FrontierLane,
    ) -> Result<WorkOrderKey, DbError> {
        self.ensure_frontier_triggers()?;
        let epoch: i64 = self
            .conn
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM llmc_meta WHERE key = ?1",
                [PENDING_EPOCH_KEY],
                |row| row.get(0),
            )
            .map_err(self.err("read the pending epoch"))?;
        let from = self.frontier(lane)?.unwrap_or(WorkOrderKey::START);
        let first_pending = match lane {
            FrontierLane::SpanId => {
                self.pending_spans(from.span_id, 1)?
                    .first()
                    .map(|span| WorkOrderKey {
                        weight: 0,
                        span_id: span.id,
                    })
            }
            FrontierLane::Weights(weights) => self
                .pending_by_weight(weights.clone(), from, 1)?
                .first()
                .map(|weighted| WorkOrderKey {
                    weight: weighted.weight,
                    span_id: weighted.span.id,
                }),
        };
        let frontier = match first_pending {
            Some(first) => WorkOrderKey {
                weight: first.weight,
                span_id: first.span_id - 1,
            },
            None => self.last_key(lane)?.unwrap_or(from).max(from),
        };
        let (lo, hi) = lane.bounds();
        self.conn
            .prepare_cached(UPSERT_FRONTIER_SQL)
            .and_then(|mut stmt| {
                stmt.execute((lane.key(), lo, hi, frontier.weight, frontier.span_id, epoch))
            })
            .map_err(self.err("record a pending frontier"))?;
        if *lane == FrontierLane::SpanId {
            self.set_meta(SPAN_ID_FRONTIER_KEY, &frontier.span_id.to_string())?;
        }
        Ok(frontier)
    }

    /// The lane's last key, if it has spans.
    fn last_key(&self, lane: &FrontierLane) -> Result<Option<WorkOrderKey>, DbError> {
        let read = match lane {
            FrontierLane::SpanId => self.conn.query_row(LAST_SPAN_ID_SQL, [], |row| {
                Ok(row
                    .get::<_, Option<i64>>(0)?
                    .map(|span_id| WorkOrderKey { weight: 0, span_id }))
            }),
            FrontierLane::Weights(weights) => self
                .conn
                .query_row(
                    LAST_IN_WEIGHTS_SQL,
                    (weights.start(), weights.end()),
                    |row| {
                        Ok(WorkOrderKey {
                            weight: row.get(0)?,
                            span_id: row.get(1)?,
                        })
                    },
                )
                .optional(),
        };
        read.map_err(self.err("read the last span of a lane"))
    }

    /// How many of the frontier triggers exist.
    fn frontier_triggers(&self) -> Result<usize, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            .map_err(self.err("look for the frontier triggers"))?;
        let names = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(self.err("look for the frontier triggers"))?;
        let mut present = 0;
        for name in names {
            let name = name.map_err(self.err("look for the frontier triggers"))?;
            present += usize::from(FRONTIER_TRIGGERS.iter().any(|(known, _)| *known == name));
        }
        Ok(present)
    }

    /// Creates the frontier triggers that are missing and makes sure the epoch exists; when a
    /// trigger was missing, bumps the epoch (what happened without it went unnoticed).
    fn ensure_frontier_triggers(&mut self) -> Result<(), DbError> {
        let present = self.frontier_triggers()?;
        self.conn
            .execute(
                "INSERT INTO llmc_meta (key, value) VALUES (?1, '0') ON CONFLICT (key) DO NOTHING",
                [PENDING_EPOCH_KEY],
            )
            .map_err(self.err("create the pending epoch"))?;
        if present == FRONTIER_TRIGGERS.len() {
            return Ok(());
        }
        for (_, sql) in FRONTIER_TRIGGERS {
            self.conn
                .execute_batch(sql)
                .map_err(self.err("create the frontier triggers"))?;
        }
        self.conn
            .execute(
                "UPDATE llmc_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ?1",
                [PENDING_EPOCH_KEY],
            )
            .map_err(self.err("bump the pending epoch"))?;
        Ok(())
    }
}

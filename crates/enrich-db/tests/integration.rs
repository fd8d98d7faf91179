//! Integration tests of enrich-db: real SQLite files in temporary directories, no mocks.

#[path = "integration/support.rs"]
mod support;

#[path = "integration/corrupt.rs"]
mod corrupt;
#[path = "integration/export.rs"]
mod export;
#[path = "integration/file_descriptions.rs"]
mod file_descriptions;
#[path = "integration/frontier.rs"]
mod frontier;
#[path = "integration/indexing.rs"]
mod indexing;
#[path = "integration/leases.rs"]
mod leases;
#[path = "integration/ledger.rs"]
mod ledger;
#[path = "integration/locking.rs"]
mod locking;
#[path = "integration/pending.rs"]
mod pending;
#[path = "integration/provenance.rs"]
mod provenance;
#[path = "integration/reading.rs"]
mod reading;
#[path = "integration/refresh.rs"]
mod refresh;
#[path = "integration/retrieval.rs"]
mod retrieval;
#[path = "integration/schema.rs"]
mod schema;
#[path = "integration/search.rs"]
mod search;
#[path = "integration/source.rs"]
mod source;
#[path = "integration/stale.rs"]
mod stale;
#[path = "integration/upgrades.rs"]
mod upgrades;
#[path = "integration/work_order.rs"]
mod work_order;
#[path = "integration/writing.rs"]
mod writing;

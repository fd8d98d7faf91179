//! Integration tests of enrich-index: real repositories in temporary directories, real SQLite
//! indexes, read back with plain SQL as LLMC reads them.

#[path = "integration/support.rs"]
mod support;

#[path = "integration/exclusions.rs"]
mod exclusions;
#[path = "integration/incremental.rs"]
mod incremental;
#[path = "integration/splitting.rs"]
mod splitting;
#[path = "integration/walking.rs"]
mod walking;

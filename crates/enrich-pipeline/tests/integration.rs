//! enrich-pipeline's integration tests: real SQLite files in temporary repositories, scripted
//! in-process backends, tokio's paused clock for everything time-dependent.

#[path = "integration/support.rs"]
mod support;

#[path = "integration/concurrency.rs"]
mod concurrency;
#[path = "integration/events.rs"]
mod events;
#[path = "integration/failures.rs"]
mod failures;
#[path = "integration/outages.rs"]
mod outages;
#[path = "integration/prompts.rs"]
mod prompts;
#[path = "integration/runs.rs"]
mod runs;
#[path = "integration/schedule.rs"]
mod schedule;
#[path = "integration/secrets.rs"]
mod secrets;
#[path = "integration/stale.rs"]
mod stale;
#[path = "integration/work_order.rs"]
mod work_order;

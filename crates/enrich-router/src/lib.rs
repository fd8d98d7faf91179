//! Chooses which chain of enrichment backends serves a span, and says why.
//!
//! The pipeline describes each pending span as a [`SliceView`] and asks
//! [`Router::choose_chain`] for a [`RouteDecision`]: the normalised slice type, the chain, its
//! enabled backends in order, the routing tier and human-readable reasons (`enrich plan` prints
//! them). The rules are LLMC's:
//!
//! 1. an explicit override (`--chain`) wins;
//! 2. else, when routing is on, the `[enrichment.routes]` entry for the slice type;
//! 3. else the default chain.
//!
//! A chosen chain that does not exist or has no enabled backend falls back to the default chain,
//! with a reason saying so; only a default chain without an enabled backend is an error
//! ([`RouterError`]). `max_tier` then keeps the backends of that tier, or all of them when none
//! has it. Routing is on when the config's `enable_routing` is: the router reads no environment
//! (configuration loading resolves LLMC's `LLMC_ENRICH_DISABLE_ROUTING` into `enable_routing`).
//!
//! Design: `choose_chain` runs once per span, so [`Router::new`] does all the work up front — it
//! groups the config's backends by chain, drops disabled entries, applies `max_tier`, normalises
//! the route keys and formats the reasons it can — and a decision shares the chain name and
//! backend list with the router through `Arc`s. The cost is that a router is a snapshot: build a
//! new one when the configuration changes.
//!
//! This crate knows the configuration types and nothing else: no HTTP, no SQLite, no tokio, no
//! provider. A backend here is a [`BackendSpec`](enrich_config::BackendSpec); turning it into a
//! working adapter is the pipeline's job.
//!
//! ```
//! use enrich_config::{BackendSpec, EnrichmentConfig};
//! use enrich_router::{Router, SliceView};
//!
//! # fn config(backends: Vec<BackendSpec>, routes: &[(&str, &str)]) -> EnrichmentConfig {
//! #     EnrichmentConfig {
//! #         default_chain: "default".into(),
//! #         batch_size: 5,
//! #         concurrency: 1,
//! #         cooldown_seconds: 0,
//! #         max_retries_per_span: 3,
//! #         max_failures_per_span: 3,
//! #         enforce_latin1_enrichment: false,
//! #         enable_routing: true,
//! #         routes: routes.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
//! #         max_tier: None,
//! #         on_failure: Default::default(),
//! #         prompt: Default::default(),
//! #         backends,
//! #         ..EnrichmentConfig::default()
//! #     }
//! # }
//! let config = config(
//!     vec![
//!         BackendSpec::new("local", "default", "ollama", "qwen2.5:7b-instruct"),
//!         BackendSpec::new("writer", "docs-chain", "ollama", "qwen2.5:14b-instruct"),
//!     ],
//!     &[("docs", "docs-chain")],
//! );
//! let router = Router::new(&config);
//! let span = SliceView { slice_type: Some("Markdown"), ..SliceView::default() };
//! let decision = router.choose_chain(&span, None)?;
//! assert_eq!(decision.slice_type, "docs");
//! assert_eq!(&*decision.chain_name, "docs-chain");
//! assert_eq!(decision.reasons, [r#"route docs -> "docs-chain""#]);
//! # Ok::<(), enrich_router::RouterError>(())
//! ```

mod decision;
mod error;
mod router;
mod slice;

pub use decision::RouteDecision;
pub use error::RouterError;
pub use router::Router;
pub use slice::{SliceView, UNKNOWN_SLICE_TYPE, normalize_slice_type};

//! Integration tests of enrich-router: the routing rules as a user of `enrich plan` sees them.

use enrich_config::{BackendSpec, EnrichmentConfig};
use enrich_router::{RouteDecision, Router, RouterError, SliceView, normalize_slice_type};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An enabled backend `name` of `chain`, untiered.
fn backend(chain: &str, name: &str) -> BackendSpec {
    BackendSpec::new(name, chain, "ollama", format!("model-of-{name}"))
}

fn tiered(chain: &str, name: &str, tier: &str) -> BackendSpec {
    BackendSpec {
        routing_tier: Some(tier.to_owned()),
        ..backend(chain, name)
    }
}

fn disabled(chain: &str, name: &str) -> BackendSpec {
    BackendSpec {
        enabled: false,
        ..backend(chain, name)
    }
}

/// A config with default chain `default`, routing on, no `max_tier`.
fn config(backends: Vec<BackendSpec>, routes: &[(&str, &str)]) -> EnrichmentConfig {
    EnrichmentConfig {
        default_chain: "default".to_owned(),
        batch_size: 5,
        concurrency: 1,
        cooldown_seconds: 0,
        max_retries_per_span: 3,
        max_failures_per_span: 3,
        enforce_latin1_enrichment: false,
        enable_routing: true,
        routes: routes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        max_tier: None,
        on_failure: Default::default(),
        prompt: Default::default(),
        backends,
        ..EnrichmentConfig::default()
    }
}

fn router(config: &EnrichmentConfig) -> Router {
    Router::new(config)
}

fn slice(slice_type: Option<&str>) -> SliceView<'_> {
    SliceView {
        slice_type,
        ..SliceView::default()
    }
}

/// What a decision is checked against.
struct Want<'a> {
    slice_type: &'a str,
    chain: &'a str,
    backends: &'a [&'a str],
    tier: Option<&'a str>,
    reasons: &'a [&'a str],
}

fn summary(d: &RouteDecision) -> (&str, &str, Vec<&str>, Option<&str>, Vec<&str>) {
    (
        d.slice_type.as_str(),
        &*d.chain_name,
        d.backends.iter().map(|b| b.name.as_str()).collect(),
        d.routing_tier.as_deref(),
        d.reasons.iter().map(String::as_str).collect(),
    )
}

/// Routes a span of `slice_type` with `override_chain` and compares the whole decision.
fn check(router: &Router, slice_type: Option<&str>, override_chain: Option<&str>, want: Want<'_>) {
    let decision = router
        .choose_chain(&slice(slice_type), override_chain)
        .unwrap_or_else(|e| panic!("{slice_type:?} / {override_chain:?}: unexpected error: {e}"));
    assert_eq!(
        summary(&decision),
        (
            want.slice_type,
            want.chain,
            want.backends.to_vec(),
            want.tier,
            want.reasons.to_vec()
        ),
        "slice type {slice_type:?}, override {override_chain:?}"
    );
}

/// Default `d1`, `code-chain` `c1`, `docs-chain` `x1`; routes code and docs.
fn three_chains() -> EnrichmentConfig {
    config(
        vec![
            backend("default", "d1"),
            backend("code-chain", "c1"),
            backend("docs-chain", "x1"),
        ],
        &[("code", "code-chain"), ("docs", "docs-chain")],
    )
}

// ---------------------------------------------------------------------------------------------
// Slice type normalisation
// ---------------------------------------------------------------------------------------------

#[test]
fn slice_types_normalise_like_llmc() {
    fn check(raw: Option<&str>, want: &str) {
        assert_eq!(normalize_slice_type(raw), want, "raw {raw:?}");
    }
    for lang in [
        "python",
        "javascript",
        "typescript",
        "java",
        "rust",
        "go",
        "c",
        "cpp",
        "c++",
    ] {
        check(Some(lang), "code");
    }
    for prose in ["markdown", "md", "rst", "text", "txt", "documentation"] {
        check(Some(prose), "docs");
    }
    check(Some("erp"), "erp_product");
    check(Some("product"), "erp_product");
    check(Some("plan"), "project_plan");
    check(Some("planning"), "project_plan");
    // Trimmed and lowercased, aliases included.
    check(Some("  Python\n"), "code");
    check(Some("C++"), "code");
    check(Some("MarkDown"), "docs");
    check(Some("CONFIG"), "config");
    check(Some("ÉTUDE"), "étude");
    // Missing or blank.
    check(None, "unknown");
    check(Some(""), "unknown");
    check(Some(" \t "), "unknown");
    // Anything else is kept.
    for kept in [
        "code",
        "docs",
        "config",
        "test",
        "erp_product",
        "unknown",
        "data set",
    ] {
        check(Some(kept), kept);
    }
}

// ---------------------------------------------------------------------------------------------
// Precedence: override > route > default
// ---------------------------------------------------------------------------------------------

#[test]
fn override_beats_route_beats_default() {
    let cfg = three_chains();
    let r = router(&cfg);
    check(
        &r,
        Some("python"),
        Some("docs-chain"),
        Want {
            slice_type: "code",
            chain: "docs-chain",
            backends: &["x1"],
            tier: None,
            reasons: &[r#"override -> "docs-chain""#],
        },
    );
    check(
        &r,
        Some("python"),
        None,
        Want {
            slice_type: "code",
            chain: "code-chain",
            backends: &["c1"],
            tier: None,
            reasons: &[r#"route code -> "code-chain""#],
        },
    );
    check(
        &r,
        Some("Markdown"),
        None,
        Want {
            slice_type: "docs",
            chain: "docs-chain",
            backends: &["x1"],
            tier: None,
            reasons: &[r#"route docs -> "docs-chain""#],
        },
    );
    check(
        &r,
        Some("config"),
        None,
        Want {
            slice_type: "config",
            chain: "default",
            backends: &["d1"],
            tier: None,
            reasons: &[r#"no route for config; using default chain "default""#],
        },
    );
    check(
        &r,
        None,
        None,
        Want {
            slice_type: "unknown",
            chain: "default",
            backends: &["d1"],
            tier: None,
            reasons: &[r#"no route for unknown; using default chain "default""#],
        },
    );
}

#[test]
fn route_keys_are_normalised_and_canonical_keys_win() {
    let cfg = config(
        vec![
            backend("default", "d1"),
            backend("a", "a1"),
            backend("b", "b1"),
            backend("c", "c1"),
        ],
        &[
            ("Python", "a"),
            ("code", "b"),
            (" Markdown ", "c"),
            ("md", "a"),
        ],
    );
    let r = router(&cfg);
    let chain_of = |t: &str| r.choose_chain(&slice(Some(t)), None).unwrap().chain_name;
    // `code` and `Python` both key `code`: the canonical spelling wins.
    assert_eq!(&*chain_of("rust"), "b");
    // ` Markdown ` and `md` both key `docs`: neither is canonical, the first in key order wins.
    assert_eq!(&*chain_of("docs"), "c");
}

// ---------------------------------------------------------------------------------------------
// Routing off
// ---------------------------------------------------------------------------------------------

#[test]
fn routing_off_ignores_routes_but_not_overrides() {
    let mut off_in_config = three_chains();
    off_in_config.enable_routing = false;
    let r = router(&off_in_config);
    let reason = r#"routing disabled (enable_routing = false); using default chain "default""#;
    for t in ["python", "docs", "config"] {
        check(
            &r,
            Some(t),
            None,
            Want {
                slice_type: &normalize_slice_type(Some(t)),
                chain: "default",
                backends: &["d1"],
                tier: None,
                reasons: &[reason],
            },
        );
    }
    check(
        &r,
        Some("docs"),
        Some("code-chain"),
        Want {
            slice_type: "docs",
            chain: "code-chain",
            backends: &["c1"],
            tier: None,
            reasons: &[r#"override -> "code-chain""#],
        },
    );
}

/// LLMC's switch. Loading the configuration resolves it into `enable_routing`; the router must
/// not read it a second time.
const DISABLE_ROUTING: &str = "LLMC_ENRICH_DISABLE_ROUTING";

#[test]
fn the_router_reads_no_environment() {
    // A variable is set for a whole process: without it, this test runs itself again in a
    // child process that has it, where the routes must still apply.
    if std::env::var_os(DISABLE_ROUTING).is_none() {
        let name = "the_router_reads_no_environment";
        let exe = std::env::current_exe().expect("the test binary's path");
        let child = std::process::Command::new(exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(DISABLE_ROUTING, "1")
            .output()
            .expect("the test binary runs again");
        let stdout = String::from_utf8_lossy(&child.stdout);
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert!(
            child.status.success() && stdout.contains("1 passed"),
            "the child run with {DISABLE_ROUTING}=1 failed:\n{stdout}\n{stderr}"
        );
        return;
    }
    check(
        &Router::new(&three_chains()),
        Some("docs"),
        None,
        Want {
            slice_type: "docs",
            chain: "docs-chain",
            backends: &["x1"],
            tier: None,
            reasons: &[r#"route docs -> "docs-chain""#],
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Fallbacks and errors
// ---------------------------------------------------------------------------------------------

#[test]
fn unusable_chains_fall_back_to_default_with_a_reason() {
    let cfg = config(
        vec![
            backend("default", "d1"),
            disabled("docs-chain", "x1"),
            disabled("docs-chain", "x2"),
        ],
        &[("docs", "docs-chain"), ("code", "no-such-chain")],
    );
    let r = router(&cfg);
    let cases: [(&str, Option<&str>, &str); 4] = [
        (
            "docs",
            None,
            r#"route docs -> "docs-chain" has no enabled backend; using default chain "default""#,
        ),
        (
            "code",
            None,
            r#"route code -> "no-such-chain" does not exist; using default chain "default""#,
        ),
        (
            "code",
            Some("docs-chain"),
            r#"override -> "docs-chain" has no enabled backend; using default chain "default""#,
        ),
        (
            "code",
            Some("typo"),
            r#"override -> "typo" does not exist; using default chain "default""#,
        ),
    ];
    for (slice_type, override_chain, reason) in cases {
        check(
            &r,
            Some(slice_type),
            override_chain,
            Want {
                slice_type,
                chain: "default",
                backends: &["d1"],
                tier: None,
                reasons: &[reason],
            },
        );
    }
}

#[test]
fn default_chain_without_enabled_backend_is_an_error_naming_it() {
    fn check(cfg: &EnrichmentConfig, want: RouterError, message_has: &[&str]) {
        let r = router(cfg);
        // Every path that ends on the default chain fails the same way.
        for (slice_type, override_chain) in [("config", None), ("docs", None), ("x", Some("typo"))]
        {
            let err = r
                .choose_chain(&slice(Some(slice_type)), override_chain)
                .unwrap_err();
            assert_eq!(err, want);
            let message = err.to_string();
            for part in message_has {
                assert!(message.contains(part), "{message:?} lacks {part:?}");
            }
        }
        // A usable route or override does not need the default chain.
        let routed = r.choose_chain(&slice(Some("code")), None).unwrap();
        assert_eq!(&*routed.chain_name, "code-chain");
        let overridden = r.choose_chain(&slice(None), Some("code-chain")).unwrap();
        assert_eq!(&*overridden.chain_name, "code-chain");
    }
    let routes = [("code", "code-chain"), ("docs", "docs-chain")];
    check(
        &config(
            vec![disabled("default", "d1"), backend("code-chain", "c1")],
            &routes,
        ),
        RouterError::DefaultChainDisabled {
            chain: "default".into(),
        },
        &[
            r#"default chain "default" has no enabled backend"#,
            "enabled = true",
        ],
    );
    check(
        &config(vec![backend("code-chain", "c1")], &routes),
        RouterError::DefaultChainMissing {
            chain: "default".into(),
        },
        &[
            r#"default chain "default" has no backend entry"#,
            "default_chain",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Backends: enabled only, in order, max_tier
// ---------------------------------------------------------------------------------------------

#[test]
fn only_enabled_backends_in_config_order() {
    let cfg = config(
        vec![
            backend("default", "a"),
            backend("other", "o1"),
            disabled("default", "b"),
            backend("default", "c"),
            backend("other", "o2"),
            backend("default", "d"),
            disabled("default", "e"),
        ],
        &[("docs", "other")],
    );
    let r = router(&cfg);
    check(
        &r,
        Some("code"),
        None,
        Want {
            slice_type: "code",
            chain: "default",
            backends: &["a", "c", "d"],
            tier: None,
            reasons: &[r#"no route for code; using default chain "default""#],
        },
    );
    check(
        &r,
        Some("docs"),
        None,
        Want {
            slice_type: "docs",
            chain: "other",
            backends: &["o1", "o2"],
            tier: None,
            reasons: &[r#"route docs -> "other""#],
        },
    );
}

#[test]
fn max_tier_keeps_matching_backends_or_all_when_none_match() {
    fn check_tier(max_tier: &str, backends: &[&str], tier: Option<&str>, tier_reason: &str) {
        let mut cfg = config(
            vec![
                backend("default", "untiered"),
                tiered("default", "big", "14b"),
                tiered("default", "small", "7b"),
                BackendSpec {
                    enabled: false,
                    ..tiered("default", "off", "14b")
                },
                tiered("default", "big2", "14b"),
            ],
            &[("docs", "docs-chain")],
        );
        cfg.max_tier = Some(max_tier.to_owned());
        check(
            &router(&cfg),
            Some("code"),
            None,
            Want {
                slice_type: "code",
                chain: "default",
                backends,
                tier,
                reasons: &[
                    r#"no route for code; using default chain "default""#,
                    tier_reason,
                ],
            },
        );
    }
    check_tier(
        "14b",
        &["big", "big2"],
        Some("14b"),
        r#"max_tier 14b: kept 2 of 4 enabled backends of chain "default""#,
    );
    // Untiered backends count as 7b.
    check_tier(
        "7b",
        &["untiered", "small"],
        Some("7b"),
        r#"max_tier 7b: kept 2 of 4 enabled backends of chain "default""#,
    );
    check_tier(
        "nano",
        &["untiered", "big", "small", "big2"],
        None,
        r#"max_tier nano: no enabled backend of chain "default" has tier nano; keeping all 4"#,
    );
}

#[test]
fn max_tier_applies_after_a_fallback_too() {
    let mut cfg = config(
        vec![
            backend("default", "d7"),
            tiered("default", "d14", "14b"),
            disabled("docs-chain", "x1"),
        ],
        &[("docs", "docs-chain")],
    );
    cfg.max_tier = Some("14b".into());
    check(
        &router(&cfg),
        Some("docs"),
        None,
        Want {
            slice_type: "docs",
            chain: "default",
            backends: &["d14"],
            tier: Some("14b"),
            reasons: &[
                r#"route docs -> "docs-chain" has no enabled backend; using default chain "default""#,
                r#"max_tier 14b: kept 1 of 2 enabled backends of chain "default""#,
            ],
        },
    );
}

// ---------------------------------------------------------------------------------------------
// JSON (`enrich plan --json`)
// ---------------------------------------------------------------------------------------------

#[test]
fn decision_serialises_without_backend_options() {
    let mut secret = tiered("docs-chain", "writer", "14b");
    secret.url = Some("http://gpu:11434".into());
    secret
        .options
        .insert("api_key".into(), json!("sk-planted-123"));
    let mut cfg = config(
        vec![
            backend("default", "d1"),
            secret,
            backend("docs-chain", "spare"),
        ],
        &[("docs", "docs-chain")],
    );
    cfg.max_tier = Some("14b".into());
    let decision = router(&cfg)
        .choose_chain(&slice(Some("rst")), None)
        .unwrap();
    let value = serde_json::to_value(&decision).unwrap();
    assert_eq!(
        value,
        json!({
            "slice_type": "docs",
            "chain_name": "docs-chain",
            "backends": [{
                "name": "writer",
                "provider": "ollama",
                "model": "model-of-writer",
                "url": "http://gpu:11434",
                "tier": "14b",
            }],
            "routing_tier": "14b",
            "reasons": [
                "route docs -> \"docs-chain\"",
                "max_tier 14b: kept 1 of 2 enabled backends of chain \"docs-chain\"",
            ],
        })
    );
    assert!(!value.to_string().contains("sk-planted-123"));
}

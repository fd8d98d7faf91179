//! The reliability keys: circuit breaker, budgets, corrective re-asks, schedule, host pools,
//! rate limits and prices.

use enrich_config::{BudgetConfig, CircuitBreakerConfig, EnrichmentConfig, Price, Schedule};

use crate::support::{jail, load_error, load_repo, same, write};

/// Loads `toml` as `llmc.toml`.
fn loaded(toml: &str) -> EnrichmentConfig {
    let mut config = None;
    jail(|jail| {
        write(jail, "llmc.toml", toml)?;
        config = Some(load_repo(jail)?.config);
        Ok(())
    });
    config.expect("loaded")
}

/// Loads `toml` as `llmc.toml` and compares the error with `want` (`FILE` = the file's path).
fn check_error(toml: &str, want: &str) {
    jail(|jail| {
        write(jail, "llmc.toml", toml)?;
        let path = jail.directory().join("llmc.toml");
        let want = want.replace("FILE", &path.display().to_string());
        same(toml, load_error(jail)?, want)
    });
}

#[test]
fn defaults_are_one_reask_per_span_schedule_a_30s_breaker_and_no_budget() {
    let config = EnrichmentConfig::default();
    assert_eq!(config.corrective_reasks, 1);
    assert_eq!(config.schedule, Schedule::PerSpan);
    assert_eq!(config.circuit_breaker, CircuitBreakerConfig::default());
    assert_eq!(config.circuit_breaker.failures_to_open, 3);
    assert_eq!(config.circuit_breaker.cooldown_seconds, 30.0);
    assert!(config.budget.is_unlimited());
    let backend = &config.backends[0];
    assert!(backend.urls.is_empty());
    assert_eq!(backend.hosts(), vec!["http://localhost:11434"]);
    assert_eq!(
        (
            backend.requests_per_minute,
            backend.tokens_per_minute,
            backend.price
        ),
        (None, None, None)
    );
}

#[test]
fn the_reliability_tables_are_read_with_llmc_style_lenient_scalars() {
    let config = loaded(
        r#"
[enrichment]
corrective_reasks = "0"
schedule = "By_Tier"

[enrichment.circuit_breaker]
failures_to_open = 5
cooldown_seconds = "2.5"
max_cooldown_seconds = 60

[enrichment.budget]
max_tokens_per_run = 1000
max_cost_per_run = "0.5"
max_wall_seconds = 90
max_tokens_per_day = 5000
max_cost_per_day = 2
"#,
    );
    assert_eq!(config.corrective_reasks, 0);
    assert_eq!(config.schedule, Schedule::ByTier);
    assert_eq!(
        config.circuit_breaker,
        CircuitBreakerConfig {
            failures_to_open: 5,
            cooldown_seconds: 2.5,
            max_cooldown_seconds: 60.0,
        }
    );
    assert_eq!(
        config.budget,
        BudgetConfig {
            max_tokens_per_run: Some(1000),
            max_cost_per_run: Some(0.5),
            max_wall_seconds: Some(90.0),
            max_tokens_per_day: Some(5000),
            max_cost_per_day: Some(2.0),
            batch_discount: 0.5,
        }
    );
}

#[test]
fn a_backend_lists_a_host_pool_rate_limits_and_a_price() {
    let config = loaded(
        r#"
[[enrichment.chain]]
name = "pool"
url = "http://gpu1:11434"
urls = ["http://gpu2:11434", "http://gpu1:11434", " ", "http://gpu3:11434"]
requests_per_minute = 60
tokens_per_minute = "90000"
price_input_per_1m = 0.15
price_output_per_1m = "0.6"

[[enrichment.chain]]
name = "single"
urls = "http://solo:11434"
price_output_per_1m = 2
"#,
    );
    let pool = &config.backends[0];
    assert_eq!(pool.url.as_deref(), Some("http://gpu1:11434"));
    assert_eq!(
        pool.hosts(),
        vec![
            "http://gpu1:11434",
            "http://gpu2:11434",
            "http://gpu3:11434"
        ]
    );
    assert_eq!(
        pool.for_host("http://gpu2:11434").hosts(),
        vec!["http://gpu2:11434"]
    );
    assert_eq!(pool.requests_per_minute, Some(60));
    assert_eq!(pool.tokens_per_minute, Some(90_000));
    assert_eq!(
        pool.price,
        Some(Price {
            input_per_1m: 0.15,
            output_per_1m: 0.6
        })
    );
    let single = &config.backends[1];
    assert_eq!(single.url.as_deref(), Some("http://solo:11434"));
    assert!(single.urls.is_empty(), "one host is not a pool");
    let price = single.price.expect("a price");
    assert_eq!(price.input_per_1m, 0.0);
    assert!((price.cost(1_000_000, 500_000) - 1.0).abs() < 1e-9);
}

#[test]
fn bad_reliability_values_name_the_key_and_the_fix() {
    for (toml, want) in [
        (
            "[enrichment]\nschedule = \"round-robin\"\n",
            "invalid value for enrichment.schedule in FILE, line 2: \"round-robin\" (expected \"per-span\" or \"by-tier\")",
        ),
        (
            "[enrichment.circuit_breaker]\ncooldown_seconds = 0\n",
            "invalid value for enrichment.circuit_breaker.cooldown_seconds in FILE, line 2: 0 (expected a positive number of seconds)",
        ),
        (
            "[enrichment.circuit_breaker]\ncooldown_seconds = 60\nmax_cooldown_seconds = 10\n",
            "invalid value for enrichment.circuit_breaker.max_cooldown_seconds in FILE, line 3: 10 (expected at least cooldown_seconds, 60)",
        ),
        (
            "[enrichment.budget]\nmax_tokens_per_run = 0\n",
            "invalid value for enrichment.budget.max_tokens_per_run in FILE, line 2: 0 (expected at least 1 token; remove the key for no limit)",
        ),
        (
            "[enrichment.budget]\nmax_cost_per_day = -1\n",
            "invalid value for enrichment.budget.max_cost_per_day in FILE, line 2: -1 (expected a positive cost; remove the key for no limit)",
        ),
        (
            "[enrichment.budget]\nmax_cost_per_run = \"cheap\"\n",
            "invalid value for enrichment.budget.max_cost_per_run in FILE, line 2: \"cheap\" (expected a number)",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\nrequests_per_minute = 0\n",
            "invalid value for requests_per_minute of enrichment.chain entry 1 (\"a\") in FILE, line 3: 0 (expected at least 1; remove the key for no limit)",
        ),
        (
            "[[enrichment.chain]]\nname = \"a\"\nprice_input_per_1m = -0.1\n",
            "invalid value for price_input_per_1m of enrichment.chain entry 1 (\"a\") in FILE, line 3: -0.1 (expected a price of 0 or more per million tokens)",
        ),
    ] {
        check_error(toml, want);
    }
}

#[test]
fn unknown_keys_of_the_new_tables_are_reported_as_ignored() {
    jail(|jail| {
        write(
            jail,
            "llmc.toml",
            "[enrichment.circuit_breaker]\nfailures = 2\n[enrichment.budget]\nmax_dollars = 3\n",
        )?;
        let loaded = load_repo(jail)?;
        let keys: Vec<(&str, Option<usize>)> = loaded
            .ignored_keys()
            .iter()
            .map(|k| (k.key.as_str(), k.line))
            .collect();
        same(
            "ignored keys",
            keys,
            vec![
                ("enrichment.circuit_breaker.failures", Some(2)),
                ("enrichment.budget.max_dollars", Some(4)),
            ],
        )
    });
}

//! The work-order keys: `code_first`, `[enrichment.path_weights]`, the starvation ratios, and
//! LLMC's `[enrichment.runner]` spelling of them.

use enrich_config::{
    DEFAULT_PATH_WEIGHT, EnrichmentConfig, LoadedConfig, PathWeights, PriorityClass, Source,
    WorkOrder,
};

use crate::support::{jail, load_error, load_repo, same, write};

/// LLMC's path weights, as LLMC's own `llmc.toml` ships them.
const LLMC_WEIGHTS: &[(&str, u8)] = &[
    ("src/**", 1),
    ("lib/**", 1),
    ("app/**", 1),
    ("core/**", 1),
    ("pkg/**", 2),
    ("internal/**", 2),
    ("cmd/**", 2),
    ("**/tests/**", 6),
    ("**/test/**", 6),
    ("**/__tests__/**", 6),
    ("*_test.py", 6),
    ("test_*.py", 6),
    ("*.test.ts", 6),
    ("*.spec.js", 6),
    ("*.md", 7),
    ("examples/**", 7),
    ("docs/**", 8),
    (".github/**", 9),
    ("vendor/**", 10),
    ("node_modules/**", 10),
    ("third_party/**", 10),
];

/// The work order of a repository without a config file.
pub(crate) fn builtin_work_order() -> WorkOrder {
    WorkOrder {
        code_first: true,
        path_weights: PathWeights::new(LLMC_WEIGHTS.iter().copied()).expect("LLMC's weights"),
        starvation_ratio_high: 5,
        starvation_ratio_low: 1,
    }
}

/// Loads `toml` as `llmc.toml`.
fn loaded(toml: &str) -> LoadedConfig {
    let mut config = None;
    jail(|jail| {
        write(jail, "llmc.toml", toml)?;
        config = Some(load_repo(jail)?);
        Ok(())
    });
    config.expect("loaded")
}

/// Checks the weight and winning glob of each path under `weights`.
fn check_weights(weights: &PathWeights, cases: &[(&str, u8, Option<&str>)]) {
    for &(path, weight, glob) in cases {
        let decision = weights.weigh(path);
        assert_eq!((decision.weight, decision.glob), (weight, glob), "{path}");
    }
}

#[test]
fn without_a_file_llmc_weights_apply_code_first_with_five_to_one() {
    assert_eq!(EnrichmentConfig::default().work_order, builtin_work_order());
}

#[test]
fn the_most_specific_glob_wins_then_the_higher_weight() {
    let weights = builtin_work_order().path_weights;
    check_weights(
        &weights,
        &[
            ("src/enrich/run.rs", 1, Some("src/**")),
            ("core/x.py", 1, Some("core/**")),
            ("cmd/main.go", 2, Some("cmd/**")),
            // `/tests/` has more literal characters than `src/`.
            ("src/tests/test_run.py", 6, Some("**/tests/**")),
            // A `**` component matches no directory too.
            ("tests/test_run.py", 6, Some("**/tests/**")),
            ("src/run_test.py", 6, Some("*_test.py")),
            ("README.md", 7, Some("*.md")),
            // `*` crosses `/`, as in LLMC's fnmatch; `docs/` beats `.md`.
            ("guide/intro.md", 7, Some("*.md")),
            ("docs/intro.md", 8, Some("docs/**")),
            (".github/CONTRIBUTING.md", 9, Some(".github/**")),
            ("vendor/dep/lib.go", 10, Some("vendor/**")),
            ("setup.py", DEFAULT_PATH_WEIGHT, None),
            // Windows separators count as `/`.
            ("src\\win\\main.rs", 1, Some("src/**")),
            // Case matters.
            ("SRC/main.rs", DEFAULT_PATH_WEIGHT, None),
        ],
    );

    // Equally specific: the higher weight (LLMC's rule), then the glob that sorts first.
    let ties = PathWeights::new([("a*", 2), ("*a", 8), ("[ab]b", 3), ("b?", 3)]).expect("valid");
    check_weights(
        &ties,
        &[
            ("aa", 8, Some("*a")),
            ("ab", 3, Some("[ab]b")),
            ("bb", 3, Some("[ab]b")),
        ],
    );
}

#[test]
fn priority_classes_split_weights_three_three_four() {
    let classes: Vec<PriorityClass> = (1..=10).map(PriorityClass::of).collect();
    use PriorityClass::{High, Low, Medium};
    assert_eq!(
        classes,
        [High, High, High, Medium, Medium, Medium, Low, Low, Low, Low]
    );
    assert_eq!(
        [High, Medium, Low].map(PriorityClass::as_str),
        ["high", "medium", "low"]
    );
    assert!(Low.is_low() && !Medium.is_low());
}

#[test]
fn an_llmc_toml_with_runner_keys_and_path_weights_is_read_unchanged() {
    let loaded = loaded(
        r#"
[enrichment]
default_chain = "athena"
batch_size = 50

[enrichment.runner]
code_first_default = false
starvation_ratio_high = 3
starvation_ratio_low = "2"
max_concurrent = 4
max_concurrent_high_priority = 4

[enrichment.path_weights]
"src/**"        = 1
"**/tests/**"   = 6
"docs/**"       = 8
"*.md"          = "7"

[[enrichment.chain]]
name = "athena"
chain = "athena"
model = "qwen2.5:7b-instruct"
"#,
    );
    let order = &loaded.config.work_order;
    assert!(!order.code_first);
    assert_eq!(
        (order.starvation_ratio_high, order.starvation_ratio_low),
        (3, 2)
    );
    // The file's table replaces LLMC's built-in one whole.
    assert_eq!(
        order.path_weights.iter().collect::<Vec<_>>(),
        [
            ("**/tests/**", 6),
            ("*.md", 7),
            ("docs/**", 8),
            ("src/**", 1)
        ]
    );
    check_weights(
        &order.path_weights,
        &[("vendor/x.go", DEFAULT_PATH_WEIGHT, None)],
    );
    // LLMC's own runner keys (its concurrency caps) pass in silence.
    assert_eq!(loaded.ignored_keys(), []);
    let settings: Vec<(&str, String)> = loaded
        .provenance()
        .iter()
        .filter(|s| {
            s.key.starts_with("enrichment.code_first")
                || s.key.starts_with("enrichment.starvation")
                || s.key.starts_with("enrichment.path_weights")
        })
        .map(|s| {
            let from_file = matches!(&s.source, Source::File(p) if p.ends_with("llmc.toml"));
            (s.key.as_str(), format!("{} {from_file}", s.value))
        })
        .collect();
    assert_eq!(
        settings,
        [
            ("enrichment.code_first", "false true".to_owned()),
            ("enrichment.starvation_ratio_high", "3 true".to_owned()),
            ("enrichment.starvation_ratio_low", "2 true".to_owned()),
            ("enrichment.path_weights.**/tests/**", "6 true".to_owned()),
            ("enrichment.path_weights.*.md", "7 true".to_owned()),
            ("enrichment.path_weights.docs/**", "8 true".to_owned()),
            ("enrichment.path_weights.src/**", "1 true".to_owned()),
        ]
    );
}

#[test]
fn the_enrichment_spelling_wins_over_the_runner_spelling() {
    let order = loaded(
        "[enrichment]\ncode_first = true\nstarvation_ratio_low = 4\n\
         [enrichment.runner]\ncode_first_default = false\nstarvation_ratio_high = 9\n\
         starvation_ratio_low = 2\n",
    )
    .config
    .work_order;
    assert!(order.code_first);
    assert_eq!(
        (order.starvation_ratio_high, order.starvation_ratio_low),
        (9, 4),
        "runner's high (not set in [enrichment]) applies; [enrichment]'s low wins"
    );
}

#[test]
fn an_empty_path_weights_table_weighs_every_path_alike() {
    let order = loaded("[enrichment]\ncode_first = \"yes\"\n[enrichment.path_weights]\n")
        .config
        .work_order;
    assert!(order.code_first);
    assert!(order.path_weights.is_empty());
    check_weights(
        &order.path_weights,
        &[("src/a.rs", DEFAULT_PATH_WEIGHT, None)],
    );
}

#[test]
fn bad_work_order_values_name_the_key_and_the_fix() {
    for (toml, want) in [
        (
            "[enrichment.path_weights]\n\"vendor/**\" = 11\n",
            "invalid value for enrichment.path_weights.vendor/** in FILE, line 2: weight 11 (expected a whole number from 1, most important, to 10, least)",
        ),
        (
            "[enrichment.path_weights]\n\"src/**\" = 0\n",
            "invalid value for enrichment.path_weights.src/** in FILE, line 2: weight 0 (expected a whole number from 1, most important, to 10, least)",
        ),
        (
            "[enrichment.path_weights]\n\"src/**\" = \"high\"\n",
            "invalid value for enrichment.path_weights.src/** in FILE, line 2: \"high\" (expected a whole number)",
        ),
        (
            "[enrichment.path_weights]\n\"src/[a\" = 1\n",
            "invalid value for enrichment.path_weights.src/[a in FILE, line 2: not a valid glob: unclosed character class; missing ']'",
        ),
        (
            "[enrichment]\nstarvation_ratio_high = 0\n",
            "invalid value for enrichment.starvation_ratio_high in FILE, line 2: 0 (expected at least 1: after every starvation_ratio_high spans of high and medium priority, starvation_ratio_low low-priority spans are taken)",
        ),
        (
            "[enrichment.runner]\nstarvation_ratio_low = 0\n",
            "invalid value for enrichment.runner.starvation_ratio_low in FILE, line 2: 0 (expected at least 1: after every starvation_ratio_high spans of high and medium priority, starvation_ratio_low low-priority spans are taken)",
        ),
        (
            "[enrichment.runner]\ncode_first_default = \"maybe\"\n",
            "invalid value for enrichment.runner.code_first_default in FILE, line 2: \"maybe\" (expected true/false, 1/0, yes/no or on/off)",
        ),
    ] {
        jail(|jail| {
            write(jail, "llmc.toml", toml)?;
            let path = jail.directory().join("llmc.toml");
            let want = want.replace("FILE", &path.display().to_string());
            same(toml, load_error(jail)?, want)
        });
    }
}

#[test]
fn path_weights_serialise_as_their_table_and_check_what_they_read() {
    let weights = PathWeights::new([("src/**", 1), ("docs/**", 8)]).expect("valid");
    let json = serde_json::to_value(&weights).expect("serialise");
    assert_eq!(json, serde_json::json!({"docs/**": 8, "src/**": 1}));
    let back: PathWeights = serde_json::from_value(json).expect("deserialise");
    assert_eq!(back, weights);

    let bad = serde_json::from_value::<PathWeights>(serde_json::json!({"x": 12}));
    let message = bad.expect_err("weight 12").to_string();
    assert!(
        message.starts_with("path weight \"x\": weight 12"),
        "{message}"
    );

    // A fingerprint changes with any weight and is stable otherwise.
    let same_rules = PathWeights::new([("docs/**", 8), ("src/**", 1)]).expect("valid");
    let changed = PathWeights::new([("src/**", 1), ("docs/**", 9)]).expect("valid");
    assert_eq!(weights.fingerprint(), same_rules.fingerprint());
    assert_ne!(weights.fingerprint(), changed.fingerprint());
}

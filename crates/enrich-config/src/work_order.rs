//! The work order: which pending spans a run takes first (`code_first`, `[enrichment.path_weights]`
//! and the starvation ratios), and the glob matcher that weighs a path.
//!
//! A path's weight is that of the most specific glob of `[enrichment.path_weights]` matching it:
//! the glob with the most literal characters (characters that are not part of a `*`, `?`,
//! `[...]` or `{...}` wildcard). On a tie the higher weight wins (LLMC's "pessimistic" rule),
//! then the glob that sorts first. A path no glob matches weighs [`DEFAULT_PATH_WEIGHT`]. Globs
//! match the whole repo-relative path with `/` separators, case-sensitively; `*` also matches
//! `/` (as Python's `fnmatch`, which LLMC uses), and a `**` path component matches any number
//! of directories, none included (`**/tests/**` matches `tests/a.py`, which `fnmatch` does not).

use std::collections::BTreeMap;
use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::lenient::{Flag, Whole};
use crate::raw::RawEnrichment;
use crate::{Setting, Source};

/// The most important weight.
pub const MIN_PATH_WEIGHT: u8 = 1;
/// The least important weight.
pub const MAX_PATH_WEIGHT: u8 = 10;
/// The weight of a path no glob matches (LLMC's default).
pub const DEFAULT_PATH_WEIGHT: u8 = 5;

/// The priority class of a weight: 1–3 high, 4–6 medium, 7–10 low.
///
/// High and medium spans share the first queue of a code-first run; low spans wait in the second
/// and are let in by the starvation ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityClass {
    /// Weights 1–3: the code people search for.
    High,
    /// Weights 4–6: scheduled together with high.
    Medium,
    /// Weights 7–10: docs, examples, vendored code.
    Low,
}

impl PriorityClass {
    /// The class of `weight` (out-of-range weights count as the nearest class).
    pub fn of(weight: u8) -> Self {
        match weight {
            ..=3 => Self::High,
            4..=6 => Self::Medium,
            _ => Self::Low,
        }
    }

    /// The name shown by `enrich plan`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }

    /// Whether spans of this class wait in the low-priority queue.
    pub fn is_low(self) -> bool {
        self == Self::Low
    }
}

/// The weights of the first queue (high and medium) of a code-first run.
pub const FIRST_QUEUE_WEIGHTS: std::ops::RangeInclusive<u8> = MIN_PATH_WEIGHT..=6;
/// The weights of the low-priority queue of a code-first run.
pub const LOW_QUEUE_WEIGHTS: std::ops::RangeInclusive<u8> = 7..=MAX_PATH_WEIGHT;

/// The resolved work-order settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrder {
    /// Take spans by weight (`code_first`, LLMC's `[enrichment.runner] code_first_default`);
    /// off: in `spans.id` order.
    pub code_first: bool,
    /// Glob → weight.
    pub path_weights: PathWeights,
    /// After this many spans of the first queue (high and medium)…
    pub starvation_ratio_high: u32,
    /// …this many spans of the low queue are taken.
    pub starvation_ratio_low: u32,
}

/// Why a path weighs what it weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightDecision<'a> {
    /// The weight, 1 (most important) to 10.
    pub weight: u8,
    /// The winning glob; `None` when no glob matched (the default weight).
    pub glob: Option<&'a str>,
}

impl WeightDecision<'_> {
    /// The weight's priority class.
    pub fn priority(&self) -> PriorityClass {
        PriorityClass::of(self.weight)
    }
}

/// One glob of [`PathWeights`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    glob: String,
    weight: u8,
    specificity: usize,
}

/// `[enrichment.path_weights]`: globs with their weights, compiled into one matcher.
///
/// Always valid: every glob compiles and every weight is 1–10 ([`PathWeights::new`] checks).
/// Serialised as the table it came from.
#[derive(Clone, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, u8>",
    into = "BTreeMap<String, u8>",
    expecting = "a table of glob = weight (1 to 10)"
)]
pub struct PathWeights {
    /// Sorted by glob.
    rules: Vec<Rule>,
    set: GlobSet,
}

impl PathWeights {
    /// Compiles `glob → weight` pairs.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPathWeight`] for a weight outside 1–10 or a glob that does not
    /// compile.
    pub fn new<G: Into<String>>(
        weights: impl IntoIterator<Item = (G, u8)>,
    ) -> Result<Self, ConfigError> {
        let mut rules: Vec<Rule> = weights
            .into_iter()
            .map(|(glob, weight)| {
                let glob = glob.into();
                Rule {
                    specificity: literal_chars(&glob),
                    glob,
                    weight,
                }
            })
            .collect();
        rules.sort_by(|a, b| a.glob.cmp(&b.glob));
        rules.dedup_by(|later, earlier| later.glob == earlier.glob);
        let mut builder = GlobSetBuilder::new();
        for rule in &rules {
            if !(MIN_PATH_WEIGHT..=MAX_PATH_WEIGHT).contains(&rule.weight) {
                return Err(ConfigError::InvalidPathWeight {
                    glob: rule.glob.clone(),
                    reason: format!(
                        "weight {} (expected a whole number from {MIN_PATH_WEIGHT}, most \
                         important, to {MAX_PATH_WEIGHT}, least)",
                        rule.weight
                    ),
                });
            }
            let glob = GlobBuilder::new(&rule.glob)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| ConfigError::InvalidPathWeight {
                    glob: rule.glob.clone(),
                    reason: format!("not a valid glob: {}", e.kind()),
                })?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|e| ConfigError::InvalidPathWeight {
                glob: e.glob().unwrap_or_default().to_owned(),
                reason: format!("not a valid glob: {}", e.kind()),
            })?;
        Ok(Self { rules, set })
    }

    /// The weight of the repo-relative `path` (`\` counts as `/`) and the glob that decided it.
    pub fn weigh(&self, path: &str) -> WeightDecision<'_> {
        let normalized;
        let path = if path.contains('\\') {
            normalized = path.replace('\\', "/");
            normalized.as_str()
        } else {
            path
        };
        let winner = self
            .set
            .matches(path)
            .into_iter()
            .map(|index| &self.rules[index])
            // Most literal characters, then the higher weight, then the glob sorting first
            // (rules are sorted by glob, so the first of equals is kept by `max_by` reversed).
            .max_by(|a, b| {
                (a.specificity, a.weight)
                    .cmp(&(b.specificity, b.weight))
                    .then_with(|| b.glob.cmp(&a.glob))
            });
        match winner {
            Some(rule) => WeightDecision {
                weight: rule.weight,
                glob: Some(&rule.glob),
            },
            None => WeightDecision {
                weight: DEFAULT_PATH_WEIGHT,
                glob: None,
            },
        }
    }

    /// The globs and their weights, sorted by glob.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u8)> {
        self.rules.iter().map(|r| (r.glob.as_str(), r.weight))
    }

    /// The number of globs.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when no glob is configured (every path weighs [`DEFAULT_PATH_WEIGHT`]).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A stable text that changes whenever the weight of some path could change: the rule
    /// version, the default weight and every glob with its weight. A database stores it to tell
    /// when its weights must be recomputed.
    pub fn fingerprint(&self) -> String {
        let rules: Vec<(&str, u8)> = self.iter().collect();
        // A list of string and number pairs always serialises.
        let json = serde_json::to_string(&rules).unwrap_or_default();
        format!("most-specific-v1 default={DEFAULT_PATH_WEIGHT} {json}")
    }
}

impl PartialEq for PathWeights {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl fmt::Debug for PathWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl TryFrom<BTreeMap<String, u8>> for PathWeights {
    type Error = ConfigError;

    fn try_from(map: BTreeMap<String, u8>) -> Result<Self, Self::Error> {
        Self::new(map)
    }
}

impl From<PathWeights> for BTreeMap<String, u8> {
    fn from(weights: PathWeights) -> Self {
        weights
            .rules
            .into_iter()
            .map(|r| (r.glob, r.weight))
            .collect()
    }
}

/// The number of characters of `glob` that are not part of a wildcard (`*`, `?`, `[...]`,
/// `{...}`); an escaped character counts as one.
fn literal_chars(glob: &str) -> usize {
    let mut count = 0;
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if chars.next().is_some() {
                    count += 1;
                }
            }
            '*' | '?' => {}
            '[' => {
                // A `]` right after `[`, `[!` or `[^` is a member, not the end.
                if matches!(chars.peek(), Some('!' | '^')) {
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
            }
            '{' => {
                let mut depth = 1;
                for c in chars.by_ref() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => count += 1,
        }
    }
    count
}

/// `[enrichment.runner]`, LLMC's spelling of the work-order keys.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(expecting = "the [enrichment.runner] table")]
#[schemars(deny_unknown_fields, transform = crate::schema::runner_table)]
pub(crate) struct RawRunner {
    pub(crate) code_first_default: Option<Flag>,
    pub(crate) starvation_ratio_high: Option<Whole<u32>>,
    pub(crate) starvation_ratio_low: Option<Whole<u32>>,
}

/// The keys of `[enrichment.runner]` that enrich reads.
pub(crate) const RUNNER_KEYS: &[&str] = &[
    "code_first_default",
    "starvation_ratio_high",
    "starvation_ratio_low",
];

/// The work order and the settings to show for it.
pub(crate) struct Resolved {
    pub(crate) work_order: WorkOrder,
    pub(crate) settings: Vec<Setting>,
}

/// Picks each work-order key from its layers and checks it.
///
/// `origin` names the layer a merged key came from; `file_globs` lists the globs of the config
/// file's own `[enrichment.path_weights]` table, `None` when the file has none. A file's table
/// replaces the built-in one (as LLMC reads only the file's). Within one file, an
/// `[enrichment]` key wins over its `[enrichment.runner]` spelling.
pub(crate) fn resolve(
    raw: &RawEnrichment,
    origin: &dyn Fn(&str) -> Source,
    file_globs: Option<&[String]>,
) -> Result<Resolved, ConfigError> {
    let runner = raw.runner.as_ref();
    let (code_first, code_first_origin, _) = pick(
        origin,
        "code_first",
        "code_first_default",
        raw.code_first.0,
        runner.and_then(|r| r.code_first_default).map(|f| f.0),
    );
    let ratio = |key: &str, value: u32, runner_value: Option<Whole<u32>>| {
        let (value, source, at) = pick(origin, key, key, value, runner_value.map(|v| v.0));
        if value == 0 {
            return Err(ConfigError::Invalid {
                key: at,
                origin: source,
                line: None,
                reason: "0 (expected at least 1: after every starvation_ratio_high spans of \
                         high and medium priority, starvation_ratio_low low-priority spans are \
                         taken)"
                    .to_owned(),
            });
        }
        Ok((value, source))
    };
    let (high, high_origin) = ratio(
        "starvation_ratio_high",
        raw.starvation_ratio_high.0,
        runner.and_then(|r| r.starvation_ratio_high),
    )?;
    let (low, low_origin) = ratio(
        "starvation_ratio_low",
        raw.starvation_ratio_low.0,
        runner.and_then(|r| r.starvation_ratio_low),
    )?;

    let weights_origin = origin("enrichment.path_weights");
    let entries = raw
        .path_weights
        .iter()
        .filter(|(glob, _)| file_globs.is_none_or(|globs| globs.contains(glob)))
        .map(|(glob, weight)| (glob.clone(), weight.0));
    let path_weights = PathWeights::new(entries).map_err(|error| match error {
        ConfigError::InvalidPathWeight { glob, reason } => ConfigError::Invalid {
            key: format!("enrichment.path_weights.{glob}"),
            origin: weights_origin.clone(),
            line: None,
            reason,
        },
        other => other,
    })?;

    let mut settings = vec![
        Setting {
            key: "enrichment.code_first".to_owned(),
            value: serde_json::json!(code_first),
            source: code_first_origin,
        },
        Setting {
            key: "enrichment.starvation_ratio_high".to_owned(),
            value: serde_json::json!(high),
            source: high_origin,
        },
        Setting {
            key: "enrichment.starvation_ratio_low".to_owned(),
            value: serde_json::json!(low),
            source: low_origin,
        },
    ];
    for (glob, weight) in path_weights.iter() {
        settings.push(Setting {
            key: format!("enrichment.path_weights.{glob}"),
            value: serde_json::json!(weight),
            source: weights_origin.clone(),
        });
    }
    Ok(Resolved {
        work_order: WorkOrder {
            code_first,
            path_weights,
            starvation_ratio_high: high,
            starvation_ratio_low: low,
        },
        settings,
    })
}

/// One work-order key: `[enrichment] key` when the config file set it, else LLMC's
/// `[enrichment.runner] runner_key` when set, else the built-in `[enrichment] key`. Returns the
/// value, its layer and the key it was read from.
fn pick<T>(
    origin: &dyn Fn(&str) -> Source,
    key: &str,
    runner_key: &str,
    value: T,
    runner_value: Option<T>,
) -> (T, Source, String) {
    let at = format!("enrichment.{key}");
    match (origin(&at), runner_value) {
        (source @ Source::File(_), _) | (source, None) => (value, source, at),
        (_, Some(runner_value)) => {
            let runner_at = format!("enrichment.runner.{runner_key}");
            (runner_value, origin(&runner_at), runner_at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_characters_skip_every_wildcard() {
        for (glob, expected) in [
            ("src/**", 4),
            ("**/tests/**", 7),
            ("*.md", 3),
            ("test_*.py", 8),
            ("[Dd]ocs/**", 4),
            ("[!a]x", 1),
            ("[]]x", 1),
            ("*.{rs,py}", 1),
            (r"a\*b", 3),
            ("?", 0),
        ] {
            assert_eq!(literal_chars(glob), expected, "{glob}");
        }
    }
}

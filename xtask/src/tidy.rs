//! Tidy checks: the invariants of the workspace that no compiler enforces.
//!
//! - crate-to-crate edges follow the layering table of `docs/architecture.md` (read from
//!   `cargo metadata`), and layers stay free of the external crates they must not know;
//! - every package opts into the workspace lints (`[lints] workspace = true`) and has a
//!   `description`;
//! - every crate root (`lib.rs`, `main.rs`) opens with a `//!` header;
//! - a crate under `crates/` or `examples/` lives in a directory named after its package.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// What one workspace package may depend on.
struct Rule {
    /// The package name, or a prefix ending in `-` for a family (`enrich-adapter-`).
    package: &'static str,
    /// Workspace crates it may use as normal or build dependencies. `None`: any product crate.
    may_use: Option<&'static [&'static str]>,
    /// External crates it must not know, whatever the dependency kind.
    must_not_use: &'static [&'static str],
}

const ADAPTER_PREFIX: &str = "enrich-adapter-";
/// The bottom of the graph: plain domain data every product crate may use.
const EVERYONE_MAY_USE: &str = "enrich-types";
/// Dev-only crates: never a normal dependency of anything.
const DEV_ONLY: &[&str] = &["enrich-testkit", "xtask", "enrich-tests"];

const RULES: &[Rule] = &[
    Rule {
        package: "enrich-types",
        may_use: Some(&[]),
        must_not_use: &["reqwest", "rusqlite", "tokio", "hyper", "figment"],
    },
    Rule {
        package: "enrich-config",
        may_use: Some(&[]),
        must_not_use: &["reqwest", "rusqlite", "tokio", "hyper"],
    },
    Rule {
        package: "enrich-router",
        may_use: Some(&["enrich-config"]),
        must_not_use: &["reqwest", "rusqlite", "tokio", "hyper", "figment"],
    },
    Rule {
        package: "enrich-backends",
        may_use: Some(&["enrich-config"]),
        must_not_use: &["rusqlite", "reqwest", "hyper", "figment"],
    },
    // Every provider crate (`enrich-adapter-ollama`, `enrich-adapter-openai`) and the example
    // third-party adapter (`examples/enrich-adapter-ollama-chat`): the contract and config types,
    // nothing else of ours (not even another adapter).
    Rule {
        package: ADAPTER_PREFIX,
        may_use: Some(&["enrich-backends", "enrich-config"]),
        must_not_use: &["rusqlite", "figment"],
    },
    Rule {
        package: "enrich-db",
        may_use: Some(&[]),
        must_not_use: &["reqwest", "hyper", "tokio", "figment"],
    },
    // Pure computation over text: the secret patterns and the secret-file list.
    Rule {
        package: "enrich-secrets",
        may_use: Some(&[]),
        must_not_use: &["reqwest", "rusqlite", "tokio", "hyper", "figment"],
    },
    Rule {
        package: "enrich-index",
        may_use: Some(&["enrich-db", "enrich-config", "enrich-secrets"]),
        must_not_use: &["reqwest", "hyper"],
    },
    Rule {
        package: "enrich-pipeline",
        may_use: Some(&[
            "enrich-config",
            "enrich-router",
            "enrich-backends",
            "enrich-db",
            "enrich-secrets",
        ]),
        must_not_use: &["reqwest", "hyper", "figment"],
    },
    Rule {
        package: "enrich-testkit",
        may_use: Some(&["enrich-backends", "enrich-config"]),
        must_not_use: &["rusqlite"],
    },
    Rule {
        package: "enrich-cli",
        may_use: None,
        must_not_use: &[],
    },
    // The benchmark's in-process half: a composition root like the CLI, without HTTP or any
    // provider (the HTTP scenarios run the `enrich` binary against `fake-ollama`).
    Rule {
        package: "enrich-bench",
        may_use: Some(&[
            "enrich-config",
            "enrich-router",
            "enrich-backends",
            "enrich-db",
            "enrich-pipeline",
        ]),
        must_not_use: &["reqwest", "hyper"],
    },
    Rule {
        package: "enrich-tests",
        may_use: None,
        must_not_use: &[],
    },
    Rule {
        package: "xtask",
        may_use: Some(&[]),
        must_not_use: &[],
    },
];

fn rule_for(package: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| {
        r.package == package || (r.package.ends_with('-') && package.starts_with(r.package))
    })
}

/// Runs every check on the workspace at `root`; returns the problems found.
pub(crate) fn check(root: &Path) -> Result<Vec<String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .context("could not run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let metadata: Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed invalid JSON")?;
    let packages = parse_packages(&metadata)?;
    let mut problems = check_edges(&packages);
    for p in &packages {
        problems.extend(check_files(root, p)?);
    }
    Ok(problems)
}

/// The facts tidy needs about one workspace package.
#[derive(Debug, Clone)]
struct Package {
    name: String,
    manifest: PathBuf,
    description: Option<String>,
    /// (dependency name, kind: "normal" | "dev" | "build")
    deps: Vec<(String, String)>,
    /// Source roots of lib and bin targets.
    roots: Vec<PathBuf>,
}

fn parse_packages(metadata: &Value) -> Result<Vec<Package>> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    packages
        .iter()
        .map(|p| {
            let name = p["name"]
                .as_str()
                .context("package without name")?
                .to_owned();
            let deps = p["dependencies"]
                .as_array()
                .map(|deps| {
                    deps.iter()
                        .filter_map(|d| {
                            let name = d["name"].as_str()?.to_owned();
                            let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                            Some((name, kind))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let roots = p["targets"]
                .as_array()
                .map(|targets| {
                    targets
                        .iter()
                        .filter(|t| {
                            t["kind"].as_array().is_some_and(|k| {
                                k.iter().any(|k| matches!(k.as_str(), Some("lib" | "bin")))
                            })
                        })
                        .filter_map(|t| t["src_path"].as_str().map(PathBuf::from))
                        .collect()
                })
                .unwrap_or_default();
            Ok(Package {
                manifest: PathBuf::from(
                    p["manifest_path"]
                        .as_str()
                        .context("package without manifest")?,
                ),
                description: p["description"].as_str().map(str::to_owned),
                name,
                deps,
                roots,
            })
        })
        .collect()
}

fn check_edges(packages: &[Package]) -> Vec<String> {
    let workspace: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    for p in packages {
        let Some(rule) = rule_for(&p.name) else {
            problems.push(format!(
                "package `{}` is not in the layering table: add it to xtask/src/tidy.rs RULES and docs/architecture.md",
                p.name
            ));
            continue;
        };
        for (dep, kind) in &p.deps {
            if rule.must_not_use.contains(&dep.as_str()) {
                problems.push(format!(
                    "`{}` depends on `{dep}` ({kind}), which its layer must not know",
                    p.name
                ));
            }
            if !workspace.contains(dep.as_str()) {
                continue;
            }
            if kind != "dev" && DEV_ONLY.contains(&dep.as_str()) {
                problems.push(format!(
                    "`{}` depends on `{dep}` as a {kind} dependency: it may only be a dev-dependency",
                    p.name
                ));
                continue;
            }
            let allowed = match rule.may_use {
                None => p.name != "xtask",
                Some(list) => {
                    list.contains(&dep.as_str())
                        || (kind == "dev" && dep == "enrich-testkit")
                        || (dep == EVERYONE_MAY_USE && p.name != "xtask")
                }
            };
            if !allowed {
                problems.push(format!(
                    "`{}` -> `{dep}` ({kind}) breaks the layering: {} may use only {:?}",
                    p.name,
                    p.name,
                    rule.may_use.unwrap_or(&[])
                ));
            }
        }
    }
    problems
}

fn check_files(root: &Path, p: &Package) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let manifest = std::fs::read_to_string(&p.manifest)
        .with_context(|| format!("could not read {}", p.manifest.display()))?;
    let shown = p
        .manifest
        .strip_prefix(root)
        .unwrap_or(&p.manifest)
        .display();
    if !opts_into_workspace_lints(&manifest) {
        problems.push(format!(
            "{shown} does not opt into the workspace lints: add `[lints]\\nworkspace = true`"
        ));
    }
    if p.description.as_deref().is_none_or(str::is_empty) {
        problems.push(format!("{shown} has no `description`"));
    }
    if misplaced(p.manifest.parent().unwrap_or(root), &p.name) {
        problems.push(format!(
            "{shown}: a crate under crates/ or examples/ must live in a directory named after its package `{}`",
            p.name
        ));
    }
    for src in &p.roots {
        let text = std::fs::read_to_string(src)
            .with_context(|| format!("could not read {}", src.display()))?;
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.starts_with("//!") {
            let shown = src.strip_prefix(root).unwrap_or(src).display();
            problems.push(format!(
                "{shown} does not open with a `//!` header saying what the crate is and what it does not know"
            ));
        }
    }
    Ok(problems)
}

/// Whether a package in `dir` under `crates/` or `examples/` is in a directory not named after it.
fn misplaced(dir: &Path, package: &str) -> bool {
    dir.parent()
        .is_some_and(|parent| parent.ends_with("crates") || parent.ends_with("examples"))
        && dir.file_name().and_then(|n| n.to_str()) != Some(package)
}

fn opts_into_workspace_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_lints = line == "[lints]";
        } else if in_lints && line.replace(' ', "") == "workspace=true" {
            return true;
        }
    }
    manifest
        .lines()
        .any(|l| l.replace(' ', "") == "lints.workspace=true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, deps: &[(&str, &str)]) -> Package {
        Package {
            name: name.to_owned(),
            manifest: PathBuf::from(format!("/ws/crates/{name}/Cargo.toml")),
            description: Some("d".into()),
            deps: deps
                .iter()
                .map(|(d, k)| ((*d).to_owned(), (*k).to_owned()))
                .collect(),
            roots: vec![],
        }
    }

    fn workspace(extra: Package) -> Vec<Package> {
        let mut ps: Vec<Package> = [
            "enrich-types",
            "enrich-config",
            "enrich-router",
            "enrich-backends",
            "enrich-db",
            "enrich-pipeline",
            "enrich-testkit",
            "enrich-adapter-ollama",
        ]
        .iter()
        .filter(|n| **n != extra.name)
        .map(|n| pkg(n, &[]))
        .collect();
        ps.push(extra);
        ps
    }

    fn check_one(extra: Package, expect: &[&str]) {
        let problems = check_edges(&workspace(extra));
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
        for (p, e) in problems.iter().zip(expect) {
            assert!(p.contains(e), "{p:?} should contain {e:?}");
        }
    }

    #[test]
    fn allowed_edges_pass() {
        check_one(pkg("enrich-router", &[("enrich-config", "normal")]), &[]);
        check_one(pkg("enrich-db", &[("enrich-types", "normal")]), &[]);
        check_one(
            pkg(
                "enrich-adapter-acme",
                &[
                    ("enrich-backends", "normal"),
                    ("enrich-testkit", "dev"),
                    ("reqwest", "normal"),
                ],
            ),
            &[],
        );
        check_one(
            pkg(
                "enrich-pipeline",
                &[("enrich-db", "normal"), ("enrich-testkit", "dev")],
            ),
            &[],
        );
    }

    #[test]
    fn forbidden_edges_are_reported() {
        check_one(
            pkg("enrich-router", &[("enrich-db", "normal")]),
            &["`enrich-router` -> `enrich-db`"],
        );
        check_one(
            pkg("enrich-pipeline", &[("enrich-adapter-ollama", "normal")]),
            &["breaks the layering"],
        );
        check_one(pkg("enrich-db", &[("tokio", "normal")]), &["must not know"]);
        check_one(
            pkg("enrich-backends", &[("enrich-testkit", "normal")]),
            &["may only be a dev-dependency"],
        );
        check_one(pkg("enrich-surprise", &[]), &["not in the layering table"]);
        check_one(
            pkg("enrich-types", &[("enrich-config", "normal")]),
            &["`enrich-types` -> `enrich-config`"],
        );
        check_one(
            pkg("xtask", &[("enrich-types", "normal")]),
            &["`xtask` -> `enrich-types`"],
        );
    }

    #[test]
    fn lints_opt_in_is_detected() {
        assert!(opts_into_workspace_lints(
            "[package]\nname='x'\n\n[lints]\nworkspace = true\n"
        ));
        assert!(opts_into_workspace_lints("lints.workspace = true\n"));
        assert!(!opts_into_workspace_lints(
            "[lints.rust]\nworkspace = true\n"
        ));
        assert!(!opts_into_workspace_lints("[package]\nname='x'\n"));
    }

    #[test]
    fn the_bench_is_a_composition_root_without_providers() {
        check_one(
            pkg(
                "enrich-bench",
                &[
                    ("enrich-pipeline", "normal"),
                    ("enrich-db", "normal"),
                    ("enrich-testkit", "dev"),
                ],
            ),
            &[],
        );
        check_one(
            pkg("enrich-bench", &[("enrich-adapter-ollama", "normal")]),
            &["breaks the layering"],
        );
        check_one(
            pkg("enrich-bench", &[("reqwest", "normal")]),
            &["must not know"],
        );
    }

    #[test]
    fn adapters_and_the_example_adapter_use_only_the_contract() {
        for adapter in ["enrich-adapter-openai", "enrich-adapter-ollama-chat"] {
            check_one(
                pkg(
                    adapter,
                    &[
                        ("enrich-backends", "normal"),
                        ("enrich-config", "normal"),
                        ("reqwest", "normal"),
                        ("enrich-testkit", "dev"),
                    ],
                ),
                &[],
            );
            check_one(
                pkg(adapter, &[("enrich-adapter-ollama", "normal")]),
                &["breaks the layering"],
            );
            check_one(pkg(adapter, &[("rusqlite", "normal")]), &["must not know"]);
        }
    }

    #[test]
    fn crates_and_examples_live_in_directories_named_after_them() {
        let check = |dir: &str, package: &str, expected: bool| {
            assert_eq!(
                misplaced(Path::new(dir), package),
                expected,
                "{dir} {package}"
            );
        };
        check("/ws/crates/enrich-db", "enrich-db", false);
        check("/ws/crates/db", "enrich-db", true);
        check(
            "/ws/examples/enrich-adapter-ollama-chat",
            "enrich-adapter-ollama-chat",
            false,
        );
        check("/ws/examples/chat", "enrich-adapter-ollama-chat", true);
        check("/ws/xtask", "xtask", false);
        check("/ws/tests", "enrich-tests", false);
    }

    /// The real workspace passes every tidy check.
    #[test]
    fn workspace_is_tidy() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let problems = check(root).expect("tidy could run");
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }
}

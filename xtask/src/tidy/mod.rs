//! Tidy checks: the invariants of the workspace that no compiler enforces.
//!
//! - crate-to-crate edges follow the layering table of `docs/architecture.md` (read from
//!   `cargo metadata`), and layers stay free of the external crates they must not know, directly
//!   or through other crates (`layers`);
//! - no doc, comment, test or manifest names the development process (`words`);
//! - every package has at most one integration-test binary (`autotests = false` and one
//!   `[[test]]`: one link step per crate);
//! - every package opts into the workspace lints (`[lints] workspace = true`) and has a
//!   `description`;
//! - every crate root (`lib.rs`, `main.rs`) opens with a `//!` header;
//! - a crate under `crates/` or `examples/` lives in a directory named after its package.

mod layers;
mod words;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The target triple of the host, as `rustc -vV` reports it.
fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .context("could not run rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .context("rustc -vV names no host triple")
}

/// Runs every check on the workspace at `root`; returns the problems found.
pub(crate) fn check(root: &Path) -> Result<Vec<String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let host = host_triple()?;
    let out = Command::new(cargo)
        .current_dir(root)
        // With the dependencies (no `--no-deps`): the resolved graph, with every feature on so
        // an optional dependency is followed too. Only the host's graph: the one that is built
        // here, and no download of crates for other platforms on a cold cache.
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--locked",
            "--filter-platform",
            &host,
        ])
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
    let members: Vec<String> = metadata["workspace_members"]
        .as_array()
        .context("cargo metadata has no workspace_members")?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let packages = parse_packages(&metadata, &members)?;
    let graph = layers::Graph::from_metadata(&metadata)
        .context("cargo metadata has no resolved dependency graph")?;
    let mut problems = layers::check_edges(&packages);
    problems.extend(layers::check_reach(&graph, &members));
    for p in &packages {
        problems.extend(check_files(root, p)?);
        problems.extend(check_test_targets(p));
    }
    problems.extend(words::check(root)?);
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
    /// Names of the integration-test targets (`[[test]]`, or each file of `tests/` with
    /// autotests on).
    tests: Vec<String>,
}

/// The workspace's packages (`members`: their ids) among every package of `metadata`.
fn parse_packages(metadata: &Value, members: &[String]) -> Result<Vec<Package>> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    packages
        .iter()
        .filter(|p| {
            p["id"]
                .as_str()
                .is_some_and(|id| members.iter().any(|m| m == id))
        })
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
            let tests = targets_of_kind(p, "test");
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
                tests,
            })
        })
        .collect()
}

fn targets_of_kind(package: &Value, kind: &str) -> Vec<String> {
    package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k.as_str() == Some(kind)))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// One integration-test binary per package: each more is another link step on every test run.
fn check_test_targets(p: &Package) -> Vec<String> {
    if p.tests.len() <= 1 {
        return Vec::new();
    }
    vec![format!(
        "`{}` has {} integration-test targets ({}): set `autotests = false` and keep one `[[test]]`, with the others as its modules",
        p.name,
        p.tests.len(),
        p.tests.join(", ")
    )]
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
    fn more_than_one_integration_test_binary_is_reported() {
        let package = |tests: &[&str]| Package {
            name: "enrich-db".to_owned(),
            manifest: PathBuf::from("/ws/crates/enrich-db/Cargo.toml"),
            description: Some("d".into()),
            deps: vec![],
            roots: vec![],
            tests: tests.iter().map(|t| (*t).to_owned()).collect(),
        };
        assert!(check_test_targets(&package(&[])).is_empty());
        assert!(check_test_targets(&package(&["integration"])).is_empty());
        let problems = check_test_targets(&package(&["integration", "schema"]));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0]
                .contains("`enrich-db` has 2 integration-test targets (integration, schema)"),
            "{problems:#?}"
        );
    }

    #[test]
    fn test_targets_are_read_from_cargo_metadata() {
        let package = serde_json::json!({"targets": [
            {"name": "enrich_db", "kind": ["lib"]},
            {"name": "integration", "kind": ["test"]},
            {"name": "schema", "kind": ["test"]},
            {"name": "bench", "kind": ["bench"]},
        ]});
        assert_eq!(targets_of_kind(&package, "test"), ["integration", "schema"]);
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

//! The layering table of `docs/architecture.md` as data, checked against `cargo metadata`.
//!
//! Two checks: the direct edges each workspace package declares (its `[dependencies]`,
//! `[build-dependencies]` and `[dev-dependencies]` lines), and what each package reaches through
//! the resolved graph over normal dependencies, so a forbidden crate pulled in by another crate
//! is caught too (dev-dependencies are not linked into the product, so they are not followed).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::Package;

/// What one workspace package may depend on.
pub(super) struct Rule {
    /// The package name, or a prefix ending in `-` for a family (`enrich-adapter-`).
    package: &'static str,
    /// Workspace crates it may use as normal or build dependencies. `None`: any product crate.
    /// [`BOTTOM`] is allowed everywhere without being listed.
    may_use: Option<&'static [&'static str]>,
    /// External crates it must not name in its manifest, whatever the dependency kind.
    must_not_use: &'static [&'static str],
    /// External crates it must not reach through any chain of normal dependencies.
    must_not_reach: &'static [&'static str],
    /// When set, the only external crates it may name as normal dependencies.
    external_only: Option<&'static [&'static str]>,
}

const ADAPTER_PREFIX: &str = "enrich-adapter-";
/// The domain's plain data at the bottom of the graph: every product crate may use it.
const BOTTOM: &str = "enrich-types";
/// Dev-only crates: never a normal dependency of anything.
const DEV_ONLY: &[&str] = &["enrich-testkit", "xtask", "enrich-tests"];
/// The crates that make a layer do I/O of a kind it must not know.
const HTTP: &[&str] = &["reqwest", "hyper"];

const fn rule(package: &'static str, may_use: Option<&'static [&'static str]>) -> Rule {
    Rule {
        package,
        may_use,
        must_not_use: &[],
        must_not_reach: &[],
        external_only: None,
    }
}

pub(super) const RULES: &[Rule] = &[
    // Plain data: serde and the hash of LLMC's span identity, nothing else.
    Rule {
        external_only: Some(&["serde", "sha2"]),
        must_not_reach: &["tokio", "rusqlite", "reqwest", "hyper", "figment"],
        ..rule(BOTTOM, Some(&[]))
    },
    Rule {
        must_not_use: &["reqwest", "rusqlite", "tokio", "hyper"],
        must_not_reach: &["reqwest", "rusqlite", "tokio", "hyper"],
        ..rule("enrich-config", Some(&[]))
    },
    Rule {
        must_not_use: &["reqwest", "rusqlite", "tokio", "hyper", "figment"],
        must_not_reach: &["reqwest", "rusqlite", "tokio", "hyper"],
        ..rule("enrich-router", Some(&["enrich-config"]))
    },
    Rule {
        must_not_use: &["rusqlite", "reqwest", "hyper", "figment"],
        must_not_reach: &["rusqlite", "reqwest", "hyper"],
        ..rule("enrich-backends", Some(&["enrich-config"]))
    },
    // Every provider crate (`enrich-adapter-ollama`, `enrich-adapter-openai`) and the example
    // third-party adapter (`examples/enrich-adapter-ollama-chat`): the contract and config types,
    // nothing else of ours (not even another adapter).
    Rule {
        must_not_use: &["rusqlite", "figment"],
        must_not_reach: &["rusqlite"],
        ..rule(ADAPTER_PREFIX, Some(&["enrich-backends", "enrich-config"]))
    },
    Rule {
        must_not_use: &["reqwest", "hyper", "tokio", "figment"],
        must_not_reach: &["reqwest", "hyper", "tokio", "figment"],
        ..rule("enrich-db", Some(&[]))
    },
    // Pure computation over text: the secret patterns and the secret-file list.
    Rule {
        must_not_use: &["reqwest", "rusqlite", "tokio", "hyper", "figment"],
        must_not_reach: &["reqwest", "rusqlite", "tokio", "hyper", "figment"],
        ..rule("enrich-secrets", Some(&[]))
    },
    Rule {
        must_not_use: HTTP,
        must_not_reach: &["reqwest", "hyper", "tokio"],
        ..rule(
            "enrich-index",
            Some(&["enrich-db", "enrich-config", "enrich-secrets"]),
        )
    },
    Rule {
        must_not_use: &["reqwest", "hyper", "figment"],
        must_not_reach: HTTP,
        ..rule(
            "enrich-pipeline",
            Some(&[
                "enrich-config",
                "enrich-router",
                "enrich-backends",
                "enrich-db",
                "enrich-secrets",
            ]),
        )
    },
    Rule {
        must_not_use: &["rusqlite"],
        must_not_reach: &["rusqlite"],
        ..rule(
            "enrich-testkit",
            Some(&["enrich-backends", "enrich-config"]),
        )
    },
    rule("enrich-cli", None),
    // The benchmark's in-process half: a composition root like the CLI, without HTTP or any
    // provider (the HTTP scenarios run the `enrich` binary against `fake-ollama`).
    Rule {
        must_not_use: HTTP,
        must_not_reach: HTTP,
        ..rule(
            "enrich-bench",
            Some(&[
                "enrich-config",
                "enrich-router",
                "enrich-backends",
                "enrich-db",
                "enrich-pipeline",
            ]),
        )
    },
    rule("enrich-tests", None),
    rule("xtask", Some(&[])),
];

fn rule_for(package: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| {
        r.package == package || (r.package.ends_with('-') && package.starts_with(r.package))
    })
}

/// Checks the edges each workspace package declares in its manifest.
pub(super) fn check_edges(packages: &[Package]) -> Vec<String> {
    let workspace: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    for p in packages {
        let Some(rule) = rule_for(&p.name) else {
            problems.push(format!(
                "package `{}` is not in the layering table: add it to xtask/src/tidy/layers.rs RULES and docs/architecture.md",
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
                if let Some(only) = rule.external_only
                    && kind == "normal"
                    && !only.contains(&dep.as_str())
                {
                    problems.push(format!(
                        "`{}` depends on `{dep}`: its layer may use only {only:?}",
                        p.name
                    ));
                }
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
                        || (dep == BOTTOM && p.name != "xtask" && p.name != BOTTOM)
                        || (kind == "dev" && dep == "enrich-testkit")
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

/// The resolved dependency graph over normal dependencies, by package id.
#[derive(Debug, Default)]
pub(super) struct Graph {
    /// Package id → package name.
    pub(super) names: BTreeMap<String, String>,
    /// Package id → the ids it depends on as a normal dependency (for any target platform).
    pub(super) normal: BTreeMap<String, Vec<String>>,
}

impl Graph {
    /// Reads `resolve.nodes` of `cargo metadata` (without `--no-deps`).
    pub(super) fn from_metadata(metadata: &serde_json::Value) -> Option<Self> {
        let mut graph = Self::default();
        for p in metadata["packages"].as_array()? {
            graph
                .names
                .insert(p["id"].as_str()?.to_owned(), p["name"].as_str()?.to_owned());
        }
        for node in metadata["resolve"]["nodes"].as_array()? {
            let deps = node["deps"]
                .as_array()?
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
                })
                .filter_map(|d| d["pkg"].as_str().map(str::to_owned))
                .collect();
            graph.normal.insert(node["id"].as_str()?.to_owned(), deps);
        }
        Some(graph)
    }

    /// The shortest chain of normal dependencies from `from` to a package named `target`, as
    /// package names (`from` first), if there is one.
    fn path_to(&self, from: &str, target: &str) -> Option<Vec<String>> {
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(id) = queue.pop_front() {
            for dep in self.normal.get(id).into_iter().flatten() {
                if dep == from || parent.contains_key(dep.as_str()) {
                    continue;
                }
                parent.insert(dep, id);
                if self.names.get(dep).is_some_and(|n| n == target) {
                    let mut chain = vec![dep.as_str()];
                    let mut at = dep.as_str();
                    while let Some(up) = parent.get(at) {
                        chain.push(up);
                        at = up;
                    }
                    chain.reverse();
                    return Some(
                        chain
                            .into_iter()
                            .map(|id| self.names.get(id).map_or(id, String::as_str).to_owned())
                            .collect(),
                    );
                }
                queue.push_back(dep);
            }
        }
        None
    }
}

/// Checks what each workspace package (`members`: their ids) reaches through normal
/// dependencies against its rule's `must_not_reach`.
pub(super) fn check_reach(graph: &Graph, members: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for id in members {
        let Some(name) = graph.names.get(id) else {
            continue;
        };
        let Some(rule) = rule_for(name) else {
            // check_edges reports a package missing from the table.
            continue;
        };
        for forbidden in rule.must_not_reach {
            if let Some(chain) = graph.path_to(id, forbidden) {
                problems.push(format!(
                    "`{name}` reaches `{forbidden}`, which its layer must not know, through {}",
                    chain.join(" -> ")
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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
            tests: vec![],
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
    }

    #[test]
    fn every_product_crate_may_use_the_types_and_the_types_use_serde_only() {
        for user in [
            "enrich-config",
            "enrich-db",
            "enrich-adapter-acme",
            "enrich-cli",
        ] {
            check_one(pkg(user, &[("enrich-types", "normal")]), &[]);
        }
        check_one(
            pkg("xtask", &[("enrich-types", "normal")]),
            &["breaks the layering"],
        );
        check_one(
            pkg(
                "enrich-types",
                &[
                    ("serde", "normal"),
                    ("sha2", "normal"),
                    ("serde_json", "dev"),
                ],
            ),
            &[],
        );
        check_one(
            pkg("enrich-types", &[("chrono", "normal")]),
            &["may use only [\"serde\", \"sha2\"]"],
        );
        check_one(
            pkg("enrich-types", &[("enrich-config", "normal")]),
            &["breaks the layering"],
        );
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

    /// A planted graph: ids are names, `edges` are normal dependencies, `dev` dev-only ones.
    fn graph(edges: &[(&str, &str)], dev: &[(&str, &str)]) -> Graph {
        let mut g = Graph::default();
        for (from, to) in edges.iter().chain(dev) {
            for id in [from, to] {
                g.names.insert((*id).to_owned(), (*id).to_owned());
                g.normal.entry((*id).to_owned()).or_default();
            }
        }
        for (from, to) in edges {
            g.normal
                .get_mut(*from)
                .expect("inserted above")
                .push((*to).to_owned());
        }
        g
    }

    fn reach(g: &Graph, member: &str) -> Vec<String> {
        check_reach(g, &[member.to_owned()])
    }

    #[test]
    fn a_forbidden_crate_reached_through_another_crate_is_reported_with_its_chain() {
        let g = graph(
            &[
                ("enrich-db", "rusqlite"),
                ("enrich-db", "helper-lib"),
                ("helper-lib", "tokio-util"),
                ("tokio-util", "tokio"),
            ],
            &[],
        );
        assert_eq!(
            reach(&g, "enrich-db"),
            [
                "`enrich-db` reaches `tokio`, which its layer must not know, through enrich-db -> helper-lib -> tokio-util -> tokio"
            ]
        );

        // The adapters may speak HTTP, never SQLite, however far down.
        let g = graph(
            &[
                ("enrich-adapter-acme", "reqwest"),
                ("reqwest", "hyper"),
                ("enrich-adapter-acme", "cache-lib"),
                ("cache-lib", "rusqlite"),
            ],
            &[],
        );
        let problems = reach(&g, "enrich-adapter-acme");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("`rusqlite`"), "{problems:#?}");

        // The router reaches HTTP through a workspace crate that would be a layering mistake too.
        let g = graph(
            &[
                ("enrich-router", "enrich-config"),
                ("enrich-config", "figment"),
                ("enrich-router", "enrich-adapter-acme"),
                ("enrich-adapter-acme", "reqwest"),
            ],
            &[],
        );
        assert_eq!(
            reach(&g, "enrich-router"),
            [
                "`enrich-router` reaches `reqwest`, which its layer must not know, through enrich-router -> enrich-adapter-acme -> reqwest"
            ]
        );

        // The types reach nothing with I/O.
        let g = graph(
            &[("enrich-types", "serde"), ("enrich-types", "rusqlite")],
            &[],
        );
        assert_eq!(reach(&g, "enrich-types").len(), 1);
    }

    #[test]
    fn dev_dependencies_and_allowed_chains_are_not_reported() {
        // The pipeline's tests use the testkit (which reaches hyper); the pipeline itself
        // reaches tokio and figment through the config, both allowed to it.
        let g = graph(
            &[
                ("enrich-pipeline", "enrich-config"),
                ("enrich-config", "figment"),
                ("enrich-pipeline", "tokio"),
                ("enrich-testkit", "hyper"),
            ],
            &[("enrich-pipeline", "enrich-testkit")],
        );
        assert_eq!(reach(&g, "enrich-pipeline"), Vec::<String>::new());
        // A cycle does not loop.
        let g = graph(&[("enrich-db", "a"), ("a", "b"), ("b", "a")], &[]);
        assert_eq!(reach(&g, "enrich-db"), Vec::<String>::new());
    }

    #[test]
    fn the_graph_is_read_from_cargo_metadata_normal_edges_only() {
        let metadata = serde_json::json!({
            "packages": [
                {"id": "db 0.1", "name": "enrich-db"},
                {"id": "tok 1", "name": "tokio"},
                {"id": "hy 1", "name": "hyper"},
                {"id": "cc 1", "name": "cc"},
            ],
            "resolve": {"nodes": [
                {"id": "db 0.1", "deps": [
                    {"pkg": "tok 1", "dep_kinds": [{"kind": "dev", "target": null}]},
                    {"pkg": "cc 1", "dep_kinds": [{"kind": "build", "target": null}]},
                    {"pkg": "hy 1", "dep_kinds": [{"kind": "dev", "target": null}, {"kind": null, "target": "cfg(unix)"}]},
                ]},
                {"id": "tok 1", "deps": []},
                {"id": "hy 1", "deps": []},
                {"id": "cc 1", "deps": []},
            ]},
        });
        let g = Graph::from_metadata(&metadata).expect("well-formed metadata");
        assert_eq!(g.normal["db 0.1"], ["hy 1"]);
        let problems = reach(&g, "db 0.1");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("reaches `hyper`"), "{problems:#?}");
    }
}

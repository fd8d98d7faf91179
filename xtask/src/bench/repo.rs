//! The generated repositories, their indexes (a fresh copy per run) and the `enrich.toml` of
//! each scenario.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::process::FakeServer;
use super::{Bench, MODEL, SLOTS, path_str, say};

/// A generated repository and its pristine index, copied before each run.
pub(super) struct Repo {
    pub(super) root: PathBuf,
    pub(super) template_db: PathBuf,
    pub(super) spans: u64,
}

/// A backend entry of a generated `enrich.toml`.
pub(super) struct Entry<'a> {
    pub(super) name: &'a str,
    pub(super) urls: Vec<String>,
}

impl Entry<'static> {
    /// The backend `fake` on one fake server.
    pub(super) fn fake(server: &FakeServer) -> Self {
        Entry {
            name: "fake",
            urls: vec![server.url.clone()],
        }
    }
}

impl Bench {
    pub(super) fn gen_db(&self, name: &str, spans: u64) -> Result<Repo> {
        say(&format!("generating a {spans}-span index ({name})"));
        let root = self.work.join(format!("repo-{name}"));
        let report = self.tool_json(&[
            "gen-db",
            "--spans",
            &spans.to_string(),
            "--out",
            path_str(&root)?,
        ])?;
        say(&format!(
            "  {} files, {} MB of source, {:.1} s",
            report["files"],
            report["source_bytes"].as_u64().unwrap_or(0) / 1_000_000,
            report["seconds"].as_f64().unwrap_or(0.0)
        ));
        Ok(Repo {
            template_db: root.join(".llmc/rag/index_v2.db"),
            root,
            spans,
        })
    }

    /// A fresh copy of `repo`'s index for one run.
    pub(super) fn fresh_db(&self, repo: &Repo) -> Result<PathBuf> {
        let db = self.work.join("run.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(format!("{}{suffix}", db.display()));
        }
        fs::copy(&repo.template_db, &db).with_context(|| {
            format!(
                "could not copy {} to {}",
                repo.template_db.display(),
                db.display()
            )
        })?;
        Ok(db)
    }

    pub(super) fn events_path(&self) -> PathBuf {
        let path = self.work.join("events.jsonl");
        let _ = fs::remove_file(&path);
        path
    }

    pub(super) fn write_config(
        &self,
        name: &str,
        entries: &[Entry<'_>],
        concurrency: u32,
    ) -> Result<PathBuf> {
        let path = self.work.join(format!("{name}.toml"));
        fs::write(&path, enrich_toml(entries, concurrency))
            .with_context(|| format!("could not write {}", path.display()))?;
        Ok(path)
    }
}

/// The `enrich.toml` of a scenario: one chain `bench` of `entries` in order, each host allowed
/// exactly [`SLOTS`] requests at once (a fixed limit: scenario 7 measures the adaptive one), no cooldown (generated files are brand new), LLMC's defaults
/// otherwise.
fn enrich_toml(entries: &[Entry<'_>], concurrency: u32) -> String {
    let mut text = format!(
        "# Written by `cargo xtask bench`.\n[enrichment]\ndefault_chain = \"bench\"\n\
         concurrency = {concurrency}\ncooldown_seconds = 0\n"
    );
    for entry in entries {
        let _ = write!(
            text,
            "\n[[enrichment.chain]]\nname = \"{}\"\nchain = \"bench\"\nprovider = \"ollama\"\n\
             model = \"{MODEL}\"\n",
            entry.name
        );
        match entry.urls.as_slice() {
            [one] => {
                let _ = writeln!(text, "url = \"{one}\"");
            }
            many => {
                let quoted: Vec<String> = many.iter().map(|u| format!("\"{u}\"")).collect();
                let _ = writeln!(text, "urls = [{}]", quoted.join(", "));
            }
        }
        let _ = writeln!(
            text,
            "timeout_seconds = 30\nadaptive = false\noptions = {{ max_in_flight = {SLOTS} }}"
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_configs_use_url_or_urls() {
        let text = enrich_toml(
            &[
                Entry {
                    name: "down",
                    urls: vec!["http://127.0.0.1:9".to_owned()],
                },
                Entry {
                    name: "pool",
                    urls: vec!["http://a:1".to_owned(), "http://b:2".to_owned()],
                },
            ],
            16,
        );
        assert!(
            text.contains("concurrency = 16\ncooldown_seconds = 0\n"),
            "{text}"
        );
        assert!(
            text.contains("name = \"down\"\nchain = \"bench\""),
            "{text}"
        );
        assert!(text.contains("url = \"http://127.0.0.1:9\"\n"), "{text}");
        assert!(
            text.contains("urls = [\"http://a:1\", \"http://b:2\"]\n"),
            "{text}"
        );
        assert_eq!(text.matches("options = { max_in_flight = 4 }").count(), 2);
    }
}

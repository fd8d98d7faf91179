//! Configuration checks beyond `bad_input`'s cases for `run`: keys enrich does not read in
//! LLMC's `llmc.toml` (LLMC's own keys pass in silence, a misspelt key of enrich's tables is
//! warned about with its line and the key it resembles, and the run goes on; in `enrich.toml`
//! the same key is an error), and `doctor` judging the prompt template as a run would.

use super::support::{Server, TestRepo, config};

#[test]
fn a_misspelt_key_in_llmc_toml_is_warned_about_with_its_line_and_llmc_keys_are_not() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    let toml = config(&[("fake", server.url())], "est_tokens_per_span = 350")
        + "tiemout_seconds = 30\n\n[daemon]\npycache_cleanup_days = 7\n";
    std::fs::write(repo.root.join("llmc.toml"), &toml).expect("write llmc.toml");
    let line = toml
        .lines()
        .position(|l| l.starts_with("tiemout_seconds"))
        .expect("the line")
        + 1;
    let warning = format!(
        "tiemout_seconds of enrichment.chain entry 1 in {}, line {line} is ignored: enrich does \
         not read it (did you mean `timeout_seconds`?)",
        repo.root.join("llmc.toml").display()
    );

    let ran = repo.enrich(&["run"]);
    ran.expect_code(0);
    assert!(ran.stderr.contains(&warning), "{}", ran.stderr);
    let shown = repo.enrich(&["config"]);
    shown.expect_code(0);
    assert!(shown.stderr.contains(&warning), "{}", shown.stderr);
    for out in [&ran.stderr, &shown.stderr] {
        assert!(!out.contains("est_tokens_per_span"), "{out}");
        assert!(!out.contains("pycache_cleanup_days"), "{out}");
    }
    assert_eq!(server.stats().generations(), repo.spans.len() as u64);
}

#[test]
fn doctor_refuses_a_template_without_the_snippet_as_a_run_would() {
    let server = Server::healthy();
    let repo = TestRepo::new();
    repo.write_config(&format!(
        "{}\n[enrichment.prompt]\ntemplate = \"Describe {{path}} in one line.\"\n",
        config(&[("fake", server.url())], "")
    ));
    let doctor = repo.enrich(&["doctor"]);
    doctor.expect_code(2);
    assert!(
        doctor.stderr.contains("no {snippet} placeholder"),
        "{}",
        doctor.stderr
    );
}

//! LLMC's `file_descriptions` after `enrich run`: each enriched file described as LLMC's cheap
//! tier (`v1.1`) describes it, so LLMC finds the description fresh.

use enrich_types::file_hash;

use super::support::{Server, TestRepo, config};

#[test]
fn a_run_describes_each_file_it_enriched_as_llmcs_cheap_tier_does() {
    let server = Server::healthy();
    let repo = TestRepo::llmc();
    repo.write_config(&config(&[("fake", server.url())], ""));
    repo.enrich(&["run"]).expect_code(0);

    let conn = repo.raw();
    let summary = |symbol: &str| -> String {
        conn.query_row(
            "SELECT summary FROM enrichments WHERE span_hash = ?1",
            [&repo.span(symbol).hash],
            |r| r.get(0),
        )
        .expect("enriched")
    };
    // (file, its spans in LLMC's order: class, top-level functions by line, then the rest)
    let files: [(&str, &[&str]); 3] = [
        (
            "src/geometry.py",
            &["Rect", "square", "Rect.__init__", "Rect.area"],
        ),
        ("src/lib.rs", &["add", "mul"]),
        ("docs/guide.md", &["Guide"]),
    ];
    for (path, order) in files {
        let (description, source, content_hash, input_hash): (String, String, String, String) =
            conn.query_row(
                "SELECT description, source, content_hash, input_hash
                 FROM file_descriptions WHERE file_path = ?1",
                [path],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap_or_else(|e| panic!("{path} described: {e}"));
        // Each of the fake's summaries is one short sentence ending with a period: the
        // description is all of them, in order.
        let summaries: Vec<String> = order.iter().map(|s| summary(s)).collect();
        assert_eq!(description, summaries.join(" "), "{path}");
        assert_eq!((source.as_str(), content_hash.as_str()), ("cheap", "h"));
        let mut hashed = String::from("h");
        for symbol in order {
            hashed.push_str(&repo.span(symbol).hash);
        }
        hashed.push_str("v1.1");
        assert_eq!(input_hash, file_hash(hashed.as_bytes())[..16], "{path}");
    }
}

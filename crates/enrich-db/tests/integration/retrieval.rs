//! The rankings of a retrieval evaluation: code only against code plus enrichment, over every
//! span of the index.

use enrich_db::{Ranking, SourceReader};

use crate::support::{Fixture, enriched};

const SOURCE: &str = "\
def fetch_url(url, timeout):
    return http_get(url, timeout)
def parse_cookie(header):
    return header.split(';')
def retry_later(fn):
    return fn()
";

#[test]
fn the_enriched_ranking_finds_what_only_a_summary_says() {
    let fixture = Fixture::llmc();
    let hashes = fixture.index_file("net.py", "python", SOURCE);
    let mut db = fixture.db();
    let run = db.start_run("fp").expect("run");
    // Line 5 (`retry_later`) is described in words its code never uses.
    db.write_batch(&[enriched(
        &hashes[4],
        run,
        "Backoff wrapper for flaky calls.",
    )])
    .expect("write");

    let sources = SourceReader::new(&fixture.repo).expect("sources");
    let corpus = db.retrieval_corpus(&sources).expect("corpus");
    assert_eq!(corpus.spans().len(), 6, "every span, enriched or not");
    assert_eq!(corpus.unreadable_sources(), 0);
    let enriched_count = corpus.spans().iter().filter(|s| s.enriched).count();
    assert_eq!(enriched_count, 1);
    let symbol = |i: usize| corpus.spans()[i].symbol.as_str();

    let code = corpus
        .rank(Ranking::CodeOnly, "flaky backoff", 10)
        .expect("rank");
    assert!(code.is_empty(), "no code word matches: {code:?}");
    let with = corpus
        .rank(Ranking::Enriched, "flaky backoff", 10)
        .expect("rank");
    assert_eq!(
        with.iter().map(|&i| symbol(i)).collect::<Vec<_>>(),
        ["name_5"]
    );

    // A code word ranks the same in both: only lines 1 and 2 say `timeout`.
    for ranking in [Ranking::CodeOnly, Ranking::Enriched] {
        let hits = corpus.rank(ranking, "Timeout?", 10).expect("rank");
        assert_eq!(
            hits.iter().map(|&i| symbol(i)).collect::<Vec<_>>(),
            ["name_1", "name_2"],
            "{ranking:?}"
        );
    }
    // The path is searched too; the limit holds; words that are FTS5 syntax are plain words.
    assert_eq!(
        corpus
            .rank(Ranking::CodeOnly, "net", 3)
            .expect("rank")
            .len(),
        3
    );
    assert!(
        corpus
            .rank(Ranking::CodeOnly, "NEAR AND OR", 10)
            .expect("rank")
            .is_empty()
    );
    assert!(
        corpus
            .rank(Ranking::Enriched, "?!", 10)
            .expect("rank")
            .is_empty()
    );
}

#[test]
fn a_span_whose_file_is_gone_is_searched_without_its_source() {
    let fixture = Fixture::llmc();
    fixture.index_file("gone.py", "python", "def vanished_helper(): pass\n");
    std::fs::remove_file(fixture.repo.join("gone.py")).expect("remove");
    let db = fixture.db();
    let sources = SourceReader::new(&fixture.repo).expect("sources");
    let corpus = db.retrieval_corpus(&sources).expect("corpus");
    assert_eq!(corpus.unreadable_sources(), 1);
    assert!(
        corpus
            .rank(Ranking::CodeOnly, "vanished", 10)
            .expect("rank")
            .is_empty()
    );
    assert_eq!(
        corpus.rank(Ranking::CodeOnly, "gone", 10).expect("rank"),
        [0]
    );
}

//! Stale enrichments against the configuration: after a run nothing is stale; each change of
//! the configuration makes its reason count, through `stale_expectations`, the one place that
//! turns a configuration into what enrich-db judges against.

use std::sync::Arc;

use enrich_config::{BackendSpec, EnrichmentConfig};
use enrich_db::{Db, StaleCounts};
use enrich_pipeline::{RunControl, stale_expectations};

use crate::support::{Fixture, Scripted, config, pipeline};

fn counts(db: &Db, config: &EnrichmentConfig, digest: Option<&str>) -> StaleCounts {
    let types = db.slice_types().expect("slice types");
    let expected = stale_expectations(config, None, &types, |_: &BackendSpec| {
        digest.map(str::to_owned)
    })
    .expect("expectations");
    db.stale_counts(&expected).expect("counts")
}

#[tokio::test(start_paused = true)]
async fn each_change_of_the_configuration_makes_its_reason_count() {
    let fixture = Fixture::new();
    fixture.index_lines("src/a.py", 3);
    let gpu = Arc::new(Scripted::new("gpu").digest("d-1"));
    let base = config(&[&gpu]);
    let (pipeline, _) = pipeline(&fixture, &base, &[&gpu], |_| {});
    pipeline.run(&RunControl::new()).await.expect("run");
    let db = fixture.db();

    let same = counts(&db, &base, Some("d-1"));
    assert_eq!((same.enriched, same.stale, same.unknown), (3, 0, 0));
    assert_eq!(
        counts(&db, &base, None).stale,
        0,
        "an unknown digest is no change"
    );
    assert_eq!(counts(&db, &base, Some("d-2")).digest, 3);

    let mut prompt = base.clone();
    prompt.prompt.template = Some("Describe {path}:\n{snippet}".to_owned());
    assert_eq!(counts(&db, &prompt, Some("d-1")).prompt, 3);

    let mut model = base.clone();
    model.backends[0].model = "bigger:7b".to_owned();
    let stale = counts(&db, &model, Some("d-1"));
    assert_eq!((stale.model, stale.options, stale.digest), (3, 0, 0));

    let mut options = base.clone();
    options.backends[0].options = serde_json::json!({"temperature": 0.7})
        .as_object()
        .cloned()
        .unwrap();
    assert_eq!(counts(&db, &options, Some("d-1")).options, 3);

    let mut quality = base.clone();
    quality.quality.min_score = Some(0.5);
    assert_eq!(counts(&db, &quality, Some("d-1")).quality, 0);
    fixture
        .raw()
        .execute("UPDATE enrich_quality SET score = 0.3 WHERE rowid = 1", [])
        .unwrap();
    assert_eq!(counts(&db, &quality, Some("d-1")).quality, 1);
    assert_eq!(counts(&db, &base, Some("d-1")).quality, 0, "no minimum");

    // One span's slice type now routes to a chain whose backend serves another model.
    fixture
        .raw()
        .execute("UPDATE spans SET slice_type = 'docs' WHERE id = 1", [])
        .unwrap();
    let mut routed = base.clone();
    routed.enable_routing = true;
    routed.routes.insert("docs".to_owned(), "docs".to_owned());
    routed.backends.push(BackendSpec::new(
        "writer",
        "docs",
        "scripted",
        "writer-model:1b",
    ));
    let stale = counts(&db, &routed, Some("d-1"));
    assert_eq!((stale.model, stale.stale), (1, 1));
}

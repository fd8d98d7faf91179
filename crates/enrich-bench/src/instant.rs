//! The instant backend: answers every request at once with a valid enrichment.v1 object, so
//! that what a run costs is the pipeline's own work.

use std::sync::Arc;

use enrich_backends::{
    AdapterRegistry, BackendAdapter, BackendError, Capabilities, GenerateRequest, Generation,
    UsageMetrics,
};
use enrich_config::BackendSpec;

/// The provider name the instant backend is registered under.
pub(crate) const PROVIDER: &str = "instant";
/// What [`BackendAdapter::describe_host`] says: there is no host.
const HOST: &str = "in-process";

/// A backend that needs no time: the answer for a span is a fixed enrichment of its lines.
#[derive(Debug)]
pub(crate) struct InstantAdapter {
    spec: BackendSpec,
}

impl InstantAdapter {
    /// Registers the instant backend's factory for provider [`PROVIDER`].
    pub(crate) fn register(registry: &mut AdapterRegistry) {
        registry.register(PROVIDER, |spec: &BackendSpec| {
            Ok(Arc::new(InstantAdapter { spec: spec.clone() }) as Arc<dyn BackendAdapter>)
        });
    }
}

/// The enrichment.v1 object for lines `start..=end` of the span `hash`: every field filled as
/// a small model would, evidence citing the span's own lines.
pub(crate) fn answer(hash: &str, start: u32, end: u32) -> String {
    format!(
        concat!(
            r#"{{"summary_120w":"Computes a mixed value from its input for span {h}: multiplies, "#,
            r#"rotates and masks a 64-bit integer without touching any state.","#,
            r#""inputs":["x: the 64-bit value to mix"],"#,
            r#""outputs":["the mixed 64-bit value"],"#,
            r#""side_effects":[],"#,
            r#""pitfalls":["wrapping multiplication hides overflow"],"#,
            r#""usage_snippet":"let y = mix(42);","#,
            r#""evidence":[{{"field":"summary_120w","lines":[{s},{e}]}},"#,
            r#"{{"field":"inputs","lines":[{s},{s}]}},{{"field":"outputs","lines":[{e},{e}]}}]}}"#,
        ),
        h = hash,
        s = start,
        e = end,
    )
}

#[async_trait::async_trait]
impl BackendAdapter for InstantAdapter {
    fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    fn describe_host(&self) -> String {
        HOST.to_owned()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<Generation, BackendError> {
        let span = &request.span;
        let text = answer(&span.span_hash, span.line_start, span.line_end);
        let mut metrics = UsageMetrics::new(self.spec.model.clone(), HOST);
        metrics.prompt_eval_count = Some(request.prompt.len().div_ceil(4) as u64);
        metrics.eval_count = Some(text.len().div_ceil(4) as u64);
        metrics.total_duration_ns = Some(0);
        metrics.done_reason = Some("stop".to_owned());
        Ok(Generation { text, metrics })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            structured_output: true,
            usage_metrics: true,
            ..Capabilities::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use enrich_backends::{SpanIdentity, ValidationContext, parse_and_validate};

    use super::*;

    #[test]
    fn the_answer_is_valid_enrichment_for_the_span() {
        let span = SpanIdentity::new("sha256:ab", "src/a.rs", 10, 14);
        let text = answer(&span.span_hash, 10, 14);
        let enrichment = parse_and_validate(&text, &ValidationContext::for_span(&span, true))
            .expect("valid enrichment.v1");
        assert!(enrichment.summary.contains("sha256:ab"));
        assert_eq!(enrichment.evidence[0].lines, [10, 14]);
    }
}

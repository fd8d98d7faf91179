//! [`Pipeline::plan`]: a dry run that routes and sizes the next spans without calling a backend
//! or storing anything, with an estimate of the tokens and cost.

use enrich_db::{BackendUsage, PendingSpan};

use crate::error::PipelineError;
use crate::pipeline::Pipeline;
use crate::result::{CostEstimate, Plan, PlannedSpan};
use crate::run::queue::{WorkQueue, refresh_work_order};
use crate::secrets::Guarded;
use crate::shared::Inner;

impl Pipeline {
    /// A dry run: what the next run would do with its first `limit` pending spans (and, with a
    /// refresh, the stored enrichments it would renew, after or before them as a run takes
    /// them), in the order it would take them (weight, priority class, route, prompt size, cut,
    /// cooldown), without calling any backend or storing any result. A code-first plan brings the database's copy
    /// of the work order up to date first, as a run does.
    ///
    /// # Errors
    ///
    /// [`PipelineError::Db`] when the index cannot be read or the work order refreshed;
    /// [`PipelineError::Route`] when the default chain cannot serve.
    pub fn plan(&self, limit: usize) -> Result<Plan, PipelineError> {
        let inner = &self.inner;
        let order = &inner.settings.work_order;
        if order.code_first {
            refresh_work_order(order, &mut inner.open_writer()?)?;
        }
        let mut reader = inner.open_reader()?;
        let total_pending = reader
            .pending_count()
            .map_err(PipelineError::db("count pending spans"))?;
        let refresh = inner.settings.refresh.as_ref();
        let refresh_selected = refresh
            .map(|filter| reader.refresh_count(filter))
            .transpose()
            .map_err(PipelineError::db("count the enrichments to refresh"))?;
        let mut queue = WorkQueue::new(
            order,
            inner.settings.batch_size,
            Some(u64::try_from(limit).unwrap_or(u64::MAX)),
        );
        if let Some(filter) = refresh {
            queue = queue.with_refresh(order, filter.clone(), inner.settings.refresh_first);
        }
        queue
            .start_at_frontiers(&reader)
            .map_err(PipelineError::db("read the pending frontiers"))?;
        let mut spans = Vec::with_capacity(limit.min(4096));
        let mut plan_spans = || {
            while spans.len() < limit {
                let Some(taken) = queue
                    .next(&mut reader, None)
                    .map_err(PipelineError::db("read pending spans"))?
                else {
                    break;
                };
                let position = spans.len() as u64 + 1;
                spans.push(self.plan_span(taken.span, position)?);
            }
            Ok::<_, PipelineError>(())
        };
        let planned = plan_spans();
        inner.sources.close_files();
        planned?;
        let history = reader
            .usage_since(0)
            .map_err(PipelineError::db("read the token usage of past runs"))?;
        let to_do = total_pending + refresh_selected.unwrap_or(0);
        let estimate = estimate(&spans, to_do, &history);
        let budget = &inner.settings.budget;
        let estimate = CostEstimate {
            batch_cost: estimate.cost.map(|c| budget.batch_cost(c)),
            all_pending_batch_cost: estimate.all_pending_cost.map(|c| budget.batch_cost(c)),
            ..estimate
        };
        Ok(Plan {
            total_pending,
            refresh_selected,
            code_first: order.code_first,
            spans,
            estimate,
        })
    }

    fn plan_span(&self, span: PendingSpan, order: u64) -> Result<PlannedSpan, PipelineError> {
        let inner = &self.inner;
        let identity = span.identity();
        let route = inner
            .router
            .choose_chain(
                &Inner::slice_view(&span),
                inner.settings.chain_override.as_deref(),
            )
            .map_err(PipelineError::Route)?;
        let (estimated_tokens, cut, source_error, secrets, withheld) =
            match inner.read_source(&span) {
                Ok(read) => match inner.secrets.guard(&read.text) {
                    Guarded::Send { source, redacted } => {
                        let prompt = inner.prompt(&span, &identity, &source, read.span_bytes);
                        (
                            Some(prompt.estimated_tokens),
                            prompt.cut,
                            None,
                            redacted,
                            false,
                        )
                    }
                    Guarded::Withheld { rules } => (None, None, None, rules, true),
                },
                Err(error) => (None, None, Some(error.to_string()), Vec::new(), false),
            };
        let in_cooldown = inner.in_cooldown(&span).is_some();
        let decision = inner
            .settings
            .work_order
            .path_weights
            .weigh(&span.file_path);
        Ok(PlannedSpan {
            order,
            span_id: span.id,
            span: identity,
            symbol: span.symbol,
            weight: decision.weight,
            priority: decision.priority(),
            weight_glob: decision.glob.map(str::to_owned),
            route,
            estimated_tokens,
            cut,
            in_cooldown,
            source_error,
            secrets,
            withheld,
            renewal: span.renewal,
        })
    }
}

/// The tokens and cost of `spans`, and extrapolated to `total_pending` spans (pending ones and
/// renewals); output tokens per
/// span from `history` (the attempt log) when it has any.
fn estimate(spans: &[PlannedSpan], total_pending: u64, history: &[BackendUsage]) -> CostEstimate {
    let (attempts, output) = history.iter().fold((0, 0), |(attempts, output), usage| {
        (attempts + usage.attempts, output + usage.output_tokens)
    });
    let output_from_history = attempts > 0 && output > 0;
    let per_span = if output_from_history {
        output.div_ceil(attempts)
    } else {
        CostEstimate::ASSUMED_OUTPUT_TOKENS
    };
    let mut prompt_tokens = 0;
    let mut cost: Option<f64> = None;
    for span in spans {
        let prompt = span.estimated_tokens.map_or(0, u64::from);
        prompt_tokens += prompt;
        if let Some(price) = span.route.backends.first().and_then(|b| b.price) {
            *cost.get_or_insert(0.0) += price.cost(prompt, per_span);
        }
    }
    let planned = spans.len() as u64;
    let output_tokens = per_span * planned;
    let scale = if planned == 0 {
        0.0
    } else {
        total_pending as f64 / planned as f64
    };
    CostEstimate {
        prompt_tokens,
        output_tokens,
        output_tokens_per_span: per_span,
        output_from_history,
        cost,
        all_pending_tokens: ((prompt_tokens + output_tokens) as f64 * scale).round() as u64,
        all_pending_cost: cost.map(|c| c * scale),
        batch_cost: None,
        all_pending_batch_cost: None,
    }
}

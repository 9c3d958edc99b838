//! Prometheus metrics at `GET /metrics`, named like vLLM's with a `terse_` prefix:
//!
//! - `terse_requests_running`, `terse_requests_waiting` (gauges: sequences in the
//!   engine's batch and admitted requests' sequences waiting for it),
//!   `terse_kv_cache_usage_ratio`;
//! - `terse_requests_total{endpoint, status}`;
//! - `terse_prompt_tokens_total`, `terse_generation_tokens_total`;
//! - histograms `terse_time_to_first_token_seconds`, `terse_inter_token_latency_seconds`
//!   (between streamed pieces), `terse_e2e_request_latency_seconds`;
//! - terse's own, by strategy: `terse_probe_tokens_total{strategy}`,
//!   `terse_injected_tokens_total{strategy}`, `terse_cost_tokens_total{strategy}` and
//!   `terse_stop_reasons_total{strategy, reason}` (`cancelled` counts clients that left).
//!
//! An answer passed through the proxy counts the upstream's own `usage` and its
//! finish reason as the stop reason, under strategy `none` ([`passed_through`]).
//!
//! The recorder is process-wide: every server in one process shares it.

use crate::error::ServerError;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use terse_reason::{Completion, EngineLoad};

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Latency buckets in seconds, from a fast token to a long answer.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The process's recorder, installed on first use.
pub fn handle() -> Result<PrometheusHandle, ServerError> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(ServerError::Metrics)
}

/// The gauges of the engine's load, set just before a scrape.
pub fn set_load(load: EngineLoad, admitted_sequences: usize) {
    metrics::gauge!("terse_requests_running").set(load.running as f64);
    let waiting = load
        .waiting
        .max(admitted_sequences.saturating_sub(load.running));
    metrics::gauge!("terse_requests_waiting").set(waiting as f64);
    let ratio = if load.kv_blocks_total == 0 {
        0.0
    } else {
        load.kv_blocks_used as f64 / load.kv_blocks_total as f64
    };
    metrics::gauge!("terse_kv_cache_usage_ratio").set(ratio);
}

pub fn request(endpoint: &'static str, status: u16) {
    metrics::counter!("terse_requests_total", "endpoint" => endpoint, "status" => status.to_string())
        .increment(1);
}

pub fn first_token(seconds: f64) {
    metrics::histogram!("terse_time_to_first_token_seconds").record(seconds);
}

pub fn inter_token(seconds: f64) {
    metrics::histogram!("terse_inter_token_latency_seconds").record(seconds);
}

/// One finished completion: its tokens, latency and stop reason.
pub fn completion(strategy: &str, c: &Completion, e2e_seconds: f64) {
    let strategy = strategy.to_string();
    metrics::counter!("terse_prompt_tokens_total").increment(c.usage.prompt_tokens);
    metrics::counter!("terse_generation_tokens_total").increment(c.usage.output_tokens);
    metrics::counter!("terse_probe_tokens_total", "strategy" => strategy.clone())
        .increment(c.usage.probe_tokens());
    metrics::counter!("terse_injected_tokens_total", "strategy" => strategy.clone())
        .increment(c.usage.injected_tokens);
    metrics::counter!("terse_cost_tokens_total", "strategy" => strategy.clone())
        .increment(c.usage.cost_tokens());
    metrics::counter!("terse_stop_reasons_total", "strategy" => strategy,
                      "reason" => c.stop_reason.clone())
    .increment(1);
    metrics::histogram!("terse_e2e_request_latency_seconds").record(e2e_seconds);
}

/// One answer passed through the proxy: the upstream's token counts (when it gave
/// them), its finish reason and the time to its end.
pub fn passed_through(
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    finish_reason: Option<&str>,
    e2e_seconds: f64,
) {
    if let Some(n) = prompt_tokens {
        metrics::counter!("terse_prompt_tokens_total").increment(n);
    }
    if let Some(n) = completion_tokens {
        metrics::counter!("terse_generation_tokens_total").increment(n);
        metrics::counter!("terse_cost_tokens_total", "strategy" => "none").increment(n);
    }
    let reason = finish_reason.unwrap_or("unknown").to_string();
    metrics::counter!("terse_stop_reasons_total", "strategy" => "none", "reason" => reason)
        .increment(1);
    metrics::histogram!("terse_e2e_request_latency_seconds").record(e2e_seconds);
}

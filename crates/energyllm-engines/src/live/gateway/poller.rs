//! The poller: scrapes the upstream's `/metrics` (and llama.cpp's `/slots`) into the
//! controller's telemetry and the gateway's gauges of the upstream's own latency and totals.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::control::Msg;
use super::metrics::store_window;
use super::GatewayMetrics;
use crate::live::prom::Metrics;
use crate::live::upstream::{fetch_slots, join_url, EngineKind, UpstreamLatency};

/// Scrapes every `interval_s` until the controller task's channel closes.
pub(super) async fn poll_upstream_metrics(
    client: reqwest::Client,
    base: reqwest::Url,
    engine: EngineKind,
    tx: mpsc::UnboundedSender<Msg>,
    metrics: Arc<GatewayMetrics>,
    interval_s: f64,
) {
    let url = join_url(&base, "metrics");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(interval_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = UpstreamLatency::default();
    // llama.cpp's metrics carry no KV-cache use; its `/slots` does, unless turned off.
    let mut use_slots = engine == EngineKind::Llamacpp;
    loop {
        tick.tick().await;
        let scraped = scrape(&client, &url, engine).await;
        note_scrape(&metrics, scraped.as_ref().err());
        let parsed = scraped.ok();
        let mut state = parsed.as_ref().and_then(|m| engine.state_from_metrics(m).ok());
        if let Some(m) = &parsed {
            let latency = engine.latency_from_metrics(m);
            // The first scrape is only a baseline: the upstream's lifetime is not a window.
            for (now, before, gauges) in [
                (&latency.ttft_s, &last.ttft_s, &metrics.upstream_latency_s.ttft),
                (&latency.itl_s, &last.itl_s, &metrics.upstream_latency_s.itl),
            ] {
                if let Some(window) = now.as_ref().zip(before.as_ref()).and_then(|(h, b)| h.since(b)) {
                    store_window(gauges, &window);
                }
            }
            last = latency;
            let c = engine.counters_from_metrics(m);
            for (gauge, v) in
                metrics.upstream_totals.0.iter().zip([c.prompt_tokens, c.generated_tokens, c.preemptions])
            {
                gauge.set(v.unwrap_or(f64::NAN));
            }
            use_slots &= m.sum("llamacpp:kv_cache_usage_ratio").is_none();
        }
        if let (true, Some(s)) = (use_slots, state.as_mut()) {
            match fetch_slots(&client, &base).await {
                Ok(slots) => s.kv_usage_frac = slots.kv_usage_frac(),
                // No endpoint (404, or 501 under --no-slots), or not llama.cpp's format: stop
                // asking. A failure that may pass (5xx, unreachable) is retried next time.
                Err(energyllm_core::EngineError::Protocol(_)) => use_slots = false,
                Err(_) => {}
            }
        }
        if let Some(s) = state {
            metrics.upstream_running.store(u64::from(s.running), Ordering::Relaxed);
            metrics.upstream_kv_usage.set(s.kv_usage_frac);
        }
        if tx.send(Msg::Telemetry { kv_usage_frac: state.map(|s| s.kv_usage_frac) }).is_err() {
            return;
        }
    }
}

/// One read of the upstream's `/metrics`, or why it failed, in words an operator can act on.
async fn scrape(client: &reqwest::Client, url: &str, engine: EngineKind) -> Result<Metrics, String> {
    let r = client.get(url).timeout(Duration::from_secs(2)).send().await.map_err(|e| {
        format!("cannot reach the upstream's /metrics: {}", crate::live::upstream::error_chain(&e))
    })?;
    let status = r.status();
    if !status.is_success() {
        let hint = match (engine, status.as_u16()) {
            (EngineKind::Llamacpp, 501 | 404) => " (start llama-server with --metrics)",
            _ => "",
        };
        return Err(format!("the upstream's /metrics answered {status}{hint}"));
    }
    let page = r.text().await.map_err(|e| format!("reading the upstream's /metrics: {e}"))?;
    let m =
        Metrics::parse(&page).map_err(|e| format!("the upstream's /metrics is not Prometheus text: {e}"))?;
    engine.state_from_metrics(&m).map_err(|e| e.to_string())?;
    Ok(m)
}

/// Records a scrape's result for `/ready` and `/metrics`, and logs when reading starts failing
/// (the controller then runs without the engine's state) and when it recovers.
fn note_scrape(metrics: &GatewayMetrics, error: Option<&String>) {
    let Ok(mut last) = metrics.scrape_error.lock() else { return };
    match error {
        None => {
            let ms = metrics.started.elapsed().as_millis().min(u128::from(u64::MAX - 1)) as u64;
            metrics.last_scrape_ok_ms.store(ms, Ordering::Relaxed);
            if last.take().is_some() {
                tracing::info!("the upstream's /metrics reads again; the controller sees the engine's state");
            }
        }
        Some(why) => {
            if last.as_ref() != Some(why) {
                tracing::warn!(
                    reason = %why,
                    "the upstream's metrics cannot be read; the controller runs without the engine's state \
                     (queue, KV use) and /ready answers 503 until they can"
                );
            }
            *last = Some(why.clone());
        }
    }
}

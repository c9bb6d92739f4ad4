//! The counters and gauges the gateway exports ([`GatewayMetrics`]) and the `/metrics` page
//! they render to.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::histogram::{Histogram, SECONDS_BUCKETS, TPOT_BUCKETS};
use crate::live::actuate::AtomicF64;

/// Counters and gauges the gateway exports on `/metrics`.
#[derive(Debug)]
pub struct GatewayMetrics {
    /// Requests waiting for admission.
    pub queued: AtomicUsize,
    /// Requests admitted and not yet ended.
    pub in_flight: AtomicUsize,
    /// The most requests ever in flight at once (for checking the cap).
    pub max_in_flight: AtomicUsize,
    /// The batch cap in force.
    pub batch_cap: AtomicU64,
    /// The clock the controller decided, in MHz.
    pub decided_clock_mhz: AtomicU64,
    /// Decisions taken.
    pub decisions: AtomicU64,
    /// Clock changes commanded.
    pub freq_switches: AtomicU64,
    /// Decisions the policy's safety shield overrode.
    pub shield_overrides: AtomicU64,
    /// Requests answered successfully.
    pub completed: AtomicU64,
    /// Completed requests within the SLO.
    pub slo_met: AtomicU64,
    /// Share of the requests that ended in the last SLO window (completed or failed upstream)
    /// that completed within the SLO; NaN while none ended in the window.
    pub slo_window_ratio: AtomicF64,
    /// Energy per output token of the requests ended in the SLO window, in joules.
    pub joules_per_output_token: AtomicF64,
    /// Admitted requests that ended in an upstream error (5xx, unreachable, timeout, broken
    /// stream).
    pub failed: AtomicU64,
    /// Requests the client got wrong: bad JSON, too large, or refused by the upstream with 4xx.
    pub client_errors: AtomicU64,
    /// Admitted requests whose client went away first.
    pub cancelled: AtomicU64,
    /// Requests turned away because the queue was full.
    pub rejected_queue_full: AtomicU64,
    /// Requests turned away while draining.
    pub rejected_draining: AtomicU64,
    /// Energy measured since start, in joules.
    pub energy_total_j: AtomicF64,
    /// Energy attributed to finished requests, in joules.
    pub request_energy_j: AtomicF64,
    /// Requests turned away because the connection limit was reached.
    pub rejected_connections: AtomicU64,
    /// Connections open now.
    pub connections: AtomicUsize,
    /// Arrival to first token (the whole answer, when not streamed), in seconds.
    pub ttft_s: Histogram,
    /// Mean time per output token after the first, per request, in seconds.
    pub tpot_s: Histogram,
    /// Arrival to the end of the answer, in seconds.
    pub e2e_s: Histogram,
    /// Arrival to admission (time spent in the gateway's queue), in seconds.
    pub queue_wait_s: Histogram,
    /// Requests the upstream reports running (from its `/metrics`).
    pub upstream_running: AtomicU64,
    /// KV-cache use the upstream reports, as a fraction of its capacity (NaN until known).
    pub upstream_kv_usage: AtomicF64,
    /// Milliseconds from the gateway's start to the last successful read of the upstream's
    /// `/metrics` (`u64::MAX` until one succeeds).
    pub last_scrape_ok_ms: AtomicU64,
    /// Why the last read of the upstream's `/metrics` failed, while it is failing.
    pub scrape_error: Mutex<Option<String>>,
    /// When the gateway started (the origin of `last_scrape_ok_ms`).
    pub started: Instant,
    /// The endpoint score in [0, 1] for a typical next request (NaN without a score model).
    pub endpoint_score: AtomicF64,
    /// Its inputs: predicted end-to-end seconds, marginal joules, and the headroom against the
    /// slack budget (`1 − e2e / budget`).
    pub score_inputs: [AtomicF64; 3],
    /// The upstream's own latency over the last window between two scrapes that saw requests
    /// (NaN until one has): time to first token and time between tokens, mean, p50 and p99, in
    /// seconds.
    pub upstream_latency_s: UpstreamLatencyGauges,
    /// The upstream's own totals at the last scrape (NaN until scraped, and where it exports
    /// none): prompt tokens, generated tokens, preemptions.
    pub upstream_totals: UpstreamTotals,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics {
            queued: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            batch_cap: AtomicU64::new(0),
            decided_clock_mhz: AtomicU64::new(0),
            decisions: AtomicU64::new(0),
            freq_switches: AtomicU64::new(0),
            shield_overrides: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            slo_met: AtomicU64::new(0),
            slo_window_ratio: AtomicF64::new(f64::NAN),
            joules_per_output_token: AtomicF64::new(f64::NAN),
            failed: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected_queue_full: AtomicU64::new(0),
            rejected_draining: AtomicU64::new(0),
            energy_total_j: AtomicF64::new(0.0),
            request_energy_j: AtomicF64::new(0.0),
            rejected_connections: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            ttft_s: Histogram::new(SECONDS_BUCKETS),
            tpot_s: Histogram::new(TPOT_BUCKETS),
            e2e_s: Histogram::new(SECONDS_BUCKETS),
            queue_wait_s: Histogram::new(SECONDS_BUCKETS),
            upstream_running: AtomicU64::new(0),
            upstream_kv_usage: AtomicF64::new(f64::NAN),
            last_scrape_ok_ms: AtomicU64::new(u64::MAX),
            scrape_error: Mutex::new(None),
            started: Instant::now(),
            endpoint_score: AtomicF64::new(f64::NAN),
            score_inputs: unknown3(),
            upstream_latency_s: UpstreamLatencyGauges::default(),
            upstream_totals: UpstreamTotals::default(),
        }
    }
}

/// What `/metrics` says about this gateway beyond its counters: `energyllm_build_info`'s labels
/// and the `gpu` label of the GPU's own series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The actuator in use (`sim`, `nvml`, `amd`, `hwd`…): simulated figures say so.
    pub actuator: String,
    /// The policy spec.
    pub policy: String,
    /// Which GPU this gateway drives (the device index, or a name), for multi-GPU nodes.
    pub gpu: String,
}

/// See [`GatewayMetrics::upstream_totals`].
#[derive(Debug)]
pub struct UpstreamTotals(pub [AtomicF64; 3]);

/// Three gauges that read "not known" (NaN, left off the page) until set.
fn unknown3() -> [AtomicF64; 3] {
    [AtomicF64::new(f64::NAN), AtomicF64::new(f64::NAN), AtomicF64::new(f64::NAN)]
}

impl Default for UpstreamTotals {
    fn default() -> Self {
        UpstreamTotals(unknown3())
    }
}

/// Gauges of the upstream's own latency (see [`GatewayMetrics::upstream_latency_s`]).
#[derive(Debug)]
pub struct UpstreamLatencyGauges {
    /// Time to first token: mean, p50, p99.
    pub ttft: [AtomicF64; 3],
    /// Time between output tokens: mean, p50, p99.
    pub itl: [AtomicF64; 3],
}

impl Default for UpstreamLatencyGauges {
    fn default() -> Self {
        UpstreamLatencyGauges { ttft: unknown3(), itl: unknown3() }
    }
}

/// The statistics behind each of [`UpstreamLatencyGauges`]' three values.
const LATENCY_STATS: [&str; 3] = ["mean", "p50", "p99"];

/// Stores a scrape window's mean, p50 and p99 into `gauges`; an empty window leaves them.
pub(super) fn store_window(gauges: &[AtomicF64; 3], window: &crate::live::prom::Histogram) {
    if window.count <= 0.0 {
        return;
    }
    let values = [window.mean(), window.quantile(0.5), window.quantile(0.99)];
    for (g, v) in gauges.iter().zip(values) {
        g.set(v.unwrap_or(f64::NAN));
    }
}

impl GatewayMetrics {
    /// The `/metrics` page, in the Prometheus text format.
    pub(super) fn render(
        &self,
        clock_mhz: u64,
        power_w: f64,
        ready: bool,
        dry_run: bool,
        engine: &str,
        id: &Identity,
    ) -> String {
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let u = |v: &AtomicUsize| v.load(Ordering::Relaxed);
        let done = g(&self.completed);
        let mut s = String::new();
        let label = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(
            s,
            "# HELP energyllm_build_info The gateway's version and what it runs; always 1.\n\
             # TYPE energyllm_build_info gauge\n\
             energyllm_build_info{{version=\"{}\",engine=\"{}\",actuator=\"{}\",policy=\"{}\",gpu=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            label(engine),
            label(&id.actuator),
            label(&id.policy),
            label(&id.gpu),
        );
        let gpu = format!("{{gpu=\"{}\"}}", label(&id.gpu));
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            // The GPU's own series carry its label, so that a node's gateways can be told apart.
            let labels = if name.starts_with("energyllm_clock")
                || name.starts_with("energyllm_decided_clock")
                || name.starts_with("energyllm_power")
                || name == "energyllm_energy_joules_total"
            {
                gpu.as_str()
            } else {
                ""
            };
            let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}\n");
        };
        line(
            "energyllm_queue_length",
            "gauge",
            "Requests waiting for admission.",
            u(&self.queued).to_string(),
        );
        line(
            "energyllm_in_flight",
            "gauge",
            "Requests admitted to the upstream.",
            u(&self.in_flight).to_string(),
        );
        line(
            "energyllm_max_in_flight",
            "gauge",
            "The most requests ever in flight at once (never above the cap in force then).",
            u(&self.max_in_flight).to_string(),
        );
        line("energyllm_connections", "gauge", "Client connections open.", u(&self.connections).to_string());
        line("energyllm_batch_cap", "gauge", "Batch cap in force.", g(&self.batch_cap).to_string());
        line("energyllm_clock_mhz", "gauge", "GPU clock the actuator reports.", clock_mhz.to_string());
        line(
            "energyllm_decided_clock_mhz",
            "gauge",
            "GPU clock the policy chose.",
            g(&self.decided_clock_mhz).to_string(),
        );
        line(
            "energyllm_ready",
            "gauge",
            "1 when /ready answers 200: not draining, upstream metrics fresh, actuator sound.",
            u8::from(ready).to_string(),
        );
        line(
            "energyllm_dry_run",
            "gauge",
            "1 when clocks are decided but not applied.",
            u8::from(dry_run).to_string(),
        );
        line("energyllm_power_watts", "gauge", "Board power, last sample.", power_w.to_string());
        line("energyllm_decisions_total", "counter", "Policy decisions.", g(&self.decisions).to_string());
        line(
            "energyllm_shield_overrides_total",
            "counter",
            "Decisions where the safety shield raised the policy's clock.",
            g(&self.shield_overrides).to_string(),
        );
        line(
            "energyllm_freq_switches_total",
            "counter",
            "Clock changes commanded.",
            g(&self.freq_switches).to_string(),
        );
        line(
            "energyllm_energy_joules_total",
            "counter",
            "GPU energy since start.",
            self.energy_total_j.get().to_string(),
        );
        line(
            "energyllm_request_energy_joules_total",
            "counter",
            "GPU energy attributed to finished requests.",
            self.request_energy_j.get().to_string(),
        );
        line("energyllm_requests_completed_total", "counter", "Requests answered.", done.to_string());
        line(
            "energyllm_requests_failed_total",
            "counter",
            "Admitted requests that failed upstream (5xx, unreachable, timeout, broken stream).",
            g(&self.failed).to_string(),
        );
        line(
            "energyllm_requests_client_errors_total",
            "counter",
            "Requests the client got wrong (bad JSON, too large, or a 4xx from the upstream).",
            g(&self.client_errors).to_string(),
        );
        line(
            "energyllm_requests_slo_met_total",
            "counter",
            "Completed requests within every SLO target.",
            g(&self.slo_met).to_string(),
        );
        line(
            "energyllm_requests_cancelled_total",
            "counter",
            "Admitted requests whose client left.",
            g(&self.cancelled).to_string(),
        );
        line(
            "energyllm_requests_rejected_queue_full_total",
            "counter",
            "Requests refused with 429.",
            g(&self.rejected_queue_full).to_string(),
        );
        line(
            "energyllm_requests_rejected_draining_total",
            "counter",
            "Requests refused with 503 while draining.",
            g(&self.rejected_draining).to_string(),
        );
        line(
            "energyllm_connections_rejected_total",
            "counter",
            "Connections refused with 503 at the connection limit.",
            g(&self.rejected_connections).to_string(),
        );
        let window = self.slo_window_ratio.get();
        if window.is_finite() {
            line(
                "energyllm_slo_attainment_ratio",
                "gauge",
                "Requests ended in the SLO window (completed or failed upstream) that met the SLO.",
                window.to_string(),
            );
        }
        let jpt = self.joules_per_output_token.get();
        if jpt.is_finite() {
            line(
                "energyllm_joules_per_output_token",
                "gauge",
                "Energy of the requests ended in the SLO window per output token they produced.",
                jpt.to_string(),
            );
        }
        let kv = self.upstream_kv_usage.get();
        if kv.is_finite() {
            line(
                "energyllm_upstream_kv_usage_ratio",
                "gauge",
                "KV-cache use the upstream reports, as a fraction of its capacity.",
                kv.to_string(),
            );
        }
        for (name, help, v) in [
            (
                "energyllm_endpoint_score",
                "How good a place this instance is for the next request, 0 to 1 (the cluster router's score).",
                self.endpoint_score.get(),
            ),
            (
                "energyllm_predicted_e2e_seconds",
                "Predicted end-to-end time of a typical next request.",
                self.score_inputs[0].get(),
            ),
            (
                "energyllm_predicted_marginal_energy_joules",
                "Predicted extra board energy of a typical next request.",
                self.score_inputs[1].get(),
            ),
            (
                "energyllm_slo_headroom_ratio",
                "1 - predicted end-to-end time over the slack budget (negative: no slack).",
                self.score_inputs[2].get(),
            ),
        ] {
            if v.is_finite() {
                line(name, "gauge", help, v.to_string());
            }
        }
        let last = g(&self.last_scrape_ok_ms);
        line(
            "energyllm_upstream_metrics_up",
            "gauge",
            "1 when the last read of the upstream's /metrics succeeded.",
            u8::from(self.scrape_error.lock().is_ok_and(|e| e.is_none()) && last != u64::MAX).to_string(),
        );
        line(
            "energyllm_upstream_running",
            "gauge",
            "Requests the upstream reports running.",
            g(&self.upstream_running).to_string(),
        );
        for ((name, help), v) in [
            ("energyllm_upstream_prompt_tokens_total", "Prompt tokens the upstream reports processed."),
            ("energyllm_upstream_generated_tokens_total", "Tokens the upstream reports generated."),
            ("energyllm_upstream_preemptions_total", "Requests the upstream reports preempted."),
        ]
        .into_iter()
        .zip(&self.upstream_totals.0)
        {
            let v = v.get();
            if v.is_finite() {
                line(name, "counter", help, v.to_string());
            }
        }
        for (h, name, help) in [
            (
                &self.ttft_s,
                "energyllm_ttft_seconds",
                "Arrival to first token (the whole answer when not streamed).",
            ),
            (
                &self.tpot_s,
                "energyllm_tpot_seconds",
                "Mean time per output token after the first, per request.",
            ),
            (
                &self.e2e_s,
                "energyllm_e2e_seconds",
                "Arrival to the end of the answer, per completed request.",
            ),
            (
                &self.queue_wait_s,
                "energyllm_queue_wait_seconds",
                "Arrival to admission upstream, per admitted request.",
            ),
        ] {
            h.render(&mut s, name, help);
        }
        for (name, what, gauges) in [
            ("energyllm_upstream_ttft_seconds", "time to first token", &self.upstream_latency_s.ttft),
            ("energyllm_upstream_itl_seconds", "time between output tokens", &self.upstream_latency_s.itl),
        ] {
            let values: Vec<(&str, f64)> = LATENCY_STATS
                .iter()
                .zip(gauges)
                .map(|(k, v)| (*k, v.get()))
                .filter(|(_, v)| v.is_finite())
                .collect();
            if values.is_empty() {
                continue;
            }
            let _ = write!(
                s,
                "# HELP {name} The upstream's own {what} over its last scrape window with requests.\n# TYPE {name} gauge\n"
            );
            for (stat, v) in values {
                let _ = writeln!(s, "{name}{{stat=\"{stat}\"}} {v}");
            }
        }
        s
    }
}

//! The counters and gauges the gateway exports ([`GatewayMetrics`]) and the `/metrics` page
//! they render to.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::live::actuate::AtomicF64;
use crate::live::prom::Histogram;

/// Counters and gauges the gateway exports on `/metrics`.
#[derive(Debug, Default)]
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
    /// Admitted requests that ended in an upstream error.
    pub failed: AtomicU64,
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
    /// Requests the upstream reports running (from its `/metrics`).
    pub upstream_running: AtomicU64,
    /// The upstream's own latency over the last window between two scrapes that saw requests
    /// (NaN until one has): time to first token and time between tokens, mean, p50 and p99, in
    /// seconds.
    pub upstream_latency_s: UpstreamLatencyGauges,
    /// The upstream's own totals at the last scrape (NaN until scraped, and where it exports
    /// none): prompt tokens, generated tokens, preemptions.
    pub upstream_totals: UpstreamTotals,
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
pub(super) fn store_window(gauges: &[AtomicF64; 3], window: &Histogram) {
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
    pub(super) fn render(&self, clock_mhz: u64, power_w: f64, dry_run: bool) -> String {
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let u = |v: &AtomicUsize| v.load(Ordering::Relaxed);
        let done = g(&self.completed);
        let slo = if done == 0 { 1.0 } else { g(&self.slo_met) as f64 / done as f64 };
        let mut s = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
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
        line("energyllm_batch_cap", "gauge", "Batch cap in force.", g(&self.batch_cap).to_string());
        line("energyllm_clock_mhz", "gauge", "GPU clock the actuator reports.", clock_mhz.to_string());
        line(
            "energyllm_decided_clock_mhz",
            "gauge",
            "GPU clock the policy chose.",
            g(&self.decided_clock_mhz).to_string(),
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
            "Admitted requests that failed upstream.",
            g(&self.failed).to_string(),
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
            "energyllm_slo_attainment_ratio",
            "gauge",
            "Completed requests within the SLO.",
            slo.to_string(),
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
            s.push_str(&format!(
                "# HELP {name} The upstream's own {what} over its last scrape window with requests.\n# TYPE {name} gauge\n"
            ));
            for (stat, v) in values {
                s.push_str(&format!("{name}{{stat=\"{stat}\"}} {v}\n"));
            }
        }
        s
    }
}

//! Lock-free latency histograms in Prometheus' cumulative-bucket form, so that dashboards can
//! aggregate them across gateways (`histogram_quantile(0.99, sum by (le) (rate(…_bucket[5m])))`),
//! which quantile gauges cannot do.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::live::actuate::AtomicF64;

/// Bucket upper bounds for times to first token, end-to-end times and queue waits, in seconds.
pub(super) const SECONDS_BUCKETS: &[f64] =
    &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// Bucket upper bounds for times per output token, in seconds (tens of milliseconds matter).
pub(super) const TPOT_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0];

/// A histogram of observations in seconds over fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative; summed when rendered), the last one `+Inf`.
    counts: Vec<AtomicU64>,
    sum: AtomicF64,
}

impl Histogram {
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::new(0.0),
        }
    }

    /// Records one observation; NaN and negative values (a clock step) are dropped.
    pub fn observe(&self, v: f64) {
        if v.is_nan() || v < 0.0 {
            return;
        }
        let k = self.bounds.iter().position(|&b| v <= b).unwrap_or(self.bounds.len());
        self.counts[k].fetch_add(1, Ordering::Relaxed);
        self.sum.add(v);
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Appends the histogram as `name` with `help` to a Prometheus text page.
    pub(super) fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (k, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            match self.bounds.get(k) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {cumulative}", self.sum.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::prom::Metrics;

    #[test]
    fn renders_cumulative_buckets_that_the_scraper_reads_back() {
        let h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0, f64::NAN, -1.0] {
            h.observe(v);
        }
        assert_eq!(h.count(), 4, "NaN and negative values are dropped");
        let mut page = String::new();
        h.render(&mut page, "x_seconds", "help");
        assert!(page.contains("x_seconds_bucket{le=\"0.1\"} 2\n"), "{page}");
        assert!(page.contains("x_seconds_bucket{le=\"1\"} 3\n"));
        assert!(page.contains("x_seconds_bucket{le=\"+Inf\"} 4\n") && page.contains("x_seconds_count 4\n"));
        let parsed = Metrics::parse(&page).unwrap();
        let back = parsed.histogram("x_seconds").unwrap();
        assert_eq!(back.count, 4.0);
        assert!((back.sum - 3.65).abs() < 1e-9);
    }
}

//! Latency service-level objectives.

use serde::{Deserialize, Serialize};

/// Latency targets a request must meet to count as served within its SLO.
///
/// The end-to-end target is always set (the EnergyLLM paper evaluates with 11 s); time to
/// first token and time per output token are optional extra conditions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// End-to-end latency target, arrival to last token, in seconds.
    pub e2e_s: f64,
    /// Time-to-first-token target in seconds, if any.
    #[serde(default)]
    pub ttft_s: Option<f64>,
    /// Mean time-per-output-token target (after the first token) in seconds, if any.
    #[serde(default)]
    pub tpot_s: Option<f64>,
}

impl Slo {
    /// An end-to-end-only SLO.
    pub const fn e2e(e2e_s: f64) -> Self {
        Slo { e2e_s, ttft_s: None, tpot_s: None }
    }

    /// Whether a request with these latencies meets every target that is set.
    pub fn is_met(&self, e2e_s: f64, ttft_s: f64, tpot_s: Option<f64>) -> bool {
        e2e_s <= self.e2e_s
            && self.ttft_s.is_none_or(|t| ttft_s <= t)
            && match (self.tpot_s, tpot_s) {
                (Some(target), Some(tpot)) => tpot <= target,
                _ => true,
            }
    }
}

impl Default for Slo {
    /// 11 s end to end, the EnergyLLM paper's evaluation setting.
    fn default() -> Self {
        Slo::e2e(11.0)
    }
}

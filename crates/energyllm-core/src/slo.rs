//! Latency service-level objectives.

use serde::{Deserialize, Serialize};

/// Latency targets a request must meet to count as served within its SLO.
///
/// Each target is optional and at least one is set: operators state time to first token and
/// time per output token (what a chat user feels); the EnergyLLM paper evaluates with one
/// end-to-end target of 11 s. A request meets the SLO when it meets every target that is set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// End-to-end latency target, arrival to last token, in seconds, if any.
    #[serde(default)]
    pub e2e_s: Option<f64>,
    /// Time-to-first-token target in seconds, if any.
    #[serde(default)]
    pub ttft_s: Option<f64>,
    /// Mean time-per-output-token target (after the first token) in seconds, if any.
    #[serde(default)]
    pub tpot_s: Option<f64>,
}

impl Slo {
    /// An end-to-end-only SLO (the EnergyLLM paper's form).
    pub const fn e2e(e2e_s: f64) -> Self {
        Slo { e2e_s: Some(e2e_s), ttft_s: None, tpot_s: None }
    }

    /// A per-token SLO: time to first token and time per output token, in seconds.
    pub const fn per_token(ttft_s: f64, tpot_s: f64) -> Self {
        Slo { e2e_s: None, ttft_s: Some(ttft_s), tpot_s: Some(tpot_s) }
    }

    /// Whether a request with these latencies meets every target that is set.
    pub fn is_met(&self, e2e_s: f64, ttft_s: f64, tpot_s: Option<f64>) -> bool {
        self.e2e_s.is_none_or(|t| e2e_s <= t)
            && self.ttft_s.is_none_or(|t| ttft_s <= t)
            && match (self.tpot_s, tpot_s) {
                (Some(target), Some(tpot)) => tpot <= target,
                _ => true,
            }
    }
}

impl Slo {
    /// The end-to-end time a request of `output_tokens` may take and still meet every target
    /// that bounds it: the end-to-end target, and time to first token plus time per output token
    /// for each token after the first. Look-ahead policies plan against it. Infinite when no
    /// target bounds the whole request.
    pub fn latency_budget_s(&self, output_tokens: f64) -> f64 {
        let per_token = match (self.ttft_s, self.tpot_s) {
            (Some(ttft), Some(tpot)) => ttft + tpot * (output_tokens - 1.0).max(0.0),
            _ => f64::INFINITY,
        };
        self.e2e_s.unwrap_or(f64::INFINITY).min(per_token)
    }

    /// Checks that at least one target is set and every target is a positive number of seconds;
    /// the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("e2e_s", self.e2e_s), ("ttft_s", self.ttft_s), ("tpot_s", self.tpot_s)] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(format!("slo.{name} must be a positive number of seconds, got {v}"));
            }
        }
        if self.e2e_s.is_none() && self.ttft_s.is_none() && self.tpot_s.is_none() {
            return Err("the SLO sets no target: give an end-to-end, time-to-first-token or time-per-output-token target".into());
        }
        Ok(())
    }

    /// A short description for reports, e.g. `TTFT ≤ 2 s, TPOT ≤ 0.1 s`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.ttft_s {
            parts.push(format!("TTFT ≤ {t} s"));
        }
        if let Some(t) = self.tpot_s {
            parts.push(format!("TPOT ≤ {t} s"));
        }
        if let Some(t) = self.e2e_s {
            parts.push(format!("end to end ≤ {t} s"));
        }
        parts.join(", ")
    }
}

impl Default for Slo {
    /// 11 s end to end, the EnergyLLM paper's evaluation setting.
    fn default() -> Self {
        Slo::e2e(11.0)
    }
}

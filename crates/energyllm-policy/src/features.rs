//! Observation features: the [`Observation`] turned into the fixed-size, roughly unit-scaled
//! vector a network reads.
//!
//! Two sets, selectable (the ablation compares them):
//!
//! **Token-aware** ([`FeatureSet::TokenAware`], the default), 16 features:
//!
//! | # | feature | normalisation |
//! |---|---|---|
//! | 0 | queue length | requests / 16, clipped to [0, 4] |
//! | 1 | queued prompt tokens | tokens / 4096, clipped to [0, 4] |
//! | 2 | expected queued output tokens (queue × mean output of completed requests) | tokens / 4096, clipped to [0, 4] |
//! | 3 | running batch | requests / 32, clipped to [0, 4] |
//! | 4 | KV-cache use | fraction, [0, 1] |
//! | 5 | clock index | index / (clocks − 1), [0, 1] |
//! | 6 | batch-cap index | index of the nearest batch of the space / (batches − 1), [0, 1] |
//! | 7 | time since the last clock switch | s / 10, clipped to [0, 1] |
//! | 8 | arrival-rate estimate | req/s / 2, clipped to [0, 4] |
//! | 9 | oldest queued wait relative to the SLO | wait / SLO, clipped to [0, 4] |
//! | 10 | mean queued wait relative to the SLO | wait / SLO, clipped to [0, 4] |
//! | 11 | recent SLO attainment (last 20 completions) | fraction, [0, 1] |
//! | 12 | recent mean latency relative to the SLO | latency / SLO, clipped to [0, 4] |
//! | 13 | recent board power | W / 400, clipped to [0, 4] |
//! | 14 | mean output length of completed requests | tokens / 1024, clipped to [0, 4] |
//! | 15 | SLO target | s / 20, clipped to [0, 4] |
//!
//! **Paper** ([`FeatureSet::Paper`]), the EnergyLLM paper's 7 features with no token lengths:
//! queue length (/ 16), clock index (/ (clocks − 1)), recent SLO attainment, recent mean
//! latency (/ SLO), arrival rate (/ 2), mean queued wait (/ SLO), SLO target (/ 20), with the
//! same clipping as above.
//!
//! The scales put the default workload (0.6–1.2 req/s, SLO 10–13 s, chat lengths) near [0, 1];
//! clipping keeps a burst from saturating the network's first layer.

use serde::{Deserialize, Serialize};

use energyllm_core::{ActionSpace, Observation};

/// Which observation features a policy reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureSet {
    /// The 16 token-aware features (see the [module docs](self)).
    #[default]
    TokenAware,
    /// The EnergyLLM paper's 7 features.
    Paper,
}

const TOKEN_AWARE: [&str; 16] = [
    "queue_len",
    "queued_prompt_tokens",
    "queued_expected_output_tokens",
    "running",
    "kv_usage_frac",
    "freq_index",
    "batch_index",
    "since_last_switch_s",
    "arrival_rate_rps",
    "oldest_wait_over_slo",
    "mean_wait_over_slo",
    "recent_slo_attainment",
    "recent_latency_over_slo",
    "recent_power_w",
    "mean_output_tokens",
    "slo_e2e_s",
];

const PAPER: [&str; 7] = [
    "queue_len",
    "freq_index",
    "recent_slo_attainment",
    "recent_latency_over_slo",
    "arrival_rate_rps",
    "mean_wait_over_slo",
    "slo_e2e_s",
];

fn clip(x: f64, hi: f64) -> f32 {
    if x.is_finite() {
        x.clamp(0.0, hi) as f32
    } else {
        0.0
    }
}

impl FeatureSet {
    /// Length of the feature vector.
    pub fn dim(self) -> usize {
        self.names().len()
    }

    /// Feature names, in vector order.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            FeatureSet::TokenAware => &TOKEN_AWARE,
            FeatureSet::Paper => &PAPER,
        }
    }

    /// The name used in configs and checkpoints (`token-aware`, `paper`).
    pub fn label(self) -> &'static str {
        match self {
            FeatureSet::TokenAware => "token-aware",
            FeatureSet::Paper => "paper",
        }
    }

    /// Writes the features of `obs` into `out` (length [`dim`](Self::dim)).
    pub fn encode(self, obs: &Observation, space: &ActionSpace, out: &mut [f32]) {
        // The end-to-end budget the SLO implies (the end-to-end target itself when that is all it
        // sets, as in training); capped so an unbounded SLO still gives finite features.
        let slo = obs.slo.latency_budget_s(obs.mean_output_tokens).clamp(1e-3, 1e6);
        let index_frac = |i: usize, n: usize| if n > 1 { i as f32 / (n - 1) as f32 } else { 0.0 };
        let freq = index_frac(obs.freq_index, space.freqs().len());
        match self {
            FeatureSet::TokenAware => {
                let bs = space.batches();
                let bi = bs.partition_point(|&b| b < obs.batch_cap).min(bs.len() - 1);
                out[0] = clip(f64::from(obs.queue_len) / 16.0, 4.0);
                out[1] = clip(obs.queued_prompt_tokens as f64 / 4096.0, 4.0);
                out[2] = clip(obs.queued_expected_output_tokens / 4096.0, 4.0);
                out[3] = clip(f64::from(obs.running) / 32.0, 4.0);
                out[4] = clip(obs.kv_usage_frac, 1.0);
                out[5] = freq;
                out[6] = index_frac(bi, bs.len());
                out[7] = clip(obs.since_last_switch_s / 10.0, 1.0);
                out[8] = clip(obs.arrival_rate_rps / 2.0, 4.0);
                out[9] = clip(obs.oldest_wait_s / slo, 4.0);
                out[10] = clip(obs.mean_wait_s / slo, 4.0);
                out[11] = clip(obs.recent_slo_attainment, 1.0);
                out[12] = clip(obs.recent_mean_latency_s / slo, 4.0);
                out[13] = clip(obs.recent_power_w / 400.0, 4.0);
                out[14] = clip(obs.mean_output_tokens / 1024.0, 4.0);
                out[15] = clip(slo / 20.0, 4.0);
            }
            FeatureSet::Paper => {
                out[0] = clip(f64::from(obs.queue_len) / 16.0, 4.0);
                out[1] = freq;
                out[2] = clip(obs.recent_slo_attainment, 1.0);
                out[3] = clip(obs.recent_mean_latency_s / slo, 4.0);
                out[4] = clip(obs.arrival_rate_rps / 2.0, 4.0);
                out[5] = clip(obs.mean_wait_s / slo, 4.0);
                out[6] = clip(slo / 20.0, 4.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use energyllm_core::{Mhz, Slo, Timestamp};

    pub(crate) fn sample() -> Observation {
        Observation {
            now: Timestamp::from_secs_f64(10.0),
            queue_len: 8,
            queued_prompt_tokens: 2048,
            queued_expected_output_tokens: 8.0 * 300.0,
            running: 8,
            kv_usage_frac: 0.25,
            freq: Mhz(1200),
            freq_index: 8,
            batch_cap: 16,
            since_last_switch_s: 30.0,
            arrival_rate_rps: 1.0,
            oldest_wait_s: 5.5,
            mean_wait_s: 2.2,
            recent_slo_attainment: 0.9,
            recent_mean_latency_s: 6.6,
            recent_power_w: 200.0,
            mean_output_tokens: 300.0,
            mean_prompt_tokens: 256.0,
            completed: 10,
            slo: Slo::e2e(11.0),
        }
    }

    #[test]
    fn features_are_scaled_as_documented() {
        let space = ActionSpace::paper();
        let mut v = vec![0.0; FeatureSet::TokenAware.dim()];
        FeatureSet::TokenAware.encode(&sample(), &space, &mut v);
        let want = [
            0.5,
            0.5,
            2400.0 / 4096.0,
            0.25,
            0.25,
            8.0 / 14.0,
            4.0 / 6.0,
            1.0,
            0.5,
            0.5,
            0.2,
            0.9,
            0.6,
            0.5,
            300.0 / 1024.0,
            0.55,
        ];
        for (i, (a, b)) in v.iter().zip(want).enumerate() {
            assert!((a - b).abs() < 1e-6, "feature {i} ({}): {a} vs {b}", TOKEN_AWARE[i]);
        }
        let mut p = vec![0.0; 7];
        FeatureSet::Paper.encode(&sample(), &space, &mut p);
        assert_eq!(p.len(), PAPER.len());
        assert!((p[5] - 0.2).abs() < 1e-6 && (p[6] - 0.55).abs() < 1e-6, "{p:?}");
    }
}

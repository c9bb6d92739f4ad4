//! Synthetic length distributions for the bundled samples.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use crate::workload::LengthSample;

/// A clipped log-normal token-length distribution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogNormalLengths {
    /// Median length in tokens (e^μ).
    pub median: f64,
    /// Standard deviation of the log length (σ).
    pub sigma: f64,
    /// Smallest length kept (shorter draws are raised to it).
    pub min: u32,
    /// Largest length kept (longer draws are cut to it).
    pub max: u32,
}

/// The recipe of a synthetic sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyntheticRecipe {
    /// Prompt lengths.
    pub input: LogNormalLengths,
    /// Output lengths.
    pub output: LogNormalLengths,
    /// Requests to draw.
    pub count: usize,
    /// Seed.
    pub seed: u64,
}

/// The bundled ShareGPT-like sample's recipe: chat-like, with prompts around a hundred tokens
/// and answers a little longer, both heavy-tailed. These are round figures chosen to resemble
/// chat traffic, not a fit to ShareGPT; the workloads issue replaces them with fitted
/// distributions.
pub const SHAREGPT_LIKE: SyntheticRecipe = SyntheticRecipe {
    input: LogNormalLengths { median: 110.0, sigma: 1.0, min: 4, max: 2048 },
    output: LogNormalLengths { median: 120.0, sigma: 0.8, min: 1, max: 1024 },
    count: 1000,
    seed: 20_250_101,
};

impl SyntheticRecipe {
    /// Draws the sample; the same recipe always gives the same lengths.
    pub fn generate(&self) -> Vec<LengthSample> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let draw = |d: &LogNormalLengths, rng: &mut ChaCha8Rng| -> u32 {
            let dist = LogNormal::new(d.median.ln(), d.sigma)
                .unwrap_or_else(|_| unreachable!("constant parameters"));
            (dist.sample(rng).round() as u32).clamp(d.min, d.max)
        };
        (0..self.count)
            .map(|_| {
                let input_len = draw(&self.input, &mut rng);
                let output_len = draw(&self.output, &mut rng);
                LengthSample { input_len, output_len }
            })
            .collect()
    }

    /// The sample as JSON lines, the bundled file's exact contents.
    pub fn to_jsonl(&self) -> String {
        let mut s = String::new();
        for l in self.generate() {
            s.push_str(&format!("{{\"input_len\":{},\"output_len\":{}}}\n", l.input_len, l.output_len));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_sample_is_exactly_what_the_recipe_makes() {
        assert!(
            SHAREGPT_LIKE.to_jsonl() == crate::workload::SHAREGPT_LIKE_SAMPLE,
            "data/sharegpt_like_sample.jsonl is stale: run `cargo xtask gen-samples`"
        );
    }
}

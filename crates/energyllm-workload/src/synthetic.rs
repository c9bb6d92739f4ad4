//! Synthetic length distributions for the bundled ShareGPT-like and WildChat-like samples.
//!
//! Each recipe is a pair of clipped log-normal distributions fitted by the method of moments to
//! a published mean and standard deviation: for mean m and standard deviation s,
//! σ² = ln(1 + s²/m²) and μ = ln m − σ²/2. The published figures are per-turn token counts from
//! Table 1 of Zhao et al., "WildChat: 1M ChatGPT Interaction Logs in the Wild" (ICLR 2024),
//! which reports ShareGPT and WildChat side by side with the same method. `data/README.md`
//! lists them with the statistics of the generated files. The samples are synthetic: no text and
//! no length from either dataset is in them.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use crate::LengthSample;

/// A clipped log-normal token-length distribution, given by the mean and standard deviation it
/// is fitted to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogNormalLengths {
    /// Published mean, in tokens.
    pub mean: f64,
    /// Published standard deviation, in tokens.
    pub sd: f64,
    /// Smallest length kept (shorter draws are raised to it).
    pub min: u32,
    /// Largest length kept (longer draws are cut to it).
    pub max: u32,
}

impl LogNormalLengths {
    /// The log-normal's μ and σ (method of moments).
    pub fn mu_sigma(&self) -> (f64, f64) {
        let var_log = (1.0 + (self.sd / self.mean).powi(2)).ln();
        (self.mean.ln() - var_log / 2.0, var_log.sqrt())
    }

    /// The median of the fitted (unclipped) distribution, e^μ.
    pub fn median(&self) -> f64 {
        self.mu_sigma().0.exp()
    }
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

/// ShareGPT-like: WildChat paper, Table 1, ShareGPT row — user turns 94.46 ± 626.39 tokens,
/// assistant turns 348.45 ± 269.93 tokens. Prompts are clipped to 16 384 tokens (a long-context
/// window) and answers to 4 096 (ChatGPT's output cap at the time).
pub const SHAREGPT_LIKE: SyntheticRecipe = SyntheticRecipe {
    input: LogNormalLengths { mean: 94.46, sd: 626.39, min: 1, max: 16_384 },
    output: LogNormalLengths { mean: 348.45, sd: 269.93, min: 1, max: 4_096 },
    count: 1000,
    seed: 20_250_101,
};

/// WildChat-like: WildChat paper, Table 1, WildChat row — user turns 295.58 ± 1 609.18 tokens,
/// assistant turns 441.34 ± 410.91 tokens; clipped as [`SHAREGPT_LIKE`].
pub const WILDCHAT_LIKE: SyntheticRecipe = SyntheticRecipe {
    input: LogNormalLengths { mean: 295.58, sd: 1_609.18, min: 1, max: 16_384 },
    output: LogNormalLengths { mean: 441.34, sd: 410.91, min: 1, max: 4_096 },
    count: 1000,
    seed: 20_250_102,
};

impl SyntheticRecipe {
    /// Draws the sample; the same recipe always gives the same lengths.
    pub fn generate(&self) -> Vec<LengthSample> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let draw = |d: &LogNormalLengths, rng: &mut ChaCha8Rng| -> u32 {
            let (mu, sigma) = d.mu_sigma();
            match LogNormal::new(mu, sigma) {
                Ok(dist) => (dist.sample(rng).round().min(f64::from(u32::MAX)) as u32).clamp(d.min, d.max),
                // Only a recipe with a non-finite σ gets here; its median is the best guess.
                Err(_) => (d.median().round() as u32).clamp(d.min, d.max),
            }
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
    use crate::bundled;

    #[test]
    fn the_bundled_samples_are_exactly_what_the_recipes_make() {
        for (recipe, name) in [(SHAREGPT_LIKE, "sharegpt-like"), (WILDCHAT_LIKE, "wildchat-like")] {
            let b = bundled::find(name).unwrap();
            assert!(
                recipe.to_jsonl() == b.contents,
                "data/{} is stale: run `cargo xtask gen-samples`",
                b.file
            );
        }
    }

    #[test]
    fn the_fit_reproduces_the_published_moments() {
        for d in [SHAREGPT_LIKE.input, SHAREGPT_LIKE.output, WILDCHAT_LIKE.input, WILDCHAT_LIKE.output] {
            let (mu, sigma) = d.mu_sigma();
            let mean = (mu + sigma * sigma / 2.0).exp();
            let sd = mean * ((sigma * sigma).exp() - 1.0).sqrt();
            assert!((mean / d.mean - 1.0).abs() < 1e-12 && (sd / d.sd - 1.0).abs() < 1e-9, "{d:?}");
        }
        // Heavy-tailed prompts: the median is far below the mean.
        assert!((SHAREGPT_LIKE.input.median() - 14.1).abs() < 0.1, "{}", SHAREGPT_LIKE.input.median());
        assert!((WILDCHAT_LIKE.output.median() - 323.1).abs() < 0.5, "{}", WILDCHAT_LIKE.output.median());
    }
}

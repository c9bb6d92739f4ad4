//! The safety shield: a performance-model check that overrides a learned policy's clock when it
//! would make the oldest queued request miss its SLO.
//!
//! The check: the oldest queued request has waited `oldest_wait_s`; if it ran now in a batch of
//! min(batch cap, running + queued) requests of the queue's mean prompt and the mean completed
//! output length, the performance model predicts its latency at each clock
//! ([`forecast::batch`]). If wait + predicted latency exceeds `margin` × SLO at the chosen clock,
//! the shield raises the clock to the lowest one that meets it (the top clock when none does).
//! It only ever raises the clock and never touches the batch cap, so it cannot make a decision
//! less safe; each raise is counted. A learned policy is trained with the shield in the loop, so
//! it learns to lean on it rather than fight it.

use std::sync::Arc;

use energyllm_core::{Action, ActionSpace, Observation, PerfModel};

use crate::forecast::{self, mean_queued_prompt};

/// Prompt length assumed when nothing is queued, in tokens (the shield only acts on a queue).
const FALLBACK_PROMPT_TOKENS: f64 = 256.0;

/// See the [module docs](self).
#[derive(Clone)]
pub struct Shield {
    perf: Arc<dyn PerfModel>,
    space: ActionSpace,
    margin: f64,
    overrides: u64,
}

impl std::fmt::Debug for Shield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shield")
            .field("perf", &self.perf.name())
            .field("margin", &self.margin)
            .field("overrides", &self.overrides)
            .finish()
    }
}

impl Shield {
    /// A shield over `space` that keeps predicted latency within `margin` × SLO.
    pub fn new(perf: Arc<dyn PerfModel>, space: ActionSpace, margin: f64) -> Self {
        Shield { perf, space, margin, overrides: 0 }
    }

    /// Times the shield raised the clock.
    pub fn overrides(&self) -> u64 {
        self.overrides
    }

    /// Forgets the override count.
    pub fn reset(&mut self) {
        self.overrides = 0;
    }

    /// `action`, or the same batch at a higher clock when the chosen one would make the oldest
    /// queued request miss its SLO.
    pub fn check(&mut self, obs: &Observation, action: Action) -> Action {
        if obs.queue_len == 0 {
            return action;
        }
        let budget_s = self.margin * obs.slo.e2e_s - obs.oldest_wait_s;
        let batch = action.batch.min(obs.queue_len.saturating_add(obs.running)).max(1);
        let prompt = mean_queued_prompt(obs, FALLBACK_PROMPT_TOKENS);
        let meets = |f| {
            forecast::batch(self.perf.as_ref(), f, batch, prompt, obs.mean_output_tokens).latency_s
                <= budget_s
        };
        if meets(action.freq) {
            return action;
        }
        let freq = self
            .space
            .freqs()
            .iter()
            .copied()
            .filter(|&f| f > action.freq)
            .find(|&f| meets(f))
            .unwrap_or(self.space.max_freq());
        if freq != action.freq {
            self.overrides += 1;
        }
        Action { freq, batch: action.batch }
    }
}

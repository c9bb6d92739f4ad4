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
        let budget_s = self.margin * obs.slo.latency_budget_s(obs.mean_output_tokens) - obs.oldest_wait_s;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use energyllm_core::{Mhz, PerfPrediction, PerfQuery, Slo, Timestamp};

    /// Iterations take 20 ms at 1410 MHz, scaling inversely with the clock.
    struct InverseClock;
    impl PerfModel for InverseClock {
        fn name(&self) -> &str {
            "inverse-clock"
        }
        fn predict(&self, q: &PerfQuery) -> PerfPrediction {
            PerfPrediction { latency_s: 0.02 * 1410.0 / f64::from(q.freq.0), power_w: 300.0 }
        }
    }

    fn obs(queue_len: u32, oldest_wait_s: f64) -> Observation {
        Observation {
            now: Timestamp::from_secs_f64(100.0),
            queue_len,
            queued_prompt_tokens: u64::from(queue_len) * 200,
            queued_expected_output_tokens: 0.0,
            running: 0,
            kv_usage_frac: 0.1,
            freq: Mhz(705),
            freq_index: 0,
            batch_cap: 8,
            since_last_switch_s: 10.0,
            arrival_rate_rps: 1.0,
            oldest_wait_s,
            mean_wait_s: oldest_wait_s,
            recent_slo_attainment: 1.0,
            recent_mean_latency_s: 5.0,
            recent_power_w: 200.0,
            // 301 tokens: 300 iterations, 6 s at the top clock, 12 s at 705 MHz.
            mean_output_tokens: 301.0,
            mean_prompt_tokens: 256.0,
            completed: 10,
            slo: Slo::e2e(11.0),
        }
    }

    #[test]
    fn raises_the_clock_only_when_the_oldest_request_would_miss() {
        let mut s = Shield::new(Arc::new(InverseClock), ActionSpace::paper(), 1.0);
        let low = Action { freq: Mhz(705), batch: 8 };
        // Nothing queued: nothing to protect.
        assert_eq!(s.check(&obs(0, 0.0), low), low);
        // 12.04 s at 705 MHz misses 11 s; the lowest clock that meets it is taken.
        let raised = s.check(&obs(3, 0.0), low);
        assert_eq!(raised.batch, 8);
        assert!(raised.freq > Mhz(705) && raised.freq < Mhz(1410), "{raised:?}");
        // One step lower would miss.
        let freqs = ActionSpace::paper().freqs().to_vec();
        let below = freqs[freqs.iter().position(|&f| f == raised.freq).unwrap() - 1];
        assert!(0.02 * 1410.0 / f64::from(below.0) * 301.0 > 11.0);
        // After a 4.9 s wait only the top clock meets it; after 7 s none does: the top clock.
        assert_eq!(s.check(&obs(3, 4.9), low).freq, Mhz(1410));
        assert_eq!(s.check(&obs(3, 7.0), low).freq, Mhz(1410));
        // A clock that meets the SLO is left alone.
        let high = Action { freq: Mhz(1410), batch: 8 };
        assert_eq!(s.check(&obs(3, 0.0), high), high);
        assert_eq!(s.overrides(), 3);
        s.reset();
        assert_eq!(s.overrides(), 0);
    }
}

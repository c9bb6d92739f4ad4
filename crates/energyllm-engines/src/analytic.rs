//! The simulator's own iteration model behind the [`PerfModel`] seam.

use energyllm_core::{Mhz, PerfModel, PerfPrediction, PerfQuery};
use energyllm_hw::GpuSpec;

use crate::{IterationModel, IterationWork, ModelSpec};

/// Predicts an iteration's latency and power exactly as the simulator will run it.
///
/// Policies evaluated on the simulator with this model have a perfect performance predictor —
/// the most favourable case for the look-ahead baselines. Fitted models (energyllm-models) are
/// the realistic alternative.
#[derive(Clone, Debug)]
pub struct AnalyticPerfModel {
    model: ModelSpec,
    gpu: GpuSpec,
    timing: IterationModel,
}

impl AnalyticPerfModel {
    /// The model of `model` on (a tensor-parallel group of) `gpu` with engine constants `timing`.
    pub fn new(model: ModelSpec, gpu: GpuSpec, timing: IterationModel) -> Self {
        AnalyticPerfModel { model, gpu, timing }
    }
}

impl PerfModel for AnalyticPerfModel {
    fn name(&self) -> &str {
        "analytic"
    }

    /// Reads the query as `batch` requests that share the prefill tokens equally (fresh prompts)
    /// and the KV tokens as their cached context; power covers the whole tensor-parallel group.
    fn predict(&self, q: &PerfQuery) -> PerfPrediction {
        let batch = u64::from(q.batch.max(1));
        let prompt = f64::from(q.prefill_tokens) / batch as f64;
        let work = IterationWork {
            prefill_tokens: u64::from(q.prefill_tokens),
            decode_tokens: u64::from(q.decode_tokens),
            kv_read_tokens: q.kv_tokens,
            attention_pairs: q.kv_tokens as f64
                + f64::from(q.decode_tokens)
                + batch as f64 * prompt * (prompt + 1.0) / 2.0 * f64::from(u8::from(q.prefill_tokens > 0)),
            sampled_sequences: if q.decode_tokens > 0 { u64::from(q.decode_tokens) } else { batch },
        };
        let freq = Mhz(q.freq.0.clamp(self.gpu.min_freq_mhz, self.gpu.max_freq_mhz));
        let cost = self.timing.cost(&self.model, &self.gpu, freq, &work);
        let power_w = self.gpu.power_w(freq, cost.load) * f64::from(self.model.tensor_parallel);
        PerfPrediction { latency_s: cost.time_s, power_w }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_are_finite_and_slower_at_low_clock_for_prefill() {
        let m = AnalyticPerfModel::new(
            ModelSpec::builtin("llama-3.1-8b").unwrap(),
            GpuSpec::builtin("a100-40gb").unwrap(),
            IterationModel::default(),
        );
        let q =
            |f| PerfQuery { freq: Mhz(f), batch: 8, prefill_tokens: 4096, decode_tokens: 0, kv_tokens: 0 };
        let (lo, hi) = (m.predict(&q(705)), m.predict(&q(1410)));
        assert!(lo.latency_s > hi.latency_s && lo.power_w < hi.power_w);
        let odd = m.predict(&PerfQuery {
            freq: Mhz(0),
            batch: 0,
            prefill_tokens: 0,
            decode_tokens: 0,
            kv_tokens: 0,
        });
        assert!(odd.latency_s.is_finite() && odd.power_w.is_finite());
    }
}

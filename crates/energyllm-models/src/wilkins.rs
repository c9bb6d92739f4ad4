//! The Wilkins et al. model: energy and runtime of a query as bilinear functions of its input
//! and output token counts, `e(tin, tout) = a0·tin + a1·tout + a2·tin·tout`, no intercept
//! (Wilkins, Keshav, Mortier, "Offline Energy-Optimal LLM Serving", HotCarbon'24).
//!
//! [`WilkinsParams`] is the unfitted model; [`WilkinsParams::fit`] returns a [`WilkinsModel`]
//! holding both fits with their statistics ([`OlsFit`]). The model implements
//! [`PerfModel`]: it reads a query as one whole batch at the batch size it was measured at, with
//! `tin = prefill_tokens / batch` and `tout = decode_tokens / batch` per request, and ignores
//! the clock (the paper's measurements ran at the default clock).

use serde::{Deserialize, Serialize};

use energyllm_core::{PerfModel, PerfPrediction, PerfQuery};

use crate::linear::{ols_through_origin, OlsFit};
use crate::Error;

/// One query's measurement.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WilkinsSample {
    /// Input (prompt) tokens.
    pub input_tokens: f64,
    /// Output tokens.
    pub output_tokens: f64,
    /// Energy, in joules.
    pub energy_j: f64,
    /// Runtime, in seconds.
    pub runtime_s: f64,
}

/// The unfitted Wilkins model. It has no hyperparameters beyond a label.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WilkinsParams {
    /// What the fit is of, e.g. `Llama-2 (7B) on Swing AMD+A100`. Default: empty.
    pub label: String,
}

/// `a0·tin + a1·tout + a2·tin·tout` for energy and for runtime, with the fits' statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WilkinsModel {
    /// What the fit is of.
    pub label: String,
    /// Energy fit (joules): coefficients `[a0, a1, a2]` and statistics.
    pub energy: OlsFit,
    /// Runtime fit (seconds): coefficients `[a0, a1, a2]` and statistics.
    pub runtime: OlsFit,
    /// Requests per batch in the data the model was fitted on (1 if unknown).
    pub batch_size: u32,
}

/// The design row `[tin, tout, tin·tout]`.
fn terms(tin: f64, tout: f64) -> [f64; 3] {
    [tin, tout, tin * tout]
}

impl WilkinsParams {
    /// Fits energy and runtime on `samples` (measured at `batch_size` requests per batch).
    pub fn fit(&self, samples: &[WilkinsSample], batch_size: u32) -> Result<WilkinsModel, Error> {
        if batch_size == 0 {
            return Err(Error::param("wilkins", "batch_size must be ≥ 1"));
        }
        // With one token count fixed, tin·tout is a multiple of the other column and the three
        // coefficients cannot be told apart: say so rather than report "collinear".
        for (what, value) in [("input", 0), ("output", 1)] {
            let v = |s: &WilkinsSample| if value == 0 { s.input_tokens } else { s.output_tokens };
            if let Some(first) = samples.first() {
                if samples.iter().all(|s| v(s) == v(first)) {
                    return Err(Error::fit(
                        "wilkins",
                        format!(
                            "{}: every sample has the same {what} length ({}), so a0, a1 and a2 cannot be told \
                             apart; fit on an input sweep and an output sweep together",
                            self.label,
                            v(first)
                        ),
                    ));
                }
            }
        }
        let x: Vec<f64> = samples.iter().flat_map(|s| terms(s.input_tokens, s.output_tokens)).collect();
        let energy: Vec<f64> = samples.iter().map(|s| s.energy_j).collect();
        let runtime: Vec<f64> = samples.iter().map(|s| s.runtime_s).collect();
        let wrap = |what: &str, e: Error| Error::fit("wilkins", format!("{} ({what}): {e}", self.label));
        Ok(WilkinsModel {
            label: self.label.clone(),
            energy: ols_through_origin(&x, 3, &energy).map_err(|e| wrap("energy", e))?,
            runtime: ols_through_origin(&x, 3, &runtime).map_err(|e| wrap("runtime", e))?,
            batch_size,
        })
    }
}

impl WilkinsModel {
    /// Predicted energy of one query, in joules.
    pub fn energy_j(&self, input_tokens: f64, output_tokens: f64) -> f64 {
        self.energy.predict(&terms(input_tokens, output_tokens))
    }

    /// Predicted runtime of one query, in seconds.
    pub fn runtime_s(&self, input_tokens: f64, output_tokens: f64) -> f64 {
        self.runtime.predict(&terms(input_tokens, output_tokens))
    }
}

impl PerfModel for WilkinsModel {
    fn name(&self) -> &str {
        "wilkins"
    }

    fn predict(&self, query: &PerfQuery) -> PerfPrediction {
        let b = f64::from(query.batch.max(1));
        let (tin, tout) = (f64::from(query.prefill_tokens) / b, f64::from(query.decode_tokens) / b);
        let latency_s = self.runtime_s(tin, tout);
        let energy_j = self.energy_j(tin, tout);
        // The contract asks for finite, non-negative answers whatever the query: a bilinear fit
        // can go negative far outside its data.
        if !(latency_s.is_finite() && latency_s > 0.0 && energy_j.is_finite()) {
            return PerfPrediction { latency_s: 0.0, power_w: 0.0 };
        }
        PerfPrediction { latency_s, power_w: (energy_j / latency_s).max(0.0) }
    }
}

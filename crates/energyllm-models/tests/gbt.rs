#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Gradient-boosted trees on held-out data, and the iteration-rate predictor built on them.

mod common;

use energyllm_core::{Mhz, PerfModel, PerfQuery};
use energyllm_models::profile::iteration_dataset;
use energyllm_models::{cross_validate, GbtPerfParams, IterationRateParams, IterationTarget, RunningRequest};

#[test]
fn beats_a_constant_predictor_by_a_wide_margin_on_held_out_folds() {
    let rows = common::synthetic_rows(3000, 1);
    let params = GbtPerfParams::default();
    for (target, p) in [(IterationTarget::Latency, &params.latency), (IterationTarget::Power, &params.power)]
    {
        let data = iteration_dataset(&rows, target).unwrap();
        let cv = cross_validate(p, &data, 5, 7).unwrap();
        assert_eq!(cv.model.n, 3000);
        assert!(cv.model.r2 > 0.98, "{target:?}: {:?}", cv.model);
        assert!(cv.baseline.r2 < 0.01, "{target:?}: {:?}", cv.baseline);
        assert!(cv.model.mape < cv.baseline.mape / 5.0, "{target:?}: {:?} vs {:?}", cv.model, cv.baseline);
        assert!(cv.fold_r2.iter().all(|r| *r > 0.95), "{:?}", cv.fold_r2);
    }
}

#[test]
fn the_fitted_pair_answers_as_a_perf_model() {
    let rows = common::synthetic_rows(2000, 2);
    let m = GbtPerfParams::default().fit(&rows).unwrap();
    let q = |freq, prefill| PerfQuery {
        freq: Mhz(freq),
        batch: 8,
        prefill_tokens: prefill,
        decode_tokens: 8,
        kv_tokens: 8000,
    };
    // Prefill-heavy work slows down at a low clock; power drops with the clock.
    assert!(m.predict(&q(810, 3000)).latency_s > m.predict(&q(1410, 3000)).latency_s);
    assert!(m.predict(&q(810, 0)).power_w < m.predict(&q(1410, 0)).power_w);
    // Total: far outside the data the answer is still finite and non-negative.
    let wild = m.predict(&PerfQuery {
        freq: Mhz(u32::MAX),
        batch: u32::MAX,
        prefill_tokens: u32::MAX,
        decode_tokens: 0,
        kv_tokens: u64::MAX,
    });
    assert!(
        wild.latency_s.is_finite()
            && wild.latency_s >= 0.0
            && wild.power_w.is_finite()
            && wild.power_w >= 0.0
    );
}

#[test]
fn iteration_rate_picks_the_lowest_clock_that_meets_a_rate() {
    let rows = common::synthetic_rows(4000, 3);
    let m = IterationRateParams::default().fit(&rows).unwrap();
    let running: Vec<RunningRequest> = (0..16)
        .map(|i| RunningRequest { context_tokens: 200 + 50 * i, remaining_tokens: 20 + 10 * i })
        .collect();
    let freqs: Vec<Mhz> = [705, 810, 1005, 1200, 1410].map(Mhz).to_vec();
    let fast = m.project(Mhz(1410), &running, 64);
    let slow = m.project(Mhz(705), &running, 64);
    assert_eq!(fast.iterations, 64);
    assert!(slow.iterations_per_s < fast.iterations_per_s, "{slow:?} vs {fast:?}");
    // Any rate the top clock reaches is met by some clock, and an easier target by a lower one.
    let top = m.lowest_clock_meeting(&freqs, &running, 64, fast.iterations_per_s * 0.999).unwrap();
    let easy = m.lowest_clock_meeting(&freqs, &running, 64, slow.iterations_per_s * 0.999).unwrap();
    assert!(easy <= top);
    assert_eq!(easy, Mhz(705));
    assert_eq!(m.lowest_clock_meeting(&freqs, &running, 64, fast.iterations_per_s * 10.0), None);
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Wilkins fit on synthetic data with known coefficients, checked against numpy/scipy.

use energyllm_core::{Mhz, PerfModel, PerfQuery};
use energyllm_models::{WilkinsParams, WilkinsSample};

/// e = 1.5·tin + 2·tout + 0.01·tin·tout plus a deterministic ±40 J "noise" pattern, over a
/// 5 × 4 grid: an input sweep and an output sweep in one.
fn samples() -> Vec<WilkinsSample> {
    let mut out = Vec::new();
    let mut i = 0u64;
    for tin in [8.0, 32.0, 128.0, 512.0, 2048.0] {
        for tout in [8.0, 64.0, 256.0, 1024.0] {
            let noise = (((i * 7919) % 101) as f64 - 50.0) / 50.0 * 40.0;
            let e = 1.5 * tin + 2.0 * tout + 0.01 * tin * tout + noise;
            out.push(WilkinsSample {
                input_tokens: tin,
                output_tokens: tout,
                energy_j: e,
                runtime_s: e / 300.0,
            });
            i += 1;
        }
    }
    out
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn matches_numpy_and_scipy_on_noisy_data() {
    let m = WilkinsParams { label: "synthetic".into() }.fit(&samples(), 32).unwrap();
    let f = &m.energy;
    // Reference values: numpy.linalg.lstsq for β, σ²(XᵀX)⁻¹ for the standard errors,
    // scipy.stats.t.sf / f.sf for the p-values, on the same 20 rows.
    let beta = [1.5040657117603795, 1.9926330950709352, 0.010002947713916178];
    let se = [0.0077011139099074965, 0.012969613275113118, 1.6573466450030546e-05];
    let p = [6.244025206111957e-30, 3.6823523393599427e-28, 2.9297883217064695e-38];
    for j in 0..3 {
        assert!(close(f.coefficients[j], beta[j], 1e-9), "β{j} {} vs {}", f.coefficients[j], beta[j]);
        assert!(close(f.std_errors[j], se[j], 1e-7), "se{j} {} vs {}", f.std_errors[j], se[j]);
        assert!(close(f.p_values[j], p[j], 1e-4), "p{j} {} vs {}", f.p_values[j], p[j]);
    }
    assert!(close(f.r2_uncentered, 0.9999879984005342, 1e-12));
    assert!(close(f.r2_centered, 0.9999839920356705, 1e-12));
    assert!(close(f.f_statistic, 472153.62200292497, 1e-7));
    assert!(close(f.f_p_value, 5.118413324396808e-42, 1e-4));
    assert_eq!((f.n, f.df_model, f.df_resid), (20, 3, 17));
    // The coefficients recover the generating ones to within the noise.
    assert!((f.coefficients[0] - 1.5).abs() < 0.05 && (f.coefficients[2] - 0.01).abs() < 1e-4);
    // Runtime is energy / 300 exactly, so its fit is the energy fit scaled.
    assert!(close(m.runtime.coefficients[1], f.coefficients[1] / 300.0, 1e-9));
}

#[test]
fn serves_as_a_perf_model_and_stays_total() {
    let m = WilkinsParams::default().fit(&samples(), 32).unwrap();
    // A batch of 32 requests of 128 in / 256 out: per-request tin, tout.
    let q = PerfQuery {
        freq: Mhz(1410),
        batch: 32,
        prefill_tokens: 32 * 128,
        decode_tokens: 32 * 256,
        kv_tokens: 0,
    };
    let p = m.predict(&q);
    assert!(close(p.latency_s, m.runtime_s(128.0, 256.0), 1e-12));
    assert!(close(p.energy_j(), m.energy_j(128.0, 256.0), 1e-9));
    let empty = m.predict(&PerfQuery { batch: 0, prefill_tokens: 0, decode_tokens: 0, ..q });
    assert!(empty.latency_s >= 0.0 && empty.power_w >= 0.0 && empty.power_w.is_finite());
}

#[test]
fn one_sweep_alone_is_refused_with_a_reason() {
    let one: Vec<WilkinsSample> = samples().into_iter().filter(|s| s.output_tokens == 64.0).collect();
    let e = WilkinsParams { label: "input sweep".into() }.fit(&one, 32).unwrap_err().to_string();
    assert!(e.contains("same output length") && e.contains("input sweep"), "{e}");
}

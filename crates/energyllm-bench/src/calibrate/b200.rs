//! The B200 profile: fitted on ML.ENERGY v3's B200 Llama-3.1-8B rows, validated on every other
//! dense model's B200 rows, which no constant saw.

use std::fmt::Write as _;
use std::path::Path;

use energyllm_engines::{IterationModel, ModelSpec};
use energyllm_hw::GpuSpec;

use crate::optimize::nelder_mead;
use crate::Error;

use super::heldout::{bias, predict, rows};
use super::power::*;
use super::*;

/// The fit set.
const FIT: (&str, u32, &str) = ("meta-llama/Llama-3.1-8B-Instruct", 1, "llama-3.1-8b");

/// The power terms a sweep at one clock can fit, in [`POWER_NAMES`]' order: active_w, core_w and
/// sm_floor. Idle, memory and the voltage curve stay as assumed.
const BUSY_POWER_TERMS: [bool; 7] = [false, true, false, true, true, false, false];

/// The validation set: (model id in the data, GPUs per replica, built-in profile).
const VALIDATE: [(&str, u32, &str); 5] = [
    ("Qwen/Qwen3-8B", 1, "qwen3-8b"),
    ("Qwen/Qwen3-14B", 1, "qwen3-14b"),
    ("Qwen/Qwen3-32B", 1, "qwen3-32b"),
    ("meta-llama/Llama-3.1-70B-Instruct", 2, "llama-3.1-70b-tp2"),
    ("meta-llama/Llama-3.3-70B-Instruct", 2, "llama-3.1-70b-tp2"),
];

/// The B200 section; `input` is the mean prompt the H100 Llama rows chose (the same
/// lm-arena-chat prompts). The shipped profile is validated on every B200 row; then a fit to the
/// Llama-3.1-8B rows is made and validated on the other models, to show what fitting buys.
pub(super) fn b200_section(data: &Path, input: f64, refit: bool, report: &mut Report) -> Result<(), Error> {
    let shipped = GpuSpec::builtin("b200")?;
    let timing = IterationModel::default();
    let fit_model = ModelSpec::builtin(FIT.2)?;
    let fit_rows = rows(data, FIT.0, "B200", FIT.1)?;
    if fit_rows.is_empty() {
        return Err(data_err(
            &data.join("mlenergy-leaderboard-v3"),
            "no B200 Llama-3.1-8B lm-arena-chat rows",
        ));
    }
    let mut validate = Vec::new();
    for (id, gpus, profile) in VALIDATE {
        let rows = rows(data, id, "B200", gpus)?;
        if rows.is_empty() {
            return Err(data_err(
                &data.join("mlenergy-leaderboard-v3"),
                format!("no lm-arena-chat rows of {id} on {gpus} B200"),
            ));
        }
        validate.push((id, gpus, ModelSpec::builtin(profile)?, rows));
    }
    let fitted = fit_b200(&shipped, &timing, &fit_model, &fit_rows, input);
    let s = &mut report.text;
    let _ = writeln!(
        s,
        "## The B200 profile: ML.ENERGY v3, a fit on Llama-3.1-8B validated on the rest (no license: figures only)\n\n\
         `b200-sxm-180gb.toml` takes its memory, bandwidth, peak FLOPs and TDP from the datasheet, and \
         its achieved-throughput and busy-power constants from the H100, unfitted. The alternative fits \
         mfu and mbu to the median inter-token latencies of the B200 Llama-3.1-8B rows and the busy-power \
         terms (active_w, core_w, sm_floor) to their power (mfu {:.3}, mbu {:.3}, active_w {:.0}, \
         core_w {:.0}, sm_floor {:.3}). The other models' rows are held out from both. Mean prompt \
         {input:.0} tokens, as on the H100.\n\n\
         | constants | set | model | GPUs | rows | median ITL MAPE | power MAPE | ITL bias | power bias |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|",
        fitted.efficiency.mfu,
        fitted.efficiency.mbu,
        fitted.power.active_w,
        fitted.power.core_w,
        fitted.power.sm_floor
    );
    let mut pooled = Vec::new();
    for (label, gpu) in [("shipped", &shipped), ("fit to Llama-3.1-8B", &fitted)] {
        let row = |s: &mut String,
                   set: &str,
                   id: &str,
                   gpus: u32,
                   n: usize,
                   itl: &[(f64, f64)],
                   p: &[(f64, f64)]| {
            let _ = writeln!(
                s,
                "| {label} | {set} | {id} | {gpus} | {n} | {:.1}% | {:.1}% | {:+.1}% | {:+.1}% |",
                mape(itl),
                mape(p),
                bias(itl),
                bias(p)
            );
        };
        let (fit_itl, fit_p) = predict(&timing, &fit_model, gpu, &fit_rows, FIT.1, input);
        let set = if label == "shipped" { "unseen" } else { "fit" };
        row(s, set, FIT.0, FIT.1, fit_rows.len(), &fit_itl, &fit_p);
        let (mut all_itl, mut all_power) = (Vec::new(), Vec::new());
        for (id, gpus, model, rows) in &validate {
            let (itl, p) = predict(&timing, model, gpu, rows, *gpus, input);
            row(s, "held out", id, *gpus, rows.len(), &itl, &p);
            all_itl.extend(itl);
            all_power.extend(p);
        }
        // The other models, held out from both, compare the two; the shipped constants saw no
        // B200 row at all, so their target pools every row.
        let every = (
            mape(&[all_itl.clone(), fit_itl].concat()),
            mape(&[all_power.clone(), fit_p].concat()),
            all_itl.len() + fit_rows.len(),
        );
        pooled.push((label, mape(&all_itl), mape(&all_power), all_itl.len(), every));
    }
    s.push('\n');
    for (label, itl, power, n, _) in &pooled {
        let _ = writeln!(
            s,
            "The other models, {label} constants, pooled over {n} rows: median ITL MAPE {itl:.1}%, \
             power MAPE {power:.1}%.\n"
        );
    }
    let (_, _, _, _, (itl, power, n)) = pooled[0];
    let _ = writeln!(
        s,
        "Every B200 row ({n}), none of which the shipped constants saw: median ITL MAPE {itl:.1}%, \
         power MAPE {power:.1}%.\n"
    );
    let _ = writeln!(
        s,
        "The fit is not shipped. It matches its own rows by absorbing a regime change they show at \
         max_num_seqs ≥ 128 (inter-token latency triples while power falls), which the iteration \
         model does not represent, and it then predicts every other model worse than the unfitted \
         constants do. A sweep at one clock pins none of the clock-dependent terms either.\n"
    );
    push_held_out(
        &mut report.checks,
        "held out: median ITL, every ML.ENERGY v3 B200 row (shipped profile, fitted on none)",
        format!("MAPE {itl:.1}%"),
        "MAPE ≤ 10%",
        itl <= 10.0,
    );
    push_held_out(
        &mut report.checks,
        "held out: power, every ML.ENERGY v3 B200 row (shipped profile, fitted on none)",
        format!("MAPE {power:.1}%"),
        "MAPE ≤ 10%",
        power <= 10.0,
    );
    if refit {
        let (_, p) = predict(&timing, &fit_model, &fitted, &fit_rows, FIT.1, input);
        power_table(s, &shipped, &fitted, mape(&p));
    }
    Ok(())
}

/// The B200 constants the fit set alone chooses: mfu and mbu from the latencies, then the
/// busy-power terms from the power at those latencies.
pub(super) fn fit_b200(
    gpu: &GpuSpec,
    timing: &IterationModel,
    model: &ModelSpec,
    rows: &[super::heldout::Row],
    input: f64,
) -> GpuSpec {
    let mut itl_objective = |x: &[f64]| {
        let mut g = gpu.clone();
        g.efficiency.mfu = x[0].clamp(0.05, 1.0);
        g.efficiency.mbu = x[1].clamp(0.05, 1.0);
        mape(&predict(timing, model, &g, rows, FIT.1, input).0)
    };
    let (x, _) =
        nelder_mead(&mut itl_objective, &[gpu.efficiency.mfu, gpu.efficiency.mbu], &[0.05, 0.05], 2000);
    let mut g = gpu.clone();
    g.efficiency.mfu = x[0].clamp(0.05, 1.0);
    g.efficiency.mbu = x[1].clamp(0.05, 1.0);
    let (g, _) =
        fit_power(&g, BUSY_POWER_TERMS, &mut |g| mape(&predict(timing, model, g, rows, FIT.1, input).1));
    g
}

//! Power against ML.ENERGY's leaderboard sweeps (v3 H100; v1 A100 LLaMA-7B).

use std::fmt::Write as _;
use std::path::Path;

use energyllm_core::Mhz;
use energyllm_engines::{IterationCost, IterationModel, ModelSpec};
use energyllm_hw::GpuSpec;

use crate::optimize::nelder_mead;
use crate::Error;

use super::heldout::{rows, Row};
use super::power::*;
use super::*;

/// The ML.ENERGY v3 rows the H100 constants are fitted to: Llama-3.1-8B-Instruct on one H100.
pub(super) fn mlenergy_v3_rows(data: &Path) -> Result<Vec<Row>, Error> {
    let rows = rows(data, "meta-llama/Llama-3.1-8B-Instruct", "H100", 1)?;
    if rows.is_empty() {
        let path = data.join("mlenergy-leaderboard-v3/configurations_v3.csv");
        return Err(data_err(&path, "no Llama-3.1-8B-Instruct lm-arena-chat rows on one H100"));
    }
    Ok(rows)
}

/// Returns the mean prompt it chose, for the held-out section.
pub(super) fn mlenergy_v3_section(data: &Path, refit: bool, report: &mut Report) -> Result<f64, Error> {
    let gpu = GpuSpec::builtin("h100")?;
    let model = ModelSpec::builtin("llama-3.1-8b")?;
    let timing = IterationModel::default();
    let rows = mlenergy_v3_rows(data)?;
    let fmax = Mhz(gpu.max_freq_mhz);
    // The sweep does not report prompt lengths: take the mean prompt that best explains the
    // measured inter-token latencies, then judge power at that prompt length.
    let itl_mape = |input: f64| {
        let pairs: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| {
                (
                    r.itl_ms,
                    steady_iteration(&timing, &model, &gpu, fmax, r.batch, input, r.output).time_s * 1e3,
                )
            })
            .collect();
        mape(&pairs)
    };
    let input = (1..=40)
        .map(|i| f64::from(i) * 50.0)
        .min_by(|a, b| itl_mape(*a).total_cmp(&itl_mape(*b)))
        .unwrap_or(500.0);
    let s = &mut report.text;
    let _ = writeln!(
        s,
        "## Power: ML.ENERGY v3, H100-SXM5, Llama-3.1-8B-Instruct, lm-arena-chat (no license: figures only)\n\n\
         vLLM at default clocks with the batch capped by max_num_seqs, at steady state. The simulator \
         runs one representative iteration of the same steady state: the measured mean batch decoding \
         at a mean context of prompt + output/2, with new prompts prefilled at the rate requests finish. \
         Prompt lengths are not in the data; a mean prompt of {input:.0} tokens best explains the \
         inter-token latencies (ITL MAPE {:.1}%) and is used throughout.\n\n\
         | max_num_seqs | mean batch | power (W) | simulator (W) | error | median ITL (ms) | simulator (ms) |\n\
         |---:|---:|---:|---:|---:|---:|---:|",
        itl_mape(input)
    );
    let mut pairs = Vec::new();
    for r in &rows {
        let c = steady_iteration(&timing, &model, &gpu, fmax, r.batch, input, r.output);
        let p = power_of(&gpu, fmax, &c);
        pairs.push((r.power_w, p));
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.0} | {:.0} | {:+.1}% | {:.1} | {:.1} |",
            r.max_num_seqs,
            r.batch,
            r.power_w,
            p,
            (p / r.power_w - 1.0) * 100.0,
            r.itl_ms,
            c.time_s * 1e3
        );
    }
    let err = mape(&pairs);
    let _ = writeln!(s, "\nPower MAPE over {} points: {err:.2}%.\n", pairs.len());
    push_check(
        &mut report.checks,
        "power vs ML.ENERGY v3 H100 Llama-3.1-8B batch sweep",
        format!("MAPE {err:.2}%"),
        "MAPE ≤ 8%",
        err <= 8.0,
    );
    if refit {
        // Efficiencies and prompt length that best explain the latencies.
        let mut itl_objective = |x: &[f64]| {
            let mut g = gpu.clone();
            g.efficiency.mbu = x[1].clamp(0.05, 1.0);
            g.efficiency.mfu = x[2].clamp(0.05, 1.0);
            let pairs: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| {
                    (
                        r.itl_ms,
                        steady_iteration(&timing, &model, &g, fmax, r.batch, x[0].max(1.0) * 100.0, r.output)
                            .time_s
                            * 1e3,
                    )
                })
                .collect();
            mape(&pairs)
        };
        let e = &gpu.efficiency;
        let (x, v) =
            nelder_mead(&mut itl_objective, &[input / 100.0, e.mbu, e.mfu], &[1.0, 0.05, 0.05], 2000);
        let _ = writeln!(
            s,
            "Refit of the H100 efficiencies to the latencies (ITL MAPE {v:.2}%): mean prompt {:.0} tokens, mbu {:.3} (shipped {:.3}), mfu {:.3} (shipped {:.3}).\n",
            x[0] * 100.0, x[1], e.mbu, x[2], e.mfu
        );
        let costs: Vec<IterationCost> = rows
            .iter()
            .map(|r| steady_iteration(&timing, &model, &gpu, fmax, r.batch, input, r.output))
            .collect();
        // One clock only: the sweep cannot separate idle, memory or voltage-curve terms, so only
        // the busy-power terms are fitted.
        let free = [false, true, false, true, true, false, false];
        let mut objective = |g: &GpuSpec| {
            let pairs: Vec<(f64, f64)> =
                rows.iter().zip(&costs).map(|(r, c)| (r.power_w, power_of(g, fmax, c))).collect();
            mape(&pairs)
        };
        let (g, v) = fit_power(&gpu, free, &mut objective);
        power_table(s, &gpu, &g, v);
        sensitivity_table(s, v, &power_profile(&gpu, &g, free, &mut objective));
    }
    Ok(input)
}

/// Mean token rate (tokens/s) and mean power (W) of LLaMA-7B on A100 under HF transformers,
/// over ML.ENERGY v1's four A100 task files.
pub(super) fn mlenergy_v1_llama7b(data: &Path) -> Result<(f64, f64), Error> {
    let dir = data.join("mlenergy-leaderboard-v2/legacy_v1");
    let (mut rate, mut power, mut n) = (0.0, 0.0, 0.0);
    for task in ["chat", "chat-concise", "instruct", "instruct-concise"] {
        let path = dir.join(format!("A100_{task}_benchmark.csv"));
        for row in read_csv(&path)? {
            if text(&path, &row, "model")? == "metaai/llama-7B" {
                rate += field(&path, &row, "throughput")?;
                power += field(&path, &row, "energy")? / field(&path, &row, "latency")?;
                n += 1.0;
            }
        }
    }
    if n == 0.0 {
        return Err(data_err(&dir, "no metaai/llama-7B rows in the A100 files"));
    }
    Ok((rate / n, power / n))
}

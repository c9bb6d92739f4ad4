//! Latency and power against the EnergyLLM paper's clock × batch grid (A100).

use std::fmt::Write as _;
use std::path::Path;

use energyllm_core::Mhz;
use energyllm_engines::{IterationCost, IterationModel, ModelSpec};
use energyllm_hw::GpuSpec;

use crate::Error;

use super::power::*;
use super::*;

/// Request lengths assumed for the EnergyLLM grid (not in the data): 250-token prompts, and
/// the answer length at which the simulator's batch of one at 1410 MHz takes the grid's 7.83 s.
pub(super) const ENERGYLLM_INPUT: u64 = 250;
pub(super) const ENERGYLLM_OUTPUT: u64 = 560;

#[derive(Debug)]
pub(super) struct GridPoint {
    pub(super) freq: Mhz,
    pub(super) batch: u64,
    pub(super) latency_s: f64,
    pub(super) power_w: f64,
}

pub(super) fn energyllm_grid(data: &Path) -> Result<Vec<GridPoint>, Error> {
    let path = data.join("EnergyLLM/llama31_8b_a100_rf_grid.csv");
    read_csv(&path)?
        .iter()
        .map(|row| {
            Ok(GridPoint {
                freq: Mhz(field(&path, row, "gpu_frequency_mhz")? as u32),
                batch: field(&path, row, "batch_size")? as u64,
                latency_s: field(&path, row, "latency_s_rf_mean")?,
                power_w: field(&path, row, "power_w_rf_mean")?,
            })
        })
        .collect()
}

pub(super) fn energyllm_section(data: &Path, refit: bool, report: &mut Report) -> Result<(), Error> {
    let gpu = GpuSpec::builtin("a100-40gb")?;
    let model = ModelSpec::builtin("llama-3.1-8b")?;
    let timing = IterationModel::default();
    let grid = energyllm_grid(data)?;
    const INPUT: u64 = ENERGYLLM_INPUT;
    let output = ENERGYLLM_OUTPUT;
    let one =
        grid.iter().find(|g| g.batch == 1 && g.freq == Mhz(1410)).map(|g| g.latency_s).unwrap_or(f64::NAN);
    let traces: Vec<Vec<IterationCost>> =
        grid.iter().map(|g| static_batch(&timing, &model, &gpu, g.freq, g.batch, INPUT, output)).collect();
    let s = &mut report.text;
    let _ = writeln!(
        s,
        "## Clock × batch: EnergyLLM A100 grid, Llama-3.1-8B (no license: figures only; derived from that project's random forests)\n\n\
         Each grid point is a static batch. Request lengths are not in the data: prompts of {INPUT} tokens \
         and {output} output tokens (about the output length at which a batch of one at 1410 MHz takes the \
         grid's {one:.2} s). A sanity check of trends, not ground truth; no target.\n\n\
         | clock (MHz) | batch | latency (s) | simulator (s) | power (W) | simulator (W) |\n|---:|---:|---:|---:|---:|---:|"
    );
    let (mut lat_pairs, mut pow_pairs) = (Vec::new(), Vec::new());
    for (g, t) in grid.iter().zip(&traces) {
        let (e, time) = trace_energy(&gpu, g.freq, t);
        lat_pairs.push((g.latency_s, time));
        pow_pairs.push((g.power_w, e / time));
        if [705, 1005, 1410].contains(&g.freq.0) {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {:.2} | {:.0} | {:.0} |",
                g.freq.0,
                g.batch,
                g.latency_s,
                time,
                g.power_w,
                e / time
            );
        }
    }
    let _ = writeln!(
        s,
        "\n(705, 1005 and 1410 MHz shown.) Over all {} points: latency MAPE {:.1}%, power MAPE {:.1}%.\n",
        grid.len(),
        mape(&lat_pairs),
        mape(&pow_pairs)
    );
    if refit {
        let mut objective = |gs: &GpuSpec| {
            let pairs: Vec<(f64, f64)> = grid
                .iter()
                .zip(&traces)
                .map(|(g, t)| {
                    let (e, time) = trace_energy(gs, g.freq, t);
                    (g.power_w, e / time)
                })
                .collect();
            mape(&pairs)
        };
        let (g, v) = fit_power(&gpu, [true; 7], &mut objective);
        power_table(s, &gpu, &g, v);
        sensitivity_table(s, v, &power_profile(&gpu, &g, [true; 7], &mut objective));
    }
    Ok(())
}

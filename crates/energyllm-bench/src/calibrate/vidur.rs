//! Iteration latency against Vidur's operator timings (Llama-3-8B on A100).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use energyllm_core::Mhz;
use energyllm_engines::{IterationModel, IterationWork, ModelSpec};
use energyllm_hw::GpuSpec;

use crate::optimize::nelder_mead;
use crate::Error;

use super::*;

pub(super) const VIDUR_OPS: [&str; 9] = [
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
];

/// Per-layer linear-stack time (ms) by token count, averaged over duplicate rows, for one TP.
pub(super) fn vidur_mlp(path: &Path, tp: u32) -> Result<BTreeMap<u64, f64>, Error> {
    let mut sums: BTreeMap<u64, (f64, u32)> = BTreeMap::new();
    for row in read_csv(path)? {
        if field(path, &row, "num_tensor_parallel_workers")? as u32 != tp {
            continue;
        }
        let n = field(path, &row, "num_tokens")? as u64;
        let mut t = 0.0;
        for op in VIDUR_OPS {
            t += field(path, &row, &format!("time_stats.{op}.median"))?;
        }
        let e = sums.entry(n).or_insert((0.0, 0));
        e.0 += t;
        e.1 += 1;
    }
    if sums.is_empty() {
        return Err(data_err(path, format!("no rows with num_tensor_parallel_workers = {tp}")));
    }
    Ok(sums.into_iter().map(|(n, (t, c))| (n, t / f64::from(c))).collect())
}

pub(super) struct VidurPoint {
    pub(super) label: String,
    pub(super) work: IterationWork,
    pub(super) truth_ms: f64,
}

pub(super) fn decode_work(batch: u64, context: u64) -> IterationWork {
    IterationWork {
        decode_tokens: batch,
        kv_read_tokens: batch * context,
        attention_pairs: (batch * (context + 1)) as f64,
        sampled_sequences: batch,
        ..Default::default()
    }
}

pub(super) fn prefill_work(chunk: u64, context: u64) -> IterationWork {
    let c = chunk as f64;
    IterationWork {
        prefill_tokens: chunk,
        kv_read_tokens: context,
        attention_pairs: c * context as f64 + c * (c + 1.0) / 2.0,
        sampled_sequences: 1,
        ..Default::default()
    }
}

/// The Llama-3-8B A100 iteration points: decode batch 1–64 and prefill, context 128–2048.
pub(super) fn vidur_points(data: &Path) -> Result<Vec<VidurPoint>, Error> {
    let dir = data.join("vidur/profiling/compute/a100/meta-llama/Meta-Llama-3-8B");
    let mlp = vidur_mlp(&dir.join("mlp.csv"), 1)?;
    let attn_path = dir.join("attention_subset_medians.csv");
    let mut points = Vec::new();
    for row in read_csv(&attn_path)? {
        let p = &attn_path;
        let chunk = field(p, &row, "prefill_chunk_size")? as u64;
        let kv = field(p, &row, "kv_cache_size")? as u64;
        let batch = field(p, &row, "batch_size")? as u64;
        let is_prefill = text(p, &row, "is_prefill")?.eq_ignore_ascii_case("true");
        let save = field(p, &row, "attn_kv_cache_save_median_ms")?;
        let (label, work, tokens, attn) = if is_prefill {
            if !(128..=2048).contains(&(chunk + kv)) {
                continue;
            }
            (
                format!("prefill {chunk} tok, ctx {kv}"),
                prefill_work(chunk, kv),
                chunk,
                field(p, &row, "attn_prefill_median_ms")?,
            )
        } else {
            if batch > 64 || !(128..=2048).contains(&kv) {
                continue;
            }
            (
                format!("decode batch {batch}, ctx {kv}"),
                decode_work(batch, kv),
                batch,
                field(p, &row, "attn_decode_median_ms")?,
            )
        };
        let Some(lin) = mlp.get(&tokens) else { continue };
        points.push(VidurPoint { label, work, truth_ms: lin + attn + save });
    }
    Ok(points)
}

pub(super) fn layer_ms(
    timing: &IterationModel,
    model: &ModelSpec,
    gpu: &GpuSpec,
    work: &IterationWork,
) -> f64 {
    timing.layer_times(model, gpu, Mhz(gpu.max_freq_mhz), work).total_s() * 1e3
}

pub(super) fn linear_ms(timing: &IterationModel, model: &ModelSpec, gpu: &GpuSpec, tokens: u64) -> f64 {
    let work = IterationWork { prefill_tokens: tokens, ..Default::default() };
    timing.layer_times(model, gpu, Mhz(gpu.max_freq_mhz), &work).linear_s * 1e3
}

pub(super) const EFFICIENCY_NAMES: [&str; 6] =
    ["mfu", "mbu", "overlap_p", "attention_efficiency", "kernel_launch_s", "kv_write_s_per_token"];

pub(super) fn set_efficiency(gpu: &mut GpuSpec, timing: &mut IterationModel, x: &[f64]) {
    let e = &mut gpu.efficiency;
    e.mfu = x[0].clamp(0.05, 1.0);
    e.mbu = x[1].clamp(0.05, 1.0);
    e.overlap_p = x[2].clamp(1.0, 20.0);
    e.attention_efficiency = x[3].clamp(0.02, 1.0);
    e.kernel_launch_s = (x[4] * 1e-6).max(0.0);
    timing.kv_write_s_per_token = (x[5] * 1e-7).max(0.0);
}

pub(super) fn vidur_section(data: &Path, refit: bool, report: &mut Report) -> Result<(), Error> {
    let gpu = GpuSpec::builtin("a100-80gb")?;
    let model = ModelSpec::builtin("llama-3.1-8b")?;
    let timing = IterationModel::default();
    let points = vidur_points(data)?;
    let s = &mut report.text;
    let _ = writeln!(
        s,
        "## Iteration latency: Vidur, A100-80GB, Llama-3-8B (MIT)\n\n\
         Per-layer GPU time of one iteration: Vidur's operator medians (QKV/O/MLP GEMMs with norms, \
         rope, activation and residual; attention; KV-cache save) against the simulator's layer time \
         at 1410 MHz. Llama-3.1-8B has Llama-3-8B's architecture. The CPU-side per-iteration overhead \
         and the output projection are outside Vidur's per-layer profiles and outside this comparison.\n\n\
         | point | Vidur (ms) | simulator (ms) | error |\n|---|---:|---:|---:|"
    );
    let mut pairs = Vec::new();
    for p in &points {
        let ours = layer_ms(&timing, &model, &gpu, &p.work);
        pairs.push((p.truth_ms, ours));
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.4} | {:+.1}% |",
            p.label,
            p.truth_ms,
            ours,
            (ours / p.truth_ms - 1.0) * 100.0
        );
    }
    let err = mape(&pairs);
    let _ = writeln!(s, "\nMAPE over {} points: {err:.2}%.\n", pairs.len());
    push_check(
        &mut report.checks,
        "iteration latency vs Vidur A100 Llama-3-8B (batch 1–64, context 128–2048)",
        format!("MAPE {err:.2}%"),
        "MAPE ≤ 5%",
        err <= 5.0,
    );

    // The linear stack alone, over a wide token range, and for other models and GPUs.
    let mut lines = Vec::new();
    for (gpu_name, dir, model_name, tp) in [
        ("a100-80gb", "a100/meta-llama/Meta-Llama-3-8B", "llama-3.1-8b", 1),
        ("a100-80gb", "a100/meta-llama/Llama-2-7b-hf", "llama-2-7b", 1),
        ("h100", "h100/meta-llama/Llama-2-7b-hf", "llama-2-7b", 1),
        ("a100-80gb", "a100/meta-llama/Llama-2-70b-hf", "llama-2-70b-tp4", 4),
        ("h100", "h100/meta-llama/Llama-2-70b-hf", "llama-2-70b-tp4", 4),
        ("a100-80gb", "a100/meta-llama/Llama-2-70b-hf", "llama-2-70b-tp8", 8),
        ("h100", "h100/meta-llama/Llama-2-70b-hf", "llama-2-70b-tp8", 8),
    ] {
        let path = data.join("vidur/profiling/compute").join(dir).join("mlp.csv");
        let mlp = vidur_mlp(&path, tp)?;
        let (g, m) = (GpuSpec::builtin(gpu_name)?, ModelSpec::builtin(model_name)?);
        let pairs: Vec<(f64, f64)> = mlp
            .iter()
            .filter(|(n, _)| (1..=4096).contains(*n))
            .map(|(&n, &truth)| (truth, linear_ms(&timing, &m, &g, n)))
            .collect();
        lines.push(format!("| {} | {} | TP{tp} | {} | {:.2}% |", g.name, m.name, pairs.len(), mape(&pairs)));
    }
    let _ = writeln!(
        s,
        "Linear stack alone (QKV/O/MLP with their elementwise neighbours), 1–4096 tokens, no target:\n\n\
         | GPU | model | TP | points | MAPE |\n|---|---|---|---:|---:|\n{}\n",
        lines.join("\n")
    );

    if refit {
        let mlp =
            vidur_mlp(&data.join("vidur/profiling/compute/a100/meta-llama/Meta-Llama-3-8B/mlp.csv"), 1)?;
        let mut objective = |x: &[f64]| {
            let (mut g, mut t) = (gpu.clone(), timing.clone());
            set_efficiency(&mut g, &mut t, x);
            let mut pairs: Vec<(f64, f64)> =
                points.iter().map(|p| (p.truth_ms, layer_ms(&t, &model, &g, &p.work))).collect();
            pairs.extend(
                mlp.iter()
                    .filter(|(n, _)| (1..=4096).contains(*n))
                    .map(|(&n, &v)| (v, linear_ms(&t, &model, &g, n))),
            );
            mape(&pairs)
        };
        let e = &gpu.efficiency;
        let x0 = [
            e.mfu,
            e.mbu,
            e.overlap_p,
            e.attention_efficiency,
            e.kernel_launch_s * 1e6,
            timing.kv_write_s_per_token * 1e7,
        ];
        let (x, v) = nelder_mead(&mut objective, &x0, &[0.05, 0.05, 0.5, 0.05, 5.0, 1.0], 4000);
        let (mut g, mut t) = (gpu.clone(), timing.clone());
        set_efficiency(&mut g, &mut t, &x);
        let fitted = [
            g.efficiency.mfu,
            g.efficiency.mbu,
            g.efficiency.overlap_p,
            g.efficiency.attention_efficiency,
            g.efficiency.kernel_launch_s,
            t.kv_write_s_per_token,
        ];
        let shipped = [
            e.mfu,
            e.mbu,
            e.overlap_p,
            e.attention_efficiency,
            e.kernel_launch_s,
            timing.kv_write_s_per_token,
        ];
        let _ = writeln!(s, "Refit on these points plus the linear stack (MAPE {v:.2}%):\n\n| constant | shipped | refit |\n|---|---:|---:|");
        for ((name, a), b) in EFFICIENCY_NAMES.iter().zip(shipped).zip(fitted) {
            let _ = writeln!(s, "| {name} | {a:.4e} | {b:.4e} |");
        }
        s.push('\n');
        let steps = [0.05, 0.05, 0.5, 0.05, 5.0, 1.0];
        let errors = crate::optimize::profile(&mut objective, &x, &steps, &PROFILE_FACTORS, 2000);
        let rows: Vec<Sensitivity<'_>> = (0..x.len())
            .map(|k| Sensitivity {
                name: EFFICIENCY_NAMES[k],
                shipped: shipped[k],
                refit: fitted[k],
                at_factors: errors[k].clone(),
                // x0 is the shipped constants in the fit's units.
                at_shipped: crate::optimize::held_at(&mut objective, &x, &steps, k, x0[k], 2000),
            })
            .collect();
        sensitivity_table(s, v, &rows);
    }
    Ok(())
}

//! The three observations of the EnergyLLM paper, reproduced on the simulator
//! (`energyllm observe`).
//!
//! 1. Clock and batch are coupled: at a low clock small batches stay near their full-clock
//!    latency while large (compute-heavier) ones pay; at a high clock large batches are fast but
//!    cost energy.
//! 2. Short and long requests differ in energy by an order of magnitude, so a policy that sees
//!    token counts can do better than one that sees only queue length.
//! 3. Switching clocks has a cost: a policy that switches after every short request loses
//!    throughput to the switch stalls.

use std::fmt::Write as _;

use energyllm_core::{
    Action, BatchingMode, Mhz, Observation, Policy, Request, RequestId, RunSummary, Timestamp,
};
use energyllm_engines::{IterationCost, IterationWork};

use crate::Error;
use energyllm_sim::simulation::{simulate, SimSetup};

/// Runs a static batch of `batch` identical requests on the simulator's cost model and returns
/// (latency in s, GPU energy per request in J).
fn static_batch(setup: &SimSetup, freq: Mhz, batch: u64, input: u64, output: u64) -> (f64, f64) {
    let timing = &setup.engine.timing;
    let (model, gpu) = (&setup.model, &setup.gpu);
    let budget = u64::from(setup.engine.max_num_batched_tokens);
    let mut costs: Vec<IterationCost> = Vec::new();
    let total_prefill = batch * input;
    let mut done = 0;
    while done < total_prefill {
        let chunk = (total_prefill - done).min(budget);
        let c = chunk as f64;
        let work = IterationWork {
            prefill_tokens: chunk,
            attention_pairs: c * (input as f64 + 1.0) / 2.0,
            sampled_sequences: chunk.div_ceil(input.max(1)),
            ..Default::default()
        };
        costs.push(timing.cost(model, gpu, freq, &work));
        done += chunk;
    }
    for k in 1..output {
        let ctx = input + k;
        let work = IterationWork {
            decode_tokens: batch,
            kv_read_tokens: batch * ctx,
            attention_pairs: (batch * (ctx + 1)) as f64,
            sampled_sequences: batch,
            ..Default::default()
        };
        costs.push(timing.cost(model, gpu, freq, &work));
    }
    let time: f64 = costs.iter().map(|c| c.time_s).sum();
    let energy: f64 = costs.iter().map(|c| gpu.power_w(freq, c.load) * c.time_s).sum();
    (time, energy / batch as f64)
}

/// Observation 1: latency and energy per request over clock × batch.
pub fn coupling_table(setup: &SimSetup) -> String {
    let fmax = Mhz(setup.gpu.max_freq_mhz);
    let clocks = [Mhz(705), Mhz(1005), fmax];
    let batches = [1u64, 4, 16, 64];
    let (input, output) = (1024, 256);
    let mut s = format!(
        "### 1. Clock × batch coupling ({} on {}, static batches of {input}-token prompts and {output}-token answers)\n\n\
         Latency relative to the same batch at {} MHz, and GPU energy per request.\n\n| clock (MHz) |",
        setup.model.name, setup.gpu.name, fmax.0
    );
    for b in batches {
        let _ = write!(s, " batch {b}: latency | batch {b}: J/req |");
    }
    s.push_str("\n|---:|");
    s.push_str(&"---:|---:|".repeat(batches.len()));
    s.push('\n');
    let base: Vec<(f64, f64)> =
        batches.iter().map(|&b| static_batch(setup, fmax, b, input, output)).collect();
    for f in clocks {
        let _ = write!(s, "| {} |", f.0);
        for (i, &b) in batches.iter().enumerate() {
            let (t, e) = static_batch(setup, f, b, input, output);
            let _ = write!(s, " {:.2}× | {:.0} |", t / base[i].0, e);
        }
        s.push('\n');
    }
    s
}

/// Observation 2: energy per request of short and long requests.
pub fn length_table(setup: &SimSetup) -> String {
    let fmax = Mhz(setup.gpu.max_freq_mhz);
    let mut s = format!(
        "### 2. Short vs long requests ({} MHz, batch 8)\n\n| request | prompt | answer | latency (s) | J/request |\n|---|---:|---:|---:|---:|\n",
        fmax.0
    );
    for (label, input, output) in
        [("short", 50, 50), ("short", 100, 100), ("long", 500, 500), ("long", 1000, 800)]
    {
        let (t, e) = static_batch(setup, fmax, 8, input, output);
        let _ = writeln!(s, "| {label} | {input} | {output} | {t:.2} | {e:.0} |");
    }
    s
}

/// A policy that flips between two clocks at every decision: the worst case for switch stalls.
struct Alternate {
    clocks: [Mhz; 2],
    next: usize,
    batch: u32,
}

impl Policy for Alternate {
    fn name(&self) -> &str {
        "alternate"
    }
    fn decide(&mut self, _obs: &Observation) -> Action {
        self.next ^= 1;
        Action { freq: self.clocks[self.next], batch: self.batch }
    }
}

/// Observation 3: throughput lost to clock switches after every short request.
pub fn switch_table(setup: &SimSetup) -> Result<String, Error> {
    let mut setup = setup.clone();
    setup.controller.batching = BatchingMode::Static;
    setup.controller.decision_interval_s = None;
    setup.controller.decide_on_batch_completion = true;
    let fmax = Mhz(setup.gpu.max_freq_mhz);
    let low = setup.controller.action_space.nearest_freq(Mhz(1200));
    // A backlog of short requests served one at a time: throughput is what the GPU sustains.
    let requests: Vec<Request> = (0..200)
        .map(|i| Request { id: RequestId(i), arrival: Timestamp::ZERO, input_tokens: 32, output_tokens: 16 })
        .collect();
    let run = |policy: Box<dyn Policy>| -> Result<RunSummary, Error> {
        let r = simulate(&setup, policy, &requests, 0.0)?;
        Ok(RunSummary::compute("", &setup.controller.slo, &r.records, &r.totals, 1))
    };
    let steady = run(Box::new(Alternate { clocks: [fmax, fmax], next: 0, batch: 1 }))?;
    let flip = run(Box::new(Alternate { clocks: [low, fmax], next: 0, batch: 1 }))?;
    let stall_s = setup.gpu.switch_stall_s;
    Ok(format!(
        "### 3. Switch overhead (200 requests of 32 + 16 tokens served one by one, {:.0} ms stall per switch)\n\n\
         | policy | switches | throughput (req/s) | J/request |\n|---|---:|---:|---:|\n\
         | stay at {} MHz | {} | {:.2} | {:.1} |\n| switch {}↔{} MHz after every request | {} | {:.2} | {:.1} |\n\n\
         Switching after every request cuts effective throughput by {:.0}%.\n",
        stall_s * 1e3,
        fmax.0,
        steady.freq_switches,
        steady.throughput_rps,
        steady.energy_per_request_j,
        low.0,
        fmax.0,
        flip.freq_switches,
        flip.throughput_rps,
        flip.energy_per_request_j,
        (1.0 - flip.throughput_rps / steady.throughput_rps) * 100.0
    ))
}

/// All three tables.
pub fn observations(setup: &SimSetup) -> Result<String, Error> {
    Ok(format!("{}\n{}\n{}", coupling_table(setup), length_table(setup), switch_table(setup)?))
}

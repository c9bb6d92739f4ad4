//! Planning models on the stack that will serve: a workload profile (a grid of prompt × output
//! lengths at the deployment's batch size and clock) of a simulated system, the non-negative
//! physical fit of [`energyllm_models::planning`] on it, its held-out error, and a check on
//! traffic the grid does not contain: queries of mixed lengths drawn from a dataset, run on the
//! same simulated system, against what the fitted model predicts for them.
//!
//! The system batches continuously, as vLLM does, with at most `batch` requests running. A grid
//! cell's requests are identical, so they start and finish together. Mixed traffic refills each
//! slot as its request ends; that is what makes a query's energy close to a sum of its own
//! costs. Static batches would charge every query for its batch's longest one.
//!
//! [`route_system`] turns a fit into a `[[system]]` of a routing config. The coefficients are
//! given per batch, as the Wilkins form has them, and the system keeps the fitted grid, so that
//! `route` flags extrapolation.

use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

use energyllm_core::{BatchingMode, Engine as _, FrequencyActuator as _, Mhz, Request, RequestId, Timestamp};
use energyllm_engines::{ModelSpec, SimEngineConfig, SimServer};
use energyllm_hw::{GpuSpec, SharedSimGpu, SimGpu};
use energyllm_models::{
    BatchProfileRow, FittedRange, PlanningModel, PlanningParams, PlanningSample, RouteSystem,
};

use crate::profiler::{block_on, profile_batches, ProfileSettings, TokenConfig};
use crate::Error;

/// Prompt lengths of the default grid, in tokens.
pub const GRID_INPUT_TOKENS: [u32; 7] = [1, 8, 32, 128, 512, 1024, 2048];
/// Output lengths of the default grid, in tokens.
pub const GRID_OUTPUT_TOKENS: [u32; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];

/// One system to plan for: a model profile on a GPU profile, simulated.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedSystem {
    /// Name in the routing config, e.g. `llama-2-7b@a100-80gb`.
    pub name: String,
    /// GPU profile name (`energyllm list`).
    pub gpu: String,
    /// Model profile name; its tensor-parallel degree sets the GPU count.
    pub model: String,
}

/// How the profile is taken.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanningSetup {
    /// Requests running at most at once, as the deployment will batch them.
    pub batch: u32,
    /// The clock, in MHz; `None` for the GPU's top clock.
    pub clock_mhz: Option<u32>,
    /// Prompt lengths of the grid.
    pub input_tokens: Vec<u32>,
    /// Output lengths of the grid.
    pub output_tokens: Vec<u32>,
}

impl Default for PlanningSetup {
    fn default() -> Self {
        PlanningSetup {
            batch: 32,
            clock_mhz: None,
            input_tokens: GRID_INPUT_TOKENS.to_vec(),
            output_tokens: GRID_OUTPUT_TOKENS.to_vec(),
        }
    }
}

/// A simulated system ready to run static batches, and its clock.
struct Simulated {
    server: SimServer,
    gpu: SharedSimGpu,
    clock: Mhz,
}

fn simulated(system: &PlannedSystem, setup: &PlanningSetup) -> Result<Simulated, Error> {
    let spec = GpuSpec::builtin(&system.gpu)?;
    let model = ModelSpec::builtin(&system.model)?;
    let clock = Mhz(setup.clock_mhz.unwrap_or(spec.max_freq_mhz));
    let gpu = SharedSimGpu::new(SimGpu::with_count(spec, model.tensor_parallel));
    let config = SimEngineConfig {
        batching: BatchingMode::Continuous,
        max_num_seqs: setup.batch,
        ..SimEngineConfig::default()
    };
    let server = SimServer::new(config, model, gpu.clone())?;
    Ok(Simulated { server, gpu, clock })
}

/// The workload profile of `system`: one batch of `setup.batch` identical requests per grid
/// cell, at the setup's clock.
pub fn workload_profile(
    system: &PlannedSystem,
    setup: &PlanningSetup,
) -> Result<Vec<BatchProfileRow>, Error> {
    if setup.batch == 0 || setup.input_tokens.is_empty() || setup.output_tokens.is_empty() {
        return Err(Error::Setting(
            "the planning grid needs a batch ≥ 1 and at least one length of each".into(),
        ));
    }
    let mut sim = simulated(system, setup)?;
    let token_configs = setup
        .input_tokens
        .iter()
        .flat_map(|&i| {
            setup.output_tokens.iter().map(move |&o| TokenConfig { input_tokens: i, output_tokens: o })
        })
        .collect();
    let settings =
        ProfileSettings { freqs: vec![sim.clock], batch_sizes: vec![setup.batch], token_configs, repeats: 1 };
    Ok(profile_batches(&mut sim.server, &mut sim.gpu, &settings, |_, _| {})?)
}

/// One query's share of each profiled batch. Rows with a refused request are left out: their
/// energy is not that of a full batch.
pub fn planning_samples(rows: &[BatchProfileRow]) -> Vec<PlanningSample> {
    rows.iter()
        .filter(|r| r.rejected == 0 && r.batch_size > 0)
        .map(|r| {
            let b = f64::from(r.batch_size);
            PlanningSample {
                input_tokens: r.avg_input_len,
                output_tokens: r.avg_output_len,
                energy_j: r.energy_j / b,
                runtime_s: r.total_latency_sec / b,
            }
        })
        .collect()
}

/// Profiles and fits `system`.
pub fn fit_system(system: &PlannedSystem, setup: &PlanningSetup) -> Result<PlanningModel, Error> {
    let rows = workload_profile(system, setup)?;
    let clock = setup.clock_mhz.map_or_else(|| "top clock".to_owned(), |c| format!("{c} MHz"));
    let params = PlanningParams {
        label: format!(
            "{} on {} (simulated), continuous batching of up to {} requests, {clock}",
            system.model, system.gpu, setup.batch
        ),
        ..PlanningParams::default()
    };
    Ok(params.fit(&planning_samples(&rows))?)
}

/// The `[[system]]` of a routing config for a fit at `batch` requests per batch.
pub fn route_system(
    name: &str,
    model_label: &str,
    gpu_label: &str,
    gpus: u32,
    quality: f64,
    batch: u32,
    fit: &PlanningModel,
) -> RouteSystem {
    let b = f64::from(batch);
    let per_batch = |c: [f64; 4]| [c[1] * b, c[2] * b, c[3] * b];
    let range = |[lo, hi]: [f64; 2]| [lo.floor() as u32, hi.ceil() as u32];
    RouteSystem {
        name: name.to_owned(),
        model: model_label.to_owned(),
        gpu: gpu_label.to_owned(),
        gpus,
        energy_j: per_batch(fit.energy_j.coefficients),
        runtime_s: per_batch(fit.runtime_s.coefficients),
        batch_size: batch,
        quality,
        min_share: None,
        max_share: None,
        max_queries: None,
        min_energy_j: 0.0,
        min_runtime_s: 0.0,
        energy_intercept_j: fit.energy_j.coefficients[0] * b,
        runtime_intercept_s: fit.runtime_s.coefficients[0] * b,
        fitted_range: Some(FittedRange {
            input_tokens: range(fit.input_range),
            output_tokens: range(fit.output_range),
        }),
    }
}

/// What the fitted model predicts for mixed traffic and what the simulator spends on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixedCheck {
    /// Queries run.
    pub queries: usize,
    /// Mean predicted energy per query, in joules.
    pub predicted_j: f64,
    /// Mean simulated energy per query, in joules.
    pub simulated_j: f64,
    /// Queries outside the fitted grid.
    pub extrapolated: usize,
}

impl MixedCheck {
    /// The prediction's error, in percent of the simulated energy.
    pub fn error_pct(&self) -> f64 {
        100.0 * (self.predicted_j - self.simulated_j) / self.simulated_j
    }
}

/// Runs `queries` (prompt, output lengths), shuffled by `seed`, through the simulated `system`
/// all at once (continuous batching refills each of the `setup.batch` slots as its request ends),
/// and compares the energy per query with what `fit` predicts for the same queries.
pub fn check_on_mixed_batches(
    system: &PlannedSystem,
    setup: &PlanningSetup,
    fit: &PlanningModel,
    queries: &[(u32, u32)],
    seed: u64,
) -> Result<MixedCheck, Error> {
    let mut sim = simulated(system, setup)?;
    sim.gpu.set_frequency(sim.clock)?;
    // A warm-up request absorbs the clock switch's stall, as the profile's does.
    let warmup =
        [Request { id: RequestId(u64::MAX), arrival: Timestamp::ZERO, input_tokens: 16, output_tokens: 2 }];
    block_on(sim.server.run_batch(&warmup))
        .map_err(|e| Error::Setting(format!("the simulated warm-up failed: {e}")))?;
    let mut order = queries.to_vec();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    if order.len() < setup.batch as usize {
        return Err(Error::Setting(format!("fewer queries than one batch of {}", setup.batch)));
    }
    let reqs: Vec<Request> = order
        .iter()
        .enumerate()
        .map(|(i, &(input_tokens, output_tokens))| Request {
            id: RequestId(i as u64),
            arrival: Timestamp::ZERO,
            input_tokens,
            output_tokens,
        })
        .collect();
    let before = sim.gpu.energy_j()?.unwrap_or(0.0);
    block_on(sim.server.run_batch(&reqs))
        .map_err(|e| Error::Setting(format!("the simulated run failed: {e}")))?;
    let spent = sim.gpu.energy_j()?.unwrap_or(0.0) - before;
    let n = order.len();
    let predicted: f64 =
        order.iter().map(|&(i, o)| fit.energy_j.eval(f64::from(i), f64::from(o))).sum::<f64>() / n as f64;
    let extrapolated = order.iter().filter(|&&(i, o)| !fit.in_range(f64::from(i), f64::from(o))).count();
    Ok(MixedCheck { queries: n, predicted_j: predicted, simulated_j: spent / n as f64, extrapolated })
}

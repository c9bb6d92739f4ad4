//! Policy comparisons on the simulator: the same workloads, every method, several runs.

use energyllm_core::registry::{find, PluginSpec, PolicyContext, PolicyPlugin};
use energyllm_core::{Policy, RequestRecord, RunSummary, RunTotals};

use crate::Error;
use energyllm_sim::clairvoyant::{clairvoyant, energy_floor, ClairvoyantConfig, EnergyFloor};
use energyllm_sim::simulation::{simulate, RunResult, SimSetup};
use energyllm_workload::{sample_requests, ArrivalPattern, LengthDataset, Replay};

/// What to compare and on what.
#[derive(Clone, Debug)]
pub struct EvalSettings {
    /// The methods, as `name[:key=value,…]` specs.
    pub policies: Vec<PluginSpec>,
    /// GPU, model, engine and controller.
    pub setup: SimSetup,
    /// Where request lengths come from (with a trace, only if [`WorkloadSource::Replay`] says
    /// `draw_lengths`).
    pub dataset: LengthDataset,
    /// Mean arrival rate, in requests per second (not used when replaying a trace).
    pub arrival_rate_rps: f64,
    /// Arrival window of each run, in seconds (not used when replaying a trace: its window is
    /// the replay's).
    pub duration_s: f64,
    /// How arrivals are made: drawn from a process (default: Poisson) or replayed from a trace.
    pub workload: WorkloadSource,
    /// Independent runs per method.
    pub runs: u32,
    /// Seed of run 0; run `i` uses `seed + i`, the same for every method.
    pub seed: u64,
}

/// Where each run's arrival times come from.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkloadSource {
    /// Drawn from an arrival process at `arrival_rate_rps` over `duration_s`; lengths drawn from
    /// `dataset`. Run `i` uses seed `seed + i`.
    Sampled(ArrivalPattern),
    /// A trace replayed in order with its gaps scaled. Every run replays the same arrivals.
    Replay {
        /// The trace and its scaling.
        replay: Replay,
        /// Draw lengths from `dataset` (seeded per run) instead of using the trace's own.
        draw_lengths: bool,
    },
}

impl Default for WorkloadSource {
    fn default() -> Self {
        WorkloadSource::Sampled(ArrivalPattern::Poisson)
    }
}

/// One method's results.
#[derive(Clone, Debug)]
pub struct MethodResult {
    /// Pooled over all runs: every request of every run, energies and times summed.
    pub summary: RunSummary,
    /// One summary per run.
    pub runs: Vec<RunSummary>,
    /// Per-request records of each run.
    pub records: Vec<Vec<RequestRecord>>,
    /// Full results of each run.
    pub details: Vec<RunResult>,
}

impl EvalSettings {
    /// The end of each run's arrival window, in seconds.
    pub fn arrivals_end_s(&self) -> Result<f64, Error> {
        match &self.workload {
            WorkloadSource::Sampled(_) => Ok(self.duration_s),
            WorkloadSource::Replay { replay, .. } => Ok(replay.arrivals_end_s()?),
        }
    }

    /// The requests of run `i`.
    pub fn requests(&self, i: u32) -> Result<Vec<energyllm_core::Request>, Error> {
        let requests = match &self.workload {
            WorkloadSource::Sampled(pattern) => sample_requests(
                &self.dataset,
                pattern,
                self.arrival_rate_rps,
                self.duration_s,
                self.run_seed(i),
            ),
            WorkloadSource::Replay { replay, draw_lengths } => {
                replay.requests(draw_lengths.then_some(&self.dataset), self.run_seed(i))
            }
        };
        Ok(requests?)
    }

    /// One line on the workload, for reports: the process and rate, or the trace and its scaling.
    pub fn describe_workload(&self) -> String {
        match &self.workload {
            WorkloadSource::Sampled(p) => format!(
                "{} s of {p} arrivals at {} req/s, lengths from {}",
                self.duration_s, self.arrival_rate_rps, self.dataset.name
            ),
            WorkloadSource::Replay { replay, draw_lengths } => format!(
                "replay of {} ({} requests over {:.1} s, time × {} / rate × {}), lengths from {}",
                replay.trace.name,
                replay.trace.entries.len(),
                replay.trace.span_s(),
                replay.time_scale,
                replay.rate_scale,
                if *draw_lengths { self.dataset.name.as_str() } else { "the trace" }
            ),
        }
    }

    /// The seed of run `i`.
    pub fn run_seed(&self, i: u32) -> u64 {
        self.seed.wrapping_add(u64::from(i))
    }

    fn build_policy(&self, spec: &PluginSpec, seed: u64) -> Result<Box<dyn Policy>, Error> {
        let plugin = find::<PolicyPlugin>(&spec.name)?;
        let mut ctx =
            PolicyContext::new(self.setup.controller.action_space.clone(), self.setup.controller.slo, seed);
        ctx.perf_model = Some(self.setup.perf_model());
        Ok((plugin.build)(&spec.config, &ctx)?)
    }
}

/// The method name that selects the clairvoyant reference instead of a policy plugin.
pub const CLAIRVOYANT: &str = "clairvoyant";

fn clairvoyant_config(spec: &PluginSpec) -> Result<ClairvoyantConfig, Error> {
    let mut config = ClairvoyantConfig::default();
    let table = spec.config.as_object().cloned().unwrap_or_default();
    for (key, value) in table {
        let bad = || Error::Setting(format!("clairvoyant: `{key}` needs a positive number, got {value}"));
        match key.as_str() {
            "window_s" => config.window_s = value.as_f64().filter(|v| *v > 0.0).ok_or_else(bad)?,
            "clock_stride" => {
                config.clock_stride = value.as_u64().filter(|v| *v > 0).ok_or_else(bad)? as usize
            }
            _ => {
                return Err(Error::Setting(format!(
                    "clairvoyant takes window_s and clock_stride; unknown parameter `{key}`"
                )))
            }
        }
    }
    Ok(config)
}

/// The energy floor pooled over the evaluation's runs: the least energy any method could spend
/// on the same tokens, ignoring the SLO.
pub fn energy_floor_of(settings: &EvalSettings) -> Result<EnergyFloor, Error> {
    let arrivals_end_s = settings.arrivals_end_s()?;
    let mut pooled = EnergyFloor { busy_energy_j: 0.0, total_energy_j: 0.0, requests: 0 };
    for i in 0..settings.runs {
        let f = energy_floor(&settings.setup, &settings.requests(i)?, arrivals_end_s);
        pooled.busy_energy_j += f.busy_energy_j;
        pooled.total_energy_j += f.total_energy_j;
        pooled.requests += f.requests;
    }
    Ok(pooled)
}

/// Runs every method on the same workloads. `on_run` is called after each (method, run) with
/// the number finished so far, for progress reporting.
pub fn evaluate(settings: &EvalSettings, mut on_run: impl FnMut(usize)) -> Result<Vec<MethodResult>, Error> {
    if settings.runs == 0 {
        return Err(Error::Setting("runs must be ≥ 1".into()));
    }
    if settings.policies.is_empty() {
        return Err(Error::Setting("name at least one policy".into()));
    }
    // Build every policy once up front so that a bad name or parameter fails before any run.
    for spec in &settings.policies {
        match spec.name.as_str() {
            CLAIRVOYANT => {
                clairvoyant_config(spec)?;
            }
            _ => {
                settings.build_policy(spec, settings.seed)?;
            }
        }
    }
    settings.setup.controller.validate()?;
    let workloads = (0..settings.runs).map(|i| settings.requests(i)).collect::<Result<Vec<_>, _>>()?;
    let arrivals_end_s = settings.arrivals_end_s()?;
    let slo = settings.setup.controller.slo;
    let mut done = 0;
    let mut results = Vec::with_capacity(settings.policies.len());
    for spec in &settings.policies {
        let mut runs = Vec::with_capacity(workloads.len());
        let mut details = Vec::with_capacity(workloads.len());
        for (i, requests) in workloads.iter().enumerate() {
            let result = if spec.name == CLAIRVOYANT {
                clairvoyant(&settings.setup, requests, arrivals_end_s, &clairvoyant_config(spec)?)?
            } else {
                let policy = settings.build_policy(spec, settings.run_seed(i as u32))?;
                simulate(&settings.setup, policy, requests, arrivals_end_s)?
            };
            runs.push(RunSummary::compute(&spec.label, &slo, &result.records, &result.totals, 1));
            details.push(result);
            done += 1;
            on_run(done);
        }
        let mut pooled_totals = RunTotals::default();
        details.iter().for_each(|d| pooled_totals.add(&d.totals));
        let pooled: Vec<RequestRecord> = details.iter().flat_map(|d| d.records.iter().cloned()).collect();
        let summary = RunSummary::compute(&spec.label, &slo, &pooled, &pooled_totals, settings.runs);
        let records = details.iter().map(|d| d.records.clone()).collect();
        results.push(MethodResult { summary, runs, records, details });
    }
    Ok(results)
}

//! Policy comparisons on the simulator: the same workloads, every method, several runs.

use energyllm_core::registry::{find, PluginSpec, PolicyContext, PolicyPlugin};
use energyllm_core::{Policy, RequestRecord, RunSummary, RunTotals};

use crate::driver::{simulate, RunResult, SimSetup};
use crate::workload::{poisson_requests, LengthDataset};
use crate::Error;

/// What to compare and on what.
#[derive(Clone, Debug)]
pub struct EvalSettings {
    /// The methods, as `name[:key=value,…]` specs.
    pub policies: Vec<PluginSpec>,
    /// GPU, model, engine and controller.
    pub setup: SimSetup,
    /// Where request lengths come from.
    pub dataset: LengthDataset,
    /// Poisson arrival rate, in requests per second.
    pub arrival_rate_rps: f64,
    /// Arrival window of each run, in seconds.
    pub duration_s: f64,
    /// Independent runs per method.
    pub runs: u32,
    /// Seed of run 0; run `i` uses `seed + i`, the same for every method.
    pub seed: u64,
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
    /// The seed of run `i`.
    pub fn run_seed(&self, i: u32) -> u64 {
        self.seed.wrapping_add(u64::from(i))
    }

    fn build_policy(&self, spec: &PluginSpec, seed: u64) -> Result<Box<dyn Policy>, Error> {
        let plugin = find::<PolicyPlugin>(&spec.name)?;
        let ctx = PolicyContext {
            action_space: self.setup.controller.action_space.clone(),
            slo: self.setup.controller.slo,
            seed,
        };
        Ok((plugin.build)(&spec.config, &ctx)?)
    }
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
        settings.build_policy(spec, settings.seed)?;
    }
    settings.setup.controller.validate()?;
    let workloads = (0..settings.runs)
        .map(|i| {
            poisson_requests(
                &settings.dataset,
                settings.arrival_rate_rps,
                settings.duration_s,
                settings.run_seed(i),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let slo = settings.setup.controller.slo;
    let mut done = 0;
    let mut results = Vec::with_capacity(settings.policies.len());
    for spec in &settings.policies {
        let mut runs = Vec::with_capacity(workloads.len());
        let mut details = Vec::with_capacity(workloads.len());
        for (i, requests) in workloads.iter().enumerate() {
            let policy = settings.build_policy(spec, settings.run_seed(i as u32))?;
            let result = simulate(&settings.setup, policy, requests, settings.duration_s)?;
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

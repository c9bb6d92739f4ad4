//! Policy comparisons on the simulator: the same workloads, every method, several runs.

use energyllm_core::registry::{find, PluginSpec, PolicyContext, PolicyPlugin};
use energyllm_core::{Policy, RequestRecord, RunSummary, RunTotals};

use crate::Error;
use energyllm_sim::clairvoyant::{clairvoyant, energy_floor, ClairvoyantConfig, EnergyFloor};
use energyllm_sim::simulation::{simulate, RunResult, SimSetup};
use energyllm_workload::{sample_requests, ArrivalPattern, LengthDataset, LoadProfile, Replay};

use crate::best_static::{best_static, BestStaticConfig, BEST_STATIC};

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
    /// Load as a share of capacity: when set, the workload's arrivals are time-warped to follow
    /// the profile (and `arrival_rate_rps` is not used).
    pub load: Option<Load>,
    /// The performance model the look-ahead policies and the shield consult; `None` gives them
    /// the simulator's own iteration model (an oracle).
    pub perf_model: Option<PerfModelChoice>,
}

/// A performance model given to the policies in place of the simulator's own, e.g. trees fitted
/// by `energyllm fit gbt`, so that a comparison includes realistic model error.
#[derive(Clone)]
pub struct PerfModelChoice {
    /// The plugin spec it was built from (`gbt:path=models/gbt.elm`).
    pub spec: PluginSpec,
    /// The model.
    pub model: std::sync::Arc<dyn energyllm_core::PerfModel>,
}

impl std::fmt::Debug for PerfModelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PerfModelChoice({})", self.spec.label)
    }
}

impl PerfModelChoice {
    /// Builds the registered performance model `spec` names (files are loaded here, once).
    pub fn build(spec: &PluginSpec) -> Result<Self, Error> {
        let plugin = find::<energyllm_core::registry::PerfModelPlugin>(&spec.name)?;
        let model = (plugin.build)(&spec.config)?;
        Ok(PerfModelChoice { spec: spec.clone(), model: std::sync::Arc::from(model) })
    }
}

/// Load stated as a share of capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// How the share moves over time.
    pub profile: LoadProfile,
    /// The capacity the share is of, in requests per second (see [`crate::capacity`]).
    pub capacity_rps: f64,
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
        match (&self.workload, &self.load) {
            (WorkloadSource::Sampled(_), _) => Ok(self.duration_s),
            (WorkloadSource::Replay { replay, .. }, None) => Ok(replay.arrivals_end_s()?),
            (WorkloadSource::Replay { replay, .. }, Some(_)) => match replay.window_s {
                Some(w) => Ok(w),
                None => {
                    let last = self.requests(0)?.last().map_or(0.0, |r| r.arrival.as_secs_f64());
                    Ok(last)
                }
            },
        }
    }

    /// The requests of run `i`.
    pub fn requests(&self, i: u32) -> Result<Vec<energyllm_core::Request>, Error> {
        match &self.load {
            None => self.unwarped_requests(i),
            Some(load) => self.warped_requests(i, load),
        }
    }

    /// The requests of run `i` time-warped to follow `load`: the arrival process drawn at the
    /// profile's mean rate (so its own time constants stay in seconds), or the trace at its own
    /// mean rate — repeated end to end when one pass does not fill the window — mapped through
    /// the profile.
    fn warped_requests(&self, i: u32, load: &Load) -> Result<Vec<energyllm_core::Request>, Error> {
        let end = match &self.workload {
            WorkloadSource::Sampled(_) => Some(self.duration_s),
            WorkloadSource::Replay { replay, .. } => replay.window_s,
        };
        // Arrivals the window needs, with room for the draw's randomness.
        let needed = end.map(|e| load.profile.expected_arrivals(load.capacity_rps, e) * 1.2 + 50.0);
        let (mut requests, stream_rate) = match &self.workload {
            WorkloadSource::Sampled(pattern) => {
                let rate = load.capacity_rps * load.profile.mean_share();
                let horizon_s = needed.unwrap_or(0.0) / rate;
                (sample_requests(&self.dataset, pattern, rate, horizon_s, self.run_seed(i))?, rate)
            }
            WorkloadSource::Replay { replay, draw_lengths } => {
                let unwindowed = Replay { window_s: None, ..replay.clone() };
                let once = unwindowed.requests(draw_lengths.then_some(&self.dataset), self.run_seed(i))?;
                let span = once.last().map_or(0.0, |r| r.arrival.as_secs_f64());
                if once.len() < 2 || span <= 0.0 {
                    return Err(Error::Setting(format!(
                        "{}: a load profile needs a trace with at least two distinct arrival times",
                        replay.trace.name
                    )));
                }
                let rate = (once.len() - 1) as f64 / span;
                (repeat_to(&once, span + 1.0 / rate, needed.unwrap_or(0.0)), rate)
            }
        };
        let times: Vec<f64> = requests.iter().map(|r| r.arrival.as_secs_f64()).collect();
        let warped = load.profile.warp(&times, stream_rate, load.capacity_rps)?;
        for (r, t) in requests.iter_mut().zip(warped) {
            r.arrival = energyllm_core::Timestamp::from_secs_f64(t);
        }
        if let Some(end) = end {
            requests.retain(|r| r.arrival.as_secs_f64() < end);
        }
        Ok(requests)
    }

    fn unwarped_requests(&self, i: u32) -> Result<Vec<energyllm_core::Request>, Error> {
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

    /// The workload's name: the trace, or the dataset lengths are drawn from.
    pub fn workload_name(&self) -> String {
        match &self.workload {
            WorkloadSource::Sampled(_) => self.dataset.name.clone(),
            WorkloadSource::Replay { replay, .. } => replay.trace.name.clone(),
        }
    }

    /// Which performance model the look-ahead policies and the shield consult, for reports.
    pub fn describe_perf_model(&self) -> String {
        match &self.perf_model {
            Some(c) => format!("`{}` (fitted: its error is part of these figures)", c.spec.label),
            None => {
                "the simulator's own iteration model, an oracle: their figures carry no model error".into()
            }
        }
    }

    /// One line on the workload, for reports: the process and rate, or the trace and its scaling.
    pub fn describe_workload(&self) -> String {
        if let Some(load) = &self.load {
            let source = match &self.workload {
                WorkloadSource::Sampled(p) => format!("{p} arrivals, lengths from {}", self.dataset.name),
                WorkloadSource::Replay { replay, draw_lengths } => format!(
                    "replay of {} time-warped, lengths from {}",
                    replay.trace.name,
                    if *draw_lengths { self.dataset.name.as_str() } else { "the trace" }
                ),
            };
            return format!(
                "{} s of {source} at {} (capacity {:.3} req/s)",
                self.arrivals_end_s().unwrap_or(self.duration_s),
                load.profile,
                load.capacity_rps
            );
        }
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

    /// Builds the policy `spec` for run seed `seed`, with the simulator's own performance model.
    pub(crate) fn build_policy(&self, spec: &PluginSpec, seed: u64) -> Result<Box<dyn Policy>, Error> {
        let plugin = find::<PolicyPlugin>(&spec.name)?;
        let mut ctx =
            PolicyContext::new(self.setup.controller.action_space.clone(), self.setup.controller.slo, seed);
        ctx.perf_model = Some(match &self.perf_model {
            Some(choice) => choice.model.clone(),
            None => self.setup.perf_model(),
        });
        Ok((plugin.build)(&spec.config, &ctx)?)
    }
}

/// Time to first token and time per output token, in seconds, of a lone request of
/// `input_tokens` and `output_tokens` at the top clock under the simulator's model: the unloaded
/// latency that `--slo-scale` multiplies (DistServe's convention for stating SLOs per GPU × model).
pub fn unloaded_latency(setup: &SimSetup, input_tokens: f64, output_tokens: f64) -> (f64, f64) {
    use energyllm_core::PerfQuery;
    let perf = setup.perf_model();
    let freq = setup.controller.action_space.max_freq();
    let prefill = perf.predict(&PerfQuery {
        freq,
        batch: 1,
        prefill_tokens: input_tokens.round() as u32,
        decode_tokens: 0,
        kv_tokens: 0,
    });
    let decode = perf.predict(&PerfQuery {
        freq,
        batch: 1,
        prefill_tokens: 0,
        decode_tokens: 1,
        kv_tokens: (input_tokens + output_tokens / 2.0).round() as u64,
    });
    (prefill.latency_s, decode.latency_s)
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

/// `once` followed by copies of itself shifted by `period_s` each, until at least `count`
/// requests (at least one pass); ids are renumbered in order.
fn repeat_to(once: &[energyllm_core::Request], period_s: f64, count: f64) -> Vec<energyllm_core::Request> {
    let passes = ((count / once.len().max(1) as f64).ceil() as usize).max(1);
    let mut out = Vec::with_capacity(passes * once.len());
    for k in 0..passes {
        let shift = energyllm_core::duration_from_secs(k as f64 * period_s);
        for r in once {
            let id = energyllm_core::RequestId(out.len() as u64);
            out.push(energyllm_core::Request { id, arrival: r.arrival + shift, ..*r });
        }
    }
    out
}

impl MethodResult {
    /// Pools the runs of one method under `label`.
    pub fn from_runs(label: &str, slo: &energyllm_core::Slo, details: Vec<RunResult>) -> Self {
        let runs =
            details.iter().map(|d| RunSummary::compute(label, slo, &d.records, &d.totals, 1)).collect();
        let mut pooled_totals = RunTotals::default();
        details.iter().for_each(|d| pooled_totals.add(&d.totals));
        let pooled: Vec<RequestRecord> = details.iter().flat_map(|d| d.records.iter().cloned()).collect();
        let summary = RunSummary::compute(label, slo, &pooled, &pooled_totals, details.len() as u32);
        let records = details.iter().map(|d| d.records.clone()).collect();
        MethodResult { summary, runs, records, details }
    }
}

/// Worker threads for the runs of an evaluation: the machine's parallelism. Results never depend
/// on it: every (method, run) is independent and lands in its own slot.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs every method on the same workloads, (method, run) pairs in parallel on
/// [`worker_threads`]. `on_run` is called after each (method, run) with the number finished so
/// far, for progress reporting; `best-static` counts as its runs when its search ends.
pub fn evaluate(
    settings: &EvalSettings,
    on_run: impl FnMut(usize) + Send,
) -> Result<Vec<MethodResult>, Error> {
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
            BEST_STATIC => {
                BestStaticConfig::from_spec(spec)?;
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
    let runs = workloads.len();
    let jobs: Vec<(usize, usize)> = (0..settings.policies.len())
        .filter(|&m| settings.policies[m].name != BEST_STATIC)
        .flat_map(|m| (0..runs).map(move |i| (m, i)))
        .collect();
    let run_job = |&(m, i): &(usize, usize)| -> Result<RunResult, Error> {
        let spec = &settings.policies[m];
        let requests = &workloads[i];
        if spec.name == CLAIRVOYANT {
            clairvoyant(&settings.setup, requests, arrivals_end_s, &clairvoyant_config(spec)?)
                .map_err(Error::from)
        } else {
            let policy = settings.build_policy(spec, settings.run_seed(i as u32))?;
            simulate(&settings.setup, policy, requests, arrivals_end_s).map_err(Error::from)
        }
    };
    let progress = std::sync::Mutex::new((0usize, on_run));
    let tick = |n: usize| {
        if let Ok(mut p) = progress.lock() {
            p.0 += n;
            let done = p.0;
            (p.1)(done);
        }
    };
    let finished = crate::parallel::parallel_map(jobs.len(), worker_threads(), |k| {
        let result = run_job(&jobs[k]);
        tick(1);
        result
    });
    let mut by_method: Vec<Vec<RunResult>> = (0..settings.policies.len()).map(|_| Vec::new()).collect();
    for (result, &(m, _)) in finished.into_iter().zip(&jobs) {
        let result = result
            .ok_or_else(|| Error::Setting("an evaluation worker stopped before its run ended".into()))?;
        by_method[m].push(result?);
    }
    let mut results = Vec::with_capacity(settings.policies.len());
    for (spec, details) in settings.policies.iter().zip(by_method) {
        if spec.name == BEST_STATIC {
            let config = BestStaticConfig::from_spec(spec)?;
            let found = best_static(settings, &workloads, arrivals_end_s, config, worker_threads())?;
            tick(runs);
            match found.best {
                Some((_, result)) => results.push(result),
                None => results.push(MethodResult::from_runs(&found.label(), &slo, Vec::new())),
            }
        } else {
            results.push(MethodResult::from_runs(&spec.label, &slo, details));
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use energyllm_workload::{ReadOptions, Trace};

    use super::*;

    #[test]
    fn a_load_profile_warps_a_trace_keeping_order_and_lengths_and_cuts_at_the_duration() {
        let (trace, _) = Trace::open("mooncake-synthetic", &ReadOptions::default()).unwrap();
        let replay = Replay::new(trace);
        let mut settings = EvalSettings {
            policies: Vec::new(),
            setup: SimSetup::builtin("a100-40gb", "llama-3.1-8b").unwrap(),
            dataset: LengthDataset::sharegpt_like(),
            arrival_rate_rps: 1.0,
            duration_s: 60.0,
            workload: WorkloadSource::Replay { replay: replay.clone(), draw_lengths: false },
            runs: 1,
            seed: 1000,
            load: None,
            perf_model: None,
        };
        let plain = settings.requests(0).unwrap();
        let profile = LoadProfile::Diurnal { lo: 0.2, hi: 0.9, period_s: 100.0 };
        settings.load = Some(Load { profile, capacity_rps: 10.0 });
        let warped = settings.requests(0).unwrap();
        assert_eq!(warped.len(), plain.len(), "without a window every request is kept");
        for (w, p) in warped.iter().zip(&plain) {
            assert_eq!((w.id, w.input_tokens, w.output_tokens), (p.id, p.input_tokens, p.output_tokens));
        }
        assert!(warped.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        // The profile's cumulative intensity at the last arrival counts every request (the trace's
        // own bursts move arrivals locally, not in total); a period holds about 10 × 0.55 × 100.
        let last = warped.last().unwrap().arrival.as_secs_f64();
        let expected = profile.expected_arrivals(10.0, last);
        assert!((expected - (warped.len() - 1) as f64).abs() < 2.0, "{expected} vs {}", warped.len());
        let in_period = warped.iter().filter(|r| r.arrival.as_secs_f64() < 100.0).count();
        assert!((in_period as f64 - 550.0).abs() < 0.15 * 550.0, "{in_period}");
        settings.workload =
            WorkloadSource::Replay { replay: Replay { window_s: Some(60.0), ..replay }, draw_lengths: false };
        let cut = settings.requests(0).unwrap();
        assert!(cut.iter().all(|r| r.arrival.as_secs_f64() < 60.0) && cut.len() < warped.len());
        assert_eq!(settings.arrivals_end_s().unwrap(), 60.0);
    }

    #[test]
    fn a_trace_too_short_for_the_window_is_repeated_end_to_end() {
        let (trace, _) = Trace::open("mooncake-synthetic", &ReadOptions::default()).unwrap();
        let once = trace.entries.len();
        let replay = Replay { window_s: Some(120.0), ..Replay::new(trace) };
        let settings = EvalSettings {
            policies: Vec::new(),
            setup: SimSetup::builtin("a100-40gb", "llama-3.1-8b").unwrap(),
            dataset: LengthDataset::sharegpt_like(),
            arrival_rate_rps: 1.0,
            duration_s: 60.0,
            workload: WorkloadSource::Replay { replay, draw_lengths: false },
            runs: 1,
            seed: 1000,
            load: Some(Load { profile: LoadProfile::Constant { load: 1.0 }, capacity_rps: 100.0 }),
            perf_model: None,
        };
        let r = settings.requests(0).unwrap();
        // 100 req/s over 120 s needs about 12 000 arrivals: more than one pass of the trace.
        assert!(r.len() > once, "{} of {once}", r.len());
        assert!((r.len() as f64 - 12_000.0).abs() < 600.0, "{}", r.len());
        assert!(r.last().unwrap().arrival.as_secs_f64() > 119.0);
        assert!(r.windows(2).all(|w| w[0].arrival <= w[1].arrival && w[1].id.0 == w[0].id.0 + 1));
    }
}

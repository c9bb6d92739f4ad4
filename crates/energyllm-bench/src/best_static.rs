//! `best-static`: the fixed clock × batch cap an operator could have set by hand, found in
//! hindsight on the very workload of the table.
//!
//! Every action of the deployment's action space is run as a fixed setting on the same seeded
//! workloads as the methods; among those whose pooled SLO attainment reaches the target, the one
//! with the least busy energy per completed request wins. It is a reference, not a policy: it
//! needs the workload in advance. A controller earns its keep only where it beats it.
//!
//! **Pruning.** Each batch cap is tried from the top clock down, and a cap whose top clock misses
//! the target is dropped without trying its lower clocks; within a cap the walk down stops at the
//! first clock that misses. Both rest on one assumption: at a fixed cap, a higher clock never
//! lowers SLO attainment. It holds in the simulator's model up to scheduling noise (a faster
//! iteration can only bring every event earlier); [`BestStaticConfig::exhaustive`] turns the
//! pruning off, and a test checks that both searches agree.

use energyllm_core::registry::PluginSpec;
use energyllm_core::{Action, Request};

use energyllm_sim::simulation::{simulate, RunResult};

use crate::eval::{EvalSettings, MethodResult};
use crate::Error;

/// The method name that selects the best fixed setting instead of a policy plugin.
pub const BEST_STATIC: &str = "best-static";

/// Settings of the search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BestStaticConfig {
    /// SLO attainment the setting must reach, in percent (default 99).
    pub target_pct: f64,
    /// Try every action instead of pruning (see the module docs). Default false.
    pub exhaustive: bool,
}

impl Default for BestStaticConfig {
    fn default() -> Self {
        BestStaticConfig { target_pct: 99.0, exhaustive: false }
    }
}

impl BestStaticConfig {
    /// Reads `best-static[:target_pct=99,exhaustive=true]`; unknown or bad parameters are refused
    /// by name.
    pub fn from_spec(spec: &PluginSpec) -> Result<Self, Error> {
        let mut config = BestStaticConfig::default();
        let table = spec.config.as_object().cloned().unwrap_or_default();
        for (key, value) in table {
            match key.as_str() {
                "target_pct" => {
                    config.target_pct =
                        value.as_f64().filter(|v| *v > 0.0 && *v <= 100.0).ok_or_else(|| {
                            Error::Setting(format!(
                                "best-static: `target_pct` must be in (0, 100], got {value}"
                            ))
                        })?
                }
                "exhaustive" => {
                    config.exhaustive = value.as_bool().ok_or_else(|| {
                        Error::Setting(format!(
                            "best-static: `exhaustive` must be true or false, got {value}"
                        ))
                    })?
                }
                _ => {
                    return Err(Error::Setting(format!(
                        "best-static takes target_pct and exhaustive; unknown parameter `{key}`"
                    )))
                }
            }
        }
        Ok(config)
    }
}

/// One fixed setting's pooled figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The setting.
    pub action: Action,
    /// Pooled SLO attainment over every run, in percent.
    pub slo_attainment_pct: f64,
    /// Busy energy per completed request, in joules.
    pub energy_per_request_j: f64,
}

/// What the search found.
#[derive(Clone, Debug)]
pub struct BestStatic {
    /// The config it ran with.
    pub config: BestStaticConfig,
    /// Every setting tried, cap by cap, each from the top clock down.
    pub tried: Vec<Candidate>,
    /// The winner with its full results, or `None` when no setting reaches the target.
    pub best: Option<(Candidate, MethodResult)>,
}

/// The row label: the name, the setting found and the target.
fn label(config: &BestStaticConfig, best: Option<&Candidate>) -> String {
    match best {
        Some(c) => {
            format!("best-static ({} MHz, cap {}; ≥ {}%)", c.action.freq.0, c.action.batch, config.target_pct)
        }
        None => format!("best-static (no fixed setting reaches {}%)", config.target_pct),
    }
}

impl BestStatic {
    /// The row label: the name, the setting found and the target.
    pub fn label(&self) -> String {
        label(&self.config, self.best.as_ref().map(|b| &b.0))
    }
}

/// Runs `action` as a fixed policy on every workload: its pooled figures and its runs.
fn run_fixed(
    settings: &EvalSettings,
    workloads: &[Vec<Request>],
    arrivals_end_s: f64,
    action: Action,
) -> Result<(Candidate, Vec<RunResult>), Error> {
    let spec = PluginSpec::parse(&format!("fixed:freq={},batch={}", action.freq.0, action.batch))?;
    let mut details = Vec::with_capacity(workloads.len());
    for (i, requests) in workloads.iter().enumerate() {
        let policy = settings.build_policy(&spec, settings.run_seed(i as u32))?;
        details.push(simulate(&settings.setup, policy, requests, arrivals_end_s)?);
    }
    let pooled = MethodResult::from_runs(BEST_STATIC, &settings.setup.controller.slo, details);
    let s = &pooled.summary;
    let candidate = Candidate {
        action,
        slo_attainment_pct: s.slo_attainment_pct,
        energy_per_request_j: s.energy_per_request_j,
    };
    Ok((candidate, pooled.details))
}

/// Whether `c` reaches the target and beats `than` (less energy; ties to the higher clock, then
/// the larger cap, so the choice never depends on search order).
fn better(c: &Candidate, than: Option<&Candidate>, target_pct: f64) -> bool {
    c.slo_attainment_pct >= target_pct
        && c.energy_per_request_j.is_finite()
        && than.is_none_or(|t| {
            c.energy_per_request_j
                .total_cmp(&t.energy_per_request_j)
                .then(t.action.freq.cmp(&c.action.freq))
                .then(t.action.batch.cmp(&c.action.batch))
                .is_lt()
        })
}

/// What one cap's search tried, and its cheapest setting that reached the target with its runs.
type CapSearch = (Vec<Candidate>, Option<(Candidate, Vec<RunResult>)>);

/// Searches the action space of `settings` for the best fixed setting on `workloads` (one
/// request list per run, as the methods see them). Caps are searched on `threads` worker
/// threads; the result does not depend on how many.
pub fn best_static(
    settings: &EvalSettings,
    workloads: &[Vec<Request>],
    arrivals_end_s: f64,
    config: BestStaticConfig,
    threads: usize,
) -> Result<BestStatic, Error> {
    let space = &settings.setup.controller.action_space;
    let caps = space.batches();
    let search_cap = |batch: u32| -> Result<CapSearch, Error> {
        let mut tried = Vec::new();
        let mut best: Option<(Candidate, Vec<RunResult>)> = None;
        for &freq in space.freqs().iter().rev() {
            let (c, runs) = run_fixed(settings, workloads, arrivals_end_s, Action { freq, batch })?;
            tried.push(c);
            if better(&c, best.as_ref().map(|b| &b.0), config.target_pct) {
                best = Some((c, runs));
            }
            if !config.exhaustive && c.slo_attainment_pct < config.target_pct {
                break;
            }
        }
        Ok((tried, best))
    };
    let per_cap = crate::parallel::parallel_map(caps.len(), threads, |k| search_cap(caps[k]));
    let mut out = BestStatic { config, tried: Vec::new(), best: None };
    let mut best: Option<(Candidate, Vec<RunResult>)> = None;
    for result in per_cap {
        let (tried, cap_best) =
            result.ok_or_else(|| Error::Setting("best-static: a search worker stopped early".into()))??;
        out.tried.extend(tried);
        if let Some((c, runs)) = cap_best {
            if better(&c, best.as_ref().map(|b| &b.0), config.target_pct) {
                best = Some((c, runs));
            }
        }
    }
    out.best = best.map(|(c, runs)| {
        let label = label(&config, Some(&c));
        (c, MethodResult::from_runs(&label, &settings.setup.controller.slo, runs))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use energyllm_core::{ActionSpace, Mhz, Slo};
    use energyllm_sim::SimSetup;
    use energyllm_workload::LengthDataset;

    use super::*;
    use crate::eval::WorkloadSource;

    fn tiny() -> EvalSettings {
        energyllm_policy::link();
        let mut setup = SimSetup::builtin("a100-40gb", "llama-3.1-8b").unwrap();
        setup.controller.action_space =
            ActionSpace::new(vec![Mhz(705), Mhz(1050), Mhz(1410)], vec![1, 4, 16]).unwrap();
        setup.controller.slo = Slo { e2e_s: None, ttft_s: Some(1.0), tpot_s: Some(0.05) };
        EvalSettings {
            policies: Vec::new(),
            setup,
            dataset: LengthDataset::sharegpt_like(),
            arrival_rate_rps: 1.5,
            duration_s: 40.0,
            workload: WorkloadSource::default(),
            runs: 2,
            seed: 7,
            load: None,
            perf_model: None,
        }
    }

    #[test]
    fn the_pruned_search_equals_brute_force_over_fixed_policies() {
        let settings = tiny();
        let workloads: Vec<_> = (0..settings.runs).map(|i| settings.requests(i).unwrap()).collect();
        let end = settings.arrivals_end_s().unwrap();
        // Brute force: every fixed policy through the ordinary evaluation, pooled as tables are.
        let space = settings.setup.controller.action_space.clone();
        let mut all = settings.clone();
        all.policies = space
            .freqs()
            .iter()
            .flat_map(|f| space.batches().iter().map(move |b| (f.0, *b)))
            .map(|(f, b)| PluginSpec::parse(&format!("fixed:freq={f},batch={b}")).unwrap())
            .collect();
        let evaluated = crate::eval::evaluate(&all, |_| {}).unwrap();
        let mut found = 0;
        for target in [50.0, 90.0, 99.0] {
            let mut brute = None::<Candidate>;
            for (spec, m) in all.policies.iter().zip(&evaluated) {
                let f = spec.config["freq"].as_u64().unwrap() as u32;
                let b = spec.config["batch"].as_u64().unwrap() as u32;
                let c = Candidate {
                    action: Action { freq: Mhz(f), batch: b },
                    slo_attainment_pct: m.summary.slo_attainment_pct,
                    energy_per_request_j: m.summary.energy_per_request_j,
                };
                if better(&c, brute.as_ref(), target) {
                    brute = Some(c);
                }
            }
            found += usize::from(brute.is_some());
            let config = BestStaticConfig { target_pct: target, exhaustive: false };
            let pruned = best_static(&settings, &workloads, end, config, 2).unwrap();
            assert_eq!(pruned.best.as_ref().map(|b| b.0), brute, "target {target}");
            let exhaustive =
                best_static(&settings, &workloads, end, BestStaticConfig { exhaustive: true, ..config }, 1)
                    .unwrap();
            assert_eq!(exhaustive.tried.len(), space.len(), "the exhaustive search tries every setting");
            assert_eq!(exhaustive.best.as_ref().map(|b| b.0), brute, "exhaustive, target {target}");
            let one_thread = best_static(&settings, &workloads, end, config, 1).unwrap();
            assert_eq!(one_thread.best.map(|b| b.0), pruned.best.map(|b| b.0), "threads change nothing");
        }
        assert!(found >= 2, "the tiny workload must leave a choice at most targets");
    }
}

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

use std::sync::Mutex;

use energyllm_core::registry::PluginSpec;
use energyllm_core::{Action, Request, RequestRecord, RunSummary, RunTotals};

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
    /// Every setting tried, in the order tried.
    pub tried: Vec<Candidate>,
    /// The winner with its full results, or `None` when no setting reaches the target.
    pub best: Option<(Candidate, MethodResult)>,
}

impl BestStatic {
    /// The row label: the name, the target and the setting found.
    pub fn label(&self) -> String {
        match &self.best {
            Some((c, _)) => format!(
                "best-static ({} MHz, cap {}; ≥ {}%)",
                c.action.freq.0, c.action.batch, self.config.target_pct
            ),
            None => format!("best-static (no fixed setting reaches {}%)", self.config.target_pct),
        }
    }
}

fn run_fixed(
    settings: &EvalSettings,
    workloads: &[Vec<Request>],
    arrivals_end_s: f64,
    action: Action,
) -> Result<(Candidate, Vec<RunResult>), Error> {
    let spec = PluginSpec::parse(&format!("fixed:freq={},batch={}", action.freq.0, action.batch))?;
    let slo = settings.setup.controller.slo;
    let mut details = Vec::with_capacity(workloads.len());
    for (i, requests) in workloads.iter().enumerate() {
        let policy = settings.build_policy(&spec, settings.run_seed(i as u32))?;
        details.push(simulate(&settings.setup, policy, requests, arrivals_end_s)?);
    }
    let mut totals = RunTotals::default();
    details.iter().for_each(|d| totals.add(&d.totals));
    let pooled: Vec<RequestRecord> = details.iter().flat_map(|d| d.records.iter().cloned()).collect();
    let s = RunSummary::compute(BEST_STATIC, &slo, &pooled, &totals, workloads.len() as u32);
    let candidate = Candidate {
        action,
        slo_attainment_pct: s.slo_attainment_pct,
        energy_per_request_j: s.energy_per_request_j,
    };
    Ok((candidate, details))
}

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
    let caps: Vec<u32> = space.batches().to_vec();
    let next = Mutex::new(0usize);
    type Found = Vec<(usize, Result<Vec<Candidate>, Error>)>;
    let found: Mutex<Found> = Mutex::new(Vec::new());
    let search_cap = |batch: u32| -> Result<Vec<Candidate>, Error> {
        let mut tried = Vec::new();
        for &freq in space.freqs().iter().rev() {
            let (c, _) = run_fixed(settings, workloads, arrivals_end_s, Action { freq, batch })?;
            tried.push(c);
            if !config.exhaustive && c.slo_attainment_pct < config.target_pct {
                break;
            }
        }
        Ok(tried)
    };
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, caps.len()) {
            scope.spawn(|| loop {
                let k = {
                    let Ok(mut n) = next.lock() else { return };
                    let k = *n;
                    *n += 1;
                    k
                };
                let Some(&batch) = caps.get(k) else { return };
                let result = search_cap(batch);
                if let Ok(mut f) = found.lock() {
                    f.push((k, result));
                }
            });
        }
    });
    let mut found =
        found.into_inner().map_err(|_| Error::Setting("best-static: a worker panicked".into()))?;
    found.sort_by_key(|(k, _)| *k);
    let mut tried = Vec::new();
    for (_, r) in found {
        tried.extend(r?);
    }
    let winner = tried
        .iter()
        .filter(|c| c.slo_attainment_pct >= config.target_pct && c.energy_per_request_j.is_finite())
        .min_by(|a, b| {
            a.energy_per_request_j
                .total_cmp(&b.energy_per_request_j)
                .then(b.action.freq.cmp(&a.action.freq))
                .then(b.action.batch.cmp(&a.action.batch))
        })
        .copied();
    let mut out = BestStatic { config, tried, best: None };
    if let Some(c) = winner {
        let (_, details) = run_fixed(settings, workloads, arrivals_end_s, c.action)?;
        let label = out.label_for(c);
        out.best = Some((c, MethodResult::from_runs(&label, &settings.setup.controller.slo, details)));
    }
    Ok(out)
}

impl BestStatic {
    fn label_for(&self, c: Candidate) -> String {
        format!(
            "best-static ({} MHz, cap {}; ≥ {}%)",
            c.action.freq.0, c.action.batch, self.config.target_pct
        )
    }
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
        }
    }

    #[test]
    fn the_pruned_search_equals_brute_force_over_fixed_policies() {
        let settings = tiny();
        let workloads: Vec<_> = (0..settings.runs).map(|i| settings.requests(i).unwrap()).collect();
        let end = settings.arrivals_end_s().unwrap();
        for target in [50.0, 90.0, 99.0] {
            let pruned = best_static(
                &settings,
                &workloads,
                end,
                BestStaticConfig { target_pct: target, exhaustive: false },
                2,
            )
            .unwrap();
            // Brute force: every fixed policy through the ordinary evaluation.
            let mut brute = None::<Candidate>;
            for &f in settings.setup.controller.action_space.freqs() {
                for &b in settings.setup.controller.action_space.batches() {
                    let (c, _) = run_fixed(&settings, &workloads, end, Action { freq: f, batch: b }).unwrap();
                    let better = brute.is_none_or(|x| {
                        c.energy_per_request_j < x.energy_per_request_j
                            || (c.energy_per_request_j == x.energy_per_request_j
                                && (c.action.freq, c.action.batch) > (x.action.freq, x.action.batch))
                    });
                    if c.slo_attainment_pct >= target && better {
                        brute = Some(c);
                    }
                }
            }
            assert_eq!(pruned.best.as_ref().map(|b| b.0), brute, "target {target}");
            let one_thread = best_static(
                &settings,
                &workloads,
                end,
                BestStaticConfig { target_pct: target, exhaustive: false },
                1,
            )
            .unwrap();
            assert_eq!(one_thread.best.map(|b| b.0), pruned.best.map(|b| b.0), "threads change nothing");
        }
    }
}

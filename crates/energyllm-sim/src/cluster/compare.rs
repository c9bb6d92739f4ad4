//! Routers compared on identical seeded workloads, and the comparison as a table.

use energyllm_core::Slo;

use super::{simulate_cluster, ClusterRun, ClusterSetup, InstanceRun};
use crate::Error;
use energyllm_workload::{sample_requests, ArrivalPattern, LengthDataset};

/// Results of one router over several runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterResult {
    /// Router name.
    pub router: String,
    /// One per run.
    pub runs: Vec<ClusterRun>,
}

/// Runs each router in `routers` on `runs` seeded workloads (run `i` uses `seed + i` for the
/// requests and the policies, the same for every router).
#[allow(clippy::too_many_arguments)]
pub fn compare_routers(
    cluster: &ClusterSetup,
    routers: &[&str],
    dataset: &LengthDataset,
    pattern: &ArrivalPattern,
    rate_rps: f64,
    duration_s: f64,
    runs: u32,
    seed: u64,
) -> Result<Vec<RouterResult>, Error> {
    let workloads = (0..runs)
        .map(|i| {
            let s = seed.wrapping_add(u64::from(i));
            sample_requests(dataset, pattern, rate_rps, duration_s, s).map(|r| (s, r))
        })
        .collect::<Result<Vec<_>, _>>()?;
    routers
        .iter()
        .map(|name| {
            let runs = workloads
                .iter()
                .map(|(s, reqs)| {
                    let mut router = crate::router::router_by_name(name).ok_or_else(|| {
                        Error::Setting(format!(
                            "unknown router `{name}`; known: {}",
                            crate::router::ROUTERS.join(", ")
                        ))
                    })?;
                    simulate_cluster(cluster, router.as_mut(), reqs, duration_s, *s)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RouterResult { router: (*name).to_owned(), runs })
        })
        .collect()
}

/// A name in a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The comparison as a Markdown table (means over runs); when an instance has alternative
/// setups, a second table gives each instance's time on in each setup.
pub fn router_table(results: &[RouterResult], slo: &Slo) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "| router | energy (kJ) | J/request | SLO attainment (%) | p90 e2e (s) | requests per instance | gated (s) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let n_inst = |r: &RouterResult| r.runs.first().map_or(0, |x| x.instances.len());
    for r in results {
        let n = r.runs.len().max(1) as f64;
        let mean = |f: &dyn Fn(&ClusterRun) -> f64| r.runs.iter().map(f).sum::<f64>() / n;
        let per_inst: Vec<String> = (0..n_inst(r))
            .map(|k| format!("{:.0}", mean(&|run: &ClusterRun| run.instances[k].requests as f64)))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {:.0} |",
            r.router,
            mean(&|run| run.energy_j()) / 1e3,
            mean(&ClusterRun::energy_per_request_j),
            mean(&|run| run.slo_attainment_pct(slo)),
            mean(&ClusterRun::p90_e2e_s),
            per_inst.join(" / "),
            mean(&|run| run.instances.iter().map(|i| i.gated_s).sum::<f64>()),
        );
    }
    let alternatives =
        results.iter().flat_map(|r| &r.runs).flat_map(|run| &run.instances).any(|i| i.variant_s.len() > 1);
    if alternatives {
        out.push_str("\n| router | instance | time on per setup (s) | gated (s) |\n|---|---|---|---|\n");
        for r in results {
            let n = r.runs.len().max(1) as f64;
            for k in 0..n_inst(r) {
                let mean = |f: &dyn Fn(&InstanceRun) -> f64| {
                    r.runs.iter().map(|x| f(&x.instances[k])).sum::<f64>() / n
                };
                let first = &r.runs[0].instances[k];
                let setups: Vec<String> = first
                    .variant_s
                    .iter()
                    .enumerate()
                    .map(|(v, (name, _))| format!("{} {:.0}", cell(name), mean(&|i| i.variant_s[v].1)))
                    .collect();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.0} |",
                    r.router,
                    cell(&first.name),
                    setups.join(", "),
                    mean(&|i| i.gated_s)
                );
            }
        }
    }
    out
}

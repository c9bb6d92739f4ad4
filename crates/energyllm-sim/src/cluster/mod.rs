//! The multi-instance driver: N simulated instances (engine, GPU group, controller with its own
//! policy) and one router in one discrete-event loop.
//!
//! Each instance is stepped exactly as the single-instance driver ([`crate::simulation`]) steps its
//! one: engine events first, then arrivals (each sent where the router says), then the
//! controller's timer with telemetry, then commands until the engine is quiet. The single
//! driver is left untouched; this loop is its N-wide sibling.
//!
//! **Sizing** (throttLL'eM / DynamoLLM): every `window_s` the driver projects the arrival rate
//! (the last window's arrivals, never the future) and keeps on the fewest instances, cheapest
//! first, whose estimated capacity covers it with headroom. An instance switched off takes no
//! new requests; once it has drained it is power-gated, and its idle draw over the gated time is
//! replaced by `gated_power_w`.
//!
//! **Wake-up.** A gated instance switched back on (by sizing, or because a router named it) is
//! active at once but serves only after `wake_s`: requests routed to it meanwhile wait in the
//! instance's pending list and reach its controller when it is ready, with their arrival time
//! kept, so their latency includes the wait. Routers see the wait
//! ([`InstanceView::ready_in_s`](crate::router::InstanceView)) and queued requests include the pending
//! ones. A waking instance draws idle power: it is no longer gated.
//!
//! **Tensor-parallel choice** (throttLL'eM / DynamoLLM size TP per window). An instance may list
//! alternative setups on the same GPU type, e.g. Llama-2-70B at TP8 and at TP4, and owns a pool
//! of as many GPUs as the largest needs. Each window, every instance sizing keeps on gets the
//! setup with the least predicted joules per request whose capacity covers the need the
//! instances before it leave, else the one with the most capacity. A switch waits until the
//! instance has drained — meanwhile it takes new requests only when no other instance can — and
//! then rebuilds the instance (engine, GPU group, controller, and the policy from its spec and
//! seed), which serves after `wake_s` (the weights are re-sharded). A lone instance therefore
//! switches only in a lull: holding requests until it drains instead pauses it for its longest
//! running request, which with ShareGPT-like lengths costs more SLO than the switch gains. At
//! time zero, with no arrivals seen, an instance keeps its first setup (list the largest first
//! to start safe). Energy stays exact: each GPU group counts only from its start, retired groups
//! keep theirs, and pool GPUs the current setup leaves unused draw `gated_power_w`.

mod compare;
mod instance;

pub use compare::{compare_routers, router_table, RouterResult};
use instance::Instance;

use serde::Serialize;

use energyllm_core::registry::PluginSpec;
use energyllm_core::summary::percentile;
use energyllm_core::{duration_from_secs, Request, RequestRecord, RequestStatus, Slo, Timestamp};

use crate::router::{InstanceView, RouteQuery, Router};
use crate::simulation::SimSetup;
use crate::Error;

/// One instance of a cluster.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    /// Name in tables.
    pub name: String,
    /// GPU, model (its tensor-parallel degree sets the GPU count), engine and controller; the
    /// setup the instance starts in.
    pub setup: SimSetup,
    /// The instance's clock × batch policy.
    pub policy: PluginSpec,
    /// Other setups on the same GPU type that sizing may switch the instance to each window
    /// (e.g. the same model at another tensor-parallel degree); empty for a fixed instance.
    pub alternatives: Vec<SimSetup>,
}

impl InstanceSpec {
    /// An instance with one setup.
    pub fn new(name: impl Into<String>, setup: SimSetup, policy: PluginSpec) -> Self {
        InstanceSpec { name: name.into(), setup, policy, alternatives: Vec::new() }
    }
}

/// Instance sizing and power gating.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sizing {
    /// Seconds between sizing decisions. Default: 10.
    pub window_s: f64,
    /// Capacity kept on per unit of projected load. Default: 1.5.
    pub headroom: f64,
    /// Board power of a gated instance, per GPU, in watts. Default: 0 (switched off).
    pub gated_power_w: f64,
    /// Seconds a gated instance needs before it serves again, and a rebuilt one after a switch
    /// of setup. Default: 5. Gating models a deep-idle GPU whose weights stay in host memory,
    /// not a cold start: reloading them over PCIe 4 (about 25 GB/s) takes about a second, for
    /// the 16 GB of an 8B model as for a 70B model's 35-GB share of a TP4 group, and the
    /// engine's warm-up (KV allocation, CUDA-graph capture) a few seconds more. A cold start
    /// from disk takes tens of seconds: raise it to model that.
    pub wake_s: f64,
}

impl Default for Sizing {
    fn default() -> Self {
        Sizing { window_s: 10.0, headroom: 1.5, gated_power_w: 0.0, wake_s: 5.0 }
    }
}

/// A cluster: its instances, their shared SLO, and optional sizing.
#[derive(Clone, Debug)]
pub struct ClusterSetup {
    /// The instances, at least one.
    pub instances: Vec<InstanceSpec>,
    /// Instance sizing; `None` keeps every instance on.
    pub sizing: Option<Sizing>,
}

/// One instance's share of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceRun {
    /// Instance name.
    pub name: String,
    /// Requests routed to it.
    pub requests: u64,
    /// Its GPU energy (gating and unused pool GPUs applied), in joules.
    pub energy_j: f64,
    /// Time it spent power-gated, in seconds.
    pub gated_s: f64,
    /// Time on (not gated) in each of its setups, by model name, in the order listed, in
    /// seconds; with `gated_s` they sum to the run's elapsed time.
    pub variant_s: Vec<(String, f64)>,
}

/// What one cluster run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterRun {
    /// Router name.
    pub router: String,
    /// Every request's record.
    pub records: Vec<RequestRecord>,
    /// Per instance.
    pub instances: Vec<InstanceRun>,
    /// Simulated time to the last completion or the end of the arrival window, in seconds.
    pub elapsed_s: f64,
}

/// A run's figures without its records: what `energyllm cluster --out` writes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterRunReport {
    /// Run index (its workload used seed + run).
    pub run: usize,
    /// Requests in the run.
    pub requests: usize,
    /// Cluster GPU energy, in joules.
    pub energy_j: f64,
    /// Cluster energy per request, in joules.
    pub energy_per_request_j: f64,
    /// Share of requests within the SLO, in percent.
    pub slo_attainment_pct: f64,
    /// 90th percentile of end-to-end latency, in seconds.
    pub p90_e2e_s: f64,
    /// Simulated time, in seconds.
    pub elapsed_s: f64,
    /// Per instance.
    pub instances: Vec<InstanceRun>,
}

impl ClusterRun {
    /// GPU energy of the whole cluster, in joules.
    pub fn energy_j(&self) -> f64 {
        self.instances.iter().map(|i| i.energy_j).sum()
    }
    /// Cluster energy per request, in joules.
    pub fn energy_per_request_j(&self) -> f64 {
        self.energy_j() / self.records.len().max(1) as f64
    }
    /// Share of requests that completed within `slo`, in percent.
    pub fn slo_attainment_pct(&self, slo: &Slo) -> f64 {
        let met = self.records.iter().filter(|r| r.meets(slo)).count();
        100.0 * met as f64 / self.records.len().max(1) as f64
    }
    /// 90th percentile of end-to-end latency of completed requests, in seconds.
    pub fn p90_e2e_s(&self) -> f64 {
        let mut l: Vec<f64> = self
            .records
            .iter()
            .filter(|r| r.status == RequestStatus::Completed)
            .map(RequestRecord::e2e_latency_s)
            .collect();
        l.sort_by(f64::total_cmp);
        if l.is_empty() {
            0.0
        } else {
            percentile(&l, 90.0)
        }
    }
    /// The run's figures, as run number `run`, against `slo`.
    pub fn report(&self, run: usize, slo: &Slo) -> ClusterRunReport {
        ClusterRunReport {
            run,
            requests: self.records.len(),
            energy_j: self.energy_j(),
            energy_per_request_j: self.energy_per_request_j(),
            slo_attainment_pct: self.slo_attainment_pct(slo),
            p90_e2e_s: self.p90_e2e_s(),
            elapsed_s: self.elapsed_s,
            instances: self.instances.clone(),
        }
    }
}

/// The output length a router assumes before any request has completed.
pub const PRIOR_OUTPUT_TOKENS: f64 = 256.0;
/// The prompt length sizing assumes before any request has arrived.
pub const PRIOR_INPUT_TOKENS: f64 = 256.0;

/// Runs `requests` (sorted by arrival) through the cluster with `router`, until every request
/// has ended and the arrival window has passed. `seed` seeds the instances' policies.
pub fn simulate_cluster(
    cluster: &ClusterSetup,
    router: &mut dyn Router,
    requests: &[Request],
    arrivals_end_s: f64,
    seed: u64,
) -> Result<ClusterRun, Error> {
    if cluster.instances.is_empty() {
        return Err(Error::Setting("a cluster needs at least one instance".into()));
    }
    let mut inst = cluster
        .instances
        .iter()
        .enumerate()
        .map(|(i, spec)| Instance::new(spec, cluster.sizing.as_ref(), seed.wrapping_add(i as u64)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut records = Vec::with_capacity(requests.len());
    let mut out_sum = (0.0, 0u64);
    let mut in_sum = (0.0, 0u64);
    let mut now = Timestamp::ZERO;
    let mut next = 0;
    let mut next_window = Timestamp::ZERO;
    let mut window_arrivals = 0u64;
    let step_limit = 200 * requests.len() as u64 * 1024 + 1_000_000;
    let mut steps = 0u64;
    while next < requests.len() || !inst.iter().all(Instance::is_idle) {
        steps += 1;
        if steps > step_limit {
            return Err(Error::Runaway { steps, sim_time_s: now.as_secs_f64() });
        }
        let t_arrival = requests.get(next).map(|r| r.arrival);
        let t_inst = inst.iter().flat_map(|i| {
            [
                i.deployment.engine.next_event_time(&i.deployment.gpu),
                i.deployment.ctrl.poll_timeout(),
                i.pending_due(),
            ]
        });
        let t_window = cluster.sizing.map(|_| next_window);
        let t = t_inst.chain([t_arrival, t_window]).flatten().min().unwrap_or(now);
        now = now.max(t);

        for i in inst.iter_mut() {
            i.advance_engine(now, &mut records, &mut out_sum);
        }
        if let Some(sizing) = cluster.sizing {
            if now >= next_window {
                let est_in = if in_sum.1 > 0 { in_sum.0 / in_sum.1 as f64 } else { PRIOR_INPUT_TOKENS };
                let est_out = if out_sum.1 > 0 { out_sum.0 / out_sum.1 as f64 } else { PRIOR_OUTPUT_TOKENS };
                resize(&mut inst, &sizing, window_arrivals, now, est_in, est_out)?;
                window_arrivals = 0;
                next_window = now + duration_from_secs(sizing.window_s.max(1e-3));
            }
        }
        // Requests that waited for a wake-up go first: they arrived earlier.
        for i in inst.iter_mut() {
            i.deliver(now);
        }
        while next < requests.len() && requests[next].arrival <= now {
            let r = &requests[next];
            let est = if out_sum.1 > 0 { out_sum.0 / out_sum.1 as f64 } else { PRIOR_OUTPUT_TOKENS };
            let query = RouteQuery { input_tokens: r.input_tokens, est_output_tokens: est };
            let any_free = inst.iter().any(|i| i.active && i.want.is_none());
            let views: Vec<InstanceView<'_>> = inst.iter().map(|i| i.view(now, any_free)).collect();
            let pick = router.route(&query, &views).min(inst.len() - 1);
            // A router that names a switched-off instance switches it back on (waking it when
            // gated): serving the request matters more than the sizing decision.
            let target = &mut inst[pick];
            target.switch_on(now);
            target.take(now, r.clone());
            in_sum.0 += f64::from(r.input_tokens);
            in_sum.1 += 1;
            window_arrivals += 1;
            next += 1;
        }
        for i in inst.iter_mut() {
            if i.deployment.ctrl.poll_timeout().is_some_and(|t| t <= now) {
                i.deployment.tick(now);
            }
            i.flush(now, &mut records, &mut out_sum)?;
            i.switch_when_drained(now)?;
            i.update_gate(now);
        }
    }
    let end = now.max(Timestamp::from_secs_f64(arrivals_end_s));
    let instances = inst.iter_mut().map(|i| i.finish(end)).collect();
    Ok(ClusterRun { router: router.name().to_owned(), records, instances, elapsed_s: end.as_secs_f64() })
}

/// The setup for an instance that must cover `remaining_rps`: the least joules per request among
/// those whose capacity covers it, else the most capacity. `caps` holds (requests per second,
/// joules per request) per setup.
fn choose_setup(caps: &[(f64, f64)], remaining_rps: f64) -> usize {
    let covering = caps
        .iter()
        .enumerate()
        .filter(|(_, c)| c.0 >= remaining_rps)
        .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1).then(a.0.cmp(&b.0)));
    let largest = || caps.iter().enumerate().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(b.0.cmp(&a.0)));
    covering.or_else(largest).map_or(0, |(k, _)| k)
}

/// Keeps on the cheapest instances whose capacity covers the projected rate with headroom, each
/// in the setup [`choose_setup`] picks for what the instances before it leave uncovered. Among
/// equally cheap instances (within 1%: identical ones) the next is the one that reaches that
/// setup soonest — already in it, then switched off in it, then idle, then busy — so identical
/// instances neither trade setups nor wake one while another stays on.
fn resize(
    inst: &mut [Instance],
    sizing: &Sizing,
    arrivals: u64,
    now: Timestamp,
    est_in: f64,
    est_out: f64,
) -> Result<(), Error> {
    let projected_rps = arrivals as f64 / sizing.window_s;
    // A backlog is load the last window's arrivals do not show: count it as arriving again.
    let backlog: usize = inst.iter().map(Instance::queued).sum();
    let need = (projected_rps + backlog as f64 / sizing.window_s) * sizing.headroom;
    let caps: Vec<Vec<(f64, f64)>> = inst
        .iter()
        .map(|i| (0..i.variants.len()).map(|k| i.capacity(k, est_in, est_out)).collect())
        .collect();
    let cheapest_j: Vec<f64> =
        caps.iter().map(|c| c.iter().map(|x| x.1).fold(f64::INFINITY, f64::min)).collect();
    let mut left: Vec<usize> = (0..inst.len()).collect();
    let mut have = 0.0;
    // The first instance always stays on so that a request always has somewhere to go.
    while !left.is_empty() && (left.len() == inst.len() || have < need) {
        let least_j = left.iter().map(|&i| cheapest_j[i]).fold(f64::INFINITY, f64::min);
        // At time zero no window of arrivals has been seen: an instance keeps its first setup
        // rather than shrinking on a projection of zero.
        let target = |i: usize| {
            if now > Timestamp::ZERO {
                choose_setup(&caps[i], need - have)
            } else {
                inst[i].current
            }
        };
        let Some((i, k)) = left
            .iter()
            .copied()
            .filter(|&i| cheapest_j[i] <= least_j * 1.01)
            .map(|i| (i, target(i)))
            .min_by_key(|&(i, k)| (inst[i].steps_to(k), i))
        else {
            break;
        };
        left.retain(|&j| j != i);
        inst[i].switch_on(now);
        // An instance still draining towards another setup serves at its current one.
        let counted = inst[i].choose(k, now)?;
        have += caps[i][counted].0;
    }
    for i in left {
        inst[i].switch_off(now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn at(secs: f64) -> Timestamp {
        Timestamp::from_secs_f64(secs)
    }

    #[test]
    fn energy_stays_exact_across_gating_and_a_switch_of_setup() {
        energyllm_policy::link();
        let setup = |model: &str| SimSetup::builtin("a100-80gb", model).unwrap();
        let policy = PluginSpec::parse("dvfs-only:preset=paper").unwrap();
        let mut spec = InstanceSpec::new("70b", setup("llama-2-70b-tp8"), policy);
        spec.alternatives.push(setup("llama-2-70b-tp4"));
        let gated_w = 30.0;
        let sizing = Sizing { gated_power_w: gated_w, wake_s: 5.0, ..Sizing::default() };
        let mut inst = Instance::new(&spec, Some(&sizing), 0).unwrap();
        let idle_w = spec.setup.gpu.idle_power_w;
        // On in TP8 for 10 s, gated for 10 s, then woken straight into TP4 for 10 s.
        inst.switch_off(at(10.0));
        inst.switch_on(at(20.0));
        assert_eq!(inst.choose(1, at(20.0)).unwrap(), 1);
        assert_eq!(inst.ready_at, at(25.0));
        assert_eq!(inst.view(at(21.0), true).ready_in_s, 4.0);
        let run = inst.finish(at(30.0));
        // Eight idle GPUs, then eight gated ones, then four idle and four gated.
        let expected_j = 8.0 * idle_w * 10.0 + 8.0 * gated_w * 10.0 + 4.0 * (idle_w + gated_w) * 10.0;
        assert!((run.energy_j - expected_j).abs() < 1e-6, "{} J vs {expected_j} J", run.energy_j);
        assert_eq!(run.gated_s, 10.0);
        let on_s: Vec<f64> = run.variant_s.iter().map(|(_, s)| *s).collect();
        assert_eq!(on_s, [10.0, 10.0]);
        assert!(run.variant_s[1].0.contains("TP4"));
    }

    #[test]
    fn setups_are_chosen_by_energy_among_those_that_cover_the_need() {
        let caps = [(2.0, 500.0), (1.0, 400.0)];
        assert_eq!(choose_setup(&caps, 0.5), 1);
        assert_eq!(choose_setup(&caps, 1.5), 0);
        assert_eq!(choose_setup(&caps, 5.0), 0);
    }
}

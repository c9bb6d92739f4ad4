//! The multi-instance driver: N simulated instances (engine, GPU group, controller with its own
//! policy) and one router in one discrete-event loop.
//!
//! Each instance is stepped exactly as the single-instance driver ([`crate::driver`]) steps its
//! one: engine events first, then arrivals (each sent where the router says), then the
//! controller's timer with telemetry, then commands until the engine is quiet. The single
//! driver is left untouched; this loop is its N-wide sibling.
//!
//! **Sizing** (throttLL'eM / DynamoLLM): every `window_s` the driver projects the arrival rate
//! (the last window's arrivals, never the future) and keeps on the fewest instances, cheapest
//! first, whose estimated capacity covers it with headroom. An instance switched off takes no
//! new requests; once it has drained it is power-gated, and its idle draw over the gated time is
//! replaced by `gated_power_w`.

use energyllm_core::registry::{find, PluginSpec, PolicyContext, PolicyPlugin};
use energyllm_core::summary::percentile;
use energyllm_core::{
    duration_from_secs, Event, PerfQuery, Request, RequestRecord, RequestStatus, Slo, Timestamp,
};

use super::{InstanceView, RouteQuery, Router};
use crate::driver::{Node, SimSetup};
use crate::workload::{sample_requests, ArrivalPattern, LengthDataset};
use crate::Error;

/// One instance of a cluster.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    /// Name in tables.
    pub name: String,
    /// GPU, model (its tensor-parallel degree sets the GPU count), engine and controller.
    pub setup: SimSetup,
    /// The instance's clock × batch policy.
    pub policy: PluginSpec,
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
}

impl Default for Sizing {
    fn default() -> Self {
        Sizing { window_s: 10.0, headroom: 1.5, gated_power_w: 0.0 }
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
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceRun {
    /// Instance name.
    pub name: String,
    /// Requests routed to it.
    pub requests: u64,
    /// Its GPU energy (gating applied), in joules.
    pub energy_j: f64,
    /// Time it spent power-gated, in seconds.
    pub gated_s: f64,
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
}

struct Instance {
    name: String,
    slo: Slo,
    perf: std::sync::Arc<dyn energyllm_core::PerfModel>,
    node: Node,
    routed: u64,
    batches: Vec<u32>,
    top_freq: energyllm_core::Mhz,
    active: bool,
    gated_since: Option<Timestamp>,
    gated_s: f64,
}

impl Instance {
    fn new(spec: &InstanceSpec, seed: u64) -> Result<Self, Error> {
        let setup = &spec.setup;
        let cfg = &setup.controller;
        let plugin = find::<PolicyPlugin>(&spec.policy.name)?;
        let mut ctx = PolicyContext::new(cfg.action_space.clone(), cfg.slo, seed);
        let perf = setup.perf_model();
        ctx.perf_model = Some(perf.clone());
        let policy = (plugin.build)(&spec.policy.config, &ctx)?;
        let slo = cfg.slo;
        let batches = cfg.action_space.batches().to_vec();
        let top_freq = cfg.action_space.max_freq();
        let node = Node::new(setup, Some(policy))?;
        Ok(Instance {
            name: spec.name.clone(),
            slo,
            perf,
            node,
            routed: 0,
            batches,
            top_freq,
            active: true,
            gated_since: None,
            gated_s: 0.0,
        })
    }

    /// Sizing's estimate at the top clock: requests per second at the largest batch (up to the
    /// controller's cap) that keeps a
    /// request of `est_input + est_output` tokens within half its SLO and within the KV cache,
    /// and the board joules per request there.
    fn capacity(&self, est_input: f64, est_output: f64) -> (f64, f64) {
        let ctx = (est_input + est_output / 2.0).max(1.0);
        let kv_batch =
            (self.node.engine.kv_capacity_tokens() as f64 / (est_input + est_output).max(1.0)).floor();
        let mut best = (0.0, f64::INFINITY);
        // The policy's batch cap bounds the batch whatever the engine could hold.
        let cap = self.node.ctrl.batch_cap();
        for &b in self.batches.iter().filter(|&&b| b <= cap) {
            let p = self.perf.predict(&PerfQuery {
                freq: self.top_freq,
                batch: b,
                prefill_tokens: 0,
                decode_tokens: b,
                kv_tokens: (f64::from(b) * ctx) as u64,
            });
            let life_s = est_output * p.latency_s;
            let fits = f64::from(b) <= kv_batch && life_s <= 0.5 * self.slo.e2e_s;
            if fits || best.0 == 0.0 {
                best = (f64::from(b) / life_s.max(1e-9), p.power_w * life_s / f64::from(b));
            }
        }
        best
    }

    fn is_idle(&self) -> bool {
        self.node.is_idle()
    }

    fn view(&self) -> InstanceView<'_> {
        InstanceView {
            name: &self.name,
            queue_len: self.node.ctrl.queue_len(),
            running: self.node.ctrl.running(),
            batch_cap: self.node.ctrl.batch_cap(),
            freq: self.node.ctrl.freq(),
            perf: self.perf.as_ref(),
            idle_power_w: self.node.gpu.idle_power_w(),
            slo: self.slo,
            active: self.active,
        }
    }

    /// Completes engine work due at `now`, recording what finished.
    fn advance_engine(&mut self, now: Timestamp, records: &mut Vec<RequestRecord>, out_sum: &mut (f64, u64)) {
        self.node.advance_engine(now, &mut |rec| record(rec, records, out_sum));
    }

    fn flush(
        &mut self,
        now: Timestamp,
        records: &mut Vec<RequestRecord>,
        out_sum: &mut (f64, u64),
    ) -> Result<(), Error> {
        self.node.flush(now, &mut |rec| record(rec, records, out_sum))
    }

    /// Starts or ends a gated interval: gated while switched off and drained.
    fn update_gate(&mut self, now: Timestamp) {
        let gated = !self.active && self.is_idle();
        match (gated, self.gated_since) {
            (true, None) => self.gated_since = Some(now),
            (false, Some(since)) => {
                self.gated_s += now.secs_since(since);
                self.gated_since = None;
            }
            _ => {}
        }
    }
}

/// Keeps a finished request's record and, for a completion, its output length (the routers'
/// estimate of output lengths is the mean of completed requests).
fn record(rec: RequestRecord, records: &mut Vec<RequestRecord>, out_sum: &mut (f64, u64)) {
    if rec.status == RequestStatus::Completed {
        out_sum.0 += f64::from(rec.output_tokens);
        out_sum.1 += 1;
    }
    records.push(rec);
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
        .map(|(i, spec)| Instance::new(spec, seed.wrapping_add(i as u64)))
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
        let t_inst = inst
            .iter()
            .flat_map(|i| [i.node.engine.next_event_time(&i.node.gpu), i.node.ctrl.poll_timeout()]);
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
                resize(&mut inst, &sizing, window_arrivals, now, est_in, est_out);
                window_arrivals = 0;
                next_window = now + duration_from_secs(sizing.window_s.max(1e-3));
            }
        }
        while next < requests.len() && requests[next].arrival <= now {
            let r = &requests[next];
            let est = if out_sum.1 > 0 { out_sum.0 / out_sum.1 as f64 } else { PRIOR_OUTPUT_TOKENS };
            let query = RouteQuery { input_tokens: r.input_tokens, est_output_tokens: est };
            let views: Vec<InstanceView<'_>> = inst.iter().map(Instance::view).collect();
            let pick = router.route(&query, &views).min(inst.len() - 1);
            // A router that names a switched-off instance switches it back on: serving the
            // request matters more than the sizing decision.
            let target = &mut inst[pick];
            target.active = true;
            target.update_gate(now);
            target.routed += 1;
            target.node.ctrl.handle(now, Event::Arrival(r.clone()));
            in_sum.0 += f64::from(r.input_tokens);
            in_sum.1 += 1;
            window_arrivals += 1;
            next += 1;
        }
        for i in inst.iter_mut() {
            if i.node.ctrl.poll_timeout().is_some_and(|t| t <= now) {
                i.node.tick(now);
            }
            i.flush(now, &mut records, &mut out_sum)?;
            i.update_gate(now);
        }
    }
    let end = now.max(Timestamp::from_secs_f64(arrivals_end_s));
    let instances = inst
        .iter_mut()
        .map(|i| {
            i.node.gpu.advance(end);
            if let Some(since) = i.gated_since.take() {
                i.gated_s += end.secs_since(since);
            }
            let gated_w = cluster.sizing.map_or(0.0, |s| s.gated_power_w) * f64::from(i.node.gpu.count());
            InstanceRun {
                name: i.name.clone(),
                requests: i.routed,
                // An instance gated throughout nets to zero; clip the rounding below it.
                energy_j: (i.node.gpu.total_energy_j()
                    - i.gated_s * (i.node.gpu.idle_power_w() - gated_w).max(0.0))
                .max(0.0),
                gated_s: i.gated_s,
            }
        })
        .collect();
    Ok(ClusterRun { router: router.name().to_owned(), records, instances, elapsed_s: end.as_secs_f64() })
}

/// Keeps on the cheapest instances whose capacity covers the projected rate with headroom.
fn resize(inst: &mut [Instance], sizing: &Sizing, arrivals: u64, now: Timestamp, est_in: f64, est_out: f64) {
    let projected_rps = arrivals as f64 / sizing.window_s;
    // A backlog is load the last window's arrivals do not show: count it as arriving again.
    let backlog: usize = inst.iter().map(|i| i.node.ctrl.queue_len()).sum();
    let need = (projected_rps + backlog as f64 / sizing.window_s) * sizing.headroom;
    let caps: Vec<(f64, f64)> = inst.iter().map(|i| i.capacity(est_in, est_out)).collect();
    let mut order: Vec<usize> = (0..inst.len()).collect();
    order.sort_by(|&a, &b| caps[a].1.total_cmp(&caps[b].1).then(a.cmp(&b)));
    let mut have = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        // The cheapest instance always stays on so that a request always has somewhere to go.
        let on = rank == 0 || have < need;
        if on {
            have += caps[i].0;
        }
        inst[i].active = on;
        inst[i].update_gate(now);
    }
}

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
                    let mut router = super::router_by_name(name).ok_or_else(|| {
                        Error::Setting(format!(
                            "unknown router `{name}`; known: {}",
                            super::ROUTERS.join(", ")
                        ))
                    })?;
                    simulate_cluster(cluster, router.as_mut(), reqs, duration_s, *s)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RouterResult { router: (*name).to_owned(), runs })
        })
        .collect()
}

/// The comparison as a Markdown table (means over runs).
pub fn router_table(results: &[RouterResult], slo: &Slo) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "| router | energy (kJ) | J/request | SLO attainment (%) | p90 e2e (s) | requests per instance | gated (s) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let n = r.runs.len().max(1) as f64;
        let mean = |f: &dyn Fn(&ClusterRun) -> f64| r.runs.iter().map(f).sum::<f64>() / n;
        let per_inst: Vec<String> = (0..r.runs.first().map_or(0, |x| x.instances.len()))
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
    out
}

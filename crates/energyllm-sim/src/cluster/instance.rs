//! One instance of a cluster: its setups, its current deployment, its pending requests, and the
//! energy books that stay exact across power gating and rebuilds.

use std::collections::VecDeque;
use std::sync::Arc;

use energyllm_core::registry::{find, PluginSpec, PolicyContext, PolicyPlugin};
use energyllm_core::{
    duration_from_secs, Event, Mhz, PerfModel, PerfQuery, Request, RequestRecord, RequestStatus, Slo,
    Timestamp,
};

use super::{InstanceRun, InstanceSpec, Sizing};
use crate::router::InstanceView;
use crate::simulation::{Deployment, SimSetup};
use crate::Error;

/// One setup an instance can run, with what sizing needs to size it.
pub(super) struct Variant {
    pub(super) name: String,
    pub(super) setup: SimSetup,
    pub(super) perf: Arc<dyn PerfModel>,
    pub(super) kv_capacity_tokens: u64,
    pub(super) batches: Vec<u32>,
    pub(super) top_freq: Mhz,
    pub(super) slo: Slo,
}

pub(super) struct Instance {
    pub(super) name: String,
    pub(super) policy: PluginSpec,
    pub(super) seed: u64,
    pub(super) variants: Vec<Variant>,
    pub(super) current: usize,
    /// The setup sizing wants once the instance has drained.
    pub(super) want: Option<usize>,
    pub(super) deployment: Deployment,
    /// GPUs the instance owns: as many as its largest setup needs.
    pub(super) pool_gpus: u32,
    pub(super) gated_power_w: f64,
    pub(super) wake_s: f64,
    pub(super) routed: u64,
    pub(super) active: bool,
    /// When a woken or rebuilt instance can serve.
    pub(super) ready_at: Timestamp,
    /// Requests routed to it before it was ready, in arrival order.
    pub(super) pending: VecDeque<Request>,
    pub(super) gated_since: Option<Timestamp>,
    pub(super) gated_s: f64,
    /// Start of the current time on (not gated).
    pub(super) on_since: Timestamp,
    /// Time on in each setup, in seconds.
    pub(super) variant_s: Vec<f64>,
    /// The current deployment's energy counter at its start: a new `SimGpu` integrates idle power from
    /// time zero.
    pub(super) baseline_j: f64,
    pub(super) deployment_since: Timestamp,
    pub(super) retired_j: f64,
    /// Idle energy of gated intervals, less the gated draw, in joules.
    pub(super) gated_credit_j: f64,
    /// Gated draw of pool GPUs the retired deployments' setups left unused, in joules.
    pub(super) unused_j: f64,
}

pub(super) fn build_deployment(
    variant: &Variant,
    policy: &PluginSpec,
    seed: u64,
) -> Result<Deployment, Error> {
    let cfg = &variant.setup.controller;
    let plugin = find::<PolicyPlugin>(&policy.name)?;
    let mut ctx = PolicyContext::new(cfg.action_space.clone(), cfg.slo, seed);
    ctx.perf_model = Some(variant.perf.clone());
    let built = (plugin.build)(&policy.config, &ctx)?;
    Deployment::new(&variant.setup, Some(built))
}

impl Instance {
    pub(super) fn new(spec: &InstanceSpec, sizing: Option<&Sizing>, seed: u64) -> Result<Self, Error> {
        if !spec.alternatives.is_empty() && sizing.is_none() {
            return Err(Error::Setting(format!(
                "instance {}: alternative setups need sizing, which picks among them each window",
                spec.name
            )));
        }
        let variants = std::iter::once(&spec.setup)
            .chain(&spec.alternatives)
            .map(|setup| {
                if setup.gpu != spec.setup.gpu {
                    return Err(Error::Setting(format!(
                        "instance {}: alternative {} runs on {}, not {}; alternatives share the instance's GPUs",
                        spec.name, setup.model.name, setup.gpu.name, spec.setup.gpu.name
                    )));
                }
                let cfg = &setup.controller;
                // A throwaway engine sizes the KV cache of this setup.
                let kv_capacity_tokens = Deployment::new(setup, None)?.engine.kv_capacity_tokens();
                Ok(Variant {
                    name: setup.model.name.clone(),
                    setup: setup.clone(),
                    perf: setup.perf_model(),
                    kv_capacity_tokens,
                    batches: cfg.action_space.batches().to_vec(),
                    top_freq: cfg.action_space.max_freq(),
                    slo: cfg.slo,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let gated_power_w = sizing.map_or(0.0, |s| s.gated_power_w);
        if gated_power_w > spec.setup.gpu.idle_power_w {
            return Err(Error::Setting(format!(
                "instance {}: a gated GPU drawing {gated_power_w} W would draw more than an idle {} ({} W); \
                 gating saves power, so give a gated power at or below the idle power",
                spec.name, spec.setup.gpu.name, spec.setup.gpu.idle_power_w
            )));
        }
        let deployment = build_deployment(&variants[0], &spec.policy, seed)?;
        let pool_gpus = variants.iter().map(|v| v.setup.model.tensor_parallel.max(1)).max().unwrap_or(1);
        Ok(Instance {
            name: spec.name.clone(),
            policy: spec.policy.clone(),
            seed,
            variant_s: vec![0.0; variants.len()],
            variants,
            current: 0,
            want: None,
            deployment,
            pool_gpus,
            gated_power_w,
            wake_s: sizing.map_or(0.0, |s| s.wake_s.max(0.0)),
            routed: 0,
            active: true,
            ready_at: Timestamp::ZERO,
            pending: VecDeque::new(),
            gated_since: None,
            gated_s: 0.0,
            on_since: Timestamp::ZERO,
            baseline_j: 0.0,
            deployment_since: Timestamp::ZERO,
            retired_j: 0.0,
            gated_credit_j: 0.0,
            unused_j: 0.0,
        })
    }

    /// Sizing's estimate for setup `k` at the top clock: requests per second at the largest
    /// batch (up to the controller's cap) that keeps a request of `est_input + est_output`
    /// tokens within half its SLO and within the KV cache, and the board joules per request
    /// there.
    pub(super) fn capacity(&self, k: usize, est_input: f64, est_output: f64) -> (f64, f64) {
        let v = &self.variants[k];
        let ctx = (est_input + est_output / 2.0).max(1.0);
        let kv_batch = (v.kv_capacity_tokens as f64 / (est_input + est_output).max(1.0)).floor();
        let mut best = (0.0, f64::INFINITY);
        // The policy's batch cap bounds the batch whatever the engine could hold.
        let cap = self.deployment.ctrl.batch_cap();
        for &b in v.batches.iter().filter(|&&b| b <= cap) {
            let p = v.perf.predict(&PerfQuery {
                freq: v.top_freq,
                batch: b,
                prefill_tokens: 0,
                decode_tokens: b,
                kv_tokens: (f64::from(b) * ctx) as u64,
            });
            let life_s = est_output * p.latency_s;
            let fits = f64::from(b) <= kv_batch && life_s <= 0.5 * v.slo.latency_budget_s(est_output);
            if fits || best.0 == 0.0 {
                best = (f64::from(b) / life_s.max(1e-9), p.power_w * life_s / f64::from(b));
            }
        }
        best
    }

    /// Nothing pending, queued, running or in flight.
    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.deployment.is_idle()
    }

    /// Requests waiting: pending ones and the controller's queue.
    pub(super) fn queued(&self) -> usize {
        self.pending.len() + self.deployment.ctrl.queue_len()
    }

    /// When pending requests are due at the controller.
    pub(super) fn pending_due(&self) -> Option<Timestamp> {
        (!self.pending.is_empty()).then_some(self.ready_at)
    }

    /// The router's view at `now`; an instance waiting to switch setup counts as inactive unless
    /// no other active instance is free (`any_free`).
    pub(super) fn view(&self, now: Timestamp, any_free: bool) -> InstanceView<'_> {
        let v = &self.variants[self.current];
        InstanceView {
            name: &self.name,
            queue_len: self.queued(),
            running: self.deployment.ctrl.running(),
            batch_cap: self.deployment.ctrl.batch_cap(),
            freq: self.deployment.ctrl.freq(),
            perf: v.perf.as_ref(),
            idle_power_w: self.deployment.gpu.idle_power_w(),
            slo: v.slo,
            active: self.active && (self.want.is_none() || !any_free),
            // A gated instance would first wake.
            ready_in_s: if self.gated_since.is_some() {
                self.wake_s
            } else if self.ready_at > now {
                self.ready_at.secs_since(now)
            } else {
                0.0
            },
        }
    }

    /// Takes a routed request: to the controller when ready, else to the pending list.
    pub(super) fn take(&mut self, now: Timestamp, r: Request) {
        self.routed += 1;
        if now < self.ready_at || !self.pending.is_empty() {
            self.pending.push_back(r);
        } else {
            self.deployment.ctrl.handle(now, Event::Arrival(r));
        }
    }

    /// Hands pending requests to the controller once the instance is ready.
    pub(super) fn deliver(&mut self, now: Timestamp) {
        if now >= self.ready_at {
            while let Some(r) = self.pending.pop_front() {
                self.deployment.ctrl.handle(now, Event::Arrival(r));
            }
        }
    }

    /// Switches the instance on; a gated one wakes, ready after `wake_s`.
    pub(super) fn switch_on(&mut self, now: Timestamp) {
        if self.active {
            return;
        }
        self.active = true;
        if self.gated_since.is_some() {
            self.ready_at = self.ready_at.max(now + duration_from_secs(self.wake_s));
            self.update_gate(now);
        }
    }

    /// Switches the instance off: it drains, then is gated. A pending switch of setup is
    /// dropped; sizing chooses again when it switches the instance back on.
    pub(super) fn switch_off(&mut self, now: Timestamp) {
        self.active = false;
        self.want = None;
        self.update_gate(now);
    }

    /// How far the instance is from serving in setup `k`: 0 serving in it, 1 switched off in it
    /// but not yet gated, 2 gated in it (a wake-up), 3 idle in another (a rebuild), 4 busy in
    /// another (a drain, then a rebuild).
    pub(super) fn steps_to(&self, k: usize) -> u8 {
        match (k == self.current, self.active, self.gated_since.is_some()) {
            (true, true, _) => 0,
            (true, false, false) => 1,
            (true, false, true) => 2,
            (false, ..) if self.deployment.is_idle() => 3,
            (false, ..) => 4,
        }
    }

    /// Sizing's choice of setup `k` for an instance it keeps on: applied now when nothing runs,
    /// else once drained. Returns the setup whose capacity counts this window.
    pub(super) fn choose(&mut self, k: usize, now: Timestamp) -> Result<usize, Error> {
        if k == self.current {
            self.want = None;
        } else if self.deployment.is_idle() {
            self.rebuild(k, now)?;
        } else {
            self.want = Some(k);
        }
        Ok(self.current)
    }

    /// Applies a wanted switch of setup once nothing runs.
    pub(super) fn switch_when_drained(&mut self, now: Timestamp) -> Result<(), Error> {
        match self.want {
            Some(k) if self.deployment.is_idle() => self.rebuild(k, now),
            _ => Ok(()),
        }
    }

    /// Retires the current deployment and starts setup `k`, ready after `wake_s` (weights re-sharded).
    pub(super) fn rebuild(&mut self, k: usize, now: Timestamp) -> Result<(), Error> {
        if let Some(since) = self.gated_since.take() {
            self.end_gate(since, now);
        } else {
            self.variant_s[self.current] += now.secs_since(self.on_since);
        }
        let mut deployment = build_deployment(&self.variants[k], &self.policy, self.seed)?;
        self.deployment.gpu.advance(now);
        self.retired_j += self.deployment.gpu.total_energy_j() - self.baseline_j;
        self.unused_j += self.unused_power_w() * now.secs_since(self.deployment_since);
        deployment.gpu.advance(now);
        self.baseline_j = deployment.gpu.total_energy_j();
        self.deployment = deployment;
        self.deployment_since = now;
        self.on_since = now;
        self.current = k;
        self.want = None;
        self.ready_at = self.ready_at.max(now + duration_from_secs(self.wake_s));
        Ok(())
    }

    /// Gated draw of the pool GPUs the current setup leaves unused, in watts.
    pub(super) fn unused_power_w(&self) -> f64 {
        f64::from(self.pool_gpus.saturating_sub(self.deployment.gpu.count())) * self.gated_power_w
    }

    /// Ends a gated interval that began at `since`: its idle draw beyond the gated draw is
    /// credited back.
    pub(super) fn end_gate(&mut self, since: Timestamp, now: Timestamp) {
        let dt = now.secs_since(since);
        self.gated_s += dt;
        let gated_w = self.gated_power_w * f64::from(self.deployment.gpu.count());
        self.gated_credit_j += dt * (self.deployment.gpu.idle_power_w() - gated_w).max(0.0);
        self.on_since = now;
    }

    /// Completes engine work due at `now`, recording what finished.
    pub(super) fn advance_engine(
        &mut self,
        now: Timestamp,
        records: &mut Vec<RequestRecord>,
        out_sum: &mut (f64, u64),
    ) {
        self.deployment.advance_engine(now, &mut |rec| record(rec, records, out_sum));
    }

    pub(super) fn flush(
        &mut self,
        now: Timestamp,
        records: &mut Vec<RequestRecord>,
        out_sum: &mut (f64, u64),
    ) -> Result<(), Error> {
        self.deployment.flush(now, &mut |rec| record(rec, records, out_sum))
    }

    /// Starts or ends a gated interval: gated while switched off and drained.
    pub(super) fn update_gate(&mut self, now: Timestamp) {
        let gated = !self.active && self.is_idle();
        match (gated, self.gated_since) {
            (true, None) => {
                self.variant_s[self.current] += now.secs_since(self.on_since);
                self.gated_since = Some(now);
            }
            (false, Some(since)) => {
                self.gated_since = None;
                self.end_gate(since, now);
            }
            _ => {}
        }
    }

    /// The instance's share of a run that ends at `end`.
    pub(super) fn finish(&mut self, end: Timestamp) -> InstanceRun {
        self.deployment.gpu.advance(end);
        match self.gated_since.take() {
            Some(since) => self.end_gate(since, end),
            None => self.variant_s[self.current] += end.secs_since(self.on_since),
        }
        let unused_j = self.unused_j + self.unused_power_w() * end.secs_since(self.deployment_since);
        let energy_j =
            self.retired_j + self.deployment.gpu.total_energy_j() - self.baseline_j - self.gated_credit_j
                + unused_j;
        InstanceRun {
            name: self.name.clone(),
            requests: self.routed,
            // An instance gated throughout nets to its gated draw; clip the rounding below zero.
            energy_j: energy_j.max(0.0),
            gated_s: self.gated_s,
            variant_s: self
                .variants
                .iter()
                .map(|v| v.name.clone())
                .zip(self.variant_s.iter().copied())
                .collect(),
        }
    }
}

/// Keeps a finished request's record and, for a completion, its output length (the routers'
/// estimate of output lengths is the mean of completed requests).
pub(super) fn record(rec: RequestRecord, records: &mut Vec<RequestRecord>, out_sum: &mut (f64, u64)) {
    if rec.status == RequestStatus::Completed {
        out_sum.0 += f64::from(rec.output_tokens);
        out_sum.1 += 1;
    }
    records.push(rec);
}

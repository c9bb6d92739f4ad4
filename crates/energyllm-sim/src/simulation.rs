//! The discrete-event driver: controller, simulated engine and simulated GPU in virtual time.
//!
//! This is the simulator's counterpart of the live gateway: it feeds the sans-IO
//! [`Controller`] events in the documented order and carries out its commands, with time
//! jumping from one event to the next.

use serde::{Deserialize, Serialize};

use energyllm_core::{
    Command, Controller, ControllerConfig, ControllerStats, Event, Observation, Policy, Request,
    RequestRecord, RequestStatus, RunTotals, Telemetry, Timestamp,
};
use energyllm_engines::{EngineEvent, ModelSpec, SimEngine, SimEngineConfig, SimEngineStats};
use energyllm_hw::{GpuSpec, SimGpu};

use crate::Error;

/// Everything that defines a simulated deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSetup {
    /// The GPU.
    pub gpu: GpuSpec,
    /// The model.
    pub model: ModelSpec,
    /// The engine's settings.
    pub engine: SimEngineConfig,
    /// The controller's settings. Its batching mode is the engine's too. Its `switch_stall_s` is
    /// replaced by the GPU profile's when a deployment is built: the GPU states how long a clock
    /// change stalls, and the controller holds dispatch for exactly that.
    pub controller: ControllerConfig,
}

impl SimSetup {
    /// The simulator's own iteration model as a [`PerfModel`](energyllm_core::PerfModel): what
    /// look-ahead policies consult on the simulator.
    pub fn perf_model(&self) -> std::sync::Arc<dyn energyllm_core::PerfModel> {
        std::sync::Arc::new(energyllm_engines::AnalyticPerfModel::new(
            self.model.clone(),
            self.gpu.clone(),
            self.engine.timing.clone(),
        ))
    }

    /// Built-in GPU and model profiles with default engine and controller settings; the action
    /// space is [`action_space_for`] the GPU (caps up to the engine's default of 256).
    pub fn builtin(gpu: &str, model: &str) -> Result<Self, Error> {
        let mut setup = Self::paper(gpu, model)?;
        setup.controller.action_space = action_space_for(&setup.gpu);
        Ok(setup)
    }

    /// As [`builtin`](Self::builtin), with the EnergyLLM paper's action space
    /// ([`paper_action_space_for`] the GPU: caps 1–64), as its protocol and PPO's training use.
    pub fn paper(gpu: &str, model: &str) -> Result<Self, Error> {
        let gpu = GpuSpec::builtin(gpu)?;
        let controller = ControllerConfig {
            action_space: paper_action_space_for(&gpu),
            // The GPU profile states how long a clock change stalls; the controller holds
            // dispatch for that, so the two cannot disagree.
            switch_stall_s: gpu.switch_stall_s,
            ..ControllerConfig::default()
        };
        Ok(SimSetup {
            model: ModelSpec::builtin(model)?,
            engine: SimEngineConfig::default(),
            controller,
            gpu,
        })
    }
}

/// Batch caps of the serving action space: the EnergyLLM paper's 1–64, then 128 and vLLM's
/// default `max_num_seqs` of 256, so that what an operator runs today is a point of the space.
pub const SERVING_BATCHES: [u32; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// The serving action space of `gpu`: [`paper_action_space_for`]'s clocks × [`SERVING_BATCHES`].
pub fn action_space_for(gpu: &GpuSpec) -> energyllm_core::ActionSpace {
    let paper = paper_action_space_for(gpu);
    energyllm_core::ActionSpace::new(paper.freqs().to_vec(), SERVING_BATCHES.to_vec()).unwrap_or(paper)
}

/// The EnergyLLM paper's 15 clocks × 7 batches on an A100; on another GPU, the same clocks
/// scaled to its top clock and snapped to the ones it supports, so policies see the same shape
/// of choice on every GPU.
pub fn paper_action_space_for(gpu: &GpuSpec) -> energyllm_core::ActionSpace {
    let paper = energyllm_core::ActionSpace::paper();
    if gpu.max_freq_mhz == paper.max_freq().0 {
        return paper;
    }
    let supported = gpu.supported_freqs();
    let scale = f64::from(gpu.max_freq_mhz) / f64::from(paper.max_freq().0);
    let freqs = paper
        .freqs()
        .iter()
        .map(|f| {
            let target = f64::from(f.0) * scale;
            supported
                .iter()
                .copied()
                .min_by(|a, b| (f64::from(a.0) - target).abs().total_cmp(&(f64::from(b.0) - target).abs()))
                .unwrap_or(*f)
        })
        .collect();
    energyllm_core::ActionSpace::new(freqs, paper.batches().to_vec()).unwrap_or(paper)
}

/// One point of a run's timeline, taken at each decision epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Simulated time, in seconds.
    pub time_s: f64,
    /// Clock after the decision, in MHz.
    pub freq_mhz: u32,
    /// Batch cap after the decision.
    pub batch_cap: u32,
    /// Queue length.
    pub queue_len: usize,
    /// Requests running.
    pub running: usize,
    /// Mean board power since the previous point, in watts.
    pub power_w: f64,
}

/// What one simulated run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// One record per request, in completion order.
    pub records: Vec<RequestRecord>,
    /// Energy and time totals.
    pub totals: RunTotals,
    /// The controller's counters.
    pub controller: ControllerStats,
    /// The engine's counters.
    pub engine: SimEngineStats,
    /// Controller state at each timed decision epoch.
    pub timeline: Vec<TimelinePoint>,
}

/// Runs `policy` over `requests` (sorted by arrival) until every request has ended and the
/// arrival window `[0, arrivals_end_s)` has passed.
pub fn simulate(
    setup: &SimSetup,
    policy: Box<dyn Policy>,
    requests: &[Request],
    arrivals_end_s: f64,
) -> Result<RunResult, Error> {
    let mut sim = Simulation::new(setup, Some(policy), requests.to_vec(), arrivals_end_s)?;
    // With a policy of its own the controller never hands a decision out.
    while sim.run()?.is_some() {}
    Ok(sim.finish())
}

/// One simulated deployment's moving parts — GPU, engine and controller — and the plumbing
/// between them that every driver needs: telemetry at decision epochs, carrying out commands,
/// forwarding engine events. [`Simulation`] runs one; the cluster driver runs several.
pub(crate) struct Deployment {
    pub(crate) gpu: SimGpu,
    pub(crate) engine: SimEngine,
    pub(crate) ctrl: Controller,
    events: Vec<EngineEvent>,
    last_telemetry: (Timestamp, f64),
}

impl Deployment {
    /// A deployment at time zero; without a policy, the controller is external.
    pub(crate) fn new(setup: &SimSetup, policy: Option<Box<dyn Policy>>) -> Result<Self, Error> {
        // A tensor-parallel model runs on a group of GPUs locked to one clock.
        let gpu = SimGpu::with_count(setup.gpu.clone(), setup.model.tensor_parallel);
        let mut engine_cfg = setup.engine.clone();
        engine_cfg.batching = setup.controller.batching;
        let engine = SimEngine::new(engine_cfg, setup.model.clone(), &gpu)?;
        let mut controller_cfg = setup.controller.clone();
        // One source of truth for the switch stall: the GPU's, whatever the setup says. The
        // controller's hold starts at the decision and the GPU's stall at the same instant or
        // later (after the iteration in flight), so the hold never outlasts the stall: queued
        // work waits exactly one stall (engine test `a_clock_switch_delays_queued_work_by_…`).
        controller_cfg.switch_stall_s = setup.gpu.switch_stall_s;
        // The controller starts from the clock the GPU is at, as it would from a live device.
        let initial = controller_cfg.initial_action();
        controller_cfg.initial = Some(energyllm_core::Action { freq: gpu.freq(), batch: initial.batch });
        let ctrl = match policy {
            Some(p) => Controller::new(controller_cfg, p)?,
            None => Controller::external(controller_cfg)?,
        };
        Ok(Deployment { gpu, engine, ctrl, events: Vec::new(), last_telemetry: (Timestamp::ZERO, 0.0) })
    }

    /// Whether nothing is queued, running or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.ctrl.is_idle() && self.engine.is_idle()
    }

    /// Completes engine work due at `now` and forwards what happened to the controller.
    pub(crate) fn advance_engine(&mut self, now: Timestamp, finished: &mut impl FnMut(RequestRecord)) {
        self.engine.advance(now, &mut self.gpu, &mut self.events);
        self.forward(now, finished);
    }

    /// The decision epoch: reports mean power since the last one and the KV use, then ticks the
    /// controller. Returns the power reported, in watts.
    pub(crate) fn tick(&mut self, now: Timestamp) -> f64 {
        self.gpu.advance(now);
        let dt = now.secs_since(self.last_telemetry.0);
        let power_w = if dt > 0.0 {
            (self.gpu.total_energy_j() - self.last_telemetry.1) / dt
        } else {
            self.gpu.idle_power_w()
        };
        self.last_telemetry = (now, self.gpu.total_energy_j());
        let telemetry =
            Telemetry { power_w: Some(power_w), kv_usage_frac: Some(self.engine.kv_usage_frac()) };
        self.ctrl.handle(now, Event::Telemetry(telemetry));
        self.ctrl.handle(now, Event::Tick);
        power_w
    }

    /// Carries out commands until the engine has nothing more to say at `now`.
    pub(crate) fn flush(
        &mut self,
        now: Timestamp,
        finished: &mut impl FnMut(RequestRecord),
    ) -> Result<(), Error> {
        loop {
            while let Some(cmd) = self.ctrl.poll_command() {
                match cmd {
                    Command::Dispatch(batch) => batch.into_iter().for_each(|r| self.engine.submit(now, r)),
                    Command::SetFrequency(f) => self.engine.request_frequency(now, f, &mut self.gpu)?,
                    // The controller enforces the cap by what it dispatches.
                    Command::SetBatchCap(_) => {}
                }
            }
            self.engine.advance(now, &mut self.gpu, &mut self.events);
            if self.events.is_empty() {
                return Ok(());
            }
            self.forward(now, finished);
        }
    }

    fn forward(&mut self, now: Timestamp, finished: &mut impl FnMut(RequestRecord)) {
        for e in self.events.drain(..) {
            match e {
                EngineEvent::FirstToken(id) => self.ctrl.handle(now, Event::FirstToken(id)),
                EngineEvent::Finished(rec) => {
                    let event = match rec.status {
                        RequestStatus::Completed => {
                            Event::Completed { id: rec.id, output_tokens: rec.output_tokens }
                        }
                        RequestStatus::Rejected => Event::Rejected(rec.id),
                    };
                    self.ctrl.handle(now, event);
                    finished(rec);
                }
            }
        }
    }
}

/// A simulated run that can be stepped: the discrete-event loop of [`simulate`], resumable at
/// each decision when the controller is external (a training environment answers them).
pub struct Simulation {
    requests: Vec<Request>,
    arrivals_end_s: f64,
    deployment: Deployment,
    records: Vec<RequestRecord>,
    timeline: Vec<TimelinePoint>,
    now: Timestamp,
    next: usize,
    steps: u64,
    step_limit: u64,
}

impl Simulation {
    /// A run at time zero. Without a policy, decisions come out of [`run`](Self::run) and go in
    /// through [`apply`](Self::apply).
    pub fn new(
        setup: &SimSetup,
        policy: Option<Box<dyn Policy>>,
        requests: Vec<Request>,
        arrivals_end_s: f64,
    ) -> Result<Self, Error> {
        let deployment = Deployment::new(setup, policy)?;
        let step_limit = 200 * requests.len() as u64 * 1024 + 1_000_000;
        Ok(Simulation {
            records: Vec::with_capacity(requests.len()),
            requests,
            arrivals_end_s,
            deployment,
            timeline: Vec::new(),
            now: Timestamp::ZERO,
            next: 0,
            steps: 0,
            step_limit,
        })
    }

    /// Simulated time reached.
    pub fn now(&self) -> Timestamp {
        self.now
    }
    /// The simulated GPU (energy counters, clock).
    pub fn gpu(&self) -> &SimGpu {
        &self.deployment.gpu
    }
    /// Records of the requests that have ended so far, in completion order.
    pub fn records(&self) -> &[RequestRecord] {
        &self.records
    }
    /// Whether every request has ended.
    pub fn is_done(&self) -> bool {
        self.next >= self.requests.len() && self.deployment.is_idle()
    }

    /// Runs events until the run is over (`None`) or, for an external controller, a decision is
    /// due (its observation).
    pub fn run(&mut self) -> Result<Option<Observation>, Error> {
        while !self.is_done() {
            self.steps += 1;
            if self.steps > self.step_limit {
                return Err(Error::Runaway { steps: self.steps, sim_time_s: self.now.as_secs_f64() });
            }
            let t_arrival = self.requests.get(self.next).map(|r| r.arrival);
            let t_engine = self.deployment.engine.next_event_time(&self.deployment.gpu);
            let t_ctrl = self.deployment.ctrl.poll_timeout();
            let t = [t_arrival, t_engine, t_ctrl].into_iter().flatten().min().unwrap_or(self.now);
            let now = self.now.max(t);
            self.now = now;

            // Engine events first (they free capacity), then arrivals, then the timer.
            let records = &mut self.records;
            self.deployment.advance_engine(now, &mut |r| records.push(r));
            while self.next < self.requests.len() && self.requests[self.next].arrival <= now {
                self.deployment.ctrl.handle(now, Event::Arrival(self.requests[self.next].clone()));
                self.next += 1;
            }
            if t_ctrl.is_some_and(|t| t <= now) {
                let power_w = self.deployment.tick(now);
                let ctrl = &self.deployment.ctrl;
                self.timeline.push(TimelinePoint {
                    time_s: now.as_secs_f64(),
                    freq_mhz: ctrl.freq().0,
                    batch_cap: ctrl.batch_cap(),
                    queue_len: ctrl.queue_len(),
                    running: ctrl.running(),
                    power_w,
                });
            }
            self.flush()?;
            if let Some(obs) = self.deployment.ctrl.poll_decision() {
                return Ok(Some(obs));
            }
        }
        Ok(None)
    }

    /// Answers the decision [`run`](Self::run) returned.
    pub fn apply(&mut self, action: energyllm_core::Action) -> Result<(), Error> {
        self.deployment.ctrl.apply(self.now, action);
        self.flush()
    }

    fn flush(&mut self) -> Result<(), Error> {
        let records = &mut self.records;
        self.deployment.flush(self.now, &mut |r| records.push(r))
    }

    /// Ends the run: idles the GPU to the end of the arrival window and totals the energy.
    pub fn finish(mut self) -> RunResult {
        let end = self.now.max(Timestamp::from_secs_f64(self.arrivals_end_s));
        let gpu = &mut self.deployment.gpu;
        gpu.advance(end);
        RunResult {
            records: self.records,
            totals: RunTotals {
                busy_energy_j: gpu.busy_energy_j(),
                total_energy_j: gpu.total_energy_j(),
                elapsed_s: end.as_secs_f64(),
                freq_switches: gpu.switches(),
                stall_s: gpu.stall_s(),
                stall_energy_j: gpu.stall_energy_j(),
                decisions: self.deployment.ctrl.stats().decisions,
                shield_overrides: self.deployment.ctrl.stats().policy_overrides,
            },
            controller: self.deployment.ctrl.stats(),
            engine: self.deployment.engine.stats(),
            timeline: self.timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_controller_holds_dispatch_for_the_gpu_profiles_stall_and_no_other() {
        for gpu in ["a100-40gb", "a100-80gb", "h100", "h200"] {
            let mut setup = SimSetup::builtin(gpu, "llama-3.1-8b").unwrap();
            assert_eq!(setup.controller.switch_stall_s, setup.gpu.switch_stall_s, "{gpu}");
            // A stale controller setting does not survive: the deployment takes the GPU's.
            setup.gpu.switch_stall_s = 0.2;
            setup.controller.switch_stall_s = 0.05;
            let d = Deployment::new(&setup, None).unwrap();
            assert_eq!(d.ctrl.config().switch_stall_s, 0.2, "{gpu}");
        }
    }
}

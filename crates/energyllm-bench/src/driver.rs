//! The discrete-event driver: controller, simulated engine and simulated GPU in virtual time.
//!
//! This is the simulator's counterpart of the live gateway: it feeds the sans-IO
//! [`Controller`] events in the documented order and carries out its commands, with time
//! jumping from one event to the next.

use serde::{Deserialize, Serialize};

use energyllm_core::{
    Command, Controller, ControllerConfig, ControllerStats, Event, Policy, Request, RequestRecord,
    RequestStatus, RunTotals, Telemetry, Timestamp,
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
    /// The controller's settings. Its batching mode is the engine's too.
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

    /// Built-in GPU and model profiles with default engine and controller settings.
    pub fn builtin(gpu: &str, model: &str) -> Result<Self, Error> {
        Ok(SimSetup {
            gpu: GpuSpec::builtin(gpu)?,
            model: ModelSpec::builtin(model)?,
            engine: SimEngineConfig::default(),
            controller: ControllerConfig::default(),
        })
    }
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
    // A tensor-parallel model runs on a group of GPUs locked to one clock.
    let mut gpu = SimGpu::with_count(setup.gpu.clone(), setup.model.tensor_parallel);
    let mut engine_cfg = setup.engine.clone();
    engine_cfg.batching = setup.controller.batching;
    let mut engine = SimEngine::new(engine_cfg, setup.model.clone(), &gpu)?;
    let mut controller_cfg = setup.controller.clone();
    // The controller starts from the clock the GPU is at, as it would from a live device.
    let initial = controller_cfg.initial_action();
    controller_cfg.initial = Some(energyllm_core::Action { freq: gpu.freq(), batch: initial.batch });
    let mut ctrl = Controller::new(controller_cfg, policy)?;

    let mut records = Vec::with_capacity(requests.len());
    let mut timeline = Vec::new();
    let mut events = Vec::new();
    let mut now = Timestamp::ZERO;
    let mut next = 0usize;
    let mut last_telemetry = (Timestamp::ZERO, 0.0f64);
    let step_limit = 200 * requests.len() as u64 * 1024 + 1_000_000;
    let mut steps = 0u64;

    while next < requests.len() || !ctrl.is_idle() || !engine.is_idle() {
        steps += 1;
        if steps > step_limit {
            return Err(Error::Runaway { steps, sim_time_s: now.as_secs_f64() });
        }
        let t_arrival = requests.get(next).map(|r| r.arrival);
        let t_engine = engine.next_event_time(&gpu);
        let t_ctrl = ctrl.poll_timeout();
        let t = [t_arrival, t_engine, t_ctrl].into_iter().flatten().min().unwrap_or(now);
        now = now.max(t);

        // Engine events first (they free capacity), then arrivals, then the timer.
        engine.advance(now, &mut gpu, &mut events);
        forward(&mut ctrl, now, &mut events, &mut records);
        while next < requests.len() && requests[next].arrival <= now {
            ctrl.handle(now, Event::Arrival(requests[next].clone()));
            next += 1;
        }
        if t_ctrl.is_some_and(|t| t <= now) {
            gpu.advance(now);
            let dt = now.secs_since(last_telemetry.0);
            let power_w = if dt > 0.0 {
                (gpu.total_energy_j() - last_telemetry.1) / dt
            } else {
                gpu.spec().idle_power_w
            };
            last_telemetry = (now, gpu.total_energy_j());
            let telemetry = Telemetry { power_w: Some(power_w), kv_usage_frac: Some(engine.kv_usage_frac()) };
            ctrl.handle(now, Event::Telemetry(telemetry));
            ctrl.handle(now, Event::Tick);
            timeline.push(TimelinePoint {
                time_s: now.as_secs_f64(),
                freq_mhz: ctrl.freq().0,
                batch_cap: ctrl.batch_cap(),
                queue_len: ctrl.queue_len(),
                running: ctrl.running(),
                power_w,
            });
        }
        // Carry out commands until the engine has nothing more to say at `now`.
        loop {
            while let Some(cmd) = ctrl.poll_command() {
                match cmd {
                    Command::Dispatch(batch) => batch.into_iter().for_each(|r| engine.submit(now, r)),
                    Command::SetFrequency(f) => engine.request_frequency(now, f, &mut gpu)?,
                    // The controller enforces the cap by what it dispatches.
                    Command::SetBatchCap(_) => {}
                }
            }
            engine.advance(now, &mut gpu, &mut events);
            if events.is_empty() {
                break;
            }
            forward(&mut ctrl, now, &mut events, &mut records);
        }
    }
    let end = now.max(Timestamp::from_secs_f64(arrivals_end_s));
    gpu.advance(end);
    Ok(RunResult {
        records,
        totals: RunTotals {
            busy_energy_j: gpu.busy_energy_j(),
            total_energy_j: gpu.total_energy_j(),
            elapsed_s: end.as_secs_f64(),
            freq_switches: gpu.switches(),
            stall_s: gpu.stall_s(),
        },
        controller: ctrl.stats(),
        engine: engine.stats(),
        timeline,
    })
}

fn forward(
    ctrl: &mut Controller,
    now: Timestamp,
    events: &mut Vec<EngineEvent>,
    records: &mut Vec<RequestRecord>,
) {
    for e in events.drain(..) {
        match e {
            EngineEvent::FirstToken(id) => ctrl.handle(now, Event::FirstToken(id)),
            EngineEvent::Finished(rec) => {
                let event = match rec.status {
                    RequestStatus::Completed => {
                        Event::Completed { id: rec.id, output_tokens: rec.output_tokens }
                    }
                    RequestStatus::Rejected => Event::Rejected(rec.id),
                };
                ctrl.handle(now, event);
                records.push(rec);
            }
        }
    }
}

//! The sans-IO controller: queue, decision epochs and the commands that carry decisions out.
//!
//! A driver owns time and I/O and talks to the [`Controller`] in a fixed order:
//!
//! 1. feed everything that happened at `now` through [`Controller::handle`] (engine events
//!    first, then arrivals, then [`Event::Tick`] when `now` reached [`Controller::poll_timeout`]);
//! 2. drain [`Controller::poll_command`] until it returns `None` and carry each command out;
//! 3. sleep until the earliest of [`Controller::poll_timeout`] and its own next event.
//!
//! `now` must never go back; an earlier `now` is treated as the latest one seen. A spurious
//! `Tick` (before the timeout) does nothing.
//!
//! A controller built with [`Controller::external`] has no policy of its own: when a decision
//! is due it stores the observation, which the driver takes with
//! [`Controller::poll_decision`], and waits for [`Controller::apply`]. A training environment
//! drives the agent this way; until the action comes, the previous one stays in force. The controller reads no clock and does no I/O, so
//! the simulator (virtual time) and the live gateway (tokio time) drive the same code.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::duration_from_secs;
use crate::{Action, ActionSpace, Error, Mhz, Observation, Policy, Request, RequestId, Slo, Timestamp};

/// How dispatched requests share the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchingMode {
    /// Keep up to the batch cap running; dispatch as soon as one finishes (vLLM's way).
    #[default]
    Continuous,
    /// Dispatch up to the batch cap at once, only when the engine is empty, and let the batch
    /// run to completion (how the EnergyLLM paper evaluates).
    Static,
}

/// When the controller asks the policy.
///
/// A "batch completion" is the engine running empty in static mode and any completion in
/// continuous mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// The SLO the observation reports and completions are judged by. Default: 11 s end to end.
    pub slo: Slo,
    /// Clocks and batch caps the policy chooses from. Default: the EnergyLLM paper's 15 × 7.
    pub action_space: ActionSpace,
    /// Clock and cap in force before the first decision; the clock must be the actuator's
    /// current one. Default: the space's highest clock, batch 8.
    pub initial: Option<Action>,
    /// Decide every this many seconds; `None` for never on a timer. Default: 1 s.
    pub decision_interval_s: Option<f64>,
    /// Also decide when a batch completes. Default: true.
    pub decide_on_batch_completion: bool,
    /// Continuous or static batching. Default: continuous.
    pub batching: BatchingMode,
    /// Seconds the GPU stalls on a clock change; dispatch is held that long. Default: 0.05 s.
    pub switch_stall_s: f64,
    /// Completions the "recent" SLO attainment and latency average over. Default: 20.
    pub recent_window: usize,
    /// Seconds of arrivals the arrival-rate estimate counts. Default: 30 s.
    pub rate_window_s: f64,
    /// Output tokens expected of a request before any has completed. Default: 256.
    pub output_tokens_prior: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            slo: Slo::default(),
            action_space: ActionSpace::default(),
            initial: None,
            decision_interval_s: Some(1.0),
            decide_on_batch_completion: true,
            batching: BatchingMode::Continuous,
            switch_stall_s: 0.05,
            recent_window: 20,
            rate_window_s: 30.0,
            output_tokens_prior: 256.0,
        }
    }
}

/// The mean prompt length an observation reports before any request has arrived, in tokens.
const PROMPT_TOKENS_PRIOR: f64 = 256.0;

impl ControllerConfig {
    /// Checks ranges before a controller is built.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        self.slo.validate().map_err(Error::Config)?;
        if let Some(i) = self.decision_interval_s {
            if !(i.is_finite() && i > 0.0) {
                return bad(format!("decision_interval_s must be positive, got {i}"));
            }
        }
        if self.decision_interval_s.is_none() && !self.decide_on_batch_completion {
            return bad(
                "the controller would never decide: set decision_interval_s or decide_on_batch_completion"
                    .into(),
            );
        }
        if !(self.switch_stall_s.is_finite() && self.switch_stall_s >= 0.0) {
            return bad(format!("switch_stall_s must be ≥ 0, got {}", self.switch_stall_s));
        }
        if self.recent_window == 0 {
            return bad("recent_window must be ≥ 1".into());
        }
        if !(self.rate_window_s.is_finite() && self.rate_window_s > 0.0) {
            return bad(format!("rate_window_s must be positive, got {}", self.rate_window_s));
        }
        if let Some(a) = self.initial {
            if a.batch == 0 {
                return bad("initial batch cap must be ≥ 1".into());
            }
        }
        Ok(())
    }

    /// The clock and cap before the first decision.
    pub fn initial_action(&self) -> Action {
        self.initial.unwrap_or(Action { freq: self.action_space.max_freq(), batch: 8 })
    }
}

/// Something that happened, reported by the driver.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A request arrived; it joins the queue.
    Arrival(Request),
    /// A dispatched request produced its first token.
    FirstToken(RequestId),
    /// A dispatched request finished, having generated `output_tokens`.
    Completed {
        /// Which request.
        id: RequestId,
        /// Tokens it generated.
        output_tokens: u32,
    },
    /// The engine refused or lost a dispatched request; it counts as an SLO miss.
    Rejected(RequestId),
    /// Measurements from the GPU and engine.
    Telemetry(Telemetry),
    /// The timeout from [`Controller::poll_timeout`] expired.
    Tick,
}

/// Measurements a driver reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Mean board power since the last report, in watts.
    pub power_w: Option<f64>,
    /// KV-cache use, 0–1.
    pub kv_usage_frac: Option<f64>,
}

/// Something the driver must carry out.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Send these requests to the engine, in this order.
    Dispatch(Vec<Request>),
    /// Lock the GPU clock.
    SetFrequency(Mhz),
    /// Tell the engine its new concurrency limit (the controller already enforces it).
    SetBatchCap(u32),
}

/// Counters over the controller's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerStats {
    /// Times the policy was asked.
    pub decisions: u64,
    /// Clock changes commanded.
    pub freq_switches: u64,
    /// Batch-cap changes commanded.
    pub cap_changes: u64,
    /// Requests dispatched.
    pub dispatched: u64,
    /// Completions and rejections seen.
    pub finished: u64,
    /// Events that arrived with a `now` earlier than one already seen.
    pub time_went_back: u64,
    /// Completions for requests the controller never dispatched (ignored).
    pub unknown_completions: u64,
    /// Decisions the policy's safety shield overrode ([`Policy::overrides`]).
    #[serde(default)]
    pub policy_overrides: u64,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    arrival: Timestamp,
    first_token: Option<Timestamp>,
}

/// The sans-IO controller. See the [module docs](self) for the call order.
pub struct Controller {
    config: ControllerConfig,
    policy: Option<Box<dyn Policy>>,
    pending_decision: Option<Observation>,
    now: Timestamp,
    queue: VecDeque<Request>,
    queued_prompt_tokens: u64,
    queued_arrival_nanos: u128,
    in_flight: HashMap<RequestId, InFlight>,
    freq: Mhz,
    batch_cap: u32,
    last_switch: Option<Timestamp>,
    stall: Duration,
    stall_until: Timestamp,
    interval: Option<Duration>,
    next_decision: Option<Timestamp>,
    last_decision: Option<Timestamp>,
    recent: VecDeque<(f64, bool)>,
    arrivals: VecDeque<Timestamp>,
    power_w: f64,
    kv_usage_frac: f64,
    completed_output_tokens: u64,
    /// Prompt tokens of every request that arrived, and how many arrived.
    arrived_prompt_tokens: (u64, u64),
    completed: u64,
    commands: VecDeque<Command>,
    stats: ControllerStats,
}

impl Controller {
    /// A controller with `policy`; the first decision is due at time zero.
    pub fn new(config: ControllerConfig, policy: Box<dyn Policy>) -> Result<Self, Error> {
        Self::build(config, Some(policy))
    }

    /// A controller whose decisions come from outside (see the [module docs](self)).
    pub fn external(config: ControllerConfig) -> Result<Self, Error> {
        Self::build(config, None)
    }

    fn build(config: ControllerConfig, policy: Option<Box<dyn Policy>>) -> Result<Self, Error> {
        config.validate()?;
        let initial = config.initial_action();
        let interval = config.decision_interval_s.map(duration_from_secs);
        Ok(Controller {
            freq: config.action_space.nearest_freq(initial.freq),
            batch_cap: initial.batch,
            stall: duration_from_secs(config.switch_stall_s),
            policy,
            pending_decision: None,
            now: Timestamp::ZERO,
            queue: VecDeque::new(),
            queued_prompt_tokens: 0,
            queued_arrival_nanos: 0,
            in_flight: HashMap::new(),
            last_switch: None,
            stall_until: Timestamp::ZERO,
            interval,
            next_decision: Some(Timestamp::ZERO),
            last_decision: None,
            recent: VecDeque::new(),
            arrivals: VecDeque::new(),
            power_w: 0.0,
            kv_usage_frac: 0.0,
            completed_output_tokens: 0,
            arrived_prompt_tokens: (0, 0),
            completed: 0,
            commands: VecDeque::new(),
            stats: ControllerStats::default(),
            config,
        })
    }

    // ---- getters ----

    /// The configuration.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }
    /// The clock last commanded.
    pub fn freq(&self) -> Mhz {
        self.freq
    }
    /// The batch cap in force.
    pub fn batch_cap(&self) -> u32 {
        self.batch_cap
    }
    /// Requests waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }
    /// Requests dispatched and not yet finished.
    pub fn running(&self) -> usize {
        self.in_flight.len()
    }
    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }
    /// Counters.
    pub fn stats(&self) -> ControllerStats {
        self.stats
    }
    /// The policy's name (`external` when decisions come from outside).
    pub fn policy_name(&self) -> &str {
        self.policy.as_ref().map_or("external", |p| p.name())
    }

    /// The observation of a decision that is due, for an [`external`](Self::external)
    /// controller; answer it with [`apply`](Self::apply).
    pub fn poll_decision(&mut self) -> Option<Observation> {
        self.pending_decision.take()
    }

    /// Carries out an externally chosen action at `now`, then dispatches what it allows.
    pub fn apply(&mut self, now: Timestamp, action: Action) {
        let now = self.advance(now);
        self.enact(now, action);
        self.dispatch(now);
    }

    // ---- inputs ----

    /// Feeds one event that happened at `now`.
    pub fn handle(&mut self, now: Timestamp, event: Event) {
        let now = self.advance(now);
        let mut batch_completed = false;
        match event {
            Event::Arrival(req) => {
                self.queued_prompt_tokens += u64::from(req.input_tokens);
                self.arrived_prompt_tokens.0 += u64::from(req.input_tokens);
                self.arrived_prompt_tokens.1 += 1;
                self.queued_arrival_nanos += u128::from(req.arrival.as_nanos());
                self.arrivals.push_back(req.arrival.min(now));
                self.queue.push_back(req);
            }
            Event::FirstToken(id) => {
                if let Some(f) = self.in_flight.get_mut(&id) {
                    f.first_token.get_or_insert(now);
                }
            }
            Event::Completed { id, output_tokens } => {
                batch_completed = self.finish(now, id, Some(output_tokens));
            }
            Event::Rejected(id) => batch_completed = self.finish(now, id, None),
            Event::Telemetry(t) => {
                if let Some(p) = t.power_w.filter(|p| p.is_finite()) {
                    self.power_w = p;
                }
                if let Some(k) = t.kv_usage_frac.filter(|k| k.is_finite()) {
                    self.kv_usage_frac = k.clamp(0.0, 1.0);
                }
            }
            Event::Tick => {}
        }
        let timer_due = self.next_decision.is_some_and(|t| now >= t);
        if timer_due || (batch_completed && self.config.decide_on_batch_completion) {
            self.decide(now);
        }
        self.dispatch(now);
    }

    // ---- outputs ----

    /// The next command to carry out, in order.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When the driver must call [`handle`](Self::handle) with [`Event::Tick`] at the latest:
    /// the next timed decision, or the end of a switch stall that holds back queued requests.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let stall_end = (!self.queue.is_empty() && self.stall_until > self.now).then_some(self.stall_until);
        match (self.next_decision, stall_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The observation the policy would see at `now`.
    pub fn observe(&self, now: Timestamp) -> Observation {
        let n = self.recent.len();
        let space = &self.config.action_space;
        let mean_output_tokens = if self.completed == 0 {
            self.config.output_tokens_prior
        } else {
            self.completed_output_tokens as f64 / self.completed as f64
        };
        let (oldest_wait_s, mean_wait_s) = match self.queue.front() {
            None => (0.0, 0.0),
            Some(oldest) => {
                let mean_arrival = self.queued_arrival_nanos as f64 / self.queue.len() as f64;
                (
                    now.secs_since(oldest.arrival).max(0.0),
                    ((now.as_nanos() as f64 - mean_arrival) * 1e-9).max(0.0),
                )
            }
        };
        let window_s = self.config.rate_window_s.min(now.as_secs_f64());
        let arrival_rate_rps = if window_s > 0.0 { self.arrivals.len() as f64 / window_s } else { 0.0 };
        Observation {
            now,
            queue_len: u32::try_from(self.queue.len()).unwrap_or(u32::MAX),
            queued_prompt_tokens: self.queued_prompt_tokens,
            queued_expected_output_tokens: self.queue.len() as f64 * mean_output_tokens,
            running: u32::try_from(self.in_flight.len()).unwrap_or(u32::MAX),
            kv_usage_frac: self.kv_usage_frac,
            freq: self.freq,
            freq_index: space.nearest_freq_index(self.freq),
            batch_cap: self.batch_cap,
            since_last_switch_s: now.secs_since(self.last_switch.unwrap_or(Timestamp::ZERO)).max(0.0),
            arrival_rate_rps,
            oldest_wait_s,
            mean_wait_s,
            recent_slo_attainment: if n == 0 {
                1.0
            } else {
                self.recent.iter().filter(|r| r.1).count() as f64 / n as f64
            },
            recent_mean_latency_s: if n == 0 {
                0.0
            } else {
                self.recent.iter().map(|r| r.0).sum::<f64>() / n as f64
            },
            recent_power_w: self.power_w,
            mean_output_tokens,
            mean_prompt_tokens: match self.arrived_prompt_tokens {
                (_, 0) => PROMPT_TOKENS_PRIOR,
                (sum, n) => sum as f64 / n as f64,
            },
            completed: self.completed,
            slo: self.config.slo,
        }
    }

    // ---- internals ----

    fn advance(&mut self, now: Timestamp) -> Timestamp {
        if now < self.now {
            self.stats.time_went_back += 1;
        } else {
            self.now = now;
        }
        let horizon = self
            .now
            .as_nanos()
            .saturating_sub(duration_from_secs(self.config.rate_window_s).as_nanos() as u64);
        while self.arrivals.front().is_some_and(|t| t.as_nanos() < horizon) {
            self.arrivals.pop_front();
        }
        self.now
    }

    /// Records a finished request; returns whether that completes a batch.
    fn finish(&mut self, now: Timestamp, id: RequestId, output_tokens: Option<u32>) -> bool {
        let Some(f) = self.in_flight.remove(&id) else {
            self.stats.unknown_completions += 1;
            return false;
        };
        self.stats.finished += 1;
        let e2e_s = now.secs_since(f.arrival);
        let met = match output_tokens {
            Some(out) => {
                self.completed += 1;
                self.completed_output_tokens += u64::from(out);
                let ttft_s = f.first_token.unwrap_or(now).secs_since(f.arrival);
                let tpot_s =
                    (out >= 2).then(|| now.secs_since(f.first_token.unwrap_or(now)) / f64::from(out - 1));
                self.config.slo.is_met(e2e_s, ttft_s, tpot_s)
            }
            None => false,
        };
        if self.recent.len() == self.config.recent_window {
            self.recent.pop_front();
        }
        self.recent.push_back((e2e_s, met));
        match self.config.batching {
            BatchingMode::Continuous => true,
            BatchingMode::Static => self.in_flight.is_empty(),
        }
    }

    fn decide(&mut self, now: Timestamp) {
        if let Some(interval) = self.interval {
            let mut next = self.next_decision.unwrap_or(now);
            while next <= now {
                next = next + interval;
            }
            self.next_decision = Some(next);
        } else {
            self.next_decision = None;
        }
        if self.last_decision == Some(now) {
            return;
        }
        self.last_decision = Some(now);
        self.stats.decisions += 1;
        let obs = self.observe(now);
        match self.policy.as_mut() {
            Some(policy) => {
                let action = policy.decide(&obs);
                self.stats.policy_overrides = policy.overrides();
                self.enact(now, action);
            }
            None => self.pending_decision = Some(obs),
        }
    }

    /// Switches clock and cap to `action` (snapped onto the action space), skipping no-ops.
    fn enact(&mut self, now: Timestamp, action: Action) {
        let action = self.config.action_space.clamp(action);
        if action.freq != self.freq {
            self.freq = action.freq;
            self.last_switch = Some(now);
            self.stall_until = now + self.stall;
            self.stats.freq_switches += 1;
            self.commands.push_back(Command::SetFrequency(action.freq));
        }
        if action.batch != self.batch_cap {
            self.batch_cap = action.batch;
            self.stats.cap_changes += 1;
            self.commands.push_back(Command::SetBatchCap(action.batch));
        }
    }

    fn dispatch(&mut self, now: Timestamp) {
        if now < self.stall_until || self.queue.is_empty() {
            return;
        }
        let cap = self.batch_cap as usize;
        let n = match self.config.batching {
            BatchingMode::Continuous => cap.saturating_sub(self.in_flight.len()),
            BatchingMode::Static if self.in_flight.is_empty() => cap,
            BatchingMode::Static => 0,
        }
        .min(self.queue.len());
        if n == 0 {
            return;
        }
        let batch: Vec<Request> = self.queue.drain(..n).collect();
        for r in &batch {
            self.queued_prompt_tokens -= u64::from(r.input_tokens);
            self.queued_arrival_nanos -= u128::from(r.arrival.as_nanos());
            self.in_flight.insert(r.id, InFlight { arrival: r.arrival, first_token: None });
        }
        self.stats.dispatched += n as u64;
        self.commands.push_back(Command::Dispatch(batch));
    }
}

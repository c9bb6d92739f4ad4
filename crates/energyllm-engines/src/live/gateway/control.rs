//! The controller task: owns the [`Controller`], feeds it what the handlers and the poller
//! report, and carries out its commands with tokio time.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use energyllm_core::score::{endpoint_score, InstanceView, RouteQuery};
use energyllm_core::{Command, Controller, Event, Request, RequestId, Telemetry, Timestamp};

use super::access::AccessLine;
use super::energy::{account_energy, EnergyBook};
use super::handlers::InFlight;
use super::{GatewayConfig, GatewayMetrics};
use crate::live::actuate::{ActuatorReport, ActuatorThread, AtomicF64};

/// What the handlers and the poller tell the controller task.
pub(super) enum Msg {
    Arrival {
        req: Request,
        go: oneshot::Sender<Admitted>,
    },
    FirstToken(RequestId),
    /// A request ended; `booked` hears its final energy once the energy up to this instant is
    /// booked.
    Done {
        id: RequestId,
        outcome: Outcome,
        booked: Option<oneshot::Sender<f64>>,
    },
    /// The energy booked to a running request up to this instant.
    Energy {
        id: RequestId,
        reply: oneshot::Sender<f64>,
    },
    Telemetry {
        kv_usage_frac: Option<f64>,
    },
}

/// What an admitted request's handler gets: the guard that reports its end, and the energy
/// booked to it so far.
pub(super) struct Admitted {
    pub(super) guard: InFlight,
    pub(super) energy: Arc<AtomicF64>,
}

/// How an admitted request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Answered, with this many output tokens.
    Completed(u32),
    /// The upstream failed it (error status, unreachable, timeout, broken stream): an SLO miss.
    Failed,
    /// The upstream refused it as the client's mistake (4xx): not the server's miss.
    ClientError,
    /// The client went away first.
    Cancelled,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Completed(_) => "completed",
            Outcome::Failed => "failed",
            Outcome::ClientError => "client_error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The SLO attainment of the requests that ended in the last `window`: completed ones count by
/// their latency, failed ones as misses; client errors and cancellations do not count. The same
/// window gives the energy per output token of those requests (a failed one adds its energy and
/// no token). Counts are kept per second of the window, so memory stays bounded however high
/// the rate.
struct SloWindow {
    window: Duration,
    origin: Instant,
    /// Per second since `origin`, oldest first.
    seconds: VecDeque<WindowSecond>,
    total: WindowSecond,
}

#[derive(Clone, Copy, Default)]
struct WindowSecond {
    second: u64,
    met: u64,
    ended: u64,
    energy_j: f64,
    output_tokens: u64,
}

impl SloWindow {
    fn new(window: Duration, origin: Instant) -> Self {
        SloWindow { window, origin, seconds: VecDeque::new(), total: WindowSecond::default() }
    }
    fn push(&mut self, now: Instant, met: bool, energy_j: f64, output_tokens: u32) {
        let second = now.duration_since(self.origin).as_secs();
        if self.seconds.back().is_none_or(|s| s.second != second) {
            self.seconds.push_back(WindowSecond { second, ..WindowSecond::default() });
        }
        for s in [self.seconds.back_mut(), Some(&mut self.total)].into_iter().flatten() {
            s.met += u64::from(met);
            s.ended += 1;
            s.energy_j += energy_j.max(0.0);
            s.output_tokens += u64::from(output_tokens);
        }
    }
    /// Drops the seconds that fell out of the window.
    fn expire(&mut self, now: Instant) {
        let oldest = now.duration_since(self.origin).saturating_sub(self.window).as_secs();
        while self.seconds.front().is_some_and(|s| s.second < oldest) {
            let Some(s) = self.seconds.pop_front() else { break };
            self.total.met -= s.met;
            self.total.ended -= s.ended;
            self.total.energy_j -= s.energy_j;
            self.total.output_tokens -= s.output_tokens;
        }
        if self.seconds.is_empty() {
            // No drift from float subtraction once the window is empty.
            self.total = WindowSecond::default();
        }
    }
    /// The share met (NaN when none ended in the window).
    fn ratio(&mut self, now: Instant) -> f64 {
        self.expire(now);
        if self.total.ended == 0 {
            f64::NAN
        } else {
            self.total.met as f64 / self.total.ended as f64
        }
    }
    /// Joules per output token (NaN before a token).
    fn joules_per_token(&mut self, now: Instant) -> f64 {
        self.expire(now);
        if self.total.output_tokens == 0 {
            f64::NAN
        } else {
            self.total.energy_j / self.total.output_tokens as f64
        }
    }
}

/// A request in flight: the energy booked to it so far and when it arrived.
pub(super) struct Tracked {
    pub(super) energy: Arc<AtomicF64>,
    pub(super) arrival: Instant,
    /// The prompt's estimated tokens.
    pub(super) input_tokens: u32,
    /// When the first token went out, once it has.
    pub(super) first_token: Option<Instant>,
}

/// Runs the controller until the channel closes or `stop` fires; returns how the actuator ended.
pub(super) async fn run_controller(
    mut controller: Controller,
    tx: mpsc::UnboundedSender<Msg>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    mut stop: oneshot::Receiver<()>,
    actuator: ActuatorThread,
    metrics: Arc<GatewayMetrics>,
    config: GatewayConfig,
) -> ActuatorReport {
    let epoch = Instant::now();
    let stamp = |t: Instant| {
        Timestamp::from_nanos(t.duration_since(epoch).as_nanos().min(u128::from(u64::MAX)) as u64)
    };
    let slo = controller.config().slo;
    let mut waiting: HashMap<RequestId, (oneshot::Sender<Admitted>, Instant, u32)> = HashMap::new();
    // The typical request, for the endpoint score: moving means of completed requests' lengths.
    let mut typical = RouteQuery { input_tokens: 128, est_output_tokens: 256.0 };
    let mut last_score = None::<Instant>;
    let mut in_flight: HashMap<RequestId, Tracked> = HashMap::new();
    let readings = Arc::clone(actuator.readings());
    let mut book = EnergyBook { last_t: Instant::now(), last_counter_j: readings.energy_j.get() };
    let mut decisions = controller.stats().decisions;
    let mut window = SloWindow::new(Duration::from_secs_f64(config.slo_window_s), epoch);
    // Due at time zero: the first decision.
    controller.handle(Timestamp::ZERO, Event::Tick);
    loop {
        let now = Instant::now();
        account_energy(&mut book, now, &in_flight, &readings, &metrics);
        // Carry out the commands.
        while let Some(cmd) = controller.poll_command() {
            match cmd {
                Command::Dispatch(reqs) => {
                    for r in reqs {
                        metrics.queued.fetch_sub(1, Ordering::Relaxed);
                        let Some((go, arrival, input_tokens)) = waiting.remove(&r.id) else {
                            // Not announced by a handler (cannot happen): end it so the slot frees.
                            controller.handle(stamp(now), Event::Rejected(r.id));
                            continue;
                        };
                        metrics.queue_wait_s.observe(now.duration_since(arrival).as_secs_f64());
                        let energy = Arc::new(AtomicF64::new(0.0));
                        let tracked =
                            Tracked { energy: Arc::clone(&energy), arrival, input_tokens, first_token: None };
                        in_flight.insert(r.id, tracked);
                        // If the client has left, the admission comes back and is dropped here:
                        // its guard reports the request cancelled, which frees the slot.
                        let guard = InFlight::new(r.id, tx.clone(), Arc::clone(&metrics));
                        let _ = go.send(Admitted { guard, energy });
                    }
                    let n = in_flight.len();
                    readings.running.store(n, Ordering::Relaxed);
                    metrics.in_flight.store(n, Ordering::Relaxed);
                    metrics.max_in_flight.fetch_max(n, Ordering::Relaxed);
                }
                Command::SetFrequency(f) => {
                    metrics.decided_clock_mhz.store(u64::from(f.0), Ordering::Relaxed);
                    metrics.freq_switches.fetch_add(1, Ordering::Relaxed);
                    if !config.dry_run {
                        actuator.set_frequency(f);
                    }
                }
                Command::SetBatchCap(n) => metrics.batch_cap.store(u64::from(n), Ordering::Relaxed),
            }
        }
        let d = controller.stats().decisions;
        if d != decisions {
            decisions = d;
            metrics.decisions.store(d, Ordering::Relaxed);
            metrics.shield_overrides.store(controller.stats().policy_overrides, Ordering::Relaxed);
            actuator.decided();
        }
        metrics.slo_window_ratio.set(window.ratio(now));
        metrics.joules_per_output_token.set(window.joules_per_token(now));
        // The endpoint score, at most every 100 ms.
        if let Some(sm) = &config.score_model {
            if last_score.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100)) {
                last_score = Some(now);
                let view = InstanceView {
                    name: "",
                    queue_len: metrics.queued.load(Ordering::Relaxed),
                    running: in_flight.len(),
                    batch_cap: controller.batch_cap(),
                    freq: controller.freq(),
                    perf: &*sm.perf,
                    idle_power_w: sm.idle_power_w,
                    slo,
                    active: true,
                    ready_in_s: 0.0,
                };
                let s = endpoint_score(&view, &typical, sm.slo_margin);
                metrics.endpoint_score.set(s.score);
                for (g, v) in metrics.score_inputs.iter().zip([
                    s.prediction.e2e_s,
                    s.prediction.marginal_energy_j,
                    s.headroom(),
                ]) {
                    g.set(v);
                }
            }
        }
        let deadline = controller.poll_timeout().map(|t| epoch + Duration::from_nanos(t.as_nanos()));
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => Some(m),
                None => break,
            },
            _ = sleep_until_opt(deadline) => None,
            _ = &mut stop => break,
        };
        let now = Instant::now();
        let ts = stamp(now);
        // Book the energy up to this instant before the event changes who is in flight.
        account_energy(&mut book, now, &in_flight, &readings, &metrics);
        match msg {
            None => controller.handle(ts, Event::Tick),
            Some(Msg::Arrival { req, go }) => {
                waiting.insert(req.id, (go, now, req.input_tokens));
                controller.handle(ts, Event::Arrival(Request { arrival: ts, ..req }));
            }
            Some(Msg::FirstToken(id)) => {
                if let Some(t) = in_flight.get_mut(&id) {
                    t.first_token.get_or_insert(now);
                }
                controller.handle(ts, Event::FirstToken(id))
            }
            Some(Msg::Energy { id, reply }) => {
                // An unknown request gets no answer: the asker falls back to what it holds.
                if let Some(t) = in_flight.get(&id) {
                    let _ = reply.send(t.energy.get());
                }
            }
            Some(Msg::Done { id, outcome, booked }) => {
                if let Some(t) = in_flight.remove(&id) {
                    let energy_j = t.energy.get();
                    metrics.request_energy_j.add(energy_j);
                    if let Some(reply) = booked {
                        let _ = reply.send(energy_j);
                    }
                    let e2e_s = now.duration_since(t.arrival).as_secs_f64();
                    // Without a streamed first token the whole answer came at once.
                    let ttft_s = t.first_token.map_or(e2e_s, |f| f.duration_since(t.arrival).as_secs_f64());
                    match outcome {
                        Outcome::Completed(out) => {
                            typical.est_output_tokens =
                                0.9 * typical.est_output_tokens + 0.1 * f64::from(out);
                            typical.input_tokens = ((0.9 * f64::from(typical.input_tokens)
                                + 0.1 * f64::from(t.input_tokens))
                                as u32)
                                .max(1);
                            let tpot_s = (out > 1).then(|| (e2e_s - ttft_s) / f64::from(out - 1));
                            let met = slo.is_met(e2e_s, ttft_s, tpot_s);
                            metrics.slo_met.fetch_add(u64::from(met), Ordering::Relaxed);
                            window.push(now, met, energy_j, out);
                            metrics.ttft_s.observe(ttft_s);
                            metrics.e2e_s.observe(e2e_s);
                            if let Some(tpot) = tpot_s {
                                metrics.tpot_s.observe(tpot);
                            }
                            controller.handle(ts, Event::Completed { id, output_tokens: out });
                        }
                        Outcome::Failed => {
                            window.push(now, false, energy_j, 0);
                            controller.handle(ts, Event::Rejected(id));
                        }
                        Outcome::ClientError | Outcome::Cancelled => {
                            controller.handle(ts, Event::Rejected(id))
                        }
                    }
                    let tokens = match outcome {
                        Outcome::Completed(n) => n,
                        _ => 0,
                    };
                    let line = AccessLine {
                        id: Some(id.0),
                        outcome: outcome.name(),
                        status: None,
                        output_tokens: tokens,
                        ttft_s,
                        e2e_s,
                        energy_j,
                    };
                    super::access::log(config.access_log, &line);
                }
                let n = in_flight.len();
                readings.running.store(n, Ordering::Relaxed);
                metrics.in_flight.store(n, Ordering::Relaxed);
            }
            Some(Msg::Telemetry { kv_usage_frac }) => {
                let power = readings.power_w.get();
                let t = Telemetry { power_w: Some(power).filter(|p| p.is_finite()), kv_usage_frac };
                controller.handle(ts, Event::Telemetry(t));
            }
        }
    }
    actuator.stop()
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slo_window_forgets_what_left_it() {
        let t0 = Instant::now();
        let mut w = SloWindow::new(Duration::from_secs(10), t0);
        assert!(w.ratio(t0).is_nan(), "nothing ended yet");
        assert!(w.joules_per_token(t0).is_nan());
        for k in 0..4 {
            w.push(t0 + Duration::from_millis(100 * k), k % 2 == 0, 10.0, 100);
        }
        w.push(t0 + Duration::from_secs(5), false, 6.0, 0);
        assert!((w.ratio(t0 + Duration::from_secs(6)) - 0.4).abs() < 1e-12);
        // 46 J over 400 tokens: the failed request's energy counts, its tokens do not exist.
        assert!((w.joules_per_token(t0 + Duration::from_secs(6)) - 0.115).abs() < 1e-12);
        // Twelve seconds on, the first second's requests are out; the miss at 5 s is not.
        assert_eq!(w.ratio(t0 + Duration::from_secs(12)), 0.0);
        assert!(w.joules_per_token(t0 + Duration::from_secs(12)).is_nan(), "no token left in the window");
        assert_eq!(w.seconds.len(), 1);
        assert!(w.ratio(t0 + Duration::from_secs(20)).is_nan());
    }
}

//! Power, clock and energy over a run: a log of samples, energy from the device counter or from
//! integrated power, per-request energy attribution, and a thread that samples a live device.
//!
//! [`TelemetryLog`] is sans-clock: the caller passes each sample's [`Timestamp`], so the energy
//! arithmetic is tested deterministically and the simulator, the profiler and the live path share
//! it. [`Sampler`] is the live layer on top: a thread that reads an actuator every period and
//! stamps the readings with the time since an origin `Instant` that the live driver also uses.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use energyllm_core::{ActuatorError, FrequencyActuator, Mhz, Timestamp};

use crate::Error;

/// One reading of a device, before it is placed in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Board power, in watts.
    pub power_w: f64,
    /// SM clock, if the device reports it.
    pub freq: Option<Mhz>,
    /// The device's cumulative energy counter, in joules, if it has a trusted one.
    pub counter_j: Option<f64>,
}

/// Reads power, clock and energy counter from an actuator. Only power is required; a clock or
/// counter that cannot be read is left out of the reading.
pub fn read_actuator<A: FrequencyActuator + ?Sized>(actuator: &A) -> Result<Reading, ActuatorError> {
    Ok(Reading {
        power_w: actuator.power_w()?,
        freq: actuator.current_frequency().ok(),
        counter_j: actuator.energy_j().ok().flatten(),
    })
}

/// A reading placed in time, with the run's energy up to it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was taken.
    pub t: Timestamp,
    /// Board power, in watts.
    pub power_w: f64,
    /// SM clock, if known.
    pub freq: Option<Mhz>,
    /// The device's energy counter, in joules, if it has a trusted one.
    pub counter_j: Option<f64>,
    /// Energy since the first sample, in joules.
    pub energy_j: f64,
}

/// A request's time on the device, for energy attribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSpan {
    /// When the engine started it.
    pub start: Timestamp,
    /// When it ended.
    pub end: Timestamp,
}

/// Energy split between requests (see [`TelemetryLog::attribute`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// Energy of each request, in the order of the spans given, in joules.
    pub per_request_j: Vec<f64>,
    /// Energy while no request was running, in joules.
    pub idle_j: f64,
    /// All energy in the log, in joules (`idle_j` plus the sum of `per_request_j`).
    pub total_j: f64,
}

/// Most errors a log keeps; later ones are only counted.
const MAX_KEPT_ERRORS: usize = 100;

/// Samples of one device over a run.
///
/// Energy between two samples comes from the device counter when both samples carry one and it
/// did not go backwards, and otherwise from the trapezoid rule on power: a device without a
/// (trusted) counter, or a counter that wrapped or reset, still gives an energy figure.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetryLog {
    samples: Vec<Sample>,
    counter_intervals: u64,
    integrated_intervals: u64,
    errors: Vec<(Timestamp, String)>,
    error_count: u64,
}

impl TelemetryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reading taken at `t`. Time must not go back and power must be a finite number
    /// ≥ 0; a reading that breaks either is refused and the log is unchanged.
    pub fn record(&mut self, t: Timestamp, reading: Reading) -> Result<Sample, Error> {
        if !(reading.power_w.is_finite() && reading.power_w >= 0.0) {
            return Err(Error::Telemetry(format!(
                "power reading {} W at {t} is not a finite number ≥ 0",
                reading.power_w
            )));
        }
        let counter_j = reading.counter_j.filter(|c| c.is_finite());
        let energy_j = match self.samples.last() {
            None => 0.0,
            Some(prev) if t < prev.t => {
                return Err(Error::Telemetry(format!(
                    "sample at {t} is earlier than the previous one at {}",
                    prev.t
                )));
            }
            Some(prev) => {
                let e = match (prev.counter_j, counter_j) {
                    (Some(a), Some(b)) if b >= a => {
                        self.counter_intervals += 1;
                        b - a
                    }
                    _ => {
                        self.integrated_intervals += 1;
                        0.5 * (prev.power_w + reading.power_w) * t.secs_since(prev.t)
                    }
                };
                prev.energy_j + e
            }
        };
        let sample = Sample { t, power_w: reading.power_w, freq: reading.freq, counter_j, energy_j };
        self.samples.push(sample);
        Ok(sample)
    }

    /// Notes a failed reading (the sampler goes on; the log keeps the first few messages).
    pub fn record_error(&mut self, t: Timestamp, message: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_KEPT_ERRORS {
            self.errors.push((t, message));
        }
    }

    /// The samples, in time order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
    /// The last sample.
    pub fn last(&self) -> Option<&Sample> {
        self.samples.last()
    }
    /// Failed readings (the first [`MAX_KEPT_ERRORS`](self) of them) with their times.
    pub fn errors(&self) -> &[(Timestamp, String)] {
        &self.errors
    }
    /// How many readings failed.
    pub fn error_count(&self) -> u64 {
        self.error_count
    }
    /// Intervals whose energy came from the device counter.
    pub fn counter_intervals(&self) -> u64 {
        self.counter_intervals
    }
    /// Intervals whose energy came from integrating power.
    pub fn integrated_intervals(&self) -> u64 {
        self.integrated_intervals
    }

    /// Energy from the first to the last sample, in joules.
    pub fn energy_j(&self) -> f64 {
        self.samples.last().map_or(0.0, |s| s.energy_j)
    }

    /// Time from the first to the last sample, in seconds.
    pub fn duration_s(&self) -> f64 {
        match (self.samples.first(), self.samples.last()) {
            (Some(a), Some(b)) => b.t.secs_since(a.t),
            _ => 0.0,
        }
    }

    /// Energy from the first sample up to `t`, in joules. Within an interval energy accrues
    /// evenly; before the first sample it is 0 and after the last it stays at the total.
    pub fn energy_at(&self, t: Timestamp) -> f64 {
        let i = self.samples.partition_point(|s| s.t <= t);
        if i == 0 {
            return 0.0;
        }
        let a = &self.samples[i - 1];
        match self.samples.get(i) {
            None => a.energy_j,
            Some(b) => {
                let span = b.t.secs_since(a.t);
                let frac = if span > 0.0 { t.secs_since(a.t) / span } else { 1.0 };
                a.energy_j + (b.energy_j - a.energy_j) * frac
            }
        }
    }

    /// Energy between `t0` and `t1` (within the sampled window), in joules.
    pub fn energy_between(&self, t0: Timestamp, t1: Timestamp) -> f64 {
        (self.energy_at(t1) - self.energy_at(t0)).max(0.0)
    }

    /// Mean power between `t0` and `t1`, in watts; `None` for an empty window. This is what a
    /// live driver reports to the controller as `Telemetry { power_w }`.
    pub fn mean_power_w(&self, t0: Timestamp, t1: Timestamp) -> Option<f64> {
        let first = self.samples.first()?.t;
        let last = self.samples.last()?.t;
        let (a, b) = (t0.max(first), t1.min(last));
        (b > a).then(|| self.energy_between(a, b) / b.secs_since(a))
    }

    /// Splits the log's energy between requests.
    ///
    /// At every instant the energy being drawn is shared equally by the requests running then;
    /// energy drawn while none runs is `idle_j`. Each request gets its share of every instant it
    /// spans, so shares add up to the total exactly (up to rounding). Only the sampled window
    /// counts: the part of a span outside it gets nothing. An equal split is the usual choice
    /// when the engine does not report per-request work; a request that runs longer alongside
    /// fewer others gets more.
    pub fn attribute(&self, spans: &[RequestSpan]) -> Result<Attribution, Error> {
        for (i, s) in spans.iter().enumerate() {
            if s.end < s.start {
                return Err(Error::Telemetry(format!(
                    "request span {i} ends at {} before it starts at {}",
                    s.end, s.start
                )));
            }
        }
        let total_j = self.energy_j();
        let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) else {
            return Ok(Attribution { per_request_j: vec![0.0; spans.len()], idle_j: 0.0, total_j });
        };
        let clamp = |t: Timestamp| t.clamp(first.t, last.t);

        // Start/end events inside the window, in time order; +1 opens a span, -1 closes one.
        let mut events: Vec<(Timestamp, i64)> = Vec::with_capacity(2 * spans.len());
        for s in spans {
            events.push((clamp(s.start), 1));
            events.push((clamp(s.end), -1));
        }
        events.sort_unstable();
        let mut points: Vec<Timestamp> =
            self.samples.iter().map(|s| s.t).chain(events.iter().map(|e| e.0)).collect();
        points.sort_unstable();
        points.dedup();

        // share[k]: energy per running request accumulated up to points[k]. A request's energy
        // is share(end) - share(start), so the sweep is O((samples + spans) log).
        let mut share = Vec::with_capacity(points.len());
        let (mut acc, mut idle_j, mut running, mut ev) = (0.0_f64, 0.0_f64, 0_i64, 0_usize);
        let mut prev_energy = self.energy_at(points[0]);
        share.push(0.0);
        for w in points.windows(2) {
            while ev < events.len() && events[ev].0 <= w[0] {
                running += events[ev].1;
                ev += 1;
            }
            let e = self.energy_at(w[1]);
            let de = e - prev_energy;
            prev_energy = e;
            if running > 0 {
                acc += de / running as f64;
            } else {
                idle_j += de;
            }
            share.push(acc);
        }
        let share_at = |t: Timestamp| share[points.partition_point(|p| *p < clamp(t)).min(share.len() - 1)];
        let per_request_j = spans.iter().map(|s| (share_at(s.end) - share_at(s.start)).max(0.0)).collect();
        Ok(Attribution { per_request_j, idle_j, total_j })
    }
}

/// One point of an energy-counter check: time, sampled power and the counter.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterProbe {
    /// Seconds since the check began.
    pub t_s: f64,
    /// Sampled board power, in watts.
    pub power_w: f64,
    /// The device's energy counter, in joules.
    pub counter_j: f64,
}

/// What a counter check concluded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CounterVerdict {
    /// The counter advanced consistently with sampled power.
    Trusted {
        /// Counter advance over integrated power (1 is perfect agreement).
        ratio: f64,
        /// Length of the check, in seconds.
        window_s: f64,
    },
    /// The counter disagreed with sampled power; energy is integrated from power instead.
    Rejected {
        /// Why, with the figures.
        reason: String,
    },
}

impl CounterVerdict {
    /// Whether the counter may be used.
    pub fn is_trusted(&self) -> bool {
        matches!(self, CounterVerdict::Trusted { .. })
    }
}

/// Below this difference (joules) the counter and integrated power agree whatever the ratio:
/// over a short idle window both are a few joules and the counter's update cadence dominates.
pub const COUNTER_SLACK_J: f64 = 1.0;

/// Checks that an energy counter advances consistently with sampled power over a short window:
/// the counter's advance must be within `tolerance` (a fraction, e.g. 0.25) of the trapezoid
/// integral of power, or within [`COUNTER_SLACK_J`] of it. A counter that goes backwards, stands
/// still while power is drawn, or runs at the wrong scale is rejected.
pub fn check_energy_counter(probes: &[CounterProbe], tolerance: f64) -> CounterVerdict {
    let reject = |reason: String| CounterVerdict::Rejected { reason };
    let (Some(first), Some(last)) = (probes.first(), probes.last()) else {
        return reject("no samples were taken".into());
    };
    let window_s = last.t_s - first.t_s;
    if probes.len() < 2 || window_s.is_nan() || window_s <= 0.0 {
        return reject("the check needs at least two samples over a positive window".into());
    }
    if probes.iter().any(|p| !(p.t_s.is_finite() && p.power_w.is_finite() && p.counter_j.is_finite())) {
        return reject("a sample was not a finite number".into());
    }
    let mut integrated_j = 0.0;
    for w in probes.windows(2) {
        if w[1].counter_j < w[0].counter_j {
            return reject(format!(
                "the counter went backwards ({:.3} J to {:.3} J)",
                w[0].counter_j, w[1].counter_j
            ));
        }
        integrated_j += 0.5 * (w[0].power_w + w[1].power_w) * (w[1].t_s - w[0].t_s);
    }
    let advance_j = last.counter_j - first.counter_j;
    let ratio = if integrated_j > 0.0 { advance_j / integrated_j } else { f64::NAN };
    if (advance_j - integrated_j).abs() <= COUNTER_SLACK_J || (ratio - 1.0).abs() <= tolerance {
        return CounterVerdict::Trusted { ratio, window_s };
    }
    reject(format!(
        "over {window_s:.2} s the counter advanced {advance_j:.2} J but sampled power integrates to \
         {integrated_j:.2} J (ratio {ratio:.2}, tolerance {tolerance}); energy is integrated from \
         sampled power instead"
    ))
}

/// Settings of a live [`Sampler`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// Seconds between samples. Default: 0.1 (NVML and amdgpu refresh power every 10–100 ms).
    pub period_s: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { period_s: 0.1 }
    }
}

/// A thread that samples a live device every period into a [`TelemetryLog`].
///
/// Timestamps are the time since `origin`, the same `Instant` the live driver maps its own
/// [`Timestamp`]s from, so samples line up with request records. A failed reading is noted in the
/// log and sampling goes on. Stopping takes one last sample so the log covers the whole run.
pub struct Sampler {
    log: Arc<Mutex<TelemetryLog>>,
    stop: mpsc::Sender<()>,
    handle: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling with `read` (e.g. `move || read_actuator(&gpu)`) every `period`.
    pub fn spawn<F>(origin: Instant, period: Duration, mut read: F) -> Result<Sampler, Error>
    where
        F: FnMut() -> Result<Reading, ActuatorError> + Send + 'static,
    {
        if period.is_zero() {
            return Err(Error::Telemetry("the sampling period must be positive".into()));
        }
        let log = Arc::new(Mutex::new(TelemetryLog::new()));
        let (stop, stop_rx) = mpsc::channel::<()>();
        let thread_log = Arc::clone(&log);
        let handle = std::thread::Builder::new()
            .name("energyllm-telemetry".into())
            .spawn(move || {
                let sample = |read: &mut F| {
                    let t = since(origin);
                    let outcome = read().map_err(|e| e.to_string());
                    let mut log = lock(&thread_log);
                    if let Err(msg) = outcome.and_then(|r| log.record(t, r).map_err(|e| e.to_string())) {
                        log.record_error(t, msg);
                    }
                };
                loop {
                    let started = Instant::now();
                    sample(&mut read);
                    match stop_rx.recv_timeout(period.saturating_sub(started.elapsed())) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        // One last sample at the stop, so the log covers the whole run.
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                            sample(&mut read);
                            break;
                        }
                    }
                }
            })
            .map_err(|e| Error::Telemetry(format!("cannot start the sampler thread: {e}")))?;
        Ok(Sampler { log, stop, handle: Some(handle) })
    }

    /// A copy of the log so far.
    pub fn snapshot(&self) -> TelemetryLog {
        lock(&self.log).clone()
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<Sample> {
        lock(&self.log).last().copied()
    }

    /// Stops the thread and returns the log.
    pub fn stop(mut self) -> TelemetryLog {
        self.shutdown();
        std::mem::take(&mut *lock(&self.log))
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn since(origin: Instant) -> Timestamp {
    Timestamp::from_nanos(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// The log is plain data: a panic in a reading closure cannot leave it half-written.
fn lock(log: &Mutex<TelemetryLog>) -> MutexGuard<'_, TelemetryLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(s)
    }
    fn power(p: f64) -> Reading {
        Reading { power_w: p, freq: None, counter_j: None }
    }

    #[test]
    fn integrates_power_by_trapezoids() {
        let mut log = TelemetryLog::new();
        log.record(t(0.0), power(100.0)).unwrap();
        log.record(t(1.0), power(200.0)).unwrap();
        log.record(t(3.0), power(200.0)).unwrap();
        assert!((log.energy_j() - (150.0 + 400.0)).abs() < 1e-9);
        assert_eq!((log.counter_intervals(), log.integrated_intervals()), (0, 2));
        assert!((log.energy_at(t(0.5)) - 75.0).abs() < 1e-9);
        assert!((log.energy_between(t(1.0), t(2.0)) - 200.0).abs() < 1e-9);
        assert!((log.mean_power_w(t(1.0), t(3.0)).unwrap() - 200.0).abs() < 1e-9);
        assert_eq!(log.energy_at(t(9.0)), log.energy_j());
    }

    #[test]
    fn prefers_the_counter_and_falls_back_when_it_goes_back() {
        let mut log = TelemetryLog::new();
        let r = |p, c| Reading { power_w: p, freq: Some(Mhz(1410)), counter_j: Some(c) };
        log.record(t(0.0), r(100.0, 1000.0)).unwrap();
        log.record(t(1.0), r(100.0, 1120.0)).unwrap(); // counter: 120 J, not 100
        log.record(t(2.0), r(100.0, 5.0)).unwrap(); // reset: integrate, 100 J
        log.record(t(3.0), r(100.0, 105.0)).unwrap(); // counter again: 100 J
        assert!((log.energy_j() - 320.0).abs() < 1e-9);
        assert_eq!((log.counter_intervals(), log.integrated_intervals()), (2, 1));
    }

    #[test]
    fn refuses_time_going_back_and_bad_power() {
        let mut log = TelemetryLog::new();
        log.record(t(1.0), power(1.0)).unwrap();
        assert!(log.record(t(0.5), power(1.0)).unwrap_err().to_string().contains("earlier"));
        assert!(log.record(t(2.0), power(f64::NAN)).is_err());
        assert!(log.record(t(2.0), power(-1.0)).is_err());
        assert_eq!(log.samples().len(), 1);
    }

    #[test]
    fn attribution_shares_concurrent_energy_equally_and_keeps_idle_apart() {
        let mut log = TelemetryLog::new();
        for s in 0..=10 {
            log.record(t(f64::from(s)), power(100.0)).unwrap(); // 100 J per second
        }
        let spans = [
            RequestSpan { start: t(1.0), end: t(5.0) },  // alone 1-3, shared 3-5
            RequestSpan { start: t(3.0), end: t(7.0) },  // shared 3-5, alone 5-7
            RequestSpan { start: t(8.5), end: t(8.5) },  // zero length
            RequestSpan { start: t(9.0), end: t(12.0) }, // runs past the window
        ];
        let a = log.attribute(&spans).unwrap();
        let want = [200.0 + 100.0, 100.0 + 200.0, 0.0, 100.0];
        for (got, want) in a.per_request_j.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{:?}", a.per_request_j);
        }
        assert!((a.idle_j - 300.0).abs() < 1e-9, "{a:?}"); // 0-1, 7-9
        assert!((a.idle_j + a.per_request_j.iter().sum::<f64>() - a.total_j).abs() < 1e-9);
        let bad = [RequestSpan { start: t(2.0), end: t(1.0) }];
        assert!(log.attribute(&bad).is_err());
    }

    #[test]
    fn counter_check_accepts_agreement_and_rejects_stuck_or_scaled_counters() {
        let probes = |scale: f64| -> Vec<CounterProbe> {
            (0..=10)
                .map(|i| {
                    let t_s = f64::from(i) * 0.1;
                    CounterProbe { t_s, power_w: 60.0, counter_j: 5000.0 + scale * 60.0 * t_s }
                })
                .collect()
        };
        assert!(check_energy_counter(&probes(1.0), 0.25).is_trusted());
        assert!(check_energy_counter(&probes(1.1), 0.25).is_trusted());
        let stuck = check_energy_counter(&probes(0.0), 0.25);
        assert!(
            matches!(&stuck, CounterVerdict::Rejected { reason } if reason.contains("integrates to 60.00 J")),
            "{stuck:?}"
        );
        assert!(!check_energy_counter(&probes(1000.0), 0.25).is_trusted()); // mJ read as J
        let mut back = probes(1.0);
        back[5].counter_j = 0.0;
        assert!(
            matches!(check_energy_counter(&back, 0.25), CounterVerdict::Rejected { reason } if reason.contains("backwards"))
        );
        assert!(!check_energy_counter(&probes(1.0)[..1], 0.25).is_trusted());
    }

    #[test]
    fn the_live_sampler_records_until_stopped_and_survives_failed_readings() {
        let origin = Instant::now();
        let mut n = 0_u32;
        let sampler = Sampler::spawn(origin, Duration::from_millis(2), move || {
            n += 1;
            if n % 3 == 0 {
                Err(ActuatorError::Backend("flaky".into()))
            } else {
                Ok(Reading { power_w: 100.0, freq: Some(Mhz(1410)), counter_j: None })
            }
        })
        .unwrap();
        // Wait (bounded) for a few samples; nothing about timing is asserted.
        for _ in 0..10_000 {
            if sampler.snapshot().samples().len() >= 5 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(sampler.latest().is_some());
        let log = sampler.stop();
        assert!(log.samples().len() >= 5);
        assert!(log.samples().windows(2).all(|w| w[0].t <= w[1].t));
        assert!(
            (log.energy_j() - 100.0 * log.duration_s()).abs() < 1e-6,
            "{} vs {}",
            log.energy_j(),
            log.duration_s()
        );
        assert!(log.error_count() >= 1 && log.errors()[0].1 == "flaky");
        assert!(Sampler::spawn(origin, Duration::ZERO, || Ok(Reading::default())).is_err());
    }

    #[test]
    fn a_guarded_actuator_can_be_sampled_while_the_controller_holds_it() {
        use crate::{ClockGuard, GpuSpec, GuardConfig, SharedSimGpu, SimGpu};
        let gpu = SharedSimGpu::new(SimGpu::new(GpuSpec::builtin("a100-40gb").unwrap()));
        let mut guard = ClockGuard::new(gpu, &GuardConfig::drop_only()).unwrap();
        let reader = guard.reader();
        let sampler =
            Sampler::spawn(Instant::now(), Duration::from_millis(1), move || reader.reading()).unwrap();
        guard.set_frequency(Mhz(810)).unwrap();
        for _ in 0..10_000 {
            if sampler.latest().is_some_and(|s| s.freq == Some(Mhz(810))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let log = sampler.stop();
        assert_eq!(log.last().unwrap().freq, Some(Mhz(810)));
        assert!(log.counter_intervals() > 0);
    }

    proptest::proptest! {
        #[test]
        fn attribution_conserves_energy(
            powers in proptest::collection::vec(0.0f64..500.0, 2..20),
            spans in proptest::collection::vec((0u64..30, 0u64..10), 0..12),
        ) {
            let mut log = TelemetryLog::new();
            for (i, p) in powers.iter().enumerate() {
                log.record(t(i as f64), power(*p)).unwrap();
            }
            let spans: Vec<RequestSpan> = spans.iter().map(|&(s, d)| RequestSpan { start: t(s as f64 * 0.7), end: t((s + d) as f64 * 0.7) }).collect();
            let a = log.attribute(&spans).unwrap();
            let sum = a.idle_j + a.per_request_j.iter().sum::<f64>();
            proptest::prop_assert!((sum - a.total_j).abs() <= 1e-6 * a.total_j.max(1.0));
            proptest::prop_assert!(a.per_request_j.iter().all(|e| *e >= 0.0));
        }
    }
}

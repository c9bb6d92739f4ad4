//! Clocks always restored: a guard around an actuator that puts the device back to its default
//! clock management on drop, on SIGINT/SIGTERM, on panic, and when the controller stops deciding.
//!
//! A locked GPU clock outlives the process that set it: NVML locks and amdgpu `manual` levels stay
//! until someone resets them or the driver reloads. A crashed or killed controller would leave a
//! shared GPU slow (or fast and hot) for every later job. [`ClockGuard`] closes each way out:
//!
//! - **drop** (normal exit, `?` returns, unwinding): `Drop` resets.
//! - **SIGINT/SIGTERM**: a process-wide thread (signal-hook) resets every live guard, then lets the
//!   signal end the process the way it would have (exit status "killed by SIGTERM").
//! - **panic** in any thread: a chained panic hook resets every live guard before the panic goes on
//!   (this also covers `panic = "abort"` builds, where no destructor runs).
//! - **watchdog**: if the controller has not decided for the configured time, a thread resets the
//!   clock; the next decision re-applies the clock the controller last asked for.
//!
//! SIGKILL, power loss and kernel panics cannot be caught by any process; for those the driver's
//! own reset on reload is the last line (and `energyllm hw info` shows a clock left locked).
//!
//! The guard is itself a [`FrequencyActuator`], so a driver uses it in place of the actuator it
//! wraps; `set_frequency` and [`ClockGuard::decided`] feed the watchdog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, TryLockError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use energyllm_core::{ActuatorError, FrequencyActuator, Mhz};

use crate::telemetry::{read_actuator, Reading};

/// Why a guard restored the default clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreReason {
    /// `reset` was called.
    Explicit,
    /// The guard was dropped.
    Drop,
    /// The process received this signal (2 = SIGINT, 15 = SIGTERM).
    Signal(i32),
    /// A thread panicked.
    Panic,
    /// The controller had not decided within the watchdog time.
    Watchdog,
}

/// What a [`ClockGuard`] watches for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Seconds without a decision after which the clocks are restored; 0 turns the watchdog
    /// off. Default: 30 (many decision epochs: a stuck controller, not a slow one).
    pub watchdog_s: f64,
    /// Restore on SIGINT and SIGTERM, then let the signal end the process. Turn it off only if
    /// the program handles those signals itself and drops the guard on its way out. Default: true.
    pub restore_on_signal: bool,
    /// Restore when any thread panics. Default: true.
    pub restore_on_panic: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig { watchdog_s: 30.0, restore_on_signal: true, restore_on_panic: true }
    }
}

impl GuardConfig {
    /// Drop only: no watchdog, no signal handler, no panic hook.
    pub fn drop_only() -> Self {
        GuardConfig { watchdog_s: 0.0, restore_on_signal: false, restore_on_panic: false }
    }

    fn watchdog(&self) -> Result<Option<Duration>, ActuatorError> {
        let s = self.watchdog_s;
        if s == 0.0 {
            Ok(None)
        } else if s.is_finite() && s > 0.0 {
            Ok(Some(Duration::from_secs_f64(s)))
        } else {
            Err(ActuatorError::Backend(format!(
                "clock guard: `watchdog_s` must be a positive number of seconds (0 turns it off), got {s}"
            )))
        }
    }
}

struct Inner<A> {
    actuator: A,
    /// The device may be off its default clocks because of us.
    dirty: bool,
    /// The clock the controller last asked for.
    requested: Option<Mhz>,
    last_decision: Instant,
    last_restore: Option<RestoreReason>,
    restores: u64,
}

impl<A: FrequencyActuator> Inner<A> {
    /// Resets if this guard changed anything; a failed reset leaves the guard dirty so that a
    /// later path (drop, signal) tries again.
    fn restore(&mut self, reason: RestoreReason) -> Result<(), ActuatorError> {
        if !self.dirty {
            return Ok(());
        }
        self.last_restore = Some(reason);
        self.restores += 1;
        self.actuator.reset()?;
        self.dirty = false;
        Ok(())
    }
}

struct Armed<A> {
    inner: Mutex<Inner<A>>,
    name: String,
    watchdog: Option<Duration>,
    on_signal: bool,
    on_panic: bool,
}

impl<A> Armed<A> {
    /// The guard's state is a flag and a few numbers: a panic while it was held cannot leave it
    /// in a state that makes a reset wrong, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Inner<A>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Like `lock`, but gives up after about `patience`: the panic hook must not deadlock on a
    /// lock that the panicking thread itself holds.
    fn lock_within(&self, patience: Duration) -> Option<MutexGuard<'_, Inner<A>>> {
        let until = Instant::now() + patience;
        loop {
            match self.inner.try_lock() {
                Ok(g) => return Some(g),
                Err(TryLockError::Poisoned(e)) => return Some(e.into_inner()),
                Err(TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(TryLockError::WouldBlock) => return None,
            }
        }
    }
}

/// A guard seen from the process-wide signal thread and panic hook.
trait Restorable: Send + Sync {
    /// `None` if this guard does not watch for `reason` or has nothing to restore.
    fn restore_from(&self, reason: RestoreReason) -> Option<Result<(), String>>;
    fn name(&self) -> String;
}

impl<A: FrequencyActuator> Restorable for Armed<A> {
    fn restore_from(&self, reason: RestoreReason) -> Option<Result<(), String>> {
        // Bounded waits: a signal must still end the process if a device call hangs, and the
        // panic hook must not wait for a lock its own thread holds.
        let patience = match reason {
            RestoreReason::Signal(_) if self.on_signal => Duration::from_secs(5),
            RestoreReason::Panic if self.on_panic => Duration::from_millis(200),
            _ => return None,
        };
        let Some(mut inner) = self.lock_within(patience) else {
            return Some(Err(format!("the actuator stayed busy for {patience:?}")));
        };
        inner.dirty.then(|| inner.restore(reason).map_err(|e| e.to_string()))
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

type Registry = Vec<(u64, Weak<dyn Restorable>)>;
static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Restores every live guard that watches for `reason`; returns (restored, failed) messages.
fn restore_all(reason: RestoreReason) -> Vec<Result<String, String>> {
    // Upgrade under the registry lock, restore outside it: a restore may take a while.
    let live: Vec<Arc<dyn Restorable>> = registry().iter().filter_map(|(_, w)| w.upgrade()).collect();
    live.iter()
        .filter_map(|g| {
            g.restore_from(reason).map(|r| match r {
                Ok(()) => Ok(g.name()),
                Err(e) => Err(format!("{}: {e}", g.name())),
            })
        })
        .collect()
}

fn install_signal_thread() -> Result<(), ActuatorError> {
    static SIGNALS: OnceLock<Result<(), String>> = OnceLock::new();
    let installed = SIGNALS.get_or_init(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .map_err(|e| format!("cannot install the SIGINT/SIGTERM handler: {e}"))?;
        std::thread::Builder::new()
            .name("energyllm-clock-guard".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    for outcome in restore_all(RestoreReason::Signal(sig)) {
                        match outcome {
                            Ok(name) => eprintln!("energyllm: signal {sig}: restored default clocks on `{name}`"),
                            Err(e) => eprintln!(
                                "energyllm: signal {sig}: could NOT restore default clocks on {e}; reset them by hand (e.g. `nvidia-smi -rgc`, or write `auto` to power_dpm_force_performance_level)"
                            ),
                        }
                    }
                    // End the process the way the signal would have; exit if that fails.
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                    std::process::exit(128 + sig);
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start the signal thread: {e}"))
    });
    installed.clone().map_err(|e| ActuatorError::Backend(format!("clock guard: {e}")))
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            for outcome in restore_all(RestoreReason::Panic) {
                if let Err(e) = outcome {
                    eprintln!("energyllm: panic: could NOT restore default clocks on {e}");
                }
            }
            previous(info);
        }));
    });
}

struct Watchdog {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

/// Keeps an actuator's clocks restorable from every way a process can stop (see the module
/// docs). Use it as the actuator: it implements [`FrequencyActuator`].
pub struct ClockGuard<A: FrequencyActuator + 'static> {
    armed: Arc<Armed<A>>,
    id: u64,
    name: String,
    watchdog: Option<Watchdog>,
}

impl<A: FrequencyActuator + 'static> ClockGuard<A> {
    /// Guards `actuator`. With the default config this installs the process-wide signal thread
    /// and panic hook (once per process) and starts a watchdog thread.
    pub fn new(actuator: A, config: &GuardConfig) -> Result<Self, ActuatorError> {
        let watchdog_after = config.watchdog()?;
        if config.restore_on_signal {
            install_signal_thread()?;
        }
        if config.restore_on_panic {
            install_panic_hook();
        }
        let name = actuator.name().to_owned();
        let armed = Arc::new(Armed {
            inner: Mutex::new(Inner {
                actuator,
                dirty: false,
                requested: None,
                last_decision: Instant::now(),
                last_restore: None,
                restores: 0,
            }),
            name: name.clone(),
            watchdog: watchdog_after,
            on_signal: config.restore_on_signal,
            on_panic: config.restore_on_panic,
        });
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let weak: Weak<dyn Restorable> = Arc::downgrade(&armed) as Weak<dyn Restorable>;
        registry().push((id, weak));
        let watchdog = match watchdog_after {
            None => None,
            Some(after) => {
                let (stop, stop_rx) = mpsc::channel::<()>();
                let weak = Arc::downgrade(&armed);
                let poll = (after / 4).clamp(Duration::from_millis(1), Duration::from_secs(1));
                let handle = std::thread::Builder::new()
                    .name("energyllm-clock-watchdog".into())
                    .spawn(move || {
                        while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(poll) {
                            let Some(armed) = weak.upgrade() else { break };
                            if let Some(Err(e)) = poll_watchdog(&armed, Instant::now()) {
                                eprintln!("energyllm: watchdog: could NOT restore default clocks: {e}");
                            }
                        }
                    })
                    .map_err(|e| {
                        ActuatorError::Backend(format!("clock guard: cannot start the watchdog thread: {e}"))
                    })?;
                Some(Watchdog { stop, handle })
            }
        };
        Ok(ClockGuard { armed, id, name, watchdog })
    }

    /// The controller decided (possibly to keep the clock): feeds the watchdog. After a watchdog
    /// restore, this re-applies the clock the controller last asked for, since a controller that
    /// skips no-op switches would not ask again.
    pub fn decided(&self) -> Result<(), ActuatorError> {
        let mut inner = self.armed.lock();
        inner.last_decision = Instant::now();
        match (inner.last_restore, inner.dirty, inner.requested) {
            (Some(RestoreReason::Watchdog), false, Some(freq)) => set_locked(&mut inner, freq),
            _ => Ok(()),
        }
    }

    /// Runs the watchdog check as of `now` (the watchdog thread calls this; tests call it with
    /// chosen instants). Returns the outcome when it restored.
    pub fn poll_watchdog(&self, now: Instant) -> Option<Result<(), ActuatorError>> {
        poll_watchdog(&self.armed, now)
    }

    /// Why the clocks were last restored, if they were.
    pub fn last_restore(&self) -> Option<RestoreReason> {
        self.armed.lock().last_restore
    }

    /// How many times the guard restored the clocks (explicit resets included).
    pub fn restores(&self) -> u64 {
        self.armed.lock().restores
    }

    /// Whether the device may be off its default clocks because of this guard.
    pub fn clocks_changed(&self) -> bool {
        self.armed.lock().dirty
    }

    /// Runs `f` on the guarded actuator (e.g. to read a backend-specific status). Changing the
    /// clock through it bypasses the guard's bookkeeping; use the guard's `set_frequency`.
    pub fn with_actuator<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        f(&mut self.armed.lock().actuator)
    }

    /// A handle that reads power, clock and energy from another thread (e.g. a telemetry
    /// [`Sampler`](crate::telemetry::Sampler)); it cannot change clocks.
    pub fn reader(&self) -> GuardReader<A> {
        GuardReader { armed: Arc::clone(&self.armed) }
    }
}

fn poll_watchdog<A: FrequencyActuator>(armed: &Armed<A>, now: Instant) -> Option<Result<(), ActuatorError>> {
    let after = armed.watchdog?;
    let mut inner = armed.lock();
    (inner.dirty && now.saturating_duration_since(inner.last_decision) >= after)
        .then(|| inner.restore(RestoreReason::Watchdog))
}

fn set_locked<A: FrequencyActuator>(inner: &mut Inner<A>, freq: Mhz) -> Result<(), ActuatorError> {
    // Dirty first: a backend may fail half-way (e.g. manual mode set, level refused).
    inner.dirty = true;
    inner.actuator.set_frequency(freq)?;
    inner.requested = Some(freq);
    inner.last_decision = Instant::now();
    Ok(())
}

impl<A: FrequencyActuator + 'static> FrequencyActuator for ClockGuard<A> {
    fn name(&self) -> &str {
        &self.name
    }
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError> {
        self.armed.lock().actuator.supported_frequencies()
    }
    fn current_frequency(&self) -> Result<Mhz, ActuatorError> {
        self.armed.lock().actuator.current_frequency()
    }
    /// Locks the clock and feeds the watchdog.
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError> {
        set_locked(&mut self.armed.lock(), freq)
    }
    /// Restores default clocks now, whether or not the guard changed them.
    fn reset(&mut self) -> Result<(), ActuatorError> {
        let mut inner = self.armed.lock();
        inner.dirty = true;
        inner.requested = None;
        inner.restore(RestoreReason::Explicit)
    }
    fn power_w(&self) -> Result<f64, ActuatorError> {
        self.armed.lock().actuator.power_w()
    }
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError> {
        self.armed.lock().actuator.energy_j()
    }
}

impl<A: FrequencyActuator + 'static> Drop for ClockGuard<A> {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            let _ = w.stop.send(());
            let _ = w.handle.join();
        }
        let reason = if std::thread::panicking() { RestoreReason::Panic } else { RestoreReason::Drop };
        if let Err(e) = self.armed.lock().restore(reason) {
            eprintln!("energyllm: could NOT restore default clocks on `{}`: {e}", self.name);
        }
        registry().retain(|(id, _)| *id != self.id);
    }
}

/// Reads a guarded actuator from another thread (see [`ClockGuard::reader`]).
pub struct GuardReader<A: FrequencyActuator + 'static> {
    armed: Arc<Armed<A>>,
}

impl<A: FrequencyActuator + 'static> GuardReader<A> {
    /// Power, clock and energy counter now.
    pub fn reading(&self) -> Result<Reading, ActuatorError> {
        read_actuator(&self.armed.lock().actuator)
    }
}

impl<A: FrequencyActuator + 'static> Clone for GuardReader<A> {
    fn clone(&self) -> Self {
        GuardReader { armed: Arc::clone(&self.armed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GpuSpec, SharedSimGpu, SimGpu};
    use energyllm_core::testutil::RecordingActuator;

    fn sim() -> SharedSimGpu {
        SharedSimGpu::new(SimGpu::new(GpuSpec::builtin("a100-40gb").unwrap()))
    }
    fn watchdog(s: f64) -> GuardConfig {
        GuardConfig { watchdog_s: s, ..GuardConfig::drop_only() }
    }

    #[test]
    fn drop_restores_the_default_clock() {
        let gpu = sim();
        {
            let mut g = ClockGuard::new(gpu.clone(), &GuardConfig::drop_only()).unwrap();
            g.set_frequency(Mhz(810)).unwrap();
            assert_eq!(gpu.lock().freq(), Mhz(810));
            assert!(g.clocks_changed());
        }
        assert_eq!(gpu.lock().freq(), Mhz(1410));
    }

    #[test]
    fn an_untouched_guard_does_not_reset_on_drop() {
        let g = ClockGuard::new(RecordingActuator::new(vec![Mhz(800), Mhz(1400)]), &GuardConfig::drop_only())
            .unwrap();
        let calls = g.with_actuator(|a| a.calls.clone());
        drop(g);
        assert!(calls.is_empty());
    }

    #[test]
    fn a_refused_clock_is_an_error_and_the_guard_still_restores() {
        let mut g =
            ClockGuard::new(RecordingActuator::new(vec![Mhz(800), Mhz(1400)]), &GuardConfig::drop_only())
                .unwrap();
        assert!(matches!(g.set_frequency(Mhz(900)), Err(ActuatorError::UnsupportedClock { .. })));
        assert!(g.clocks_changed());
        g.reset().unwrap();
        assert_eq!(g.with_actuator(|a| a.calls.clone()), [None]);
        assert_eq!(g.last_restore(), Some(RestoreReason::Explicit));
    }

    #[test]
    fn the_watchdog_restores_after_silence_and_a_decision_reapplies_the_clock() {
        let gpu = sim();
        let mut g = ClockGuard::new(gpu.clone(), &watchdog(60.0)).unwrap();
        let t0 = Instant::now();
        g.set_frequency(Mhz(810)).unwrap();
        assert!(g.poll_watchdog(t0 + Duration::from_secs(1)).is_none());
        g.decided().unwrap();
        let fed = Instant::now();
        assert!(g.poll_watchdog(fed + Duration::from_secs(30)).is_none());
        assert_eq!(gpu.lock().freq(), Mhz(810));
        assert!(matches!(g.poll_watchdog(fed + Duration::from_secs(61)), Some(Ok(()))));
        assert_eq!(gpu.lock().freq(), Mhz(1410));
        assert_eq!(g.last_restore(), Some(RestoreReason::Watchdog));
        // Restored already: a later poll does nothing.
        assert!(g.poll_watchdog(fed + Duration::from_secs(600)).is_none());
        // The controller comes back and keeps its clock: the guard re-applies it.
        g.decided().unwrap();
        assert_eq!(gpu.lock().freq(), Mhz(810));
        assert!(g.clocks_changed());
    }

    #[test]
    fn the_watchdog_thread_restores_a_silent_controller() {
        let gpu = sim();
        let mut g = ClockGuard::new(gpu.clone(), &watchdog(0.02)).unwrap();
        g.set_frequency(Mhz(810)).unwrap();
        // Wait (bounded, generously) for the thread; no timing is asserted.
        for _ in 0..20_000 {
            if g.last_restore().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(g.last_restore(), Some(RestoreReason::Watchdog));
        assert_eq!(gpu.lock().freq(), Mhz(1410));
    }

    #[test]
    fn a_bad_watchdog_setting_is_refused() {
        for s in [-1.0, f64::INFINITY, f64::NAN] {
            let e = ClockGuard::new(sim(), &watchdog(s)).err().unwrap().to_string();
            assert!(e.contains("watchdog_s"), "{e}");
        }
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: GuardConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, GuardConfig::default());
        assert!(serde_json::from_str::<GuardConfig>(r#"{"watchdog": 3}"#).is_err());
    }

    #[test]
    fn a_reader_reads_from_another_thread() {
        let gpu = sim();
        let g = ClockGuard::new(gpu, &GuardConfig::drop_only()).unwrap();
        let r = g.reader();
        let reading = std::thread::spawn(move || r.reading()).join().unwrap().unwrap();
        assert_eq!(reading.freq, Some(Mhz(1410)));
        assert_eq!(reading.counter_j, Some(0.0));
    }
}

//! The gateway's actuator thread: clock changes and power readings off the request path.
//!
//! Real backends (NVML, sysfs) make short blocking calls, so one plain thread owns the actuator
//! inside a [`ClockGuard`] and takes commands over a channel; every 100 ms it publishes power and
//! the energy counter through atomics that the controller task reads without waiting. With the
//! simulated GPU it also moves the GPU's virtual clock along with wall time and sets it busy
//! while requests run, so the sim actuator reports plausible power in a live run.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use energyllm_core::{ActuatorError, FrequencyActuator, Mhz, Timestamp};
use energyllm_hw::{ClockGuard, GuardConfig, Load, RestoreReason, SharedSimGpu};

/// An `f64` shared without a lock.
#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    /// A cell holding `v`.
    pub fn new(v: f64) -> Self {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }
    /// The value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    /// Replaces the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed)
    }
    /// Adds `d` (one writer at a time: the controller task).
    pub fn add(&self, d: f64) {
        self.set(self.get() + d)
    }
}

/// What to actuate.
pub struct ActuatorSetup {
    /// The actuator (sim, nvml, amd …), guarded by the thread.
    pub actuator: Box<dyn FrequencyActuator>,
    /// The same simulated GPU, when `actuator` is one, to move its virtual time along.
    pub sim: Option<SharedSimGpu>,
    /// The guard's settings. The gateway catches SIGINT/SIGTERM itself to drain first, so the
    /// guard's own signal handler should be off (`restore_on_signal: false`); dropping the
    /// guard at the end of the drain restores the clocks.
    pub guard: GuardConfig,
}

enum Cmd {
    Set(Mhz),
    Decided,
}

/// Readings the thread publishes.
#[derive(Debug, Default)]
pub struct Readings {
    /// Board power in watts, last sample.
    pub power_w: AtomicF64,
    /// The device's energy counter in joules, or NaN if it has none.
    pub energy_j: AtomicF64,
    /// The clock the device reports, in MHz.
    pub clock_mhz: AtomicU64,
    /// Requests the upstream is running now (the thread sets the simulated GPU busy when > 0).
    pub running: AtomicUsize,
    /// Clock changes that failed.
    pub errors: AtomicU64,
}

/// How the actuator thread ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ActuatorReport {
    /// Whether the clocks were left at defaults (nothing changed, or the restore succeeded).
    pub clocks_restored: bool,
    /// Why they were last restored, if the guard did.
    pub last_restore: Option<RestoreReason>,
}

/// Handle on the actuator thread; dropping it stops the thread, which restores the clocks.
pub struct ActuatorThread {
    tx: Option<mpsc::Sender<Cmd>>,
    handle: Option<JoinHandle<ActuatorReport>>,
    readings: Arc<Readings>,
    stop: Arc<AtomicBool>,
}

impl ActuatorThread {
    /// Starts the thread; fails if the guard cannot be set up or the thread not started.
    pub fn start(setup: ActuatorSetup) -> Result<Self, ActuatorError> {
        let readings = Arc::new(Readings { energy_j: AtomicF64::new(f64::NAN), ..Readings::default() });
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ActuatorError>>();
        let r = Arc::clone(&readings);
        let s = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("energyllm-actuator".into())
            .spawn(move || {
                let ActuatorSetup { actuator, sim, guard } = setup;
                let mut guard = match ClockGuard::new(actuator, &guard) {
                    Ok(g) => {
                        let _ = ready_tx.send(Ok(()));
                        g
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return ActuatorReport { clocks_restored: true, last_restore: None };
                    }
                };
                let epoch = Instant::now();
                let sample = |guard: &ClockGuard<Box<dyn FrequencyActuator>>| {
                    if let Some(sim) = &sim {
                        let now = Timestamp::from_nanos(
                            epoch.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
                        );
                        let busy = r.running.load(Ordering::Relaxed) > 0;
                        let load = busy.then_some(Load { sm: 0.8, mem: 0.6, active: 1.0 });
                        sim.lock().set_load(now, load);
                    }
                    if let Ok(p) = guard.power_w() {
                        r.power_w.set(p);
                    }
                    if let Ok(Some(e)) = guard.energy_j() {
                        r.energy_j.set(e);
                    }
                    if let Ok(f) = guard.current_frequency() {
                        r.clock_mhz.store(u64::from(f.0), Ordering::Relaxed);
                    }
                };
                sample(&guard);
                while !s.load(Ordering::Relaxed) {
                    match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(Cmd::Set(f)) => {
                            if let Err(e) = guard.set_frequency(f) {
                                r.errors.fetch_add(1, Ordering::Relaxed);
                                eprintln!("energyllm gateway: setting the clock to {f} failed: {e}");
                            }
                            sample(&guard);
                        }
                        Ok(Cmd::Decided) => {
                            let _ = guard.decided();
                        }
                        Err(RecvTimeoutError::Timeout) => sample(&guard),
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                let restored = guard.reset().is_ok();
                sample(&guard);
                ActuatorReport {
                    clocks_restored: restored && !guard.clocks_changed(),
                    last_restore: guard.last_restore(),
                }
            })
            .map_err(|e| ActuatorError::Backend(format!("cannot start the actuator thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ActuatorError::Backend("the actuator thread stopped while starting".into()))
            }
        }
        Ok(ActuatorThread { tx: Some(tx), handle: Some(handle), readings, stop })
    }

    /// The published readings.
    pub fn readings(&self) -> &Arc<Readings> {
        &self.readings
    }

    /// Asks for a clock (returns at once; the thread applies it).
    pub fn set_frequency(&self, freq: Mhz) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Cmd::Set(freq));
        }
    }

    /// Feeds the guard's watchdog.
    pub fn decided(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Cmd::Decided);
        }
    }

    /// Stops the thread, restoring the clocks, and says how that went.
    pub fn stop(mut self) -> ActuatorReport {
        self.finish()
    }

    fn finish(&mut self) -> ActuatorReport {
        self.stop.store(true, Ordering::Relaxed);
        self.tx.take();
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(report)) => report,
            _ => ActuatorReport { clocks_restored: false, last_restore: None },
        }
    }
}

impl Drop for ActuatorThread {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.finish();
        }
    }
}

/// The simulated GPU `gpu` (a built-in profile name such as `a100-40gb`) as the gateway's
/// actuator: its virtual clock follows wall time, busy while requests run. The guard restores
/// on drop and panic; signals are the gateway's to handle.
pub fn sim_actuator(gpu: &str) -> Result<ActuatorSetup, ActuatorError> {
    let spec = energyllm_hw::GpuSpec::builtin(gpu).map_err(|e| ActuatorError::Backend(e.to_string()))?;
    let shared = SharedSimGpu::new(energyllm_hw::SimGpu::new(spec));
    Ok(ActuatorSetup {
        actuator: Box::new(shared.clone()),
        sim: Some(shared),
        guard: GuardConfig { restore_on_signal: false, ..GuardConfig::default() },
    })
}

//! A simulated GPU in virtual time: clock levels, power, switch stalls and an energy counter.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;

use energyllm_core::registry::{parse_config, ActuatorPlugin, ConfigValue};
use energyllm_core::{duration_from_secs, ActuatorError, FrequencyActuator, Mhz, Timestamp};

use crate::GpuSpec;

/// How busy the GPU is over a stretch of time, each a fraction 0–1 of that time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// SM capacity in use (FLOP-time at the achieved rate over wall time).
    pub sm: f64,
    /// Memory bandwidth in use (bytes moved over what peak bandwidth could move).
    pub mem: f64,
    /// Time kernels run at all (the rest is CPU-side work with the GPU waiting).
    pub active: f64,
}

/// A simulated GPU.
///
/// It integrates power over virtual time with a piecewise-constant load: the engine model calls
/// [`set_load`](SimGpu::set_load) when an iteration starts and ends, and energy accrues in
/// between. A clock change stalls the GPU for the profile's `switch_stall_s`, during which it
/// draws idle power and runs nothing; stalls count as busy time. The clock of record for
/// [`FrequencyActuator`] calls is the last time the GPU was advanced to.
#[derive(Clone, Debug)]
pub struct SimGpu {
    spec: GpuSpec,
    /// Identical GPUs working in lockstep (tensor parallelism): power and energy scale by it.
    count: u32,
    freqs: Vec<Mhz>,
    freq: Mhz,
    now: Timestamp,
    load: Option<Load>,
    stall_until: Timestamp,
    total_energy_j: f64,
    busy_energy_j: f64,
    stall_s: f64,
    stall_energy_j: f64,
    switches: u64,
}

impl SimGpu {
    /// A GPU at its default clock, idle, at time zero.
    pub fn new(spec: GpuSpec) -> Self {
        Self::with_count(spec, 1)
    }

    /// `count` identical GPUs in lockstep (a tensor-parallel group), set to one clock together.
    pub fn with_count(spec: GpuSpec, count: u32) -> Self {
        SimGpu {
            count: count.max(1),
            freqs: spec.supported_freqs(),
            freq: Mhz(spec.default_freq_mhz),
            spec,
            now: Timestamp::ZERO,
            load: None,
            stall_until: Timestamp::ZERO,
            total_energy_j: 0.0,
            busy_energy_j: 0.0,
            stall_s: 0.0,
            stall_energy_j: 0.0,
            switches: 0,
        }
    }

    /// The profile.
    pub fn spec(&self) -> &GpuSpec {
        &self.spec
    }
    /// The clock now.
    pub fn freq(&self) -> Mhz {
        self.freq
    }
    /// The virtual time energy has been integrated up to.
    pub fn now(&self) -> Timestamp {
        self.now
    }
    /// The end of the current clock-switch stall (in the past when there is none).
    pub fn stall_until(&self) -> Timestamp {
        self.stall_until
    }
    /// Board energy since time zero, idle included, in joules.
    pub fn total_energy_j(&self) -> f64 {
        self.total_energy_j
    }
    /// Energy while running kernels or stalled by a clock switch, in joules.
    pub fn busy_energy_j(&self) -> f64 {
        self.busy_energy_j
    }
    /// Seconds spent stalled by clock switches.
    pub fn stall_s(&self) -> f64 {
        self.stall_s
    }
    /// Energy drawn while stalled by clock switches, in joules: part of the busy energy, and the
    /// part no request is charged for (busy energy = requests' energy + stall energy).
    pub fn stall_energy_j(&self) -> f64 {
        self.stall_energy_j
    }
    /// Clock changes applied.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// GPUs in the lockstep group.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Idle power of the whole group, in watts.
    pub fn idle_power_w(&self) -> f64 {
        self.spec.idle_power_w * f64::from(self.count)
    }

    /// Board power of the whole group at the current clock under `load`, in watts.
    pub fn power_at(&self, load: Load) -> f64 {
        self.spec.power_w(self.freq, load) * f64::from(self.count)
    }

    /// Integrates energy up to `now` at the current load; an earlier `now` is ignored.
    pub fn advance(&mut self, now: Timestamp) {
        if now <= self.now {
            return;
        }
        let stall_end = self.stall_until.min(now);
        if stall_end > self.now {
            let dt = stall_end.secs_since(self.now);
            let e = self.idle_power_w() * dt;
            self.total_energy_j += e;
            self.busy_energy_j += e;
            self.stall_energy_j += e;
            self.stall_s += dt;
            self.now = stall_end;
        }
        let dt = now.secs_since(self.now);
        match self.load {
            Some(load) => {
                let e = self.power_at(load) * dt;
                self.total_energy_j += e;
                self.busy_energy_j += e;
            }
            None => self.total_energy_j += self.idle_power_w() * dt,
        }
        self.now = now;
    }

    /// Advances to `now`, then runs at `load` from there on (`None` for idle).
    pub fn set_load(&mut self, now: Timestamp, load: Option<Load>) {
        self.advance(now);
        self.load = load;
    }

    fn check_supported(&self, freq: Mhz) -> Result<(), ActuatorError> {
        if self.freqs.binary_search(&freq).is_err() {
            return Err(ActuatorError::UnsupportedClock { requested: freq, supported: self.freqs.clone() });
        }
        Ok(())
    }
}

impl FrequencyActuator for SimGpu {
    fn name(&self) -> &str {
        "sim"
    }
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError> {
        Ok(self.freqs.clone())
    }
    fn current_frequency(&self) -> Result<Mhz, ActuatorError> {
        Ok(self.freq)
    }
    /// Changes the clock at the GPU's current time and starts a stall; setting the clock it
    /// already runs at costs nothing.
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError> {
        self.check_supported(freq)?;
        if freq != self.freq {
            self.freq = freq;
            self.switches += 1;
            self.stall_until = self.stall_until.max(self.now) + duration_from_secs(self.spec.switch_stall_s);
        }
        Ok(())
    }
    fn reset(&mut self) -> Result<(), ActuatorError> {
        self.set_frequency(Mhz(self.spec.default_freq_mhz))
    }
    fn power_w(&self) -> Result<f64, ActuatorError> {
        Ok(match self.load {
            Some(load) if self.now >= self.stall_until => self.power_at(load),
            _ => self.idle_power_w(),
        })
    }
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError> {
        Ok(Some(self.total_energy_j))
    }
}

/// A [`SimGpu`] shared between an engine model and an actuator handle, as a real GPU is shared
/// between the inference engine and the clock controller.
#[derive(Clone, Debug)]
pub struct SharedSimGpu(Arc<Mutex<SimGpu>>);

impl SharedSimGpu {
    /// Shares `gpu`.
    pub fn new(gpu: SimGpu) -> Self {
        SharedSimGpu(Arc::new(Mutex::new(gpu)))
    }

    /// Locks the GPU. A poisoned lock is recovered: the GPU's state is plain numbers that a
    /// panic elsewhere cannot leave half-written in a way that matters here.
    pub fn lock(&self) -> MutexGuard<'_, SimGpu> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FrequencyActuator for SharedSimGpu {
    fn name(&self) -> &str {
        "sim"
    }
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError> {
        self.lock().supported_frequencies()
    }
    fn current_frequency(&self) -> Result<Mhz, ActuatorError> {
        self.lock().current_frequency()
    }
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError> {
        self.lock().set_frequency(freq)
    }
    fn reset(&mut self) -> Result<(), ActuatorError> {
        self.lock().reset()
    }
    fn power_w(&self) -> Result<f64, ActuatorError> {
        self.lock().power_w()
    }
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError> {
        self.lock().energy_j()
    }
}

/// Config of the `sim` actuator plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SimActuatorConfig {
    /// Built-in GPU profile name. Default: `a100-40gb`.
    gpu: String,
}

impl Default for SimActuatorConfig {
    fn default() -> Self {
        SimActuatorConfig { gpu: "a100-40gb".into() }
    }
}

fn build_sim(config: &ConfigValue) -> Result<Box<dyn FrequencyActuator>, ActuatorError> {
    let cfg: SimActuatorConfig =
        parse_config("actuator", "sim", config).map_err(|e| ActuatorError::Backend(e.to_string()))?;
    let spec = GpuSpec::builtin(&cfg.gpu).map_err(|e| ActuatorError::Backend(e.to_string()))?;
    Ok(Box::new(SimGpu::new(spec)))
}

inventory::submit! {
    ActuatorPlugin {
        name: "sim",
        description: "simulated GPU in virtual time (clock levels, power model, switch stall, energy counter)",
        build: build_sim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu() -> SimGpu {
        SimGpu::new(GpuSpec::builtin("a100-40gb").unwrap())
    }

    #[test]
    fn idle_energy_is_idle_power_times_time() {
        let mut g = gpu();
        g.advance(Timestamp::from_secs_f64(10.0));
        assert!((g.total_energy_j() - 10.0 * g.idle_power_w()).abs() < 1e-9);
        assert_eq!(g.busy_energy_j(), 0.0);
    }

    #[test]
    fn a_switch_stalls_once_and_a_no_op_costs_nothing() {
        let mut g = gpu();
        g.set_frequency(Mhz(1410)).unwrap();
        assert_eq!(g.switches(), 0);
        g.set_frequency(Mhz(810)).unwrap();
        assert_eq!(g.switches(), 1);
        assert_eq!(g.stall_until(), Timestamp::from_secs_f64(0.05));
        g.advance(Timestamp::from_secs_f64(1.0));
        assert!((g.stall_s() - 0.05).abs() < 1e-12);
        assert!((g.busy_energy_j() - g.idle_power_w() * 0.05).abs() < 1e-9);
        assert_eq!(g.stall_energy_j(), g.busy_energy_j(), "nothing but the stall was busy");
        assert!(matches!(g.set_frequency(Mhz(811)), Err(ActuatorError::UnsupportedClock { .. })));
    }

    #[test]
    fn busy_energy_follows_the_load() {
        let mut g = gpu();
        let load = Load { sm: 1.0, mem: 0.5, active: 1.0 };
        let p = g.power_at(load);
        g.set_load(Timestamp::from_secs_f64(1.0), Some(load));
        g.set_load(Timestamp::from_secs_f64(3.0), None);
        g.advance(Timestamp::from_secs_f64(4.0));
        assert!((g.busy_energy_j() - 2.0 * p).abs() < 1e-9);
        assert!((g.total_energy_j() - (2.0 * p + 2.0 * g.idle_power_w())).abs() < 1e-9);
        let pair = SimGpu::with_count(g.spec().clone(), 2);
        assert_eq!(pair.power_at(load), 2.0 * p, "a tensor-parallel pair draws twice the power");
    }

    #[test]
    fn the_plugin_builds_and_rejects_bad_config() {
        let p = energyllm_core::registry::find::<ActuatorPlugin>("sim").unwrap();
        assert!((p.build)(&ConfigValue::Null).is_ok());
        let e = (p.build)(&serde_json::json!({"gpu": "z80"})).err().unwrap().to_string();
        assert!(e.contains("a100-40gb"), "{e}");
    }
}

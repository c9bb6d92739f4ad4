//! NVIDIA GPUs through NVML (cargo feature `nvml`).
//!
//! nvml-wrapper loads `libnvidia-ml.so.1` at run time, so this builds on any machine; where the
//! library or driver is missing, opening fails with [`ActuatorError::NotInstalled`] saying what
//! to install.
//!
//! - **Which GPU.** The config names a device the way the inference engine sees it: a CUDA index
//!   (`0`), read through `CUDA_VISIBLE_DEVICES` like CUDA does (integers, `GPU-<uuid>` and unique
//!   UUID prefixes; parsing stops at the first bad entry), or a GPU UUID. NVML numbers devices
//!   by PCI bus, CUDA fastest first unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`: where the two can differ
//!   (GPUs of different models) an integer is refused as ambiguous. MIG instances (`MIG-…`) and
//!   GPUs in MIG mode are refused: their clock is shared by every instance on the GPU.
//! - **Clocks.** The supported graphics clocks at the highest memory clock; `set_frequency`
//!   locks the SM clock with `nvmlDeviceSetGpuLockedClocks(f, f)` (Volta or newer, root) and
//!   `reset` calls `nvmlDeviceResetGpuLockedClocks`.
//! - **Energy.** The total-energy counter (Volta or newer) is checked at start: over a short
//!   window it must advance consistently with sampled power
//!   ([`check_energy_counter`](crate::telemetry::check_energy_counter)). If it does not, or is
//!   absent, [`energy_j`](FrequencyActuator::energy_j) is `None` and the telemetry sampler
//!   integrates power instead.
//!
//! The NVML calls sit behind a small private trait so that the logic around them (selection,
//! errors, the counter check) is tested against a fake device; the calls themselves need a GPU.
//!
//! One job a file: this one holds the config, the [`NvmlGpu`] actuator and its plugin;
//! `library.rs` loads NVML and makes its calls, `select.rs` finds the configured GPU,
//! `counter.rs` checks the energy counter, and `fake.rs` (tests only) plays a device.

mod counter;
#[cfg(test)]
mod fake;
mod library;
mod select;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvml_wrapper::error::NvmlError;
use serde::{Deserialize, Serialize};

use energyllm_core::registry::{parse_config, ActuatorPlugin, ConfigValue};
use energyllm_core::{ActuatorError, FrequencyActuator, Mhz};

use counter::{check_counter, CheckClock, WallClock};
use library::{nvml_error, NvmlDevice, RealDevice};
use select::resolve_device;

pub use counter::CounterStatus;
pub use library::{list_devices, load};
pub(crate) use select::cuda_index_of;

/// A GPU named in a config: a CUDA index or a GPU UUID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeviceSelector {
    /// A CUDA device index, through `CUDA_VISIBLE_DEVICES` when it is set.
    Index(u32),
    /// `GPU-<uuid>` (or a unique prefix), or a number written as a string.
    Name(String),
}

impl Default for DeviceSelector {
    fn default() -> Self {
        DeviceSelector::Index(0)
    }
}

/// Config of the `nvml` actuator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NvmlConfig {
    /// Which GPU. Default: CUDA device 0.
    pub device: DeviceSelector,
    /// Path to libnvidia-ml. Default: none (the loader finds `libnvidia-ml.so.1`).
    pub lib_path: Option<PathBuf>,
    /// Seconds spent checking the energy counter against sampled power at start; 0 trusts the
    /// counter unchecked. Default: 1.0.
    pub energy_check_s: f64,
    /// Largest relative disagreement between counter and integrated power that still trusts
    /// the counter. Default: 0.25.
    pub energy_tolerance: f64,
}

impl Default for NvmlConfig {
    fn default() -> Self {
        NvmlConfig {
            device: DeviceSelector::default(),
            lib_path: None,
            energy_check_s: 1.0,
            energy_tolerance: 0.25,
        }
    }
}

/// One GPU as NVML enumerates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmlDeviceId {
    /// NVML index (PCI bus order).
    pub index: u32,
    /// `GPU-<uuid>`.
    pub uuid: String,
    /// Model name.
    pub name: String,
}

/// An NVIDIA GPU's SM clock, power and energy through NVML.
pub struct NvmlGpu {
    dev: Box<dyn NvmlDevice>,
    label: String,
    supported: Vec<Mhz>,
    counter: CounterStatus,
    dirty: bool,
}

impl std::fmt::Debug for NvmlGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlGpu")
            .field("label", &self.label)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl NvmlGpu {
    /// Loads NVML, picks the configured GPU and checks its energy counter (which takes
    /// `energy_check_s`).
    pub fn open(config: &NvmlConfig) -> Result<Self, ActuatorError> {
        if !(config.energy_check_s.is_finite()
            && config.energy_check_s >= 0.0
            && config.energy_check_s <= 60.0)
        {
            return Err(ActuatorError::Backend(format!(
                "nvml: `energy_check_s` must be between 0 and 60 seconds, got {}",
                config.energy_check_s
            )));
        }
        let nvml = Arc::new(load(config.lib_path.as_deref())?);
        let devices = list_devices(&nvml)?;
        let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
        let order = std::env::var("CUDA_DEVICE_ORDER").ok();
        let chosen =
            devices[resolve_device(&config.device, visible.as_deref(), order.as_deref(), &devices)?].clone();
        let label = format!("GPU {} ({}, {})", chosen.index, chosen.name, chosen.uuid);
        let mig_on = nvml
            .device_by_uuid(chosen.uuid.as_str())
            .and_then(|d| d.mig_mode())
            .map(|m| m.current == 1)
            .unwrap_or(false); // NotSupported: a GPU without MIG
        if mig_on {
            return Err(ActuatorError::NotSupported(format!(
                "{label} is in MIG mode: its SM clock is shared by every MIG instance, so energyllm does not lock it; \
                 disable MIG (`nvidia-smi -i {} -mig 0`, needs root and an idle GPU) or choose another GPU",
                chosen.index
            )));
        }
        let dev = Box::new(RealDevice { nvml, uuid: chosen.uuid });
        let window = Duration::from_secs_f64(config.energy_check_s);
        Self::from_device(dev, label, window, config.energy_tolerance, &mut WallClock(Instant::now()))
    }

    fn from_device(
        dev: Box<dyn NvmlDevice>,
        label: String,
        check_window: Duration,
        tolerance: f64,
        clock: &mut dyn CheckClock,
    ) -> Result<Self, ActuatorError> {
        let mut supported: Vec<Mhz> = dev
            .supported_graphics_clocks_mhz()
            .map_err(|e| nvml_error("listing the supported clocks of", &label, e))?
            .into_iter()
            .map(Mhz)
            .collect();
        supported.sort_unstable();
        supported.dedup();
        let counter = check_counter(dev.as_ref(), &label, check_window, tolerance, clock);
        Ok(NvmlGpu { dev, label, supported, counter, dirty: false })
    }

    /// `GPU <index> (<name>, <uuid>)`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What became of the energy counter.
    pub fn counter_status(&self) -> &CounterStatus {
        &self.counter
    }
}

impl FrequencyActuator for NvmlGpu {
    fn name(&self) -> &str {
        "nvml"
    }
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError> {
        Ok(self.supported.clone())
    }
    fn current_frequency(&self) -> Result<Mhz, ActuatorError> {
        self.dev.graphics_clock_mhz().map(Mhz).map_err(|e| nvml_error("reading the clock of", &self.label, e))
    }
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError> {
        let unsupported =
            || ActuatorError::UnsupportedClock { requested: freq, supported: self.supported.clone() };
        if self.supported.binary_search(&freq).is_err() {
            return Err(unsupported());
        }
        self.dirty = true;
        match self.dev.lock_clocks(freq.0) {
            Ok(()) => Ok(()),
            Err(NvmlError::InvalidArg) => Err(unsupported()),
            Err(e) => Err(nvml_error("locking the clock of", &self.label, e)),
        }
    }
    fn reset(&mut self) -> Result<(), ActuatorError> {
        self.dev.reset_clocks().map_err(|e| nvml_error("resetting the clocks of", &self.label, e))?;
        self.dirty = false;
        Ok(())
    }
    fn power_w(&self) -> Result<f64, ActuatorError> {
        self.dev
            .power_mw()
            .map(|mw| f64::from(mw) / 1e3)
            .map_err(|e| nvml_error("reading the power of", &self.label, e))
    }
    /// The total-energy counter if it passed the start-up check, else `None`.
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError> {
        if !self.counter.in_use() {
            return Ok(None);
        }
        self.dev
            .energy_mj()
            .map(|mj| Some(mj as f64 / 1e3))
            .map_err(|e| nvml_error("reading the energy counter of", &self.label, e))
    }
}

impl Drop for NvmlGpu {
    fn drop(&mut self) {
        if self.dirty {
            if let Err(e) = self.reset() {
                eprintln!("energyllm: could NOT restore default clocks on {}: {e}", self.label);
            }
        }
    }
}

fn build_nvml(config: &ConfigValue) -> Result<Box<dyn FrequencyActuator>, ActuatorError> {
    let cfg: NvmlConfig =
        parse_config("actuator", "nvml", config).map_err(|e| ActuatorError::Backend(e.to_string()))?;
    Ok(Box::new(NvmlGpu::open(&cfg)?))
}

inventory::submit! {
    ActuatorPlugin {
        name: "nvml",
        description: "NVIDIA GPU through NVML (locked SM clock, power, checked energy counter)",
        build: build_nvml,
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{open, FakeGpu, VirtualTime};
    use super::*;

    #[test]
    fn clocks_are_locked_exactly_and_reset() {
        let mut time = VirtualTime::default();
        let fake = FakeGpu::new(&time);
        let calls = Arc::clone(&fake.calls);
        let mut gpu = open(fake, &mut time);
        assert_eq!(gpu.supported_frequencies().unwrap(), [Mhz(210), Mhz(225), Mhz(1395), Mhz(1410)]);
        gpu.set_frequency(Mhz(225)).unwrap();
        assert_eq!(gpu.current_frequency().unwrap(), Mhz(225));
        let e = gpu.set_frequency(Mhz(1000)).unwrap_err().to_string();
        assert!(e.contains("1000 MHz is not a supported clock; supported: 210, 225, 1395, 1410 MHz"), "{e}");
        gpu.reset().unwrap();
        drop(gpu); // clean: no second reset
        assert_eq!(*calls.lock().unwrap(), ["lock 225", "reset"]);
    }

    #[test]
    fn drop_resets_a_locked_gpu_and_driver_refusals_map_to_clear_errors() {
        let mut time = VirtualTime::default();
        let fake = FakeGpu::new(&time);
        let calls = Arc::clone(&fake.calls);
        drop({
            let mut gpu = open(fake, &mut time);
            gpu.set_frequency(Mhz(1395)).unwrap();
            gpu
        });
        assert_eq!(*calls.lock().unwrap(), ["lock 1395", "reset"]);

        for (err, check) in [
            (|| NvmlError::NoPermission, "permission denied: locking"),
            (|| NvmlError::InvalidArg, "is not a supported clock"),
            (|| NvmlError::GpuLost, "device lost"),
        ] as [(fn() -> NvmlError, &str); 3]
        {
            let mut fake = FakeGpu::new(&time);
            fake.lock_error = Some(err);
            let mut gpu = open(fake, &mut time);
            let e = gpu.set_frequency(Mhz(210)).unwrap_err().to_string();
            assert!(e.contains(check), "{e}");
        }
    }

    #[test]
    fn the_energy_counter_is_used_only_if_it_agrees_with_sampled_power() {
        let mut time = VirtualTime::default();
        let gpu = open(FakeGpu::new(&time), &mut time);
        assert!(
            matches!(gpu.counter_status(), CounterStatus::Trusted { ratio } if (ratio - 1.0).abs() < 0.01)
        );
        assert!((*time.0.lock().unwrap() - 1.0).abs() < 1e-9, "the check spans the window");
        assert!(gpu.energy_j().unwrap().is_some());

        let mut fake = FakeGpu::new(&time);
        fake.counter_scale = Some(3.0);
        let gpu = open(fake, &mut time);
        assert!(
            matches!(gpu.counter_status(), CounterStatus::Rejected(r) if r.contains("ratio 3.00")),
            "{:?}",
            gpu.counter_status()
        );
        assert_eq!(gpu.energy_j().unwrap(), None);

        let mut fake = FakeGpu::new(&time);
        fake.counter_scale = None;
        let gpu = open(fake, &mut time);
        assert!(matches!(gpu.counter_status(), CounterStatus::Absent(r) if r.contains("Volta")));
        assert_eq!(gpu.energy_j().unwrap(), None);
        assert!(gpu.counter_status().to_string().contains("integrated"));

        let gpu =
            NvmlGpu::from_device(Box::new(FakeGpu::new(&time)), "g".into(), Duration::ZERO, 0.25, &mut time)
                .unwrap();
        assert_eq!(gpu.counter_status(), &CounterStatus::Unchecked);
        assert_eq!(gpu.power_w().unwrap(), 60.0);
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: NvmlConfig = parse_config("actuator", "nvml", &ConfigValue::Null).unwrap();
        assert_eq!(c, NvmlConfig::default());
        let c: NvmlConfig =
            parse_config("actuator", "nvml", &serde_json::json!({"device": "GPU-ab"})).unwrap();
        assert_eq!(c.device, DeviceSelector::Name("GPU-ab".into()));
        assert!(parse_config::<NvmlConfig>("actuator", "nvml", &serde_json::json!({"gpu": 0})).is_err());
        let bad = NvmlConfig { energy_check_s: -1.0, ..NvmlConfig::default() };
        assert!(NvmlGpu::open(&bad).unwrap_err().to_string().contains("energy_check_s"));
    }
}

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
//!   window it must advance consistently with sampled power ([`check_energy_counter`]). If it
//!   does not, or is absent, [`energy_j`](FrequencyActuator::energy_j) is `None` and the
//!   telemetry sampler integrates power instead.
//!
//! The NVML calls sit behind a small private trait so that the logic around them (selection,
//! errors, the counter check) is tested against a fake device; the calls themselves need a GPU.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::enums::device::GpuLockedClocksSetting;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};

use energyllm_core::registry::{parse_config, ActuatorPlugin, ConfigValue};
use energyllm_core::{ActuatorError, FrequencyActuator, Mhz};

use crate::telemetry::{check_energy_counter, CounterProbe, CounterVerdict};

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

/// What became of the energy counter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CounterStatus {
    /// Checked and in agreement with sampled power.
    Trusted {
        /// Counter advance over integrated power.
        ratio: f64,
    },
    /// Trusted without a check (`energy_check_s = 0`).
    Unchecked,
    /// Disagreed with sampled power; energy is integrated instead.
    Rejected(String),
    /// The device has none (or it failed); energy is integrated instead.
    Absent(String),
}

impl CounterStatus {
    /// Whether `energy_j` reports the counter.
    pub fn in_use(&self) -> bool {
        matches!(self, CounterStatus::Trusted { .. } | CounterStatus::Unchecked)
    }
}

impl std::fmt::Display for CounterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CounterStatus::Trusted { ratio } => {
                write!(f, "in use (agrees with sampled power, ratio {ratio:.3})")
            }
            CounterStatus::Unchecked => f.write_str("in use (not checked)"),
            CounterStatus::Rejected(why) => write!(f, "not used: {why}"),
            CounterStatus::Absent(why) => {
                write!(f, "not used: {why}; energy is integrated from sampled power")
            }
        }
    }
}

/// The NVML calls the actuator makes, so its logic can be tested without a GPU.
pub(crate) trait NvmlDevice: Send {
    fn supported_graphics_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError>;
    fn graphics_clock_mhz(&self) -> Result<u32, NvmlError>;
    fn lock_clocks(&mut self, mhz: u32) -> Result<(), NvmlError>;
    fn reset_clocks(&mut self) -> Result<(), NvmlError>;
    fn power_mw(&self) -> Result<u32, NvmlError>;
    fn energy_mj(&self) -> Result<u64, NvmlError>;
}

/// A device looked up by UUID on every call: `Device` borrows `Nvml`, and the lookup is cheap.
struct RealDevice {
    nvml: Arc<Nvml>,
    uuid: String,
}

impl NvmlDevice for RealDevice {
    fn supported_graphics_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError> {
        let dev = self.nvml.device_by_uuid(self.uuid.as_str())?;
        let mem = dev.supported_memory_clocks()?.into_iter().max().ok_or(NvmlError::NotSupported)?;
        dev.supported_graphics_clocks(mem)
    }
    fn graphics_clock_mhz(&self) -> Result<u32, NvmlError> {
        self.nvml.device_by_uuid(self.uuid.as_str())?.clock_info(Clock::Graphics)
    }
    fn lock_clocks(&mut self, mhz: u32) -> Result<(), NvmlError> {
        self.nvml
            .device_by_uuid(self.uuid.as_str())?
            .set_gpu_locked_clocks(GpuLockedClocksSetting::Numeric { min_clock_mhz: mhz, max_clock_mhz: mhz })
    }
    fn reset_clocks(&mut self) -> Result<(), NvmlError> {
        self.nvml.device_by_uuid(self.uuid.as_str())?.reset_gpu_locked_clocks()
    }
    fn power_mw(&self) -> Result<u32, NvmlError> {
        self.nvml.device_by_uuid(self.uuid.as_str())?.power_usage()
    }
    fn energy_mj(&self) -> Result<u64, NvmlError> {
        self.nvml.device_by_uuid(self.uuid.as_str())?.total_energy_consumption()
    }
}

/// Loads NVML from `lib_path` (or the loader's default, `libnvidia-ml.so.1`).
pub fn load(lib_path: Option<&Path>) -> Result<Nvml, ActuatorError> {
    let loaded = match lib_path {
        Some(p) => Nvml::builder().lib_path(p.as_os_str()).init(),
        None => Nvml::init(),
    };
    loaded.map_err(|e| nvml_error("loading NVML", "NVML", e))
}

/// Every GPU NVML sees, in NVML order.
pub fn list_devices(nvml: &Nvml) -> Result<Vec<NvmlDeviceId>, ActuatorError> {
    let count = nvml.device_count().map_err(|e| nvml_error("counting GPUs", "NVML", e))?;
    (0..count)
        .map(|index| {
            let label = format!("GPU {index}");
            let dev = nvml.device_by_index(index).map_err(|e| nvml_error("opening", &label, e))?;
            Ok(NvmlDeviceId {
                index,
                uuid: dev.uuid().map_err(|e| nvml_error("reading the UUID of", &label, e))?,
                name: dev.name().unwrap_or_else(|_| "unknown NVIDIA GPU".into()),
            })
        })
        .collect()
}

/// Turns an NVML error into an actuator error that says what to do. `what` is the operation,
/// `label` the device.
pub(crate) fn nvml_error(what: &str, label: &str, e: NvmlError) -> ActuatorError {
    match e {
        NvmlError::LibloadingError(inner) => ActuatorError::NotInstalled(format!(
            "the NVML library (libnvidia-ml.so.1) could not be loaded ({inner}): install the NVIDIA \
             driver, which ships it; in a container, run with the NVIDIA container toolkit (`--gpus`); \
             if it is installed elsewhere, set `lib_path` (`energyllm hw info --nvml-lib PATH`)"
        )),
        NvmlError::LibraryNotFound | NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound => {
            ActuatorError::NotInstalled(format!(
                "{what} {label}: the NVML library is missing or too old ({e}); install or update the NVIDIA driver"
            ))
        }
        NvmlError::DriverNotLoaded => ActuatorError::NotInstalled(
            "the NVIDIA kernel driver is not loaded: load it (`modprobe nvidia`) and check that `nvidia-smi` works".into(),
        ),
        NvmlError::NoPermission => ActuatorError::PermissionDenied(format!(
            "{what} {label}: locking GPU clocks needs root (NVML's SetGpuLockedClocks is a root-only call); run as \
             root, e.g. under sudo or a systemd service (`nvidia-smi -acp UNRESTRICTED` lifts the restriction only \
             for application clocks)"
        )),
        NvmlError::OperatingSystem => ActuatorError::PermissionDenied(format!(
            "{what} {label}: blocked by the operating system or cgroups; run where the device is fully accessible"
        )),
        NvmlError::GpuLost | NvmlError::ResetRequired => ActuatorError::DeviceLost(format!(
            "{label} fell off the bus or needs a reset ({e}); check `nvidia-smi` and `dmesg` (Xid errors), then \
             reset the GPU (`nvidia-smi -r`) or reboot"
        )),
        NvmlError::NotSupported => ActuatorError::NotSupported(format!(
            "{what} {label}: NVML does not support it on this GPU (locked clocks and the energy counter need Volta or newer)"
        )),
        NvmlError::LibRmVersionMismatch => ActuatorError::Backend(format!(
            "{what} {label}: the NVML library and the kernel driver differ in version (after a driver upgrade): reboot or reload the driver"
        )),
        other => ActuatorError::Backend(format!("{what} {label}: NVML error: {other}")),
    }
}

/// One entry of `CUDA_VISIBLE_DEVICES`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Visible {
    Index(u32),
    Uuid(String),
    Mig(String),
}

/// Parses `CUDA_VISIBLE_DEVICES` as CUDA does: comma-separated entries, stopping at the first
/// one that is not a valid index, `GPU-` UUID (prefix) or `MIG-` instance.
fn parse_visible(value: &str, devices: &[NvmlDeviceId]) -> Vec<Visible> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim) {
        let parsed = if let Ok(i) = entry.parse::<u32>() {
            (usize::try_from(i).is_ok_and(|i| i < devices.len())).then_some(Visible::Index(i))
        } else if entry.starts_with("MIG-") {
            Some(Visible::Mig(entry.to_owned()))
        } else if entry.starts_with("GPU-") {
            Some(Visible::Uuid(entry.to_owned()))
        } else {
            None
        };
        match parsed {
            Some(v) => out.push(v),
            None => break,
        }
    }
    out
}

/// The CUDA index of the device at `pos` in `devices` under `CUDA_VISIBLE_DEVICES=visible`
/// (integer entries read in NVML order), or `None` if CUDA cannot see it.
pub(crate) fn cuda_index_of(visible: &str, devices: &[NvmlDeviceId], pos: usize) -> Option<usize> {
    parse_visible(visible, devices).iter().position(|v| match v {
        Visible::Index(i) => usize::try_from(*i).ok() == Some(pos),
        Visible::Uuid(u) => devices.get(pos).is_some_and(|d| d.uuid.starts_with(u.as_str())),
        Visible::Mig(_) => false,
    })
}

fn mig_refusal(what: &str) -> ActuatorError {
    ActuatorError::NotSupported(format!(
        "{what} is a MIG instance: its SM clock belongs to the whole GPU and is shared with every other instance, so \
         energyllm does not lock it; select a whole GPU (not in MIG mode)"
    ))
}

fn by_uuid(uuid: &str, devices: &[NvmlDeviceId]) -> Result<usize, ActuatorError> {
    let matches: Vec<usize> =
        devices.iter().enumerate().filter(|(_, d)| d.uuid.starts_with(uuid)).map(|(i, _)| i).collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(ActuatorError::Backend(format!(
            "no GPU has UUID `{uuid}`; GPUs: {}",
            devices.iter().map(|d| format!("{} ({})", d.uuid, d.name)).collect::<Vec<_>>().join(", ")
        ))),
        _ => {
            Err(ActuatorError::Backend(format!("UUID prefix `{uuid}` matches several GPUs; give more of it")))
        }
    }
}

/// Which NVML device (position in `devices`) a selector means, given `CUDA_VISIBLE_DEVICES` and
/// `CUDA_DEVICE_ORDER`.
pub(crate) fn resolve_device(
    selector: &DeviceSelector,
    cuda_visible: Option<&str>,
    cuda_order: Option<&str>,
    devices: &[NvmlDeviceId],
) -> Result<usize, ActuatorError> {
    let index = match selector {
        DeviceSelector::Index(i) => *i,
        DeviceSelector::Name(s) if s.trim().parse::<u32>().is_ok() => {
            s.trim().parse::<u32>().unwrap_or_default()
        }
        DeviceSelector::Name(s) if s.starts_with("MIG-") => return Err(mig_refusal(s)),
        DeviceSelector::Name(s) if s.starts_with("GPU-") => return by_uuid(s, devices),
        DeviceSelector::Name(s) => {
            return Err(ActuatorError::Backend(format!(
                "device `{s}` is neither a CUDA index nor a GPU UUID (`GPU-…`, see `nvidia-smi -L`)"
            )))
        }
    };
    // CUDA numbers GPUs fastest first unless told PCI order; NVML always uses PCI order. The two
    // agree when all GPUs are the same model.
    let same_model = devices.windows(2).all(|w| w[0].name == w[1].name);
    let pci_order = cuda_order.is_some_and(|o| o.trim() == "PCI_BUS_ID");
    let check_integer_order = || {
        if same_model || pci_order {
            Ok(())
        } else {
            Err(ActuatorError::Backend(
                "CUDA and NVML may number these GPUs differently (they are of different models and \
                 CUDA_DEVICE_ORDER is not PCI_BUS_ID): set CUDA_DEVICE_ORDER=PCI_BUS_ID, or name the GPU by UUID"
                    .into(),
            ))
        }
    };
    let Some(visible) = cuda_visible else {
        check_integer_order()?;
        return usize::try_from(index).ok().filter(|i| *i < devices.len()).ok_or_else(|| {
            ActuatorError::Backend(format!(
                "there is no CUDA device {index}: NVML sees {} GPU(s)",
                devices.len()
            ))
        });
    };
    let list = parse_visible(visible, devices);
    let entry = usize::try_from(index).ok().and_then(|i| list.get(i)).ok_or_else(|| {
        ActuatorError::Backend(format!(
            "CUDA device {index} does not exist: CUDA_VISIBLE_DEVICES=`{visible}` makes {} device(s) visible",
            list.len()
        ))
    })?;
    match entry {
        Visible::Index(i) => {
            check_integer_order()?;
            usize::try_from(*i)
                .map_err(|_| ActuatorError::Backend(format!("CUDA device {i} is out of range")))
        }
        Visible::Uuid(u) => by_uuid(u, devices),
        Visible::Mig(m) => Err(mig_refusal(m)),
    }
}

/// The clock the energy-counter check runs on: real time in use, virtual time in tests.
pub(crate) trait CheckClock {
    fn now_s(&mut self) -> f64;
    fn sleep(&mut self, d: Duration);
}

struct WallClock(Instant);

impl CheckClock for WallClock {
    fn now_s(&mut self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Samples power and the counter over `window` (11 probes) and judges the counter.
pub(crate) fn check_counter(
    dev: &dyn NvmlDevice,
    label: &str,
    window: Duration,
    tolerance: f64,
    clock: &mut dyn CheckClock,
) -> CounterStatus {
    if let Err(e) = dev.energy_mj() {
        return CounterStatus::Absent(nvml_error("reading the energy counter of", label, e).to_string());
    }
    if window.is_zero() {
        return CounterStatus::Unchecked;
    }
    const STEPS: u32 = 10;
    let mut probes = Vec::with_capacity(STEPS as usize + 1);
    for i in 0..=STEPS {
        if i > 0 {
            clock.sleep(window / STEPS);
        }
        let t_s = clock.now_s();
        match (dev.power_mw(), dev.energy_mj()) {
            (Ok(p), Ok(e)) => {
                probes.push(CounterProbe { t_s, power_w: f64::from(p) / 1e3, counter_j: e as f64 / 1e3 })
            }
            (Err(e), _) | (_, Err(e)) => {
                return CounterStatus::Absent(nvml_error("sampling", label, e).to_string());
            }
        }
    }
    match check_energy_counter(&probes, tolerance) {
        CounterVerdict::Trusted { ratio, .. } => CounterStatus::Trusted { ratio },
        CounterVerdict::Rejected { reason } => CounterStatus::Rejected(reason),
    }
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

    pub(crate) fn from_device(
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
    use super::*;
    use std::sync::Mutex;

    fn ids(names: &[&str]) -> Vec<NvmlDeviceId> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| NvmlDeviceId {
                index: i as u32,
                uuid: format!("GPU-{i}{i}aa-{i}"),
                name: (*n).into(),
            })
            .collect()
    }

    #[test]
    fn cuda_visible_devices_maps_cuda_indices_to_nvml_devices() {
        let d = ids(&["A100", "A100", "A100", "A100"]);
        let idx = DeviceSelector::Index;
        assert_eq!(resolve_device(&idx(1), None, None, &d).unwrap(), 1);
        assert_eq!(resolve_device(&idx(0), Some("2,3"), None, &d).unwrap(), 2);
        assert_eq!(resolve_device(&idx(1), Some("2, 3"), None, &d).unwrap(), 3);
        assert_eq!(resolve_device(&DeviceSelector::Name("1".into()), Some("3,0"), None, &d).unwrap(), 0);
        assert_eq!(resolve_device(&idx(0), Some("GPU-22"), None, &d).unwrap(), 2);
        // Parsing stops at the first bad entry, like CUDA.
        let e = resolve_device(&idx(1), Some("1,9,2"), None, &d).unwrap_err().to_string();
        assert!(e.contains("makes 1 device(s) visible"), "{e}");
        assert!(resolve_device(&idx(0), Some("-1"), None, &d).is_err());
        assert!(resolve_device(&idx(0), Some(""), None, &d).is_err());
        assert!(resolve_device(&idx(4), None, None, &d).unwrap_err().to_string().contains("4 GPU(s)"));
    }

    #[test]
    fn cuda_indices_of_nvml_devices() {
        let d = ids(&["A100", "A100", "A100"]);
        assert_eq!(cuda_index_of("2,GPU-00", &d, 0), Some(1));
        assert_eq!(cuda_index_of("2,GPU-00", &d, 2), Some(0));
        assert_eq!(cuda_index_of("2,GPU-00", &d, 1), None);
        assert_eq!(cuda_index_of("x,0", &d, 0), None);
    }

    #[test]
    fn uuids_select_directly_and_mig_instances_are_refused() {
        let d = ids(&["A100", "H100"]);
        assert_eq!(
            resolve_device(&DeviceSelector::Name("GPU-11aa-1".into()), Some("0"), None, &d).unwrap(),
            1
        );
        let e = resolve_device(&DeviceSelector::Name("GPU-".into()), None, None, &d).unwrap_err().to_string();
        assert!(e.contains("several"), "{e}");
        let e =
            resolve_device(&DeviceSelector::Name("GPU-ff".into()), None, None, &d).unwrap_err().to_string();
        assert!(e.contains("GPU-00aa-0 (A100)"), "{e}");
        for (sel, vis) in [("MIG-abc", None), ("0", Some("MIG-1c2d"))] {
            let e = resolve_device(&DeviceSelector::Name(sel.into()), vis, None, &d).unwrap_err();
            assert!(matches!(&e, ActuatorError::NotSupported(m) if m.contains("MIG instance")), "{e}");
        }
        assert!(resolve_device(&DeviceSelector::Name("fastest".into()), None, None, &d).is_err());
    }

    #[test]
    fn integer_indices_over_mixed_models_need_pci_order() {
        let d = ids(&["A100", "H100"]);
        let e = resolve_device(&DeviceSelector::Index(0), None, None, &d).unwrap_err().to_string();
        assert!(e.contains("CUDA_DEVICE_ORDER=PCI_BUS_ID"), "{e}");
        assert_eq!(resolve_device(&DeviceSelector::Index(1), None, Some("PCI_BUS_ID"), &d).unwrap(), 1);
        assert_eq!(resolve_device(&DeviceSelector::Index(0), Some("GPU-11"), None, &d).unwrap(), 1);
    }

    #[test]
    fn nvml_errors_say_what_to_do() {
        let cases: Vec<(NvmlError, &str)> = vec![
            (NvmlError::NoPermission, "root"),
            (NvmlError::GpuLost, "nvidia-smi -r"),
            (NvmlError::DriverNotLoaded, "modprobe nvidia"),
            (NvmlError::NotSupported, "Volta"),
            (NvmlError::LibRmVersionMismatch, "reboot"),
        ];
        for (e, hint) in cases {
            let msg = nvml_error("locking", "GPU 0", e).to_string();
            assert!(msg.contains(hint), "{msg}");
        }
        assert!(matches!(nvml_error("x", "GPU 0", NvmlError::GpuLost), ActuatorError::DeviceLost(_)));
        assert!(matches!(
            nvml_error("x", "GPU 0", NvmlError::NoPermission),
            ActuatorError::PermissionDenied(_)
        ));
    }

    #[test]
    fn a_missing_library_is_a_clean_not_installed_error() {
        let e = load(Some(Path::new("/nonexistent/libnvidia-ml.so.1"))).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ActuatorError::NotInstalled(_)), "{msg}");
        assert!(msg.contains("libnvidia-ml.so.1") && msg.contains("install the NVIDIA driver"), "{msg}");
    }

    /// Virtual time shared by the fake device and the fake clock.
    #[derive(Clone, Default)]
    struct VirtualTime(Arc<Mutex<f64>>);
    impl CheckClock for VirtualTime {
        fn now_s(&mut self) -> f64 {
            *self.0.lock().unwrap()
        }
        fn sleep(&mut self, d: Duration) {
            *self.0.lock().unwrap() += d.as_secs_f64();
        }
    }

    struct FakeGpu {
        time: VirtualTime,
        clocks: Vec<u32>,
        clock: u32,
        power_w: f64,
        /// Counter joules per joule drawn; `None` for no counter.
        counter_scale: Option<f64>,
        lock_error: Option<fn() -> NvmlError>,
        calls: Arc<Mutex<Vec<String>>>,
    }
    impl FakeGpu {
        fn new(time: &VirtualTime) -> Self {
            FakeGpu {
                time: time.clone(),
                clocks: vec![1410, 210, 1395, 225],
                clock: 1410,
                power_w: 60.0,
                counter_scale: Some(1.0),
                lock_error: None,
                calls: Arc::default(),
            }
        }
    }
    impl NvmlDevice for FakeGpu {
        fn supported_graphics_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError> {
            Ok(self.clocks.clone())
        }
        fn graphics_clock_mhz(&self) -> Result<u32, NvmlError> {
            Ok(self.clock)
        }
        fn lock_clocks(&mut self, mhz: u32) -> Result<(), NvmlError> {
            if let Some(e) = self.lock_error {
                return Err(e());
            }
            self.calls.lock().unwrap().push(format!("lock {mhz}"));
            self.clock = mhz;
            Ok(())
        }
        fn reset_clocks(&mut self) -> Result<(), NvmlError> {
            self.calls.lock().unwrap().push("reset".into());
            self.clock = 1410;
            Ok(())
        }
        fn power_mw(&self) -> Result<u32, NvmlError> {
            Ok((self.power_w * 1e3) as u32)
        }
        fn energy_mj(&self) -> Result<u64, NvmlError> {
            let scale = self.counter_scale.ok_or(NvmlError::NotSupported)?;
            let t = *self.time.0.lock().unwrap();
            Ok((1e6 + scale * self.power_w * t * 1e3) as u64)
        }
    }

    fn open(fake: FakeGpu, time: &mut VirtualTime) -> NvmlGpu {
        NvmlGpu::from_device(Box::new(fake), "GPU 0 (fake)".into(), Duration::from_secs(1), 0.25, time)
            .unwrap()
    }

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

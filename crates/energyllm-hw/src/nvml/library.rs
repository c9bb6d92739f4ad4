//! Loading NVML, listing its GPUs, the calls the actuator makes (behind [`NvmlDevice`]) and the
//! mapping of NVML errors onto actuator errors that say what to do.

use std::path::Path;
use std::sync::Arc;

use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::enums::device::GpuLockedClocksSetting;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

use energyllm_core::ActuatorError;

use super::NvmlDeviceId;

/// The NVML calls the actuator makes, so its logic can be tested without a GPU.
pub(super) trait NvmlDevice: Send {
    fn supported_graphics_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError>;
    fn graphics_clock_mhz(&self) -> Result<u32, NvmlError>;
    fn lock_clocks(&mut self, mhz: u32) -> Result<(), NvmlError>;
    fn reset_clocks(&mut self) -> Result<(), NvmlError>;
    fn power_mw(&self) -> Result<u32, NvmlError>;
    fn energy_mj(&self) -> Result<u64, NvmlError>;
}

/// A device looked up by UUID on every call: `Device` borrows `Nvml`, and the lookup is cheap.
pub(super) struct RealDevice {
    pub(super) nvml: Arc<Nvml>,
    pub(super) uuid: String,
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
pub(super) fn nvml_error(what: &str, label: &str, e: NvmlError) -> ActuatorError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! What `energyllm hw info` reports: the GPU backends built in, the GPUs each one finds, their
//! clocks, power and energy counter, and whether this process may change their clocks.
//!
//! Detection never fails as a whole: a backend that cannot run (not built in, library missing,
//! no card) says why in its status line, and the other backends still report.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::GpuSpec;

/// Where to look.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfoOptions {
    /// Path to libnvidia-ml. Default: none (the loader finds `libnvidia-ml.so.1`).
    pub nvml_lib: Option<PathBuf>,
    /// Directory holding the DRM cards. Default: `/sys/class/drm`.
    pub amd_sysfs_root: PathBuf,
    /// Check each NVIDIA energy counter against sampled power (1 s per GPU). Default: false.
    pub check_energy: bool,
}

impl Default for InfoOptions {
    fn default() -> Self {
        InfoOptions { nvml_lib: None, amd_sysfs_root: PathBuf::from("/sys/class/drm"), check_energy: false }
    }
}

/// One backend's findings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendReport {
    /// `nvml`, `amd` or `sim`.
    pub backend: String,
    /// Whether this build includes it.
    pub compiled: bool,
    /// Whether it could look for devices.
    pub available: bool,
    /// One line: what it found, or why it could not look and what to do.
    pub status: String,
    /// The GPUs it found.
    pub devices: Vec<DeviceInfo>,
}

/// One GPU.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// How to name it in the actuator config (`0`, `GPU-…`, `card1`).
    pub id: String,
    /// Model name.
    pub name: String,
    /// Current SM clock, in MHz.
    pub current_freq_mhz: Option<u32>,
    /// Clocks it can be locked at, in MHz, ascending.
    pub supported_freqs_mhz: Vec<u32>,
    /// Board power now, in watts.
    pub power_w: Option<f64>,
    /// Energy counter status.
    pub energy_counter: String,
    /// Whether this process may change its clocks.
    pub can_set_clocks: bool,
    /// How it may, or why not and what grants it.
    pub clock_control: String,
    /// Other facts worth knowing (CUDA index, performance level, MIG).
    pub notes: Vec<String>,
    /// Readings that failed, with the error.
    pub problems: Vec<String>,
}

/// Everything `energyllm hw info` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HwReport {
    /// One entry per backend: nvml, amd, sim.
    pub backends: Vec<BackendReport>,
}

impl HwReport {
    /// Real GPUs found (the simulator's profiles do not count).
    pub fn device_count(&self) -> usize {
        self.backends.iter().map(|b| b.devices.len()).sum()
    }
}

/// Looks for GPUs with every backend built in.
pub fn detect(options: &InfoOptions) -> HwReport {
    HwReport { backends: vec![nvml_report(options), amd_report(options), sim_report()] }
}

#[cfg_attr(all(feature = "nvml", feature = "amd"), allow(dead_code))]
fn not_built(backend: &str) -> BackendReport {
    BackendReport {
        backend: backend.into(),
        compiled: false,
        available: false,
        status: format!("not built in: rebuild with `--features {backend}`"),
        devices: Vec::new(),
    }
}

fn sim_report() -> BackendReport {
    BackendReport {
        backend: "sim".into(),
        compiled: true,
        available: true,
        status: format!("virtual GPUs from built-in profiles: {}", GpuSpec::builtin_names().join(", ")),
        devices: Vec::new(),
    }
}

/// Whether the effective user is root, from `/proc/self/status` (no unsafe `geteuid`).
pub fn running_as_root() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let effective = uids.split_whitespace().nth(1)?;
    Some(effective == "0")
}

fn summarize(clocks: &[u32]) -> String {
    match clocks {
        [] => "none".into(),
        [one] => format!("{one} MHz"),
        _ if clocks.len() <= 8 => {
            format!("{} MHz", clocks.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))
        }
        [first, .., last] => format!("{} clocks, {first}–{last} MHz", clocks.len()),
    }
}

#[cfg(not(feature = "nvml"))]
fn nvml_report(_: &InfoOptions) -> BackendReport {
    not_built("nvml")
}

#[cfg(feature = "nvml")]
fn nvml_report(options: &InfoOptions) -> BackendReport {
    use crate::nvml::{load, CounterStatus, NvmlConfig, NvmlGpu};
    use energyllm_core::FrequencyActuator as _;

    let mut report = BackendReport {
        backend: "nvml".into(),
        compiled: true,
        available: false,
        status: String::new(),
        devices: Vec::new(),
    };
    let nvml = match load(options.nvml_lib.as_deref()) {
        Ok(n) => n,
        Err(e) => {
            report.status = e.to_string();
            return report;
        }
    };
    let devices = match crate::nvml::list_devices(&nvml) {
        Ok(d) => d,
        Err(e) => {
            report.status = e.to_string();
            return report;
        }
    };
    report.available = true;
    let driver = nvml.sys_driver_version().ok();
    drop(nvml);
    report.status =
        format!("{} GPU(s){}", devices.len(), driver.map(|v| format!(", driver {v}")).unwrap_or_default());
    let root = running_as_root();
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    for (pos, d) in devices.iter().enumerate() {
        let mut info = DeviceInfo { id: d.uuid.clone(), name: d.name.clone(), ..DeviceInfo::default() };
        info.notes.push(format!("NVML index {}", d.index));
        if let Some(v) = &visible {
            info.notes.push(match crate::nvml::cuda_index_of(v, &devices, pos) {
                Some(i) => format!("CUDA device {i} under CUDA_VISIBLE_DEVICES={v}"),
                None => format!("hidden from CUDA by CUDA_VISIBLE_DEVICES={v}"),
            });
        }
        let config = NvmlConfig {
            device: crate::nvml::DeviceSelector::Name(d.uuid.clone()),
            lib_path: options.nvml_lib.clone(),
            energy_check_s: if options.check_energy { 1.0 } else { 0.0 },
            ..NvmlConfig::default()
        };
        match NvmlGpu::open(&config) {
            Err(e) => {
                info.can_set_clocks = false;
                info.clock_control = e.to_string();
                info.energy_counter = "unknown".into();
            }
            Ok(gpu) => {
                match gpu.current_frequency() {
                    Ok(f) => info.current_freq_mhz = Some(f.0),
                    Err(e) => info.problems.push(format!("clock: {e}")),
                }
                info.supported_freqs_mhz =
                    gpu.supported_frequencies().unwrap_or_default().iter().map(|f| f.0).collect();
                match gpu.power_w() {
                    Ok(p) => info.power_w = Some(p),
                    Err(e) => info.problems.push(format!("power: {e}")),
                }
                info.energy_counter = match gpu.counter_status() {
                    CounterStatus::Unchecked => {
                        "present (not checked; `--check-energy` compares it with sampled power)".into()
                    }
                    other => other.to_string(),
                };
                (info.can_set_clocks, info.clock_control) = match root {
                    Some(true) => (true, "yes: running as root (locked clocks need Volta or newer)".into()),
                    Some(false) => (false, "no: locking GPU clocks needs root; run energyllm as root (e.g. sudo or a systemd service)".into()),
                    None => (false, "unknown: cannot tell whether this process runs as root".into()),
                };
            }
        }
        report.devices.push(info);
    }
    report
}

#[cfg(not(feature = "amd"))]
fn amd_report(_: &InfoOptions) -> BackendReport {
    not_built("amd")
}

#[cfg(feature = "amd")]
fn amd_report(options: &InfoOptions) -> BackendReport {
    use crate::amd::{list_cards, AmdConfig, AmdGpu, CardSelector};
    use energyllm_core::FrequencyActuator as _;

    let mut report = BackendReport {
        backend: "amd".into(),
        compiled: true,
        available: false,
        status: String::new(),
        devices: Vec::new(),
    };
    let root = &options.amd_sysfs_root;
    let cards = match list_cards(root) {
        Ok(c) => c,
        Err(e) => {
            report.status = e.to_string();
            return report;
        }
    };
    report.available = true;
    report.status = if cards.is_empty() {
        format!("no amdgpu card under {}", root.display())
    } else {
        format!("{} amdgpu card(s) under {}", cards.len(), root.display())
    };
    for card in cards {
        let mut info = DeviceInfo {
            id: card.card.clone(),
            name: format!("AMD GPU {}", card.pci_id.as_deref().unwrap_or("unknown id")),
            energy_counter: "none (amdgpu has no energy counter; energy is integrated from hwmon power)"
                .into(),
            ..DeviceInfo::default()
        };
        if let Some(slot) = &card.pci_slot {
            info.notes.push(format!("PCI {slot}"));
        }
        let config = AmdConfig {
            sysfs_root: root.clone(),
            card: Some(CardSelector::Name(card.card.clone())),
            ..AmdConfig::default()
        };
        match AmdGpu::open(&config) {
            Err(e) => {
                info.clock_control = e.to_string();
            }
            Ok(gpu) => {
                info.notes.push(format!("clock control: {:?}", gpu.mode()).to_lowercase());
                match gpu.performance_level() {
                    Ok(level) if level == "auto" => info.notes.push("performance level auto".into()),
                    Ok(level) => info.notes.push(format!(
                        "performance level `{level}`, not auto: clocks may have been left forced; write `auto` to {}/power_dpm_force_performance_level to restore",
                        card.device_dir.display()
                    )),
                    Err(e) => info.problems.push(format!("performance level: {e}")),
                }
                match gpu.current_frequency() {
                    Ok(f) => info.current_freq_mhz = Some(f.0),
                    Err(e) => info.problems.push(format!("clock: {e}")),
                }
                info.supported_freqs_mhz =
                    gpu.supported_frequencies().unwrap_or_default().iter().map(|f| f.0).collect();
                match gpu.power_w() {
                    Ok(p) => info.power_w = Some(p),
                    Err(e) => info.problems.push(format!("power: {e}")),
                }
                (info.can_set_clocks, info.clock_control) = match gpu.check_write_access() {
                    Ok(()) => (true, "yes: the sysfs files are writable".into()),
                    Err(e) => (false, format!("no: {e}")),
                };
            }
        }
        report.devices.push(info);
    }
    report
}

impl HwReport {
    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for b in &self.backends {
            let _ = writeln!(out, "{}: {}", b.backend, b.status);
            for d in &b.devices {
                let _ = write!(out, "{}", DeviceText(d));
            }
        }
        let n = self.device_count();
        let _ = writeln!(out, "\n{n} GPU(s) found.");
        out
    }
}

struct DeviceText<'a>(&'a DeviceInfo);

impl fmt::Display for DeviceText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        writeln!(f, "  {} — {}", d.id, d.name)?;
        for n in &d.notes {
            writeln!(f, "      {n}")?;
        }
        let clock = d.current_freq_mhz.map_or_else(|| "unknown".to_owned(), |c| format!("{c} MHz"));
        writeln!(f, "      clock:          {clock}")?;
        writeln!(f, "      supported:      {}", summarize(&d.supported_freqs_mhz))?;
        let power = d.power_w.map_or_else(|| "unknown".to_owned(), |p| format!("{p:.1} W"));
        writeln!(f, "      power:          {power}")?;
        writeln!(f, "      energy counter: {}", d.energy_counter)?;
        writeln!(f, "      change clocks:  {}", d.clock_control)?;
        for p in &d.problems {
            writeln!(f, "      problem:        {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_reports_even_without_hardware() {
        let dir = std::env::temp_dir().join("energyllm-no-such-sysfs");
        let r = detect(&InfoOptions { amd_sysfs_root: dir, ..InfoOptions::default() });
        let names: Vec<&str> = r.backends.iter().map(|b| b.backend.as_str()).collect();
        assert_eq!(names, ["nvml", "amd", "sim"]);
        let text = r.to_text();
        assert!(text.contains("sim: virtual GPUs from built-in profiles: a100-40gb"), "{text}");
        if !cfg!(feature = "nvml") {
            assert!(text.contains("nvml: not built in: rebuild with `--features nvml`"), "{text}");
        }
        if !cfg!(feature = "amd") {
            assert!(text.contains("amd: not built in"), "{text}");
        } else {
            assert!(text.contains("amd: no amdgpu card under"), "{text}");
        }
    }

    #[test]
    fn clock_lists_are_summarized() {
        assert_eq!(summarize(&[]), "none");
        assert_eq!(summarize(&[500, 2100]), "500, 2100 MHz");
        let many: Vec<u32> = (210..=1410).step_by(15).collect();
        assert_eq!(summarize(&many), "81 clocks, 210–1410 MHz");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn root_is_read_from_proc() {
        // Whatever the user, on Linux the answer is known.
        assert!(running_as_root().is_some());
    }
}

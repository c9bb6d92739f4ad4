//! AMD GPUs through the amdgpu sysfs files (cargo feature `amd`).
//!
//! The files, as the kernel documents them (Documentation/gpu/amdgpu/thermal.rst), under
//! `/sys/class/drm/cardN/device/`:
//!
//! - `power_dpm_force_performance_level`: `auto`, `low`, `high`, `manual`, `profile_*`. Clocks can
//!   be forced only in `manual`; `auto` gives clock management back to the driver.
//! - `pp_dpm_sclk`: one line per SCLK DPM level, `N: <clock>Mhz`, the active one marked `*`. In
//!   `manual`, writing `N` forces level N.
//! - `pp_od_clk_voltage`: the overdrive table. On Vega20, RDNA and CDNA cards `OD_SCLK:` holds
//!   `0: <min>Mhz` and `1: <max>Mhz` and `OD_RANGE:` the limits (`SCLK: <lo>Mhz <hi>Mhz`); in
//!   `manual`, `s 0 <MHz>` and `s 1 <MHz>` stage a range, `c` commits it and `r` restores the
//!   defaults. Present only when overdrive is enabled (kernel parameter `amdgpu.ppfeaturemask`).
//! - `hwmon/hwmon*/power1_average` (or `power1_input` on newer cards): board power in µW.
//!
//! Two ways to lock the clock ([`AmdMode`]): **levels** forces one DPM level (every card with
//! DPM; the clocks offered are the levels), **overdrive** sets the SCLK range to min = max (any
//! clock in the range, on cards with fine-grained DPM, where the level list is only min and max).
//! Restoring writes `r`, `c` to the overdrive table (overdrive mode) and then `auto`.
//!
//! amdgpu exposes no energy counter: [`energy_j`](FrequencyActuator::energy_j) is `None` and the
//! telemetry [`Sampler`](crate::telemetry::Sampler) integrates hwmon power into energy.
//!
//! **Reads and writes.** Reads go through amdgpu-sysfs (`GpuHandle` parses the level list, the
//! performance level and the overdrive table; `HwMon` the power). Writes go through a
//! [`SysfsWriter`]. The reason: a sysfs attribute is not a file. Writing `2` to `pp_dpm_sclk`
//! selects a level and the file still reads as the level table; `c` to `pp_od_clk_voltage`
//! commits staged values. amdgpu-sysfs writes with `std::fs` directly, so over a fake tree of
//! plain files its writes would replace the tables. With the seam, production uses
//! [`DirectWriter`] (one plain write per command, as `echo > file` does) and the tests use
//! [`fake::FakeAmdgpu`], which plays the driver's part on a tree in a temp dir, refusing what the
//! driver refuses (levels outside `manual`, clocks outside the range).

pub mod fake;

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use amdgpu_sysfs::gpu_handle::overdrive::{ClocksTable as _, ClocksTableGen};
use amdgpu_sysfs::gpu_handle::{GpuHandle, PerformanceLevel, PowerLevelId};
use amdgpu_sysfs::hw_mon::HwMon;
use serde::{Deserialize, Serialize};

use energyllm_core::registry::{parse_config, ActuatorPlugin, ConfigValue};
use energyllm_core::{ActuatorError, FrequencyActuator, Mhz};

const PERF_LEVEL: &str = "power_dpm_force_performance_level";
const SCLK: &str = "pp_dpm_sclk";
const OD: &str = "pp_od_clk_voltage";
/// Linux `ENODEV`: the device went away under an open attribute.
const ENODEV: i32 = 19;

/// Writes sysfs attributes. See the module docs for why writes are a seam.
pub trait SysfsWriter: Send + Sync + fmt::Debug {
    /// Writes `contents` to the attribute at `path` in one write, as `echo contents > path` does.
    fn write(&self, path: &Path, contents: &str) -> io::Result<()>;
    /// Succeeds if this process may write `path`; writes nothing.
    fn check_writable(&self, path: &Path) -> io::Result<()>;
}

/// Writes the real attributes: open for writing (never create), one `write` per command.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirectWriter;

impl SysfsWriter for DirectWriter {
    fn write(&self, path: &Path, contents: &str) -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).open(path)?;
        f.write_all(format!("{contents}\n").as_bytes())
    }
    fn check_writable(&self, path: &Path) -> io::Result<()> {
        OpenOptions::new().write(true).open(path).map(drop)
    }
}

/// How the AMD actuator locks the clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmdMode {
    /// Overdrive where the card offers a min/max SCLK range, levels otherwise.
    #[default]
    Auto,
    /// Force one `pp_dpm_sclk` level.
    Levels,
    /// Set the `pp_od_clk_voltage` SCLK range to min = max.
    Overdrive,
}

/// A card named by its DRM name (`card1`), its number (`1`) or its PCI slot (`0000:03:00.0`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CardSelector {
    /// The number in `cardN`.
    Number(u32),
    /// `cardN` or a PCI slot name.
    Name(String),
}

impl fmt::Display for CardSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CardSelector::Number(n) => write!(f, "card{n}"),
            CardSelector::Name(s) => f.write_str(s),
        }
    }
}

/// Config of the `amd` actuator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmdConfig {
    /// Directory holding the DRM cards. Default: `/sys/class/drm`.
    pub sysfs_root: PathBuf,
    /// Which card. Default: the first amdgpu card.
    pub card: Option<CardSelector>,
    /// How to lock the clock. Default: `auto`.
    pub mode: AmdMode,
    /// Step between the clocks offered in overdrive mode, in MHz. Default: 25.
    pub od_step_mhz: u32,
}

impl Default for AmdConfig {
    fn default() -> Self {
        AmdConfig {
            sysfs_root: PathBuf::from("/sys/class/drm"),
            card: None,
            mode: AmdMode::Auto,
            od_step_mhz: 25,
        }
    }
}

/// An amdgpu card found under the sysfs root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmdCard {
    /// DRM name, `cardN`.
    pub card: String,
    /// The card's device directory (`…/cardN/device`).
    pub device_dir: PathBuf,
    /// PCI slot (`0000:03:00.0`), if the driver reports it.
    pub pci_slot: Option<String>,
    /// PCI vendor:device id (`1002:740F`), if the driver reports it.
    pub pci_id: Option<String>,
}

/// Every amdgpu card under `sysfs_root`, by card number. A missing root means no cards.
pub fn list_cards(sysfs_root: &Path) -> Result<Vec<AmdCard>, ActuatorError> {
    let entries = match std::fs::read_dir(sysfs_root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ActuatorError::Backend(format!("cannot list {}: {e}", sysfs_root.display()))),
    };
    let mut cards = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // `card1-DP-2` and the like are connectors, not cards.
        let Some(number) = name.strip_prefix("card").and_then(|n| n.parse::<u32>().ok()) else { continue };
        let device_dir = entry.path().join("device");
        let Ok(handle) = GpuHandle::new_from_path(device_dir.clone()) else { continue };
        if handle.get_driver() != "amdgpu" {
            continue;
        }
        cards.push((
            number,
            AmdCard {
                card: name,
                pci_slot: handle.get_pci_slot_name().map(str::to_owned),
                pci_id: handle.get_pci_id().map(|(v, d)| format!("{v}:{d}")),
                device_dir,
            },
        ));
    }
    cards.sort_by_key(|(n, _)| *n);
    Ok(cards.into_iter().map(|(_, c)| c).collect())
}

#[derive(Clone, Debug)]
enum Control {
    /// (level index, clock), in file order.
    Levels(Vec<(u8, Mhz)>),
    Overdrive,
}

/// An AMD GPU's SM (SCLK) clock and power through sysfs.
#[derive(Debug)]
pub struct AmdGpu {
    card: String,
    device_dir: PathBuf,
    handle: GpuHandle,
    writer: Arc<dyn SysfsWriter>,
    control: Control,
    supported: Vec<Mhz>,
    power: Option<(HwMon, &'static str)>,
    dirty: bool,
}

impl AmdGpu {
    /// Opens the configured card with the real sysfs writer.
    pub fn open(config: &AmdConfig) -> Result<Self, ActuatorError> {
        Self::open_with_writer(config, Arc::new(DirectWriter))
    }

    /// Opens the configured card, writing through `writer` (the tests pass a
    /// [`fake::FakeAmdgpu`]).
    pub fn open_with_writer(config: &AmdConfig, writer: Arc<dyn SysfsWriter>) -> Result<Self, ActuatorError> {
        if config.od_step_mhz == 0 {
            return Err(ActuatorError::Backend("amd: `od_step_mhz` must be at least 1".into()));
        }
        let cards = list_cards(&config.sysfs_root)?;
        let found = || cards.iter().map(|c| c.card.clone()).collect::<Vec<_>>().join(", ");
        let card = match &config.card {
            None => cards.first().ok_or_else(|| {
                ActuatorError::NotInstalled(format!(
                    "no amdgpu card under {}: is the amdgpu driver loaded (`lsmod | grep amdgpu`)?",
                    config.sysfs_root.display()
                ))
            })?,
            Some(sel) => cards
                .iter()
                .find(|c| match sel {
                    CardSelector::Number(n) => c.card == format!("card{n}"),
                    CardSelector::Name(s) => c.card == *s || c.pci_slot.as_deref() == Some(s.as_str()),
                })
                .ok_or_else(|| {
                    ActuatorError::Backend(format!(
                        "no amdgpu card `{sel}` under {}; found: {}",
                        config.sysfs_root.display(),
                        if cards.is_empty() { "none".to_owned() } else { found() }
                    ))
                })?,
        };
        let handle = GpuHandle::new_from_path(card.device_dir.clone())
            .map_err(|e| ActuatorError::Backend(format!("{}: {e}", card.device_dir.display())))?;
        let mut gpu = AmdGpu {
            card: card.card.clone(),
            device_dir: card.device_dir.clone(),
            power: power_source(&handle),
            handle,
            writer,
            control: Control::Overdrive,
            supported: Vec::new(),
            dirty: false,
        };
        let od_range = gpu.od_sclk_range();
        let (control, supported) = match (config.mode, od_range) {
            (AmdMode::Auto | AmdMode::Overdrive, Some((lo, hi))) => (Control::Overdrive, clock_grid(lo, hi, config.od_step_mhz)),
            (AmdMode::Overdrive, None) => {
                return Err(ActuatorError::NotSupported(format!(
                    "{}: no overdrive SCLK range ({OD} is missing or not in the min/max format); enable \
                     overdrive with the kernel parameter amdgpu.ppfeaturemask=0xffffffff, or use mode = \"levels\"",
                    gpu.card
                )))
            }
            (AmdMode::Auto | AmdMode::Levels, _) => {
                let levels = gpu.sclk_levels()?;
                let mut clocks: Vec<Mhz> = levels.iter().map(|(_, f)| *f).collect();
                clocks.sort_unstable();
                clocks.dedup();
                (Control::Levels(levels), clocks)
            }
        };
        if supported.is_empty() {
            return Err(ActuatorError::NotSupported(format!("{}: {SCLK} lists no clock levels", gpu.card)));
        }
        gpu.control = control;
        gpu.supported = supported;
        Ok(gpu)
    }

    /// The DRM card name (`card0`).
    pub fn card(&self) -> &str {
        &self.card
    }

    /// The mode in use (`Levels` or `Overdrive`, never `Auto`).
    pub fn mode(&self) -> AmdMode {
        match self.control {
            Control::Levels(_) => AmdMode::Levels,
            Control::Overdrive => AmdMode::Overdrive,
        }
    }

    /// The value of `power_dpm_force_performance_level` (`auto` unless someone forced clocks).
    pub fn performance_level(&self) -> Result<String, ActuatorError> {
        self.handle
            .get_power_force_performance_level()
            .map(|l| l.to_string())
            .map_err(|e| self.read_error(PERF_LEVEL, e))
    }

    /// Succeeds if this process may change the clocks; the error says what grants it.
    pub fn check_write_access(&self) -> Result<(), ActuatorError> {
        let files: &[&str] = match self.control {
            Control::Levels(_) => &[PERF_LEVEL, SCLK],
            Control::Overdrive => &[PERF_LEVEL, OD],
        };
        for file in files {
            let path = self.device_dir.join(file);
            self.writer.check_writable(&path).map_err(|e| self.write_error(&path, None, e))?;
        }
        Ok(())
    }

    /// The current and allowed SCLK range in overdrive mode: the clocks offered run from the
    /// range's floor to the current maximum (the stock top clock when opened with defaults), so
    /// the actuator never overclocks.
    fn od_sclk_range(&self) -> Option<(u32, u32)> {
        let table = self.handle.get_clocks_table().ok()?;
        let ClocksTableGen::Rdna(table) = table else { return None };
        let (cur_lo, cur_hi) = table.get_current_sclk_range().into_full()?;
        let (lo, top) = match table.get_min_sclk_range().and_then(|r| r.into_full()) {
            Some((floor, ceiling)) => (floor.min(cur_lo), cur_hi.min(ceiling)),
            None => (cur_lo, cur_hi),
        };
        let (lo, top) = (u32::try_from(lo).ok()?, u32::try_from(top).ok()?);
        (lo > 0 && lo <= top).then_some((lo, top))
    }

    fn sclk_levels(&self) -> Result<Vec<(u8, Mhz)>, ActuatorError> {
        let levels = self.handle.get_core_clock_levels().map_err(|e| self.read_error(SCLK, e))?;
        Ok(levels
            .levels
            .iter()
            .filter_map(|l| match l.id {
                PowerLevelId::Index(i) => Some((i, Mhz(u32::try_from(l.value).ok()?))),
                PowerLevelId::Sleep => None,
            })
            .collect())
    }

    fn write(&self, file: &str, contents: &str) -> Result<(), ActuatorError> {
        let path = self.device_dir.join(file);
        self.writer.write(&path, contents).map_err(|e| self.write_error(&path, Some(contents), e))
    }

    fn ensure_manual(&self) -> Result<(), ActuatorError> {
        let level =
            self.handle.get_power_force_performance_level().map_err(|e| self.read_error(PERF_LEVEL, e))?;
        if level != PerformanceLevel::Manual {
            self.write(PERF_LEVEL, "manual")?;
        }
        Ok(())
    }

    fn lost(&self) -> Option<ActuatorError> {
        (!self.device_dir.exists()).then(|| {
            ActuatorError::DeviceLost(format!(
                "{} disappeared: the GPU was removed or the amdgpu driver unloaded; check `dmesg` and reload the driver",
                self.device_dir.display()
            ))
        })
    }

    fn write_error(&self, path: &Path, contents: Option<&str>, e: io::Error) -> ActuatorError {
        if let Some(lost) = self.lost() {
            return lost;
        }
        let what = contents.map_or_else(String::new, |c| format!("`{c}` to "));
        match e.kind() {
            io::ErrorKind::PermissionDenied => ActuatorError::PermissionDenied(format!(
                "cannot write {}: changing AMD GPU clocks needs root, or write access to {PERF_LEVEL}, {SCLK} and {OD} in {} (e.g. a udev rule)",
                path.display(),
                self.device_dir.display()
            )),
            io::ErrorKind::NotFound => ActuatorError::NotSupported(format!(
                "{} does not exist: this card or kernel does not offer it",
                path.display()
            )),
            io::ErrorKind::InvalidInput => ActuatorError::Backend(format!(
                "the amdgpu driver refused {what}{} ({e}): the level or clock may be out of range, or overdrive disabled (kernel parameter amdgpu.ppfeaturemask)",
                path.display()
            )),
            _ if e.raw_os_error() == Some(ENODEV) => ActuatorError::DeviceLost(format!(
                "writing {what}{}: {e}; the GPU is gone or being reset, check `dmesg`",
                path.display()
            )),
            _ => ActuatorError::Backend(format!("writing {what}{}: {e}", path.display())),
        }
    }

    fn read_error(&self, file: &str, e: amdgpu_sysfs::error::Error) -> ActuatorError {
        if let Some(lost) = self.lost() {
            return lost;
        }
        match &e.kind {
            amdgpu_sysfs::error::ErrorKind::IoError(io) if io.raw_os_error() == Some(ENODEV) => {
                ActuatorError::DeviceLost(format!("reading {file} of {}: {io}; check `dmesg`", self.card))
            }
            _ => ActuatorError::Backend(format!("reading {}/{file}: {e}", self.device_dir.display())),
        }
    }
}

/// Clocks from `lo` to `hi` every `step` MHz, `hi` included.
fn clock_grid(lo: u32, hi: u32, step: u32) -> Vec<Mhz> {
    let mut v: Vec<Mhz> = (lo..=hi).step_by(step.max(1) as usize).map(Mhz).collect();
    if v.last() != Some(&Mhz(hi)) {
        v.push(Mhz(hi));
    }
    v
}

/// The first hwmon with a power file: `power1_average` (averaged by the firmware, the better
/// input for integration) or else `power1_input`.
fn power_source(handle: &GpuHandle) -> Option<(HwMon, &'static str)> {
    handle.hw_monitors.iter().find_map(|m| {
        if m.get_power_average().is_ok() {
            Some((m.clone(), "power1_average"))
        } else if m.get_power_input().is_ok() {
            Some((m.clone(), "power1_input"))
        } else {
            None
        }
    })
}

impl FrequencyActuator for AmdGpu {
    fn name(&self) -> &str {
        "amd"
    }
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError> {
        Ok(self.supported.clone())
    }
    /// In overdrive mode with min = max, the locked clock; otherwise the active `pp_dpm_sclk`
    /// line, or hwmon's `freq1_input`.
    fn current_frequency(&self) -> Result<Mhz, ActuatorError> {
        if matches!(self.control, Control::Overdrive) {
            if let Ok(ClocksTableGen::Rdna(t)) = self.handle.get_clocks_table() {
                if let Some((lo, hi)) = t.get_current_sclk_range().into_full() {
                    if lo == hi
                        && self.handle.get_power_force_performance_level().ok()
                            == Some(PerformanceLevel::Manual)
                    {
                        return u32::try_from(hi).map(Mhz).map_err(|_| {
                            ActuatorError::Backend(format!("{}: negative SCLK {hi}", self.card))
                        });
                    }
                }
            }
        }
        let levels = self.handle.get_core_clock_levels().map_err(|e| self.read_error(SCLK, e))?;
        if let Some(f) = levels.active_level().and_then(|f| u32::try_from(*f).ok()) {
            return Ok(Mhz(f));
        }
        self.handle
            .hw_monitors
            .iter()
            .find_map(|m| m.get_gpu_clockspeed().ok())
            .and_then(|f| u32::try_from(f).ok())
            .map(Mhz)
            .ok_or_else(|| {
                ActuatorError::Backend(format!(
                    "{}: no active level in {SCLK} and no hwmon freq1_input",
                    self.card
                ))
            })
    }
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError> {
        if self.supported.binary_search(&freq).is_err() {
            return Err(ActuatorError::UnsupportedClock {
                requested: freq,
                supported: self.supported.clone(),
            });
        }
        self.dirty = true;
        self.ensure_manual()?;
        match &self.control {
            Control::Levels(levels) => {
                let index = levels.iter().find(|(_, f)| *f == freq).map(|(i, _)| *i).unwrap_or_default();
                self.write(SCLK, &index.to_string())
            }
            Control::Overdrive => {
                let current_max = match self.handle.get_clocks_table() {
                    Ok(ClocksTableGen::Rdna(t)) => t.get_current_sclk_range().max.unwrap_or(0),
                    _ => 0,
                };
                // The range must stay min ≤ max after every command: raise the max first when
                // going up (RDNA3 refuses a min above the current max).
                let f = freq.0;
                let above = i64::from(f) > i64::from(current_max);
                let order = if above { [1, 0] } else { [0, 1] };
                for i in order {
                    self.write(OD, &format!("s {i} {f}"))?;
                }
                self.write(OD, "c")
            }
        }
    }
    fn reset(&mut self) -> Result<(), ActuatorError> {
        if matches!(self.control, Control::Overdrive) {
            // Overdrive edits need manual; the table outlives the performance level, so put it
            // back before handing control to the driver.
            self.ensure_manual()?;
            self.write(OD, "r")?;
            self.write(OD, "c")?;
        }
        self.write(PERF_LEVEL, "auto")?;
        self.dirty = false;
        Ok(())
    }
    fn power_w(&self) -> Result<f64, ActuatorError> {
        let (mon, file) = self.power.as_ref().ok_or_else(|| {
            ActuatorError::NotSupported(format!("{}: no hwmon power1_average or power1_input", self.card))
        })?;
        let read = if *file == "power1_average" { mon.get_power_average() } else { mon.get_power_input() };
        read.map_err(|e| self.read_error(file, e))
    }
    /// amdgpu has no energy counter; the telemetry sampler integrates power.
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError> {
        Ok(None)
    }
}

impl Drop for AmdGpu {
    fn drop(&mut self) {
        if self.dirty {
            if let Err(e) = self.reset() {
                eprintln!("energyllm: could NOT restore default clocks on {}: {e}", self.card);
            }
        }
    }
}

fn build_amd(config: &ConfigValue) -> Result<Box<dyn FrequencyActuator>, ActuatorError> {
    let cfg: AmdConfig =
        parse_config("actuator", "amd", config).map_err(|e| ActuatorError::Backend(e.to_string()))?;
    Ok(Box::new(AmdGpu::open(&cfg)?))
}

inventory::submit! {
    ActuatorPlugin {
        name: "amd",
        description: "AMD GPU through amdgpu sysfs (SCLK levels or overdrive range, hwmon power)",
        build: build_amd,
    }
}

//! A fake amdgpu sysfs tree, for tests: the files and formats the driver documents, in a
//! directory of your choosing, and a [`SysfsWriter`] that plays the driver's part.
//!
//! [`FakeDevice::create`] lays out `ROOT/cardN/device/` with `uevent`, `pp_dpm_sclk`,
//! `power_dpm_force_performance_level`, `pp_od_clk_voltage` and `hwmon/hwmon0/` (`name`,
//! `power1_average` or `power1_input` in µW, `freq1_input` in Hz). Point
//! [`AmdConfig::sysfs_root`](super::AmdConfig) at `ROOT` and write through [`FakeAmdgpu`]:
//!
//! - `power_dpm_force_performance_level`: any documented level; `auto` returns SCLK to the boot
//!   level.
//! - `pp_dpm_sclk`: `N` or `N M …` selects the highest given level; refused (EINVAL) unless the
//!   level is `manual` or an index is out of range.
//! - `pp_od_clk_voltage` (fine-grained cards): `s 0|1 MHz` stages the SCLK min/max (EINVAL
//!   outside `OD_RANGE` or outside `manual`), `r` stages the defaults, `c` commits (EINVAL if
//!   min > max) and rewrites `OD_SCLK` and `pp_dpm_sclk`.
//!
//! The fake keeps its own state (defaults, staged values, whether writes are denied) in a hidden
//! `.fake_amdgpu` file beside the attributes, so a child process writing through its own
//! `FakeAmdgpu` and a parent reading the files see the same device. Every accepted write is
//! appended to `.fake_writes` as `file: contents`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::SysfsWriter;

const STATE: &str = ".fake_amdgpu";
const WRITES: &str = ".fake_writes";
const LEVELS: &[&str] = &[
    "auto",
    "low",
    "high",
    "manual",
    "profile_standard",
    "profile_min_sclk",
    "profile_min_mclk",
    "profile_peak",
];

/// Which power file the fake hwmon has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakePowerFile {
    /// `power1_average` (Vega, RDNA1/2, CDNA).
    Average,
    /// `power1_input` (RDNA3 and later).
    Input,
}

/// What a fake card looks like.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeCardSpec {
    /// Discrete SCLK DPM levels in MHz (discrete cards); ignored when `overdrive` is set.
    pub sclk_levels_mhz: Vec<u32>,
    /// Level active in `auto` at idle.
    pub boot_level: usize,
    /// Fine-grained SCLK with a min/max overdrive range: (default min, default max, range floor,
    /// range ceiling) in MHz.
    pub overdrive: Option<(u32, u32, u32, u32)>,
    /// Power file and its initial value in µW.
    pub power: (FakePowerFile, u64),
    /// PCI slot name in `uevent`.
    pub pci_slot: String,
}

impl FakeCardSpec {
    /// Eight discrete SCLK levels and a Vega10-style per-level overdrive table, like a Vega 56.
    pub fn discrete() -> Self {
        FakeCardSpec {
            sclk_levels_mhz: vec![852, 991, 1138, 1269, 1312, 1474, 1538, 1590],
            boot_level: 0,
            overdrive: None,
            power: (FakePowerFile::Average, 35_000_000),
            pci_slot: "0000:0b:00.0".into(),
        }
    }

    /// Fine-grained SCLK with a min/max overdrive range, like an RDNA2 or Instinct card.
    pub fn fine_grained() -> Self {
        FakeCardSpec {
            sclk_levels_mhz: Vec::new(),
            boot_level: 0,
            overdrive: Some((500, 2100, 500, 3000)),
            power: (FakePowerFile::Input, 60_000_000),
            pci_slot: "0000:03:00.0".into(),
        }
    }
}

/// A fake card's device directory, with helpers to inspect and poke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeDevice {
    /// `ROOT/cardN/device`.
    pub device_dir: PathBuf,
}

impl FakeDevice {
    /// Creates `sysfs_root/card{card}/device` for `spec` (the root is created if missing).
    pub fn create(sysfs_root: &Path, card: u32, spec: &FakeCardSpec) -> io::Result<FakeDevice> {
        let dev = FakeDevice { device_dir: sysfs_root.join(format!("card{card}")).join("device") };
        let hwmon = dev.device_dir.join("hwmon").join("hwmon0");
        fs::create_dir_all(&hwmon)?;
        let d = &dev.device_dir;
        fs::write(
            d.join("uevent"),
            format!("DRIVER=amdgpu\nPCI_CLASS=30000\nPCI_ID=1002:73BF\nPCI_SUBSYS_ID=1002:0E3A\nPCI_SLOT_NAME={}\n", spec.pci_slot),
        )?;
        fs::write(d.join("power_dpm_force_performance_level"), "auto\n")?;
        let mut state = BTreeMap::new();
        state.insert("deny_writes".to_owned(), "0".to_owned());
        match spec.overdrive {
            Some((lo, hi, floor, ceiling)) => {
                state.insert("od_default".into(), format!("{lo},{hi}"));
                state.insert("od_range".into(), format!("{floor},{ceiling}"));
                state.insert("staged".into(), format!("{lo},{hi}"));
                fs::write(d.join("pp_od_clk_voltage"), od_table(lo, hi, floor, ceiling))?;
                fs::write(d.join("pp_dpm_sclk"), fine_levels(lo, hi, false))?;
            }
            None => {
                let levels = &spec.sclk_levels_mhz;
                if spec.boot_level >= levels.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, "boot_level beyond the levels"));
                }
                state.insert("boot_level".into(), spec.boot_level.to_string());
                fs::write(d.join("pp_dpm_sclk"), discrete_levels(levels, spec.boot_level))?;
                fs::write(d.join("pp_od_clk_voltage"), vega10_table(levels))?;
            }
        }
        write_state(d, &state)?;
        fs::write(hwmon.join("name"), "amdgpu\n")?;
        let (file, uw) = spec.power;
        let power_file = match file {
            FakePowerFile::Average => "power1_average",
            FakePowerFile::Input => "power1_input",
        };
        fs::write(hwmon.join(power_file), format!("{uw}\n"))?;
        fs::write(hwmon.join("freq1_label"), "sclk\n")?;
        dev.sync_freq()?;
        fs::write(d.join(WRITES), "")?;
        Ok(dev)
    }

    /// The value of `power_dpm_force_performance_level`.
    pub fn performance_level(&self) -> io::Result<String> {
        Ok(fs::read_to_string(self.device_dir.join("power_dpm_force_performance_level"))?.trim().to_owned())
    }

    /// The clock of the active (`*`) line of `pp_dpm_sclk`.
    pub fn active_sclk_mhz(&self) -> io::Result<Option<u32>> {
        let (levels, active) = read_levels(&self.device_dir)?;
        Ok(active.and_then(|i| levels.get(i).copied()))
    }

    /// The committed overdrive SCLK (min, max), on fine-grained cards.
    pub fn od_sclk_mhz(&self) -> io::Result<Option<(u32, u32)>> {
        let state = read_state(&self.device_dir)?;
        Ok(state.get("od_current").or(state.get("od_default")).and_then(|v| pair(v)))
    }

    /// Every accepted write, in order, as `file: contents`.
    pub fn writes(&self) -> io::Result<Vec<String>> {
        Ok(fs::read_to_string(self.device_dir.join(WRITES))?.lines().map(str::to_owned).collect())
    }

    /// Sets the hwmon power reading, in µW.
    pub fn set_power_uw(&self, uw: u64) -> io::Result<()> {
        let hwmon = self.device_dir.join("hwmon").join("hwmon0");
        for file in ["power1_average", "power1_input"] {
            if hwmon.join(file).exists() {
                fs::write(hwmon.join(file), format!("{uw}\n"))?;
            }
        }
        Ok(())
    }

    /// Makes every write fail with "permission denied", as for a user without access.
    pub fn deny_writes(&self, deny: bool) -> io::Result<()> {
        let mut state = read_state(&self.device_dir)?;
        state.insert("deny_writes".into(), if deny { "1" } else { "0" }.into());
        write_state(&self.device_dir, &state)
    }

    fn sync_freq(&self) -> io::Result<()> {
        if let Some(mhz) = self.active_sclk_mhz()? {
            let hwmon = self.device_dir.join("hwmon").join("hwmon0");
            fs::write(hwmon.join("freq1_input"), format!("{}\n", u64::from(mhz) * 1_000_000))?;
        }
        Ok(())
    }
}

/// Plays the amdgpu driver's part for writes into a [`FakeDevice`] tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct FakeAmdgpu;

impl SysfsWriter for FakeAmdgpu {
    fn write(&self, path: &Path, contents: &str) -> io::Result<()> {
        let (dev, file) = split(path)?;
        let mut state = read_state(&dev.device_dir)?;
        if state.get("deny_writes").map(String::as_str) == Some("1") {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "permission denied (fake)"));
        }
        if !path.exists() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such attribute (fake)"));
        }
        let value = contents.trim();
        let manual = dev.performance_level()? == "manual";
        match file.as_str() {
            "power_dpm_force_performance_level" => {
                if !LEVELS.contains(&value) {
                    return Err(einval("unknown performance level"));
                }
                fs::write(path, format!("{value}\n"))?;
                if value == "auto" {
                    match od_current(&state) {
                        Some((lo, hi)) => {
                            fs::write(dev.device_dir.join("pp_dpm_sclk"), fine_levels(lo, hi, false))?
                        }
                        None => {
                            let (levels, _) = read_levels(&dev.device_dir)?;
                            let boot = state.get("boot_level").and_then(|b| b.parse().ok()).unwrap_or(0);
                            fs::write(dev.device_dir.join("pp_dpm_sclk"), discrete_levels(&levels, boot))?;
                        }
                    }
                }
            }
            "pp_dpm_sclk" => {
                if !manual {
                    return Err(einval("force clock level is for dpm manual mode only"));
                }
                let (levels, _) = read_levels(&dev.device_dir)?;
                let mut top = None;
                for word in value.split_whitespace() {
                    let i: usize = word.parse().map_err(|_| einval("not a level index"))?;
                    if i >= levels.len() {
                        return Err(einval("level index out of range"));
                    }
                    top = top.max(Some(i));
                }
                let top = top.ok_or_else(|| einval("no level given"))?;
                fs::write(path, discrete_levels(&levels, top))?;
            }
            "pp_od_clk_voltage" => {
                let range = state.get("od_range").and_then(|v| pair(v)).ok_or_else(|| {
                    einval(
                        "this fake card has a Vega10 per-level table, whose edits the fake does not emulate",
                    )
                })?;
                if !manual {
                    return Err(einval("pp_od_clk_voltage is not accessible if power_dpm_force_performance_level is not manual"));
                }
                let words: Vec<&str> = value.split_whitespace().collect();
                let (mut lo, mut hi) = state.get("staged").and_then(|v| pair(v)).unwrap_or(range);
                match words.as_slice() {
                    ["s", which, mhz] => {
                        let mhz: u32 = mhz.parse().map_err(|_| einval("not a clock"))?;
                        if mhz < range.0 || mhz > range.1 {
                            return Err(einval("clock outside OD_RANGE"));
                        }
                        match *which {
                            "0" => lo = mhz,
                            "1" => hi = mhz,
                            _ => return Err(einval("SCLK index must be 0 or 1")),
                        }
                        state.insert("staged".into(), format!("{lo},{hi}"));
                    }
                    ["r"] => {
                        let default = state.get("od_default").cloned().unwrap_or_default();
                        state.insert("staged".into(), default);
                    }
                    ["c"] => {
                        if lo > hi {
                            return Err(einval("SCLK min above max"));
                        }
                        state.insert("od_current".into(), format!("{lo},{hi}"));
                        fs::write(path, od_table(lo, hi, range.0, range.1))?;
                        fs::write(dev.device_dir.join("pp_dpm_sclk"), fine_levels(lo, hi, true))?;
                    }
                    _ => return Err(einval("unknown overdrive command")),
                }
                write_state(&dev.device_dir, &state)?;
            }
            _ => fs::write(path, format!("{value}\n"))?,
        }
        dev.sync_freq()?;
        let mut log = fs::read_to_string(dev.device_dir.join(WRITES)).unwrap_or_default();
        log.push_str(&format!("{file}: {value}\n"));
        fs::write(dev.device_dir.join(WRITES), log)
    }

    fn check_writable(&self, path: &Path) -> io::Result<()> {
        let (dev, _) = split(path)?;
        if read_state(&dev.device_dir)?.get("deny_writes").map(String::as_str) == Some("1") {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "permission denied (fake)"));
        }
        fs::metadata(path).map(drop)
    }
}

fn einval(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{msg} (fake amdgpu: EINVAL)"))
}

fn split(path: &Path) -> io::Result<(FakeDevice, String)> {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    match (path.parent(), file) {
        (Some(dir), Some(file)) => Ok((FakeDevice { device_dir: dir.to_owned() }, file)),
        _ => Err(io::Error::new(io::ErrorKind::NotFound, "not an attribute path")),
    }
}

fn pair(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once(',')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn od_current(state: &BTreeMap<String, String>) -> Option<(u32, u32)> {
    state.get("od_current").or(state.get("od_default")).and_then(|v| pair(v))
}

fn read_state(device_dir: &Path) -> io::Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(device_dir.join(STATE))?;
    Ok(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

fn write_state(device_dir: &Path, state: &BTreeMap<String, String>) -> io::Result<()> {
    let text: String = state.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    fs::write(device_dir.join(STATE), text)
}

/// `pp_dpm_sclk` lines: (clocks, index of the `*` line).
fn read_levels(device_dir: &Path) -> io::Result<(Vec<u32>, Option<usize>)> {
    let text = fs::read_to_string(device_dir.join("pp_dpm_sclk"))?;
    let mut levels = Vec::new();
    let mut active = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (_, rest) = line.split_once(':').ok_or_else(|| einval("bad pp_dpm_sclk line"))?;
        let rest = rest.trim();
        if rest.ends_with('*') {
            active = Some(levels.len());
        }
        let mhz = rest.trim_end_matches('*').trim().to_ascii_lowercase();
        levels.push(mhz.trim_end_matches("mhz").parse().map_err(|_| einval("bad pp_dpm_sclk clock"))?);
    }
    Ok((levels, active))
}

/// The kernel's `"%d: %uMhz %s\n"` with `*` on the active level.
fn discrete_levels(levels: &[u32], active: usize) -> String {
    levels
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{i}: {f}Mhz {}\n", if i == active { "*" } else { "" }))
        .collect()
}

/// Fine-grained SCLK lists its min and max; idle in `auto` runs at the min, a forced range at
/// its max.
fn fine_levels(lo: u32, hi: u32, at_max: bool) -> String {
    if lo == hi {
        return format!("0: {lo}Mhz *\n");
    }
    let (a, b) = if at_max { ("", "*") } else { ("*", "") };
    format!("0: {lo}Mhz {a}\n1: {hi}Mhz {b}\n")
}

/// Vega20/RDNA-style table, as sienna_cichlid prints it.
fn od_table(lo: u32, hi: u32, floor: u32, ceiling: u32) -> String {
    format!(
        "OD_SCLK:\n0: {lo}Mhz\n1: {hi}Mhz\nOD_MCLK:\n0: 97Mhz\n1: 1000MHz\nOD_RANGE:\nSCLK:     {floor}Mhz       {ceiling}Mhz\nMCLK:     674Mhz       1075Mhz\n"
    )
}

/// Vega10-style per-level table (clock and voltage per level).
fn vega10_table(levels: &[u32]) -> String {
    let mut s = String::from("OD_SCLK:\n");
    for (i, f) in levels.iter().enumerate() {
        s.push_str(&format!("{i}:        {f}Mhz        {}mV\n", 800 + 50 * i));
    }
    s.push_str("OD_MCLK:\n0:        167Mhz        800mV\n1:        500Mhz        800mV\n2:        700Mhz        900mV\n3:        920Mhz        950mV\n");
    let top = levels.last().copied().unwrap_or(0);
    s.push_str(&format!(
        "OD_RANGE:\nSCLK:     {}MHz       {}MHz\nMCLK:     167MHz       1500MHz\nVDDC:     800mV        1200mV\n",
        levels.first().copied().unwrap_or(0),
        top + top / 2
    ));
    s
}

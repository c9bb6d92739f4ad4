//! The clock guard restores default clocks when the process is told to stop.
//!
//! Each test starts this same test binary again as a child running only `child_entry`: the
//! child locks a clock on a device whose state lives in files, says it is ready, and waits. The
//! parent sends SIGTERM or SIGINT, then checks that the child died of that signal and that the
//! device is back at its default.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use energyllm_core::{ActuatorError, FrequencyActuator, Mhz};
use energyllm_hw::{ClockGuard, GuardConfig};

const CHILD: &str = "ENERGYLLM_GUARD_CHILD";
const READY: &str = "ENERGYLLM_GUARD_READY";

/// A device whose clock is a line in a file, so the parent can see what the child left.
struct FileGpu(PathBuf);

impl FrequencyActuator for FileGpu {
    fn name(&self) -> &str {
        "file"
    }
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError> {
        Ok(vec![Mhz(800), Mhz(1400)])
    }
    fn current_frequency(&self) -> Result<Mhz, ActuatorError> {
        let s = std::fs::read_to_string(&self.0).map_err(|e| ActuatorError::Backend(e.to_string()))?;
        Ok(Mhz(s.trim().strip_prefix("locked ").map_or(1400, |f| f.parse().unwrap())))
    }
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError> {
        std::fs::write(&self.0, format!("locked {}", freq.0))
            .map_err(|e| ActuatorError::Backend(e.to_string()))
    }
    fn reset(&mut self) -> Result<(), ActuatorError> {
        std::fs::write(&self.0, "default").map_err(|e| ActuatorError::Backend(e.to_string()))
    }
    fn power_w(&self) -> Result<f64, ActuatorError> {
        Ok(100.0)
    }
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError> {
        Ok(None)
    }
}

/// Runs only as a child (the variable is set); in a normal test run it passes at once.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let ready = PathBuf::from(std::env::var(READY).unwrap());
    let (kind, path) = spec.split_once(':').unwrap();
    match kind {
        "file" => hold(FileGpu(PathBuf::from(path)), Mhz(800), &ready),
        #[cfg(feature = "amd")]
        "amd" => {
            use energyllm_hw::amd::{fake::FakeAmdgpu, AmdConfig, AmdGpu};
            let cfg = AmdConfig { sysfs_root: PathBuf::from(path), ..AmdConfig::default() };
            let gpu = AmdGpu::open_with_writer(&cfg, std::sync::Arc::new(FakeAmdgpu)).unwrap();
            let freq = gpu.supported_frequencies().unwrap()[1];
            hold(gpu, freq, &ready)
        }
        other => panic!("unknown child kind {other}"),
    }
}

fn hold<A: FrequencyActuator + 'static>(actuator: A, freq: Mhz, ready: &Path) -> ! {
    let config = GuardConfig { watchdog_s: 0.0, ..GuardConfig::default() };
    let mut guard = ClockGuard::new(actuator, &config).unwrap();
    guard.set_frequency(freq).unwrap();
    std::fs::write(ready, "ready").unwrap();
    // Bounded: a child the parent lost ends by itself, with a status the parent flags.
    for _ in 0..1200 {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::exit(3)
}

/// Starts the child and waits (bounded) until it has locked the clock.
fn start(spec: &str, dir: &Path) -> Child {
    let ready = dir.join("ready");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, spec)
        .env(READY, &ready)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..60_000 {
        if ready.exists() {
            return child;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!("child exited early with {status}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    panic!("the child never became ready");
}

/// Sends `signal` and returns the child's stderr after checking it died of that signal.
fn stop(child: Child, signal: rustix::process::Signal) -> String {
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), signal).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.signal(), Some(signal.as_raw()), "status {:?}, stderr: {stderr}", out.status);
    stderr
}

#[test]
fn sigterm_restores_the_default_clock_before_the_process_dies() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gpu");
    std::fs::write(&state, "default").unwrap();
    let child = start(&format!("file:{}", state.display()), dir.path());
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "locked 800");
    let stderr = stop(child, rustix::process::Signal::TERM);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "default");
    assert!(stderr.contains("signal 15: restored default clocks on `file`"), "{stderr}");
}

#[test]
fn sigint_restores_the_default_clock_too() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gpu");
    std::fs::write(&state, "default").unwrap();
    let child = start(&format!("file:{}", state.display()), dir.path());
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "locked 800");
    stop(child, rustix::process::Signal::INT);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "default");
}

#[cfg(feature = "amd")]
mod amd {
    use super::*;
    use energyllm_hw::amd::fake::{FakeCardSpec, FakeDevice};

    #[test]
    fn a_fake_amd_card_killed_by_sigterm_ends_back_at_auto() {
        for (spec, locked) in [
            (FakeCardSpec::discrete(), "pp_dpm_sclk: 1"),
            (FakeCardSpec::fine_grained(), "pp_od_clk_voltage: c"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("sys");
            let dev = FakeDevice::create(&root, 0, &spec).unwrap();
            let default_sclk = dev.active_sclk_mhz().unwrap();
            let default_od = dev.od_sclk_mhz().unwrap();
            let child = start(&format!("amd:{}", root.display()), dir.path());
            assert_eq!(dev.performance_level().unwrap(), "manual");
            assert!(dev.writes().unwrap().iter().any(|w| w == locked), "{:?}", dev.writes());
            stop(child, rustix::process::Signal::TERM);
            assert_eq!(dev.performance_level().unwrap(), "auto");
            assert_eq!(dev.active_sclk_mhz().unwrap(), default_sclk);
            assert_eq!(dev.od_sclk_mhz().unwrap(), default_od);
        }
    }
}

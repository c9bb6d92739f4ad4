//! The energy counter's start-up check against sampled power, and what became of it
//! ([`CounterStatus`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::telemetry::{check_energy_counter, CounterProbe, CounterVerdict};

use super::library::{nvml_error, NvmlDevice};

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

/// The clock the energy-counter check runs on: real time in use, virtual time in tests.
pub(super) trait CheckClock {
    fn now_s(&mut self) -> f64;
    fn sleep(&mut self, d: Duration);
}

/// Real time.
pub(super) struct WallClock(pub(super) Instant);

impl CheckClock for WallClock {
    fn now_s(&mut self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Samples power and the counter over `window` (11 probes) and judges the counter.
pub(super) fn check_counter(
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

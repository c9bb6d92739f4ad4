//! Test doubles for the seams, shipped so that every crate's tests can use them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::{Action, ActuatorError, FrequencyActuator, Mhz, Observation, Policy};

/// A policy that always returns the same action.
#[derive(Clone, Debug)]
pub struct FixedPolicy(pub Action);

impl Policy for FixedPolicy {
    fn name(&self) -> &str {
        "fixed"
    }
    fn decide(&mut self, _obs: &Observation) -> Action {
        self.0
    }
}

/// A policy that plays a script of actions (repeating the last one) and keeps every
/// observation it was shown.
#[derive(Clone, Debug, Default)]
pub struct ScriptedPolicy {
    script: VecDeque<Action>,
    last: Option<Action>,
    /// Observations seen, shared so a test can read them after handing the policy over.
    pub seen: Arc<Mutex<Vec<Observation>>>,
}

impl ScriptedPolicy {
    /// A policy that plays `script` in order.
    pub fn new(script: impl IntoIterator<Item = Action>) -> Self {
        ScriptedPolicy { script: script.into_iter().collect(), ..Default::default() }
    }
}

impl Policy for ScriptedPolicy {
    fn name(&self) -> &str {
        "scripted"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(obs.clone());
        }
        if let Some(a) = self.script.pop_front() {
            self.last = Some(a);
        }
        self.last.unwrap_or(Action { freq: obs.freq, batch: obs.batch_cap })
    }
}

/// An actuator that records every call and enforces its list of clocks, like a real device.
#[derive(Clone, Debug)]
pub struct RecordingActuator {
    supported: Vec<Mhz>,
    default: Mhz,
    current: Mhz,
    /// Every clock set, in order (`None` for a reset).
    pub calls: Vec<Option<Mhz>>,
}

impl RecordingActuator {
    /// An actuator supporting `supported`, starting at (and resetting to) the highest.
    pub fn new(mut supported: Vec<Mhz>) -> Self {
        supported.sort_unstable();
        let default = supported.last().copied().unwrap_or(Mhz(0));
        RecordingActuator { supported, default, current: default, calls: Vec::new() }
    }
}

impl FrequencyActuator for RecordingActuator {
    fn name(&self) -> &str {
        "recording"
    }
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError> {
        Ok(self.supported.clone())
    }
    fn current_frequency(&self) -> Result<Mhz, ActuatorError> {
        Ok(self.current)
    }
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError> {
        if !self.supported.contains(&freq) {
            return Err(ActuatorError::UnsupportedClock {
                requested: freq,
                supported: self.supported.clone(),
            });
        }
        self.current = freq;
        self.calls.push(Some(freq));
        Ok(())
    }
    fn reset(&mut self) -> Result<(), ActuatorError> {
        self.current = self.default;
        self.calls.push(None);
        Ok(())
    }
    fn power_w(&self) -> Result<f64, ActuatorError> {
        Ok(0.0)
    }
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError> {
        Ok(None)
    }
}

//! Replaying a trace: its arrivals scaled in time and cut to a window, its lengths kept or
//! redrawn.

use energyllm_core::{Request, RequestId, Timestamp};

use super::Trace;
use crate::{Error, LengthDataset, LengthSample};

/// How to replay a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    /// The trace.
    pub trace: Trace,
    /// Multiplies every arrival time (2 = twice as slow, half the rate). Default 1.
    pub time_scale: f64,
    /// Divides every arrival time (2 = twice the request rate). Default 1. Applied together with
    /// `time_scale`: arrival × time_scale / rate_scale.
    pub rate_scale: f64,
    /// Keep only arrivals before this time (after scaling), in seconds; `None` replays all.
    pub window_s: Option<f64>,
}

impl Replay {
    /// Replays `trace` unchanged.
    pub fn new(trace: Trace) -> Self {
        Replay { trace, time_scale: 1.0, rate_scale: 1.0, window_s: None }
    }

    /// The factor applied to arrival times.
    pub fn factor(&self) -> Result<f64, Error> {
        for (name, v) in [("time scale", self.time_scale), ("rate scale", self.rate_scale)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Setting(format!("{name} must be a positive number, got {v}")));
            }
        }
        Ok(self.time_scale / self.rate_scale)
    }

    /// The end of the arrival window: `window_s`, or just after the last scaled arrival.
    pub fn arrivals_end_s(&self) -> Result<f64, Error> {
        let span = self.trace.span_s() * self.factor()?;
        Ok(self.window_s.unwrap_or(span + 1e-9))
    }

    /// The requests, in trace order, with arrival times scaled; lengths from the trace, or drawn
    /// from `lengths` (uniformly, with replacement, seeded) when given.
    pub fn requests(&self, lengths: Option<&LengthDataset>, seed: u64) -> Result<Vec<Request>, Error> {
        let factor = self.factor()?;
        if let Some(w) = self.window_s {
            if !(w.is_finite() && w > 0.0) {
                return Err(Error::Setting(format!(
                    "the replay window must be a positive number of seconds, got {w}"
                )));
            }
        }
        let mut draw = match lengths {
            Some(d) => Some(crate::LengthSampler::new(d, seed)?),
            None => None,
        };
        let mut out = Vec::with_capacity(self.trace.entries.len());
        for e in &self.trace.entries {
            let t = e.arrival_s * factor;
            if self.window_s.is_some_and(|w| t >= w) {
                break;
            }
            let s = match draw.as_mut() {
                Some(d) => d.draw(),
                None => LengthSample { input_len: e.input_len, output_len: e.output_len },
            };
            out.push(Request {
                id: RequestId(out.len() as u64),
                arrival: Timestamp::from_secs_f64(t),
                input_tokens: s.input_len,
                output_tokens: s.output_len,
            });
        }
        if out.is_empty() {
            return Err(Error::Workload {
                name: self.trace.name.clone(),
                reason: "no arrival falls inside the replay window".into(),
            });
        }
        Ok(out)
    }
}

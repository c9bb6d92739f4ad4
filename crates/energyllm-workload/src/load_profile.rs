//! Load as a share of capacity, constant or moving through the day: a time warp of any arrival
//! stream.
//!
//! A [`LoadProfile`] gives, at each time `t`, the wanted request rate as a share `p(t)` of a
//! capacity in requests per second. [`LoadProfile::warp`] moves a stream of arrivals in time so
//! that its rate follows `capacity × p(t)`: the `i`-th arrival of a stream whose mean rate is `r`
//! sits at "operational time" `u = aᵢ · r` (the number of arrivals expected by then), and is moved
//! to the `t` where the profile's cumulative intensity `Λ(t) = ∫₀ᵗ capacity · p(s) ds` reaches
//! `u`. The map is increasing, so the order of requests and their lengths are kept, and the local
//! burst structure of the stream (how arrivals bunch relative to its mean rate) is kept too:
//! a trace's bursts stay bursts, Poisson stays Poisson. A constant profile is a plain rescaling.

use serde::{Deserialize, Serialize};

use crate::Error;

/// How the wanted load moves over time, as a share of capacity. Written on the command line as
/// `constant:load=0.6`, `diurnal:lo=0.2,hi=0.9,period_s=1800` or
/// `bursty:lo=0.3,hi=0.9,period_s=600,burst_s=120`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LoadProfile {
    /// The same share all the time.
    Constant {
        /// Share of capacity, > 0.
        load: f64,
    },
    /// A daily cycle: `lo` at time 0, rising as a cosine to `hi` at `period_s / 2` and back.
    Diurnal {
        /// Share of capacity in the trough, > 0.
        lo: f64,
        /// Share of capacity at the peak, ≥ `lo`.
        hi: f64,
        /// Length of one cycle, in seconds (default 1800: a compressed day).
        #[serde(default = "default_period_s")]
        period_s: f64,
    },
    /// Bursts: `hi` for the first `burst_s` seconds of every period, `lo` for the rest.
    Bursty {
        /// Share of capacity between bursts, > 0.
        lo: f64,
        /// Share of capacity during a burst, ≥ `lo`.
        hi: f64,
        /// Length of one period, in seconds (default 600).
        #[serde(default = "default_bursty_period_s")]
        period_s: f64,
        /// Length of the burst at the start of each period, in seconds (default 120).
        #[serde(default = "default_burst_s")]
        burst_s: f64,
    },
}

fn default_period_s() -> f64 {
    1800.0
}
fn default_bursty_period_s() -> f64 {
    600.0
}
fn default_burst_s() -> f64 {
    120.0
}

/// Names accepted by [`LoadProfile::parse`].
pub const LOAD_PROFILES: &[&str] = &["constant", "diurnal", "bursty"];

/// Step of the numerical integration of the profile, in seconds: far below any period a profile
/// may have (validated ≥ 10 s), so the cumulative intensity is exact to well under one request.
const STEP_S: f64 = 0.05;

impl LoadProfile {
    /// Parses `NAME:key=value,…` (see the type's docs).
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let p: LoadProfile =
            crate::spec::tagged(spec, "load profile", LOAD_PROFILES, &[]).map_err(|e| match e {
                Error::Setting(m) if m.starts_with("unknown load profile") => {
                    Error::Setting(format!("{m} (e.g. diurnal:lo=0.2,hi=0.9,period_s=1800)"))
                }
                e => e,
            })?;
        p.validate()?;
        Ok(p)
    }

    /// Checks the parameters; the message names the bad one.
    pub fn validate(&self) -> Result<(), Error> {
        let share = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 10.0 {
                Ok(())
            } else {
                Err(Error::Setting(format!(
                    "load profile: `{name}` must be a share of capacity in (0, 10], got {v}"
                )))
            }
        };
        let period = |name: &str, v: f64| {
            if v.is_finite() && v >= 10.0 {
                Ok(())
            } else {
                Err(Error::Setting(format!("load profile: `{name}` must be at least 10 seconds, got {v}")))
            }
        };
        let ordered = |lo: f64, hi: f64| {
            if hi >= lo {
                Ok(())
            } else {
                Err(Error::Setting(format!("load profile: `hi` ({hi}) must be at least `lo` ({lo})")))
            }
        };
        match *self {
            LoadProfile::Constant { load } => share("load", load),
            LoadProfile::Diurnal { lo, hi, period_s } => {
                share("lo", lo)?;
                share("hi", hi)?;
                ordered(lo, hi)?;
                period("period_s", period_s)
            }
            LoadProfile::Bursty { lo, hi, period_s, burst_s } => {
                share("lo", lo)?;
                share("hi", hi)?;
                ordered(lo, hi)?;
                period("period_s", period_s)?;
                if burst_s.is_finite() && burst_s > 0.0 && burst_s < period_s {
                    Ok(())
                } else {
                    Err(Error::Setting(format!(
                        "load profile: `burst_s` must be in (0, period_s), got {burst_s}"
                    )))
                }
            }
        }
    }

    /// The wanted share of capacity at `t_s` seconds.
    pub fn share_at(&self, t_s: f64) -> f64 {
        match *self {
            LoadProfile::Constant { load } => load,
            LoadProfile::Diurnal { lo, hi, period_s } => {
                lo + (hi - lo) * (1.0 - (std::f64::consts::TAU * t_s / period_s).cos()) / 2.0
            }
            LoadProfile::Bursty { lo, hi, period_s, burst_s } => {
                if t_s.rem_euclid(period_s) < burst_s {
                    hi
                } else {
                    lo
                }
            }
        }
    }

    /// The share averaged over whole cycles (the constant share for a constant profile).
    pub fn mean_share(&self) -> f64 {
        match *self {
            LoadProfile::Constant { load } => load,
            LoadProfile::Diurnal { lo, hi, .. } => (lo + hi) / 2.0,
            LoadProfile::Bursty { lo, hi, period_s, burst_s } => {
                (hi * burst_s + lo * (period_s - burst_s)) / period_s
            }
        }
    }

    /// The highest share the profile reaches.
    pub fn peak_share(&self) -> f64 {
        match *self {
            LoadProfile::Constant { load } => load,
            LoadProfile::Diurnal { hi, .. } | LoadProfile::Bursty { hi, .. } => hi,
        }
    }

    /// Moves `arrivals_s` (sorted, in seconds) so that their rate follows `capacity_rps` × the
    /// profile: arrival `i` of a stream of mean rate `stream_rate_rps` goes to the time where the
    /// profile's cumulative intensity reaches `arrivals_s[i] × stream_rate_rps`. Order is kept.
    pub fn warp(
        &self,
        arrivals_s: &[f64],
        stream_rate_rps: f64,
        capacity_rps: f64,
    ) -> Result<Vec<f64>, Error> {
        // A share of zero would never accumulate the arrivals it is asked to place.
        self.validate()?;
        if !(stream_rate_rps.is_finite() && stream_rate_rps > 0.0) {
            return Err(Error::Setting(format!("the stream's rate must be positive, got {stream_rate_rps}")));
        }
        if !(capacity_rps.is_finite() && capacity_rps > 0.0) {
            return Err(Error::Setting(format!(
                "capacity must be a positive rate, got {capacity_rps} req/s"
            )));
        }
        if arrivals_s.windows(2).any(|w| w[1] < w[0]) {
            return Err(Error::Setting("arrival times must be sorted to be warped".into()));
        }
        if let LoadProfile::Constant { load } = *self {
            let scale = stream_rate_rps / (capacity_rps * load);
            return Ok(arrivals_s.iter().map(|a| a * scale).collect());
        }
        // Walk the cumulative intensity forward once, interpolating linearly inside a step.
        let mut out = Vec::with_capacity(arrivals_s.len());
        let (mut t, mut cum) = (0.0f64, 0.0f64);
        for &a in arrivals_s {
            let target = a * stream_rate_rps;
            loop {
                let rate = capacity_rps * self.share_at(t + STEP_S / 2.0);
                let next = cum + rate * STEP_S;
                if next >= target {
                    out.push(t + (target - cum) / rate);
                    break;
                }
                t += STEP_S;
                cum = next;
            }
        }
        Ok(out)
    }

    /// Operational time (expected arrivals) that the profile accumulates by `horizon_s` at
    /// `capacity_rps`: how many arrivals of a unit-rate stream a run of that length needs.
    pub fn expected_arrivals(&self, capacity_rps: f64, horizon_s: f64) -> f64 {
        if let LoadProfile::Constant { load } = *self {
            return capacity_rps * load * horizon_s;
        }
        let steps = (horizon_s / STEP_S).ceil() as u64;
        (0..steps).map(|k| capacity_rps * self.share_at((k as f64 + 0.5) * STEP_S) * STEP_S).sum()
    }
}

impl std::fmt::Display for LoadProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            LoadProfile::Constant { load } => write!(f, "constant load {load} × capacity"),
            LoadProfile::Diurnal { lo, hi, period_s } => {
                write!(f, "daily cycle {lo}–{hi} × capacity over {period_s} s")
            }
            LoadProfile::Bursty { lo, hi, period_s, burst_s } => {
                write!(f, "bursts of {hi} × capacity for {burst_s} s every {period_s} s, {lo} between")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_name_the_field() {
        assert_eq!(LoadProfile::parse("constant:load=0.6").unwrap(), LoadProfile::Constant { load: 0.6 });
        assert_eq!(
            LoadProfile::parse("diurnal:lo=0.2,hi=0.9").unwrap(),
            LoadProfile::Diurnal { lo: 0.2, hi: 0.9, period_s: 1800.0 }
        );
        let e = LoadProfile::parse("diurnal:lo=0.9,hi=0.2").unwrap_err().to_string();
        assert!(e.contains("`hi`"), "{e}");
        let e = LoadProfile::parse("bursty:lo=0.2,hi=0.9,burst_s=700").unwrap_err().to_string();
        assert!(e.contains("burst_s"), "{e}");
        let e = LoadProfile::parse("weekly:lo=1").unwrap_err().to_string();
        assert!(e.contains("unknown load profile") && e.contains("diurnal"), "{e}");
        let e = LoadProfile::parse("diurnal:lo=0.2,hi=0.9,peak=3").unwrap_err().to_string();
        assert!(e.contains("peak"), "{e}");
    }

    #[test]
    fn the_warp_keeps_order_and_follows_the_profile() {
        // A perfectly regular unit-rate stream, longer than one cycle needs (4 × 0.55 × 1800).
        let base: Vec<f64> = (0..5000).map(|i| f64::from(i) + 0.5).collect();
        let p = LoadProfile::Diurnal { lo: 0.2, hi: 0.9, period_s: 1800.0 };
        let capacity = 4.0;
        let t = p.warp(&base, 1.0, capacity).unwrap();
        assert!(t.windows(2).all(|w| w[1] > w[0]), "order kept");
        // Count arrivals in 60 s windows at the trough (t≈0) and the peak (t≈900).
        let count = |a: f64, b: f64| t.iter().filter(|&&x| x >= a && x < b).count() as f64;
        let trough = count(0.0, 60.0) / 60.0;
        let peak = count(870.0, 930.0) / 60.0;
        let want = |s: f64| capacity * p.share_at(s);
        assert!((trough - want(30.0)).abs() / want(30.0) < 0.1, "trough {trough} vs {}", want(30.0));
        assert!((peak - want(900.0)).abs() / want(900.0) < 0.05, "peak {peak} vs {}", want(900.0));
        // One whole cycle holds capacity × mean share × period arrivals.
        let cycle = count(0.0, 1800.0);
        let expected = capacity * p.mean_share() * 1800.0;
        assert!((cycle - expected).abs() <= 2.0, "{cycle} vs {expected}");
        assert!((p.expected_arrivals(capacity, 1800.0) - expected).abs() < 1.0);
    }

    #[test]
    fn a_constant_profile_is_a_rescaling_and_bursts_alternate() {
        let base = [0.0, 1.0, 1.5, 4.0];
        let t = LoadProfile::Constant { load: 0.5 }.warp(&base, 2.0, 2.0).unwrap();
        assert_eq!(t, vec![0.0, 2.0, 3.0, 8.0]);
        let b = LoadProfile::Bursty { lo: 0.1, hi: 1.0, period_s: 100.0, burst_s: 20.0 };
        assert_eq!((b.share_at(5.0), b.share_at(50.0), b.share_at(105.0)), (1.0, 0.1, 1.0));
        assert!((b.mean_share() - 0.28).abs() < 1e-12);
        assert!(LoadProfile::Constant { load: 1.0 }.warp(&[2.0, 1.0], 1.0, 1.0).is_err());
    }
}

//! Arrival processes: when requests come, at a given mean rate.
//!
//! Every pattern is scaled so that its long-run mean rate is the `rate_rps` the caller asks for;
//! the pattern only sets the shape (how bursty, how the rate moves). All are seeded.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The shape of an arrival process. Written on the command line as `NAME[:key=value,…]`, e.g.
/// `gamma:cv=3` or `onoff:on_s=5,off_s=20`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ArrivalPattern {
    /// Poisson arrivals: independent exponential gaps (coefficient of variation 1).
    Poisson,
    /// Renewal process with Gamma-distributed gaps of coefficient of variation `cv`: above 1 is
    /// burstier than Poisson, below 1 more regular.
    Gamma {
        /// Coefficient of variation of the gaps (standard deviation / mean); no default.
        cv: f64,
    },
    /// On/off Markov-modulated Poisson process: exponentially long "on" periods at a high rate
    /// alternate with "off" periods at `off_ratio` × that rate.
    #[serde(rename = "onoff")]
    OnOff {
        /// Mean length of an on period, in seconds (default 10).
        #[serde(default = "default_on_s")]
        on_s: f64,
        /// Mean length of an off period, in seconds (default 30).
        #[serde(default = "default_off_s")]
        off_s: f64,
        /// Rate during off periods as a fraction of the on rate, in [0, 1) (default 0: silent).
        #[serde(default)]
        off_ratio: f64,
    },
    /// Non-homogeneous Poisson process with a sinusoidal (diurnal) rate:
    /// rate(t) = mean · (1 + amplitude · cos(2π (t − peak_s) / period_s)).
    Diurnal {
        /// Period of the curve, in seconds (default 86 400, one day).
        #[serde(default = "default_period_s")]
        period_s: f64,
        /// Relative swing around the mean, in [0, 1] (default 0.5: peak 1.5×, trough 0.5×).
        #[serde(default = "default_amplitude")]
        amplitude: f64,
        /// Time of the peak, in seconds from the start (default 0).
        #[serde(default)]
        peak_s: f64,
    },
}

fn default_on_s() -> f64 {
    10.0
}
fn default_off_s() -> f64 {
    30.0
}
fn default_period_s() -> f64 {
    86_400.0
}
fn default_amplitude() -> f64 {
    0.5
}

/// Names accepted by [`ArrivalPattern::parse`].
pub const ARRIVAL_PATTERNS: &[&str] = &["poisson", "gamma", "onoff", "diurnal"];

impl ArrivalPattern {
    /// Parses `NAME[:key=value,…]`: `poisson`, `gamma:cv=2`, `onoff:on_s=10,off_s=30,off_ratio=0`,
    /// `diurnal:period_s=86400,amplitude=0.5,peak_s=0`.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let p: ArrivalPattern = crate::spec::tagged(spec, "arrival process", ARRIVAL_PATTERNS, &["poisson"])?;
        p.validate()?;
        Ok(p)
    }

    /// Checks the parameters; the message names the bad one.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str, v: f64| Err(Error::Setting(format!("arrival process: {what}, got {v}")));
        match *self {
            ArrivalPattern::Poisson => Ok(()),
            ArrivalPattern::Gamma { cv } if !(cv.is_finite() && cv > 0.0 && cv <= 100.0) => {
                bad("gamma `cv` must be in (0, 100]", cv)
            }
            ArrivalPattern::OnOff { on_s, .. } if !(on_s.is_finite() && on_s > 0.0) => {
                bad("onoff `on_s` must be a positive number of seconds", on_s)
            }
            ArrivalPattern::OnOff { off_s, .. } if !(off_s.is_finite() && off_s >= 0.0) => {
                bad("onoff `off_s` must be a non-negative number of seconds", off_s)
            }
            ArrivalPattern::OnOff { off_ratio, .. } if !(0.0..1.0).contains(&off_ratio) => {
                bad("onoff `off_ratio` must be in [0, 1)", off_ratio)
            }
            ArrivalPattern::Diurnal { period_s, .. } if !(period_s.is_finite() && period_s > 0.0) => {
                bad("diurnal `period_s` must be a positive number of seconds", period_s)
            }
            ArrivalPattern::Diurnal { amplitude, .. } if !(0.0..=1.0).contains(&amplitude) => {
                bad("diurnal `amplitude` must be in [0, 1]", amplitude)
            }
            ArrivalPattern::Diurnal { peak_s, .. } if !peak_s.is_finite() => {
                bad("diurnal `peak_s` must be finite", peak_s)
            }
            _ => Ok(()),
        }
    }

    /// Arrival times in `[0, duration_s)`, sorted, with long-run mean rate `rate_rps`. The same
    /// seed gives the same times.
    pub fn arrival_times(&self, rate_rps: f64, duration_s: f64, seed: u64) -> Result<Vec<f64>, Error> {
        if !(rate_rps.is_finite() && rate_rps > 0.0) {
            return Err(Error::Setting(format!(
                "arrival rate must be a positive number of requests/s, got {rate_rps}"
            )));
        }
        if !(duration_s.is_finite() && duration_s > 0.0) {
            return Err(Error::Setting(format!(
                "duration must be a positive number of seconds, got {duration_s}"
            )));
        }
        self.validate()?;
        let expected = rate_rps * duration_s;
        if expected > 5e7 {
            return Err(Error::Setting(format!(
                "{expected:.0} expected arrivals ({rate_rps} req/s × {duration_s} s) is more than this tool simulates (50 million)"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(expected as usize + 16);
        let setting = |e: rand_distr::ExpError| Error::Setting(format!("arrival rate {rate_rps}: {e}"));
        match *self {
            ArrivalPattern::Poisson => {
                let gaps = Exp::new(rate_rps).map_err(setting)?;
                renewal(&mut rng, duration_s, &mut out, |r| gaps.sample(r));
            }
            ArrivalPattern::Gamma { cv } => {
                // Shape k = 1/cv² and scale θ = 1/(k·rate) give mean 1/rate and CV cv.
                let shape = 1.0 / (cv * cv);
                let gaps = Gamma::new(shape, 1.0 / (shape * rate_rps))
                    .map_err(|e| Error::Setting(format!("gamma arrivals (cv {cv}): {e}")))?;
                renewal(&mut rng, duration_s, &mut out, |r| gaps.sample(r));
            }
            ArrivalPattern::OnOff { on_s, off_s, off_ratio } => {
                // Rates chosen so that the time-average rate is `rate_rps`.
                let on_rate = rate_rps * (on_s + off_s) / (on_s + off_ratio * off_s);
                let rates = [on_rate, off_ratio * on_rate];
                let means = [on_s, off_s];
                // Start in the stationary state distribution so the window has no warm-up bias.
                let mut state = usize::from(rng.gen::<f64>() >= on_s / (on_s + off_s));
                let mut t = 0.0;
                let mut state_end = t + exp_sample(&mut rng, means[state]);
                while t < duration_s {
                    let rate = rates[state];
                    let next = if rate > 0.0 { t + exp_sample(&mut rng, 1.0 / rate) } else { f64::INFINITY };
                    if next < state_end {
                        t = next;
                        if t < duration_s {
                            out.push(t);
                        }
                    } else {
                        // Memoryless: restart the clock of the new state at the switch.
                        t = state_end;
                        state = 1 - state;
                        state_end = t + exp_sample(&mut rng, means[state]);
                    }
                }
            }
            ArrivalPattern::Diurnal { period_s, amplitude, peak_s } => {
                // Lewis–Shedler thinning against the peak rate.
                let peak = rate_rps * (1.0 + amplitude);
                let gaps = Exp::new(peak).map_err(setting)?;
                let mut t = 0.0;
                loop {
                    t += gaps.sample(&mut rng);
                    if t >= duration_s {
                        break;
                    }
                    let phase = std::f64::consts::TAU * (t - peak_s) / period_s;
                    let rate = rate_rps * (1.0 + amplitude * phase.cos());
                    if rng.gen::<f64>() * peak < rate {
                        out.push(t);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for ArrivalPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArrivalPattern::Poisson => write!(f, "poisson"),
            ArrivalPattern::Gamma { cv } => write!(f, "gamma:cv={cv}"),
            ArrivalPattern::OnOff { on_s, off_s, off_ratio } => {
                write!(f, "onoff:on_s={on_s},off_s={off_s},off_ratio={off_ratio}")
            }
            ArrivalPattern::Diurnal { period_s, amplitude, peak_s } => {
                write!(f, "diurnal:period_s={period_s},amplitude={amplitude},peak_s={peak_s}")
            }
        }
    }
}

fn exp_sample(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    // Inverse CDF; 1 - u is in (0, 1], so the log is finite.
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

fn renewal(
    rng: &mut ChaCha8Rng,
    duration_s: f64,
    out: &mut Vec<f64>,
    mut gap: impl FnMut(&mut ChaCha8Rng) -> f64,
) {
    let mut t = 0.0;
    loop {
        t += gap(rng);
        if t >= duration_s {
            break;
        }
        out.push(t);
    }
}

/// Mean and coefficient of variation of the gaps between sorted times (`None` with fewer than
/// three times).
pub fn gap_stats(times: &[f64]) -> Option<(f64, f64)> {
    if times.len() < 3 {
        return None;
    }
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, if mean > 0.0 { var.sqrt() / mean } else { 0.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tolerances: with n ≈ 20 000 arrivals the count's relative standard deviation is below 1 %
    // (Poisson) and a few % for the modulated processes; the bounds below sit at about 4σ, so a
    // correct implementation fails them with negligible probability while a wrong rate or shape
    // (off by 10 % or more) fails them.

    #[test]
    fn poisson_rate_and_cv() {
        let t = ArrivalPattern::Poisson.arrival_times(4.0, 5000.0, 1).unwrap();
        let rate = t.len() as f64 / 5000.0;
        assert!((rate - 4.0).abs() < 4.0 * 0.03, "rate {rate}");
        let (_, cv) = gap_stats(&t).unwrap();
        assert!((cv - 1.0).abs() < 0.04, "cv {cv}");
    }

    #[test]
    fn gamma_rate_and_cv_follow_the_parameters() {
        for cv_want in [0.5, 2.0, 4.0] {
            let t = ArrivalPattern::Gamma { cv: cv_want }.arrival_times(2.0, 10_000.0, 7).unwrap();
            let rate = t.len() as f64 / 10_000.0;
            // The count's σ is about cv·√n; 4σ relative to n = 20 000 is 4·cv/√20000.
            let tol = 4.0 * cv_want / (20_000f64).sqrt();
            assert!((rate / 2.0 - 1.0).abs() < tol, "cv {cv_want}: rate {rate}");
            let (_, cv) = gap_stats(&t).unwrap();
            assert!((cv / cv_want - 1.0).abs() < 0.1, "cv {cv} for {cv_want}");
        }
    }

    #[test]
    fn onoff_keeps_the_mean_rate_and_is_bursty() {
        let p = ArrivalPattern::OnOff { on_s: 10.0, off_s: 30.0, off_ratio: 0.0 };
        let t = p.arrival_times(2.0, 40_000.0, 3).unwrap();
        let rate = t.len() as f64 / 40_000.0;
        // 1000 on/off cycles: the count's relative σ is about 3 % (cycle-length variance dominates).
        assert!((rate / 2.0 - 1.0).abs() < 0.12, "rate {rate}");
        let (_, cv) = gap_stats(&t).unwrap();
        // Silent off periods of mean 30 s among on-gaps of mean 1/8 s: CV far above Poisson's 1.
        assert!(cv > 3.0, "cv {cv}");
        // With off_ratio 1 it is plain Poisson again.
        let flat = ArrivalPattern::OnOff { on_s: 10.0, off_s: 30.0, off_ratio: 0.999_999 }
            .arrival_times(2.0, 10_000.0, 3)
            .unwrap();
        let (_, cv) = gap_stats(&flat).unwrap();
        assert!((cv - 1.0).abs() < 0.05, "cv {cv}");
    }

    #[test]
    fn diurnal_follows_the_curve() {
        let p = ArrivalPattern::Diurnal { period_s: 1000.0, amplitude: 0.8, peak_s: 0.0 };
        let t = p.arrival_times(5.0, 10_000.0, 11).unwrap();
        let rate = t.len() as f64 / 10_000.0;
        assert!((rate / 5.0 - 1.0).abs() < 0.03, "rate {rate}");
        // Half-periods around the peak versus around the trough: expected ratio
        // (1/2 + a/π) / (1/2 − a/π) = 3.70 for a = 0.8.
        let near_peak = t.iter().filter(|&&x| ((x + 250.0) % 1000.0) < 500.0).count() as f64;
        let near_trough = t.len() as f64 - near_peak;
        let want = (0.5 + 0.8 / std::f64::consts::PI) / (0.5 - 0.8 / std::f64::consts::PI);
        assert!((near_peak / near_trough / want - 1.0).abs() < 0.06, "{near_peak} / {near_trough}");
    }

    #[test]
    fn seeds_and_parsing() {
        let p = ArrivalPattern::parse("gamma:cv=2").unwrap();
        assert_eq!(p, ArrivalPattern::Gamma { cv: 2.0 });
        assert_eq!(p.arrival_times(1.0, 100.0, 5).unwrap(), p.arrival_times(1.0, 100.0, 5).unwrap());
        assert_ne!(p.arrival_times(1.0, 100.0, 5).unwrap(), p.arrival_times(1.0, 100.0, 6).unwrap());
        assert_eq!(
            ArrivalPattern::parse("onoff:on_s=5").unwrap(),
            ArrivalPattern::OnOff { on_s: 5.0, off_s: 30.0, off_ratio: 0.0 }
        );
        assert_eq!(
            ArrivalPattern::parse(&ArrivalPattern::parse("diurnal").unwrap().to_string()).unwrap(),
            ArrivalPattern::parse("diurnal").unwrap()
        );
        for (bad, want) in [
            ("gamma", "missing field `cv`"),
            ("gamma:cv=0", "`cv` must be in (0, 100]"),
            ("poisson:rate=3", "unknown field `rate`"),
            ("weibull", "unknown arrival process `weibull`; known: poisson, gamma"),
            ("onoff:off_ratio=1", "`off_ratio` must be in [0, 1)"),
            ("diurnal:amplitude=2", "`amplitude` must be in [0, 1]"),
        ] {
            let e = ArrivalPattern::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(ArrivalPattern::Poisson.arrival_times(0.0, 1.0, 0).is_err());
        assert!(ArrivalPattern::Poisson.arrival_times(1.0, f64::NAN, 0).is_err());
    }
}

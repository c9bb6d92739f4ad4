//! The choice itself, sans IO: from what the endpoints' metrics pages said, the request's subset
//! hint and whether it may be shed, a [`Decision`]. The order is [`energyllm_core::score::rank`]
//! over the scores the gateways computed with `energyllm_core::score::endpoint_score`, the same
//! two functions the cluster simulator routes by.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use energyllm_core::score::rank;
use energyllm_engines::prom::Metrics;

/// Failed reads in a row after which an endpoint is left out at once, without waiting for its
/// last page to go stale: one failure may be a slow read, two at the default 200 ms refresh mean
/// the gateway has been unreachable for about half a second.
pub const FAILED_READS_TO_LEAVE_OUT: u32 = 2;

/// What the picker knows of one endpoint, from its gateway's last metrics page.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointState {
    /// `energyllm_endpoint_score`, in [0, 1]; NaN when the page has none (a gateway without a
    /// score model, or one that has not computed it yet): it then ranks after every score.
    pub score: f64,
    /// `energyllm_ready`: not draining, its upstream and actuator sound.
    pub ready: bool,
    /// Requests the gateway holds: running plus queued.
    pub load: f64,
    /// The gateway's batch cap (NaN when unknown).
    pub batch_cap: f64,
    /// When the page was last read; `None` before the first good read.
    pub read_at: Option<Instant>,
    /// Why the last read failed, if it did.
    pub error: Option<String>,
    /// Reads that failed in a row since the last good one.
    pub failed_reads: u32,
    /// Requests this picker sent to the endpoint that its last page cannot show.
    pub picked_since_read: u32,
    /// `picked_since_read` when the read in progress was sent: the picks its page will show.
    pub picked_at_send: u32,
}

impl Default for EndpointState {
    fn default() -> Self {
        EndpointState {
            score: f64::NAN,
            ready: false,
            load: 0.0,
            batch_cap: f64::NAN,
            read_at: None,
            error: None,
            failed_reads: 0,
            picked_since_read: 0,
            picked_at_send: 0,
        }
    }
}

impl EndpointState {
    /// Notes that a read is being sent: the picks made so far will be on its page.
    pub fn read_sent(&mut self) {
        self.picked_at_send = self.picked_since_read;
    }

    /// Takes in a page read at `at` (the answer to the read last [`read_sent`](Self::read_sent)).
    pub fn read(&mut self, page: &str, at: Instant) -> Result<(), String> {
        let m = Metrics::parse(page).map_err(|e| e.to_string())?;
        if !m.samples().iter().any(|s| s.name.starts_with("energyllm_")) {
            return Err(
                "the page has no energyllm_ series: is this an energyllm gateway (energyllm serve)?".into()
            );
        }
        // The gateway leaves the score out until it has one.
        self.score = m.sum("energyllm_endpoint_score").unwrap_or(f64::NAN);
        // A gateway from before `energyllm_ready` serves whenever its page answers.
        self.ready = m.sum("energyllm_ready").is_none_or(|r| r >= 1.0);
        self.load =
            m.sum("energyllm_in_flight").unwrap_or(0.0) + m.sum("energyllm_queue_length").unwrap_or(0.0);
        self.batch_cap = m.sum("energyllm_batch_cap").unwrap_or(f64::NAN);
        self.read_at = Some(at);
        self.error = None;
        self.failed_reads = 0;
        // Picks made while the read was in flight are not on this page either.
        self.picked_since_read = self.picked_since_read.saturating_sub(self.picked_at_send);
        self.picked_at_send = 0;
        Ok(())
    }

    /// Takes in a failed read.
    pub fn read_failed(&mut self, why: String) {
        self.error = Some(why);
        self.failed_reads = self.failed_reads.saturating_add(1);
        self.picked_at_send = 0;
    }

    /// Whether the endpoint may be picked: a page read within `stale_after`, reads succeeding,
    /// the gateway ready.
    pub fn eligible(&self, now: Instant, stale_after: Duration) -> bool {
        self.ready
            && self.failed_reads < FAILED_READS_TO_LEAVE_OUT
            && self.read_at.is_some_and(|t| now.saturating_duration_since(t) <= stale_after)
    }

    /// Why an endpoint that is not [`eligible`](Self::eligible) is left out, for the 503.
    fn why_not(&self, now: Instant, stale_after: Duration) -> String {
        let err = self.error.as_deref().unwrap_or("no reason given");
        match self.read_at.map(|t| now.saturating_duration_since(t)) {
            None if self.error.is_some() => err.to_owned(),
            None => "metrics not read yet".to_owned(),
            Some(_) if self.failed_reads >= FAILED_READS_TO_LEAVE_OUT => {
                format!("{} reads failed in a row ({err})", self.failed_reads)
            }
            Some(age) if age > stale_after => format!(
                "metrics {:.1} s old{}",
                age.as_secs_f64(),
                self.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
            ),
            _ => "not ready (draining or unhealthy)".to_owned(),
        }
    }

    /// Whether this picker's own picks since the last page have filled the batch: the page's
    /// score then no longer describes the endpoint.
    fn filled_by_recent_picks(&self) -> bool {
        // An unknown (NaN) or nonsensical cap never fills.
        let known = self.batch_cap.is_finite() && self.batch_cap >= 1.0;
        known && self.picked_since_read > 0 && self.load + f64::from(self.picked_since_read) >= self.batch_cap
    }
}

/// How the picker chooses.
#[derive(Clone, Debug, PartialEq)]
pub struct PickPolicy {
    /// Endpoints after the first in the answer, for Envoy to retry down the list.
    pub fallbacks: usize,
    /// A page older than this takes its endpoint out of the choice.
    pub stale_after: Duration,
    /// A sheddable request gets 429 when the best endpoint's score is below this (0: never).
    pub shed_below: f64,
}

impl Default for PickPolicy {
    fn default() -> Self {
        // With the gateway's default slo_margin of 0.4, the score at a predicted end-to-end time
        // of exactly the SLO budget is 0.5 · 1/(1 + 2.5) ≈ 0.143; 0.14, rounded down, sheds from
        // about 1.03 × the budget: past the whole budget, not only past the slack.
        PickPolicy { fallbacks: 2, stale_after: Duration::from_secs(5), shed_below: 0.14 }
    }
}

/// The answer for one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Send it to the first endpoint, then down the list.
    Route(Vec<SocketAddr>),
    /// No endpoint may take it (503), and why.
    Unavailable(String),
    /// Shed it (429), and why.
    Shed(String),
}

/// The score given to an endpoint whose batch this picker's own picks have filled since its last
/// page: just under 0.5, the score's line between having SLO slack and not. Its page's score
/// predates those picks; a full batch makes the next request wait, so until the next page the
/// endpoint is taken to have lost its slack, keeping its place among endpoints without slack.
const FILLED_SCORE_CEILING: f64 = 0.5 - 1e-9;

/// Picks for a request. `subset`, when the proxy sent one, limits the choice to those
/// addresses; `sheddable` requests may be refused when every endpoint is short of the SLO.
///
/// The order is [`rank`] of the gateways' scores, the simulator's order, with one correction for
/// the staleness the simulator does not have: an endpoint whose batch this picker's picks since
/// its last page have filled ranks with at most [`FILLED_SCORE_CEILING`], so that a burst
/// between two reads does not all land on one endpoint.
pub fn decide<'a>(
    members: impl IntoIterator<Item = (SocketAddr, &'a EndpointState)>,
    now: Instant,
    subset: Option<&[SocketAddr]>,
    sheddable: bool,
    policy: &PickPolicy,
) -> Decision {
    let mut addresses = Vec::new();
    let mut eligible = Vec::new();
    let mut left_out = Vec::new();
    for (address, s) in members {
        if subset.is_some_and(|set| !set.contains(&address)) {
            continue;
        }
        let i = addresses.len();
        addresses.push(address);
        if !s.eligible(now, policy.stale_after) {
            left_out.push((address, s));
        } else if s.filled_by_recent_picks() {
            eligible.push((i, s.score.min(FILLED_SCORE_CEILING)));
        } else {
            eligible.push((i, s.score));
        }
    }
    if eligible.is_empty() {
        let scope = if subset.is_some() { "in the request's subset" } else { "in the pool" };
        let why_not: Vec<String> =
            left_out.iter().map(|(a, s)| format!("{a}: {}", s.why_not(now, policy.stale_after))).collect();
        let detail = if why_not.is_empty() { "none listed".to_owned() } else { why_not.join("; ") };
        return Decision::Unavailable(format!("no ready endpoint {scope}: {detail}"));
    }
    let best = eligible.iter().map(|(_, score)| *score).fold(f64::NAN, f64::max);
    let order = rank(eligible);
    if sheddable && best < policy.shed_below {
        return Decision::Shed(format!(
            "the best endpoint's score {best:.3} is below {:.3}: every endpoint is short of the SLO",
            policy.shed_below
        ));
    }
    let addrs = order.iter().take(1 + policy.fallbacks).map(|&i| addresses[i]).collect();
    Decision::Route(addrs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pool(n: usize) -> Vec<SocketAddr> {
        (0..n).map(|i| format!("10.0.0.{}:8000", i + 1).parse().unwrap()).collect()
    }

    fn state(score: f64, load: f64, cap: f64, at: Instant) -> EndpointState {
        EndpointState {
            score,
            ready: true,
            load,
            batch_cap: cap,
            read_at: Some(at),
            ..EndpointState::default()
        }
    }

    fn addrs(d: &Decision) -> Vec<String> {
        match d {
            Decision::Route(a) => a.iter().map(ToString::to_string).collect(),
            other => panic!("expected a route, got {other:?}"),
        }
    }

    #[test]
    fn the_highest_score_leads_and_fallbacks_follow_in_rank() {
        let now = Instant::now();
        let states = [state(0.6, 0.0, 8.0, now), state(0.9, 0.0, 8.0, now), state(0.7, 0.0, 8.0, now)];
        let d = decide(pool(3).into_iter().zip(&states), now, None, false, &PickPolicy::default());
        assert_eq!(addrs(&d), ["10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.1:8000"]);
        let one = PickPolicy { fallbacks: 0, ..PickPolicy::default() };
        assert_eq!(
            addrs(&decide(pool(3).into_iter().zip(&states), now, None, false, &one)),
            ["10.0.0.2:8000"]
        );
    }

    #[test]
    fn the_subset_hint_limits_the_choice_and_an_empty_one_is_unavailable() {
        let now = Instant::now();
        let states = [state(0.6, 0.0, 8.0, now), state(0.9, 0.0, 8.0, now), state(0.7, 0.0, 8.0, now)];
        let subset: Vec<SocketAddr> =
            ["10.0.0.1:8000", "10.0.0.3:8000", "10.9.9.9:1"].iter().map(|a| a.parse().unwrap()).collect();
        let d = decide(pool(3).into_iter().zip(&states), now, Some(&subset), false, &PickPolicy::default());
        assert_eq!(addrs(&d), ["10.0.0.3:8000", "10.0.0.1:8000"]);
        let d = decide(pool(3).into_iter().zip(&states), now, Some(&[]), false, &PickPolicy::default());
        assert!(matches!(&d, Decision::Unavailable(why) if why.contains("in the request's subset")), "{d:?}");
    }

    #[test]
    fn stale_unready_and_unread_endpoints_are_left_out_with_reasons() {
        let now = Instant::now();
        let old = now.checked_sub(Duration::from_secs(10)).unwrap();
        let mut states = vec![state(0.9, 0.0, 8.0, old), state(0.8, 0.0, 8.0, now), EndpointState::default()];
        states[1].ready = false;
        states[2].error = Some("connection refused".into());
        let d = decide(pool(3).into_iter().zip(&states), now, None, false, &PickPolicy::default());
        let Decision::Unavailable(why) = d else { panic!("{d:?}") };
        assert!(why.contains("10.0.0.1:8000: metrics 10.0 s old"), "{why}");
        assert!(why.contains("10.0.0.2:8000: not ready"), "{why}");
        assert!(why.contains("10.0.0.3:8000: connection refused"), "{why}");
        states[1].ready = true;
        assert_eq!(
            addrs(&decide(pool(3).into_iter().zip(&states), now, None, false, &PickPolicy::default())),
            ["10.0.0.2:8000"]
        );
    }

    #[test]
    fn the_score_decides_until_recent_picks_fill_a_batch_its_page_cannot_show() {
        let now = Instant::now();
        let mut states = vec![state(0.9, 3.0, 4.0, now), state(0.6, 0.0, 4.0, now)];
        let p = PickPolicy::default();
        assert_eq!(
            addrs(&decide(pool(2).into_iter().zip(&states), now, None, false, &p))[0],
            "10.0.0.1:8000"
        );
        // A full batch by its own page still leads while its score does, as in the simulator:
        // the gateway's score already counts the wait for a slot.
        states[0].load = 6.0;
        assert_eq!(
            addrs(&decide(pool(2).into_iter().zip(&states), now, None, false, &p))[0],
            "10.0.0.1:8000"
        );
        // Filled by this picker since the page was read: that score is out of date, and the
        // endpoint counts as without slack until its next page.
        states[0].load = 3.0;
        states[0].picked_since_read = 1;
        assert_eq!(
            addrs(&decide(pool(2).into_iter().zip(&states), now, None, false, &p)),
            ["10.0.0.2:8000", "10.0.0.1:8000"]
        );
        // It still goes before an endpoint whose own page says it has no slack.
        states[1].score = 0.3;
        assert_eq!(
            addrs(&decide(pool(2).into_iter().zip(&states), now, None, false, &p))[0],
            "10.0.0.1:8000"
        );
    }

    #[test]
    fn two_failed_reads_in_a_row_leave_an_endpoint_out_before_its_page_is_stale() {
        let now = Instant::now();
        let mut states = vec![state(0.9, 0.0, 4.0, now), state(0.6, 0.0, 4.0, now)];
        let p = PickPolicy::default();
        states[0].read_failed("connection refused".into());
        assert_eq!(
            addrs(&decide(pool(2).into_iter().zip(&states), now, None, false, &p))[0],
            "10.0.0.1:8000",
            "one may be a slow read"
        );
        states[0].read_failed("connection refused".into());
        assert_eq!(addrs(&decide(pool(2).into_iter().zip(&states), now, None, false, &p)), ["10.0.0.2:8000"]);
        states[1].read_failed("timed out".into());
        states[1].read_failed("timed out".into());
        let Decision::Unavailable(why) = decide(pool(2).into_iter().zip(&states), now, None, false, &p)
        else {
            panic!()
        };
        assert!(why.contains("10.0.0.1:8000: 2 reads failed in a row (connection refused)"), "{why}");
    }

    #[test]
    fn only_sheddable_requests_are_shed_and_only_below_the_threshold() {
        let now = Instant::now();
        let states = [state(0.1, 9.0, 8.0, now), state(0.12, 9.0, 8.0, now)];
        let p = PickPolicy::default();
        assert!(matches!(decide(pool(2).into_iter().zip(&states), now, None, true, &p), Decision::Shed(_)));
        assert_eq!(
            addrs(&decide(pool(2).into_iter().zip(&states), now, None, false, &p))[0],
            "10.0.0.2:8000"
        );
        let never = PickPolicy { shed_below: 0.0, ..p };
        assert!(matches!(
            decide(pool(2).into_iter().zip(&states), now, None, true, &never),
            Decision::Route(_)
        ));
    }

    #[test]
    fn a_page_is_read_for_score_readiness_and_load_and_a_foreign_page_is_refused() {
        let mut s = EndpointState::default();
        let page = "energyllm_endpoint_score 0.8\nenergyllm_ready 0\nenergyllm_in_flight 3\nenergyllm_queue_length 2\nenergyllm_batch_cap 8\n";
        s.picked_since_read = 4;
        s.read_sent();
        s.picked_since_read += 1; // a pick while the read was in flight: not on its page
        s.read(page, Instant::now()).unwrap();
        assert_eq!((s.score, s.ready, s.load, s.batch_cap, s.picked_since_read), (0.8, false, 5.0, 8.0, 1));
        // A gateway without a score yet: its page is read, the score unknown.
        s.read("energyllm_ready 1\nenergyllm_in_flight 0\n", Instant::now()).unwrap();
        assert!(s.score.is_nan() && s.ready);
        let err = s.read("vllm:num_requests_running 1\n", Instant::now()).unwrap_err();
        assert!(err.contains("energyllm serve"), "{err}");
        assert!(s.read("energyllm_endpoint_score{\n", Instant::now()).unwrap_err().contains("line 1"));
    }
}

//! The board: what the picker knows of every endpoint, kept fresh by one reader task per
//! endpoint, and the counters of what it decided. Flows ask it for decisions through
//! [`Picker`]; the metrics page reads it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::flow::Picker;
use crate::pick::{decide, Decision, EndpointState, PickPolicy, FAILED_READS_TO_LEAVE_OUT};
use crate::pool::Pool;

/// Per-endpoint counters.
#[derive(Default)]
struct Counts {
    picks: AtomicU64,
    served: AtomicU64,
    read_errors: AtomicU64,
    tried: AtomicBool,
}

/// The picker's shared state.
pub struct Board {
    pool: Pool,
    policy: PickPolicy,
    states: Mutex<Vec<EndpointState>>,
    counts: Vec<Counts>,
    served_elsewhere: AtomicU64,
    refused: [(u16, AtomicU64); 3],
}

impl Board {
    /// A board for `pool`, deciding by `policy`; nothing read yet.
    pub fn new(pool: Pool, policy: PickPolicy) -> Board {
        let n = pool.endpoints().len();
        Board {
            states: Mutex::new(vec![EndpointState::default(); n]),
            counts: (0..n).map(|_| Counts::default()).collect(),
            pool,
            policy,
            served_elsewhere: AtomicU64::new(0),
            refused: [(413, AtomicU64::new(0)), (429, AtomicU64::new(0)), (503, AtomicU64::new(0))],
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How the board decides.
    pub fn policy(&self) -> &PickPolicy {
        &self.policy
    }

    fn states(&self) -> MutexGuard<'_, Vec<EndpointState>> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every endpoint's state.
    pub fn snapshot(&self) -> Vec<EndpointState> {
        self.states().clone()
    }

    /// Notes that endpoint `i`'s page is being requested.
    pub fn read_sent(&self, i: usize) {
        if let Some(state) = self.states().get_mut(i) {
            state.read_sent();
        }
    }

    /// Takes in the outcome of reading endpoint `i`'s page: its text, or why it failed. Returns
    /// the error when the page could not be used, for the reader to log.
    pub fn take_read(&self, i: usize, page: Result<String, String>, at: Instant) -> Result<(), String> {
        let Some(counts) = self.counts.get(i) else { return Ok(()) };
        counts.tried.store(true, Ordering::Relaxed);
        let mut states = self.states();
        let state = &mut states[i];
        let outcome = page.and_then(|p| state.read(&p, at));
        if let Err(e) = &outcome {
            state.read_failed(e.clone());
            counts.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// Whether every endpoint's page has been tried once: the picker's readiness.
    pub fn synced(&self) -> bool {
        self.counts.iter().all(|c| c.tried.load(Ordering::Relaxed))
    }

    /// Requests picked for endpoint `i` (as the first choice) since start.
    pub fn picks(&self, i: usize) -> u64 {
        self.counts.get(i).map_or(0, |c| c.picks.load(Ordering::Relaxed))
    }

    /// Requests the proxy reported served by endpoint `i`.
    pub fn served_by(&self, i: usize) -> u64 {
        self.counts.get(i).map_or(0, |c| c.served.load(Ordering::Relaxed))
    }

    /// Requests refused with `status` (413, 429 or 503).
    pub fn refusals(&self, status: u16) -> u64 {
        self.refused.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| n.load(Ordering::Relaxed))
    }

    /// The picker's `/metrics` page.
    pub fn render(&self) -> String {
        let states = self.snapshot();
        let now = Instant::now();
        let mut s = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(s, "{name}{labels} {value}");
            }
        };
        let per_endpoint = |f: &dyn Fn(usize, &EndpointState) -> String| {
            self.pool
                .endpoints()
                .iter()
                .zip(&states)
                .enumerate()
                .map(|(i, (e, st))| (format!("{{endpoint=\"{}\"}}", e.address), f(i, st)))
                .collect::<Vec<_>>()
        };
        let stale = self.policy.stale_after;
        family(
            "energyllm_epp_endpoint_score",
            "gauge",
            "The endpoint's score from its gateway's last page (NaN before one).",
            per_endpoint(&|_, st| st.score.to_string()),
        );
        family(
            "energyllm_epp_endpoint_eligible",
            "gauge",
            "1 when the endpoint may be picked: page fresh and gateway ready.",
            per_endpoint(&|_, st| u8::from(eligible(st, now, stale)).to_string()),
        );
        family(
            "energyllm_epp_picks_total",
            "counter",
            "Requests sent to the endpoint as first choice.",
            per_endpoint(&|i, _| self.picks(i).to_string()),
        );
        family(
            "energyllm_epp_served_total",
            "counter",
            "Requests the proxy reported served by the endpoint.",
            per_endpoint(&|i, _| self.served_by(i).to_string()),
        );
        family(
            "energyllm_epp_read_errors_total",
            "counter",
            "Failed reads of the endpoint's metrics page.",
            per_endpoint(&|i, _| self.counts[i].read_errors.load(Ordering::Relaxed).to_string()),
        );
        family(
            "energyllm_epp_served_unknown_total",
            "counter",
            "Requests the proxy reported served by an address not in the pool.",
            vec![(String::new(), self.served_elsewhere.load(Ordering::Relaxed).to_string())],
        );
        family(
            "energyllm_epp_refused_total",
            "counter",
            "Requests answered by the picker itself: 413 body too large, 429 shed, 503 no ready endpoint.",
            self.refused
                .iter()
                .map(|(code, n)| (format!("{{status=\"{code}\"}}"), n.load(Ordering::Relaxed).to_string()))
                .collect(),
        );
        s
    }
}

fn eligible(st: &EndpointState, now: Instant, stale: Duration) -> bool {
    st.ready
        && st.failed_reads < FAILED_READS_TO_LEAVE_OUT
        && st.read_at.is_some_and(|t| now.saturating_duration_since(t) <= stale)
}

impl Picker for Board {
    fn pick(&self, subset: Option<&[SocketAddr]>, sheddable: bool) -> Decision {
        let mut states = self.states();
        let d = decide(&self.pool, &states, Instant::now(), subset, sheddable, &self.policy);
        if let Decision::Route(addrs) = &d {
            if let Some(i) = self.pool.endpoints().iter().position(|e| Some(&e.address) == addrs.first()) {
                states[i].picked_since_read += 1;
                self.counts[i].picks.fetch_add(1, Ordering::Relaxed);
            }
        }
        d
    }

    fn served(&self, endpoint: &str) {
        let served: Option<SocketAddr> = endpoint.trim().parse().ok();
        match self.pool.endpoints().iter().position(|e| Some(e.address) == served) {
            Some(i) => self.counts[i].served.fetch_add(1, Ordering::Relaxed),
            None => self.served_elsewhere.fetch_add(1, Ordering::Relaxed),
        };
    }

    fn refused(&self, status: u16) {
        if let Some((_, n)) = self.refused.iter().find(|(s, _)| *s == status) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use energyllm_engines::prom::Metrics;

    #[test]
    fn picks_count_against_the_endpoint_until_its_next_page_and_show_on_the_metrics_page() {
        let pool = Pool::from_addresses(&["10.0.0.1:1".into(), "10.0.0.2:1".into()]).unwrap();
        let board = Board::new(pool, PickPolicy::default());
        assert!(!board.synced());
        let page = |score: f64| Ok(format!("energyllm_endpoint_score {score}\nenergyllm_batch_cap 2\n"));
        board.take_read(0, page(0.9), Instant::now()).unwrap();
        assert!(!board.synced());
        board.take_read(1, page(0.6), Instant::now()).unwrap();
        assert!(board.synced());
        let first = |d: Decision| match d {
            Decision::Route(a) => a[0].to_string(),
            d => panic!("{d:?}"),
        };
        // Two slots on the better endpoint, then the other, until a new page shows the truth.
        let picks: Vec<String> = (0..3).map(|_| first(board.pick(None, false))).collect();
        assert_eq!(picks, ["10.0.0.1:1", "10.0.0.1:1", "10.0.0.2:1"]);
        board.read_sent(0);
        board.take_read(0, page(0.9), Instant::now()).unwrap();
        assert_eq!(first(board.pick(None, false)), "10.0.0.1:1");
        board.served("10.0.0.2:1");
        board.served("10.9.9.9:1");
        board.refused(503);
        assert!(board.take_read(1, Err("connection refused".into()), Instant::now()).is_err());

        let m = Metrics::parse(&board.render()).unwrap();
        let get = |name: &str, label: &str| {
            m.samples()
                .iter()
                .find(|s| s.name == name && s.labels.iter().any(|(_, v)| v == label))
                .unwrap()
                .value
        };
        assert_eq!(get("energyllm_epp_picks_total", "10.0.0.1:1"), 3.0);
        assert_eq!(get("energyllm_epp_served_total", "10.0.0.2:1"), 1.0);
        assert_eq!(get("energyllm_epp_refused_total", "503"), 1.0);
        assert_eq!(get("energyllm_epp_read_errors_total", "10.0.0.2:1"), 1.0);
        assert_eq!(get("energyllm_epp_endpoint_score", "10.0.0.1:1"), 0.9);
        assert_eq!(get("energyllm_epp_endpoint_eligible", "10.0.0.1:1"), 1.0);
        assert_eq!(m.sum("energyllm_epp_served_unknown_total"), Some(1.0));
    }
}

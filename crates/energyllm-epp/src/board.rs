//! The board: what the picker knows of every endpoint, kept fresh by one reader task per
//! endpoint, and the counters of what it decided. Listed endpoints are members from the start;
//! a service's members follow its DNS name. Flows ask the board for decisions through
//! [`Picker`]; the metrics page reads it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::flow::Picker;
use crate::pick::{decide, Decision, EndpointState, PickPolicy};
use crate::pool::{Endpoint, Pool};

/// Where a member came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Listed in the pool.
    Listed,
    /// An address of the pool's service with this index.
    Service(usize),
}

/// One endpoint of the pool as it is now, what its page said, and its counters.
#[derive(Clone, Debug)]
pub struct Member {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Where it came from.
    pub source: Source,
    /// What its page said.
    pub state: EndpointState,
    /// Requests sent to it as first choice.
    pub picks: u64,
    /// Requests the proxy reported it served.
    pub served: u64,
    /// Failed reads of its page.
    pub read_errors: u64,
    /// Whether its page has been tried.
    pub tried: bool,
}

impl Member {
    fn new(endpoint: Endpoint, source: Source) -> Member {
        Member {
            endpoint,
            source,
            state: EndpointState::default(),
            picks: 0,
            served: 0,
            read_errors: 0,
            tried: false,
        }
    }
}

struct Members {
    list: Vec<Member>,
    /// Whether each service's resolution has been tried once (succeeded or not).
    resolved: Vec<bool>,
}

/// The picker's shared state.
pub struct Board {
    pool: Pool,
    policy: PickPolicy,
    members: Mutex<Members>,
    served_elsewhere: AtomicU64,
    refused: [(u16, AtomicU64); 3],
}

impl Board {
    /// A board for `pool`, deciding by `policy`: the listed endpoints, nothing read yet.
    pub fn new(pool: Pool, policy: PickPolicy) -> Board {
        let list = pool.endpoints().iter().map(|e| Member::new(e.clone(), Source::Listed)).collect();
        Board {
            members: Mutex::new(Members { list, resolved: vec![false; pool.services().len()] }),
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

    fn members(&self) -> MutexGuard<'_, Members> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every member.
    pub fn snapshot(&self) -> Vec<Member> {
        self.members().list.clone()
    }

    /// The member at `address`, if there is one.
    pub fn member(&self, address: SocketAddr) -> Option<Member> {
        self.members().list.iter().find(|m| m.endpoint.address == address).cloned()
    }

    /// Sets service `service`'s members to `addresses`, keeping what is known of the ones that
    /// stay (their order too). Returns the endpoints added, for readers to start, and the
    /// addresses removed, whose readers stop. An address already listed is not added twice.
    pub fn set_service(&self, service: usize, addresses: &[SocketAddr]) -> (Vec<Endpoint>, Vec<SocketAddr>) {
        let Some(spec) = self.pool.services().get(service) else { return (Vec::new(), Vec::new()) };
        let mut m = self.members();
        if let Some(r) = m.resolved.get_mut(service) {
            *r = true;
        }
        let mut removed = Vec::new();
        m.list.retain(|x| {
            let keep = x.source != Source::Service(service) || addresses.contains(&x.endpoint.address);
            if !keep {
                removed.push(x.endpoint.address);
            }
            keep
        });
        let mut sorted = addresses.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut added = Vec::new();
        for a in sorted {
            if !m.list.iter().any(|x| x.endpoint.address == a) {
                let e = spec.endpoint(a);
                added.push(e.clone());
                m.list.push(Member::new(e, Source::Service(service)));
            }
        }
        (added, removed)
    }

    /// Notes that service `service`'s resolution failed: it has been tried, for readiness, and
    /// keeps the members it had.
    pub fn service_failed(&self, service: usize) {
        if let Some(r) = self.members().resolved.get_mut(service) {
            *r = true;
        }
    }

    /// Notes that `address`'s page is being requested.
    pub fn read_sent(&self, address: SocketAddr) {
        if let Some(x) = self.members().list.iter_mut().find(|x| x.endpoint.address == address) {
            x.state.read_sent();
        }
    }

    /// Takes in the outcome of reading `address`'s page: its text, or why it failed. Returns
    /// the error when the page could not be used, for the reader to log.
    pub fn take_read(
        &self,
        address: SocketAddr,
        page: Result<String, String>,
        at: Instant,
    ) -> Result<(), String> {
        let mut m = self.members();
        let Some(x) = m.list.iter_mut().find(|x| x.endpoint.address == address) else { return Ok(()) };
        x.tried = true;
        let outcome = page.and_then(|p| x.state.read(&p, at));
        if let Err(e) = &outcome {
            x.state.read_failed(e.clone());
            x.read_errors += 1;
        }
        outcome
    }

    /// Whether every service's resolution and every member's page have been tried once: the
    /// picker's readiness. A name that does not resolve does not hold it back; the 503s say
    /// which endpoints there are.
    pub fn synced(&self) -> bool {
        let m = self.members();
        m.resolved.iter().all(|r| *r) && m.list.iter().all(|x| x.tried)
    }

    /// Requests refused with `status` (413, 429 or 503).
    pub fn refusals(&self, status: u16) -> u64 {
        self.refused.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| n.load(Ordering::Relaxed))
    }

    /// The picker's `/metrics` page.
    pub fn render(&self) -> String {
        let members = self.snapshot();
        let now = Instant::now();
        let mut s = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(s, "{name}{labels} {value}");
            }
        };
        let per_endpoint = |f: &dyn Fn(&Member) -> String| {
            members
                .iter()
                .map(|x| (format!("{{endpoint=\"{}\"}}", x.endpoint.address), f(x)))
                .collect::<Vec<_>>()
        };
        let stale = self.policy.stale_after;
        family(
            "energyllm_epp_endpoints",
            "gauge",
            "Endpoints in the pool now, listed and resolved.",
            vec![(String::new(), members.len().to_string())],
        );
        family(
            "energyllm_epp_endpoint_score",
            "gauge",
            "The endpoint's score from its gateway's last page (NaN before one).",
            per_endpoint(&|x| x.state.score.to_string()),
        );
        family(
            "energyllm_epp_endpoint_eligible",
            "gauge",
            "1 when the endpoint may be picked: page fresh and gateway ready.",
            per_endpoint(&|x| u8::from(x.state.eligible(now, stale)).to_string()),
        );
        family(
            "energyllm_epp_picks_total",
            "counter",
            "Requests sent to the endpoint as first choice.",
            per_endpoint(&|x| x.picks.to_string()),
        );
        family(
            "energyllm_epp_served_total",
            "counter",
            "Requests the proxy reported served by the endpoint.",
            per_endpoint(&|x| x.served.to_string()),
        );
        family(
            "energyllm_epp_read_errors_total",
            "counter",
            "Failed reads of the endpoint's metrics page.",
            per_endpoint(&|x| x.read_errors.to_string()),
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

impl Picker for Board {
    fn pick(&self, subset: Option<&[SocketAddr]>, sheddable: bool) -> Decision {
        let mut m = self.members();
        let members = m.list.iter().map(|x| (x.endpoint.address, &x.state));
        let d = decide(members, Instant::now(), subset, sheddable, &self.policy);
        if let Decision::Route(addrs) = &d {
            if let Some(x) = m.list.iter_mut().find(|x| Some(&x.endpoint.address) == addrs.first()) {
                x.state.picked_since_read += 1;
                x.picks += 1;
            }
        }
        d
    }

    fn served(&self, endpoint: &str) {
        let served: Option<SocketAddr> = endpoint.trim().parse().ok();
        match self.members().list.iter_mut().find(|x| Some(x.endpoint.address) == served) {
            Some(x) => x.served += 1,
            None => {
                self.served_elsewhere.fetch_add(1, Ordering::Relaxed);
            }
        }
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

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn picks_count_against_the_endpoint_until_its_next_page_and_show_on_the_metrics_page() {
        let pool = Pool::from_addresses(&["10.0.0.1:1".into(), "10.0.0.2:1".into()]).unwrap();
        let board = Board::new(pool, PickPolicy::default());
        let (a, b) = (addr("10.0.0.1:1"), addr("10.0.0.2:1"));
        assert!(!board.synced());
        let page = |score: f64| Ok(format!("energyllm_endpoint_score {score}\nenergyllm_batch_cap 2\n"));
        board.take_read(a, page(0.9), Instant::now()).unwrap();
        assert!(!board.synced());
        board.take_read(b, page(0.6), Instant::now()).unwrap();
        assert!(board.synced());
        let first = |d: Decision| match d {
            Decision::Route(a) => a[0].to_string(),
            d => panic!("{d:?}"),
        };
        // Two slots on the better endpoint, then the other, until a new page shows the truth.
        let picks: Vec<String> = (0..3).map(|_| first(board.pick(None, false))).collect();
        assert_eq!(picks, ["10.0.0.1:1", "10.0.0.1:1", "10.0.0.2:1"]);
        board.read_sent(a);
        board.take_read(a, page(0.9), Instant::now()).unwrap();
        assert_eq!(first(board.pick(None, false)), "10.0.0.1:1");
        board.served("10.0.0.2:1");
        board.served("10.9.9.9:1");
        board.refused(503);
        assert!(board.take_read(b, Err("connection refused".into()), Instant::now()).is_err());

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
        assert_eq!(m.sum("energyllm_epp_endpoints"), Some(2.0));
    }

    #[test]
    fn a_services_members_follow_its_addresses_and_keep_what_is_known_of_those_that_stay() {
        let text = "[[endpoint]]\naddress = \"10.0.0.1:9000\"\n[[service]]\naddress = \"gw.svc:9000\"\n";
        let pool = Pool::from_toml(text, std::path::Path::new("pool.toml")).unwrap();
        let board = Board::new(pool, PickPolicy::default());
        assert!(!board.synced(), "the service has not been resolved");
        let (added, removed) =
            board.set_service(0, &[addr("10.0.0.3:9000"), addr("10.0.0.2:9000"), addr("10.0.0.1:9000")]);
        let added: Vec<String> = added.iter().map(|e| e.metrics_url.clone()).collect();
        assert_eq!(
            added,
            ["http://10.0.0.2:9000/metrics", "http://10.0.0.3:9000/metrics"],
            "a listed address is not added twice"
        );
        assert!(removed.is_empty());
        for a in ["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"] {
            board.take_read(addr(a), Ok("energyllm_endpoint_score 0.7\n".into()), Instant::now()).unwrap();
        }
        assert!(board.synced());
        board.served("10.0.0.2:9000");
        // A pod goes and another comes: the one that stays keeps its counters.
        let (added, removed) = board.set_service(0, &[addr("10.0.0.2:9000"), addr("10.0.0.4:9000")]);
        assert_eq!(added.len(), 1);
        assert_eq!(removed, [addr("10.0.0.3:9000")]);
        assert_eq!(board.member(addr("10.0.0.2:9000")).unwrap().served, 1);
        assert!(board.member(addr("10.0.0.3:9000")).is_none());
        assert_eq!(
            board.member(addr("10.0.0.1:9000")).unwrap().source,
            Source::Listed,
            "a listed endpoint stays"
        );
        assert!(!board.synced(), "the new member's page has not been tried");
    }
}

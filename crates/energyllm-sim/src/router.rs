//! Online routing over several simulated GPU instances, each with its own controller.
//!
//! A [`Router`] picks, for each arriving request, the instance that serves it. It sees what a
//! load balancer in front of several energyllm gateways could see: each instance's queue,
//! running count, batch cap and clock, a performance model of the instance, its idle power and
//! SLO, and an *estimate* of the request's output length (never the true one, as for policies).
//! Three routers ship:
//!
//! - [`RoundRobin`]: the next instance in turn.
//! - [`LeastLoaded`]: the fewest queued + running requests, relative to the batch cap.
//! - [`EnergySlack`]: the least predicted *marginal* energy among instances whose predicted
//!   end-to-end latency leaves SLO slack, else the least predicted latency. Marginal energy is
//!   what the instance's board draws with the request minus what it would draw without it over
//!   the same time, so an idle GPU pays its whole active-power step and a busy one only the extra
//!   batch slot: the router consolidates while the SLO allows, and prefers the GPU whose model
//!   predicts fewer joules per token. The predicted latency includes what is left of a waking
//!   instance's wake-up.
//!
//! [`crate::cluster`] is the multi-instance driver: one event loop over N (engine, GPU, controller)
//! triples, the same controller the single-instance driver and the gateway run, and optional
//! instance sizing with power gating, wake-up delays and a per-window choice of
//! tensor-parallel degree.

pub use energyllm_core::score::{
    endpoint_score, predict, rank, EndpointScore, InstanceView, Prediction, RouteQuery,
};

/// Picks an instance for each arriving request.
pub trait Router {
    /// Name in tables.
    fn name(&self) -> &str;
    /// The index into `instances` of the instance to serve `query`; it must be an active one
    /// (the driver guarantees at least one is).
    fn route(&mut self, query: &RouteQuery, instances: &[InstanceView<'_>]) -> usize;
}

/// Each active instance in turn.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl Router for RoundRobin {
    fn name(&self) -> &str {
        "round-robin"
    }
    fn route(&mut self, _query: &RouteQuery, instances: &[InstanceView<'_>]) -> usize {
        let n = instances.len().max(1);
        for step in 0..n {
            let i = (self.next + step) % n;
            if instances.get(i).is_some_and(|v| v.active) {
                self.next = i + 1;
                return i;
            }
        }
        0
    }
}

/// The active instance with the fewest queued + running requests per batch slot (ties: the
/// lowest index).
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastLoaded;

impl Router for LeastLoaded {
    fn name(&self) -> &str {
        "least-loaded"
    }
    fn route(&mut self, _query: &RouteQuery, instances: &[InstanceView<'_>]) -> usize {
        instances
            .iter()
            .enumerate()
            .filter(|(_, v)| v.active)
            .map(|(i, v)| (i, (v.queue_len + v.running) as f64 / f64::from(v.batch_cap.max(1))))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .map_or(0, |(i, _)| i)
    }
}

/// Least marginal energy among instances with SLO slack (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnergySlack {
    /// Fraction of the end-to-end SLO a predicted latency may use and still count as having
    /// slack. Default: 0.4 (the prediction ignores future arrivals and clock changes).
    pub slo_margin: f64,
}

impl Default for EnergySlack {
    fn default() -> Self {
        EnergySlack { slo_margin: 0.4 }
    }
}

impl Router for EnergySlack {
    fn name(&self) -> &str {
        "energy-slack"
    }

    /// The active instance with the highest [`endpoint_score`]: among those with slack the
    /// least marginal energy, else the least latency (ties: the lowest index). The gateway
    /// exports the same score, so a load balancer in front of real gateways ranks them alike.
    fn route(&mut self, query: &RouteQuery, instances: &[InstanceView<'_>]) -> usize {
        let active = instances.iter().enumerate().filter(|(_, v)| v.active);
        rank(active.map(|(i, v)| (i, endpoint_score(v, query, self.slo_margin).score)))
            .first()
            .copied()
            .unwrap_or(0)
    }
}

/// A router from its spec: `round-robin`, `least-loaded`, `energy-slack[:slo_margin=F]`.
pub fn router_by_name(spec: &str) -> Option<Box<dyn Router>> {
    let (name, args) = spec.split_once(':').unwrap_or((spec, ""));
    match (name, args) {
        ("round-robin", "") => Some(Box::new(RoundRobin::default())),
        ("least-loaded", "") => Some(Box::new(LeastLoaded)),
        ("energy-slack", "") => Some(Box::new(EnergySlack::default())),
        ("energy-slack", args) => {
            let margin = args.strip_prefix("slo_margin=")?.parse::<f64>().ok().filter(|m| *m > 0.0)?;
            Some(Box::new(EnergySlack { slo_margin: margin }))
        }
        _ => None,
    }
}

/// The names [`router_by_name`] knows.
pub const ROUTERS: &[&str] = &["round-robin", "least-loaded", "energy-slack"];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use energyllm_core::{Mhz, PerfModel, PerfPrediction, PerfQuery, Slo};

    /// Iteration time grows slowly with batch; power rises from 150 W by 10 W per request.
    struct Toy {
        watts_per_request: f64,
    }
    impl PerfModel for Toy {
        fn name(&self) -> &str {
            "toy"
        }
        fn predict(&self, q: &PerfQuery) -> PerfPrediction {
            let b = f64::from(q.batch.max(1));
            PerfPrediction {
                latency_s: 0.02 + 0.001 * b + 1e-5 * f64::from(q.prefill_tokens),
                power_w: 150.0 + self.watts_per_request * b,
            }
        }
    }

    fn view<'a>(perf: &'a Toy, queue: usize, running: usize) -> InstanceView<'a> {
        InstanceView {
            name: "x",
            queue_len: queue,
            running,
            batch_cap: 8,
            freq: Mhz(1410),
            perf,
            idle_power_w: 60.0,
            slo: Slo::e2e(10.0),
            active: true,
            ready_in_s: 0.0,
        }
    }

    const Q: RouteQuery = RouteQuery { input_tokens: 100, est_output_tokens: 100.0 };

    #[test]
    fn energy_slack_consolidates_onto_a_busy_instance_while_there_is_slack() {
        let toy = Toy { watts_per_request: 10.0 };
        let views = [view(&toy, 0, 0), view(&toy, 0, 3)];
        assert_eq!(EnergySlack::default().route(&Q, &views), 1);
        // A full, queued instance has no slack left: the idle one takes it.
        let views = [view(&toy, 0, 0), view(&toy, 40, 8)];
        assert_eq!(EnergySlack::default().route(&Q, &views), 0);
    }

    #[test]
    fn a_waking_instance_predicts_its_wait_and_loses_the_slack_it_uses() {
        let toy = Toy { watts_per_request: 10.0 };
        let ready = predict(&view(&toy, 0, 3), &Q);
        let mut waking = view(&toy, 0, 3);
        waking.ready_in_s = 3.0;
        let p = predict(&waking, &Q);
        assert!((p.e2e_s - ready.e2e_s - 3.0).abs() < 1e-9, "{p:?} vs {ready:?}");
        assert_eq!(p.marginal_energy_j, ready.marginal_energy_j);
        // Busy and cheaper, but waking past the slack: the idle, ready one takes it.
        assert_eq!(EnergySlack::default().route(&Q, &[view(&toy, 0, 0), waking]), 0);
    }

    #[test]
    fn energy_slack_prefers_the_cheaper_gpu_between_idle_ones() {
        let (cheap, dear) = (Toy { watts_per_request: 5.0 }, Toy { watts_per_request: 20.0 });
        let views = [view(&dear, 0, 0), view(&cheap, 0, 0)];
        assert_eq!(EnergySlack::default().route(&Q, &views), 1);
    }

    #[test]
    fn baselines_spread_the_load_and_skip_inactive_instances() {
        let toy = Toy { watts_per_request: 10.0 };
        let mut views = vec![view(&toy, 0, 0), view(&toy, 0, 3), view(&toy, 0, 1)];
        let mut rr = RoundRobin::default();
        assert_eq!([0, 1, 2, 0].map(|_| rr.route(&Q, &views)), [0, 1, 2, 0]);
        assert_eq!(LeastLoaded.route(&Q, &views), 0);
        views[0].active = false;
        assert_eq!(LeastLoaded.route(&Q, &views), 2);
        assert_eq!([0, 1, 2].map(|_| rr.route(&Q, &views)), [1, 2, 1]);
    }

    /// The router ranks by the exported score, and that ranking is the energy-slack rule: among
    /// instances with slack the least marginal energy, else the least latency.
    #[test]
    fn energy_slack_picks_the_highest_endpoint_score_which_is_the_slack_rule() {
        let (cheap, dear) = (Toy { watts_per_request: 5.0 }, Toy { watts_per_request: 40.0 });
        let router = EnergySlack::default();
        for q in [Q, RouteQuery { input_tokens: 2000, est_output_tokens: 900.0 }] {
            for (a, b, c) in [(0, 0, 0), (0, 3, 9), (8, 0, 2), (20, 1, 0), (40, 40, 40), (3, 12, 7)] {
                let views = [view(&cheap, a, 0), view(&dear, 0, b), view(&cheap, c, 4)];
                let preds: Vec<Prediction> = views.iter().map(|v| predict(v, &q)).collect();
                let budget =
                    |v: &InstanceView<'_>| router.slo_margin * v.slo.latency_budget_s(q.est_output_tokens);
                let slack: Vec<usize> = (0..3).filter(|&i| preds[i].e2e_s <= budget(&views[i])).collect();
                let expect = if slack.is_empty() {
                    (0..3).min_by(|&i, &j| preds[i].e2e_s.total_cmp(&preds[j].e2e_s).then(i.cmp(&j)))
                } else {
                    slack.iter().copied().min_by(|&i, &j| {
                        preds[i].marginal_energy_j.total_cmp(&preds[j].marginal_energy_j).then(i.cmp(&j))
                    })
                };
                assert_eq!(Some(EnergySlack::default().route(&q, &views)), expect, "loads {a} {b} {c}");
                for v in &views {
                    let s = endpoint_score(v, &q, router.slo_margin);
                    assert!((0.0..=1.0).contains(&s.score));
                    assert_eq!(s.score > 0.5, s.headroom() >= 0.0, "{s:?}");
                }
            }
        }
    }
}

//! The endpoint score: how good a place one serving instance is for the next request, in
//! [0, 1], from what a load balancer in front of it could know. The cluster simulator's
//! `energy-slack` router ranks instances by it, and each live gateway exports its own
//! (`energyllm_endpoint_score`, and through HAProxy's agent check), so what `energyllm cluster`
//! shows is what production does.
//!
//! [`predict`] estimates what taking a request would cost an instance: its marginal board energy
//! and its end-to-end latency. [`endpoint_score`] maps that onto one number. An instance whose
//! predicted latency leaves slack against a share of the SLO's budget scores above 0.5, more the
//! less marginal energy it needs. An instance without slack scores below 0.5, more the faster it
//! would answer. The energy term is scaled by the request's estimated output tokens (1 J per
//! token ↦ 0.75), so scores of instances compare for the same request. [`rank`] orders
//! candidates by their scores, for the simulator's router and the endpoint picker alike.

use crate::{Mhz, PerfModel, PerfQuery, Slo};

/// What a router sees of one instance at an arrival.
pub struct InstanceView<'a> {
    /// Instance name.
    pub name: &'a str,
    /// Requests waiting: in the controller's queue, and routed to a waking instance before it is
    /// ready.
    pub queue_len: usize,
    /// Requests running on the engine.
    pub running: usize,
    /// The controller's batch cap.
    pub batch_cap: u32,
    /// The clock the controller has set.
    pub freq: Mhz,
    /// The instance's performance model (iteration latency and power).
    pub perf: &'a dyn PerfModel,
    /// Board power of the idle instance (every GPU of its group), in watts.
    pub idle_power_w: f64,
    /// The SLO the instance serves.
    pub slo: Slo,
    /// Whether sizing keeps the instance on; routers must pick an active one.
    pub active: bool,
    /// Seconds until a waking (or re-sharding) instance can serve; 0 when it is ready.
    pub ready_in_s: f64,
}

/// The request as a router sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RouteQuery {
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Estimated output tokens (the mean of completed requests so far).
    pub est_output_tokens: f64,
}

/// An instance's predicted cost of taking a request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Extra board energy, in joules.
    pub marginal_energy_j: f64,
    /// End-to-end latency, in seconds.
    pub e2e_s: f64,
}

/// What taking `query` would cost instance `v`: a decode of `est_output_tokens` iterations at
/// the batch it would run at, after a wait when its batch is full, plus the prefill, all after
/// the instance is ready. Waking adds no marginal energy: the instance draws idle power anyway.
pub fn predict(v: &InstanceView<'_>, query: &RouteQuery) -> Prediction {
    let cap = v.batch_cap.max(1);
    let load = (v.queue_len + v.running) as u32;
    let out = query.est_output_tokens.max(1.0);
    let ctx = u64::from(query.input_tokens) + (out / 2.0) as u64;
    let decode = |batch: u32| {
        v.perf.predict(&PerfQuery {
            freq: v.freq,
            batch,
            prefill_tokens: 0,
            decode_tokens: batch,
            kv_tokens: u64::from(batch) * ctx,
        })
    };
    let with = decode((load + 1).min(cap));
    let without_power_w = if load == 0 { v.idle_power_w } else { decode(load.min(cap)).power_w };
    let prefill = v.perf.predict(&PerfQuery {
        freq: v.freq,
        batch: 1,
        prefill_tokens: query.input_tokens.max(1),
        decode_tokens: 0,
        kv_tokens: u64::from(query.input_tokens),
    });
    let decode_s = out * with.latency_s;
    // A full batch: the request waits for slots to free, about one request lifetime per batch
    // of requests ahead of it.
    let wait_s = if load >= cap {
        f64::from((load + 1 - cap).div_ceil(cap)) * out * decode(cap).latency_s
    } else {
        0.0
    };
    let marginal_energy_j = (decode_s * (with.power_w - without_power_w)).max(0.0)
        + (prefill.latency_s * (prefill.power_w - without_power_w)).max(0.0);
    Prediction { marginal_energy_j, e2e_s: v.ready_in_s.max(0.0) + wait_s + prefill.latency_s + decode_s }
}

/// An instance's score for a request, with the prediction behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EndpointScore {
    /// In [0, 1]; higher is a better place for the request.
    pub score: f64,
    /// What taking the request would cost.
    pub prediction: Prediction,
    /// The latency the instance may use and still count as having slack: `slo_margin` times the
    /// SLO's budget for the request, in seconds.
    pub slack_budget_s: f64,
}

impl EndpointScore {
    /// `1 − predicted e2e / slack budget`: positive with slack, negative without.
    pub fn headroom(&self) -> f64 {
        if self.slack_budget_s.is_finite() && self.slack_budget_s > 0.0 {
            1.0 - self.prediction.e2e_s / self.slack_budget_s
        } else {
            1.0
        }
    }
}

/// The score of instance `v` for `query` (see the module doc); `slo_margin` is the share of the
/// SLO budget a predicted latency may use and still count as slack.
pub fn endpoint_score(v: &InstanceView<'_>, query: &RouteQuery, slo_margin: f64) -> EndpointScore {
    let prediction = predict(v, query);
    let slack_budget_s = slo_margin * v.slo.latency_budget_s(query.est_output_tokens);
    let score = if prediction.e2e_s <= slack_budget_s {
        // (0.5, 1]: the cheaper, the higher; a reference of 1 J per output token sits at 0.75.
        let reference_j = query.est_output_tokens.max(1.0);
        0.5 + 0.5 * reference_j / (reference_j + prediction.marginal_energy_j.max(0.0))
    } else {
        // [0, 0.5): the faster, the higher.
        let budget = if slack_budget_s.is_finite() && slack_budget_s > 0.0 { slack_budget_s } else { 1.0 };
        0.5 * budget / (budget + prediction.e2e_s.max(0.0))
    };
    EndpointScore {
        score: if score.is_finite() { score.clamp(0.0, 1.0) } else { 0.0 },
        prediction,
        slack_budget_s,
    }
}

/// Candidates `(id, score)` from the best place for a request to the worst: the highest score
/// first, an unknown (NaN) score after every known one, ties to the lower id. The cluster
/// simulator's `energy-slack` router takes the first active instance of this order; the endpoint
/// picker (`energyllm epp`) takes the first ready endpoints, reading each score from its gateway.
pub fn rank(candidates: impl IntoIterator<Item = (usize, f64)>) -> Vec<usize> {
    let mut c: Vec<(usize, f64)> = candidates.into_iter().collect();
    let key = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
    c.sort_by(|a, b| a.1.is_nan().cmp(&b.1.is_nan()).then(key(b.1).total_cmp(&key(a.1))).then(a.0.cmp(&b.0)));
    c.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::rank;

    #[test]
    fn rank_puts_the_highest_score_first_unknown_last_and_ties_to_the_lower_id() {
        assert_eq!(rank([(0, 0.2), (1, 0.9), (2, f64::NAN), (3, 0.9), (4, 0.0)]), vec![1, 3, 0, 4, 2]);
        assert_eq!(rank([(7, f64::NAN), (3, f64::NAN)]), vec![3, 7]);
        assert_eq!(rank([(5, f64::NEG_INFINITY), (2, f64::NAN)]), vec![5, 2]);
        assert!(rank([]).is_empty());
    }
}

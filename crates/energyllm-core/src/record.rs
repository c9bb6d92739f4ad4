//! What happened to each request.

use serde::{Deserialize, Serialize};

use crate::{RequestId, Slo};

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Generated all its tokens.
    Completed,
    /// Refused by the engine (it can never fit, or the upstream failed); counts as an SLO miss.
    Rejected,
}

/// The life of one request, as the engine saw it. Times are seconds since the start of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Identity within the run.
    pub id: RequestId,
    /// How it ended.
    pub status: RequestStatus,
    /// Arrival at the controller.
    pub arrival_s: f64,
    /// Dispatch from the controller's queue to the engine.
    pub dispatch_s: f64,
    /// First output token (equal to `completion_s` for a rejected request).
    pub first_token_s: f64,
    /// Last output token, or the rejection.
    pub completion_s: f64,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Output tokens generated.
    pub output_tokens: u32,
    /// GPU energy attributed to this request: each iteration's energy split over the requests in
    /// it by their tokens in that iteration, in joules.
    pub energy_j: f64,
    /// Times the engine preempted (and later recomputed) the request.
    pub preemptions: u32,
}

impl RequestRecord {
    /// Arrival to last token, in seconds.
    pub fn e2e_latency_s(&self) -> f64 {
        self.completion_s - self.arrival_s
    }

    /// Arrival to first token, in seconds.
    pub fn ttft_s(&self) -> f64 {
        self.first_token_s - self.arrival_s
    }

    /// Seconds spent queued in front of the engine.
    pub fn queue_s(&self) -> f64 {
        self.dispatch_s - self.arrival_s
    }

    /// Mean time per output token after the first, in seconds; `None` for fewer than 2 tokens.
    pub fn tpot_s(&self) -> Option<f64> {
        (self.output_tokens >= 2)
            .then(|| (self.completion_s - self.first_token_s) / f64::from(self.output_tokens - 1))
    }

    /// Whether the request completed within every target of `slo`.
    pub fn meets(&self, slo: &Slo) -> bool {
        self.status == RequestStatus::Completed
            && slo.is_met(self.e2e_latency_s(), self.ttft_s(), self.tpot_s())
    }
}

//! What a policy sees at a decision epoch.

use serde::{Deserialize, Serialize};

use crate::{Mhz, Slo, Timestamp};

/// The controller's view of the system at one decision epoch.
///
/// Built by the [`Controller`](crate::Controller) from its queue, the requests in flight and
/// telemetry; the same in simulation and live serving. Output lengths are never the true ones:
/// `queued_expected_output_tokens` uses the running mean of completed requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// When the decision is taken.
    pub now: Timestamp,
    /// Requests waiting in the controller's queue.
    pub queue_len: u32,
    /// Prompt tokens of the queued requests.
    pub queued_prompt_tokens: u64,
    /// Expected output tokens of the queued requests (estimated, see the type's doc).
    pub queued_expected_output_tokens: f64,
    /// Requests dispatched to the engine and not yet completed.
    pub running: u32,
    /// Fraction of the engine's KV cache in use, 0–1 (from telemetry; 0 until reported).
    pub kv_usage_frac: f64,
    /// Current clock.
    pub freq: Mhz,
    /// Index of the current clock in the action space, 0 = lowest.
    pub freq_index: usize,
    /// Current batch cap.
    pub batch_cap: u32,
    /// Seconds since the last clock switch (since the start when there was none).
    pub since_last_switch_s: f64,
    /// Arrival-rate estimate in requests per second (sliding window).
    pub arrival_rate_rps: f64,
    /// How long the oldest queued request has waited, in seconds (0 when the queue is empty).
    pub oldest_wait_s: f64,
    /// Mean wait of the queued requests in seconds (0 when the queue is empty).
    pub mean_wait_s: f64,
    /// Fraction of the most recent completions that met the SLO (1 before any completes).
    pub recent_slo_attainment: f64,
    /// Mean end-to-end latency of the most recent completions, in seconds (0 before any).
    pub recent_mean_latency_s: f64,
    /// Mean board power since the previous telemetry report, in watts (0 until reported).
    pub recent_power_w: f64,
    /// Mean output tokens of completed requests (a prior until some complete).
    pub mean_output_tokens: f64,
    /// Mean prompt tokens of every request that has arrived (256 until one has). The simulator
    /// knows each prompt's length at arrival; the live gateway estimates it from the prompt's
    /// characters.
    pub mean_prompt_tokens: f64,
    /// Requests completed so far.
    pub completed: u64,
    /// The SLO being served.
    pub slo: Slo,
}

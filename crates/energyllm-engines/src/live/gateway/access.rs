//! The access log: one line per request, on target `energyllm::access`, at the level the
//! operator chose (`--access-log`), so that it can be filtered or shipped apart from the
//! gateway's own messages.

use super::config::AccessLog;

/// What the access log says of one request.
#[derive(Debug, Default)]
pub(super) struct AccessLine<'a> {
    /// The gateway's id of an admitted request.
    pub(super) id: Option<u64>,
    /// `completed`, `failed`, `client_error`, `cancelled`, or why it was refused.
    pub(super) outcome: &'a str,
    /// The status answered, when the request was refused before admission.
    pub(super) status: Option<u16>,
    pub(super) output_tokens: u32,
    pub(super) ttft_s: f64,
    pub(super) e2e_s: f64,
    pub(super) energy_j: f64,
}

macro_rules! line {
    ($level:expr, $l:expr) => {
        tracing::event!(
            target: "energyllm::access",
            $level,
            id = $l.id,
            outcome = $l.outcome,
            status = $l.status,
            output_tokens = $l.output_tokens,
            ttft_s = $l.ttft_s,
            e2e_s = $l.e2e_s,
            energy_j = $l.energy_j,
            "request"
        )
    };
}

/// Writes `l` at `level`.
pub(super) fn log(level: AccessLog, l: &AccessLine<'_>) {
    match level {
        AccessLog::Off => {}
        AccessLog::Info => line!(tracing::Level::INFO, l),
        AccessLog::Debug => line!(tracing::Level::DEBUG, l),
    }
}

//! The gateway's settings ([`GatewayConfig`]) and why it can fail to start or run ([`GatewayError`]).

use std::net::SocketAddr;
use std::sync::Arc;

use energyllm_core::PerfModel;

use super::metrics::Identity;
use crate::live::upstream::EngineKind;

/// Settings of the gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Which engine the upstream is (chooses how its `/metrics` is read).
    pub engine: EngineKind,
    /// The upstream's base URL, e.g. `http://127.0.0.1:8000`.
    pub upstream: String,
    /// Address to listen on. Default: 127.0.0.1:9000.
    pub listen: SocketAddr,
    /// Allow a non-loopback listen address. Default: false.
    pub allow_public: bool,
    /// Requests that may wait in the queue; more get 429. Default: 1024.
    pub max_queue: usize,
    /// Seconds to wait for the upstream's response headers. Default: 60.
    pub upstream_timeout_s: f64,
    /// Times a request is re-sent after a connection failure (safe: the upstream never saw it).
    /// Default: 2.
    pub connect_retries: u32,
    /// Seconds in-flight requests may take to finish after shutdown is asked for. Default: 30.
    pub drain_timeout_s: f64,
    /// Seconds between reads of the upstream's `/metrics` (KV usage for the observation).
    /// Default: 1.
    pub metrics_interval_s: f64,
    /// A bearer token clients must send (`Authorization: Bearer …`); `None` for none.
    pub api_key: Option<String>,
    /// Decide and report, but change no clock. Default: false.
    pub dry_run: bool,
    /// Seconds a client has to send a request's headers, from connecting or from the end of its
    /// previous request (slow-header clients are cut off). Default: 10.
    pub header_read_timeout_s: f64,
    /// Seconds a keep-alive connection may sit with no request in progress. Default: 60.
    pub idle_timeout_s: f64,
    /// Seconds the upstream may stay silent in the middle of an answer before the gateway ends
    /// it with an error. Default: 60.
    pub stream_idle_timeout_s: f64,
    /// Seconds a request may take from arrival to the end of its answer, queue included.
    /// Default: 900.
    pub request_timeout_s: f64,
    /// Client connections served at once; more are answered 503 and closed. Keep it below the
    /// process's open-file limit, which also holds one upstream connection per request in
    /// flight. Default: 512.
    pub max_connections: usize,
    /// Largest request body accepted, in bytes; larger ones get a JSON 413. Default: 8 MiB.
    pub max_body_bytes: usize,
    /// Seconds over which `energyllm_slo_attainment_ratio` is computed. Default: 300.
    pub slo_window_s: f64,
    /// What `/metrics` reports as the actuator, policy and GPU.
    pub identity: Identity,
    /// The level of the access log's line per request (target `energyllm::access`). Default:
    /// info.
    pub access_log: AccessLog,
    /// What the endpoint score needs beyond the gateway's own state; `None` exports no score.
    /// Default: none.
    pub score_model: Option<ScoreModel>,
    /// Where to answer HAProxy's agent check with a weight from the score (`drain` while
    /// draining); `None` for no agent. Default: none.
    pub agent_check: Option<SocketAddr>,
}

/// The instance's performance model and idle power, for [`energyllm_core::score`].
#[derive(Clone)]
pub struct ScoreModel {
    /// Iteration latency and power at a clock and batch.
    pub perf: Arc<dyn PerfModel>,
    /// Board power of the idle instance, in watts.
    pub idle_power_w: f64,
    /// Share of the SLO's budget a predicted latency may use and still count as slack (the
    /// cluster router's default is 0.4).
    pub slo_margin: f64,
}

impl std::fmt::Debug for ScoreModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreModel")
            .field("perf", &self.perf.name())
            .field("idle_power_w", &self.idle_power_w)
            .field("slo_margin", &self.slo_margin)
            .finish()
    }
}

/// The level of the access log's lines, or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLog {
    /// No access log.
    Off,
    /// At `info`.
    #[default]
    Info,
    /// At `debug`.
    Debug,
}

impl AccessLog {
    /// Every value, for help texts.
    pub const ALL: [AccessLog; 3] = [AccessLog::Off, AccessLog::Info, AccessLog::Debug];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AccessLog::Off => "off",
            AccessLog::Info => "info",
            AccessLog::Debug => "debug",
        }
    }
}

impl GatewayConfig {
    /// Defaults for an upstream of `engine` at `upstream`.
    pub fn new(engine: EngineKind, upstream: &str) -> Self {
        GatewayConfig {
            engine,
            upstream: upstream.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            allow_public: false,
            max_queue: 1024,
            upstream_timeout_s: 60.0,
            connect_retries: 2,
            drain_timeout_s: 30.0,
            metrics_interval_s: 1.0,
            api_key: None,
            dry_run: false,
            header_read_timeout_s: 10.0,
            idle_timeout_s: 60.0,
            stream_idle_timeout_s: 60.0,
            request_timeout_s: 900.0,
            max_connections: 512,
            max_body_bytes: 8 << 20,
            slo_window_s: 300.0,
            identity: Identity::default(),
            access_log: AccessLog::Info,
            score_model: None,
            agent_check: None,
        }
    }
}

/// Why the gateway could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A setting is out of range; the message names it.
    #[error("invalid gateway setting: {0}")]
    Config(String),
    /// The listen address is not loopback and that was not allowed.
    #[error("refusing to listen on {0}: not a loopback address; pass --public to serve other machines")]
    NotLoopback(SocketAddr),
    /// The listen socket could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The upstream URL is unusable.
    #[error(transparent)]
    Upstream(#[from] energyllm_core::EngineError),
    /// The actuator could not be set up.
    #[error("actuator: {0}")]
    Actuator(#[from] energyllm_core::ActuatorError),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

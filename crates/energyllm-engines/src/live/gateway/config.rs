//! The gateway's settings ([`GatewayConfig`]) and why it can fail to start or run ([`GatewayError`]).

use std::net::SocketAddr;

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

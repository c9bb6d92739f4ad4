//! The gateway: an OpenAI-compatible HTTP front that queues requests, admits at most the batch
//! cap to the upstream engine and runs the sans-IO [`Controller`] with tokio time.
//!
//! Three parts talk over channels:
//!
//! - **handlers** (axum): check the token, bound the queue (429 beyond it), announce the request
//!   to the controller task and wait for its go; then forward through the upstream
//!   [`tower::Service`] (a timeout layer around a reqwest call that retries only connection
//!   failures, the one case where the upstream cannot have seen the request) and stream the
//!   answer back event by event. Each admitted request holds an `InFlight` guard whose drop
//!   reports the end (completed, failed, or the client went away), so nothing admitted is lost
//!   and a slot is never leaked; dropping the upstream response cancels the upstream work.
//! - **the controller task**: owns the [`Controller`], maps `tokio::time::Instant` onto its
//!   `Timestamp` (nanoseconds since the gateway started), feeds it arrivals, first tokens,
//!   completions and ticks, and carries out its commands: `Dispatch` releases waiting handlers
//!   (this is where the batch cap becomes backpressure), `SetFrequency` goes to the actuator.
//!   It also splits measured energy over the requests in flight.
//! - **the actuator thread** ([`super::actuate`]): clock changes and power readings, off the
//!   request path, inside a `ClockGuard`.
//!
//! Shutdown (SIGINT/SIGTERM in `energyllm serve`, or [`GatewayHandle::shutdown`]): the gateway
//! keeps accepting connections but answers new requests 503 (and `/ready` 503, so load
//! balancers look elsewhere) while those queued and in flight finish, within `drain_timeout_s`;
//! then it closes its connections and the actuator thread restores the clocks.
//!
//! One job a file: `config.rs` (the settings and the errors), `server.rs` (the accept loop and
//! the connection limits), `access.rs` (the access log), `agent.rs` (HAProxy's agent check), `body.rs` (what is read from a
//! request body), `metrics.rs` (the counters and gauges, and the `/metrics` page),
//! `histogram.rs` (latency histograms), `handlers.rs` (the axum handlers and the pass-through of
//! answers), `upstream_service.rs` (the tower service for the upstream call), `control.rs` (the
//! controller task), `energy.rs` (the split of measured energy over the requests in flight) and
//! `poller.rs` (the scraper of the upstream's `/metrics` and `/slots`). This file holds the entry
//! points: [`start`], [`GatewayHandle`] and [`shutdown_signal`].

mod access;
mod agent;
mod body;
mod config;
mod control;
mod energy;
mod handlers;
mod histogram;
mod metrics;
mod poller;
mod server;
mod upstream_service;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use energyllm_core::Controller;

use super::actuate::{ActuatorReport, ActuatorSetup, ActuatorThread};
use super::upstream::parse_base_url;
use control::run_controller;
use handlers::Shared;
use poller::poll_upstream_metrics;
use upstream_service::Upstream;

pub use body::{parse_request_body, RequestBody};
pub use config::{AccessLog, GatewayConfig, GatewayError, ScoreModel};
pub use histogram::Histogram as LatencyHistogram;
pub use metrics::{GatewayMetrics, Identity, UpstreamLatencyGauges, UpstreamTotals};

/// What the gateway did, returned when it stops.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayReport {
    /// Requests answered.
    pub completed: u64,
    /// Admitted requests that ended with an error.
    pub failed: u64,
    /// Admitted requests whose client left.
    pub cancelled: u64,
    /// Requests still in flight when the drain timed out (their connections were closed).
    pub abandoned: usize,
    /// How the actuator ended.
    pub actuator: ActuatorReport,
}

/// A running gateway.
pub struct GatewayHandle {
    addr: SocketAddr,
    metrics: Arc<GatewayMetrics>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<GatewayReport, GatewayError>>,
}

impl GatewayHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Its counters.
    pub fn metrics(&self) -> &Arc<GatewayMetrics> {
        &self.metrics
    }
    /// Asks it to drain and stop (idempotent).
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
    /// Waits for it to stop.
    pub async fn join(self) -> Result<GatewayReport, GatewayError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(GatewayError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Starts a gateway on the current tokio runtime.
pub async fn start(
    config: GatewayConfig,
    controller: Controller,
    actuator: ActuatorSetup,
) -> Result<GatewayHandle, GatewayError> {
    let check = |ok: bool, m: &str| if ok { Ok(()) } else { Err(GatewayError::Config(m.to_owned())) };
    check(config.max_queue >= 1, "max_queue must be ≥ 1")?;
    check(config.max_connections >= 1, "max_connections must be ≥ 1")?;
    check(config.max_body_bytes >= 1, "max_body_bytes must be ≥ 1")?;
    for (v, name) in [
        (config.upstream_timeout_s, "upstream_timeout_s"),
        (config.drain_timeout_s, "drain_timeout_s"),
        (config.metrics_interval_s, "metrics_interval_s"),
        (config.header_read_timeout_s, "header_read_timeout_s"),
        (config.idle_timeout_s, "idle_timeout_s"),
        (config.stream_idle_timeout_s, "stream_idle_timeout_s"),
        (config.request_timeout_s, "request_timeout_s"),
        (config.slo_window_s, "slo_window_s"),
    ] {
        check(v.is_finite() && v > 0.0, &format!("{name} must be a positive number of seconds, got {v}"))?;
    }
    if !config.allow_public && !config.listen.ip().is_loopback() {
        return Err(GatewayError::NotLoopback(config.listen));
    }
    let base = parse_base_url(&config.upstream)?;
    let client = config.engine.http_client(None)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| GatewayError::Bind { addr: config.listen, source })?;

    let actuator = ActuatorThread::start(actuator)?;
    if !config.dry_run {
        actuator.set_frequency(controller.freq());
    }
    let metrics = Arc::new(GatewayMetrics::default());
    metrics.batch_cap.store(u64::from(controller.batch_cap()), Ordering::Relaxed);
    metrics.decided_clock_mhz.store(u64::from(controller.freq().0), Ordering::Relaxed);

    let upstream = tower::ServiceBuilder::new()
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs_f64(config.upstream_timeout_s)))
        .service(Upstream { client: client.clone(), base: base.clone(), retries: config.connect_retries });
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        config: config.clone(),
        tx: tx.clone(),
        upstream,
        metrics: Arc::clone(&metrics),
        readings: Arc::clone(actuator.readings()),
        next_id: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        client: client.clone(),
        base: base.clone(),
    });
    let app = handlers::router(Arc::clone(&shared));

    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let controller_task = tokio::spawn(run_controller(
        controller,
        tx.clone(),
        rx,
        stop_rx,
        actuator,
        Arc::clone(&metrics),
        config.clone(),
    ));
    let handle_metrics = Arc::clone(&metrics);
    let poller = tokio::spawn(poll_upstream_metrics(
        client,
        base,
        config.engine,
        tx,
        Arc::clone(&metrics),
        config.metrics_interval_s,
    ));

    let limits = server::Limits {
        header_read: Duration::from_secs_f64(config.header_read_timeout_s),
        idle: Duration::from_secs_f64(config.idle_timeout_s),
        max_connections: config.max_connections,
    };
    let agent = match config.agent_check {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|source| GatewayError::Bind { addr: at, source })?;
            Some(tokio::spawn(agent::serve_agent(l, Arc::clone(&shared))))
        }
        None => None,
    };
    let (stop_serving, serving) = watch::channel(false);
    // After the drain, connections get a moment to finish writing before they are closed.
    let grace = Duration::from_secs(1);
    let server = tokio::spawn(server::serve(listener, app, limits, Arc::clone(&metrics), serving, grace));

    let task = tokio::spawn(async move {
        // A dropped handle counts as a shutdown request too.
        let _ = shutdown_rx.await;
        shared.draining.store(true, Ordering::Relaxed);
        let drain = Duration::from_secs_f64(shared.config.drain_timeout_s);
        let left = || metrics.in_flight.load(Ordering::Relaxed) + metrics.queued.load(Ordering::Relaxed);
        tracing::info!(requests_left = left(), drain_timeout_s = drain.as_secs_f64(), "draining");
        let deadline = tokio::time::Instant::now() + drain;
        let abandoned = loop {
            let n = left();
            if n == 0 || tokio::time::Instant::now() >= deadline {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if abandoned > 0 {
            tracing::warn!(abandoned, "the drain timed out; closing the connections of the requests left");
        }
        let _ = stop_serving.send(true);
        if let Err(e) = server.await {
            return Err(GatewayError::Serve(std::io::Error::other(e.to_string())));
        }
        poller.abort();
        if let Some(a) = agent {
            a.abort();
        }
        // Drained (or out of time): stop the controller task, which stops the actuator thread,
        // which restores the clocks. Connections still open after a timed-out drain were closed,
        // so their requests failed.
        drop(shared);
        let _ = stop_tx.send(());
        let actuator_report = match controller_task.await {
            Ok(r) => r,
            Err(_) => ActuatorReport { clocks_restored: false, last_restore: None },
        };
        Ok(GatewayReport {
            completed: metrics.completed.load(Ordering::Relaxed),
            failed: metrics.failed.load(Ordering::Relaxed),
            cancelled: metrics.cancelled.load(Ordering::Relaxed),
            abandoned,
            actuator: actuator_report,
        })
    });
    Ok(GatewayHandle { addr, metrics: handle_metrics, shutdown: Some(shutdown_tx), task })
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut i), Ok(mut t)) => {
                tokio::select! {
                    _ = i.recv() => {}
                    _ = t.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! The gateway: an OpenAI-compatible HTTP front that queues requests, admits at most the batch
//! cap to the upstream engine and runs the sans-IO [`Controller`] with tokio time.
//!
//! Three parts talk over channels:
//!
//! - **handlers** (axum): check the token, bound the queue (429 beyond it), announce the request
//!   to the controller task and wait for its go; then forward through the upstream
//!   [`tower::Service`] (a timeout layer around a reqwest call that retries only connection
//!   failures, the one case where the upstream cannot have seen the request) and stream the
//!   answer back event by event. Each admitted request holds an [`InFlight`] guard whose drop
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
//! Shutdown (SIGINT/SIGTERM in `energyllm serve`, or [`GatewayHandle::shutdown`]): new requests
//! get 503, in-flight ones drain within `drain_timeout_s`, then the actuator thread restores the
//! clocks.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower::{Service, ServiceExt as _};

use energyllm_core::{Command, Controller, Event, Request, RequestId, Telemetry, Timestamp};

use super::actuate::{ActuatorReport, ActuatorSetup, ActuatorThread, AtomicF64};
use super::prom::{Histogram, Metrics};
use super::sse::SseDecoder;
use super::upstream::{
    fetch_slots, join_url, parse_base_url, EngineKind, StreamAccumulator, UpstreamLatency,
};

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

/// Counters and gauges the gateway exports on `/metrics`.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    /// Requests waiting for admission.
    pub queued: AtomicUsize,
    /// Requests admitted and not yet ended.
    pub in_flight: AtomicUsize,
    /// The most requests ever in flight at once (for checking the cap).
    pub max_in_flight: AtomicUsize,
    /// The batch cap in force.
    pub batch_cap: AtomicU64,
    /// The clock the controller decided, in MHz.
    pub decided_clock_mhz: AtomicU64,
    /// Decisions taken.
    pub decisions: AtomicU64,
    /// Clock changes commanded.
    pub freq_switches: AtomicU64,
    /// Decisions the policy's safety shield overrode.
    pub shield_overrides: AtomicU64,
    /// Requests answered successfully.
    pub completed: AtomicU64,
    /// Completed requests within the SLO.
    pub slo_met: AtomicU64,
    /// Admitted requests that ended in an upstream error.
    pub failed: AtomicU64,
    /// Admitted requests whose client went away first.
    pub cancelled: AtomicU64,
    /// Requests turned away because the queue was full.
    pub rejected_queue_full: AtomicU64,
    /// Requests turned away while draining.
    pub rejected_draining: AtomicU64,
    /// Energy measured since start, in joules.
    pub energy_total_j: AtomicF64,
    /// Energy attributed to finished requests, in joules.
    pub request_energy_j: AtomicF64,
    /// Requests the upstream reports running (from its `/metrics`).
    pub upstream_running: AtomicU64,
    /// The upstream's own latency over the last window between two scrapes that saw requests
    /// (NaN until one has): time to first token and time between tokens, mean, p50 and p99, in
    /// seconds.
    pub upstream_latency_s: UpstreamLatencyGauges,
    /// The upstream's own totals at the last scrape (NaN until scraped, and where it exports
    /// none): prompt tokens, generated tokens, preemptions.
    pub upstream_totals: UpstreamTotals,
}

/// See [`GatewayMetrics::upstream_totals`].
#[derive(Debug)]
pub struct UpstreamTotals(pub [AtomicF64; 3]);

/// Three gauges that read "not known" (NaN, left off the page) until set.
fn unknown3() -> [AtomicF64; 3] {
    [AtomicF64::new(f64::NAN), AtomicF64::new(f64::NAN), AtomicF64::new(f64::NAN)]
}

impl Default for UpstreamTotals {
    fn default() -> Self {
        UpstreamTotals(unknown3())
    }
}

/// Gauges of the upstream's own latency (see [`GatewayMetrics::upstream_latency_s`]).
#[derive(Debug)]
pub struct UpstreamLatencyGauges {
    /// Time to first token: mean, p50, p99.
    pub ttft: [AtomicF64; 3],
    /// Time between output tokens: mean, p50, p99.
    pub itl: [AtomicF64; 3],
}

impl Default for UpstreamLatencyGauges {
    fn default() -> Self {
        UpstreamLatencyGauges { ttft: unknown3(), itl: unknown3() }
    }
}

/// The statistics behind each of [`UpstreamLatencyGauges`]' three values.
const LATENCY_STATS: [&str; 3] = ["mean", "p50", "p99"];

fn store_window(gauges: &[AtomicF64; 3], window: &Histogram) {
    if window.count <= 0.0 {
        return;
    }
    let values = [window.mean(), window.quantile(0.5), window.quantile(0.99)];
    for (g, v) in gauges.iter().zip(values) {
        g.set(v.unwrap_or(f64::NAN));
    }
}

impl GatewayMetrics {
    fn render(&self, clock_mhz: u64, power_w: f64, dry_run: bool) -> String {
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let u = |v: &AtomicUsize| v.load(Ordering::Relaxed);
        let done = g(&self.completed);
        let slo = if done == 0 { 1.0 } else { g(&self.slo_met) as f64 / done as f64 };
        let mut s = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        };
        line(
            "energyllm_queue_length",
            "gauge",
            "Requests waiting for admission.",
            u(&self.queued).to_string(),
        );
        line(
            "energyllm_in_flight",
            "gauge",
            "Requests admitted to the upstream.",
            u(&self.in_flight).to_string(),
        );
        line("energyllm_batch_cap", "gauge", "Batch cap in force.", g(&self.batch_cap).to_string());
        line("energyllm_clock_mhz", "gauge", "GPU clock the actuator reports.", clock_mhz.to_string());
        line(
            "energyllm_decided_clock_mhz",
            "gauge",
            "GPU clock the policy chose.",
            g(&self.decided_clock_mhz).to_string(),
        );
        line(
            "energyllm_dry_run",
            "gauge",
            "1 when clocks are decided but not applied.",
            u8::from(dry_run).to_string(),
        );
        line("energyllm_power_watts", "gauge", "Board power, last sample.", power_w.to_string());
        line("energyllm_decisions_total", "counter", "Policy decisions.", g(&self.decisions).to_string());
        line(
            "energyllm_shield_overrides_total",
            "counter",
            "Decisions where the safety shield raised the policy's clock.",
            g(&self.shield_overrides).to_string(),
        );
        line(
            "energyllm_freq_switches_total",
            "counter",
            "Clock changes commanded.",
            g(&self.freq_switches).to_string(),
        );
        line(
            "energyllm_energy_joules_total",
            "counter",
            "GPU energy since start.",
            self.energy_total_j.get().to_string(),
        );
        line(
            "energyllm_request_energy_joules_total",
            "counter",
            "GPU energy attributed to finished requests.",
            self.request_energy_j.get().to_string(),
        );
        line("energyllm_requests_completed_total", "counter", "Requests answered.", done.to_string());
        line(
            "energyllm_requests_failed_total",
            "counter",
            "Admitted requests that failed upstream.",
            g(&self.failed).to_string(),
        );
        line(
            "energyllm_requests_cancelled_total",
            "counter",
            "Admitted requests whose client left.",
            g(&self.cancelled).to_string(),
        );
        line(
            "energyllm_requests_rejected_queue_full_total",
            "counter",
            "Requests refused with 429.",
            g(&self.rejected_queue_full).to_string(),
        );
        line(
            "energyllm_slo_attainment_ratio",
            "gauge",
            "Completed requests within the SLO.",
            slo.to_string(),
        );
        line(
            "energyllm_upstream_running",
            "gauge",
            "Requests the upstream reports running.",
            g(&self.upstream_running).to_string(),
        );
        for ((name, help), v) in [
            ("energyllm_upstream_prompt_tokens_total", "Prompt tokens the upstream reports processed."),
            ("energyllm_upstream_generated_tokens_total", "Tokens the upstream reports generated."),
            ("energyllm_upstream_preemptions_total", "Requests the upstream reports preempted."),
        ]
        .into_iter()
        .zip(&self.upstream_totals.0)
        {
            let v = v.get();
            if v.is_finite() {
                line(name, "counter", help, v.to_string());
            }
        }
        for (name, what, gauges) in [
            ("energyllm_upstream_ttft_seconds", "time to first token", &self.upstream_latency_s.ttft),
            ("energyllm_upstream_itl_seconds", "time between output tokens", &self.upstream_latency_s.itl),
        ] {
            let values: Vec<(&str, f64)> = LATENCY_STATS
                .iter()
                .zip(gauges)
                .map(|(k, v)| (*k, v.get()))
                .filter(|(_, v)| v.is_finite())
                .collect();
            if values.is_empty() {
                continue;
            }
            s.push_str(&format!(
                "# HELP {name} The upstream's own {what} over its last scrape window with requests.\n# TYPE {name} gauge\n"
            ));
            for (stat, v) in values {
                s.push_str(&format!("{name}{{stat=\"{stat}\"}} {v}\n"));
            }
        }
        s
    }
}

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

enum Msg {
    Arrival { req: Request, go: oneshot::Sender<Arc<AtomicF64>> },
    FirstToken(RequestId),
    Done { id: RequestId, output_tokens: Option<u32> },
    Telemetry { kv_usage_frac: Option<f64> },
}

/// The upstream call as a tower service: a POST of a JSON body to a path.
#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    base: reqwest::Url,
    retries: u32,
}

struct UpstreamCall {
    path: &'static str,
    body: Bytes,
}

#[derive(Debug)]
enum UpstreamFailure {
    Connect(String),
    Other(String),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<UpstreamCall> for Upstream {
    type Response = reqwest::Response;
    type Error = BoxError;
    type Future = energyllm_core::BoxFuture<'static, Result<reqwest::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Admission is the controller's job (Dispatch); by the time a call gets here it may go.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: UpstreamCall) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let url = join_url(&this.base, call.path);
            let mut attempt = 0;
            loop {
                let sent = this
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(call.body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) => return Ok(r),
                    Err(e) if e.is_connect() && attempt < this.retries => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                    Err(e) if e.is_connect() => {
                        return Err(Box::new(UpstreamError(UpstreamFailure::Connect(format!(
                            "cannot connect to the upstream at {url} after {} attempts: {e}",
                            attempt + 1
                        )))) as BoxError)
                    }
                    Err(e) => {
                        let e = super::upstream::error_chain(&e);
                        return Err(Box::new(UpstreamError(UpstreamFailure::Other(format!("{url}: {e}")))));
                    }
                }
            }
        })
    }
}

#[derive(Debug)]
struct UpstreamError(UpstreamFailure);
impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            UpstreamFailure::Connect(m) | UpstreamFailure::Other(m) => f.write_str(m),
        }
    }
}
impl std::error::Error for UpstreamError {}

/// The upstream stack: a timeout layer around the call (a metrics layer would go here too).
type UpstreamService = tower::timeout::Timeout<Upstream>;

struct Shared {
    config: GatewayConfig,
    tx: mpsc::UnboundedSender<Msg>,
    upstream: UpstreamService,
    metrics: Arc<GatewayMetrics>,
    readings: Arc<super::actuate::Readings>,
    next_id: AtomicU64,
    draining: AtomicBool,
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
    for (v, name) in [
        (config.upstream_timeout_s, "upstream_timeout_s"),
        (config.drain_timeout_s, "drain_timeout_s"),
        (config.metrics_interval_s, "metrics_interval_s"),
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
    });
    let app = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/metrics", get(metrics_page))
        .route("/health", get(health))
        .with_state(Arc::clone(&shared));

    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let controller_task =
        tokio::spawn(run_controller(controller, rx, stop_rx, actuator, Arc::clone(&metrics), config.clone()));
    let handle_metrics = Arc::clone(&metrics);
    let poller = tokio::spawn(poll_upstream_metrics(
        client,
        base,
        config.engine,
        tx,
        Arc::clone(&metrics),
        config.metrics_interval_s,
    ));

    let task = tokio::spawn(async move {
        let (drain_tx, drain_rx) = oneshot::channel::<()>();
        let s = Arc::clone(&shared);
        let signal = async move {
            let _ = shutdown_rx.await;
            s.draining.store(true, Ordering::Relaxed);
            let _ = drain_tx.send(());
        };
        let server = axum::serve(listener, app).with_graceful_shutdown(signal);
        let mut server = Box::pin(server.into_future());
        let served = tokio::select! {
            r = &mut server => Some(r),
            _ = drain_rx => {
                let drain = Duration::from_secs_f64(shared.config.drain_timeout_s);
                tokio::time::timeout(drain, &mut server).await.ok()
            }
        };
        let abandoned = match served {
            Some(Err(e)) => return Err(GatewayError::Serve(e)),
            Some(Ok(())) => 0,
            None => metrics.in_flight.load(Ordering::Relaxed) + metrics.queued.load(Ordering::Relaxed),
        };
        poller.abort();
        // Drained (or out of time): stop the controller task, which stops the actuator thread,
        // which restores the clocks. Connections still open after a timed-out drain see their
        // requests fail.
        drop(server);
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

// ---- the controller task ----

struct Tracked {
    energy: Arc<AtomicF64>,
    arrival: Instant,
}

async fn run_controller(
    mut controller: Controller,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    mut stop: oneshot::Receiver<()>,
    actuator: ActuatorThread,
    metrics: Arc<GatewayMetrics>,
    config: GatewayConfig,
) -> ActuatorReport {
    let epoch = Instant::now();
    let stamp = |t: Instant| {
        Timestamp::from_nanos(t.duration_since(epoch).as_nanos().min(u128::from(u64::MAX)) as u64)
    };
    let slo = controller.config().slo;
    let mut waiting: HashMap<RequestId, (oneshot::Sender<Arc<AtomicF64>>, Instant)> = HashMap::new();
    let mut in_flight: HashMap<RequestId, Tracked> = HashMap::new();
    let readings = Arc::clone(actuator.readings());
    let mut book = EnergyBook { last_t: Instant::now(), last_counter_j: readings.energy_j.get() };
    let mut decisions = controller.stats().decisions;
    // Due at time zero: the first decision.
    controller.handle(Timestamp::ZERO, Event::Tick);
    loop {
        let now = Instant::now();
        account_energy(&mut book, now, &in_flight, &readings, &metrics);
        // Carry out the commands.
        while let Some(cmd) = controller.poll_command() {
            match cmd {
                Command::Dispatch(reqs) => {
                    for r in reqs {
                        let energy = Arc::new(AtomicF64::new(0.0));
                        let (admitted, arrival) = match waiting.remove(&r.id) {
                            Some((go, arrival)) => (go.send(Arc::clone(&energy)).is_ok(), arrival),
                            None => (false, now),
                        };
                        metrics.queued.fetch_sub(1, Ordering::Relaxed);
                        if admitted {
                            in_flight.insert(r.id, Tracked { energy, arrival });
                        } else {
                            // The client left while queued: end it at once so the slot frees.
                            metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                            controller.handle(stamp(now), Event::Rejected(r.id));
                        }
                    }
                    let n = in_flight.len();
                    readings.running.store(n, Ordering::Relaxed);
                    metrics.in_flight.store(n, Ordering::Relaxed);
                    metrics.max_in_flight.fetch_max(n, Ordering::Relaxed);
                }
                Command::SetFrequency(f) => {
                    metrics.decided_clock_mhz.store(u64::from(f.0), Ordering::Relaxed);
                    metrics.freq_switches.fetch_add(1, Ordering::Relaxed);
                    if !config.dry_run {
                        actuator.set_frequency(f);
                    }
                }
                Command::SetBatchCap(n) => metrics.batch_cap.store(u64::from(n), Ordering::Relaxed),
            }
        }
        let d = controller.stats().decisions;
        if d != decisions {
            decisions = d;
            metrics.decisions.store(d, Ordering::Relaxed);
            metrics.shield_overrides.store(controller.stats().policy_overrides, Ordering::Relaxed);
            actuator.decided();
        }
        let deadline = controller.poll_timeout().map(|t| epoch + Duration::from_nanos(t.as_nanos()));
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => Some(m),
                None => break,
            },
            _ = sleep_until_opt(deadline) => None,
            _ = &mut stop => break,
        };
        let now = Instant::now();
        let ts = stamp(now);
        // Book the energy up to this instant before the event changes who is in flight.
        account_energy(&mut book, now, &in_flight, &readings, &metrics);
        match msg {
            None => controller.handle(ts, Event::Tick),
            Some(Msg::Arrival { req, go }) => {
                waiting.insert(req.id, (go, now));
                controller.handle(ts, Event::Arrival(Request { arrival: ts, ..req }));
            }
            Some(Msg::FirstToken(id)) => controller.handle(ts, Event::FirstToken(id)),
            Some(Msg::Done { id, output_tokens }) => {
                if let Some(t) = in_flight.remove(&id) {
                    metrics.request_energy_j.add(t.energy.get());
                    if let Some(out) = output_tokens {
                        let e2e_s = now.duration_since(t.arrival).as_secs_f64();
                        if e2e_s <= slo.e2e_s {
                            metrics.slo_met.fetch_add(1, Ordering::Relaxed);
                        }
                        controller.handle(ts, Event::Completed { id, output_tokens: out });
                    } else {
                        controller.handle(ts, Event::Rejected(id));
                    }
                }
                let n = in_flight.len();
                readings.running.store(n, Ordering::Relaxed);
                metrics.in_flight.store(n, Ordering::Relaxed);
            }
            Some(Msg::Telemetry { kv_usage_frac }) => {
                let power = readings.power_w.get();
                let t = Telemetry { power_w: Some(power).filter(|p| p.is_finite()), kv_usage_frac };
                controller.handle(ts, Event::Telemetry(t));
            }
        }
    }
    actuator.stop()
}

/// Where the energy bookkeeping stands.
struct EnergyBook {
    last_t: Instant,
    last_counter_j: f64,
}

/// Books the energy since the last step: the total from the device's counter when it has one
/// (else power × time), and each in-flight request an even share of power × time. Power is
/// sampled every 100 ms and the counter may move in coarser steps, so attribution integrates the
/// latest power reading over exact event times rather than splitting counter jumps.
fn account_energy(
    book: &mut EnergyBook,
    now: Instant,
    in_flight: &HashMap<RequestId, Tracked>,
    readings: &super::actuate::Readings,
    metrics: &GatewayMetrics,
) {
    let dt = now.saturating_duration_since(book.last_t).as_secs_f64();
    book.last_t = now;
    let power = readings.power_w.get();
    let de = if power.is_finite() && power > 0.0 { power * dt } else { 0.0 };
    let counter = readings.energy_j.get();
    if counter.is_finite() && book.last_counter_j.is_finite() {
        metrics.energy_total_j.add((counter - book.last_counter_j).max(0.0));
    } else {
        metrics.energy_total_j.add(de);
    }
    book.last_counter_j = counter;
    if !in_flight.is_empty() {
        let share = de / in_flight.len() as f64;
        for t in in_flight.values() {
            t.energy.add(share);
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn poll_upstream_metrics(
    client: reqwest::Client,
    base: reqwest::Url,
    engine: EngineKind,
    tx: mpsc::UnboundedSender<Msg>,
    metrics: Arc<GatewayMetrics>,
    interval_s: f64,
) {
    let url = join_url(&base, "metrics");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(interval_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = UpstreamLatency::default();
    // llama.cpp's metrics carry no KV-cache use; its `/slots` does, unless turned off.
    let mut use_slots = engine == EngineKind::Llamacpp;
    loop {
        tick.tick().await;
        let page = match client.get(&url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) if r.status().is_success() => r.text().await.ok(),
            _ => None,
        };
        let parsed = page.and_then(|p| Metrics::parse(&p).ok());
        let mut state = parsed.as_ref().and_then(|m| engine.state_from_metrics(m).ok());
        if let Some(m) = &parsed {
            let latency = engine.latency_from_metrics(m);
            // The first scrape is only a baseline: the upstream's lifetime is not a window.
            for (now, before, gauges) in [
                (&latency.ttft_s, &last.ttft_s, &metrics.upstream_latency_s.ttft),
                (&latency.itl_s, &last.itl_s, &metrics.upstream_latency_s.itl),
            ] {
                if let Some(window) = now.as_ref().zip(before.as_ref()).and_then(|(h, b)| h.since(b)) {
                    store_window(gauges, &window);
                }
            }
            last = latency;
            let c = engine.counters_from_metrics(m);
            for (gauge, v) in
                metrics.upstream_totals.0.iter().zip([c.prompt_tokens, c.generated_tokens, c.preemptions])
            {
                gauge.set(v.unwrap_or(f64::NAN));
            }
            use_slots &= m.sum("llamacpp:kv_cache_usage_ratio").is_none();
        }
        if let (true, Some(s)) = (use_slots, state.as_mut()) {
            match fetch_slots(&client, &base).await {
                Ok(slots) => s.kv_usage_frac = slots.kv_usage_frac(),
                // No endpoint (404, or 501 under --no-slots), or not llama.cpp's format: stop
                // asking. A failure that may pass (5xx, unreachable) is retried next time.
                Err(energyllm_core::EngineError::Protocol(_)) => use_slots = false,
                Err(_) => {}
            }
        }
        if let Some(s) = state {
            metrics.upstream_running.store(u64::from(s.running), Ordering::Relaxed);
        }
        if tx.send(Msg::Telemetry { kv_usage_frac: state.map(|s| s.kv_usage_frac) }).is_err() {
            return;
        }
    }
}

// ---- handlers ----

/// Reports the end of an admitted request exactly once; if dropped unreported (client gone,
/// task cancelled), the request counts as cancelled.
struct InFlight {
    id: RequestId,
    tx: mpsc::UnboundedSender<Msg>,
    metrics: Arc<GatewayMetrics>,
    first_token_sent: bool,
    ended: bool,
}

impl InFlight {
    fn first_token(&mut self) {
        if !self.first_token_sent {
            self.first_token_sent = true;
            let _ = self.tx.send(Msg::FirstToken(self.id));
        }
    }
    fn end(&mut self, output_tokens: Option<u32>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let counter = if output_tokens.is_some() { &self.metrics.completed } else { &self.metrics.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Msg::Done { id: self.id, output_tokens });
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.ended {
            self.ended = true;
            self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            let _ = self.tx.send(Msg::Done { id: self.id, output_tokens: None });
        }
    }
}

/// Takes a queue place; gives it back if the request leaves before dispatch.
struct QueuePlace {
    metrics: Arc<GatewayMetrics>,
    armed: bool,
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        // Once announced to the controller, the controller task gives the place back at dispatch.
        if self.armed {
            self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "code": status.as_u16()}});
    (status, axum::Json(body)).into_response()
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    if s.draining.load(Ordering::Relaxed) {
        error_response(StatusCode::SERVICE_UNAVAILABLE, "draining", "the gateway is shutting down")
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics_page(State(s): State<Arc<Shared>>) -> Response {
    let r = &s.readings;
    let page = s.metrics.render(r.clock_mhz.load(Ordering::Relaxed), r.power_w.get(), s.config.dry_run);
    ([("content-type", "text/plain; version=0.0.4")], page).into_response()
}

async fn completions(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    proxy(s, headers, body, "v1/completions").await
}

async fn chat_completions(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    proxy(s, headers, body, "v1/chat/completions").await
}

/// Prompt tokens estimated from the text (about 4 characters a token), for the observation.
fn estimate_input_tokens(v: &Value) -> u32 {
    let mut chars = 0usize;
    match v.get("prompt") {
        Some(Value::String(p)) => chars += p.len(),
        Some(Value::Array(a)) => chars += a.iter().map(|x| x.as_str().map_or(4, str::len)).sum::<usize>(),
        _ => {}
    }
    if let Some(msgs) = v.get("messages").and_then(Value::as_array) {
        chars +=
            msgs.iter().filter_map(|m| m.get("content").and_then(Value::as_str)).map(str::len).sum::<usize>();
    }
    u32::try_from(chars.div_ceil(4).max(1)).unwrap_or(u32::MAX)
}

async fn proxy(s: Arc<Shared>, headers: HeaderMap, body: Bytes, path: &'static str) -> Response {
    if let Some(key) = &s.config.api_key {
        let ok = headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| t == key);
        if !ok {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <api key>",
            );
        }
    }
    if s.draining.load(Ordering::Relaxed) {
        s.metrics.rejected_draining.fetch_add(1, Ordering::Relaxed);
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "draining", "the gateway is shutting down");
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a JSON object",
            )
        }
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("the body is not JSON: {e}"),
            )
        }
    };
    let stream = parsed.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let output_tokens = parsed
        .get("max_tokens")
        .or_else(|| parsed.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .map_or(256, |n| n.min(u64::from(u32::MAX)) as u32);

    // Bounded queue: take a place or refuse.
    let prev = s.metrics.queued.fetch_add(1, Ordering::Relaxed);
    let mut place = QueuePlace { metrics: Arc::clone(&s.metrics), armed: true };
    if prev >= s.config.max_queue {
        drop(place);
        s.metrics.rejected_queue_full.fetch_add(1, Ordering::Relaxed);
        return error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            &format!("the gateway queue is full ({} waiting); retry later", s.config.max_queue),
        );
    }
    let id = RequestId(s.next_id.fetch_add(1, Ordering::Relaxed));
    let req =
        Request { id, arrival: Timestamp::ZERO, input_tokens: estimate_input_tokens(&parsed), output_tokens };
    let (go_tx, go_rx) = oneshot::channel();
    if s.tx.send(Msg::Arrival { req, go: go_tx }).is_err() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "draining", "the gateway is shutting down");
    }
    place.armed = false;
    let energy = match go_rx.await {
        Ok(e) => e,
        Err(_) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "the gateway is shutting down",
            )
        }
    };
    let mut guard = InFlight {
        id,
        tx: s.tx.clone(),
        metrics: Arc::clone(&s.metrics),
        first_token_sent: false,
        ended: false,
    };

    let call = UpstreamCall { path, body };
    let resp = match s.upstream.clone().oneshot(call).await {
        Ok(r) => r,
        Err(e) => {
            guard.end(None);
            return if e.is::<tower::timeout::error::Elapsed>() {
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    &format!("the upstream did not answer within {} s", s.config.upstream_timeout_s),
                )
            } else {
                error_response(StatusCode::BAD_GATEWAY, "upstream_unavailable", &e.to_string())
            };
        }
    };
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        guard.end(None);
        let snippet: String = text.chars().take(500).collect();
        if status.is_client_error() {
            // The client's mistake (unknown model, bad parameter): pass it through as is.
            let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_REQUEST);
            return (code, [("content-type", "application/json")], snippet).into_response();
        }
        let (code, kind) = if status.as_u16() == 503 {
            (StatusCode::SERVICE_UNAVAILABLE, "upstream_overloaded")
        } else {
            (StatusCode::BAD_GATEWAY, "upstream_error")
        };
        return error_response(code, kind, &format!("the upstream answered {status}: {snippet}"));
    }
    if stream {
        stream_through(resp, guard, energy, s.config.engine)
    } else {
        plain_through(resp, guard, energy, s.config.engine).await
    }
}

async fn plain_through(
    resp: reqwest::Response,
    mut guard: InFlight,
    energy: Arc<AtomicF64>,
    kind: EngineKind,
) -> Response {
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            guard.end(None);
            return error_response(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                &format!("reading the upstream answer: {e}"),
            );
        }
    };
    guard.first_token();
    let mut v: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            guard.end(None);
            return error_response(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                &format!("the upstream answer is not JSON: {e}"),
            );
        }
    };
    let tokens = super::upstream::parse_plain(kind, &v).map(|c| c.output_tokens).unwrap_or(0);
    guard.end(Some(tokens));
    let joules = energy.get();
    if let Some(u) = v.get_mut("usage").and_then(Value::as_object_mut) {
        u.insert("energy_joules".into(), json!(joules));
    }
    let mut r = axum::Json(v).into_response();
    if let Ok(h) = HeaderValue::from_str(&format!("{joules:.6}")) {
        r.headers_mut().insert("x-energy-joules", h);
    }
    r
}

/// Passes the upstream's events through one by one; notes the first token, counts tokens,
/// adds `energy_joules` to a `usage` object, and ends the request when the stream ends.
fn stream_through(
    resp: reqwest::Response,
    guard: InFlight,
    energy: Arc<AtomicF64>,
    kind: EngineKind,
) -> Response {
    struct St {
        upstream: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
        decoder: SseDecoder,
        acc: StreamAccumulator,
        guard: InFlight,
        energy: Arc<AtomicF64>,
        finished: bool,
    }
    let st = St {
        upstream: resp.bytes_stream().boxed(),
        decoder: SseDecoder::new(),
        acc: StreamAccumulator::new(kind),
        guard,
        energy,
        finished: false,
    };
    let body = futures_util::stream::unfold(st, |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            let (events, end, error) = match st.upstream.next().await {
                Some(Ok(chunk)) => match st.decoder.push(&chunk) {
                    Ok(evs) => (evs, false, None),
                    Err(e) => (Vec::new(), true, Some(e.to_string())),
                },
                Some(Err(e)) => (Vec::new(), true, Some(format!("the upstream stream broke: {e}"))),
                None => match st.decoder.finish() {
                    Ok(ev) => (ev.into_iter().collect(), true, None),
                    Err(e) => (Vec::new(), true, Some(e.to_string())),
                },
            };
            let mut out = String::new();
            let mut error = error;
            for ev in events {
                let mut data = ev.data;
                match st.acc.event(&data, 0.0) {
                    Ok(true) => st.guard.first_token(),
                    Ok(false) => {}
                    Err(m) => {
                        error.get_or_insert(m);
                    }
                }
                if data.contains("\"usage\"") {
                    if let Ok(mut v) = serde_json::from_str::<Value>(&data) {
                        if let Some(u) = v.get_mut("usage").and_then(Value::as_object_mut) {
                            u.insert("energy_joules".into(), json!(st.energy.get()));
                            data = v.to_string();
                        }
                    }
                }
                if let Some(name) = ev.event {
                    out.push_str("event: ");
                    out.push_str(&name);
                    out.push('\n');
                }
                for line in data.split('\n') {
                    out.push_str("data: ");
                    out.push_str(line);
                    out.push('\n');
                }
                out.push('\n');
            }
            if let Some(m) = &error {
                let ev = json!({"error": {"message": m, "type": "upstream_error"}});
                out.push_str(&format!("data: {ev}\n\n"));
                st.guard.end(None);
                st.finished = true;
            } else if end {
                let tokens = st.acc.output_tokens();
                st.guard.end(Some(tokens));
                st.finished = true;
            }
            if !out.is_empty() || st.finished {
                return Some((Ok::<_, Infallible>(Bytes::from(out)), st));
            }
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "cannot build the response")
        })
}

//! The picker as a process: the gRPC server (Envoy's `ExternalProcessor` and gRPC health), one
//! reader task per endpoint keeping the [`Board`] fresh, one resolver task per service name
//! starting and stopping readers as its addresses change, and an optional `/metrics` page.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{ProcessingRequest, ProcessingResponse};
use futures_util::{Stream, StreamExt as _};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tonic_health::ServingStatus;

use crate::board::Board;
use crate::flow::Flow;
use crate::pick::PickPolicy;
use crate::pool::{Endpoint, Pool};

/// The future a [`Resolver`] returns.
pub type ResolveFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>;

/// Turns a service's `host:port` into its addresses: DNS by default ([`Resolver::dns`]).
#[derive(Clone)]
pub struct Resolver(Arc<dyn Fn(String) -> ResolveFuture + Send + Sync>);

impl Resolver {
    /// The system resolver (`getaddrinfo` through tokio): every A and AAAA record of the name.
    pub fn dns() -> Resolver {
        Resolver(Arc::new(|name: String| {
            Box::pin(async move { tokio::net::lookup_host(name).await.map(Iterator::collect) })
        }))
    }

    /// A resolver of the caller's (tests, or a discovery of their own).
    pub fn new(f: impl Fn(String) -> ResolveFuture + Send + Sync + 'static) -> Resolver {
        Resolver(Arc::new(f))
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// The gRPC health service names: the process, its readiness, and the ext_proc service.
pub const HEALTH_SERVICES: [&str; 3] =
    ["liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor"];

/// How the picker runs.
#[derive(Clone, Debug)]
pub struct EppConfig {
    /// The gRPC address (ext_proc and health); the Inference Extension's default port is 9002.
    pub listen: SocketAddr,
    /// Where to serve the picker's own `/metrics` page, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The endpoints.
    pub pool: Pool,
    /// How often each endpoint's metrics page is read.
    pub refresh: Duration,
    /// How long one read may take.
    pub read_timeout: Duration,
    /// How the picker chooses.
    pub policy: PickPolicy,
    /// Request bodies larger than this are refused with 413 (full-duplex mode only).
    pub max_body_bytes: usize,
    /// Treat bodies as `FULL_DUPLEX_STREAMED` while Envoy does not say.
    pub force_full_duplex: bool,
    /// On stop, how long health answers NOT_SERVING before the listener closes, so that health
    /// checks see it and the proxy sends new streams elsewhere.
    pub shutdown_grace: Duration,
    /// On stop, how long open streams may take to end before they are cut.
    pub shutdown_timeout: Duration,
    /// How often each service name is resolved again.
    pub resolve_interval: Duration,
    /// How service names are resolved.
    pub resolver: Resolver,
}

impl EppConfig {
    /// The defaults: 200 ms refresh, 1 s read timeout, 8 MiB bodies, [`PickPolicy::default`], on
    /// stop 2 s of NOT_SERVING then up to 25 s for open streams, and service names resolved by
    /// DNS every 5 s.
    pub fn new(listen: SocketAddr, pool: Pool) -> EppConfig {
        EppConfig {
            listen,
            metrics_listen: None,
            pool,
            refresh: Duration::from_millis(200),
            read_timeout: Duration::from_secs(1),
            policy: PickPolicy::default(),
            max_body_bytes: 8 << 20,
            force_full_duplex: false,
            shutdown_grace: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(25),
            resolve_interval: Duration::from_secs(5),
            resolver: Resolver::dns(),
        }
    }
}

/// Why the picker could not start.
#[derive(Debug, thiserror::Error)]
pub enum EppError {
    /// An address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which listener.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP client for the metrics pages could not be built.
    #[error("cannot build the HTTP client that reads the gateways' metrics: {0}")]
    Client(String),
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// The gRPC server failed.
    #[error("the picker's gRPC server failed: {0}")]
    Serve(String),
}

/// A running picker.
pub struct EppHandle {
    /// The gRPC address it listens on.
    pub addr: SocketAddr,
    /// The address of its `/metrics` page, if it serves one.
    pub metrics_addr: Option<SocketAddr>,
    board: Arc<Board>,
    unready: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    grace: Duration,
    timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EppHandle {
    /// What the picker knows and has decided.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// Stops: health answers NOT_SERVING for the grace period, then the listener closes and open
    /// streams get the shutdown timeout to end before they are cut; the readers stop last.
    pub async fn stop(mut self) -> Result<(), EppError> {
        let _ = self.unready.send(true);
        tokio::time::sleep(self.grace).await;
        let _ = self.stop.send(true);
        let outcome = tokio::time::timeout(self.timeout, &mut self.grpc).await;
        for t in &self.tasks {
            t.abort();
        }
        match outcome {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(EppError::Serve(e.to_string())),
            Ok(Err(join)) => Err(EppError::Serve(format!("its task ended abnormally: {join}"))),
            Err(_) => {
                self.grpc.abort();
                tracing::warn!(
                    timeout_s = self.timeout.as_secs_f64(),
                    "ext_proc streams still open at shutdown: cut"
                );
                Ok(())
            }
        }
    }
}

/// Starts the picker: binds its listeners, starts reading the endpoints' pages, and serves.
pub async fn start(cfg: EppConfig) -> Result<EppHandle, EppError> {
    if cfg.refresh.is_zero() || cfg.read_timeout.is_zero() || cfg.resolve_interval.is_zero() {
        return Err(EppError::Config(
            "the refresh interval, the read timeout and the resolve interval must be positive".into(),
        ));
    }
    let listener = TcpListener::bind(cfg.listen).await.map_err(|source| EppError::Bind {
        addr: cfg.listen,
        what: "gRPC",
        source,
    })?;
    let addr =
        listener.local_addr().map_err(|source| EppError::Bind { addr: cfg.listen, what: "gRPC", source })?;
    // Bind everything before spawning anything, so a failed bind leaves no task behind.
    let metrics = match cfg.metrics_listen {
        None => None,
        Some(m) => {
            let l = TcpListener::bind(m).await.map_err(|source| EppError::Bind {
                addr: m,
                what: "metrics",
                source,
            })?;
            let local =
                l.local_addr().map_err(|source| EppError::Bind { addr: m, what: "metrics", source })?;
            Some((l, local))
        }
    };

    let board = Arc::new(Board::new(cfg.pool.clone(), cfg.policy.clone()));
    let client = reqwest::Client::builder()
        .timeout(cfg.read_timeout)
        .build()
        .map_err(|e| EppError::Client(e.to_string()))?;
    let mut tasks: Vec<JoinHandle<()>> = cfg
        .pool
        .endpoints()
        .iter()
        .map(|e| tokio::spawn(read_loop(board.clone(), e.clone(), client.clone(), cfg.refresh)))
        .collect();
    for (i, service) in cfg.pool.services().iter().enumerate() {
        let readers = Readers {
            board: board.clone(),
            client: client.clone(),
            refresh: cfg.refresh,
            running: HashMap::new(),
        };
        tasks.push(tokio::spawn(resolve_loop(
            i,
            service.name.clone(),
            cfg.resolver.clone(),
            cfg.resolve_interval,
            readers,
        )));
    }

    let metrics_addr = metrics.map(|(l, local)| {
        tasks.push(tokio::spawn(serve_metrics(l, board.clone())));
        local
    });

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(HEALTH_SERVICES[0], ServingStatus::Serving).await;
    for name in &HEALTH_SERVICES[1..] {
        reporter.set_service_status(*name, ServingStatus::NotServing).await;
    }
    let (stop, mut stopped) = watch::channel(false);
    let (unready, mut going) = watch::channel(false);
    {
        let board = board.clone();
        tasks.push(tokio::spawn(async move {
            // Ready once every endpoint has been read (or failed) once, until the stop begins.
            while !board.synced() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = going.changed() => break,
                }
            }
            if !*going.borrow() {
                for name in &HEALTH_SERVICES[1..] {
                    reporter.set_service_status(*name, ServingStatus::Serving).await;
                }
                let _ = going.wait_for(|g| *g).await;
            }
            for name in HEALTH_SERVICES {
                reporter.set_service_status(name, ServingStatus::NotServing).await;
            }
        }));
    }

    let service = Epp {
        board: board.clone(),
        max_body_bytes: cfg.max_body_bytes,
        force_full_duplex: cfg.force_full_duplex,
    };
    // Without TCP_NODELAY on the accepted sockets, Nagle's algorithm holds each small answer
    // until the proxy's delayed ACK: about 40 ms added to every request (measured, see
    // BENCHMARKS.md). Sockets from a listener of our own do not get tonic's default.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn {
            let _ = c.set_nodelay(true);
        }
        conn
    });
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(ExternalProcessorServer::new(service))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }),
    );
    tracing::info!(
        %addr,
        endpoints = cfg.pool.endpoints().len(),
        services = cfg.pool.services().len(),
        refresh_ms = cfg.refresh.as_millis() as u64,
        fallbacks = cfg.policy.fallbacks,
        shed_below = cfg.policy.shed_below,
        "endpoint picker listening"
    );
    Ok(EppHandle {
        addr,
        metrics_addr,
        board,
        unready,
        stop,
        grace: cfg.shutdown_grace,
        timeout: cfg.shutdown_timeout,
        tasks,
        grpc,
    })
}

/// Reads `endpoint`'s page every `refresh`, logging when it stops and starts answering.
async fn read_loop(board: Arc<Board>, endpoint: Endpoint, client: reqwest::Client, refresh: Duration) {
    let (address, url) = (endpoint.address, endpoint.metrics_url);
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_ok: Option<bool> = None;
    loop {
        tick.tick().await;
        board.read_sent(address);
        let page = match client.get(&url).send().await.and_then(reqwest::Response::error_for_status) {
            Ok(r) => r.text().await.map_err(|e| format!("reading {url}: {e}")),
            Err(e) => Err(format!("reading {url}: {e}")),
        };
        let outcome = board.take_read(address, page, Instant::now());
        match (&outcome, was_ok) {
            (Err(e), Some(true) | None) => {
                tracing::warn!(%address, %url, error = %e, "endpoint metrics unreadable")
            }
            (Ok(()), Some(false)) => tracing::info!(%address, %url, "endpoint metrics readable again"),
            _ => {}
        }
        was_ok = Some(outcome.is_ok());
    }
}

/// The readers of one service's members; dropping it (the resolver task ending) stops them.
struct Readers {
    board: Arc<Board>,
    client: reqwest::Client,
    refresh: Duration,
    running: HashMap<SocketAddr, JoinHandle<()>>,
}

impl Drop for Readers {
    fn drop(&mut self) {
        for (_, t) in self.running.drain() {
            t.abort();
        }
    }
}

/// Resolves service `index`'s `name` every `interval` and follows its addresses: readers start
/// for new ones and stop for gone ones. A failed resolution keeps the members it had.
async fn resolve_loop(
    index: usize,
    name: String,
    resolver: Resolver,
    interval: Duration,
    mut readers: Readers,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_ok: Option<bool> = None;
    loop {
        tick.tick().await;
        match (resolver.0)(name.clone()).await {
            Ok(addresses) => {
                let (added, removed) = readers.board.set_service(index, &addresses);
                for a in &removed {
                    if let Some(t) = readers.running.remove(a) {
                        t.abort();
                    }
                }
                for e in added {
                    let (board, client) = (readers.board.clone(), readers.client.clone());
                    readers
                        .running
                        .insert(e.address, tokio::spawn(read_loop(board, e, client, readers.refresh)));
                }
                if was_ok != Some(true) || !removed.is_empty() {
                    tracing::info!(service = %name, endpoints = addresses.len(), removed = removed.len(), "service resolved");
                }
                was_ok = Some(true);
            }
            Err(e) => {
                readers.board.service_failed(index);
                if was_ok != Some(false) {
                    tracing::warn!(service = %name, error = %e, "cannot resolve the service; keeping its endpoints");
                }
                was_ok = Some(false);
            }
        }
    }
}

/// Serves the board's `GET /metrics` page.
async fn serve_metrics(listener: TcpListener, board: Arc<Board>) {
    let page = move || {
        let board = board.clone();
        async move { ([("content-type", "text/plain; version=0.0.4")], board.render()) }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(page));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the picker's metrics page stopped");
    }
}

/// The `ExternalProcessor` service: one [`Flow`] per stream.
struct Epp {
    board: Arc<Board>,
    max_body_bytes: usize,
    force_full_duplex: bool,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for Epp {
    type ProcessStream = ResponseStream;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let mut flow = Flow::new(self.max_body_bytes, self.force_full_duplex);
        let board = self.board.clone();
        tokio::spawn(async move {
            while let Some(msg) = inbound.next().await {
                // The proxy went away or the stream broke: nothing left to answer.
                let Ok(msg) = msg else { return };
                match flow.on_message(msg, board.as_ref()) {
                    Ok(answers) => {
                        for out in answers {
                            if tx.send(Ok(out)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ending an ext_proc stream");
                        let _ = tx.send(Err(Status::invalid_argument(e.to_string()))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

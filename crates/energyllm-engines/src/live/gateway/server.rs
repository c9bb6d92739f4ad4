//! The accept loop: HTTP/1.1 connections served by hyper with the limits `axum::serve` does not
//! expose — a connection cap, a header-read timeout and an idle timeout — and a shutdown that
//! keeps answering (503, from the handlers) while the gateway drains.
//!
//! Each connection counts the requests in progress on it (from the moment hyper hands one over
//! until its response body is dropped, streamed or not). A connection with none in progress for
//! longer than the idle timeout is closed: that bounds idle keep-alive connections, and clients
//! that trickle the headers of a second request (hyper's own header-read timer bounds the first).
//! At the connection cap a new connection is answered `503` and closed at once, so a flood of
//! idle connections cannot make the gateway (or its `/health`) unreachable for longer than the
//! idle timeout, and the process never runs out of file descriptors silently.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::GatewayMetrics;

/// The connection limits (see [`super::GatewayConfig`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) header_read: Duration,
    pub(super) idle: Duration,
    pub(super) max_connections: usize,
}

/// Serves `app` on `listener` until `stop` turns true; then asks every connection to close once
/// its request in progress ends, waits up to `grace` for them, and closes the rest.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<GatewayMetrics>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin on accept.
                tracing::warn!(error = %e, "cannot accept a connection; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                let (app, metrics, stop) = (app.clone(), Arc::clone(&metrics), stop.clone());
                tasks.spawn(async move {
                    connection(stream, app, limits, &metrics, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                let n = metrics.rejected_connections.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        refused_so_far = n + 1,
                        "connection limit reached; new connections are answered 503 (raise --max-connections \
                         and the open-file limit if this is real load)"
                    );
                }
                tasks.spawn(refuse(stream));
            }
        }
    }
    drop(listener);
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tasks.abort_all();
    }
}

/// Answers a connection over the limit with a 503 and closes it, within a second.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str =
        "{\"error\":{\"message\":\"too many connections; retry later\",\"type\":\"overloaded\",\"code\":503}}";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Requests in progress on one connection, and since when it has had none.
struct Activity {
    origin: Instant,
    active: AtomicUsize,
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.origin.elapsed().saturating_sub(since))
    }
}

/// One request in progress; dropping it (the response body ended, or the request was abandoned)
/// marks the connection idle when it was the last.
struct InProgress(Arc<Activity>);

impl InProgress {
    fn new(a: &Arc<Activity>) -> Self {
        a.active.fetch_add(1, Ordering::AcqRel);
        InProgress(Arc::clone(a))
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let ms = self.0.origin.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in progress until it is dropped.
struct Tracked {
    inner: Body,
    _in_progress: InProgress,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Decrements the open-connection gauge when a connection ends, however it ends.
struct Open<'a>(&'a GatewayMetrics);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    metrics: &GatewayMetrics,
    mut stop: watch::Receiver<bool>,
) {
    metrics.connections.fetch_add(1, Ordering::Relaxed);
    let _open = Open(metrics);
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity {
        origin: Instant::now(),
        active: AtomicUsize::new(0),
        idle_since_ms: AtomicU64::new(0),
    });
    let a = Arc::clone(&activity);
    let service = tower::service_fn(move |req: hyper::Request<Incoming>| {
        let (app, in_progress) = (app.clone(), InProgress::new(&a));
        async move {
            let response = app.oneshot(req.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(
                response.map(|inner| Body::new(Tracked { inner, _in_progress: in_progress })),
            )
        }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut check =
        tokio::time::interval((limits.idle / 4).clamp(Duration::from_millis(20), Duration::from_secs(1)));
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.tick() => {
                // Nothing in progress for too long: dropping the connection closes the socket.
                if activity.idle_for().is_some_and(|d| d > limits.idle) {
                    break;
                }
            }
        }
    }
}

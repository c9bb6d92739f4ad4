//! The axum handlers: `/health` (alive), `/ready` (fit to serve), `/metrics`, `/v1/models`
//! (passed through) and the OpenAI completion endpoints, which check the token, queue, wait for
//! the controller's go, forward upstream and pass the answer back within the stream-idle and
//! total-request timeouts.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};
use tower::ServiceExt as _;

use energyllm_core::{Request, RequestId, Timestamp};

use super::access::AccessLine;
use super::control::{Admitted, Msg, Outcome};
use super::upstream_service::{UpstreamCall, UpstreamService};
use super::{GatewayConfig, GatewayMetrics};
use crate::live::actuate::AtomicF64;
use crate::live::sse::SseDecoder;
use crate::live::upstream::{join_url, EngineKind, StreamAccumulator};

/// What every handler shares.
pub(super) struct Shared {
    pub(super) config: GatewayConfig,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    pub(super) upstream: UpstreamService,
    pub(super) metrics: Arc<GatewayMetrics>,
    pub(super) readings: Arc<crate::live::actuate::Readings>,
    pub(super) next_id: AtomicU64,
    pub(super) draining: AtomicBool,
    /// For the calls that bypass admission (`/v1/models`).
    pub(super) client: reqwest::Client,
    pub(super) base: reqwest::Url,
}

/// The gateway's routes.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics_page))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .layer(DefaultBodyLimit::max(shared.config.max_body_bytes))
        .with_state(shared)
}

/// Reports the end of an admitted request exactly once; if dropped unreported (client gone,
/// task cancelled, or never received because the handler left first), the request counts as
/// cancelled. The controller task makes it at admission and hands it over through the go channel,
/// so no admitted request can leak its batch slot, whenever its handler goes away.
pub(super) struct InFlight {
    id: RequestId,
    tx: mpsc::UnboundedSender<Msg>,
    metrics: Arc<GatewayMetrics>,
    first_token_sent: bool,
    ended: bool,
}

impl InFlight {
    pub(super) fn new(id: RequestId, tx: mpsc::UnboundedSender<Msg>, metrics: Arc<GatewayMetrics>) -> Self {
        InFlight { id, tx, metrics, first_token_sent: false, ended: false }
    }

    fn first_token(&mut self) {
        if !self.first_token_sent {
            self.first_token_sent = true;
            let _ = self.tx.send(Msg::FirstToken(self.id));
        }
    }
    fn end(&mut self, outcome: Outcome) {
        self.end_with(outcome, None);
    }

    fn end_with(&mut self, outcome: Outcome, booked: Option<oneshot::Sender<f64>>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let counter = match outcome {
            Outcome::Completed(_) => &self.metrics.completed,
            Outcome::Failed => &self.metrics.failed,
            Outcome::ClientError => &self.metrics.client_errors,
            Outcome::Cancelled => &self.metrics.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Msg::Done { id: self.id, outcome, booked });
    }

    /// Ends the request and returns its final energy: the control task books the energy up to
    /// this instant before it answers, so the figure the client sees is the one the counters
    /// keep. `so_far` is the answer if the task is gone.
    async fn end_booked(&mut self, output_tokens: u32, so_far: &AtomicF64) -> f64 {
        let (tx, rx) = oneshot::channel();
        self.end_with(Outcome::Completed(output_tokens), Some(tx));
        rx.await.unwrap_or_else(|_| so_far.get())
    }

    /// The energy booked to this running request up to this instant (a streamed `usage` object
    /// carries it; the last moments of the stream are booked after it went out).
    async fn energy_now(&self, so_far: &AtomicF64) -> f64 {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Msg::Energy { id: self.id, reply: tx });
        rx.await.unwrap_or_else(|_| so_far.get())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.end(Outcome::Cancelled);
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
    let mut r = (status, axum::Json(body)).into_response();
    // When to come back: a full queue frees within a second or so; a draining or overloaded
    // server needs longer.
    let retry_s = match status {
        StatusCode::TOO_MANY_REQUESTS => Some("1"),
        StatusCode::SERVICE_UNAVAILABLE => Some("5"),
        _ => None,
    };
    if let Some(s) = retry_s {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static(s));
    }
    r
}

/// Alive: the process answers. Whether it should get traffic is `/ready`'s question.
async fn health() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// The checks behind `/ready` and the `energyllm_ready` gauge.
struct Readiness {
    draining: bool,
    upstream: Result<(), String>,
    actuator: Result<(), String>,
}

impl Readiness {
    /// Fit to serve: not draining, the upstream's `/metrics` read recently (so the upstream is up
    /// and the controller sees its state), and the actuator sampling power with no failed clock
    /// change.
    fn of(s: &Shared) -> Readiness {
        let m = &s.metrics;
        let fresh_ms = (3.0 * s.config.metrics_interval_s).max(5.0) * 1000.0;
        let last = m.last_scrape_ok_ms.load(Ordering::Relaxed);
        let age_ms = (m.started.elapsed().as_millis() as u64).saturating_sub(last);
        let upstream = if last != u64::MAX && (age_ms as f64) <= fresh_ms {
            Ok(())
        } else {
            let why = m.scrape_error.lock().ok().and_then(|e| e.clone());
            Err(match (last, why) {
                (_, Some(why)) => why,
                (u64::MAX, None) => "the upstream's /metrics has not been read yet".to_owned(),
                (_, None) => format!("the upstream's /metrics was last read {} s ago", age_ms / 1000),
            })
        };
        let (power, errors) = (s.readings.power_w.get(), s.readings.errors.load(Ordering::Relaxed));
        let actuator = if !power.is_finite() {
            Err("the actuator has no power reading".to_owned())
        } else if errors > 0 {
            Err(format!("{errors} clock change(s) failed; see the log"))
        } else {
            Ok(())
        };
        Readiness { draining: s.draining.load(Ordering::Relaxed), upstream, actuator }
    }

    fn ok(&self) -> bool {
        !self.draining && self.upstream.is_ok() && self.actuator.is_ok()
    }
}

/// 200 or 503, with each check of [`Readiness`] and why it fails as JSON.
async fn ready(State(s): State<Arc<Shared>>) -> Response {
    let r = Readiness::of(&s);
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(why) => json!(why),
    };
    let body = json!({
        "ready": r.ok(),
        "draining": r.draining,
        "upstream": check(&r.upstream),
        "actuator": check(&r.actuator),
    });
    let status = if r.ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

async fn metrics_page(State(s): State<Arc<Shared>>) -> Response {
    let r = &s.readings;
    let page = s.metrics.render(
        r.clock_mhz.load(Ordering::Relaxed),
        r.power_w.get(),
        Readiness::of(&s).ok(),
        s.config.dry_run,
        s.config.engine.name(),
        &s.config.identity,
    );
    ([("content-type", "text/plain; version=0.0.4")], page).into_response()
}

/// The upstream's model list, passed through (no admission: it costs the GPU nothing).
async fn models(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let url = join_url(&s.base, "v1/models");
    let timeout = Duration::from_secs_f64(s.config.upstream_timeout_s.min(10.0));
    match s.client.get(&url).timeout(timeout).send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match r.bytes().await {
                Ok(b) => (status, [("content-type", "application/json")], b).into_response(),
                Err(e) => upstream_unavailable(&format!("reading {url}: {e}")),
            }
        }
        Err(e) => upstream_unavailable(&format!("GET {url}: {}", crate::live::upstream::error_chain(&e))),
    }
}

/// A 502 that keeps the upstream's address out of the client's sight; the log has the detail.
fn upstream_unavailable(detail: &str) -> Response {
    tracing::warn!(detail, "upstream call failed");
    error_response(StatusCode::BAD_GATEWAY, "upstream_unavailable", "the upstream engine is unavailable")
}

/// Checks the bearer token, when one is configured: `None` to go on, or the 401 to answer
/// (counted and logged like every refusal).
fn authorize(s: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(key) = &s.config.api_key else { return None };
    // The scheme is case-insensitive (RFC 9110); the token is compared exactly.
    let ok = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().split_once(' '))
        .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && token.trim() == key);
    (!ok)
        .then(|| refused(s, StatusCode::UNAUTHORIZED, "unauthorized", "send Authorization: Bearer <api key>"))
}

/// A request refused before admission: counted (client errors) and logged on the access log.
fn refused(s: &Shared, status: StatusCode, kind: &str, message: &str) -> Response {
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        s.metrics.client_errors.fetch_add(1, Ordering::Relaxed);
    }
    let line = AccessLine { outcome: kind, status: Some(status.as_u16()), ..AccessLine::default() };
    super::access::log(s.config.access_log, &line);
    error_response(status, kind, message)
}

type BodyResult = Result<Bytes, BytesRejection>;

async fn completions(State(s): State<Arc<Shared>>, headers: HeaderMap, body: BodyResult) -> Response {
    proxy(s, headers, body, "v1/completions").await
}

async fn chat_completions(State(s): State<Arc<Shared>>, headers: HeaderMap, body: BodyResult) -> Response {
    proxy(s, headers, body, "v1/chat/completions").await
}

async fn proxy(s: Arc<Shared>, headers: HeaderMap, body: BodyResult, path: &'static str) -> Response {
    let deadline = Instant::now() + Duration::from_secs_f64(s.config.request_timeout_s);
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    if s.draining.load(Ordering::Relaxed) {
        s.metrics.rejected_draining.fetch_add(1, Ordering::Relaxed);
        return refused(&s, StatusCode::SERVICE_UNAVAILABLE, "draining", "the gateway is shutting down");
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refused(
                &s,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                &format!(
                    "the body is over the gateway's limit of {} bytes (--max-body-bytes)",
                    s.config.max_body_bytes
                ),
            )
        }
        Err(e) => return refused(&s, e.status(), "invalid_request", &e.body_text()),
    };
    let parsed = match super::body::parse_request_body(&body) {
        Ok(p) => p,
        Err(why) => return refused(&s, StatusCode::BAD_REQUEST, "invalid_request", &why),
    };
    let (stream, output_tokens) = (parsed.stream, parsed.output_tokens);

    // Bounded queue: take a place or refuse.
    let prev = s.metrics.queued.fetch_add(1, Ordering::Relaxed);
    let mut place = QueuePlace { metrics: Arc::clone(&s.metrics), armed: true };
    if prev >= s.config.max_queue {
        drop(place);
        s.metrics.rejected_queue_full.fetch_add(1, Ordering::Relaxed);
        return refused(
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            &format!("the gateway queue is full ({} waiting); retry later", s.config.max_queue),
        );
    }
    let id = RequestId(s.next_id.fetch_add(1, Ordering::Relaxed));
    let req = Request { id, arrival: Timestamp::ZERO, input_tokens: parsed.input_tokens, output_tokens };
    let (go_tx, go_rx) = oneshot::channel();
    if s.tx.send(Msg::Arrival { req, go: go_tx }).is_err() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "draining", "the gateway is shutting down");
    }
    place.armed = false;
    let mut go_rx = go_rx;
    let Admitted { mut guard, energy } = match tokio::time::timeout_at(deadline, &mut go_rx).await {
        Ok(Ok(a)) => a,
        Ok(Err(_)) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "the gateway is shutting down",
            )
        }
        Err(_) => {
            // Closing settles a race with a dispatch at this instant: an admission already sent
            // ends as failed here; one not yet sent ends as cancelled when the controller finds
            // the channel closed.
            go_rx.close();
            if let Ok(mut a) = go_rx.try_recv() {
                a.guard.end(Outcome::Failed);
            }
            return request_timeout(&s);
        }
    };

    let call = UpstreamCall { path, body };
    let resp = match tokio::time::timeout_at(deadline, s.upstream.clone().oneshot(call)).await {
        Err(_) => {
            guard.end(Outcome::Failed);
            return request_timeout(&s);
        }
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            guard.end(Outcome::Failed);
            return if e.is::<tower::timeout::error::Elapsed>() {
                tracing::warn!(
                    timeout_s = s.config.upstream_timeout_s,
                    "the upstream sent no response headers in time"
                );
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    &format!("the upstream did not answer within {} s", s.config.upstream_timeout_s),
                )
            } else {
                upstream_unavailable(&e.to_string())
            };
        }
    };
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(500).collect();
        if status.is_client_error() {
            // The client's mistake (unknown model, bad parameter): pass it through as is, and
            // free its slot at once without counting an upstream failure.
            guard.end(Outcome::ClientError);
            let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_REQUEST);
            return (code, [("content-type", "application/json")], snippet).into_response();
        }
        guard.end(Outcome::Failed);
        tracing::warn!(status = status.as_u16(), body = %snippet, "the upstream answered an error");
        let (code, kind) = if status.as_u16() == 503 {
            (StatusCode::SERVICE_UNAVAILABLE, "upstream_overloaded")
        } else {
            (StatusCode::BAD_GATEWAY, "upstream_error")
        };
        return error_response(code, kind, &format!("the upstream answered {status}: {snippet}"));
    }
    let idle = Duration::from_secs_f64(s.config.stream_idle_timeout_s);
    if stream {
        stream_through(resp, guard, energy, s.config.engine, Limits { idle, deadline })
    } else {
        plain_through(resp, guard, energy, s.config.engine, deadline).await
    }
}

fn request_timeout(s: &Shared) -> Response {
    tracing::warn!(timeout_s = s.config.request_timeout_s, "a request ran past the total request timeout");
    error_response(
        StatusCode::GATEWAY_TIMEOUT,
        "request_timeout",
        &format!(
            "the request ran past the gateway's {} s limit (--request-timeout)",
            s.config.request_timeout_s
        ),
    )
}

/// How long an answer may take: upstream silence between chunks, and its end.
#[derive(Clone, Copy)]
struct Limits {
    idle: Duration,
    deadline: Instant,
}

async fn plain_through(
    resp: reqwest::Response,
    mut guard: InFlight,
    energy: Arc<AtomicF64>,
    kind: EngineKind,
    deadline: Instant,
) -> Response {
    let bytes = match tokio::time::timeout_at(deadline, resp.bytes()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            guard.end(Outcome::Failed);
            return upstream_unavailable(&format!("reading the upstream answer: {e}"));
        }
        Err(_) => {
            guard.end(Outcome::Failed);
            return error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                "the upstream's answer ran past the gateway's total request timeout (--request-timeout)",
            );
        }
    };
    guard.first_token();
    let mut v: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            guard.end(Outcome::Failed);
            tracing::warn!(error = %e, "the upstream's answer is not JSON");
            return error_response(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                &format!("the upstream answer is not JSON: {e}"),
            );
        }
    };
    let tokens = crate::live::upstream::parse_plain(kind, &v).map(|c| c.output_tokens).unwrap_or(0);
    let joules = guard.end_booked(tokens, &energy).await;
    if let Some(u) = v.get_mut("usage").and_then(Value::as_object_mut) {
        u.insert("energy_joules".into(), json!(joules));
    }
    let mut r = axum::Json(v).into_response();
    if let Ok(h) = HeaderValue::from_str(&joules.to_string()) {
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
    limits: Limits,
) -> Response {
    struct St {
        upstream: futures_util::stream::BoxStream<'static, Result<Bytes, String>>,
        decoder: SseDecoder,
        acc: StreamAccumulator,
        guard: InFlight,
        energy: Arc<AtomicF64>,
        limits: Limits,
        finished: bool,
    }
    let st = St {
        upstream: resp
            .bytes_stream()
            .map(|r| r.map_err(|e| format!("the upstream stream broke: {e}")))
            .boxed(),
        decoder: SseDecoder::new(),
        acc: StreamAccumulator::new(kind),
        guard,
        energy,
        limits,
        finished: false,
    };
    let body = futures_util::stream::unfold(st, |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            let Limits { idle, deadline } = st.limits;
            let next = tokio::time::timeout_at(deadline.min(Instant::now() + idle), st.upstream.next()).await;
            let next = match next {
                Ok(n) => n,
                Err(_) => {
                    let why = if Instant::now() >= deadline {
                        "the answer ran past the gateway's total request timeout".to_owned()
                    } else {
                        format!("the upstream sent nothing for {} s", idle.as_secs_f64())
                    };
                    tracing::warn!(reason = %why, "a stream was cut off");
                    Some(Err(why))
                }
            };
            let (events, end, error) = match next {
                Some(Ok(chunk)) => match st.decoder.push(&chunk) {
                    Ok(evs) => (evs, false, None),
                    Err(e) => (Vec::new(), true, Some(e.to_string())),
                },
                Some(Err(e)) => (Vec::new(), true, Some(e)),
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
                            u.insert("energy_joules".into(), json!(st.guard.energy_now(&st.energy).await));
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
                st.guard.end(Outcome::Failed);
                st.finished = true;
            } else if end {
                let tokens = st.acc.output_tokens();
                st.guard.end(Outcome::Completed(tokens));
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

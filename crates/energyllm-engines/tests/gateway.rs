//! The gateway against an in-process fake upstream that speaks llama.cpp's OpenAI API and
//! `/metrics`: streaming and plain answers, the batch cap, the bounded queue, client
//! disconnects, upstream faults, auth and the drain on shutdown. No external server; every loop
//! is bounded in count and time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt as _;
use serde_json::{json, Value};

use energyllm_core::testutil::FixedPolicy;
use energyllm_core::{Action, Controller, ControllerConfig, Mhz, Observation, Policy};
use energyllm_engines::live::{gateway, sim_actuator, EngineKind, GatewayConfig, GatewayHandle};

#[derive(Default)]
struct Fake {
    running: AtomicUsize,
    max_running: AtomicUsize,
    served: AtomicUsize,
    /// 0: normal, 1: answer 500, 2: answer 503, 3: malformed stream.
    mode: AtomicUsize,
}

struct Running(Arc<Fake>);
impl Running {
    fn new(f: &Arc<Fake>) -> Self {
        let n = f.running.fetch_add(1, Ordering::SeqCst) + 1;
        f.max_running.fetch_max(n, Ordering::SeqCst);
        Running(Arc::clone(f))
    }
}
impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn fake_completions(State(f): State<Arc<Fake>>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap();
    match f.mode.load(Ordering::SeqCst) {
        1 => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        2 => return (StatusCode::SERVICE_UNAVAILABLE, "loading model").into_response(),
        _ => {}
    }
    if v["client_error"].as_bool() == Some(true) {
        let e = json!({"error": {"message": "unknown model", "type": "invalid_request_error"}});
        return (StatusCode::BAD_REQUEST, axum::Json(e)).into_response();
    }
    let n = v["max_tokens"].as_u64().unwrap_or(4);
    let delay = Duration::from_millis(v["delay_ms"].as_u64().unwrap_or(5));
    // A stall after the first chunk, as a frozen engine does.
    let stall = Duration::from_millis(v["stall_ms"].as_u64().unwrap_or(0));
    let running = Running::new(&f);
    f.served.fetch_add(1, Ordering::SeqCst);
    if v["stream"].as_bool() == Some(true) {
        let malformed = f.mode.load(Ordering::SeqCst) == 3;
        let s = futures_util::stream::unfold(0u64, move |i| async move {
            if i > n {
                return None;
            }
            tokio::time::sleep(if i == 1 { delay + stall } else { delay }).await;
            let chunk = if malformed {
                "data: {not json\n\n".to_string()
            } else if i == n {
                let usage = json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}});
                format!("data: {usage}\n\ndata: [DONE]\n\n")
            } else {
                format!("data: {}\n\n", json!({"choices": [{"text": "x", "index": 0}]}))
            };
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(chunk)), i + 1))
        });
        // The running count lasts as long as the body, as in a real server.
        let s = s.map(move |c| {
            let _keep = &running;
            c
        });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(s))
            .unwrap();
    }
    tokio::time::sleep(delay * n as u32).await;
    drop(running);
    axum::Json(json!({
        "choices": [{"text": "x".repeat(n as usize), "index": 0, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}
    }))
    .into_response()
}

async fn fake_metrics(State(f): State<Arc<Fake>>) -> String {
    format!(
        "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing {}\nllamacpp:requests_deferred 0\n\
         llamacpp:prompt_tokens_total {}\nllamacpp:tokens_predicted_total {}\n",
        f.running.load(Ordering::SeqCst),
        10 * f.served.load(Ordering::SeqCst),
        5 * f.served.load(Ordering::SeqCst)
    )
}

async fn fake_upstream() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/v1/completions", post(fake_completions))
        .route("/v1/chat/completions", post(fake_completions))
        .route("/metrics", get(fake_metrics))
        .route(
            "/v1/models",
            get(|| async { axum::Json(json!({"object": "list", "data": [{"id": "fake"}]})) }),
        )
        .with_state(Arc::clone(&fake));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

fn controller(batch: u32) -> Controller {
    let cfg = ControllerConfig {
        initial: Some(Action { freq: Mhz(1410), batch }),
        decision_interval_s: Some(0.2),
        ..ControllerConfig::default()
    };
    // A clock below the initial one, so the actuator really switches (and must restore).
    Controller::new(cfg, Box::new(FixedPolicy(Action { freq: Mhz(1005), batch }))).unwrap()
}

async fn gateway_for(upstream: &str, batch: u32, tweak: impl FnOnce(&mut GatewayConfig)) -> GatewayHandle {
    let mut cfg = GatewayConfig::new(EngineKind::Llamacpp, upstream);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_interval_s = 0.1;
    cfg.drain_timeout_s = 5.0;
    tweak(&mut cfg);
    gateway::start(cfg, controller(batch), sim_actuator("a100-40gb").unwrap()).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

fn body(stream: bool, max_tokens: u64, delay_ms: u64) -> Value {
    json!({"prompt": "hello there", "max_tokens": max_tokens, "stream": stream, "delay_ms": delay_ms,
           "stream_options": {"include_usage": true}})
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_streaming_answers_carry_energy() {
    let (up, _fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 4, |_| {}).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let r = client().post(&url).json(&body(false, 5, 2)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let joules: f64 = r.headers()["x-energy-joules"].to_str().unwrap().parse().unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["energy_joules"].as_f64(), Some(joules));
    assert!(joules >= 0.0);

    let r = client().post(&url).json(&body(true, 6, 2)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    assert_eq!(text.matches("\"text\":\"x\"").count(), 6, "{text}");
    assert!(text.contains("\"energy_joules\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    gw.shutdown();
    let report = gw.join().await.unwrap();
    assert_eq!((report.completed, report.failed, report.cancelled), (2, 0, 0));
    assert!(report.actuator.clocks_restored, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_go_through_the_same_queue() {
    let (up, fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 2, |_| {}).await;
    let url = format!("http://{}/v1/chat/completions", gw.addr());
    let body = json!({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3, "delay_ms": 1});
    let r = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-energy-joules"));
    assert_eq!(fake.served.load(Ordering::SeqCst), 1);
    gw.shutdown();
    assert_eq!(gw.join().await.unwrap().completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_cap_holds_and_every_request_is_answered() {
    let (up, fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 2, |_| {}).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = client().post(&url).json(&body(i % 2 == 0, 5, 10)).send().await.unwrap();
                (r.status(), r.text().await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        let (status, _) = t.await.unwrap();
        assert_eq!(status, 200);
    }
    assert_eq!(fake.served.load(Ordering::SeqCst), 8);
    assert!(
        fake.max_running.load(Ordering::SeqCst) <= 2,
        "upstream saw {}",
        fake.max_running.load(Ordering::SeqCst)
    );
    assert!(gw.metrics().max_in_flight.load(Ordering::SeqCst) <= 2);
    let page =
        client().get(format!("http://{}/metrics", gw.addr())).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("energyllm_requests_completed_total 8"), "{page}");
    assert!(page.contains("energyllm_batch_cap 2"), "{page}");
    gw.shutdown();
    gw.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429() {
    let (up, _fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 1, |c| c.max_queue = 1).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = client().post(&url).json(&body(false, 10, 20)).send().await.unwrap();
                // A refusal says when to come back.
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                (r.status(), retry)
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        let (status, retry) = t.await.unwrap();
        assert_eq!(retry.is_some(), status == 429, "{status} with Retry-After {retry:?}");
        codes.push(status.as_u16());
    }
    assert!(codes.iter().all(|&c| c == 200 || c == 429), "{codes:?}");
    assert!(codes.contains(&429), "{codes:?}");
    assert!(codes.contains(&200), "{codes:?}");
    gw.shutdown();
    let r = gw.join().await.unwrap();
    assert_eq!(r.completed as usize, codes.iter().filter(|&&c| c == 200).count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_frees_its_slot() {
    let (up, fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 1, |_| {}).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let r = client().post(&url).json(&body(true, 1000, 20)).send().await.unwrap();
    let mut s = r.bytes_stream();
    let first = s.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(s);
    let m = Arc::clone(gw.metrics());
    wait_for("the gateway to notice the disconnect", || m.in_flight.load(Ordering::SeqCst) == 0).await;
    wait_for("the upstream to stop", || fake.running.load(Ordering::SeqCst) == 0).await;
    assert_eq!(m.cancelled.load(Ordering::SeqCst), 1);
    // The slot is free: the next request (cap 1) goes through.
    let r = client().post(&url).json(&body(false, 2, 1)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown();
    gw.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_become_clear_errors() {
    let (up, fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 2, |_| {}).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    fake.mode.store(1, Ordering::SeqCst);
    let r = client().post(&url).json(&body(false, 2, 1)).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("500"), "{v}");
    fake.mode.store(2, Ordering::SeqCst);
    let r = client().post(&url).json(&body(false, 2, 1)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    fake.mode.store(3, Ordering::SeqCst);
    let r = client().post(&url).json(&body(true, 3, 1)).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("\"upstream_error\""), "{text}");
    let bad = client().post(&url).body("{not json").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    gw.shutdown();
    let report = gw.join().await.unwrap();
    assert_eq!((report.completed, report.failed), (0, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_502_that_keeps_its_address_private() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut gw = gateway_for(&format!("http://127.0.0.1:{port}"), 2, |c| c.connect_retries = 1).await;
    let r = client()
        .post(format!("http://{}/v1/completions", gw.addr()))
        .json(&body(false, 2, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("unavailable") && !message.contains(&port.to_string()), "{v}");
    // Not ready: its metrics cannot be read, and /ready says why.
    let ready = client().get(format!("http://{}/ready", gw.addr())).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let why: Value = ready.json().await.unwrap();
    assert!(why["upstream"].as_str().unwrap().contains("cannot reach"), "{why}");
    gw.shutdown();
    assert_eq!(gw.join().await.unwrap().failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_loopback_and_bad_settings() {
    let (up, _fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 2, |c| c.api_key = Some("sesame".into())).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    assert_eq!(client().post(&url).json(&body(false, 1, 1)).send().await.unwrap().status(), 401);
    let ok = client().post(&url).bearer_auth("sesame").json(&body(false, 1, 1)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // A client engine with the key gets through; without it, the 401 is its error.
    use energyllm_core::{Request, RequestId, Timestamp};
    use energyllm_engines::live::{HttpEngine, HttpEngineConfig};
    let base = format!("http://{}", gw.addr());
    let req = Request { id: RequestId(1), arrival: Timestamp::ZERO, input_tokens: 4, output_tokens: 2 };
    let keyed = HttpEngineConfig { url: base.clone(), api_key: Some("sesame".into()), ..Default::default() };
    let done = HttpEngine::new(EngineKind::Llamacpp, keyed).unwrap().complete(&req, false).await.unwrap();
    assert_eq!(done.output_tokens, 2);
    let bare = HttpEngineConfig { url: base, ..Default::default() };
    let e = HttpEngine::new(EngineKind::Llamacpp, bare).unwrap().complete(&req, false).await.unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    // The scheme is case-insensitive; the token is not.
    for (header, status) in
        [("bearer sesame", 200), ("BEARER  sesame", 200), ("Bearer SESAME", 401), ("Basic sesame", 401)]
    {
        let r = client()
            .post(&url)
            .header("authorization", header)
            .json(&body(false, 1, 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{header}");
    }
    gw.shutdown();
    gw.join().await.unwrap();

    let mut cfg = GatewayConfig::new(EngineKind::Llamacpp, &up);
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let e = gateway::start(cfg, controller(1), sim_actuator("a100-40gb").unwrap()).await.err().unwrap();
    assert!(e.to_string().contains("--public"), "{e}");
    let mut cfg = GatewayConfig::new(EngineKind::Llamacpp, "https://example.com");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let e = gateway::start(cfg, controller(1), sim_actuator("a100-40gb").unwrap()).await.err().unwrap();
    assert!(e.to_string().contains("http://"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let (up, _fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 2, |_| {}).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let slow = {
        let url = url.clone();
        tokio::spawn(async move {
            client().post(&url).json(&body(true, 20, 20)).send().await.unwrap().text().await
        })
    };
    let m = Arc::clone(gw.metrics());
    wait_for("the slow request to be admitted", || m.in_flight.load(Ordering::SeqCst) == 1).await;
    gw.shutdown();
    // While it drains, a new connection is answered, not refused: 503 with Retry-After, and
    // /ready says so while /health stays alive.
    let base = format!("http://{}", gw.addr());
    let mut refused = None;
    for _ in 0..100 {
        let r = reqwest::Client::new().post(&url).json(&body(false, 1, 1)).send().await.unwrap();
        if r.status() == 503 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("a new request during the drain gets 503");
    assert_eq!(refused.headers()["retry-after"], "5");
    let ready = client().get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["draining"], true);
    assert_eq!(client().get(format!("{base}/health")).send().await.unwrap().status(), 200);
    let text = slow.await.unwrap().unwrap();
    assert!(text.contains("[DONE]"), "the in-flight request was cut: {text}");
    let report = gw.join().await.unwrap();
    assert_eq!((report.completed, report.abandoned), (1, 0));
    assert!(report.actuator.clocks_restored);
    assert!(
        client().post(&url).json(&body(false, 1, 1)).send().await.is_err(),
        "still listening after shutdown"
    );
}

/// A policy whose safety shield (here: a counter) overrides every decision.
struct AlwaysShielded(u64);

impl Policy for AlwaysShielded {
    fn name(&self) -> &str {
        "always-shielded"
    }
    fn decide(&mut self, _: &Observation) -> Action {
        self.0 += 1;
        Action { freq: Mhz(1410), batch: 2 }
    }
    fn overrides(&self) -> u64 {
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shield_overrides_are_exported() {
    let (up, _fake) = fake_upstream().await;
    let mut cfg = GatewayConfig::new(EngineKind::Llamacpp, &up);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_interval_s = 0.1;
    let ctl = ControllerConfig { decision_interval_s: Some(0.05), ..ControllerConfig::default() };
    let ctl = Controller::new(ctl, Box::new(AlwaysShielded(0))).unwrap();
    let mut gw = gateway::start(cfg, ctl, sim_actuator("a100-40gb").unwrap()).await.unwrap();
    let m = Arc::clone(gw.metrics());
    wait_for("three decisions", || m.decisions.load(Ordering::SeqCst) >= 3).await;
    let page =
        client().get(format!("http://{}/metrics", gw.addr())).send().await.unwrap().text().await.unwrap();
    let line = page.lines().find(|l| l.starts_with("energyllm_shield_overrides_total ")).unwrap_or_default();
    let overrides: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let decisions = m.decisions.load(Ordering::SeqCst);
    // Every decision was overridden; the page may trail the live counter by the decisions since.
    assert!(
        overrides >= 3 && overrides <= decisions,
        "{overrides} overrides, {decisions} decisions:\n{page}"
    );
    gw.shutdown();
    gw.join().await.unwrap();
}

/// Every metric the shipped Grafana dashboard queries is on a running gateway's `/metrics` page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_exported_metrics() {
    let (up, _fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 4, |_| {}).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let r = client().post(&url).json(&body(false, 5, 10)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Wait for a scrape of the upstream to bring its totals onto the page.
    let metrics_url = format!("http://{}/metrics", gw.addr());
    let mut page = String::new();
    for _ in 0..100 {
        page = client().get(&metrics_url).send().await.unwrap().text().await.unwrap();
        if page.contains("energyllm_upstream_generated_tokens_total") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.shutdown();
    gw.join().await.unwrap();
    let exported: std::collections::BTreeSet<&str> = page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/energyllm.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("energyllm_") {
                let name: String =
                    rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[i + name.len()..];
                queried.push((panel["title"].as_str().unwrap_or("").to_owned(), name));
            }
        }
    }
    assert!(queried.len() >= 10, "the dashboard queries {} metrics", queried.len());
    // A histogram is queried through its `_bucket` series.
    let missing: Vec<_> = queried.iter().filter(|(_, n)| !exported.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}\npage:\n{page}");

    // docs/gateway.md documents every family on the page, and the page has every documented
    // family but those the engine may not report.
    let families: std::collections::BTreeSet<&str> =
        page.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let doc_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/gateway.md");
    let doc = std::fs::read_to_string(doc_path).unwrap();
    let rows: Vec<(&str, bool)> = doc
        .lines()
        .filter(|l| l.starts_with("| `energyllm_"))
        .filter_map(|l| Some((l.split('`').nth(1)?, l.contains("*when known*"))))
        .collect();
    let undocumented: Vec<_> = families.iter().filter(|f| !rows.iter().any(|(n, _)| n == *f)).collect();
    assert!(undocumented.is_empty(), "exported but not in docs/gateway.md: {undocumented:?}");
    let absent: Vec<_> = rows.iter().filter(|(n, maybe)| !maybe && !families.contains(n)).collect();
    assert!(absent.is_empty(), "documented but not exported: {absent:?}");
}

/// A plain answer carries its final energy: what `x-energy-joules` says is exactly what the
/// gateway books for the request, so the headers sum to the per-request counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_answer_carries_its_final_booked_energy() {
    let (up, _fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 2, |_| {}).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    // Let the actuator take its first power readings.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut sum = 0.0;
    for _ in 0..6 {
        let r = client().post(&url).json(&body(false, 5, 40)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let header: f64 = r.headers()["x-energy-joules"].to_str().unwrap().parse().unwrap();
        let v: Value = r.json().await.unwrap();
        let in_body = v["usage"]["energy_joules"].as_f64().unwrap();
        assert!((header - in_body).abs() < 1e-5, "{header} vs {in_body}");
        assert!(header > 0.0, "a 40 ms request on a powered GPU spends energy");
        sum += header;
    }
    let booked = gw.metrics().request_energy_j.get();
    assert!((sum - booked).abs() <= 1e-4 * booked.max(1e-9) + 6e-6, "headers {sum} J vs booked {booked} J");
    gw.shutdown();
    gw.join().await.unwrap();
}

/// Reads from a raw connection until it closes or `limit` passes; returns what came and whether
/// it closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// Slow-header clients are cut off, an idle flood beyond the connection cap is answered 503 and
/// cleared by the idle timeout (the gateway stays reachable), and a stream whose upstream goes
/// silent ends with an error event after the stream idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_and_timeouts_keep_the_gateway_reachable() {
    use tokio::io::AsyncWriteExt as _;
    let (up, _fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 2, |c| {
        c.header_read_timeout_s = 0.3;
        c.idle_timeout_s = 0.6;
        c.stream_idle_timeout_s = 0.3;
        c.max_connections = 6;
    })
    .await;
    let addr = gw.addr();
    // A client that never finishes its headers.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "a slow-header client was not cut off");

    // An idle flood: the cap's worth are held (until the idle timeout), the rest answered 503.
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let m = Arc::clone(gw.metrics());
    wait_for("the flood to be accepted", || m.connections.load(Ordering::SeqCst) == 6).await;
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (answer, closed) = read_until_closed(&mut over, Duration::from_secs(5)).await;
    assert!(closed && answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1") && answer.contains("too many connections"), "{answer}");
    // The idle connections are closed by the timeout, and the gateway answers again.
    for s in &mut idle {
        let (_, closed) = read_until_closed(s, Duration::from_secs(5)).await;
        assert!(closed, "an idle connection outlived the idle timeout");
    }
    let health = client().get(format!("http://{addr}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // A stream whose upstream stalls after its first chunk.
    let mut b = body(true, 3, 5);
    b["stall_ms"] = json!(3000);
    let started = std::time::Instant::now();
    let r = client().post(format!("http://{addr}/v1/completions")).json(&b).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("the upstream sent nothing for 0.3 s"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3), "the stall was not cut: {:?}", started.elapsed());
    gw.shutdown();
    let report = gw.join().await.unwrap();
    assert_eq!(report.failed, 1);
    assert!(m.rejected_connections.load(Ordering::SeqCst) >= 1);
}

/// Client mistakes are counted apart from upstream failures and free their slot at once; a body
/// over the limit is a JSON 413; `/v1/models` passes through; `/metrics` has the histograms, the
/// windowed SLO attainment, the build info and the GPU label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_histograms_and_build_info() {
    let (up, _fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 1, |c| {
        c.max_body_bytes = 4096;
        c.identity = energyllm_engines::live::Identity {
            actuator: "sim".into(),
            policy: "fixed".into(),
            gpu: "3".into(),
        };
    })
    .await;
    let base = format!("http://{}", gw.addr());
    let url = format!("{base}/v1/completions");
    let page =
        || async { client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap() };
    assert!(!page().await.contains("energyllm_slo_attainment_ratio"), "no attainment before any request");
    let mut bad = body(false, 2, 1);
    bad["client_error"] = json!(true);
    for _ in 0..3 {
        let r = client().post(&url).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400);
    }
    // With a batch cap of 1, a slot held by a client error would stall this one.
    let r = client().post(&url).json(&body(false, 3, 1)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let big = json!({"prompt": "x".repeat(10_000), "max_tokens": 1});
    let r = client().post(&url).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "request_too_large", "{v}");
    let models: Value = client().get(format!("{base}/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "fake");

    let text = page().await;
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("energyllm_requests_client_errors_total "), 4.0, "3 from upstream, 1 too large");
    assert_eq!(value("energyllm_requests_failed_total "), 0.0);
    assert_eq!(value("energyllm_slo_attainment_ratio "), 1.0);
    assert_eq!(value("energyllm_e2e_seconds_count "), 1.0);
    assert_eq!(value("energyllm_queue_wait_seconds_count "), 4.0, "every admitted request waited");
    assert!(value("energyllm_ttft_seconds_bucket{le=\"+Inf\"} ") == 1.0);
    assert!(text.contains("energyllm_build_info{version=\""), "{text}");
    assert!(text.contains("actuator=\"sim\",policy=\"fixed\",gpu=\"3\"} 1"), "{text}");
    assert!(text.contains("energyllm_power_watts{gpu=\"3\"} "), "{text}");
    gw.shutdown();
    let report = gw.join().await.unwrap();
    assert_eq!((report.completed, report.failed), (1, 0));
}

/// Clients that give up at every moment — queued, at admission, mid-answer — never leak a batch
/// slot: afterwards nothing is in flight or queued, and a new request is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_at_any_moment_leak_no_slot() {
    let (up, _fake) = fake_upstream().await;
    let mut gw = gateway_for(&up, 2, |_| {}).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let mut tasks = Vec::new();
    for k in 0..60u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            // Timeouts from 1 to 60 ms against 20 ms answers and a cap of 2: some leave while
            // queued, some as they are admitted, some mid-answer, some not at all.
            let c = reqwest::Client::builder().timeout(Duration::from_millis(1 + k)).build().unwrap();
            let _ = c.post(&url).json(&body(k % 2 == 0, 4, 5)).send().await.map(|r| r.bytes());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = Arc::clone(gw.metrics());
    wait_for("the gateway to settle", || {
        m.in_flight.load(Ordering::SeqCst) == 0 && m.queued.load(Ordering::SeqCst) == 0
    })
    .await;
    let r = client().post(&url).json(&body(false, 2, 1)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown();
    let report = gw.join().await.unwrap();
    assert_eq!(report.abandoned, 0, "{report:?}");
}

//! Against a real llama.cpp `llama-server` with a tiny random-weight model, both built and cached by
//! `cargo xtask llama-server`: the llamacpp adapter (plain, streaming, `/metrics`), and the
//! gateway in front of it with the simulated actuator (the cap holds on the server's own running
//! count, disconnects, the server killed mid-run). Each test starts its own server on a free
//! loopback port and kills it on drop; every loop is bounded in count and time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{json, Value};

use energyllm_core::testutil::FixedPolicy;
use energyllm_core::{
    Action, Controller, ControllerConfig, Engine as _, Mhz, Request, RequestId, RequestStatus, Timestamp,
};
use energyllm_engines::live::{
    gateway, sim_actuator, EngineKind, GatewayConfig, GatewayHandle, HttpEngine, HttpEngineConfig,
};
use energyllm_engines::llamacpp_cache::{server_binary, tiny_model};

/// A running llama-server, killed on drop.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Server {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

async fn start_server() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    start_server_on(port).await
}

/// Starts llama-server on `port` (a restart reuses its predecessor's).
async fn start_server_on(port: u16) -> Server {
    let (bin, model) = (server_binary(), tiny_model());
    assert!(
        bin.is_file() && model.is_file(),
        "llama-server ({}) or the tiny model ({}) is missing: run `cargo xtask llama-server` first \
         (it builds both into the cache; 7 to 13 minutes on 2 cores)",
        bin.display(),
        model.display()
    );
    let log = std::env::temp_dir().join(format!("energyllm-llama-server-{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(&bin)
        .args(["-m"])
        .arg(&model)
        .args(["-t", "1", "-np", "4", "-c", "32768", "--metrics", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut server = Server { child, url: format!("http://127.0.0.1:{port}"), log };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("llama-server exited ({status}) while starting:\n{}", server.log_tail());
        }
        let ok =
            client.get(format!("{}/health", server.url)).send().await.is_ok_and(|r| r.status().is_success());
        if ok {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "llama-server did not become healthy in 60 s:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn engine(url: &str) -> HttpEngine {
    HttpEngine::new(
        EngineKind::Llamacpp,
        HttpEngineConfig { url: url.into(), timeout_s: 60.0, ..Default::default() },
    )
    .unwrap()
}

fn request(id: u64, input_tokens: u32, output_tokens: u32) -> Request {
    Request { id: RequestId(id), arrival: Timestamp::ZERO, input_tokens, output_tokens }
}

async fn gateway_for(upstream: &str, batch: u32) -> GatewayHandle {
    gateway_with(upstream, batch, |_| {}).await
}

async fn gateway_with(upstream: &str, batch: u32, tweak: impl FnOnce(&mut GatewayConfig)) -> GatewayHandle {
    let mut cfg = GatewayConfig::new(EngineKind::Llamacpp, upstream);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_interval_s = 0.1;
    cfg.drain_timeout_s = 10.0;
    cfg.connect_retries = 1;
    tweak(&mut cfg);
    let ctl = ControllerConfig {
        initial: Some(Action { freq: Mhz(1410), batch }),
        decision_interval_s: Some(0.5),
        ..ControllerConfig::default()
    };
    let ctl = Controller::new(ctl, Box::new(FixedPolicy(Action { freq: Mhz(1005), batch }))).unwrap();
    gateway::start(cfg, ctl, sim_actuator("a100-40gb").unwrap()).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap()
}

/// A generation long enough (8000 tokens, several seconds) to be cut off mid-way.
const LONG: u32 = 8000;

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llamacpp_adapter_completes_streams_and_reads_metrics() {
    let server = start_server().await;
    let mut e = engine(&server.url);
    let plain = e.complete(&request(0, 8, 16), false).await.unwrap();
    assert_eq!(plain.output_tokens, 16, "ignore_eos and max_tokens are honoured");
    assert!(plain.prompt_tokens.unwrap_or(0) >= 8);
    let streamed = e.complete(&request(1, 8, 16), true).await.unwrap();
    assert_eq!(streamed.output_tokens, 16);
    // One time per token after the first, except that llama.cpp sends no event for a token that
    // ends inside a multi-byte character (the random model makes some) and sends its bytes with
    // the next: such a token has no time of its own.
    let times = streamed.token_times_s.len();
    assert!((12..=15).contains(&times), "{times} token times for 16 tokens");
    assert!(streamed.ttft_s <= streamed.e2e_s);
    assert!(streamed.token_times_s.windows(2).all(|w| w[0] <= w[1]));
    let state = e.engine_state().await.unwrap();
    assert_eq!(state.running, 0, "idle after the answers");
    let m = e.metrics().await.unwrap();
    assert!(m.sum("llamacpp:tokens_predicted_total").unwrap_or(0.0) >= 32.0, "{:?}", m.totals());

    // The chat path, plain and streamed.
    let chat = HttpEngine::new(
        EngineKind::Llamacpp,
        HttpEngineConfig { url: server.url.clone(), timeout_s: 60.0, chat: true, ..Default::default() },
    )
    .unwrap();
    for stream in [false, true] {
        let c = chat.complete(&request(2, 8, 12), stream).await.unwrap();
        assert_eq!(c.output_tokens, 12, "chat, stream={stream}");
    }
    // `/slots`: the four slots (-np 4), alike, none busy now.
    let slots = e.slots().await.unwrap();
    assert_eq!((slots.slots, slots.busy), (4, 0), "{slots:?}");
    assert!(slots.ctx_tokens > 0 && slots.ctx_tokens % 4 == 0 && slots.kv_usage_frac() == 0.0, "{slots:?}");
    // The server's own time per token: llama.cpp exports totals, which give a mean.
    let itl = e.latency().await.unwrap().itl_s.unwrap();
    assert!(itl.count >= 56.0 && itl.mean().unwrap() > 0.0, "{itl:?}");

    let batch = [request(10, 4, 8), request(11, 16, 4), request(12, 1, 12)];
    let records = e.run_batch(&batch).await.unwrap();
    assert_eq!(records.iter().map(|r| r.output_tokens).collect::<Vec<_>>(), [8, 4, 12]);
    assert!(records
        .iter()
        .all(|r| r.status == RequestStatus::Completed && r.first_token_s <= r.completion_s));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_holds_the_cap_on_the_servers_own_count() {
    let server = start_server().await;
    let mut gw = gateway_for(&server.url, 2).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let body = json!({"prompt": "hello hello hello", "max_tokens": 200, "ignore_eos": true,
                                  "stream": i % 2 == 0, "stream_options": {"include_usage": true}});
                let r = client().post(&url).json(&body).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    // Watch the server's own running count while the requests go through.
    let e = engine(&server.url);
    let mut max_running = 0;
    let mut samples = 0;
    while !tasks.iter().all(|t| t.is_finished()) && samples < 2000 {
        if let Ok(s) = e.engine_state().await {
            max_running = max_running.max(s.running);
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        let (status, text) = t.await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("\"completion_tokens\":200"), "{text}");
    }
    assert!(max_running <= 2, "llama-server ran {max_running} at once under a cap of 2");
    // The upstream's own time per token and token total reach the gateway's page (scraped every
    // 0.1 s; the total reaches all six answers once a scrape follows the last one).
    let page_url = format!("http://{}/metrics", gw.addr());
    let generated = |page: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix("energyllm_upstream_generated_tokens_total "))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let mut page = String::new();
    for _ in 0..100 {
        page = client().get(&page_url).send().await.unwrap().text().await.unwrap();
        if page.contains("energyllm_upstream_itl_seconds{stat=\"mean\"}") && generated(&page) >= Some(1200.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(page.contains("energyllm_upstream_itl_seconds{stat=\"mean\"}"), "{page}");
    assert!(generated(&page) >= Some(1200.0), "six answers of 200 tokens:\n{page}");
    assert!(gw.metrics().max_in_flight.load(Ordering::SeqCst) <= 2);
    assert!(samples > 0);
    gw.shutdown();
    let report = gw.join().await.unwrap();
    assert_eq!((report.completed, report.failed, report.cancelled), (6, 0, 0));
    assert!(report.actuator.clocks_restored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_ends_the_request_and_frees_the_server() {
    let server = start_server().await;
    let mut gw = gateway_for(&server.url, 1).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let body = json!({"prompt": "hello", "max_tokens": LONG, "ignore_eos": true, "stream": true});
    let r = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    assert!(!s.next().await.unwrap().unwrap().is_empty());
    // Mid-generation, `/slots` shows the busy slot and the context it holds.
    let busy = engine(&server.url).slots().await.unwrap();
    assert_eq!(busy.busy, 1, "{busy:?}");
    assert!(busy.used_tokens > 0 && busy.kv_usage_frac() > 0.0, "{busy:?}");
    drop(s);
    let m = Arc::clone(gw.metrics());
    wait_for("the gateway to end the request", || m.in_flight.load(Ordering::SeqCst) == 0).await;
    assert_eq!(m.cancelled.load(Ordering::SeqCst), 1);
    let e = engine(&server.url);
    let mut idle = false;
    for _ in 0..800 {
        if e.engine_state().await.unwrap().running == 0 {
            idle = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(idle, "llama-server is still generating for a client that left");
    // Counted, not timed: had the server not been told, it would have generated all LONG tokens.
    let generated = e.metrics().await.unwrap().sum("llamacpp:tokens_predicted_total").unwrap();
    assert!(generated < f64::from(LONG), "llama-server generated {generated} tokens for a client that left");
    let ok = client().post(&url).json(&json!({"prompt": "hi", "max_tokens": 4})).send().await.unwrap();
    assert_eq!(ok.status(), 200, "the slot was not freed");
    gw.shutdown();
    gw.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_server_mid_run_loses_no_admitted_request() {
    let mut server = start_server().await;
    let mut gw = gateway_for(&server.url, 2).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let mut streams = Vec::new();
    for _ in 0..2 {
        let body = json!({"prompt": "hello", "max_tokens": LONG, "ignore_eos": true, "stream": true});
        let r = client().post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let mut s = r.bytes_stream();
        assert!(!s.next().await.unwrap().unwrap().is_empty());
        streams.push(s);
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for mut s in streams {
        let mut rest = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(Ok(chunk)) = s.next().await {
            rest.extend_from_slice(&chunk);
            assert!(Instant::now() < deadline, "the stream did not end after the server died");
        }
        let text = String::from_utf8_lossy(&rest);
        assert!(text.contains("upstream_error"), "the client was not told the upstream died: {text}");
    }
    let r = client().post(&url).json(&json!({"prompt": "hi", "max_tokens": 4})).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("unavailable"), "{v}");
    gw.shutdown();
    let report = gw.join().await.unwrap();
    assert_eq!((report.completed, report.failed, report.abandoned), (0, 3, 0), "{report:?}");
    assert!(report.actuator.clocks_restored);
}

/// Under load, the server is killed and restarted on the same port: every request gets exactly
/// one answer (success or a clear error), none hangs, `/ready` falls and rises with the server,
/// and traffic flows again after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_and_restarted_under_load_answers_every_request_once() {
    let mut server = start_server().await;
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let mut gw = gateway_for(&server.url, 2).await;
    let base = format!("http://{}", gw.addr());
    let ready = || async { client().get(format!("{base}/ready")).send().await.unwrap().status().as_u16() };
    for _ in 0..100 {
        if ready().await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready().await, 200, "ready before the fault");
    // Twelve clients, each sending requests back to back for the whole run.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for k in 0..12u64 {
        let (url, stop) = (format!("{base}/v1/completions"), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let body = json!({"prompt": "hello", "max_tokens": 16 + k, "stream": k % 2 == 0});
                let r = client().post(&url).json(&body).send().await.expect("every request gets an answer");
                let status = r.status().as_u16();
                let text = r.text().await.expect("every answer ends");
                // A stream that broke mid-way says so in an error event.
                let ok = status == 200 && !text.contains("upstream_error");
                statuses.push((status, ok));
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let m = Arc::clone(gw.metrics());
    wait_for("a failure to be counted", || m.failed.load(Ordering::SeqCst) > 0).await;
    let mut down = 0;
    for _ in 0..100 {
        if ready().await == 503 {
            down += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(down, 1, "/ready stayed 200 with the server dead");
    let server = start_server_on(port).await;
    let completed_at_restart = m.completed.load(Ordering::SeqCst);
    wait_for("requests to complete after the restart", || {
        m.completed.load(Ordering::SeqCst) > completed_at_restart + 5
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut answered = 0u64;
    let mut ok = 0u64;
    for c in clients {
        let statuses =
            tokio::time::timeout(Duration::from_secs(60), c).await.expect("a client hung").unwrap();
        answered += statuses.len() as u64;
        ok += statuses.iter().filter(|(_, ok)| *ok).count() as u64;
        for (status, _) in statuses {
            assert!([200, 502, 503, 504].contains(&status), "unexpected status {status}");
        }
    }
    for _ in 0..100 {
        if ready().await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready().await, 200, "ready again after the restart");
    gw.shutdown();
    let report = gw.join().await.unwrap();
    // Each request was counted once: completed, failed or cancelled, nothing abandoned.
    assert_eq!(report.completed + report.failed + report.cancelled, answered, "{report:?}");
    assert_eq!(report.completed, ok, "{report:?}");
    assert!(report.failed > 0 && report.abandoned == 0, "{report:?}");
    drop(server);
}

/// A frozen server (SIGSTOP) holds a started stream: the gateway ends it with an error after
/// the stream idle timeout, answers new requests within the upstream timeout, and serves again
/// once the server thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_cut_off_by_the_timeouts() {
    let server = start_server().await;
    let mut gw = gateway_with(&server.url, 2, |c| {
        c.stream_idle_timeout_s = 1.0;
        c.upstream_timeout_s = 2.0;
    })
    .await;
    let url = format!("http://{}/v1/completions", gw.addr());
    let body = json!({"prompt": "hello", "max_tokens": LONG, "ignore_eos": true, "stream": true});
    let r = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    assert!(!s.next().await.unwrap().unwrap().is_empty());
    let pid = server.child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, pid.as_str()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    };
    signal("-STOP");
    let frozen_at = Instant::now();
    let mut rest = Vec::new();
    while let Some(Ok(chunk)) = s.next().await {
        rest.extend_from_slice(&chunk);
        assert!(frozen_at.elapsed() < Duration::from_secs(30), "the stream outlived the freeze");
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("the upstream sent nothing for 1 s"), "{text}");
    // A new request reaches the frozen server (the kernel still accepts) and times out.
    let r = client().post(&url).json(&json!({"prompt": "hi", "max_tokens": 4})).send().await.unwrap();
    assert_eq!(r.status(), 504);
    signal("-CONT");
    let mut status = 0;
    for _ in 0..20 {
        let r = client().post(&url).json(&json!({"prompt": "hi", "max_tokens": 4})).send().await.unwrap();
        status = r.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 200, "the thawed server serves again");
    gw.shutdown();
    let report = gw.join().await.unwrap();
    assert!(report.failed >= 2 && report.completed >= 1, "{report:?}");
}

/// The energy identity against the real server: the energies the answers carry add up to the
/// gateway's per-request counter within 1%, and that never exceeds the GPU's total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_the_booked_energy_within_one_percent() {
    let server = start_server().await;
    let gw = gateway_for(&server.url, 4).await;
    let url = format!("http://{}/v1/completions", gw.addr());
    // Let the actuator take its first power readings.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tasks = Vec::new();
    for k in 0..8u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"prompt": "hello there", "max_tokens": 24 + 8 * k});
            let r = client().post(&url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let header: f64 = r.headers()["x-energy-joules"].to_str().unwrap().parse().unwrap();
            let v: Value = r.json().await.unwrap();
            let in_body = v["usage"]["energy_joules"].as_f64().unwrap();
            assert!((in_body - header).abs() <= 1e-9 * header.max(1.0), "{in_body} vs {header}");
            header
        }));
    }
    let mut sum = 0.0;
    for t in tasks {
        sum += t.await.unwrap();
    }
    let m = Arc::clone(gw.metrics());
    let booked = m.request_energy_j.get();
    assert!(sum > 0.0 && (sum - booked).abs() <= 0.01 * booked, "answers {sum} J, booked {booked} J");
    assert!(booked <= m.energy_total_j.get() + 1e-9, "booked more than the GPU spent");
    let mut gw = gw;
    gw.shutdown();
    gw.join().await.unwrap();
}

/// An idle flood beyond the connection cap leaves the gateway reachable: the extra connections
/// get 503, the idle ones close after the idle timeout, and requests flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_does_not_lock_clients_out() {
    let server = start_server().await;
    let mut gw = gateway_with(&server.url, 2, |c| {
        c.max_connections = 32;
        c.idle_timeout_s = 1.0;
        c.header_read_timeout_s = 1.0;
    })
    .await;
    let addr = gw.addr();
    let mut flood = Vec::new();
    for _ in 0..64 {
        flood.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let m = Arc::clone(gw.metrics());
    wait_for("the extra connections to be refused", || m.rejected_connections.load(Ordering::SeqCst) >= 32)
        .await;
    wait_for("the idle connections to close", || m.connections.load(Ordering::SeqCst) == 0).await;
    let r = client()
        .post(format!("http://{addr}/v1/completions"))
        .json(&json!({"prompt": "hi", "max_tokens": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(flood);
    gw.shutdown();
    assert_eq!(gw.join().await.unwrap().completed, 1);
}

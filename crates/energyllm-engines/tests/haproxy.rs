//! The real HAProxy (Debian's `haproxy`) in front of two gateways, weighing them by the agent
//! check each answers from its endpoint score. Traffic shifts away from the gateway that has no
//! SLO slack, and none goes to a draining one. Skipped with a message when `haproxy` is not
//! installed, unless ENERGYLLM_REQUIRE_HAPROXY is set (CI sets it and installs the package).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use energyllm_core::testutil::FixedPolicy;
use energyllm_core::{Action, ActionSpace, Controller, ControllerConfig, Mhz, Slo};
use energyllm_engines::live::{gateway, sim_actuator, EngineKind, GatewayConfig, GatewayHandle, ScoreModel};
use energyllm_engines::{AnalyticPerfModel, IterationModel, ModelSpec};
use energyllm_hw::GpuSpec;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An upstream that answers after `delay_ms` from the body (default 2).
async fn upstream() -> String {
    let app = Router::new()
        .route(
            "/v1/completions",
            post(|body: Bytes| async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                tokio::time::sleep(Duration::from_millis(v["delay_ms"].as_u64().unwrap_or(2))).await;
                axum::Json(json!({"choices": [{"text": "x", "index": 0}], "usage": {"prompt_tokens": 2, "completion_tokens": 16}}))
            }),
        )
        .route("/metrics", get(|| async { "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// A gateway with a batch cap of 1, a 30 s end-to-end SLO, the A100/Llama-3.1-8B performance
/// model behind its score, and an agent check on `agent_port`.
async fn gateway_with_agent(up: &str, agent_port: u16) -> GatewayHandle {
    let mut cfg = GatewayConfig::new(EngineKind::Vllm, up);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_interval_s = 0.1;
    cfg.drain_timeout_s = 20.0;
    cfg.agent_check = Some(format!("127.0.0.1:{agent_port}").parse().unwrap());
    let (gpu, model) = (GpuSpec::builtin("a100-40gb").unwrap(), ModelSpec::builtin("llama-3.1-8b").unwrap());
    cfg.score_model = Some(ScoreModel {
        perf: Arc::new(AnalyticPerfModel::new(model, gpu, IterationModel::default())),
        idle_power_w: 60.0,
        slo_margin: 0.4,
    });
    let ctl = ControllerConfig {
        action_space: ActionSpace::new(vec![Mhz(1410)], vec![1]).unwrap(),
        initial: Some(Action { freq: Mhz(1410), batch: 1 }),
        slo: Slo::e2e(30.0),
        decision_interval_s: Some(0.1),
        ..ControllerConfig::default()
    };
    let ctl = Controller::new(ctl, Box::new(FixedPolicy(Action { freq: Mhz(1410), batch: 1 }))).unwrap();
    gateway::start(cfg, ctl, sim_actuator("a100-40gb").unwrap()).await.unwrap()
}

struct Haproxy(Child);
impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command's answer on HAProxy's admin socket.
fn haproxy_says(socket: &std::path::Path, command: &str) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else { return "no admin socket".into() };
    let _ = s.write_all(format!("{command}\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Sessions HAProxy has sent to servers a and b so far (`show stat`'s `stot`).
fn sessions(admin: &std::path::Path) -> (u64, u64) {
    let stat = haproxy_says(admin, "show stat");
    let header: Vec<&str> = stat.lines().next().unwrap_or("").trim_start_matches("# ").split(',').collect();
    let col = header.iter().position(|h| *h == "stot").expect("a stot column");
    let count = |server: &str| {
        stat.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"gateways") && f.get(1) == Some(&server))
            .and_then(|f| f.get(col).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    };
    (count("a"), count("b"))
}

fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

async fn page(gw: &GatewayHandle) -> String {
    reqwest::get(format!("http://{}/metrics", gw.addr())).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_weighs_gateways_by_their_score_and_skips_a_draining_one() {
    let installed = Command::new("haproxy").arg("-v").output().is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("ENERGYLLM_REQUIRE_HAPROXY").is_none(),
            "haproxy is required here but not installed"
        );
        eprintln!("skipped: haproxy is not installed (apt-get install haproxy)");
        return;
    }
    let up = upstream().await;
    let (agent_a, agent_b) = (free_port(), free_port());
    let mut a = gateway_with_agent(&up, agent_a).await;
    let mut b = gateway_with_agent(&up, agent_b).await;
    let front = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 256\n  stats socket {} mode 600 level admin\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
             frontend f\n  bind 127.0.0.1:{front}\n  default_backend gateways\n\
             backend gateways\n  balance roundrobin\n\
             \x20 server a {} weight 100 check inter 100 agent-check agent-port {agent_a} agent-inter 100\n\
             \x20 server b {} weight 100 check inter 100 agent-check agent-port {agent_b} agent-inter 100\n",
            dir.path().join("admin.sock").display(),
            a.addr(),
            b.addr()
        ),
    )
    .unwrap();
    let check = Command::new("haproxy").arg("-c").arg("-f").arg(&cfg).output().unwrap();
    assert!(check.status.success(), "{check:?}");
    let _haproxy = Haproxy(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let url = format!("http://127.0.0.1:{front}/v1/completions");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.post(&url).json(&json!({"prompt": "x", "max_tokens": 16})).send().await.is_err() {
        assert!(Instant::now() < deadline, "haproxy did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Load b directly: a queue of slow requests behind its cap of 1 leaves it no SLO slack.
    let b_url = format!("http://{}/v1/completions", b.addr());
    let mut held = Vec::new();
    for _ in 0..30 {
        let (c, u) = (client.clone(), b_url.clone());
        held.push(tokio::spawn(async move {
            let _ = c.post(&u).json(&json!({"prompt": "x", "max_tokens": 400, "delay_ms": 600})).send().await;
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (sa, sb) = (
            metric(&page(&a).await, "energyllm_endpoint_score "),
            metric(&page(&b).await, "energyllm_endpoint_score "),
        );
        if sb < 0.5 && sa > 0.5 {
            break;
        }
        assert!(Instant::now() < deadline, "scores never parted: a {sa}, b {sb}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let HAProxy's agent checks (every 100 ms) pick up the weights.
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Where HAProxy sends each request, by its own counters; one that lands on the loaded
    // gateway waits in its queue, so the client gives up on it after a second.
    let admin = dir.path().join("admin.sock");
    let before = sessions(&admin);
    let quick = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    for _ in 0..40 {
        let _ = quick.post(&url).json(&json!({"prompt": "x", "max_tokens": 16})).send().await;
    }
    let after = sessions(&admin);
    let (to_a, to_b) = (after.0 - before.0, after.1 - before.1);
    let state = haproxy_says(&admin, "show servers state gateways");
    eprintln!("haproxy sent {to_a} requests to the gateway with slack and {to_b} to the loaded one");
    assert_eq!(to_a + to_b, 40);
    assert!(to_a >= 34, "{to_a} of 40 requests went to the gateway with slack; haproxy:\n{state}");
    for h in held {
        h.await.unwrap();
    }

    // Drain a while it holds one long request: new traffic goes to b only.
    let a_url = format!("http://{}/v1/completions", a.addr());
    let long = {
        let (c, u) = (client.clone(), a_url.clone());
        tokio::spawn(async move {
            c.post(&u)
                .json(&json!({"prompt": "x", "max_tokens": 16, "delay_ms": 3000}))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let m = Arc::clone(a.metrics());
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.in_flight.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the long request was not admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let b_before = b.metrics().completed.load(Ordering::SeqCst);
    for _ in 0..10 {
        let r = client.post(&url).json(&json!({"prompt": "x", "max_tokens": 16})).send().await.unwrap();
        assert_eq!(r.status(), 200, "a request reached the draining gateway");
    }
    assert_eq!(b.metrics().completed.load(Ordering::SeqCst) - b_before, 10);
    assert_eq!(m.rejected_draining.load(Ordering::SeqCst), 0, "HAProxy sent traffic to a draining gateway");
    assert_eq!(long.await.unwrap().unwrap(), 200, "the draining gateway finished its request");
    a.join().await.unwrap();
    b.shutdown();
    b.join().await.unwrap();
}

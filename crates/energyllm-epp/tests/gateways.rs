//! The picker in front of real gateways, each fronting its own real llama.cpp `llama-server`
//! (the tiny random-weight model `cargo xtask llama-server` builds and caches). The test plays
//! Envoy: it asks the picker over gRPC, sends the request to the endpoint it names, and reports
//! which endpoint served. Traffic moves to the gateway with SLO headroom while the other is
//! loaded past its slack, and away from a draining gateway; with no gateway left it is 503.
//! Feature `live-tests`; CI runs it after building the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, health, Answer, Ask, Stream};
use energyllm_core::testutil::FixedPolicy;
use energyllm_core::{Action, ActionSpace, Controller, ControllerConfig, Mhz, Slo};
use energyllm_engines::live::{gateway, sim_actuator, EngineKind, GatewayConfig, GatewayHandle, ScoreModel};
use energyllm_engines::llamacpp_cache::{server_binary, tiny_model};
use energyllm_engines::{AnalyticPerfModel, IterationModel, ModelSpec};
use energyllm_epp::{start, EppConfig, Pool};
use energyllm_hw::GpuSpec;

/// A llama-server with one slot, killed on drop.
struct LlamaServer {
    child: Child,
    url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn llama_server() -> LlamaServer {
    let (bin, model) = (server_binary(), tiny_model());
    assert!(
        bin.is_file() && model.is_file(),
        "llama-server ({}) or its tiny model ({}) is missing: run `cargo xtask llama-server` first",
        bin.display(),
        model.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&bin)
        .arg("-m")
        .arg(&model)
        .args(["-t", "1", "-np", "1", "-c", "8192", "--metrics", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = LlamaServer { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(format!("{}/health", server.url)).await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "llama-server did not become healthy in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server
}

/// A gateway with a batch cap of 1, a 30 s end-to-end SLO and the A100/Llama-3.1-8B model
/// behind its score, as `energyllm serve` sets it up.
async fn gateway(upstream: &str) -> GatewayHandle {
    let mut cfg = GatewayConfig::new(EngineKind::Llamacpp, upstream);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_interval_s = 0.1;
    cfg.drain_timeout_s = 30.0;
    let (gpu, model) = (GpuSpec::builtin("a100-40gb").unwrap(), ModelSpec::builtin("llama-3.1-8b").unwrap());
    cfg.score_model = Some(ScoreModel {
        perf: Arc::new(AnalyticPerfModel::new(model, gpu, IterationModel::default())),
        idle_power_w: 60.0,
        slo_margin: 0.4,
    });
    let action = Action { freq: Mhz(1410), batch: 1 };
    let ctl = ControllerConfig {
        action_space: ActionSpace::new(vec![Mhz(1410)], vec![1]).unwrap(),
        initial: Some(action),
        slo: Slo::e2e(30.0),
        decision_interval_s: Some(0.1),
        ..ControllerConfig::default()
    };
    let ctl = Controller::new(ctl, Box::new(FixedPolicy(action))).unwrap();
    gateway::start(cfg, ctl, sim_actuator("a100-40gb").unwrap()).await.unwrap()
}

/// Sends a completion straight to a gateway; its HTTP status.
async fn complete(client: &reqwest::Client, addr: &str, body: Vec<u8>) -> u16 {
    let r = client
        .post(format!("http://{addr}/v1/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    status
}

/// One request as Envoy handles it: ask the picker, send the (handed-back) body to the first
/// endpoint, report it as served. The endpoint and the gateway's status.
async fn through_envoy(client: &reqwest::Client, epp: std::net::SocketAddr, ask: &Ask) -> (String, u16) {
    let (answer, stream) = Stream::ask(epp, ask).await;
    let Answer::Route { endpoints, body } = &answer else { panic!("expected a route, got {answer:?}") };
    let first = endpoints.split(',').next().unwrap().to_owned();
    let status = complete(client, &first, body.clone()).await;
    stream.respond(&first, b"{}").await;
    (first, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traffic_follows_the_score_to_headroom_and_away_from_a_draining_gateway() {
    let (la, lb) = (llama_server().await, llama_server().await);
    let (mut ga, mut gb) = (gateway(&la.url).await, gateway(&lb.url).await);
    let (a, b) = (ga.addr().to_string(), gb.addr().to_string());
    let pool = Pool::from_addresses(&[a.clone(), b.clone()]).unwrap();
    let mut cfg = EppConfig::new("127.0.0.1:0".parse().unwrap(), pool);
    cfg.refresh = Duration::from_millis(50);
    cfg.policy.stale_after = Duration::from_secs(1);
    cfg.shutdown_grace = Duration::ZERO;
    let epp = start(cfg).await.unwrap();
    eventually("readiness", || async { health(epp.addr, "readiness").await == Ok(1) }).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let small = Ask::completion("hello", 8);

    // Idle and alike, the two score the same, and the tie goes to the first: consolidating on
    // one instance is the cheaper choice while it has slack.
    let (first, status) = through_envoy(&client, epp.addr, &small).await;
    assert_eq!((first, status), (a.clone(), 200));

    // Load A past its slack: four long answers at a batch cap of 1 queue three deep.
    let long = serde_json::json!({"prompt": "tell me everything", "max_tokens": 3000, "ignore_eos": true})
        .to_string();
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, a, body) = (client.clone(), a.clone(), long.clone().into_bytes());
            tokio::spawn(async move { complete(&client, &a, body).await })
        })
        .collect();
    let state = |gateway: &str| epp.board().member(gateway.parse().unwrap()).unwrap().state;
    eventually("A's score below B's", || async {
        let (sa, sb) = (state(&a), state(&b));
        sa.load >= 3.0 && sa.score < 0.5 && sb.score > 0.5
    })
    .await;
    let mut to_b = 0;
    for _ in 0..10 {
        let (first, status) = through_envoy(&client, epp.addr, &small).await;
        assert_eq!(status, 200);
        to_b += usize::from(first == b);
    }
    let still_loaded = state(&a).load >= 1.0;
    eprintln!("{to_b} of 10 requests went to the gateway with headroom");
    assert!(to_b >= 9, "{to_b} of 10 requests went to the gateway with headroom");
    assert!(still_loaded, "A's load ended before the 10 requests did; the test proves nothing");
    let served_b = epp.board().member(b.parse().unwrap()).unwrap().served;
    assert_eq!(served_b, to_b as u64, "the proxy's served reports are counted");
    for l in load {
        assert_eq!(l.await.unwrap(), 200);
    }

    // Drain B with a long answer in flight: its page says not ready, so everything goes to A.
    let in_flight = {
        let (client, b, body) = (client.clone(), b.clone(), long.clone().into_bytes());
        tokio::spawn(async move { complete(&client, &b, body).await })
    };
    eventually("B busy", || async { state(&b).load >= 1.0 }).await;
    gb.shutdown();
    eventually("B draining", || async { !state(&b).ready }).await;
    for _ in 0..5 {
        assert_eq!(through_envoy(&client, epp.addr, &small).await, (a.clone(), 200));
    }
    assert_eq!(in_flight.await.unwrap(), 200, "the draining gateway finishes what it holds");
    gb.join().await.unwrap();

    // With A gone too, nothing is left: 503 once two reads of A's page have failed.
    ga.shutdown();
    ga.join().await.unwrap();
    eventually("503", || async {
        matches!(Stream::ask(epp.addr, &small).await.0, Answer::Immediate { status: 503, .. })
    })
    .await;
    epp.stop().await.unwrap();
}

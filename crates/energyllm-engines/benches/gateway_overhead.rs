//! Gateway overhead against a fast upstream on loopback, as a ratio to calling the upstream
//! directly in the same run: added p50/p99 latency (sequential requests) and requests/s with many
//! concurrent clients. Upstream, gateway and client share the process and the machine's cores,
//! so absolute numbers understate a deployment; the ratio is the figure to watch.
//!
//! `cargo bench -p energyllm-engines --features live --bench gateway_overhead [-- SECONDS]`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;

use energyllm_core::testutil::FixedPolicy;
use energyllm_core::{Action, Controller, ControllerConfig, Mhz};
use energyllm_engines::live::{gateway, sim_actuator, EngineKind, GatewayConfig};

const ANSWER: &str = r#"{"id":"x","object":"text_completion","choices":[{"text":"hi","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}"#;
const BODY: &str = r#"{"prompt":"hello","max_tokens":1}"#;

async fn upstream() -> String {
    let app = Router::new()
        .route("/v1/completions", post(|| async { ([("content-type", "application/json")], ANSWER) }))
        .route("/metrics", get(|| async { "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn latencies(client: &reqwest::Client, url: &str, n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.post(url).header("content-type", "application/json").body(BODY).send().await.unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v
}

async fn throughput(url: &str, clients: usize, secs: f64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (url, done) = (url.to_owned(), Arc::clone(&done));
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                while Instant::now() < until {
                    let r = c.post(&url).header("content-type", "application/json").body(BODY).send().await;
                    if let Ok(r) = r {
                        if r.status().is_success() && r.bytes().await.is_ok() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let t = Instant::now();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let up = upstream().await;
        let mut cfg = GatewayConfig::new(EngineKind::Vllm, &up);
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.max_queue = 100_000;
        let batch = 64;
        let ctl = ControllerConfig {
            initial: Some(Action { freq: Mhz(1410), batch }),
            ..ControllerConfig::default()
        };
        let ctl = Controller::new(ctl, Box::new(FixedPolicy(Action { freq: Mhz(1410), batch }))).unwrap();
        let mut gw = gateway::start(cfg, ctl, sim_actuator("a100-40gb").unwrap()).await.unwrap();
        let direct = format!("{up}/v1/completions");
        let via = format!("http://{}/v1/completions", gw.addr());
        let client = reqwest::Client::new();
        latencies(&client, &direct, 200).await;
        latencies(&client, &via, 200).await;
        // Interleaved blocks, so drift in machine load hits both sides alike.
        let (mut d, mut g) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            d.extend(latencies(&client, &direct, 300).await);
            g.extend(latencies(&client, &via, 300).await);
        }
        d.sort_by(f64::total_cmp);
        g.sort_by(f64::total_cmp);
        let rps_direct = throughput(&direct, 64, secs).await;
        let rps_via = throughput(&via, 64, secs).await;
        println!("| path | p50 µs | p99 µs | req/s (64 clients, {secs} s) |");
        println!("|---|---:|---:|---:|");
        println!("| direct | {:.0} | {:.0} | {:.0} |", pct(&d, 0.5), pct(&d, 0.99), rps_direct);
        println!("| via gateway | {:.0} | {:.0} | {:.0} |", pct(&g, 0.5), pct(&g, 0.99), rps_via);
        println!(
            "added latency: p50 {:.0} µs, p99 {:.0} µs; throughput ratio {:.2}",
            pct(&g, 0.5) - pct(&d, 0.5),
            pct(&g, 0.99) - pct(&d, 0.99),
            rps_via / rps_direct
        );
        gw.shutdown();
        let r = gw.join().await.unwrap();
        println!("gateway: {} completed, {} failed, {} cancelled", r.completed, r.failed, r.cancelled);
    });
}

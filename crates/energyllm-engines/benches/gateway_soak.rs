//! Soak: many concurrent streams through the gateway for minutes, against a fast in-process
//! upstream that streams like an engine (a first token after 10 ms, then a token every 50 ms).
//! First the same streams call the upstream directly for a while, for the time to first token
//! without the gateway under the same load. Then, every ten seconds through the gateway, it
//! prints the process's resident memory, the requests answered, and the p50/p99 time to first
//! token the clients saw. The latency the gateway adds is the difference between the two. At
//! the end it checks that every request sent got exactly one answer.
//!
//! Upstream, gateway and clients share the process and its cores, so the memory figure covers
//! all three and the latency includes their contention; the trend (flat memory, no loss) is the
//! result, and the added latency is an upper bound.
//!
//! `cargo bench -p energyllm-engines --features live --bench gateway_soak [-- SECONDS [STREAMS]]`
//! (default 600 s, 1000 streams).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt as _;

use energyllm_core::testutil::FixedPolicy;
use energyllm_core::{Action, ActionSpace, Controller, ControllerConfig, Mhz};
use energyllm_engines::live::{gateway, sim_actuator, AccessLog, EngineKind, GatewayConfig};

const TOKENS: u64 = 20;
const FIRST_MS: u64 = 10;
const EVERY_MS: u64 = 50;

async fn stream() -> Response {
    let s = futures_util::stream::unfold(0u64, |i| async move {
        if i > TOKENS {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(if i == 0 { FIRST_MS } else { EVERY_MS })).await;
        let chunk = if i == TOKENS {
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":20}}\n\ndata: [DONE]\n\n"
                .to_owned()
        } else {
            "data: {\"choices\":[{\"text\":\"x\",\"index\":0}]}\n\n".to_owned()
        };
        Some((Ok::<_, Infallible>(Bytes::from(chunk)), i + 1))
    });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(s)).unwrap()
}

async fn upstream() -> String {
    let app = Router::new()
        .route("/v1/completions", post(stream))
        .route("/metrics", get(|| async { "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// Resident memory of this process, in MiB (Linux).
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(f64::NAN);
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// Run-wide times to first token in 0.1 ms buckets up to 10 s (constant memory, so that the
/// benchmark itself does not grow while it measures growth).
struct RunHistogram(Vec<u64>);

impl RunHistogram {
    const BUCKET_MS: f64 = 0.1;
    fn new() -> Self {
        RunHistogram(vec![0; 100_001])
    }
    fn add(&mut self, ms: f64) {
        let k = ((ms / Self::BUCKET_MS).max(0.0) as usize).min(self.0.len() - 1);
        self.0[k] += 1;
    }
    fn count(&self) -> u64 {
        self.0.iter().sum()
    }
    /// The upper edge of the bucket holding quantile `p`, in milliseconds.
    fn quantile(&self, p: f64) -> f64 {
        let target = (p * self.count() as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (k, &n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= target {
                return (k + 1) as f64 * Self::BUCKET_MS;
            }
        }
        f64::NAN
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    answered: AtomicU64,
    complete: AtomicU64,
    /// Added time to first token of the answers in the current window, in milliseconds.
    window_ms: Mutex<Vec<f64>>,
}

async fn client_loop(url: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let body = r#"{"prompt":"hello","max_tokens":20,"stream":true}"#;
    while !stop.load(Ordering::Relaxed) {
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let sent = client.post(&url).header("content-type", "application/json").body(body).send().await;
        let Ok(r) = sent else {
            tally.answered.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let ok = r.status().is_success();
        let mut s = r.bytes_stream();
        let mut first = None;
        let mut text = Vec::new();
        while let Some(chunk) = s.next().await {
            let Ok(chunk) = chunk else { break };
            first.get_or_insert_with(|| t.elapsed());
            text.extend_from_slice(&chunk);
        }
        tally.answered.fetch_add(1, Ordering::Relaxed);
        if ok && text.ends_with(b"data: [DONE]\n\n") {
            tally.complete.fetch_add(1, Ordering::Relaxed);
            if let Some(f) = first {
                tally.window_ms.lock().unwrap().push(f.as_secs_f64() * 1e3);
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<f64>().ok());
    let secs = args.next().unwrap_or(600.0);
    let streams = args.next().unwrap_or(1000.0) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let up = upstream().await;
        let mut cfg = GatewayConfig::new(EngineKind::Vllm, &up);
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.max_queue = 100_000;
        cfg.max_connections = 4 * streams;
        cfg.access_log = AccessLog::Off;
        // A cap above the streams, so that the gateway never queues: what is measured is its
        // pass-through, not the queue.
        let batch = 1024;
        let ctl = ControllerConfig {
            action_space: ActionSpace::new(vec![Mhz(1410)], vec![batch]).unwrap(),
            initial: Some(Action { freq: Mhz(1410), batch }),
            ..ControllerConfig::default()
        };
        let ctl = Controller::new(ctl, Box::new(FixedPolicy(Action { freq: Mhz(1410), batch }))).unwrap();
        let mut gw = gateway::start(cfg, ctl, sim_actuator("a100-40gb").unwrap()).await.unwrap();

        // The baseline: the same streams straight to the upstream (the first 10 s are warm-up).
        let baseline_s = (secs / 5.0).clamp(10.0, 60.0) + 10.0;
        let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
        let direct = format!("{up}/v1/completions");
        let clients: Vec<_> = (0..streams)
            .map(|_| tokio::spawn(client_loop(direct.clone(), Arc::clone(&tally), Arc::clone(&stop))))
            .collect();
        tokio::time::sleep(Duration::from_secs(10)).await;
        tally.window_ms.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_secs_f64(baseline_s - 10.0)).await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        let mut base = std::mem::take(&mut *tally.window_ms.lock().unwrap());
        base.sort_by(f64::total_cmp);
        let (base50, base99) = (pct(&base, 0.5), pct(&base, 0.99));
        println!(
            "direct to the upstream, {streams} streams: TTFT p50 {base50:.2} ms, p99 {base99:.2} ms ({} answers)",
            base.len()
        );

        let url = format!("http://{}/v1/completions", gw.addr());
        let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
        let clients: Vec<_> = (0..streams)
            .map(|_| tokio::spawn(client_loop(url.clone(), Arc::clone(&tally), Arc::clone(&stop))))
            .collect();
        println!("{streams} concurrent streams for {secs} s through the gateway");
        println!("| t (s) | RSS (MiB) | answered | complete | in flight (gateway) | TTFT p50 (ms) | p99 (ms) |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        let start = Instant::now();
        let mut rss = Vec::new();
        let mut all_ms = RunHistogram::new();
        while start.elapsed().as_secs_f64() < secs {
            tokio::time::sleep(Duration::from_secs_f64(10f64.min(secs))).await;
            let mut w: Vec<f64> = tally.window_ms.lock().unwrap().drain(..).collect();
            w.sort_by(f64::total_cmp);
            let mib = rss_mib();
            rss.push(mib);
            println!(
                "| {:.0} | {:.1} | {} | {} | {} | {:.2} | {:.2} |",
                start.elapsed().as_secs_f64(),
                mib,
                tally.answered.load(Ordering::Relaxed),
                tally.complete.load(Ordering::Relaxed),
                gw.metrics().in_flight.load(Ordering::Relaxed),
                pct(&w, 0.5),
                pct(&w, 0.99)
            );
            w.iter().for_each(|&ms| all_ms.add(ms));
        }
        stop.store(true, Ordering::Relaxed);
        let finish = async {
            for c in clients {
                c.await.unwrap();
            }
        };
        let drained = tokio::time::timeout(Duration::from_secs(60), finish).await.is_ok();
        let (sent, answered, complete) = (
            tally.sent.load(Ordering::Relaxed),
            tally.answered.load(Ordering::Relaxed),
            tally.complete.load(Ordering::Relaxed),
        );
        tally.window_ms.lock().unwrap().drain(..).for_each(|ms| all_ms.add(ms));
        gw.shutdown();
        let report = gw.join().await.unwrap();
        let third = (rss.len() / 3).max(1);
        let early = rss[..third.min(rss.len())].iter().copied().fold(0.0, f64::max);
        let late = rss[rss.len().saturating_sub(third)..].iter().copied().fold(0.0, f64::max);
        println!();
        println!("sent {sent}, answered {answered}, complete {complete}; lost {}", sent - answered);
        println!(
            "gateway: {} completed, {} failed, {} cancelled; clients finished: {drained}",
            report.completed, report.failed, report.cancelled
        );
        // The first window holds the connection set-up of every stream; the steady state follows.
        let (p50, p99) = (all_ms.quantile(0.5), all_ms.quantile(0.99));
        println!(
            "TTFT through the gateway: p50 {p50:.1} ms, p99 {p99:.1} ms ({} answers, 0.1 ms buckets); added against \
             direct: p50 {:.1} ms, p99 {:.1} ms",
            all_ms.count(),
            p50 - base50,
            p99 - base99
        );
        println!("RSS: peak of the first third {early:.1} MiB, of the last third {late:.1} MiB");
        assert_eq!(sent, answered, "a request got no answer");
    });
}

//! The shipped recording rules (`deploy/prometheus/energyllm-rules.yml`): exact on synthetic
//! series (`promtool test rules`), and evaluated by the real Prometheus (Debian's `prometheus`)
//! scraping a running gateway, against the gateway's own counters. Skipped with a message when
//! Prometheus is not installed, unless ENERGYLLM_REQUIRE_PROMETHEUS is set (CI sets it and
//! installs the package).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use energyllm_core::testutil::FixedPolicy;
use energyllm_core::{Action, Controller, ControllerConfig, Mhz};
use energyllm_engines::live::{gateway, sim_actuator, EngineKind, GatewayConfig};

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

fn installed(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("ENERGYLLM_REQUIRE_PROMETHEUS").is_none(),
            "{tool} is required here but not installed"
        );
        eprintln!("skipped: {tool} is not installed (apt-get install prometheus)");
    }
    ok
}

struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_rules_give_the_expected_values_on_synthetic_series() {
    if !installed("promtool") {
        return;
    }
    let out = Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg("energyllm-rules.test.yml")
        .current_dir(deploy())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A llama.cpp-like upstream: answers of 8 tokens, and a `/metrics` whose generated-token
/// counter follows the answers.
async fn upstream() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let served = Arc::new(AtomicU64::new(0));
    let s2 = Arc::clone(&served);
    let app = Router::new()
        .route(
            "/v1/completions",
            post(move || {
                let s = Arc::clone(&served);
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    s.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"choices": [{"text": "x", "index": 0}], "usage": {"prompt_tokens": 2, "completion_tokens": 8}}))
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let n = s2.load(Ordering::SeqCst);
                async move {
                    format!(
                        "llamacpp:requests_processing 0\nllamacpp:requests_deferred 0\nllamacpp:prompt_tokens_total {}\nllamacpp:tokens_predicted_total {}\n",
                        2 * n,
                        8 * n
                    )
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

async fn query(client: &reqwest::Client, prom: &str, q: &str) -> Vec<Value> {
    let mut url = reqwest::Url::parse(&format!("{prom}/api/v1/query")).unwrap();
    url.query_pairs_mut().append_pair("query", q);
    let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_gateway_and_evaluates_the_rules() {
    if !installed("prometheus") {
        return;
    }
    let up = upstream().await;
    let mut cfg = GatewayConfig::new(EngineKind::Llamacpp, &up);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_interval_s = 0.2;
    cfg.identity.gpu = "0".into();
    let ctl = ControllerConfig {
        initial: Some(Action { freq: Mhz(1410), batch: 4 }),
        ..ControllerConfig::default()
    };
    let ctl = Controller::new(ctl, Box::new(FixedPolicy(Action { freq: Mhz(1410), batch: 4 }))).unwrap();
    let mut gw = gateway::start(cfg, ctl, sim_actuator("a100-40gb").unwrap()).await.unwrap();

    // The shipped rules, evaluated every second instead of every 15 s.
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(deploy().join("energyllm-rules.yml"))
        .unwrap()
        .replace("interval: 15s", "interval: 1s");
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: energyllm\n    static_configs:\n      - targets: ['{}']\n",
            gw.addr()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _prom = Reap(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let url = format!("http://{}/v1/completions", gw.addr());

    // Traffic for a few scrapes, then wait until every rule has a value.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rules = [
        "energyllm:joules_per_output_token:rate5m",
        "energyllm:slo_attainment:ratio_rate5m",
        "energyllm:power_watts:sum_by_gpu",
        "energyllm:ttft_seconds:p99_rate5m",
    ];
    loop {
        for _ in 0..5 {
            let r = client.post(&url).json(&json!({"prompt": "x", "max_tokens": 8})).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let mut have = 0;
        for r in rules {
            if query(&client, &prom, r).await.first().is_some_and(|s| value(s).is_finite()) {
                have += 1;
            }
        }
        if have == rules.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rules did not all evaluate within 60 s ({have} of {})",
            rules.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every completed request met the (default, generous) SLO.
    let slo = query(&client, &prom, "energyllm:slo_attainment:ratio_rate5m").await;
    assert_eq!(value(&slo[0]), 1.0, "{slo:?}");
    // Power per GPU is the gateway's own gauge, under its gpu label.
    let power = query(&client, &prom, "energyllm:power_watts:sum_by_gpu").await;
    assert_eq!(power[0]["metric"]["gpu"], "0");
    let page =
        client.get(format!("http://{}/metrics", gw.addr())).send().await.unwrap().text().await.unwrap();
    let own: f64 = page
        .lines()
        .find(|l| l.starts_with("energyllm_power_watts"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (value(&power[0]) - own).abs() <= 0.05 * own.max(1.0),
        "{} W vs the gateway's {own} W",
        value(&power[0])
    );
    // Joules per output token: the gateway's energy over the upstream's tokens, a positive rate.
    let jpt = value(&query(&client, &prom, "energyllm:joules_per_output_token:rate5m").await[0]);
    assert!(jpt.is_finite() && jpt > 0.0, "{jpt}");
    // The answers took ~20 ms each: the p99 TTFT lies in the gateway's 25–50 ms bucket or near.
    let ttft = value(&query(&client, &prom, "energyllm:ttft_seconds:p99_rate5m").await[0]);
    assert!(ttft > 0.0 && ttft <= 0.1, "{ttft}");
    gw.shutdown();
    gw.join().await.unwrap();
}

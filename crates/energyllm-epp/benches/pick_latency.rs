//! What the picker adds to a request: the time from Envoy sending a request's headers and body
//! on a new ext_proc stream to the picker's answers arriving, over one reused HTTP/2 connection
//! on loopback, sequentially (p50/p99) and with concurrent streams (decisions per second); and
//! the CPU time of one decision over a pool of 64 gateways. The gateways are in-process servers
//! of the recorded metrics page; client, picker and pages share the process and its cores.
//!
//! `cargo bench -p energyllm-epp --bench pick_latency [-- REQUESTS]` (default 5000).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, ProcessingRequest, ProtocolConfiguration,
};
use tonic::transport::Channel;

use energyllm_epp::{decide, EndpointState, EppConfig, PickPolicy, Pool};

const PAGE: &str = include_str!("../tests/data/gateway-metrics.prom");
const BODY: &[u8] = br#"{"model":"llama","prompt":"hello there","max_tokens":64}"#;

async fn page_server() -> String {
    let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { PAGE }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr.to_string()
}

fn request() -> Vec<ProcessingRequest> {
    let duplex = i32::from(BodySendMode::FullDuplexStreamed);
    vec![
        ProcessingRequest {
            request: Some(Request::RequestHeaders(HttpHeaders {
                headers: Some(HeaderMap::default()),
                ..HttpHeaders::default()
            })),
            protocol_config: Some(ProtocolConfiguration {
                request_body_mode: duplex,
                ..ProtocolConfiguration::default()
            }),
            ..ProcessingRequest::default()
        },
        ProcessingRequest {
            request: Some(Request::RequestBody(HttpBody {
                body: BODY.to_vec(),
                end_of_stream: true,
                ..HttpBody::default()
            })),
            ..ProcessingRequest::default()
        },
    ]
}

/// One request's decision: open a stream, send headers and body and close our side, read the
/// two answers and the stream's end (dropping it earlier resets the stream, and h2 answers a
/// flood of resets by closing the connection).
async fn one(client: &mut ExternalProcessorClient<Channel>) {
    let mut answers = client.process(tokio_stream::iter(request())).await.unwrap().into_inner();
    for _ in 0..2 {
        answers.message().await.unwrap().expect("an answer");
    }
    assert!(answers.message().await.unwrap().is_none(), "the picker ends the stream after ours");
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut addrs = Vec::new();
        for _ in 0..4 {
            addrs.push(page_server().await);
        }
        let mut cfg = EppConfig::new("127.0.0.1:0".parse().unwrap(), Pool::from_addresses(&addrs).unwrap());
        cfg.shutdown_grace = Duration::ZERO;
        let epp = energyllm_epp::start(cfg).await.unwrap();
        while !epp.board().synced() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let channel = Channel::from_shared(format!("http://{}", epp.addr)).unwrap().connect().await.unwrap();
        let mut client = ExternalProcessorClient::new(channel.clone());
        for _ in 0..200 {
            one(&mut client).await;
        }
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            one(&mut client).await;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "sequential, 4 gateways: {n} decisions, p50 {:.0} µs, p99 {:.0} µs",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );

        let streams = 32;
        let per = n / streams;
        let t = Instant::now();
        let tasks: Vec<_> = (0..streams)
            .map(|_| {
                let mut client = ExternalProcessorClient::new(channel.clone());
                tokio::spawn(async move {
                    for _ in 0..per {
                        one(&mut client).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let rate = (per * streams) as f64 / t.elapsed().as_secs_f64();
        println!("{streams} concurrent streams: {rate:.0} decisions/s");
        epp.stop().await.unwrap();
    });

    // The decision alone, over 64 gateways with fresh pages.
    let pool: Vec<std::net::SocketAddr> =
        (0..64).map(|i| format!("10.0.{}.{}:9000", i / 250, i % 250 + 1).parse().unwrap()).collect();
    let now = Instant::now();
    let states: Vec<EndpointState> = (0..64)
        .map(|i| EndpointState {
            score: (i as f64 * 0.618).fract(),
            ready: true,
            load: f64::from(i % 9),
            batch_cap: 8.0,
            read_at: Some(now),
            ..EndpointState::default()
        })
        .collect();
    let policy = PickPolicy::default();
    let reps = 100_000;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(decide(
            pool.iter().copied().zip(std::hint::black_box(&states)),
            now,
            None,
            false,
            &policy,
        ));
    }
    println!("decide over 64 gateways: {:.2} µs each", t.elapsed().as_secs_f64() * 1e6 / reps as f64);
}

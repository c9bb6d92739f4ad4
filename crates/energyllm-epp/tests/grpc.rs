//! The picker over a real gRPC connection, driven as Envoy drives an ext_proc server, against
//! endpoints that serve a gateway's recorded metrics page (`data/gateway-metrics.prom`, read
//! from `energyllm serve` in front of llama-server) with the score, readiness and load each test
//! sets. The live counterpart, against real gateways, is `gateways.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use common::{eventually, health, Answer, Ask, Stream};
use energyllm_epp::{start, EppConfig, EppHandle, Pool};

const RECORDED: &str = include_str!("data/gateway-metrics.prom");

/// What one fake endpoint serves: the recorded page with these values in place.
#[derive(Clone, Debug)]
struct Page {
    score: f64,
    ready: bool,
    in_flight: u32,
    delay_ms: u64,
    status: u16,
}

impl Page {
    fn scored(score: f64) -> Page {
        Page { score, ready: true, in_flight: 0, delay_ms: 0, status: 200 }
    }

    fn render(&self) -> String {
        RECORDED
            .lines()
            .map(|l| match l.split_once(' ') {
                Some(("energyllm_endpoint_score", _)) => format!("energyllm_endpoint_score {}", self.score),
                Some(("energyllm_ready", _)) => format!("energyllm_ready {}", u8::from(self.ready)),
                Some(("energyllm_in_flight", _)) => format!("energyllm_in_flight {}", self.in_flight),
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An endpoint: its address (the page is served on it, as a gateway serves its own) and the
/// page it serves, which the test changes at will.
struct Endpoint {
    addr: SocketAddr,
    page: Arc<Mutex<Page>>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    async fn start(page: Page) -> Endpoint {
        let page = Arc::new(Mutex::new(page));
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(|State(p): State<Arc<Mutex<Page>>>| async move {
                    let page = p.lock().unwrap().clone();
                    tokio::time::sleep(Duration::from_millis(page.delay_ms)).await;
                    (StatusCode::from_u16(page.status).unwrap(), page.render())
                }),
            )
            .with_state(page.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Endpoint { addr, page, task }
    }

    fn set(&self, f: impl FnOnce(&mut Page)) {
        f(&mut self.page.lock().unwrap());
    }
}

async fn picker(endpoints: &[&Endpoint], tweak: impl FnOnce(&mut EppConfig)) -> EppHandle {
    let pool =
        Pool::from_addresses(&endpoints.iter().map(|e| e.addr.to_string()).collect::<Vec<_>>()).unwrap();
    let mut cfg = EppConfig::new("127.0.0.1:0".parse().unwrap(), pool);
    cfg.refresh = Duration::from_millis(50);
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.shutdown_grace = Duration::ZERO;
    tweak(&mut cfg);
    start(cfg).await.unwrap()
}

async fn ready(epp: &EppHandle) {
    eventually("readiness", || async { health(epp.addr, "readiness").await == Ok(1) }).await;
}

#[tokio::test]
async fn liveness_serves_at_once_and_readiness_once_every_endpoint_was_read() {
    let slow = Endpoint::start(Page { delay_ms: 1500, ..Page::scored(0.7) }).await;
    let fast = Endpoint::start(Page::scored(0.7)).await;
    let epp = picker(&[&slow, &fast], |c| c.read_timeout = Duration::from_secs(5)).await;
    assert_eq!(health(epp.addr, "liveness").await, Ok(1));
    assert_eq!(health(epp.addr, "readiness").await, Ok(2), "not ready before the slow page was read");
    assert_eq!(health(epp.addr, "envoy.service.ext_proc.v3.ExternalProcessor").await, Ok(2));
    assert_eq!(health(epp.addr, "no.such.Service").await, Err(tonic::Code::NotFound));
    ready(&epp).await;
    assert_eq!(health(epp.addr, "envoy.service.ext_proc.v3.ExternalProcessor").await, Ok(1));
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn the_best_score_leads_in_core_rank_order_and_the_body_comes_back_whole() {
    let scores = [0.62, 0.91, 0.70];
    let e: Vec<Endpoint> =
        futures_util::future::join_all(scores.map(|s| Endpoint::start(Page::scored(s)))).await;
    let epp = picker(&[&e[0], &e[1], &e[2]], |_| {}).await;
    ready(&epp).await;
    let ask = Ask::completion("the quick brown fox", 16);
    let (answer, stream) = Stream::ask(epp.addr, &ask).await;
    // The order is energyllm-core's rank, the function the cluster simulator routes by.
    let order = energyllm_core::score::rank(scores.iter().copied().enumerate());
    let expected: Vec<String> = order.iter().map(|&i| e[i].addr.to_string()).collect();
    assert_eq!(answer, Answer::Route { endpoints: expected.join(","), body: ask.body.clone() });
    stream.respond(&e[1].addr.to_string(), b"data: {\"choices\":[]}\n\n").await;
    eventually("the served count", || async { epp.board().member(e[1].addr).is_some_and(|m| m.served == 1) })
        .await;

    // The subset hint limits the choice; an empty subset is 503.
    let subset = Ask { subset: Some(vec![e[0].addr.to_string(), e[2].addr.to_string()]), ..ask.clone() };
    let (answer, _) = Stream::ask(epp.addr, &subset).await;
    assert_eq!(answer.first(), Some(e[2].addr.to_string()));
    let (answer, _) = Stream::ask(epp.addr, &Ask { subset: Some(Vec::new()), ..ask.clone() }).await;
    assert!(
        matches!(&answer, Answer::Immediate { status: 503, body } if body.contains("subset")),
        "{answer:?}"
    );

    // A score that falls moves the traffic at the next read.
    e[1].set(|p| p.score = 0.3);
    eventually("the new score", || async {
        Stream::ask(epp.addr, &ask).await.0.first() == Some(e[2].addr.to_string())
    })
    .await;
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn without_full_duplex_it_picks_on_the_headers() {
    let (a, b) = (Endpoint::start(Page::scored(0.5)).await, Endpoint::start(Page::scored(0.8)).await);
    let epp = picker(&[&a, &b], |c| c.policy.fallbacks = 0).await;
    ready(&epp).await;
    let ask = Ask { duplex: false, ..Ask::completion("hi", 4) };
    let (answer, stream) = Stream::ask(epp.addr, &ask).await;
    assert_eq!(answer, Answer::Route { endpoints: b.addr.to_string(), body: Vec::new() });
    stream.respond(&b.addr.to_string(), b"{}").await;
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn draining_failing_and_gone_endpoints_are_skipped_and_with_none_left_it_is_503() {
    let e: Vec<Endpoint> =
        futures_util::future::join_all([0.9, 0.8, 0.7].map(|s| Endpoint::start(Page::scored(s)))).await;
    let epp = picker(&[&e[0], &e[1], &e[2]], |c| c.policy.stale_after = Duration::from_millis(400)).await;
    ready(&epp).await;
    let ask = Ask::completion("hi", 4);
    assert_eq!(Stream::ask(epp.addr, &ask).await.0.first(), Some(e[0].addr.to_string()));
    e[0].set(|p| p.ready = false); // draining: its page says energyllm_ready 0
    e[1].set(|p| p.status = 500); // its page fails: left out after two failed reads
    eventually("the draining and the failing ones left out", || async {
        Stream::ask(epp.addr, &ask).await.0
            == Answer::Route { endpoints: e[2].addr.to_string(), body: ask.body.clone() }
    })
    .await;
    e[2].task.abort(); // gone altogether
    eventually("503", || async {
        matches!(Stream::ask(epp.addr, &ask).await.0, Answer::Immediate { status: 503, .. })
    })
    .await;
    let (answer, _) = Stream::ask(epp.addr, &ask).await;
    let Answer::Immediate { body, .. } = answer else { unreachable!() };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let why = v["error"]["message"].as_str().unwrap();
    assert!(why.contains(&format!("{}: not ready", e[0].addr)), "{why}");
    let failing = why.split("; ").find(|w| w.starts_with(&e[1].addr.to_string())).unwrap();
    assert!(failing.contains("reads failed in a row") && failing.contains("500"), "{why}");
    assert!(why.contains(&e[2].addr.to_string()), "{why}");
    assert!(epp.board().refusals(503) >= 1);
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn sheddable_requests_get_429_only_when_every_endpoint_is_short_of_the_slo() {
    let (a, b) = (Endpoint::start(Page::scored(0.10)).await, Endpoint::start(Page::scored(0.12)).await);
    let epp = picker(&[&a, &b], |_| {}).await;
    ready(&epp).await;
    let plain = Ask::completion("hi", 4);
    let sheddable = Ask { headers: vec![("x-energyllm-priority".into(), "-1".into())], ..plain.clone() };
    assert_eq!(Stream::ask(epp.addr, &plain).await.0.first(), Some(b.addr.to_string()));
    assert!(matches!(Stream::ask(epp.addr, &sheddable).await.0, Answer::Immediate { status: 429, .. }));
    b.set(|p| p.score = 0.6);
    eventually("headroom again", || async {
        Stream::ask(epp.addr, &sheddable).await.0.first() == Some(b.addr.to_string())
    })
    .await;
    assert!(epp.board().refusals(429) >= 1);
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn an_oversized_body_is_413_and_the_metrics_page_counts_it() {
    let a = Endpoint::start(Page::scored(0.7)).await;
    let epp = picker(&[&a], |c| c.max_body_bytes = 64).await;
    ready(&epp).await;
    let big = Ask::completion(&"x".repeat(200), 4);
    let (answer, _) = Stream::ask(epp.addr, &big).await;
    assert!(matches!(answer, Answer::Immediate { status: 413, .. }), "{answer:?}");
    let url = format!("http://{}/metrics", epp.metrics_addr.unwrap());
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let m = energyllm_engines::prom::Metrics::parse(&page).unwrap();
    let refused_413 = m.samples().iter().find(|s| {
        s.name == "energyllm_epp_refused_total" && s.labels.iter().any(|(k, v)| k == "status" && v == "413")
    });
    assert_eq!(refused_413.unwrap().value, 1.0);
    assert_eq!(m.sum("energyllm_epp_endpoint_score"), Some(0.7));
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn a_stream_out_of_order_ends_with_a_grpc_error_and_the_picker_serves_on() {
    use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
    use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request;
    use envoy_types::pb::envoy::service::ext_proc::v3::{HttpBody, ProcessingRequest};

    let a = Endpoint::start(Page::scored(0.7)).await;
    let epp = picker(&[&a], |_| {}).await;
    ready(&epp).await;
    let mut client = ExternalProcessorClient::connect(format!("http://{}", epp.addr)).await.unwrap();
    let body_first = ProcessingRequest {
        request: Some(Request::RequestBody(HttpBody { body: b"{}".to_vec(), ..HttpBody::default() })),
        ..ProcessingRequest::default()
    };
    let mut answers = client.process(tokio_stream::iter(vec![body_first])).await.unwrap().into_inner();
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("before the request headers"), "{}", status.message());
    assert_eq!(Stream::ask(epp.addr, &Ask::completion("hi", 4)).await.0.first(), Some(a.addr.to_string()));
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn a_port_in_use_is_an_error_naming_it() {
    let a = Endpoint::start(Page::scored(0.7)).await;
    let epp = picker(&[&a], |_| {}).await;
    let taken = epp.addr;
    let pool = Pool::from_addresses(&[a.addr.to_string()]).unwrap();
    let mut cfg = EppConfig::new("127.0.0.1:0".parse().unwrap(), pool);
    cfg.metrics_listen = Some(taken);
    let err = start(cfg).await.err().expect("the metrics port is taken");
    assert!(err.to_string().contains(&format!("cannot listen on {taken} (metrics)")), "{err}");
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn on_stop_health_turns_not_serving_before_the_listener_closes() {
    let a = Endpoint::start(Page::scored(0.7)).await;
    let epp = picker(&[&a], |c| c.shutdown_grace = Duration::from_millis(800)).await;
    ready(&epp).await;
    let addr = epp.addr;
    let stopping = tokio::spawn(epp.stop());
    eventually("readiness NOT_SERVING", || async { health(addr, "readiness").await == Ok(2) }).await;
    assert_eq!(health(addr, "liveness").await, Ok(2));
    // Still answering picks during the grace period, for streams the proxy already sent.
    assert_eq!(Stream::ask(addr, &Ask::completion("hi", 4)).await.0.first(), Some(a.addr.to_string()));
    stopping.await.unwrap().unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap();
    assert!(channel.connect().await.is_err(), "the listener is closed after the stop");
}

#[tokio::test]
async fn a_services_endpoints_follow_its_addresses_as_they_change() {
    use energyllm_epp::Resolver;
    let (a, b) = (Endpoint::start(Page::scored(0.6)).await, Endpoint::start(Page::scored(0.9)).await);
    // A name whose answer the test changes: first A, then A and B, then B alone, then a failure.
    let answer: Arc<Mutex<std::io::Result<Vec<SocketAddr>>>> = Arc::new(Mutex::new(Ok(vec![a.addr])));
    let resolver = {
        let answer = answer.clone();
        Resolver::new(move |name: String| {
            assert_eq!(name, "gateways.test:9000");
            let now = match &*answer.lock().unwrap() {
                Ok(v) => Ok(v.clone()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            };
            Box::pin(async move { now })
        })
    };
    let pool = Pool::from_flags(&[], &["gateways.test:9000".into()]).unwrap();
    let mut cfg = EppConfig::new("127.0.0.1:0".parse().unwrap(), pool);
    cfg.refresh = Duration::from_millis(50);
    cfg.resolve_interval = Duration::from_millis(50);
    cfg.shutdown_grace = Duration::ZERO;
    cfg.resolver = resolver;
    let epp = start(cfg).await.unwrap();
    ready(&epp).await;
    let ask = Ask::completion("hi", 4);
    let first = || async { Stream::ask(epp.addr, &ask).await.0.first() };
    assert_eq!(first().await, Some(a.addr.to_string()));
    *answer.lock().unwrap() = Ok(vec![a.addr, b.addr]);
    eventually("B joins and leads", || async { first().await == Some(b.addr.to_string()) }).await;
    *answer.lock().unwrap() = Ok(vec![b.addr]);
    eventually("A leaves", || async { epp.board().member(a.addr).is_none() }).await;
    *answer.lock().unwrap() = Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(first().await, Some(b.addr.to_string()), "a failed resolution keeps the endpoints it had");
    assert_eq!(epp.board().snapshot().len(), 1);
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn a_service_name_is_resolved_by_the_system_resolver() {
    let a = Endpoint::start(Page::scored(0.7)).await;
    let pool = Pool::from_flags(&[], &[format!("localhost:{}", a.addr.port())]).unwrap();
    let mut cfg = EppConfig::new("127.0.0.1:0".parse().unwrap(), pool);
    cfg.refresh = Duration::from_millis(50);
    cfg.shutdown_grace = Duration::ZERO;
    let epp = start(cfg).await.unwrap();
    // localhost may also resolve to ::1, where nothing listens: that member fails its reads and
    // is left out, and the picker still becomes ready.
    ready(&epp).await;
    eventually("the IPv4 member picked", || async {
        Stream::ask(epp.addr, &Ask::completion("hi", 4)).await.0.first() == Some(a.addr.to_string())
    })
    .await;
    epp.stop().await.unwrap();
}

#[tokio::test]
async fn a_name_that_does_not_resolve_does_not_hold_readiness_back() {
    let a = Endpoint::start(Page::scored(0.7)).await;
    let pool = Pool::from_flags(&[a.addr.to_string()], &["nowhere.invalid:9000".into()]).unwrap();
    let mut cfg = EppConfig::new("127.0.0.1:0".parse().unwrap(), pool);
    cfg.refresh = Duration::from_millis(50);
    cfg.shutdown_grace = Duration::ZERO;
    cfg.resolver = energyllm_epp::Resolver::new(|_| {
        Box::pin(async { Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such host")) })
    });
    let epp = start(cfg).await.unwrap();
    ready(&epp).await;
    assert_eq!(Stream::ask(epp.addr, &Ask::completion("hi", 4)).await.0.first(), Some(a.addr.to_string()));
    epp.stop().await.unwrap();
}

//! What the tests share: an Envoy stand-in that speaks ext_proc to the picker over a real gRPC
//! connection, message by message as Envoy's filter does, and the gRPC health client.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, Metadata};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, ProcessingRequest, ProcessingResponse, ProtocolConfiguration,
};
use envoy_types::pb::google::protobuf::{value::Kind, ListValue, Struct, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// What the picker answered for a request.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The endpoints, from the header, which must equal the `envoy.lb` metadata; and the body
    /// handed back (full-duplex mode).
    Route { endpoints: String, body: Vec<u8> },
    /// An immediate response: the HTTP status and its body.
    Immediate { status: i32, body: String },
}

impl Answer {
    /// The first endpoint of a route; `None` for an immediate response.
    pub fn first(&self) -> Option<String> {
        match self {
            Answer::Route { endpoints, .. } => endpoints.split(',').next().map(str::to_owned),
            Answer::Immediate { .. } => None,
        }
    }
}

/// One ext_proc stream, as Envoy holds it for one HTTP request.
pub struct Stream {
    tx: mpsc::Sender<ProcessingRequest>,
    rx: tonic::Streaming<ProcessingResponse>,
    duplex: bool,
}

/// How a request is presented.
#[derive(Clone, Debug, Default)]
pub struct Ask {
    /// Request headers besides the pseudo-headers.
    pub headers: Vec<(String, String)>,
    /// The body, sent in two chunks in full-duplex mode.
    pub body: Vec<u8>,
    /// The subset hint, if any.
    pub subset: Option<Vec<String>>,
    /// Full-duplex request and response bodies (the Inference Extension's mode), or no body
    /// sent to the picker at all.
    pub duplex: bool,
}

impl Ask {
    /// A completion request in full-duplex mode.
    pub fn completion(prompt: &str, max_tokens: u32) -> Ask {
        let body = serde_json::json!({"prompt": prompt, "max_tokens": max_tokens}).to_string().into_bytes();
        Ask { body, duplex: true, ..Ask::default() }
    }
}

impl Stream {
    /// Opens a stream and presents the request; returns the picker's answer.
    pub async fn ask(addr: SocketAddr, ask: &Ask) -> (Answer, Stream) {
        let mut client = ExternalProcessorClient::connect(format!("http://{addr}")).await.unwrap();
        let (tx, rx) = mpsc::channel(16);
        let mode = if ask.duplex { BodySendMode::FullDuplexStreamed } else { BodySendMode::None };
        let headers =
            [(":method", "POST"), (":path", "/v1/completions"), ("content-type", "application/json")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .chain(ask.headers.iter().cloned())
                .map(|(key, v)| HeaderValue { key, raw_value: v.into_bytes(), ..HeaderValue::default() })
                .collect();
        let metadata_context = ask.subset.as_ref().map(|list| {
            let values = list.iter().map(|a| Value { kind: Some(Kind::StringValue(a.clone())) }).collect();
            let hint = Struct {
                fields: [(
                    "x-gateway-destination-endpoint-subset".to_owned(),
                    Value { kind: Some(Kind::ListValue(ListValue { values })) },
                )]
                .into(),
            };
            let mut md = Metadata::default();
            md.filter_metadata.insert("envoy.lb.subset_hint".into(), hint);
            md
        });
        tx.send(ProcessingRequest {
            request: Some(Request::RequestHeaders(HttpHeaders {
                headers: Some(HeaderMap { headers }),
                end_of_stream: !ask.duplex || ask.body.is_empty(),
                ..HttpHeaders::default()
            })),
            metadata_context,
            protocol_config: Some(ProtocolConfiguration {
                request_body_mode: mode.into(),
                response_body_mode: mode.into(),
                ..ProtocolConfiguration::default()
            }),
            ..ProcessingRequest::default()
        })
        .await
        .unwrap();
        let rx = client.process(ReceiverStream::new(rx)).await.unwrap().into_inner();
        let mut stream = Stream { tx, rx, duplex: ask.duplex };
        if ask.duplex && !ask.body.is_empty() {
            let (a, b) = ask.body.split_at(ask.body.len() / 2);
            stream.send(Request::RequestBody(HttpBody { body: a.to_vec(), ..HttpBody::default() })).await;
            let last = HttpBody { body: b.to_vec(), end_of_stream: true, ..HttpBody::default() };
            stream.send(Request::RequestBody(last)).await;
        }
        let first = stream.next().await;
        let answer = match first.response {
            Some(Response::ImmediateResponse(r)) => {
                Answer::Immediate { status: r.status.unwrap().code, body: String::from_utf8(r.body).unwrap() }
            }
            Some(Response::RequestHeaders(h)) => {
                let set = &h.response.unwrap().header_mutation.unwrap().set_headers[0];
                let header = set.header.as_ref().unwrap();
                assert_eq!(header.key, "x-gateway-destination-endpoint");
                let endpoints = String::from_utf8(header.raw_value.clone()).unwrap();
                let lb = first.dynamic_metadata.unwrap().fields.remove("envoy.lb").unwrap();
                let Some(Kind::StructValue(lb)) = lb.kind else { panic!("envoy.lb is not a struct") };
                let Some(Kind::StringValue(md)) = &lb.fields["x-gateway-destination-endpoint"].kind else {
                    panic!("the metadata entry is not a string")
                };
                assert_eq!(md, &endpoints, "the header and the envoy.lb metadata must carry the same list");
                let body = if ask.duplex && !ask.body.is_empty() {
                    let b = stream.next().await;
                    let Some(Response::RequestBody(b)) = b.response else { panic!("no body answer: {b:?}") };
                    match b.response.unwrap().body_mutation.unwrap().mutation {
                        Some(Mutation::StreamedResponse(s)) => {
                            assert!(s.end_of_stream);
                            s.body
                        }
                        other => panic!("the body came back as {other:?}"),
                    }
                } else {
                    Vec::new()
                };
                Answer::Route { endpoints, body }
            }
            other => panic!("unexpected first answer {other:?}"),
        };
        (answer, stream)
    }

    async fn send(&mut self, request: Request) {
        self.send_with(request, None).await;
    }

    async fn send_with(&mut self, request: Request, metadata_context: Option<Metadata>) {
        let msg =
            ProcessingRequest { request: Some(request), metadata_context, ..ProcessingRequest::default() };
        self.tx.send(msg).await.unwrap();
    }

    async fn next(&mut self) -> ProcessingResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("the picker answered within 10 s")
            .unwrap()
            .expect("the stream is open")
    }

    /// Reports the response as Envoy does: headers naming the endpoint that served, then one
    /// body chunk, which must come back unchanged in full-duplex mode.
    pub async fn respond(mut self, served: &str, chunk: &[u8]) {
        let entry = Struct {
            fields: [(
                "x-gateway-destination-endpoint-served".to_owned(),
                Value { kind: Some(Kind::StringValue(served.to_owned())) },
            )]
            .into(),
        };
        let mut md = Metadata::default();
        md.filter_metadata.insert("envoy.lb".into(), entry);
        self.send_with(Request::ResponseHeaders(HttpHeaders::default()), Some(md)).await;
        let r = self.next().await;
        assert!(matches!(r.response, Some(Response::ResponseHeaders(_))), "{r:?}");
        let body = HttpBody { body: chunk.to_vec(), end_of_stream: true, ..HttpBody::default() };
        self.send(Request::ResponseBody(body)).await;
        let r = self.next().await;
        let Some(Response::ResponseBody(b)) = r.response else { panic!("{r:?}") };
        if self.duplex {
            let Some(Mutation::StreamedResponse(s)) = b.response.unwrap().body_mutation.unwrap().mutation
            else {
                panic!("a full-duplex chunk must come back streamed")
            };
            assert_eq!((s.body.as_slice(), s.end_of_stream), (chunk, true));
        }
    }
}

/// The gRPC health status of `service` (1 SERVING, 2 NOT_SERVING), or the gRPC error code.
pub async fn health(addr: SocketAddr, service: &str) -> Result<i32, tonic::Code> {
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = HealthClient::new(channel);
    client
        .check(HealthCheckRequest { service: service.to_owned() })
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| s.code())
}

/// Polls `f` every 50 ms for up to 10 s.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

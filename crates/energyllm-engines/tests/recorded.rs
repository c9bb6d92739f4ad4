//! The TGI and vLLM adapters against RECORDED responses: TGI cannot run on these machines (no GPU)
//! and vLLM needs one too, so an in-process server replays answers in each server's documented
//! format — TGI's `/generate` JSON, its `/generate_stream` events (`data:` without a space, a
//! `token` per event, `details` on the last) and its `tgi_*` metrics; vLLM's `/metrics` page
//! with `vllm:` names, histograms and the older `gpu_cache_usage_perc`. They check parsing, not
//! the servers' behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use energyllm_core::{Request, RequestId, Timestamp};
use energyllm_engines::live::prom::Metrics;
use energyllm_engines::live::{EngineKind, HttpEngine, HttpEngineConfig};

const TGI_GENERATE: &str = r#"{"generated_text":" Deep learning is","details":{"finish_reason":"length","generated_tokens":3,"seed":null,"prefill":[{"id":1,"text":"<s>","logprob":null},{"id":1724,"text":"What","logprob":-9.5}],"tokens":[{"id":21784,"text":" Deep","logprob":-0.4,"special":false},{"id":6509,"text":" learning","logprob":-0.1,"special":false},{"id":338,"text":" is","logprob":-0.2,"special":false}]}}"#;

const TGI_STREAM: &str = "data:{\"index\":1,\"token\":{\"id\":21784,\"text\":\" Deep\",\"logprob\":-0.4,\"special\":false},\"generated_text\":null,\"details\":null}\n\n\
data:{\"index\":2,\"token\":{\"id\":6509,\"text\":\" learning\",\"logprob\":-0.1,\"special\":false},\"generated_text\":null,\"details\":null}\n\n\
data:{\"index\":3,\"token\":{\"id\":2,\"text\":\"</s>\",\"logprob\":-0.2,\"special\":true},\"generated_text\":\" Deep learning\",\"details\":{\"finish_reason\":\"eos_token\",\"generated_tokens\":3,\"seed\":null}}\n\n";

const TGI_METRICS: &str =
    "# TYPE tgi_queue_size gauge\ntgi_queue_size 4\n# TYPE tgi_batch_current_size gauge\n\
tgi_batch_current_size 7\ntgi_batch_current_max_tokens 5120\n\
tgi_request_duration_bucket{method=\"POST\",le=\"0.5\"} 3\n\
tgi_request_mean_time_per_token_duration_bucket{le=\"0.02\"} 2\n\
tgi_request_mean_time_per_token_duration_bucket{le=\"0.04\"} 4\n\
tgi_request_mean_time_per_token_duration_bucket{le=\"+Inf\"} 4\n\
tgi_request_mean_time_per_token_duration_sum 0.1\n\
tgi_request_mean_time_per_token_duration_count 4\n\
tgi_request_input_length_sum 96\n\
tgi_request_generated_tokens_sum 12\n";

const VLLM_METRICS: &str = "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 12.0\n\
vllm:num_requests_waiting{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 3.0\n\
vllm:gpu_cache_usage_perc{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 0.42\n\
vllm:num_preemptions_total{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 5.0\n\
vllm:prompt_tokens_total{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 123456.0\n\
vllm:generation_tokens_total{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 654321.0\n\
vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.001\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 0.0\n\
vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.04\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 300.0\n\
vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.1\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 720.0\n\
vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.25\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 891.0\n\
vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 900.0\n\
vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 900.0\n\
vllm:time_to_first_token_seconds_sum{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 81.0\n\
vllm:inter_token_latency_seconds_bucket{engine=\"0\",le=\"0.025\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 1000.0\n\
vllm:inter_token_latency_seconds_bucket{engine=\"0\",le=\"0.05\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 2700.0\n\
vllm:inter_token_latency_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 2700.0\n\
vllm:inter_token_latency_seconds_count{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 2700.0\n\
vllm:inter_token_latency_seconds_sum{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 81.0\n";

async fn replay() -> String {
    let app = Router::new()
        .route(
            "/generate",
            post(|| async { ([("content-type", "application/json")], TGI_GENERATE).into_response() }),
        )
        .route(
            "/generate_stream",
            post(|| async { ([("content-type", "text/event-stream")], TGI_STREAM).into_response() }),
        )
        .route("/metrics", get(|| async { TGI_METRICS }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

fn req() -> Request {
    Request { id: RequestId(0), arrival: Timestamp::ZERO, input_tokens: 2, output_tokens: 3 }
}

#[tokio::test]
async fn tgi_generate_stream_and_metrics_from_recorded_answers() {
    let url = replay().await;
    let e = HttpEngine::new(EngineKind::Tgi, HttpEngineConfig { url, ..Default::default() }).unwrap();
    let (path, body) = e.request_body(&req(), true);
    assert_eq!(path, "generate_stream");
    assert_eq!(body["parameters"]["max_new_tokens"], 3);

    let plain = e.complete(&req(), false).await.unwrap();
    assert_eq!((plain.output_tokens, plain.prompt_tokens), (3, Some(2)));
    assert_eq!(plain.text, " Deep learning is");

    let streamed = e.complete(&req(), true).await.unwrap();
    assert_eq!(streamed.output_tokens, 3, "details.generated_tokens wins over the event count");
    assert_eq!(streamed.text, " Deep learning", "the special end token is not text");
    assert_eq!(streamed.token_times_s.len(), 1);

    let s = e.engine_state().await.unwrap();
    assert_eq!((s.running, s.waiting), (7, 4));

    let c = EngineKind::Tgi.counters_from_metrics(&e.metrics().await.unwrap());
    assert_eq!((c.prompt_tokens, c.generated_tokens, c.preemptions), (Some(96.0), Some(12.0), None));

    // TGI measures time per token per request, not time to first token.
    let latency = e.latency().await.unwrap();
    assert_eq!(latency.ttft_s, None);
    let itl = latency.itl_s.unwrap();
    assert!((itl.mean().unwrap() - 0.025).abs() < 1e-12 && (itl.quantile(0.5).unwrap() - 0.02).abs() < 1e-12);
}

#[test]
fn vllm_latency_histograms_from_a_recorded_metrics_page() {
    let m = Metrics::parse(VLLM_METRICS).unwrap();
    let latency = EngineKind::Vllm.latency_from_metrics(&m);
    let ttft = latency.ttft_s.unwrap();
    assert!((ttft.mean().unwrap() - 0.09).abs() < 1e-12);
    // Rank 450 of 900 lies in (0.04, 0.1] with 300 below and 420 inside.
    assert!((ttft.quantile(0.5).unwrap() - (0.04 + 0.06 * 150.0 / 420.0)).abs() < 1e-12);
    assert_eq!(ttft.quantile(0.999), Some(0.25), "the +Inf bucket reads as the largest bound");
    let itl = latency.itl_s.unwrap();
    assert!((itl.mean().unwrap() - 0.03).abs() < 1e-12);
    let c = EngineKind::Vllm.counters_from_metrics(&m);
    assert_eq!(
        (c.prompt_tokens, c.generated_tokens, c.preemptions),
        (Some(123456.0), Some(654321.0), Some(5.0))
    );
    // vLLM before 0.11 called it time per output token.
    let older = VLLM_METRICS.replace("inter_token_latency_seconds", "time_per_output_token_seconds");
    let itl_old = EngineKind::Vllm.latency_from_metrics(&Metrics::parse(&older).unwrap()).itl_s.unwrap();
    assert_eq!(itl_old, itl);
}

#[test]
fn vllm_state_from_a_recorded_metrics_page() {
    let m = Metrics::parse(VLLM_METRICS).unwrap();
    let s = EngineKind::Vllm.state_from_metrics(&m).unwrap();
    assert_eq!((s.running, s.waiting, s.kv_usage_frac), (12, 3, 0.42));
    assert_eq!(m.sum("vllm:num_preemptions_total"), Some(5.0));
    assert_eq!(m.sum("vllm:time_to_first_token_seconds_count"), Some(900.0));
    let newer = VLLM_METRICS.replace("gpu_cache_usage_perc", "kv_cache_usage_perc");
    let s = EngineKind::Vllm.state_from_metrics(&Metrics::parse(&newer).unwrap()).unwrap();
    assert_eq!(s.kv_usage_frac, 0.42);
    let e = EngineKind::Vllm.state_from_metrics(&Metrics::parse(TGI_METRICS).unwrap()).unwrap_err();
    assert!(e.to_string().contains("vllm:num_requests_running"), "{e}");
}

//! HTTP adapters for real inference servers: vLLM and llama.cpp (OpenAI API), TGI (`/generate`).
//!
//! [`HttpEngine`] sends one request per [`Request`] with `max_tokens` = its output length (and
//! `ignore_eos`, so the engine generates exactly that many where it can), streams it to time the
//! first token and every later one, and reads the server's state from its Prometheus `/metrics`.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};

use energyllm_core::registry::{parse_config, EnginePlugin};
use energyllm_core::{
    BoxFuture, ConfigValue, Engine, EngineError, EngineState, Request, RequestRecord, RequestStatus,
};

use super::prom::{Histogram, Metrics};
use super::sse::SseDecoder;

pub use super::answer::{parse_plain, StreamAccumulator};

/// An engine name that is not one of the live engines.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine `{0}`; live engines: vllm, tgi, llamacpp")]
pub struct UnknownEngine(pub String);

/// Which server speaks at the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// vLLM's OpenAI-compatible server.
    Vllm,
    /// HuggingFace text-generation-inference.
    Tgi,
    /// llama.cpp's `llama-server`.
    Llamacpp,
}

impl EngineKind {
    /// The name on the command line and in the registry.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Vllm => "vllm",
            EngineKind::Tgi => "tgi",
            EngineKind::Llamacpp => "llamacpp",
        }
    }

    /// Parses `vllm`, `tgi` or `llamacpp` (also `llama.cpp`).
    pub fn parse(s: &str) -> Result<Self, UnknownEngine> {
        match s {
            "vllm" => Ok(EngineKind::Vllm),
            "tgi" => Ok(EngineKind::Tgi),
            "llamacpp" | "llama.cpp" | "llama-cpp" => Ok(EngineKind::Llamacpp),
            _ => Err(UnknownEngine(s.to_owned())),
        }
    }

    /// An HTTP client suited to this server. llama-server (cpp-httplib) closes the connection
    /// after a streamed answer although it advertised keep-alive; a pooled client would then send
    /// the next request into a dead socket ("connection closed before message completed"), and
    /// re-sending a POST that may have arrived is not safe. So for llama.cpp connections are
    /// not reused (a loopback connect costs tens of microseconds).
    pub fn http_client(self, timeout: Option<Duration>) -> Result<reqwest::Client, EngineError> {
        self.client_builder(timeout)
            .build()
            .map_err(|e| EngineError::Unavailable(format!("cannot build the HTTP client: {e}")))
    }

    /// The HTTP client settings this engine needs, to add to before building.
    fn client_builder(self, timeout: Option<Duration>) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder();
        if self == EngineKind::Llamacpp {
            b = b.pool_max_idle_per_host(0);
        }
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b
    }

    /// Reads the engine's state from its `/metrics` page.
    pub fn state_from_metrics(self, m: &Metrics) -> Result<EngineState, EngineError> {
        let need = |names: &[&str]| {
            m.first_of(names).ok_or_else(|| {
                EngineError::Protocol(format!(
                    "the {} metrics page has no `{}`; is this a {} server (llama-server needs --metrics)?",
                    self.name(),
                    names[0],
                    self.name()
                ))
            })
        };
        let count =
            |v: f64| if v.is_finite() && v > 0.0 { v.round().min(f64::from(u32::MAX)) as u32 } else { 0 };
        let (running, waiting, kv) = match self {
            EngineKind::Vllm => (
                need(&["vllm:num_requests_running"])?,
                need(&["vllm:num_requests_waiting"])?,
                m.first_of(&["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"]),
            ),
            EngineKind::Tgi => (need(&["tgi_batch_current_size"])?, need(&["tgi_queue_size"])?, None),
            EngineKind::Llamacpp => (
                need(&["llamacpp:requests_processing"])?,
                need(&["llamacpp:requests_deferred"])?,
                m.first_of(&["llamacpp:kv_cache_usage_ratio"]),
            ),
        };
        Ok(EngineState {
            running: count(running),
            waiting: count(waiting),
            kv_usage_frac: kv.filter(|k| k.is_finite()).unwrap_or(0.0).clamp(0.0, 1.0),
        })
    }
}

/// Latency as the upstream measured it itself, from its `/metrics` page: cumulative histograms
/// (take [`Histogram::since`] of two scrapes for a window).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpstreamLatency {
    /// Time to first token, in seconds (vLLM `vllm:time_to_first_token_seconds`; TGI and
    /// llama.cpp export none).
    pub ttft_s: Option<Histogram>,
    /// Time between output tokens, in seconds: vLLM `vllm:inter_token_latency_seconds`
    /// (`vllm:time_per_output_token_seconds` before 0.11), TGI
    /// `tgi_request_mean_time_per_token_duration`; llama.cpp exports only the totals
    /// `llamacpp:tokens_predicted_seconds_total` / `llamacpp:tokens_predicted_total`, which give
    /// a mean and no quantiles.
    pub itl_s: Option<Histogram>,
}

impl EngineKind {
    /// The upstream's own latency histograms (see [`UpstreamLatency`]).
    pub fn latency_from_metrics(self, m: &Metrics) -> UpstreamLatency {
        match self {
            EngineKind::Vllm => UpstreamLatency {
                ttft_s: m.histogram("vllm:time_to_first_token_seconds"),
                itl_s: m
                    .histogram("vllm:inter_token_latency_seconds")
                    .or_else(|| m.histogram("vllm:time_per_output_token_seconds")),
            },
            EngineKind::Tgi => UpstreamLatency {
                ttft_s: None,
                itl_s: m.histogram("tgi_request_mean_time_per_token_duration"),
            },
            EngineKind::Llamacpp => {
                let totals = m
                    .sum("llamacpp:tokens_predicted_seconds_total")
                    .zip(m.sum("llamacpp:tokens_predicted_total"));
                UpstreamLatency {
                    ttft_s: None,
                    itl_s: totals.map(|(sum, count)| Histogram {
                        buckets: vec![(f64::INFINITY, count)],
                        sum,
                        count,
                    }),
                }
            }
        }
    }
}

/// The upstream's own running totals, from its `/metrics` (`None` where it exports none).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UpstreamCounters {
    /// Prompt tokens processed (vLLM `vllm:prompt_tokens_total`, TGI the sum of
    /// `tgi_request_input_length`, llama.cpp `llamacpp:prompt_tokens_total`).
    pub prompt_tokens: Option<f64>,
    /// Tokens generated (vLLM `vllm:generation_tokens_total`, TGI the sum of
    /// `tgi_request_generated_tokens`, llama.cpp `llamacpp:tokens_predicted_total`).
    pub generated_tokens: Option<f64>,
    /// Requests preempted (vLLM `vllm:num_preemptions_total`; the others export none).
    pub preemptions: Option<f64>,
}

impl EngineKind {
    /// The upstream's running totals (see [`UpstreamCounters`]).
    pub fn counters_from_metrics(self, m: &Metrics) -> UpstreamCounters {
        match self {
            EngineKind::Vllm => UpstreamCounters {
                prompt_tokens: m.sum("vllm:prompt_tokens_total"),
                generated_tokens: m.sum("vllm:generation_tokens_total"),
                preemptions: m.sum("vllm:num_preemptions_total"),
            },
            EngineKind::Tgi => UpstreamCounters {
                prompt_tokens: m.sum("tgi_request_input_length_sum"),
                generated_tokens: m.sum("tgi_request_generated_tokens_sum"),
                preemptions: None,
            },
            EngineKind::Llamacpp => UpstreamCounters {
                prompt_tokens: m.sum("llamacpp:prompt_tokens_total"),
                generated_tokens: m.sum("llamacpp:tokens_predicted_total"),
                preemptions: None,
            },
        }
    }
}

/// llama.cpp's `/slots`: how many slots are busy and how much of their context they hold.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SlotsState {
    /// Slots (the server's `-np`).
    pub slots: u32,
    /// Slots processing a request.
    pub busy: u32,
    /// Tokens held by busy slots (prompt + generated so far).
    pub used_tokens: u64,
    /// Context size summed over all slots, in tokens.
    pub ctx_tokens: u64,
}

impl SlotsState {
    /// Parses the `/slots` answer: a list of `{id, n_ctx, is_processing, n_prompt_tokens,
    /// next_token: [{n_decoded}]}` objects (the task fields are absent on a slot that never ran;
    /// older servers give `n_past`).
    pub fn parse(v: &Value) -> Result<Self, String> {
        let list = v.as_array().ok_or("`/slots` did not answer a list of slots")?;
        let mut s = SlotsState::default();
        for (i, slot) in list.iter().enumerate() {
            let n_ctx = slot
                .get("n_ctx")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("slot {i} of `/slots` has no `n_ctx`"))?;
            s.slots += 1;
            s.ctx_tokens += n_ctx;
            if slot.get("is_processing").and_then(Value::as_bool).unwrap_or(false) {
                s.busy += 1;
                let prompt = slot.get("n_prompt_tokens").and_then(Value::as_u64);
                let decoded = slot.pointer("/next_token/0/n_decoded").and_then(Value::as_u64).unwrap_or(0);
                // Older servers report the tokens in the slot's cache as `n_past` instead.
                let used = match prompt {
                    Some(p) => p + decoded,
                    None => slot.get("n_past").and_then(Value::as_u64).unwrap_or(decoded),
                };
                s.used_tokens += used.min(n_ctx);
            }
        }
        Ok(s)
    }

    /// The fraction of the slots' context in use, 0–1 (llama.cpp's stand-in for KV-cache use).
    /// With a unified KV cache (`--kv-unified`) every slot reports the whole context, so this
    /// reads low by the slot count; llama.cpp does not say which mode it runs.
    pub fn kv_usage_frac(&self) -> f64 {
        if self.ctx_tokens == 0 {
            0.0
        } else {
            (self.used_tokens as f64 / self.ctx_tokens as f64).clamp(0.0, 1.0)
        }
    }
}

/// Fetches and parses llama.cpp's `/slots` (on by default; `--no-slots` turns it off, and the
/// server then answers 501). A server without the endpoint (404, 501), or with another answer
/// format, is a `Protocol` error; one that cannot be reached or fails (5xx) is `Unavailable`.
pub async fn fetch_slots(client: &reqwest::Client, base: &reqwest::Url) -> Result<SlotsState, EngineError> {
    let url = join_url(base, "slots");
    let resp = client
        .get(&url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| transport_error(&url, &e))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::NOT_IMPLEMENTED {
        return Err(EngineError::Protocol(format!(
            "{url} answered {status} (a llama-server started with --no-slots has no slots endpoint)"
        )));
    }
    if !status.is_success() {
        return Err(EngineError::Unavailable(format!("{url} answered {status}")));
    }
    let v: Value = resp.json().await.map_err(|e| EngineError::Protocol(format!("{url}: {e}")))?;
    SlotsState::parse(&v).map_err(|m| EngineError::Protocol(format!("{url}: {m}")))
}

/// Settings of an [`HttpEngine`] (the engine plugins' config).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpEngineConfig {
    /// Base URL of the server. Default: `http://127.0.0.1:8000`.
    pub url: String,
    /// Model name sent in OpenAI requests; `None` sends none (llama.cpp ignores it, vLLM needs
    /// the served name). Default: none.
    pub model: Option<String>,
    /// Stream responses (per-token times) or not. Default: true.
    pub stream: bool,
    /// Seconds to wait for a whole request. Default: 600.
    pub timeout_s: f64,
    /// Send OpenAI chat requests (`/v1/chat/completions`, the prompt as one user message)
    /// instead of plain completions. The server's chat template adds its own tokens to the
    /// prompt, so prompt lengths grow by a few tokens. Ignored for TGI. Default: false.
    pub chat: bool,
    /// A bearer token sent with every request (`Authorization: Bearer …`), for a server or
    /// gateway that wants one. Default: none.
    pub api_key: Option<String>,
}

impl Default for HttpEngineConfig {
    fn default() -> Self {
        HttpEngineConfig {
            url: "http://127.0.0.1:8000".into(),
            model: None,
            stream: true,
            timeout_s: 600.0,
            chat: false,
            api_key: None,
        }
    }
}

/// What one request produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    /// Prompt tokens as the server counted them, if it said.
    pub prompt_tokens: Option<u32>,
    /// Tokens generated (the server's count when it gave one, else the streamed chunks).
    pub output_tokens: u32,
    /// Seconds from sending to the first token (to the whole answer when not streaming).
    pub ttft_s: f64,
    /// Seconds from sending to each streamed token after the first.
    pub token_times_s: Vec<f64>,
    /// Seconds from sending to the end of the answer.
    pub e2e_s: f64,
    /// The generated text.
    pub text: String,
    /// Energy the energyllm gateway attributed to the request (`usage.energy_joules`), in joules;
    /// `None` from a server that is not the gateway.
    pub energy_j: Option<f64>,
}

/// A live engine over HTTP. Implements [`Engine`]; the gateway uses its pieces directly.
#[derive(Clone, Debug)]
pub struct HttpEngine {
    kind: EngineKind,
    base: reqwest::Url,
    client: reqwest::Client,
    config: HttpEngineConfig,
    epoch: Instant,
}

/// Checks an upstream URL: `http://host:port[/prefix]` (no TLS in this build).
pub fn parse_base_url(url: &str) -> Result<reqwest::Url, EngineError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        EngineError::Unavailable(format!("`{url}` is not a URL ({e}); give one like http://127.0.0.1:8000"))
    })?;
    if parsed.scheme() != "http" || parsed.host_str().is_none() {
        return Err(EngineError::Unavailable(format!(
            "`{url}`: only http://host:port upstreams are supported (no TLS; put the engine on loopback or a private network)"
        )));
    }
    Ok(parsed)
}

/// Joins `path` onto `base`, keeping any path prefix of `base`.
pub fn join_url(base: &reqwest::Url, path: &str) -> String {
    format!("{}/{}", base.as_str().trim_end_matches('/'), path.trim_start_matches('/'))
}

/// An error and its causes, joined with `: ` (reqwest's own message leaves out the cause).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Maps a transport error to an engine error that says what to check.
pub fn transport_error(url: &str, e: &reqwest::Error) -> EngineError {
    let chain = error_chain(e);
    if e.is_connect() {
        EngineError::Unavailable(format!("cannot connect to {url}: is the server running? ({chain})"))
    } else if e.is_timeout() {
        EngineError::Unavailable(format!("{url} timed out ({chain})"))
    } else {
        EngineError::Unavailable(format!("{url}: {chain}"))
    }
}

/// A prompt of about `tokens` tokens for the common Llama-family tokenizers (one word each).
pub fn synthetic_prompt(tokens: u32) -> String {
    "hello ".repeat(tokens.max(1) as usize).trim_end().to_owned()
}

impl HttpEngine {
    /// An engine of `kind` at `config.url`.
    pub fn new(kind: EngineKind, config: HttpEngineConfig) -> Result<Self, EngineError> {
        let base = parse_base_url(&config.url)?;
        if !(config.timeout_s.is_finite() && config.timeout_s > 0.0) {
            return Err(EngineError::Protocol(format!(
                "timeout_s must be positive, got {}",
                config.timeout_s
            )));
        }
        let mut builder = kind.client_builder(Some(Duration::from_secs_f64(config.timeout_s)));
        if let Some(key) = &config.api_key {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    EngineError::Protocol("the API key holds characters a header cannot carry".into())
                })?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        let client = builder
            .build()
            .map_err(|e| EngineError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpEngine { kind, base, client, config, epoch: Instant::now() })
    }

    /// Which server this is.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The body of a generation request for `req`.
    pub fn request_body(&self, req: &Request, stream: bool) -> (String, Value) {
        let prompt = synthetic_prompt(req.input_tokens);
        match self.kind {
            EngineKind::Tgi => (
                if stream { "generate_stream" } else { "generate" }.to_owned(),
                json!({"inputs": prompt, "parameters": {"max_new_tokens": req.output_tokens, "details": true}}),
            ),
            EngineKind::Vllm | EngineKind::Llamacpp => {
                let mut body = json!({
                    "max_tokens": req.output_tokens,
                    "ignore_eos": true,
                    "stream": stream,
                });
                if stream {
                    body["stream_options"] = json!({"include_usage": true});
                }
                if let Some(m) = &self.config.model {
                    body["model"] = json!(m);
                }
                if self.config.chat {
                    body["messages"] = json!([{"role": "user", "content": prompt}]);
                    ("v1/chat/completions".to_owned(), body)
                } else {
                    body["prompt"] = json!(prompt);
                    ("v1/completions".to_owned(), body)
                }
            }
        }
    }

    /// Sends `req` and waits for the whole answer, timing its tokens.
    pub async fn complete(&self, req: &Request, stream: bool) -> Result<Completion, EngineError> {
        let (path, body) = self.request_body(req, stream);
        let url = join_url(&self.base, &path);
        let start = Instant::now();
        let resp = self.client.post(&url).json(&body).send().await.map_err(|e| transport_error(&url, &e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let msg = format!("{url} answered {status}: {}", text.chars().take(300).collect::<String>());
            return Err(if status.is_client_error() {
                EngineError::Rejected(msg)
            } else {
                EngineError::Unavailable(msg)
            });
        }
        if !stream {
            let v: Value = resp
                .json()
                .await
                .map_err(|e| EngineError::Protocol(format!("{url} did not answer with JSON: {e}")))?;
            let e2e_s = start.elapsed().as_secs_f64();
            let mut c =
                parse_plain(self.kind, &v).map_err(|m| EngineError::Protocol(format!("{url}: {m}")))?;
            c.ttft_s = e2e_s;
            c.e2e_s = e2e_s;
            return Ok(c);
        }
        let mut acc = StreamAccumulator::new(self.kind);
        let mut decoder = SseDecoder::new();
        let mut bytes = resp.bytes_stream();
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|e| transport_error(&url, &e))?;
            let t = start.elapsed().as_secs_f64();
            for ev in decoder.push(&chunk).map_err(|e| EngineError::Protocol(format!("{url}: {e}")))? {
                acc.event(&ev.data, t).map_err(|m| EngineError::Protocol(format!("{url}: {m}")))?;
            }
        }
        let t = start.elapsed().as_secs_f64();
        if let Some(ev) = decoder.finish().map_err(|e| EngineError::Protocol(format!("{url}: {e}")))? {
            acc.event(&ev.data, t).map_err(|m| EngineError::Protocol(format!("{url}: {m}")))?;
        }
        acc.finish(t).map_err(|m| EngineError::Protocol(format!("{url}: {m}")))
    }

    /// Fetches and parses `/metrics`.
    pub async fn metrics(&self) -> Result<Metrics, EngineError> {
        let url = join_url(&self.base, "metrics");
        let resp = self.client.get(&url).send().await.map_err(|e| transport_error(&url, &e))?;
        if !resp.status().is_success() {
            return Err(EngineError::Unavailable(format!(
                "{url} answered {} (llama-server needs --metrics)",
                resp.status()
            )));
        }
        let text = resp.text().await.map_err(|e| transport_error(&url, &e))?;
        Metrics::parse(&text).map_err(|e| EngineError::Protocol(format!("{url}: {e}")))
    }

    /// The server's state, from `/metrics` (and for llama.cpp, whose metrics carry no KV-cache
    /// use, from `/slots` when it answers).
    pub async fn engine_state(&self) -> Result<EngineState, EngineError> {
        let m = self.metrics().await?;
        let mut state = self.kind.state_from_metrics(&m)?;
        if self.kind == EngineKind::Llamacpp && m.sum("llamacpp:kv_cache_usage_ratio").is_none() {
            if let Ok(slots) = fetch_slots(&self.client, &self.base).await {
                state.kv_usage_frac = slots.kv_usage_frac();
            }
        }
        Ok(state)
    }

    /// The server's own latency histograms, from `/metrics`.
    pub async fn latency(&self) -> Result<UpstreamLatency, EngineError> {
        Ok(self.kind.latency_from_metrics(&self.metrics().await?))
    }

    /// llama.cpp's `/slots` (see [`fetch_slots`]).
    pub async fn slots(&self) -> Result<SlotsState, EngineError> {
        fetch_slots(&self.client, &self.base).await
    }
}

impl Engine for HttpEngine {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn run_batch<'a>(
        &'a mut self,
        batch: &'a [Request],
    ) -> BoxFuture<'a, Result<Vec<RequestRecord>, EngineError>> {
        Box::pin(async move {
            let this = &*self;
            let futs = batch.iter().map(|r| async move {
                let sent_s = this.epoch.elapsed().as_secs_f64();
                let outcome = this.complete(r, this.config.stream).await;
                let end_s = this.epoch.elapsed().as_secs_f64();
                let (status, first, done, out) = match outcome {
                    Ok(c) => (RequestStatus::Completed, sent_s + c.ttft_s, sent_s + c.e2e_s, c.output_tokens),
                    Err(_) => (RequestStatus::Rejected, end_s, end_s, 0),
                };
                RequestRecord {
                    id: r.id,
                    status,
                    arrival_s: sent_s,
                    dispatch_s: sent_s,
                    first_token_s: first,
                    completion_s: done,
                    input_tokens: r.input_tokens,
                    output_tokens: out,
                    energy_j: 0.0,
                    preemptions: 0,
                }
            });
            Ok(futures_util::future::join_all(futs).await)
        })
    }

    fn state(&self) -> BoxFuture<'_, Result<EngineState, EngineError>> {
        Box::pin(self.engine_state())
    }
}

fn build(kind: EngineKind, config: &ConfigValue) -> Result<Box<dyn Engine>, EngineError> {
    let cfg: HttpEngineConfig =
        parse_config("engine", kind.name(), config).map_err(|e| EngineError::Protocol(e.to_string()))?;
    Ok(Box::new(HttpEngine::new(kind, cfg)?))
}

inventory::submit! {
    EnginePlugin {
        name: "vllm",
        description: "vLLM over its OpenAI-compatible API and Prometheus /metrics (url=, model=)",
        build: |c| build(EngineKind::Vllm, c),
    }
}
inventory::submit! {
    EnginePlugin {
        name: "tgi",
        description: "text-generation-inference over /generate, /generate_stream and /metrics (url=)",
        build: |c| build(EngineKind::Tgi, c),
    }
}
inventory::submit! {
    EnginePlugin {
        name: "llamacpp",
        description: "llama.cpp llama-server over its OpenAI-compatible API and /metrics (url=)",
        build: |c| build(EngineKind::Llamacpp, c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_clear_errors() {
        for url in ["not a url", "https://example.com", "ftp://x/", "http://"] {
            let e =
                HttpEngine::new(EngineKind::Vllm, HttpEngineConfig { url: url.into(), ..Default::default() });
            assert!(e.is_err(), "{url}");
        }
        let base = parse_base_url("http://127.0.0.1:9/prefix/").unwrap();
        assert_eq!(join_url(&base, "/v1/completions"), "http://127.0.0.1:9/prefix/v1/completions");
    }

    #[test]
    fn states_from_each_engine() {
        let vllm = Metrics::parse("vllm:num_requests_running{m=\"x\"} 3\nvllm:num_requests_waiting 1\nvllm:gpu_cache_usage_perc 0.25\n").unwrap();
        let s = EngineKind::Vllm.state_from_metrics(&vllm).unwrap();
        assert_eq!((s.running, s.waiting, s.kv_usage_frac), (3, 1, 0.25));
        let e = EngineKind::Llamacpp.state_from_metrics(&vllm).unwrap_err().to_string();
        assert!(e.contains("llamacpp:requests_processing"), "{e}");
    }
}

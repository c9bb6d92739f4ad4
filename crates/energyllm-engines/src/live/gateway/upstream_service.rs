//! The upstream call as a tower [`Service`]: a POST of a JSON body, retried only on connection
//! failures, under a timeout layer.

use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use tower::Service;

use crate::live::upstream::join_url;

/// The upstream call as a tower service: a POST of a JSON body to a path.
#[derive(Clone)]
pub(super) struct Upstream {
    pub(super) client: reqwest::Client,
    pub(super) base: reqwest::Url,
    pub(super) retries: u32,
}

/// One upstream call: the path under the base URL and the JSON body.
pub(super) struct UpstreamCall {
    pub(super) path: &'static str,
    pub(super) body: Bytes,
}

#[derive(Debug)]
enum UpstreamFailure {
    Connect(String),
    Other(String),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<UpstreamCall> for Upstream {
    type Response = reqwest::Response;
    type Error = BoxError;
    type Future = energyllm_core::BoxFuture<'static, Result<reqwest::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Admission is the controller's job (Dispatch); by the time a call gets here it may go.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: UpstreamCall) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let url = join_url(&this.base, call.path);
            let mut attempt = 0;
            loop {
                let sent = this
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(call.body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) => return Ok(r),
                    Err(e) if e.is_connect() && attempt < this.retries => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                    Err(e) if e.is_connect() => {
                        return Err(Box::new(UpstreamError(UpstreamFailure::Connect(format!(
                            "cannot connect to the upstream at {url} after {} attempts: {e}",
                            attempt + 1
                        )))) as BoxError)
                    }
                    Err(e) => {
                        let e = crate::live::upstream::error_chain(&e);
                        return Err(Box::new(UpstreamError(UpstreamFailure::Other(format!("{url}: {e}")))));
                    }
                }
            }
        })
    }
}

#[derive(Debug)]
struct UpstreamError(UpstreamFailure);
impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            UpstreamFailure::Connect(m) | UpstreamFailure::Other(m) => f.write_str(m),
        }
    }
}
impl std::error::Error for UpstreamError {}

/// The upstream stack: a timeout layer around the call (a metrics layer would go here too).
pub(super) type UpstreamService = tower::timeout::Timeout<Upstream>;

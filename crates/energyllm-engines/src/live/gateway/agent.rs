//! HAProxy's agent check: each connection to the agent port gets one line and is closed — `drain`
//! while the gateway drains, else `up N%` with N the endpoint score in percent (at least 1, so
//! an instance without slack still takes a trickle), or `up 100%` without a score. HAProxy then
//! weighs its servers by the same score the cluster simulator routes by.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

use super::handlers::Shared;

/// The line the agent answers now.
pub(super) fn agent_reply(s: &Shared) -> String {
    if s.draining.load(Ordering::Relaxed) {
        return "drain\n".to_owned();
    }
    let score = s.metrics.endpoint_score.get();
    let weight = if score.is_finite() { (score * 100.0).round().clamp(1.0, 100.0) as u32 } else { 100 };
    format!("up {weight}%\n")
}

/// Answers agent checks on `listener` until the task is aborted.
pub(super) async fn serve_agent(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let line = agent_reply(&shared);
        tokio::spawn(async move {
            let write = async {
                let _ = stream.write_all(line.as_bytes()).await;
                let _ = stream.shutdown().await;
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
        });
    }
}

//! `energyllm epp` (feature `epp`): the endpoint picker for Envoy and the Gateway API Inference
//! Extension, ranking a pool of energyllm gateways by the score each exports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

use energyllm_epp::{EppConfig, PickPolicy, Pool};

use crate::live::{init_logging, runtime};

/// Arguments of `epp`.
#[derive(Args, Clone, Debug)]
pub struct EppArgs {
    /// The gRPC address Envoy's ext_proc filter and health checks dial (the Inference
    /// Extension's default port is 9002).
    #[arg(long, default_value = "0.0.0.0:9002")]
    pub listen: SocketAddr,
    /// The pool as a TOML file of `[[endpoint]]` tables (`address = "ip:port"`, optional
    /// `metrics_url`).
    #[arg(long, value_name = "FILE", conflicts_with = "endpoint")]
    pub pool: Option<PathBuf>,
    /// A gateway of the pool, `ip:port`, its metrics on the same address (repeat per gateway).
    #[arg(long, value_name = "IP:PORT")]
    pub endpoint: Vec<String>,
    /// Serve the picker's own Prometheus page (`/metrics`) on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Milliseconds between two reads of each gateway's metrics page.
    #[arg(long, default_value_t = 200)]
    pub refresh_ms: u64,
    /// Milliseconds one read may take.
    #[arg(long, default_value_t = 1000)]
    pub read_timeout_ms: u64,
    /// Seconds after which a gateway whose page could not be read is no longer picked.
    #[arg(long, default_value_t = 5.0)]
    pub stale_after: f64,
    /// Endpoints listed after the first, for the proxy to retry down the list.
    #[arg(long, default_value_t = 2)]
    pub fallbacks: usize,
    /// Refuse a sheddable request (x-energyllm-priority below 0) with 429 when the best
    /// endpoint's score is under this; 0 never sheds.
    #[arg(long, default_value_t = 0.14)]
    pub shed_below: f64,
    /// Largest request body gathered in full-duplex mode, in bytes; larger ones get 413.
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// Treat request bodies as FULL_DUPLEX_STREAMED even when Envoy does not say so (Envoy
    /// before 1.34 sends no protocol_config).
    #[arg(long)]
    pub assume_full_duplex: bool,
    /// Log format on standard error: text, or json (one object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Which messages to log, as a tracing filter; RUST_LOG, when set, takes precedence.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

impl EppArgs {
    /// The picker's configuration, with every setting checked.
    pub fn config(&self) -> anyhow::Result<EppConfig> {
        let pool = match &self.pool {
            Some(path) => Pool::from_file(path)?,
            None if self.endpoint.is_empty() => {
                bail!("give the pool: --pool FILE or --endpoint IP:PORT (repeated)")
            }
            None => Pool::from_addresses(&self.endpoint)?,
        };
        if !(self.stale_after.is_finite() && self.stale_after > 0.0) {
            bail!("--stale-after {} must be a positive number of seconds", self.stale_after);
        }
        if !(0.0..=1.0).contains(&self.shed_below) {
            bail!("--shed-below {} is a score, between 0 and 1", self.shed_below);
        }
        if self.refresh_ms == 0 || self.read_timeout_ms == 0 {
            bail!("--refresh-ms and --read-timeout-ms must be positive");
        }
        let mut cfg = EppConfig::new(self.listen, pool);
        cfg.metrics_listen = self.metrics_listen;
        cfg.refresh = Duration::from_millis(self.refresh_ms);
        cfg.read_timeout = Duration::from_millis(self.read_timeout_ms);
        cfg.policy = PickPolicy {
            fallbacks: self.fallbacks,
            stale_after: Duration::from_secs_f64(self.stale_after),
            shed_below: self.shed_below,
        };
        cfg.max_body_bytes = self.max_body_bytes;
        cfg.force_full_duplex = self.assume_full_duplex;
        Ok(cfg)
    }
}

/// Runs the picker until SIGINT/SIGTERM.
pub fn run_epp(args: &EppArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format, &args.log_level)?;
    let cfg = args.config()?;
    runtime()?.block_on(async {
        let handle = energyllm_epp::start(cfg).await?;
        tracing::info!(metrics = ?handle.metrics_addr, "SIGINT/SIGTERM stops the picker");
        energyllm_engines::live::gateway::shutdown_signal().await;
        handle.stop().await.context("stopping the gRPC server")?;
        tracing::info!("stopped");
        Ok(())
    })
}

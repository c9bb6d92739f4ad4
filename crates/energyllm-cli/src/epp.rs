//! `energyllm epp` (feature `epp`): the endpoint picker for Envoy and the Gateway API Inference
//! Extension, ranking a pool of energyllm gateways by the score each exports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
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
    /// `metrics_url`) and `[[service]]` tables (`address = "host:port"`, optional `metrics_path`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["endpoint", "service"])]
    pub pool: Option<PathBuf>,
    /// A gateway of the pool, `ip:port`, its metrics on the same address (repeat per gateway).
    #[arg(long, value_name = "IP:PORT")]
    pub endpoint: Vec<String>,
    /// A DNS name whose addresses are gateways, `host:port` (a Kubernetes headless Service),
    /// re-resolved every --resolve-interval-ms (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    pub service: Vec<String>,
    /// Milliseconds between two resolutions of each service name.
    #[arg(long, default_value_t = 5000)]
    pub resolve_interval_ms: u64,
    /// Serve the picker's own Prometheus page (`/metrics`) on this address.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Milliseconds between two reads of each gateway's metrics page.
    #[arg(long, default_value_t = 200)]
    pub refresh_ms: u64,
    /// Milliseconds one read may take.
    #[arg(long, default_value_t = 1000)]
    pub read_timeout_ms: u64,
    /// Milliseconds after which a gateway whose last good page is older is no longer picked
    /// (two failed reads in a row leave it out sooner).
    #[arg(long, default_value_t = 5000)]
    pub stale_after_ms: u64,
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
    /// Treat bodies as FULL_DUPLEX_STREAMED while Envoy declares no body mode (Envoy before 1.34
    /// sends no protocol_config); a declared mode always wins.
    #[arg(long)]
    pub assume_full_duplex: bool,
    /// On SIGINT/SIGTERM, milliseconds of NOT_SERVING health before the listener closes.
    #[arg(long, default_value_t = 2000)]
    pub shutdown_grace_ms: u64,
    /// Then, milliseconds open ext_proc streams get to end before they are cut.
    #[arg(long, default_value_t = 25000)]
    pub shutdown_timeout_ms: u64,
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
            None if self.endpoint.is_empty() && self.service.is_empty() => {
                bail!("give the pool: --pool FILE, or --endpoint IP:PORT and --service HOST:PORT (each repeatable)")
            }
            None => Pool::from_flags(&self.endpoint, &self.service)?,
        };
        if self.refresh_ms == 0 || self.read_timeout_ms == 0 || self.resolve_interval_ms == 0 {
            bail!("--refresh-ms, --read-timeout-ms and --resolve-interval-ms must be positive");
        }
        if self.stale_after_ms <= self.refresh_ms {
            bail!(
                "--stale-after-ms {} must exceed --refresh-ms {}: every page would be stale before the next read",
                self.stale_after_ms,
                self.refresh_ms
            );
        }
        if !(0.0..=1.0).contains(&self.shed_below) {
            bail!("--shed-below {} is a score, between 0 and 1", self.shed_below);
        }
        if self.max_body_bytes == 0 {
            bail!("--max-body-bytes must be positive: 0 would refuse every request body with 413");
        }
        let mut cfg = EppConfig::new(self.listen, pool);
        cfg.metrics_listen = self.metrics_listen;
        cfg.refresh = Duration::from_millis(self.refresh_ms);
        cfg.read_timeout = Duration::from_millis(self.read_timeout_ms);
        cfg.policy = PickPolicy {
            fallbacks: self.fallbacks,
            stale_after: Duration::from_millis(self.stale_after_ms),
            shed_below: self.shed_below,
        };
        cfg.max_body_bytes = self.max_body_bytes;
        cfg.force_full_duplex = self.assume_full_duplex;
        cfg.shutdown_grace = Duration::from_millis(self.shutdown_grace_ms);
        cfg.shutdown_timeout = Duration::from_millis(self.shutdown_timeout_ms);
        cfg.resolve_interval = Duration::from_millis(self.resolve_interval_ms);
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
        handle.stop().await?;
        tracing::info!("stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EppArgs,
    }

    fn config(argv: &[&str]) -> anyhow::Result<EppConfig> {
        Cli::try_parse_from(std::iter::once("epp").chain(argv.iter().copied()))?.args.config()
    }

    #[test]
    fn every_pool_flag_is_taken_and_bad_settings_are_refused() {
        let c = config(&["--service", "gw.svc:9000", "--endpoint", "10.0.0.1:9000"]).unwrap();
        assert_eq!((c.pool.endpoints().len(), c.pool.services().len()), (1, 1));
        assert_eq!(config(&["--service", "gw.svc:9000"]).unwrap().pool.services()[0].name, "gw.svc:9000");
        assert!(config(&[]).unwrap_err().to_string().contains("--service HOST:PORT"));
        assert!(config(&["--endpoint", "1.2.3.4:1", "--stale-after-ms", "100"]).is_err());
        assert!(config(&["--endpoint", "1.2.3.4:1", "--max-body-bytes", "0"]).is_err());
        assert!(config(&["--endpoint", "1.2.3.4:1", "--shed-below", "2"]).is_err());
        assert!(config(&["--pool", "p.toml", "--service", "gw:1"]).is_err(), "a file and flags conflict");
    }
}

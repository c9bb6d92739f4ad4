//! `energyllm serve` and `energyllm loadgen` (feature `live`): the gateway in front of a real
//! engine, and a load generator that replays a workload against any OpenAI-compatible endpoint
//! and reports it in the same table and JSON as `eval`, so live and simulated runs compare side
//! by side.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

use energyllm_core::registry::{find, ActuatorPlugin, PluginSpec, PolicyContext, PolicyPlugin};
use energyllm_core::{Controller, RequestRecord, RequestStatus, RunSummary, RunTotals};
use energyllm_engines::live::{
    gateway, sim_actuator, AccessLog, ActuatorSetup, EngineKind, GatewayConfig, HttpEngine, HttpEngineConfig,
    Identity, ScoreModel,
};
use energyllm_hw::GuardConfig;

use crate::args::named_value;
use crate::eval::SloArgs;
use energyllm_bench::report::markdown_table;
use energyllm_sim::SimSetup;
use energyllm_workload::{sample_requests, ArrivalPattern, LengthDataset, ReadOptions};

/// Arguments of `serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// The engine behind the gateway: vllm, tgi or llamacpp.
    #[arg(long, default_value = "vllm")]
    pub engine: String,
    /// The engine's base URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub upstream: String,
    /// Address to listen on; loopback unless --public.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    pub public: bool,
    /// The clock actuator, as NAME or NAME:key=value,…: `nvml[:device=N]` or `amd` on a real GPU,
    /// `sim` to simulate the clock and its power (no GPU is touched, and the watts and joules
    /// reported are the simulator's). Required, so that simulated figures are never mistaken
    /// for measured ones.
    #[arg(long)]
    pub actuator: String,
    /// CUDA index of the GPU for the nvml actuator (same as --actuator nvml:device=N).
    #[arg(long)]
    pub gpu: Option<u32>,
    /// GPU profile: the action space (clocks) and the sim actuator's model.
    #[arg(long, default_value = "a100-40gb")]
    pub gpu_profile: String,
    /// Model profile, for policies that consult a performance model.
    #[arg(long, default_value = "llama-3.1-8b")]
    pub model_profile: String,
    /// The policy, as NAME or NAME:key=value,….
    #[arg(long, default_value = "ppo")]
    pub policy: String,
    /// The latency SLO.
    #[command(flatten)]
    pub slo: SloArgs,
    /// Seconds between decisions.
    #[arg(long, default_value_t = 1.0)]
    pub decision_interval: f64,
    /// Requests that may wait in the queue; more get 429.
    #[arg(long, default_value_t = 1024)]
    pub max_queue: usize,
    /// Seconds to wait for the engine's response headers.
    #[arg(long, default_value_t = 60.0)]
    pub upstream_timeout: f64,
    /// Seconds in-flight requests get to finish on SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// A bearer token clients must send.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Decide and report, but change no clock.
    #[arg(long)]
    pub dry_run: bool,
    /// Seed for policies with randomness.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seconds a client has to send a request's headers, from connecting or from the end of its
    /// previous request.
    #[arg(long, default_value_t = 10.0)]
    pub header_read_timeout: f64,
    /// Seconds a keep-alive connection may sit with no request in progress before it is closed.
    #[arg(long, default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Seconds the engine may stay silent in the middle of a streamed answer before the gateway
    /// ends it with an error event.
    #[arg(long, default_value_t = 60.0)]
    pub stream_idle_timeout: f64,
    /// Seconds a request may take from arrival to the end of its answer, queue included.
    #[arg(long, default_value_t = 900.0)]
    pub request_timeout: f64,
    /// Client connections served at once; more are answered 503. Keep it below the open-file
    /// limit (`ulimit -n`), which must also hold one engine connection per request in flight.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Largest request body accepted, in bytes; larger ones get a JSON 413.
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// Seconds over which energyllm_slo_attainment_ratio is computed.
    #[arg(long, default_value_t = 300.0)]
    pub slo_window: f64,
    /// The level of the access log's line per request (target `energyllm::access`), or off.
    #[arg(long, default_value = "info", value_parser = named_value(&AccessLog::ALL, AccessLog::name))]
    pub access_log: AccessLog,
    /// Log format on standard error: text, or json (one object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Answer HAProxy's agent check on this address (`agent-check agent-port …` in the backend):
    /// `up N%` from the endpoint score, `drain` while draining.
    #[arg(long, value_name = "ADDR")]
    pub agent_check: Option<SocketAddr>,
    /// Which messages to log, as a tracing filter (`info`, `warn`, `energyllm::access=off,info`…);
    /// RUST_LOG, when set, takes precedence.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// Logs to standard error in `format`, filtered by RUST_LOG or else `level`.
pub(crate) fn init_logging(format: &str, level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => {
            EnvFilter::try_new(&env).with_context(|| format!("RUST_LOG={env} is not a tracing filter"))?
        }
        _ => EnvFilter::try_new(level).with_context(|| {
            format!("--log-level {level} is not a tracing filter (try info, warn or debug)")
        })?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Runs the gateway until SIGINT/SIGTERM, then drains and restores the clocks.
pub fn run_serve(args: &ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format, &args.log_level)?;
    let engine = EngineKind::parse(&args.engine)?;
    let mut setup = SimSetup::builtin(&args.gpu_profile, &args.model_profile)?;
    setup.controller.slo = args.slo.slo()?;
    setup.controller.decision_interval_s = Some(args.decision_interval);
    setup.controller.validate()?;
    let spec = PluginSpec::parse(&args.policy)?;
    let plugin = find::<PolicyPlugin>(&spec.name)?;
    let mut ctx = PolicyContext::new(setup.controller.action_space.clone(), setup.controller.slo, args.seed);
    ctx.perf_model = Some(setup.perf_model());
    let policy = (plugin.build)(&spec.config, &ctx)?;
    let controller = Controller::new(setup.controller.clone(), policy)?;

    let mut actuator = PluginSpec::parse(&args.actuator)?;
    if let Some(index) = args.gpu {
        match (actuator.name.as_str(), actuator.config.as_object_mut()) {
            ("nvml", Some(table)) => {
                table.entry("device").or_insert(index.into());
            }
            ("nvml", None) => actuator.config = serde_json::json!({ "device": index }),
            (name, _) => bail!("--gpu selects an NVIDIA GPU for the nvml actuator; `{name}` takes its device in --actuator (e.g. amd:card=…)"),
        }
    }
    if actuator.name == "sim" {
        tracing::warn!(
            "--actuator sim: the clock and its power are simulated; no GPU is touched, and the watts and \
             joules reported are the simulator's, not measurements (energyllm_build_info says actuator=\"sim\")"
        );
    }
    // The GPU label of /metrics: the device the actuator drives, where it names one.
    let gpu_label = ["device", "card", "index"]
        .iter()
        .find_map(|k| actuator.config.get(*k).map(|v| v.to_string().trim_matches('"').to_owned()))
        .unwrap_or_else(|| "0".to_owned());
    let identity = Identity { actuator: actuator.name.clone(), policy: spec.label.clone(), gpu: gpu_label };
    let actuator = if actuator.name == "sim" {
        sim_actuator(&args.gpu_profile)?
    } else {
        let p = find::<ActuatorPlugin>(&actuator.name)?;
        let a = (p.build)(&actuator.config)
            .with_context(|| format!("starting the `{}` actuator", actuator.name))?;
        // The gateway catches the signals itself to drain first; the guard restores on drop.
        ActuatorSetup {
            actuator: a,
            sim: None,
            guard: GuardConfig { restore_on_signal: false, ..GuardConfig::default() },
        }
    };
    let config = GatewayConfig {
        listen: args.listen,
        allow_public: args.public,
        max_queue: args.max_queue,
        upstream_timeout_s: args.upstream_timeout,
        drain_timeout_s: args.drain_timeout,
        api_key: args.api_key.clone(),
        dry_run: args.dry_run,
        header_read_timeout_s: args.header_read_timeout,
        idle_timeout_s: args.idle_timeout,
        stream_idle_timeout_s: args.stream_idle_timeout,
        request_timeout_s: args.request_timeout,
        max_connections: args.max_connections,
        max_body_bytes: args.max_body_bytes,
        slo_window_s: args.slo_window,
        identity,
        access_log: args.access_log,
        // The endpoint score consults the profile's performance model: the same prediction the
        // cluster simulator's energy-slack router ranks instances by.
        score_model: Some(ScoreModel {
            perf: setup.perf_model(),
            idle_power_w: energyllm_hw::SimGpu::with_count(setup.gpu.clone(), setup.model.tensor_parallel)
                .idle_power_w(),
            slo_margin: energyllm_sim::router::EnergySlack::default().slo_margin,
        }),
        agent_check: args.agent_check,
        ..GatewayConfig::new(engine, &args.upstream)
    };
    let slo = setup.controller.slo.describe();
    let (cap, clock) = (controller.batch_cap(), controller.freq().0);
    runtime()?.block_on(async {
        let mut handle = gateway::start(config.clone(), controller, actuator).await?;
        tracing::info!(
            listen = %handle.addr(),
            engine = engine.name(),
            upstream = %args.upstream,
            actuator = %args.actuator,
            policy = %spec.label,
            slo = %slo,
            batch_cap = cap,
            clock_mhz = clock,
            dry_run = args.dry_run,
            max_queue = config.max_queue,
            max_connections = config.max_connections,
            max_body_bytes = config.max_body_bytes,
            header_read_timeout_s = config.header_read_timeout_s,
            idle_timeout_s = config.idle_timeout_s,
            stream_idle_timeout_s = config.stream_idle_timeout_s,
            request_timeout_s = config.request_timeout_s,
            upstream_timeout_s = config.upstream_timeout_s,
            drain_timeout_s = config.drain_timeout_s,
            "energyllm gateway serving; SIGINT/SIGTERM drains and stops"
        );
        gateway::shutdown_signal().await;
        handle.shutdown();
        let report = handle.join().await?;
        let clocks = if report.actuator.clocks_restored {
            "restored"
        } else {
            "NOT restored: check `energyllm hw info`"
        };
        tracing::info!(
            completed = report.completed,
            failed = report.failed,
            cancelled = report.cancelled,
            abandoned = report.abandoned,
            clocks,
            "stopped"
        );
        Ok(())
    })
}

/// Arguments of `loadgen`.
#[derive(Args, Clone, Debug)]
pub struct LoadgenArgs {
    /// Base URL of an OpenAI-compatible endpoint (the gateway, vLLM, llama-server).
    #[arg(long)]
    pub target: String,
    /// Request lengths (JSON lines of input_len/output_len, or a trace); default: the bundled
    /// ShareGPT-like sample.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// Mean arrival rate, requests per second.
    #[arg(long, default_value_t = 0.8)]
    pub arrival_rate: f64,
    /// Arrival process (poisson, gamma:cv=2, …, as in `eval --arrival`).
    #[arg(long, default_value = "poisson", value_name = "SPEC")]
    pub arrival: String,
    /// Seconds of arrivals.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// The latency SLO.
    #[command(flatten)]
    pub slo: SloArgs,
    /// Seed for arrivals and lengths (the same seed replays the same requests).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Model name to send (vLLM needs its served name).
    #[arg(long)]
    pub model: Option<String>,
    /// Label of the run in the table.
    #[arg(long, default_value = "live")]
    pub label: String,
    /// Seconds a single request may take before it counts as rejected.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Send OpenAI chat requests (`/v1/chat/completions`) instead of plain completions.
    #[arg(long)]
    pub chat: bool,
    /// A bearer token to send (`Authorization: Bearer …`), for a gateway started with --api-key.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Directory for table.md, summary.json and requests.jsonl.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The GPU energy counter of an energyllm gateway at `target` (`energyllm_energy_joules_total`
/// on its `/metrics`), or `None` when the target is not one or does not answer.
async fn gateway_energy_j(client: &reqwest::Client, target: &str) -> Option<f64> {
    let url = format!("{}/metrics", target.trim_end_matches('/'));
    let page = client.get(url).timeout(Duration::from_secs(5)).send().await.ok()?.text().await.ok()?;
    energyllm_engines::live::Metrics::parse(&page).ok()?.sum("energyllm_energy_joules_total")
}

/// Replays the workload against the target and prints the `eval` table.
pub fn run_loadgen(args: &LoadgenArgs) -> anyhow::Result<()> {
    let slo = args.slo.slo()?;
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be a positive number of seconds, got {}", args.duration);
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds, got {}", args.timeout);
    }
    let dataset = match &args.dataset {
        Some(p) => LengthDataset::open(&p.to_string_lossy(), &ReadOptions::default())?.0,
        None => LengthDataset::sharegpt_like(),
    };
    let pattern = ArrivalPattern::parse(&args.arrival)?;
    let requests = sample_requests(&dataset, &pattern, args.arrival_rate, args.duration, args.seed)?;
    let config = HttpEngineConfig {
        url: args.target.clone(),
        model: args.model.clone(),
        stream: true,
        timeout_s: args.timeout,
        chat: args.chat,
        api_key: args.api_key.clone(),
    };
    // The target speaks the OpenAI API whatever is behind it.
    let engine = HttpEngine::new(EngineKind::Vllm, config)?;
    eprintln!("sending {} requests over {} s to {}", requests.len(), args.duration, args.target);
    let bar = crate::progress::progress_bar(args.quiet, requests.len() as u64, "requests");
    let metrics_client = reqwest::Client::new();
    let target = args.target.clone();
    let (records, elapsed_s, board_j) = runtime()?.block_on(async move {
        let energy_before = gateway_energy_j(&metrics_client, &target).await;
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(requests.len());
        for r in requests {
            let at = start + Duration::from_nanos(r.arrival.as_nanos());
            tokio::time::sleep_until(at).await;
            let (engine, bar) = (engine.clone(), bar.clone());
            tasks.push(tokio::spawn(async move {
                let arrival_s = r.arrival.as_secs_f64();
                let sent_s = start.elapsed().as_secs_f64();
                let outcome = engine.complete(&r, true).await;
                let end_s = start.elapsed().as_secs_f64();
                let record = |status, first, done, out, energy| RequestRecord {
                    id: r.id,
                    status,
                    arrival_s,
                    dispatch_s: sent_s,
                    first_token_s: first,
                    completion_s: done,
                    input_tokens: r.input_tokens,
                    output_tokens: out,
                    energy_j: energy,
                    preemptions: 0,
                };
                bar.inc(1);
                match outcome {
                    Ok(c) => record(
                        RequestStatus::Completed,
                        sent_s + c.ttft_s,
                        sent_s + c.e2e_s,
                        c.output_tokens,
                        c.energy_j.unwrap_or(0.0),
                    ),
                    Err(e) => {
                        bar.suspend(|| eprintln!("request {} failed: {e}", r.id.0));
                        record(RequestStatus::Rejected, end_s, end_s, 0, 0.0)
                    }
                }
            }));
        }
        let mut records = Vec::with_capacity(tasks.len());
        for t in tasks {
            records.push(t.await.context("a request task failed")?);
        }
        let elapsed_s = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let energy_after = gateway_energy_j(&metrics_client, &target).await;
        let board_j = energy_before.zip(energy_after).map(|(a, b)| b - a);
        anyhow::Ok((records, elapsed_s, board_j))
    })?;
    if !records.is_empty() && records.iter().all(|r| r.status == RequestStatus::Rejected) {
        bail!(
            "none of the {} requests completed; is {} up and OpenAI-compatible?",
            records.len(),
            args.target
        );
    }
    let energy: f64 = records.iter().map(|r| r.energy_j).sum();
    // Board energy is the gateway's whole counter over the run (idle included), when the target
    // is an energyllm gateway; otherwise it is not known, and the table says so.
    let totals = RunTotals {
        busy_energy_j: energy,
        total_energy_j: board_j.unwrap_or(f64::NAN),
        elapsed_s,
        ..RunTotals::default()
    };
    let summary = RunSummary::compute(&args.label, &slo, &records, &totals, 1);
    let table = markdown_table(std::slice::from_ref(&summary));
    print!("{table}");
    if energy == 0.0 {
        eprintln!(
            "note: the target reported no energy (only the energyllm gateway does), so energy columns are 0"
        );
    }
    match board_j {
        Some(j) => eprintln!(
            "board energy: {j:.1} J on the gateway's counter over the run ({:.1} J attributed to requests)",
            energy
        ),
        None => eprintln!(
            "board energy: not known (the target exports no energyllm_energy_joules_total), shown as NaN"
        ),
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let w = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
        };
        w("table.md", table.as_bytes())?;
        w("summary.json", &serde_json::to_vec_pretty(&[&summary])?)?;
        let mut jsonl = Vec::new();
        for r in &records {
            // The same rows as `eval`'s requests.jsonl: method, run, the record's fields, e2e, SLO.
            let mut row = serde_json::json!({"method": args.label, "run": 0});
            if let (Some(o), serde_json::Value::Object(rec)) = (row.as_object_mut(), serde_json::to_value(r)?)
            {
                o.extend(rec);
                o.insert("e2e_latency_s".into(), r.e2e_latency_s().into());
                o.insert("slo_met".into(), r.meets(&slo).into());
            }
            serde_json::to_writer(&mut jsonl, &row)?;
            jsonl.push(b'\n');
        }
        w("requests.jsonl", &jsonl)?;
        eprintln!("wrote {}", dir.display());
    }
    Ok(())
}

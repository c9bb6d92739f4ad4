//! The simulated engine behind the [`Engine`] seam, sharing its GPU with an actuator handle.

use std::collections::HashMap;

use serde::Deserialize;

use energyllm_core::registry::{parse_config, ConfigValue, EnginePlugin};
use energyllm_core::{BoxFuture, Engine, EngineError, EngineState, Request, RequestRecord, Timestamp};
use energyllm_hw::{GpuSpec, SharedSimGpu, SimGpu};

use crate::{EngineEvent, ModelSpec, SimEngine, SimEngineConfig};

/// A [`SimEngine`] and its GPU packaged as an [`Engine`]: `run_batch` simulates the batch at
/// whatever clock the shared GPU is set to (set it through [`SimServer::gpu`], which implements
/// `FrequencyActuator`), as the profiler does with a live engine and a real GPU.
pub struct SimServer {
    engine: SimEngine,
    gpu: SharedSimGpu,
    now: Timestamp,
}

impl SimServer {
    /// An engine serving `model` on `gpu`.
    pub fn new(config: SimEngineConfig, model: ModelSpec, gpu: SharedSimGpu) -> Result<Self, crate::Error> {
        let engine = SimEngine::new(config, model, &gpu.lock())?;
        Ok(SimServer { engine, gpu, now: Timestamp::ZERO })
    }

    /// A handle on the GPU, to set its clock and read its energy.
    pub fn gpu(&self) -> SharedSimGpu {
        self.gpu.clone()
    }

    fn run(&mut self, batch: &[Request]) -> Vec<RequestRecord> {
        let mut gpu = self.gpu.lock();
        let start = self.now.max(gpu.now());
        let mut index: HashMap<u64, usize> = HashMap::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            index.insert(r.id.0, i);
            // Arrival is the submission time: the profiler measures the engine, not a queue.
            self.engine.submit(start, Request { arrival: start, ..r.clone() });
        }
        let mut records: Vec<Option<RequestRecord>> = vec![None; batch.len()];
        let mut left = batch.len();
        let mut events = Vec::new();
        let mut now = start;
        self.engine.advance(now, &mut gpu, &mut events);
        loop {
            for e in events.drain(..) {
                if let EngineEvent::Finished(rec) = e {
                    if let Some(&i) = index.get(&rec.id.0) {
                        if records[i].is_none() {
                            left -= 1;
                        }
                        records[i] = Some(rec);
                    }
                }
            }
            if left == 0 {
                break;
            }
            match self.engine.next_event_time(&gpu) {
                Some(t) => now = t.max(now),
                None => break,
            }
            self.engine.advance(now, &mut gpu, &mut events);
        }
        gpu.advance(now);
        self.now = now;
        // Every submitted request ends (the engine never drops one), so all slots are filled.
        records.into_iter().flatten().collect()
    }
}

impl Engine for SimServer {
    fn name(&self) -> &str {
        "sim"
    }

    fn run_batch<'a>(
        &'a mut self,
        batch: &'a [Request],
    ) -> BoxFuture<'a, Result<Vec<RequestRecord>, EngineError>> {
        let records = self.run(batch);
        let result = if records.len() == batch.len() {
            Ok(records)
        } else {
            Err(EngineError::Protocol(format!(
                "the simulated engine ended {} of {} requests (duplicate request ids in the batch?)",
                records.len(),
                batch.len()
            )))
        };
        Box::pin(std::future::ready(result))
    }

    fn state(&self) -> BoxFuture<'_, Result<EngineState, EngineError>> {
        let state = EngineState {
            running: self.engine.running() as u32,
            waiting: self.engine.waiting() as u32,
            kv_usage_frac: self.engine.kv_usage_frac(),
        };
        Box::pin(std::future::ready(Ok(state)))
    }
}

/// Config of the `sim` engine plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SimPluginConfig {
    /// Built-in GPU profile. Default: `a100-40gb`.
    gpu: String,
    /// Built-in model profile. Default: `llama-3.1-8b`.
    model: String,
    /// Engine settings.
    engine: SimEngineConfig,
}

impl Default for SimPluginConfig {
    fn default() -> Self {
        SimPluginConfig {
            gpu: "a100-40gb".into(),
            model: "llama-3.1-8b".into(),
            engine: SimEngineConfig::default(),
        }
    }
}

fn build_sim(config: &ConfigValue) -> Result<Box<dyn Engine>, EngineError> {
    let bad = |e: String| EngineError::Unavailable(e);
    let cfg: SimPluginConfig = parse_config("engine", "sim", config).map_err(|e| bad(e.to_string()))?;
    let gpu = GpuSpec::builtin(&cfg.gpu).map_err(|e| bad(e.to_string()))?;
    let model = ModelSpec::builtin(&cfg.model).map_err(|e| bad(e.to_string()))?;
    let server = SimServer::new(cfg.engine, model, SharedSimGpu::new(SimGpu::new(gpu)))
        .map_err(|e| bad(e.to_string()))?;
    Ok(Box::new(server))
}

inventory::submit! {
    EnginePlugin {
        name: "sim",
        description: "iteration-level engine model in virtual time (continuous or static batching, paged KV cache)",
        build: build_sim,
    }
}

//! An inference engine modelled at iteration granularity, in virtual time.
//!
//! Like vLLM, the engine runs iterations back to back while it has work. Each iteration
//! decodes one token for every running request that finished its prefill and spends the rest of
//! its token budget on prefill chunks (chunked prefill). The KV cache is paged: requests are
//! admitted when their prompt's blocks are free; when a decode step needs a block and none is
//! free, the newest running request is preempted and later recomputed from scratch. In static
//! mode a batch is admitted only into an empty engine and runs to completion.
//!
//! Like vLLM, the engine does not know how long an answer will be. It refuses only a prompt
//! longer than the maximum sequence length (`max_model_len`, at most what the KV cache holds),
//! and a request whose answer reaches that length ends there, cut short, as vLLM's
//! `finish_reason: length`. A request's true output length is read only as the token that ends
//! it is produced.
//!
//! The engine is a sans-IO state machine over [`Timestamp`]s, driven like the controller:
//! [`submit`](SimEngine::submit) what the controller dispatched, call
//! [`advance`](SimEngine::advance) at [`next_event_time`](SimEngine::next_event_time) (and
//! after submitting), and collect the [`EngineEvent`]s. Clock changes go through
//! [`request_frequency`](SimEngine::request_frequency), which applies them between iterations.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use energyllm_core::{
    ActuatorError, BatchingMode, FrequencyActuator, Mhz, Request, RequestId, RequestRecord, RequestStatus,
    Timestamp,
};
use energyllm_hw::SimGpu;

use crate::{Error, IterationModel, IterationWork, ModelSpec};

/// Engine settings (vLLM's names where vLLM has the setting).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimEngineConfig {
    /// Continuous (vLLM) or static (run each batch to completion). Default: continuous.
    pub batching: BatchingMode,
    /// Tokens per KV-cache block. Default: 16.
    pub block_size: u32,
    /// Fraction of GPU memory the engine may use for weights and KV cache. Default: 0.9.
    pub gpu_memory_utilization: f64,
    /// Memory reserved for activations and the CUDA context, in GiB. Default: 1.
    pub reserved_gib: f64,
    /// Token budget of one iteration (prefill chunks plus decode tokens). Default: 8192.
    pub max_num_batched_tokens: u32,
    /// Requests that may run at once, whatever the batch cap. Default: 256.
    pub max_num_seqs: u32,
    /// Longest sequence, prompt plus answer, in tokens (vLLM's `max_model_len`). Default, and
    /// at most: what the KV cache holds, so one sequence always fits.
    pub max_model_len: Option<u32>,
    /// Iteration-time constants.
    pub timing: IterationModel,
}

impl Default for SimEngineConfig {
    fn default() -> Self {
        SimEngineConfig {
            batching: BatchingMode::Continuous,
            block_size: 16,
            gpu_memory_utilization: 0.9,
            reserved_gib: 1.0,
            max_num_batched_tokens: 8192,
            max_num_seqs: 256,
            max_model_len: None,
            timing: IterationModel::default(),
        }
    }
}

/// Something the engine reports to the driver.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    /// The request produced its first token.
    FirstToken(RequestId),
    /// The request ended (completed or rejected); the record says how.
    Finished(RequestRecord),
}

/// Counters over the engine's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimEngineStats {
    /// Iterations run.
    pub iterations: u64,
    /// Preemptions (each followed by a recompute).
    pub preemptions: u64,
    /// Static batches started (static mode only).
    pub batches: u64,
}

#[derive(Clone, Debug)]
struct Seq {
    req: Request,
    dispatched: Timestamp,
    first_token: Option<Timestamp>,
    /// Tokens to (re)compute before decoding: the prompt, plus tokens generated before a
    /// preemption.
    prompt_len: u32,
    /// Tokens whose KV entries are in the cache.
    kv_tokens: u32,
    generated: u32,
    blocks: u32,
    energy_j: f64,
    preemptions: u32,
    batch: u64,
    /// Tokens this request contributes to the iteration in flight.
    in_iteration: u32,
}

impl Seq {
    fn target_tokens(&self) -> u32 {
        self.req.output_tokens.max(1)
    }
    fn prefilling(&self) -> bool {
        self.kv_tokens < self.prompt_len
    }
}

#[derive(Clone, Copy, Debug)]
struct Iteration {
    end: Timestamp,
    energy_j: f64,
    tokens: u64,
}

/// The simulated engine. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct SimEngine {
    config: SimEngineConfig,
    model: ModelSpec,
    total_blocks: u32,
    free_blocks: u32,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    iteration: Option<Iteration>,
    pending_freq: Option<Mhz>,
    finished: Vec<EngineEvent>,
    current_batch: u64,
    stats: SimEngineStats,
}

impl SimEngine {
    /// An engine serving `model` on a GPU like `gpu`; fails when the weights do not fit.
    pub fn new(config: SimEngineConfig, model: ModelSpec, gpu: &SimGpu) -> Result<Self, Error> {
        let err = |reason: String| Error::Config { source_name: "sim engine config".into(), reason };
        config.timing.validate().map_err(|r| err(format!("timing: {r}")))?;
        if config.block_size == 0 || config.max_num_batched_tokens == 0 || config.max_num_seqs == 0 {
            return Err(err("block_size, max_num_batched_tokens and max_num_seqs must be ≥ 1".into()));
        }
        if config.max_model_len.is_some_and(|m| m < 2) {
            return Err(err(
                "max_model_len must leave room for a prompt token and an answer token (≥ 2)".into()
            ));
        }
        if !(config.gpu_memory_utilization > 0.0 && config.gpu_memory_utilization <= 1.0) {
            return Err(err(format!(
                "gpu_memory_utilization must be in (0, 1], got {}",
                config.gpu_memory_utilization
            )));
        }
        const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
        let spec = gpu.spec();
        let usable = spec.memory_gib * GIB * config.gpu_memory_utilization - config.reserved_gib * GIB;
        let kv_bytes = usable - model.weight_bytes_per_gpu();
        let block_bytes = model.kv_bytes_per_token_per_gpu() * f64::from(config.block_size);
        let total_blocks =
            if kv_bytes > 0.0 { (kv_bytes / block_bytes).floor().min(f64::from(u32::MAX)) as u32 } else { 0 };
        if total_blocks == 0 {
            return Err(Error::DoesNotFit {
                model: model.name.clone(),
                gpu: spec.name.clone(),
                weights_gib: model.weight_bytes_per_gpu() / GIB,
                usable_gib: usable.max(0.0) / GIB,
            });
        }
        Ok(SimEngine {
            config,
            model,
            total_blocks,
            free_blocks: total_blocks,
            waiting: VecDeque::new(),
            running: Vec::new(),
            iteration: None,
            pending_freq: None,
            finished: Vec::new(),
            current_batch: 0,
            stats: SimEngineStats::default(),
        })
    }

    /// The model served.
    pub fn model(&self) -> &ModelSpec {
        &self.model
    }
    /// The configuration.
    pub fn config(&self) -> &SimEngineConfig {
        &self.config
    }
    /// KV-cache capacity in tokens.
    pub fn kv_capacity_tokens(&self) -> u64 {
        u64::from(self.total_blocks) * u64::from(self.config.block_size)
    }
    /// KV-cache blocks in use.
    pub fn kv_blocks_used(&self) -> u32 {
        self.total_blocks - self.free_blocks
    }
    /// Fraction of the KV cache in use, 0–1.
    pub fn kv_usage_frac(&self) -> f64 {
        f64::from(self.kv_blocks_used()) / f64::from(self.total_blocks)
    }
    /// Requests running (admitted, holding KV blocks).
    pub fn running(&self) -> usize {
        self.running.len()
    }
    /// Requests submitted and not yet admitted (or preempted and waiting to be recomputed).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
    /// Whether nothing is running, waiting or in flight.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty()
            && self.waiting.is_empty()
            && self.iteration.is_none()
            && self.finished.is_empty()
    }
    /// Counters.
    pub fn stats(&self) -> SimEngineStats {
        self.stats
    }
    /// Batch ids of the requests in the iteration in flight (for checking static batching).
    pub fn batches_in_flight(&self) -> impl Iterator<Item = u64> + '_ {
        self.running.iter().filter(|s| s.in_iteration > 0).map(|s| s.batch)
    }

    /// Checks the KV bookkeeping: blocks held add up to blocks used, and every running request
    /// holds enough blocks for its cached tokens. For tests; returns what is inconsistent.
    pub fn check_invariants(&self) -> Result<(), String> {
        let held: u64 = self.running.iter().map(|s| u64::from(s.blocks)).sum();
        if held != u64::from(self.kv_blocks_used()) {
            return Err(format!(
                "running requests hold {held} blocks but {} are in use",
                self.kv_blocks_used()
            ));
        }
        if let Some(s) = self.running.iter().find(|s| s.blocks < self.blocks_for(s.kv_tokens)) {
            return Err(format!(
                "request {} caches {} tokens in {} blocks",
                s.req.id.0, s.kv_tokens, s.blocks
            ));
        }
        if self.waiting.iter().any(|s| s.blocks != 0) {
            return Err("a waiting request holds blocks".into());
        }
        Ok(())
    }

    /// The longest sequence, prompt plus answer, in tokens: `max_model_len`, capped by the KV
    /// cache's capacity.
    pub fn max_model_len(&self) -> u32 {
        let capacity = u32::try_from(self.kv_capacity_tokens()).unwrap_or(u32::MAX);
        self.config.max_model_len.map_or(capacity, |m| m.min(capacity))
    }

    /// Accepts a dispatched request. Nothing runs until the next [`advance`](Self::advance).
    /// A prompt with no room for one generated token within `max_model_len` is rejected; the
    /// answer's length is not looked at.
    pub fn submit(&mut self, now: Timestamp, req: Request) {
        if req.input_tokens.max(1).saturating_add(1) > self.max_model_len() {
            let t = now.as_secs_f64();
            self.finished.push(EngineEvent::Finished(RequestRecord {
                id: req.id,
                status: RequestStatus::Rejected,
                arrival_s: req.arrival.as_secs_f64(),
                dispatch_s: t,
                first_token_s: t,
                completion_s: t,
                input_tokens: req.input_tokens,
                output_tokens: 0,
                energy_j: 0.0,
                preemptions: 0,
            }));
            return;
        }
        self.waiting.push_back(Seq {
            prompt_len: req.input_tokens.max(1),
            req,
            dispatched: now,
            first_token: None,
            kv_tokens: 0,
            generated: 0,
            blocks: 0,
            energy_j: 0.0,
            preemptions: 0,
            batch: 0,
            in_iteration: 0,
        });
    }

    /// Changes the clock: at once when no iteration is in flight, else when it ends (the GPU
    /// stalls after that iteration rather than in the middle of it).
    pub fn request_frequency(
        &mut self,
        now: Timestamp,
        freq: Mhz,
        gpu: &mut SimGpu,
    ) -> Result<(), ActuatorError> {
        if !gpu.spec().supported_freqs().contains(&freq) {
            return Err(ActuatorError::UnsupportedClock {
                requested: freq,
                supported: gpu.spec().supported_freqs(),
            });
        }
        if self.iteration.is_some() {
            self.pending_freq = Some(freq);
            Ok(())
        } else {
            gpu.advance(now);
            gpu.set_frequency(freq)
        }
    }

    /// When [`advance`](Self::advance) must next be called: the end of the iteration in flight,
    /// or the end of a clock-switch stall that holds back work.
    pub fn next_event_time(&self, gpu: &SimGpu) -> Option<Timestamp> {
        if let Some(it) = self.iteration {
            return Some(it.end);
        }
        if !self.finished.is_empty() {
            return Some(gpu.now());
        }
        let has_work = !self.running.is_empty() || !self.waiting.is_empty();
        has_work.then(|| gpu.stall_until().max(gpu.now()))
    }

    /// Finishes the iteration ending at or before `now`, reports what happened, and starts the
    /// next iteration if there is work and the GPU is not stalled.
    pub fn advance(&mut self, now: Timestamp, gpu: &mut SimGpu, out: &mut Vec<EngineEvent>) {
        if let Some(it) = self.iteration {
            if it.end <= now {
                self.finish_iteration(it, gpu, out);
            }
        }
        out.append(&mut self.finished);
        if self.iteration.is_none() && now >= gpu.stall_until() {
            self.start_iteration(now.max(gpu.now()), gpu);
        }
    }

    fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.config.block_size)
    }

    /// Whether the head of the queue could be admitted now. In static mode only members of the
    /// current batch are admitted; [`admit`](Self::admit) opens a new batch when the engine is
    /// empty.
    fn admissible(&self) -> bool {
        let Some(head) = self.waiting.front() else { return false };
        if self.running.len() >= self.config.max_num_seqs as usize {
            return false;
        }
        if self.config.batching == BatchingMode::Static && head.batch != self.current_batch {
            return false;
        }
        self.blocks_for(head.prompt_len + 1) <= self.free_blocks
    }

    fn admit(&mut self) {
        if self.config.batching == BatchingMode::Static
            && self.running.is_empty()
            && !self.waiting.is_empty()
            && (self.current_batch == 0 || !self.waiting.iter().any(|s| s.batch == self.current_batch))
        {
            // The engine is empty and the last batch has no member left waiting: everything
            // submitted since forms the next batch.
            self.current_batch += 1;
            self.stats.batches += 1;
            for s in self.waiting.iter_mut().filter(|s| s.batch == 0) {
                s.batch = self.current_batch;
            }
        }
        while self.admissible() {
            let Some(mut seq) = self.waiting.pop_front() else { break };
            seq.blocks = self.blocks_for(seq.prompt_len + 1);
            self.free_blocks -= seq.blocks;
            self.running.push(seq);
        }
    }

    /// Frees the newest running request's blocks and requeues it for recompute.
    fn preempt_newest(&mut self) -> bool {
        let Some(mut seq) = self.running.pop() else { return false };
        self.free_blocks += seq.blocks;
        seq.blocks = 0;
        seq.kv_tokens = 0;
        seq.prompt_len = seq.req.input_tokens.max(1) + seq.generated;
        seq.preemptions += 1;
        seq.in_iteration = 0;
        self.stats.preemptions += 1;
        self.waiting.push_front(seq);
        true
    }

    fn start_iteration(&mut self, now: Timestamp, gpu: &mut SimGpu) {
        self.admit();
        if self.running.is_empty() {
            return;
        }
        // Decode steps first: each needs room for one more token, preempting the newest
        // requests when the cache is full (vLLM's recompute policy).
        let mut i = 0;
        while i < self.running.len() {
            let s = &self.running[i];
            if !s.prefilling() {
                let need = self.blocks_for(s.kv_tokens + 1).saturating_sub(s.blocks);
                if need > self.free_blocks {
                    if !self.preempt_newest() {
                        break;
                    }
                    continue;
                }
                self.free_blocks -= need;
                self.running[i].blocks += need;
            }
            i += 1;
        }
        let mut work = IterationWork::default();
        let mut budget = u64::from(self.config.max_num_batched_tokens);
        for s in &mut self.running {
            s.in_iteration = 0;
            if !s.prefilling() {
                s.in_iteration = 1;
                work.decode_tokens += 1;
                work.sampled_sequences += 1;
                work.kv_read_tokens += u64::from(s.kv_tokens);
                work.attention_pairs += f64::from(s.kv_tokens + 1);
                budget = budget.saturating_sub(1);
            }
        }
        for s in &mut self.running {
            if s.prefilling() && budget > 0 {
                let chunk = u64::from(s.prompt_len - s.kv_tokens).min(budget) as u32;
                s.in_iteration = chunk;
                let (start, c) = (f64::from(s.kv_tokens), f64::from(chunk));
                work.prefill_tokens += u64::from(chunk);
                work.kv_read_tokens += u64::from(s.kv_tokens);
                work.attention_pairs += c * start + c * (c + 1.0) / 2.0;
                if s.kv_tokens + chunk == s.prompt_len {
                    work.sampled_sequences += 1;
                }
                budget -= u64::from(chunk);
            }
        }
        let tokens = work.prefill_tokens + work.decode_tokens;
        if tokens == 0 {
            return;
        }
        let cost = self.config.timing.cost(&self.model, gpu.spec(), gpu.freq(), &work);
        gpu.set_load(now, Some(cost.load));
        self.stats.iterations += 1;
        // Energy over the whole-nanosecond duration the GPU will integrate, so that attributed
        // and metered energy agree.
        let duration = energyllm_core::duration_from_secs(cost.time_s);
        self.iteration = Some(Iteration {
            end: now + duration,
            energy_j: gpu.power_at(cost.load) * duration.as_secs_f64(),
            tokens,
        });
    }

    fn finish_iteration(&mut self, it: Iteration, gpu: &mut SimGpu, out: &mut Vec<EngineEvent>) {
        self.iteration = None;
        gpu.set_load(it.end, None);
        let t = it.end;
        let energy_per_token = it.energy_j / it.tokens as f64;
        let max_len = self.max_model_len();
        let mut i = 0;
        while i < self.running.len() {
            let s = &mut self.running[i];
            let n = s.in_iteration;
            s.in_iteration = 0;
            if n == 0 {
                i += 1;
                continue;
            }
            s.energy_j += energy_per_token * f64::from(n);
            let was_prefilling = s.prefilling();
            s.kv_tokens += n;
            // The iteration that completes a prefill samples a token, as each decode step does.
            let produced = !was_prefilling || !s.prefilling();
            if produced {
                s.generated += 1;
                if s.first_token.is_none() {
                    s.first_token = Some(t);
                    out.push(EngineEvent::FirstToken(s.req.id));
                }
            }
            // The answer ends at its end-of-sequence token or, cut short, at the maximum length.
            let at_max_len = s.req.input_tokens.max(1).saturating_add(s.generated) >= max_len;
            if s.generated >= s.target_tokens() || at_max_len {
                let s = self.running.remove(i);
                self.free_blocks += s.blocks;
                out.push(EngineEvent::Finished(RequestRecord {
                    id: s.req.id,
                    status: RequestStatus::Completed,
                    arrival_s: s.req.arrival.as_secs_f64(),
                    dispatch_s: s.dispatched.as_secs_f64(),
                    first_token_s: s.first_token.unwrap_or(t).as_secs_f64(),
                    completion_s: t.as_secs_f64(),
                    input_tokens: s.req.input_tokens,
                    output_tokens: s.generated,
                    energy_j: s.energy_j,
                    preemptions: s.preemptions,
                }));
            } else {
                i += 1;
            }
        }
        if let Some(f) = self.pending_freq.take() {
            // Already validated in `request_frequency`.
            let _ = gpu.set_frequency(f);
        }
    }
}

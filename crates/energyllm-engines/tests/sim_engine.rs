//! Invariants of the simulated engine, over random workloads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::collections::HashMap;
use std::task::{Context, Poll, Waker};

use energyllm_core::{
    BatchingMode, Engine, FrequencyActuator, Mhz, Request, RequestId, RequestRecord, RequestStatus, Timestamp,
};
use energyllm_engines::{EngineEvent, IterationWork, ModelSpec, SimEngine, SimEngineConfig, SimServer};
use energyllm_hw::{GpuSpec, SharedSimGpu, SimGpu};
use proptest::prelude::*;

fn gpu() -> SimGpu {
    SimGpu::new(GpuSpec::builtin("a100-40gb").unwrap())
}

fn model() -> ModelSpec {
    ModelSpec::builtin("llama-3.1-8b").unwrap()
}

struct Outcome {
    finished: HashMap<RequestId, u32>,
    records: Vec<RequestRecord>,
    records_ok: bool,
    elapsed_s: f64,
    total_energy_j: f64,
    busy_energy_j: f64,
    stall_energy_j: f64,
    attributed_energy_j: f64,
    preemptions: u64,
}

/// Submits each request at its arrival (in batches of `cap` in static mode), switching the clock
/// now and then, and runs until the engine is idle, checking invariants at every step.
fn run(reqs: &[Request], config: SimEngineConfig, clocks: &[u32]) -> Result<Outcome, TestCaseError> {
    let mut gpu = gpu();
    let idle_w = gpu.spec().idle_power_w;
    let mut engine = SimEngine::new(config, model(), &gpu).unwrap();
    let capacity = engine.kv_capacity_tokens();
    let mut events = Vec::new();
    let mut finished = HashMap::new();
    let mut records = Vec::new();
    let mut records_ok = true;
    let mut attributed = 0.0;
    let mut now = Timestamp::ZERO;
    let mut next = 0;
    let mut steps = 0u64;
    loop {
        let next_arrival = reqs.get(next).map(|r| r.arrival);
        let next_engine = engine.next_event_time(&gpu);
        let t = match (next_arrival, next_engine) {
            (None, None) => break,
            (a, e) => a.unwrap_or(Timestamp::MAX).min(e.unwrap_or(Timestamp::MAX)),
        };
        prop_assert!(t >= now, "time went back: {t} < {now}");
        now = t;
        engine.advance(now, &mut gpu, &mut events);
        while next < reqs.len() && reqs[next].arrival <= now {
            engine.submit(now, reqs[next].clone());
            next += 1;
        }
        if steps % 7 == 3 && !clocks.is_empty() {
            let f = Mhz(clocks[(steps as usize / 7) % clocks.len()]);
            engine.request_frequency(now, f, &mut gpu).unwrap();
        }
        engine.advance(now, &mut gpu, &mut events);
        for e in events.drain(..) {
            if let EngineEvent::Finished(r) = e {
                *finished.entry(r.id).or_insert(0) += 1;
                records_ok &= r.arrival_s <= r.dispatch_s
                    && r.dispatch_s <= r.first_token_s
                    && r.first_token_s <= r.completion_s
                    && (r.status == RequestStatus::Rejected || r.output_tokens >= 1);
                attributed += r.energy_j;
                records.push(r);
            }
        }
        prop_assert!(engine.kv_usage_frac() <= 1.0);
        prop_assert!(engine.kv_capacity_tokens() == capacity);
        if let Err(e) = engine.check_invariants() {
            return Err(TestCaseError::fail(e));
        }
        let batches: Vec<u64> = engine.batches_in_flight().collect();
        if engine.config().batching == BatchingMode::Static {
            prop_assert!(
                batches.windows(2).all(|w| w[0] == w[1]),
                "static iteration mixes batches {batches:?}"
            );
        }
        steps += 1;
        prop_assert!(steps < 5_000_000, "runaway simulation");
    }
    gpu.advance(now);
    prop_assert!(engine.is_idle());
    prop_assert!(gpu.total_energy_j() + 1e-6 >= idle_w * now.as_secs_f64());
    Ok(Outcome {
        finished,
        records,
        records_ok,
        elapsed_s: now.as_secs_f64(),
        total_energy_j: gpu.total_energy_j(),
        busy_energy_j: gpu.busy_energy_j(),
        stall_energy_j: gpu.stall_energy_j(),
        attributed_energy_j: attributed,
        preemptions: engine.stats().preemptions,
    })
}

fn requests() -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec((0.0f64..5.0, 1u32..2048, 0u32..600), 1..60).prop_map(|v| {
        let mut t = 0.0;
        v.into_iter()
            .enumerate()
            .map(|(i, (gap, input, output))| {
                t += gap * 0.2;
                Request {
                    id: RequestId(i as u64),
                    arrival: Timestamp::from_secs_f64(t),
                    input_tokens: input,
                    output_tokens: output,
                }
            })
            .collect()
    })
}

fn small_cache(batching: BatchingMode, max_num_seqs: u32) -> SimEngineConfig {
    // About 10k tokens of KV cache: enough for any one request, too little for many.
    SimEngineConfig {
        batching,
        gpu_memory_utilization: 0.43,
        max_num_seqs,
        max_num_batched_tokens: 1024,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_request_ends_exactly_once_and_energy_is_accounted(
        reqs in requests(),
        static_mode in any::<bool>(),
        max_num_seqs in 1u32..64,
        small in any::<bool>(),
        max_model_len in prop::option::of(2u32..3000),
        clocks in prop::collection::vec(prop::sample::select(vec![705u32, 810, 1005, 1200, 1410]), 0..4),
    ) {
        let batching = if static_mode { BatchingMode::Static } else { BatchingMode::Continuous };
        let config = if small {
            SimEngineConfig { max_model_len, ..small_cache(batching, max_num_seqs) }
        } else {
            SimEngineConfig { batching, max_num_seqs, max_model_len, ..Default::default() }
        };
        let out = run(&reqs, config, &clocks)?;
        // No answer runs past its own end or past the maximum length.
        for r in &out.records {
            let req = &reqs[r.id.0 as usize];
            prop_assert!(r.output_tokens <= req.output_tokens.max(1));
            if let (Some(m), RequestStatus::Completed) = (max_model_len, r.status) {
                prop_assert!(r.input_tokens.max(1) + r.output_tokens <= m.max(2), "{r:?} past max_model_len {m}");
            }
        }
        prop_assert_eq!(out.finished.len(), reqs.len());
        prop_assert!(out.finished.values().all(|&n| n == 1));
        prop_assert!(out.records_ok);
        prop_assert!(out.busy_energy_j <= out.total_energy_j + 1e-9);
        // Every busy joule is a request's or a stall's: the requests' energy is the busy
        // energy less the stalls', exactly (up to rounding).
        let booked = out.attributed_energy_j + out.stall_energy_j;
        prop_assert!((booked - out.busy_energy_j).abs() <= 1e-9 * out.busy_energy_j.max(1.0), "{booked} vs {}", out.busy_energy_j);
        prop_assert!(out.elapsed_s >= reqs.last().unwrap().arrival.as_secs_f64());
    }
}

#[test]
fn a_small_cache_preempts_and_still_completes_everything() {
    let reqs: Vec<Request> = (0..40)
        .map(|i| Request {
            id: RequestId(i),
            arrival: Timestamp::ZERO,
            input_tokens: 600,
            output_tokens: 500,
        })
        .collect();
    let out = run(&reqs, small_cache(BatchingMode::Continuous, 64), &[]).unwrap();
    assert_eq!(out.finished.len(), 40);
    assert!(out.preemptions > 0, "a 10k-token cache must preempt 40 × 1100-token requests");
}

#[test]
fn a_request_that_can_never_fit_is_rejected_not_lost() {
    let mut gpu = gpu();
    let mut engine = SimEngine::new(small_cache(BatchingMode::Continuous, 8), model(), &gpu).unwrap();
    let huge =
        Request { id: RequestId(7), arrival: Timestamp::ZERO, input_tokens: 1_000_000, output_tokens: 10 };
    engine.submit(Timestamp::ZERO, huge);
    let mut events = Vec::new();
    engine.advance(Timestamp::ZERO, &mut gpu, &mut events);
    assert!(
        matches!(&events[..], [EngineEvent::Finished(r)] if r.status == RequestStatus::Rejected && r.id == RequestId(7))
    );
    assert!(engine.is_idle());
}

#[test]
fn iteration_time_falls_with_clock_and_decode_cares_less_than_prefill() {
    let (m, g) = (model(), gpu());
    let timing = SimEngineConfig::default().timing;
    let prefill =
        IterationWork { prefill_tokens: 4096, attention_pairs: 4096.0 * 2048.0, ..Default::default() };
    let decode = IterationWork {
        decode_tokens: 8,
        kv_read_tokens: 8 * 500,
        attention_pairs: 8.0 * 500.0,
        ..Default::default()
    };
    let time = |w: &IterationWork, f: u32| timing.cost(&m, g.spec(), Mhz(f), w).time_s;
    let mut last = (f64::INFINITY, f64::INFINITY);
    for f in (210..=1410).step_by(15) {
        let now = (time(&prefill, f), time(&decode, f));
        assert!(now.0 <= last.0 && now.1 <= last.1, "time rose at {f} MHz");
        last = now;
    }
    let slowdown = |w: &IterationWork| time(w, 705) / time(w, 1410);
    assert!(slowdown(&prefill) > 1.8, "prefill is compute-bound: {}", slowdown(&prefill));
    assert!(slowdown(&decode) < 1.4, "decode is memory-bound: {}", slowdown(&decode));
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the simulated engine's futures are always ready"),
    }
}

#[test]
fn the_engine_seam_runs_a_batch_at_the_clock_the_actuator_set() {
    let shared = SharedSimGpu::new(gpu());
    let mut server = SimServer::new(SimEngineConfig::default(), model(), shared.clone()).unwrap();
    let batch: Vec<Request> = (0..8)
        .map(|i| Request {
            id: RequestId(i),
            arrival: Timestamp::ZERO,
            input_tokens: 2000,
            output_tokens: 100,
        })
        .collect();
    let latency = |records: &[energyllm_core::RequestRecord]| {
        records.iter().map(|r| r.e2e_latency_s()).fold(0.0, f64::max)
    };
    let fast = block_on(server.run_batch(&batch)).unwrap();
    let mut actuator = server.gpu();
    actuator.set_frequency(Mhz(705)).unwrap();
    let slow = block_on(server.run_batch(&batch)).unwrap();
    assert_eq!(fast.len(), 8);
    assert_eq!(slow.iter().map(|r| r.id).collect::<Vec<_>>(), batch.iter().map(|r| r.id).collect::<Vec<_>>());
    assert!(latency(&slow) > latency(&fast), "{} vs {}", latency(&slow), latency(&fast));
    let state = block_on(server.state()).unwrap();
    assert_eq!((state.running, state.waiting), (0, 0));
    assert!(shared.lock().total_energy_j() > 0.0);
}

#[test]
fn a_static_batch_runs_its_members_together() {
    let mut gpu = gpu();
    let config = SimEngineConfig { batching: BatchingMode::Static, ..Default::default() };
    let mut engine = SimEngine::new(config, model(), &gpu).unwrap();
    let mut events = Vec::new();
    let submit = |engine: &mut SimEngine, ids: std::ops::Range<u64>, at: Timestamp| {
        for i in ids {
            engine.submit(
                at,
                Request { id: RequestId(i), arrival: at, input_tokens: 100, output_tokens: 50 + i as u32 },
            );
        }
    };
    submit(&mut engine, 0..8, Timestamp::ZERO);
    engine.advance(Timestamp::ZERO, &mut gpu, &mut events);
    // A late arrival must wait for the whole first batch.
    let late = Timestamp::from_secs_f64(0.01);
    submit(&mut engine, 8..9, late);
    let mut first_tokens = HashMap::new();
    let mut done = HashMap::new();
    while let Some(t) = engine.next_event_time(&gpu) {
        engine.advance(t, &mut gpu, &mut events);
        for e in events.drain(..) {
            match e {
                EngineEvent::FirstToken(id) => drop(first_tokens.insert(id.0, t)),
                EngineEvent::Finished(r) => drop(done.insert(r.id.0, r.completion_s)),
            }
        }
    }
    let first_batch: Vec<Timestamp> = (0..8).map(|i| first_tokens[&i]).collect();
    assert!(
        first_batch.iter().all(|&t| t == first_batch[0]),
        "one prefill iteration for the batch: {first_batch:?}"
    );
    let last_of_batch = (0..8).map(|i| done[&i]).fold(0.0, f64::max);
    assert!(first_tokens[&8].as_secs_f64() > last_of_batch, "request 8 joined a running static batch");
    assert_eq!(engine.stats().batches, 2);
}

#[test]
fn an_answer_longer_than_the_cache_is_admitted_and_cut_at_the_maximum_length() {
    // The engine cannot know an answer's length: a request is not refused for it (vLLM admits
    // it), and an answer that reaches max_model_len ends there.
    let long =
        Request { id: RequestId(1), arrival: Timestamp::ZERO, input_tokens: 100, output_tokens: 10_000 };
    let config = SimEngineConfig { max_model_len: Some(300), ..Default::default() };
    let out = run(std::slice::from_ref(&long), config, &[]).unwrap();
    let r = &out.records[0];
    assert_eq!((r.status, r.output_tokens), (RequestStatus::Completed, 200));

    // Without a max_model_len, the cache's capacity is the limit: an answer that outgrows a
    // ~10k-token cache runs until it fills it, alone, instead of being refused up front.
    let huge = Request { output_tokens: 1_000_000, ..long };
    let out = run(&[huge], small_cache(BatchingMode::Continuous, 8), &[]).unwrap();
    let r = &out.records[0];
    assert_eq!(r.status, RequestStatus::Completed);
    assert!(r.output_tokens > 5_000 && r.output_tokens < 1_000_000, "{r:?}");
}

#[test]
fn admission_does_not_look_at_the_answer_length() {
    // Two runs whose requests differ only in how long their answers will be: every first token
    // comes at the same instant, so nothing before a token depended on the length.
    let reqs = |out: u32| -> Vec<Request> {
        (0..12)
            .map(|i| Request {
                id: RequestId(i),
                arrival: Timestamp::from_secs_f64(0.01 * i as f64),
                input_tokens: 800,
                output_tokens: if i % 2 == 0 { out } else { 40 },
            })
            .collect()
    };
    let config = small_cache(BatchingMode::Continuous, 8);
    let short = run(&reqs(50), config.clone(), &[]).unwrap();
    let long = run(&reqs(20_000), config, &[]).unwrap();
    let firsts = |o: &Outcome| {
        let mut v: Vec<(u64, f64)> = o.records.iter().map(|r| (r.id.0, r.first_token_s)).collect();
        v.sort_by_key(|(id, _)| *id);
        v
    };
    // The first token of each request before any answer ends: the runs diverge only after.
    let first_end = short.records.iter().map(|r| r.completion_s).fold(f64::INFINITY, f64::min);
    for ((id, a), (_, b)) in firsts(&short).into_iter().zip(firsts(&long)) {
        if a < first_end {
            assert_eq!(a, b, "request {id}'s first token moved with other answers' lengths");
        }
    }
    assert!(long.records.iter().all(|r| r.status == RequestStatus::Completed));
}

#[test]
fn a_clock_switch_delays_queued_work_by_exactly_one_stall() {
    let req = |id: u64, input: u32| Request {
        id: RequestId(id),
        arrival: Timestamp::ZERO,
        input_tokens: input,
        output_tokens: 20,
    };
    let mut gpu = gpu();
    let stall = energyllm_core::duration_from_secs(gpu.spec().switch_stall_s);
    let mut engine = SimEngine::new(SimEngineConfig::default(), model(), &gpu).unwrap();
    let mut events = Vec::new();

    // Idle: the switch applies at once, and work submitted with it starts when the stall ends.
    let t0 = Timestamp::from_secs_f64(1.0);
    gpu.advance(t0);
    engine.request_frequency(t0, Mhz(1200), &mut gpu).unwrap();
    engine.submit(t0, req(0, 4000));
    engine.advance(t0, &mut gpu, &mut events);
    assert_eq!(engine.next_event_time(&gpu), Some(t0 + stall), "an idle engine waits one stall");
    engine.advance(t0 + stall, &mut gpu, &mut events);
    let end = engine.next_event_time(&gpu).unwrap();
    assert!(end > t0 + stall, "the prefill iteration runs after the stall");

    // Mid-iteration: the switch waits for the iteration to end, and queued work starts exactly
    // one stall after that end, not one stall after the decision and another after the end.
    let mid = t0 + stall + (end - (t0 + stall)) / 2;
    engine.request_frequency(mid, Mhz(1005), &mut gpu).unwrap();
    engine.submit(mid, req(1, 100));
    engine.advance(mid, &mut gpu, &mut events);
    assert_eq!(engine.next_event_time(&gpu), Some(end), "the running iteration is not cut");
    engine.advance(end, &mut gpu, &mut events);
    assert_eq!(gpu.stall_until(), end + stall);
    assert_eq!(engine.next_event_time(&gpu), Some(end + stall), "exactly one stall after the iteration");
    engine.advance(end + stall, &mut gpu, &mut events);
    assert!(engine.next_event_time(&gpu).is_some_and(|t| t > end + stall), "the next iteration is under way");
    assert_eq!(gpu.switches(), 2);
}

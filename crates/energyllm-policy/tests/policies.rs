//! Scripted observations → expected decisions, for every baseline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::sync::Arc;

use energyllm_core::registry::{find, PolicyPlugin};
use energyllm_core::{
    Action, ActionSpace, Mhz, Observation, PerfModel, PerfPrediction, PerfQuery, Policy, PolicyContext, Slo,
    Timestamp,
};
use serde_json::json;

/// Decode iterations take 15 ms at 1410 MHz and stretch as 1/f below 1000 MHz; prefill is
/// compute-bound (20 µs per token at 1410 MHz); power grows with the clock.
struct ToyPerf;

impl PerfModel for ToyPerf {
    fn name(&self) -> &str {
        "toy"
    }
    fn predict(&self, q: &PerfQuery) -> PerfPrediction {
        let f = f64::from(q.freq.0);
        let decode = if q.decode_tokens > 0 {
            0.015 * (1000.0 / f).max(1.0) + 1e-6 * q.kv_tokens as f64 / 1000.0
        } else {
            0.0
        };
        let prefill = f64::from(q.prefill_tokens) * 2e-5 * 1410.0 / f;
        PerfPrediction { latency_s: 0.002 + decode + prefill, power_w: 60.0 + 200.0 * (f / 1410.0).powi(2) }
    }
}

fn ctx() -> PolicyContext {
    // Keep the crate's registrations linked into this test binary.
    energyllm_policy::link();
    let mut c = PolicyContext::new(ActionSpace::paper(), Slo::e2e(11.0), 0);
    c.perf_model = Some(Arc::new(ToyPerf));
    c
}

fn build(name: &str, config: serde_json::Value) -> Box<dyn Policy> {
    (find::<PolicyPlugin>(name).unwrap().build)(&config, &ctx()).unwrap()
}

fn obs() -> Observation {
    Observation {
        now: Timestamp::from_secs_f64(100.0),
        queue_len: 0,
        queued_prompt_tokens: 0,
        queued_expected_output_tokens: 0.0,
        running: 0,
        kv_usage_frac: 0.0,
        freq: Mhz(1410),
        freq_index: 14,
        batch_cap: 8,
        since_last_switch_s: 100.0,
        arrival_rate_rps: 0.8,
        oldest_wait_s: 0.0,
        mean_wait_s: 0.0,
        recent_slo_attainment: 1.0,
        recent_mean_latency_s: 3.0,
        recent_power_w: 150.0,
        mean_output_tokens: 200.0,
        mean_prompt_tokens: 256.0,
        completed: 100,
        slo: Slo::e2e(11.0),
    }
}

fn queued(n: u32, prompt: u64) -> Observation {
    Observation {
        queue_len: n,
        queued_prompt_tokens: u64::from(n) * prompt,
        queued_expected_output_tokens: f64::from(n) * 200.0,
        ..obs()
    }
}

#[test]
fn dvfs_only_climbs_its_ladder_with_load_and_keeps_the_papers_batch_8_under_its_preset() {
    let mut p = build("dvfs-only", json!({"preset": "paper"}));
    assert_eq!(p.decide(&obs()), Action { freq: Mhz(810), batch: 8 });
    assert_eq!(p.decide(&Observation { running: 8, ..queued(8, 100) }), Action { freq: Mhz(1200), batch: 8 });
    let mid = p.decide(&queued(6, 100)).freq;
    assert!(mid > Mhz(810) && mid < Mhz(1200), "{mid}");
}

#[test]
fn batch_only_holds_the_queue_at_the_top_clock() {
    let mut p = build("batch-only", json!({}));
    assert_eq!(p.decide(&queued(3, 100)), Action { freq: Mhz(1410), batch: 4 });
    assert_eq!(p.decide(&queued(40, 100)), Action { freq: Mhz(1410), batch: 16 });
    assert_eq!(p.decide(&obs()), Action { freq: Mhz(1410), batch: 1 });
}

#[test]
fn reactive_dvfs_steps_down_when_calm_up_when_the_queue_crosses_and_down_after_it_clears() {
    let mut p = build("reactive-dvfs", json!({"hold_s": 1.0}));
    let calm = Observation { recent_mean_latency_s: 2.0, ..obs() };
    let first = p.decide(&calm).freq;
    let second = p.decide(&calm).freq;
    assert!(second < first && first < Mhz(1410), "steps down one at a time: {first}, {second}");
    let busy = Observation { recent_mean_latency_s: 2.0, ..queued(9, 100) };
    assert_eq!(p.decide(&busy).freq, first, "one step back up when the queue crosses 8");
    // Right after a switch it holds; once the hold passes it steps down again.
    let just_switched = Observation { since_last_switch_s: 0.5, ..calm.clone() };
    assert_eq!(p.decide(&just_switched).freq, first);
    assert_eq!(p.decide(&calm).freq, second);
    // Slow completions also push it up.
    let slow = Observation { recent_mean_latency_s: 10.5, ..obs() };
    assert_eq!(p.decide(&slow).freq, first);
}

#[test]
fn token_aware_runs_short_requests_slower_than_long_ones() {
    let mut p = build("token-aware", json!({}));
    let short = p.decide(&Observation { mean_output_tokens: 50.0, ..queued(4, 50) });
    let long = p.decide(&Observation { mean_output_tokens: 900.0, ..queued(4, 800) });
    assert!(short.freq < long.freq, "{short:?} vs {long:?}");
    assert_eq!(short.batch, 4);
    // A backlog of several batches raises the clock.
    let backlog = p.decide(&Observation { mean_output_tokens: 50.0, ..queued(48, 50) });
    assert!(backlog.freq > short.freq);
}

#[test]
fn dynamollm_never_goes_below_1050_mhz() {
    let mut p = build("dynamollm", json!({}));
    for (n, prompt, out) in [(0, 10, 10.0), (1, 20, 16.0), (4, 100, 50.0), (30, 3000, 2000.0)] {
        let a = p.decide(&Observation { mean_output_tokens: out, ..queued(n, prompt) });
        assert!(a.freq >= Mhz(1050), "{a:?}");
    }
    // With slack it does not need the top clock.
    let easy = p.decide(&Observation { mean_output_tokens: 50.0, ..queued(2, 50) });
    assert!(easy.freq < Mhz(1410), "{easy:?}");
}

#[test]
fn throttllem_and_voltana_lower_the_clock_with_slack_and_raise_it_under_pressure() {
    for name in ["throttllem", "voltana", "heuristic"] {
        let mut p = build(name, json!({}));
        let easy = p.decide(&Observation { mean_output_tokens: 100.0, ..queued(1, 100) });
        assert!(easy.freq < Mhz(1000), "{name} with slack: {easy:?}");
        let late = p.decide(&Observation { oldest_wait_s: 9.0, mean_output_tokens: 400.0, ..queued(1, 100) });
        assert_eq!(late.freq, Mhz(1410), "{name} with the oldest request nearly out of time");
    }
}

#[test]
fn voltana_jumps_to_the_top_clock_when_the_queue_grows() {
    let mut p = build("voltana", json!({}));
    assert!(p.decide(&queued(1, 100)).freq < Mhz(1410));
    assert_eq!(p.decide(&queued(6, 100)).freq, Mhz(1410));
    assert!(p.decide(&queued(6, 100)).freq < Mhz(1410), "no growth since the last decision");
    assert_eq!(p.decide(&Observation { arrival_rate_rps: 5.0, ..queued(1, 100) }).freq, Mhz(1410));
}

#[test]
fn the_heuristic_sizes_the_batch_to_the_queue() {
    let mut p = build("heuristic", json!({}));
    let a = p.decide(&Observation { mean_output_tokens: 100.0, ..queued(5, 100) });
    assert!(a.batch >= 5, "{a:?}");
}

#[test]
fn look_ahead_policies_refuse_to_build_without_a_performance_model() {
    let bare = PolicyContext::new(ActionSpace::paper(), Slo::e2e(11.0), 0);
    for name in ["dynamollm", "throttllem", "voltana", "heuristic"] {
        let e = (find::<PolicyPlugin>(name).unwrap().build)(&json!({}), &bare).err().unwrap().to_string();
        assert!(e.contains(name) && e.contains("performance model"), "{e}");
    }
}

#[test]
fn unknown_parameters_are_refused_by_name() {
    for name in [
        "dvfs-only",
        "batch-only",
        "reactive-dvfs",
        "token-aware",
        "dynamollm",
        "throttllem",
        "voltana",
        "heuristic",
    ] {
        let e = (find::<PolicyPlugin>(name).unwrap().build)(&json!({"bogus": 1}), &ctx())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(name) && e.contains("bogus"), "{e}");
    }
}

/// throttLL'eM, VoltanaLLM and DynamoLLM set the clock of an engine whose batching they leave
/// alone; so do the DVFS governors. Only `preset=paper` gives them the EnergyLLM paper's caps.
#[test]
fn clock_only_baselines_leave_the_cap_at_the_engine_default_unless_a_preset_says_otherwise() {
    energyllm_policy::link();
    let space =
        ActionSpace::new(ActionSpace::paper().freqs().to_vec(), vec![1, 2, 4, 8, 16, 32, 64, 128, 256])
            .unwrap();
    let mut ctx = PolicyContext::new(space, Slo::per_token(2.0, 0.1), 0);
    ctx.perf_model = Some(Arc::new(ToyPerf));
    let o = Observation { queue_len: 5, running: 3, ..obs() };
    for (name, paper_cap) in
        [("dvfs-only", 8), ("reactive-dvfs", 8), ("throttllem", 16), ("voltana", 8), ("dynamollm", 0)]
    {
        let plugin = find::<PolicyPlugin>(name).unwrap();
        let mut p = (plugin.build)(&json!({}), &ctx).unwrap();
        assert_eq!(p.decide(&o).batch, 256, "{name} keeps the engine's cap");
        let mut paper = (plugin.build)(&json!({"preset": "paper"}), &ctx).unwrap();
        let cap = paper.decide(&o).batch;
        if paper_cap > 0 {
            // Voltana's paper form follows the queue (8 in the system → 8).
            assert_eq!(cap, paper_cap, "{name} with preset=paper");
        } else {
            assert!(cap < 256, "dynamollm with preset=paper chooses its batch, got {cap}");
        }
    }
    let vllm = (find::<PolicyPlugin>("vllm-default").unwrap().build)(&json!({}), &ctx).unwrap().decide(&o);
    assert_eq!((vllm.freq, vllm.batch), (Mhz(1410), 256));
    let e =
        (find::<PolicyPlugin>("dvfs-only").unwrap().build)(&json!({"preset": "fast"}), &ctx).err().unwrap();
    assert!(e.to_string().contains("`fast`") && e.to_string().contains("paper"), "{e}");
}

/// slo-mpc keeps the engine's cap and raises its clock with the arrival rate, the prompts that
/// share each iteration, and a backlog; it never leaves the action space.
#[test]
fn slo_mpc_raises_the_clock_with_load_and_backlog_and_keeps_the_cap() {
    energyllm_policy::link();
    let space =
        ActionSpace::new(ActionSpace::paper().freqs().to_vec(), vec![1, 2, 4, 8, 16, 32, 64, 128, 256])
            .unwrap();
    // ToyPerf decodes in 23 ms at 705 MHz and 17 ms from 1000 MHz up, plus the prefill sharing
    // the iteration: a 30 ms TPOT target (24 ms with the margin) leaves room only when quiet.
    let mut ctx = PolicyContext::new(space.clone(), Slo::per_token(2.0, 0.03), 0);
    ctx.perf_model = Some(Arc::new(ToyPerf));
    let build = || (find::<PolicyPlugin>("slo-mpc").unwrap().build)(&json!({"hold_s": 0}), &ctx).unwrap();
    let at = |rate: f64, prompt: f64, queue: u32, running: u32| Observation {
        arrival_rate_rps: rate,
        mean_prompt_tokens: prompt,
        mean_output_tokens: 200.0,
        queue_len: queue,
        running,
        ..obs()
    };
    let idle = build().decide(&at(0.1, 256.0, 0, 1));
    let busy = build().decide(&at(30.0, 256.0, 0, 40));
    let long_prompts = build().decide(&at(30.0, 1000.0, 0, 40));
    let backlog = build().decide(&at(30.0, 256.0, 200, 256));
    assert_eq!((idle.batch, busy.batch, backlog.batch), (256, 256, 256));
    assert!(idle.freq < busy.freq, "{idle:?} vs {busy:?}");
    assert!(busy.freq <= long_prompts.freq, "{busy:?} vs {long_prompts:?}");
    assert!(busy.freq < backlog.freq, "{busy:?} vs {backlog:?}");
    assert!(space.freqs().contains(&backlog.freq));
    for bad in [json!({"tpot_margin": 0}), json!({"batch": 100}), json!({"panic_attainment": 2})] {
        assert!((find::<PolicyPlugin>("slo-mpc").unwrap().build)(&bad, &ctx).is_err(), "{bad}");
    }
}

//! Scripted event sequences → expected commands.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use energyllm_core::testutil::{FixedPolicy, ScriptedPolicy};
use energyllm_core::{
    Action, ActionSpace, BatchingMode, Command, Controller, ControllerConfig, Event, Mhz, Request, RequestId,
    Slo, Telemetry, Timestamp,
};

fn t(secs: f64) -> Timestamp {
    Timestamp::from_secs_f64(secs)
}

fn req(id: u64, arrival_s: f64, input_tokens: u32) -> Request {
    Request { id: RequestId(id), arrival: t(arrival_s), input_tokens, output_tokens: 10 }
}

fn config(batching: BatchingMode, batch: u32) -> ControllerConfig {
    ControllerConfig {
        action_space: ActionSpace::new(vec![Mhz(800), Mhz(1200), Mhz(1400)], vec![1, 2, 4, 8]).unwrap(),
        initial: Some(Action { freq: Mhz(1400), batch }),
        batching,
        decision_interval_s: Some(1.0),
        switch_stall_s: 0.05,
        slo: Slo::e2e(10.0),
        ..ControllerConfig::default()
    }
}

fn drain(c: &mut Controller) -> Vec<Command> {
    std::iter::from_fn(|| c.poll_command()).collect()
}

fn dispatched_ids(cmds: &[Command]) -> Vec<Vec<u64>> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Dispatch(rs) => Some(rs.iter().map(|r| r.id.0).collect()),
            _ => None,
        })
        .collect()
}

fn fixed(batch: u32) -> Box<FixedPolicy> {
    Box::new(FixedPolicy(Action { freq: Mhz(1400), batch }))
}

#[test]
fn continuous_dispatch_is_fifo_and_respects_the_cap() {
    let mut c = Controller::new(config(BatchingMode::Continuous, 2), fixed(2)).unwrap();
    for (i, at) in [0.0, 0.1, 0.2].into_iter().enumerate() {
        c.handle(t(at), Event::Arrival(req(i as u64 + 1, at, 5)));
    }
    let cmds = drain(&mut c);
    assert_eq!(dispatched_ids(&cmds), vec![vec![1], vec![2]]);
    assert_eq!((c.running(), c.queue_len()), (2, 1));

    c.handle(t(0.5), Event::Completed { id: RequestId(2), output_tokens: 10 });
    assert_eq!(dispatched_ids(&drain(&mut c)), vec![vec![3]]);
    assert_eq!(c.running(), 2);
}

#[test]
fn lowering_the_cap_stops_dispatch_until_running_falls_below_it() {
    let policy =
        ScriptedPolicy::new([Action { freq: Mhz(1400), batch: 4 }, Action { freq: Mhz(1400), batch: 1 }]);
    let mut cfg = config(BatchingMode::Continuous, 4);
    cfg.decide_on_batch_completion = false;
    let mut c = Controller::new(cfg, Box::new(policy)).unwrap();
    for i in 0..6 {
        c.handle(t(0.0), Event::Arrival(req(i, 0.0, 5)));
    }
    assert_eq!(dispatched_ids(&drain(&mut c)).concat(), vec![0, 1, 2, 3]);
    c.handle(t(1.0), Event::Tick);
    assert_eq!(drain(&mut c), vec![Command::SetBatchCap(1)]);
    for id in [0, 1, 2] {
        c.handle(t(1.5), Event::Completed { id: RequestId(id), output_tokens: 10 });
        assert!(dispatched_ids(&drain(&mut c)).is_empty(), "running {} ≥ cap 1", c.running());
    }
    c.handle(t(1.6), Event::Completed { id: RequestId(3), output_tokens: 10 });
    assert_eq!(dispatched_ids(&drain(&mut c)), vec![vec![4]]);
}

#[test]
fn static_batches_run_to_completion_before_the_next_is_dispatched() {
    let mut c = Controller::new(config(BatchingMode::Static, 2), fixed(2)).unwrap();
    c.handle(t(0.0), Event::Arrival(req(1, 0.0, 5)));
    // The first request goes at once: a static batch does not wait to fill.
    assert_eq!(dispatched_ids(&drain(&mut c)), vec![vec![1]]);
    for id in 2..=4 {
        c.handle(t(0.1), Event::Arrival(req(id, 0.1, 5)));
    }
    assert!(drain(&mut c).is_empty());
    c.handle(t(2.0), Event::Completed { id: RequestId(1), output_tokens: 10 });
    assert_eq!(dispatched_ids(&drain(&mut c)), vec![vec![2, 3]]);
    c.handle(t(3.0), Event::Completed { id: RequestId(3), output_tokens: 10 });
    assert!(dispatched_ids(&drain(&mut c)).is_empty(), "batch {{2,3}} still has 2 running");
    c.handle(t(3.5), Event::Completed { id: RequestId(2), output_tokens: 10 });
    assert_eq!(dispatched_ids(&drain(&mut c)), vec![vec![4]]);
}

#[test]
fn a_clock_switch_is_commanded_and_its_stall_charged_once() {
    let low = Action { freq: Mhz(800), batch: 2 };
    let mut c =
        Controller::new(config(BatchingMode::Continuous, 2), Box::new(ScriptedPolicy::new([low]))).unwrap();
    c.handle(t(0.0), Event::Arrival(req(1, 0.0, 5)));
    assert_eq!(drain(&mut c), vec![Command::SetFrequency(Mhz(800))]);
    // Dispatch is held for the stall, and the timeout says when it ends.
    assert_eq!(c.poll_timeout(), Some(t(0.05)));
    c.handle(t(0.02), Event::Tick);
    assert!(drain(&mut c).is_empty());
    c.handle(t(0.05), Event::Tick);
    assert_eq!(dispatched_ids(&drain(&mut c)), vec![vec![1]]);
    // The policy keeps choosing 800 MHz: no further switch, no further stall.
    c.handle(t(1.0), Event::Tick);
    c.handle(t(1.0), Event::Arrival(req(2, 1.0, 5)));
    assert_eq!(dispatched_ids(&drain(&mut c)), vec![vec![2]]);
    c.handle(t(2.0), Event::Tick);
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.stats().freq_switches, 1);
    assert_eq!(c.stats().decisions, 3);
    assert_eq!(c.freq(), Mhz(800));
}

#[test]
fn decisions_follow_the_interval_and_spurious_ticks_do_nothing() {
    let policy = ScriptedPolicy::new([]);
    let seen = policy.seen.clone();
    let mut cfg = config(BatchingMode::Continuous, 2);
    cfg.decide_on_batch_completion = false;
    let mut c = Controller::new(cfg, Box::new(policy)).unwrap();
    assert_eq!(c.poll_timeout(), Some(t(0.0)));
    c.handle(t(0.0), Event::Tick);
    assert_eq!(c.poll_timeout(), Some(t(1.0)));
    c.handle(t(0.4), Event::Tick);
    c.handle(t(0.9), Event::Tick);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // A late tick (the driver overslept) decides once and realigns to the grid.
    c.handle(t(3.2), Event::Tick);
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(c.poll_timeout(), Some(t(4.0)));
}

#[test]
fn the_observation_reports_queue_wait_and_recent_slo() {
    let policy = ScriptedPolicy::new([]);
    let seen = policy.seen.clone();
    let mut cfg = config(BatchingMode::Static, 1);
    cfg.decide_on_batch_completion = true;
    let mut c = Controller::new(cfg, Box::new(policy)).unwrap();
    c.handle(t(0.0), Event::Arrival(req(1, 0.0, 100)));
    c.handle(t(1.0), Event::Arrival(req(2, 1.0, 30)));
    c.handle(t(2.0), Event::Arrival(req(3, 2.0, 20)));
    c.handle(t(2.0), Event::Telemetry(Telemetry { power_w: Some(250.0), kv_usage_frac: Some(0.3) }));
    // Request 1 finishes after 12 s: an SLO miss (target 10 s).
    c.handle(t(12.0), Event::Completed { id: RequestId(1), output_tokens: 40 });
    let obs = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(obs.now, t(12.0));
    assert_eq!(obs.queue_len, 2);
    assert_eq!(obs.queued_prompt_tokens, 50);
    assert_eq!(obs.queued_expected_output_tokens, 80.0);
    assert_eq!(obs.running, 0);
    assert!((obs.oldest_wait_s - 11.0).abs() < 1e-9);
    assert!((obs.mean_wait_s - 10.5).abs() < 1e-9);
    assert_eq!(obs.recent_slo_attainment, 0.0);
    assert_eq!(obs.recent_mean_latency_s, 12.0);
    assert_eq!(obs.recent_power_w, 250.0);
    assert_eq!(obs.kv_usage_frac, 0.3);
    assert!((obs.arrival_rate_rps - 3.0 / 12.0).abs() < 1e-9);
    assert_eq!(obs.freq_index, 2);
}

#[test]
fn rejections_count_as_misses_and_time_going_back_is_tolerated() {
    let policy = ScriptedPolicy::new([]);
    let seen = policy.seen.clone();
    let mut c = Controller::new(config(BatchingMode::Continuous, 4), Box::new(policy)).unwrap();
    c.handle(t(1.0), Event::Arrival(req(1, 1.0, 5)));
    c.handle(t(0.5), Event::Arrival(req(2, 0.5, 5)));
    assert_eq!(c.stats().time_went_back, 1);
    drain(&mut c);
    c.handle(t(2.0), Event::Rejected(RequestId(1)));
    c.handle(t(2.0), Event::Completed { id: RequestId(99), output_tokens: 1 });
    assert_eq!(c.stats().unknown_completions, 1);
    assert_eq!(seen.lock().unwrap().last().unwrap().recent_slo_attainment, 0.0);
    assert_eq!(c.running(), 1);
}

#[test]
fn invalid_configs_are_refused_with_the_setting_named() {
    let mut cfg = ControllerConfig {
        decision_interval_s: None,
        decide_on_batch_completion: false,
        ..Default::default()
    };
    let e = Controller::new(cfg.clone(), fixed(1)).err().unwrap().to_string();
    assert!(e.contains("never decide"), "{e}");
    cfg.decision_interval_s = Some(-1.0);
    let e = Controller::new(cfg, fixed(1)).err().unwrap().to_string();
    assert!(e.contains("decision_interval_s"), "{e}");
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! PPO end to end on small problems, and checkpoint files.

use energyllm_core::registry::{find, PolicyContext, PolicyPlugin};
use energyllm_core::{ActionSpace, Mhz, Slo};
use energyllm_policy::env::{Env, KnownOptimumEnv};
use energyllm_policy::nn::{Activation, Mlp, Scratch};
use energyllm_policy::ppo::{greedy, Rollout};
use energyllm_policy::{Checkpoint, FeatureSet, PolicySpec, Ppo, PpoConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

fn small() -> PpoConfig {
    PpoConfig {
        learning_rate: 3e-3,
        n_steps: 128,
        n_envs: 2,
        n_epochs: 4,
        batch_size: 64,
        hidden: vec![32],
        activation: Activation::Tanh,
        ..PpoConfig::default()
    }
}

#[test]
fn an_update_lowers_the_loss_on_a_fixed_batch() {
    let mut ppo =
        Ppo::new(PpoConfig { n_epochs: 1, batch_size: 64, hidden: vec![16], ..small() }, 3, 4, 1).unwrap();
    let mut rollout = Rollout::default();
    for i in 0..64 {
        let c = i % 3;
        rollout.obs.extend((0..3).map(|j| if j == c { 1.0 } else { 0.0 }));
        rollout.masks.extend([true; 4]);
        rollout.actions.push(i % 4);
        rollout.logp.push((0.25f32).ln());
        rollout.advantages.push(if i % 4 == c { 1.0 } else { -0.5 });
        rollout.returns.push(c as f32);
    }
    let idx: Vec<usize> = (0..64).collect();
    let before = ppo.loss(&rollout, &idx);
    ppo.update(&rollout);
    let after = ppo.loss(&rollout, &idx);
    assert!(after < before, "loss went from {before} to {after}");
}

#[test]
fn a_known_optimal_action_is_learned_and_masks_are_respected() {
    let mut env = KnownOptimumEnv::new(3, 6);
    env.masked_from = 5;
    let envs = vec![env.clone(), env.clone()];
    let mut ppo = Ppo::new(small(), 3, 6, 7).unwrap();
    let mut last_mean = 0.0;
    ppo.train(envs, 6_000, 7, |p| {
        if !p.episodes.is_empty() {
            last_mean = p.episodes.iter().map(|e| e.reward).sum::<f64>() / p.episodes.len() as f64;
        }
    })
    .unwrap();
    let mut mask = vec![false; 6];
    env.action_mask(&mut mask);
    let mut s = Scratch::default();
    for c in 0..3 {
        let logits = ppo.actor.forward(&env.observation(c), &mut s).to_vec();
        let want = env.optimal(c);
        // Context 0's optimum (1), 1's (4) and 2's (1) are all allowed.
        assert_eq!(greedy(&logits, &mask), want, "context {c}: {logits:?}");
    }
    // 16-step episodes: a reward near 16 means the optimum is taken almost always.
    assert!(last_mean > 12.0, "mean episode reward {last_mean}");
}

#[test]
fn training_is_deterministic_under_a_seed() {
    let run = |seed| {
        let mut ppo = Ppo::new(small(), 3, 6, seed).unwrap();
        ppo.train(vec![KnownOptimumEnv::new(3, 6), KnownOptimumEnv::new(3, 6)], 512, seed, |_| {}).unwrap();
        ppo.actor.params().to_vec()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

fn checkpoint() -> Checkpoint {
    let space = ActionSpace::paper();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let actor = Mlp::new(&[FeatureSet::Paper.dim(), 8, space.len()], Activation::Tanh, 1.0, &mut rng);
    let mut spec = PolicySpec::new(FeatureSet::Paper, &space);
    spec.shield = false;
    Checkpoint::new(spec, actor, json!({"note": "test"}))
}

#[test]
fn checkpoints_round_trip_and_drive_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    let c = checkpoint();
    c.save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), c);
    energyllm_policy::link();
    let ctx = PolicyContext::new(ActionSpace::paper(), Slo::default(), 0);
    let plugin = find::<PolicyPlugin>("ppo").unwrap();
    let mut p = (plugin.build)(&json!({ "checkpoint": path.to_str().unwrap() }), &ctx).unwrap();
    let obs = energyllm_core::Controller::external(Default::default())
        .unwrap()
        .observe(energyllm_core::Timestamp::ZERO);
    let a = p.decide(&obs);
    assert!(ActionSpace::paper().freqs().contains(&a.freq));
    // The default checkpoint ships with the shield on, which needs a performance model.
    let e = (plugin.build)(&json!({}), &ctx).err().unwrap().to_string();
    assert!(e.contains("performance model") && e.contains("shield=false"), "{e}");
    assert!((plugin.build)(&json!({"shield": false}), &ctx).is_ok());
    assert!(Checkpoint::default_checkpoint().is_ok());
}

#[test]
fn bad_checkpoints_are_refused_with_clear_errors() {
    let text = checkpoint().to_json();
    let e = Checkpoint::parse(&text[..text.len() / 2], "half").unwrap_err().to_string();
    assert!(e.contains("half") && e.contains("truncated"), "{e}");
    let e = Checkpoint::parse(&text.replace("\"version\":1", "\"version\":9"), "v").unwrap_err().to_string();
    assert!(e.contains("version 9"), "{e}");
    let e = Checkpoint::parse(&text.replace("\"features\":\"paper\"", "\"features\":\"token-aware\""), "f")
        .unwrap_err()
        .to_string();
    assert!(e.contains("features"), "{e}");
    let big = " ".repeat((energyllm_policy::agent::MAX_CHECKPOINT_BYTES + 1) as usize);
    assert!(Checkpoint::parse(&big, "big").unwrap_err().to_string().contains("limit"));
    let other = ActionSpace::new(vec![Mhz(1000), Mhz(1410)], vec![1, 8]).unwrap();
    let e = checkpoint().check_space(&other, "c").unwrap_err().to_string();
    assert!(e.contains("action space") && e.contains("cargo xtask train"), "{e}");
    // Same shape on another GPU (scaled clocks): accepted, levels map by index.
    let scaled: Vec<Mhz> = ActionSpace::paper().freqs().iter().map(|f| Mhz(f.0 * 14 / 10)).collect();
    let h100_like = ActionSpace::new(scaled.clone(), ActionSpace::paper().batches().to_vec()).unwrap();
    checkpoint().check_space(&h100_like, "c").unwrap();
    // More caps than trained for (the engine's default of 256): accepted, and the policy still
    // picks among its own.
    let wider = ActionSpace::new(scaled.clone(), vec![1, 2, 4, 8, 16, 32, 64, 128, 256]).unwrap();
    checkpoint().check_space(&wider, "c").unwrap();
    energyllm_policy::link();
    let ctx = PolicyContext::new(wider, Slo::default(), 0);
    let mut p = (find::<PolicyPlugin>("ppo").unwrap().build)(&json!({"shield": false}), &ctx).unwrap();
    let obs = energyllm_core::Controller::external(Default::default())
        .unwrap()
        .observe(energyllm_core::Timestamp::ZERO);
    let a = p.decide(&obs);
    assert!(ActionSpace::paper().batches().contains(&a.batch), "{a:?}");
    // A cap the checkpoint needs and the deployment lacks: refused.
    let fewer = ActionSpace::new(scaled, vec![1, 2, 4, 8, 16, 32]).unwrap();
    let e = checkpoint().check_space(&fewer, "c").unwrap_err().to_string();
    assert!(e.contains("batches [1, 2, 4, 8, 16, 32, 64]"), "{e}");
}

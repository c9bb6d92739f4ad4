#![allow(clippy::unwrap_used, clippy::expect_used)]
//! ONNX round trip of the PPO actor: export a checkpoint, serve the file through tract, get the
//! same decisions. Built only with `--features onnx`.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use energyllm_core::registry::{find, PolicyContext, PolicyPlugin};
use energyllm_core::{ActionSpace, Mhz, Observation, Policy, Slo, Timestamp};
use energyllm_models::onnx::{decode_proto, encode_proto, OnnxModel};
use energyllm_policy::agent::VARIANTS;
use energyllm_policy::nn::Scratch;
use energyllm_policy::onnx::{export, to_proto, SPEC_METADATA_KEY};
use energyllm_policy::Checkpoint;

fn ctx() -> PolicyContext {
    PolicyContext::new(ActionSpace::paper(), Slo::e2e(11.0), 0)
}

fn build(config: serde_json::Value) -> Result<Box<dyn Policy>, String> {
    energyllm_policy::link();
    let plugin = find::<PolicyPlugin>("ppo").unwrap();
    (plugin.build)(&config, &ctx()).map_err(|e| e.to_string())
}

/// Observations spread over the ranges the features normalise.
fn observations(n: usize, seed: u64) -> Vec<Observation> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let space = ActionSpace::paper();
    (0..n)
        .map(|_| {
            let freq_index = rng.gen_range(0..space.freqs().len());
            let queue_len = rng.gen_range(0..64u32);
            Observation {
                now: Timestamp::from_secs_f64(rng.gen_range(0.0..3600.0)),
                queue_len,
                queued_prompt_tokens: u64::from(queue_len) * rng.gen_range(10..2000u64),
                queued_expected_output_tokens: f64::from(queue_len) * rng.gen_range(10.0..600.0),
                running: rng.gen_range(0..64),
                kv_usage_frac: rng.gen_range(0.0..1.0),
                freq: space.freqs()[freq_index],
                freq_index,
                batch_cap: space.batches()[rng.gen_range(0..space.batches().len())],
                since_last_switch_s: rng.gen_range(0.0..120.0),
                arrival_rate_rps: rng.gen_range(0.0..3.0),
                oldest_wait_s: rng.gen_range(0.0..15.0),
                mean_wait_s: rng.gen_range(0.0..8.0),
                recent_slo_attainment: rng.gen_range(0.5..1.0),
                recent_mean_latency_s: rng.gen_range(1.0..14.0),
                recent_power_w: rng.gen_range(60.0..400.0),
                mean_output_tokens: rng.gen_range(50.0..600.0),
                mean_prompt_tokens: 256.0,
                completed: rng.gen_range(0..1000),
                slo: Slo::e2e(rng.gen_range(10.0..13.0)),
            }
        })
        .collect()
}

fn exported(dir: &Path, name: &str, checkpoint: &Checkpoint) -> PathBuf {
    let path = dir.join(format!("{name}.onnx"));
    export(checkpoint, &path).unwrap();
    path
}

#[test]
fn exported_actor_gives_the_same_logits_and_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let mut checkpoints = vec![("default", Checkpoint::default_checkpoint().unwrap())];
    for (name, text) in VARIANTS {
        checkpoints.push((name, Checkpoint::parse(text, name).unwrap()));
    }
    for (name, checkpoint) in checkpoints {
        let path = exported(dir.path(), name, &checkpoint);

        // The network itself: tract's logits match the native forward pass.
        let model = OnnxModel::load(&path).unwrap();
        assert_eq!(model.input_len(), checkpoint.spec.features.dim());
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut scratch = Scratch::default();
        for _ in 0..50 {
            let x: Vec<f32> = (0..model.input_len()).map(|_| rng.gen_range(-1.0..2.0)).collect();
            let native = checkpoint.actor.forward(&x, &mut scratch).to_vec();
            let onnx = model.run(&x).unwrap();
            assert_eq!(native.len(), onnx.len());
            for (a, b) in native.iter().zip(&onnx) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{name}: {a} vs {b}");
            }
        }

        // The policy: the same action for the same observation, mask included.
        let variant = if name == "default" {
            json!({"shield": false})
        } else {
            json!({"variant": name, "shield": false})
        };
        let mut native = build(variant).unwrap();
        let mut onnx = build(json!({"checkpoint": path.to_str().unwrap(), "shield": false})).unwrap();
        let mut differ = 0;
        for obs in observations(500, 11) {
            let (a, b) = (native.decide(&obs), onnx.decide(&obs));
            differ += usize::from(a != b);
        }
        // f32 sums in another order may flip a near-tie, and nothing more.
        assert!(differ <= 2, "{name}: {differ} of 500 decisions differ");
    }
}

#[test]
fn the_spec_rides_in_the_metadata_and_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::default_checkpoint().unwrap();
    let path = exported(dir.path(), "default", &checkpoint);
    let proto = decode_proto(&std::fs::read(&path).unwrap(), "x").unwrap();
    let spec = &proto.metadata_props.iter().find(|e| e.key == SPEC_METADATA_KEY).unwrap().value;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(spec).unwrap(),
        serde_json::to_value(&checkpoint.spec).unwrap()
    );

    // A file that states its features refuses another feature setting.
    let e = build(json!({"checkpoint": path.to_str().unwrap(), "features": "paper", "shield": false}))
        .err()
        .unwrap();
    assert!(e.contains("carries its own feature spec"), "{e}");

    // A spec that allows nothing is refused, as for the checkpoint.
    let mut empty = checkpoint.clone();
    empty.spec.allowed_batches.clear();
    let empty_path = dir.path().join("empty.onnx");
    std::fs::write(&empty_path, encode_proto(&to_proto(&empty))).unwrap();
    let e = build(json!({"checkpoint": empty_path.to_str().unwrap(), "shield": false})).err().unwrap();
    assert!(e.contains("allows no action") && e.contains("empty.onnx"), "{e}");

    // A deployment with another action space shape is refused, as for the checkpoint.
    let narrow = ActionSpace::new(vec![Mhz(705), Mhz(1410)], vec![1, 8]).unwrap();
    let plugin = find::<PolicyPlugin>("ppo").unwrap();
    let e = (plugin.build)(
        &json!({"checkpoint": path.to_str().unwrap(), "shield": false}),
        &PolicyContext::new(narrow, Slo::e2e(11.0), 0),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("was trained for clocks"), "{e}");
}

#[test]
fn a_network_trained_elsewhere_is_served_with_the_features_named() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::default_checkpoint().unwrap();
    // What a PyTorch export looks like: the same graph, no energyllm metadata.
    let mut proto = to_proto(&checkpoint);
    proto.metadata_props.clear();
    let path = dir.path().join("torch.onnx");
    std::fs::write(&path, encode_proto(&proto)).unwrap();
    let p = path.to_str().unwrap();

    let mut onnx = build(json!({"checkpoint": p, "features": "token-aware", "shield": false})).unwrap();
    let mut native = build(json!({"shield": false})).unwrap();
    let same = observations(200, 3).iter().filter(|o| onnx.decide(o) == native.decide(o)).count();
    assert!(same >= 198, "{same} of 200");

    // Features that do not fit its input width are refused with both numbers.
    let e = build(json!({"checkpoint": p, "features": "paper", "shield": false})).err().unwrap();
    assert!(e.contains("reads 16 inputs") && e.contains("are 7"), "{e}");
}

#[test]
fn unusable_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::default_checkpoint().unwrap();
    let path = exported(dir.path(), "default", &checkpoint);
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let e = build(json!({"checkpoint": truncated.to_str().unwrap()})).err().unwrap();
    assert!(e.contains("truncated.onnx") && e.contains("not a valid ONNX"), "{e}");

    let missing = dir.path().join("missing.onnx");
    let e = build(json!({"checkpoint": missing.to_str().unwrap()})).err().unwrap();
    assert!(e.contains("missing.onnx"), "{e}");

    // A regressor (8 inputs, 1 output) is not a policy for 16 features × 105 actions.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../energyllm-models/tests/fixtures/onnx/policy_mlp.onnx");
    let e = build(json!({"checkpoint": fixture.to_str().unwrap(), "shield": false})).err().unwrap();
    assert!(e.contains("reads 8 inputs"), "{e}");
}

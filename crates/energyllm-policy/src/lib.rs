/*!
Policies: what decides the GPU clock and the batch cap at each decision epoch.

Every policy implements [`Policy`](energyllm_core::Policy) and registers itself in the policy
registry with a name, a one-line description and a constructor from a config value, so
`energyllm list` shows it and `--policy NAME:key=value` builds it. A policy sees only the
[`Observation`](energyllm_core::Observation) the controller builds; it never reads a request's true
output length (the clairvoyant reference is the one documented exception).

| name | observes | sets | follows |
|---|---|---|---|
| `static-high` | nothing | top clock, batch 8 | EnergyLLM's Static-High reference |
| `fixed` | nothing | a given clock and batch | EnergyLLM's fixed-clock / fixed-batch ablations |

[`adaptive`] holds the other baselines that need no performance model (DVFS-Only, Batch-Only,
Reactive-DVFS, Token-Aware) and [`lookahead`] those that do (DynamoLLM-like, throttLL'eM-like,
VoltanaLLM-like, the w/o-RL heuristic); [`agent`] the trained
PPO policy (`ppo`), with [`ppo`], [`nn`], [`features`], [`shield`] and [`env`] behind it, and
`onnx` (feature `onnx`) its ONNX export and import. The crate's README has the full table. The
clairvoyant reference needs the future and lives in energyllm-sim.
*/
#![deny(missing_docs)]

/// Registers a baseline whose config deserialises from `NAME:key=value,…`.
macro_rules! register {
    ($name:literal, $desc:literal, $ty:ty, $config:ty) => {
        inventory::submit! {
            PolicyPlugin {
                name: $name,
                description: $desc,
                build: |value, ctx| Ok(Box::new(<$ty>::new(parse_config::<$config>("policy", $name, value)?, ctx)?)),
            }
        }
    };
}

pub mod adaptive;
pub mod agent;
pub mod baselines;
pub mod env;
mod error;
pub mod features;
pub mod forecast;
pub mod lookahead;
pub mod mpc;
pub mod nn;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod ppo;
pub mod shield;

pub use agent::{is_onnx_path, Checkpoint, PolicySpec, PpoPolicy, PpoPolicyConfig};
pub use baselines::{Fixed, FixedConfig, StaticHigh, StaticHighConfig, VllmDefault, VllmDefaultConfig};
pub use env::{Env, Step};
pub use error::Error;
pub use features::FeatureSet;
pub use ppo::{Ppo, PpoConfig};
pub use shield::Shield;

/// Call from a binary so the linker keeps this crate's plugin registrations (inventory's
/// submissions in a crate nothing references are dropped).
pub fn link() {}

#[cfg(test)]
mod tests {
    use energyllm_core::registry::{find, PolicyContext, PolicyPlugin};
    use energyllm_core::{ActionSpace, Mhz, Slo};
    use serde_json::json;

    fn ctx() -> PolicyContext {
        PolicyContext::new(ActionSpace::paper(), Slo::default(), 0)
    }

    fn obs() -> energyllm_core::Observation {
        let mut c = energyllm_core::Controller::new(
            Default::default(),
            Box::new(energyllm_core::testutil::FixedPolicy(energyllm_core::Action {
                freq: Mhz(1410),
                batch: 8,
            })),
        )
        .unwrap();
        c.handle(energyllm_core::Timestamp::ZERO, energyllm_core::Event::Tick);
        c.observe(energyllm_core::Timestamp::ZERO)
    }

    #[test]
    fn static_high_takes_the_top_clock_and_batch_8() {
        let p = find::<PolicyPlugin>("static-high").unwrap();
        let mut policy = (p.build)(&json!({}), &ctx()).unwrap();
        let a = policy.decide(&obs());
        assert_eq!((a.freq, a.batch), (Mhz(1410), 8));
    }

    #[test]
    fn fixed_snaps_its_clock_and_refuses_bad_parameters() {
        let p = find::<PolicyPlugin>("fixed").unwrap();
        let mut policy = (p.build)(&json!({"freq": 1199, "batch": 16}), &ctx()).unwrap();
        let a = policy.decide(&obs());
        assert_eq!((a.freq, a.batch), (Mhz(1200), 16));
        for (bad, needle) in [
            (json!({"freq": 1200}), "missing field `batch`"),
            (json!({"freq": 1200, "batch": 16, "extra": 1}), "unknown field `extra`"),
            (json!({"freq": 3000, "batch": 16}), "outside"),
            (json!({"freq": 1200, "batch": 0}), "not a cap of the action space"),
            // A cap the space does not offer would be snapped silently: refused instead.
            (json!({"freq": 1410, "batch": 256}), "choose one of [1, 2, 4, 8, 16, 32, 64]"),
        ] {
            let e = (p.build)(&bad, &ctx()).err().unwrap().to_string();
            assert!(e.contains(needle) && e.contains("fixed"), "{e}");
        }
    }
}

//! The trained PPO policy: checkpoints and the `ppo` policy plugin.
//!
//! A [`Checkpoint`] is a JSON file: a format name and version, the [`PolicySpec`] the network
//! was trained for (feature set and names, the action space's clocks and batch caps, the allowed
//! subsets, whether the shield was in the loop) and the actor network. Loading checks all of it:
//! a checkpoint trained for another action space or feature set is refused with a message that
//! says what differs, as is a truncated, oversized or inconsistent file. JSON rather than a
//! binary format because the shipped default is small (tens of kB), diffs and reviews as text,
//! and needs no extra dependency.
//!
//! The default checkpoint is embedded (`checkpoints/default.json`) and regenerated exactly by
//! `cargo xtask train` with default arguments. `ppo:checkpoint=PATH` loads another one (an
//! ablation variant, a longer run).

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use energyllm_core::registry::{parse_config, ConfigValue, PolicyContext, PolicyPlugin};
use energyllm_core::{Action, ActionSpace, Mhz, Observation, Policy};

use crate::features::FeatureSet;
use crate::nn::{Mlp, Scratch};
use crate::ppo::{greedy, masked_log_softmax};
use crate::shield::Shield;
use crate::Error;

/// The `format` field of every checkpoint.
pub const CHECKPOINT_FORMAT: &str = "energyllm-ppo";
/// The checkpoint version this build reads and writes.
pub const CHECKPOINT_VERSION: u32 = 1;
/// Largest checkpoint file accepted, in bytes (a 256-256 network is about 1 MB of JSON).
pub const MAX_CHECKPOINT_BYTES: u64 = 32 << 20;
/// The shipped default checkpoint (see the module docs).
pub const DEFAULT_CHECKPOINT: &str = include_str!("../checkpoints/default.json");

/// The ablation variants, trained by `cargo xtask train` with the default arguments plus the
/// flag in each comment, shipped beside the default: `ppo:variant=NAME`.
pub const VARIANTS: &[(&str, &str)] = &[
    // --features paper: the paper's 7-feature state (w/o token awareness)
    ("paper-features", include_str!("../checkpoints/paper-features.json")),
    // --reward no-energy: SLO terms only (w/o energy reward)
    ("no-energy", include_str!("../checkpoints/no-energy.json")),
    // --fixed-clock 1200: only batch caps learned (fixed clock 1200 MHz)
    ("fixed-clock-1200", include_str!("../checkpoints/fixed-clock-1200.json")),
    // --fixed-batch 16: only clocks learned (fixed batch 16)
    ("fixed-batch-16", include_str!("../checkpoints/fixed-batch-16.json")),
];

/// What a network was trained for: its inputs and its outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// The observation features.
    pub features: FeatureSet,
    /// Their names, in order (checked against this build's, so a changed feature list is caught).
    pub feature_names: Vec<String>,
    /// The action space's clocks in MHz; output `i` is clock `i / batches.len()`.
    pub freqs_mhz: Vec<u32>,
    /// The action space's batch caps.
    pub batches: Vec<u32>,
    /// Clocks the policy may choose (the rest are masked); all of them unless an ablation fixes one.
    pub allowed_freqs_mhz: Vec<u32>,
    /// Batch caps the policy may choose.
    pub allowed_batches: Vec<u32>,
    /// Whether the safety shield was in the loop during training (the plugin then uses it too).
    pub shield: bool,
    /// The shield's margin: predicted latency must stay within this fraction of the SLO.
    pub shield_margin: f64,
}

impl PolicySpec {
    /// A spec over `space` with every action allowed and the shield on at margin 1.
    pub fn new(features: FeatureSet, space: &ActionSpace) -> Self {
        let freqs_mhz: Vec<u32> = space.freqs().iter().map(|f| f.0).collect();
        PolicySpec {
            features,
            feature_names: features.names().iter().map(|s| (*s).to_owned()).collect(),
            allowed_freqs_mhz: freqs_mhz.clone(),
            freqs_mhz,
            batches: space.batches().to_vec(),
            allowed_batches: space.batches().to_vec(),
            shield: true,
            shield_margin: 1.0,
        }
    }

    /// The action space.
    pub fn action_space(&self) -> Result<ActionSpace, energyllm_core::Error> {
        ActionSpace::new(self.freqs_mhz.iter().map(|&f| Mhz(f)).collect(), self.batches.clone())
    }

    /// Checks what a stored spec claims against this build: the feature names (a changed feature
    /// list is caught), the action space, and that some action is allowed. `name` names the
    /// file in errors.
    pub fn check(&self, name: &str) -> Result<ActionSpace, Error> {
        let err = |reason: String| Error::Checkpoint { name: name.to_owned(), reason };
        let names: Vec<&str> = self.feature_names.iter().map(String::as_str).collect();
        if names != self.features.names() {
            return Err(err(format!(
                "was trained on features [{}], but this build's `{}` set is [{}]; retrain with `cargo xtask train`",
                names.join(", "),
                self.features.label(),
                self.features.names().join(", ")
            )));
        }
        let space = self.action_space().map_err(|e| err(e.to_string()))?;
        if !self.mask().contains(&true) {
            return Err(err("allows no action (allowed clocks × batches is empty)".into()));
        }
        Ok(space)
    }

    /// Which flat actions are allowed (clock-major, as [`ActionSpace::action`] numbers them).
    pub fn mask(&self) -> Vec<bool> {
        let mut mask = Vec::with_capacity(self.freqs_mhz.len() * self.batches.len());
        for f in &self.freqs_mhz {
            for b in &self.batches {
                mask.push(self.allowed_freqs_mhz.contains(f) && self.allowed_batches.contains(b));
            }
        }
        mask
    }
}

/// A trained policy on disk. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// [`CHECKPOINT_VERSION`] when written by this build.
    pub version: u32,
    /// Inputs and outputs.
    pub spec: PolicySpec,
    /// The policy network: features → action logits.
    pub actor: Mlp,
    /// How it was trained (configuration, seed, steps, final metrics), for the record.
    #[serde(default)]
    pub training: serde_json::Value,
}

impl Checkpoint {
    /// A checkpoint of `actor` for `spec`.
    pub fn new(spec: PolicySpec, actor: Mlp, training: serde_json::Value) -> Self {
        Checkpoint { format: CHECKPOINT_FORMAT.into(), version: CHECKPOINT_VERSION, spec, actor, training }
    }

    /// The shipped default.
    pub fn default_checkpoint() -> Result<Self, Error> {
        Self::parse(DEFAULT_CHECKPOINT, "default")
    }

    /// Parses and checks a checkpoint's text; `name` names it in errors.
    pub fn parse(text: &str, name: &str) -> Result<Self, Error> {
        let err = |reason: String| Error::Checkpoint { name: name.to_owned(), reason };
        if text.len() as u64 > MAX_CHECKPOINT_BYTES {
            return Err(err(format!(
                "is {} bytes, more than the {} MiB limit; this is not a PPO checkpoint",
                text.len(),
                MAX_CHECKPOINT_BYTES >> 20
            )));
        }
        let c: Checkpoint = serde_json::from_str(text).map_err(|e| {
            err(format!("is not a valid checkpoint ({e}); it may be truncated: regenerate it with `cargo xtask train`"))
        })?;
        if c.format != CHECKPOINT_FORMAT {
            return Err(err(format!("has format `{}`, expected `{CHECKPOINT_FORMAT}`", c.format)));
        }
        if c.version != CHECKPOINT_VERSION {
            return Err(err(format!(
                "is version {}, this build reads version {CHECKPOINT_VERSION}; retrain with `cargo xtask train`",
                c.version
            )));
        }
        let space = c.spec.check(name)?;
        if !c.actor.is_consistent()
            || c.actor.input_dim() != c.spec.features.dim()
            || c.actor.output_dim() != space.len()
        {
            return Err(err(format!(
                "its network (layers {:?}, {} parameters) does not fit its spec ({} features, {} actions) \
                 or holds non-finite values; the file is corrupted",
                c.actor.sizes(),
                c.actor.params().len(),
                c.spec.features.dim(),
                space.len()
            )));
        }
        Ok(c)
    }

    /// Reads and checks a checkpoint file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let io = |source| Error::Io { path: path.to_owned(), source };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_CHECKPOINT_BYTES {
            return Err(Error::Checkpoint {
                name: path.display().to_string(),
                reason: format!("is {len} bytes, more than the {} MiB limit", MAX_CHECKPOINT_BYTES >> 20),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The checkpoint as JSON text (one line, then a newline).
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Writes the checkpoint.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.to_json()).map_err(|source| Error::Io { path: path.to_owned(), source })
    }

    /// Refuses a deployment whose action space the policy cannot act in.
    ///
    /// The network picks a clock *level* (an index into the clock list) and one of its own caps,
    /// so a space with as many clocks that offers every cap it knows is accepted: the i-th clock
    /// of another GPU, as the simulator's `paper_action_space_for` scales the paper's A100 clocks
    /// to an H100's range, and more caps than trained for (the engine's default of 256), which the
    /// policy simply never picks. That is what "the same policy on another GPU, no retraining"
    /// means here.
    pub fn check_space(&self, space: &ActionSpace, name: &str) -> Result<(), Error> {
        check_space(&self.spec, space, name).map(|_| ())
    }
}

/// Checks that the policy can act in the deployment's `space` and returns the space it acts in:
/// the deployment's clocks (as many as it was trained on) × its own caps, which must all be caps
/// of the deployment (a deployment may offer more, e.g. the engine's default of 256).
fn check_space(spec: &PolicySpec, space: &ActionSpace, name: &str) -> Result<ActionSpace, Error> {
    let freqs: Vec<u32> = space.freqs().iter().map(|f| f.0).collect();
    let caps_offered = spec.batches.iter().all(|b| space.batches().contains(b));
    match ActionSpace::new(space.freqs().to_vec(), spec.batches.clone()) {
        Ok(own) if freqs.len() == spec.freqs_mhz.len() && caps_offered => Ok(own),
        _ => Err(Error::Checkpoint {
            name: name.to_owned(),
            reason: format!(
                "was trained for clocks {:?} MHz × batches {:?}, but this deployment's action space is \
                 clocks {freqs:?} × batches {:?}; train one for it with `cargo xtask train`",
                spec.freqs_mhz,
                spec.batches,
                space.batches()
            ),
        }),
    }
}

/// Config of the `ppo` plugin.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoPolicyConfig {
    /// Checkpoint file. Default: the embedded default checkpoint.
    pub checkpoint: Option<String>,
    /// One of the shipped ablation variants ([`VARIANTS`]) instead of the default.
    pub variant: Option<String>,
    /// Use the safety shield. Default: as the checkpoint was trained (on for the default).
    pub shield: Option<bool>,
    /// The shield's margin (fraction of the SLO). Default: as trained (1.0).
    pub shield_margin: Option<f64>,
    /// Sample actions from the policy instead of taking the most likely one. Default: false.
    pub sample: bool,
    /// The features an ONNX policy without an energyllm spec reads (one trained elsewhere).
    /// Default: token-aware. Refused for checkpoints and exported files, which state their own.
    pub features: Option<FeatureSet>,
}

/// The actor network behind a [`PpoPolicy`]: the native MLP, or an ONNX graph run by tract.
pub(crate) enum Network {
    Native {
        mlp: Mlp,
        scratch: Scratch,
    },
    #[cfg(feature = "onnx")]
    Onnx {
        model: energyllm_models::onnx::OnnxModel,
        out: Vec<f32>,
    },
}

impl Network {
    #[cfg(feature = "onnx")]
    pub(crate) fn onnx(model: energyllm_models::onnx::OnnxModel, outputs: usize) -> Self {
        Network::Onnx { model, out: vec![0.0; outputs] }
    }

    fn output_dim(&self) -> usize {
        match self {
            Network::Native { mlp, .. } => mlp.output_dim(),
            #[cfg(feature = "onnx")]
            Network::Onnx { out, .. } => out.len(),
        }
    }

    /// The logits for features `x`; `None` if the runtime failed (the caller falls back).
    fn logits(&mut self, x: &[f32]) -> Option<&[f32]> {
        match self {
            Network::Native { mlp, scratch } => Some(mlp.forward(x, scratch)),
            #[cfg(feature = "onnx")]
            Network::Onnx { model, out } => {
                let y = model.run(x).ok()?;
                if y.len() != out.len() {
                    return None;
                }
                out.copy_from_slice(&y);
                Some(out)
            }
        }
    }
}

/// Whether `path` names an ONNX file (by its extension).
pub fn is_onnx_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// The PPO policy at inference: features, the actor network, the mask and the shield.
pub struct PpoPolicy {
    network: Network,
    features: FeatureSet,
    space: ActionSpace,
    mask: Vec<bool>,
    x: Vec<f32>,
    logp: Vec<f32>,
    shield: Option<Shield>,
    sample: Option<(ChaCha8Rng, u64)>,
    fallbacks: u64,
}

impl PpoPolicy {
    /// A policy from a checkpoint for the context's action space. With the shield on, the
    /// context must carry a performance model.
    pub fn new(
        checkpoint: Checkpoint,
        name: &str,
        config: &PpoPolicyConfig,
        ctx: &PolicyContext,
    ) -> Result<Self, Error> {
        if config.features.is_some() {
            return Err(Error::Config(format!(
                "{name} is a checkpoint and states its own features; drop `features=` (it is for ONNX \
                 files trained elsewhere)"
            )));
        }
        let network = Network::Native { mlp: checkpoint.actor, scratch: Scratch::default() };
        Self::with_network(checkpoint.spec, network, name, config, ctx)
    }

    /// A policy over any actor network whose widths the caller has checked against `spec`.
    pub(crate) fn with_network(
        spec: PolicySpec,
        mut network: Network,
        name: &str,
        config: &PpoPolicyConfig,
        ctx: &PolicyContext,
    ) -> Result<Self, Error> {
        let own_space = check_space(&spec, &ctx.action_space, name)?;
        let shield = if config.shield.unwrap_or(spec.shield) {
            let perf = ctx.perf_model.clone().ok_or_else(|| Error::Checkpoint {
                name: name.to_owned(),
                reason:
                    "the safety shield needs a performance model and none was given; pass `shield=false` \
                         or run where one is available (the simulator provides one)"
                        .into(),
            })?;
            let margin = config.shield_margin.unwrap_or(spec.shield_margin);
            if !(margin.is_finite() && margin > 0.0) {
                return Err(Error::Config(format!("shield_margin must be positive, got {margin}")));
            }
            Some(Shield::new(perf, ctx.action_space.clone(), margin))
        } else {
            None
        };
        let x = vec![0.0; spec.features.dim()];
        // Grow the scratch buffers once so that native decisions allocate nothing.
        network.logits(&x);
        Ok(PpoPolicy {
            features: spec.features,
            mask: spec.mask(),
            logp: vec![0.0; network.output_dim()],
            x,
            network,
            shield,
            space: own_space,
            sample: config.sample.then(|| (ChaCha8Rng::seed_from_u64(ctx.seed), ctx.seed)),
            fallbacks: 0,
        })
    }

    /// Decisions where the network could not be run (an ONNX runtime error) and the policy took
    /// the top clock instead; always 0 for native checkpoints.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks
    }

    /// Times the safety shield raised the chosen clock (0 without a shield).
    pub fn shield_overrides(&self) -> u64 {
        self.shield.as_ref().map_or(0, Shield::overrides)
    }

    /// The flat index of the network's choice for `obs`, before the shield; `None` when the
    /// network could not be run.
    pub fn choose(&mut self, obs: &Observation) -> Option<usize> {
        self.features.encode(obs, &self.space, &mut self.x);
        let logits = self.network.logits(&self.x)?;
        Some(match &mut self.sample {
            None => greedy(logits, &self.mask),
            Some((rng, _)) => {
                masked_log_softmax(logits, &self.mask, &mut self.logp);
                let u: f32 = rng.gen();
                let mut acc = 0.0;
                for (i, lp) in self.logp.iter().enumerate() {
                    if self.mask[i] {
                        acc += lp.exp();
                        if u < acc {
                            return Some(i);
                        }
                    }
                }
                greedy(&self.logp, &self.mask)
            }
        })
    }
}

impl Policy for PpoPolicy {
    fn name(&self) -> &str {
        "ppo"
    }
    fn decide(&mut self, obs: &Observation) -> Action {
        let fallback = Action { freq: self.space.max_freq(), batch: 8 };
        let action = match self.choose(obs) {
            Some(i) => self.space.action(i).unwrap_or(fallback),
            None => {
                self.fallbacks += 1;
                fallback
            }
        };
        match &mut self.shield {
            Some(s) => s.check(obs, action),
            None => action,
        }
    }
    /// Shield raises plus runtime fallbacks: every decision the network did not make as chosen.
    fn overrides(&self) -> u64 {
        self.shield_overrides() + self.fallbacks
    }
    fn reset(&mut self) {
        if let Some(s) = &mut self.shield {
            s.reset();
        }
        if let Some((rng, seed)) = &mut self.sample {
            *rng = ChaCha8Rng::seed_from_u64(*seed);
        }
    }
}

fn plugin_error(e: Error) -> energyllm_core::Error {
    energyllm_core::Error::PluginConfig { kind: "policy", name: "ppo".into(), reason: e.to_string() }
}

fn build(value: &ConfigValue, ctx: &PolicyContext) -> Result<Box<dyn Policy>, energyllm_core::Error> {
    let config: PpoPolicyConfig = parse_config("policy", "ppo", value)?;
    let (checkpoint, name) = match (&config.checkpoint, &config.variant) {
        (Some(_), Some(_)) => {
            return Err(plugin_error(Error::Config("give `checkpoint` or `variant`, not both".into())));
        }
        (Some(path), None) if is_onnx_path(Path::new(path)) => {
            #[cfg(feature = "onnx")]
            return Ok(Box::new(crate::onnx::load(Path::new(path), &config, ctx).map_err(plugin_error)?));
            #[cfg(not(feature = "onnx"))]
            return Err(plugin_error(Error::Config(format!(
                "{path} is an ONNX policy, which this build cannot run: rebuild with `--features onnx`"
            ))));
        }
        (Some(path), None) => (Checkpoint::load(Path::new(path)).map_err(plugin_error)?, path.clone()),
        (None, Some(v)) => {
            let Some((_, text)) = VARIANTS.iter().find(|(n, _)| n == v) else {
                let known: Vec<&str> = VARIANTS.iter().map(|(n, _)| *n).collect();
                return Err(plugin_error(Error::Config(format!(
                    "unknown variant `{v}`; shipped variants: {}",
                    known.join(", ")
                ))));
            };
            (Checkpoint::parse(text, v).map_err(plugin_error)?, v.clone())
        }
        (None, None) => (Checkpoint::default_checkpoint().map_err(plugin_error)?, "default".to_owned()),
    };
    Ok(Box::new(PpoPolicy::new(checkpoint, &name, &config, ctx).map_err(plugin_error)?))
}

inventory::submit! {
    PolicyPlugin {
        name: "ppo",
        description: "PPO agent (token-aware state, safety shield); ppo:checkpoint=PATH(.json|.onnx),shield=false",
        build,
    }
}

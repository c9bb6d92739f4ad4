//! Fixed-setting baselines.

use serde::Deserialize;

use energyllm_core::registry::{parse_config, ConfigValue, PolicyContext, PolicyPlugin};
use energyllm_core::{Action, ActionSpace, Error, Mhz, Observation, Policy};

use crate::adaptive::engine_default_cap;

/// Static-High: the top clock and a fixed batch, what a server does with no energy management.
///
/// Observes nothing; sets the space's highest clock and batch 8. This is the EnergyLLM paper's
/// reference row ("Static-High": 1410 MHz on A100, batch 8).
#[derive(Clone, Debug)]
pub struct StaticHigh {
    action: Action,
}

/// Config of [`StaticHigh`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticHighConfig {
    /// Batch cap. Default: 8.
    pub batch: u32,
}

impl Default for StaticHighConfig {
    fn default() -> Self {
        StaticHighConfig { batch: 8 }
    }
}

impl StaticHigh {
    /// Builds it for the context's action space.
    pub fn new(config: StaticHighConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        check_batch("static-high", config.batch, &ctx.action_space)?;
        Ok(StaticHigh { action: Action { freq: ctx.action_space.max_freq(), batch: config.batch } })
    }
}

impl Policy for StaticHigh {
    fn name(&self) -> &str {
        "static-high"
    }
    fn decide(&mut self, _obs: &Observation) -> Action {
        self.action
    }
}

/// Fixed: a given clock and batch cap, for ablations (the paper's "fixed clock 1200" and "fixed
/// batch 16") and sweeps.
#[derive(Clone, Debug)]
pub struct Fixed {
    action: Action,
}

/// Config of [`Fixed`]; both fields are required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedConfig {
    /// SM clock in MHz (snapped to the nearest clock of the action space).
    pub freq: u32,
    /// Batch cap.
    pub batch: u32,
}

impl Fixed {
    /// Builds it; the clock must lie within the action space's range.
    pub fn new(config: FixedConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        check_batch("fixed", config.batch, &ctx.action_space)?;
        let space = &ctx.action_space;
        let freq = Mhz(config.freq);
        if freq < space.min_freq() || freq > space.max_freq() {
            return Err(Error::PluginConfig {
                kind: "policy",
                name: "fixed".into(),
                reason: format!(
                    "freq={} MHz is outside the action space's clocks ({}–{} MHz)",
                    config.freq,
                    space.min_freq().0,
                    space.max_freq().0
                ),
            });
        }
        Ok(Fixed { action: Action { freq: space.nearest_freq(freq), batch: config.batch } })
    }
}

impl Policy for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }
    fn decide(&mut self, _obs: &Observation) -> Action {
        self.action
    }
}

/// A cap the controller can set as given: one of the action space's caps. Any other would be
/// snapped silently, and the row would not be what its label says.
fn check_batch(name: &str, batch: u32, space: &ActionSpace) -> Result<(), Error> {
    if !space.batches().contains(&batch) {
        return Err(Error::PluginConfig {
            kind: "policy",
            name: name.into(),
            reason: format!(
                "batch={batch} is not a cap of the action space; choose one of {:?}",
                space.batches()
            ),
        });
    }
    Ok(())
}

/// vLLM as an operator runs it without energyllm: the top clock and the engine's default batch
/// cap (vLLM's `max_num_seqs` of 256: the largest cap of the action space), continuous batching.
/// The bar every saving is stated against.
#[derive(Clone, Debug)]
pub struct VllmDefault {
    action: Action,
}

/// Config of [`VllmDefault`]: none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VllmDefaultConfig {}

impl VllmDefault {
    /// Builds it for the context's action space.
    pub fn new(_: VllmDefaultConfig, ctx: &PolicyContext) -> Result<Self, Error> {
        let space = &ctx.action_space;
        Ok(VllmDefault { action: Action { freq: space.max_freq(), batch: engine_default_cap(space) } })
    }
}

impl Policy for VllmDefault {
    fn name(&self) -> &str {
        "vllm-default"
    }
    fn decide(&mut self, _obs: &Observation) -> Action {
        self.action
    }
}

fn build_vllm_default(value: &ConfigValue, ctx: &PolicyContext) -> Result<Box<dyn Policy>, Error> {
    Ok(Box::new(VllmDefault::new(parse_config("policy", "vllm-default", value)?, ctx)?))
}

fn build_static_high(value: &ConfigValue, ctx: &PolicyContext) -> Result<Box<dyn Policy>, Error> {
    Ok(Box::new(StaticHigh::new(parse_config("policy", "static-high", value)?, ctx)?))
}

fn build_fixed(value: &ConfigValue, ctx: &PolicyContext) -> Result<Box<dyn Policy>, Error> {
    Ok(Box::new(Fixed::new(parse_config("policy", "fixed", value)?, ctx)?))
}

inventory::submit! {
    PolicyPlugin { name: "static-high", description: "highest clock, batch 8 (the EnergyLLM paper's reference)", build: build_static_high }
}
inventory::submit! {
    PolicyPlugin { name: "fixed", description: "a given clock and batch cap: fixed:freq=1200,batch=16", build: build_fixed }
}
inventory::submit! {
    PolicyPlugin { name: "vllm-default", description: "top clock, the engine's default batch cap (vLLM as deployed; the bar to beat)", build: build_vllm_default }
}

//! The core crate's errors, and the error types its traits share with implementations.

use thiserror::Error;

use crate::Mhz;

/// Errors from configuration, plugin lookup and the vocabulary types.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent; the message says which and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A plugin config named a field the plugin does not take, or gave a value of the wrong type.
    #[error("bad config for {kind} `{name}`: {reason}")]
    PluginConfig {
        /// Plugin kind ("policy", "actuator", …).
        kind: &'static str,
        /// Plugin name.
        name: String,
        /// What was wrong, from the deserializer (names the field).
        reason: String,
    },
    /// No plugin of this kind has that name.
    #[error("unknown {kind} `{name}`; known {kind} names: {}", known.join(", "))]
    UnknownPlugin {
        /// Plugin kind.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Every registered name of that kind, sorted.
        known: Vec<String>,
    },
    /// Two linked crates registered the same plugin name; rename one of them.
    #[error("two {kind} plugins are registered as `{name}`: rename one")]
    DuplicatePlugin {
        /// Plugin kind.
        kind: &'static str,
        /// The duplicated name.
        name: String,
    },
    /// A `name:key=value,…` spec string could not be parsed.
    #[error("cannot parse spec `{spec}`: {reason} (expected NAME or NAME:key=value,key=value)")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What was wrong.
        reason: String,
    },
}

/// Errors from a [`FrequencyActuator`](crate::FrequencyActuator).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ActuatorError {
    /// The device does not support this clock; pick one of the listed ones.
    #[error("{requested} is not a supported clock; supported: {}", fmt_clocks(supported))]
    UnsupportedClock {
        /// What was asked for.
        requested: Mhz,
        /// What the device supports.
        supported: Vec<Mhz>,
    },
    /// The process may not change clocks; the message says what grants it.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The backend (driver, library, device) is missing or failed; the message says which.
    #[error("{0}")]
    Backend(String),
    /// The actuator does not support this operation (e.g. no energy counter).
    #[error("not supported by this actuator: {0}")]
    NotSupported(String),
    /// The vendor library or driver interface is not on this machine; the message says what to
    /// install or where to point the actuator.
    #[error("{0}")]
    NotInstalled(String),
    /// The device stopped answering (fell off the bus, needs a reset, was removed); the message
    /// says how to recover.
    #[error("device lost: {0}")]
    DeviceLost(String),
}

/// Errors from an [`Engine`](crate::Engine).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine cannot serve this request at all (e.g. it can never fit in the KV cache).
    #[error("request rejected: {0}")]
    Rejected(String),
    /// The engine is unreachable or answered with an error.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The engine's answer could not be understood.
    #[error("bad response from engine: {0}")]
    Protocol(String),
}

fn fmt_clocks(clocks: &[Mhz]) -> String {
    let v: Vec<String> = clocks.iter().map(|c| c.0.to_string()).collect();
    format!("{} MHz", v.join(", "))
}

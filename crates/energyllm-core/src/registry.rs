//! Plugin registries: every implementation registers a name, a description and a constructor.
//!
//! Registration uses [`inventory`]: an implementation crate calls `inventory::submit!` with a
//! [`PolicyPlugin`] (or another kind), and [`find`] looks it up by name. Lookup sorts names and
//! refuses duplicates rather than picking one. Submissions in a crate the final binary never
//! references are not linked, so binaries reference each plugin crate explicitly (see
//! ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::{
    ActionSpace, ActuatorError, Engine, EngineError, Error, FrequencyActuator, PerfModel, Policy, Slo,
};

/// A plugin's configuration: any serde value (TOML tables and `key=value` specs map onto it).
pub type ConfigValue = serde_json::Value;

/// What a policy constructor is given besides its own config.
#[derive(Clone)]
pub struct PolicyContext {
    /// The clocks and batch caps it may choose from.
    pub action_space: ActionSpace,
    /// The SLO being served.
    pub slo: Slo,
    /// Seed for any randomness in the policy.
    pub seed: u64,
    /// A performance model of the deployment, for policies that look ahead (`None` when the
    /// caller has none; such policies then refuse to build and say so).
    pub perf_model: Option<Arc<dyn PerfModel>>,
}

impl PolicyContext {
    /// A context without a performance model.
    pub fn new(action_space: ActionSpace, slo: Slo, seed: u64) -> Self {
        PolicyContext { action_space, slo, seed, perf_model: None }
    }
}

impl std::fmt::Debug for PolicyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyContext")
            .field("action_space", &self.action_space)
            .field("slo", &self.slo)
            .field("seed", &self.seed)
            .field("perf_model", &self.perf_model.as_ref().map(|m| m.name().to_owned()))
            .finish()
    }
}

/// A policy constructor: its config and the context it runs in.
pub type BuildPolicy = fn(&ConfigValue, &PolicyContext) -> Result<Box<dyn Policy>, Error>;

/// A registered [`Policy`].
pub struct PolicyPlugin {
    /// Unique name, as used on the command line.
    pub name: &'static str,
    /// One line saying what it does.
    pub description: &'static str,
    /// Builds the policy from its config.
    pub build: BuildPolicy,
}
inventory::collect!(PolicyPlugin);

/// A registered [`FrequencyActuator`].
pub struct ActuatorPlugin {
    /// Unique name.
    pub name: &'static str,
    /// One line saying what it does.
    pub description: &'static str,
    /// Builds the actuator from its config.
    pub build: fn(&ConfigValue) -> Result<Box<dyn FrequencyActuator>, ActuatorError>,
}
inventory::collect!(ActuatorPlugin);

/// A registered [`Engine`].
pub struct EnginePlugin {
    /// Unique name.
    pub name: &'static str,
    /// One line saying what it does.
    pub description: &'static str,
    /// Builds the engine from its config.
    pub build: fn(&ConfigValue) -> Result<Box<dyn Engine>, EngineError>,
}
inventory::collect!(EnginePlugin);

/// A registered [`PerfModel`] family.
pub struct PerfModelPlugin {
    /// Unique name.
    pub name: &'static str,
    /// One line saying what it does.
    pub description: &'static str,
    /// Builds (loads or fits) the model from its config.
    pub build: fn(&ConfigValue) -> Result<Box<dyn PerfModel>, Error>,
}
inventory::collect!(PerfModelPlugin);

/// A kind of plugin: lets [`find`] and [`list`] work over every registry.
pub trait Plugin: Sized + 'static {
    /// The kind's name in messages ("policy", "actuator", …).
    const KIND: &'static str;
    /// The plugin's name.
    fn name(&self) -> &'static str;
    /// The plugin's one-line description.
    fn description(&self) -> &'static str;
    /// Every registered plugin of this kind, in no set order.
    fn all() -> Vec<&'static Self>;
}

macro_rules! plugin_kind {
    ($ty:ty, $kind:literal) => {
        impl Plugin for $ty {
            const KIND: &'static str = $kind;
            fn name(&self) -> &'static str {
                self.name
            }
            fn description(&self) -> &'static str {
                self.description
            }
            fn all() -> Vec<&'static Self> {
                inventory::iter::<$ty>.into_iter().collect()
            }
        }
    };
}
plugin_kind!(PolicyPlugin, "policy");
plugin_kind!(ActuatorPlugin, "actuator");
plugin_kind!(EnginePlugin, "engine");
plugin_kind!(PerfModelPlugin, "perf model");

/// Every plugin of kind `P`, sorted by name; an error if two share a name.
pub fn list<P: Plugin>() -> Result<Vec<&'static P>, Error> {
    let mut by_name = BTreeMap::new();
    for p in P::all() {
        if by_name.insert(p.name(), p).is_some() {
            return Err(Error::DuplicatePlugin { kind: P::KIND, name: p.name().to_owned() });
        }
    }
    Ok(by_name.into_values().collect())
}

/// The plugin of kind `P` called `name`; the error lists every known name.
pub fn find<P: Plugin>(name: &str) -> Result<&'static P, Error> {
    let all = list::<P>()?;
    match all.iter().find(|p| p.name() == name) {
        Some(p) => Ok(p),
        None => Err(Error::UnknownPlugin {
            kind: P::KIND,
            name: name.to_owned(),
            known: all.iter().map(|p| p.name().to_owned()).collect(),
        }),
    }
}

/// Deserialises a plugin's config into its typed form, naming the plugin in errors. A null
/// value (no config given) reads as an empty table, so all-default configs need no input.
pub fn parse_config<T: DeserializeOwned>(
    kind: &'static str,
    name: &str,
    value: &ConfigValue,
) -> Result<T, Error> {
    let value = match value {
        ConfigValue::Null => ConfigValue::Object(Default::default()),
        v => v.clone(),
    };
    serde_json::from_value(value).map_err(|e| Error::PluginConfig {
        kind,
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// A plugin named with inline parameters, as on the command line: `fixed:freq=1200,batch=16`.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginSpec {
    /// The spec as written, used as the method's label in reports.
    pub label: String,
    /// The plugin name (before the colon).
    pub name: String,
    /// The parameters as a config table (numbers and booleans typed, the rest strings).
    pub config: ConfigValue,
}

impl PluginSpec {
    /// Parses `NAME` or `NAME:key=value,key=value`.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let err = |reason: &str| Error::Spec { spec: spec.to_owned(), reason: reason.to_owned() };
        let spec_trimmed = spec.trim();
        let (name, params) = match spec_trimmed.split_once(':') {
            Some((n, p)) => (n.trim(), Some(p)),
            None => (spec_trimmed, None),
        };
        if name.is_empty() {
            return Err(err("the name is empty"));
        }
        let mut table = serde_json::Map::new();
        for pair in params.into_iter().flat_map(|p| p.split(',')) {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').ok_or_else(|| err("a parameter has no `=`"))?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() {
                return Err(err("a parameter name is empty"));
            }
            if table.insert(k.to_owned(), scalar(v)).is_some() {
                return Err(err(&format!("parameter `{k}` is given twice")));
            }
        }
        Ok(PluginSpec {
            label: spec_trimmed.to_owned(),
            name: name.to_owned(),
            config: ConfigValue::Object(table),
        })
    }
}

fn scalar(v: &str) -> ConfigValue {
    if let Ok(i) = v.parse::<i64>() {
        return i.into();
    }
    if let Ok(x) = v.parse::<f64>() {
        if x.is_finite() {
            return x.into();
        }
    }
    match v {
        "true" => true.into(),
        "false" => false.into(),
        _ => v.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_typed_parameters() {
        let s = PluginSpec::parse(" fixed:freq=1200, batch=16,scale=0.5,on=true,tag=x ").unwrap();
        assert_eq!(s.name, "fixed");
        assert_eq!(s.label, "fixed:freq=1200, batch=16,scale=0.5,on=true,tag=x");
        assert_eq!(
            s.config,
            serde_json::json!({"freq": 1200, "batch": 16, "scale": 0.5, "on": true, "tag": "x"})
        );
        assert_eq!(PluginSpec::parse("static-high").unwrap().config, serde_json::json!({}));
    }

    #[test]
    fn spec_errors_say_what_is_wrong() {
        for bad in ["", ":a=1", "p:a", "p:=1", "p:a=1,a=2"] {
            let e = PluginSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("cannot parse spec"), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_config_field_names_the_plugin_and_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            freq: u32,
        }
        let e = parse_config::<C>("policy", "fixed", &serde_json::json!({"frq": 1})).unwrap_err().to_string();
        assert!(e.contains("policy `fixed`") && e.contains("frq"), "{e}");
    }
}

//! The `NAME:key=value,…` specs of arrival processes and load profiles, read into serde enums
//! tagged by `kind`.

use serde::de::DeserializeOwned;

use energyllm_core::PluginSpec;

use crate::Error;

/// Reads `spec` into `T`, a serde enum tagged by `kind`: the name must be one of `known`, and a
/// name in `bare` (one whose rate or share is set elsewhere) takes no parameters. Every message
/// names `what` and the spec.
pub(crate) fn tagged<T: DeserializeOwned>(
    spec: &str,
    what: &str,
    known: &[&str],
    bare: &[&str],
) -> Result<T, Error> {
    let s = PluginSpec::parse(spec)?;
    if !known.contains(&s.name.as_str()) {
        return Err(Error::Setting(format!("unknown {what} `{}`; known: {}", s.name, known.join(", "))));
    }
    let mut obj = match s.config {
        serde_json::Value::Object(o) => o,
        _ => serde_json::Map::new(),
    };
    if bare.contains(&s.name.as_str()) {
        if let Some(k) = obj.keys().next() {
            return Err(Error::Setting(format!(
                "{what} `{spec}`: unknown field `{k}`; {} takes no parameters (the rate is set separately)",
                s.name
            )));
        }
    }
    obj.insert("kind".into(), s.name.clone().into());
    serde_json::from_value(serde_json::Value::Object(obj))
        .map_err(|e| Error::Setting(format!("{what} `{spec}`: {e}")))
}

//! Registrations in the performance-model registry: each family loads from a model file.

use std::path::PathBuf;

use serde::Deserialize;

use energyllm_core::registry::{parse_config, ConfigValue, PerfModelPlugin};
use energyllm_core::PerfModel;

use crate::file::{ModelFile, SavedModel};

/// Config of the file-backed plugins.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// The model file (`energyllm fit … --output DIR` writes them). Required.
    path: PathBuf,
}

fn plugin_error(name: &str, reason: String) -> energyllm_core::Error {
    energyllm_core::Error::PluginConfig { kind: "perf model", name: name.to_owned(), reason }
}

fn load(name: &'static str, value: &ConfigValue) -> Result<ModelFile, energyllm_core::Error> {
    let cfg: FileConfig = parse_config("perf model", name, value)?;
    ModelFile::load(&cfg.path).map_err(|e| plugin_error(name, e.to_string()))
}

fn build_gbt(value: &ConfigValue) -> Result<Box<dyn PerfModel>, energyllm_core::Error> {
    match load("gbt", value)?.model {
        SavedModel::Gbt(m) => Ok(Box::new(m)),
        _ => Err(plugin_error(
            "gbt",
            "the file holds another model family (see `energyllm models eval`)".into(),
        )),
    }
}

fn build_wilkins(value: &ConfigValue) -> Result<Box<dyn PerfModel>, energyllm_core::Error> {
    match load("wilkins", value)?.model {
        SavedModel::Wilkins(m) => Ok(m),
        _ => Err(plugin_error(
            "wilkins",
            "the file holds another model family (see `energyllm models eval`)".into(),
        )),
    }
}

inventory::submit! {
    PerfModelPlugin {
        name: "gbt",
        description: "gradient-boosted trees for iteration latency and power: gbt:path=models/gbt.elm",
        build: build_gbt,
    }
}
inventory::submit! {
    PerfModelPlugin {
        name: "wilkins",
        description: "Wilkins bilinear energy/runtime in input and output tokens: wilkins:path=FILE.elm",
        build: build_wilkins,
    }
}

#[cfg(feature = "onnx")]
mod onnx_plugin {
    use std::path::PathBuf;

    use serde::Deserialize;

    use energyllm_core::registry::{parse_config, ConfigValue, PerfModelPlugin};
    use energyllm_core::PerfModel;

    use crate::onnx::{OnnxPerfModel, OnnxRegressor};

    /// Config of the `onnx` plugin.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OnnxConfig {
        /// ONNX regressor of iteration latency in seconds over the five features. Required.
        latency: PathBuf,
        /// ONNX regressor of power in watts over the five features. Required.
        power: PathBuf,
    }

    fn build(value: &ConfigValue) -> Result<Box<dyn PerfModel>, energyllm_core::Error> {
        let cfg: OnnxConfig = parse_config("perf model", "onnx", value)?;
        let load =
            |p: &PathBuf| OnnxRegressor::load(p).map_err(|e| super::plugin_error("onnx", e.to_string()));
        Ok(Box::new(OnnxPerfModel { latency: load(&cfg.latency)?, power: load(&cfg.power)? }))
    }

    inventory::submit! {
        PerfModelPlugin {
            name: "onnx",
            description: "ONNX regressors (tract, or native tree ensembles): onnx:latency=A.onnx,power=B.onnx",
            build,
        }
    }
}

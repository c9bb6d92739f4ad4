//! Model profiles: the architecture numbers that set compute, memory traffic and KV footprint.

use serde::{Deserialize, Serialize};

use crate::Error;

/// One model's architecture, as in its `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Model name.
    pub name: String,
    /// Parameters, in billions.
    pub params_b: f64,
    /// Transformer layers.
    pub layers: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Attention (query) heads.
    pub heads: u32,
    /// Key/value heads (fewer than `heads` with grouped-query attention).
    pub kv_heads: u32,
    /// Dimension of each head.
    pub head_dim: u32,
    /// Feed-forward inner size.
    pub ffn: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// Bytes per weight and per KV element (2 for FP16/BF16).
    pub bytes_per_param: u32,
    /// GPUs the model is split over by tensor parallelism (the profile describes one of them).
    pub tensor_parallel: u32,
}

const BUILTIN: &[(&str, &str)] = &[("llama-3.1-8b", include_str!("../profiles/llama-3.1-8b.toml"))];

impl ModelSpec {
    /// Names of the profiles shipped in the crate.
    pub fn builtin_names() -> Vec<String> {
        BUILTIN.iter().map(|(n, _)| (*n).to_owned()).collect()
    }

    /// A shipped profile by name.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::UnknownModel { name: name.to_owned(), known: Self::builtin_names() })?;
        Self::from_toml(text, name)
    }

    /// Parses and validates a profile; `source_name` names it in errors.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, Error> {
        let err =
            |reason: String| Error::Config { source_name: format!("model profile {source_name}"), reason };
        let spec: ModelSpec = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if !(spec.params_b.is_finite() && spec.params_b > 0.0) {
            return Err(err(format!("`params_b` must be positive, got {}", spec.params_b)));
        }
        for (field, v) in [
            ("layers", spec.layers),
            ("hidden", spec.hidden),
            ("heads", spec.heads),
            ("kv_heads", spec.kv_heads),
            ("head_dim", spec.head_dim),
            ("bytes_per_param", spec.bytes_per_param),
            ("tensor_parallel", spec.tensor_parallel),
        ] {
            if v == 0 {
                return Err(err(format!("`{field}` must be ≥ 1")));
            }
        }
        Ok(spec)
    }

    /// Weight bytes held by each GPU.
    pub fn weight_bytes_per_gpu(&self) -> f64 {
        self.params_b * 1e9 * f64::from(self.bytes_per_param) / f64::from(self.tensor_parallel)
    }

    /// KV-cache bytes one token occupies on each GPU (keys and values, every layer).
    pub fn kv_bytes_per_token_per_gpu(&self) -> f64 {
        2.0 * f64::from(self.layers)
            * f64::from(self.kv_heads)
            * f64::from(self.head_dim)
            * f64::from(self.bytes_per_param)
            / f64::from(self.tensor_parallel)
    }

    /// Dense FLOPs per token on each GPU outside attention (2 per parameter).
    pub fn linear_flops_per_token_per_gpu(&self) -> f64 {
        2.0 * self.params_b * 1e9 / f64::from(self.tensor_parallel)
    }

    /// Attention FLOPs per (query token, context token) pair on each GPU: QKᵀ and AV, every layer.
    pub fn attention_flops_per_pair_per_gpu(&self) -> f64 {
        4.0 * f64::from(self.layers) * f64::from(self.heads) * f64::from(self.head_dim)
            / f64::from(self.tensor_parallel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_8b_kv_footprint_is_128_kib_per_token() {
        let m = ModelSpec::builtin("llama-3.1-8b").unwrap();
        assert_eq!(m.kv_bytes_per_token_per_gpu(), 131072.0);
        assert!((m.weight_bytes_per_gpu() - 16.06e9).abs() < 1e6);
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let e = ModelSpec::from_toml("name='x'", "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("params_b"), "{e}");
        let e = ModelSpec::builtin("gpt-5").unwrap_err().to_string();
        assert!(e.contains("llama-3.1-8b"), "{e}");
    }
}

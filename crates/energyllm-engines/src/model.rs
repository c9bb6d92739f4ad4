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
    /// Whether the output projection shares the input embedding's weights.
    pub tied_embeddings: bool,
    /// Bytes per weight and per KV element (2 for FP16/BF16).
    pub bytes_per_param: u32,
    /// GPUs the model is split over by tensor parallelism (the profile describes one of them).
    pub tensor_parallel: u32,
}

const BUILTIN: &[(&str, &str)] = &[
    ("llama-3.1-8b", include_str!("../profiles/llama-3.1-8b.toml")),
    ("qwen2.5-7b", include_str!("../profiles/qwen2.5-7b.toml")),
    ("llama-2-7b", include_str!("../profiles/llama-2-7b.toml")),
    ("llama-2-13b", include_str!("../profiles/llama-2-13b.toml")),
    ("llama-2-70b-tp2", include_str!("../profiles/llama-2-70b-tp2.toml")),
    ("llama-2-70b-tp4", include_str!("../profiles/llama-2-70b-tp4.toml")),
    ("llama-2-70b-tp8", include_str!("../profiles/llama-2-70b-tp8.toml")),
    ("qwen3-8b", include_str!("../profiles/qwen3-8b.toml")),
    ("qwen3-14b", include_str!("../profiles/qwen3-14b.toml")),
    ("qwen3-32b", include_str!("../profiles/qwen3-32b.toml")),
    ("qwen3-32b-tp2", include_str!("../profiles/qwen3-32b-tp2.toml")),
    ("llama-3.1-70b-tp2", include_str!("../profiles/llama-3.1-70b-tp2.toml")),
    ("llama-3.1-70b-tp4", include_str!("../profiles/llama-3.1-70b-tp4.toml")),
    ("llama-3.1-70b-tp8", include_str!("../profiles/llama-3.1-70b-tp8.toml")),
    ("mistral-7b", include_str!("../profiles/mistral-7b.toml")),
];

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
            ("ffn", spec.ffn),
            ("vocab", spec.vocab),
        ] {
            if v == 0 {
                return Err(err(format!("`{field}` must be ≥ 1")));
            }
        }
        // The architecture fixes the parameter count; a profile whose numbers disagree with its
        // stated size has a typo somewhere.
        let counted_b = spec.counted_params() / 1e9;
        if (counted_b / spec.params_b - 1.0).abs() > 0.03 {
            return Err(err(format!(
                "the architecture gives {counted_b:.2} B parameters but `params_b` says {}; check layers, hidden, heads, kv_heads, head_dim, ffn and vocab",
                spec.params_b
            )));
        }
        Ok(spec)
    }

    /// Weights of one transformer layer: Q, K, V and O projections and the gated MLP.
    pub fn layer_params(&self) -> f64 {
        let (h, q, kv) = (
            f64::from(self.hidden),
            f64::from(self.heads * self.head_dim),
            f64::from(self.kv_heads * self.head_dim),
        );
        h * q + 2.0 * h * kv + q * h + 3.0 * h * f64::from(self.ffn)
    }

    /// Embedding and output-projection weights.
    pub fn embedding_params(&self) -> f64 {
        let one = f64::from(self.vocab) * f64::from(self.hidden);
        if self.tied_embeddings {
            one
        } else {
            2.0 * one
        }
    }

    /// Parameters implied by the architecture (layers plus embeddings; norms are negligible).
    pub fn counted_params(&self) -> f64 {
        f64::from(self.layers) * self.layer_params() + self.embedding_params()
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

    fn tp(&self) -> f64 {
        f64::from(self.tensor_parallel)
    }

    /// Weight bytes of one layer on each GPU.
    pub fn layer_weight_bytes_per_gpu(&self) -> f64 {
        self.layer_params() * f64::from(self.bytes_per_param) / self.tp()
    }

    /// Dense FLOPs per token of one layer on each GPU outside attention (2 per weight).
    pub fn layer_flops_per_token_per_gpu(&self) -> f64 {
        2.0 * self.layer_params() / self.tp()
    }

    /// Output-projection (logits) FLOPs per sampled token on each GPU.
    pub fn head_flops_per_token_per_gpu(&self) -> f64 {
        2.0 * f64::from(self.vocab) * f64::from(self.hidden) / self.tp()
    }

    /// Output-projection weight bytes on each GPU (read once per iteration).
    pub fn head_weight_bytes_per_gpu(&self) -> f64 {
        f64::from(self.vocab) * f64::from(self.hidden) * f64::from(self.bytes_per_param) / self.tp()
    }

    /// KV-cache bytes one token occupies in one layer on each GPU.
    pub fn kv_bytes_per_token_per_layer_per_gpu(&self) -> f64 {
        self.kv_bytes_per_token_per_gpu() / f64::from(self.layers)
    }

    /// Attention FLOPs per (query token, context token) pair in one layer on each GPU: QKᵀ and AV.
    pub fn attention_flops_per_pair_per_layer_per_gpu(&self) -> f64 {
        4.0 * f64::from(self.heads) * f64::from(self.head_dim) / self.tp()
    }

    /// Bytes of activations one token sends through each tensor-parallel all-reduce.
    pub fn allreduce_bytes_per_token(&self) -> f64 {
        f64::from(self.hidden) * f64::from(self.bytes_per_param)
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
        // 218 M weights per layer: the figure Vidur's per-layer GEMM timings imply.
        assert!((m.layer_params() / 1e6 - 218.1).abs() < 0.1, "{}", m.layer_params());
    }

    #[test]
    fn every_builtin_profile_loads_and_matches_its_stated_size() {
        for name in ModelSpec::builtin_names() {
            let m = ModelSpec::builtin(&name).unwrap();
            assert!((m.counted_params() / 1e9 / m.params_b - 1.0).abs() < 0.03, "{name}");
        }
        let tp8 = ModelSpec::builtin("llama-2-70b-tp8").unwrap();
        assert!((tp8.weight_bytes_per_gpu() - 68.98e9 * 2.0 / 8.0).abs() < 1e6);
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let mut text = include_str!("../profiles/llama-3.1-8b.toml").replace("ffn = 14336", "ffn = 1436");
        let e = ModelSpec::from_toml(&text, "typo.toml").unwrap_err().to_string();
        assert!(e.contains("typo.toml") && e.contains("check layers"), "{e}");
        text = "name='x'".into();
        let e = ModelSpec::from_toml(&text, "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("params_b"), "{e}");
        let e = ModelSpec::builtin("gpt-5").unwrap_err().to_string();
        assert!(e.contains("llama-3.1-8b"), "{e}");
    }
}

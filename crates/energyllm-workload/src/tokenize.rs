//! Token counting with real tokenizers: OpenAI's BPE encodings (built in, through tiktoken-rs)
//! and, with the `hf-tokenizer` feature, any HuggingFace `tokenizer.json`.
//!
//! Counts are of the text alone: no special tokens and no chat template, whose few tokens per
//! message depend on the serving stack.

use std::path::Path;

use crate::Error;

/// The built-in encodings, by name.
pub const BUILTIN_ENCODINGS: &[&str] = &["cl100k_base", "o200k_base", "p50k_base", "r50k_base"];

/// The encoding used when none is named: cl100k_base (GPT-3.5/GPT-4), the tokenizer of the
/// ChatGPT conversations in ShareGPT and WildChat.
pub const DEFAULT_ENCODING: &str = "cl100k_base";

/// Counts the tokens of a text.
pub struct Tokenizer {
    name: String,
    inner: Inner,
}

enum Inner {
    Tiktoken(&'static tiktoken_rs::CoreBPE),
    #[cfg(feature = "hf-tokenizer")]
    Hf(Box<tokenizers::Tokenizer>),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("name", &self.name).finish()
    }
}

impl Tokenizer {
    /// A built-in encoding (see [`BUILTIN_ENCODINGS`]) or, if `spec` names a `.json` file, a
    /// HuggingFace tokenizer (needs the `hf-tokenizer` feature).
    pub fn from_spec(spec: &str) -> Result<Self, Error> {
        let bpe = match spec {
            "cl100k_base" => Some(tiktoken_rs::cl100k_base_singleton()),
            "o200k_base" => Some(tiktoken_rs::o200k_base_singleton()),
            "p50k_base" => Some(tiktoken_rs::p50k_base_singleton()),
            "r50k_base" => Some(tiktoken_rs::r50k_base_singleton()),
            _ => None,
        };
        if let Some(bpe) = bpe {
            return Ok(Tokenizer { name: spec.to_owned(), inner: Inner::Tiktoken(bpe) });
        }
        if spec.ends_with(".json") || Path::new(spec).is_file() {
            return Self::hf_file(Path::new(spec));
        }
        Err(Error::Setting(format!(
            "unknown tokenizer `{spec}`; use one of {} or the path of a HuggingFace tokenizer.json",
            BUILTIN_ENCODINGS.join(", ")
        )))
    }

    #[cfg(feature = "hf-tokenizer")]
    fn hf_file(path: &Path) -> Result<Self, Error> {
        if !path.is_file() {
            return Err(Error::Io {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such tokenizer file"),
            });
        }
        let tok = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Workload {
            name: path.display().to_string(),
            reason: format!("not a usable HuggingFace tokenizer.json: {e}"),
        })?;
        Ok(Tokenizer { name: path.display().to_string(), inner: Inner::Hf(Box::new(tok)) })
    }

    #[cfg(not(feature = "hf-tokenizer"))]
    fn hf_file(path: &Path) -> Result<Self, Error> {
        Err(Error::Setting(format!(
            "{}: HuggingFace tokenizers need the `hf-tokenizer` feature; rebuild with \
             `cargo build --features hf-tokenizer`, or use a built-in encoding ({})",
            path.display(),
            BUILTIN_ENCODINGS.join(", ")
        )))
    }

    /// The encoding's name or the tokenizer file's path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tokens in `text`, without special tokens.
    pub fn count(&self, text: &str) -> Result<usize, Error> {
        match &self.inner {
            Inner::Tiktoken(bpe) => Ok(bpe.encode_ordinary(text).len()),
            #[cfg(feature = "hf-tokenizer")]
            Inner::Hf(tok) => tok.encode_fast(text, false).map(|e| e.len()).map_err(|e| Error::Workload {
                name: self.name.clone(),
                reason: format!("tokenizing failed: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_encodings_count_known_strings() {
        // Reference counts from OpenAI's tiktoken for the same strings.
        let cl = Tokenizer::from_spec("cl100k_base").unwrap();
        assert_eq!(cl.count("hello world").unwrap(), 2);
        assert_eq!(cl.count("").unwrap(), 0);
        assert_eq!(cl.count("tiktoken is great!").unwrap(), 6);
        let o200 = Tokenizer::from_spec("o200k_base").unwrap();
        assert_eq!(o200.count("hello world").unwrap(), 2);
        let r50 = Tokenizer::from_spec("r50k_base").unwrap();
        assert_eq!(r50.count("hello world").unwrap(), 2);
        // Special-token text is counted as ordinary text, never as one special token.
        assert!(cl.count("<|endoftext|>").unwrap() > 1);
    }

    #[test]
    fn unknown_tokenizers_say_what_exists() {
        let e = Tokenizer::from_spec("gpt2-magic").unwrap_err().to_string();
        assert!(e.contains("unknown tokenizer `gpt2-magic`") && e.contains("cl100k_base"), "{e}");
    }

    #[cfg(not(feature = "hf-tokenizer"))]
    #[test]
    fn a_tokenizer_json_needs_the_feature() {
        let e = Tokenizer::from_spec("some/tokenizer.json").unwrap_err().to_string();
        assert!(e.contains("--features hf-tokenizer"), "{e}");
    }

    #[cfg(feature = "hf-tokenizer")]
    #[test]
    fn a_huggingface_tokenizer_json_counts_words() {
        // A word-level tokenizer with a whitespace pre-tokenizer: one token per word.
        let json = r#"{
          "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
          "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
          "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2}, "unk_token": "[UNK]"}
        }"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json).unwrap();
        let tok = Tokenizer::from_spec(path.to_str().unwrap()).unwrap();
        assert_eq!(tok.count("hello world hello").unwrap(), 3);
        assert_eq!(tok.count("hello, unknown").unwrap(), 3);
        std::fs::write(&path, "{}").unwrap();
        let e = Tokenizer::from_spec(path.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("not a usable HuggingFace tokenizer.json"), "{e}");
    }
}

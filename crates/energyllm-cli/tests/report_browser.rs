//! `report.html` in a real browser: headless Chromium renders the report of a small evaluation,
//! logs no console error, and its screenshot is not blank.
//!
//! Needs Chromium (Debian's `chromium`); `.ci/run` installs it and sets
//! `ENERGYLLM_REQUIRE_BROWSER=1`, which turns a missing browser into a failure instead of a skip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Share of pixels that differ from the first pixel: 0 for a blank page.
fn non_blank_share(png: &Path) -> f64 {
    let decoder = png::Decoder::new(std::fs::File::open(png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples() * usize::from(info.bit_depth as u8 / 8).max(1);
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let first = pixels[0];
    pixels.iter().filter(|p| **p != first).count() as f64 / pixels.len() as f64
}

#[test]
fn the_report_renders_in_headless_chromium_without_console_errors() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("ENERGYLLM_REQUIRE_BROWSER").is_none(),
            "ENERGYLLM_REQUIRE_BROWSER is set but no Chromium was found (apt-get install chromium)"
        );
        eprintln!("skipped: no Chromium on this machine (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let eval = Command::new(env!("CARGO_BIN_EXE_energyllm"))
        .args(["eval", "--quiet", "--runs", "1", "--duration", "20", "--arrival-rate", "2"])
        .args(["--policy", "vllm-default", "--policy", "best-static", "--policy", "throttllem", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let report = out.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<table>") && html.contains("<svg") && !html.contains("<script"));
    let shot = dir.path().join("shot.png");
    let run = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", report.display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");
    // Chromium logs page console messages as `CONSOLE(line)`; the page must log none.
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let share = non_blank_share(&shot);
    assert!(share > 0.02, "the screenshot is blank ({:.4} of pixels differ from the first)", share);
}

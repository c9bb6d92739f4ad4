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

/// Runs headless Chromium on `page`, writing a screenshot to `shot`; returns its log. Killed after
/// two minutes so a hung browser fails the test instead of hanging it.
fn render(browser: &Path, page: &Path, shot: &Path, profile: &Path) -> String {
    let log = profile.with_extension("log");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("Chromium did not finish within two minutes on {}", page.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "Chromium failed on {}: {text}", page.display());
    text
}

/// Page console messages in a Chromium log (`CONSOLE(line)` entries).
fn console_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("CONSOLE")).collect()
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
    // The console check can see an error: a control page that logs one.
    let control = dir.path().join("control.html");
    std::fs::write(&control, "<!DOCTYPE html><script>console.error('energyllm control')</script><p>x</p>")
        .unwrap();
    let control_log = render(&browser, &control, &dir.path().join("control.png"), &dir.path().join("p1"));
    assert!(!console_lines(&control_log).is_empty(), "a console.error must show in the log:\n{control_log}");
    let shot = dir.path().join("shot.png");
    let log = render(&browser, &report, &shot, &dir.path().join("p2"));
    let console = console_lines(&log);
    assert!(console.is_empty(), "console messages: {console:?}");
    let share = non_blank_share(&shot);
    assert!(share > 0.02, "the screenshot is blank ({:.4} of pixels differ from the first)", share);
}

//! `energyllm serve` and `energyllm loadgen` end to end (feature `live`), without a real engine:
//! bad flags are clear errors, the gateway answers for an unreachable upstream with 502s that
//! loadgen reports, and SIGTERM drains and restores the clocks. Every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn energyllm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_energyllm"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the child on drop if a test fails before it stopped it.
struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn bad_flags_are_clear_errors() {
    for (args, expect) in [
        (&["serve", "--actuator", "sim", "--engine", "foo"][..], "unknown engine `foo`"),
        (&["serve", "--actuator", "sim", "--upstream", "https://example.com"][..], "only http://"),
        (&["serve", "--actuator", "sim", "--listen", "0.0.0.0:0"][..], "--public"),
        (&["serve", "--actuator", "sim", "--policy", "nope"][..], "unknown policy `nope`"),
        (&["serve", "--actuator", "sim", "--gpu", "1"][..], "--gpu selects"),
        (&["loadgen", "--target", "nonsense"][..], "not a URL"),
        (&["serve", "--engine", "llamacpp"][..], "--actuator"),
        (&["loadgen", "--target", "http://127.0.0.1:1", "--duration=-1"][..], "--duration"),
        (
            &["loadgen", "--target", "http://127.0.0.1:1", "--timeout", "0"][..],
            "--timeout must be a positive",
        ),
    ] {
        let out = energyllm().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn serve_answers_502_for_a_dead_upstream_and_drains_on_sigterm() {
    let (port, dead) = (free_port(), free_port());
    let child = energyllm()
        .args(["serve", "--actuator", "sim", "--engine", "llamacpp", "--policy", "fixed:freq=1005,batch=2"])
        .args(["--upstream", &format!("http://127.0.0.1:{dead}"), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, "/health").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "the gateway did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = energyllm()
        .args(["loadgen", "--target", &format!("http://127.0.0.1:{port}"), "--arrival-rate", "4"])
        .args(["--duration", "1", "--timeout", "10"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("none of the") && err.contains("502"), "{err}");
    let metrics = get(port, "/metrics").unwrap();
    assert!(metrics.contains("energyllm_requests_failed_total"), "{metrics}");
    assert!(!metrics.contains("energyllm_requests_failed_total 0\n"), "{metrics}");

    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(exit.success(), "{exit}: {stderr}");
    // One JSON object a line: the startup summary, the warning that the upstream's metrics cannot
    // be read, an access line per failed request, the drain and the stop with the clocks restored.
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| lines.iter().find(|l| pred(l)).cloned();
    let start =
        find(&|l| l["message"].as_str().is_some_and(|m| m.contains("serving"))).expect("a startup line");
    assert_eq!(start["actuator"], "sim");
    assert_eq!(start["max_connections"], 512);
    assert!(find(
        &|l| l["level"] == "WARN" && l["reason"].as_str().is_some_and(|r| r.contains("cannot reach"))
    )
    .is_some());
    let access = find(&|l| l["target"] == "energyllm::access").expect("an access line");
    assert_eq!(access["outcome"], "failed", "{access}");
    assert!(find(&|l| l["message"] == "draining").is_some(), "{stderr}");
    let stop = find(&|l| l["message"] == "stopped").expect("a stop line");
    assert_eq!(stop["clocks"], "restored", "{stop}");
}

#[test]
fn a_bad_log_filter_is_a_clear_error() {
    let out = energyllm().args(["serve", "--actuator", "sim", "--log-level", "info,[bad"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--log-level info,[bad is not a tracing filter"), "{err}");
}

/// The gateway actuates through the clock daemon and needs no privilege: `serve --actuator
/// hwd:…` runs as `nobody` (when the test runs as root and `setpriv` is there), sets the clock
/// through the daemon's socket, reports it on `/metrics`, and on SIGTERM leaves the device reset.
#[test]
fn serve_actuates_through_the_clock_daemon_unprivileged() {
    use std::os::unix::fs::PermissionsExt as _;
    energyllm_hwd::link();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("hwd.sock");
    let me = rustix_uid();
    // As `nobody` when root can switch to it and `nobody` can reach the binary (a checkout
    // under a private home directory cannot be); otherwise as this user, saying so.
    let as_nobody = me == 0
        && Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_energyllm"))
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !as_nobody {
        eprintln!(
            "note: serve runs as this user here (no setpriv, not root, or nobody cannot reach the binary)"
        );
    }
    let (uid, mode) = if as_nobody { (65534, "0666") } else { (me, "0660") };
    let config = energyllm_hwd::config::DaemonConfig::parse(&format!(
        "socket = \"{}\"\nsocket_mode = \"{mode}\"\nallowed_uids = [{uid}]\n[[device]]\nindex = 0\nbackend = \"sim\"\nmin_mhz = 900\nmax_mhz = 1410\n",
        socket.display()
    ))
    .unwrap();
    let server = energyllm_hwd::server::Server::bind(config).unwrap();
    let (stop, daemon) = (server.stop_handle(), server.daemon());
    let served = std::thread::spawn(move || server.run().unwrap());
    let top = read_clock(&daemon);

    let port = free_port();
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_energyllm"));
        c
    } else {
        energyllm()
    };
    let child = cmd
        .args(["serve", "--engine", "llamacpp", "--policy", "fixed:freq=1005,batch=2"])
        .args(["--actuator", &format!("hwd:socket={},device=0", socket.display())])
        .args([
            "--upstream",
            &format!("http://127.0.0.1:{}", free_port()),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut metrics = String::new();
    while !metrics.contains("energyllm_clock_mhz{gpu=\"0\"} 1005") {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            child.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("serve exited ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "the clock never reached 1005 MHz through the daemon:\n{metrics}");
        std::thread::sleep(Duration::from_millis(50));
        metrics = get(port, "/metrics").unwrap_or_default();
    }
    assert!(metrics.contains("actuator=\"hwd\""), "{metrics}");
    assert_eq!(read_clock(&daemon), 1005, "the daemon's device holds the gateway's clock");
    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_clock(&daemon) != top {
        assert!(Instant::now() < deadline, "the device stayed locked after the gateway stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.stop();
    served.join().unwrap();
}

fn rustix_uid() -> u32 {
    // The uid that owns this process, from /proc (no extra dependency).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

fn read_clock(daemon: &energyllm_hwd::daemon::Daemon) -> u32 {
    let r = daemon.handle(u64::MAX, &energyllm_hwd::protocol::Request::Read { device: 0 }, Instant::now());
    r.reading.expect("a reading").clock_mhz
}

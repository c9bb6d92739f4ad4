//! The daemon over its real socket: an unauthorised peer is refused, an out-of-range clock is
//! refused, a malformed frame closes only its own connection, a client killed while it holds a
//! lock leaves the clocks reset, a silent holder loses its lock, `set` is rate-limited, and the
//! binary resets and removes its socket on SIGTERM. Devices are the simulated GPU, and (feature
//! `amd`) the fake amdgpu sysfs tree, whose files show each reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use energyllm_hwd::config::DaemonConfig;
use energyllm_hwd::daemon::Daemon;
use energyllm_hwd::server::{Server, StopHandle};

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

fn config(dir: &Path, extra: &str, uids: &str) -> DaemonConfig {
    DaemonConfig::parse(&format!(
        "socket = \"{}\"\nallowed_uids = {uids}\n{extra}\n[[device]]\nindex = 0\nbackend = \"sim\"\nmin_mhz = 900\nmax_mhz = 1200\n",
        dir.join("hwd.sock").display()
    ))
    .unwrap()
}

/// Runs a server on a thread; stops it on drop.
struct Running(StopHandle, Option<std::thread::JoinHandle<()>>);
impl Drop for Running {
    fn drop(&mut self) {
        self.0.stop();
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

fn start(config: DaemonConfig, daemon: Option<Daemon>) -> Running {
    energyllm_hwd::link();
    let server = match daemon {
        Some(d) => Server::bind_daemon(config, d).unwrap(),
        None => Server::bind(config).unwrap(),
    };
    let stop = server.stop_handle();
    let t = std::thread::spawn(move || server.run().unwrap());
    Running(stop, Some(t))
}

struct Client(BufReader<UnixStream>);
impl Client {
    fn connect(dir: &Path) -> Self {
        let s = UnixStream::connect(dir.join("hwd.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client(BufReader::new(s))
    }
    fn send_raw(&mut self, line: &str) -> Option<serde_json::Value> {
        self.0.get_mut().write_all(line.as_bytes()).ok()?;
        let mut reply = String::new();
        match self.0.read_line(&mut reply) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&reply).unwrap()),
        }
    }
    fn send(&mut self, json: &str) -> serde_json::Value {
        self.send_raw(&format!("{json}\n")).expect("a reply")
    }
    fn closed(&mut self) -> bool {
        let mut rest = String::new();
        matches!(self.0.read_line(&mut rest), Ok(0))
    }
}

fn clock(dir: &Path) -> u64 {
    let r = Client::connect(dir).send(r#"{"v":1,"op":"read","device":0}"#);
    r["reading"]["clock_mhz"].as_u64().unwrap()
}

#[test]
fn an_unauthorised_peer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = uid().wrapping_add(4242);
    let _s = start(config(dir.path(), "", &format!("[{other}]")), None);
    let mut c = Client::connect(dir.path());
    let mut line = String::new();
    c.0.read_line(&mut line).unwrap();
    assert!(line.contains("is not allowed") && line.contains(&format!("uid {}", uid())), "{line}");
    assert!(c.closed());
    // The socket file has the configured mode.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("hwd.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn out_of_range_clocks_and_malformed_frames_are_refused_and_only_that_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let _s = start(config(dir.path(), "", &format!("[{}]", uid())), None);
    let mut good = Client::connect(dir.path());
    let list = good.send(r#"{"v":1,"op":"list"}"#);
    assert_eq!(list["devices"][0]["max_mhz"], 1200);
    let r = good.send(r#"{"v":1,"op":"set","device":0,"mhz":1410}"#);
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("900–1200"), "{r}");

    let mut bad = Client::connect(dir.path());
    let r = bad.send("{not json");
    assert!(r["error"].as_str().unwrap().contains("malformed"), "{r}");
    assert!(bad.closed(), "the malformed connection stays open");
    let mut long = Client::connect(dir.path());
    let r = long.send_raw(&"x".repeat(10_000)).expect("a reply to an over-long frame");
    assert!(r["error"].as_str().unwrap().contains("longer than"), "{r}");
    // The good connection is untouched.
    let clocks = good.send(r#"{"v":1,"op":"clocks","device":0}"#);
    assert!(clocks["clocks_mhz"].as_array().is_some_and(|c| !c.is_empty()));
}

#[test]
fn a_client_killed_while_holding_a_lock_leaves_the_clocks_reset() {
    let dir = tempfile::tempdir().unwrap();
    let _s = start(config(dir.path(), "", &format!("[{}]", uid())), None);
    let before = clock(dir.path());
    let low = Client::connect(dir.path()).send(r#"{"v":1,"op":"clocks","device":0}"#)["clocks_mhz"][0]
        .as_u64()
        .unwrap();
    // A separate process locks the clock, then is killed with SIGKILL: no goodbye.
    let script = format!(
        "import os, socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect({:?})\n\
         s.sendall(b'{{\"v\":1,\"op\":\"set\",\"device\":0,\"mhz\":{low}}}\\n')\n\
         sys.stdout.write(s.makefile().readline()); sys.stdout.flush()\nos.kill(os.getpid(), 9)\n",
        dir.path().join("hwd.sock").display().to_string()
    );
    let out = Command::new("python3").args(["-c", &script]).output().expect("python3 runs the doomed client");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\":true"), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while clock(dir.path()) != before {
        assert!(Instant::now() < deadline, "the clocks stayed locked after the holder died");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_silent_holder_loses_its_lock_and_sets_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let _s = start(config(dir.path(), "watchdog_s = 0.3\nmax_sets_per_s = 2", &format!("[{}]", uid())), None);
    let before = clock(dir.path());
    let mut c = Client::connect(dir.path());
    let clocks: Vec<u64> = c.send(r#"{"v":1,"op":"clocks","device":0}"#)["clocks_mhz"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let refused = (0..6)
        .map(|k| c.send(&format!(r#"{{"v":1,"op":"set","device":0,"mhz":{}}}"#, clocks[k % clocks.len()])))
        .filter(|r| r["error"].as_str().is_some_and(|e| e.contains("slow down")))
        .count();
    assert!(refused >= 3, "{refused} of 6 rapid sets refused at 2 a second");
    // Silent for longer than the watchdog: the daemon resets the clocks itself.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(clock(dir.path()), before);
    let r =
        Client::connect(dir.path()).send(&format!(r#"{{"v":1,"op":"set","device":0,"mhz":{}}}"#, clocks[0]));
    assert_eq!(r["ok"], true, "the lock is free again: {r}");
}

#[test]
fn the_binary_resets_and_removes_its_socket_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hwd.toml");
    std::fs::write(
        &cfg,
        format!(
            "socket = \"{}\"\nallowed_uids = [{}]\n[[device]]\nindex = 0\nbackend = \"sim\"\nmin_mhz = 900\nmax_mhz = 1200\n",
            dir.path().join("hwd.sock").display(),
            uid()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_energyllm-hwd");
    let check = Command::new(bin).args(["--check", "--config"]).arg(&cfg).output().unwrap();
    assert!(check.status.success(), "{check:?}");
    let bad = Command::new(bin).args(["--config"]).arg(dir.path().join("missing.toml")).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing.toml"));

    let mut child =
        Command::new(bin).arg("--config").arg(&cfg).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(dir.path().join("hwd.sock")).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = Client::connect(dir.path()).send(r#"{"v":1,"op":"list"}"#);
    assert_eq!(r["ok"], true);
    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::TERM)
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("resetting every device"), "{err}");
    assert!(!dir.path().join("hwd.sock").exists(), "the socket file was left behind");
}

/// The fake amdgpu sysfs tree behind the daemon: a client that locks a clock and disconnects
/// leaves the card back in `auto`, as the files show.
#[cfg(feature = "amd")]
#[test]
fn a_fake_amdgpu_card_is_back_in_auto_after_its_holder_leaves() {
    use energyllm_core::FrequencyActuator as _;
    use energyllm_hw::amd::fake::{FakeAmdgpu, FakeCardSpec, FakeDevice};
    use energyllm_hw::amd::{AmdConfig, AmdGpu};
    let dir = tempfile::tempdir().unwrap();
    let sysfs = dir.path().join("drm");
    let dev = FakeDevice::create(&sysfs, 0, &FakeCardSpec::discrete()).unwrap();
    let gpu = AmdGpu::open_with_writer(
        &AmdConfig { sysfs_root: sysfs.clone(), ..AmdConfig::default() },
        std::sync::Arc::new(FakeAmdgpu),
    )
    .unwrap();
    let clocks = gpu.supported_frequencies().unwrap();
    let c = DaemonConfig::parse(&format!(
        "socket = \"{}\"\nallowed_uids = [{}]\n[[device]]\nindex = 0\nbackend = \"amd\"\nmin_mhz = {}\nmax_mhz = {}\n",
        dir.path().join("hwd.sock").display(),
        uid(),
        clocks[0].0,
        clocks[clocks.len() - 1].0
    ))
    .unwrap();
    let daemon = Daemon::with_actuators(&c, vec![Box::new(gpu)]).unwrap();
    let _s = start(c, Some(daemon));
    let mut holder = Client::connect(dir.path());
    let r = holder.send(&format!(r#"{{"v":1,"op":"set","device":0,"mhz":{}}}"#, clocks[1].0));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(dev.performance_level().unwrap(), "manual");
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dev.performance_level().unwrap() != "auto" {
        assert!(Instant::now() < deadline, "the card stayed in manual after its holder left");
        std::thread::sleep(Duration::from_millis(20));
    }
}

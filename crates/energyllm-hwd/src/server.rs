//! The socket side: a Unix listener whose file has the configured mode, a thread per
//! connection (the clients are a few gateways, not the public), the peer check by
//! `SO_PEERCRED`, per-connection rate limits, and a watchdog thread. Plain threads and blocking
//! I/O keep the privileged process small: no async runtime, no HTTP.

use std::io::{BufReader, ErrorKind};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::DaemonConfig;
use crate::daemon::{ConnId, Daemon};
use crate::protocol::{parse_request, read_frame, write_reply, Reply, Request};
use crate::Error;

/// A bound socket and the daemon behind it.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    daemon: Arc<Daemon>,
    config: DaemonConfig,
    stop: Arc<AtomicBool>,
}

/// Stops a running [`Server::run`] from another thread.
#[derive(Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    path: PathBuf,
}

impl StopHandle {
    /// Asks the accept loop to end (it wakes by a connection to itself).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
    }
}

impl Server {
    /// Opens the devices and binds the socket with the configured mode (an old socket file at
    /// the path is replaced).
    pub fn bind(config: DaemonConfig) -> Result<Self, Error> {
        let daemon = Daemon::new(&config)?;
        Self::bind_daemon(config, daemon)
    }

    /// Binds the socket for a daemon already built (see [`Daemon::with_actuators`]).
    pub fn bind_daemon(config: DaemonConfig, daemon: Daemon) -> Result<Self, Error> {
        let daemon = Arc::new(daemon);
        let path = config.socket.clone();
        let io = |what: &str, e: std::io::Error| Error::Io(format!("{what} {}: {e}", path.display()));
        if std::fs::symlink_metadata(&path).is_ok() {
            std::fs::remove_file(&path).map_err(|e| io("removing the old socket", e))?;
        }
        let listener = UnixListener::bind(&path).map_err(|e| io("binding", e))?;
        let mode = config.mode().map_err(Error::Config)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("setting the mode of", e))?;
        Ok(Server { listener, path, daemon, config, stop: Arc::new(AtomicBool::new(false)) })
    }

    /// The daemon, for resetting on shutdown.
    pub fn daemon(&self) -> Arc<Daemon> {
        Arc::clone(&self.daemon)
    }

    /// A handle that stops [`Server::run`].
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { stop: Arc::clone(&self.stop), path: self.path.clone() }
    }

    /// Serves until stopped, then resets every device and removes the socket file.
    pub fn run(self) -> Result<(), Error> {
        let watchdog = {
            let (daemon, stop) = (Arc::clone(&self.daemon), Arc::clone(&self.stop));
            let tick = Duration::from_secs_f64((self.config.watchdog_s / 4.0).clamp(0.05, 1.0));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(tick);
                    for device in daemon.expire(Instant::now()) {
                        eprintln!("energyllm-hwd: device {device}: its holder was silent past the watchdog; clocks reset");
                    }
                }
            })
        };
        let open = Arc::new(AtomicUsize::new(0));
        let next_id = AtomicU64::new(1);
        for stream in self.listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("energyllm-hwd: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if let Err(why) = peer_allowed(&stream, &self.config) {
                eprintln!("energyllm-hwd: refused a connection: {why}");
                let _ = write_reply(&mut &stream, &Reply::error(why));
                continue;
            }
            if open.load(Ordering::SeqCst) >= self.config.max_connections {
                let _ = write_reply(&mut &stream, &Reply::error("too many connections; retry later"));
                continue;
            }
            // A connection silent for twice the watchdog time is closed, so that idle peers
            // cannot hold every connection slot (their locks went at the watchdog already).
            let idle = Duration::from_secs_f64(self.config.watchdog_s * 2.0);
            if let Err(e) = stream.set_read_timeout(Some(idle)) {
                eprintln!("energyllm-hwd: cannot set a read timeout: {e}");
                continue;
            }
            open.fetch_add(1, Ordering::SeqCst);
            let id = next_id.fetch_add(1, Ordering::SeqCst);
            let (daemon, open, rate) =
                (Arc::clone(&self.daemon), Arc::clone(&open), self.config.max_sets_per_s);
            std::thread::spawn(move || {
                serve_connection(&daemon, id, stream, rate);
                for device in daemon.disconnected(id) {
                    eprintln!("energyllm-hwd: device {device}: its holder disconnected; clocks reset");
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
        let _ = watchdog.join();
        for (device, result) in self.daemon.reset_all() {
            if let Err(e) = result {
                eprintln!("energyllm-hwd: device {device}: resetting the clocks at shutdown failed: {e}");
            }
        }
        remove_socket(&self.path);
        Ok(())
    }
}

fn remove_socket(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Whether the peer's uid or primary gid is allowed, by the kernel's word (`SO_PEERCRED`).
fn peer_allowed(stream: &UnixStream, config: &DaemonConfig) -> Result<(), String> {
    let cred = rustix::net::sockopt::socket_peercred(stream)
        .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    let (uid, gid) = (cred.uid.as_raw(), cred.gid.as_raw());
    if config.allowed_uids.contains(&uid) || config.allowed_gids.contains(&gid) {
        Ok(())
    } else {
        Err(format!(
            "uid {uid} (gid {gid}, pid {}) is not allowed; add it to allowed_uids or its group to allowed_gids",
            cred.pid.as_raw_nonzero()
        ))
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` (and at least one) saved.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let cap = self.rate.max(1.0);
        self.tokens =
            (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate).min(cap);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn serve_connection(daemon: &Daemon, id: ConnId, stream: UnixStream, rate: f64) {
    let mut reader = BufReader::new(&stream);
    let mut writer = &stream;
    let mut buf = Vec::new();
    let mut bucket = Bucket { rate, tokens: rate.max(1.0), last: Instant::now() };
    loop {
        let frame = match read_frame(&mut reader, &mut buf) {
            Ok(f) => f,
            // A reset connection ends like a closed one.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let request = match frame {
            Ok(false) => return,
            Ok(true) => parse_request(&buf),
            Err(e) => Err(e),
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                // A malformed frame ends this connection only; whatever it held is reset.
                let _ = write_reply(&mut writer, &Reply::error(format!("{e}; closing this connection")));
                return;
            }
        };
        let now = Instant::now();
        let reply = if matches!(request, Request::Set { .. }) && !bucket.take(now) {
            Reply::error(format!("more than {rate} set requests a second; slow down"))
        } else {
            daemon.handle(id, &request, now)
        };
        if write_reply(&mut writer, &reply).is_err() {
            return;
        }
    }
}

//! The client: a [`FrequencyActuator`] that asks the daemon, registered as the `hwd` actuator
//! (`--actuator hwd:socket=/run/energyllm-hwd/hwd.sock,device=0`). The gateway then needs no
//! privilege of its own. Its actuator thread reads power every 100 ms, and each read renews the
//! daemon's lease. If the gateway dies or hangs, the daemon's watchdog resets the clocks.

use std::io::{BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use energyllm_core::registry::{parse_config, ActuatorPlugin, ConfigValue};
use energyllm_core::{ActuatorError, FrequencyActuator, Mhz};

use crate::protocol::{read_frame, write_request, Reading, Reply, Request};

/// Settings of the `hwd` actuator.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwdClientConfig {
    /// The daemon's socket. Default: /run/energyllm-hwd/hwd.sock.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The device index in the daemon's config. Default: 0.
    #[serde(default)]
    pub device: u32,
    /// Seconds to wait for each answer. Default: 5.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/energyllm-hwd/hwd.sock")
}
fn default_timeout() -> f64 {
    5.0
}

struct Conn {
    reader: BufReader<UnixStream>,
    buf: Vec<u8>,
}

/// How long a reading answers the next questions: a telemetry sample asks for power, clock and
/// energy one after another, and one round trip serves all three.
const READING_FRESH: Duration = Duration::from_millis(20);

/// A device driven through the daemon.
pub struct HwdActuator {
    conn: Mutex<Conn>,
    last: Mutex<Option<(Instant, Reading)>>,
    device: u32,
    name: String,
    socket: PathBuf,
}

fn backend(e: impl std::fmt::Display) -> ActuatorError {
    ActuatorError::Backend(format!("energyllm-hwd: {e}"))
}

impl HwdActuator {
    /// Connects to the daemon and checks that it serves `device`.
    pub fn connect(config: &HwdClientConfig) -> Result<Self, ActuatorError> {
        let stream = UnixStream::connect(&config.socket).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::PermissionDenied => "; the gateway's user needs the socket's group",
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    "; is energyllm-hwd running (systemctl status energyllm-hwd)?"
                }
                _ => "",
            };
            ActuatorError::NotInstalled(format!("cannot connect to {}: {e}{hint}", config.socket.display()))
        })?;
        if !(config.timeout_s.is_finite() && config.timeout_s > 0.0) {
            return Err(backend(format!("timeout_s must be positive, got {}", config.timeout_s)));
        }
        let timeout = Some(Duration::from_secs_f64(config.timeout_s));
        stream.set_read_timeout(timeout).map_err(backend)?;
        stream.set_write_timeout(timeout).map_err(backend)?;
        let a = HwdActuator {
            conn: Mutex::new(Conn { reader: BufReader::new(stream), buf: Vec::new() }),
            last: Mutex::new(None),
            device: config.device,
            name: format!("hwd device {} at {}", config.device, config.socket.display()),
            socket: config.socket.clone(),
        };
        let list = a.call(&Request::List {})?;
        let devices = list.devices.unwrap_or_default();
        if !devices.iter().any(|d| d.device == config.device) {
            let known: Vec<String> = devices.iter().map(|d| d.device.to_string()).collect();
            return Err(backend(format!(
                "no device {} at {}; it serves {}",
                config.device,
                a.socket.display(),
                known.join(", ")
            )));
        }
        Ok(a)
    }

    fn call(&self, req: &Request) -> Result<Reply, ActuatorError> {
        let mut c = self.conn.lock().map_err(|_| backend("the connection's lock is poisoned"))?;
        let Conn { reader, buf } = &mut *c;
        write_request(reader.get_mut(), req)
            .map_err(|e| backend(format!("sending to {}: {e}", self.socket.display())))?;
        reader.get_mut().flush().map_err(backend)?;
        match read_frame(reader, buf) {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                return Err(ActuatorError::DeviceLost(format!(
                    "{} closed the connection",
                    self.socket.display()
                )))
            }
            Ok(Err(e)) => return Err(backend(e)),
            Err(e) => return Err(backend(format!("reading from {}: {e}", self.socket.display()))),
        }
        let reply: Reply =
            serde_json::from_slice(buf).map_err(|e| backend(format!("a malformed reply: {e}")))?;
        if reply.ok {
            Ok(reply)
        } else {
            let why = reply.error.unwrap_or_default();
            Err(if why.contains("is not allowed on device") {
                ActuatorError::NotSupported(why)
            } else if why.contains("not allowed") {
                ActuatorError::PermissionDenied(why)
            } else {
                backend(why)
            })
        }
    }
}

impl HwdActuator {
    /// The device's reading: the last one if it is fresh, else a new `read`.
    fn reading(&self) -> Result<Reading, ActuatorError> {
        let now = Instant::now();
        if let Ok(last) = self.last.lock() {
            if let Some((t, r)) = *last {
                if now.duration_since(t) < READING_FRESH {
                    return Ok(r);
                }
            }
        }
        let r = self
            .call(&Request::Read { device: self.device })?
            .reading
            .ok_or_else(|| backend("a read without a reading"))?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((now, r));
        }
        Ok(r)
    }

    /// Forgets the reading after a clock change, so the next one shows it.
    fn forget(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }
}

impl FrequencyActuator for HwdActuator {
    fn name(&self) -> &str {
        &self.name
    }
    fn supported_frequencies(&self) -> Result<Vec<Mhz>, ActuatorError> {
        let r = self.call(&Request::Clocks { device: self.device })?;
        Ok(r.clocks_mhz.unwrap_or_default().into_iter().map(Mhz).collect())
    }
    fn current_frequency(&self) -> Result<Mhz, ActuatorError> {
        Ok(Mhz(self.reading()?.clock_mhz))
    }
    fn set_frequency(&mut self, freq: Mhz) -> Result<(), ActuatorError> {
        self.forget();
        self.call(&Request::Set { device: self.device, mhz: freq.0 }).map(|_| ())
    }
    fn reset(&mut self) -> Result<(), ActuatorError> {
        self.forget();
        self.call(&Request::Reset { device: self.device }).map(|_| ())
    }
    fn power_w(&self) -> Result<f64, ActuatorError> {
        Ok(self.reading()?.power_w)
    }
    fn energy_j(&self) -> Result<Option<f64>, ActuatorError> {
        Ok(self.reading()?.energy_j)
    }
}

fn build_hwd(config: &ConfigValue) -> Result<Box<dyn FrequencyActuator>, ActuatorError> {
    let c: HwdClientConfig = parse_config("actuator", "hwd", config).map_err(backend)?;
    Ok(Box::new(HwdActuator::connect(&c)?))
}

inventory::submit! {
    ActuatorPlugin {
        name: "hwd",
        description: "a GPU driven through the energyllm-hwd daemon's socket (socket=PATH, device=N): no privilege needed",
        build: build_hwd,
    }
}

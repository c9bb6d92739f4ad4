//! The daemon's state, apart from any socket: the devices behind their clock guards, who holds
//! each, and what each request does. The socket layer (`server.rs`) feeds it requests, tells it
//! when a connection ends, and ticks its watchdog.
//!
//! A device is held by at most one connection at a time: the one whose `set` locked it. Another
//! connection's `set` or `reset` is refused until the holder resets the device, disconnects or
//! is silent for the watchdog time. In the last two cases the daemon resets the clocks itself.
//! Any request renews the holder's lease.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use energyllm_core::registry::{find, ActuatorPlugin};
use energyllm_core::{FrequencyActuator, Mhz};
use energyllm_hw::guard::{ClockGuard, GuardConfig};

use crate::config::DaemonConfig;
use crate::protocol::{DeviceInfo, Reading, Reply, Request};
use crate::Error;

/// Identifies one client connection.
pub type ConnId = u64;

struct Holder {
    conn: ConnId,
    last_seen: Instant,
}

struct Device {
    info: DeviceInfo,
    /// The clocks clients may set: supported by the device and inside the allowed range.
    allowed: Vec<Mhz>,
    actuator: Mutex<ClockGuard<Box<dyn FrequencyActuator>>>,
    holder: Mutex<Option<Holder>>,
}

/// Every device and its holder.
pub struct Daemon {
    devices: Vec<Device>,
    watchdog: Duration,
}

/// Locks a mutex whose holder panicked: the state it guards (a holder, an actuator) stays
/// usable, and a reset is what a panic calls for anyway.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Daemon {
    /// Opens every device's actuator through the registry (its `backend` and `config`), behind a
    /// guard that restores its clocks if the daemon panics or drops it.
    pub fn new(config: &DaemonConfig) -> Result<Self, Error> {
        let mut actuators: Vec<Box<dyn FrequencyActuator>> = Vec::with_capacity(config.device.len());
        for d in &config.device {
            let plugin = find::<ActuatorPlugin>(&d.backend)
                .map_err(|e| Error::Config(format!("device {}: {e}", d.index)))?;
            let value = match &d.config {
                Some(t) => {
                    serde_json::to_value(t).map_err(|e| Error::Config(format!("device {}: {e}", d.index)))?
                }
                None => serde_json::Value::Null,
            };
            actuators.push((plugin.build)(&value).map_err(|e| Error::Device { index: d.index, source: e })?);
        }
        Self::with_actuators(config, actuators)
    }

    /// The daemon over actuators already opened, one per `[[device]]` in order (for embedding,
    /// and for tests that drive fake devices).
    pub fn with_actuators(
        config: &DaemonConfig,
        actuators: Vec<Box<dyn FrequencyActuator>>,
    ) -> Result<Self, Error> {
        if actuators.len() != config.device.len() {
            return Err(Error::Config(format!(
                "{} actuators for {} [[device]] tables",
                actuators.len(),
                config.device.len()
            )));
        }
        let mut devices = Vec::with_capacity(config.device.len());
        for (d, actuator) in config.device.iter().zip(actuators) {
            let name = actuator.name().to_owned();
            let supported =
                actuator.supported_frequencies().map_err(|e| Error::Device { index: d.index, source: e })?;
            let allowed: Vec<Mhz> =
                supported.into_iter().filter(|f| (d.min_mhz..=d.max_mhz).contains(&f.0)).collect();
            if allowed.is_empty() {
                return Err(Error::Config(format!(
                    "device {}: no clock the device supports lies in {}–{} MHz",
                    d.index, d.min_mhz, d.max_mhz
                )));
            }
            // The daemon handles signals itself (reset every device, remove the socket, exit);
            // the guard covers panics and drops.
            let guard_config =
                GuardConfig { watchdog_s: 0.0, restore_on_signal: false, restore_on_panic: true };
            let guard = ClockGuard::new(actuator, &guard_config)
                .map_err(|e| Error::Device { index: d.index, source: e })?;
            devices.push(Device {
                info: DeviceInfo {
                    device: d.index,
                    backend: d.backend.clone(),
                    name,
                    min_mhz: d.min_mhz,
                    max_mhz: d.max_mhz,
                },
                allowed,
                actuator: Mutex::new(guard),
                holder: Mutex::new(None),
            });
        }
        Ok(Daemon { devices, watchdog: Duration::from_secs_f64(config.watchdog_s) })
    }

    fn device(&self, index: u32) -> Result<&Device, Reply> {
        self.devices.iter().find(|d| d.info.device == index).ok_or_else(|| {
            let known: Vec<String> = self.devices.iter().map(|d| d.info.device.to_string()).collect();
            Reply::error(format!("no device {index} here; this daemon serves device(s) {}", known.join(", ")))
        })
    }

    /// Carries out `req` for connection `conn` at `now`.
    pub fn handle(&self, conn: ConnId, req: &Request, now: Instant) -> Reply {
        self.renew(conn, now);
        match self.try_handle(conn, req, now) {
            Ok(r) | Err(r) => r,
        }
    }

    fn try_handle(&self, conn: ConnId, req: &Request, now: Instant) -> Result<Reply, Reply> {
        match *req {
            Request::List {} => Ok(Reply {
                devices: Some(self.devices.iter().map(|d| d.info.clone()).collect()),
                ..Reply::ok()
            }),
            Request::Renew {} => Ok(Reply::ok()),
            Request::Clocks { device } => {
                let d = self.device(device)?;
                Ok(Reply { clocks_mhz: Some(d.allowed.iter().map(|f| f.0).collect()), ..Reply::ok() })
            }
            Request::Read { device } => {
                let d = self.device(device)?;
                let a = lock(&d.actuator);
                let err = |e: energyllm_core::ActuatorError| Reply::error(format!("device {device}: {e}"));
                let reading = Reading {
                    clock_mhz: a.current_frequency().map_err(err)?.0,
                    power_w: a.power_w().map_err(err)?,
                    energy_j: a.energy_j().map_err(err)?,
                };
                Ok(Reply { reading: Some(reading), ..Reply::ok() })
            }
            Request::Set { device, mhz } => {
                let d = self.device(device)?;
                if !d.allowed.contains(&Mhz(mhz)) {
                    let list: Vec<String> = d.allowed.iter().map(|f| f.0.to_string()).collect();
                    return Err(Reply::error(format!(
                        "{mhz} MHz is not allowed on device {device}; allowed: {} MHz (the daemon's range {}–{} MHz)",
                        list.join(", "),
                        d.info.min_mhz,
                        d.info.max_mhz
                    )));
                }
                let mut holder = lock(&d.holder);
                if let Some(h) = holder.as_ref().filter(|h| h.conn != conn) {
                    return Err(Reply::error(format!(
                        "device {device} is held by another client (connection {}); it frees when that client resets \
                         it, disconnects or is silent for {} s",
                        h.conn,
                        self.watchdog.as_secs_f64()
                    )));
                }
                lock(&d.actuator)
                    .set_frequency(Mhz(mhz))
                    .map_err(|e| Reply::error(format!("device {device}: {e}")))?;
                *holder = Some(Holder { conn, last_seen: now });
                Ok(Reply::ok())
            }
            Request::Reset { device } => {
                let d = self.device(device)?;
                let mut holder = lock(&d.holder);
                if holder.as_ref().is_some_and(|h| h.conn != conn) {
                    return Err(Reply::error(format!(
                        "device {device} is held by another client; only it may reset it"
                    )));
                }
                lock(&d.actuator).reset().map_err(|e| Reply::error(format!("device {device}: {e}")))?;
                *holder = None;
                Ok(Reply::ok())
            }
        }
    }

    fn renew(&self, conn: ConnId, now: Instant) {
        for d in &self.devices {
            if let Some(h) = lock(&d.holder).as_mut().filter(|h| h.conn == conn) {
                h.last_seen = now;
            }
        }
    }

    /// Resets the devices `conn` held (it has gone); returns their indices.
    pub fn disconnected(&self, conn: ConnId) -> Vec<u32> {
        self.release(|h| h.conn == conn)
    }

    /// Resets the devices whose holder has been silent longer than the watchdog time.
    pub fn expire(&self, now: Instant) -> Vec<u32> {
        let limit = self.watchdog;
        self.release(|h| now.saturating_duration_since(h.last_seen) > limit)
    }

    /// Resets every device, held or not (shutdown).
    pub fn reset_all(&self) -> Vec<(u32, Result<(), String>)> {
        self.devices
            .iter()
            .map(|d| {
                *lock(&d.holder) = None;
                (d.info.device, lock(&d.actuator).reset().map_err(|e| e.to_string()))
            })
            .collect()
    }

    fn release(&self, which: impl Fn(&Holder) -> bool) -> Vec<u32> {
        let mut released = Vec::new();
        for d in &self.devices {
            let mut holder = lock(&d.holder);
            if holder.as_ref().is_some_and(&which) {
                *holder = None;
                if let Err(e) = lock(&d.actuator).reset() {
                    eprintln!("energyllm-hwd: device {}: resetting the clocks failed: {e}", d.info.device);
                }
                released.push(d.info.device);
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(watchdog_s: f64) -> Daemon {
        energyllm_hw::link();
        let c = DaemonConfig::parse(&format!(
            "socket = \"/x\"\nallowed_uids = [1]\nwatchdog_s = {watchdog_s}\n[[device]]\nindex = 3\nbackend = \"sim\"\nmin_mhz = 900\nmax_mhz = 1200\n"
        ))
        .unwrap();
        Daemon::new(&c).unwrap()
    }

    fn clock(d: &Daemon, conn: ConnId) -> u32 {
        d.handle(conn, &Request::Read { device: 3 }, Instant::now()).reading.unwrap().clock_mhz
    }

    #[test]
    fn one_holder_at_a_time_and_its_clocks_reset_when_it_goes() {
        let d = daemon(30.0);
        let t = Instant::now();
        let clocks = d.handle(1, &Request::Clocks { device: 3 }, t).clocks_mhz.unwrap();
        assert!(clocks.iter().all(|&c| (900..=1200).contains(&c)) && !clocks.is_empty());
        let top = clock(&d, 1);
        assert!(d.handle(1, &Request::Set { device: 3, mhz: clocks[0] }, t).ok);
        assert_eq!(clock(&d, 2), clocks[0]);
        let r = d.handle(2, &Request::Set { device: 3, mhz: clocks[1] }, t);
        assert!(!r.ok && r.error.unwrap().contains("held by another client"));
        assert!(!d.handle(2, &Request::Reset { device: 3 }, t).ok);
        assert_eq!(d.disconnected(1), vec![3]);
        assert_eq!(clock(&d, 2), top, "the clocks were reset when the holder went");
        assert!(d.handle(2, &Request::Set { device: 3, mhz: clocks[1] }, t).ok);
    }

    #[test]
    fn out_of_range_and_unknown_devices_are_refused_with_the_allowed_values() {
        let d = daemon(30.0);
        let r = d.handle(1, &Request::Set { device: 3, mhz: 1410 }, Instant::now());
        assert!(!r.ok && r.error.as_deref().unwrap_or("").contains("900–1200"), "{r:?}");
        let r = d.handle(1, &Request::Read { device: 0 }, Instant::now());
        assert!(r.error.unwrap().contains("serves device(s) 3"));
    }

    #[test]
    fn a_silent_holder_loses_its_lock_and_any_request_renews_it() {
        let d = daemon(1.0);
        let t0 = Instant::now();
        let low = d.handle(1, &Request::Clocks { device: 3 }, t0).clocks_mhz.unwrap()[0];
        assert!(d.handle(1, &Request::Set { device: 3, mhz: low }, t0).ok);
        assert!(d.expire(t0 + Duration::from_millis(900)).is_empty());
        d.handle(1, &Request::Renew {}, t0 + Duration::from_millis(900));
        assert!(d.expire(t0 + Duration::from_millis(1800)).is_empty(), "renewed at 0.9 s");
        assert_eq!(d.expire(t0 + Duration::from_millis(2000)), vec![3]);
        assert_ne!(clock(&d, 2), low);
    }
}

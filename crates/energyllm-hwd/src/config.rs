//! The daemon's TOML config: the socket, who may connect, and each device with the actuator
//! backend that drives it and the clock range clients may set.
//!
//! ```toml
//! socket = "/run/energyllm-hwd/hwd.sock"
//! socket_mode = "0660"          # the group in the systemd unit owns the socket
//! allowed_uids = [998]          # peers by SO_PEERCRED: these uids…
//! allowed_gids = [998]          # …or these primary gids
//! watchdog_s = 30               # a holder silent this long loses its lock (clocks reset)
//! max_sets_per_s = 10           # per connection
//!
//! [[device]]
//! index = 0                     # what clients name it by
//! backend = "nvml"              # any registered actuator: nvml, amd, sim
//! config = { device = 0 }       # the backend's own settings
//! min_mhz = 900
//! max_mhz = 1410
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// The daemon's settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where the Unix socket is made (an old socket file there is replaced).
    pub socket: PathBuf,
    /// The socket file's permissions, in octal. Default: "0660".
    #[serde(default = "default_mode")]
    pub socket_mode: String,
    /// Peer uids allowed to connect. Default: none.
    #[serde(default)]
    pub allowed_uids: Vec<u32>,
    /// Peer primary gids allowed to connect. Default: none.
    #[serde(default)]
    pub allowed_gids: Vec<u32>,
    /// Seconds a client holding a device may stay silent before its lock is reset. Default: 30.
    #[serde(default = "default_watchdog")]
    pub watchdog_s: f64,
    /// Set requests a connection may make per second; more are refused. Default: 10.
    #[serde(default = "default_rate")]
    pub max_sets_per_s: f64,
    /// Connections served at once; more are refused. Default: 16.
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    /// The devices, at least one.
    pub device: Vec<DeviceConfig>,
}

/// One device.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The index clients name it by; unique.
    pub index: u32,
    /// The actuator backend (`energyllm list` names them).
    pub backend: String,
    /// The backend's settings. Default: none.
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// Lowest clock clients may set, in MHz.
    pub min_mhz: u32,
    /// Highest clock clients may set, in MHz.
    pub max_mhz: u32,
}

fn default_mode() -> String {
    "0660".into()
}
fn default_watchdog() -> f64 {
    30.0
}
fn default_rate() -> f64 {
    10.0
}
fn default_connections() -> usize {
    16
}

impl DaemonConfig {
    /// Reads and checks a config file; errors name the file and the setting.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses and checks a config.
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: DaemonConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// The socket mode as a number.
    pub fn mode(&self) -> Result<u32, String> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                format!("socket_mode `{}` is not an octal mode such as \"0660\"", self.socket_mode)
            })
    }

    fn validate(&self) -> Result<(), String> {
        self.mode()?;
        if self.device.is_empty() {
            return Err("no [[device]] tables: list the devices clients may drive".into());
        }
        if !(self.watchdog_s.is_finite() && self.watchdog_s > 0.0) {
            return Err(format!("watchdog_s must be a positive number of seconds, got {}", self.watchdog_s));
        }
        if !(self.max_sets_per_s.is_finite() && self.max_sets_per_s > 0.0) {
            return Err(format!("max_sets_per_s must be positive, got {}", self.max_sets_per_s));
        }
        if self.max_connections == 0 {
            return Err("max_connections must be ≥ 1".into());
        }
        if self.allowed_uids.is_empty() && self.allowed_gids.is_empty() {
            return Err("allowed_uids and allowed_gids are both empty: nobody could connect; list the gateway's uid or group".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.device {
            if !seen.insert(d.index) {
                return Err(format!("device index {} is listed twice", d.index));
            }
            if d.min_mhz == 0 || d.min_mhz > d.max_mhz {
                return Err(format!(
                    "device {}: min_mhz {} and max_mhz {} must satisfy 0 < min_mhz ≤ max_mhz",
                    d.index, d.min_mhz, d.max_mhz
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "socket = \"/tmp/x.sock\"\nallowed_uids = [1]\n[[device]]\nindex = 0\nbackend = \"sim\"\nmin_mhz = 900\nmax_mhz = 1410\n";

    #[test]
    fn a_config_parses_and_each_bad_setting_is_named() {
        let c = DaemonConfig::parse(OK).unwrap();
        assert_eq!((c.mode(), c.watchdog_s, c.max_connections), (Ok(0o660), 30.0, 16));
        for (change, expect) in [
            (OK.replace("allowed_uids = [1]\n", ""), "nobody could connect"),
            (OK.replace("min_mhz = 900", "min_mhz = 1500"), "min_mhz"),
            (OK.replace("socket = ", "socket_mode = \"0999\"\nsocket = "), "octal"),
            (OK.replace("index = 0", "index = 0\nindx = 1"), "indx"),
            (format!("{OK}[[device]]\nindex = 0\nbackend = \"sim\"\nmin_mhz = 1\nmax_mhz = 2\n"), "twice"),
            (format!("watchdog_s = 0\n{OK}"), "watchdog_s"),
        ] {
            let e = DaemonConfig::parse(&change).unwrap_err();
            assert!(e.contains(expect), "{expect}: {e}");
        }
    }
}

/*!
`energyllm-hwd`: the one process that changes GPU clocks.

Locking a GPU's clock needs privilege: NVML's `set_gpu_locked_clocks` wants `CAP_SYS_ADMIN`,
and the amdgpu sysfs files belong to root. Without this daemon the gateway must hold that
privilege itself, in the same process as an HTTP server that faces clients. This daemon holds
it instead and exposes a narrow protocol over a Unix socket: list the devices, read a device's
clocks and readings, set and reset a locked clock. Nothing else reaches a device. The gateway
drives a GPU through it with `--actuator hwd:socket=PATH,device=N`, and runs unprivileged. The
design follows Zeus's `zeusd`.

- [`protocol`]: one JSON object per line (at most 4 KiB), versioned; a malformed frame closes
  only its own connection.
- [`config`]: the socket and its mode, the uids and gids allowed in (checked by `SO_PEERCRED`),
  and each device with the actuator backend that drives it and the clock range clients may set.
- [`daemon`]: the devices behind `ClockGuard`s, which hold the lock on each, and what each
  request does. One connection holds a device at a time. Its clocks are reset when it resets
  them, disconnects (a killed client included) or is silent past the watchdog. They are also
  reset when the daemon gets SIGTERM or SIGINT, and when it panics (the guard's hook).
- [`server`]: the socket, a thread per connection, rate limits on `set`, the watchdog thread.
- [`client`]: the `hwd` actuator the gateway uses.

`deploy/systemd/energyllm-hwd.service` runs it with only `CAP_SYS_ADMIN`, and docs/hwd.md says
how to run the daemon and the gateway together.
*/
#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod daemon;
pub mod protocol;
pub mod server;

/// Why the daemon could not start or serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is wrong; the message names the file and the setting.
    #[error("config: {0}")]
    Config(String),
    /// A device's actuator could not be opened.
    #[error("device {index}: {source}")]
    Device {
        /// The device index in the config.
        index: u32,
        /// What the backend said.
        source: energyllm_core::ActuatorError,
    },
    /// The socket could not be set up.
    #[error("socket: {0}")]
    Io(String),
}

/// Call from a binary so the linker keeps the `hwd` actuator's registration.
pub fn link() {
    energyllm_hw::link();
}

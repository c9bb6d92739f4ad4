//! The wire protocol: one JSON object per line, at most [`MAX_FRAME`] bytes, each request
//! carrying the protocol version `v`. Every request gets exactly one reply line. A frame that is
//! too long, not JSON, of another version or of an unknown shape gets an error reply, and then
//! the daemon closes that connection (and only that one).
//!
//! ```text
//! → {"v":1,"op":"list"}
//! ← {"ok":true,"devices":[{"device":0,"backend":"nvml","name":"…","min_mhz":900,"max_mhz":1410}]}
//! → {"v":1,"op":"set","device":0,"mhz":1005}
//! ← {"ok":true}
//! → {"v":1,"op":"read","device":0}
//! ← {"ok":true,"reading":{"clock_mhz":1005,"power_w":231.5,"energy_j":10422.1}}
//! ```

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Longest frame, newline included, in bytes.
pub const MAX_FRAME: usize = 4096;

/// What a client may ask. Nothing else reaches a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The devices this daemon serves, with their allowed clock ranges. (Variants without fields
    /// are written `{}` so that unknown fields are refused for them too.)
    List {},
    /// The clocks a device supports within its allowed range, ascending.
    Clocks {
        /// The device index from the daemon's config.
        device: u32,
    },
    /// Lock a device's clock. The client then holds the device until it resets it,
    /// disconnects or goes silent for the watchdog time.
    Set {
        /// The device index.
        device: u32,
        /// The clock, in MHz: one the device supports, inside its allowed range.
        mhz: u32,
    },
    /// Give a held (or free) device back to its default clock management.
    Reset {
        /// The device index.
        device: u32,
    },
    /// The device's clock, power and energy counter.
    Read {
        /// The device index.
        device: u32,
    },
    /// Keep the lease on the devices this client holds (any request does).
    Renew {},
}

/// One device as `list` describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Its index in the daemon's config.
    pub device: u32,
    /// The actuator backend (`nvml`, `amd`, `sim`).
    pub backend: String,
    /// The actuator's own name for it.
    pub name: String,
    /// Lowest clock a client may set, in MHz.
    pub min_mhz: u32,
    /// Highest clock a client may set, in MHz.
    pub max_mhz: u32,
}

/// A device's readings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The clock the device reports, in MHz.
    pub clock_mhz: u32,
    /// Board power, in watts.
    pub power_w: f64,
    /// The cumulative energy counter, in joules, where the device has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub energy_j: Option<f64>,
}

/// The answer to one request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not, in words that say what to change.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// For `list`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub devices: Option<Vec<DeviceInfo>>,
    /// For `clocks`, ascending, in MHz.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub clocks_mhz: Option<Vec<u32>>,
    /// For `read`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reading: Option<Reading>,
}

impl Reply {
    /// A bare success.
    pub fn ok() -> Self {
        Reply { ok: true, ..Reply::default() }
    }
    /// A refusal with its reason.
    pub fn error(why: impl Into<String>) -> Self {
        Reply { ok: false, error: Some(why.into()), ..Reply::default() }
    }
}

/// Why a frame could not be read as a request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Longer than [`MAX_FRAME`] without a newline.
    #[error("frame longer than {MAX_FRAME} bytes")]
    TooLong,
    /// Not UTF-8 JSON, or not an object of a known request.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Another protocol version.
    #[error("protocol version {0} is not spoken here (this daemon speaks {VERSION})")]
    Version(u64),
}

/// Reads one frame's bytes (without the newline) into `buf`; `Ok(false)` at the end of the
/// stream. Reads at most [`MAX_FRAME`] bytes, so a peer cannot make it allocate more.
pub fn read_frame(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Result<bool, FrameError>> {
    buf.clear();
    let n = std::io::Read::take(&mut *reader, MAX_FRAME as u64).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Ok(false));
    }
    if buf.last() != Some(&b'\n') {
        // No newline within the limit (or the stream ended mid-frame).
        return Ok(if n >= MAX_FRAME { Err(FrameError::TooLong) } else { Ok(false) });
    }
    buf.pop();
    Ok(Ok(true))
}

/// Parses a frame: a JSON object with `"v": VERSION` and a request.
pub fn parse_request(frame: &[u8]) -> Result<Request, FrameError> {
    let mut v: serde_json::Value =
        serde_json::from_slice(frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let obj = v.as_object_mut().ok_or_else(|| FrameError::Malformed("not a JSON object".into()))?;
    match obj.remove("v").map(|v| v.as_u64()) {
        Some(Some(n)) if n == u64::from(VERSION) => {}
        Some(Some(n)) => return Err(FrameError::Version(n)),
        _ => return Err(FrameError::Malformed(format!("no protocol version; send \"v\":{VERSION}"))),
    }
    serde_json::from_value(v).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Writes a request as one frame.
pub fn write_request(w: &mut impl Write, req: &Request) -> std::io::Result<()> {
    let mut v = serde_json::to_value(req).map_err(std::io::Error::other)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("v".into(), VERSION.into());
    }
    let mut line = serde_json::to_vec(&v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

/// Writes a reply as one frame.
pub fn write_reply(w: &mut impl Write, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_frames_say_why() {
        let mut wire = Vec::new();
        write_request(&mut wire, &Request::Set { device: 0, mhz: 1005 }).unwrap();
        assert_eq!(String::from_utf8_lossy(&wire), "{\"op\":\"set\",\"device\":0,\"mhz\":1005,\"v\":1}\n");
        let mut r = std::io::BufReader::new(&wire[..]);
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Ok(true));
        assert_eq!(parse_request(&buf), Ok(Request::Set { device: 0, mhz: 1005 }));
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Ok(false));

        assert_eq!(parse_request(br#"{"v":2,"op":"list"}"#), Err(FrameError::Version(2)));
        for bad in [
            &br#"{"op":"list"}"#[..],
            br#"[1]"#,
            br#"{"v":1,"op":"format"}"#,
            br#"{"v":1,"op":"set","device":0}"#,
            br#"{"v":1,"op":"list","x":1}"#,
            b"\xff",
        ] {
            assert!(
                matches!(parse_request(bad), Err(FrameError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = vec![b'x'; MAX_FRAME + 10];
        let mut r = std::io::BufReader::new(&long[..]);
        assert_eq!(read_frame(&mut r, &mut buf).unwrap(), Err(FrameError::TooLong));
    }
}

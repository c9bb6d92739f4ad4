//! A fake NVML device in virtual time, for the tests: clocks, power and an energy counter that
//! advances with the virtual clock (or is absent), and refusals on demand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvml_wrapper::error::NvmlError;

use super::counter::CheckClock;
use super::library::NvmlDevice;
use super::NvmlGpu;

/// Virtual time shared by the fake device and the fake clock.
#[derive(Clone, Default)]
pub(super) struct VirtualTime(pub(super) Arc<Mutex<f64>>);
impl CheckClock for VirtualTime {
    fn now_s(&mut self) -> f64 {
        *self.0.lock().unwrap()
    }
    fn sleep(&mut self, d: Duration) {
        *self.0.lock().unwrap() += d.as_secs_f64();
    }
}

/// A fake GPU: see the module docs.
pub(super) struct FakeGpu {
    time: VirtualTime,
    clocks: Vec<u32>,
    clock: u32,
    power_w: f64,
    /// Counter joules per joule drawn; `None` for no counter.
    pub(super) counter_scale: Option<f64>,
    pub(super) lock_error: Option<fn() -> NvmlError>,
    pub(super) calls: Arc<Mutex<Vec<String>>>,
}
impl FakeGpu {
    /// An A100-like GPU at 1410 MHz drawing 60 W, with a counter that agrees.
    pub(super) fn new(time: &VirtualTime) -> Self {
        FakeGpu {
            time: time.clone(),
            clocks: vec![1410, 210, 1395, 225],
            clock: 1410,
            power_w: 60.0,
            counter_scale: Some(1.0),
            lock_error: None,
            calls: Arc::default(),
        }
    }
}
impl NvmlDevice for FakeGpu {
    fn supported_graphics_clocks_mhz(&self) -> Result<Vec<u32>, NvmlError> {
        Ok(self.clocks.clone())
    }
    fn graphics_clock_mhz(&self) -> Result<u32, NvmlError> {
        Ok(self.clock)
    }
    fn lock_clocks(&mut self, mhz: u32) -> Result<(), NvmlError> {
        if let Some(e) = self.lock_error {
            return Err(e());
        }
        self.calls.lock().unwrap().push(format!("lock {mhz}"));
        self.clock = mhz;
        Ok(())
    }
    fn reset_clocks(&mut self) -> Result<(), NvmlError> {
        self.calls.lock().unwrap().push("reset".into());
        self.clock = 1410;
        Ok(())
    }
    fn power_mw(&self) -> Result<u32, NvmlError> {
        Ok((self.power_w * 1e3) as u32)
    }
    fn energy_mj(&self) -> Result<u64, NvmlError> {
        let scale = self.counter_scale.ok_or(NvmlError::NotSupported)?;
        let t = *self.time.0.lock().unwrap();
        Ok((1e6 + scale * self.power_w * t * 1e3) as u64)
    }
}

/// The actuator over `fake`, its counter checked over one virtual second.
pub(super) fn open(fake: FakeGpu, time: &mut VirtualTime) -> NvmlGpu {
    NvmlGpu::from_device(Box::new(fake), "GPU 0 (fake)".into(), Duration::from_secs(1), 0.25, time).unwrap()
}

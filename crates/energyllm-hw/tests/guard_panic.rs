//! The clock guard restores default clocks when a thread panics. A file of its own: the panic
//! hook is process-wide, so these phases run in one test, in order, in their own process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use energyllm_core::{FrequencyActuator, Mhz};
use energyllm_hw::{ClockGuard, GpuSpec, GuardConfig, RestoreReason, SharedSimGpu, SimGpu};

fn sim() -> SharedSimGpu {
    SharedSimGpu::new(SimGpu::new(GpuSpec::builtin("a100-40gb").unwrap()))
}

fn on_panic_only() -> GuardConfig {
    GuardConfig { watchdog_s: 0.0, restore_on_signal: false, restore_on_panic: true }
}

#[test]
fn panics_anywhere_restore_the_clocks() {
    // Keep the expected panics quiet; the guard's hook chains to this one.
    std::panic::set_hook(Box::new(|_| {}));
    let default = sim().lock().freq();

    // A panic in another thread restores a guard this thread holds.
    let gpu = sim();
    let mut guard = ClockGuard::new(gpu.clone(), &on_panic_only()).unwrap();
    guard.set_frequency(Mhz(810)).unwrap();
    let deaf_gpu = sim();
    let mut deaf = ClockGuard::new(deaf_gpu.clone(), &GuardConfig::drop_only()).unwrap();
    deaf.set_frequency(Mhz(810)).unwrap();
    assert!(std::thread::spawn(|| panic!("worker failed")).join().is_err());
    assert_eq!(gpu.lock().freq(), default);
    assert_eq!(guard.last_restore(), Some(RestoreReason::Panic));
    // A guard that does not watch for panics is left to its owner.
    assert_eq!(deaf_gpu.lock().freq(), Mhz(810));
    // The controller goes on and locks again.
    guard.set_frequency(Mhz(900)).unwrap();
    assert_eq!(gpu.lock().freq(), Mhz(900));
    drop(deaf);
    assert_eq!(deaf_gpu.lock().freq(), default);

    // A guard owned by the panicking thread: the hook restores, unwinding drops it cleanly.
    let gpu2 = sim();
    let g2 = gpu2.clone();
    let joined = std::thread::spawn(move || {
        let mut guard = ClockGuard::new(g2, &on_panic_only()).unwrap();
        guard.set_frequency(Mhz(1005)).unwrap();
        panic!("controller failed");
    })
    .join();
    assert!(joined.is_err());
    assert_eq!(gpu2.lock().freq(), default);

    // Same with the hook off: the drop during unwinding restores.
    let gpu3 = sim();
    let g3 = gpu3.clone();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut guard = ClockGuard::new(g3, &GuardConfig::drop_only()).unwrap();
        guard.set_frequency(Mhz(1005)).unwrap();
        panic!("controller failed");
    }));
    assert!(caught.is_err());
    assert_eq!(gpu3.lock().freq(), default);
    drop(guard);
    let _ = std::panic::take_hook();
}

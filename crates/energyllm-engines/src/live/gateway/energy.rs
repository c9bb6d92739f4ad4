//! The energy book: the total measured energy, and each in-flight request's share of it.

use std::collections::HashMap;

use tokio::time::Instant;

use energyllm_core::RequestId;

use super::control::Tracked;
use super::GatewayMetrics;

/// Where the energy bookkeeping stands.
pub(super) struct EnergyBook {
    pub(super) last_t: Instant,
    pub(super) last_counter_j: f64,
}

/// Books the energy since the last step: the total from the device's counter when it has one
/// (else power × time), and each in-flight request an even share of power × time. Power is
/// sampled every 100 ms and the counter may move in coarser steps, so attribution integrates the
/// latest power reading over exact event times rather than splitting counter jumps.
pub(super) fn account_energy(
    book: &mut EnergyBook,
    now: Instant,
    in_flight: &HashMap<RequestId, Tracked>,
    readings: &crate::live::actuate::Readings,
    metrics: &GatewayMetrics,
) {
    let dt = now.saturating_duration_since(book.last_t).as_secs_f64();
    book.last_t = now;
    let power = readings.power_w.get();
    let de = if power.is_finite() && power > 0.0 { power * dt } else { 0.0 };
    let counter = readings.energy_j.get();
    if counter.is_finite() && book.last_counter_j.is_finite() {
        metrics.energy_total_j.add((counter - book.last_counter_j).max(0.0));
    } else {
        metrics.energy_total_j.add(de);
    }
    book.last_counter_j = counter;
    if !in_flight.is_empty() {
        let share = de / in_flight.len() as f64;
        for t in in_flight.values() {
            t.energy.add(share);
        }
    }
}

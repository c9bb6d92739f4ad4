//! Run-level results in the EnergyLLM paper's columns, and the rest a reader needs.

use serde::{Deserialize, Serialize};

use crate::{RequestRecord, RequestStatus, Slo};

/// Totals a driver measures over a run, beside the per-request records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTotals {
    /// GPU energy while serving: power integrated over busy time (iterations and clock-switch
    /// stalls), in joules. The EnergyLLM paper's energy.
    pub busy_energy_j: f64,
    /// Board energy over the whole run, idle gaps included, in joules.
    pub total_energy_j: f64,
    /// Run length in seconds, from the start to the last completion or the end of arrivals,
    /// whichever is later.
    pub elapsed_s: f64,
    /// Clock changes applied.
    pub freq_switches: u64,
    /// Seconds the GPU spent stalled by clock changes.
    pub stall_s: f64,
    /// Energy drawn during those stalls, in joules: the part of `busy_energy_j` that no request
    /// is charged for (requests' energy + stall energy = busy energy).
    #[serde(default)]
    pub stall_energy_j: f64,
    /// Decision epochs (times the policy was asked).
    #[serde(default)]
    pub decisions: u64,
    /// Decisions the policy's safety shield overrode.
    #[serde(default)]
    pub shield_overrides: u64,
}

impl RunTotals {
    /// Adds another run's totals (for pooling runs).
    pub fn add(&mut self, other: &RunTotals) {
        self.busy_energy_j += other.busy_energy_j;
        self.total_energy_j += other.total_energy_j;
        self.elapsed_s += other.elapsed_s;
        self.freq_switches += other.freq_switches;
        self.stall_s += other.stall_s;
        self.stall_energy_j += other.stall_energy_j;
        self.decisions += other.decisions;
        self.shield_overrides += other.shield_overrides;
    }
}

/// One method's results over one run, or pooled over several.
///
/// The first columns after `method` are the EnergyLLM paper's table, in its order. Energy is
/// reported both ways: `energy_per_request_j` is the paper's (busy GPU energy / requests
/// served); `total_energy_per_request_j` includes idle power.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Policy name as given on the command line.
    pub method: String,
    /// SLO attainment in percent divided by energy per request in joules, × 100.
    pub efficiency: f64,
    /// Percent of requests that met the SLO (rejected requests count as misses).
    pub slo_attainment_pct: f64,
    /// Busy GPU energy per completed request, in joules (the paper's definition).
    pub energy_per_request_j: f64,
    /// Mean end-to-end latency of completed requests, in seconds.
    pub mean_latency_s: f64,
    /// 99th-percentile end-to-end latency, in seconds.
    pub p99_latency_s: f64,
    /// Completed requests per second of run time.
    pub throughput_rps: f64,
    /// Board energy (idle included) per completed request, in joules.
    pub total_energy_per_request_j: f64,
    /// Busy GPU energy over the run(s), in joules.
    pub busy_energy_j: f64,
    /// Board energy over the run(s), idle included, in joules.
    pub total_energy_j: f64,
    /// Busy GPU energy per generated token, in joules.
    pub energy_per_output_token_j: f64,
    /// Median end-to-end latency, in seconds.
    pub p50_latency_s: f64,
    /// 90th-percentile end-to-end latency, in seconds.
    pub p90_latency_s: f64,
    /// Mean time to first token, in seconds.
    pub mean_ttft_s: f64,
    /// 99th-percentile time to first token, in seconds.
    pub p99_ttft_s: f64,
    /// Mean time per output token, in seconds.
    pub mean_tpot_s: f64,
    /// 99th-percentile time per output token, in seconds.
    pub p99_tpot_s: f64,
    /// Mean time queued in front of the engine, in seconds.
    pub mean_queue_s: f64,
    /// Generated tokens per second of run time.
    pub output_tokens_per_s: f64,
    /// Requests that arrived.
    pub requests: u64,
    /// Requests completed.
    pub completed: u64,
    /// Requests the engine refused.
    pub rejected: u64,
    /// Runs pooled into this summary.
    pub runs: u32,
    /// Run time in seconds, summed over runs.
    pub elapsed_s: f64,
    /// Clock changes applied, summed over runs.
    pub freq_switches: u64,
    /// Seconds stalled by clock changes, summed over runs.
    pub stall_s: f64,
    /// Total board energy over run time, in watts.
    pub mean_power_w: f64,
    /// Decision epochs, summed over runs.
    #[serde(default)]
    pub decisions: u64,
    /// Decisions the safety shield overrode (raised the policy's clock), summed over runs.
    #[serde(default)]
    pub shield_overrides: u64,
}

impl RunSummary {
    /// Summarises one or more runs' records against `slo`.
    pub fn compute(
        method: &str,
        slo: &Slo,
        records: &[RequestRecord],
        totals: &RunTotals,
        runs: u32,
    ) -> Self {
        let completed: Vec<&RequestRecord> =
            records.iter().filter(|r| r.status == RequestStatus::Completed).collect();
        let n_done = completed.len() as u64;
        let met = records.iter().filter(|r| r.meets(slo)).count();
        let slo_attainment_pct = pct(met as f64, records.len() as f64);
        let per_done = |x: f64| if n_done == 0 { 0.0 } else { x / n_done as f64 };
        let energy_per_request_j = per_done(totals.busy_energy_j);
        let output_tokens: u64 = completed.iter().map(|r| u64::from(r.output_tokens)).sum();
        let per_s = |x: f64| if totals.elapsed_s > 0.0 { x / totals.elapsed_s } else { 0.0 };

        let latencies = sorted(completed.iter().map(|r| r.e2e_latency_s()));
        let ttfts = sorted(completed.iter().map(|r| r.ttft_s()));
        let tpots = sorted(completed.iter().filter_map(|r| r.tpot_s()));
        let queues = sorted(completed.iter().map(|r| r.queue_s()));

        RunSummary {
            method: method.to_owned(),
            efficiency: if energy_per_request_j > 0.0 {
                slo_attainment_pct / energy_per_request_j * 100.0
            } else {
                0.0
            },
            slo_attainment_pct,
            energy_per_request_j,
            mean_latency_s: mean(&latencies),
            p99_latency_s: percentile(&latencies, 99.0),
            throughput_rps: per_s(n_done as f64),
            total_energy_per_request_j: per_done(totals.total_energy_j),
            busy_energy_j: totals.busy_energy_j,
            total_energy_j: totals.total_energy_j,
            energy_per_output_token_j: if output_tokens == 0 {
                0.0
            } else {
                totals.busy_energy_j / output_tokens as f64
            },
            p50_latency_s: percentile(&latencies, 50.0),
            p90_latency_s: percentile(&latencies, 90.0),
            mean_ttft_s: mean(&ttfts),
            p99_ttft_s: percentile(&ttfts, 99.0),
            mean_tpot_s: mean(&tpots),
            p99_tpot_s: percentile(&tpots, 99.0),
            mean_queue_s: mean(&queues),
            output_tokens_per_s: per_s(output_tokens as f64),
            requests: records.len() as u64,
            completed: n_done,
            rejected: records.len() as u64 - n_done,
            runs,
            elapsed_s: totals.elapsed_s,
            freq_switches: totals.freq_switches,
            stall_s: totals.stall_s,
            mean_power_w: per_s(totals.total_energy_j),
            decisions: totals.decisions,
            shield_overrides: totals.shield_overrides,
        }
    }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Arithmetic mean; 0 for an empty slice.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Percentile `p` (0–100) of ascending `sorted` values by linear interpolation between closest
/// ranks (numpy's default); 0 for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let rank = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestId;

    fn record(id: u64, arrival_s: f64, completion_s: f64, output_tokens: u32) -> RequestRecord {
        RequestRecord {
            id: RequestId(id),
            status: RequestStatus::Completed,
            arrival_s,
            dispatch_s: arrival_s,
            first_token_s: arrival_s + 0.5,
            completion_s,
            input_tokens: 10,
            output_tokens,
            energy_j: 1.0,
            preemptions: 0,
        }
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 99.0) - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn paper_columns_follow_their_definitions() {
        let mut rejected = record(3, 0.0, 1.0, 0);
        rejected.status = RequestStatus::Rejected;
        let records = vec![record(1, 0.0, 4.0, 11), record(2, 1.0, 13.0, 11), rejected];
        let totals = RunTotals {
            busy_energy_j: 200.0,
            total_energy_j: 500.0,
            elapsed_s: 20.0,
            freq_switches: 2,
            stall_s: 0.1,
            stall_energy_j: 6.0,
            decisions: 40,
            shield_overrides: 3,
        };
        let s = RunSummary::compute("m", &Slo::e2e(11.0), &records, &totals, 1);
        assert_eq!((s.decisions, s.shield_overrides), (40, 3));
        assert_eq!(s.completed, 2);
        assert_eq!(s.rejected, 1);
        assert!((s.slo_attainment_pct - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.energy_per_request_j, 100.0);
        assert_eq!(s.total_energy_per_request_j, 250.0);
        assert!((s.efficiency - s.slo_attainment_pct / 100.0 * 100.0).abs() < 1e-9);
        assert_eq!(s.mean_latency_s, 8.0);
        assert_eq!(s.throughput_rps, 0.1);
        assert_eq!(s.mean_tpot_s, (3.5 / 10.0 + 11.5 / 10.0) / 2.0);
        assert_eq!(s.energy_per_output_token_j, 200.0 / 22.0);
        assert_eq!(s.mean_power_w, 25.0);
    }
}

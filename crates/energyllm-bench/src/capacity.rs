//! Capacity: the highest request rate at which `vllm-default` (top clock, the engine's default
//! batch cap) still meets the SLO target on a workload, so that load can be stated as a share of
//! it.
//!
//! The search probes constant loads of the evaluation's own workload — the same seeded base
//! stream time-compressed to each rate, so probes differ only in rate (common random numbers) —
//! doubling or halving until the target is passed on one side and missed on the other, then
//! bisecting until the bracket is within `rel_tolerance`. The result is the highest rate probed
//! that met the target. Searches are deterministic; [`CapacityCache`] keeps them on disk keyed
//! by everything that can change the answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use energyllm_core::registry::PluginSpec;
use energyllm_workload::LoadProfile;

use crate::eval::{evaluate, EvalSettings, Load};
use crate::Error;

/// How to search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CapacitySearch {
    /// SLO attainment `vllm-default` must reach, in percent (default 99).
    pub target_pct: f64,
    /// Stop when the bracket is this narrow relative to its lower end (default 0.02).
    pub rel_tolerance: f64,
    /// Give up above this rate, in requests per second (default 10 000).
    pub max_rps: f64,
}

impl Default for CapacitySearch {
    fn default() -> Self {
        CapacitySearch { target_pct: 99.0, rel_tolerance: 0.02, max_rps: 10_000.0 }
    }
}

/// What the search found.
#[derive(Clone, Debug, PartialEq)]
pub struct Capacity {
    /// The capacity, in requests per second.
    pub rps: f64,
    /// Every probe: (rate in requests/s, pooled SLO attainment in percent), in the order run.
    pub probes: Vec<(f64, f64)>,
}

/// The SLO attainment of `vllm-default` at a constant `rate_rps` of the settings' workload.
pub(crate) fn attainment_at(settings: &EvalSettings, rate_rps: f64) -> Result<f64, Error> {
    let mut probe = settings.clone();
    probe.policies = vec![PluginSpec::parse("vllm-default")?];
    probe.load = Some(Load { profile: LoadProfile::Constant { load: 1.0 }, capacity_rps: rate_rps });
    let results = evaluate(&probe, |_| {})?;
    Ok(results.first().map_or(0.0, |r| r.summary.slo_attainment_pct))
}

/// Searches the capacity of the settings' GPU × model × workload × SLO. `on_probe` hears each
/// probe's rate and attainment, for progress reporting.
pub fn capacity(
    settings: &EvalSettings,
    search: &CapacitySearch,
    mut on_probe: impl FnMut(f64, f64),
) -> Result<Capacity, Error> {
    if !(search.rel_tolerance > 0.0 && search.rel_tolerance.is_finite()) {
        return Err(Error::Setting(format!(
            "capacity: the bisection tolerance must be a positive fraction, got {}",
            search.rel_tolerance
        )));
    }
    let mut probes = Vec::new();
    let mut probe = |rate: f64| -> Result<bool, Error> {
        let a = attainment_at(settings, rate)?;
        probes.push((rate, a));
        on_probe(rate, a);
        Ok(a >= search.target_pct)
    };
    // Bracket: double while the target is met, halve while it is missed.
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    let mut rate = 1.0;
    while hi.is_infinite() || lo == 0.0 {
        if probe(rate)? {
            lo = rate;
            if hi.is_infinite() && rate * 2.0 > search.max_rps {
                return Err(Error::Setting(format!(
                    "capacity: vllm-default still meets {}% at {rate} req/s, the last rate below the {} req/s \
                     limit; is the SLO too loose?",
                    search.target_pct, search.max_rps
                )));
            }
            rate *= 2.0;
        } else {
            hi = rate;
            if lo == 0.0 && rate / 2.0 < 1e-3 {
                return Err(Error::Setting(format!(
                    "capacity: vllm-default misses {}% even at {rate:.4} req/s; is the SLO reachable on this GPU \
                     and model at all?",
                    search.target_pct
                )));
            }
            rate /= 2.0;
        }
    }
    while (hi - lo) > search.rel_tolerance * lo {
        let mid = (lo + hi) / 2.0;
        if probe(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(Capacity { rps: lo, probes })
}

/// The cache's format: bump it when the simulator or the search changes what a capacity is, so
/// that old entries are not reused.
const CACHE_SCHEMA: &str = "capacity-v1";

/// FNV-1a, 64 bits: a hash that does not change between Rust releases, for cache keys.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The key of a capacity: everything the answer depends on — the build, every setting of the
/// deployment and workload, the search — as a readable prefix and a stable hash of the rest.
pub(crate) fn capacity_key(settings: &EvalSettings, search: &CapacitySearch) -> String {
    let all = format!(
        "{CACHE_SCHEMA}|{}|{:?}|{:?}|{:?}|{}|{}|{}|{:?}",
        env!("CARGO_PKG_VERSION"),
        settings.setup,
        settings.dataset,
        settings.workload,
        settings.duration_s,
        settings.runs,
        settings.seed,
        search
    );
    format!(
        "{} {} {} {}% {:016x}",
        settings.setup.gpu.name,
        settings.setup.model.name,
        settings.workload_name(),
        search.target_pct,
        fnv1a(&all)
    )
}

/// Capacities found earlier, kept in a JSON file (or only in memory without one).
#[derive(Clone, Debug, Default)]
pub struct CapacityCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, f64>,
}

impl CapacityCache {
    /// A cache in memory only.
    pub fn in_memory() -> Self {
        CapacityCache::default()
    }

    /// The cache in `path`, empty if the file does not exist yet; a corrupt file is an error that
    /// names it (delete it to start over).
    pub fn open(path: &Path) -> Result<Self, Error> {
        let entries = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Data {
                name: path.display().to_string(),
                reason: format!("not a capacity cache ({e}); delete it to search again"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(Error::Io { path: path.to_owned(), source }),
        };
        Ok(CapacityCache { path: Some(path.to_owned()), entries })
    }

    /// The capacity for `settings`, searched (and saved) unless cached. Returns it with whether
    /// it came from the cache.
    pub fn capacity(
        &mut self,
        settings: &EvalSettings,
        search: &CapacitySearch,
        on_probe: impl FnMut(f64, f64),
    ) -> Result<(f64, bool), Error> {
        let key = capacity_key(settings, search);
        if let Some(&rps) = self.entries.get(&key) {
            return Ok((rps, true));
        }
        let found = capacity(settings, search, on_probe)?;
        self.entries.insert(key, found.rps);
        if let Some(path) = &self.path {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
            }
            let text = serde_json::to_string_pretty(&self.entries)
                .map_err(|e| Error::Report { what: path.display().to_string(), reason: e.to_string() })?;
            std::fs::write(path, text).map_err(|source| Error::Io { path: path.clone(), source })?;
        }
        Ok((found.rps, false))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use energyllm_core::Slo;
    use energyllm_sim::SimSetup;
    use energyllm_workload::LengthDataset;

    use super::*;
    use crate::eval::WorkloadSource;

    fn settings(tpot_s: f64) -> EvalSettings {
        energyllm_policy::link();
        let mut setup = SimSetup::builtin("a100-40gb", "llama-3.1-8b").unwrap();
        setup.controller.slo = Slo { e2e_s: None, ttft_s: Some(2.0), tpot_s: Some(tpot_s) };
        EvalSettings {
            policies: Vec::new(),
            setup,
            dataset: LengthDataset::sharegpt_like(),
            arrival_rate_rps: 1.0,
            duration_s: 60.0,
            workload: WorkloadSource::default(),
            runs: 2,
            seed: 3,
            load: None,
            perf_model: None,
        }
    }

    #[test]
    fn capacity_is_reproducible_monotone_in_the_slo_and_brackets_the_target() {
        let search = CapacitySearch { rel_tolerance: 0.05, ..CapacitySearch::default() };
        let tight = capacity(&settings(0.05), &search, |_, _| {}).unwrap();
        let again = capacity(&settings(0.05), &search, |_, _| {}).unwrap();
        assert_eq!(tight, again, "the same settings give the same search");
        let loose = capacity(&settings(0.2), &search, |_, _| {}).unwrap();
        assert!(loose.rps >= tight.rps, "a looser SLO never lowers capacity: {} vs {}", loose.rps, tight.rps);
        // The answer passed, and a probe above it (within the tolerance) failed.
        let s = settings(0.05);
        assert!(attainment_at(&s, tight.rps).unwrap() >= 99.0);
        let failed_above = tight
            .probes
            .iter()
            .filter(|p| p.1 < 99.0 && p.0 > tight.rps)
            .map(|p| p.0)
            .fold(f64::INFINITY, f64::min);
        assert!(failed_above <= tight.rps * 1.05 + 1e-9, "{failed_above} vs {}", tight.rps);
    }

    #[test]
    fn the_cache_answers_without_searching_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capacity.json");
        let s = settings(0.1);
        let search = CapacitySearch { rel_tolerance: 0.1, ..CapacitySearch::default() };
        let mut cache = CapacityCache::open(&path).unwrap();
        let (rps, cached) = cache.capacity(&s, &search, |_, _| {}).unwrap();
        assert!(!cached && rps > 0.0);
        let mut reopened = CapacityCache::open(&path).unwrap();
        let mut probes = 0;
        assert_eq!(reopened.capacity(&s, &search, |_, _| probes += 1).unwrap(), (rps, true));
        assert_eq!(probes, 0);
        std::fs::write(&path, "{not json").unwrap();
        let e = CapacityCache::open(&path).unwrap_err().to_string();
        assert!(e.contains("capacity.json") && e.contains("delete it"), "{e}");
    }
}

//! What a policy decides: a clock and a batch cap.

use serde::{Deserialize, Serialize};

use crate::{Error, Mhz};

/// One decision: lock the SM clock at `freq` and let at most `batch` requests run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Action {
    /// SM clock to lock.
    pub freq: Mhz,
    /// Batch cap: requests the engine may run concurrently.
    pub batch: u32,
}

/// The clocks and batch caps a policy may choose from.
///
/// Both lists are sorted ascending and free of duplicates. The default is the EnergyLLM paper's
/// 15 A100 clocks × 7 batch sizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionSpace {
    freqs: Vec<Mhz>,
    batches: Vec<u32>,
}

/// The EnergyLLM paper's A100 clock set in MHz.
pub const PAPER_FREQS_MHZ: [u32; 15] =
    [705, 810, 900, 960, 1005, 1050, 1110, 1155, 1200, 1245, 1290, 1320, 1350, 1380, 1410];
/// The EnergyLLM paper's batch sizes.
pub const PAPER_BATCHES: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];

impl ActionSpace {
    /// Builds a space; sorts and deduplicates, rejects empty lists and a zero batch.
    pub fn new(mut freqs: Vec<Mhz>, mut batches: Vec<u32>) -> Result<Self, Error> {
        freqs.sort_unstable();
        freqs.dedup();
        batches.sort_unstable();
        batches.dedup();
        if freqs.is_empty() {
            return Err(Error::Config("the action space needs at least one clock".into()));
        }
        if batches.is_empty() || batches[0] == 0 {
            return Err(Error::Config(
                "the action space needs at least one batch size, all of them ≥ 1".into(),
            ));
        }
        Ok(ActionSpace { freqs, batches })
    }

    /// The EnergyLLM paper's 15 × 7 space.
    pub fn paper() -> Self {
        ActionSpace {
            freqs: PAPER_FREQS_MHZ.iter().map(|&f| Mhz(f)).collect(),
            batches: PAPER_BATCHES.to_vec(),
        }
    }

    /// Selectable clocks, ascending.
    pub fn freqs(&self) -> &[Mhz] {
        &self.freqs
    }

    /// Selectable batch caps, ascending.
    pub fn batches(&self) -> &[u32] {
        &self.batches
    }

    /// The highest clock.
    pub fn max_freq(&self) -> Mhz {
        self.freqs[self.freqs.len() - 1]
    }

    /// The lowest clock.
    pub fn min_freq(&self) -> Mhz {
        self.freqs[0]
    }

    /// Number of discrete actions (clocks × batch caps).
    pub fn len(&self) -> usize {
        self.freqs.len() * self.batches.len()
    }

    /// Always false: a space has at least one action.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The index of the supported clock closest to `freq` (ties go to the higher clock, which
    /// errs on the side of the SLO).
    pub fn nearest_freq_index(&self, freq: Mhz) -> usize {
        let i = self.freqs.partition_point(|&f| f < freq);
        if i == self.freqs.len() {
            return i - 1;
        }
        if i == 0 {
            return 0;
        }
        let below = freq.0 - self.freqs[i - 1].0;
        let above = self.freqs[i].0 - freq.0;
        if below < above {
            i - 1
        } else {
            i
        }
    }

    /// The supported clock closest to `freq`.
    pub fn nearest_freq(&self, freq: Mhz) -> Mhz {
        self.freqs[self.nearest_freq_index(freq)]
    }

    /// Snaps an action onto the space: nearest clock, batch clamped into the supported range.
    pub fn clamp(&self, action: Action) -> Action {
        let batch = action.batch.clamp(self.batches[0], self.batches[self.batches.len() - 1]);
        Action { freq: self.nearest_freq(action.freq), batch }
    }

    /// The action with flat index `i` (clock-major), as a discrete policy numbers them.
    pub fn action(&self, i: usize) -> Option<Action> {
        let (fi, bi) = (i / self.batches.len(), i % self.batches.len());
        Some(Action { freq: *self.freqs.get(fi)?, batch: *self.batches.get(bi)? })
    }
}

impl Default for ActionSpace {
    fn default() -> Self {
        ActionSpace::paper()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_clock_prefers_higher_on_ties() {
        let s = ActionSpace::new(vec![Mhz(1000), Mhz(800), Mhz(1200)], vec![4, 1]).unwrap();
        assert_eq!(s.freqs(), &[Mhz(800), Mhz(1000), Mhz(1200)]);
        assert_eq!(s.nearest_freq(Mhz(900)), Mhz(1000));
        assert_eq!(s.nearest_freq(Mhz(10)), Mhz(800));
        assert_eq!(s.nearest_freq(Mhz(5000)), Mhz(1200));
        assert_eq!(s.clamp(Action { freq: Mhz(850), batch: 64 }), Action { freq: Mhz(800), batch: 4 });
        assert_eq!(s.action(5), Some(Action { freq: Mhz(1200), batch: 4 }));
        assert_eq!(s.action(6), None);
    }

    #[test]
    fn rejects_empty_and_zero_batch() {
        assert!(ActionSpace::new(vec![], vec![1]).is_err());
        assert!(ActionSpace::new(vec![Mhz(1)], vec![0, 1]).is_err());
        assert_eq!(ActionSpace::paper().len(), 105);
    }
}

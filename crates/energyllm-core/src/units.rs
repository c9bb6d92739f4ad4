//! Units that need their own type because mixing them up is easy.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A GPU core (SM) clock frequency in MHz.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Mhz(pub u32);

impl Mhz {
    /// The value in MHz.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The value in GHz, for formulas that want a float.
    pub fn as_ghz(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

impl fmt::Display for Mhz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MHz", self.0)
    }
}

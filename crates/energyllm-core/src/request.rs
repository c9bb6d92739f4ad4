//! Requests as they enter the system.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A request's identity, unique within one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// One inference request.
///
/// `output_tokens` is how many tokens the request will generate: the true length in the
/// simulator, `max_tokens` in live serving. Policies never read it directly (only the
/// clairvoyant reference may): the controller gives them an estimate through the
/// [`Observation`](crate::Observation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Identity within the run.
    pub id: RequestId,
    /// When the request arrived.
    pub arrival: Timestamp,
    /// Prompt length in tokens.
    pub input_tokens: u32,
    /// Tokens to generate.
    pub output_tokens: u32,
}

impl Request {
    /// Prompt plus generated tokens: the KV-cache footprint when it completes.
    pub fn total_tokens(&self) -> u64 {
        u64::from(self.input_tokens) + u64::from(self.output_tokens)
    }
}

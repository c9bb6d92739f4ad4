/*!
The endpoint picker: energyllm's answer to "which GPU instance takes this request?" inside an
inference gateway that already exists.

One energyllm gateway runs per GPU instance and keeps the clock and the batch cap local; it
exports `energyllm_endpoint_score`, how good a place it is for the next request, computed by
[`energyllm_core::score::endpoint_score`] from its performance model, load, clock and SLO. This
crate is the cluster's side of that signal for Envoy and the Gateway API Inference Extension:
an Envoy external processor (`envoy.service.ext_proc.v3.ExternalProcessor`, streaming) that
speaks the extension's endpoint-picker protocol (its proposal 004).

- [`pool`]: the endpoints, from a TOML file or flags: listed `ip:port` addresses, and DNS
  names (a Kubernetes headless Service) whose addresses are followed as pods come and go. There
  is no `InferencePool` watcher yet.
- [`pick`]: the choice, sans IO. Endpoints whose page is fresh, whose reads succeed and whose
  gateway is ready are ranked by [`energyllm_core::score::rank`] of their scores, the function
  the cluster simulator's `energy-slack` router ranks by. One correction is the picker's own,
  for the staleness the simulator does not have: an endpoint whose batch the picker's picks
  since its last page have filled ranks as if it had lost its SLO slack, so a burst between two
  reads spreads out. It answers the first endpoint and fallbacks, 503 when none may take the
  request, or 429 for a sheddable request when even the best endpoint is short of the SLO.
- [`flow`]: one ext_proc stream (one HTTP request) as a state machine: when to pick (on the
  headers, or after a full-duplex body), and the answers: the `x-gateway-destination-endpoint`
  header and the same list under `envoy.lb` in the dynamic metadata, or an immediate response.
- [`board`]: the shared state the readers fill and the flows consult, and its counters.
- [`server`]: tonic's gRPC server with the ext_proc service and gRPC health (`liveness`,
  `readiness`, and the ext_proc service name), the reader tasks, and the `/metrics` page.

**Invariant:** the picker computes no score of its own. Scores come from the gateways, ranking
from `energyllm_core`, so what `energyllm cluster` simulates is what the picker does, up to the
staleness correction above.
*/
#![deny(missing_docs)]

pub mod board;
pub mod flow;
pub mod pick;
pub mod pool;
pub mod server;

pub use board::{Board, Member, Source};
pub use flow::{Flow, Picker, ProtocolError};
pub use pick::{decide, Decision, EndpointState, PickPolicy};
pub use pool::{Endpoint, Pool, PoolError, Service};
pub use server::{start, EppConfig, EppError, EppHandle, ResolveFuture, Resolver, HEALTH_SERVICES};

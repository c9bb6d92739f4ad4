/*!
The simulation: energyllm's controller, a simulated engine and a simulated GPU, driven in virtual
time — one deployment, or a cluster of them behind a router.

This crate is the simulator's counterpart of the live gateway. Both drive the same sans-IO
[`Controller`](energyllm_core::Controller): the gateway feeds it tokio time and real HTTP
completions, this crate feeds it virtual time and the events of
[`SimEngine`](energyllm_engines::SimEngine) and [`SimGpu`](energyllm_hw::SimGpu), jumping from one
event to the next. Because no decision logic lives in a driver, what the simulator shows is what
the gateway does.

- [`simulation`]: [`SimSetup`] (a GPU profile, a model profile, engine and controller settings),
  [`Deployment`](simulation) (one deployment's GPU, engine and controller and the plumbing between
  them), the steppable [`Simulation`] and [`simulate`], which runs one to the end.
- [`router`] and [`cluster`]: online routing over N simulated instances, each with its own
  controller, with optional instance sizing (power gating, wake-up delays, a per-window
  tensor-parallel choice).
- [`serving_env`]: [`ServingEnv`], the training environment PPO learns in — one step per decision
  epoch of an external-decision [`Simulation`].
- [`clairvoyant`]: the non-deployable references — a window-by-window look-ahead search that
  knows the future, and the energy floor.

**Invariant:** this is the only crate that moves simulated time forward. Everything here is
deterministic under a seed; nothing reads a clock, a file or the network (workloads arrive as
[`Request`](energyllm_core::Request) lists from energyllm-workload). Errors are this crate's own
[`Error`].
*/
#![deny(missing_docs)]

pub mod clairvoyant;
pub mod cluster;
mod error;
pub mod router;
pub mod serving_env;
pub mod simulation;

pub use error::Error;
pub use serving_env::ServingEnv;
pub use simulation::{simulate, SimSetup, Simulation};

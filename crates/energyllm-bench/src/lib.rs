/*!
Workloads, the discrete-event runner, experiments, reports and the `energyllm` program.

- [`workload`]: request lengths (the EnergyLLM JSON-lines schema, the bundled samples),
  arrival processes, trace readers and replay, dataset processing with real tokenizers, and
  statistics; [`cli_dataset`]: `energyllm dataset process|stats|list`.
- [`driver`]: the discrete-event driver. It owns virtual time and steps the sans-IO
  [`Controller`](energyllm_core::Controller), the simulated engine and the simulated GPU, the way
  the live gateway drives the same controller with real time.
- [`eval`]: policy comparisons over several seeded runs on identical workloads; [`report`]:
  the paper's table and CSV/JSON outputs.
- [`cli`]: the command-line surface, shared by the `energyllm` binary and `cargo xtask`.
*/
#![deny(missing_docs)]

pub mod calibrate;
pub mod cli;
pub mod cli_dataset;
#[cfg(feature = "live")]
pub mod cli_live;
pub mod cli_models;
pub mod cli_route;
pub mod driver;
pub mod env;
mod error;
pub mod eval;
pub mod observe;
pub mod optimize;
pub mod plots;
pub mod profile;
pub mod reference;
pub mod report;
pub mod routing;
pub mod sweep;
pub mod synthetic;
pub mod train;
pub mod workload;

pub use error::Error;

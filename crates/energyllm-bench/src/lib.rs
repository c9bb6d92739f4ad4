/*!
The experiments: what energyllm measures about policies, and how it reports it.

Every figure in the README, BENCHMARKS.md and `docs/` comes from a function here, run on the
simulation ([energyllm-sim](energyllm_sim)) over workloads ([energyllm-workload](energyllm_workload)):

- [`eval`]: policy comparisons over several seeded runs on identical workloads (mean ± 95% CI),
  with the clairvoyant reference and the energy floor; [`report`]: the tables, the headline and
  the CSV/JSON files with `meta.json`; [`sweep`]: the same across arrival rates and SLOs.
- [`train`]: the PPO training pipeline of `cargo xtask train` (training curve, checkpoints).
- [`calibrate`]: the simulator against the real measurements in `../shared/data`, with
  [`optimize`]'s small Nelder–Mead for the fits; [`paper_observations`]: the EnergyLLM paper's
  three observations reproduced on the simulator.
- [`profiler`]: sweeps any [`Engine`](energyllm_core::Engine) +
  [`FrequencyActuator`](energyllm_core::FrequencyActuator) pair through their traits into
  profiles, so the same code profiles the simulator and a live engine on a real GPU.
- [`wilkins_reproduction`]: Wilkins et al.'s energy model fitted on their published
  measurements, beside the paper's R².
- [`plots`]: every SVG the project writes, in one module; [`html_report`]: every table and plot
  of a results directory in one self-contained `report.html`.

Why it is shaped so: experiments change often and depend on everything below them, so they live
apart from the mechanisms they measure; no argument parsing or terminal output happens here
(that is energyllm-cli's job), so an experiment is a function from settings to results that a
test can call. Errors are this crate's own [`Error`]; long runs report progress through a
callback rather than drawing it.
*/
#![deny(missing_docs)]

pub mod best_static;
pub mod calibrate;
pub mod capacity;
mod error;
pub mod eval;
pub mod html_report;
pub mod optimize;
pub mod paper_observations;
mod parallel;
pub mod planning;
pub mod plots;
pub mod profiler;
pub mod report;
pub mod sweep;
pub mod train;
pub mod wilkins_reproduction;

pub use error::Error;

/*!
The `energyllm` program: argument parsing and presentation over the workspace's libraries.

Each module is one command: its clap arguments, the call into the library that does the work,
and what is printed or written for a person. `cargo xtask` reuses the same argument structs
(`eval`, `sweep`, `train`), so the pipelines and the program cannot drift apart.

| command | module | does the work |
|---|---|---|
| `eval` | [`eval`] | energyllm-bench's `eval` and `report` |
| `eval --table record` | [`record`] | the evaluation of record: [`eval`] over every workload, GPU and load |
| `sweep` (xtask) | [`sweep`] | energyllm-bench's `sweep` |
| `train` (xtask) | [`train`] | energyllm-bench's `train` |
| `list` | [`list`] | energyllm-core's registries |
| `observe` | [`observe`] | energyllm-bench's `paper_observations` |
| `dataset process\|stats\|list` | [`dataset`] | energyllm-workload |
| `profile` | [`profile`] | energyllm-bench's `profiler` |
| `fit wilkins\|gbt` | [`fit`] | energyllm-models |
| `models export-policy\|eval` | [`models`] | energyllm-models, energyllm-policy |
| `route` | [`route`] | energyllm-models' `route` |
| `cluster` | [`cluster`] | energyllm-sim's `cluster` |
| `hw info` | [`hw`] | energyllm-hw's `info` |
| `report` | [`report`] | energyllm-bench's `html_report` |
| `serve`, `loadgen` (feature `live`) | `live` | energyllm-engines' `live` |
| `epp` (feature `epp`) | `epp` | energyllm-epp |

Why it is shaped so: `clap`, `anyhow` and `indicatif` appear in this crate and xtask (and `clap`
in the `energyllm-hwd` binary) and nowhere else, so every library returns its own typed error and
reports progress through a callback; an experiment is then a function a test can call, and this
crate is the only place that decides how a result looks on a terminal. Enums that libraries own
(trace formats, training presets) are parsed with [`args::named_value`] from the names the
library gives them.
*/
#![deny(missing_docs)]

pub mod args;
pub mod cluster;
pub mod dataset;
#[cfg(feature = "epp")]
pub mod epp;
pub mod eval;
pub mod fit;
pub mod hw;
pub mod list;
#[cfg(feature = "live")]
pub mod live;
pub mod models;
pub mod observe;
pub mod output;
pub mod planning;
pub mod profile;
pub mod progress;
pub mod record;
pub mod report;
pub mod route;
pub mod sweep;
pub mod train;

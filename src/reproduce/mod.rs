//! Looking back at results: `status` (what is on disk), `why` (which input of a cell's run key
//! changed since its last run) and `reproduce` (check every input of a past run, train it again,
//! compare the metrics and give a verdict). All of them plan the experiment (`plan`) and open
//! its inputs through the sweep's public entry points, as a sweep would.

mod current;
mod diff;
mod inputs;
mod run;
mod runs;
mod stage;
mod status;
mod why;

pub use current::current_key;
pub use diff::key_differences;
pub use run::{reproduce, Verdict};
pub use runs::{find_runs, locate, FoundRun};
pub use status::status;
pub use why::why;

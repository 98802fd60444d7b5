//! Reports across seeds: what an experiment's cells say, per variant and against a baseline.
pub mod analysis;
pub mod load;
pub mod locate;
pub mod stats;

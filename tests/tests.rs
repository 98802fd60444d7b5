//! Integration tests: one binary, one module per area.

// End-to-end runs of the `runner` binary on tiny generated data (sweep, check, report, compare, errors, Ctrl-C).
mod cli;

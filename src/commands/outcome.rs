//! How a command ended, and the one mapping from that to the process's exit code (also the
//! exit-code list of `runner --help`).

use std::process::ExitCode;

/// How a command ended. [`Outcome::code`] is the exit code; [`Outcome::ALL`] lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// An error before or outside training: bad experiment file, missing data or weights,
    /// unwritable results.
    Error,
    /// Bad command-line usage: clap reports it and exits with this code before a command runs.
    Usage,
    /// The sweep ran but at least one cell of the selected matrix failed or diverged, in this
    /// sweep or an earlier one (a human must act: fix the cause, `--retry-failed`).
    CellsFailed,
    /// `reproduce` found a changed input (nothing trained).
    InputsChanged,
    /// `reproduce` found different metrics.
    MetricsDiffer,
    /// Interrupted by Ctrl-C (finished epochs are kept).
    Interrupted,
    /// The sweep ran but some cells of the selected matrix are not done although none failed:
    /// another sweep holds them, or `--retry-failed` left them out. Apart from `CellsFailed` so
    /// that a script can tell "wait and rerun" (this one) from "a human must look" (3).
    CellsPending,
}

impl Outcome {
    /// Every outcome, in the order of their codes.
    pub const ALL: [Outcome; 8] = [
        Outcome::Success,
        Outcome::Error,
        Outcome::Usage,
        Outcome::CellsFailed,
        Outcome::InputsChanged,
        Outcome::MetricsDiffer,
        Outcome::CellsPending,
        Outcome::Interrupted,
    ];

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Error => 1,
            Outcome::Usage => 2,
            Outcome::CellsFailed => 3,
            Outcome::InputsChanged => 4,
            Outcome::MetricsDiffer => 5,
            Outcome::CellsPending => 6,
            Outcome::Interrupted => 130,
        }
    }

    /// What the code means, in the few words of `runner --help`.
    pub fn meaning(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error (experiment file, data, weights, results)",
            Outcome::Usage => "usage",
            Outcome::CellsFailed => "some cells failed or diverged (now or earlier)",
            Outcome::InputsChanged => "reproduce: an input changed",
            Outcome::MetricsDiffer => "reproduce: metrics differ",
            Outcome::CellsPending => {
                "some cells are not done: held by another sweep or not selected (rerun later)"
            }
            Outcome::Interrupted => "interrupted",
        }
    }

    /// Leave the process at once with this outcome's code.
    pub fn exit_now(self) -> ! {
        std::process::exit(self.code().into())
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(outcome.code())
    }
}

/// The exit-code list of `runner --help`: `Exit codes: 0 success; 1 error (...); ...`.
pub fn exit_codes_help() -> String {
    let codes: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| format!("{} {}", o.code(), o.meaning()))
        .collect();
    format!("Exit codes: {}.", codes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_lists_every_code_once_in_order() {
        let codes: Vec<u8> = Outcome::ALL.iter().map(|o| o.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
        assert!(exit_codes_help().starts_with("Exit codes: 0 success; 1 error"));
    }
}

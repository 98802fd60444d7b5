//! The ground floor: small helpers that every other module may use and that use nothing else of
//! the runner's (atomic writes, hashing, processes and locks, build facts, the CPU, random
//! streams, the memory budget, number formatting, resumable downloads).

pub mod build_info;
pub mod clock;
pub mod cpu;
pub mod download;
pub mod format;
pub mod fs;
pub mod hash;
pub mod lock;
pub mod memory;
pub mod process;
pub mod rng;

//! `runner device`: the device `--device auto` trains on, and with `--check` a comparison
//! against the CPU.

use anyhow::Context;

use crate::config::DeviceChoice;
use crate::model::device;
use crate::train::device_check::{self, CheckShape};

use super::outcome::Outcome;

#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    /// The device to show or check (default: auto).
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: DeviceChoice,
    /// Compare the device against the CPU on the same inputs.
    #[arg(long)]
    pub check: bool,
    /// Image size of the check (VGG16 widths; 150 is the lecture's).
    #[arg(long, value_name = "PIXELS", default_value_t = 150)]
    pub image_size: usize,
    /// Batch size of the check.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub batch: usize,
}

pub fn run(args: DeviceArgs) -> anyhow::Result<Outcome> {
    let choice = args.device;
    let opened = device::open(choice).with_context(|| format!("--device {choice}"))?;
    println!("device: {}", opened.info.describe());
    println!(
        "build: CUDA {}",
        if device::CUDA_BUILT {
            "enabled"
        } else {
            "not built in (scripts/build-cuda.sh builds it)"
        }
    );
    if !args.check {
        return Ok(Outcome::Success);
    }
    anyhow::ensure!(
        !opened.device.is_cpu(),
        "--check compares a GPU against the CPU, and the device here is the CPU ({})",
        device::NO_CUDA_BUILD
    );
    let shape = CheckShape {
        image_size: args.image_size,
        batch: args.batch,
        ..CheckShape::LECTURE
    };
    let rows = device_check::compare(&opened.device, shape)?;
    print!("{}", device_check::table(&rows));
    if !rows.iter().all(device_check::Difference::agrees) {
        eprintln!("error: a relative difference is above 1e-3");
        return Ok(Outcome::Error);
    }
    println!("OK: {} agrees with the CPU", opened.info.kind);
    Ok(Outcome::Success)
}
